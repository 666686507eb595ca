"""``plaid``: one linked account is one Plaid *Item* (one login at one institution).

A fetch makes these calls through :class:`.client.PlaidClient`, each under the
``timeout_s`` network timeout and never retried here:

``/accounts/balance/get``
    real-time balances of every account of the Item (always called; an answer
    listing no account is an error, never a 0).
``/investments/holdings/get``
    holdings and their securities (when ``investments`` is in ``products``;
    skipped when Plaid says the product is not available for the Item).
``/liabilities/get``
    credit cards, student loans and mortgages (likewise, ``liabilities``).
``/transactions/sync``
    the changes to the Item's bank and card transactions since the last stored
    cursor (when ``transactions`` is in ``products``), see below.
``/investments/transactions/get``
    the investment accounts' transactions, at most once a day (``investments``).

The answers become a snapshot in :mod:`.mapping` and :mod:`.transactions` (the
rules are there), the errors are mapped in :mod:`.client`; options and credentials
are in :mod:`.options`. Nothing is read from the environment: the host comes from
``api_url`` or the credentials' ``environment``.

Transactions sync
-----------------
The pagination starts from ``ctx.transactions_cursor`` (the cursor stored with the
last landed transactions; None: Plaid's empty cursor, the whole history), asks
:data:`SYNC_COUNT` changes a page and follows ``next_cursor`` while ``has_more``,
folding added, modified and removed in order (a later page wins). The final
``next_cursor`` is the snapshot's ``transactions_cursor``: the ingest stores it in
the same DuckDB transaction as the transactions, so a fetch that fails (a server
error on page 2, a crash) returns no cursor and the next one starts again from the
old cursor, losing and doubling nothing. On TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION
the whole pagination restarts from the *original* cursor (Plaid's instruction), at
most :data:`MAX_SYNC_RESTARTS` times, then the fetch fails as transient. More than
:data:`MAX_SYNC_PAGES` pages in one fetch is an error (a server that never stops
saying ``has_more``). The first syncs of a new Item may say NOT_READY (nothing yet,
an empty ``next_cursor``: no cursor is returned, the next fetch asks again from the
same place) or INITIAL_UPDATE_COMPLETE / HISTORICAL_UPDATE_IN_PROGRESS (the recent
transactions now; the older ones arrive as ``added`` in later syncs): both are
normal, not warned about.

Investment transactions
-----------------------
Plaid refreshes investments about once a day and its ids are stable (a re-reported
id replaces its earlier version), so they are asked at most once every
:data:`INVESTMENTS_REFRESH_HOURS` hours: the first time over the last
:data:`INVESTMENT_HISTORY_DAYS` days (Plaid keeps 24 months), then from
:data:`INVESTMENT_OVERLAP_DAYS` days before the previous window's end (late or
corrected transactions are reported again, never missed; a fetch whose landing
crashed is covered by the next day's overlap) to today, :data:`INVESTMENT_COUNT` a
page by ``offset`` until ``total_investment_transactions``. When that was, and the
window, are kept in ``ctx.state_dir/plaid-investments.json`` (mode 0600) with a
salted HMAC of the access token (a re-linked Item starts over); never a credential.
Without a state folder they are asked at every fetch (over the whole window).
PRODUCT_NOT_READY leaves them for the next fetch.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from finbot_pipelines.providers.base import FetchContext, Provider
from finbot_pipelines.providers.contract import (
    FetchWarning,
    ProviderPayloadError,
    Snapshot,
    TransientError,
)
from finbot_pipelines.providers.http import Masker
from finbot_pipelines.providers.plaid.client import (
    PlaidClient,
    ProductNotReady,
    ProductUnavailable,
    SyncMutation,
)
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
from finbot_pipelines.providers.plaid.transactions import (
    INVESTMENT_TRANSACTIONS,
    SYNC,
    SubAccountRef,
    SyncFolder,
    SyncResult,
    investment_transactions,
    sync_transactions,
)
from finbot_pipelines.providers.state import secret_fingerprint, write_private

#: changes asked per /transactions/sync page (Plaid: default 100, at most 500)
SYNC_COUNT = 500
#: pages one fetch follows at most (250,000 changes)
MAX_SYNC_PAGES = 500
#: restarts of a pagination after TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION
MAX_SYNC_RESTARTS = 3

INVESTMENTS_STATE_FILE = "plaid-investments.json"
INVESTMENTS_STATE_VERSION = 1
INVESTMENTS_REFRESH_HOURS = 24
INVESTMENT_HISTORY_DAYS = 730
INVESTMENT_OVERLAP_DAYS = 30
#: investment transactions asked per page (Plaid: default 100, at most 500)
INVESTMENT_COUNT = 500
MAX_INVESTMENT_PAGES = 200


# --------------------------------------------------------------------------- sync


def sync_all(client: PlaidClient, access_token: str, cursor: str | None) -> SyncResult:
    """Every change since ``cursor``, every page of it (see the module)."""
    last: SyncMutation | None = None
    for _attempt in range(MAX_SYNC_RESTARTS + 1):
        folder = SyncFolder()
        page_cursor = cursor
        try:
            for _ in range(MAX_SYNC_PAGES):
                page = client.transactions_sync(access_token, page_cursor, SYNC_COUNT)
                folder.add(page)
                next_cursor = str(page.get("next_cursor") or "")
                status = page.get("transactions_update_status")
                status_text = str(getattr(status, "value", status)) if status else None
                if not page.get("has_more"):
                    return folder.result(next_cursor, status_text)
                if not next_cursor:
                    raise ProviderPayloadError(
                        f"Plaid {SYNC}: malformed answer: has_more is true but next_cursor is empty"
                    )
                page_cursor = next_cursor
        except SyncMutation as exc:
            last = exc
            continue
        raise ProviderPayloadError(
            f"Plaid {SYNC}: still has_more after {MAX_SYNC_PAGES} pages of {SYNC_COUNT} "
            "changes: stopped (the cursor is not advanced)"
        )
    raise TransientError(
        f"Plaid {SYNC}: the Item's transactions changed during each of "
        f"{MAX_SYNC_RESTARTS + 1} paginations; asking again at the next attempt ({last})"
    )


# --------------------------------------------------------------------------- investments


@dataclass(frozen=True)
class InvestmentsState:
    """When investment transactions were last read, and the window's last day."""

    read_at: datetime
    end: date


