"""Launch the pipeline's jobs from the command line, in-process, with a progress display.

Runs go to the Dagster instance of `$DAGSTER_HOME` (the embedded default is
`$FINBOT_HOME/dagster`), so they show in the UI like scheduled ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TextIO

import dagster as dg

from finbot_pipelines.defs.partitions import HOUR_FMT
from finbot_pipelines.defs.window import window_tags

PROGRESS_LOGGER = "finbot_progress"


#: How long a run may go without a line on stderr before the progress says it is still working.
HEARTBEAT_S = 8.0
#: Without --verbose, dbt's progress is a line at most this often (not one per model).
DBT_PROGRESS_EVERY_S = 5.0
#: The dbt asset reads this: "quiet" drops dbt's own per-node lines from stdout (the CLI
#: without --verbose); unset or anything else keeps them (daemon runs: the compute logs).
DBT_STDOUT_ENV = "FINBOT_DBT_STDOUT"


class _Progress:
    """The story of one command-line run on stderr: a line per phase and step, each
    prefixed with the seconds since the command started, and a heartbeat naming the
    current phase whenever nothing was printed for HEARTBEAT_S."""

    def __init__(
        self, stream: TextIO, verbose: bool, on_beat: Callable[[], str | None] | None = None
    ) -> None:
        self.stream = stream
        self.on_beat = on_beat
        self.verbose = verbose
        self.started = time.monotonic()
        self.last = self.started
        self.phase = "planning the run"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def print(self, text: str, phase: str | None = None) -> None:
        with self._lock:
            if phase is not None:
                self.phase = phase
            now = time.monotonic()
            self.last = now
            print(f"[{now - self.started:6.1f}s] {text}", file=self.stream, flush=True)

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                silent = time.monotonic() - self.last
                phase = self.phase
            if silent >= HEARTBEAT_S:
                note = None
                if self.on_beat is not None:
                    try:
                        note = self.on_beat()
                    except Exception as exc:  # never let the heartbeat kill the run
                        note = f"(could not read the pool: {exc})"
                self.print(note or f"{phase}: still working")

    def __enter__(self) -> _Progress:
        self._thread = threading.Thread(target=self._beat, name="finbot-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


#: the progress of the run this process is executing (set by run_job, read by the logger)
_current: _Progress | None = None


class _ProgressHandler(logging.Handler):
    """Prints the run's story in a few lines: steps, ingest progress, dbt, failures."""

    def __init__(self, progress: _Progress) -> None:
        super().__init__(logging.DEBUG)  # Dagster logs step and asset events at DEBUG
        self.progress = progress
        self.models = 0
        self.last_dbt = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        meta: Mapping[str, Any] = getattr(record, "dagster_meta", {}) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        out = self.progress
        if event is None:
            message = str(meta.get("orig_message") or record.getMessage())
            if message.startswith("progress:"):
                # "progress: <phase>: ..." names the phase the heartbeat repeats
                body = message.removeprefix("progress:").strip()
                out.print(f"{step}: {body}", phase=f"{step}: {body.split(':', 1)[0]}")
            elif record.levelno >= logging.WARNING:  # (debug and info chatter is not shown)
                out.print(f"{step}: {message}")
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            out.print(f"{step}: started", phase=step)
        elif kind == "STEP_SUCCESS":
            out.print(f"{step}: done", phase="finishing the run")
        elif kind == "ASSET_MATERIALIZATION" and step.startswith("finbot_dbt"):
            self.models += 1
            key = event.asset_key.to_user_string() if event.asset_key else "?"
            now = time.monotonic()
            if out.verbose:
                out.print(f"{step}: built {key} ({self.models})")
            elif now - self.last_dbt >= DBT_PROGRESS_EVERY_S:
                self.last_dbt = now
                out.print(f"{step}: built {self.models} model(s) so far (latest {key})")
        elif kind == "ENGINE_EVENT" and (event.message or "").startswith("Step blocked by limit"):
            pool = (event.message or "").rsplit(" ", 1)[-1]
            out.print(
                f"{step}: waiting for its turn (pool {pool}): another run is using it",
                phase=f"{step}: waiting for the {pool} pool",
            )
        elif kind == "STEP_FAILURE":
            err = event.step_failure_data.error if event.step_failure_data else None
            out.print(f"{step}: FAILED {error_line(err) if err else ''}")
        elif kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if data is not None and not getattr(data, "passed", True):
                key = data.asset_key.to_user_string()
                out.print(f"{step}: check {data.check_name} on {key} did not pass")


