"""Publishing the marts: immutable period files behind views in a small catalog.

No Dagster, no dbt: each test builds a small warehouse with DuckDB, shaped like the real
marts (period tables with a `valuation_hour`, small tables without), publishes it and
reads `finbot.duckdb` the way readers do (`queries.connect_published`: read-only, relative
paths resolved against the home).
Expected content is the warehouse itself, read independently of the published files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from finbot_pipelines.warehouse import publish
from finbot_pipelines.warehouse.publish import GRACE, period_of, publish_marts
from finbot_pipelines.warehouse.queries import connect_published

ITEMS = (  # (profile, linked account, sub-account, item, item type)
    ("alice", "a-bank", "current", "cash", "asset"),
    ("alice", "a-bank", "card", "balance", "liability"),
    ("alice", "a-invest", "isa", "VWRL", "asset"),
    ("bruno", "b-bank", "current", "cash", "asset"),
    ("bruno", "b-crypto", "wallet", "BTC", "asset"),
    ("bruno", "b-crypto", "wallet", "ETH", "asset"),
)
ITEMS_PER_PROFILE = 3
WINDOWS = (("1h", 1), ("1d", 24))
PERIOD_TABLES = (
    "fct_item_valuation_hourly",
    "fct_profile_valuation_hourly",
    "fct_valuation_changes",
)
SMALL_TABLES = ("mart_linked_account_health", "mart_valuation_periods")
FIRST_HOUR = datetime(2026, 1, 1)

SCHEMA = """
create schema if not exists marts;
create table if not exists marts.fct_item_valuation_hourly (
    profile_id varchar, linked_account_id varchar, sub_account_id varchar,
    valuation_hour timestamp, item_name varchar, item_type varchar, units double,
    value_sub_account_ccy decimal(18, 4), value double, seq hugeint, is_stale boolean);
create table if not exists marts.fct_profile_valuation_hourly (
    profile_id varchar, valuation_hour timestamp, valuation_ccy varchar,
    total_assets double, total_liabilities double, net_worth double, stale_accounts integer);
create table if not exists marts.fct_valuation_changes (
    profile_id varchar, level varchar, entity_id varchar, valuation_hour timestamp,
    change_window varchar, reference_hour timestamp, change_abs double, change_rel double);
create table if not exists marts.mart_linked_account_health (
    profile_id varchar, linked_account_id varchar, last_attempt_hour timestamp,
    consecutive_failures integer, last_error_code varchar);
create table if not exists marts.mart_valuation_periods (
    profile_id varchar, frequency varchar, period_start date, period_end date,
    open double, close double, item_count bigint);
