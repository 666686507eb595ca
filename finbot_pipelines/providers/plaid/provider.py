"""``plaid``: one linked account is one Plaid *Item* (one login at one institution).

A fetch makes up to three calls through :class:`.client.PlaidClient`, each under
the ``timeout_s`` network timeout and never retried here:

``/accounts/balance/get``
    real-time balances of every account of the Item (always called; an answer
    listing no account is an error, never a 0).
``/investments/holdings/get``
    holdings and their securities (when ``investments`` is in ``products``;
    skipped when Plaid says the product is not available for the Item).
``/liabilities/get``
    credit cards, student loans and mortgages (likewise, ``liabilities``).

The answers become a snapshot in :mod:`.mapping` (the rules are there), the
errors are mapped in :mod:`.client`; options and credentials are in
:mod:`.options`. Nothing is read from the environment: the host comes from
``api_url`` or the credentials' ``environment``.
"""

from __future__ import annotations

from typing import Any

from finbot_pipelines.providers.base import FetchContext, Provider
from finbot_pipelines.providers.contract import FetchWarning, ProviderPayloadError, Snapshot
from finbot_pipelines.providers.http import Masker
from finbot_pipelines.providers.plaid.client import PlaidClient, ProductUnavailable
from finbot_pipelines.providers.plaid.mapping import (
    InvestmentsAnswer,
    build_snapshot,
    check_balance_answer,
)
from finbot_pipelines.providers.plaid.options import (
    SPEC,
    PlaidCredentials,
    PlaidOptions,
    resolve_api_url,
)


class PlaidProvider(Provider[PlaidOptions, PlaidCredentials]):
    spec = SPEC

    def fetch(
        self, ctx: FetchContext, options: PlaidOptions, credentials: PlaidCredentials
    ) -> Snapshot:
        mask = Masker(credentials.secret_values())
        client = PlaidClient(
            resolve_api_url(credentials.environment, options.api_url),
            credentials.client_id,
            credentials.secret,
            timeout_s=options.timeout_s,
            masker=mask,
        )
        token = credentials.access_token
        balance = client.accounts_balance(token)
        check_balance_answer(balance)  # before calling (and maybe being billed for) the others
        investments: InvestmentsAnswer | None = None
        if "investments" in options.products:
            try:
                investments = client.investments_holdings(token)
            except ProductUnavailable:
                investments = None
        liabilities: dict[str, Any] | None = None
        if "liabilities" in options.products:
            try:
                liabilities = client.liabilities(token)
            except ProductUnavailable:
                liabilities = None
        try:
            snapshot = build_snapshot(
                balance, investments, liabilities, priced_units=ctx.priced_units
            )
        except ProviderPayloadError as exc:  # may quote the answer: mask what it echoes
            raise ProviderPayloadError(mask(str(exc))) from None
        warnings = tuple(FetchWarning(w.code, mask(w.message)) for w in snapshot.warnings)
        return Snapshot(snapshot.sub_accounts, warnings)
