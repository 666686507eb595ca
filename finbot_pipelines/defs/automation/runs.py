"""Launch the pipeline's jobs from the command line, in-process, with a progress display.

Runs go to the Dagster instance of `$DAGSTER_HOME` (the embedded default is
`$FINBOT_HOME/dagster`), so they show in the UI like scheduled ones.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

import dagster as dg

from finbot_pipelines.defs.partitions import HOUR_FMT
from finbot_pipelines.defs.window import window_tags

PROGRESS_LOGGER = "finbot_progress"


class _ProgressHandler(logging.Handler):
    """Prints the run's story in a few lines: steps, ingest progress, dbt models, failures."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.started = time.monotonic()
        self.models = 0

    def _print(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {text}", file=self.stream, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        meta: Mapping[str, Any] = getattr(record, "dagster_meta", {}) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None:
            message = str(meta.get("orig_message") or record.getMessage())
            if record.levelno >= logging.WARNING or message.startswith("progress:"):
                self._print(f"{step}: {message}")
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self._print(f"{step}: started")
        elif kind == "STEP_SUCCESS":
            self._print(f"{step}: done")
        elif kind == "ASSET_MATERIALIZATION" and step.startswith("finbot_dbt"):
            self.models += 1
            key = event.asset_key.to_user_string() if event.asset_key else "?"
            self._print(f"{step}: built {key} ({self.models})")
        elif kind == "ENGINE_EVENT" and (event.message or "").startswith("Step blocked by limit"):
            pool = (event.message or "").rsplit(" ", 1)[-1]
            self._print(f"{step}: waiting for its turn (pool {pool}): another run is using it")
        elif kind == "STEP_FAILURE":
            err = event.step_failure_data.error if event.step_failure_data else None
            self._print(f"{step}: FAILED {err.message.strip() if err else ''}")
        elif kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if data is not None and not getattr(data, "passed", True):
                key = data.asset_key.to_user_string()
                self._print(f"{step}: check {data.check_name} on {key} did not pass")


@dg.logger(None, description="Concise progress on stderr, for `finbot demo` and `finbot run`.")
def finbot_progress(_init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.getLogger(PROGRESS_LOGGER)
    log.handlers = [_ProgressHandler(sys.stderr)]
    log.setLevel(logging.INFO)
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
            f"finbot: the latest fetch of these linked accounts failed: {failed} "
            "(`finbot accounts list` shows each error and its fix)",
            file=sys.stderr,
        )
