"""No silent waits, no orphans, one-line causes, and Dagster's faster SQLite event log.

Pure pieces without the pipeline where possible: the event log storage with a tiny job,
the dbt launcher with a stand-in dbt, the pool watcher with runs written by hand, the
warehouse lock with a second process holding it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from finbot_pipelines.config.home import ensure_dagster_home
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.defs.automation.runs import (
    HOST_TAG,
    PID_TAG,
    pool_wait_note,
    run_failure_cause,
)
from finbot_pipelines.defs.instance_storage import (
    FinbotSqliteEventLogStorage,
    FinbotSqliteStorage,
)
from finbot_pipelines.defs.resources import connect_warehouse, lock_holder_message
from finbot_pipelines.defs.transform.assets import DBT_PARENT_ENV, write_dbt_launcher
from finbot_pipelines_tests.conftest import wait_for

DEADLINE_S = 60.0


@pytest.fixture()
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """An instance from the repository's embedded dagster.yaml, as finbot's homes get it."""
    paths = HomePaths.resolve(tmp_path / "home")
    ensure_dagster_home(paths)
    monkeypatch.setenv("DAGSTER_HOME", str(paths.dagster_home))
    with dg.DagsterInstance.get() as inst:
        yield inst


# --------------------------------------------------------------------------- event log storage


def test_the_embedded_instance_uses_the_fast_event_log(instance: dg.DagsterInstance) -> None:
    assert instance.get_ref().storage_data.class_name == FinbotSqliteStorage.__name__
    assert isinstance(instance.event_log_storage, FinbotSqliteEventLogStorage)
    # the same files as Dagster's own SQLite storage: an existing home keeps its history
    assert Path(instance.event_log_storage._base_dir) == Path(instance.root_directory) / (
        "history/runs"
    )


def test_events_are_readable_by_another_process_and_followed_live(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """What the UI does: another process reads the run's events and follows a running run
    (Dagster's watcher reacts to the run file changing, which WAL commits alone don't do)."""
    gate = threading.Event()

    @dg.op
    def waits() -> None:
        log = dg.get_dagster_logger()
        log.info("before the gate")
        assert gate.wait(DEADLINE_S)
        log.info("after the gate")

    @dg.job
    def tiny() -> None:
        waits()

    reader = FinbotSqliteEventLogStorage(instance.event_log_storage._base_dir)
    seen: list[str] = []
    errors: list[BaseException] = []

    def follow() -> None:  # the UI's side, in another thread with its own storage
        try:
            wait_for(lambda: instance.get_runs(), "the run to be created")
            run_id = instance.get_runs()[0].run_id

            def messages() -> list[str]:
                records = reader.get_records_for_run(run_id).records
                return [r.event_log_entry.user_message for r in records]

            wait_for(lambda: "before the gate" in messages(), "the first message, read back")
            reader.watch(run_id, None, lambda entry, _cursor: seen.append(entry.user_message))
            gate.set()
            wait_for(lambda: "after the gate" in seen, "the watcher to see the new event")
            reader.end_watch(run_id, lambda *_: None)
        except BaseException as exc:
            errors.append(exc)
            gate.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    # the run in this (the main) thread, as the CLI runs it
    result = tiny.execute_in_process(instance=instance)
    follower.join(DEADLINE_S)
    reader.dispose()
    assert not errors, errors
    assert result.success
    run_id = result.run_id
    stored = {e.user_message for e in instance.all_logs(run_id)}
    assert {"before the gate", "after the gate"} <= stored


# --------------------------------------------------------------------------- failure causes


def test_the_cause_of_a_failed_run_is_one_line(instance: dg.DagsterInstance) -> None:
    @dg.op
    def refuses() -> None:
        raise dg.Failure(description="the warehouse is held by pid 42: close it")

    @dg.op
    def overflows() -> None:
        raise OverflowError("int too large to convert to float")

    for op, expected in (
        (refuses, "refuses: the warehouse is held by pid 42: close it"),
        (overflows, "overflows: OverflowError: int too large to convert to float"),
    ):
        job = dg.GraphDefinition(name=f"j_{op.name}", node_defs=[op]).to_job()
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        cause = run_failure_cause(result)
        assert cause == expected
        assert "\n" not in cause and "Error occurred while executing" not in cause


# --------------------------------------------------------------------------- warehouse lock


def test_a_held_warehouse_names_its_holder_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('ready', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(dg.Failure) as info:
            connect_warehouse(path, wait_s=0.5)
        message = info.value.description or ""
        assert f"pid {holder.pid}" in message
        assert f"kill {holder.pid}" in message and "finbot.duckdb" in message
        assert "nothing of this run was written" in message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(DEADLINE_S)
    connect_warehouse(path, wait_s=0.5).close()  # free again: it opens


def test_the_lock_message_without_a_pid_keeps_duckdbs_words() -> None:
    text = lock_holder_message(Path("/h/warehouse.duckdb"), "IO Error: disk I/O error")
    assert text == "the warehouse /h/warehouse.duckdb cannot be opened: IO Error: disk I/O error"


# --------------------------------------------------------------------------- dbt dies with its run


def test_dbt_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """kill -9 of the run's process: its dbt (here a stand-in that would run for ever,
    holding what it holds) is killed by the kernel, not orphaned."""
    fake_dbt = tmp_path / "dbt"
    fake_dbt.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        "print(os.getpid(), flush=True)\nsys.stdin.read()\n"  # blocks until killed
    )
    fake_dbt.chmod(0o700)
    launcher = write_dbt_launcher(tmp_path / "target", str(fake_dbt))
    assert os.access(launcher, os.X_OK)
    run = textwrap.dedent(
        f"""
        import os, subprocess, sys
        os.environ[{DBT_PARENT_ENV!r}] = str(os.getpid())
        child = subprocess.Popen([{str(launcher)!r}, "build"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        print(child.stdout.readline().strip(), flush=True)
        sys.stdin.read()
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", run], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    dbt_pid = int(parent.stdout.readline().strip())

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return False
        return state != "Z"

    assert alive(dbt_pid)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(DEADLINE_S)
    wait_for(lambda: not alive(dbt_pid), "the orphaned dbt to die")


def test_the_launcher_is_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    first = write_dbt_launcher(tmp_path, "/venv/bin/dbt")
    stamp = first.stat().st_mtime_ns
    assert write_dbt_launcher(tmp_path, "/venv/bin/dbt").stat().st_mtime_ns == stamp
    assert "/other/dbt" in write_dbt_launcher(tmp_path, "/other/dbt").read_text()


# --------------------------------------------------------------------------- pool waits


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(DEADLINE_S)
    return gone.pid


def _started_run(instance: dg.DagsterInstance, run_id: str, pid: int) -> None:
    instance.add_run(
        DagsterRun(
            job_name="finbot_hourly",
            run_id=run_id,
            status=dg.DagsterRunStatus.STARTED,
            tags={PID_TAG: str(pid), HOST_TAG: socket.gethostname()},
        )
    )


def test_a_waiting_run_says_who_holds_the_pool_and_reclaims_a_dead_holder(
    instance: dg.DagsterInstance,
) -> None:
    pool = "finbot_warehouse"
    storage = instance.event_log_storage
    storage.set_concurrency_slots(pool, 1)
    holder, waiter = "a" * 8 + "-holder", "b" * 8 + "-waiter"
    _started_run(instance, holder, os.getppid())  # alive, and not this process
    _started_run(instance, waiter, os.getpid())
    assert storage.claim_concurrency_slot(pool, holder, "finbot_dbt").is_claimed
    assert not storage.claim_concurrency_slot(pool, waiter, "ingest").is_claimed

    note = pool_wait_note(instance, pool)
    assert note is not None
    assert f"held by run {holder[:8]}" in note and "finbot_dbt" in note

    # the holder's process dies: the next look frees its slot and fails its run
    instance.add_run_tags(holder, {PID_TAG: str(_dead_pid())})
    note = pool_wait_note(instance, pool)
    assert note == f"reclaimed the slot of run {holder[:8]}, which is gone"
    run = instance.get_run_by_id(holder)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    assert storage.claim_concurrency_slot(pool, waiter, "ingest").is_claimed


def test_no_note_when_this_process_waits_for_nothing(instance: dg.DagsterInstance) -> None:
    instance.event_log_storage.set_concurrency_slots("finbot_warehouse", 1)
    assert pool_wait_note(instance, "finbot_warehouse") is None


def test_a_warehouse_readable_while_closed(tmp_path: Path) -> None:
    """connect_warehouse opens a free warehouse at once (no wait)."""
    path = tmp_path / "w.duckdb"
    con = connect_warehouse(path, wait_s=0)
    con.execute("create table t as select 1 as x")
    con.close()
    with duckdb.connect(str(path), read_only=True) as ro:
        assert ro.execute("select x from t").fetchone() == (1,)
