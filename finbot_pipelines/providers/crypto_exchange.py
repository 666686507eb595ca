"""Crypto exchanges through ccxt: ``kraken``, ``binance`` and any ccxt exchange (``ccxt``).

One linked account is one exchange login (an API key). A fetch loads the
exchange's markets, reads the account's **total** balances (free + used; for
Kraken's ``BalanceEx`` the ``balance`` field is already the total, ``hold_trade``
is part of it) and values every currency in a quote currency from the
exchange's own tickers. The result is one sub-account (id = the ccxt exchange
id, currency = the quote currency, type ``investment``) with one item per
currency: fiat balances as cash, stablecoins as ``stable_coin``, the rest as
``crypto_currency``; ``units`` is the amount held, ``symbol`` the currency code,
``value`` the amount in the quote currency.

Credentials (a JSON object in the vault)
----------------------------------------
``api_key``, ``api_secret``; ``password`` (also accepted as ``passphrase``) for
exchanges whose API keys have one (OKX, KuCoin, ...). A read-only key is enough.

Options (all optional except ``exchange`` for the ``ccxt`` provider)
-------------------------------------------------------------------
``exchange``
    ``ccxt`` provider only: a ccxt exchange id (``ccxt.exchanges``), e.g. ``kraken``.
    Closed exchanges (``bittrex``, ``ftx``) are accepted so history keeps its name,
    but every fetch fails with ``retired_provider``.
``quote_ccy``
    ISO 4217 fiat code the balances are valued in, default ``USD``. It is the
    sub-account currency: finbot's FX converts it to the profile currency.
``bridges``
    list of currency codes valuations may go through when a currency has no
    market against ``quote_ccy`` (either way round), default
    ``[USDT, BTC, EUR, USD]``. Paths may chain bridges (LTC -> BTC -> USDT -> EUR);
    the shortest path wins, ties go to the earlier bridge. A stablecoin is never
    assumed to be worth 1: it is valued like any currency.
``dust_threshold``
    number >= 0 in ``quote_ccy``, default 1.0: balances worth less are skipped.
``skip_unpriced``
    bool, default false. A currency that cannot be valued (no path to
    ``quote_ccy``) fails the fetch with ``provider_error`` naming it: it never
    becomes 0, whatever its amount (an amount of a token without a market says
    nothing about its worth). With ``true`` such currencies are skipped and
    logged by code.
``ignore_currencies``
    list of currency codes never reported (e.g. a delisted airdrop). Kraken's
    fee credits (``KFEE``) are always ignored.
``api_url``
    the service address, e.g. ``http://127.0.0.1:8080``: replaces the scheme and
    host of every ccxt API URL of the exchange (``urls.api`` public, private, ...)
    keeping their paths (Binance's ``https://api.binance.com/api/v3`` becomes
    ``<api_url>/api/v3``). For proxies and the test fakes.
``timeout_s``
    seconds per HTTP request, default 30 (the ingest's own per-attempt timeout
    still applies on top).
``enable_rate_limit``
    bool, default true: ccxt's client-side throttling. Tests turn it off.

Errors
------
Refused keys -> ``authentication_failure``; rate limits -> ``rate_limited`` (with
the server's ``Retry-After`` when it sent one); network errors, 5xx, maintenance
-> ``transient`` / ``timeout``; malformed or incomplete answers -> ``provider_error``.
The provider never retries itself (:mod:`finbot_pipelines.providers.fetching` does).
Error messages never carry credential values nor request URLs' query strings.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, ClassVar, TypeGuard, TypeVar
from urllib.parse import urlsplit

import ccxt

from finbot_pipelines.config.schema import ISO_4217_CODES
from finbot_pipelines.providers.base import (
    LINKED_ACCOUNT_ID_OPTION,
    RESERVED_OPTION_PREFIX,
    AuthenticationFailure,
    CredentialField,
    CredentialsError,
    FetchTimeout,
    Item,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    RetiredProvider,
    Snapshot,
    SubAccount,
    TransientError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_QUOTE_CCY = "USD"
DEFAULT_BRIDGES: tuple[str, ...] = ("USDT", "BTC", "EUR", "USD")
DEFAULT_DUST_THRESHOLD = 1.0
DEFAULT_TIMEOUT_S = 30.0

#: ISO codes that are not money one holds as cash on an exchange.
_NON_CASH_ISO = frozenset(
    {"XAU", "XAG", "XPD", "XPT", "XDR", "BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN"}
    | {"UYI", "UYW"}
)
#: Fiat currencies: reported as cash (and allowed as ``quote_ccy``).
FIAT_CODES: frozenset[str] = frozenset(ISO_4217_CODES - _NON_CASH_ISO)

#: Currencies reported with asset_type ``stable_coin``.
STABLE_COINS: frozenset[str] = frozenset(
    {
        "USDT", "USDC", "DAI", "BUSD", "TUSD", "USDP", "PAX", "GUSD", "FDUSD", "PYUSD",
        "USDD", "USDE", "FRAX", "LUSD", "USDS", "RLUSD", "USD1", "EURC", "EURT", "EURS",
        "EURI", "AEUR", "XSGD",
    }
)  # fmt: skip

#: Exchanges that closed: accepted in finbot.yaml, every fetch fails with RetiredProvider.
RETIRED_EXCHANGES: dict[str, str] = {
    "bittrex": "bittrex closed in 2023; remove or freeze this linked account",
    "ftx": "FTX closed in 2022; remove or freeze this linked account",
    "ftxus": "FTX US closed in 2022; remove or freeze this linked account",
}

#: ccxt settings finbot always uses for an exchange (a balances reader needs spot only).
_EXCHANGE_CONFIG: dict[str, dict[str, Any]] = {
    "binance": {
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,  # a signed sapi call; markets give every code we need
        }
    },
}
#: Currencies never reported, per exchange.
_ALWAYS_IGNORED: dict[str, frozenset[str]] = {"kraken": frozenset({"KFEE"})}

OPTION_KEYS = (
    "exchange",
    "quote_ccy",
    "bridges",
    "dust_threshold",
    "skip_unpriced",
    "ignore_currencies",
    "api_url",
    "timeout_s",
    "enable_rate_limit",
)

_CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,19}$")
_URL_RE = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?$")
_MAX_DETAIL_CHARS = 300

# ccxt logs request headers (the API key) and bodies at DEBUG: give its clients a mute logger.
_MUTE_LOGGER = logging.getLogger("finbot_pipelines.providers.crypto_exchange.ccxt")
_MUTE_LOGGER.propagate = False
_MUTE_LOGGER.addHandler(logging.NullHandler())
_MUTE_LOGGER.setLevel(logging.CRITICAL + 1)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ExchangeOptions:
    exchange: str
    quote_ccy: str = DEFAULT_QUOTE_CCY
    bridges: tuple[str, ...] = DEFAULT_BRIDGES
    dust_threshold: float = DEFAULT_DUST_THRESHOLD
    skip_unpriced: bool = False
    ignore_currencies: frozenset[str] = field(default_factory=frozenset)
    api_url: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    enable_rate_limit: bool = True


def _is_number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _code_list(v: object, p: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ValueError(f"{p}: expected a list of currency codes such as [USDT, BTC]")
    out: list[str] = []
    for i, x in enumerate(v):
        if not isinstance(x, str) or not _CODE_RE.match(x):
            raise ValueError(
                f"{p}[{i}]: expected an upper-case currency code such as USDT, got {x!r}"
            )
        if x in out:
            raise ValueError(f"{p}[{i}]: {x!r} is listed twice")
        out.append(x)
    return tuple(out)


def parse_options(options: Mapping[str, Any], fixed_exchange: str | None) -> ExchangeOptions:
    """Check ``options`` and return them parsed; ``ValueError("options.<key>: ...")`` if bad."""
    if not isinstance(options, Mapping):
        raise ValueError("options: expected a mapping")
    allowed = OPTION_KEYS if fixed_exchange is None else OPTION_KEYS[1:]
    values: dict[str, Any] = {}
    for key, v in options.items():
        p = f"options.{key}"
        if isinstance(key, str) and key.startswith(RESERVED_OPTION_PREFIX):
            if key == LINKED_ACCOUNT_ID_OPTION and (not isinstance(v, str) or not v):
                raise ValueError(f"{p}: expected a non-empty string (the linked account id)")
            continue
        if key not in allowed:
            raise ValueError(f"{p}: unknown option (expected one of {', '.join(allowed)})")
        if key == "exchange":
            if not isinstance(v, str) or not v:
                raise ValueError(f"{p}: expected a ccxt exchange id such as kraken")
            if v not in RETIRED_EXCHANGES and v not in ccxt.exchanges:
                import difflib

                close = difflib.get_close_matches(v, ccxt.exchanges, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{p}: {v!r} is not a ccxt exchange id{hint}")
            values["exchange"] = v
        elif key == "quote_ccy":
            if not isinstance(v, str) or v not in FIAT_CODES:
                raise ValueError(
                    f"{p}: expected an ISO 4217 fiat currency code such as USD, EUR, GBP, got {v!r}"
                )
            values["quote_ccy"] = v
        elif key == "bridges":
            values["bridges"] = _code_list(v, p)
        elif key == "ignore_currencies":
            values["ignore_currencies"] = frozenset(_code_list(v, p))
        elif key == "dust_threshold":
            if not _is_number(v) or v < 0:
                raise ValueError(f"{p}: expected a number >= 0 (in quote_ccy), got {v!r}")
            values["dust_threshold"] = float(v)
        elif key == "timeout_s":
            if not _is_number(v) or v <= 0:
                raise ValueError(f"{p}: expected a number of seconds > 0, got {v!r}")
            values["timeout_s"] = float(v)
        elif key in ("skip_unpriced", "enable_rate_limit"):
            if not isinstance(v, bool):
                raise ValueError(f"{p}: expected true or false, got {v!r}")
            values[key] = v
        elif key == "api_url":
            if not isinstance(v, str) or not _URL_RE.match(v):
                raise ValueError(
                    f"{p}: expected an http(s) address such as https://api.example.com, got {v!r}"
                )
            values["api_url"] = v.rstrip("/")
    if fixed_exchange is not None:
        values["exchange"] = fixed_exchange
    elif "exchange" not in values:
        raise ValueError("options.exchange: required: a ccxt exchange id such as kraken")
    return ExchangeOptions(**values)


# --------------------------------------------------------------------------- valuation


def ticker_price(ticker: Mapping[str, Any]) -> float | None:
    """The last traded price of a ccxt ticker (else close, else bid/ask mid), if usable."""
    for key in ("last", "close"):
        px = ticker.get(key)
        if _is_number(px) and px > 0:
            return float(px)
    bid, ask = ticker.get("bid"), ticker.get("ask")
    if _is_number(bid) and _is_number(ask) and bid > 0 and ask > 0:
        return (float(bid) + float(ask)) / 2
    return None


def _rate(rates: Mapping[tuple[str, str], float], frm: str, to: str) -> float | None:
    """Units of ``to`` per 1 ``frm`` from one market, direct (frm/to) or inverted (to/frm)."""
    direct = rates.get((frm, to))
    if direct is not None:
        return direct
    inverse = rates.get((to, frm))
    if inverse is not None:
        return 1.0 / inverse
    return None


def bridge_prices(
    rates: Mapping[tuple[str, str], float], quote: str, bridges: Iterable[str]
) -> dict[str, float]:
    """Price in ``quote`` of ``quote`` and of every bridge reachable through bridges.

    Insertion order is the preference order: ``quote`` first, then bridges by
    path length, ties by their order in ``bridges``."""
    priced: dict[str, float] = {quote: 1.0}
    pending = [b for b in bridges if b != quote]
    while pending:
        level: dict[str, float] = {}
        for b in pending:
            for via, via_px in priced.items():
                r = _rate(rates, b, via)
                if r is not None:
                    level[b] = r * via_px
                    break
        if not level:
            break
        priced.update(level)
        pending = [b for b in pending if b not in level]
    return priced


def price_in_quote(
    code: str, rates: Mapping[tuple[str, str], float], priced_bridges: Mapping[str, float]
) -> float | None:
    """Price of one ``code`` in the quote currency (first key of ``priced_bridges``)."""
    if code in priced_bridges:
        return priced_bridges[code]
    for via, via_px in priced_bridges.items():
        r = _rate(rates, code, via)
        if r is not None:
            return r * via_px
    return None


def base_code(code: str) -> str:
    """``ETH.F`` (Kraken earn), ``USD.HOLD``, ``DOT.S`` -> the currency they are worth."""
    return code.split(".", 1)[0] if "." in code else code


@dataclass(frozen=True)
class Valuation:
    items: tuple[Item, ...]
    dust: tuple[str, ...]
    unpriced: tuple[str, ...]


def value_balances(
    totals: Mapping[str, float],
    rates: Mapping[tuple[str, str], float],
    opts: ExchangeOptions,
) -> Valuation:
    """Items for the non-zero ``totals`` (code -> amount) valued in ``opts.quote_ccy``."""
    priced_bridges = bridge_prices(rates, opts.quote_ccy, opts.bridges)
    items: list[Item] = []
    dust: list[str] = []
    unpriced: list[str] = []
    for code in sorted(totals):
        amount = totals[code]
        if amount == 0:
            continue
        base = base_code(code)
        px = price_in_quote(base, rates, priced_bridges)
        if px is None:
            unpriced.append(code)
            continue
        value = amount * px
        if abs(value) < opts.dust_threshold:
            dust.append(code)
            continue
        if base in FIAT_CODES:
            asset_class, asset_type, currency = "cash", "cash", base
        else:
            asset_class, currency = "crypto", None
            asset_type = "stable_coin" if base in STABLE_COINS else "crypto_currency"
        items.append(
            Item(
                name=code,
                item_type="asset" if value >= 0 else "liability",
                asset_class=asset_class,
                asset_type=asset_type,
                value=value,
                units=amount,
                currency=currency,
                symbol=base,
            )
        )
    return Valuation(tuple(items), tuple(dust), tuple(unpriced))


# --------------------------------------------------------------------------- errors


def _sanitise(text: str, secrets: Iterable[str]) -> str:
    """Strip URL query strings (signatures, timestamps) and credential values; shorten."""
    text = re.sub(r"\?[^\s\"'<>]*", "?...", text)
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[: _MAX_DETAIL_CHARS - 3] + "..."
    return text


def _retry_after(headers: object) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
    if not isinstance(headers, Mapping):
        return None
    value = None
    for k, v in headers.items():
        if isinstance(k, str) and k.lower() == "retry-after":
            value = v
            break
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        secs = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        secs = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, secs) if math.isfinite(secs) else None


_AUTH_HINTS = ("invalid key", "invalid signature", "invalid api", "api-key", "apikey")

_MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError)


def translate_error(
    exc: BaseException, exchange_id: str, secrets: Iterable[str], headers: object = None
) -> ProviderError | None:
    """The finbot error for a ccxt (or parsing) exception; None if it is not one we know."""
    if isinstance(exc, ProviderError):
        return exc
    detail = _sanitise(str(exc), secrets)
    if isinstance(exc, ccxt.AuthenticationError):  # PermissionDenied, AccountSuspended too
        return AuthenticationFailure(f"{exchange_id}: credentials refused ({detail})")
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return RateLimited(f"{exchange_id}: rate limited ({detail})", _retry_after(headers))
    if isinstance(exc, ccxt.RequestTimeout):
        return FetchTimeout(f"{exchange_id}: request timed out ({detail})")
    if isinstance(exc, ccxt.OnMaintenance):
        return TransientError(f"{exchange_id}: exchange under maintenance ({detail})")
    if isinstance(exc, ccxt.NetworkError):  # ExchangeNotAvailable (5xx), InvalidNonce, ...
        return TransientError(f"{exchange_id}: exchange unreachable or unavailable ({detail})")
    if isinstance(exc, ccxt.BadResponse):
        return ProviderPayloadError(f"{exchange_id}: unusable answer ({detail})")
    if isinstance(exc, ccxt.OperationFailed):  # e.g. Binance -1001 "internal error"
        return TransientError(f"{exchange_id}: the exchange failed to answer ({detail})")
    if isinstance(exc, ccxt.ExchangeError):
        if any(h in str(exc).lower() for h in _AUTH_HINTS):
            return AuthenticationFailure(f"{exchange_id}: credentials refused ({detail})")
        return ProviderPayloadError(f"{exchange_id}: exchange error ({detail})")
    if isinstance(exc, ccxt.BaseError):
        return ProviderPayloadError(f"{exchange_id}: {type(exc).__name__} ({detail})")
    if isinstance(exc, _MALFORMED):
        return ProviderPayloadError(
            f"{exchange_id}: malformed answer ({type(exc).__name__}: {detail})"
        )
    return None


# --------------------------------------------------------------------------- ccxt client


def rebase_urls(api: Any, api_url: str) -> Any:
    """ccxt's ``urls['api']`` with every URL's scheme and host replaced by ``api_url``."""
    if isinstance(api, str):
        path = urlsplit(api).path if "://" in api else ""
        return api_url + path.rstrip("/") if path not in ("", "/") else api_url
    if isinstance(api, Mapping):
        return {k: rebase_urls(v, api_url) for k, v in api.items()}
    return api


def _credential(credentials: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        v = credentials.get(name)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def make_exchange(opts: ExchangeOptions, credentials: Mapping[str, str]) -> Any:
    """A fresh ccxt client for one fetch (no state shared between fetches or threads)."""
    api_key = _credential(credentials, "api_key")
    secret = _credential(credentials, "api_secret")
    password = _credential(credentials, "password", "passphrase")
    missing = [n for n, v in (("api_key", api_key), ("api_secret", secret)) if v is None]
    if missing:
        raise CredentialsError(
            f"{opts.exchange}: the credentials must contain {' and '.join(missing)}"
        )
    if opts.exchange == "kraken":
        try:
            base64.b64decode(secret or "", validate=True)
        except (binascii.Error, ValueError):
            raise CredentialsError(
                "kraken: api_secret is not valid base64 (a Kraken private key is)"
            ) from None
    cls = getattr(ccxt, opts.exchange)
    config: dict[str, Any] = {
        "apiKey": api_key,
        "secret": secret,
        "timeout": int(opts.timeout_s * 1000),
        "enableRateLimit": opts.enable_rate_limit,
    }
    if password is not None:
        config["password"] = password
    preset = _EXCHANGE_CONFIG.get(opts.exchange, {})
    if "options" in preset:
        config["options"] = {**preset["options"]}
    exchange = cls(config)
    exchange.logger = _MUTE_LOGGER
    if opts.api_url is not None:
        exchange.urls["api"] = rebase_urls(exchange.urls["api"], opts.api_url)
    required = getattr(exchange, "requiredCredentials", {}) or {}
    if required.get("password") and password is None:
        raise CredentialsError(
            f"{opts.exchange}: the credentials must contain password (this exchange's API "
            "keys have a passphrase)"
        )
    return exchange


def _call(exchange: Any, fn: Callable[[], T], secrets: Iterable[str]) -> T:
    try:
        return fn()
    except Exception as exc:
        err = translate_error(
            exc, exchange.id, secrets, getattr(exchange, "last_response_headers", None)
        )
        if err is None:
            raise
        raise err from None


def _number(v: object, what: str) -> float:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ProviderPayloadError(f"{what}: expected a number, got {v!r}") from None
    if not math.isfinite(x):
        raise ProviderPayloadError(f"{what}: expected a finite number, got {v!r}")
    return x


def _check_raw_balance(exchange_id: str, info: object) -> None:
    """Check the raw balance answer's shape (ccxt silently reads a broken one as empty)."""
    if exchange_id == "kraken":
        result = info.get("result") if isinstance(info, Mapping) else None
        if not isinstance(result, Mapping):
            raise ProviderPayloadError("kraken: BalanceEx answer has no 'result' object")
        for asset, entry in result.items():
            if not isinstance(entry, Mapping) or "balance" not in entry:
                raise ProviderPayloadError(f"kraken: BalanceEx entry {asset!r} has no 'balance'")
            _number(entry["balance"], f"kraken: BalanceEx {asset}.balance")
            if "hold_trade" in entry:
                _number(entry["hold_trade"], f"kraken: BalanceEx {asset}.hold_trade")
    elif exchange_id == "binance":
        balances = info.get("balances") if isinstance(info, Mapping) else None
        if not isinstance(balances, list):
            raise ProviderPayloadError("binance: account answer has no 'balances' list")
        for i, entry in enumerate(balances):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("asset"), str):
                raise ProviderPayloadError(f"binance: balances[{i}] has no 'asset'")
            for key in ("free", "locked"):
                if key not in entry:
                    raise ProviderPayloadError(f"binance: balances[{i}] has no {key!r}")
                _number(entry[key], f"binance: balances[{i}].{key}")
    elif not isinstance(info, Mapping | list):
        raise ProviderPayloadError(f"{exchange_id}: balance answer is not a JSON document")


