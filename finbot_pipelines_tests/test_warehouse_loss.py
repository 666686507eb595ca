"""A lost warehouse is noticed: missing, replaced by another home's, or shorter than what was
published, it stops the next run before anything is landed, with a message pointing to
`finbot restore` (and the latest backup), instead of silently starting an empty history.

The real runs use a copy of the session's built home (24 hours published); the rules of
the check itself are tested without Dagster.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.warehouse.backup import WarehouseLost, check_warehouse, write_backup
from finbot_pipelines.warehouse.identity import Extent, shrinkage
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines.warehouse.raw import ensure_raw_schema, forget_hours
from finbot_pipelines_tests.conftest import BuiltHome

HOURLY = ("linked_account_hours", "fetches", "sub_accounts", "items")
DATA_TABLES = (*HOURLY, "profiles", "fx_rates", "unit_prices")


@pytest.fixture
def home(built_home: BuiltHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    assert built_home.fx_success and built_home.run_success
    home = tmp_path / "home"
    shutil.copytree(built_home.home, home)
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return home


def raw_state(home: Path) -> dict[str, int] | None:
    """Rows of every raw table (None: no warehouse), read without the code under test."""
    path = home / "warehouse.duckdb"
    if not path.exists():
        return None
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            t: int(con.execute(f"select count(*) from raw.{t}").fetchone()[0])  # type: ignore[index]
            for t in DATA_TABLES
        }


def publish_id(home: Path) -> str:
    with connect_published(home / "finbot.duckdb") as con:
        row = con.execute("select publish_id from marts.publish_info").fetchone()
    assert row is not None
    return str(row[0])


def run_next_hour(home: Path, built: BuiltHome) -> Any:
    nxt = built.last + timedelta(hours=1)
    return CliRunner().invoke(
        main,
        ["--home", str(home), "run", "--last", f"{nxt:%Y-%m-%d %H:00}"],
        catch_exceptions=False,
    )


def stopped(home: Path, built: BuiltHome, why: str) -> Any:
    """Run the next hour; it must stop with `why`, landing and publishing nothing."""
    raw_before, catalog_before = raw_state(home), publish_id(home)
    res = run_next_hour(home, built)
    assert res.exit_code != 0, res.output
    assert "finbot restore" in res.output, res.output
    assert why in res.output, res.output
    assert raw_state(home) == raw_before  # nothing landed
    assert publish_id(home) == catalog_before  # nothing published
    return res


def test_a_deleted_warehouse_stops_the_next_run(home: Path, built_home: BuiltHome) -> None:
    paths = HomePaths(home)
    backup = write_backup(paths)  # the message names the latest backup
    paths.warehouse.unlink()
    res = stopped(home, built_home, "is missing")
    assert str(backup.path) in res.output
    assert not paths.warehouse.exists()  # not recreated empty


def test_another_homes_warehouse_stops_the_next_run(
    home: Path, built_home: BuiltHome, tmp_path: Path
) -> None:
    """Another warehouse with the very same rows: only its identity differs."""
    paths = HomePaths(home)
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        ensure_raw_schema(con)  # a new warehouse, a new identity
        con.execute(f"attach '{paths.warehouse}' as orig (read_only)")
        for table in DATA_TABLES:
            con.execute(f"insert into raw.{table} select * from orig.raw.{table}")
        con.execute("detach orig")
    os.replace(other, paths.warehouse)
    before = raw_state(home)
    assert before is not None and before["items"] > 0
    stopped(home, built_home, "another warehouse")


def test_a_truncated_warehouse_stops_the_next_run(home: Path, built_home: BuiltHome) -> None:
    paths = HomePaths(home)
    cut = built_home.last - timedelta(hours=2)  # the last 3 hours deleted by hand
    with duckdb.connect(str(paths.warehouse)) as con:
        for table in HOURLY:
            con.execute(f"delete from raw.{table} where fetch_hour >= ?", [cut])
    res = stopped(home, built_home, "less than the published marts were built from")
    assert f"{built_home.last:%Y-%m-%d %H:00}" in res.output  # says what was published


def test_hours_forgotten_on_purpose_are_no_loss(home: Path, built_home: BuiltHome) -> None:
    """`finbot hours forget` tallies what it removes; the same rows deleted by hand are a loss."""
    paths = HomePaths(home)
    first, last = built_home.last - timedelta(hours=1), built_home.last
    copy = home.parent / "by-hand"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("dagster", "dbt-target"))
    with duckdb.connect(str(paths.warehouse)) as con:
        forget_hours(con, first, last)
        check_warehouse(paths, con)  # no WarehouseLost
    by_hand = HomePaths(copy)
    with duckdb.connect(str(by_hand.warehouse)) as con:
        for table in HOURLY:
            con.execute(f"delete from raw.{table} where fetch_hour between ? and ?", [first, last])
        with pytest.raises(WarehouseLost, match="finbot restore"):
            check_warehouse(by_hand, con)


def test_a_new_home_starts_but_lost_files_with_backups_do_not(tmp_path: Path) -> None:
    new = HomePaths(tmp_path / "new")
    check_warehouse(new)  # nothing published, no backup: a new home
    backups = new.home / "backups" / "finbot-backup-20261201T033500Z"
    backups.mkdir(parents=True)
    (backups / "manifest.json").write_text("{}")
    with pytest.raises(WarehouseLost, match="has backups") as err:
        check_warehouse(new)
    assert str(backups) in str(err.value) and "finbot restore" in str(err.value)


def test_starting_over_is_explicit(home: Path) -> None:
    paths = HomePaths(home)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        old_id = con.execute("select warehouse_id from raw.warehouse_identity").fetchone()
    paths.warehouse.unlink()
    with pytest.raises(WarehouseLost):
        check_warehouse(paths)
    res = CliRunner().invoke(main, ["--home", str(home), "restore", "--empty"], input="n\n")
    assert res.exit_code != 0 and "nothing was changed" in res.output
    res = CliRunner().invoke(main, ["--home", str(home), "restore", "--empty", "--yes"])
    assert res.exit_code == 0, res.output
    assert not paths.published.exists() and not (home / "published").exists()
    check_warehouse(paths)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        check_warehouse(paths, con)
        new = con.execute("select warehouse_id from raw.warehouse_identity").fetchall()
        rows = con.execute("select count(*) from raw.items").fetchone()
    assert len(new) == 1 and (old_id is None or new[0][0] != old_id[0])
    assert rows == (0,)


H = datetime(2026, 1, 5)


def ext(
    wid: str | None = "w1",
    first: int = 0,
    last: int = 9,
    hours: int = 10,
    account_hours: int = 40,
    forgotten: int = 0,
    forgotten_ah: int = 0,
) -> Extent:
    return Extent(
        wid,
        H + timedelta(hours=first),
        H + timedelta(hours=last),
        hours,
        account_hours,
        forgotten,
        forgotten_ah,
    )


@pytest.mark.parametrize(
    ("current", "lost"),
    [
        (ext(), False),
        (ext(last=12, hours=13, account_hours=52), False),  # more: the next hours
        (ext(wid="w2"), True),  # another warehouse
        (ext(wid=None), True),  # one without an identity
        (ext(hours=9, account_hours=36, last=8), True),  # an hour less
        (ext(account_hours=39), True),  # an account-hour less
        (ext(first=1, last=10), True),  # same counts, but the first hour is gone
        (ext(last=7, hours=8, account_hours=32, forgotten=2, forgotten_ah=8), False),  # forget
        (ext(last=7, hours=8, account_hours=32, forgotten=1, forgotten_ah=4), True),
    ],
)
def test_shrinkage(current: Extent, lost: bool) -> None:
    assert (shrinkage(current, ext()) is not None) is lost
    assert shrinkage(current, ext(wid=None)) is None  # a mirror without identity: no check