"""

# value of an item at an hour: a pure function of (item, hour, version); liabilities < 0
VALUE = """
    (case when i.item_type = 'liability' then -1 else 1 end)
    * round((i.idx + 1) * 100 + (epoch(h.valuation_hour)::bigint // 3600 % 37) * 1.25
            + {version} * 1000, 2)
"""


def add_hours(warehouse: Path, hours: Iterable[datetime], version: int = 0) -> None:
    """(Re)build the marts of `hours` the way the incremental models do (delete + insert),
    then rebuild the small marts whole."""
    hours = sorted(hours)
    items = pd.DataFrame(
        [(n, *item) for n, item in enumerate(ITEMS)],
        columns=[
            "idx",
            "profile_id",
            "linked_account_id",
            "sub_account_id",
            "item_name",
            "item_type",
        ],
    )
    hour_frame = pd.DataFrame({"valuation_hour": hours})
    value = VALUE.format(version=version)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(SCHEMA)
        con.register("items", items)
        con.register("hours", hour_frame)
        for table in PERIOD_TABLES:
            con.execute(
                f"delete from marts.{table} "
                "where valuation_hour in (select valuation_hour from hours)"
            )
        con.execute(
            f"""
            insert into marts.fct_item_valuation_hourly
            select i.profile_id, i.linked_account_id, i.sub_account_id, h.valuation_hour,
                   i.item_name, i.item_type, (i.idx + 1) * 1.5,
                   cast({value} as decimal(18, 4)), {value},
                   cast(epoch(h.valuation_hour)::bigint // 3600 as hugeint) * 1000 + i.idx
                       + 100000000000000000000,
                   i.idx = 4 and hour(h.valuation_hour) = 3
            from hours h, items i
            """
        )
        con.execute(
            """
            insert into marts.fct_profile_valuation_hourly
            select profile_id, valuation_hour,
                   case profile_id when 'alice' then 'GBP' else 'EUR' end,
                   sum(value) filter (where value > 0),
                   coalesce(sum(value) filter (where value < 0), 0),
                   sum(value), count(*) filter (where is_stale)::integer
            from marts.fct_item_valuation_hourly
            where valuation_hour in (select valuation_hour from hours)
            group by all
            """
        )
        for window, span in WINDOWS:
            con.execute(
                f"""
                insert into marts.fct_valuation_changes
                with entity as (
                    select profile_id, 'profile' as level, profile_id as entity_id,
                           valuation_hour, net_worth as value
                    from marts.fct_profile_valuation_hourly
                    union all
                    select profile_id, 'item', linked_account_id || '/' || item_name,
                           valuation_hour, value
                    from marts.fct_item_valuation_hourly
                )
                select e.profile_id, e.level, e.entity_id, e.valuation_hour, '{window}',
                       r.valuation_hour, e.value - r.value,
                       (e.value - r.value) / nullif(abs(r.value), 0)
                from entity e
                left join entity r
                    on r.entity_id = e.entity_id and r.level = e.level
                    and r.profile_id = e.profile_id
                    and r.valuation_hour = e.valuation_hour - interval {span} hour
                where e.valuation_hour in (select valuation_hour from hours)
                """
            )
        con.execute(
            """
            create or replace table marts.mart_linked_account_health as
            select profile_id, linked_account_id, max(valuation_hour) as last_attempt_hour,
                   0::integer as consecutive_failures, null::varchar as last_error_code
            from marts.fct_item_valuation_hourly group by all
            """
        )
        con.execute(
            """
            create or replace table marts.mart_valuation_periods as
            select profile_id, 'daily' as frequency, cast(valuation_hour as date) as period_start,
                   cast(valuation_hour as date) as period_end,
                   arg_min(net_worth, valuation_hour) as open,
                   arg_max(net_worth, valuation_hour) as close, count(*) as item_count
            from marts.fct_profile_valuation_hourly group by all
            """
        )


def hour_range(first: datetime, last: datetime) -> list[datetime]:
    return [first + timedelta(hours=i) for i in range(int((last - first) / timedelta(hours=1)) + 1)]


def tables_of(db: Path) -> dict[str, pd.DataFrame]:
    """Every table or view of schema marts, ordered by all columns, with its DuckDB types."""
    with connect_published(db) as con:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'marts' and table_name <> 'publish_info' order by 1"
            ).fetchall()
        ]
        out = {}
        for name in names:
            frame = con.execute(f"select * from marts.{name} order by all").df()
            frame.attrs["types"] = con.execute(f"describe marts.{name}").fetchall()
            out[name] = frame
        return out


def assert_published_equals_warehouse(home: Path) -> None:
    expected = tables_of(home / "warehouse.duckdb")
    got = tables_of(home / "finbot.duckdb")
    assert sorted(got) == sorted(expected)
    for name, frame in expected.items():
        assert [t[:2] for t in got[name].attrs["types"]] == [t[:2] for t in frame.attrs["types"]], (
            name
        )
        pd.testing.assert_frame_equal(got[name], frame, check_exact=True, obj=name)


def current_files(home: Path) -> dict[str, dict[str, str]]:
    """table -> {'<kind> <start>': path} of the files the catalog's views read."""
    out: dict[str, dict[str, str]] = {}
    with connect_published(home / "finbot.duckdb") as con:
        for table, kind, start, path in con.execute(
            "select table_name, kind, period_start, path from publish_meta.files"
        ).fetchall():
            out.setdefault(table, {})[f"{kind} {start}"] = str(home / path)  # relative to home
    return out


def files_on_disk(home: Path) -> set[str]:
    return {
        str(p)
        for p in (home / "published").glob("*/*")
        if p.is_file() and not p.parent.name.startswith(".")
    }


def referenced(home: Path) -> set[str]:
    with connect_published(home / "finbot.duckdb") as con:
        rows = con.execute(
            "select path from publish_meta.files union all select path from publish_meta.retired"
        ).fetchall()
    return {str(home / r[0]) for r in rows}  # the catalog names files relative to the home


def view_paths(catalog: Path) -> set[str]:
    """The files named in the views' SQL of `catalog` (what a reader actually opens)."""
    with connect_published(catalog) as con:
        sqls = [
            r[0]
            for r in con.execute("select sql from duckdb_views() where not internal").fetchall()
        ]
    return {
        str(catalog.parent / part)  # relative to the home
        for sql in sqls
        for part in sql.split("'")
        if part.endswith(".parquet")
    }


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """40 days of history: 2026-01-01 00:00 .. 2026-02-09 23:00."""
    home = tmp_path / "home"
    home.mkdir()
    add_hours(home / "warehouse.duckdb", hour_range(FIRST_HOUR, datetime(2026, 2, 9, 23)))
    return home


def publish_window(
    home: Path, first: datetime, last: datetime | None = None
) -> publish.PublishResult:
    return publish_marts(
        home / "warehouse.duckdb", home / "finbot.duckdb", "static", (first, last or first)
    )


def publish_full(home: Path) -> publish.PublishResult:
    return publish_marts(home / "warehouse.duckdb", home / "finbot.duckdb", "static")


# --------------------------------------------------------------------------- periods


def test_periods_months_weeks_days() -> None:
    latest = datetime(2026, 2, 16).date()
    assert period_of(datetime(2026, 1, 31).date(), latest) == publish.Period(
        datetime(2026, 1, 1).date(), datetime(2026, 2, 1).date(), "month"
    )
    assert period_of(datetime(2026, 2, 3).date(), latest).kind == "week"
    assert period_of(datetime(2026, 2, 14).date(), latest) == publish.Period(
        datetime(2026, 2, 8).date(), datetime(2026, 2, 15).date(), "week"
    )
    assert period_of(datetime(2026, 2, 15).date(), latest).kind == "day"
    assert period_of(datetime(2026, 2, 16).date(), latest).kind == "day"
    # days 29-31 never make a week: they stay days until the month closes
    end = datetime(2026, 1, 31).date()
    assert period_of(datetime(2026, 1, 29).date(), end).kind == "day"
    assert period_of(datetime(2026, 1, 28).date(), end) == publish.Period(
        datetime(2026, 1, 22).date(), datetime(2026, 1, 29).date(), "week"
    )
    # a leap year's February, December into January
    assert period_of(datetime(2028, 2, 29).date(), datetime(2028, 3, 1).date()).end == (
        datetime(2028, 3, 1).date()
    )
    assert period_of(datetime(2026, 12, 31).date(), datetime(2027, 1, 1).date()).end == (
        datetime(2027, 1, 1).date()
    )


# --------------------------------------------------------------------------- content


def test_full_then_windowed_publishes_equal_the_warehouse(home: Path) -> None:
    result = publish_full(home)
    assert result.full
    assert_published_equals_warehouse(home)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        counts = {
            t: con.execute(f"select count(*) from marts.{t}").fetchone()[0]  # type: ignore[index]
            for t in PERIOD_TABLES + SMALL_TABLES
        }
    assert result.tables == counts
    # period tables are views over Parquet files, small tables are tables
    with connect_published(home / "finbot.duckdb") as con:
        kinds = dict(
            con.execute(
                "select table_name, table_type from information_schema.tables "
                "where table_schema = 'marts'"
            ).fetchall()
        )
        info = con.execute("select published_at, fx_source from marts.publish_info").fetchall()
    assert kinds == {
        **{t: "VIEW" for t in PERIOD_TABLES},
        **{t: "BASE TABLE" for t in (*SMALL_TABLES, "publish_info")},
    }
    assert info == [(result.published_at, "static")]

    # one hour at a time, over a week's end and a month's end, then a burst of hours
    hours = hour_range(datetime(2026, 2, 10), datetime(2026, 2, 10, 2))
    hours += [datetime(2026, 2, 15), datetime(2026, 2, 28, 23), datetime(2026, 3, 1)]
    previous = datetime(2026, 2, 9, 23)
    for hour in hours:
        built = hour_range(previous + timedelta(hours=1), hour)
        add_hours(home / "warehouse.duckdb", built)
        result = publish_window(home, built[0], built[-1])
        assert not result.full
        assert_published_equals_warehouse(home)
        previous = hour
    # readers of the published file work unchanged
    from finbot_pipelines.warehouse.queries import latest_net_worth
    from finbot_pipelines.warehouse.report_data import publish_info

    rows = latest_net_worth(home / "finbot.duckdb")
    assert [(r["profile_id"], r["valuation_hour"]) for r in rows] == [
        ("alice", datetime(2026, 3, 1)),
        ("bruno", datetime(2026, 3, 1)),
    ]
    with connect_published(home / "finbot.duckdb") as con:
        assert publish_info(con) == (result.published_at, "static")


def test_types_survive_including_decimal_and_hugeint(home: Path) -> None:
    publish_full(home)
    with connect_published(home / "finbot.duckdb") as con:
        types = {
            r[0]: r[1] for r in con.execute("describe marts.fct_item_valuation_hourly").fetchall()
        }
        row = con.execute(
            "select value_sub_account_ccy, seq from marts.fct_item_valuation_hourly "
            "order by valuation_hour, seq limit 1"
        ).fetchone()
    assert types["value_sub_account_ccy"] == "DECIMAL(18,4)"
    assert types["seq"] == "HUGEINT"
    assert types["valuation_hour"] == "TIMESTAMP"
    assert types["is_stale"] == "BOOLEAN"
    # 2026-01-01 00:00 is hour 490,896 of the epoch: 490896 % 37 = 17
    assert row == (Decimal("121.2500"), 490_896 * 1000 + 10**20)  # beyond BIGINT, exact


def test_a_windowed_publish_writes_only_the_periods_it_touches(home: Path) -> None:
    publish_full(home)
    before = current_files(home)
    assert set(before["fct_valuation_changes"]) == {
        "month 2026-01-01",
        "week 2026-02-01",
        "day 2026-02-08",
        "day 2026-02-09",
    }

    def changed(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> set[str]:
        keys = {k for t in PERIOD_TABLES for k in old.get(t, {})} | {
            k for t in PERIOD_TABLES for k in new.get(t, {})
        }
        out = set()
        for key in keys:
            paths = [(old.get(t, {}).get(key), new.get(t, {}).get(key)) for t in PERIOD_TABLES]
            if any(a != b for a, b in paths):
                # every period table changes together
                assert all(a != b for a, b in paths), key
                out.add(
                    f"{'+' if paths[0][0] is None else '-' if paths[0][1] is None else '~'}{key}"
                )
        return out

    # a new hour of a new day: one new day file per period table, nothing else rewritten
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10)])
    result = publish_window(home, datetime(2026, 2, 10))
    after = current_files(home)
    assert changed(before, after) == {"+day 2026-02-10"}
    assert result.files_written == len(PERIOD_TABLES)
    assert result.rows_written == {
        "fct_item_valuation_hourly": len(ITEMS),
        "fct_profile_valuation_hourly": 2,
        "fct_valuation_changes": (len(ITEMS) + 2) * len(WINDOWS),
    }

    # the next hour of that day: that day's file is replaced by a new one; the old stays
    # on disk (a reader of the previous catalog may be reading it), listed as retired
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10, 1)])
    result = publish_window(home, datetime(2026, 2, 10, 1))
    again = current_files(home)
    assert changed(after, again) == {"~day 2026-02-10"}
    for table in PERIOD_TABLES:
        assert Path(after[table]["day 2026-02-10"]).exists()
        assert after[table]["day 2026-02-10"] in referenced(home)
    assert result.rows_written["fct_item_valuation_hourly"] == 2 * len(ITEMS)

    # hours up to 02-15: the week of 02-08..02-14 closes, its day files become one file
    built = hour_range(datetime(2026, 2, 10, 2), datetime(2026, 2, 15, 5))
    add_hours(home / "warehouse.duckdb", built)
    publish_window(home, built[0], built[-1])
    week = current_files(home)
    assert changed(again, week) == {
        "-day 2026-02-08",
        "-day 2026-02-09",
        "-day 2026-02-10",
        "+week 2026-02-08",
        "+day 2026-02-15",
    }
    assert_published_equals_warehouse(home)

    # one hour of March: February closes, all its files become one month file; January
    # is untouched
    built = hour_range(datetime(2026, 2, 15, 6), datetime(2026, 3, 1))
    add_hours(home / "warehouse.duckdb", built)
    publish_window(home, datetime(2026, 3, 1))  # the hours before: a failed publish's
    month = current_files(home)
    assert set(month["fct_valuation_changes"]) == {
        "month 2026-01-01",
        "month 2026-02-01",
        "day 2026-03-01",
    }
    for table in PERIOD_TABLES:
        assert month[table]["month 2026-01-01"] == before[table]["month 2026-01-01"]
    assert_published_equals_warehouse(home)

    # a rebuild of a past hour (say, corrected FX): only that month is rewritten
    add_hours(home / "warehouse.duckdb", [datetime(2026, 1, 15, 12)], version=1)
    result = publish_window(home, datetime(2026, 1, 15, 12))
    rebuilt = current_files(home)
    assert changed(month, rebuilt) == {"~month 2026-01-01"}
    assert result.rows_written["fct_item_valuation_hourly"] == 31 * 24 * len(ITEMS)
    assert_published_equals_warehouse(home)

    # every file is in hour order (what lets row groups be skipped), however written
    with duckdb.connect() as con:
        for files in rebuilt.values():
            for path in files.values():
                row = con.execute(
                    "select count(*) filter (where step < interval 0 hour) from ("
                    "select valuation_hour - lag(valuation_hour) over (order by file_row_number)"
                    " as step from read_parquet(?, file_row_number = true))",
                    [path],
                ).fetchone()
                assert row == (0,), path