@dg.logger(None, description="Concise progress on stderr, for `finbot demo` and `finbot run`.")
def finbot_progress(_init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.getLogger(PROGRESS_LOGGER)
    log.handlers = [_ProgressHandler(_current or _Progress(sys.stderr, verbose=False))]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log


def partition_range_tags(first: datetime, last: datetime, fmt: str = HOUR_FMT) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.strftime(fmt),
        "dagster/asset_partition_range_end": last.strftime(fmt),
    }


#: Tags of runs this module starts: which process runs them, to recognise dead ones.
PID_TAG = "finbot/pid"
HOST_TAG = "finbot/host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark as failed the command-line runs whose process died, and free their pool slots.

    A run killed mid-flight (SIGKILL, power loss) never reports its end; without
    this, its `finbot_warehouse` slot would stay claimed and every later run wait.
    """
    released = []
    host = socket.gethostname()
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
            tags={HOST_TAG: host},
        )
    )
    for record in records:
        run = record.dagster_run
        pid = run.tags.get(PID_TAG)
        if pid is None or not pid.isdigit() or _alive(int(pid)) or int(pid) == os.getpid():
            continue
        instance.report_run_failed(run, f"the process running it (pid {pid}) is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


def _finished(status: dg.DagsterRunStatus) -> bool:
    return status in (
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    )


def pool_wait_note(instance: dg.DagsterInstance, pool: str) -> str | None:
    """If a run of this process waits for a slot of ``pool``, say who holds it; free the
    slots of holders that are gone (finished, or a command-line run whose process died)."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    mine = {
        p.run_id
        for p in info.pending_steps
        if p.assigned_timestamp is None
        and (run := instance.get_run_by_id(p.run_id)) is not None
        and run.tags.get(PID_TAG) == str(os.getpid())
    }
    if not mine:
        return None
    notes = []
    for slot in info.claimed_slots:
        if slot.run_id in mine:
            continue
        holder = instance.get_run_by_id(slot.run_id)
        pid = holder.tags.get(PID_TAG) if holder is not None else None
        dead = (
            holder is not None
            and not _finished(holder.status)
            and holder.tags.get(HOST_TAG) == socket.gethostname()
            and pid is not None
            and pid.isdigit()
            and not _alive(int(pid))
        )
        if holder is None or _finished(holder.status) or dead:
            if dead and holder is not None:
                instance.report_run_failed(holder, f"the process running it (pid {pid}) is gone")
            instance.event_log_storage.free_concurrency_slots_for_run(slot.run_id)
            notes.append(f"reclaimed the slot of run {slot.run_id[:8]}, which is gone")
            continue
        where = f"pid {pid}" if pid else "launched by the daemon or the UI"
        notes.append(
            f"waiting for the '{pool}' slot held by run {slot.run_id[:8]} ({holder.job_name}, "
            f"step {slot.step_key}, {holder.status.value.lower()}, {where})"
        )
    return "; ".join(notes) or f"waiting for a slot of the '{pool}' pool"


def run_job(
    defs: dg.Definitions,
    job_name: str,
    first: datetime | None,
    last: datetime | None,
    *,
    instance: dg.DagsterInstance,
    fmt: str = HOUR_FMT,
    progress: bool = True,
    run_config: Mapping[str, Any] | None = None,
    verbose: bool = False,
) -> dg.ExecuteInProcessResult:
    """Execute ``job_name`` over [first, last] as one run.

    A partitioned job runs that range of partitions; an unpartitioned one (the
    transform job) gets the window tags its assets read (`defs.window`), or, with
    ``first`` and ``last`` None, none: it then rebuilds every hour.
    """
    for run_id in release_dead_runs(instance):
        print(f"released the pool slots of dead run {run_id}", file=sys.stderr)
    job = defs.resolve_job_def(job_name)
    config: dict[str, Any] = dict(run_config or {})
    if progress:
        config["loggers"] = {PROGRESS_LOGGER: {}}
    range_tags: dict[str, str] = {}
    if first is not None and last is not None:
        if job.partitions_def is not None:
            range_tags = partition_range_tags(first, last, fmt)
        else:
            range_tags = window_tags(first, last)
    elif job.partitions_def is not None:
        raise ValueError(f"{job_name} is partitioned: give the first and last partition")
    from finbot_pipelines.defs.resources import WAREHOUSE_POOL

    global _current
    previous_env = os.environ.get(DBT_STDOUT_ENV)
    os.environ[DBT_STDOUT_ENV] = "verbose" if verbose else "quiet"
    progress_out = _Progress(
        sys.stderr, verbose, on_beat=lambda: pool_wait_note(instance, WAREHOUSE_POOL)
    )
    _current = progress_out
    try:
        with progress_out if progress else contextlib.nullcontext():
            result = job.execute_in_process(
                instance=instance,
                tags={
                    **range_tags,
                    PID_TAG: str(os.getpid()),
                    HOST_TAG: socket.gethostname(),
                },
                run_config=config,
                raise_on_error=False,
            )
    finally:
        _current = None
        if previous_env is None:
            os.environ.pop(DBT_STDOUT_ENV, None)
        else:
            os.environ[DBT_STDOUT_ENV] = previous_env
    notify_after_run(defs, instance, result.run_id)
    return result


