"""Crash safety: a run killed with SIGKILL during the raw write, or during the dbt build,
then the next run: the marts equal those of a run never interrupted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import E2E_CONFIG, ensure_dbt_manifest

FIRST = "2026-01-05 00:00"
LAST = "2026-01-05 03:00"
MARTS = (
    "fct_profile_valuation_hourly",
    "fct_item_valuation_hourly",
    "fct_valuation_changes",
    "mart_linked_account_health",
)

RUN = """
import sys
from datetime import datetime
import dagster as dg
from finbot_pipelines.config.home import ensure_dagster_home
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.definitions import build_definitions
from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
from finbot_pipelines.defs.automation.runs import run_job
paths = HomePaths.resolve(sys.argv[1])
ensure_dagster_home(paths)
defs = build_definitions(str(paths.home))
first, last = datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
    day = first.replace(hour=0)
    ok = run_job(defs, FX_JOB, day, day, instance=instance, fmt="%Y-%m-%d", progress=False).success
    ok = ok and run_job(defs, HOURLY_JOB, first, last, instance=instance, progress=False).success
sys.exit(0 if ok else 1)
"""


def environ_of(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_text(errors="ignore")
    except OSError:  # gone already, or not ours
        return ""


def start(home: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(home), FIRST, LAST],
        env={**os.environ, "FINBOT_HOME": str(home), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def new_home(tmp_path: Path, name: str) -> Path:
    home = tmp_path / name
    home.mkdir()
    (home / "finbot.yaml").write_text(E2E_CONFIG)
    return home


def marts(home: Path) -> dict[str, pd.DataFrame]:
    with connect_published(home / "finbot.duckdb") as con:
        return {m: con.execute(f"select * from marts.{m} order by all").df() for m in MARTS}


def raw_counts(home: Path) -> tuple[int, ...]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return tuple(
            con.execute(f"select count(*) from raw.{t}").fetchone()[0]  # type: ignore[index]
            for t in ("fetches", "sub_accounts", "items", "linked_account_hours")
        )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_dbt_manifest()
    home = new_home(tmp_path_factory.mktemp("crash"), "reference")
    proc = start(home)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
    return home


def recover_and_compare(home: Path, reference: Path) -> None:
    proc = start(home)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]
    got, want = marts(home), marts(reference)
    for name in MARTS:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=False, rtol=1e-12)
    assert raw_counts(home) == raw_counts(reference)
    # the killed run was found dead, marked failed, and its pool slot released
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        statuses = [r.status for r in instance.get_runs()]
        slots = instance.event_log_storage.get_concurrency_info("finbot_warehouse")
    assert dg.DagsterRunStatus.STARTED not in statuses
    assert dg.DagsterRunStatus.FAILURE in statuses
    assert slots.active_slot_count == 0


def test_killed_during_the_raw_write(tmp_path: Path, reference: Path) -> None:
    home = new_home(tmp_path, "raw")
    proc = start(home, {"FINBOT_FAILPOINT": "raw_write_before_commit"})
    assert proc.wait(timeout=600) == -signal.SIGKILL
    # nothing of the killed transaction is visible
    assert raw_counts(home) == (0, 0, 0, 0)
    recover_and_compare(home, reference)


def test_killed_during_the_dbt_build(tmp_path: Path, reference: Path) -> None:
    home = new_home(tmp_path, "dbt")
    proc = start(home)
    deadline = time.monotonic() + 300
    while True:  # wait for dbt to be building this home's warehouse
        found = subprocess.run(
            ["pgrep", "-f", "--", "dbt build"], capture_output=True, text=True
        ).stdout.split()
        mine = [
            p for p in found if str(home) in Path(f"/proc/{p}/environ").read_text(errors="ignore")
        ]
        if mine:
            time.sleep(1.5)  # in the middle of the build
            break
        assert proc.poll() is None, "the run ended before dbt started"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    for pid in mine:  # dbt is in the same session; make sure it is gone too
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    recover_and_compare(home, reference)
