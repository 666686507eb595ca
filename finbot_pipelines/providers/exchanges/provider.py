"""The ``kraken``, ``binance`` and ``ccxt`` providers: one exchange login, one sub-account.

A fetch loads the exchange's spot markets, reads the account's **total**
balances from the raw answer (Kraken's ``BalanceEx`` ``balance`` is already the
total, ``hold_trade`` is part of it; Binance's free + locked) and values each in
one currency from the exchange's own tickers (:mod:`.valuation`). The snapshot is
one sub-account (id = the ccxt exchange id, currency = the valuation currency,
an ISO fiat code; type ``investment``) with one item per currency held: name and
symbol the balance's code (``ETH2.S``), ``unit`` the asset that values it
(``ETH``), ``units`` the amount held, ``value`` its worth. Fiat balances are cash,
stablecoins ``stable_coin``, the rest ``crypto_currency`` (all ``crypto``).

Valuation currency
------------------
``quote_ccy`` when set. Otherwise the profile's currency (``ctx.valuation_ccy``),
unless another fiat currency values more of the holdings through the exchange's
markets: then the first of USD, EUR, GBP, JPY, CHF, CAD, AUD (then any other fiat
the exchange lists) that values the most. A Binance account (binance.com has no
USD market) held by a GBP profile is valued in EUR through EUR/USDT when GBP
reaches nothing, for instance; finbot's FX converts it.

What is left out, what is unpriced
----------------------------------
Zero balances, ``ignore_currencies`` (a balance whose id, code or base is listed)
and Kraken's fee credits (``KFEE``) are never reported. Balances worth less than
``dust_threshold`` are left out with a ``skipped`` warning naming them. A balance
without any path to the valuation currency is an unpriced item (``value`` None,
``units`` kept, ``unit`` its base): the valuation prices it downstream when
``unit_prices`` can (or FX, for a fiat balance), otherwise the fetch warns
``unpriced``; when nothing the account holds can be valued the fetch fails
(``unpriced``). With ``skip_unpriced: true`` the balances nothing can price are
left out instead, with a ``skipped`` warning naming them, and the fetch fails
(``unpriced``, naming them) when that leaves nothing: never a success worth 0.

Transactions
------------
With ``transactions`` (default true) the fetch also reads the account's history,
only what is new since the snapshot's transactions cursor (:class:`HistoryReader`;
the rules are in :mod:`.history`): deposits, withdrawals, trade legs, fees and
staking rewards of the one sub-account. A history request that fails (refused,
rate limited, malformed, unreachable) never fails the fetch: the balances land,
a ``skipped`` (refused: the key lacks the permission) or ``upstream`` warning says
so, and the streams not read keep their place in the cursor (the next fetch asks
again; nothing is lost, nothing doubles).

Errors
------
Refused keys -> ``authentication_failure``; rate limits -> ``rate_limited`` (with
the server's ``Retry-After`` when it sent one); network errors, 5xx, maintenance
-> ``transient`` / ``timeout``; malformed or incomplete answers -> ``provider_error``
naming the field or the currency. The provider never retries itself
(:mod:`finbot_pipelines.providers.fetching` does). Error messages never carry
credential values nor request URLs' query strings. Closed exchanges (``bittrex``,
``ftx``, ``ftxus`` as ``exchange``) fail with ``retired_provider``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar

from finbot_pipelines.providers.base import FetchContext, Provider, ProviderSpec, priced_downstream
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    FetchWarning,
    Item,
    OptionsError,
    ProviderError,
    RetiredProvider,
    Snapshot,
    SubAccount,
    Transaction,
    UnpricedError,
    to_decimal,
)
from finbot_pipelines.providers.exchanges import history as hist
from finbot_pipelines.providers.exchanges.client import ExchangeClient
from finbot_pipelines.providers.exchanges.options import (
    BINANCE,
    CCXT,
    KRAKEN,
    RETIRED_EXCHANGES,
    CcxtOptions,
    ExchangeCredentials,
    ExchangeOptions,
)
from finbot_pipelines.providers.exchanges.valuation import (
    Holding,
    Market,
    Valuation,
    amount_text,
    holdings,
    plan_valuation,
    quote_candidates,
    value_holdings,
)
from finbot_pipelines.providers.http import Masker


def _label(item: Item) -> str:
    units = f"{amount_text(item.units)} {item.unit}" if item.units is not None else item.unit
    return f"{item.name} ({units})"


def _dust_label(holding: Holding, value: Decimal, quote: str) -> str:
    amount = f"{amount_text(holding.amount)} {holding.base}"
    return f"{holding.code} ({amount}, worth {amount_text(value)} {quote})"


class ExchangeProvider(Provider[ExchangeOptions, ExchangeCredentials]):
    """Balances of one exchange account through ccxt (see the module docstring)."""

    spec: ClassVar[ProviderSpec]
    #: the exchange of a named provider; None: the ``exchange`` option's
    exchange_id: ClassVar[str | None] = None

    def exchange_of(self, options: ExchangeOptions) -> str:
        if self.exchange_id is not None:
            return self.exchange_id
        if not isinstance(options, CcxtOptions):
            raise OptionsError("options.exchange: required: a ccxt exchange id such as kraken")
        return options.exchange

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        #: the wall clock (aware UTC) the history windows end at; tests pass their own
        self._clock = clock or (lambda: datetime.now(UTC))

    def fetch(
        self, ctx: FetchContext, options: ExchangeOptions, credentials: ExchangeCredentials
    ) -> Snapshot:
        exchange_id = self.exchange_of(options)
        if exchange_id in RETIRED_EXCHANGES:
            raise RetiredProvider(RETIRED_EXCHANGES[exchange_id])
        masker = Masker(credentials.secret_values())
        with ExchangeClient(exchange_id, options, credentials, masker) as client:
            markets = client.load_markets()
            balances = client.fetch_balances()
            listed = {m.base for m in markets} | {m.quote for m in markets}
            held = holdings(exchange_id, balances, listed, options.ignore_currencies)
            bases = {h.base for h in held}
            candidates = quote_candidates(options.quote_ccy, ctx.valuation_ccy, listed, bases)
            plan = plan_valuation(markets, bases, candidates, options.bridges, client.fetch_prices)
            name = client.name
            history = (
                HistoryReader(self.spec.id, exchange_id, client, options, ctx, self._clock()).read(
                    held, markets, listed
                )
                if options.transactions
                else History()
            )
        valuation = value_holdings(held, plan, to_decimal(options.dust_threshold))
        snap = self._snapshot(ctx, options, exchange_id, name, valuation)
        return Snapshot(
            snap.sub_accounts,
            (*snap.warnings, *history.warnings),
            tuple(history.transactions),
            tuple(history.removed),
            history.cursor,
        )

    def _snapshot(
        self,
        ctx: FetchContext,
        options: ExchangeOptions,
        exchange_id: str,
        name: str,
        valuation: Valuation,
    ) -> Snapshot:
        quote = valuation.quote
        items: Sequence[Item] = valuation.items
        warnings: list[FetchWarning] = []
        if valuation.dust:
            threshold = amount_text(to_decimal(options.dust_threshold))
            warnings.append(
                FetchWarning(
                    "skipped",
                    f"{self.spec.id}: left out balances worth less than dust_threshold "
                    f"{threshold} {quote}: "
                    + ", ".join(_dust_label(h, v, quote) for h, v in valuation.dust),
                )
            )
        if options.skip_unpriced:
            left_out = [it for it in items if it.value is None and not priced_downstream(it, ctx)]
            if left_out:
                items = [it for it in items if not any(it is x for x in left_out)]
                labels = ", ".join(_label(it) for it in left_out)
                if not items:
                    raise UnpricedError(
                        f"{self.spec.id}: cannot value anything this account holds: {labels} "
                        f"(no path to {quote} through {name}'s markets and no unit price; "
                        "skip_unpriced leaves them out, which would make the account worth 0)"
                    )
                warnings.append(
                    FetchWarning(
                        "skipped",
                        f"{self.spec.id}: left out (skip_unpriced) what {name} cannot value in "
                        f"{quote}: {labels}",
                    )
                )
        sub_account = SubAccount(
            id=exchange_id,
            name=name,
            currency=quote,
            account_type="investment",
            items=tuple(items),
        )
        return Snapshot((sub_account,), tuple(warnings))


# --------------------------------------------------------------------------- history

#: What a refused history request most likely means, per exchange.
HISTORY_PERMISSION: dict[str, str] = {
    "kraken": "the API key needs the 'Query Ledger Entries' permission",
    "binance": "the API key needs reading enabled ('Enable Reading')",
}


@dataclass
class History:
    """What a fetch read of the account's history (see :mod:`.history`)."""

    transactions: list[Transaction] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[FetchWarning] = field(default_factory=list)
    cursor: str | None = None


