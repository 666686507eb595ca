"""The Plaid provider against a fake Plaid API on 127.0.0.1 built from Plaid's published examples.

Expected numbers are worked out here from the example JSON files (by hand, and
with pandas for the holdings), never by calling the provider's own helpers.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import (
    AuthenticationFailure,
    FetchTimeout,
    ProviderError,
    RateLimited,
    Snapshot,
    TransientError,
)
from finbot_pipelines.providers.fetching import FetchOutcome, FetchTask, RetryPolicy, run_one
from finbot_pipelines.providers.plaid import PlaidProvider
from finbot_pipelines.providers.plaid_link import (
    PLAID_LINK_JS,
    PlaidLinkError,
    exchange_public_token,
    link_account,
    serve_link_page,
)
from finbot_pipelines_tests.fakes.plaid_server import (
    BALANCE,
    HOLDINGS,
    LIABILITIES,
    LINK_TOKEN_CREATE,
    PUBLIC_TOKEN_EXCHANGE,
    SANDBOX_PUBLIC_TOKEN_CREATE,
    FakePlaid,
)

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "api-examples"
HOUR = datetime(2026, 3, 2, 9)
POLICY = RetryPolicy(timeout_s=10.0, max_attempts=3, backoff_s=0.0, max_workers=1)
RELINK = "re-link this account (finbot accounts link plaid)"

# account ids of the published examples
CHECKING = "BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp"
CREDIT_CARD = "dVzbVMLjrxTnLjX4G66XUp5GLklm4oiZy88yK"
STUDENT_LOAN = "Pp1Vpkl9w8sajvK6oEEKtr7vZxBnGpf7LxxLE"
MORTGAGE = "BxBXxLj1m4HMXBm9WZJyUg9XLd4rKEhw8Pb1J"
MONEY_MARKET = "5Bvpj4QknlhVWk7GygpwfVKdd133GoCxB814g"
IRA = "JqMLm4rJwpF6gMPJwBqdh9ZjjPvvpDcb7kDK1"
K401 = "k67E4xKvMlhmleEa4pg9hlwGGNnnEeixPolGm"
CRYPTO = "ax0xgOBYRAIqOOjeLZr0iZBb8r6K88HZXpvmq"

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
    data: dict[str, Any] = json.loads((EXAMPLES / f"plaid_{name}.json").read_text())
    return data


@pytest.fixture()
def fake() -> Iterator[FakePlaid]:
    with FakePlaid() as f:
        yield f


def fetch(fake: FakePlaid, creds: Mapping[str, str] | None = None, **options: Any) -> Snapshot:
    opts = {"api_url": fake.url, "_linked_account_id": "plaid-main", **options}
    return PlaidProvider().fetch(creds or fake.credentials(), opts, HOUR)


def run(
    fake: FakePlaid, sleeps: list[float] | None = None, **options: Any
) -> tuple[FetchOutcome, list[float]]:
    slept: list[float] = [] if sleeps is None else sleeps
    task = FetchTask(
        HOUR, "plaid-main", PlaidProvider(), {"api_url": fake.url, **options}, fake.credentials
    )
    return run_one(task, POLICY, sleep=slept.append), slept


def by_id(snapshot: Snapshot) -> dict[str, Any]:
    return {sa.id: sa for sa in snapshot.sub_accounts}


def total(sa: Any) -> float:
    return sum(i.value for i in sa.items)


def holdings_frame() -> pd.DataFrame:
    """Holdings of the example joined to their securities, with the expected classes."""
    inv = load("investments_holdings_get")
    holdings = pd.DataFrame(inv["holdings"])
    securities = pd.DataFrame(inv["securities"])[["security_id", "name", "type", "ticker_symbol"]]
    df = holdings.merge(securities, on="security_id", how="left", validate="many_to_one")
    df["asset_class"] = df["type"].map(lambda t: SECURITY_CLASSES[t][0])
    df["asset_type"] = df["type"].map(lambda t: SECURITY_CLASSES[t][1])
    return df


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
        CHECKING: ("Plaid Checking", "USD", "depository", 110.0),
        CREDIT_CARD: ("Plaid Credit Card", "USD", "credit", -410.0),
        STUDENT_LOAN: ("Plaid Student Loan", "USD", "loan", -65262.0),
        MONEY_MARKET: ("Plaid Money Market", "USD", "depository", 43200.0),
        IRA: ("Plaid IRA", "USD", "investment", 110.01),  # 0.01 USD cash + 110 call option
        K401: ("Plaid 401k", "USD", "investment", 24580.0605),  # balances.current
        CRYPTO: ("Plaid Crypto Exchange Account", "USD", "investment", 48200.03),
        MORTGAGE: ("Plaid Mortgage", "USD", "loan", -56302.06),
    }
    for acc_id, (name, ccy, kind, value) in expected.items():
        sa = subs[acc_id]
        assert (sa.name, sa.currency, sa.account_type) == (name, ccy, kind), acc_id
        assert total(sa) == pytest.approx(value, abs=1e-9), acc_id
    # 110 + 43200 + 110.01 + 24580.0605 + 48200.03 - 410 - 65262 - 56302.06
    assert sum(total(sa) for sa in snap.sub_accounts) == pytest.approx(-5773.9595, abs=1e-9)


def test_holdings_become_items_with_units_values_and_classes(fake: FakePlaid) -> None:
    subs = by_id(fetch(fake))
    df = holdings_frame()
    for acc_id in (IRA, K401, CRYPTO):
        want = df[df["account_id"] == acc_id]
        items = {i.name: i for i in subs[acc_id].items}
        for row in want.itertuples():
            item = items[row.name]
            assert item.units == pytest.approx(row.quantity)
            assert item.value == pytest.approx(row.institution_value)
            assert (item.asset_class, item.asset_type) == (row.asset_class, row.asset_type)
            assert item.currency == row.iso_currency_code == "USD"
            assert item.item_type == "asset"
            if isinstance(row.ticker_symbol, str):
                assert item.symbol == row.ticker_symbol
        # documented rule: cash the holdings do not account for becomes "Uninvested cash"
        balance = next(
            a["balances"]["current"]
            for a in load("investments_holdings_get")["accounts"]
            if a["account_id"] == acc_id
        )
        gap = balance - want["institution_value"].sum()
        extra = set(items) - set(want["name"])
        if gap > 0.005:
            assert extra == {"Uninvested cash"}
            cash = items["Uninvested cash"]
            assert (cash.asset_class, cash.asset_type) == ("cash", "cash")
            assert cash.value == pytest.approx(gap, abs=1e-9)
        else:
            assert extra == set()
    # by hand: 401k 24580.0605 - 15326.6955 = 9253.365; crypto 48200.03 - 4437.35905
    assert {i.name: i.value for i in subs[K401].items}["Uninvested cash"] == pytest.approx(9253.365)
    assert {i.name: i.value for i in subs[CRYPTO].items}["Uninvested cash"] == pytest.approx(
        43762.67095
    )
    assert "Uninvested cash" not in {i.name for i in subs[IRA].items}  # 0.01 + 110 = 110.01


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
        -410.0,
    )
    (loan,) = subs[STUDENT_LOAN].items
    assert (loan.item_type, loan.asset_type, loan.value) == ("liability", "student_loan", -65262.0)
    (mortgage,) = subs[MORTGAGE].items
    assert (mortgage.item_type, mortgage.asset_class, mortgage.asset_type) == (
        "liability",
        "real_estate",
        "mortgage",
    )
    assert mortgage.value == -56302.06
    (cash,) = subs[CHECKING].items
    assert (cash.item_type, cash.asset_class, cash.asset_type, cash.value) == (
        "asset",
        "cash",
        "cash",
        110.0,
    )
    liabilities = [
        i.value for sa in snap.sub_accounts for i in sa.items if i.item_type == "liability"
    ]
    assert sorted(liabilities) == [-65262.0, -56302.06, -410.0]


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
    assert total(subs[CHECKING]) == 110.0 and total(subs[MONEY_MARKET]) == 43200.0


def test_a_holding_in_another_currency_gets_its_own_sub_account(fake: FakePlaid) -> None:
    for h in fake.responses[HOLDINGS]["holdings"]:
        if h["account_id"] == K401 and h["security_id"] == "JDdP7XPMklt5vwPmDN45t3KAoWAPmjtpaW7DP":
            h["iso_currency_code"] = "CAD"  # the Matthews fund, 636.309
    subs = by_id(fetch(fake))
    cad = subs[f"{K401}:CAD"]
    assert (cad.currency, cad.name, cad.account_type) == ("CAD", "Plaid 401k (CAD)", "investment")
    assert [(i.name, i.value, i.currency) for i in cad.items] == [
        ("Matthews Pacific Tiger Fund Insti Class", 636.309, "CAD")
    ]
    # the USD balance cannot be compared with mixed-currency holdings: no uninvested cash line
    usd = subs[K401]
    assert "Uninvested cash" not in {i.name for i in usd.items}
    assert total(usd) == pytest.approx(2.11 + 20.84 + 1373.6865 + 948.08 + 12345.67)


@pytest.mark.parametrize(
    "code", ["PRODUCTS_NOT_SUPPORTED", "NO_INVESTMENT_ACCOUNTS", "NO_LIABILITY_ACCOUNTS"]
)
def test_products_not_enabled_are_skipped(fake: FakePlaid, code: str) -> None:
    fake.products_missing("investments", "liabilities", error_code=code)
    subs = by_id(fetch(fake))
    assert list(subs) == [CHECKING, CREDIT_CARD, STUDENT_LOAN]  # the balance answer only
    assert [i.asset_type for i in subs[STUDENT_LOAN].items] == ["student_loan"]  # from subtype
    assert total(subs[CREDIT_CARD]) == -410.0
    assert fake.calls(HOLDINGS) == 1 and fake.calls(LIABILITIES) == 1


def test_an_investment_account_without_holdings_is_valued_at_its_balance(
    fake: FakePlaid,
) -> None:
    ira = next(a for a in fake.responses[HOLDINGS]["accounts"] if a["account_id"] == IRA)
    fake.responses[BALANCE]["accounts"].append(copy.deepcopy(ira))
    fake.products_missing("investments")
    (item,) = by_id(fetch(fake))[IRA].items
    assert (item.asset_class, item.asset_type, item.value) == (
        "other",
        "investment_account",
        110.01,
    )


def test_the_products_option_limits_the_calls(fake: FakePlaid) -> None:
    snap = fetch(fake, products=["liabilities"])
    assert fake.calls(HOLDINGS) == 0 and fake.calls(LIABILITIES) == 1
    assert [sa.id for sa in snap.sub_accounts] == [CHECKING, CREDIT_CARD, STUDENT_LOAN, MORTGAGE]


def test_requests_carry_the_keys_in_headers_and_the_token_in_the_body(fake: FakePlaid) -> None:
    fetch(fake)
    assert [r.path for r in fake.requests] == [BALANCE, HOLDINGS, LIABILITIES]
    for r in fake.requests:
        headers = {k.lower(): v for k, v in r.headers.items()}
        assert headers["plaid-client-id"] == fake.client_id
        assert headers["plaid-secret"] == fake.secret
        assert r.body == {"access_token": fake.access_token}


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
    assert total(by_id(out.snapshot)[CHECKING]) == 110.0  # type: ignore[arg-type]


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
    assert type(err.value) is TransientError and code in str(err.value)
    out, _ = run(fake)  # two failures left, then success
    assert out.ok and out.attempts == 3


def test_a_refused_connection_is_transient(fake: FakePlaid) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError) as err:
        fetch(fake, api_url=f"http://127.0.0.1:{port}")
    assert "connection failed" in str(err.value)


def test_a_slow_answer_times_out_within_the_network_timeout(fake: FakePlaid) -> None:
    fake.delay_s = 1.0
    with pytest.raises(FetchTimeout) as err:
        fetch(fake, timeout_s=0.2)
    assert err.value.code == "timeout"


def _drop(path: list[str | int]) -> Any:
    def edit(body: dict[str, Any]) -> dict[str, Any]:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return body

    return edit


def _set(path: list[str | int], value: Any) -> Any:
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
        (BALANCE, _drop(["accounts", 0, "balances", "current"]), "current"),
        (BALANCE, _drop(["accounts", 1, "account_id"]), "account_id"),
        (BALANCE, _set(["accounts", 0, "balances", "current"], "110.00 USD"), "current"),
        (BALANCE, _set(["accounts", 1, "balances", "current"], None), "balances.current"),
        (BALANCE, _set(["accounts", 0, "balances", "iso_currency_code"], None), "currency_code"),
        (HOLDINGS, _drop(["securities", 0, "figi"]), "figi"),
        (HOLDINGS, _set(["holdings", 0, "quantity"], None), "quantity"),
        (HOLDINGS, _set(["holdings", 1, "security_id"], "no-such-security"), "security_id"),
        (LIABILITIES, _drop(["liabilities", "mortgage", 0, "interest_rate"]), "interest_rate"),
        (LIABILITIES, lambda body: "<html>Bad gateway</html>", "JSON object"),
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
    out, _ = run(fake)
    assert not out.ok and out.snapshot is None and out.attempts == 1  # never a wrong value
    assert out.error_code == "provider_error"


def test_secrets_never_appear_in_error_messages(fake: FakePlaid) -> None:
    secrets = [fake.secret, fake.access_token, fake.client_id]
    messages: list[str] = []
    # a hostile answer echoing the credentials back
    fake.fail_next(
        BALANCE,
        400,
        "INVALID_FIELD",
        "INVALID_REQUEST",
        message=f"bad token {fake.access_token} for {fake.client_id}/{fake.secret}",
    )
    for scenario in (
        lambda: None,
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
    with pytest.raises(AuthenticationFailure) as err:
        fetch(fake)
    messages.append(str(err.value))
    assert len(messages) == 6
    for msg in messages:
        for s in secrets:
            assert s not in msg, msg


def test_missing_credentials_are_a_credentials_error_without_values(fake: FakePlaid) -> None:
    creds = {k: v for k, v in fake.credentials().items() if k != "access_token"}
    with pytest.raises(ProviderError) as err:
        fetch(fake, creds)
    assert err.value.code == "credentials_error" and "access_token" in str(err.value)
    assert fake.secret not in str(err.value) and fake.requests == []


# --------------------------------------------------------------------------- contract


def test_registry_contract_and_options() -> None:
    p = registry.get_provider("plaid")
    assert isinstance(p, PlaidProvider) and p.supports_historical is False
    assert [(f.name, f.secret) for f in p.credential_fields] == [
        ("client_id", True),
        ("secret", True),
        ("access_token", True),
        ("environment", False),
    ]
    p.validate_options({})
    p.validate_options(
        {
            "_linked_account_id": "x",
            "api_url": "http://127.0.0.1:1234",
            "timeout_s": 5,
            "products": ["investments"],
        }
    )
    for bad, where in (
        ({"api_url": "ftp://x"}, "options.api_url"),
        ({"timeout_s": 0}, "options.timeout_s"),
        ({"products": ["transactions"]}, "options.products[0]"),
        ({"colour": "red"}, "options.colour"),
    ):
        with pytest.raises(ValueError, match=re.escape(where)):
            p.validate_options(bad)


def test_the_environment_picks_plaids_host_when_no_api_url_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    def fake_call(endpoint: str, fn: Any, request: Any, timeout_s: float, secrets: Any) -> Any:
        seen.append(fn.__self__.api_client.configuration.host)
        raise TransientError("stop before the network")

    monkeypatch.setattr("finbot_pipelines.providers.plaid.call_plaid", fake_call)
    creds = {"client_id": "c" * 8, "secret": "s" * 8, "access_token": "a" * 8}
    for env in ("sandbox", "production"):
        with pytest.raises(TransientError):
            PlaidProvider().fetch({**creds, "environment": env}, {}, HOUR)
    assert seen == ["https://sandbox.plaid.com", "https://production.plaid.com"]


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
    with pytest.raises(ProviderError, match="INVALID_PUBLIC_TOKEN"):
        exchange_public_token(fake.url, fake.client_id, fake.secret, exchange.body["public_token"])


def test_linking_with_wrong_keys_fails_cleanly(fake: FakePlaid) -> None:
    with pytest.raises(AuthenticationFailure) as err:
        link_account(
            api_url=fake.url, client_id=fake.client_id, secret="not-the-secret", sandbox=True
        )
    assert "INVALID_API_KEYS" in str(err.value) and "not-the-secret" not in str(err.value)


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

    gbp_per_eur, usd_per_eur = 0.85, 1.10
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
    # money market in EUR, the rest USD), converted at the static rates (per 1 EUR).
    gbp = 110.0
    eur = 43200.0
    usd = -410.0 - 65262.0 + 110.01 + 24580.0605 + 48200.03 - 56302.06
    expected = gbp + eur * gbp_per_eur + usd / usd_per_eur * gbp_per_eur
    row = result.published(
        "select value, total_liabilities, is_stale from marts.fct_linked_account_valuation_hourly "
        "where linked_account_id = 'plaid-main' and valuation_hour = ?",
        [result.hour],
    )
    assert len(row) == 1
    assert row["value"].iloc[0] == pytest.approx(expected, rel=1e-9)
    liabilities = (410.0 + 65262.0 + 56302.06) / usd_per_eur * gbp_per_eur
    assert abs(row["total_liabilities"].iloc[0]) == pytest.approx(liabilities, rel=1e-9)
    assert not bool(row["is_stale"].iloc[0])
    raw = result.raw(
        "select count(*) as n from raw.sub_accounts where linked_account_id = 'plaid-main'"
    )
    assert int(raw["n"].iloc[0]) == 8