def extract_totals(exchange_id: str, balance: Mapping[str, Any]) -> dict[str, float]:
    """Code -> total amount (free + used) from a ccxt balance structure, checked."""
    _check_raw_balance(exchange_id, balance.get("info"))
    total = balance.get("total")
    if not isinstance(total, Mapping):
        raise ProviderPayloadError(f"{exchange_id}: balance answer has no totals")
    out: dict[str, float] = {}
    for code, amount in total.items():
        if not isinstance(code, str) or not code:
            raise ProviderPayloadError(f"{exchange_id}: balance with an empty currency code")
        if amount is None:
            raise ProviderPayloadError(f"{exchange_id}: balance of {code} has no total")
        out[code] = _number(amount, f"{exchange_id}: total balance of {code}")
    return out


def _wanted_markets(
    markets: Mapping[str, Any], held: set[str], quote: str, bridges: Iterable[str]
) -> list[str]:
    """Symbols of the spot markets a valuation of ``held`` may need."""
    hubs = {quote, *bridges}
    useful = held | hubs
    out = []
    for symbol, m in markets.items():
        if not isinstance(m, Mapping) or not m.get("spot") or m.get("active") is False:
            continue
        base, q = m.get("base"), m.get("quote")
        if base == q or base not in useful or q not in useful:
            continue
        if base in held or q in held or (base in hubs and q in hubs):
            out.append(symbol)
    return sorted(out)