def test_hours_built_but_never_published_are_caught_up(home: Path) -> None:
    publish_full(home)
    built = hour_range(datetime(2026, 2, 10), datetime(2026, 2, 11, 3))
    add_hours(home / "warehouse.duckdb", built)
    # the publish of 02-10 failed; the next run publishes only its own hour
    publish_window(home, datetime(2026, 2, 11, 3))
    assert_published_equals_warehouse(home)


def test_an_empty_period_table_is_an_empty_table_of_the_same_columns(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute(SCHEMA)
    result = publish_full(home)
    assert result.tables["fct_valuation_changes"] == 0
    assert_published_equals_warehouse(home)
    add_hours(home / "warehouse.duckdb", [FIRST_HOUR])
    publish_window(home, FIRST_HOUR)
    assert_published_equals_warehouse(home)


# --------------------------------------------------------------------------- full again


def test_a_missing_catalog_means_a_full_publish_and_old_files_wait_their_grace(
    home: Path,
) -> None:
    publish_full(home)
    old = files_on_disk(home)
    (home / "finbot.duckdb").unlink()
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10)])
    result = publish_window(home, datetime(2026, 2, 10))
    assert result.full
    assert_published_equals_warehouse(home)
    # no catalog said who reads them: kept for the grace period, then deleted
    assert old <= files_on_disk(home)
    assert old <= referenced(home)


