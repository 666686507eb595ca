"""The Plaid provider against a fake Plaid API on 127.0.0.1 built from Plaid's published examples.

Every fetch goes through the production path (``fetch_snapshot``: options and
credentials models, plaid-python against the fake, the mapping, the base's
checks). Expected numbers are worked out here from the example JSON files, by
hand or with pandas over the files read with ``parse_float=Decimal``, never by
calling the provider's own helpers; Decimals are compared exactly.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import FetchContext, fetch_snapshot
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    FetchTimeout,
    Item,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
    SubAccount,
    TransientError,
)
from finbot_pipelines.providers.fetching import FetchOutcome, FetchTask, RetryPolicy, run_one
from finbot_pipelines.providers.plaid.link import (
    PLAID_LINK_JS,
    PlaidLinkError,
    exchange_public_token,
    link_account,
    serve_link_page,
)
from finbot_pipelines.providers.plaid.options import SPEC
from finbot_pipelines.providers.plaid.provider import PlaidProvider
from finbot_pipelines_tests.fakes.plaid_server import (
    BALANCE,
    HOLDINGS,
    INVESTMENT_TRANSACTIONS,
    LIABILITIES,
    LINK_TOKEN_CREATE,
    PUBLIC_TOKEN_EXCHANGE,
    SANDBOX_PUBLIC_TOKEN_CREATE,
    SYNC,
    FakePlaid,
)

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "api-examples"
HOUR = datetime(2026, 3, 2, 9)
POLICY = RetryPolicy(timeout_s=10.0, max_attempts=3, backoff_s=0.0, max_workers=1)
RELINK = "re-link this account (finbot accounts link plaid)"
D = Decimal

# account ids of the published examples
CHECKING = "BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp"
CREDIT_CARD = "dVzbVMLjrxTnLjX4G66XUp5GLklm4oiZy88yK"
STUDENT_LOAN = "Pp1Vpkl9w8sajvK6oEEKtr7vZxBnGpf7LxxLE"
MORTGAGE = "BxBXxLj1m4HMXBm9WZJyUg9XLd4rKEhw8Pb1J"
MONEY_MARKET = "5Bvpj4QknlhVWk7GygpwfVKdd133GoCxB814g"
IRA = "JqMLm4rJwpF6gMPJwBqdh9ZjjPvvpDcb7kDK1"
K401 = "k67E4xKvMlhmleEa4pg9hlwGGNnnEeixPolGm"
CRYPTO = "ax0xgOBYRAIqOOjeLZr0iZBb8r6K88HZXpvmq"
# security ids of the published examples
NFLX_CALL = "8E4L9XLl6MudjEpwPAAgivmdZRdBPJuvMPlPb"  # held in the IRA (110)
USD_CASH = "d6ePmbPxgWCWmMVv66q9iPV94n91vMtov5Are"  # IRA 0.01, 401k 12345.67
ACHILLION = "KDwjlXj1Rqt58dVvmzRguxJybmyQL8FgeWWAy"  # 401k, 2.11
MATTHEWS = "JDdP7XPMklt5vwPmDN45t3KAoWAPmjtpaW7DP"  # 401k, 23.567 x 27 = 636.309
DOGECOIN = "vLRMV3MvY1FYNP91on35CJD5QN5rw9Fpa9qOL"  # crypto account, 25000 x 0.177494362

# By hand from plaid_investments_holdings_get.json:
IRA_HOLDINGS = D("0.01") + D("110")  # = balances.current 110.01: reconciled
K401_HOLDINGS = D("2.11") + D("20.84") + D("636.309") + D("1373.6865") + D("948.08") + D("12345.67")
CRYPTO_HOLDINGS = D("4437.35905")  # balances.current is 48200.03
assert D("15326.6955") == K401_HOLDINGS
# Every account of the examples (balance 110 checking, 43200 money market; owed 410 card,
# 65262 student loan, 56302.06 mortgage), holdings as the value of investment accounts:
EXAMPLES_TOTAL = (
    D("110") + D("43200") + IRA_HOLDINGS + K401_HOLDINGS + CRYPTO_HOLDINGS
    - D("410") - D("65262") - D("56302.06")
)  # fmt: skip
assert D("-58789.99545") == EXAMPLES_TOTAL

# The spec of the security-type mapping, written out independently of the provider.
SECURITY_CLASSES = {
    "equity": ("equities", "stock"),
    "etf": ("equities", "etf"),
    "mutual fund": ("multi_asset", "fund"),
    "fixed income": ("fixed_income", "bond"),
    "cash": ("cash", "cash"),
    "cryptocurrency": ("crypto", "crypto_currency"),
    "derivative": ("other", "derivative"),
}


def load(name: str) -> dict[str, Any]:
    """An example answer with its numbers as exact decimals (the JSON text)."""
    data: dict[str, Any] = json.loads(
        (EXAMPLES / f"plaid_{name}.json").read_text(), parse_float=Decimal, parse_int=Decimal
    )
    return data


@pytest.fixture()
def fake() -> Iterator[FakePlaid]:
    with FakePlaid() as f:
        yield f


def context(priced_units: frozenset[str] = frozenset()) -> FetchContext:
    return FetchContext("plaid-main", HOUR, valuation_ccy="USD", priced_units=priced_units)


def fetch(
    fake: FakePlaid,
    creds: Mapping[str, str] | None = None,
    ctx: FetchContext | None = None,
    **options: Any,
) -> Snapshot:
    """One fetch through the production path (options/credentials models, base checks)."""
    return fetch_snapshot(
        SPEC,
        PlaidProvider(),
        ctx or context(),
        {"api_url": fake.url, **options},
        creds or fake.credentials(),
    )


def run(
    fake: FakePlaid, sleeps: list[float] | None = None, **options: Any
) -> tuple[FetchOutcome, list[float]]:
    slept: list[float] = [] if sleeps is None else sleeps
    task = FetchTask(
        HOUR, "plaid-main", PlaidProvider(), {"api_url": fake.url, **options}, fake.credentials
    )
    return run_one(task, POLICY, sleep=slept.append), slept


def by_id(snapshot: Snapshot) -> dict[str, SubAccount]:
    return {sa.id: sa for sa in snapshot.sub_accounts}


def items(sa: SubAccount) -> dict[str, Item]:
    return {i.name: i for i in sa.items}


def total(sa: SubAccount) -> Decimal:
    return sum((i.value for i in sa.items if i.value is not None), D(0))


def txt(d: Decimal) -> str:
    """A decimal as the messages write it: plain, without trailing zeros."""
    return format(d.normalize(), "f")


def warnings_of(snapshot: Snapshot, code: str) -> list[str]:
    return [w.message for w in snapshot.warnings if w.code == code]


def holdings_frame() -> pd.DataFrame:
    """Holdings of the example joined to their securities, with the expected classes."""
    inv = load("investments_holdings_get")
    holdings = pd.DataFrame(inv["holdings"])
    securities = pd.DataFrame(inv["securities"])[["security_id", "name", "type", "ticker_symbol"]]
    df = holdings.merge(securities, on="security_id", how="left", validate="many_to_one")
    df["asset_class"] = df["type"].map(lambda t: SECURITY_CLASSES[t][0])
    df["asset_type"] = df["type"].map(lambda t: SECURITY_CLASSES[t][1])
    return df


def edit_holding(fake: FakePlaid, security_id: str, account_id: str, **changes: Any) -> None:
    (h,) = [h for h in fake.holdings_of(account_id) if h["security_id"] == security_id]
    h.update(changes)


# --------------------------------------------------------------------------- mapping


def test_the_published_examples_map_to_eight_sub_accounts_with_the_right_values(
    fake: FakePlaid,
) -> None:
    snap = fetch(fake)
    subs = by_id(snap)
    # 3 accounts in the balance answer, +4 new in the holdings answer (money market, IRA,
    # 401k, crypto), +1 new in the liabilities answer (mortgage); the 3 others repeat.
    assert list(subs) == [
        CHECKING,
        CREDIT_CARD,
        STUDENT_LOAN,
        MONEY_MARKET,
        IRA,
        K401,
        CRYPTO,
        MORTGAGE,
    ]
    expected = {  # (name, currency, type, value) read off the JSON files by hand
        CHECKING: ("Plaid Checking", "USD", "depository", D("110")),
        CREDIT_CARD: ("Plaid Credit Card", "USD", "credit", D("-410")),
        STUDENT_LOAN: ("Plaid Student Loan", "USD", "loan", D("-65262")),
        MONEY_MARKET: ("Plaid Money Market", "USD", "depository", D("43200")),
        IRA: ("Plaid IRA", "USD", "investment", D("110.01")),  # 0.01 USD + 110 call option
        K401: ("Plaid 401k", "USD", "investment", D("15326.6955")),  # the holdings
        CRYPTO: ("Plaid Crypto Exchange Account", "USD", "investment", D("4437.35905")),
        MORTGAGE: ("Plaid Mortgage", "USD", "loan", D("-56302.06")),
    }
    for acc_id, (name, ccy, kind, value) in expected.items():
        sa = subs[acc_id]
        assert (sa.name, sa.currency, sa.account_type) == (name, ccy, kind), acc_id
        assert total(sa) == value, acc_id
    assert sum((total(sa) for sa in snap.sub_accounts), D(0)) == EXAMPLES_TOTAL
    # every amount is an exact decimal
    for _, item in snap.items():
        assert isinstance(item.value, Decimal)
        assert item.units is None or isinstance(item.units, Decimal)


def test_holdings_become_items_with_units_values_and_classes(fake: FakePlaid) -> None:
    subs = by_id(fetch(fake))
    df = holdings_frame()
    for acc_id in (IRA, K401, CRYPTO):
        want = df[df["account_id"] == acc_id]
        got = items(subs[acc_id])
        # the holdings and nothing else: no invented "Uninvested cash"
        assert set(got) == set(want["name"]), acc_id
        for row in want.itertuples():
            item = got[row.name]
            assert item.units == row.quantity and item.value == row.institution_value
            assert (item.asset_class, item.asset_type) == (row.asset_class, row.asset_type)
            assert item.currency == row.iso_currency_code == "USD"
            assert item.item_type == "asset"
            if isinstance(row.ticker_symbol, str):
                assert item.symbol == row.ticker_symbol
        assert total(subs[acc_id]) == sum(want["institution_value"], D(0))
    # the only ISIN-less, ticker-less security (the T-bill) goes by its CUSIP
    assert items(subs[K401])["US Treasury Bill - 5.43% 31/10/2024 USD 100"].symbol == "912797HE0"


def _numbers(floats: object, exact: object) -> Iterator[tuple[float, Decimal]]:
    """Every JSON number of one file, as Python's json (the SDK) reads it and as its text."""
    if isinstance(floats, dict) and isinstance(exact, dict):
        for key in floats:
            yield from _numbers(floats[key], exact[key])
    elif isinstance(floats, list) and isinstance(exact, list):
        for f, e in zip(floats, exact, strict=True):
            yield from _numbers(f, e)
    elif isinstance(floats, int | float) and not isinstance(floats, bool):
        assert isinstance(exact, Decimal)
        yield float(floats), exact


