"""Options and credentials of the exchange providers ``kraken``, ``binance`` and ``ccxt``.

This module imports pydantic, the standard library and the provider skeleton only:
validating ``finbot.yaml`` never imports ccxt. The ``ccxt`` provider's
``exchange`` option is checked against :data:`CCXT_EXCHANGES`, a copy of
``ccxt.exchanges`` of the pinned ccxt (a test keeps it equal to the installed one),
plus the closed exchanges of :data:`RETIRED_EXCHANGES`.

How an account is valued (see :mod:`.provider`)
-----------------------------------------------
Balances are valued from the exchange's own tickers, in the profile's currency
by default (``quote_ccy`` overrides it), through the shortest path of markets
the exchange lists (ETH -> USDT -> EUR through ETH/USDT and EUR/USDT). When the
profile's currency cannot value the holdings on this exchange, the account is
valued in the fiat currency that values most of them (USD, EUR, GBP, ... first);
that currency is the sub-account's currency and finbot's FX converts it.

Transactions (see :mod:`.history`)
----------------------------------
``transactions`` (default true) reports the account's deposits, withdrawals,
trades and fees; ``history_days`` (default 90) bounds how far back the first
fetch reads; later fetches resume from the stored transactions cursor.
"""

from __future__ import annotations

import difflib
from typing import Annotated

from pydantic import AfterValidator, AliasChoices, Field, Strict, StringConstraints

from finbot_pipelines.providers.base import (
    FiatCurrency,
    HttpUrl,
    ProviderCredentials,
    ProviderOptions,
    ProviderSpec,
    Seconds,
    UnitCode,
    secret,
)

#: ``ccxt.exchanges`` of ccxt 4.5.90 (the pinned version), in its order.
CCXT_EXCHANGES: tuple[str, ...] = (
    "alpaca", "apex", "aster", "backpack", "bequant", "bigone", "binance", "binancecoinm",
    "binanceus", "binanceusdm", "bingx", "bit2c", "bitbank", "bitbns", "bitfinex", "bitflyer",
    "bitget", "bithumb", "bitopro", "bitrue", "bitso", "bitstamp", "bitteam", "bittrade",
    "bitvavo", "blockchaincom", "blofin", "btcbox", "btcmarkets", "btcturk", "btse", "bullish",
    "bybit", "bybiteu", "bybitid", "bydfi", "cex", "coinbase", "coinbaseexchange",
    "coinbaseinternational", "coincheck", "coinmate", "coinone", "coinsph", "coinspot",
    "cryptocom", "cryptomus", "deepcoin", "delta", "deribit", "derive", "digifinex", "dydx",
    "extended", "fmfwio", "foxbit", "gate", "gateeu", "gemini", "grvt", "hashkey", "hibachi",
    "hitbtc", "hollaex", "htx", "hyperliquid", "independentreserve", "indodax", "kraken",
    "krakenfutures", "kucoin", "kucoinfutures", "latoken", "lbank", "lighter", "luno", "mercado",
    "mexc", "modetrade", "mudrex", "myokx", "nado", "ndax", "okx", "okxus", "onetrading", "p2b",
    "pacifica", "paradex", "paymium", "phemex", "poloniex", "polymarket", "revolutx",
    "tokocrypto", "toobit", "upbit", "weex", "whitebit", "woo", "woofipro", "xt", "zaif",
    "zebpay",
)  # fmt: skip

#: Exchanges that closed (no longer in ccxt): accepted as ``exchange`` so history keeps
#: its name, but every fetch fails with ``retired_provider`` and this message.
RETIRED_EXCHANGES: dict[str, str] = {
    "bittrex": "bittrex closed in 2023; remove or freeze this linked account",
    "ftx": "FTX closed in 2022; remove or freeze this linked account",
    "ftxus": "FTX US closed in 2022; remove or freeze this linked account",
}

#: Preferred intermediate currencies when several paths of the same length exist.
DEFAULT_BRIDGES: tuple[str, ...] = ("USDT", "BTC", "EUR", "USD")
DEFAULT_DUST_THRESHOLD = 1.0
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_HISTORY_DAYS = 90
MAX_HISTORY_DAYS = 730


def _check_exchange(v: str) -> str:
    if v in CCXT_EXCHANGES or v in RETIRED_EXCHANGES:
        return v
    close = difflib.get_close_matches(v, (*CCXT_EXCHANGES, *RETIRED_EXCHANGES), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"expected a ccxt exchange id such as kraken, got {v!r}{hint}")


def _unique(v: list[str]) -> list[str]:
    for i, code in enumerate(v):
        if code in v[:i]:
            raise ValueError(f"expected each currency once, got {code!r} twice")
    return v


