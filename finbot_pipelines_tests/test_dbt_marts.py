"""The dbt project end to end, without Dagster: raw rows in a tmp DuckDB file, dbt run
as a subprocess, marts checked against numbers computed independently in Python.

Two warehouses are built from the same raw rows: one with a single full `dbt build`,
one incrementally, window after window, the way Dagster runs drive it: the window in
the `finbot_control.build_window` table (what the Dagster asset writes), or, every
other window, as `--vars min_hour/max_hour`. Every mart must be identical in both.
"""

from __future__ import annotations

import bisect
import re
import shutil
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from finbot_pipelines.warehouse.build_window import clear_build_window, set_build_window
from finbot_pipelines_tests.dbt_helpers import (
    FX_RATES,
    HOURS,
    N_HOURS,
    DbtRunner,
    hour_str,
    populate_raw,
)

MARTS: dict[str, list[str]] = {
    "fct_profile_valuation_hourly": ["profile_id", "valuation_hour"],
    "fct_linked_account_valuation_hourly": ["profile_id", "linked_account_id", "valuation_hour"],
    "fct_sub_account_valuation_hourly": [
        "profile_id",
        "linked_account_id",
        "sub_account_id",
        "valuation_hour",
    ],
    "fct_item_valuation_hourly": [
        "profile_id",
        "linked_account_id",
        "sub_account_id",
        "item_name",
        "valuation_hour",
    ],
    "fct_valuation_changes": [
        "profile_id",
        "level",
        "entity_id",
        "valuation_hour",
        "change_window",
    ],
    "mart_wealth_distribution": ["profile_id", "valuation_hour", "dimension", "side", "bucket"],
    "mart_valuation_periods": ["profile_id", "frequency", "period_start"],
    "mart_linked_account_health": ["profile_id", "linked_account_id"],
}
INTERMEDIATE: dict[str, list[str]] = {
    "int_consistent_snapshot": ["valuation_hour", "linked_account_id"],
    "int_fx_rates_hourly": ["valuation_hour", "from_ccy", "to_ccy"],
}

# The incremental build, in order: the first two days at once, a single hour (the frozen
# account starts at hour 48), a range through an outage, a longer one, the rest (the
# removal at hour 100), and finally an earlier window rebuilt (idempotence). Arrivals
# out of order (late, re-run, back-filled hours) are tested in test_history_order.
INCREMENTAL_WINDOWS = [
    (0, 47),
    (48, 48),
    (49, 56),
    (57, 98),
    (99, N_HOURS - 1),
    (20, 29),
]


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def raw_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "template.duckdb"
    populate_raw(path)
    return path


@pytest.fixture(scope="module")
def full_build(raw_template: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("full")
    warehouse = work / "warehouse.duckdb"
    shutil.copy(raw_template, warehouse)
    runner = DbtRunner(warehouse, work)
    proc = runner.run("build", check=False)
    return warehouse, proc


@pytest.fixture(scope="module")
def full_warehouse(full_build) -> Path:
    warehouse, proc = full_build
    assert proc.returncode == 0, proc.stdout[-8000:]
    return warehouse


@pytest.fixture(scope="module")
def incremental_warehouse(raw_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("incremental")
    warehouse = work / "warehouse.duckdb"
    shutil.copy(raw_template, warehouse)
    runner = DbtRunner(warehouse, work)
    last = len(INCREMENTAL_WINDOWS) - 1
    for i, (lo, hi) in enumerate(INCREMENTAL_WINDOWS):
        # build (models + window-scoped data tests) at the ends, run in between
        command = "build" if i in (0, last) else "run"
        if i % 2 == 0:
            with duckdb.connect(str(warehouse)) as con:
                set_build_window(con, (HOURS[lo], HOURS[hi]))
            runner.run(command)
            with duckdb.connect(str(warehouse)) as con:
                clear_build_window(con)
        else:
            runner.run(command, dbt_vars={"min_hour": hour_str(lo), "max_hour": hour_str(hi)})
    return warehouse


def read_table(warehouse: Path, schema: str, table: str, keys: list[str]) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(f"select * from {schema}.{table}").fetchall()
        columns = [d[0] for d in con.description]
    finally:
        con.close()
    frame = pd.DataFrame.from_records(rows, columns=columns)
    # DECIMAL amounts as floats for the arithmetic below (the conversion is deterministic:
    # equal decimals stay equal)
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, Decimal)).any():
            frame[column] = frame[column].map(lambda v: None if v is None else float(v))
    return frame.sort_values(keys).reset_index(drop=True)