def test_amounts_are_the_json_text_exactly(fake: FakePlaid) -> None:
    """The SDK hands floats: the repr of each is the JSON text of every example amount,
    and the snapshot's decimals are those texts."""
    for name in ("accounts_balance_get", "investments_holdings_get", "liabilities_get"):
        raw = json.loads((EXAMPLES / f"plaid_{name}.json").read_text())
        pairs = list(_numbers(raw, load(name)))
        assert len(pairs) >= 5
        for f, text in pairs:
            assert D(repr(f)) == text, (name, f, text)
    subs = by_id(fetch(fake))
    (cash,) = subs[CHECKING].items
    assert cash.value == load("accounts_balance_get")["accounts"][0]["balances"]["current"]
    for h in load("investments_holdings_get")["holdings"]:
        (item,) = [i for i in subs[h["account_id"]].items if i.units == h["quantity"]]
        assert item.value == h["institution_value"]  # 0.01, 1373.6865, 636.309, 4437.35905...
    (mortgage,) = subs[MORTGAGE].items
    assert str(mortgage.value) == "-56302.06"


def test_a_balance_that_differs_from_the_holdings_is_a_reconciliation_warning(
    fake: FakePlaid,
) -> None:
    snap = fetch(fake)
    warnings = warnings_of(snap, "reconciliation")
    assert len(warnings) == 2  # the IRA agrees: 0.01 + 110 = 110.01
    k401, crypto = warnings
    # the account and both figures: balances.current and the holdings' sum (by hand above)
    assert "Plaid 401k" in k401 and K401 in k401
    assert "24580.0605 USD" in k401 and f"{K401_HOLDINGS} USD" in k401
    assert f"difference {txt(D('24580.0605') - K401_HOLDINGS)} USD" in k401  # 9253.365
    assert "Plaid Crypto Exchange Account" in crypto and CRYPTO in crypto
    assert "48200.03 USD" in crypto and "4437.35905 USD" in crypto
    assert "difference 43762.67095 USD" in crypto
    assert warnings_of(snap, "skipped") == [] and warnings_of(snap, "unpriced") == []


