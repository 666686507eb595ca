"""Transactions land idempotently: identified by (linked account, provider id), a pending
one replaced by its posted one, a modified one updated, a removed one removed, never
twice; the change-feed cursor is stored with them and handed to the next fetch.

A scripted provider reports, by hour (h0, h1, h2 of one run, then h3 alone):
- h0: t1 pending -20.00 (authorised d0), t2 +5.00, t3 -3.00; cursor c0
- h1: t1p posted -20.00 naming t1, t3 removed, t4 +100.00; cursor c1
- h2: t2 modified to +7.50, t4 again unchanged; cursor c2
- h3: nothing new; it records the cursor it was given (c2).
Expected, written from that script: t1p -20.00, t2 +7.50, t4 +100.00, in GBP, valued in
the EUR profile at the static rate 1 EUR = 0.85 GBP (amount / 0.85).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import (
    FetchContext,
    Provider,
    ProviderCredentials,
    ProviderOptions,
    ProviderSpec,
)
from finbot_pipelines.providers.contract import (
    Item,
    ProviderPayloadError,
    Snapshot,
    SubAccount,
    Transaction,
)
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines.warehouse.raw import (
    CursorRow,
    HourBatch,
    TransactionRow,
    ensure_raw_schema,
    latest_cursors,
    write_hour_batch,
)
from finbot_pipelines_tests.conftest import ensure_dbt_manifest
from finbot_pipelines_tests.e2e import last_complete_hour

H3 = last_complete_hour()
H0 = H3 - timedelta(hours=3)
D0 = H0.date()
RATE_GBP = Decimal("0.85")


def _t(tid: str, amount: str, **kw: object) -> Transaction:
    base: dict[str, object] = {
        "id": tid,
        "sub_account_id": "cur",
        "amount": Decimal(amount),
        "currency": "GBP",
        "description": f"txn {tid}",
        "kind": "deposit" if Decimal(amount) > 0 else "withdrawal",
        "posted": D0,
    }
    base.update(kw)
    return Transaction(**base)  # type: ignore[arg-type]


SCRIPT: dict[int, tuple[tuple[Transaction, ...], tuple[str, ...], str | None]] = {
    0: (
        (
            _t("t1", "-20.00", posted=None, pending=True, authorized=D0),
            _t("t2", "5.00"),
            _t("t3", "-3.00", kind="fee"),
        ),
        (),
        "c0",
    ),
    1: ((_t("t1p", "-20.00", pending_id="t1", authorized=D0), _t("t4", "100.00")), ("t3",), "c1"),
    2: ((_t("t2", "7.50"), _t("t4", "100.00")), (), "c2"),
    3: ((), (), None),
}


class ScriptedProvider(Provider[ProviderOptions, ProviderCredentials]):
    spec = ProviderSpec(
        id="scripted_txn_test",
        description="test provider reporting scripted transactions by hour",
        options=ProviderOptions,
        credentials=ProviderCredentials,
        supports_historical=True,
    )
    seen_cursors: dict[datetime, str | None] = {}
    lock = threading.Lock()

    def fetch(
        self, ctx: FetchContext, options: ProviderOptions, credentials: ProviderCredentials
    ) -> Snapshot:
        with self.lock:
            self.seen_cursors[ctx.hour] = ctx.transactions_cursor
        index = int((ctx.hour - H0) / timedelta(hours=1))
        txns, removed, cursor = SCRIPT[index]
        cash = Item("Cash", "asset", "cash", "cash", Decimal("100.00"))
        return Snapshot(
            (SubAccount("cur", "Current", "GBP", "depository", (cash,)),),
            transactions=txns,
            removed_transaction_ids=removed,
            transactions_cursor=cursor,
        )


CONFIG = f"""\
history_start: "{H0 - timedelta(days=1):%Y-%m-%dT00:00}"
fx_source: static
fx_static_rates: {{GBP: {RATE_GBP}}}
profiles: [{{id: me, name: Me, valuation_ccy: EUR}}]
linked_accounts:
  - {{id: bank, profile: me, provider: scripted_txn_test, name: Bank}}