def test_a_moved_home_republishes_with_its_own_paths(home: Path, tmp_path: Path) -> None:
    publish_full(home)
    moved = tmp_path / "moved"
    shutil.copytree(home, moved)
    # the views name their files relative to the home: the copy reads its own at once
    assert all(p.startswith(str(moved / "published")) for p in view_paths(moved / "finbot.duckdb"))
    assert_published_equals_warehouse(moved)
    add_hours(moved / "warehouse.duckdb", [datetime(2026, 2, 10)])
    result = publish_window(moved, datetime(2026, 2, 10))
    assert not result.full  # its files are its own: kept, only the new day written
    paths = view_paths(moved / "finbot.duckdb")
    assert paths and all(p.startswith(str(moved / "published")) for p in paths)
    assert_published_equals_warehouse(moved)
    # the original home's files are not the moved home's to delete
    assert all(Path(p).exists() for p in view_paths(home / "finbot.duckdb"))
    assert_published_equals_warehouse(home)


def test_a_missing_file_or_a_new_column_means_a_full_publish(home: Path) -> None:
    publish_full(home)
    victim = Path(current_files(home)["fct_profile_valuation_hourly"]["month 2026-01-01"])
    victim.unlink()
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10)])
    assert publish_window(home, datetime(2026, 2, 10)).full
    assert_published_equals_warehouse(home)

    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("alter table marts.fct_valuation_changes add column note varchar")
        con.execute("update marts.fct_valuation_changes set note = level || '!'")
    assert publish_window(home, datetime(2026, 2, 10)).full
    assert_published_equals_warehouse(home)