@pytest.mark.parametrize(
    ("current", "warned"),
    [
        (15326.6955, False),
        (15326.7005, False),  # half a cent more: within the tolerance
        (15326.6905, False),  # half a cent less
        (15326.7006, True),
        (15326.6904, True),
    ],
)
def test_the_reconciliation_tolerance_is_half_a_cent(
    fake: FakePlaid, current: float, warned: bool
) -> None:
    fake.account(HOLDINGS, K401)["balances"]["current"] = current
    snap = fetch(fake)
    assert [K401 in w for w in warnings_of(snap, "reconciliation")].count(True) == int(warned)
    assert total(by_id(snap)[K401]) == K401_HOLDINGS  # the holdings are the value either way


def test_an_investment_account_with_no_holdings_listed_is_worth_them_zero(
    fake: FakePlaid,
) -> None:
    holdings = fake.responses[HOLDINGS]["holdings"]
    holdings[:] = [h for h in holdings if h["account_id"] != CRYPTO]
    snap = fetch(fake)
    sa = by_id(snap)[CRYPTO]
    assert sa.items == () and total(sa) == 0
    (warning,) = [w for w in warnings_of(snap, "reconciliation") if CRYPTO in w]
    assert "48200.03 USD" in warning and "lists no holding" in warning
    # a zero balance and no holdings: nothing to say
    fake.account(HOLDINGS, CRYPTO)["balances"]["current"] = 0
    snap = fetch(fake)
    assert by_id(snap)[CRYPTO].items == ()
    assert [w for w in warnings_of(snap, "reconciliation") if CRYPTO in w] == []


def test_without_the_investments_product_an_investment_account_keeps_its_balance(
    fake: FakePlaid,
) -> None:
    ira = copy.deepcopy(fake.account(HOLDINGS, IRA))
    fake.responses[BALANCE]["accounts"].append(ira)
    not_asked = fetch(fake, products=["liabilities"])
    fake.products_missing("investments")
    not_available = fetch(fake)  # for the Item
    for snap in (not_asked, not_available):
        (item,) = by_id(snap)[IRA].items
        assert (item.name, item.asset_class, item.asset_type, item.value) == (
            "Account balance",
            "other",
            "investment_account",
            D("110.01"),  # what the institution reported
        )
        assert warnings_of(snap, "reconciliation") == []


def test_cash_and_liabilities_are_one_item_each_and_never_double_counted(
    fake: FakePlaid,
) -> None:
    snap = fetch(fake)
    ids = [sa.id for sa in snap.sub_accounts]
    assert len(ids) == len(set(ids))
    subs = by_id(snap)
    (card,) = subs[CREDIT_CARD].items  # in both the balance and the liabilities answers
    assert (card.item_type, card.asset_class, card.asset_type, card.value) == (
        "liability",
        "other",
        "credit_card",
        D("-410"),
    )
    (loan,) = subs[STUDENT_LOAN].items  # in both answers too
    assert (loan.item_type, loan.asset_type, loan.value) == ("liability", "student_loan", -65262)
    (mortgage,) = subs[MORTGAGE].items
    assert (mortgage.item_type, mortgage.asset_class, mortgage.asset_type) == (
        "liability",
        "real_estate",
        "mortgage",
    )
    assert mortgage.value == D("-56302.06")
    (cash,) = subs[CHECKING].items  # the checking account is in the liabilities answer too
    assert (cash.item_type, cash.asset_class, cash.asset_type, cash.value) == (
        "asset",
        "cash",
        "cash",
        D("110"),
    )
    liabilities = [i.value for _, i in snap.items() if i.item_type == "liability"]
    assert sorted(liabilities) == [D("-65262"), D("-56302.06"), D("-410")]  # type: ignore[type-var]


def test_the_balance_answer_wins_when_an_account_is_in_several_answers(fake: FakePlaid) -> None:
    # the liabilities answer repeats the card with another (stale) balance: counted once, the
    # real-time balance answer's figure
    fake.account(LIABILITIES, CREDIT_CARD)["balances"]["current"] = 999.99
    (card,) = by_id(fetch(fake))[CREDIT_CARD].items
    assert card.value == D("-410")


def set_account_currency(responses: dict[str, dict[str, Any]], account_id: str, ccy: str) -> None:
    """Move one account to another currency in every answer it appears in."""
    for answer in responses.values():
        for acc in answer.get("accounts", []):
            if acc["account_id"] == account_id:
                acc["balances"]["iso_currency_code"] = ccy
        for h in answer.get("holdings", []):
            if h["account_id"] == account_id:
                h["iso_currency_code"] = ccy


def household(fake: FakePlaid) -> None:
    """The examples, with a GBP current account and a EUR money market account."""
    set_account_currency(fake.responses, CHECKING, "GBP")
    set_account_currency(fake.responses, MONEY_MARKET, "EUR")


def test_each_sub_account_keeps_its_own_currency(fake: FakePlaid) -> None:
    household(fake)
    subs = by_id(fetch(fake))
    assert {k: v.currency for k, v in subs.items()} == {
        CHECKING: "GBP",
        CREDIT_CARD: "USD",
        STUDENT_LOAN: "USD",
        MONEY_MARKET: "EUR",
        IRA: "USD",
        K401: "USD",
        CRYPTO: "USD",
        MORTGAGE: "USD",
    }
    assert total(subs[CHECKING]) == 110 and total(subs[MONEY_MARKET]) == 43200


def test_a_holding_in_another_currency_gets_its_own_sub_account(fake: FakePlaid) -> None:
    edit_holding(fake, MATTHEWS, K401, iso_currency_code="CAD")  # 636.309
    snap = fetch(fake)
    subs = by_id(snap)
    cad = subs[f"{K401}:CAD"]
    assert (cad.currency, cad.name, cad.account_type) == ("CAD", "Plaid 401k (CAD)", "investment")
    assert [(i.name, i.value, i.currency) for i in cad.items] == [
        ("Matthews Pacific Tiger Fund Insti Class", D("636.309"), "CAD")
    ]
    usd = subs[K401]
    assert total(usd) == D("2.11") + D("20.84") + D("1373.6865") + D("948.08") + D("12345.67")
    # a USD balance cannot be compared with holdings in two currencies (no FX here)
    assert [w for w in warnings_of(snap, "reconciliation") if K401 in w] == []


@pytest.mark.parametrize(
    "code", ["PRODUCTS_NOT_SUPPORTED", "NO_INVESTMENT_ACCOUNTS", "NO_LIABILITY_ACCOUNTS"]
)
def test_products_not_enabled_are_skipped(fake: FakePlaid, code: str) -> None:
    fake.products_missing("investments", "liabilities", error_code=code)
    subs = by_id(fetch(fake))
    assert list(subs) == [CHECKING, CREDIT_CARD, STUDENT_LOAN]  # the balance answer only
    assert [i.asset_type for i in subs[STUDENT_LOAN].items] == ["student_loan"]  # from subtype
    assert total(subs[CREDIT_CARD]) == -410
    assert fake.calls(HOLDINGS) == 1 and fake.calls(LIABILITIES) == 1


