"""fct_performance: contributions apart from market gain, time- and money-weighted returns.

dbt builds the model from hand-made input marts (daily closes and flows), and every
expected figure is computed here, independently:
- account `excel`: the worked example of Microsoft's XIRR documentation ("XIRR
  function", support.microsoft.com): -10,000 on 2008-01-01, then 2,750 on 2008-03-01,
  4,250 on 2008-10-30, 3,250 on 2009-02-15 and 2,750 on 2009-04-01; XIRR 0.373362535
  (37.34 %). Here: a 10,000 account, three withdrawals and an end value of 2,750.
- account `glossary`: the time-weighted return example of money365's glossary
  ("Time-Weighted Return", www.money365.market/glossary/time-weighted-return):
  100,000 grows to 110,000 by the end of June, 50,000 is deposited on 1 July, the
  160,000 grows to 168,000 by December: TWR (1 + 0.10) x (1 + 0.05) - 1 = 15.5 %.
- account `daily`: 90 daily closes and flows from a seeded generator, checked against
  a direct pandas computation of the TWR product and a Newton solve of the XIRR.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import duckdb
import pandas as pd
import pytest

from finbot_pipelines_tests.dbt_helpers import DbtRunner

EXCEL_XIRR = 0.373362535
CLOSES: dict[str, list[tuple[date, float]]] = {
    "excel": [
        (date(2008, 1, 1), 10_000.0),
        (date(2008, 3, 1), 8_000.0),
        (date(2008, 10, 30), 5_000.0),
        (date(2009, 2, 15), 2_500.0),
        (date(2009, 4, 1), 2_750.0),
    ],
    "glossary": [
        (date(2025, 12, 31), 100_000.0),
        (date(2026, 6, 30), 110_000.0),
        (date(2026, 7, 1), 160_000.0),
        (date(2026, 12, 31), 168_000.0),
    ],
}
FLOWS: dict[str, list[tuple[date, float, str]]] = {
    "excel": [
        (date(2008, 3, 1), -2_750.0, "external"),
        (date(2008, 10, 30), -4_250.0, "external"),
        (date(2009, 2, 15), -3_250.0, "external"),
    ],
    "glossary": [(date(2026, 7, 1), 50_000.0, "external")],
}


def _daily_account() -> None:
    rng = random.Random(14)
    day, value = date(2026, 1, 1), 5_000.0
    closes, flows = [(day, value)], []
    for _ in range(89):
        day += timedelta(days=1)
        flow = 0.0
        if rng.random() < 0.15:
            flow = round(rng.choice([1, -1]) * rng.uniform(50, 800), 2)
            kind = "external" if rng.random() < 0.7 else "internal"
            flows.append((day, flow, kind))
        if rng.random() < 0.1:  # a dividend: income, part of the return, not a flow
            flows.append((day, round(rng.uniform(1, 20), 2), "income"))
        value = round((value + flow) * (1 + rng.gauss(0.0005, 0.01)), 2)
        closes.append((day, value))
    CLOSES["daily"] = closes
    FLOWS["daily"] = flows


_daily_account()


@pytest.fixture(scope="module")
def performance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pd.DataFrame]:
    work = tmp_path_factory.mktemp("performance")
    warehouse = work / "wh.duckdb"
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("create schema marts")
        con.execute(
            "create table marts.fct_linked_account_valuation_hourly (profile_id varchar, "
            "linked_account_id varchar, valuation_ccy varchar, valuation_hour timestamp, "
            "value decimal(38, 10))"
        )
        con.execute(
            "create table marts.fct_profile_valuation_hourly (profile_id varchar, "
            "valuation_ccy varchar, valuation_hour timestamp, net_worth decimal(38, 10))"
        )
        con.execute(
            "create table marts.fct_transactions (profile_id varchar, linked_account_id "
            "varchar, transaction_date date, pending boolean, amount_valuation "
            "decimal(38, 10), flow_class varchar, fx_missing boolean)"
        )
        for account, closes in CLOSES.items():
            profile = f"p-{account}"
            for day, value in closes:
                # an earlier hour of the day with another value: the close is the last hour
                for hour, v in ((10, value * 0.5), (23, value)):
                    ts = datetime.combine(day, datetime.min.time()) + timedelta(hours=hour)
                    con.execute(
                        "insert into marts.fct_linked_account_valuation_hourly values "
                        "(?, ?, 'EUR', ?, ?)",
                        [profile, account, ts, str(round(v, 2))],
                    )
                    con.execute(
                        "insert into marts.fct_profile_valuation_hourly values (?, 'EUR', ?, ?)",
                        [profile, ts, str(round(v, 2))],
                    )
            for day, amount, flow_class in FLOWS[account]:
                con.execute(
                    "insert into marts.fct_transactions values (?, ?, ?, false, ?, ?, false)",
                    [profile, account, day, str(amount), flow_class],
                )
            # a pending transaction counts nowhere until it is posted
            con.execute(
                "insert into marts.fct_transactions values (?, ?, ?, true, 999, 'external', false)",
                [profile, account, closes[-1][0]],
            )
    finally:
        con.close()
    DbtRunner(warehouse, work).run("run", "--select", "fct_performance")
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        frame = con.execute("select * from marts.fct_performance").df()
    finally:
        con.close()
    yield frame


def _row(frame: pd.DataFrame, account: str, period: str, level: str = "linked_account"):
    key = account if level == "linked_account" else f"p-{account}"
    column = "linked_account_id" if level == "linked_account" else "profile_id"
    rows = frame[(frame.level == level) & (frame[column] == key) & (frame.period == period)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_the_published_xirr_example(performance: pd.DataFrame) -> None:
    row = _row(performance, "excel", "since_first")
    assert row.mwr == pytest.approx(EXCEL_XIRR, abs=1e-8)
    assert float(row.start_value) == 10_000 and float(row.end_value) == 2_750
    assert float(row.net_contributions) == -10_250  # three withdrawals
    assert float(row.market_gain) == 2_750 - 10_000 + 10_250
    # TWR: each close over the previous close plus the flows since
    twr = (8_000 / 7_250) * (5_000 / 3_750) * (2_500 / 1_750) * (2_750 / 2_500) - 1
    assert row.twr == pytest.approx(twr, rel=1e-12)
    days = (date(2009, 4, 1) - date(2008, 1, 1)).days
    assert row.mwr_period == pytest.approx((1 + EXCEL_XIRR) ** (days / 365) - 1, abs=1e-7)


def test_the_published_twr_example(performance: pd.DataFrame) -> None:
    row = _row(performance, "glossary", "since_first")
    assert row.twr == pytest.approx(0.155, abs=1e-12)
    # the deposit is a contribution, not a gain: 168,000 - 100,000 - 50,000
    assert float(row.net_contributions) == 50_000
    assert float(row.market_gain) == 18_000
    # the year to date is the same window here (it starts on 2025-12-31)
    ytd = _row(performance, "glossary", "ytd")
    assert ytd.twr == pytest.approx(0.155, abs=1e-12)
    assert float(ytd.market_gain) == 18_000
    # the profile (one account, external flows) says the same
    assert _row(performance, "glossary", "since_first", "profile").twr == pytest.approx(0.155)


def test_undefined_windows_are_null_never_zero(performance: pd.DataFrame) -> None:
    row = _row(performance, "glossary", "2y")  # one year of history only
    for column in ("start_day", "start_value", "net_contributions", "market_gain", "twr", "mwr"):
        assert pd.isna(row[column]), (column, row[column])
    assert float(row.end_value) == 168_000
    # the first calendar month has no close before it: undefined too
    first_month = _row(performance, "glossary", "2025-12")
    assert pd.isna(first_month.start_value) and pd.isna(first_month.twr)


def _xirr(flows: list[tuple[float, float]]) -> float:
    """Newton's method on sum(a (1+r)^-t) = 0 (flows as (t in years, amount))."""
    r = 0.1
    for _ in range(200):
        f = sum(a * (1 + r) ** -t for t, a in flows)
        d = sum(-t * a * (1 + r) ** (-t - 1) for t, a in flows)
        step = f / d
        r -= step
        if abs(step) < 1e-14:
            break
    return r


