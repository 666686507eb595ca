"""The hourly schedule fires while a backfill runs (#7): no lock error, no lost partition.

Two processes share one FINBOT_HOME and one Dagster instance, as the daemon's run
workers do: a 48-hour backfill of `finbot_hourly`, and, once it has started, the
run the hourly schedule requests for the next hour. Every step that writes the
warehouse takes the `finbot_warehouse` pool slot (limit 1), so the second run
waits for the slot instead of failing on DuckDB's file lock.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import E2E_CONFIG, ensure_dbt_manifest

BACKFILL_FIRST = datetime(2026, 1, 5, 0)
BACKFILL_HOURS = 48
SCHEDULED_HOUR = BACKFILL_FIRST + timedelta(hours=BACKFILL_HOURS)
WAREHOUSE_STEPS = ("ingest_linked_accounts", "finbot_dbt", "published_marts")

RUN = """
import sys
from datetime import datetime
import dagster as dg
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.definitions import build_definitions
from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
from finbot_pipelines.defs.automation.runs import run_job, run_published
paths = HomePaths.resolve(sys.argv[1])
defs = build_definitions(str(paths.home))
first, last = datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
    ok = True
    if sys.argv[4] == "with-fx":
        days = (first.replace(hour=0), last.replace(hour=0))
        ok = run_job(defs, FX_JOB, *days, instance=instance, fmt="%Y-%m-%d", progress=False).success
    ok = ok and run_published(
        run_job(defs, HOURLY_JOB, first, last, instance=instance, progress=False)
    )