def test_a_mart_that_disappears_is_gone_from_the_catalog(home: Path) -> None:
    publish_full(home)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("drop table marts.mart_valuation_periods")
    publish_window(home, datetime(2026, 2, 9, 23))
    assert "mart_valuation_periods" not in tables_of(home / "finbot.duckdb")
    assert_published_equals_warehouse(home)


def test_a_catalog_of_the_old_layout_is_replaced_by_a_full_publish(home: Path) -> None:
    """The catalog of the previous version: every mart copied into the file, no bookkeeping."""
    with duckdb.connect(str(home / "finbot.duckdb")) as con:
        con.execute(f"attach '{home / 'warehouse.duckdb'}' as wh (read_only)")
        con.execute("create schema marts")
        for table in PERIOD_TABLES + SMALL_TABLES:
            con.execute(f"create table marts.{table} as select * from wh.marts.{table}")
        con.execute("create table marts.publish_info as select now()::timestamp as published_at")
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10)])
    assert publish_window(home, datetime(2026, 2, 10)).full
    assert_published_equals_warehouse(home)


def test_a_window_may_be_timezone_aware_but_not_reversed(home: Path) -> None:
    from datetime import UTC

    publish_full(home)
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10)])
    aware = datetime(2026, 2, 10, tzinfo=UTC)
    result = publish_marts(
        home / "warehouse.duckdb", home / "finbot.duckdb", "static", (aware, aware)
    )
    assert not result.full
    assert_published_equals_warehouse(home)
    with pytest.raises(ValueError, match="starts after it ends"):
        publish_window(home, datetime(2026, 2, 10), datetime(2026, 2, 9))