@pytest.mark.parametrize("period", ["since_first", "1m", "2026-02"])
def test_a_daily_account_against_a_direct_computation(
    performance: pd.DataFrame, period: str
) -> None:
    closes = pd.DataFrame(CLOSES["daily"], columns=["day", "close"]).set_index("day")
    flows = pd.DataFrame(FLOWS["daily"], columns=["day", "amount", "flow_class"])
    last = closes.index[-1]
    start = {
        "since_first": closes.index[0],
        "1m": (pd.Timestamp(last) - pd.DateOffset(months=1)).date(),
        "2026-02": date(2026, 1, 31),
    }[period]
    end = {"2026-02": date(2026, 2, 28)}.get(period, last)
    window = closes[(closes.index > start) & (closes.index <= end)]
    moves = flows[(flows.day > start) & (flows.day <= end)]
    contributions = moves[moves.flow_class.isin(["external", "internal"])]
    by_day = contributions.groupby("day").amount.sum()
    growth, prev = 1.0, closes.loc[start, "close"]
    for day, close in window.close.items():
        growth *= close / (prev + by_day.get(day, 0.0))
        prev = close
    row = _row(performance, "daily", period)
    start_value, end_value = closes.loc[start, "close"], closes.loc[end, "close"]
    assert float(row.start_value) == pytest.approx(start_value)
    assert float(row.end_value) == pytest.approx(end_value)
    assert float(row.net_contributions) == pytest.approx(contributions.amount.sum())
    assert float(row.income) == pytest.approx(moves[moves.flow_class == "income"].amount.sum())
    assert float(row.market_gain) == pytest.approx(
        end_value - start_value - contributions.amount.sum()
    )
    assert row.twr == pytest.approx(growth - 1, rel=1e-9)
    cash = [(0.0, -start_value)]
    cash += [((d - start).days / 365, -a) for d, a in by_day.items()]
    cash.append(((end - start).days / 365, end_value))
    assert row.mwr == pytest.approx(_xirr(cash), abs=1e-8)
    # at profile level the internal transfers are not contributions
    profile = _row(performance, "daily", period, "profile")
    external = moves[moves.flow_class == "external"].amount.sum()
    assert float(profile.net_contributions) == pytest.approx(external)
    assert math.isfinite(profile.twr)


def test_every_window_is_there_once(performance: pd.DataFrame) -> None:
    trailing = set(performance[performance.period_kind == "trailing"].period)
    assert trailing == {"1d", "1w", "1m", "3m", "6m", "1y", "2y", "ytd"}
    daily = performance[performance.linked_account_id == "daily"]
    months = set(daily[daily.period_kind == "calendar_month"].period)
    assert months == {"2026-01", "2026-02", "2026-03"}
    assert not daily.duplicated(["level", "period_kind", "period"]).any()
