"""Crypto exchange providers (kraken, binance, ccxt) against fakes speaking the real wire protocols.

The fakes answer from ``shared/data/api-examples/ccxt_*_responses.json`` plus the
scenario additions declared below (each marked). Expected values are worked out
here by hand from those numbers (Decimal literals, multiplied and divided in the
test, quantized to 10 places), never by the code under test. Every fetch goes
through the one production path (``fetch_snapshot``: options and credentials
models, the provider, the snapshot checks) with the production ccxt client.
"""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import FetchContext, Provider, fetch_snapshot
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    CredentialsError,
    FetchTimeout,
    FetchWarning,
    Item,
    OptionsError,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    RetiredProvider,
    Snapshot,
    Transaction,
    TransientError,
    UnpricedError,
)
from finbot_pipelines.providers.exchanges import options as exchange_options
from finbot_pipelines.providers.exchanges.client import ExchangeClient, rebase_urls
from finbot_pipelines.providers.exchanges.options import (
    CCXT_EXCHANGES,
    RETIRED_EXCHANGES,
    ExchangeCredentials,
    ExchangeOptions,
)
from finbot_pipelines.providers.exchanges.provider import (
    BinanceProvider,
    CcxtProvider,
    KrakenProvider,
)
from finbot_pipelines.providers.exchanges.valuation import (
    Market,
    MarketGraph,
    base_asset,
    quote_candidates,
)
from finbot_pipelines.providers.fetching import FetchTask, RetryPolicy, run_one
from finbot_pipelines.providers.http import Masker
from finbot_pipelines_tests.conftest import REPO, SHARED_DATA
from finbot_pipelines_tests.fakes import binance_server as bn
from finbot_pipelines_tests.fakes import kraken_server as kr

HOUR = datetime(2026, 1, 5, 10)
EXAMPLES = SHARED_DATA / "api-examples"
D = Decimal
TEN_PLACES = D("1e-10")


def q(value: Decimal) -> Decimal:
    """A computed value as the providers round it: 10 decimal places, half even."""
    return value.quantize(TEN_PLACES)


def _examples(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(), parse_float=Decimal)
    return data


def fetch(
    provider_id: str,
    options: dict[str, Any],
    credentials: dict[str, Any],
    *,
    valuation_ccy: str | None = None,
    priced_units: frozenset[str] = frozenset(),
) -> Snapshot:
    """One fetch through the production path (options, credentials, provider, checks)."""
    ctx = FetchContext(
        f"{provider_id}-main", HOUR, valuation_ccy=valuation_ccy, priced_units=priced_units
    )
    spec = registry.get_spec(provider_id)
    return fetch_snapshot(spec, registry.get_provider(provider_id), ctx, options, credentials)


def _items(snapshot: Snapshot) -> dict[str, Item]:
    (sa,) = snapshot.sub_accounts
    return {i.name: i for i in sa.items}


def _values(snapshot: Snapshot) -> dict[str, Decimal | None]:
    return {name: item.value for name, item in _items(snapshot).items()}


def _warnings(snapshot: Snapshot, code: str) -> list[str]:
    return [w.message for w in snapshot.warnings if w.code == code]


# =========================================================================== Kraken

KRAKEN_CREDS = {"api_key": kr.API_KEY, "api_secret": kr.API_SECRET}

# From the examples: BalanceEx ZUSD 25435.21 and XXBT 1.2435 (JSON numbers, hold_trade
# part of them), Ticker XBTUSDT last trade c[0] "73380.60000".
EX_USD = D("25435.21")
EX_BTC = D("1.2435")
EX_XBT_USDT = D("73380.60000")

# Scenario additions (not in the examples): prices as Kraken quotes them, last trade.
KRAKEN_USDT_USD = "0.99950"  # USDTZUSD: no XBT/USD pair in this fake, so BTC goes via USDT
KRAKEN_EUR_USD = "1.08500"  # ZEURZUSD
KRAKEN_ETH_USD = "3000.00"  # XETHZUSD
KRAKEN_EXTRA_BALANCES = {  # asset id -> (balance, hold_trade)
    "ZEUR": (1500.0, 0.0),  # fiat: cash
    "USDT": (300.0, 100.0),  # stablecoin; hold_trade is part of balance (not added)
    "XETH": (0.0002, 0.0),  # 0.0002 * 3000 = 0.60 USD: dust below 1.0, left out
    "KFEE": (1250.0, 0.0),  # Kraken fee credits: ignored, never valued
}


def kraken_examples_fake() -> Iterator[kr.KrakenFake]:
    with kr.kraken_fake(kr.KrakenFake.state_from_examples(SHARED_DATA)) as fake:
        yield fake


@pytest.fixture
def kraken_examples() -> Iterator[kr.KrakenFake]:
    """The published example answers, nothing added."""
    yield from kraken_examples_fake()


@pytest.fixture
def kraken() -> Iterator[kr.KrakenFake]:
    for fake in kraken_examples_fake():
        for asset, (balance, hold) in KRAKEN_EXTRA_BALANCES.items():
            fake.add_balance(asset, balance, hold)
        fake.add_ticker("USDTZUSD", KRAKEN_USDT_USD)
        fake.add_ticker("ZEURZUSD", KRAKEN_EUR_USD)
        fake.add_ticker("XETHZUSD", KRAKEN_ETH_USD)
        yield fake


def kraken_options(fake: kr.KrakenFake, **extra: Any) -> dict[str, Any]:
    return {"api_url": fake.url, "enable_rate_limit": False, **extra}


def kraken_expected_usd() -> dict[str, Decimal]:
    """Item values in USD, by hand from the example answers and the additions above."""
    usdt_usd, eur_usd = D(KRAKEN_USDT_USD), D(KRAKEN_EUR_USD)
    return {
        "USD": EX_USD,  # 25435.21: balance is the total
        "BTC": EX_BTC * EX_XBT_USDT * usdt_usd,  # BTC -> USDT -> USD, exact: 91203.15171195
        "EUR": D("1500") * eur_usd,  # 1627.5
        "USDT": D("300") * usdt_usd,  # 299.85
    }


def test_kraken_example_balances_with_the_fixture_ticker(kraken_examples: kr.KrakenFake) -> None:
    """The published answers alone: BTC has a market (BTC/USDT) but no path to any fiat."""
    snap = fetch("kraken", kraken_options(kraken_examples), KRAKEN_CREDS)
    (sa,) = snap.sub_accounts
    assert (sa.id, sa.name, sa.currency, sa.account_type) == (
        "kraken",
        "Kraken",
        "USD",
        "investment",
    )
    items = _items(snap)
    assert items["USD"].value == D("25435.21") and items["USD"].units == D("25435.21")
    btc = items["BTC"]  # XXBT -> BTC (ccxt's code); unpriced, kept with its units
    assert (btc.value, btc.units, btc.unit, btc.symbol) == (None, D("1.2435"), "BTC", "BTC")
    (unpriced,) = _warnings(snap, "unpriced")
    assert "'BTC' (1.2435 BTC)" in unpriced
    # the household's unit prices can value BTC downstream: no warning
    snap = fetch(
        "kraken", kraken_options(kraken_examples), KRAKEN_CREDS, priced_units=frozenset({"BTC"})
    )
    assert _items(snap)["BTC"].value is None and snap.warnings == ()
    # one more market, USDT/USD: BTC -> USDT -> USD, 1.2435 * 73380.6 * 0.9995 exactly
    kraken_examples.add_ticker("USDTZUSD", KRAKEN_USDT_USD)
    snap = fetch("kraken", kraken_options(kraken_examples), KRAKEN_CREDS)
    assert _values(snap) == {"USD": D("25435.21"), "BTC": D("91203.15171195")}
    assert snap.warnings == ()


def test_kraken_values_a_realistic_account(kraken: kr.KrakenFake) -> None:
    snap = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, valuation_ccy="USD")
    (sa,) = snap.sub_accounts
    assert (sa.id, sa.name, sa.currency, sa.account_type) == (
        "kraken",
        "Kraken",
        "USD",
        "investment",
    )
    items = _items(snap)
    expected = kraken_expected_usd()
    assert _values(snap) == expected  # ETH dust and KFEE left out; exact Decimals
    assert items["BTC"].value == D("91203.15171195")
    assert sum(expected.values()) == D("25435.21") + D("91203.15171195") + D("1627.5") + D("299.85")
    btc, usd, eur, usdt = items["BTC"], items["USD"], items["EUR"], items["USDT"]
    assert (btc.asset_class, btc.asset_type, btc.units, btc.symbol, btc.unit) == (
        "crypto",
        "crypto_currency",
        D("1.2435"),
        "BTC",
        "BTC",
    )
    assert (usd.asset_class, usd.asset_type, usd.units, usd.currency) == (
        "cash",
        "cash",
        D("25435.21"),
        "USD",
    )
    assert (eur.asset_class, eur.asset_type, eur.units, eur.currency, eur.unit) == (
        "cash",
        "cash",
        D("1500"),
        "EUR",
        "EUR",
    )
    assert (usdt.asset_class, usdt.asset_type, usdt.units) == ("crypto", "stable_coin", D("300"))
    assert all(
        isinstance(i.value, Decimal) and isinstance(i.units, Decimal) for i in items.values()
    )
    assert all(i.item_type == "asset" for i in items.values())
    (dust,) = _warnings(snap, "skipped")
    assert "dust_threshold 1 USD" in dust and "ETH (0.0002 ETH, worth 0.6 USD)" in dust
    assert "KFEE" not in dust and not _warnings(snap, "unpriced")
    # the wire conversation ccxt had with the fake
    assert kraken.state.requests == [
        "GET /0/public/Assets",
        "GET /0/public/AssetPairs",
        "POST /0/private/BalanceEx",
        "GET /0/public/Ticker",
        "POST /0/private/Ledgers",  # the history (empty here): one page
    ]


