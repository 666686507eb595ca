"""Plaid transactions against the fake Plaid API: ``/transactions/sync`` and
``/investments/transactions/get`` through the production path (``fetch_snapshot``).

Expected figures are worked out here by hand from the published examples
(``data/plaid/transactions_sync.json``, ``data/plaid/investments_transactions_get.json``):
Plaid's amounts are positive for money out, finbot's inflow positive, so each is
the example's amount negated. Never computed by the provider's helpers.
"""

from __future__ import annotations

import json
import re
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from finbot_pipelines.providers.base import FetchContext, fetch_snapshot
from finbot_pipelines.providers.contract import (
    ProviderError,
    ProviderPayloadError,
    Snapshot,
    Transaction,
    TransientError,
)
from finbot_pipelines.providers.fetching import FetchTask, RetryPolicy, run_one
from finbot_pipelines.providers.plaid import provider as plaid_provider
from finbot_pipelines.providers.plaid.options import SPEC
from finbot_pipelines.providers.plaid.provider import PlaidProvider
from finbot_pipelines_tests.fakes.plaid_server import (
    BALANCE,
    HOLDINGS,
    INVESTMENT_TRANSACTIONS,
    LIABILITIES,
    SYNC,
    FakePlaid,
)

DATA = Path(__file__).resolve().parent / "data" / "plaid"
#: inside the investment example's 24 months (its transactions are of May 2020)
HOUR = datetime(2020, 6, 1, 9)
D = Decimal

CHECKING = "BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp"
K401 = "k67E4xKvMlhmleEa4pg9hlwGGNnnEeixPolGm"
# the published sync example
WALMART = "lPNjeW1nR6CDn5okmGQ6hEpMo4lLNoSrzqDje"  # added, posted, 72.1 out
DOORDASH = "yhnUVvtcGGcCKU0bcz8PDQr5ZUxUXebUvbKC0"  # modified, pending, 28.34 out
REMOVED = "CmdQTNgems8BT1B7ibkoUXVPyAeehT3Tmzk0l"
WALMART_PENDING = "no86Eox18VHMvaOVL7gPUM9ap3aR1LsAVZ5nc"
# the published investment transactions example (account Plaid 401k)
DIVIDEND = "oq99Pz97joHQem4BNjXECev1E4B6L6sRzwANW"
SELL = "pK99jB9e7mtwjA435GpVuMvmWQKVbVFLWme57"
BUY = "LKoo1ko93wtreBwM7yQnuQ3P5DNKbKSPRzBNv"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(), parse_float=Decimal)
    return data


@pytest.fixture()
def fake() -> Iterator[FakePlaid]:
    with FakePlaid() as f:
        yield f


def context(
    hour: datetime = HOUR, cursor: str | None = None, state_dir: Path | None = None
) -> FetchContext:
    return FetchContext(
        "plaid-main",
        hour,
        valuation_ccy="USD",
        state_dir=state_dir,
        transactions_cursor=cursor,
    )


def fetch(fake: FakePlaid, ctx: FetchContext | None = None, **options: Any) -> Snapshot:
    return fetch_snapshot(
        SPEC,
        PlaidProvider(),
        ctx or context(),
        {"api_url": fake.url, **options},
        fake.credentials(),
    )


def fetch_investments(fake: FakePlaid, state_dir: Path, hours_later: int = 0) -> Snapshot:
    """A fetch of the investments product only, ``hours_later`` than :data:`HOUR`."""
    ctx = context(HOUR + timedelta(hours=hours_later), state_dir=state_dir)
    return fetch(fake, ctx, products=["investments"])


def by_id(snapshot: Snapshot) -> dict[str, Transaction]:
    out = {t.id: t for t in snapshot.transactions}
    assert len(out) == len(snapshot.transactions)  # never twice
    return out


def sync_bodies(fake: FakePlaid) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path == SYNC]


def txn(fake: FakePlaid, tid: str, amount: float, day: str, **changes: Any) -> dict[str, Any]:
    """A posted transaction of the checking account (the example's as a template)."""
    return fake.transaction(
        tid, amount=amount, date=day, authorized_date=day, pending=False, **changes
    )