def test_the_products_option_limits_the_calls(fake: FakePlaid) -> None:
    snap = fetch(fake, products=["liabilities"])
    assert fake.calls(HOLDINGS) == 0 and fake.calls(LIABILITIES) == 1
    assert [sa.id for sa in snap.sub_accounts] == [CHECKING, CREDIT_CARD, STUDENT_LOAN, MORTGAGE]
    fetch(fake, products=[])
    assert fake.calls(HOLDINGS) == 0 and fake.calls(LIABILITIES) == 1 and fake.calls(BALANCE) == 2


def test_requests_carry_the_keys_in_headers_and_the_token_in_the_body(fake: FakePlaid) -> None:
    fetch(fake)
    paths = [BALANCE, HOLDINGS, LIABILITIES, SYNC, INVESTMENT_TRANSACTIONS]
    assert [r.path for r in fake.requests] == paths
    for r in fake.requests:
        headers = {k.lower(): v for k, v in r.headers.items()}
        assert headers["plaid-client-id"] == fake.client_id
        assert headers["plaid-secret"] == fake.secret
        assert r.body["access_token"] == fake.access_token
        if r.path in (BALANCE, HOLDINGS, LIABILITIES):
            assert r.body == {"access_token": fake.access_token}


# --------------------------------------------------------------------------- holdings rules


def test_a_null_institution_value_is_quantity_times_price(fake: FakePlaid) -> None:
    edit_holding(fake, MATTHEWS, K401, institution_value=None)  # 23.567 x 27
    edit_holding(fake, DOGECOIN, CRYPTO, institution_value=None)  # 25000 x 0.177494362
    snap = fetch(fake)  # the Item is not refused
    subs = by_id(snap)
    matthews = items(subs[K401])["Matthews Pacific Tiger Fund Insti Class"]
    assert matthews.value == D("23.567") * D("27") == D("636.309")
    assert matthews.units == D("23.567")
    doge = items(subs[CRYPTO])["Dogecoin"]
    assert doge.value == D("25000") * D("0.177494362") == D("4437.35905")
    assert total(subs[K401]) == K401_HOLDINGS  # the same value as the institution's
    assert warnings_of(snap, "unpriced") == [] and warnings_of(snap, "skipped") == []


def test_a_computed_value_is_rounded_to_ten_places(fake: FakePlaid) -> None:
    edit_holding(
        fake, ACHILLION, K401, institution_value=None, quantity=3, institution_price=0.333333333333
    )
    (achillion,) = [i for i in by_id(fetch(fake))[K401].items if i.symbol == "ACHN"]
    # 3 x 0.333333333333 = 0.999999999999, rounded half-even to 10 places: 1.0000000000
    assert achillion.value == D("1") and achillion.units == D("3")


def test_a_holding_without_value_nor_price_is_unpriced_and_the_rest_stays(
    fake: FakePlaid,
) -> None:
    edit_holding(fake, MATTHEWS, K401, institution_value=None, institution_price=None)
    snap = fetch(fake)
    sa = by_id(snap)[K401]
    matthews = items(sa)["Matthews Pacific Tiger Fund Insti Class"]
    assert matthews.value is None and matthews.units == D("23.567") and matthews.unit is None
    assert total(sa) == K401_HOLDINGS - D("636.309")  # the five others
    (unpriced,) = warnings_of(snap, "unpriced")
    assert "Matthews Pacific Tiger Fund Insti Class" in unpriced and "23.567" in unpriced
    (reconciliation,) = [w for w in warnings_of(snap, "reconciliation") if K401 in w]
    assert f"{txt(K401_HOLDINGS - D('636.309'))} USD" in reconciliation
    assert "1 unpriced" in reconciliation


def test_an_unpriced_crypto_holding_carries_its_ticker_as_unit(fake: FakePlaid) -> None:
    doge = items(by_id(fetch(fake))[CRYPTO])["Dogecoin"]
    assert doge.unit == "DOGE" and doge.value == D("4437.35905")  # priced: the unit is kept
    edit_holding(fake, DOGECOIN, CRYPTO, institution_value=None, institution_price=None)
    snap = fetch(fake)
    doge = items(by_id(snap)[CRYPTO])["Dogecoin"]
    assert (doge.value, doge.units, doge.unit, doge.symbol) == (None, D("25000"), "DOGE", "DOGE")
    assert (doge.asset_class, doge.asset_type) == ("crypto", "crypto_currency")
    (unpriced,) = warnings_of(snap, "unpriced")
    assert "Dogecoin" in unpriced and "25000 DOGE" in unpriced and "unit_prices" in unpriced
    # when the household's unit prices value DOGE, the valuation prices it: no warning
    snap = fetch(fake, ctx=context(priced_units=frozenset({"DOGE"})))
    assert warnings_of(snap, "unpriced") == []


@pytest.mark.parametrize(
    ("edit", "account", "left_out", "named"),
    [
        # a holding whose security is absent from the answer
        (
            lambda b: b["holdings"][1].update(security_id="no-such-security"),
            K401,
            D("2.11"),
            ["holdings[1]", "no-such-security", "absent from securities"],
        ),
        # a security the SDK refuses (figi is required, nullable): its holdings only
        (
            lambda b: b["securities"][0].pop("figi"),
            IRA,
            D("110"),
            ["holdings[3]", NFLX_CALL, "its security could not be read", "securities[0].figi"],
        ),
        # a holding the SDK refuses (quantity must be a number)
        (
            lambda b: b["holdings"][0].update(quantity=None),
            IRA,
            D("0.01"),
            ["holdings[0]", USD_CASH, "'U S Dollar'", "holdings[0].quantity"],
        ),
        # a holding in an invalid currency
        (
            lambda b: b["holdings"][2].update(iso_currency_code="dollars"),
            K401,
            D("20.84"),
            ["holdings[2]", "DoubleLine Total Return Bond Fund", "holdings[2].iso_currency_code"],
        ),
    ],
)
def test_one_bad_holding_is_left_out_with_a_warning_and_the_rest_stays(
    fake: FakePlaid,
    edit: Callable[[dict[str, Any]], Any],
    account: str,
    left_out: Decimal,
    named: list[str],
) -> None:
    edit(fake.responses[HOLDINGS])
    snap = fetch(fake)
    subs = by_id(snap)
    listed = {IRA: IRA_HOLDINGS, K401: K401_HOLDINGS}[account]
    assert total(subs[account]) == listed - left_out
    assert len(subs[account].items) == {IRA: 2, K401: 6}[account] - 1
    (skipped,) = warnings_of(snap, "skipped")
    assert account in skipped
    for text in named:
        assert text in skipped, skipped
    # the other accounts are untouched
    others = {IRA: IRA_HOLDINGS, K401: K401_HOLDINGS, CRYPTO: CRYPTO_HOLDINGS}
    for acc_id, value in others.items():
        if acc_id != account:
            assert total(subs[acc_id]) == value
    # and the account's reconciliation says one holding was left out
    (reconciliation,) = [w for w in warnings_of(snap, "reconciliation") if account in w]
    assert f"{txt(listed - left_out)} USD" in reconciliation and "1 left out" in reconciliation