def test_kraken_values_in_the_profile_currency(kraken: kr.KrakenFake) -> None:
    """A EUR profile: USD through the inverted EUR/USD, BTC via USDT/USD then USD/EUR."""
    snap = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, valuation_ccy="EUR")
    assert snap.sub_accounts[0].currency == "EUR"
    eur_usd, usdt_usd = D(KRAKEN_EUR_USD), D(KRAKEN_USDT_USD)
    assert _values(snap) == {
        "EUR": D("1500"),
        "USD": q(D("25435.21") / eur_usd),  # 23442.5898617512
        "BTC": q(D("1.2435") * D("73380.6") * usdt_usd / eur_usd),  # 84058.2043428111
        "USDT": q(D("300") * usdt_usd / eur_usd),  # 276.3594470046
    }
    assert _values(snap)["BTC"] == D("84058.2043428111")
    (dust,) = _warnings(snap, "skipped")  # 0.0002 * 3000 / 1.085 = 0.55 EUR
    assert "ETH (0.0002 ETH, worth 0.5529953917 EUR)" in dust
    # quote_ccy overrides the profile's currency
    snap = fetch(
        "kraken", kraken_options(kraken, quote_ccy="USD"), KRAKEN_CREDS, valuation_ccy="EUR"
    )
    assert snap.sub_accounts[0].currency == "USD"
    assert _values(snap) == kraken_expected_usd()
    # a profile currency Kraken cannot reach here (no GBP market): valued in USD instead
    snap = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, valuation_ccy="GBP")
    assert snap.sub_accounts[0].currency == "USD"
    assert _values(snap) == kraken_expected_usd()


def test_kraken_dust_threshold(kraken: kr.KrakenFake) -> None:
    # threshold 0: the 0.60 USD of ETH is kept, nothing skipped
    snap = fetch("kraken", kraken_options(kraken, dust_threshold=0), KRAKEN_CREDS)
    assert _items(snap)["ETH"].value == D("0.0002") * D("3000")
    assert not _warnings(snap, "skipped")
    # threshold 300 USD: USDT (299.85) is dust too
    snap = fetch("kraken", kraken_options(kraken, dust_threshold=300), KRAKEN_CREDS)
    assert set(_items(snap)) == {"USD", "BTC", "EUR"}
    (dust,) = _warnings(snap, "skipped")
    assert "ETH (0.0002 ETH, worth 0.6 USD)" in dust
    assert "USDT (300 USDT, worth 299.85 USD)" in dust


# Staking / earn balances, as Kraken lists them (asset id -> amount), and their base asset.
KRAKEN_STAKING = {
    "ETH2.S": ("1.5", "ETH"),  # staked ETH
    "ETH2": ("0.25", "ETH"),  # ETH staked before the merge, not yet staked again
    "ETH.F": ("0.5", "ETH"),  # auto earn
    "XBT.M": ("0.1", "BTC"),  # opt-in rewards; ccxt's code BTC.M (XBT -> BTC)
    "DOT.S": ("12", "DOT"),  # staked DOT
    "DOT28.S": ("10", "DOT"),  # staked DOT with a 28-day lock period
    "SOL.B": ("2", "SOL"),  # bonded SOL
    "KSM.P": ("2.5", "KSM"),  # parachain KSM: no KSM market here, unpriced
    "USD.HOLD": ("100", "USD"),  # fiat on hold
}
KRAKEN_DOT_USD = "4.1234"
KRAKEN_SOL_USD = "150.25"


def test_kraken_staking_and_earn_balances_are_valued_as_their_base(kraken: kr.KrakenFake) -> None:
    for asset, (amount, _) in KRAKEN_STAKING.items():
        kraken.add_balance(asset, D(amount))
    kraken.add_ticker("DOTUSD", KRAKEN_DOT_USD)
    kraken.add_ticker("SOLUSD", KRAKEN_SOL_USD)
    kraken.add_ticker("ETH2.SETH", "0.98000")  # ETH2.S's own market: not used, 1 ETH2.S = 1 ETH
    snap = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, valuation_ccy="USD")
    items = _items(snap)
    eth, btc = D(KRAKEN_ETH_USD), EX_XBT_USDT * D(KRAKEN_USDT_USD)
    dot, sol = D(KRAKEN_DOT_USD), D(KRAKEN_SOL_USD)
    expected = {
        "ETH2.S": D("1.5") * eth,  # 4500
        "ETH2": D("0.25") * eth,  # 750
        "ETH.F": D("0.5") * eth,  # 1500
        "BTC.M": D("0.1") * btc,  # 7334.39097
        "DOT.S": D("12") * dot,  # 49.4808
        "DOT28.S": D("10") * dot,  # 41.234
        "SOL.B": D("2") * sol,  # 300.5
        "KSM.P": None,
        "USD.HOLD": D("100"),
    }
    assert {k: items[k].value for k in expected} == expected
    assert items["ETH2.S"].value == D("4500") and items["BTC.M"].value == D("7334.39097")
    code = {"XBT.M": "BTC.M"}
    for asset, (amount, base) in KRAKEN_STAKING.items():
        item = items[code.get(asset, asset)]
        assert (item.name, item.symbol, item.unit, item.units) == (
            code.get(asset, asset),
            code.get(asset, asset),
            base,
            D(amount),
        ), asset
    assert (items["USD.HOLD"].asset_class, items["USD.HOLD"].currency) == ("cash", "USD")
    assert items["ETH2.S"].asset_class == "crypto" and items["KSM.P"].units == D("2.5")
    # the spot balances are still there, the account is not refused: one unpriced warning
    assert items["USD"].value == EX_USD and items["BTC"].value == D("91203.15171195")
    (unpriced,) = _warnings(snap, "unpriced")
    assert "'KSM.P' (2.5 KSM)" in unpriced
    # with a unit price for KSM downstream, no warning at all (the dust warning aside)
    snap = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, priced_units=frozenset({"KSM"}))
    assert not _warnings(snap, "unpriced")


def test_kraken_codes_of_staking_variants_follow_ccxt() -> None:
    """What ccxt's kraken safe_currency_code does with the ids (read from ccxt's source:
    the part before the dot is mapped, the suffix kept), and the base finbot values."""
    import ccxt

    exchange = ccxt.kraken()
    listed = {"BTC", "ETH", "DOT", "SOL", "USD", "USDT", "API3"}
    cases = {  # asset id -> (ccxt code, base)
        "XXBT": ("BTC", "BTC"),
        "XBT.M": ("BTC.M", "BTC"),
        "ETH2.S": ("ETH2.S", "ETH"),
        "ETH2": ("ETH2", "ETH"),
        "DOT28.S": ("DOT28.S", "DOT"),
        "ATOM21.S": ("ATOM21.S", "ATOM"),
        "API3.S": ("API3.S", "API3"),  # API3 has a market: digits are part of the asset
        "ETH.F": ("ETH.F", "ETH"),
        "SOL.B": ("SOL.B", "SOL"),
        "KSM.P": ("KSM.P", "KSM"),
        "USD.HOLD": ("USD.HOLD", "USD"),
        "ZUSD": ("USD", "USD"),
        "KFEE": ("KFEE", "KFEE"),
    }
    for asset_id, (code, base) in cases.items():
        assert exchange.safe_currency_code(asset_id) == code, asset_id
        assert base_asset("kraken", code, listed) == base, asset_id


def test_binance_simple_earn_codes() -> None:
    listed = {"BTC", "USDT", "LDO", "EUR", "ETH"}
    assert base_asset("binance", "LDBTC", listed) == "BTC"
    assert base_asset("binance", "LDUSDT", listed) == "USDT"
    assert base_asset("binance", "LDO", listed) == "LDO"  # a token with its own markets
    assert base_asset("binance", "LDLDO", listed) == "LDO"
    assert base_asset("binance", "LDXYZ", listed) == "LDXYZ"  # no XYZ market: itself
    assert base_asset("kraken", "LDBTC", listed) == "LDBTC"  # a Binance convention only
    assert base_asset("okx", "ETH2.S", listed) == "ETH2.S"  # a Kraken convention only


def test_kraken_amounts_are_exact(kraken: kr.KrakenFake) -> None:
    """Balances as Kraken wrote them (a JSON number of 18 digits, a string): never floats."""
    kraken.add_balance("ZEUR", D("12345678.1234567891"))  # float would read ...123456789
    kraken.add_balance("XETH", "0.1234567891")  # Kraken's documented form: a string
    snap = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, valuation_ccy="USD")
    items = _items(snap)
    assert items["EUR"].units == D("12345678.1234567891")
    # 12345678.1234567891 * 1.085 = 13395060.7639506161735 -> 10 places, half even
    assert items["EUR"].value == D("13395060.7639506162")
    assert items["ETH"].units == D("0.1234567891")
    assert items["ETH"].value == D("0.1234567891") * D("3000")  # 370.3703673
    assert items["USDT"].units == D("300")


def test_kraken_authentication_failures_never_leak_credentials(kraken: kr.KrakenFake) -> None:
    bad_key = {"api_key": "not-the-key-9999", "api_secret": kr.API_SECRET}
    with pytest.raises(AuthenticationFailure, match="EAPI:Invalid key") as err:
        fetch("kraken", kraken_options(kraken), bad_key)
    assert "not-the-key-9999" not in str(err.value)
    assert kr.API_SECRET not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    # a wrong (but well-formed) secret: the fake rejects the signature
    wrong_secret = {"api_key": kr.API_KEY, "api_secret": "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA=="}
    with pytest.raises(AuthenticationFailure, match="Invalid signature") as err2:
        fetch("kraken", kraken_options(kraken), wrong_secret)
    assert kr.API_KEY not in str(err2.value)
    # through the fetch runner: an authentication failure is not retried
    task = FetchTask(HOUR, "kraken-main", KrakenProvider(), kraken_options(kraken), lambda: bad_key)
    outcome = run_one(task, RetryPolicy(backoff_s=0))
    assert (outcome.ok, outcome.attempts, outcome.error_code) == (
        False,
        1,
        "authentication_failure",
    )


def test_kraken_credentials_are_checked_before_any_request(kraken: kr.KrakenFake) -> None:
    # missing / malformed credentials: the user's vault entry, named, never quoted
    with pytest.raises(CredentialsError, match="api_secret: required"):
        fetch("kraken", kraken_options(kraken), {"api_key": kr.API_KEY})
    with pytest.raises(CredentialsError, match="api_key: expected a non-empty string"):
        fetch("kraken", kraken_options(kraken), {"api_key": "  ", "api_secret": kr.API_SECRET})
    with pytest.raises(CredentialsError, match="api_secret: expected the base64") as err:
        fetch("kraken", kraken_options(kraken), {"api_key": kr.API_KEY, "api_secret": "%%%%"})
    assert "%%%%" not in str(err.value) and kr.API_KEY not in str(err.value)
    assert kraken.state.requests == []