def fetch_rates(
    exchange: Any, held: set[str], opts: ExchangeOptions, secrets: list[str]
) -> dict[tuple[str, str], float]:
    """(base, quote) -> last price, from the exchange's tickers for the markets needed."""
    need = held - {opts.quote_ccy}
    if not need:
        return {}
    markets = exchange.markets
    if not isinstance(markets, Mapping):
        raise ProviderPayloadError(f"{exchange.id}: the exchange's market list is unusable")
    symbols = _wanted_markets(markets, need, opts.quote_ccy, opts.bridges)
    if not symbols:
        return {}
    tickers: dict[str, Any]
    if exchange.has.get("fetchTickers"):
        tickers = _call(exchange, lambda: exchange.fetch_tickers(symbols), secrets)
    else:
        tickers = {}
        for symbol in symbols:
            tickers[symbol] = _call(exchange, partial(exchange.fetch_ticker, symbol), secrets)
    if not isinstance(tickers, Mapping):
        raise ProviderPayloadError(f"{exchange.id}: ticker answer is not a mapping")
    rates: dict[tuple[str, str], float] = {}
    for symbol, ticker in tickers.items():
        m = markets.get(symbol)
        if not isinstance(m, Mapping) or not isinstance(ticker, Mapping):
            continue
        base, quote = m.get("base"), m.get("quote")
        px = ticker_price(ticker)
        if px is not None and isinstance(base, str) and isinstance(quote, str):
            rates[(base, quote)] = px
    return rates