def small_pages(monkeypatch: pytest.MonkeyPatch, count: int = 2) -> None:
    monkeypatch.setattr(plaid_provider, "SYNC_COUNT", count)


# --------------------------------------------------------------------------- the examples


def test_the_published_sync_example_maps_with_negated_amounts(fake: FakePlaid) -> None:
    snap = fetch(fake, products=["transactions"])
    example = load("transactions_sync")
    assert example["added"][0]["amount"] == D("72.1")  # Plaid: positive = money out
    assert example["modified"][0]["amount"] == D("28.34")
    got = by_id(snap)
    assert set(got) == {WALMART, DOORDASH}
    walmart = got[WALMART]
    assert walmart.amount == D("-72.1") and walmart.currency == "USD"
    assert walmart.sub_account_id == CHECKING
    assert (walmart.posted, walmart.authorized) == (date(2023, 9, 24), date(2023, 9, 22))
    assert not walmart.pending and walmart.pending_id == WALMART_PENDING
    assert walmart.description == "PURCHASE WM SUPERCENTER #1700"
    assert walmart.merchant == "Walmart"
    assert walmart.category == "GENERAL_MERCHANDISE_SUPERSTORES"
    assert walmart.kind == "withdrawal"  # shopping: money out of the household
    doordash = got[DOORDASH]
    assert doordash.amount == D("-28.34") and doordash.pending and doordash.posted is None
    assert doordash.authorized == date(2023, 9, 27) and doordash.pending_id is None
    assert doordash.merchant == "Burger King" and doordash.description == "Dd Doordash Burgerkin"
    assert doordash.category == "FOOD_AND_DRINK_FAST_FOOD" and doordash.kind == "withdrawal"
    assert snap.removed_transaction_ids == (REMOVED,)
    assert snap.transactions_cursor  # an opaque string, stored by the ingest
    (body,) = sync_bodies(fake)
    assert body["cursor"] == "" and body["count"] == 500  # from the beginning, Plaid's max
    assert fake.calls(HOLDINGS) == fake.calls(INVESTMENT_TRANSACTIONS) == 0


def test_the_published_investment_transactions_map_by_type(fake: FakePlaid) -> None:
    snap = fetch(fake, products=["investments"])
    assert fake.calls(SYNC) == 0
    got = by_id(snap)
    assert set(got) == {DIVIDEND, SELL, BUY}
    assert {t.sub_account_id for t in got.values()} == {K401}  # the example's Plaid 401k
    # by hand from the example: dividend -8.72, sell -1289.01, buy 7.7 (Plaid's signs)
    dividend, sell, buy = got[DIVIDEND], got[SELL], got[BUY]
    assert (dividend.amount, dividend.kind, dividend.symbol) == (D("8.72"), "dividend", "SBSI")
    assert dividend.units is None and dividend.posted == date(2020, 5, 29)
    assert dividend.category == "cash/dividend"
    assert (sell.amount, sell.kind, sell.symbol) == (D("1289.01"), "sell", "MIPTX")
    assert sell.units == D("-47.74104242992852")  # the JSON text, exactly
    assert sell.posted == date(2020, 5, 28) and sell.authorized == date(2020, 5, 28)
    assert "fees 7.99 USD" in sell.description  # part of the amount, not counted again
    assert (buy.amount, buy.kind, buy.symbol) == (D("-7.7"), "buy", "DBLTX")
    assert buy.units == D("0.7388014749727547") and buy.category == "buy/buy"
    assert sum(t.amount for t in got.values()) == D("8.72") + D("1289.01") - D("7.7")
    assert all(not t.pending for t in got.values())
    (request,) = [r.body for r in fake.requests if r.path == INVESTMENT_TRANSACTIONS]
    # a first read: 24 months back (730 days before 2020-06-01)
    assert (request["start_date"], request["end_date"]) == ("2018-06-02", "2020-06-01")
    assert request["options"] == {"count": 500, "offset": 0}