def test_kraken_rate_limit_is_retried_until_the_fake_recovers(kraken: kr.KrakenFake) -> None:
    limited = {"error": ["EAPI:Rate limit exceeded"]}
    kraken.fail_next(limited, path_prefix="/0/private/BalanceEx")
    with pytest.raises(RateLimited, match="Rate limit exceeded"):
        fetch("kraken", kraken_options(kraken), KRAKEN_CREDS)
    kraken.fail_next(limited, path_prefix="/0/private/BalanceEx")
    task = FetchTask(
        HOUR,
        "kraken-main",
        KrakenProvider(),
        kraken_options(kraken),
        lambda: KRAKEN_CREDS,
        valuation_ccy="USD",
    )
    outcome = run_one(task, RetryPolicy(backoff_s=0))
    assert outcome.ok and outcome.attempts == 2
    assert outcome.snapshot is not None
    assert _values(outcome.snapshot) == kraken_expected_usd()


def test_kraken_5xx_and_maintenance_are_transient(kraken: kr.KrakenFake) -> None:
    kraken.fail_next("<html><body>502 Bad Gateway</body></html>", status=502)
    with pytest.raises(TransientError) as err:
        fetch("kraken", kraken_options(kraken), KRAKEN_CREDS)
    assert err.value.code == "transient"
    kraken.fail_next({"error": ["EService:Unavailable"]}, path_prefix="/0/private/")
    with pytest.raises(TransientError, match="EService:Unavailable"):
        fetch("kraken", kraken_options(kraken), KRAKEN_CREDS)
    kraken.fail_next("<html>503</html>", status=503, headers={"Retry-After": "4"}, times=2)
    with pytest.raises(TransientError) as err3:
        fetch("kraken", kraken_options(kraken), KRAKEN_CREDS)
    assert err3.value.retry_after == 4.0  # the server's Retry-After, through providers/http
    task = FetchTask(
        HOUR, "kraken-main", KrakenProvider(), kraken_options(kraken), lambda: KRAKEN_CREDS
    )
    slept: list[float] = []
    outcome = run_one(task, RetryPolicy(backoff_s=0), sleep=slept.append)
    assert outcome.ok and outcome.attempts == 2 and slept == [4.0]


def test_kraken_slow_answer_is_a_timeout(kraken: kr.KrakenFake) -> None:
    kraken.state.delay_s = 1.0
    with pytest.raises(FetchTimeout):
        fetch("kraken", kraken_options(kraken, timeout_s=0.2), KRAKEN_CREDS)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (
            {"error": [], "result": {"XXBT": {"balance": "lots", "hold_trade": "0"}}},
            ("XXBT", "balance", "'lots'"),
        ),
        ({"error": [], "result": {"XXBT": {"hold_trade": "0.5"}}}, ("XXBT", "'balance'")),
        ({"error": []}, ("'result'",)),
        ({"error": [], "result": ["XXBT", 1.2435]}, ("'result'",)),
        ("<html>maintenance page</html>", ("BalanceEx", "not JSON")),
        ("", ("BalanceEx", "empty")),
    ],
    ids=["not-a-number", "no-balance", "no-result", "result-is-a-list", "html", "empty"],
)
def test_kraken_malformed_balance_is_a_provider_error(
    kraken: kr.KrakenFake, body: Any, names: tuple[str, ...]
) -> None:
    kraken.state.balance_body = body
    with pytest.raises(ProviderPayloadError) as err:
        fetch("kraken", kraken_options(kraken), KRAKEN_CREDS)
    for name in names:  # the error names the currency / the field
        assert name in str(err.value), (name, str(err.value))


def test_kraken_partly_unpriced_account(kraken: kr.KrakenFake) -> None:
    # the only market of BTC is XBT/USDT: without it BTC has no path, it is unpriced
    del kraken.state.tickers["XBTUSDT"]
    snap = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, valuation_ccy="USD")
    items = _items(snap)
    assert (items["BTC"].value, items["BTC"].units, items["BTC"].unit) == (None, EX_BTC, "BTC")
    assert items["USD"].value == EX_USD and items["EUR"].value == D("1627.5")
    (unpriced,) = _warnings(snap, "unpriced")
    assert "'BTC' (1.2435 BTC)" in unpriced
    # skip_unpriced: BTC left out, with a warning naming it
    snap = fetch("kraken", kraken_options(kraken, skip_unpriced=True), KRAKEN_CREDS)
    assert set(_items(snap)) == {"USD", "EUR", "USDT"}
    skipped = _warnings(snap, "skipped")
    assert any("skip_unpriced" in w and "BTC (1.2435 BTC)" in w for w in skipped), skipped
    assert not _warnings(snap, "unpriced")
    # skip_unpriced keeps what the household's unit prices value downstream
    snap = fetch(
        "kraken",
        kraken_options(kraken, skip_unpriced=True),
        KRAKEN_CREDS,
        priced_units=frozenset({"BTC"}),
    )
    assert _items(snap)["BTC"].value is None and not any(
        "skip_unpriced" in w for w in _warnings(snap, "skipped")
    )
    # ignore_currencies: never reported, no warning
    snap = fetch("kraken", kraken_options(kraken, ignore_currencies=["BTC"]), KRAKEN_CREDS)
    assert set(_items(snap)) == {"USD", "EUR", "USDT"}
    assert not _warnings(snap, "unpriced")


def test_kraken_all_unpriced_account_fails(kraken_examples: kr.KrakenFake) -> None:
    kraken_examples.state.balances = {"XXBT": {"balance": 1.2435, "hold_trade": 0}}
    kraken_examples.state.tickers = {}  # no market at all
    with pytest.raises(UnpricedError, match=r"cannot value anything this account holds: BTC"):
        fetch("kraken", kraken_options(kraken_examples), KRAKEN_CREDS)
    # skip_unpriced would leave nothing: a failure naming the currency, never a 0
    with pytest.raises(UnpricedError, match=r"BTC \(1.2435 BTC\)") as err:
        fetch("kraken", kraken_options(kraken_examples, skip_unpriced=True), KRAKEN_CREDS)
    assert err.value.code == "unpriced"
    # unpriced balances plus dust: still nothing valued, still a failure
    kraken_examples.state.balances["ZUSD"] = {"balance": 0.5, "hold_trade": 0}
    with pytest.raises(UnpricedError, match="BTC"):
        fetch("kraken", kraken_options(kraken_examples, skip_unpriced=True), KRAKEN_CREDS)
    # priced downstream: a success without a value from the exchange
    snap = fetch(
        "kraken", kraken_options(kraken_examples), KRAKEN_CREDS, priced_units=frozenset({"BTC"})
    )
    assert _values(snap) == {"BTC": None} and not _warnings(snap, "unpriced")


def test_kraken_ticker_without_prices_is_routed_around(kraken: kr.KrakenFake) -> None:
    """A listed market whose ticker has no price is no path: another path is taken, and
    without one the balance is unpriced (never 0)."""
    template = kraken.state.tickers["XBTUSDT"]
    kraken.state.tickers["XXBTZEUR"] = {**kr.kraken_ticker(template, "1"), "a": [], "b": []}
    kraken.state.tickers["XXBTZEUR"]["c"] = []
    snap = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, valuation_ccy="EUR")
    # BTC/EUR first (one market), no price: then BTC -> USDT -> USD -> EUR
    expected = q(EX_BTC * EX_XBT_USDT * D(KRAKEN_USDT_USD) / D(KRAKEN_EUR_USD))
    assert _items(snap)["BTC"].value == expected
    assert kraken.state.requests.count("GET /0/public/Ticker") == 2
    for key in ("a", "b", "c"):
        kraken.state.tickers["XBTUSDT"][key] = []
    snap = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, valuation_ccy="EUR")
    assert _items(snap)["BTC"].value is None
    assert any("'BTC'" in w for w in _warnings(snap, "unpriced"))


def test_generic_ccxt_provider_on_the_kraken_fake(kraken: kr.KrakenFake) -> None:
    provider = registry.get_provider("ccxt")
    assert isinstance(provider, CcxtProvider)
    opts = kraken_options(kraken, exchange="kraken")
    registry.get_spec("ccxt").parse_options(opts)
    snap = fetch("ccxt", opts, KRAKEN_CREDS, valuation_ccy="USD")
    assert _values(snap) == kraken_expected_usd()
    named = fetch("kraken", kraken_options(kraken), KRAKEN_CREDS, valuation_ccy="USD")
    assert snap.sub_accounts == named.sub_accounts
    assert [w.code for w in snap.warnings] == [w.code for w in named.warnings] == ["skipped"]


# =========================================================================== Binance

BINANCE_CREDS = {"api_key": bn.API_KEY, "api_secret": bn.API_SECRET}

# From the examples: balances BTC 0, LTC 0.91974100, ETH 0.02229833 (strings); tickers
# BTCUSDT 73369.84 (24hr) and ETHUSDT 3820.06 (rolling answer).
EX_LTC, EX_ETH = D("0.91974100"), D("0.02229833")
EX_BTC_USDT, EX_ETH_USDT = D("73369.84000000"), D("3820.06000000")

# Scenario additions (not in the examples). binance.com has no USD market.
BINANCE_EUR_USDT = "1.08500000"  # EURUSDT: EUR is the base, so EUR prices are inverted
BINANCE_LTC_BTC = "0.00125000"  # LTCBTC: LTC -> BTC -> USDT -> EUR
BINANCE_BNB_USDT = "600.00000000"
BINANCE_EXTRA_BALANCES = [  # (asset, free, locked)
    ("EUR", "250.50000000", "0.00000000"),  # fiat: cash
    ("USDT", "1000.00000000", "200.00000000"),  # stablecoin, locked counts: total 1200
    ("BNB", "0.00100000", "0.00000000"),  # 0.6 USDT = 0.55 EUR: dust, left out
]


def binance_examples_fake() -> Iterator[bn.BinanceFake]:
    with bn.binance_fake(bn.BinanceFake.state_from_examples(SHARED_DATA)) as fake:
        yield fake


@pytest.fixture
def binance_examples() -> Iterator[bn.BinanceFake]:
    """The published example answers, nothing added."""
    yield from binance_examples_fake()