def test_an_account_whose_every_holding_is_unreadable_fails_naming_them(
    fake: FakePlaid,
) -> None:
    for h in fake.holdings_of(IRA):
        h["security_id"] = "gone-" + h["security_id"][:6]
    with pytest.raises(ProviderPayloadError) as err:
        fetch(fake)
    msg = str(err.value)
    assert "Plaid IRA" in msg and IRA in msg and "none of its 2 holdings" in msg
    assert "holdings[0]" in msg and "holdings[3]" in msg and "absent from securities" in msg


def test_a_holding_of_an_unknown_account_is_a_skipped_warning(fake: FakePlaid) -> None:
    fake.responses[HOLDINGS]["holdings"].append(
        {**fake.holdings_of(K401)[0], "account_id": "not-an-account-of-the-answer"}
    )
    snap = fetch(fake)
    (skipped,) = warnings_of(snap, "skipped")
    assert "holdings[9]" in skipped and "not-an-account-of-the-answer" in skipped
    assert ACHILLION in skipped and "Achillion" in skipped
    assert total(by_id(snap)[K401]) == K401_HOLDINGS


# --------------------------------------------------------------------------- unofficial currencies


def unit_account(account_id: str, name: str, code: str | None, current: Any, kind: str) -> Any:
    return {
        "account_id": account_id,
        "balances": {
            "available": current,
            "current": current,
            "iso_currency_code": None,
            "limit": None,
            "unofficial_currency_code": code,
        },
        "mask": "0001",
        "name": name,
        "official_name": None,
        "subtype": "crypto exchange" if kind == "investment" else "checking",
        "type": kind,
    }


def test_accounts_in_unofficial_currencies_are_crypto_in_their_own_unit(fake: FakePlaid) -> None:
    fake.responses[BALANCE]["accounts"] += [
        unit_account("btc-wallet", "Bitcoin wallet", "BTC", 0.5, "depository"),
        unit_account("usdc-wallet", "USD Coin wallet", "USDC", 1500.25, "depository"),
        unit_account("doge-exchange", "Doge exchange", "DOGE", 12000, "investment"),
    ]
    snap = fetch(fake)
    subs = by_id(snap)
    for acc_id, code, amount in (
        ("btc-wallet", "BTC", D("0.5")),
        ("usdc-wallet", "USDC", D("1500.25")),  # a 4-letter code
        ("doge-exchange", "DOGE", D("12000")),
    ):
        sa = subs[acc_id]
        assert sa.currency == code
        (item,) = sa.items
        assert (item.item_type, item.asset_class, item.asset_type) == (
            "asset",
            "crypto",
            "crypto_currency",
        )
        assert item.units == item.value == amount
        assert item.unit == item.symbol == code
        assert item.asset_class != "cash"
    # the examples are unchanged
    assert sum((total(sa) for sa in snap.sub_accounts if sa.currency == "USD"), D(0)) == (
        EXAMPLES_TOTAL
    )


def test_a_holding_in_an_unofficial_currency_gets_a_sub_account_in_that_unit(
    fake: FakePlaid,
) -> None:
    # the Dogecoin holding valued by the institution in USDC (a 4-letter code), not USD
    edit_holding(fake, DOGECOIN, CRYPTO, iso_currency_code=None, unofficial_currency_code="USDC")
    snap = fetch(fake)
    subs = by_id(snap)
    usdc = subs[f"{CRYPTO}:USDC"]
    assert (usdc.currency, usdc.name) == ("USDC", "Plaid Crypto Exchange Account (USDC)")
    (doge,) = usdc.items
    assert (doge.value, doge.currency, doge.unit) == (D("4437.35905"), "USDC", "DOGE")
    assert subs[CRYPTO].items == ()  # nothing left in USD; no FX here, so no reconciliation
    assert [w for w in warnings_of(snap, "reconciliation") if CRYPTO in w] == []


@pytest.mark.parametrize("code", ["btc", "B T C", "", "DOGE!"])
def test_an_invalid_unofficial_code_is_an_error_naming_the_field(
    fake: FakePlaid, code: str
) -> None:
    fake.responses[BALANCE]["accounts"].append(
        unit_account("odd-wallet", "Odd wallet", code, 1, "depository")
    )
    with pytest.raises(ProviderPayloadError) as err:
        fetch(fake)
    msg = str(err.value)
    assert "accounts[3].balances.unofficial_currency_code" in msg
    assert "Odd wallet" in msg and "odd-wallet" in msg and repr(code) in msg


def test_an_account_without_any_currency_code_is_an_error_naming_the_fields(
    fake: FakePlaid,
) -> None:
    fake.responses[BALANCE]["accounts"].append(
        unit_account("no-ccy", "No currency", None, 1, "depository")
    )
    with pytest.raises(ProviderPayloadError) as err:
        fetch(fake)
    assert "accounts[3].balances" in str(err.value)
    assert "iso_currency_code and unofficial_currency_code are both null" in str(err.value)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (400, "ITEM_LOGIN_REQUIRED", "ITEM_ERROR"),
        (400, "INVALID_ACCESS_TOKEN", "INVALID_INPUT"),
        (400, "INVALID_API_KEYS", "INVALID_INPUT"),
    ],
)
def test_refused_credentials_are_an_authentication_failure_saying_relink(
    fake: FakePlaid, status: int, code: str, error_type: str
) -> None:
    fake.fail_next(BALANCE, status, code, error_type)
    out, _ = run(fake)
    assert not out.ok and out.error_code == "authentication_failure"
    assert out.attempts == 1  # not retried: the user must act
    assert RELINK in (out.error_message or "") and code in (out.error_message or "")


def test_a_wrong_secret_is_refused_by_the_fake_and_never_quoted(fake: FakePlaid) -> None:
    creds = {**fake.credentials(), "secret": "wrong-secret-0123456789"}
    with pytest.raises(AuthenticationFailure) as err:
        fetch(fake, creds)
    assert "INVALID_API_KEYS" in str(err.value) and "wrong-secret" not in str(err.value)


def test_a_rate_limit_is_retried_after_the_delay_plaid_asks_for(fake: FakePlaid) -> None:
    fake.fail_next(
        BALANCE, 429, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "3"}
    )
    with pytest.raises(RateLimited) as err:
        fetch(fake)
    assert err.value.retry_after == 3.0
    fake.fail_next(
        BALANCE, 429, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "3"}
    )
    out, slept = run(fake)
    assert out.ok and out.attempts == 2 and slept == [3.0]
    assert total(by_id(out.snapshot)[CHECKING]) == 110  # type: ignore[arg-type]