@pytest.fixture(scope="module")
def marts(full_warehouse: Path) -> dict[str, pd.DataFrame]:
    return {name: read_table(full_warehouse, "marts", name, keys) for name, keys in MARTS.items()}


# ---------------------------------------------------------------------------
# the independent model of the valuation, straight from the raw rows


def _latest_at_or_before(sorted_values: list, value):
    i = bisect.bisect_right(sorted_values, value)
    return sorted_values[i - 1] if i else None


def expected_profile_valuation(warehouse: Path) -> dict[tuple[str, datetime], dict]:
    """Net worth per (profile, hour): each account the profile has at the hour counts
    with its latest successful fetch at or before it; sub-account values converted at
    the hour's rate, cross rates through EUR, the last published date for weekends."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        account_hours = con.execute(
            "select fetch_hour, profile_id, linked_account_id from raw.linked_account_hours"
        ).fetchall()
        successes = con.execute(
            "select linked_account_id, fetch_hour from raw.fetches where status = 'success'"
        ).fetchall()
        sub_accounts = con.execute(
            "select fetch_hour, linked_account_id, sub_account_id, currency from raw.sub_accounts"
        ).fetchall()
        items = con.execute(
            "select fetch_hour, linked_account_id, sub_account_id, item_type, value from raw.items"
        ).fetchall()
        profile_ccy = dict(
            con.execute("select profile_id, valuation_ccy from raw.profiles").fetchall()
        )
        fx_rows = con.execute("select rate_date, quote_ccy, rate from raw.fx_rates").fetchall()
    finally:
        con.close()

    success_hours: dict[str, list[datetime]] = defaultdict(list)
    for account, hour in successes:
        success_hours[account].append(hour)
    for hours in success_hours.values():
        hours.sort()
    subs_of_fetch: dict[tuple[str, datetime], list[tuple[str, str]]] = defaultdict(list)
    for hour, account, sub, ccy in sub_accounts:
        subs_of_fetch[(account, hour)].append((sub, ccy))
    items_of_sub: dict[tuple[str, datetime, str], list[tuple[str, float]]] = defaultdict(list)
    for hour, account, sub, item_type, value in items:
        items_of_sub[(account, hour, sub)].append((item_type, value))
    fx: dict[str, dict[date, float]] = defaultdict(dict)
    for rate_date, ccy, rate in fx_rows:
        fx[ccy][rate_date] = rate
    fx_dates = {ccy: sorted(rates) for ccy, rates in fx.items()}

    def eur_to(ccy: str, day: date) -> float:
        if ccy == "EUR":
            return 1.0
        published = _latest_at_or_before(fx_dates[ccy], day)
        assert published is not None, f"no {ccy} rate on or before {day}"
        return fx[ccy][published]

    expected: dict[tuple[str, datetime], dict] = {}
    for hour, profile, account in account_hours:
        row = expected.setdefault(
            (profile, hour),
            {"assets": 0.0, "liabilities": 0.0, "stale": 0, "with_data": 0},
        )
        source = _latest_at_or_before(success_hours.get(account, []), hour)
        if source is None or source < hour:
            row["stale"] += 1
        if source is None:
            continue
        row["with_data"] += 1
        to_ccy = profile_ccy[profile]
        for sub, ccy in subs_of_fetch[(account, source)]:
            rate = eur_to(to_ccy, hour.date()) / eur_to(ccy, hour.date())
            for item_type, value in items_of_sub[(account, source, sub)]:
                row["assets" if item_type == "asset" else "liabilities"] += float(value) * rate
    return {key: row for key, row in expected.items() if row["with_data"] > 0}


# ---------------------------------------------------------------------------
# 1. net worth against the independent computation


def test_net_worth_matches_independent_computation(full_warehouse, marts):
    expected = expected_profile_valuation(full_warehouse)
    profile = marts["fct_profile_valuation_hourly"]
    actual = {
        (r.profile_id, r.valuation_hour.to_pydatetime()): r for r in profile.itertuples(index=False)
    }
    assert set(actual) == set(expected)
    assert len(actual) == 2 * N_HOURS  # both profiles have data from the first hour on
    for key, exp in expected.items():
        got = actual[key]
        assert got.total_assets == pytest.approx(exp["assets"], rel=1e-9), key
        assert got.total_liabilities == pytest.approx(exp["liabilities"], rel=1e-9), key
        assert got.net_worth == pytest.approx(exp["assets"] + exp["liabilities"], rel=1e-9), key
        assert got.stale_accounts == exp["stale"], key
    assert set(profile.valuation_ccy[profile.profile_id == "alice"]) == {"GBP"}
    assert set(profile.valuation_ccy[profile.profile_id == "bob"]) == {"EUR"}


def test_consistent_snapshot_scenarios(marts):
    linked = marts["fct_linked_account_valuation_hourly"].set_index(
        ["linked_account_id", "valuation_hour"]
    )

    def at(account: str, h: int):
        return linked.loc[(account, pd.Timestamp(HOURS[h]))]

    # alice-bank fails hours 30..35: last good data from hour 29, carried, flagged stale
    for h in range(30, 36):
        row = at("alice-bank", h)
        assert row.source_fetch_hour == pd.Timestamp(HOURS[29])
        assert bool(row.is_stale) and row.stale_hours == h - 29
        assert row.value == pytest.approx(at("alice-bank", 29).value, rel=0.02)
    assert not bool(at("alice-bank", 36).is_stale)
    # the frozen house keeps its hour-47 data, still counted
    row = at("alice-house", 120)
    assert row.source_fetch_hour == pd.Timestamp(HOURS[47]) and row.account_state == "frozen"
    # kraken removed at hour 100: counted before, gone after, history kept
    kraken_hours = linked.xs("alice-kraken", level="linked_account_id").index
    assert kraken_hours.max() == pd.Timestamp(HOURS[99])
    assert kraken_hours.min() == pd.Timestamp(HOURS[0])
    # bob-pension never succeeded in hours 0..3: no value, but counted stale
    pension_hours = linked.xs("bob-pension", level="linked_account_id").index
    assert pension_hours.min() == pd.Timestamp(HOURS[4])
    profile = marts["fct_profile_valuation_hourly"].set_index(["profile_id", "valuation_hour"])
    assert profile.loc[("bob", pd.Timestamp(HOURS[2]))].stale_accounts == 1
    # the empty sub-account is there, worth 0
    subs = marts["fct_sub_account_valuation_hourly"]
    empty = subs[subs.sub_account_id == "empty"]
    assert len(empty) > 0 and (empty.value == 0).all() and (empty.item_count == 0).all()


def test_fx_weekend_carries_friday_and_crosses_through_eur(marts):
    items = marts["fct_item_valuation_hourly"]
    friday = FX_RATES[date(2026, 10, 30)]
    # Sunday 11-01 12:00, a USD sub-account of the GBP profile: Friday's GBP/USD cross
    sunday = pd.Timestamp(datetime(2026, 11, 1, 12))
    usd_in_gbp = items[
        (items.valuation_hour == sunday)
        & (items.sub_account_ccy == "USD")
        & (items.profile_id == "alice")
    ]
    assert len(usd_in_gbp) > 0
    for rate in usd_in_gbp.fx_rate:
        assert rate == pytest.approx(friday["GBP"] / friday["USD"], rel=1e-12)
    # Monday 11-02 (no rate published) still uses Friday; Tuesday its own rate
    tuesday_rates = FX_RATES[date(2026, 11, 3)]
    for when, rates in (
        (datetime(2026, 11, 2, 9), friday),
        (datetime(2026, 11, 3, 9), tuesday_rates),
    ):
        gbp_in_eur = items[
            (items.valuation_hour == pd.Timestamp(when))
            & (items.sub_account_ccy == "GBP")
            & (items.profile_id == "bob")
        ]
        assert len(gbp_in_eur) > 0
        assert gbp_in_eur.fx_rate.iloc[0] == pytest.approx(1 / rates["GBP"], rel=1e-12)
    assert not items.is_fx_missing.any()


# ---------------------------------------------------------------------------
# 2. reconciliation identities at every hour


def _assert_sums(child: pd.DataFrame, parent: pd.DataFrame, keys: list[str], pairs: dict[str, str]):
    sums = child.groupby(keys, as_index=False)[list(pairs.values())].sum()
    merged = parent.merge(sums, on=keys, how="outer", suffixes=("", "_children"), indicator=True)
    assert (merged["_merge"] != "right_only").all(), "children without a parent"
    for parent_col, child_col in pairs.items():
        child_col_name = child_col if child_col != parent_col else f"{child_col}_children"
        got = merged[child_col_name].fillna(0.0)
        want = merged[parent_col]
        tol = 1e-6 * pd.concat([got.abs(), want.abs()], axis=1).max(axis=1).clip(lower=1.0)
        bad = merged[(got - want).abs() > tol]
        assert bad.empty, bad.head()


def test_reconciliation_identities(marts):
    items = marts["fct_item_valuation_hourly"].copy()
    items["liability_value"] = items.value.where(items.item_type == "liability", 0.0)
    subs = marts["fct_sub_account_valuation_hourly"]
    linked = marts["fct_linked_account_valuation_hourly"]
    profile = marts["fct_profile_valuation_hourly"]
    sub_keys = ["profile_id", "linked_account_id", "sub_account_id", "valuation_hour"]
    _assert_sums(
        items,
        subs,
        sub_keys,
        {
            "value_sub_account_ccy": "value_sub_account_ccy",
            "value": "value",
            "total_liabilities": "liability_value",
        },
    )
    _assert_sums(
        subs,
        linked,
        ["profile_id", "linked_account_id", "valuation_hour"],
        {
            "value": "value",
            "total_assets": "total_assets",
            "total_liabilities": "total_liabilities",
        },
    )
    _assert_sums(
        linked.rename(columns={"value": "linked_value"}),
        profile,
        ["profile_id", "valuation_hour"],
        {
            "net_worth": "linked_value",
            "total_assets": "total_assets",
            "total_liabilities": "total_liabilities",
        },
    )
    assert (profile.net_worth - profile.total_assets - profile.total_liabilities).abs().max() < 1e-6
    assert (profile.total_liabilities < 0).all() and (profile.total_assets > 0).all()

    # the distribution splits the same totals, shares sum to 1 per side
    dist = marts["mart_wealth_distribution"]
    assert set(dist.dimension) == {
        "linked_account",
        "asset_class",
        "asset_type",
        "currency",
        "provider",
    }
    shares = dist.groupby(["profile_id", "valuation_hour", "dimension", "side"]).share.sum()
    assert (shares - 1).abs().max() < 1e-9
    totals = dist.pivot_table(
        index=["profile_id", "valuation_hour", "dimension"],
        columns="side",
        values="value",
        aggfunc="sum",
    ).reset_index()
    merged = totals.merge(profile, on=["profile_id", "valuation_hour"])
    assert len(merged) == 5 * len(profile)
    assert ((merged.asset - merged.total_assets).abs() < 1e-6).all()
    assert ((merged.liability - merged.total_liabilities).abs() < 1e-6).all()


# ---------------------------------------------------------------------------
# 3. changes


def test_one_day_change_is_net_worth_minus_24h_earlier(marts):
    profile = marts["fct_profile_valuation_hourly"]
    net_worth = {
        (r.profile_id, r.valuation_hour.to_pydatetime()): r.net_worth
        for r in profile.itertuples(index=False)
    }
    changes = marts["fct_valuation_changes"]
    one_day = changes[(changes.level == "profile") & (changes.change_window == "1d")]
    assert len(one_day) == len(profile)
    n_with_reference = 0
    for r in one_day.itertuples(index=False):
        assert r.entity_id == r.profile_id
        hour = r.valuation_hour.to_pydatetime()
        before = net_worth.get((r.profile_id, hour - timedelta(hours=24)))
        if before is None:
            assert pd.isna(r.change_abs) and pd.isna(r.change_rel) and pd.isna(r.reference_hour)
        else:
            n_with_reference += 1
            now = net_worth[(r.profile_id, hour)]
            assert r.reference_hour == pd.Timestamp(hour - timedelta(hours=24))
            assert r.change_abs == pytest.approx(now - before, rel=1e-9, abs=1e-9)
            assert r.change_rel == pytest.approx((now - before) / abs(before), rel=1e-9)
    assert n_with_reference == 2 * (N_HOURS - 24)

    # longer windows have no reference in six days of history: NULL, never 0
    long = changes[changes.change_window.isin(["1w", "1m", "6m", "1y", "2y"])]
    assert long.change_abs.isna().all() and long.reference_hour.isna().all()
    # the account added at hour 60 has no 1h change at its first hour, one after
    added = changes[(changes.entity_id == "bob-crypto") & (changes.change_window == "1h")]
    first = added[added.valuation_hour == pd.Timestamp(HOURS[60])]
    assert len(first) == 1 and pd.isna(first.change_abs.iloc[0])
    second = added[added.valuation_hour == pd.Timestamp(HOURS[61])]
    assert second.reference_hour.iloc[0] == pd.Timestamp(HOURS[60])
    # readable unique entity ids at item level
    item_ids = set(changes[changes.level == "item"].entity_id)
    assert "alice-broker/isa/Vanguard FTSE All-World" in item_ids


def test_periods_and_health(marts):
    profile = marts["fct_profile_valuation_hourly"]
    periods = marts["mart_valuation_periods"]
    daily = periods[(periods.frequency == "daily") & (periods.profile_id == "alice")]
    assert len(daily) == 6
    day = daily[daily.period_start == date(2026, 10, 31)].iloc[0]
    nw = (
        profile[
            (profile.profile_id == "alice") & (profile.valuation_hour.dt.date == date(2026, 10, 31))
        ]
        .sort_values("valuation_hour")
        .net_worth
    )
    assert day.open == pytest.approx(nw.iloc[0]) and day.close == pytest.approx(nw.iloc[-1])
    assert day.low == pytest.approx(nw.min()) and day.high == pytest.approx(nw.max())
    assert day.change_abs == pytest.approx(nw.iloc[-1] - nw.iloc[0])
    monthly = periods[(periods.frequency == "monthly") & (periods.profile_id == "alice")]
    assert sorted(monthly.period_start) == [date(2026, 10, 1), date(2026, 11, 1)]
    assert set(periods.frequency) == {"daily", "weekly", "monthly", "quarterly", "yearly"}

    health = marts["mart_linked_account_health"].set_index("linked_account_id")
    # removed account is gone; the others are all listed
    assert set(health.index) == {
        "alice-bank",
        "alice-broker",
        "alice-house",
        "bob-bank",
        "bob-pension",
        "bob-crypto",
    }
    broker = health.loc["alice-broker"]
    assert broker.consecutive_failures == 4 and broker.last_error_code == "timeout"
    assert broker.last_success_hour == pd.Timestamp(HOURS[139])
    assert broker.last_attempt_hour == pd.Timestamp(HOURS[143])
    bank = health.loc["alice-bank"]
    assert bank.consecutive_failures == 0 and pd.isna(bank.last_error_code)
    house = health.loc["alice-house"]
    assert house.last_attempt_hour == pd.Timestamp(HOURS[47]) and house.consecutive_failures == 0


# ---------------------------------------------------------------------------
# 4. incremental == full refresh


def _assert_frames_equal(left: pd.DataFrame, right: pd.DataFrame, name: str) -> None:
    assert list(left.columns) == list(right.columns), name
    assert len(left) == len(right), f"{name}: {len(left)} rows vs {len(right)}"
    for column in left.columns:
        a, b = left[column], right[column]
        if pd.api.types.is_float_dtype(a) or pd.api.types.is_float_dtype(b):
            a_f, b_f = a.astype("float64"), b.astype("float64")
            both_nan = a_f.isna() & b_f.isna()
            close = (a_f - b_f).abs() <= 1e-9 * b_f.abs().clip(lower=1.0)
            bad = ~(both_nan | close)
            assert not bad.any(), f"{name}.{column}:\n{left[bad].head()}\n{right[bad].head()}"
        else:
            same = (a == b) | (a.isna() & b.isna())
            assert same.all(), f"{name}.{column}:\n{left[~same].head()}\n{right[~same].head()}"


def test_incremental_equals_full_refresh(full_warehouse, incremental_warehouse):
    for schema, tables in (("marts", MARTS), ("intermediate", INTERMEDIATE)):
        for name, keys in tables.items():
            full = read_table(full_warehouse, schema, name, keys)
            incremental = read_table(incremental_warehouse, schema, name, keys)
            assert len(full) > 0, name
            _assert_frames_equal(incremental, full, name)


# ---------------------------------------------------------------------------
# 5. dbt's own data tests and unit tests


def test_dbt_build_passes_data_and_unit_tests(full_build):
    _, proc = full_build
    assert proc.returncode == 0, proc.stdout[-8000:]
    assert "ERROR=0" in proc.stdout and "WARN=0" in proc.stdout
    # the unit tests ran as part of the build, and all of them passed
    assert re.search(r"\b[1-9]\d* unit tests?\b", proc.stdout), proc.stdout[-3000:]
    assert "FAIL" not in proc.stdout
