"""FX checks in dbt: a stale rate warns, a missing pair fails by name and is never 0 or 1."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

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

HOUR = datetime(2026, 2, 20, 10)  # a Friday


def _land(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        ensure_raw_schema(con)
        # 'gb' values in GBP, 'ch' in CHF: no CHF rate exists anywhere
        replace_profiles(con, [("gb", "GB", "GBP"), ("ch", "CH", "CHF")])
        # the only rates are from 2026-02-05: 11 business days before the hour
        replace_fx_rates(
            con,
            [date(2026, 2, 5)],
            [
                (date(2026, 2, 5), "EUR", "GBP", 0.87, "ecb"),
                (date(2026, 2, 5), "EUR", "USD", 1.08, "ecb"),
            ],
        )
        batch = HourBatch([], [], [], [], [])
        for profile, account in (("gb", "gb-bank"), ("ch", "ch-bank")):
            batch.keys.append((HOUR, account))
            batch.account_hours.append(
                AccountHourRow(HOUR, profile, account, "dummy", account, "active")
            )
            batch.fetches.append(
                FetchRow(HOUR, profile, account, "dummy", HOUR, HOUR, "success", None, None, 1)
            )
            batch.sub_accounts.append(
                SubAccountRow(HOUR, account, "usd", "USD", "USD", "depository")
            )
            batch.items.append(
                ItemRow(
                    HOUR, account, "usd", "Cash", "asset", "cash", "cash", None, 1000.0, None, None
                )
            )
        write_hour_batch(con, batch)


def test_stale_rate_warns_and_missing_pair_fails_by_name(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    _land(warehouse)
    runner = DbtRunner(warehouse, tmp_path)
    proc = runner.run("build", check=False)
    assert proc.returncode == 1  # the missing pair is an error
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    status = {r["unique_id"].split(".")[2]: (r["status"], r["failures"]) for r in results}
    # two stale currencies: the USD and GBP legs of USD->GBP both date from 2026-02-05
    assert status["assert_fx_rates_fresh"] == ("warn", 2)
    assert status["assert_fx_rates_available"][0] == "fail"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        pairs = con.execute("select pair from intermediate.int_fx_missing_pairs").fetchall()
        values = con.execute(
            "select profile_id, net_worth from marts.fct_profile_valuation_hourly order by 1"
        ).fetchall()
    assert pairs == [("USD->CHF",)]
    # GBP is valued at the (stale) rate; CHF is NULL, never 0 or 1
    assert values[0][0] == "ch" and values[0][1] is None
    assert values[1][0] == "gb"
    assert values[1][1] == pytest.approx(1000.0 / 1.08 * 0.87, rel=1e-12)
