"""Crypto exchange providers (kraken, binance, ccxt) against fakes speaking the real wire protocols.

The fakes answer from ``shared/data/api-examples/ccxt_*_responses.json`` plus the
scenario additions declared below (each marked). Expected values are worked out
here by hand from those numbers, never by the code under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import (
    LINKED_ACCOUNT_ID_OPTION,
    AuthenticationFailure,
    CredentialsError,
    FetchTimeout,
    Item,
    Provider,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    RetiredProvider,
    Snapshot,
    TransientError,
)
from finbot_pipelines.providers.crypto_exchange import (
    BinanceProvider,
    CcxtProvider,
    KrakenProvider,
    rebase_urls,
)
from finbot_pipelines.providers.fetching import FetchTask, RetryPolicy, run_one
from finbot_pipelines_tests.conftest import SHARED_DATA
from finbot_pipelines_tests.fakes import binance_server as bn
from finbot_pipelines_tests.fakes import kraken_server as kr

HOUR = datetime(2026, 1, 5, 10)
EXAMPLES = SHARED_DATA / "api-examples"


def _examples(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def _items(snapshot: Snapshot) -> dict[str, Item]:
    (sa,) = snapshot.sub_accounts
    return {i.name: i for i in sa.items}


# =========================================================================== Kraken

KRAKEN_CREDS = {"api_key": kr.API_KEY, "api_secret": kr.API_SECRET}

# Scenario additions (not in the examples): prices as Kraken quotes them, last trade.
KRAKEN_USDT_USD = "0.99950"  # USDTZUSD: no XBT/USD pair in this fake, so BTC is bridged via USDT
KRAKEN_EUR_USD = "1.08500"  # ZEURZUSD
KRAKEN_ETH_USD = "3000.00"  # XETHZUSD
KRAKEN_EXTRA_BALANCES = {  # asset id -> (balance, hold_trade)
    "ZEUR": (1500.0, 0.0),  # fiat: cash
    "USDT": (300.0, 100.0),  # stablecoin; hold_trade is part of balance (not added)
    "XETH": (0.0002, 0.0),  # 0.0002 * 3000 = 0.60 USD: dust below 1.0, skipped
    "KFEE": (1250.0, 0.0),  # Kraken fee credits: ignored, never valued
}


@pytest.fixture
def kraken() -> Iterator[kr.KrakenFake]:
    with kr.kraken_fake(kr.KrakenFake.state_from_examples(SHARED_DATA)) as fake:
        for asset, (balance, hold) in KRAKEN_EXTRA_BALANCES.items():
            fake.add_balance(asset, balance, hold)
        fake.add_ticker("USDTZUSD", KRAKEN_USDT_USD)
        fake.add_ticker("ZEURZUSD", KRAKEN_EUR_USD)
        fake.add_ticker("XETHZUSD", KRAKEN_ETH_USD)
        yield fake


def kraken_options(fake: kr.KrakenFake, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": fake.url,
        "enable_rate_limit": False,
        LINKED_ACCOUNT_ID_OPTION: "kraken-main",
        **extra,
    }


def kraken_expected() -> dict[str, float]:
    """Item values in USD, by hand from the example answers and the additions above."""
    ex = _examples("ccxt_kraken_responses.json")
    bal = ex["POST /0/private/BalanceEx"]["result"]
    xbt_usdt = float(ex["GET /0/public/Ticker?pair=XBTUSDT"]["result"]["XBTUSDT"]["c"][0])
    usdt_usd = float(KRAKEN_USDT_USD)
    return {
        "USD": float(bal["ZUSD"]["balance"]),  # 25435.21: balance is the total
        "BTC": float(bal["XXBT"]["balance"]) * xbt_usdt * usdt_usd,  # BTC -> USDT -> USD
        "EUR": 1500.0 * float(KRAKEN_EUR_USD),
        "USDT": 300.0 * usdt_usd,
    }


def test_kraken_values_a_realistic_account(kraken: kr.KrakenFake) -> None:
    snap = KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken), HOUR)
    snap.validate()
    (sa,) = snap.sub_accounts
    assert (sa.id, sa.name, sa.currency, sa.account_type) == (
        "kraken",
        "Kraken",
        "USD",
        "investment",
    )
    items = _items(snap)
    expected = kraken_expected()
    assert set(items) == set(expected)  # ETH dust and KFEE left out
    for name, value in expected.items():
        assert items[name].value == pytest.approx(value, rel=1e-12), name
    # the same numbers written out: 1.2435 XBT * 73380.6 USDT * 0.9995 USD
    assert items["BTC"].value == pytest.approx(91203.15171195, abs=1e-6)
    assert sum(i.value for i in items.values()) == pytest.approx(
        25435.21 + 91203.15171195 + 1627.5 + 299.85, abs=1e-6
    )
    btc, usd, eur, usdt = items["BTC"], items["USD"], items["EUR"], items["USDT"]
    assert (btc.asset_class, btc.asset_type, btc.units, btc.symbol) == (
        "crypto",
        "crypto_currency",
        1.2435,
        "BTC",
    )
    assert (usd.asset_class, usd.asset_type, usd.units) == ("cash", "cash", 25435.21)
    assert (eur.asset_class, eur.asset_type, eur.units, eur.currency) == (
        "cash",
        "cash",
        1500.0,
        "EUR",
    )
    assert (usdt.asset_class, usdt.asset_type, usdt.units) == ("crypto", "stable_coin", 300.0)
    assert all(i.item_type == "asset" for i in items.values())
    # the wire conversation ccxt had with the fake
    assert kraken.state.requests == [
        "GET /0/public/Assets",
        "GET /0/public/AssetPairs",
        "POST /0/private/BalanceEx",
        "GET /0/public/Ticker",
    ]


def test_kraken_dust_threshold_and_quote_currency(kraken: kr.KrakenFake) -> None:
    # threshold 0: the 0.60 USD of ETH is kept
    items = _items(
        KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken, dust_threshold=0), HOUR)
    )
    assert items["ETH"].value == pytest.approx(0.0002 * 3000.0)
    # valued in EUR: USD cash through the inverted EUR/USD pair, BTC via USDT/USD then USD/EUR
    opts = kraken_options(kraken, quote_ccy="EUR", bridges=["USDT", "USD"])
    snap = KrakenProvider().fetch(KRAKEN_CREDS, opts, HOUR)
    assert snap.sub_accounts[0].currency == "EUR"
    items = _items(snap)
    eur_usd = float(KRAKEN_EUR_USD)
    assert items["EUR"].value == pytest.approx(1500.0)
    assert items["USD"].value == pytest.approx(25435.21 / eur_usd, rel=1e-12)
    assert items["BTC"].value == pytest.approx(
        1.2435 * 73380.6 * float(KRAKEN_USDT_USD) / eur_usd, rel=1e-12
    )


def test_kraken_authentication_failures_never_leak_credentials(kraken: kr.KrakenFake) -> None:
    bad_key = {"api_key": "not-the-key-9999", "api_secret": kr.API_SECRET}
    with pytest.raises(AuthenticationFailure, match="EAPI:Invalid key") as err:
        KrakenProvider().fetch(bad_key, kraken_options(kraken), HOUR)
    assert "not-the-key-9999" not in str(err.value)
    assert kr.API_SECRET not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    # a wrong (but well-formed) secret: the fake rejects the signature
    wrong_secret = {"api_key": kr.API_KEY, "api_secret": "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA=="}
    with pytest.raises(AuthenticationFailure, match="Invalid signature") as err2:
        KrakenProvider().fetch(wrong_secret, kraken_options(kraken), HOUR)
    assert kr.API_KEY not in str(err2.value)
    # missing / malformed credentials: the user's vault entry, no request sent
    with pytest.raises(CredentialsError, match="api_secret"):
        KrakenProvider().fetch({"api_key": kr.API_KEY}, kraken_options(kraken), HOUR)
    with pytest.raises(CredentialsError, match="base64") as err3:
        KrakenProvider().fetch(
            {"api_key": kr.API_KEY, "api_secret": "%%%%"}, kraken_options(kraken), HOUR
        )
    assert "%%%%" not in str(err3.value)
    # through the fetch runner: an authentication failure is not retried
    task = FetchTask(HOUR, "kraken-main", KrakenProvider(), kraken_options(kraken), lambda: bad_key)
    outcome = run_one(task, RetryPolicy(backoff_s=0))
    assert (outcome.ok, outcome.attempts, outcome.error_code) == (
        False,
        1,
        "authentication_failure",
    )


def test_kraken_rate_limit_is_retried_until_the_fake_recovers(kraken: kr.KrakenFake) -> None:
    limited = {"error": ["EAPI:Rate limit exceeded"]}
    kraken.fail_next(limited, path_prefix="/0/private/BalanceEx")
    with pytest.raises(RateLimited, match="Rate limit exceeded"):
        KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken), HOUR)
    kraken.fail_next(limited, path_prefix="/0/private/BalanceEx")
    task = FetchTask(
        HOUR, "kraken-main", KrakenProvider(), kraken_options(kraken), lambda: KRAKEN_CREDS
    )
    outcome = run_one(task, RetryPolicy(backoff_s=0))
    assert outcome.ok and outcome.attempts == 2
    assert outcome.snapshot is not None
    total = sum(i.value for i in outcome.snapshot.sub_accounts[0].items)
    assert total == pytest.approx(sum(kraken_expected().values()), rel=1e-12)


def test_kraken_5xx_and_maintenance_are_transient(kraken: kr.KrakenFake) -> None:
    kraken.fail_next("<html><body>502 Bad Gateway</body></html>", status=502)
    with pytest.raises(TransientError) as err:
        KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken), HOUR)
    assert err.value.code == "transient"
    kraken.fail_next({"error": ["EService:Unavailable"]}, path_prefix="/0/private/")
    with pytest.raises(TransientError, match="EService:Unavailable"):
        KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken), HOUR)
    kraken.fail_next("<html>503</html>", status=503, times=2)
    task = FetchTask(
        HOUR, "kraken-main", KrakenProvider(), kraken_options(kraken), lambda: KRAKEN_CREDS
    )
    outcome = run_one(task, RetryPolicy(backoff_s=0))
    assert outcome.ok and outcome.attempts == 3


def test_kraken_slow_answer_is_a_timeout(kraken: kr.KrakenFake) -> None:
    kraken.state.delay_s = 1.0
    with pytest.raises(FetchTimeout):
        KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken, timeout_s=0.2), HOUR)


@pytest.mark.parametrize(
    "body",
    [
        {"error": [], "result": {"XXBT": {"balance": "lots", "hold_trade": "0"}}},
        {"error": [], "result": {"XXBT": {"hold_trade": "0.5"}}},
        {"error": []},
        {"error": [], "result": ["XXBT", 1.2435]},
        "<html>maintenance page</html>",
        "",
    ],
    ids=["not-a-number", "no-balance", "no-result", "result-is-a-list", "html", "empty"],
)
def test_kraken_malformed_balance_is_a_provider_error(kraken: kr.KrakenFake, body: Any) -> None:
    kraken.state.balance_body = body
    with pytest.raises(ProviderPayloadError):
        KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken), HOUR)


def test_kraken_unpriced_currency_fails_unless_skipped(kraken: kr.KrakenFake) -> None:
    # the only path for BTC is XBT/USDT: without its ticker BTC cannot be valued
    del kraken.state.tickers["XBTUSDT"]
    with pytest.raises(ProviderPayloadError, match=r"cannot value BTC in USD") as err:
        KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken), HOUR)
    assert "skip_unpriced" in str(err.value)
    items = _items(
        KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken, skip_unpriced=True), HOUR)
    )
    assert "BTC" not in items
    assert items["USD"].value == pytest.approx(25435.21)
    items = _items(
        KrakenProvider().fetch(
            KRAKEN_CREDS, kraken_options(kraken, ignore_currencies=["BTC"]), HOUR
        )
    )
    assert set(items) == {"USD", "EUR", "USDT"}


def test_kraken_ticker_without_prices_is_never_a_zero(kraken: kr.KrakenFake) -> None:
    for key in ("a", "b", "c"):
        kraken.state.tickers["XBTUSDT"][key] = []
    with pytest.raises(ProviderPayloadError, match="BTC"):
        KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken), HOUR)


def test_generic_ccxt_provider_on_the_kraken_fake(kraken: kr.KrakenFake) -> None:
    provider = registry.get_provider("ccxt")
    assert isinstance(provider, CcxtProvider)
    opts = kraken_options(kraken, exchange="kraken")
    provider.validate_options(opts)
    snap = provider.fetch(KRAKEN_CREDS, opts, HOUR)
    items = _items(snap)
    for name, value in kraken_expected().items():
        assert items[name].value == pytest.approx(value, rel=1e-12), name
    assert snap == KrakenProvider().fetch(KRAKEN_CREDS, kraken_options(kraken), HOUR)


# =========================================================================== Binance

BINANCE_CREDS = {"api_key": bn.API_KEY, "api_secret": bn.API_SECRET}

# Scenario additions (not in the examples). Binance has no USD market: value in EUR.
BINANCE_EUR_USDT = "1.08500000"  # EURUSDT: EUR is the base, so EUR prices are inverted
BINANCE_LTC_BTC = "0.00125000"  # LTCBTC: LTC -> BTC -> USDT -> EUR, two bridges
BINANCE_BNB_USDT = "600.00000000"
BINANCE_EXTRA_BALANCES = [  # (asset, free, locked)
    ("EUR", "250.50000000", "0.00000000"),  # fiat: cash
    ("USDT", "1000.00000000", "200.00000000"),  # stablecoin, locked counts: total 1200
    ("BNB", "0.00100000", "0.00000000"),  # 0.6 USDT = 0.55 EUR: dust, skipped
]


@pytest.fixture
def binance() -> Iterator[bn.BinanceFake]:
    with bn.binance_fake(bn.BinanceFake.state_from_examples(SHARED_DATA)) as fake:
        for asset, free, locked in BINANCE_EXTRA_BALANCES:
            fake.add_balance(asset, free, locked)
        fake.add_ticker("EURUSDT", BINANCE_EUR_USDT)
        fake.add_ticker("LTCBTC", BINANCE_LTC_BTC)
        fake.add_ticker("BNBUSDT", BINANCE_BNB_USDT)
        yield fake


def binance_options(fake: bn.BinanceFake, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": fake.url,
        "enable_rate_limit": False,
        "quote_ccy": "EUR",
        LINKED_ACCOUNT_ID_OPTION: "binance-main",
        **extra,
    }


def binance_expected() -> dict[str, float]:
    """Item values in EUR, by hand from the example answers and the additions above."""
    ex = _examples("ccxt_binance_responses.json")
    balances = {b["asset"]: b for b in ex["GET /api/v3/account"]["balances"]}
    btc_usdt = float(ex["GET /api/v3/ticker/24hr?symbol=BTCUSDT"]["lastPrice"])  # 73369.84
    rolling = {t["symbol"]: t for t in ex['GET /api/v3/ticker?symbols=["BTCUSDT","ETHUSDT"]']}
    eth_usdt = float(rolling["ETHUSDT"]["lastPrice"])  # 3820.06
    usdt_eur = 1 / float(BINANCE_EUR_USDT)

    def total(asset: str) -> float:
        return float(balances[asset]["free"]) + float(balances[asset]["locked"])

    return {
        "ETH": total("ETH") * eth_usdt * usdt_eur,
        "LTC": total("LTC") * float(BINANCE_LTC_BTC) * btc_usdt * usdt_eur,
        "EUR": 250.5,
        "USDT": 1200.0 * usdt_eur,
    }  # BTC: 0 in the example, left out


def test_binance_values_a_realistic_account(binance: bn.BinanceFake) -> None:
    snap = BinanceProvider().fetch(BINANCE_CREDS, binance_options(binance), HOUR)
    (sa,) = snap.sub_accounts
    assert (sa.id, sa.name, sa.currency, sa.account_type) == (
        "binance",
        "Binance",
        "EUR",
        "investment",
    )
    items = _items(snap)
    expected = binance_expected()
    assert set(items) == set(expected)  # BTC zero and BNB dust left out
    for name, value in expected.items():
        assert items[name].value == pytest.approx(value, rel=1e-12), name
    # written out: 0.02229833 * 3820.06 / 1.085 and 0.919741 * 0.00125 * 73369.84 / 1.085
    assert items["ETH"].value == pytest.approx(78.507795852, abs=1e-6)
    assert items["LTC"].value == pytest.approx(77.743375589, abs=1e-6)
    assert items["USDT"].units == 1200.0 and items["USDT"].asset_type == "stable_coin"
    assert (items["EUR"].asset_class, items["EUR"].units) == ("cash", 250.5)
    assert items["LTC"].units == 0.919741 and items["LTC"].asset_type == "crypto_currency"
    # spot only: exchangeInfo, the signed account, one batch of 24hr tickers
    assert binance.state.requests == [
        "GET /api/v3/exchangeInfo",
        "GET /api/v3/account",
        "GET /api/v3/ticker/24hr",
    ]


def test_binance_authentication_failures(binance: bn.BinanceFake) -> None:
    bad_key = {"api_key": "unknown-key-12345", "api_secret": bn.API_SECRET}
    with pytest.raises(AuthenticationFailure, match="-2015") as err:
        BinanceProvider().fetch(bad_key, binance_options(binance), HOUR)
    message = str(err.value)
    assert "unknown-key-12345" not in message and bn.API_SECRET not in message
    assert "signature=" not in message  # the signed query string never reaches a message
    bad_secret = {"api_key": bn.API_KEY, "api_secret": "another-secret-value"}
    with pytest.raises(AuthenticationFailure, match="-1022"):
        BinanceProvider().fetch(bad_secret, binance_options(binance), HOUR)


def test_binance_429_retry_after_then_recovers(binance: bn.BinanceFake) -> None:
    too_many = {"code": -1003, "msg": "Too many requests; current limit is 6000 request weight."}
    binance.fail_next(
        too_many, status=429, headers={"Retry-After": "7"}, path_prefix="/api/v3/account"
    )
    with pytest.raises(RateLimited) as err:
        BinanceProvider().fetch(BINANCE_CREDS, binance_options(binance), HOUR)
    assert err.value.retry_after == 7.0
    binance.fail_next(
        too_many, status=429, headers={"Retry-After": "7"}, path_prefix="/api/v3/account"
    )
    slept: list[float] = []
    task = FetchTask(
        HOUR, "binance-main", BinanceProvider(), binance_options(binance), lambda: BINANCE_CREDS
    )
    outcome = run_one(task, RetryPolicy(backoff_s=0), sleep=slept.append)
    assert outcome.ok and outcome.attempts == 2
    assert slept == [7.0]  # the server's Retry-After was honoured
    assert outcome.snapshot is not None
    assert sum(i.value for i in outcome.snapshot.sub_accounts[0].items) == pytest.approx(
        sum(binance_expected().values()), rel=1e-12
    )


def test_binance_5xx_is_transient_and_retried(binance: bn.BinanceFake) -> None:
    binance.fail_next(
        "<html>503 Service Unavailable</html>", status=503, path_prefix="/api/v3/exchangeInfo"
    )
    with pytest.raises(TransientError):
        BinanceProvider().fetch(BINANCE_CREDS, binance_options(binance), HOUR)
    binance.fail_next(
        {"code": -1001, "msg": "Internal error; unable to process your request."}, status=500
    )
    task = FetchTask(
        HOUR, "binance-main", BinanceProvider(), binance_options(binance), lambda: BINANCE_CREDS
    )
    outcome = run_one(task, RetryPolicy(backoff_s=0))
    assert outcome.ok and outcome.attempts == 2


@pytest.mark.parametrize(
    "body",
    [
        {"balances": [{"asset": "ETH", "free": "a lot", "locked": "0.0"}]},
        {"balances": [{"asset": "ETH", "free": "1.0"}]},
        {"accountType": "SPOT"},
        {"balances": {"ETH": "1.0"}},
        "<html>oops</html>",
    ],
    ids=["not-a-number", "no-locked", "no-balances", "balances-not-a-list", "html"],
)
def test_binance_malformed_account_is_a_provider_error(binance: bn.BinanceFake, body: Any) -> None:
    binance.state.account_body = body
    with pytest.raises(ProviderPayloadError):
        BinanceProvider().fetch(BINANCE_CREDS, binance_options(binance), HOUR)


def test_binance_missing_ticker_is_never_a_zero(binance: bn.BinanceFake) -> None:
    del binance.state.tickers["LTCBTC"]
    with pytest.raises(ProviderPayloadError, match="cannot value LTC in EUR"):
        BinanceProvider().fetch(BINANCE_CREDS, binance_options(binance), HOUR)
    # an incomplete ticker (no price field at all) is not a price either
    binance.add_ticker("LTCBTC", BINANCE_LTC_BTC)
    binance.state.tickers["ETHUSDT"] = {"symbol": "ETHUSDT", "volume": "604756.07960000"}
    with pytest.raises(ProviderPayloadError, match="cannot value ETH in EUR"):
        BinanceProvider().fetch(BINANCE_CREDS, binance_options(binance), HOUR)


# =========================================================================== options, registry


def test_providers_follow_the_contract() -> None:
    for pid, cls in (
        ("kraken", KrakenProvider),
        ("binance", BinanceProvider),
        ("ccxt", CcxtProvider),
    ):
        p = registry.get_provider(pid)
        assert isinstance(p, cls) and isinstance(p, Provider)
        assert p.id == pid and p.supports_historical is False
        fields = {f.name: f for f in p.credential_fields}
        assert fields["api_key"].required and fields["api_secret"].required
        assert fields["api_secret"].secret and not fields["password"].required


@pytest.mark.parametrize(
    ("provider", "options", "message"),
    [
        (KrakenProvider(), {"quote_ccy": "BTC"}, r"options\.quote_ccy: expected an ISO 4217 fiat"),
        (KrakenProvider(), {"quote_ccy": "usd"}, r"options\.quote_ccy"),
        (KrakenProvider(), {"dust_threshold": -1}, r"options\.dust_threshold"),
        (KrakenProvider(), {"bridges": "USDT"}, r"options\.bridges: expected a list"),
        (KrakenProvider(), {"bridges": ["USDT", "usdt"]}, r"options\.bridges\[1\]"),
        (KrakenProvider(), {"skip_unpriced": "yes"}, r"options\.skip_unpriced"),
        (KrakenProvider(), {"api_url": "ftp://x"}, r"options\.api_url"),
        (KrakenProvider(), {"timeout_s": 0}, r"options\.timeout_s"),
        (KrakenProvider(), {"exchange": "kraken"}, r"options\.exchange: unknown option"),
        (KrakenProvider(), {"colour": "red"}, r"options\.colour: unknown option"),
        (CcxtProvider(), {}, r"options\.exchange: required"),
        (CcxtProvider(), {"exchange": "krakn"}, r"did you mean 'kraken'"),
    ],
)
def test_bad_options_are_refused(provider: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        provider.validate_options(options)


def test_good_options_are_accepted() -> None:
    KrakenProvider().validate_options(
        {
            LINKED_ACCOUNT_ID_OPTION: "k",
            "quote_ccy": "GBP",
            "bridges": ["USDT"],
            "dust_threshold": 0,
            "skip_unpriced": True,
            "ignore_currencies": ["ETH.F"],
            "api_url": "https://api.kraken.com",
            "timeout_s": 10,
            "enable_rate_limit": True,
        }
    )
    CcxtProvider().validate_options({"exchange": "okx", LINKED_ACCOUNT_ID_OPTION: "o"})


def test_bittrex_is_retired() -> None:
    # as a provider id (registry) ...
    with pytest.raises(RetiredProvider, match="bittrex closed in 2023"):
        registry.get_provider("bittrex").fetch({}, {LINKED_ACCOUNT_ID_OPTION: "b"}, HOUR)
    # ... and as a ccxt exchange: accepted in finbot.yaml, every fetch says why it fails
    opts = {"exchange": "bittrex", LINKED_ACCOUNT_ID_OPTION: "b"}
    CcxtProvider().validate_options(opts)
    with pytest.raises(RetiredProvider, match="bittrex closed in 2023") as err:
        CcxtProvider().fetch({"api_key": "k-123", "api_secret": "s-456"}, opts, HOUR)
    assert err.value.code == "retired_provider"


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
    total_usd = 25435.21 + 1.2435 * 73380.6 * 0.9995 + 1500.0 * 1.085 + 300.0 * 0.9995
    assert total_usd == pytest.approx(sum(kraken_expected().values()), rel=1e-12)
    expected_gbp = total_usd / E2E_STATIC_USD_PER_EUR * E2E_STATIC_GBP_PER_EUR
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
