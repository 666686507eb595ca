"""Late, re-run, back-filled and recovered hours give exactly what a full refresh gives.

The raw history of a small household (the deterministic dummy provider, landed with
the production write path) arrives in a shuffled order: later hours first, a
back-fill of the oldest ones, an account's failed hours re-run after they recovered.
After each arrival dbt builds the window the orchestrator
would build (the arrived hours and every later one, `with_dependents`). At the end
every hourly model equals a full refresh of the same raw data, row for row.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from finbot_pipelines.defs.window import HourWindow, with_dependents
from finbot_pipelines.providers.contract import Snapshot
from finbot_pipelines.providers.dummy.provider import dummy_snapshot
from finbot_pipelines.warehouse.build_window import latest_ingested_hour
from finbot_pipelines.warehouse.raw import (
    AccountHourRow,
    FetchRow,
    HourBatch,
    ItemRow,
    SubAccountRow,
    ensure_raw_schema,
    replace_fx_rates,
    replace_profiles,
    write_hour_batch,
)
from finbot_pipelines_tests.dbt_helpers import DbtRunner

START = datetime(2026, 10, 30, 0)  # a Friday: the history crosses into the weekend
HOURS = 48
PROFILES = [("alice", "Alice", "GBP"), ("bob", "Bob", "EUR")]
ACCOUNTS = {  # id -> (profile, dummy options)
    "a-bank": ("alice", {"sub_accounts": ["cash", "credit_card"]}),
    "a-invest": ("alice", {"sub_accounts": ["stocks", "crypto"]}),
    "b-bank": ("bob", {"sub_accounts": ["cash", "mortgage"], "scale": 0.7}),
}
#: a-invest fails at these hours the first time they are fetched, and recovers on a re-run
FAILING = {20, 21, 22, 23, 41}  # 23 is the last hour of the Friday


def hour(h: int) -> datetime:
    return START + timedelta(hours=h)


def batch(hours: list[int], *, failed: set[int] = frozenset()) -> HourBatch:  # type: ignore[assignment]
    """What the ingest lands for ``hours``: every account, a-invest failing at ``failed``."""
    b = HourBatch([], [], [], [], [])
    for h in hours:
        at = hour(h)
        for account, (profile, options) in ACCOUNTS.items():
            b.keys.append((at, account))
            b.account_hours.append(AccountHourRow(at, profile, account, "dummy", account, "active"))
            ok = not (account == "a-invest" and h in failed)
            b.fetches.append(
                FetchRow(
                    at,
                    profile,
                    account,
                    "dummy",
                    at,
                    at,
                    "success" if ok else "failure",
                    None if ok else "transient",
                    None if ok else "simulated",
                    1,
                )
            )
            if not ok:
                continue
            snap: Snapshot = dummy_snapshot(account, options, at)
            for sa in snap.sub_accounts:
                b.sub_accounts.append(
                    SubAccountRow(at, account, sa.id, sa.name, sa.currency, sa.account_type)
                )
                b.items.extend(
                    ItemRow(
                        at,
                        account,
                        sa.id,
                        it.name,
                        it.item_type,
                        it.asset_class,
                        it.asset_type,
                        it.units,
                        it.value,
                        it.currency,
                        it.symbol,
                        it.unit,
                    )
                    for it in sa.items
                )
    return b


def prepare(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        ensure_raw_schema(con)
        replace_profiles(con, PROFILES)
        days = [date(2026, 10, 26) + timedelta(days=i) for i in range(8)]
        business = [d for d in days if d.weekday() < 5]
        replace_fx_rates(
            con,
            business,
            [
                (d, "EUR", ccy, rate * (1 + 0.001 * i), "ecb")
                for i, d in enumerate(business)
                for ccy, rate in (("GBP", 0.8745), ("USD", 1.0865))
            ],
        )


def window_vars(first: int, last: int, warehouse: Path) -> dict[str, str]:
    """The window the dbt asset builds after hours [first, last] landed."""
    with duckdb.connect(str(warehouse)) as con:
        latest = latest_ingested_hour(con)
    window = with_dependents(HourWindow(hour(first), hour(last)), latest)
    return {
        "min_hour": window.first.strftime("%Y-%m-%d %H:%M:%S"),
        "max_hour": window.last.strftime("%Y-%m-%d %H:%M:%S"),
    }


def model_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('intermediate', 'marts') and table_type = 'BASE TABLE' "
            "order by 1, 2"
        ).fetchall()
        return {
            f"{s}.{t}": sorted(con.execute(f'select * from "{s}"."{t}"').fetchall(), key=repr)
            for s, t in tables
        }


def test_with_dependents_extends_to_the_latest_hour() -> None:
    w = HourWindow(hour(3), hour(5))
    assert with_dependents(w, None) == w
    assert with_dependents(w, hour(4)) == w
    assert with_dependents(w, hour(5)) == w
    assert with_dependents(w, hour(9)) == HourWindow(hour(3), hour(9))


@pytest.mark.parametrize("seed", [20261201])
def test_shuffled_arrivals_equal_a_full_refresh(tmp_path: Path, seed: int) -> None:
    incremental = tmp_path / "incremental.duckdb"
    full = tmp_path / "full.duckdb"
    prepare(incremental)
    prepare(full)
    rng = random.Random(seed)
    # the arrivals: chunks of hours in a shuffled order, the failing hours failing first
    chunks = [list(range(s, min(s + 16, HOURS))) for s in range(0, HOURS, 16)]
    rng.shuffle(chunks)
    arrivals: list[tuple[list[int], set[int]]] = [(c, FAILING) for c in chunks]
    arrivals.append((sorted(FAILING), set()))  # the failed hours, re-run after recovering
    # (an hour re-run unchanged: test_dbt_marts and test_pipeline check idempotence)
    runner = DbtRunner(incremental, tmp_path / "incremental")
    for hours, failed in arrivals:
        with duckdb.connect(str(incremental)) as con:
            write_hour_batch(con, batch(hours, failed=failed))
        runner.run(
            "run",
            dbt_vars=window_vars(min(hours), max(hours), incremental),
        )
    # the same raw history, landed once with its final outcomes, built from scratch
    with duckdb.connect(str(full)) as con:
        write_hour_batch(con, batch(list(range(HOURS))))
    DbtRunner(full, tmp_path / "full").run("run", "--full-refresh")

    got, want = model_tables(incremental), model_tables(full)
    assert set(got) == set(want)
    assert "marts.fct_valuation_changes" in got and "marts.mart_valuation_periods" in got
    for table in want:
        assert len(got[table]) == len(want[table]), table
        differ = [(g, w) for g, w in zip(got[table], want[table], strict=True) if g != w]
        assert not differ, f"{table}: {len(differ)} rows differ, e.g. {differ[0]}"
    # a late hour really changed later ones: hour 23 was carried from hour 19 until its
    # re-run; now it is fresh, and the 1h change at hour 24 refers to it
    with duckdb.connect(str(incremental), read_only=True) as con:
        (stale,) = con.execute(
            "select is_stale from marts.fct_linked_account_valuation_hourly "
            "where linked_account_id = 'a-invest' and valuation_hour = ?",
            [hour(23)],
        ).fetchone() or (None,)
        (reference,) = con.execute(
            "select reference_hour from marts.fct_valuation_changes where level = 'profile' "
            "and entity_id = 'alice' and change_window = '1h' and valuation_hour = ?",
            [hour(24)],
        ).fetchone() or (None,)
    assert stale is False
    assert reference == hour(23)