# --------------------------------------------------------------------------- garbage


def test_unreferenced_files_are_deleted_after_the_grace_period_only(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [datetime(2026, 2, 10, 0, 5)]
    monkeypatch.setattr(publish, "_utcnow", lambda: clock[0])
    publish_full(home)
    # a reader that opened this catalog (a copy of it reads the same files)
    reader = home / "reader.duckdb"  # in the home: the views name files relative to it
    shutil.copy(home / "finbot.duckdb", reader)
    expected = tables_of(reader)["fct_valuation_changes"]

    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 9, 23)], version=1)
    clock[0] += timedelta(hours=1)
    retired_at = clock[0]
    publish_window(home, datetime(2026, 2, 9, 23))
    replaced = set(view_paths(reader)) - set(view_paths(home / "finbot.duckdb"))
    assert len(replaced) == len(PERIOD_TABLES)  # the 02-09 day files

    # just before the end of the grace period: still there, the old reader still reads
    clock[0] = retired_at + GRACE - timedelta(seconds=1)
    result = publish_window(home, datetime(2026, 2, 9, 23))
    assert result.files_deleted == 0
    assert all(Path(p).exists() for p in replaced)
    pd.testing.assert_frame_equal(tables_of(reader)["fct_valuation_changes"], expected)

    clock[0] = retired_at + GRACE
    result = publish_window(home, datetime(2026, 2, 9, 23))
    assert result.files_deleted == len(PERIOD_TABLES)
    assert not any(Path(p).exists() for p in replaced)
    assert files_on_disk(home) <= referenced(home)
    assert_published_equals_warehouse(home)
    with connect_published(reader) as con, pytest.raises(duckdb.IOException):
        con.execute("select count(*) from marts.fct_valuation_changes").fetchall()