def test_a_retry_after_date_is_honoured(fake: FakePlaid) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake.fail_next(HOLDINGS, 503, "PLANNED_MAINTENANCE", "API_ERROR", headers={"Retry-After": when})
    with pytest.raises(TransientError) as err:
        fetch(fake)
    assert err.value.retry_after is not None and 20 < err.value.retry_after <= 30


def test_a_server_error_is_transient_and_retried_until_the_fake_recovers(
    fake: FakePlaid,
) -> None:
    fake.fail_next(HOLDINGS, 500, "INTERNAL_SERVER_ERROR", "API_ERROR", times=2)
    out, slept = run(fake)
    assert out.ok and out.attempts == 3 and slept == []  # backoff_s=0
    assert fake.calls(HOLDINGS) == 3
    assert len(out.snapshot.sub_accounts) == 8  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (500, "INTERNAL_SERVER_ERROR", "API_ERROR"),
        (503, "PLANNED_MAINTENANCE", "API_ERROR"),
        (400, "INSTITUTION_DOWN", "INSTITUTION_ERROR"),
        (400, "PRODUCT_NOT_READY", "ITEM_ERROR"),
    ],
)
def test_outages_are_transient(fake: FakePlaid, status: int, code: str, error_type: str) -> None:
    fake.fail_next(LIABILITIES, status, code, error_type, times=3)
    with pytest.raises(TransientError) as err:
        fetch(fake)
    assert isinstance(err.value, TransientError) and err.value.code == "transient"
    assert code in str(err.value)
    assert f"HTTP {status} {error_type}/{code}" in str(err.value)
    out, _ = run(fake)  # two failures left, then success
    assert out.ok and out.attempts == 3


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (502, TransientError, "transient"),
        (503, TransientError, "transient"),
        (429, RateLimited, "rate_limited"),
        (403, AuthenticationFailure, "authentication_failure"),
        (404, ProviderPayloadError, "provider_error"),
    ],
)
def test_an_error_page_without_plaids_error_object_is_mapped_by_its_status(
    fake: FakePlaid, status: int, error: type[ProviderError], code: str
) -> None:
    page = f"<html><body>{status} from the gateway</body></html>"
    headers = {"Content-Type": "text/html", "Retry-After": "7"}
    fake.malformed(BALANCE, page, status=status, headers=headers)
    with pytest.raises(ProviderError) as err:
        fetch(fake)
    assert type(err.value) is error and err.value.code == code
    assert f"HTTP {status}" in str(err.value) and "from the gateway" in str(err.value)
    if isinstance(err.value, TransientError):
        assert err.value.retry_after == 7.0


def test_a_refused_connection_is_transient(fake: FakePlaid) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError) as err:
        fetch(fake, api_url=f"http://127.0.0.1:{port}")
    assert "connection failed (refused)" in str(err.value)


def test_a_slow_answer_times_out_within_the_network_timeout(fake: FakePlaid) -> None:
    fake.delay_s = 1.0
    with pytest.raises(FetchTimeout) as err:
        fetch(fake, timeout_s=0.2)
    assert err.value.code == "timeout" and "no answer within 0.2 s" in str(err.value)


