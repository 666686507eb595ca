"""FX checks in dbt: a stale rate warns; a missing pair warns by name, its item is NULL (never
0 or 1) and counted, and the rest of the household is valued."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

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
                    HOUR,
                    account,
                    "usd",
                    "Cash",
                    "asset",
                    "cash",
                    "cash",
                    None,
                    Decimal("1000"),
                    None,
                    None,
                )
            )
        write_hour_batch(con, batch)


def test_stale_rate_warns_and_a_missing_pair_warns_by_name_without_blocking(
    tmp_path: Path,
) -> None:
    warehouse = tmp_path / "wh.duckdb"
    _land(warehouse)
    runner = DbtRunner(warehouse, tmp_path)
    proc = runner.run("build", check=False)
    assert proc.returncode == 0, proc.stdout  # one unpriced pair never blocks the household
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    status = {r["unique_id"].split(".")[2]: (r["status"], r["failures"]) for r in results}
    # two stale currencies: the USD and GBP legs of USD->GBP both date from 2026-02-05
    assert status["assert_fx_rates_fresh"] == ("warn", 2)
    assert status["assert_fx_rates_available"] == ("warn", 1)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        pairs = con.execute("select pair from intermediate.int_fx_missing_pairs").fetchall()
        values = con.execute(
            "select profile_id, net_worth, unvalued_items from marts.fct_profile_valuation_hourly "
            "order by 1"
        ).fetchall()
        items = con.execute(
            "select profile_id, value, is_unvalued, is_fx_missing "
            "from marts.fct_item_valuation_hourly order by 1"
        ).fetchall()
    assert pairs == [("USD->CHF",)]
    # CHF: the item is NULL and counted, never 0 or 1; nothing else is in that profile
    assert items[0] == ("ch", None, True, True)
    assert values[0] == ("ch", Decimal(0), 1)
    # GBP is valued at the (stale) rate, to 10 decimals
    assert items[1][0] == "gb" and items[1][2:] == (False, False)
    assert values[1][0] == "gb" and values[1][2] == 0
    assert values[1][1] == Decimal(1000 / 1.08 * 0.87).quantize(Decimal("1e-10"))