def test_files_no_catalog_references_are_deleted_at_once(home: Path) -> None:
    publish_full(home)
    orphan = home / "published" / "fct_valuation_changes" / "2026-02-09.day.x.parquet"
    orphan.write_bytes(b"half a file")
    stale_tmp = home / ".finbot.duckdb.20260101T000000000000-abcdef.tmp"
    stale_tmp.write_bytes(b"half a catalog")
    result = publish_window(home, datetime(2026, 2, 9, 23))
    assert not orphan.exists() and not stale_tmp.exists()
    assert result.files_deleted >= 1
    assert files_on_disk(home) <= referenced(home)


# --------------------------------------------------------------------------- crash


CRASH = """
import os, signal, sys
from datetime import datetime
from pathlib import Path
from finbot_pipelines.warehouse import publish

home, point, hour = Path(sys.argv[1]), sys.argv[2], datetime.fromisoformat(sys.argv[3])

def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)

if point.startswith("write_period"):
    original, calls = publish._write_period, [0]
    def write_period(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(point.split(":")[1]):
            die()
        return original(*args, **kwargs)
    publish._write_period = write_period
elif point == "catalog":
    original_catalog = publish._write_catalog
    def write_catalog(*args, **kwargs):
        original_catalog(*args, **kwargs)
        die()
    publish._write_catalog = write_catalog
elif point == "gc":
    original_delete = publish._delete
    def delete(*args, **kwargs):
        die()
    publish._delete = delete
publish.publish_marts(home / "warehouse.duckdb", home / "finbot.duckdb", "static", (hour, hour))
"""


@pytest.mark.parametrize("point", ["write_period:1", "write_period:3", "catalog", "gc"])
def test_a_publish_killed_midway_leaves_a_complete_catalog(home: Path, point: str) -> None:
    publish_full(home)
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10)])
    publish_window(home, datetime(2026, 2, 10))
    before = tables_of(home / "finbot.duckdb")

    hour = datetime(2026, 2, 10, 1)
    add_hours(home / "warehouse.duckdb", [hour])
    # touch the retired files' list too: a version change of the latest hour
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(home), point, hour.isoformat()],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    # readers see a complete catalog: the old one, or (killed after the rename) the new one
    got = tables_of(home / "finbot.duckdb")
    if point == "gc":
        assert_published_equals_warehouse(home)
    else:
        for name, frame in before.items():
            pd.testing.assert_frame_equal(got[name], frame, obj=name)

    # the next publish succeeds, equals the warehouse, and cleans up after the dead one
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10, 2)])
    publish_window(home, datetime(2026, 2, 10, 2))
    assert_published_equals_warehouse(home)
    assert files_on_disk(home) <= referenced(home)
    assert not list(home.glob(".finbot.duckdb.*"))


def test_a_publish_that_raises_leaves_the_old_catalog_and_no_files(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_full(home)
    before = tables_of(home / "finbot.duckdb")
    on_disk = files_on_disk(home)
    original, calls = publish._write_period, [0]

    def failing(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 2:
            raise OSError("disk full")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(publish, "_write_period", failing)
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10)])
    with pytest.raises(OSError, match="disk full"):
        publish_window(home, datetime(2026, 2, 10))
    assert files_on_disk(home) == on_disk
    got = tables_of(home / "finbot.duckdb")
    for name, frame in before.items():
        pd.testing.assert_frame_equal(got[name], frame, obj=name)
    monkeypatch.setattr(publish, "_write_period", original)
    publish_window(home, datetime(2026, 2, 10))
    assert_published_equals_warehouse(home)


# --------------------------------------------------------------------------- readers


