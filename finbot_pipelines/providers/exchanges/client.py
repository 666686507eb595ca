"""The ccxt client of one fetch, and what its answers and errors become.

A fresh ccxt client per fetch (no state shared between fetches or threads), its
API addresses rebased on ``api_url`` when given, ccxt's logger muted (it logs
request headers, the API key among them, at DEBUG). Every call goes through
:meth:`ExchangeClient.call`, which turns ccxt's exceptions into finbot's errors
(:func:`translate_error`) with every credential value masked
(:class:`~finbot_pipelines.providers.http.Masker`) and the server's Retry-After.

Balances are read from the raw answer, exactly (:func:`kraken_balances`,
:func:`binance_balances`): ccxt parses JSON numbers as floats. Other exchanges'
balances come from ccxt's unified totals (floats, read as their shortest repr).
History (:mod:`.history`) likewise: the unified methods are called (``fetch_ledger``,
``fetch_deposits``, ``fetch_withdrawals``, ``fetch_my_trades``) and their raw answers read.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import partial
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt

from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    CredentialsError,
    FetchTimeout,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    TransientError,
    to_decimal,
)
from finbot_pipelines.providers.exchanges.history import BINANCE_PAGE
from finbot_pipelines.providers.exchanges.options import ExchangeCredentials, ExchangeOptions
from finbot_pipelines.providers.exchanges.valuation import Market, ticker_price
from finbot_pipelines.providers.http import Masker, header, retry_after_seconds, upstream_detail

T = TypeVar("T")

#: ccxt settings finbot always uses for an exchange (a balances reader needs spot only).
EXCHANGE_CONFIG: dict[str, dict[str, Any]] = {
    "binance": {
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,  # a signed sapi call; markets give every code we need
        }
    },
}

# ccxt logs request headers (the API key) and bodies at DEBUG: give its clients a mute logger.
_MUTE_LOGGER = logging.getLogger("finbot_pipelines.providers.exchanges.ccxt")
_MUTE_LOGGER.propagate = False
_MUTE_LOGGER.addHandler(logging.NullHandler())
_MUTE_LOGGER.setLevel(logging.CRITICAL + 1)

_AUTH_HINTS = ("invalid key", "invalid signature", "invalid api", "api-key", "apikey")
#: what a malformed answer raises inside ccxt's parsers
MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError)


# --------------------------------------------------------------------------- errors


def translate_error(
    exc: BaseException, exchange_id: str, masker: Masker, headers: object = None
) -> ProviderError | None:
    """The finbot error for a ccxt (or parsing) exception; None if it is not one we know.

    ``headers``: those of the last answer (for Retry-After)."""
    if isinstance(exc, ProviderError):
        return exc
    # the exchange's error code and message only (ccxt quotes the whole answer, which may
    # echo the request: its signed query, its headers), masked before it is cut
    detail = upstream_detail(str(exc), masker)
    retry_after = retry_after_seconds(header(headers, "Retry-After"))
    if isinstance(exc, ccxt.AuthenticationError):  # PermissionDenied, AccountSuspended too
        return AuthenticationFailure(f"{exchange_id}: credentials refused ({detail})")
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return RateLimited(f"{exchange_id}: rate limited ({detail})", retry_after=retry_after)
    if isinstance(exc, ccxt.RequestTimeout):
        return FetchTimeout(f"{exchange_id}: request timed out ({detail})")
    if isinstance(exc, ccxt.OnMaintenance):
        return TransientError(
            f"{exchange_id}: exchange under maintenance ({detail})", retry_after=retry_after
        )
    if isinstance(exc, ccxt.NetworkError):  # ExchangeNotAvailable (5xx), InvalidNonce, ...
        return TransientError(
            f"{exchange_id}: exchange unreachable or unavailable ({detail})",
            retry_after=retry_after,
        )
    if isinstance(exc, ccxt.BadResponse):
        return ProviderPayloadError(f"{exchange_id}: unusable answer ({detail})")
    if isinstance(exc, ccxt.OperationFailed):  # e.g. Binance -1001 "internal error"
        return TransientError(
            f"{exchange_id}: the exchange failed to answer ({detail})", retry_after=retry_after
        )
    if isinstance(exc, ccxt.ExchangeError):
        if any(h in str(exc).lower() for h in _AUTH_HINTS):
            return AuthenticationFailure(f"{exchange_id}: credentials refused ({detail})")
        return ProviderPayloadError(f"{exchange_id}: exchange error ({detail})")
    if isinstance(exc, ccxt.BaseError):
        return ProviderPayloadError(f"{exchange_id}: {type(exc).__name__} ({detail})")
    if isinstance(exc, MALFORMED):
        return ProviderPayloadError(
            f"{exchange_id}: malformed answer ({type(exc).__name__}: {detail})"
        )
    return None


# --------------------------------------------------------------------------- raw balances


def _amount(value: object, exchange_id: str, what: str) -> Decimal:
    try:
        return to_decimal(value, what)
    except ValueError as exc:
        raise ProviderPayloadError(f"{exchange_id}: malformed answer: {exc}") from None


def parse_body(text: object, exchange_id: str, what: str, expected: str) -> Any:
    """A raw JSON answer with its numbers as Decimals; ``expected`` names what it must hold."""
    if not isinstance(text, str) or not text.strip():
        raise ProviderPayloadError(
            f"{exchange_id}: malformed answer: the {what} answer is empty: no {expected}"
        )
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        raise ProviderPayloadError(
            f"{exchange_id}: malformed answer: the {what} answer is not JSON: no {expected}"
        ) from None


def kraken_balances(body: object) -> dict[str, Decimal]:
    """Asset id -> total from a BalanceEx answer (``balance`` is the total: ``hold_trade``,
    the part held by open orders, is in it)."""
    result = body.get("result") if isinstance(body, Mapping) else None
    if not isinstance(result, Mapping):
        raise ProviderPayloadError("kraken: malformed answer: BalanceEx has no 'result' object")
    out: dict[str, Decimal] = {}
    for asset, entry in result.items():
        if not isinstance(entry, Mapping) or "balance" not in entry:
            raise ProviderPayloadError(f"kraken: malformed answer: BalanceEx {asset}: no 'balance'")
        out[str(asset)] = _amount(entry["balance"], "kraken", f"BalanceEx {asset}.balance")
        if "hold_trade" in entry:
            _amount(entry["hold_trade"], "kraken", f"BalanceEx {asset}.hold_trade")
    return out


def binance_balances(body: object) -> dict[str, Decimal]:
    """Asset -> free + locked from a ``/api/v3/account`` answer."""
    balances = body.get("balances") if isinstance(body, Mapping) else None
    if not isinstance(balances, list):
        raise ProviderPayloadError(
            "binance: malformed answer: the account answer has no 'balances' list"
        )
    out: dict[str, Decimal] = {}
    for i, entry in enumerate(balances):
        asset = entry.get("asset") if isinstance(entry, Mapping) else None
        if not isinstance(asset, str) or not asset:
            raise ProviderPayloadError(f"binance: malformed answer: balances[{i}] has no 'asset'")
        total = Decimal(0)
        for key in ("free", "locked"):
            if key not in entry:
                raise ProviderPayloadError(
                    f"binance: malformed answer: the balance of {asset} has no {key!r}"
                )
            total += _amount(entry[key], "binance", f"the balance of {asset}: {key}")
        out[asset] = out.get(asset, Decimal(0)) + total
    return out


#: exchange id -> (what the balance answer is called, what it holds, its parser)
RAW_BALANCES: dict[str, tuple[str, str, Callable[[object], dict[str, Decimal]]]] = {
    "kraken": ("BalanceEx", "'result' object", kraken_balances),
    "binance": ("account", "'balances' list", binance_balances),
}


def unified_balances(exchange_id: str, balance: object) -> dict[str, Decimal]:
    """Code -> total from ccxt's unified balance structure."""
    total = balance.get("total") if isinstance(balance, Mapping) else None
    if not isinstance(total, Mapping):
        raise ProviderPayloadError(f"{exchange_id}: malformed answer: the balance has no totals")
    out: dict[str, Decimal] = {}
    for code, amount in total.items():
        if not isinstance(code, str) or not code:
            raise ProviderPayloadError(f"{exchange_id}: a balance without a currency code")
        if amount is None:
            raise ProviderPayloadError(f"{exchange_id}: the balance of {code} has no total")
        out[code] = _amount(amount, exchange_id, f"the total balance of {code}")
    return out