class HistoryReader:
    """Reads one account's history for one fetch: only what is new since the cursor.

    A stream's position in the cursor moves only once the stream was read to its
    end: when a request fails (refused, rate limited, malformed, unreachable) the
    balances still land, with a warning, the streams not finished keep their
    position and the next fetch reads them again; what was read is reported (the
    ids are stable: read again, an entry replaces itself)."""

    def __init__(
        self,
        provider_id: str,
        exchange_id: str,
        client: ExchangeClient,
        options: ExchangeOptions,
        ctx: FetchContext,
        now: datetime,
    ) -> None:
        self.provider_id = provider_id
        self.exchange_id = exchange_id
        self.client = client
        self.options = options
        self.cursor = hist.HistoryCursor.from_text(ctx.transactions_cursor, exchange_id)
        self.now_ms = hist.ms(now)
        self.floor_ms = hist.ms(now - timedelta(days=options.history_days))
        self.overlap_ms = int(hist.OVERLAP.total_seconds() * 1000)
        self.out = hist.Mapped()
        self.warnings: list[FetchWarning] = []

    def read(self, held: Sequence[Holding], markets: Sequence[Market], listed: set[str]) -> History:
        units = hist.Units(
            self.exchange_id, self.client.code, listed, self.options.ignore_currencies
        )
        try:
            if self.exchange_id == "kraken":
                self._kraken(units)
            elif self.exchange_id == "binance":
                self._binance(units, held, markets)
            elif self.client.has_ledger():
                self._unified(units)
            else:
                self.warnings.append(
                    FetchWarning(
                        "skipped",
                        f"{self.provider_id}: transactions are not reported: ccxt has no "
                        f"ledger for {self.exchange_id}",
                    )
                )
                return History(warnings=self.warnings)
        except AuthenticationFailure as exc:
            hint = HISTORY_PERMISSION.get(self.exchange_id, "the API key may not read history")
            self.warnings.append(
                FetchWarning(
                    "skipped",
                    f"{self.provider_id}: the account's history was refused ({hint}): {exc}; "
                    "the balances are reported, the history is asked again at the next fetch",
                )
            )
        except ProviderError as exc:
            self.warnings.append(
                FetchWarning(
                    "upstream",
                    f"{self.provider_id}: could not read the account's history: {exc}; the "
                    "balances are reported, what was not read is asked again at the next fetch",
                )
            )
        if self.out.skipped:
            self.warnings.append(
                FetchWarning(
                    "skipped",
                    f"{self.provider_id}: left out history entries of an unknown status: "
                    + ", ".join(self.out.skipped),
                )
            )
        found = self.out.transactions
        return History(
            transactions=list(found.values()),
            removed=sorted({r for r in self.out.removed if r not in found}),
            warnings=self.warnings,
            cursor=self.cursor.to_text(),
        )

    def _next_from(self, start: int, hold: int | None = None) -> int:
        """Where a stream read to its end resumes: the overlap before now, held back to
        its oldest open entry, never more than ``history_days`` back."""
        nxt = self.now_ms - self.overlap_ms
        if hold is not None:
            nxt = max(min(nxt, hold), self.floor_ms)
        return max(nxt, min(start, self.now_ms))

    def _truncated(self, what: str, pages: int, per_page: int) -> None:
        self.warnings.append(
            FetchWarning(
                "skipped",
                f"{self.provider_id}: read the newest {pages * per_page} {what} only (at most "
                f"{pages} pages a fetch): older ones are not reported",
            )
        )

    def _kraken(self, units: hist.Units) -> None:
        start = self.cursor.ledger if self.cursor.ledger is not None else self.floor_ms
        ofs = pages = 0
        while True:
            page, count = self.client.kraken_ledger_page(start // 1000, ofs)
            hist.kraken_ledger(page, units, self.exchange_id, self.out)
            pages += 1
            if len(page) < hist.KRAKEN_PAGE or (count is not None and ofs + len(page) >= count):
                break
            if pages >= hist.KRAKEN_MAX_PAGES:
                self._truncated("ledger entries", pages, hist.KRAKEN_PAGE)
                break
            ofs += len(page)
        self.cursor.ledger = self._next_from(start)

    def _unified(self, units: hist.Units) -> None:
        start = self.cursor.ledger if self.cursor.ledger is not None else self.floor_ms
        entries = self.client.unified_ledger(start)
        hist.ccxt_ledger(entries, self.exchange_id, units, self.exchange_id, self.out)
        self.cursor.ledger = self._next_from(start)

    def _binance(
        self, units: hist.Units, held: Sequence[Holding], markets: Sequence[Market]
    ) -> None:
        for stream in ("deposits", "withdrawals"):
            self._binance_stream(stream, units)
        # the currencies whose markets are worth asking for trades (module docstring)
        now_seen = {h.code for h in held} | {h.base for h in held} | self.out.moved
        assets = {a: t for a, t in self.cursor.assets.items() if t >= self.floor_ms}
        assets.update({a: self.now_ms for a in now_seen})
        self.cursor.assets = assets
        relevant = set(assets)
        by_symbol = {m.symbol: m for m in markets}
        wanted = {m.symbol for m in markets if m.base in relevant and m.quote in relevant}
        wanted |= {s for s in self.cursor.trades if s in by_symbol}
        for symbol in sorted(wanted):
            self._binance_trades(by_symbol[symbol], units)

    def _binance_stream(self, stream: str, units: hist.Units) -> None:
        saved = getattr(self.cursor, stream)
        start = saved if saved is not None else self.floor_ms
        mapped = hist.Mapped()
        mapper = hist.binance_deposits if stream == "deposits" else hist.binance_withdrawals
        try:
            for s, e in hist.windows(start, self.now_ms, hist.BINANCE_WINDOW):
                offset = pages = 0
                while True:
                    rows = self.client.binance_history(stream, s, e, offset)
                    mapper(rows, units, self.exchange_id, mapped)
                    pages += 1
                    if len(rows) < hist.BINANCE_PAGE:
                        break
                    if pages >= hist.BINANCE_MAX_PAGES:
                        self._truncated(stream, pages, hist.BINANCE_PAGE)
                        break
                    offset += len(rows)
        finally:
            self.out.transactions.update(mapped.transactions)
            self.out.removed.extend(mapped.removed)
            self.out.skipped.extend(mapped.skipped)
            self.out.moved |= mapped.moved
        setattr(self.cursor, stream, self._next_from(start, mapped.oldest_open))

    def _binance_trades(self, market: Market, units: hist.Units) -> None:
        last = self.cursor.trades.get(market.symbol)
        from_id = None if last is None else last + 1
        pages = 0
        while True:
            rows = self.client.binance_my_trades(
                market.symbol, start_ms=self.floor_ms, from_id=from_id
            )
            got = hist.binance_trades(
                rows, market.symbol, market.base, market.quote, units, self.exchange_id, self.out
            )
            pages += 1
            if got is not None:
                last = got if last is None else max(last, got)
                self.cursor.trades[market.symbol] = last
            if len(rows) < hist.BINANCE_PAGE:
                break
            if pages >= hist.BINANCE_MAX_PAGES:
                self._truncated(f"trades of {market.symbol}", pages, hist.BINANCE_PAGE)
                break
            from_id = (last or 0) + 1


class KrakenProvider(ExchangeProvider):
    spec = KRAKEN
    exchange_id = "kraken"


class BinanceProvider(ExchangeProvider):
    spec = BINANCE
    exchange_id = "binance"


class CcxtProvider(ExchangeProvider):
    spec = CCXT