"""


@dataclass
class Home:
    paths: HomePaths
    first_run_ok: bool
    cursors_after_first: dict[str, str]


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, first: datetime, last: datetime):
    from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_job, run_published

    day = datetime.combine(first.date() - timedelta(days=1), datetime.min.time())
    fx = run_job(defs, FX_JOB, day, day, instance=instance, fmt="%Y-%m-%d", progress=False)
    run = run_job(defs, HOURLY_JOB, first, last, instance=instance, progress=False)
    return fx.success and run_published(run)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    ensure_dbt_manifest()
    from finbot_pipelines.config.home import ensure_dagster_home
    from finbot_pipelines.definitions import build_definitions

    root = tmp_path_factory.mktemp("transactions-home")
    paths = HomePaths(root)
    paths.config.write_text(CONFIG)
    ensure_dagster_home(paths)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._SPECS, "scripted_txn_test", "unused:SPEC")
        mp.setitem(registry._specs, "scripted_txn_test", ScriptedProvider.spec)
        mp.setitem(registry._instances, "scripted_txn_test", ScriptedProvider())
        defs = build_definitions(str(root))
        with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
            ok = _run(defs, instance, H0, H0 + timedelta(hours=2))
            con = duckdb.connect(str(paths.warehouse), read_only=True)
            try:
                cursors = latest_cursors(con, ["bank"])
            finally:
                con.close()
            ok = _run(defs, instance, H3, H3) and ok
        yield Home(paths, ok, cursors)


def _published(home: Home, sql: str) -> list[tuple[object, ...]]:
    with connect_published(home.paths.published) as con:
        return con.execute(sql).fetchall()


def test_current_versions_once_each(home: Home) -> None:
    assert home.first_run_ok
    rows = _published(
        home,
        "select transaction_id, amount, currency, pending, kind, amount_valuation, "
        "valuation_ccy, profile_id from marts.fct_transactions order by transaction_id",
    )
    expected = {"t1p": Decimal("-20.00"), "t2": Decimal("7.50"), "t4": Decimal("100.00")}
    assert [r[0] for r in rows] == sorted(expected)
    for tid, amount, ccy, pending, kind, valued, vccy, profile in rows:
        assert amount == expected[str(tid)], tid
        assert (ccy, pending, vccy, profile) == ("GBP", False, "EUR", "me")
        assert kind == ("deposit" if expected[str(tid)] > 0 else "withdrawal")
        # 1 EUR = 0.85 GBP: x GBP = x / 0.85 EUR, rounded to 10 decimals
        assert valued == (expected[str(tid)] / RATE_GBP).quantize(Decimal("1e-10")), tid


def test_every_version_stays_in_raw(home: Home) -> None:
    con = duckdb.connect(str(home.paths.warehouse), read_only=True)
    try:
        rows = con.execute(
            "select fetch_hour, transaction_id, removed from raw.transactions "
            "order by fetch_hour, transaction_id"
        ).fetchall()
    finally:
        con.close()
    h = [H0 + timedelta(hours=i) for i in range(3)]
    assert rows == [
        (h[0], "t1", False),
        (h[0], "t2", False),
        (h[0], "t3", False),
        (h[1], "t1p", False),
        (h[1], "t3", True),
        (h[1], "t4", False),
        (h[2], "t2", False),
        (h[2], "t4", False),
    ]


def test_the_cursor_is_stored_and_handed_to_the_next_fetch(home: Home) -> None:
    assert home.cursors_after_first == {"bank": "c2"}
    assert ScriptedProvider.seen_cursors[H3] == "c2"
    # the first run's hours all started from no cursor (it was read once, before them)
    assert {ScriptedProvider.seen_cursors[H0 + timedelta(hours=i)] for i in range(3)} == {None}


# --------------------------------------------------------------------------- atomicity


def test_transactions_and_cursor_commit_together_or_not_at_all(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    try:
        ensure_raw_schema(con)
        hour = datetime(2026, 3, 2, 10)

        def batch(h: datetime, amount: object, cursor: str) -> HourBatch:
            row = TransactionRow(
                h, "bank", "t1", "cur", date(2026, 3, 2), None, False, None,
                amount, "GBP", "x", None, None, "deposit", None, None, None,
            )  # fmt: skip
            return HourBatch(
                keys=[(h, "bank")],
                account_hours=[],
                fetches=[],
                sub_accounts=[],
                items=[],
                transactions=[row],
                cursors=[CursorRow(h, "bank", cursor)],
            )

        write_hour_batch(con, batch(hour, Decimal("1.00"), "c1"))
        with pytest.raises(duckdb.Error):  # the amount cannot be cast: the write fails
            write_hour_batch(con, batch(hour + timedelta(hours=1), "not a number", "c2"))
        assert latest_cursors(con, ["bank"]) == {"bank": "c1"}
        assert con.execute("select count(*) from raw.transactions").fetchone() == (1,)
        # re-landing an hour replaces its rows: never twice
        write_hour_batch(con, batch(hour, Decimal("2.00"), "c1b"))
        assert con.execute("select amount from raw.transactions").fetchall() == [
            (Decimal("2.000000000000000000"),)
        ]
        assert latest_cursors(con, ["bank"]) == {"bank": "c1b"}
    finally:
        con.close()


def test_a_snapshot_refuses_bad_transactions() -> None:
    cash = Item("Cash", "asset", "cash", "cash", Decimal("1"))
    sub = SubAccount("cur", "Current", "GBP", "depository", (cash,))
    cases = {
        "not in the snapshot": _t("x", "1", sub_account_id="other"),
        "kind 'salary'": _t("x", "1", kind="salary"),
        "needs its posted date": _t("x", "1", posted=None),
        "cannot replace one": _t("x", "1", pending=True, pending_id="y"),
        "more than 18 decimal places": _t("x", "0.0000000000000000001"),
    }
    for needle, txn in cases.items():
        with pytest.raises(ProviderPayloadError, match=needle):
            Snapshot((sub,), transactions=(txn,)).validate()
    twice = (_t("x", "1"), _t("x", "2"))
    with pytest.raises(ProviderPayloadError, match="duplicate transaction id 'x'"):
        Snapshot((sub,), transactions=twice).validate()


# --------------------------------------------------------------------------- the dummy


def test_the_dummys_transactions_are_its_cash_balances_moves() -> None:
    """From close (23:00 UTC) to close, each cash item of the dummy changes by exactly
    its transaction of that day: computed here from two snapshots' items."""
    from finbot_pipelines.providers.dummy.provider import dummy_snapshot

    options = {"sub_accounts": ["cash", "stocks"]}
    evening = datetime(2026, 3, 10, 23)
    snap = dummy_snapshot("acc", options, evening)
    snap.validate()
    assert dummy_snapshot("acc", options, evening - timedelta(hours=5)).transactions == ()

    def cash(at: datetime) -> dict[tuple[str, str], Decimal]:
        return {
            (sub.id, item.name): item.value
            for sub in dummy_snapshot("acc", options, at).sub_accounts
            for item in sub.items
            if item.asset_class == "cash" and item.value is not None
        }

    by_id = {t.id: t for t in snap.transactions}
    days = [evening - timedelta(days=n) for n in (2, 1, 0)]
    expected = 0
    for day in days:
        now, before = cash(day), cash(day - timedelta(days=1))
        for key, value in now.items():
            delta = value - before[key]
            tid = f"{key[0]}:{key[1]}:{day.date().isoformat()}"
            if delta == 0:
                assert tid not in by_id
                continue
            expected += 1
            t = by_id[tid]
            assert t.amount == delta and t.posted == day.date(), t
            assert t.kind == ("deposit" if delta > 0 else "withdrawal")
    assert expected == len(snap.transactions) and expected > 0
    # the ISA's cash moves are contributions, a current account's are salary and spending
    isa = [t for t in snap.transactions if t.sub_account_id == "isa"]
    assert isa and {t.description for t in isa} <= {"Contribution", "Withdrawal"}
    # the next evening re-reports two of these days unchanged (a window, for lost fetches)
    nxt = {
        t.id: t for t in dummy_snapshot("acc", options, evening + timedelta(days=1)).transactions
    }
    shared = [tid for tid in by_id if tid in nxt]
    assert shared and all(nxt[tid] == by_id[tid] for tid in shared)
    assert not any(tid.endswith(days[0].date().isoformat()) for tid in nxt)