# --------------------------------------------------------------------------- providers


_CREDENTIAL_FIELDS: tuple[CredentialField, ...] = (
    CredentialField("api_key", "API key (a read-only key is enough)"),
    CredentialField("api_secret", "API secret (private key)"),
    CredentialField(
        "password",
        "API key passphrase, for exchanges whose keys have one (OKX, KuCoin, ...)",
        required=False,
    ),
)


class CcxtExchangeProvider:
    """Balances of one exchange account through ccxt (see the module docstring)."""

    id: str = "ccxt"
    description: str = (
        "Any crypto exchange supported by ccxt (option exchange: <ccxt id>): total balances "
        "valued in quote_ccy from the exchange's own tickers"
    )
    credential_fields: tuple[CredentialField, ...] = _CREDENTIAL_FIELDS
    supports_historical: bool = False
    #: the exchange of a named provider; None: taken from the ``exchange`` option
    exchange_id: ClassVar[str | None] = None

    def validate_options(self, options: Mapping[str, Any]) -> None:
        parse_options(options, self.exchange_id)

    def fetch(
        self, credentials: Mapping[str, str], options: Mapping[str, Any], as_of: datetime
    ) -> Snapshot:
        try:
            opts = parse_options(options, self.exchange_id)
        except ValueError as exc:
            raise ProviderError(f"{self.id}: {exc}") from None
        if opts.exchange in RETIRED_EXCHANGES:
            raise RetiredProvider(RETIRED_EXCHANGES[opts.exchange])
        secrets = [v for v in credentials.values() if isinstance(v, str)]
        exchange = make_exchange(opts, credentials)
        try:
            balance = _call(exchange, exchange.fetch_balance, secrets)
            if not isinstance(balance, Mapping):
                raise ProviderPayloadError(f"{opts.exchange}: balance answer is not a mapping")
            ignored = opts.ignore_currencies | _ALWAYS_IGNORED.get(opts.exchange, frozenset())
            totals = {
                code: amount
                for code, amount in extract_totals(opts.exchange, balance).items()
                if amount != 0 and code not in ignored and base_code(code) not in ignored
            }
            held = {base_code(c) for c in totals}
            rates = fetch_rates(exchange, held, opts, secrets)
        finally:
            session = getattr(exchange, "session", None)
            if session is not None:
                session.close()
        valuation = value_balances(totals, rates, opts)
        label = options.get(LINKED_ACCOUNT_ID_OPTION, opts.exchange)
        if valuation.unpriced:
            if not opts.skip_unpriced:
                raise ProviderPayloadError(
                    f"{opts.exchange}: cannot value {', '.join(valuation.unpriced)} in "
                    f"{opts.quote_ccy}: no ticker against {opts.quote_ccy} nor through the "
                    f"bridges {', '.join(opts.bridges) or '(none)'} (set the option "
                    "skip_unpriced: true or ignore_currencies to leave them out)"
                )
            log.warning(
                "%s (%s): skipped balances that cannot be valued in %s: %s",
                label,
                opts.exchange,
                opts.quote_ccy,
                ", ".join(valuation.unpriced),
            )
        if valuation.dust:
            log.info(
                "%s (%s): skipped dust below %g %s: %s",
                label,
                opts.exchange,
                opts.dust_threshold,
                opts.quote_ccy,
                ", ".join(valuation.dust),
            )
        sub_account = SubAccount(
            id=opts.exchange,
            name=str(getattr(exchange, "name", None) or opts.exchange),
            currency=opts.quote_ccy,
            account_type="investment",
            items=valuation.items,
        )
        snapshot = Snapshot(sub_accounts=(sub_account,))
        snapshot.validate()
        return snapshot


class CcxtProvider(CcxtExchangeProvider):
    id = "ccxt"


class KrakenProvider(CcxtExchangeProvider):
    id = "kraken"
    description = "Kraken (through ccxt): total balances valued in quote_ccy from Kraken's tickers"
    exchange_id = "kraken"


class BinanceProvider(CcxtExchangeProvider):
    id = "binance"
    description = (
        "Binance spot wallet (through ccxt): total balances (free + locked) valued in "
        "quote_ccy from Binance's tickers"
    )
    exchange_id = "binance"