def test_the_kinds_follow_plaids_personal_finance_categories(fake: FakePlaid) -> None:
    cases = {  # detailed category -> (primary, Plaid amount, finbot kind)
        "INCOME_DIVIDENDS": ("INCOME", -12.5, "dividend"),
        "INCOME_INTEREST_EARNED": ("INCOME", -0.83, "interest"),
        "INCOME_WAGES": ("INCOME", -2500.0, "deposit"),
        "TRANSFER_IN_ACCOUNT_TRANSFER": ("TRANSFER_IN", -300.0, "transfer"),
        "TRANSFER_OUT_SAVINGS": ("TRANSFER_OUT", 200.0, "transfer"),
        "LOAN_PAYMENTS_CREDIT_CARD_PAYMENT": ("LOAN_PAYMENTS", 410.0, "transfer"),
        "BANK_FEES_ATM_FEES": ("BANK_FEES", 3.0, "fee"),
        "GOVERNMENT_AND_NON_PROFIT_TAX_PAYMENT": ("GOVERNMENT_AND_NON_PROFIT", 800.0, "tax"),
        "RENT_AND_UTILITIES_RENT": ("RENT_AND_UTILITIES", 1200.0, "withdrawal"),
    }
    fake.sync_log.clear()
    fake.sync_add(
        *(
            txn(
                fake,
                f"pfc-{detailed}",
                amount,
                "2023-10-02",
                personal_finance_category={
                    "primary": primary,
                    "detailed": detailed,
                    "confidence_level": "HIGH",
                },
            )
            for detailed, (primary, amount, _) in cases.items()
        )
    )
    got = by_id(fetch(fake, products=["transactions"]))
    assert len(got) == len(cases)
    for detailed, (_, amount, kind) in cases.items():
        t = got[f"pfc-{detailed}"]
        assert (t.kind, t.amount, t.category) == (kind, -D(str(amount)), detailed), detailed


def test_investment_types_and_subtypes_map_to_kinds(fake: FakePlaid) -> None:
    template = fake.responses[INVESTMENT_TRANSACTIONS]["investment_transactions"][0]
    cases = [  # (type, subtype, Plaid amount, finbot kind, finbot amount)
        ("buy", "contribution", 500.0, "deposit", D("500")),  # new money, into a 401k
        ("sell", "distribution", -250.0, "withdrawal", D("-250")),  # out of the account
        ("cash", "interest", -1.25, "interest", D("1.25")),
        ("cash", "qualified dividend", -4.0, "dividend", D("4")),
        ("cash", "long-term capital gain", -9.5, "dividend", D("9.5")),
        ("fee", "account fee", 15.0, "fee", D("-15")),
        ("cash", "tax withheld", 2.2, "tax", D("-2.2")),
        ("cash", "deposit", -1000.0, "deposit", D("1000")),
        ("cash", "withdrawal", 600.0, "withdrawal", D("-600")),
        ("transfer", "transfer", -75.0, "transfer", D("75")),
        ("transfer", "split", 0.0, "other", D("0")),
        ("cancel", "sell", 20.0, "other", D("-20")),
    ]
    fake.responses[INVESTMENT_TRANSACTIONS]["investment_transactions"] = [
        {**template, "investment_transaction_id": f"inv-{i}", "type": t, "subtype": s,
         "amount": a, "date": "2020-05-20"}
        for i, (t, s, a, _, _) in enumerate(cases)
    ]  # fmt: skip
    got = by_id(fetch(fake, products=["investments"]))
    for i, (t, s, _, kind, amount) in enumerate(cases):
        assert (got[f"inv-{i}"].kind, got[f"inv-{i}"].amount) == (kind, amount), (t, s)
        assert got[f"inv-{i}"].category == f"{t}/{s}"


# --------------------------------------------------------------------------- the change feed


