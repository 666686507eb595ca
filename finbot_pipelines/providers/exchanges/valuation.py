"""Valuing exchange balances, pure: currency codes, paths through markets, prices.

No I/O and no ccxt here: :mod:`.provider` feeds what the exchange answered.

Codes and base assets
---------------------
A balance's *code* is ccxt's unified code of the exchange's asset id (Kraken's
``XXBT`` -> ``BTC``, ``XBT.M`` -> ``BTC.M``: ccxt's kraken ``safe_currency_code``
maps the part before the dot and keeps the suffix). It names the item. Its
*base* is the asset whose price values it (:func:`base_asset`), the item's ``unit``:

- Kraken staking and earn balances ``<asset>.<suffix>`` (``.S`` staked, ``.M``
  opt-in rewards, ``.F`` auto earn, ``.B`` bonded, ``.P`` parachain, ``.HOLD``
  held fiat): the asset, without the lock period Kraken puts in some codes
  (``DOT28.S`` -> ``DOT``, unless ``DOT28`` itself has a market), and ``ETH2``
  (Ether staked before the merge, ``ETH2.S`` too) -> ``ETH``. Kraken's asset list
  (``/0/public/Assets``) lists those codes as assets of their own, with no market.
- Binance Simple Earn balances ``LD<asset>`` (``LDBTC``, ``LDUSDT``): the asset,
  when ``LD<asset>`` has no market of its own and the asset has one (``LDO`` is a
  token with its own markets: itself).
- anything else: the code itself.

A variant is worth its base one for one (a staked ETH is valued as an ETH).

Paths
-----
The markets the exchange lists form a graph of currencies. A balance is valued
through the shortest path (fewest markets) from its base to the valuation
currency, each market taken either way (ETH/USDT then EUR/USDT inverted). Among
paths of the same length the next step is chosen by: the valuation currency
itself, then the ``bridges`` order, then the code, then direct before inverted,
then the market symbol (no liquidity data: the choice is deterministic).

Amounts
-------
Everything is :class:`~decimal.Decimal`: the amounts and prices as the exchange
sent them, a value = units x the path's prices / the inverted ones, computed
with 60 significant digits and quantized to 10 decimal places.
"""

from __future__ import annotations

import decimal
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from finbot_pipelines.providers.contract import FIAT_CODES, Item, quantize, to_decimal

#: Significant digits of the intermediate products and quotients of a valuation.
PRECISION = 60
#: Decimal places of a computed value.
VALUE_PLACES = 10
#: Fiat currencies tried, in this order, after the profile's (see :func:`quote_candidates`).
FALLBACK_QUOTES: tuple[str, ...] = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD")
#: Rounds of ticker requests at most (a round re-routes around markets without a price).
MAX_TICKER_ROUNDS = 4

#: Currencies reported with asset_type ``stable_coin`` (valued like any other, never 1:1).
STABLE_COINS: frozenset[str] = frozenset(
    {
        "USDT", "USDC", "DAI", "BUSD", "TUSD", "USDP", "PAX", "GUSD", "FDUSD", "PYUSD",
        "USDD", "USDE", "FRAX", "LUSD", "USDS", "RLUSD", "USD1", "EURC", "EURT", "EURS",
        "EURI", "AEUR", "XSGD",
    }
)  # fmt: skip

#: Currencies never reported, per exchange (Kraken's fee credits).
ALWAYS_IGNORED: dict[str, frozenset[str]] = {"kraken": frozenset({"KFEE"})}
#: Kraken codes that are another asset without a dot (ETH staked before the merge).
KRAKEN_ALIASES: dict[str, str] = {"ETH2": "ETH"}


# --------------------------------------------------------------------------- codes


def base_asset(exchange_id: str, code: str, listed: Collection[str]) -> str:
    """The asset whose price values a balance of ``code`` (see the module docstring).

    ``listed``: the currencies of the exchange's markets."""
    if exchange_id == "kraken":
        return _kraken_base(code, listed)
    if exchange_id == "binance":
        return _binance_base(code, listed)
    return code


def _kraken_base(code: str, listed: Collection[str]) -> str:
    head, dot, _suffix = code.partition(".")
    if not dot or not head:
        return KRAKEN_ALIASES.get(code, code)
    if head in KRAKEN_ALIASES:
        return KRAKEN_ALIASES[head]
    if head in listed or head in FIAT_CODES:
        return head
    stripped = head.rstrip("0123456789")
    return stripped or head  # DOT28.S -> DOT: the lock period is not part of the asset


def _binance_base(code: str, listed: Collection[str]) -> str:
    if code.startswith("LD") and len(code) > 2 and code not in listed:
        asset = code[2:]
        if asset in listed or asset in FIAT_CODES:
            return asset
    return code


def classify(base: str) -> tuple[str, str, str | None]:
    """(asset_class, asset_type, currency) of a balance valued as ``base``."""
    if base in FIAT_CODES:
        return "cash", "cash", base
    if base in STABLE_COINS:
        return "crypto", "stable_coin", None
    return "crypto", "crypto_currency", None