def load_investments_state(state_dir: Path | None, access_token: str) -> InvestmentsState | None:
    """The saved state of this Item, or None (none, unreadable, another access token)."""
    if state_dir is None:
        return None
    try:
        doc = json.loads((state_dir / INVESTMENTS_STATE_FILE).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("version") != INVESTMENTS_STATE_VERSION:
            return None
        if not hmac.compare_digest(
            secret_fingerprint(str(doc["salt"]), access_token), str(doc["fingerprint"])
        ):
            return None
        return InvestmentsState(
            datetime.fromisoformat(str(doc["read_at"])), date.fromisoformat(str(doc["end"]))
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_investments_state(state_dir: Path, access_token: str, state: InvestmentsState) -> None:
    """Write the state file atomically, mode 0600, in a 0700 folder."""
    salt = secrets.token_hex(16)
    doc = {
        "version": INVESTMENTS_STATE_VERSION,
        "salt": salt,
        "fingerprint": secret_fingerprint(salt, access_token),
        "read_at": state.read_at.isoformat(),
        "end": state.end.isoformat(),
    }
    write_private(state_dir, INVESTMENTS_STATE_FILE, json.dumps(doc, sort_keys=True))


def investments_window(now: datetime, state: InvestmentsState | None) -> tuple[date, date] | None:
    """The days to ask investment transactions for at ``now``, None when not due yet."""
    if state is not None and state.read_at <= now < state.read_at + timedelta(
        hours=INVESTMENTS_REFRESH_HOURS
    ):
        return None
    today = now.date()
    earliest = today - timedelta(days=INVESTMENT_HISTORY_DAYS)
    if state is None:
        return earliest, today
    return max(earliest, min(today, state.end - timedelta(days=INVESTMENT_OVERLAP_DAYS))), today


@dataclass(frozen=True)
class InvestmentTransactionsRead:
    transactions: list[dict[str, Any]]
    securities: dict[str, dict[str, Any]]


def read_investment_transactions(
    client: PlaidClient, access_token: str, start: date, end: date
) -> InvestmentTransactionsRead:
    """Every page of ``start``..``end``, by offset until ``total_investment_transactions``."""
    transactions: list[dict[str, Any]] = []
    securities: dict[str, dict[str, Any]] = {}
    offset = 0
    for _ in range(MAX_INVESTMENT_PAGES):
        page = client.investments_transactions(
            access_token, start, end, offset=offset, count=INVESTMENT_COUNT
        )
        transactions += [dict(t) for t in page.transactions]
        securities.update({k: dict(v) for k, v in page.securities.items()})
        offset += len(page.transactions)
        if offset >= page.total:
            return InvestmentTransactionsRead(transactions, securities)
        if not page.transactions:
            raise ProviderPayloadError(
                f"Plaid {INVESTMENT_TRANSACTIONS}: malformed answer: total_investment_transactions "
                f"is {page.total} but the page at offset {offset} lists none"
            )
    raise ProviderPayloadError(
        f"Plaid {INVESTMENT_TRANSACTIONS}: more than {MAX_INVESTMENT_PAGES} pages of "
        f"{INVESTMENT_COUNT} transactions: stopped"
    )


# --------------------------------------------------------------------------- the provider


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
        synced: SyncResult | None = None
        if "transactions" in options.products:
            try:
                synced = sync_all(client, token, ctx.transactions_cursor)
            except (ProductUnavailable, ProductNotReady):
                synced = None
        invested: InvestmentTransactionsRead | None = None
        state: InvestmentsState | None = None
        if investments is not None:  # the investments product is read and available
            window = investments_window(ctx.hour, load_investments_state(ctx.state_dir, token))
            if window is not None:
                try:
                    invested = read_investment_transactions(client, token, *window)
                    state = InvestmentsState(ctx.hour, window[1])
                except (ProductUnavailable, ProductNotReady):
                    invested = None
        try:
            snapshot = self._snapshot(
                balance, investments, liabilities, synced, invested, ctx, mask
            )
        except ProviderPayloadError as exc:  # may quote the answer: mask what it echoes
            raise ProviderPayloadError(mask(str(exc))) from None
        if state is not None and ctx.state_dir is not None:
            save_investments_state(ctx.state_dir, token, state)
        return snapshot

    @staticmethod
    def _snapshot(
        balance: dict[str, Any],
        investments: InvestmentsAnswer | None,
        liabilities: dict[str, Any] | None,
        synced: SyncResult | None,
        invested: InvestmentTransactionsRead | None,
        ctx: FetchContext,
        mask: Masker,
    ) -> Snapshot:
        snapshot = build_snapshot(balance, investments, liabilities, priced_units=ctx.priced_units)
        subs = {sa.id: SubAccountRef(sa.id, sa.currency) for sa in snapshot.sub_accounts}
        warnings = list(snapshot.warnings)
        transactions = []
        removed: tuple[str, ...] = ()
        cursor: str | None = None
        if synced is not None:
            mapped = sync_transactions(synced.transactions.values(), subs, mask)
            transactions += mapped.transactions
            warnings += mapped.warnings
            removed = tuple(synced.removed)
            cursor = synced.cursor or None  # "": Plaid has nothing yet, ask from here again
        if invested is not None:
            mapped = investment_transactions(invested.transactions, invested.securities, subs, mask)
            transactions += mapped.transactions
            warnings += mapped.warnings
        out = Snapshot(
            snapshot.sub_accounts,
            tuple(FetchWarning(w.code, mask(w.message)) for w in warnings),
            tuple(transactions),
            removed,
            cursor,
        )
        out.validate()
        return out