def test_a_sync_follows_has_more_page_by_page(
    fake: FakePlaid, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_pages(monkeypatch)
    amounts = [10.01, 20.02, 30.03, 40.04, 50.05]
    fake.sync_add(*(txn(fake, f"t{i}", a, f"2023-10-0{i + 1}") for i, a in enumerate(amounts)))
    snap = fetch(fake, products=["transactions"])
    # 3 changes of the example + 5 = 8 changes, 2 a page: 4 pages
    bodies = sync_bodies(fake)
    assert len(bodies) == 4 and bodies[0]["cursor"] == "" and all(b["count"] == 2 for b in bodies)
    assert len({b["cursor"] for b in bodies}) == 4  # each page from the previous next_cursor
    got = by_id(snap)
    assert set(got) == {WALMART, DOORDASH, "t0", "t1", "t2", "t3", "t4"}
    assert sum(got[f"t{i}"].amount for i in range(5)) == D("-150.15")  # 10.01 + ... + 50.05
    assert snap.removed_transaction_ids == (REMOVED,)


def test_a_second_fetch_from_the_cursor_gets_only_the_later_changes(fake: FakePlaid) -> None:
    first = fetch(fake, products=["transactions"])
    assert first.transactions_cursor
    fake.sync_add(txn(fake, "salary", -2500.0, "2023-09-29"))
    second = fetch(fake, context(cursor=first.transactions_cursor), products=["transactions"])
    assert [t.id for t in second.transactions] == ["salary"]  # nothing of the first fetch
    assert second.transactions[0].amount == D("2500") and second.transactions[0].kind == "deposit"
    assert second.removed_transaction_ids == ()
    assert second.transactions_cursor and second.transactions_cursor != first.transactions_cursor
    assert sync_bodies(fake)[1]["cursor"] == first.transactions_cursor
    # nothing new: no transaction, a cursor all the same
    third = fetch(fake, context(cursor=second.transactions_cursor), products=["transactions"])
    assert third.transactions == () and third.removed_transaction_ids == ()
    assert third.transactions_cursor


def test_pending_to_posted_modified_and_removed(fake: FakePlaid) -> None:
    first = fetch(fake, products=["transactions"])
    assert by_id(first)[DOORDASH].pending
    # the pending Doordash order posts under its own id with the tip; Walmart is corrected;
    # a transaction of the first sync is withdrawn
    fake.sync_post(DOORDASH, txn(fake, "doordash-posted", 31.12, "2023-09-29"))
    fake.sync_modify({**fake.responses[SYNC]["added"][0], "amount": 75.5})
    fake.sync_add(txn(fake, "duplicate", 12.0, "2023-09-29"))
    fake.sync_remove("duplicate")
    snap = fetch(fake, context(cursor=first.transactions_cursor), products=["transactions"])
    got = by_id(snap)
    assert set(got) == {"doordash-posted", WALMART}  # "duplicate" came and went
    posted = got["doordash-posted"]
    assert posted.pending_id == DOORDASH and not posted.pending
    assert posted.posted == date(2023, 9, 29) and posted.amount == D("-31.12")
    assert got[WALMART].amount == D("-75.5")  # the new version replaces the old one
    # Plaid folds a page: an id added and removed since the cursor is not reported at all
    assert snap.removed_transaction_ids == (DOORDASH,)


def test_a_failure_on_page_two_returns_no_cursor_and_the_next_fetch_loses_nothing(
    fake: FakePlaid, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_pages(monkeypatch)
    first = fetch(fake, products=["transactions"])  # 3 changes: pages of 2, 1
    stored = first.transactions_cursor
    fake.sync_add(*(txn(fake, f"n{i}", 1.0 + i, "2023-10-01") for i in range(4)))
    seen: list[str] = []

    def on_request(path: str) -> None:
        seen.append(path)
        if path == SYNC and seen.count(SYNC) == 2:  # this fetch's second page
            fake.fail_next(SYNC, 500, "INTERNAL_SERVER_ERROR", "API_ERROR")

    fake.on_request = on_request
    seen.clear()
    with pytest.raises(TransientError, match="INTERNAL_SERVER_ERROR"):
        fetch(fake, context(cursor=stored), products=["transactions"])  # no snapshot
    fake.on_request = None
    # the ingest stored nothing: the next fetch starts again from the stored cursor
    again = fetch(fake, context(cursor=stored), products=["transactions"])
    assert set(by_id(again)) == {"n0", "n1", "n2", "n3"}
    assert sum(t.amount for t in again.transactions) == -(D(1) + D(2) + D(3) + D(4))
    assert sync_bodies(fake)[-2]["cursor"] == stored  # its first page of two


def test_a_retried_fetch_restarts_the_pagination_from_the_stored_cursor(
    fake: FakePlaid, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_pages(monkeypatch)
    fake.sync_add(*(txn(fake, f"r{i}", 5.0, "2023-10-01") for i in range(3)))  # 6 changes
    fake.on_request = lambda p: (
        fake.fail_next(SYNC, 500, "INTERNAL_SERVER_ERROR", "API_ERROR")
        if p == SYNC and fake.calls(SYNC) == 2
        else None
    )
    task = FetchTask(HOUR, "plaid-main", PlaidProvider(), {"api_url": fake.url,
                     "products": ["transactions"]}, fake.credentials)  # fmt: skip
    policy = RetryPolicy(timeout_s=10.0, max_attempts=2, backoff_s=0.0, max_workers=1)
    out = run_one(task, policy, sleep=lambda s: None)
    assert out.ok and out.attempts == 2 and out.snapshot is not None
    assert set(by_id(out.snapshot)) == {WALMART, DOORDASH, "r0", "r1", "r2"}
    cursors = [b["cursor"] for b in sync_bodies(fake)]
    assert cursors[0] == cursors[2] == ""  # page 1, (page 2 failed), page 1 again
    assert len(cursors) == 2 + 3


def test_a_mutation_during_pagination_restarts_from_the_original_cursor(
    fake: FakePlaid, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_pages(monkeypatch)
    first = fetch(fake, products=["transactions"])
    stored = first.transactions_cursor
    fake.sync_add(*(txn(fake, f"m{i}", 2.0, "2023-10-01") for i in range(4)))  # 2 pages
    calls_before = fake.calls(SYNC)

    def mutate_once(path: str) -> None:
        if path == SYNC and fake.calls(SYNC) == calls_before + 2:  # page 2 asked: too late
            fake.sync_add(txn(fake, "late", 9.99, "2023-10-02"))

    fake.on_request = mutate_once
    snap = fetch(fake, context(cursor=stored), products=["transactions"])
    fake.on_request = None
    got = by_id(snap)
    assert set(got) == {"m0", "m1", "m2", "m3", "late"}  # the change is in, nothing twice
    cursors = [b["cursor"] for b in sync_bodies(fake)][calls_before:]
    # page 1, page 2 refused (mutation), then page 1 again from the ORIGINAL cursor
    assert cursors[0] == stored and cursors[2] == stored and cursors[1] != stored
    assert len(cursors) == 3 + 2  # 5 changes at 2 a page: 3 pages after the restart


def test_endless_mutations_give_up_as_transient(
    fake: FakePlaid, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_pages(monkeypatch)
    n = iter(range(1000))
    fake.on_request = lambda p: (
        fake.sync_add(txn(fake, f"x{next(n)}", 1.0, "2023-10-01")) if p == SYNC else None
    )
    with pytest.raises(TransientError) as err:
        fetch(fake, products=["transactions"])
    fake.on_request = None
    assert "changed during each of 4 paginations" in str(err.value)
    assert "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION" in str(err.value)
    assert fake.calls(SYNC) == 4 * 2  # page 1 then a refused page 2, four times


def test_a_sync_that_never_ends_is_bounded(
    fake: FakePlaid, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_pages(monkeypatch)
    monkeypatch.setattr(plaid_provider, "MAX_SYNC_PAGES", 3)
    fake.sync_add(*(txn(fake, f"b{i}", 1.0, "2023-10-01") for i in range(6)))  # 9 changes
    with pytest.raises(ProviderPayloadError, match="still has_more after 3 pages"):
        fetch(fake, products=["transactions"])
    assert fake.calls(SYNC) == 3


def test_not_ready_returns_no_cursor_so_the_stored_one_stays(fake: FakePlaid) -> None:
    fake.transactions_update_status = "NOT_READY"
    snap = fetch(fake, context(cursor=None), products=["transactions"])
    assert snap.transactions == () and snap.transactions_cursor is None
    assert len(snap.sub_accounts) == 3 and snap.warnings == ()
    fake.transactions_update_status = "HISTORICAL_UPDATE_IN_PROGRESS"  # the recent ones now
    snap = fetch(fake, products=["transactions"])
    assert set(by_id(snap)) == {WALMART, DOORDASH} and snap.transactions_cursor


def test_a_transaction_of_an_unknown_account_is_left_out_with_a_warning(
    fake: FakePlaid,
) -> None:
    fake.sync_add(txn(fake, "elsewhere", 19.99, "2023-10-01", account_id="acct-gone"))
    snap = fetch(fake, products=["transactions"])
    assert "elsewhere" not in by_id(snap) and WALMART in by_id(snap)
    (warning,) = [w for w in snap.warnings if w.code == "skipped"]
    assert "elsewhere" in warning.message and "acct-gone" in warning.message
    assert "-19.99 USD" in warning.message


def test_products_plaid_does_not_offer_are_skipped_never_a_failure(fake: FakePlaid) -> None:
    fake.products_missing("transactions", error_code="PRODUCTS_NOT_SUPPORTED")
    snap = fetch(fake)
    assert fake.calls(SYNC) == 1 and snap.transactions_cursor is None
    assert len(snap.sub_accounts) == 8  # balances, holdings and liabilities all there
    assert {t.id for t in snap.transactions} == {DIVIDEND, SELL, BUY}
    fake.products_missing("investments", error_code="NO_INVESTMENT_ACCOUNTS")
    snap = fetch(fake)
    assert snap.transactions == () and fake.calls(INVESTMENT_TRANSACTIONS) == 1  # not again


@pytest.mark.parametrize("code", ["PRODUCTS_NOT_SUPPORTED", "PRODUCT_NOT_READY"])
def test_investment_transactions_unavailable_or_not_ready_are_asked_again_later(
    fake: FakePlaid, tmp_path: Path, code: str
) -> None:
    fake.fail_next(INVESTMENT_TRANSACTIONS, 400, code, "ITEM_ERROR")
    snap = fetch(fake, context(state_dir=tmp_path), products=["investments"])
    assert snap.transactions == () and len(snap.sub_accounts) == 3 + 4  # balance + holdings
    assert not (tmp_path / plaid_provider.INVESTMENTS_STATE_FILE).exists()
    snap = fetch(
        fake, context(HOUR + timedelta(hours=1), state_dir=tmp_path), products=["investments"]
    )
    assert {t.id for t in snap.transactions} == {DIVIDEND, SELL, BUY}


def test_the_products_option_decides_which_feeds_are_read(fake: FakePlaid) -> None:
    fetch(fake, products=["liabilities"])
    assert fake.calls(SYNC) == fake.calls(INVESTMENT_TRANSACTIONS) == 0
    assert [r.path for r in fake.requests] == [BALANCE, LIABILITIES]


# --------------------------------------------------------------------------- investments


def test_investment_transactions_are_paginated_by_offset(
    fake: FakePlaid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plaid_provider, "INVESTMENT_COUNT", 2)
    listed = fake.responses[INVESTMENT_TRANSACTIONS]["investment_transactions"]
    dividend = next(t for t in listed if t["investment_transaction_id"] == DIVIDEND)
    listed += [
        {**dividend, "investment_transaction_id": f"div-{m}", "date": f"2020-0{m}-15",
         "amount": -float(m)}
        for m in (1, 2, 3)
    ]  # fmt: skip
    got = by_id(fetch(fake, products=["investments"]))
    assert set(got) == {DIVIDEND, SELL, BUY, "div-1", "div-2", "div-3"}
    assert [got[f"div-{m}"].amount for m in (1, 2, 3)] == [D(1), D(2), D(3)]
    offsets = [
        r.body["options"]["offset"] for r in fake.requests if r.path == INVESTMENT_TRANSACTIONS
    ]
    assert offsets == [0, 2, 4]  # 6 transactions, 2 a page


def test_investment_transactions_are_read_once_a_day_with_an_overlap(
    fake: FakePlaid, tmp_path: Path
) -> None:
    def windows() -> list[tuple[str, str]]:
        return [
            (r.body["start_date"], r.body["end_date"])
            for r in fake.requests
            if r.path == INVESTMENT_TRANSACTIONS
        ]

    first = fetch_investments(fake, tmp_path)
    assert len(first.transactions) == 3 and windows() == [("2018-06-02", "2020-06-01")]
    state = tmp_path / plaid_provider.INVESTMENTS_STATE_FILE
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert fake.access_token not in state.read_text() and fake.secret not in state.read_text()
    later = fetch(
        fake, context(HOUR + timedelta(hours=23), state_dir=tmp_path), products=["investments"]
    )
    assert later.transactions == () and len(windows()) == 1  # Plaid refreshes once a day
    next_day = fetch(
        fake, context(HOUR + timedelta(hours=24), state_dir=tmp_path), products=["investments"]
    )
    # from 30 days before the last window's end (2020-06-01) to the new day
    assert windows()[-1] == ("2020-05-02", "2020-06-02")
    assert {t.id for t in next_day.transactions} == {DIVIDEND, SELL, BUY}  # re-reported, same ids
    # another Item's token (a re-linked account) starts over with 24 months
    other = FakePlaid(access_token="access-sandbox-another-item-0000")
    with other:
        fetch_investments(other, tmp_path, hours_later=25)
        (body,) = [r.body for r in other.requests if r.path == INVESTMENT_TRANSACTIONS]
    assert body["start_date"] == "2018-06-03"


# --------------------------------------------------------------------------- bad answers


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t.update(amount="72.10 USD"), "added[0].amount: expected a number, got"),
        (lambda t: t.pop("transaction_id"), "added[0].transaction_id"),
        (lambda t: t.update(iso_currency_code=None), "iso_currency_code and unofficial"),
    ],
)
def test_a_malformed_transaction_fails_naming_the_field_and_moves_no_cursor(
    fake: FakePlaid, edit: Any, field: str
) -> None:
    page = json.loads(json.dumps(fake.responses[SYNC]))
    edit(page["added"][0])
    fake.malformed(SYNC, page)
    with pytest.raises(ProviderPayloadError) as err:
        fetch(fake, products=["transactions"])
    assert field in str(err.value) and f"Plaid {SYNC}" in str(err.value)


def test_the_fake_speaks_plaids_count_limits(fake: FakePlaid) -> None:
    def post(body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            fake.url + SYNC,
            data=json.dumps({"client_id": fake.client_id, "secret": fake.secret,
                             "access_token": fake.access_token, **body}).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                answer: dict[str, Any] = json.loads(r.read())
                return answer
        except urllib.error.HTTPError as exc:
            refused: dict[str, Any] = json.loads(exc.read())
            return refused

    assert post({"count": 501})["error_code"] == "INVALID_FIELD"
    assert post({"cursor": "not-a-cursor"})["error_code"] == "INVALID_FIELD"
    page = post({})  # count defaults to 100: the example's three changes, no more
    assert len(page["added"]) + len(page["modified"]) + len(page["removed"]) == 3
    assert page["has_more"] is False and page["next_cursor"]


def test_secrets_never_appear_in_transaction_errors_or_warnings(fake: FakePlaid) -> None:
    secrets = [fake.secret, fake.access_token, fake.client_id]
    echo = f"bad token {fake.access_token} for {fake.client_id}/{fake.secret}"
    messages: list[str] = []
    for endpoint, code, error_type in (
        (SYNC, "INVALID_FIELD", "INVALID_REQUEST"),
        (SYNC, "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION", "TRANSACTIONS_ERROR"),
        (INVESTMENT_TRANSACTIONS, "INVALID_FIELD", "INVALID_REQUEST"),
        (INVESTMENT_TRANSACTIONS, "INTERNAL_SERVER_ERROR", "API_ERROR"),
    ):
        # one call fails one fetch; a mutation is retried by each of the 4 paginations
        times = 4 if code.startswith("TRANSACTIONS_SYNC") else 1
        fake.fail_next(endpoint, 400, code, error_type, message=echo, times=times)
        with pytest.raises(ProviderError) as err:
            fetch(fake)
        messages.append(str(err.value))
    page = json.loads(json.dumps(fake.responses[SYNC]))
    page["added"][0]["amount"] = echo
    fake.malformed(SYNC, page)
    with pytest.raises(ProviderError) as err:
        fetch(fake)
    messages.append(str(err.value))
    fake.sync_add(txn(fake, "leak", 1.0, "2023-10-01", account_id=f"acct-{fake.secret}"))
    snap = fetch(fake)
    messages += [w.message for w in snap.warnings if w.code == "skipped"]
    assert len(messages) == 6 and sum("***" in m for m in messages) >= 5
    for msg in messages:
        for s in secrets:
            pieces = [s[i : i + 6] for i in range(len(s) - 5)]
            assert not [p for p in pieces if re.search(r"\d", p) and p in msg], msg