@pytest.fixture
def binance() -> Iterator[bn.BinanceFake]:
    for fake in binance_examples_fake():
        for asset, free, locked in BINANCE_EXTRA_BALANCES:
            fake.add_balance(asset, free, locked)
        fake.add_ticker("EURUSDT", BINANCE_EUR_USDT)
        fake.add_ticker("LTCBTC", BINANCE_LTC_BTC)
        fake.add_ticker("BNBUSDT", BINANCE_BNB_USDT)
        yield fake


def binance_options(fake: bn.BinanceFake, **extra: Any) -> dict[str, Any]:
    return {"api_url": fake.url, "enable_rate_limit": False, **extra}


def binance_expected_eur() -> dict[str, Decimal]:
    """Item values in EUR, by hand from the example answers and the additions above."""
    eur_usdt = D(BINANCE_EUR_USDT)
    return {
        "ETH": q(EX_ETH * EX_ETH_USDT / eur_usdt),  # 78.5077958524
        "LTC": q(EX_LTC * D(BINANCE_LTC_BTC) * EX_BTC_USDT / eur_usdt),  # 77.7433755892
        "EUR": D("250.5"),
        "USDT": q(D("1200") / eur_usdt),  # 1105.9907834101
    }  # BTC: 0 in the example, not held


def test_binance_example_account_alone_is_unpriced(binance_examples: bn.BinanceFake) -> None:
    """The published answers alone: ETH has ETH/USDT, LTC nothing, and no fiat market at
    all: nothing can be valued, the fetch fails naming both (never a success worth 0)."""
    with pytest.raises(UnpricedError) as err:
        fetch("binance", binance_options(binance_examples), BINANCE_CREDS, valuation_ccy="EUR")
    assert "ETH" in str(err.value) and "LTC" in str(err.value)
    # with unit prices for both downstream: kept, units exact, no value from Binance
    snap = fetch(
        "binance",
        binance_options(binance_examples),
        BINANCE_CREDS,
        valuation_ccy="EUR",
        priced_units=frozenset({"ETH", "LTC"}),
    )
    items = _items(snap)
    assert {k: (i.value, i.units, i.unit) for k, i in items.items()} == {
        "ETH": (None, D("0.02229833"), "ETH"),
        "LTC": (None, D("0.919741"), "LTC"),
    }
    assert snap.warnings == ()


def test_binance_eur_profile_through_eth_usdt_and_eur_usdt(
    binance_examples: bn.BinanceFake,
) -> None:
    binance_examples.add_ticker("EURUSDT", BINANCE_EUR_USDT)
    snap = fetch("binance", binance_options(binance_examples), BINANCE_CREDS, valuation_ccy="EUR")
    assert snap.sub_accounts[0].currency == "EUR"
    items = _items(snap)
    # 0.02229833 ETH * 3820.06 USDT / 1.085 USDT per EUR
    assert items["ETH"].value == q(D("0.02229833") * D("3820.06") / D("1.085"))
    assert items["ETH"].value == D("78.5077958524")
    # LTC has no market at all: kept unpriced, with a warning naming it
    assert (items["LTC"].value, items["LTC"].units) == (None, D("0.919741"))
    (unpriced,) = _warnings(snap, "unpriced")
    assert "'LTC' (0.919741 LTC)" in unpriced
    # skip_unpriced: LTC left out with a warning naming it
    snap = fetch(
        "binance",
        binance_options(binance_examples, skip_unpriced=True),
        BINANCE_CREDS,
        valuation_ccy="EUR",
    )
    assert _values(snap) == {"ETH": D("78.5077958524")}
    (skipped,) = _warnings(snap, "skipped")
    assert "LTC (0.919741 LTC)" in skipped and "skip_unpriced" in skipped


def test_binance_values_a_realistic_account(binance: bn.BinanceFake) -> None:
    snap = fetch("binance", binance_options(binance), BINANCE_CREDS, valuation_ccy="EUR")
    (sa,) = snap.sub_accounts
    assert (sa.id, sa.name, sa.currency, sa.account_type) == (
        "binance",
        "Binance",
        "EUR",
        "investment",
    )
    items = _items(snap)
    assert _values(snap) == binance_expected_eur()  # BTC zero and BNB dust left out
    assert items["ETH"].value == D("78.5077958524")
    assert items["LTC"].value == D("77.7433755892")
    assert items["USDT"].value == D("1105.9907834101")
    assert items["USDT"].units == D("1200") and items["USDT"].asset_type == "stable_coin"
    assert (items["EUR"].asset_class, items["EUR"].units) == ("cash", D("250.5"))
    assert items["LTC"].units == D("0.919741") and items["LTC"].asset_type == "crypto_currency"
    (dust,) = _warnings(snap, "skipped")  # 0.001 * 600 / 1.085
    assert "BNB (0.001 BNB, worth 0.5529953917 EUR)" in dust
    # spot only: exchangeInfo, the signed account, one batch of 24hr tickers; then the
    # history: one 90-day window of deposits and of withdrawals, and the trades of the
    # markets between two held currencies (BNB/USDT, ETH/USDT, EUR/USDT; BTC is 0)
    assert binance.state.requests == [
        "GET /api/v3/exchangeInfo",
        "GET /api/v3/account",
        "GET /api/v3/ticker/24hr",
        "GET /sapi/v1/capital/deposit/hisrec",
        "GET /sapi/v1/capital/withdraw/history",
        "GET /api/v3/myTrades",
        "GET /api/v3/myTrades",
        "GET /api/v3/myTrades",
    ]
    assert [q["symbol"] for p, q in binance.state.history_queries if "symbol" in q] == [
        "BNBUSDT",
        "ETHUSDT",
        "EURUSDT",
    ]


@pytest.mark.parametrize("profile_ccy", [None, "USD", "GBP"])
def test_binance_is_valued_without_a_usd_market(
    binance: bn.BinanceFake, profile_ccy: str | None
) -> None:
    """The default quote used to be USD, which binance.com cannot reach: nothing was
    valued. Now a profile currency out of reach falls back to the fiat that is (EUR)."""
    snap = fetch("binance", binance_options(binance), BINANCE_CREDS, valuation_ccy=profile_ccy)
    assert snap.sub_accounts[0].currency == "EUR"
    assert _values(snap) == binance_expected_eur()
    assert snap.sub_accounts[0].currency == "EUR"


def test_binance_quote_ccy_is_an_override(binance: bn.BinanceFake) -> None:
    snap = fetch("binance", binance_options(binance, quote_ccy="EUR"), BINANCE_CREDS)
    assert _values(snap) == binance_expected_eur()
    # a quote_ccy Binance cannot reach is honoured all the same: nothing has a path to
    # USD, every balance is kept unpriced (EUR cash is valued downstream by FX)
    snap = fetch(
        "binance", binance_options(binance, quote_ccy="USD"), BINANCE_CREDS, valuation_ccy="EUR"
    )
    assert snap.sub_accounts[0].currency == "USD"
    items = _items(snap)
    assert {k: (i.value, i.unit) for k, i in items.items()} == {
        "BNB": (None, "BNB"),
        "ETH": (None, "ETH"),
        "EUR": (None, "EUR"),
        "LTC": (None, "LTC"),
        "USDT": (None, "USDT"),
    }
    assert items["USDT"].units == D("1200")
    unpriced = _warnings(snap, "unpriced")
    assert len(unpriced) == 4 and not any("'EUR'" in w for w in unpriced)


def test_binance_shortest_path_and_bridges_break_ties(binance: bn.BinanceFake) -> None:
    binance.add_ticker("ETHBTC", "0.05000000")
    binance.add_ticker("BTCEUR", "67000.00000000")
    snap = fetch("binance", binance_options(binance), BINANCE_CREDS, valuation_ccy="EUR")
    values = _values(snap)
    # ETH: ETH/USDT + EUR/USDT or ETH/BTC + BTC/EUR, both two markets: USDT is the first bridge
    assert values["ETH"] == q(EX_ETH * EX_ETH_USDT / D(BINANCE_EUR_USDT))
    # LTC: LTC/BTC + BTC/EUR (two markets) beats LTC/BTC + BTC/USDT + EUR/USDT (three)
    assert values["LTC"] == EX_LTC * D("0.00125") * D("67000")  # 77.02830875
    assert values["LTC"] == D("77.02830875")
    # bridges [BTC, USDT]: ETH through BTC now
    snap = fetch(
        "binance",
        binance_options(binance, bridges=["BTC", "USDT"]),
        BINANCE_CREDS,
        valuation_ccy="EUR",
    )
    assert _values(snap)["ETH"] == EX_ETH * D("0.05") * D("67000")  # 74.6994055
    assert _values(snap)["USDT"] == q(D("1200") / D("1.085"))  # one market, inverted


def test_binance_simple_earn_balances_are_valued_as_their_base(binance: bn.BinanceFake) -> None:
    binance.add_balance("LDBTC", "0.50000000", "0.00000000")  # Simple Earn BTC
    binance.add_balance("LDUSDT", "100.00000000", "0.00000000")  # Simple Earn USDT
    binance.add_balance("LDO", "20.00000000", "0.00000000")  # Lido DAO: a token of its own
    binance.add_balance("LDLDO", "4.00000000", "0.00000000")  # Simple Earn LDO
    binance.add_ticker("LDOUSDT", "1.50000000")
    snap = fetch("binance", binance_options(binance), BINANCE_CREDS, valuation_ccy="EUR")
    items = _items(snap)
    eur_usdt = D(BINANCE_EUR_USDT)
    assert {k: items[k].value for k in ("LDBTC", "LDUSDT", "LDO", "LDLDO")} == {
        "LDBTC": q(D("0.5") * EX_BTC_USDT / eur_usdt),  # 33810.9861751152
        "LDUSDT": q(D("100") / eur_usdt),  # 92.1658986175
        "LDO": q(D("20") * D("1.5") / eur_usdt),  # 27.6497695853
        "LDLDO": q(D("4") * D("1.5") / eur_usdt),  # 5.5299539171
    }
    assert items["LDBTC"].value == D("33810.9861751152")
    assert {k: (items[k].symbol, items[k].unit) for k in ("LDBTC", "LDUSDT", "LDO", "LDLDO")} == {
        "LDBTC": ("LDBTC", "BTC"),
        "LDUSDT": ("LDUSDT", "USDT"),
        "LDO": ("LDO", "LDO"),
        "LDLDO": ("LDLDO", "LDO"),
    }
    assert items["LDUSDT"].asset_type == "stable_coin"
    assert not _warnings(snap, "unpriced")


