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

from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

from finbot_pipelines.providers.base import FetchContext, Provider, ProviderSpec, priced_downstream
from finbot_pipelines.providers.contract import (
    FetchWarning,
    Item,
    OptionsError,
    RetiredProvider,
    Snapshot,
    SubAccount,
    UnpricedError,
    to_decimal,
)
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
        valuation = value_holdings(held, plan, to_decimal(options.dust_threshold))
        return self._snapshot(ctx, options, exchange_id, name, valuation)

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


class KrakenProvider(ExchangeProvider):
    spec = KRAKEN
    exchange_id = "kraken"


class BinanceProvider(ExchangeProvider):
    spec = BINANCE
    exchange_id = "binance"


class CcxtProvider(ExchangeProvider):
    spec = CCXT
