"""``dummy``: a deterministic synthetic household, for the demo and the tests.

Every number is a pure function of (linked account id, hour): per-account
magnitudes come from ``blake2b`` of the account id, movements from smooth
functions (sines, exponential drift, an amortising mortgage) of the hours since
the Unix epoch. Market prices depend on the symbol and the hour only, so two
dummy accounts holding the same ETF see the same price. No clock, no
unseeded randomness: the same inputs give the same snapshot in any process.

Options (all optional):

``sub_accounts``
    list of kinds to include, default all but the opt-in ones: ``cash`` (GBP, EUR
    and USD current accounts), ``stocks`` (a GBP stocks & shares ISA), ``pension``,
    ``crypto`` (a USD exchange wallet), ``cold_wallet`` (opt-in: a wallet kept in
    BTC, with staked ether the provider leaves unpriced), ``property`` (opt-in: the
    home), ``mortgage``, ``credit_card``.
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

Options are described by :class:`.options.DummyOptions`; there are no credentials.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from finbot_pipelines.providers.base import FetchContext, NoCredentials, Provider
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    Item,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
    SubAccount,
    Transaction,
    TransientError,
)
from finbot_pipelines.providers.dummy.options import (
    DEFAULT_SUB_ACCOUNT_KINDS,
    FAIL_KINDS,
    SPEC,
    SUB_ACCOUNT_KINDS,
    DummyOptions,
    parse_hour,
)

__all__ = [
    "DEFAULT_SUB_ACCOUNT_KINDS",
    "FAIL_KINDS",
    "SUB_ACCOUNT_KINDS",
    "DummyProvider",
    "dummy_snapshot",
    "hour_index",
]
#: retry_after hint carried by simulated rate limits (seconds)
RATE_LIMIT_RETRY_AFTER_S = 0.25

_EPOCH = datetime(1970, 1, 1)
_T0_HOUR = int((datetime(2024, 1, 1) - _EPOCH).total_seconds()) // 3600  # price anchor
_HOURS_PER_YEAR = 8766.0
_HOURS_PER_MONTH = _HOURS_PER_YEAR / 12


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


def _dec(x: float) -> Decimal:
    """The exact decimal a rounded float stands for (its shortest representation)."""
    return Decimal(repr(x)) + 0


def _money(x: float) -> Decimal:
    return _dec(round(x, 2))


def _holding(
    name: str,
    asset_class: str,
    asset_type: str,
    symbol: str | None,
    units: float,
    price: float,
    currency: str | None = None,
    unit: str | None = None,
) -> Item:
    return Item(
        name=name,
        item_type="asset",
        asset_class=asset_class,
        asset_type=asset_type,
        value=_money(units * price),
        units=_dec(units),
        currency=currency,
        symbol=symbol,
        unit=unit,
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
            value=_money(value * scale),
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
    items.append(Item("Cash", "asset", "cash", "cash", _money(cash * scale), currency="GBP"))
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
            unit="BTC",
        ),
        _holding(
            "Ether",
            "crypto",
            "crypto_currency",
            "ETH",
            eth,
            _price("ETH", 2_300.0, 0.25, 0.30, h),
            unit="ETH",
        ),
        _holding("USD Coin", "crypto", "stable_coin", "USDC", usdc, usdc_price, unit="USDC"),
    )
    return [SubAccount("crypto", "Crypto exchange wallet", "USD", "investment", items)]


def _cold_wallet(acc: str, h: int, scale: float) -> list[SubAccount]:
    """A wallet kept in BTC (like a bank account in an unofficial currency): its bitcoin
    is worth itself in the wallet's unit, and its staked ether (ETH2.S) has no price
    here: unit prices value both (BTC, and ETH for the staked variant)."""
    key = f"{acc}|cold_wallet"
    btc = _dec(_scaled(round(_between(0.05, 1.5, key, "BTC"), 8), scale))
    eth = _dec(_scaled(round(_between(0.5, 6.0, key, "ETH2.S"), 8), scale))
    items = (
        Item("Bitcoin", "asset", "crypto", "crypto_currency", btc, btc, "BTC", "BTC", "BTC"),
        Item("ETH2.S", "asset", "crypto", "crypto_currency", None, eth, None, "ETH2.S", "ETH"),
    )
    return [SubAccount("cold-wallet", "Cold wallet", "BTC", "other", items)]


def _property(acc: str, h: int, scale: float) -> list[SubAccount]:
    """The family home: about 3 % a year, revalued with a small monthly swing."""
    key = f"{acc}|property"
    value0 = _between(280_000.0, 520_000.0, key, "value")
    t_years = (h - _T0_HOUR) / _HOURS_PER_YEAR
    value = value0 * 1.03**t_years * (1 + 0.01 * _monthly(key, h))
    item = Item("Home", "asset", "real_estate", "property", _money(value * scale))
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
    item = Item("Mortgage", "liability", "real_estate", "mortgage", -_dec(balance))
    return [SubAccount("mortgage", "Mortgage", "GBP", "loan", (item,))]


def _credit_card(acc: str, h: int, scale: float) -> list[SubAccount]:
    key = f"{acc}|credit_card"
    base = _between(400.0, 2500.0, key, "base")
    owed = base * (0.55 + 0.4 * _monthly(key, h) + 0.05 * _wave(key, h))
    value = round(owed * scale, 2)
    item = Item("Credit card balance", "liability", "other", "credit_card", -_dec(value))
    return [SubAccount("credit-card", "Credit card", "GBP", "credit", (item,))]


_BUILDERS: dict[str, Callable[[str, int, float], list[SubAccount]]] = {
    "cash": _cash,
    "stocks": _stocks,
    "pension": _pension,
    "crypto": _crypto,
    "cold_wallet": _cold_wallet,
    "property": _property,
    "mortgage": _mortgage,
    "credit_card": _credit_card,
}


def dummy_snapshot(
    linked_account_id: str, options: DummyOptions | Mapping[str, Any], as_of: datetime
) -> Snapshot:
    """The snapshot of ``linked_account_id`` at the hour containing ``as_of``.

    Pure: no clock, no I/O, no state. Failure options are ignored here."""
    if not isinstance(options, DummyOptions):
        options = DummyOptions.model_validate(dict(options))
    h = hour_index(as_of)
    kinds = options.sub_accounts
    scale = options.scale
    subs = _sub_accounts(linked_account_id, kinds, h, scale)
    return Snapshot(tuple(subs), transactions=_transactions(linked_account_id, kinds, h, scale))


def _sub_accounts(account_id: str, kinds: Sequence[str], h: int, scale: float) -> list[SubAccount]:
    subs: list[SubAccount] = []
    for kind in SUB_ACCOUNT_KINDS:  # stable order whatever the option's order
        if kind in kinds:
            subs.extend(_BUILDERS[kind](account_id, h, scale))
    return subs


#: The fetch at a day's last hour reports the transactions of this many days (that day
#: and the ones before: a failed evening fetch loses nothing).
TRANSACTION_DAYS = 3


def _cash_balances(
    account_id: str, kinds: Sequence[str], h: int, scale: float
) -> dict[tuple[str, str], tuple[Decimal, str, str]]:
    """(sub-account id, item name) -> (balance, currency, account type) of every cash
    item in its sub-account's own currency, at hour index ``h``."""
    out = {}
    for sub in _sub_accounts(account_id, kinds, h, scale):
        for item in sub.items:
            if (
                item.asset_class == "cash"
                and item.item_type == "asset"
                and item.value is not None
                and item.currency in (None, sub.currency)
            ):
                out[(sub.id, item.name)] = (item.value, sub.currency, sub.account_type)
    return out