def test_binance_authentication_failures(binance: bn.BinanceFake) -> None:
    bad_key = {"api_key": "unknown-key-12345", "api_secret": bn.API_SECRET}
    with pytest.raises(AuthenticationFailure, match="-2015") as err:
        fetch("binance", binance_options(binance), bad_key)
    message = str(err.value)
    assert "unknown-key-12345" not in message and bn.API_SECRET not in message
    assert "signature=" not in message  # the signed query string never reaches a message
    bad_secret = {"api_key": bn.API_KEY, "api_secret": "another-secret-value"}
    with pytest.raises(AuthenticationFailure, match="-1022"):
        fetch("binance", binance_options(binance), bad_secret)
    # an answer that echoes the key: masked (the Masker of providers/http)
    echo = {"code": -2015, "msg": f"Invalid API-key {bn.API_KEY}, IP, or permissions."}
    binance.fail_next(echo, status=401, path_prefix="/api/v3/account")
    with pytest.raises(AuthenticationFailure) as err2:
        fetch("binance", binance_options(binance), BINANCE_CREDS)
    assert bn.API_KEY not in str(err2.value) and "Invalid API-key ***" in str(err2.value)


def test_binance_429_retry_after_then_recovers(binance: bn.BinanceFake) -> None:
    too_many = {"code": -1003, "msg": "Too many requests; current limit is 6000 request weight."}
    binance.fail_next(
        too_many, status=429, headers={"Retry-After": "7"}, path_prefix="/api/v3/account"
    )
    with pytest.raises(RateLimited) as err:
        fetch("binance", binance_options(binance), BINANCE_CREDS)
    assert err.value.retry_after == 7.0
    binance.fail_next(
        too_many, status=429, headers={"Retry-After": "7"}, path_prefix="/api/v3/account"
    )
    slept: list[float] = []
    task = FetchTask(
        HOUR,
        "binance-main",
        BinanceProvider(),
        binance_options(binance),
        lambda: BINANCE_CREDS,
        valuation_ccy="EUR",
    )
    outcome = run_one(task, RetryPolicy(backoff_s=0), sleep=slept.append)
    assert outcome.ok and outcome.attempts == 2
    assert slept == [7.0]  # the server's Retry-After was honoured
    assert outcome.snapshot is not None
    assert _values(outcome.snapshot) == binance_expected_eur()


def test_binance_5xx_is_transient_and_retried(binance: bn.BinanceFake) -> None:
    binance.fail_next(
        "<html>503 Service Unavailable</html>", status=503, path_prefix="/api/v3/exchangeInfo"
    )
    with pytest.raises(TransientError):
        fetch("binance", binance_options(binance), BINANCE_CREDS)
    binance.fail_next(
        {"code": -1001, "msg": "Internal error; unable to process your request."}, status=500
    )
    task = FetchTask(
        HOUR, "binance-main", BinanceProvider(), binance_options(binance), lambda: BINANCE_CREDS
    )
    outcome = run_one(task, RetryPolicy(backoff_s=0))
    assert outcome.ok and outcome.attempts == 2


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (
            {"balances": [{"asset": "ETH", "free": "a lot", "locked": "0.0"}]},
            ("ETH", "free", "'a lot'"),
        ),
        ({"balances": [{"asset": "ETH", "free": "1.0"}]}, ("ETH", "'locked'")),
        ({"accountType": "SPOT"}, ("'balances'",)),
        ({"balances": {"ETH": "1.0"}}, ("'balances'",)),
        ("<html>oops</html>", ("account", "not JSON")),
        ("", ("account", "empty", "no 'balances' list")),
    ],
    ids=["not-a-number", "no-locked", "no-balances", "balances-not-a-list", "html", "empty"],
)
def test_binance_malformed_account_is_a_provider_error(
    binance: bn.BinanceFake, body: Any, names: tuple[str, ...]
) -> None:
    binance.state.account_body = body
    with pytest.raises(ProviderPayloadError) as err:
        fetch("binance", binance_options(binance), BINANCE_CREDS)
    for name in names:  # the error names the currency / the field
        assert name in str(err.value), (name, str(err.value))


def test_binance_missing_ticker_is_never_a_zero(binance: bn.BinanceFake) -> None:
    # LTC/BTC listed but the ticker answer lacks it: LTC unpriced, the rest valued
    original = binance.state.on_request

    def drop_ltc(path: str) -> None:
        if path == "/api/v3/ticker/24hr":
            answer = [t for s, t in binance.state.tickers.items() if s != "LTCBTC"]
            binance.fail_next(answer, status=200, path_prefix=path)

    binance.state.on_request = drop_ltc
    snap = fetch("binance", binance_options(binance), BINANCE_CREDS, valuation_ccy="EUR")
    binance.state.on_request = original
    values = _values(snap)
    assert values["LTC"] is None and values["ETH"] == binance_expected_eur()["ETH"]
    assert any("'LTC'" in w for w in _warnings(snap, "unpriced"))
    # an incomplete ticker (no price field at all) is not a price either
    binance.state.tickers["ETHUSDT"] = {"symbol": "ETHUSDT", "volume": "604756.07960000"}
    snap = fetch("binance", binance_options(binance), BINANCE_CREDS, valuation_ccy="EUR")
    assert _values(snap)["ETH"] is None
    assert _values(snap)["LTC"] == binance_expected_eur()["LTC"]
    assert any("'ETH' (0.02229833 ETH)" in w for w in _warnings(snap, "unpriced"))


# =========================================================================== fakes vs ccxt


def _client(exchange_id: str, url: str, creds: dict[str, str]) -> ExchangeClient:
    options = ExchangeOptions(api_url=url, enable_rate_limit=False)
    credentials = ExchangeCredentials.model_validate(creds)
    return ExchangeClient(exchange_id, options, credentials, Masker(credentials.secret_values()))


TICKER_FIELDS = ("high", "low", "bid", "ask", "open", "close", "last", "vwap", "baseVolume")


def test_the_kraken_fake_answers_what_ccxt_parses(kraken_examples: kr.KrakenFake) -> None:
    unified = _examples("ccxt_kraken_unified.json")
    with _client("kraken", kraken_examples.url, KRAKEN_CREDS) as client:
        ticker = client.exchange.fetch_ticker("BTC/USDT")
        balance = client.exchange.fetch_balance()
    expected = unified["fetchTicker(['BTC/USDT'])"]["parsedResponse"]
    for key in (*TICKER_FIELDS, "change", "quoteVolume"):  # (average: ccxt's own arithmetic)
        assert ticker[key] == pytest.approx(float(expected[key]), rel=1e-12), key
    for code, parts in unified["fetchBalance()"]["computedOffline_ccxt_4_5_90"].items():
        for part in ("free", "used", "total"):
            assert balance[code][part] == pytest.approx(float(parts[part]), rel=1e-12)


def test_the_binance_fake_answers_what_ccxt_parses(binance_examples: bn.BinanceFake) -> None:
    unified = _examples("ccxt_binance_unified.json")
    with _client("binance", binance_examples.url, BINANCE_CREDS) as client:
        ticker = client.exchange.fetch_ticker("BTC/USDT")
        balance = client.exchange.fetch_balance()
    expected = unified["fetchTicker(['BTC/USDT'])"]["parsedResponse"]
    for key in (*TICKER_FIELDS, "previousClose", "timestamp"):
        assert ticker[key] == pytest.approx(float(expected[key]), rel=1e-12), key
    parsed = unified["fetchBalance()"]["parsedResponse"]
    for part in ("free", "used", "total"):
        assert {k: float(v) for k, v in balance[part].items()} == {
            k: float(v) for k, v in parsed[part].items()
        }


# =========================================================================== options, registry


def test_providers_follow_the_contract() -> None:
    for pid, cls in (
        ("kraken", KrakenProvider),
        ("binance", BinanceProvider),
        ("ccxt", CcxtProvider),
    ):
        p = registry.get_provider(pid)
        assert isinstance(p, cls) and isinstance(p, Provider)
        assert p.spec.id == pid and p.spec.supports_historical is False
        assert p.spec is registry.get_spec(pid)
        fields = {f.name: f for f in p.spec.credential_fields}
        assert fields["api_key"].required and fields["api_secret"].required
        assert fields["api_key"].secret and fields["api_secret"].secret
        assert fields["password"].secret and not fields["password"].required
        assert all(o["description"] for o in registry.describe(pid)["options"])


def test_credentials_model() -> None:
    creds = ExchangeCredentials.model_validate(
        {"api_key": " k-1234 ", "api_secret": "s-5678", "passphrase": "p-9012", "other": 1}
    )
    assert (creds.api_key, creds.api_secret, creds.password) == ("k-1234", "s-5678", "p-9012")
    assert sorted(creds.secret_values()) == ["k-1234", "p-9012", "s-5678"]
    creds = ExchangeCredentials.model_validate({"api_key": "k", "api_secret": "s", "password": "p"})
    assert creds.password == "p"