def _drop(path: list[str | int]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(body: dict[str, Any]) -> dict[str, Any]:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return body

    return edit


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(body: dict[str, Any]) -> dict[str, Any]:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return body

    return edit


@pytest.mark.parametrize(
    ("endpoint", "edit", "field"),
    [
        (BALANCE, _drop(["accounts", 0, "balances"]), "accounts[0].balances: required field"),
        (BALANCE, _drop(["accounts", 0, "balances", "current"]), "accounts[0].balances.current"),
        (BALANCE, _drop(["accounts", 1, "account_id"]), "accounts[1].account_id"),
        (BALANCE, _drop(["accounts"]), "accounts: required field missing"),
        (BALANCE, _drop(["request_id"]), "request_id: required field missing"),
        (
            BALANCE,
            _set(["accounts", 0, "balances", "current"], "110.00 USD"),
            "accounts[0].balances.current: expected a number or null, got the string '110.00 USD'",
        ),
        (BALANCE, _set(["accounts", 0, "balances"], None), "accounts[0].balances: expected"),
        (
            BALANCE,
            _set(["accounts", 1, "balances", "current"], None),
            "accounts[1].balances.current",
        ),
        (
            BALANCE,
            _set(["accounts", 0, "balances", "iso_currency_code"], "usd"),
            "iso_currency_code",
        ),
        (BALANCE, _set(["accounts"], {"x": 1}), "accounts: expected a list, got an object"),
        (HOLDINGS, _drop(["holdings"]), "holdings: required field missing"),
        (HOLDINGS, _set(["securities"], None), "securities: expected a list, got null"),
        (HOLDINGS, _drop(["accounts", 2, "balances"]), "accounts[2].balances: required field"),
        (HOLDINGS, _drop(["securities", 3, "security_id"]), "securities[3].security_id"),
        (HOLDINGS, _set(["securities"], []), "absent from securities"),
        (
            LIABILITIES,
            _drop(["liabilities", "mortgage", 0, "interest_rate"]),
            "liabilities.mortgage[0].interest_rate: required field missing",
        ),
        (LIABILITIES, lambda body: "<html>Bad gateway</html>", "the body is not JSON"),
        (LIABILITIES, lambda body: "[1, 2]", "the body is a list, expected a JSON object"),
        (LIABILITIES, lambda body: "42", "the body is the number 42, expected a JSON object"),
        (LIABILITIES, lambda body: "", "the body is empty"),
    ],
)
def test_a_malformed_answer_is_a_provider_error_naming_the_field(
    fake: FakePlaid, endpoint: str, edit: Any, field: str
) -> None:
    fake.malformed(endpoint, edit(copy.deepcopy(fake.responses[endpoint])), times=3)
    with pytest.raises(ProviderError) as err:
        fetch(fake)
    assert err.value.code == "provider_error" and not err.value.retryable
    assert field in str(err.value), str(err.value)
    assert f"Plaid {endpoint}" in str(err.value)
    assert "the body is not the expected JSON object" not in str(err.value)
    out, _ = run(fake)
    assert not out.ok and out.snapshot is None and out.attempts == 1  # never a wrong value
    assert out.error_code == "provider_error"


def test_a_balance_answer_listing_no_account_is_an_error(fake: FakePlaid) -> None:
    fake.malformed(BALANCE, {**fake.responses[BALANCE], "accounts": []})
    with pytest.raises(ProviderPayloadError, match="lists no account"):
        fetch(fake)
    assert [r.path for r in fake.requests] == [BALANCE]  # the other products are not called


def test_secrets_never_appear_in_error_messages(fake: FakePlaid) -> None:
    secrets = [fake.secret, fake.access_token, fake.client_id]
    echo = f"bad token {fake.access_token} for {fake.client_id}/{fake.secret}"
    messages: list[str] = []
    for scenario in (
        # hostile answers echoing the credentials back
        lambda: fake.fail_next(BALANCE, 400, "INVALID_FIELD", "INVALID_REQUEST", message=echo),
        lambda: fake.malformed(BALANCE, f"<html>{echo}</html>"),
        lambda: fake.malformed(BALANCE, f"<html>{echo}</html>", status=502),
        lambda: fake.malformed(
            BALANCE,
            _set(["accounts", 0, "balances", "current"], echo)(
                copy.deepcopy(fake.responses[BALANCE])
            ),
        ),
        lambda: fake.fail_next(BALANCE, 400, "ITEM_LOGIN_REQUIRED", "ITEM_ERROR"),
        lambda: fake.fail_next(BALANCE, 429, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED"),
        lambda: fake.fail_next(BALANCE, 500, "INTERNAL_SERVER_ERROR", "API_ERROR"),
        lambda: fake.malformed(BALANCE, "not json"),
    ):
        scenario()
        with pytest.raises(ProviderError) as err:
            fetch(fake)
        messages.append(str(err.value))
    fake.access_tokens.clear()
    with pytest.raises(AuthenticationFailure) as auth:
        fetch(fake)
    messages.append(str(auth.value))
    assert len(messages) == 9
    assert sum("***" in m for m in messages) >= 4  # the echoes were masked, not dropped
    for msg in messages:
        for s in secrets:  # not even a piece of one (a message cut short after masking)
            pieces = [s[i : i + 6] for i in range(len(s) - 5)]
            assert not [p for p in pieces if re.search(r"\d", p) and p in msg], msg


def test_warnings_never_quote_a_credential_either(fake: FakePlaid) -> None:
    securities = fake.responses[HOLDINGS]["securities"]
    (achillion,) = [s for s in securities if s["security_id"] == ACHILLION]
    achillion["name"] = f"Achillion {fake.access_token}"
    fake.responses[HOLDINGS]["holdings"].append(
        {**fake.holdings_of(K401)[0], "account_id": f"acct-{fake.secret}"}
    )
    snap = fetch(fake)
    (skipped,) = warnings_of(snap, "skipped")
    assert "Achillion ***" in skipped and "acct-***" in skipped
    assert fake.access_token not in skipped and fake.secret not in skipped


def test_missing_credentials_are_a_credentials_error_without_values(fake: FakePlaid) -> None:
    creds = {k: v for k, v in fake.credentials().items() if k != "access_token"}
    with pytest.raises(ProviderError) as err:
        fetch(fake, creds)
    assert err.value.code == "credentials_error" and "access_token" in str(err.value)
    assert fake.secret not in str(err.value) and fake.requests == []
    with pytest.raises(ProviderError) as err:
        fetch(fake, {**fake.credentials(), "environment": "staging"})
    assert err.value.code == "credentials_error" and "environment" in str(err.value)
    assert "sandbox" in str(err.value) and fake.requests == []


# --------------------------------------------------------------------------- contract


def test_registry_contract_and_options() -> None:
    spec = registry.get_spec("plaid")
    assert spec is SPEC and spec.supports_historical is False
    assert isinstance(registry.get_provider("plaid"), PlaidProvider)
    assert [(f.name, f.secret) for f in spec.credential_fields] == [
        ("client_id", True),
        ("secret", True),
        ("access_token", True),
        ("environment", False),
    ]
    assert registry.option_issues("plaid", {}) == []
    assert SPEC.parse_options({}).products == [  # type: ignore[attr-defined]
        "investments",
        "liabilities",
        "transactions",
    ]
    assert (
        registry.option_issues(
            "plaid",
            {"api_url": "http://127.0.0.1:1234", "timeout_s": 5, "products": ["investments"]},
        )
        == []
    )
    for bad, where, says in (
        ({"api_url": "ftp://x"}, ("api_url",), "expected an http(s) address"),
        ({"timeout_s": 0}, ("timeout_s",), "greater than 0"),
        ({"timeout_s": 301}, ("timeout_s",), "<= 300"),
        ({"products": ["statements"]}, ("products", 0), "got 'statements'"),
        ({"products": ["liabilities"] * 2}, ("products",), "'liabilities' twice"),
        ({"colour": "red"}, ("colour",), "unknown option"),
        ({"_linked_account_id": "x"}, ("_linked_account_id",), "unknown option"),  # no reserved
    ):
        (issue,) = registry.option_issues("plaid", bad)
        assert issue.path == where and says in issue.message, issue
    for name in ("api_url", "timeout_s", "products"):  # documented
        assert SPEC.options.model_fields[name].description


def test_validating_plaid_options_does_not_import_the_sdk() -> None:
    code = """
import sys
import finbot_pipelines.providers.plaid.options
from finbot_pipelines.providers import registry
spec = registry.get_spec("plaid")
assert registry.option_issues("plaid", {"products": ["investments"], "timeout_s": 5}) == []
spec.parse_options({"api_url": "http://127.0.0.1:9"})
spec.parse_credentials({"client_id": "c", "secret": "s", "access_token": "a",
                        "environment": "sandbox"})
leaked = sorted(m for m in sys.modules if m == "plaid" or m.startswith(("plaid.", "urllib3")))
print(leaked)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_environment_picks_plaids_host_when_no_api_url_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    class Recorder:
        def __init__(self, api_url: str, *args: Any, **kwargs: Any) -> None:
            seen.append(api_url)
            raise TransientError("stop before the network")

    monkeypatch.setattr("finbot_pipelines.providers.plaid.provider.PlaidClient", Recorder)
    creds = {"client_id": "c" * 8, "secret": "s" * 8, "access_token": "a" * 8}
    for env in ("sandbox", "production", " Development "):
        with pytest.raises(TransientError):
            fetch_snapshot(SPEC, PlaidProvider(), context(), {}, {**creds, "environment": env})
    assert seen == [
        "https://sandbox.plaid.com",
        "https://production.plaid.com",
        "https://development.plaid.com",
    ]


def test_link_account_keeps_the_signature_the_cli_calls() -> None:
    params = inspect.signature(link_account).parameters
    assert list(params) == [
        "api_url",
        "client_id",
        "secret",
        "environment",
        "sandbox",
        "institution_id",
        "open_browser",
        "user_id",
        "announce",
        "timeout_s",
    ]
    assert params["environment"].default == "production" and params["open_browser"].default


# --------------------------------------------------------------------------- linking


def test_sandbox_linking_end_to_end(fake: FakePlaid) -> None:
    creds = link_account(
        api_url=fake.url, client_id=fake.client_id, secret=fake.secret, sandbox=True
    )
    assert set(creds) == {"client_id", "secret", "access_token", "environment"}
    assert creds["environment"] == "sandbox" and creds["client_id"] == fake.client_id
    assert creds["access_token"].startswith("access-sandbox-")
    assert creds["access_token"] != fake.access_token  # a new Item's token
    create = next(r for r in fake.requests if r.path == SANDBOX_PUBLIC_TOKEN_CREATE)
    assert create.body["institution_id"] == "ins_109508"
    assert set(create.body["initial_products"]) >= {"investments", "liabilities"}
    assert [r.path for r in fake.requests] == [SANDBOX_PUBLIC_TOKEN_CREATE, PUBLIC_TOKEN_EXCHANGE]
    # the stored credentials fetch
    snap = fetch(fake, creds)
    assert len(snap.sub_accounts) == 8
    # the public token was single use
    exchange = next(r for r in fake.requests if r.path == PUBLIC_TOKEN_EXCHANGE)
    with pytest.raises(ProviderError, match="INVALID_PUBLIC_TOKEN") as err:
        exchange_public_token(fake.url, fake.client_id, fake.secret, exchange.body["public_token"])
    assert exchange.body["public_token"] not in str(err.value)


def test_linking_with_wrong_keys_fails_cleanly(fake: FakePlaid) -> None:
    with pytest.raises(AuthenticationFailure) as err:
        link_account(
            api_url=fake.url, client_id=fake.client_id, secret="not-the-secret", sandbox=True
        )
    assert "INVALID_API_KEYS" in str(err.value) and "not-the-secret" not in str(err.value)


def test_a_malformed_link_answer_names_the_field(fake: FakePlaid) -> None:
    fake.malformed(SANDBOX_PUBLIC_TOKEN_CREATE, {"request_id": "r1"})
    with pytest.raises(ProviderPayloadError) as err:
        link_account(api_url=fake.url, client_id=fake.client_id, secret=fake.secret, sandbox=True)
    assert f"Plaid {SANDBOX_PUBLIC_TOKEN_CREATE}" in str(err.value)
    assert "public_token: required field missing" in str(err.value)


def _browser(fake: FakePlaid, pages: list[str]) -> Any:
    """Plays the user's browser: loads the page, then posts what Plaid Link would hand it."""

    def announce(line: str) -> None:
        url = re.search(r"http://\S+", line)
        assert url is not None, line

        def act() -> None:
            with urllib.request.urlopen(url.group(0), timeout=5) as r:
                pages.append(r.read().decode())
            body = json.dumps({"public_token": fake.issue_public_token()}).encode()
            req = urllib.request.Request(
                url.group(0) + "public_token",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            urllib.request.urlopen(req, timeout=5).close()

        threading.Thread(target=act, daemon=True).start()

    return announce


def test_browser_linking_against_the_fake(fake: FakePlaid) -> None:
    pages: list[str] = []
    creds = link_account(
        api_url=fake.url,
        client_id=fake.client_id,
        secret=fake.secret,
        environment="sandbox",
        open_browser=False,
        announce=_browser(fake, pages),
        timeout_s=10,
    )
    (page,) = pages
    link_token = fake.link_tokens[0]
    assert link_token in page and PLAID_LINK_JS in page
    create = next(r for r in fake.requests if r.path == LINK_TOKEN_CREATE)
    assert create.body["user"]["client_user_id"] and create.body["client_name"] == "finbot"
    assert "US" in create.body["country_codes"] and "GB" in create.body["country_codes"]
    assert create.body["products"] and create.body["optional_products"] == [
        "investments",
        "liabilities",
    ]
    assert create.body["transactions"] == {"days_requested": 730}  # two years, not Plaid's 90
    assert creds["environment"] == "sandbox" and creds["access_token"] in fake.access_tokens
    assert len(fetch(fake, creds).sub_accounts) == 8


def test_the_link_page_only_answers_its_own_path_and_times_out() -> None:
    urls: list[str] = []
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            serve_link_page("link-sandbox-x", timeout_s=1.0, on_ready=urls.append)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    while not urls and t.is_alive():
        t.join(0.01)
    base = urls[0]
    root = re.sub(r"/[^/]+/$", "/", base)
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(root, timeout=5)
    assert http_err.value.code == 404
    form = urllib.request.Request(base + "public_token", data=b"public_token=public-x")
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(form, timeout=5)  # not JSON: a cross-site form cannot post
    assert http_err.value.code == 415
    t.join(5)
    assert len(errors) == 1 and isinstance(errors[0], PlaidLinkError)


# --------------------------------------------------------------------------- end to end


def test_end_to_end_one_live_hour_through_the_real_pipeline(tmp_path: Path) -> None:
    from finbot_pipelines_tests.e2e import history_start_for_tests, run_live_hour

    gbp_per_eur, usd_per_eur = D("0.85"), D("1.10")
    with FakePlaid() as fake:
        household(fake)
        config = f"""\
history_start: "{history_start_for_tests()}"
fx_source: static
fx_static_rates: {{GBP: {gbp_per_eur}, USD: {usd_per_eur}}}
profiles:
  - {{id: alice, name: Alice, valuation_ccy: GBP}}
linked_accounts:
  - id: plaid-main
    profile: alice
    provider: plaid
    name: Chase through Plaid
    credentials: plaid-main
    options: {{api_url: "{fake.url}"}}
fetch: {{timeout_s: 20, max_attempts: 2, backoff_s: 0, max_workers: 2}}
"""
        result = run_live_hour(tmp_path / "home", config, {"plaid-main": fake.credentials()})
    assert result.success
    # Independent total, by hand from the example files (household(): checking in GBP,
    # money market in EUR, the rest USD; investment accounts at their holdings),
    # converted at the static rates (per 1 EUR).
    gbp = D("110")
    eur = D("43200")
    usd = EXAMPLES_TOTAL - gbp - eur
    assert usd == D("-410") - D("65262") + IRA_HOLDINGS + K401_HOLDINGS + CRYPTO_HOLDINGS - D(
        "56302.06"
    )
    expected = gbp + eur * gbp_per_eur + usd / usd_per_eur * gbp_per_eur
    row = result.published(
        "select value, total_liabilities, is_stale from marts.fct_linked_account_valuation_hourly "
        "where linked_account_id = 'plaid-main' and valuation_hour = ?",
        [result.hour],
    )
    assert len(row) == 1
    assert D(str(row["value"].iloc[0])) == pytest.approx(expected, rel=D("1e-9"))
    liabilities = (D("410") + D("65262") + D("56302.06")) / usd_per_eur * gbp_per_eur
    assert abs(D(str(row["total_liabilities"].iloc[0]))) == pytest.approx(
        liabilities, rel=D("1e-9")
    )
    assert not bool(row["is_stale"].iloc[0])
    raw = result.raw(
        "select count(*) as n from raw.sub_accounts where linked_account_id = 'plaid-main'"
    )
    assert int(raw["n"].iloc[0]) == 8