def _transactions(
    account_id: str, kinds: Sequence[str], h: int, scale: float
) -> tuple[Transaction, ...]:
    """Transactions consistent with the balances: the money in and out of each cash
    item over a day is one transaction, its close (the day's last hour, 23:00 UTC)
    minus the previous day's close. So a cash balance changes only by its
    transactions from close to close (no market gain on cash), and what an investment
    account gains beyond them is its holdings' prices. Reported by the fetch of a
    day's last hour, for that day and the TRANSACTION_DAYS - 1 before it."""
    if (h + 1) % 24:
        return ()
    out: list[Transaction] = []
    for back in range(TRANSACTION_DAYS - 1, -1, -1):
        close_h = h - 24 * back
        day = (_EPOCH + timedelta(hours=close_h)).date()
        now = _cash_balances(account_id, kinds, close_h, scale)
        before = _cash_balances(account_id, kinds, close_h - 24, scale)
        for (sub_id, name), (value, ccy, account_type) in now.items():
            if (sub_id, name) not in before:
                continue
            delta = value - before[(sub_id, name)][0]
            if delta == 0:
                continue
            investment = account_type == "investment"
            if delta > 0:
                text = "Contribution" if investment else "Salary and transfers in"
            else:
                text = "Withdrawal" if investment else "Card payments and bills"
            out.append(
                Transaction(
                    id=f"{sub_id}:{name}:{day.isoformat()}",
                    sub_account_id=sub_id,
                    amount=delta,
                    currency=ccy,
                    description=text,
                    kind="deposit" if delta > 0 else "withdrawal",
                    posted=day,
                    category="transfers" if investment else ("income" if delta > 0 else "spending"),
                )
            )
    return tuple(out)


# --------------------------------------------------------------------------- failures


def is_failing_hour(options: DummyOptions, h: int) -> bool:
    """Whether the failure options make hour index ``h`` fail (pure)."""
    for x in options.fail_hours:
        hour = parse_hour(x)
        if hour is not None and hour_index(hour) == h:
            return True
    cycle = options.fail_cycle
    if cycle is not None:
        return (h - cycle.offset_hours) % cycle.every_hours < cycle.for_hours
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


# --------------------------------------------------------------------------- provider


class DummyProvider(Provider[DummyOptions, NoCredentials]):
    spec = SPEC

    def fetch(
        self, ctx: FetchContext, options: DummyOptions, credentials: NoCredentials
    ) -> Snapshot:
        account_id = ctx.linked_account_id
        if options.latency_s > 0:
            time.sleep(options.latency_s)
        h = hour_index(ctx.hour)
        label = _hour_label(h)
        if is_failing_hour(options, h):
            kind = options.fail_kind
            if kind == "timeout":
                time.sleep(options.sleep_s)
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
                return Snapshot(())  # the fetch path must refuse it
            elif kind == "malformed":
                broken = Item("Cash", "asset", "cash", "cash", Decimal("NaN"))
                return Snapshot((SubAccount("broken", "Broken", "GBP", "depository", (broken,)),))
            else:
                raise TransientError(f"dummy: simulated transient failure at {label}")
        if options.flaky_attempts:
            n = _flaky_call_number(account_id, h)
            if n <= options.flaky_attempts:
                raise TransientError(f"dummy: simulated flaky failure at {label} (call {n})")
        return dummy_snapshot(account_id, options, ctx.hour)