CodeList = Annotated[list[UnitCode], AfterValidator(_unique)]
ExchangeId = Annotated[str, Strict(), AfterValidator(_check_exchange)]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ExchangeOptions(ProviderOptions):
    """Options of ``kraken`` and ``binance`` (and, with ``exchange``, of ``ccxt``)."""

    quote_ccy: FiatCurrency | None = Field(
        default=None,
        description=(
            "ISO 4217 fiat code to value the balances in, overriding the default: the "
            "profile's currency, else the fiat this exchange can value the holdings in"
        ),
    )
    bridges: CodeList = Field(
        default_factory=lambda: list(DEFAULT_BRIDGES),
        description=(
            "currencies preferred, in this order, as intermediate steps when paths of the "
            "same length value a balance (any market the exchange lists may be a step)"
        ),
    )
    dust_threshold: float = Field(
        default=DEFAULT_DUST_THRESHOLD,
        ge=0,
        le=1e12,
        allow_inf_nan=False,
        description="balances worth less than this (in the valuation currency) are left out",
    )
    skip_unpriced: bool = Field(
        default=False,
        description=(
            "leave out balances the exchange cannot value (by default they are listed "
            "without a value, valued downstream by unit_prices when they can be)"
        ),
    )
    ignore_currencies: CodeList = Field(
        default_factory=list,
        description="currency codes never reported, e.g. a delisted airdrop (Kraken's KFEE always)",
    )
    api_url: HttpUrl | None = Field(
        default=None,
        description=(
            "replaces the scheme and host of every API address of the exchange, keeping "
            "their paths (proxies, test fakes)"
        ),
    )
    transactions: bool = Field(
        default=True,
        description=(
            "report deposits, withdrawals, trades and fees (the key needs the exchange's "
            "history permission; without it the balances still land, with a warning)"
        ),
    )
    history_days: Annotated[int, Field(ge=1, le=MAX_HISTORY_DAYS)] = Field(
        default=DEFAULT_HISTORY_DAYS,
        description=(
            f"days of history the first fetch reads (1 to {MAX_HISTORY_DAYS}); later fetches "
            "read what is new, with a day of overlap"
        ),
    )
    timeout_s: Seconds = Field(default=DEFAULT_TIMEOUT_S, description="seconds per HTTP request")
    enable_rate_limit: bool = Field(
        default=True, description="ccxt's client-side throttling (tests turn it off)"
    )


class CcxtOptions(ExchangeOptions):
    """Options of the ``ccxt`` provider: those of every exchange plus ``exchange``."""

    exchange: ExchangeId = Field(
        description="a ccxt exchange id (ccxt.exchanges), e.g. kraken, okx, coinbase"
    )


class ExchangeCredentials(ProviderCredentials):
    """The vault entry of an exchange account (a read-only API key is enough)."""

    api_key: NonEmpty = secret("API key (a read-only key is enough)")
    api_secret: NonEmpty = secret("API secret (private key)")
    password: NonEmpty | None = secret(
        "API key passphrase, for exchanges whose keys have one (OKX, KuCoin, ...); "
        "also read as passphrase",
        default=None,
        validation_alias=AliasChoices("password", "passphrase"),
    )


_PROVIDER = "finbot_pipelines.providers.exchanges.provider"

KRAKEN = ProviderSpec(
    id="kraken",
    description=(
        "Kraken (through ccxt): total balances, staking and earn balances included, valued "
        "from Kraken's tickers in the profile's currency; the ledger as transactions"
    ),
    options=ExchangeOptions,
    credentials=ExchangeCredentials,
    supports_historical=False,
    implementation=f"{_PROVIDER}:KrakenProvider",
)

BINANCE = ProviderSpec(
    id="binance",
    description=(
        "Binance spot wallet (through ccxt): total balances (free + locked, Simple Earn "
        "included) valued from Binance's tickers in the profile's currency; deposits, "
        "withdrawals and trades as transactions"
    ),
    options=ExchangeOptions,
    credentials=ExchangeCredentials,
    supports_historical=False,
    implementation=f"{_PROVIDER}:BinanceProvider",
)

CCXT = ProviderSpec(
    id="ccxt",
    description=(
        "Any crypto exchange supported by ccxt (option exchange: <ccxt id>): total balances "
        "valued from the exchange's own tickers in the profile's currency; its ledger as "
        "transactions when ccxt has one"
    ),
    options=CcxtOptions,
    credentials=ExchangeCredentials,
    supports_historical=False,
    implementation=f"{_PROVIDER}:CcxtProvider",
)