READER = """
import json, sys
from pathlib import Path
import duckdb

catalog, stop, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
ITEMS_PER_PROFILE, N_CHANGES = int(sys.argv[4]), int(sys.argv[5])
CHECK = '''
    with items as (
        select profile_id, valuation_hour, count(*) as n, sum(value) as total
        from marts.fct_item_valuation_hourly group by all
    ),
    profiles as (
        select profile_id, valuation_hour, net_worth from marts.fct_profile_valuation_hourly
    ),
    changes as (
        select valuation_hour, count(*) as n from marts.fct_valuation_changes group by all
    ),
    hours as (select distinct valuation_hour from profiles)
    select
        (select count(*) from profiles full join items using (profile_id, valuation_hour)
         where items.n is distinct from ? or abs(items.total - profiles.net_worth) > 1e-6),
        (select count(*) from hours left join changes using (valuation_hour)
         where changes.n is distinct from ?),
        (select count(*) from hours),
        (select datediff('hour', min(valuation_hour), max(valuation_hour)) + 1 from hours),
        (select max(valuation_hour) from hours)::varchar
'''
# "hold": one connection opened first and kept across every publish; "reconnect": a new
# connection for every query (in one process DuckDB shares the instance of a path that is
# open, so the two ways of reading need two processes)
held = duckdb.connect(catalog, read_only=True) if mode == "hold" else None
seen, checks = set(), 0
while not stop.exists():
    con = held or duckdb.connect(catalog, read_only=True)
    bad_items, bad_changes, hours, span, latest = con.execute(
        CHECK, [ITEMS_PER_PROFILE, N_CHANGES]
    ).fetchone()
    if bad_items or bad_changes or hours != span:
        print(json.dumps(["incomplete", latest, bad_items, bad_changes, hours, span]))
        sys.exit(1)
    seen.add(latest)
    checks += 1
    if con is not held:
        con.close()
print(json.dumps(["ok", checks, sorted(seen)]))
"""


def test_readers_across_24_publishes(home: Path, tmp_path: Path) -> None:
    """Readers never block a publish and every query sees whole hours only; a reader that
    keeps the catalog it opened first keeps reading it (its files are in their grace
    period), one that reconnects sees the new hours."""
    import json

    publish_full(home)
    stop = tmp_path / "stop"
    readers = {
        mode: subprocess.Popen(
            [
                sys.executable,
                "-c",
                READER,
                str(home / "finbot.duckdb"),
                str(stop),
                mode,
                str(ITEMS_PER_PROFILE),
                str((len(ITEMS) + 2) * len(WINDOWS)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=home,  # a plain DuckDB client in the home: the views' relative paths resolve
        )
        for mode in ("hold", "reconnect")
    }
    try:
        time.sleep(1.0)  # both readers are reading
        hour = datetime(2026, 2, 9, 23)
        for _ in range(24):
            hour += timedelta(hours=1)
            add_hours(home / "warehouse.duckdb", [hour])
            result = publish_window(home, hour)
            assert not result.full
            time.sleep(0.2)  # let the readers query this catalog
            for reader in readers.values():
                assert reader.poll() is None, reader.communicate()
    finally:
        stop.touch()
        outputs = {mode: reader.communicate(timeout=120) for mode, reader in readers.items()}
    seen: dict[str, list[str]] = {}
    for mode, (out, err) in outputs.items():
        assert readers[mode].returncode == 0, out + err
        status, checks, seen[mode] = json.loads(out.strip().splitlines()[-1])
        assert status == "ok" and checks > 24, mode
    assert seen["hold"] == ["2026-02-09 23:00:00"]
    assert "2026-02-10 23:00:00" in seen["reconnect"] and len(seen["reconnect"]) > 12
    assert_published_equals_warehouse(home)


def test_publishers_take_turns(home: Path) -> None:
    """Two publishes at once (the pool should prevent it): the lock serialises them."""
    publish_full(home)
    add_hours(home / "warehouse.duckdb", [datetime(2026, 2, 10)])
    code = textwrap.dedent(
        """
        import sys
        from datetime import datetime
        from pathlib import Path
        from finbot_pipelines.warehouse.publish import publish_marts
        home, hour = Path(sys.argv[1]), datetime(2026, 2, 10)
        for _ in range(5):
            publish_marts(home / "warehouse.duckdb", home / "finbot.duckdb", "static", (hour, hour))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(home)], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    assert_published_equals_warehouse(home)
    assert files_on_disk(home) <= referenced(home)
    assert os.path.exists(home / "published" / ".lock")