@dataclass(frozen=True)
class Holding:
    """One balance: ``code`` names it, ``base`` values it, ``amount`` as the exchange sent it."""

    code: str
    base: str
    amount: Decimal


def holdings(
    exchange_id: str,
    balances: Iterable[tuple[str, str, Decimal]],
    listed: Collection[str],
    ignored: Collection[str],
) -> list[Holding]:
    """The non-zero balances ``(asset id, code, amount)`` not ignored, by code.

    A balance is ignored when its asset id, its code or its base is in ``ignored``
    (or in :data:`ALWAYS_IGNORED`). Two ids with the same code are added up."""
    skip = {*ignored, *ALWAYS_IGNORED.get(exchange_id, frozenset())}
    totals: dict[str, Decimal] = {}
    for asset_id, code, amount in balances:
        if asset_id in skip or code in skip or base_asset(exchange_id, code, listed) in skip:
            continue
        totals[code] = totals.get(code, Decimal(0)) + amount
    return [
        Holding(code, base_asset(exchange_id, code, listed), amount)
        for code, amount in sorted(totals.items())
        if amount != 0
    ]


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Market:
    """A spot market: ``price`` quote units buy one base unit."""

    symbol: str
    base: str
    quote: str


@dataclass(frozen=True)
class Step:
    """One market taken one way: from its base to its quote, or ``inverted``."""

    market: Market
    inverted: bool

    @property
    def source(self) -> str:
        return self.market.quote if self.inverted else self.market.base

    @property
    def target(self) -> str:
        return self.market.base if self.inverted else self.market.quote


Route = tuple[Step, ...]


class MarketGraph:
    """The currencies of some markets, linked by them (either way)."""

    def __init__(self, markets: Iterable[Market]) -> None:
        self._steps: dict[str, list[Step]] = {}
        for m in markets:
            if m.base == m.quote:
                continue
            self._steps.setdefault(m.base, []).append(Step(m, inverted=False))
            self._steps.setdefault(m.quote, []).append(Step(m, inverted=True))

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self._steps)

    def distances(self, target: str) -> dict[str, int]:
        """Fewest markets from each currency to ``target`` (reachable ones only)."""
        dist = {target: 0}
        queue = deque([target])
        while queue:
            node = queue.popleft()
            for step in self._steps.get(node, ()):
                if step.target not in dist:
                    dist[step.target] = dist[node] + 1
                    queue.append(step.target)
        return dist

    def route(
        self, start: str, target: str, dist: Mapping[str, int], bridges: Sequence[str]
    ) -> Route | None:
        """The preferred shortest path from ``start`` to ``target`` (``dist`` from
        :meth:`distances` of ``target``); None when there is none."""
        if start not in dist:
            return None
        path: list[Step] = []
        node = start
        while node != target:
            closer = [s for s in self._steps[node] if dist.get(s.target) == dist[node] - 1]
            step = min(closer, key=lambda s: _preference(s, target, bridges))
            path.append(step)
            node = step.target
        return tuple(path)


def _preference(step: Step, target: str, bridges: Sequence[str]) -> tuple[int, str, bool, str]:
    nxt = step.target
    if nxt == target:
        rank = 0
    elif nxt in bridges:
        rank = 1 + list(bridges).index(nxt)
    else:
        rank = 1 + len(bridges)
    return rank, nxt, step.inverted, step.market.symbol


def quote_candidates(
    override: str | None, profile_ccy: str | None, listed: Iterable[str], held: Iterable[str]
) -> tuple[str, ...]:
    """The valuation currencies to consider, preferred first: ``override`` alone when
    given; else the profile's currency, :data:`FALLBACK_QUOTES`, then any other fiat
    the exchange lists or the account holds."""
    if override is not None:
        return (override,)
    out: list[str] = []
    others = sorted({c for c in (*listed, *held) if c in FIAT_CODES})
    for c in (profile_ccy, *FALLBACK_QUOTES, *others):
        if c is not None and c in FIAT_CODES and c not in out:
            out.append(c)
    return tuple(out)


def choose_quote(graph: MarketGraph, bases: Collection[str], candidates: Sequence[str]) -> str:
    """The first of ``candidates`` that reaches the most of ``bases``."""
    best, best_n = candidates[0], -1
    for c in candidates:
        dist = graph.distances(c)
        n = sum(1 for b in bases if b in dist)
        if n > best_n:
            best, best_n = c, n
    return best


def routes_to(
    graph: MarketGraph, bases: Iterable[str], quote: str, bridges: Sequence[str]
) -> dict[str, Route]:
    """The route of each reachable base to ``quote``."""
    dist = graph.distances(quote)
    out: dict[str, Route] = {}
    for b in bases:
        r = graph.route(b, quote, dist, bridges)
        if r is not None:
            out[b] = r
    return out


@dataclass(frozen=True)
class Plan:
    """The valuation currency, the route of each base that reaches it, the prices used."""

    quote: str
    routes: dict[str, Route]
    prices: dict[str, Decimal]