def notify_after_run(defs: dg.Definitions, instance: dg.DagsterInstance, run_id: str) -> None:
    """Tag and notify the outcome of a run this process ran (the daemon's run-status
    sensors only follow runs it launched; `notify_run_outcome` does it once either way).
    A delivery problem is printed, never raised: the run's own outcome stands."""
    from finbot_pipelines.config.vault import VaultError
    from finbot_pipelines.defs.automation.notifications import (
        FAILED_ACCOUNTS_TAG,
        NotificationError,
        notify_run_outcome,
    )

    home = getattr((defs.resources or {}).get("finbot"), "home", None)
    try:
        sent = notify_run_outcome(instance, run_id, home)
    except (NotificationError, VaultError) as exc:
        print(f"finbot: notification not delivered: {exc}", file=sys.stderr)
    except Exception as exc:  # never the message: it could quote a resolved URL
        print(f"finbot: notification not delivered ({type(exc).__name__})", file=sys.stderr)
    else:
        for message in sent or []:
            print(f"notified: {message.title}", file=sys.stderr)
    run = instance.get_run_by_id(run_id)
    failed = run.tags.get(FAILED_ACCOUNTS_TAG) if run is not None else None
    if failed:
        print(
            f"finbot: these linked accounts failed in this run: {failed} (the rest is "
            "published; `finbot accounts list` shows each error and its fix)",
            file=sys.stderr,
        )


_WRAPPER_PREFIXES = (
    "dagster._core.errors.",
    "dagster._core.definitions.events.Failure: ",
    "dagster._core.definitions.events.",
)


def _innermost(err: Any) -> Any:
    while getattr(err, "cause", None) is not None:
        err = err.cause
    return err


def error_line(err: Any) -> str:
    """An error's message on one line, without Dagster's wrapper class names (a
    `dg.Failure` is its description as written)."""
    cls = str(getattr(err, "cls_name", "") or "")
    message = str(getattr(err, "message", "") or "").strip()
    for prefix in _WRAPPER_PREFIXES:
        message = message.removeprefix(prefix)
    message = message.removeprefix(f"{cls}: ") if cls == "Failure" else message
    return " ".join(message.split())


def failed_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        str(e.step_key)
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE" and e.step_key is not None
    }


def run_published(result: dg.ExecuteInProcessResult) -> bool:
    """Whether the run did its work: it succeeded, or failed only at the gate
    `every_account_fetched` (some linked accounts failed; everything else was
    published)."""
    from finbot_pipelines.defs.ingest.gate import only_the_gate_failed

    if result.success:
        return True
    return only_the_gate_failed(failed_steps(result))


def run_failure_cause(result: dg.ExecuteInProcessResult) -> str:
    """The cause of a failed run in one line: the first failed step and its innermost error
    (a `dg.Failure`'s description as written, else the exception's class and message)."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE" or event.step_failure_data is None:
            continue
        err = _innermost(event.step_failure_data.error)
        if err is None:
            return f"step {event.step_key} failed"
        return f"{event.step_key}: {error_line(err)[:600]}"
    for event in result.all_events:
        if event.event_type_value == "RUN_FAILURE":
            return str(event.message or "the run failed")
    return "the run failed"
