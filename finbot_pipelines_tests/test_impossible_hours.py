"""Impossible hours stay out: future hours, hours before history_start, `--hours` below 1,
bad hour strings and an empty query are refused with one message and nothing written;
`finbot hours forget` removes hours that should not be there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.config.home import ensure_dagster_home
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.defs.window import impossible_hours
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import ensure_dbt_manifest

START = datetime(2026, 1, 5, 0)
CONFIG = {
    "history_start": "2026-01-05T00:00",
    "fx_source": "static",
    "fx_static_rates": {"GBP": 0.85, "USD": 1.10},
    "profiles": [{"id": "me", "name": "Me", "valuation_ccy": "GBP"}],
    "linked_accounts": [
        {
            "id": "bank",
            "profile": "me",
            "provider": "dummy",
            "name": "Bank",
            "options": {"sub_accounts": ["cash"]},
        }
    ],
    "fetch": {"timeout_s": 20, "max_attempts": 1, "backoff_s": 0},
}


def invoke(home: Path, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, ["--home", str(home), *args], input=input)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    (home / "finbot.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return home


def test_impossible_hours_rule() -> None:
    now = datetime(2026, 3, 2, 12, 40)
    assert impossible_hours(datetime(2026, 3, 2, 11), datetime(2026, 3, 2, 12), START, now) is None
    future = impossible_hours(datetime(2026, 3, 2, 13), datetime(2026, 3, 2, 13), START, now)
    assert future is not None and "2026-03-02 13:00 UTC has not begun" in future
    early = impossible_hours(datetime(2026, 1, 4, 23), datetime(2026, 1, 5, 1), START, now)
    assert early is not None and "is before history_start (2026-01-05 00:00 UTC" in early


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--hours", "0"], "Invalid value for '--hours': 0 is not in the range x>=1"),
        (["run", "--hours", "-3"], "Invalid value for '--hours': -3 is not in the range x>=1"),
        (["run", "--last", "yesterday"], "--last must be an hour like '2026-11-24 13:00'"),
        (["run", "--last", "2030-01-01 00:00"], "2030-01-01 00:00 UTC has not begun"),
        (["run", "--last", "2026-01-04 23:00"], "is before history_start"),
        (["run", "--last", "2026-01-05 01:00", "--hours", "3"], "is before history_start"),
        (
            ["rebuild", "--first", "2029-12-31 00:00", "--last", "2030-01-01 00:00"],
            "has not begun",
        ),
        (["rebuild", "--first", "2026-01-05 00:00", "--last", "tomorrow"], "--last must be"),
        (["sql", ""], "give a query"),
        (["sql", "   "], "give a query"),
        (["hours", "forget", "--first", "soon", "--last", "later"], "--first must be an hour"),
    ],
)
def test_refused_with_one_message_and_nothing_written(
    home: Path, args: list[str], message: str
) -> None:
    before = sorted(p.name for p in home.iterdir())
    res = invoke(home, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert sorted(p.name for p in home.iterdir()) == before  # no warehouse, no instance


def test_config_check_refuses_a_future_history_start(home: Path) -> None:
    cfg = dict(CONFIG)
    future = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=3)
    cfg["history_start"] = future.strftime("%Y-%m-%dT00:00")
    (home / "finbot.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = invoke(home, "config", "check")
    assert res.exit_code == 2
    assert "history_start: " in res.output and "is in the future" in res.output
    assert "Traceback" not in res.output


def _run(home: Path, first: datetime, last: datetime) -> dg.ExecuteInProcessResult:
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_job

    paths = HomePaths(home)
    ensure_dagster_home(paths)
    defs = build_definitions(str(home))
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        return run_job(defs, HOURLY_JOB, first, last, instance=instance, progress=False)


def test_the_hourly_job_refuses_a_future_hour(home: Path) -> None:
    ensure_dbt_manifest()
    future = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    future += timedelta(hours=5)
    result = _run(home, future, future)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_failure_data is not None
    description = failure.step_failure_data.user_failure_data
    assert description is not None and "has not begun" in str(description.description)
    assert not HomePaths(home).warehouse.exists()  # nothing fetched, nothing written


def test_forget_removes_hours_and_rebuilds_the_later_ones(home: Path) -> None:
    ensure_dbt_manifest()
    assert _run(home, START, START + timedelta(hours=5)).success
    paths = HomePaths(home)

    def hours_in(sql: str, db: Path) -> list[int]:
        with connect_published(db) as con:
            return [
                int((r[0] - START).total_seconds() // 3600) for r in con.execute(sql).fetchall()
            ]

    res = invoke(
        home,
        "hours",
        "forget",
        "--first",
        "2026-01-05 02:00",
        "--last",
        "2026-01-05 03:00",
        input="n\n",
    )
    assert res.exit_code == 1 and "nothing was forgotten" in res.output
    res = invoke(
        home,
        "hours",
        "forget",
        "--first",
        "2026-01-05 02:00",
        "--last",
        "2026-01-05 03:00",
        "--yes",
    )
    assert res.exit_code == 0, res.output
    assert "2 account-hour(s), 2 fetch(es)" in res.output
    raw = "select distinct fetch_hour from raw.fetches order by 1"
    assert hours_in(raw, paths.warehouse) == [0, 1, 4, 5]
    marts = "select valuation_hour from marts.fct_profile_valuation_hourly order by 1"
    assert hours_in(marts, paths.published) == [0, 1, 4, 5]
    assert hours_in(marts, paths.warehouse) == [0, 1, 4, 5]
    # the later hours were rebuilt: hour 4's 1h change no longer refers to the forgotten
    # hour 3 but to the latest hour before it (hour 1, within the reference gap)
    with connect_published(paths.published) as con:
        row = con.execute(
            "select reference_hour, change_abs from marts.fct_valuation_changes "
            "where level = 'profile' and change_window = '1h' and valuation_hour = ?",
            [START + timedelta(hours=4)],
        ).fetchone()
        worth = dict(
            con.execute(
                "select valuation_hour, net_worth from fct_profile_valuation_hourly"
            ).fetchall()
        )
    assert row is not None and row[0] == START + timedelta(hours=1)
    assert row[1] == worth[START + timedelta(hours=4)] - worth[START + timedelta(hours=1)]
    res = invoke(
        home,
        "hours",
        "forget",
        "--first",
        "2026-01-05 02:00",
        "--last",
        "2026-01-05 03:00",
        "--yes",
    )
    assert res.exit_code == 0 and "nothing to forget" in res.output