# --------------------------------------------------------------------------- client


def rebase_urls(api: Any, api_url: str) -> Any:
    """ccxt's ``urls['api']`` with every URL's scheme and host replaced by ``api_url``."""
    if isinstance(api, str):
        path = urlsplit(api).path if "://" in api else ""
        return api_url + path.rstrip("/") if path not in ("", "/") else api_url
    if isinstance(api, Mapping):
        return {k: rebase_urls(v, api_url) for k, v in api.items()}
    return api


def check_credentials(exchange_id: str, credentials: ExchangeCredentials) -> None:
    """What ccxt would only find out on the first signed call: a Kraken private key
    is base64."""
    if exchange_id == "kraken":
        try:
            base64.b64decode(credentials.api_secret, validate=True)
        except (binascii.Error, ValueError):
            raise CredentialsError(
                "kraken credentials: api_secret: expected the base64 private key Kraken "
                "shows when the API key is created"
            ) from None


class ExchangeClient:
    """One ccxt client for one fetch; close it (or use it as a context manager)."""

    def __init__(
        self,
        exchange_id: str,
        options: ExchangeOptions,
        credentials: ExchangeCredentials,
        masker: Masker,
    ) -> None:
        check_credentials(exchange_id, credentials)
        self.exchange_id = exchange_id
        self.masker = masker
        config: dict[str, Any] = {
            "apiKey": credentials.api_key,
            "secret": credentials.api_secret,
            "timeout": max(1, int(options.timeout_s * 1000)),
            "enableRateLimit": options.enable_rate_limit,
            "enableLastHttpResponse": True,
            "enableLastResponseHeaders": True,
        }
        if credentials.password is not None:
            config["password"] = credentials.password
        preset = EXCHANGE_CONFIG.get(exchange_id, {})
        if "options" in preset:
            config["options"] = dict(preset["options"])
        self.exchange: Any = getattr(ccxt, exchange_id)(config)
        self.exchange.logger = _MUTE_LOGGER
        if options.api_url is not None:
            self.exchange.urls["api"] = rebase_urls(self.exchange.urls["api"], options.api_url)
        required = getattr(self.exchange, "requiredCredentials", {}) or {}
        if required.get("password") and credentials.password is None:
            self.close()
            raise CredentialsError(
                f"{exchange_id} credentials: password: required (this exchange's API keys "
                "have a passphrase)"
            )

    @property
    def name(self) -> str:
        return str(getattr(self.exchange, "name", None) or self.exchange_id)

    def close(self) -> None:
        session = getattr(self.exchange, "session", None)
        if session is not None:
            session.close()

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, its ccxt exceptions translated (:func:`translate_error`)."""
        try:
            return fn()
        except Exception as exc:
            err = translate_error(
                exc,
                self.exchange_id,
                self.masker,
                getattr(self.exchange, "last_response_headers", None),
            )
            if err is None:
                raise
            raise err from None

    def load_markets(self) -> list[Market]:
        """The exchange's active spot markets."""
        markets = self.call(self.exchange.load_markets)
        if not isinstance(markets, Mapping):
            raise ProviderPayloadError(f"{self.exchange_id}: the market list is unusable")
        out = []
        for symbol, m in markets.items():
            if not isinstance(m, Mapping) or not m.get("spot") or m.get("active") is False:
                continue
            base, quote = m.get("base"), m.get("quote")
            if isinstance(base, str) and isinstance(quote, str) and base and quote:
                out.append(Market(str(symbol), base, quote))
        return out

    def code(self, asset_id: str) -> str:
        """ccxt's unified code of an exchange asset id (Kraken XXBT -> BTC, XBT.M -> BTC.M)."""
        code = self.exchange.safe_currency_code(asset_id)
        return code if isinstance(code, str) and code else asset_id

    def fetch_balances(self) -> list[tuple[str, str, Decimal]]:
        """``(asset id, code, total)`` of every balance the exchange reports."""
        raw = RAW_BALANCES.get(self.exchange_id)
        try:
            balance = self.exchange.fetch_balance()
        except MALFORMED as exc:
            if raw is not None:  # a name for what is wrong, when the raw answer tells
                what, expected, parser = raw
                text = self.exchange.last_http_response
                parser(parse_body(text, self.exchange_id, what, expected))
            raise self._translated(exc) from None
        except Exception as exc:
            raise self._translated(exc) from None
        if raw is None:
            totals = unified_balances(self.exchange_id, balance)
            return [(code, code, amount) for code, amount in totals.items()]
        what, expected, parser = raw
        body = parse_body(self.exchange.last_http_response, self.exchange_id, what, expected)
        return [(asset, self.code(asset), amount) for asset, amount in parser(body).items()]

    def _translated(self, exc: Exception) -> BaseException:
        headers = getattr(self.exchange, "last_response_headers", None)
        return translate_error(exc, self.exchange_id, self.masker, headers) or exc

    def fetch_prices(self, symbols: list[str]) -> dict[str, Decimal | None]:
        """Symbol -> the price of its ticker (None when the answer has none for it)."""
        tickers: Any
        if self.exchange.has.get("fetchTickers"):
            tickers = self.call(partial(self.exchange.fetch_tickers, symbols))
        else:
            tickers = {}
            for symbol in symbols:
                try:
                    tickers[symbol] = self.call(partial(self.exchange.fetch_ticker, symbol))
                except ProviderPayloadError:
                    tickers[symbol] = None  # one market without a ticker: that market only
        if not isinstance(tickers, Mapping):
            raise ProviderPayloadError(f"{self.exchange_id}: the ticker answer is not a mapping")
        out: dict[str, Decimal | None] = {}
        for symbol in symbols:
            ticker = tickers.get(symbol)
            out[symbol] = (
                ticker_price(self.exchange_id, ticker) if isinstance(ticker, Mapping) else None
            )
        return out

    # ----------------------------------------------------------------- history

    def _raw(self, what: str, expected: str) -> Any:
        return parse_body(self.exchange.last_http_response, self.exchange_id, what, expected)

    def kraken_ledger_page(self, start_s: int, ofs: int) -> tuple[dict[str, Any], int | None]:
        """One page of Kraken's ledger (``fetch_ledger``: ``POST /0/private/Ledgers``) of the
        entries after ``start_s`` (Unix seconds, exclusive), from offset ``ofs`` (newest
        first), read exactly from the raw answer; and Kraken's ``count`` of them."""
        self.call(partial(self.exchange.fetch_ledger, None, start_s * 1000, None, {"ofs": ofs}))
        body = self._raw("Ledgers", "'result' object")
        result = body.get("result") if isinstance(body, Mapping) else None
        ledger = result.get("ledger") if isinstance(result, Mapping) else None
        if not isinstance(ledger, Mapping):
            raise ProviderPayloadError(
                "kraken: malformed history: the Ledgers answer has no 'result.ledger' object"
            )
        count = result.get("count") if isinstance(result, Mapping) else None
        return dict(ledger), count if isinstance(count, int) and count >= 0 else None

    def binance_history(self, stream: str, start_ms: int, end_ms: int, offset: int) -> list[Any]:
        """One page of Binance's deposit (``fetch_deposits``) or withdrawal
        (``fetch_withdrawals``) history between two times (ms, inclusive), raw."""
        ex = self.exchange
        fn = ex.fetch_deposits if stream == "deposits" else ex.fetch_withdrawals
        params = {"startTime": start_ms, "endTime": end_ms, "offset": offset}
        self.call(partial(fn, None, None, BINANCE_PAGE, params))
        body = self._raw(f"{stream} history", "list")
        if not isinstance(body, list):
            raise ProviderPayloadError(
                f"binance: malformed history: the {stream} answer is not a list"
            )
        return body

    def binance_my_trades(
        self, symbol: str, *, start_ms: int | None = None, from_id: int | None = None
    ) -> list[Any]:
        """One page of the account's trades of ``symbol`` (``fetch_my_trades``:
        ``/api/v3/myTrades``) from trade id ``from_id``, else from ``start_ms``, raw."""
        params: dict[str, Any] = {"fromId": from_id} if from_id is not None else {}
        if from_id is None and start_ms is not None:
            params["startTime"] = start_ms
        self.call(partial(self.exchange.fetch_my_trades, symbol, None, BINANCE_PAGE, params))
        body = self._raw(f"myTrades {symbol}", "list")
        if not isinstance(body, list):
            raise ProviderPayloadError(
                f"binance: malformed history: the trades answer of {symbol} is not a list"
            )
        return body

    def has_ledger(self) -> bool:
        return bool(self.exchange.has.get("fetchLedger"))

    def unified_ledger(self, since_ms: int) -> list[Any]:
        """ccxt's unified ledger entries since ``since_ms`` (one request)."""
        entries = self.call(partial(self.exchange.fetch_ledger, None, since_ms))
        if not isinstance(entries, list):
            raise ProviderPayloadError(f"{self.exchange_id}: malformed history: not a list")
        return entries
