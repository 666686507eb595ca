"""``dummy``: a deterministic synthetic household, for the demo and the tests.

Every number is a pure function of (linked account id, hour): per-account
magnitudes come from ``blake2b`` of the account id, movements from smooth
functions (sines, exponential drift, an amortising mortgage) of the hours since
the Unix epoch. Market prices depend on the symbol and the hour only, so two
dummy accounts holding the same ETF see the same price. No clock, no
unseeded randomness: the same inputs give the same snapshot in any process.

Options (all optional):

``sub_accounts``
    list of kinds to include, default all: ``cash`` (GBP, EUR and USD current
    accounts), ``stocks`` (a GBP stocks & shares ISA), ``pension``, ``crypto``
    (a USD exchange wallet), ``mortgage``, ``credit_card``.
``scale``
    float > 0, default 1.0: multiplies every value (and every unit count).
``fail_hours``
    list of ``"YYYY-MM-DDTHH:00"`` hours at which the fetch fails.
``fail_cycle``
    ``{every_hours, for_hours, offset_hours=0}``: fails at the hours ``h``
    (hours since the epoch) where ``(h - offset_hours) % every_hours < for_hours``.
``fail_kind``
    how failing hours fail: ``transient`` (default), ``authentication_failure``,
    ``provider_error``, ``rate_limited``, ``timeout`` (sleeps ``sleep_s``
    seconds, default 5, then answers normally, for the ingest's timeout to catch),
    or, like a broken API, answers what the ingest must refuse: ``empty`` (a
    snapshot without sub-accounts) or ``malformed`` (an asset valued NaN).
``flaky_attempts``
    int, default 0: the first N calls for a given (account, hour) in this process
    raise :class:`TransientError`, the next succeeds. The only state in this
    module; it never changes a value.
``latency_s``
    float, default 0: sleep this long before answering.

The reserved ``_linked_account_id`` option (injected by the ingest) is required
by :meth:`DummyProvider.fetch`.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from finbot_pipelines.providers.base import (
    LINKED_ACCOUNT_ID_OPTION,
    AuthenticationFailure,
    CredentialField,
    Item,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
    SubAccount,
    TransientError,
)

SUB_ACCOUNT_KINDS = ("cash", "stocks", "pension", "crypto", "property", "mortgage", "credit_card")
#: What an account without a `sub_accounts` option holds (the home is opt-in).
DEFAULT_SUB_ACCOUNT_KINDS = tuple(k for k in SUB_ACCOUNT_KINDS if k != "property")
FAIL_KINDS = (
    "transient",
    "authentication_failure",
    "provider_error",
    "timeout",
    "rate_limited",
    "empty",
    "malformed",
)
OPTION_KEYS = (
    "sub_accounts",
    "scale",
    "fail_hours",
    "fail_cycle",
    "fail_kind",
    "sleep_s",
    "flaky_attempts",
    "latency_s",
)
#: retry_after hint carried by simulated rate limits (seconds)
RATE_LIMIT_RETRY_AFTER_S = 0.25

_EPOCH = datetime(1970, 1, 1)
_T0_HOUR = int((datetime(2024, 1, 1) - _EPOCH).total_seconds()) // 3600  # price anchor
_HOURS_PER_YEAR = 8766.0
_HOURS_PER_MONTH = _HOURS_PER_YEAR / 12
_HOUR_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):00(?::00)?$")


# --------------------------------------------------------------------------- pure helpers


@lru_cache(maxsize=4096)
def _u(*parts: str) -> float:
    """A uniform number in [0, 1), a pure function of ``parts``."""
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _between(lo: float, hi: float, *parts: str) -> float:
    return lo + (hi - lo) * _u(*parts)


def _wave(key: str, h: int) -> float:
    """Smooth noise in [-1, 1]: daily, weekly-ish and quarterly-ish sines with
    periods and phases derived from ``key``."""
    total = 0.0
    for k, (period, weight) in enumerate(((24.0, 0.15), (24 * 7.3, 0.35), (24 * 91.0, 0.5))):
        p = period * (0.85 + 0.3 * _u(key, "period", str(k)))
        phi = 2 * math.pi * _u(key, "phase", str(k))
        total += weight * math.sin(2 * math.pi * h / p + phi)
    return total


def _monthly(key: str, h: int) -> float:
    """A monthly cycle in [-1, 1] (salary in, spending out)."""
    return math.sin(2 * math.pi * h / _HOURS_PER_MONTH + 2 * math.pi * _u(key, "month-phase"))


def hour_index(as_of: datetime) -> int:
    """Whole hours since 1970-01-01T00:00 UTC (naive datetimes are taken as UTC)."""
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    return math.floor((as_of - _EPOCH).total_seconds() / 3600)


def _hour_label(h: int) -> str:
    return (_EPOCH + timedelta(hours=h)).strftime("%Y-%m-%dT%H:00")


def _price(symbol: str, p0: float, drift: float, vol: float, h: int) -> float:
    """Market price of ``symbol`` at hour ``h`` (same for every account)."""
    t_years = (h - _T0_HOUR) / _HOURS_PER_YEAR
    return round(p0 * math.exp(drift * t_years + vol * _wave("price:" + symbol, h)), 4)


def _scaled(units: float, scale: float) -> float:
    """``units`` times ``scale``, rid of float noise (scale 1 keeps units exact)."""
    return units if scale == 1.0 else round(units * scale, 8)


def _holding(
    name: str,
    asset_class: str,
    asset_type: str,
    symbol: str | None,
    units: float,
    price: float,
    currency: str | None = None,
) -> Item:
    return Item(
        name=name,
        item_type="asset",
        asset_class=asset_class,
        asset_type=asset_type,
        value=round(units * price, 2),
        units=units,
        currency=currency,
        symbol=symbol,
    )


# --------------------------------------------------------------------------- content


def _cash(acc: str, h: int, scale: float) -> list[SubAccount]:
    out = []
    t_years = (h - _T0_HOUR) / _HOURS_PER_YEAR
    for ccy, sa_id, name, lo, hi in (
        ("GBP", "current-gbp", "Current account", 1500.0, 6000.0),
        ("EUR", "current-eur", "Euro current account", 500.0, 3000.0),
        ("USD", "current-usd", "Dollar account", 300.0, 2500.0),
    ):
        key = f"{acc}|cash|{ccy}"
        base = _between(lo, hi, key, "base")
        growth = max(0.2, 1 + 0.08 * t_years)
        value = base * growth * (1 + 0.3 * _monthly(key, h)) * (1 + 0.02 * _wave(key, h))
        item = Item(
            name="Cash",
            item_type="asset",
            asset_class="cash",
            asset_type="cash",
            value=round(value * scale, 2),
            currency=ccy,
        )
        out.append(SubAccount(sa_id, name, ccy, "depository", (item,)))
    return out


# (name, asset_class, asset_type, symbol, price at 2024-01-01, drift/yr, vol, weight, currency)
_ISA_HOLDINGS: tuple[tuple[str, str, str, str, float, float, float, float, str | None], ...] = (
    ("Vanguard FTSE All-World UCITS ETF", "equities", "etf", "VWRL", 95.0, 0.07, 0.10, 0.35, None),
    ("iShares Core FTSE 100 UCITS ETF", "equities", "etf", "ISF", 7.6, 0.04, 0.08, 0.15, None),
    ("Unilever plc", "equities", "stock", "ULVR", 38.0, 0.03, 0.12, 0.10, None),
    ("AstraZeneca plc", "equities", "stock", "AZN", 106.0, 0.06, 0.15, 0.10, None),
    (
        "iShares Core UK Gilts UCITS ETF",
        "fixed_income",
        "etf",
        "IGLT",
        10.5,
        0.01,
        0.04,
        0.10,
        None,
    ),
    (
        "Vanguard U.S. Equity Index Fund",
        "equities",
        "fund",
        "GB00B5B71Q71",
        560.0,
        0.09,
        0.12,
        0.20,
        "USD",
    ),
)


def _stocks(acc: str, h: int, scale: float) -> list[SubAccount]:
    key = f"{acc}|isa"
    target = _between(20_000.0, 60_000.0, key, "size")
    items: list[Item] = []
    for name, aclass, atype, symbol, p0, drift, vol, weight, ccy in _ISA_HOLDINGS:
        base_units = round(target * weight * _between(0.7, 1.3, key, symbol) / p0, 3)
        if atype != "fund":
            base_units = max(1.0, round(base_units))  # whole shares
        units = _scaled(base_units, scale)
        items.append(
            _holding(name, aclass, atype, symbol, units, _price(symbol, p0, drift, vol, h), ccy)
        )
    cash = _between(100.0, 900.0, key, "cash") * (1 + 0.2 * _monthly(key, h))
    items.append(Item("Cash", "asset", "cash", "cash", round(cash * scale, 2), currency="GBP"))
    return [SubAccount("isa", "Stocks & Shares ISA", "GBP", "investment", tuple(items))]


def _pension(acc: str, h: int, scale: float) -> list[SubAccount]:
    key = f"{acc}|pension"
    size = _between(60_000.0, 150_000.0, key, "size")
    t_years = (h - _T0_HOUR) / _HOURS_PER_YEAR
    contributions = max(0.3, 1 + 0.06 * t_years)  # monthly contributions, smoothed
    items = []
    for name, symbol, p0, drift, vol, weight in (
        ("Global Equity Index Fund", "GB00B59G4Q73", 250.0, 0.07, 0.09, 0.75),
        ("Global Bond Index Fund", "GB00B50W2R13", 110.0, 0.015, 0.03, 0.25),
    ):
        units = _scaled(round(size * weight / p0 * contributions, 4), scale)
        price = _price(symbol, p0, drift, vol, h)
        items.append(_holding(name, "pension", "fund", symbol, units, price, "GBP"))
    return [SubAccount("pension", "Workplace pension", "GBP", "investment", tuple(items))]


def _crypto(acc: str, h: int, scale: float) -> list[SubAccount]:
    key = f"{acc}|crypto"
    btc = _scaled(round(_between(0.05, 0.8, key, "BTC"), 8), scale)
    eth = _scaled(round(_between(0.5, 8.0, key, "ETH"), 8), scale)
    usdc = _scaled(round(_between(500.0, 3000.0, key, "USDC"), 2), scale)
    usdc_price = round(1.0 + 0.001 * _wave("price:USDC", h), 4)
    items = (
        _holding(
            "Bitcoin",
            "crypto",
            "crypto_currency",
            "BTC",
            btc,
            _price("BTC", 42_000.0, 0.35, 0.25, h),
        ),
        _holding(
            "Ether", "crypto", "crypto_currency", "ETH", eth, _price("ETH", 2_300.0, 0.25, 0.30, h)
        ),
        _holding("USD Coin", "crypto", "stable_coin", "USDC", usdc, usdc_price),
    )
    return [SubAccount("crypto", "Crypto exchange wallet", "USD", "investment", items)]


def _property(acc: str, h: int, scale: float) -> list[SubAccount]:
    """The family home: about 3 % a year, revalued with a small monthly swing."""
    key = f"{acc}|property"
    value0 = _between(280_000.0, 520_000.0, key, "value")
    t_years = (h - _T0_HOUR) / _HOURS_PER_YEAR
    value = value0 * 1.03**t_years * (1 + 0.01 * _monthly(key, h))
    item = Item("Home", "asset", "real_estate", "property", round(value * scale, 2))
    return [SubAccount("home", "Home", "GBP", "other", (item,))]


def _mortgage_balance(principal: float, start_h: float, h: int) -> float:
    """Outstanding balance of a 25-year repayment mortgage at 3.9 % a year."""
    n = 300
    r = 0.039 / 12
    m = min(max((h - start_h) / _HOURS_PER_MONTH, 0.0), float(n))
    return principal * ((1 + r) ** n - (1 + r) ** m) / ((1 + r) ** n - 1)


def _mortgage(acc: str, h: int, scale: float) -> list[SubAccount]:
    key = f"{acc}|mortgage"
    principal = _between(180_000.0, 320_000.0, key, "principal")
    start_h = _T0_HOUR - _between(2 * _HOURS_PER_YEAR, 6 * _HOURS_PER_YEAR, key, "start")
    balance = round(_mortgage_balance(principal, start_h, h) * scale, 2)
    item = Item("Mortgage", "liability", "real_estate", "mortgage", -balance if balance else 0.0)
    return [SubAccount("mortgage", "Mortgage", "GBP", "loan", (item,))]


def _credit_card(acc: str, h: int, scale: float) -> list[SubAccount]:
    key = f"{acc}|credit_card"
    base = _between(400.0, 2500.0, key, "base")
    owed = base * (0.55 + 0.4 * _monthly(key, h) + 0.05 * _wave(key, h))
    value = round(owed * scale, 2)
    item = Item(
        "Credit card balance", "liability", "other", "credit_card", -value if value else 0.0
    )
    return [SubAccount("credit-card", "Credit card", "GBP", "credit", (item,))]


_BUILDERS: dict[str, Callable[[str, int, float], list[SubAccount]]] = {
    "cash": _cash,
    "stocks": _stocks,
    "pension": _pension,
    "crypto": _crypto,
    "property": _property,
    "mortgage": _mortgage,
    "credit_card": _credit_card,
}


def dummy_snapshot(linked_account_id: str, options: Mapping[str, Any], as_of: datetime) -> Snapshot:
    """The snapshot of ``linked_account_id`` at the hour containing ``as_of``.

    Pure: no clock, no I/O, no state. Failure options are ignored here."""
    h = hour_index(as_of)
    kinds = options.get("sub_accounts") or DEFAULT_SUB_ACCOUNT_KINDS
    scale = float(options.get("scale", 1.0))
    subs: list[SubAccount] = []
    for kind in SUB_ACCOUNT_KINDS:  # stable order whatever the option's order
        if kind in kinds:
            subs.extend(_BUILDERS[kind](linked_account_id, h, scale))
    return Snapshot(tuple(subs))


# --------------------------------------------------------------------------- failures


def _parse_hour(value: object) -> int | None:
    """Hour index of a ``"YYYY-MM-DDTHH:00"`` string (or an on-the-hour datetime)."""
    if isinstance(value, datetime):
        if value.minute or value.second or value.microsecond:
            return None
        return hour_index(value)
    if not isinstance(value, str):
        return None
    m = _HOUR_RE.match(value)
    if not m:
        return None
    try:
        dt = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]))
    except ValueError:
        return None
    return hour_index(dt)


def is_failing_hour(options: Mapping[str, Any], h: int) -> bool:
    """Whether the failure options make hour index ``h`` fail (pure)."""
    hours = options.get("fail_hours") or ()
    if any(_parse_hour(x) == h for x in hours):
        return True
    cycle = options.get("fail_cycle")
    if cycle:
        every = int(cycle["every_hours"])
        return (h - int(cycle.get("offset_hours", 0))) % every < int(cycle["for_hours"])
    return False


_flaky_lock = threading.Lock()
_flaky_calls: dict[tuple[str, int], int] = {}


def reset_flaky_counters() -> None:
    """Forget the ``flaky_attempts`` call counts (for tests)."""
    with _flaky_lock:
        _flaky_calls.clear()


def _flaky_call_number(account_id: str, h: int) -> int:
    with _flaky_lock:
        n = _flaky_calls.get((account_id, h), 0) + 1
        _flaky_calls[(account_id, h)] = n
        return n


# --------------------------------------------------------------------------- options


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_options(options: Mapping[str, Any]) -> None:
    if not isinstance(options, Mapping):
        raise ValueError("options: expected a mapping")
    for key, v in options.items():
        p = f"options.{key}"
        if key == LINKED_ACCOUNT_ID_OPTION:
            if not isinstance(v, str) or not v:
                raise ValueError(f"{p}: expected a non-empty string (the linked account id)")
        elif key == "sub_accounts":
            if not isinstance(v, list) or not v:
                raise ValueError(
                    f"{p}: expected a non-empty list of {', '.join(SUB_ACCOUNT_KINDS)}"
                )
            for i, kind in enumerate(v):
                if kind not in SUB_ACCOUNT_KINDS:
                    raise ValueError(
                        f"{p}[{i}]: expected one of {', '.join(SUB_ACCOUNT_KINDS)}, got {kind!r}"
                    )
                if kind in v[:i]:
                    raise ValueError(f"{p}[{i}]: {kind!r} is listed twice")
        elif key == "scale":
            if not _is_number(v) or v <= 0:
                raise ValueError(f"{p}: expected a number greater than 0, got {v!r}")
        elif key in ("sleep_s", "latency_s"):
            if not _is_number(v) or v < 0:
                raise ValueError(f"{p}: expected a number of seconds >= 0, got {v!r}")
        elif key == "flaky_attempts":
            if not _is_int(v) or v < 0:
                raise ValueError(f"{p}: expected a whole number >= 0, got {v!r}")
        elif key == "fail_kind":
            if v not in FAIL_KINDS:
                raise ValueError(f"{p}: expected one of {', '.join(FAIL_KINDS)}, got {v!r}")
        elif key == "fail_hours":
            if not isinstance(v, list):
                raise ValueError(f'{p}: expected a list of hours such as "2024-03-01T10:00"')
            for i, x in enumerate(v):
                if _parse_hour(x) is None:
                    raise ValueError(
                        f'{p}[{i}]: expected an hour "YYYY-MM-DDTHH:00" such as '
                        f'"2024-03-01T10:00", got {x!r}'
                    )
        elif key == "fail_cycle":
            _check_fail_cycle(p, v)
        else:
            raise ValueError(f"{p}: unknown option (expected one of {', '.join(OPTION_KEYS)})")


def _check_fail_cycle(p: str, v: object) -> None:
    if not isinstance(v, Mapping):
        raise ValueError(f"{p}: expected a mapping {{every_hours, for_hours, offset_hours}}")
    for k in v:
        if k not in ("every_hours", "for_hours", "offset_hours"):
            raise ValueError(
                f"{p}.{k}: unknown key (expected every_hours, for_hours, offset_hours)"
            )
    for k, required in (("every_hours", True), ("for_hours", True), ("offset_hours", False)):
        if k not in v:
            if required:
                raise ValueError(f"{p}.{k}: required, expected a whole number")
            continue
        x = v[k]
        lo = 1 if k == "every_hours" else 0
        if not _is_int(x) or x < lo:
            raise ValueError(f"{p}.{k}: expected a whole number >= {lo}, got {x!r}")
    if v["for_hours"] > v["every_hours"]:
        raise ValueError(f"{p}.for_hours: expected at most every_hours ({v['every_hours']})")


# --------------------------------------------------------------------------- provider


class DummyProvider:
    id: str = "dummy"
    description: str = (
        "Synthetic household (cash in GBP/EUR/USD, ISA, pension, crypto, home (opt-in), mortgage, "
        "credit card), deterministic per linked account and hour; no credentials."
    )
    credential_fields: tuple[CredentialField, ...] = ()
    supports_historical: bool = True

    def validate_options(self, options: Mapping[str, Any]) -> None:
        _check_options(options)

    def fetch(
        self, credentials: Mapping[str, str], options: Mapping[str, Any], as_of: datetime
    ) -> Snapshot:
        try:
            _check_options(options)
        except ValueError as exc:
            raise ProviderError(f"dummy: {exc}") from None
        account_id = options.get(LINKED_ACCOUNT_ID_OPTION)
        if not account_id:
            raise ProviderError(
                f"dummy: options must contain {LINKED_ACCOUNT_ID_OPTION!r} (injected by the ingest)"
            )
        latency = float(options.get("latency_s", 0.0))
        if latency > 0:
            time.sleep(latency)
        h = hour_index(as_of)
        label = _hour_label(h)
        if is_failing_hour(options, h):
            kind = options.get("fail_kind", "transient")
            if kind == "timeout":
                time.sleep(float(options.get("sleep_s", 5.0)))
            elif kind == "authentication_failure":
                raise AuthenticationFailure(
                    f"dummy: simulated authentication failure at {label} (credentials refused)"
                )
            elif kind == "provider_error":
                raise ProviderPayloadError(f"dummy: simulated provider error at {label}")
            elif kind == "rate_limited":
                raise RateLimited(
                    f"dummy: simulated rate limit at {label}",
                    retry_after=RATE_LIMIT_RETRY_AFTER_S,
                )
            elif kind == "empty":
                return Snapshot(())  # not validated here: the ingest must refuse it
            elif kind == "malformed":
                broken = Item("Cash", "asset", "cash", "cash", math.nan)
                return Snapshot((SubAccount("broken", "Broken", "GBP", "depository", (broken,)),))
            else:
                raise TransientError(f"dummy: simulated transient failure at {label}")
        flaky = int(options.get("flaky_attempts", 0))
        if flaky:
            n = _flaky_call_number(account_id, h)
            if n <= flaky:
                raise TransientError(f"dummy: simulated flaky failure at {label} (call {n})")
        snapshot = dummy_snapshot(account_id, options, as_of)
        snapshot.validate()
        return snapshot