@pytest.mark.parametrize(
    ("provider", "options", "message"),
    [
        ("kraken", {"quote_ccy": "BTC"}, r"options\.quote_ccy: expected an ISO 4217 fiat"),
        ("kraken", {"quote_ccy": "usd"}, r"options\.quote_ccy"),
        ("kraken", {"dust_threshold": -1}, r"options\.dust_threshold"),
        ("kraken", {"bridges": "USDT"}, r"options\.bridges: expected a list"),
        ("kraken", {"bridges": ["USDT", "usdt"]}, r"options\.bridges\[1\]"),
        ("kraken", {"bridges": ["USDT", "USDT"]}, r"options\.bridges: .*'USDT' twice"),
        ("kraken", {"ignore_currencies": ["eth"]}, r"options\.ignore_currencies\[0\]"),
        ("kraken", {"skip_unpriced": "yes"}, r"options\.skip_unpriced"),
        ("kraken", {"api_url": "ftp://x"}, r"options\.api_url"),
        ("kraken", {"timeout_s": 0}, r"options\.timeout_s"),
        ("kraken", {"exchange": "kraken"}, r"options\.exchange: unknown option"),
        ("binance", {"colour": "red"}, r"options\.colour: unknown option"),
        ("ccxt", {}, r"options\.exchange: required"),
        ("ccxt", {"exchange": "krakn"}, r"options\.exchange: .*did you mean 'kraken'"),
        ("ccxt", {"exchange": 3}, r"options\.exchange: expected a string"),
    ],
)
def test_bad_options_are_refused(provider: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        registry.get_spec(provider).parse_options(options)
    assert registry.option_issues(provider, options)


def test_good_options_are_accepted() -> None:
    opts = registry.get_spec("kraken").parse_options(
        {
            "quote_ccy": "GBP",
            "bridges": ["USDT"],
            "dust_threshold": 0,
            "skip_unpriced": True,
            "ignore_currencies": ["ETH.F"],
            "api_url": "https://api.kraken.com/",
            "timeout_s": 10,
            "enable_rate_limit": True,
        }
    )
    assert isinstance(opts, ExchangeOptions)
    assert (opts.quote_ccy, opts.api_url, opts.timeout_s) == ("GBP", "https://api.kraken.com", 10)
    defaults = registry.get_spec("binance").parse_options({})
    assert isinstance(defaults, ExchangeOptions)
    assert defaults.quote_ccy is None and defaults.bridges == ["USDT", "BTC", "EUR", "USD"]
    assert registry.option_issues("ccxt", {"exchange": "okx"}) == []
    assert registry.option_issues("ccxt", {"exchange": "ftx"}) == []  # retired: accepted


def test_ccxt_exchange_ids_are_those_of_the_installed_ccxt() -> None:
    import ccxt

    assert tuple(ccxt.exchanges) == CCXT_EXCHANGES
    assert not set(RETIRED_EXCHANGES) & set(ccxt.exchanges)
    assert set(RETIRED_EXCHANGES) == {"bittrex", "ftx", "ftxus"}


def test_validating_options_does_not_import_ccxt() -> None:
    code = (
        "import sys\n"
        "from finbot_pipelines.providers import registry\n"
        "registry.get_spec('ccxt').parse_options({'exchange': 'kraken'})\n"
        "registry.get_spec('kraken').parse_options({'quote_ccy': 'EUR'})\n"
        "registry.get_spec('binance').parse_credentials({'api_key': 'k', 'api_secret': 's'})\n"
        "import finbot_pipelines.providers.exchanges\n"
        "assert 'ccxt' not in sys.modules, 'ccxt was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    source = Path(exchange_options.__file__).read_text()
    assert "import ccxt" not in source and "from ccxt" not in source


def test_bittrex_is_retired() -> None:
    # as a provider id (registry) ...
    with pytest.raises(RetiredProvider, match="bittrex closed in 2023"):
        fetch("bittrex", {}, {})
    # ... and as a ccxt exchange: accepted in finbot.yaml, every fetch says why it fails
    with pytest.raises(RetiredProvider, match="bittrex closed in 2023") as err:
        fetch("ccxt", {"exchange": "bittrex"}, {"api_key": "k-123", "api_secret": "s-456"})
    assert err.value.code == "retired_provider"
    with pytest.raises(RetiredProvider, match="FTX closed in 2022"):
        fetch("ccxt", {"exchange": "ftx"}, {"api_key": "k-123", "api_secret": "s-456"})


def test_api_url_rebases_every_ccxt_url() -> None:
    api = {
        "public": "https://api.binance.com/api/v3",
        "x": {"y": "https://fapi.binance.com/fapi/v1"},
    }
    assert rebase_urls(api, "http://127.0.0.1:9") == {
        "public": "http://127.0.0.1:9/api/v3",
        "x": {"y": "http://127.0.0.1:9/fapi/v1"},
    }
    assert rebase_urls("https://api.kraken.com", "http://h:1/p") == "http://h:1/p"


def test_provider_errors_are_provider_errors() -> None:
    for cls in (AuthenticationFailure, RateLimited, TransientError, ProviderPayloadError):
        assert issubclass(cls, ProviderError)
    assert UnpricedError.code == "unpriced"
    assert FetchWarning("skipped", "x").code == "skipped"


def test_paths_are_shortest_then_preferred() -> None:
    """The route rules on a small graph, without an exchange."""
    graph = MarketGraph(
        [
            Market("ETH/USDT", "ETH", "USDT"),
            Market("ETH/BTC", "ETH", "BTC"),
            Market("BTC/EUR", "BTC", "EUR"),
            Market("EUR/USDT", "EUR", "USDT"),
            Market("TOK/BNB", "TOK", "BNB"),
            Market("BNB/USDT", "BNB", "USDT"),
        ]
    )
    dist = graph.distances("EUR")
    assert dist == {"EUR": 0, "BTC": 1, "USDT": 1, "ETH": 2, "BNB": 2, "TOK": 3}

    def path(start: str, bridges: list[str]) -> list[str]:
        route = graph.route(start, "EUR", dist, bridges)
        assert route is not None
        return [f"{s.market.symbol}{' inverted' if s.inverted else ''}" for s in route]

    assert path("ETH", ["USDT", "BTC"]) == ["ETH/USDT", "EUR/USDT inverted"]
    assert path("ETH", ["BTC", "USDT"]) == ["ETH/BTC", "BTC/EUR"]
    assert path("ETH", []) == ["ETH/BTC", "BTC/EUR"]  # no preference: by code, BTC < USDT
    assert path("TOK", []) == ["TOK/BNB", "BNB/USDT", "EUR/USDT inverted"]  # any currency
    assert graph.route("XYZ", "EUR", dist, []) is None
    assert quote_candidates("CHF", "GBP", ["EUR"], []) == ("CHF",)
    candidates = quote_candidates(None, "GBP", ["TRY", "EUR", "USDT"], ["ZAR"])
    assert candidates[:8] == ("GBP", "USD", "EUR", "JPY", "CHF", "CAD", "AUD", "TRY")
    assert candidates[8:] == ("ZAR",)


# =========================================================================== end to end

E2E_STATIC_USD_PER_EUR = 1.10
E2E_STATIC_GBP_PER_EUR = 0.85


def test_kraken_account_end_to_end_through_the_pipeline(
    kraken: kr.KrakenFake, tmp_path: Path
) -> None:
    """One live hour through the real jobs: provider -> raw -> dbt -> published marts."""
    from finbot_pipelines_tests.e2e import history_start_for_tests, run_live_hour

    config = f"""\
history_start: "{history_start_for_tests()}"
fx_source: static
fx_static_rates: {{GBP: {E2E_STATIC_GBP_PER_EUR}, USD: {E2E_STATIC_USD_PER_EUR}}}
profiles:
  - {{id: carol, name: Carol, valuation_ccy: GBP}}
linked_accounts:
  - id: carol-kraken
    profile: carol
    provider: kraken
    name: Carol's Kraken
    credentials: kraken-main
    options: {{api_url: "{kraken.url}", enable_rate_limit: false, quote_ccy: USD}}
fetch: {{timeout_s: 20, max_attempts: 2, backoff_s: 0, max_workers: 2}}
"""
    run = run_live_hour(tmp_path / "home", config, {"kraken-main": KRAKEN_CREDS})
    assert run.success
    total_usd = D("25435.21") + D("91203.15171195") + D("1627.5") + D("299.85")
    assert total_usd == sum(kraken_expected_usd().values())
    expected_gbp = float(total_usd) / E2E_STATIC_USD_PER_EUR * E2E_STATIC_GBP_PER_EUR
    df = run.published(
        "select value, is_stale from marts.fct_linked_account_valuation_hourly "
        "where profile_id = 'carol' and linked_account_id = 'carol-kraken' and valuation_hour = ?",
        [run.hour],
    )
    assert len(df) == 1
    assert float(df["value"].iloc[0]) == pytest.approx(expected_gbp, rel=1e-9)
    assert not bool(df["is_stale"].iloc[0])
    fetches = run.raw("select status, error_message from raw.fetches")
    assert list(fetches["status"]) == ["success"]
    items = run.raw("select item_name, units, value from raw.items order by item_name")
    assert list(items["item_name"]) == ["BTC", "EUR", "USD", "USDT"]
    # the credentials never reached the warehouse nor the published database
    for db in ("warehouse.duckdb", "finbot.duckdb"):
        data = (run.home / db).read_bytes()
        assert kr.API_KEY.encode() not in data and kr.API_SECRET.encode() not in data


# =========================================================================== history
#
# The exchanges' published history examples (data/exchanges/history_examples.json, each
# with its source) and scenario additions marked below. Every expected figure is read
# off those answers by hand; the clock of each fetch is fixed (the provider's ``clock``).

HISTORY: dict[str, Any] = json.loads(
    (REPO / "finbot_pipelines_tests" / "data" / "exchanges" / "history_examples.json").read_text()
)
DAY_MS = 86_400_000


def history_fetch(
    provider_cls: type[Provider[Any, Any]],
    options: dict[str, Any],
    credentials: dict[str, Any],
    now: datetime,
    cursor: str | None = None,
    valuation_ccy: str | None = "USD",
) -> Snapshot:
    """One fetch through the production path, at wall-clock ``now``, resuming from ``cursor``."""
    spec_id = provider_cls.spec.id  # type: ignore[attr-defined]
    ctx = FetchContext(
        f"{spec_id}-main", HOUR, valuation_ccy=valuation_ccy, transactions_cursor=cursor
    )
    provider = provider_cls(clock=lambda: now)  # type: ignore[call-arg]
    return fetch_snapshot(registry.get_spec(spec_id), provider, ctx, options, credentials)


def _txns(snap: Snapshot) -> dict[str, Transaction]:
    return {t.id: t for t in snap.transactions}


def _brief(t: Transaction) -> tuple[Any, ...]:
    return (t.amount, t.currency, t.kind, t.posted, t.symbol, t.units)


def _unix(t: datetime) -> int:
    return int(t.timestamp())


KRAKEN_LEDGER_NOW = datetime(2023, 7, 5, 12, tzinfo=UTC)


def test_kraken_published_ledger_example(kraken: kr.KrakenFake) -> None:
    """Get Ledgers Info's example: two trade legs with their fees, each fee apart."""
    kraken.state.ledger = copy.deepcopy(HISTORY["kraken_ledgers"]["result"]["ledger"])
    opts = kraken_options(kraken, history_days=30)
    snap = history_fetch(KrakenProvider, opts, KRAKEN_CREDS, KRAKEN_LEDGER_NOW)
    assert _values(snap) == kraken_expected_usd()  # the balances are those of before
    # 1688464484.1787 and 1688444262.8888 are both 4 July 2023 (UTC); ZGBP -> GBP, ZUSD -> USD
    july4 = date(2023, 7, 4)
    assert {i: _brief(t) for i, t in _txns(snap).items()} == {
        "kraken:L4UESK-KG3EQ-UFO4T5": (D("-24.5000"), "GBP", "sell", july4, "GBP", D("-24.5")),
        "kraken:L4UESK-KG3EQ-UFO4T5:fee": (D("-0.0490"), "GBP", "fee", july4, "GBP", None),
        "kraken:LMKZCZ-Z3GVL-CXKK4H": (D("0.9852"), "USD", "buy", july4, "USD", D("0.9852")),
        "kraken:LMKZCZ-Z3GVL-CXKK4H:fee": (D("-0.0010"), "USD", "fee", july4, "USD", None),
    }
    t = _txns(snap)
    # each balance moved by amount - fee, as the ledger's own running balance says
    assert t["kraken:L4UESK-KG3EQ-UFO4T5"].amount + t["kraken:L4UESK-KG3EQ-UFO4T5:fee"].amount == (
        D("-24.5490")
    )
    assert t["kraken:LMKZCZ-Z3GVL-CXKK4H"].amount + t["kraken:LMKZCZ-Z3GVL-CXKK4H:fee"].amount == (
        D("0.9842")
    )
    assert t["kraken:L4UESK-KG3EQ-UFO4T5"].category == "trade"
    assert "TJKLXF-PGMUI-4NTLXU" in t["kraken:L4UESK-KG3EQ-UFO4T5"].description
    assert all(x.sub_account_id == "kraken" and not x.pending for x in t.values())
    # one request: the entries after 30 days before now (Unix seconds), first page
    (query,) = kraken.state.ledger_queries
    assert query["start"] == str(_unix(KRAKEN_LEDGER_NOW - timedelta(days=30)))
    assert query["ofs"] == "0"
    cursor = json.loads(snap.transactions_cursor or "")
    assert cursor["ledger"] == (_unix(KRAKEN_LEDGER_NOW) - 86_400) * 1000  # a day of overlap


NOW = datetime(2026, 1, 5, 10, tzinfo=UTC)


def test_kraken_ledger_kinds(kraken: kr.KrakenFake) -> None:
    """Scenario additions (not published), shaped like the example: what each type becomes."""
    at = float(_unix(NOW - timedelta(hours=5)))
    entries = {  # id -> (refid, type, subtype, asset, amount, fee)
        "LDEP01-AAAAA-000001": ("FTdep1", "deposit", "", "ZEUR", "1000.0000", "0.0000"),
        "LWDR01-AAAAA-000002": ("FTwd1", "withdrawal", "", "XXBT", "-0.1000000000", "0.0005000000"),
        "LWDR02-AAAAA-000003": ("FTwd1", "withdrawal", "", "XXBT", "0.1000000000", "0.0000000000"),
        "LSTK01-AAAAA-000004": ("RUst1", "transfer", "spottostaking", "XETH", "-1.0000000000", "0"),
        "LSTK02-AAAAA-000005": (
            "RUst1",
            "transfer",
            "stakingfromspot",
            "ETH2.S",
            "1.0000000000",
            "0",
        ),
        "LRWD01-AAAAA-000006": ("RWrw1", "staking", "", "DOT.S", "0.0500000000", "0"),
        "LKFE01-AAAAA-000007": ("TKfe1", "trade", "", "KFEE", "-25.00", "0.00"),
        "LADJ01-AAAAA-000008": ("ADad1", "adjustment", "", "ZUSD", "0.0000", "0.5000"),
    }
    for i, (lid, (refid, typ, sub, asset, amount, fee)) in enumerate(entries.items()):
        kraken.add_ledger_entry(
            lid,
            refid=refid,
            time=at + i,
            type=typ,
            subtype=sub,
            asset=asset,
            amount=amount,
            fee=fee,
        )
    snap = history_fetch(KrakenProvider, kraken_options(kraken), KRAKEN_CREDS, NOW)
    day = date(2026, 1, 5)
    t = _txns(snap)
    assert {i: _brief(x) for i, x in t.items()} == {
        "kraken:LDEP01-AAAAA-000001": (D("1000"), "EUR", "deposit", day, "EUR", None),
        "kraken:LWDR01-AAAAA-000002": (D("-0.1"), "BTC", "withdrawal", day, "BTC", None),
        "kraken:LWDR01-AAAAA-000002:fee": (D("-0.0005"), "BTC", "fee", day, "BTC", None),
        # a failed withdrawal given back: positive, the two cancel
        "kraken:LWDR02-AAAAA-000003": (D("0.1"), "BTC", "withdrawal", day, "BTC", None),
        # spot -> staking: both legs valued as ETH, they cancel
        "kraken:LSTK01-AAAAA-000004": (D("-1"), "ETH", "transfer", day, "ETH", None),
        "kraken:LSTK02-AAAAA-000005": (D("1"), "ETH", "transfer", day, "ETH2.S", None),
        "kraken:LRWD01-AAAAA-000006": (D("0.05"), "DOT", "interest", day, "DOT.S", None),
        # KFEE (fee credits) is never reported; a zero amount is no transaction, its fee is
        "kraken:LADJ01-AAAAA-000008:fee": (D("-0.5"), "USD", "fee", day, "USD", None),
    }
    assert t["kraken:LSTK01-AAAAA-000004"].transfer_id == "RUst1"
    assert t["kraken:LSTK01-AAAAA-000004"].category == "transfer/spottostaking"
    assert "withdrawal returned" in t["kraken:LWDR02-AAAAA-000003"].description
    # fees are costs, never part of a withdrawal: the withdrawal is the amount sent
    assert all(x.amount < 0 for x in t.values() if x.kind == "fee")


def test_kraken_ledger_pages_and_the_cursor_resumes_without_doubles(
    kraken: kr.KrakenFake,
) -> None:
    old = _unix(NOW - timedelta(days=2))
    for i in range(119):  # 119 old entries and 1 an hour ago: 120, three pages of 50
        kraken.add_ledger_entry(
            f"LOLD{i:02d}-AAAAA-AAAAAA", time=old + i, type="deposit", asset="ZUSD", amount="1.00"
        )
    recent = _unix(NOW - timedelta(hours=1))
    kraken.add_ledger_entry(
        "LRECNT-AAAAA-AAAAAA", time=recent, type="deposit", asset="ZUSD", amount="2.00"
    )
    first = history_fetch(KrakenProvider, kraken_options(kraken), KRAKEN_CREDS, NOW)
    assert len(first.transactions) == 120
    assert [q["ofs"] for q in kraken.state.ledger_queries] == ["0", "50", "100"]
    assert sum(t.amount for t in first.transactions) == D("119") + D("2")
    # an hour later: asks from a day before the first fetch; one new entry
    kraken.state.ledger_queries.clear()
    kraken.add_ledger_entry(
        "LNEW01-AAAAA-AAAAAA",
        time=_unix(NOW + timedelta(minutes=30)),
        type="withdrawal",
        asset="ZUSD",
        amount="-5.00",
    )
    later = NOW + timedelta(hours=1)
    second = history_fetch(
        KrakenProvider, kraken_options(kraken), KRAKEN_CREDS, later, first.transactions_cursor
    )
    (query,) = kraken.state.ledger_queries
    assert query["start"] == str(_unix(NOW) - 86_400)
    assert set(_txns(second)) == {"kraken:LRECNT-AAAAA-AAAAAA", "kraken:LNEW01-AAAAA-AAAAAA"}
    # the re-read entry (in the overlap) is the same transaction: it replaces itself
    assert _txns(second)["kraken:LRECNT-AAAAA-AAAAAA"] == _txns(first)["kraken:LRECNT-AAAAA-AAAAAA"]
    assert _txns(second)["kraken:LNEW01-AAAAA-AAAAAA"].amount == D("-5")


def test_kraken_failing_ledger_keeps_the_balances_and_loses_nothing(kraken: kr.KrakenFake) -> None:
    kraken.add_ledger_entry(
        "LDEP01-AAAAA-AAAAAA",
        time=_unix(NOW - timedelta(hours=3)),
        type="deposit",
        asset="ZEUR",
        amount="10.0000",
    )
    # the key lacks the permission: Kraken's error, echoing the key and secret (careless)
    leak = f"EGeneral:Permission denied {kr.API_KEY} {kr.API_SECRET}"
    kraken.fail_next({"error": [leak]}, path_prefix="/0/private/Ledgers")
    snap = history_fetch(KrakenProvider, kraken_options(kraken), KRAKEN_CREDS, NOW)
    assert _values(snap) == kraken_expected_usd()  # the balances land
    assert snap.transactions == () and snap.removed_transaction_ids == ()
    refused = [w for w in _warnings(snap, "skipped") if "history" in w]
    assert len(refused) == 1 and "Query Ledger Entries" in refused[0]
    text = " ".join(w.message for w in snap.warnings) + (snap.transactions_cursor or "")
    assert kr.API_KEY not in text and kr.API_SECRET not in text
    assert "ledger" not in json.loads(snap.transactions_cursor or "")  # not advanced
    # the next hour the exchange is down for the ledger: the cursor stays where it was
    good = history_fetch(KrakenProvider, kraken_options(kraken), KRAKEN_CREDS, NOW)
    assert set(_txns(good)) == {"kraken:LDEP01-AAAAA-AAAAAA"}
    kraken.fail_next("<html>503 Service Unavailable</html>", 503, path_prefix="/0/private/Ledgers")
    later = NOW + timedelta(hours=1)
    down = history_fetch(
        KrakenProvider, kraken_options(kraken), KRAKEN_CREDS, later, good.transactions_cursor
    )
    assert _values(down) == kraken_expected_usd() and down.transactions == ()
    assert any("could not read the account's history" in w for w in _warnings(down, "upstream"))
    assert down.transactions_cursor == good.transactions_cursor
    # an entry booked meanwhile is read at the next good fetch
    kraken.add_ledger_entry(
        "LDEP02-AAAAA-AAAAAA", time=_unix(later), type="deposit", asset="ZEUR", amount="20.0000"
    )
    after = history_fetch(
        KrakenProvider, kraken_options(kraken), KRAKEN_CREDS, later, down.transactions_cursor
    )
    assert _txns(after)["kraken:LDEP02-AAAAA-AAAAAA"].amount == D("20")


def test_history_can_be_turned_off(kraken: kr.KrakenFake) -> None:
    snap = history_fetch(
        KrakenProvider, kraken_options(kraken, transactions=False), KRAKEN_CREDS, NOW
    )
    assert snap.transactions == () and snap.transactions_cursor is None
    assert "POST /0/private/Ledgers" not in kraken.state.requests


def test_binance_published_deposit_example_in_90_day_windows(binance: bn.BinanceFake) -> None:
    binance.state.deposits = copy.deepcopy(HISTORY["binance_deposits"])
    now = datetime(2022, 9, 1, tzinfo=UTC)
    snap = history_fetch(
        BinanceProvider, binance_options(binance, history_days=730), BINANCE_CREDS, now, None, "EUR"
    )
    t = _txns(snap)
    # insertTime / completeTime 1661493146000 is 26 Aug 2022, 1599620082000 is 9 Sep 2020
    bnb, iota = t["binance:deposit:769800519366885376"], t["binance:deposit:769754833590042625"]
    assert _brief(bnb) == (D("0.001"), "BNB", "deposit", date(2022, 8, 26), "BNB", None)
    assert _brief(iota) == (D("0.5"), "IOTA", "deposit", date(2022, 8, 26), "IOTA", None)
    assert iota.authorized == date(2020, 9, 9) and not iota.pending
    # 730 days asked in 9 windows, each less than 90 days, back to back, up to now
    windows = [
        (int(q["startTime"]), int(q["endTime"]))
        for p, q in binance.state.history_queries
        if p == "/sapi/v1/capital/deposit/hisrec"
    ]
    now_ms = int(now.timestamp() * 1000)
    assert len(windows) == 9
    assert windows[0][0] == now_ms - 730 * DAY_MS and windows[-1][1] == now_ms - 1
    assert all(e - s < 90 * DAY_MS for s, e in windows)
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(windows))


def test_binance_published_withdrawal_example_fees_apart(binance: bn.BinanceFake) -> None:
    binance.state.withdrawals = copy.deepcopy(HISTORY["binance_withdrawals"])
    now = datetime(2019, 10, 13, tzinfo=UTC)  # both applyTimes are in the 30 days before
    opts = binance_options(binance, history_days=30)
    snap = history_fetch(BinanceProvider, opts, BINANCE_CREDS, now, None, "EUR")
    t = _txns(snap)
    done = date(2023, 3, 23)  # completeTime "2023-03-23 16:52:41" of both
    wid, bid = (
        "binance:withdrawal:b6ae22b3aa844210a7041aee7589627c",
        ("binance:withdrawal:156ec387f49b41df8724fa744fa82719"),
    )
    assert {i: _brief(x) for i, x in t.items()} == {
        wid: (D("-8.91"), "USDT", "withdrawal", done, "USDT", None),
        f"{wid}:fee": (D("-0.004"), "USDT", "fee", done, "USDT", None),
        bid: (D("-0.0015"), "BTC", "withdrawal", done, "BTC", None),
        f"{bid}:fee": (D("-0.004"), "BTC", "fee", done, "BTC", None),
    }
    assert t[wid].authorized == date(2019, 10, 12) and t[bid].authorized == date(2019, 9, 24)
    # what left the balance: amount and fee, 8.914 USDT and 0.0055 BTC
    assert t[wid].amount + t[f"{wid}:fee"].amount == D("-8.914")
    assert t[bid].amount + t[f"{bid}:fee"].amount == D("-0.0055")


def test_binance_published_trade_example_and_the_trade_cursor(binance: bn.BinanceFake) -> None:
    binance.state.trades["BNBBTC"] = copy.deepcopy(HISTORY["binance_my_trades"])
    binance.add_balance("BTC", "0.01000000")  # scenario: BTC held, so BNB/BTC is asked
    binance.add_ticker("BNBBTC", "0.00100000")
    now = datetime(2017, 7, 13, tzinfo=UTC)  # the trade (1499865549590) is 12 July 2017
    opts = binance_options(binance, history_days=30)
    snap = history_fetch(BinanceProvider, opts, BINANCE_CREDS, now, None, "EUR")
    day = date(2017, 7, 12)
    tid = "binance:trade:BNBBTC:28457"
    assert {i: _brief(x) for i, x in _txns(snap).items()} == {
        f"{tid}:base": (D("12"), "BNB", "buy", day, "BNB", D("12")),
        f"{tid}:quote": (D("-48.000012"), "BTC", "sell", day, "BTC", D("-48.000012")),
        f"{tid}:fee": (D("-10.1"), "BNB", "fee", day, "BNB", None),
    }
    asked = [q for p, q in binance.state.history_queries if q.get("symbol") == "BNBBTC"]
    assert asked[0]["startTime"] == str(int(now.timestamp() * 1000) - 30 * DAY_MS)
    assert "fromId" not in asked[0]
    assert json.loads(snap.transactions_cursor or "")["trades"]["BNB/BTC"] == 28457
    # the next fetch asks from the next trade id only: nothing twice
    binance.state.history_queries.clear()
    again = history_fetch(
        BinanceProvider,
        opts,
        BINANCE_CREDS,
        now + timedelta(hours=1),
        snap.transactions_cursor,
        "EUR",
    )
    asked = [q for p, q in binance.state.history_queries if q.get("symbol") == "BNBBTC"]
    assert asked[0]["fromId"] == "28458" and "startTime" not in asked[0]
    assert not any(t.id.startswith(tid) for t in again.transactions)


def _deposit(
    i: int, at_ms: int, status: int, coin: str = "USDT", amount: str = "1.00"
) -> dict[str, Any]:
    """A deposit record shaped like the published one (scenario data)."""
    return {
        "id": f"9{i:017d}", "amount": amount, "coin": coin, "network": "ETH", "status": status,
        "address": "0x0", "addressTag": "", "txId": f"0x{i:064x}", "insertTime": at_ms,
        "transferType": 0, "confirmTimes": "12/12", "unlockConfirm": 0, "walletType": 0,
    }  # fmt: skip


def test_binance_pending_and_failed_deposits_and_withdrawals(binance: bn.BinanceFake) -> None:
    now_ms = int(NOW.timestamp() * 1000)
    pending_at = now_ms - 3 * DAY_MS
    binance.state.deposits = [
        _deposit(1, pending_at, 0, amount="50.00"),  # pending: reported as pending
        _deposit(2, now_ms - 2 * DAY_MS, 7),  # wrong deposit: never counted
    ]
    base = copy.deepcopy(HISTORY["binance_withdrawals"][0])
    withdrawals = []
    for wid, status in (("w-processing", 4), ("w-failed", 5)):
        row = {**base, "id": wid, "status": status, "applyTime": "2026-01-04 09:00:00"}
        row.pop("completeTime")
        withdrawals.append(row)
    binance.state.withdrawals = withdrawals
    snap = history_fetch(BinanceProvider, binance_options(binance), BINANCE_CREDS, NOW, None, "EUR")
    t = _txns(snap)
    dep = t["binance:deposit:900000000000000001"]
    assert (dep.pending, dep.posted, dep.amount, dep.authorized) == (
        True, None, D("50"), date(2026, 1, 2)
    )  # fmt: skip
    wd = t["binance:withdrawal:w-processing"]
    assert (wd.pending, wd.posted, wd.amount) == (True, None, D("-8.91"))
    assert t["binance:withdrawal:w-processing:fee"].pending
    assert set(snap.removed_transaction_ids) == {
        "binance:deposit:900000000000000002",
        "binance:withdrawal:w-failed",
        "binance:withdrawal:w-failed:fee",
    }
    # the cursor holds each stream back to its oldest pending entry
    cursor = json.loads(snap.transactions_cursor or "")
    assert cursor["deposits"] == pending_at
    assert cursor["withdrawals"] == int(datetime(2026, 1, 4, 9, tzinfo=UTC).timestamp() * 1000)
    # credited the next day: the same id comes back posted and replaces the pending one
    binance.state.deposits[0] = {**binance.state.deposits[0], "status": 1}
    binance.state.history_queries.clear()
    later = NOW + timedelta(days=1)
    again = history_fetch(
        BinanceProvider,
        binance_options(binance),
        BINANCE_CREDS,
        later,
        snap.transactions_cursor,
        "EUR",
    )
    dep = _txns(again)["binance:deposit:900000000000000001"]
    assert (dep.pending, dep.posted) == (False, date(2026, 1, 2))
    (first_window,) = [
        q for p, q in binance.state.history_queries if p == "/sapi/v1/capital/deposit/hisrec"
    ]
    assert first_window["startTime"] == str(pending_at)


def test_binance_deposits_page_by_offset(binance: bn.BinanceFake) -> None:
    now_ms = int(NOW.timestamp() * 1000)
    binance.state.deposits = [_deposit(i, now_ms - DAY_MS - i, 1) for i in range(1001)]
    snap = history_fetch(BinanceProvider, binance_options(binance), BINANCE_CREDS, NOW, None, "EUR")
    deposits = [t for t in snap.transactions if t.kind == "deposit"]
    assert len(deposits) == 1001 and sum(t.amount for t in deposits) == D("1001")
    offsets = [
        q["offset"] for p, q in binance.state.history_queries if p.endswith("deposit/hisrec")
    ]
    assert offsets == ["0", "1000"]


def test_binance_rate_limited_trades_keep_what_was_read(binance: bn.BinanceFake) -> None:
    now_ms = int(NOW.timestamp() * 1000)
    binance.state.deposits = [_deposit(1, now_ms - DAY_MS, 1)]
    too_many = {"code": -1003, "msg": "Too many requests; current limit is 6000 request weight."}
    binance.fail_next(too_many, 429, path_prefix="/api/v3/myTrades")
    snap = history_fetch(BinanceProvider, binance_options(binance), BINANCE_CREDS, NOW, None, "EUR")
    assert _values(snap) == binance_expected_eur()
    assert set(_txns(snap)) == {"binance:deposit:900000000000000001"}  # read before the 429
    assert any("rate limited" in w for w in _warnings(snap, "upstream"))
    cursor = json.loads(snap.transactions_cursor or "")
    assert cursor["deposits"] == now_ms - DAY_MS and "trades" not in cursor
    # no further trade request after the 429: one myTrades asked, then the fetch stopped
    assert binance.state.requests.count("GET /api/v3/myTrades") == 1