def plan_valuation(
    markets: Sequence[Market],
    bases: Collection[str],
    candidates: Sequence[str],
    bridges: Sequence[str],
    fetch_prices: Callable[[list[str]], Mapping[str, Decimal | None]],
) -> Plan:
    """Choose the valuation currency and routes, asking ``fetch_prices`` (symbols ->
    price, None when the ticker has none) only for the markets on the routes.

    A market whose ticker has no price is left out and the routes are chosen
    again, for :data:`MAX_TICKER_ROUNDS` rounds at most; the routes returned only
    go through priced markets."""
    unpriced: set[str] = set()
    prices: dict[str, Decimal] = {}
    for _ in range(MAX_TICKER_ROUNDS):
        graph = MarketGraph(m for m in markets if m.symbol not in unpriced)
        quote = choose_quote(graph, bases, candidates)
        routes = routes_to(graph, bases, quote, bridges)
        needed = sorted(
            {s.market.symbol for r in routes.values() for s in r} - prices.keys() - unpriced
        )
        if not needed:
            return Plan(quote, routes, prices)
        got = fetch_prices(needed)
        for symbol in needed:
            price = got.get(symbol)
            if price is None:
                unpriced.add(symbol)
            else:
                prices[symbol] = price
    graph = MarketGraph(m for m in markets if m.symbol in prices)
    quote = choose_quote(graph, bases, candidates)
    return Plan(quote, routes_to(graph, bases, quote, bridges), prices)


# --------------------------------------------------------------------------- prices

#: Where the raw ticker (ccxt's ``info``) has the last price, the best bid and ask.
_RAW_TICKER_FIELDS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "kraken": (("c", 0), ("b", 0), ("a", 0)),  # [price, lot volume] arrays
    "binance": (("lastPrice", None), ("bidPrice", None), ("askPrice", None)),
}


def _positive(value: object) -> Decimal | None:
    try:
        d = to_decimal(value)
    except ValueError:
        return None
    return d if d > 0 else None


def _raw_field(info: object, key: str, index: int | None) -> Decimal | None:
    if not isinstance(info, Mapping):
        return None
    value: Any = info.get(key)
    if index is not None:
        value = value[index] if isinstance(value, list) and len(value) > index else None
    return _positive(value)


def ticker_price(exchange_id: str, ticker: Mapping[str, Any]) -> Decimal | None:
    """The price of a ccxt ticker: the last trade, else the bid/ask midpoint; None when
    it has neither. Read from the raw answer for Kraken and Binance (exact), from
    ccxt's unified fields otherwise (a float: its shortest repr)."""
    fields = _RAW_TICKER_FIELDS.get(exchange_id)
    if fields is not None:
        info = ticker.get("info")
        last, bid, ask = (_raw_field(info, key, index) for key, index in fields)
    else:
        last = _positive(ticker.get("last")) or _positive(ticker.get("close"))
        bid, ask = _positive(ticker.get("bid")), _positive(ticker.get("ask"))
    if last is not None:
        return last
    if bid is not None and ask is not None:
        return (bid + ask) / 2
    return None


def convert(amount: Decimal, route: Route, prices: Mapping[str, Decimal]) -> Decimal:
    """``amount`` of the route's start in the route's end, quantized (exact when no step)."""
    if not route:
        return amount
    with decimal.localcontext() as ctx:
        ctx.prec = PRECISION
        num, den = amount, Decimal(1)
        for step in route:
            price = prices[step.market.symbol]
            if step.inverted:
                den *= price
            else:
                num *= price
        value = num / den
    return quantize(value, VALUE_PLACES)


def describe_route(route: Route) -> str:
    return " -> ".join([route[0].source, *(s.target for s in route)]) if route else ""


# --------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Valuation:
    """The items (unpriced ones with ``value=None``) and the dust left out."""

    quote: str
    items: tuple[Item, ...]
    dust: tuple[tuple[Holding, Decimal], ...]


def value_holdings(held: Sequence[Holding], plan: Plan, dust_threshold: Decimal) -> Valuation:
    """One item per holding, valued in ``plan.quote`` when its base has a route; dust
    (priced, worth less than ``dust_threshold`` either way) left out."""
    items: list[Item] = []
    dust: list[tuple[Holding, Decimal]] = []
    for h in held:
        route = plan.routes.get(h.base)
        value = None if route is None else convert(h.amount, route, plan.prices)
        if value is not None and abs(value) < dust_threshold:
            dust.append((h, value))
            continue
        asset_class, asset_type, currency = classify(h.base)
        items.append(
            Item(
                name=h.code,
                item_type="asset" if h.amount >= 0 else "liability",
                asset_class=asset_class,
                asset_type=asset_type,
                value=value,
                units=h.amount,
                currency=currency,
                symbol=h.code,
                unit=h.base,
            )
        )
    return Valuation(plan.quote, tuple(items), tuple(dust))


def amount_text(d: Decimal) -> str:
    """A Decimal written plainly (no exponent, no trailing zeros)."""
    return format(d.normalize() if d != 0 else Decimal(0), "f")