sys.exit(0 if ok else 1)
"""


def start(
    home: Path, first: datetime, last: datetime, fx: bool, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", RUN, str(home), first.isoformat(), last.isoformat(),
             "with-fx" if fx else "no-fx"],
            env={**os.environ, "FINBOT_HOME": str(home)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    return {
        s.step_key: (s.start_time, s.end_time)
        for s in instance.get_run_step_stats(run_id)
        if s.start_time is not None and s.end_time is not None
    }


@pytest.fixture(scope="module")
def concurrent_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    ensure_dbt_manifest()
    from finbot_pipelines.config.home import ensure_dagster_home
    from finbot_pipelines.config.paths import HomePaths
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import HOURLY_JOB

    home = tmp_path_factory.mktemp("schedule-during-backfill")
    paths = HomePaths(home)
    paths.config.write_text(E2E_CONFIG)
    ensure_dagster_home(paths)

    # the run the schedule asks for at five past the hour after the backfill
    defs = build_definitions(str(home))
    schedule = defs.resolve_schedule_def("finbot_hourly_schedule")
    tick = SCHEDULED_HOUR + timedelta(hours=1, minutes=5)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        (request,) = schedule.evaluate_tick(ctx).run_requests or []
    assert request.partition_key == SCHEDULED_HOUR.strftime("%Y-%m-%d-%H:%M")

    backfill_last = SCHEDULED_HOUR - timedelta(hours=1)
    backfill = start(home, BACKFILL_FIRST, backfill_last, True, home / "backfill.log")
    try:
        # wait until the backfill's hourly run has started, then let the schedule's run go
        deadline = time.monotonic() + 240
        with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
            while time.monotonic() < deadline:
                runs = instance.get_runs(filters=dg.RunsFilter(job_name=HOURLY_JOB))
                if runs and backfill.poll() is None:
                    break
                assert backfill.poll() is None, (home / "backfill.log").read_text()[-4000:]
                time.sleep(0.2)
            else:
                pytest.fail("the backfill run never started")
        scheduled = start(home, SCHEDULED_HOUR, SCHEDULED_HOUR, False, home / "scheduled.log")
        scheduled_code = scheduled.wait(timeout=600)
        backfill_code = backfill.wait(timeout=600)
    finally:
        backfill.kill()
    logs = {
        name: (home / f"{name}.log").read_text(errors="ignore")
        for name in ("backfill", "scheduled")
    }
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=HOURLY_JOB))
        intervals = {r.run_id: step_intervals(instance, r.run_id) for r in runs}
        statuses = {
            r.run_id: (
                r.status,
                sorted(
                    {
                        rec.event_log_entry.step_key or ""
                        for rec in instance.get_records_for_run(
                            r.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
                        ).records
                    }
                ),
            )
            for r in runs
        }
        scheduled_key = SCHEDULED_HOUR.strftime("%Y-%m-%d-%H:%M")
        kinds = {
            "scheduled" if r.tags.get("dagster/asset_partition_range_start") == scheduled_key
            else "backfill": r.run_id
            for r in runs
        }  # fmt: skip
        scheduled_record = instance.get_run_record_by_id(kinds["scheduled"])
        assert scheduled_record is not None and scheduled_record.start_time is not None
        started = {"scheduled": scheduled_record.start_time, "backfill_run_id": kinds["backfill"]}
    return {
        "home": home,
        "codes": (backfill_code, scheduled_code),
        "logs": logs,
        "intervals": intervals,
        "statuses": statuses,
        "started": started,
    }


def test_both_runs_succeed_without_a_lock_error(concurrent_runs: dict[str, object]) -> None:
    logs = concurrent_runs["logs"]
    assert isinstance(logs, dict)
    assert concurrent_runs["codes"] == (0, 0), {k: v[-3000:] for k, v in logs.items()}
    statuses = concurrent_runs["statuses"]
    started = concurrent_runs["started"]
    assert isinstance(statuses, dict) and isinstance(started, dict)
    backfill = statuses.pop(started["backfill_run_id"])
    # a-invest fails two hours of the backfill (its fail_hours): the backfill publishes
    # and then fails at its gate, naming them; the scheduled hour is clean
    assert backfill == (dg.DagsterRunStatus.FAILURE, ["every_account_fetched"])
    assert list(statuses.values()) == [(dg.DagsterRunStatus.SUCCESS, [])]
    for text in logs.values():
        assert "Could not set lock" not in text
        assert "database is locked" not in text


def test_warehouse_steps_never_overlapped(concurrent_runs: dict[str, object]) -> None:
    """The pool queued the schedule's warehouse steps behind the backfill's (or between)."""
    intervals = concurrent_runs["intervals"]
    assert isinstance(intervals, dict) and len(intervals) == 2
    spans = sorted(
        span
        for steps in intervals.values()
        for key, span in steps.items()
        if key in WAREHOUSE_STEPS
    )
    assert len(spans) == 2 * len(WAREHOUSE_STEPS)
    # not vacuous: the schedule's run started while the backfill still held the warehouse
    started = concurrent_runs["started"]
    assert isinstance(started, dict)
    backfill_end = max(
        end for key, (_, end) in intervals[started["backfill_run_id"]].items()
        if key in WAREHOUSE_STEPS
    )  # fmt: skip
    assert started["scheduled"] < backfill_end
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        assert next_start >= end - 0.05, spans


def test_no_partition_lost_or_doubled(concurrent_runs: dict[str, object]) -> None:
    home = concurrent_runs["home"]
    assert isinstance(home, Path)
    accounts = [a["id"] for a in yaml.safe_load(E2E_CONFIG)["linked_accounts"]]
    hours = BACKFILL_HOURS + 1
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        per_hour = con.execute(
            "select count(*), count(distinct (fetch_hour, linked_account_id)) from raw.fetches"
        ).fetchone()
    # one landed fetch per (hour, account): retries of a flaky account are not rows
    assert per_hour == (hours * len(accounts), hours * len(accounts))
    with connect_published(home / "finbot.duckdb") as con:
        rows = con.execute(
            "select profile_id, count(*), count(distinct valuation_hour), min(valuation_hour), "
            "max(valuation_hour) from marts.fct_profile_valuation_hourly group by 1 order by 1"
        ).fetchall()
    assert rows == [(p, hours, hours, BACKFILL_FIRST, SCHEDULED_HOUR) for p in ("alice", "bruno")]
