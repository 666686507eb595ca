"""``simplefin``: one linked account is one SimpleFIN access URL (every account the user
connected at the SimpleFIN server, usually the SimpleFIN Bridge).

A fetch makes at most one request, ``GET /accounts`` (:mod:`.client`), and maps the
Account Set (:mod:`.mapping`). It respects the Bridge's quota: the developer guide
says "the SimpleFIN Bridge is intended to provide daily updates to transaction data.
As such, you are expected to make 24 requests or fewer per day" (quotas replenish
through the day). So the last good answer is kept in this account's state folder
(``ctx.state_dir/simplefin.json``, mode 0600) and used again, as it is, until
``refresh_hours`` have passed: the hourly snapshot then repeats the same balances,
which is what they are (their ``balance-date`` did not change), and re-reports the
same transactions (the ingest keeps one version per id). A pending transaction of the
previous answer that a new answer no longer lists (it posted, under its own id, or was
dropped) is reported in ``removed_transaction_ids``, unless the server reported an
error for its account, its connection or the whole answer. The state file holds the
answer (every text masked), when it was fetched, the window asked for, and a salted
HMAC of the access URL (an answer of other credentials is never used); never the
access URL or its parts.

Transactions are asked from ``history_days`` ago on the first fetch, then from the
previous request minus :data:`OVERLAP_DAYS` (a late-posting or corrected transaction
is reported again, never missed), at most ``history_days`` back; pending ones with
``pending=1`` when the ``pending`` option is on. The protocol's ``end-date`` is left
out (it excludes its own instant; the server's "now" is what is wanted).

Failed requests and retries count too: at most :data:`DAILY_REQUEST_BUDGET` requests
in any 24 hours (their times are in ``simplefin-requests.json`` beside the state).
Beyond that a fetch re-uses the last good answer, or, without one, fails with
``rate_limited`` naming when it will ask again, without asking.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from finbot_pipelines.providers.base import FetchContext, Provider
from finbot_pipelines.providers.contract import (
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
)
from finbot_pipelines.providers.http import Masker
from finbot_pipelines.providers.simplefin.client import SimplefinClient
from finbot_pipelines.providers.simplefin.mapping import build_snapshot, notices
from finbot_pipelines.providers.simplefin.options import (
    SPEC,
    SimplefinCredentials,
    SimplefinOptions,
)
from finbot_pipelines.providers.state import secret_fingerprint, write_private

STATE_FILE = "simplefin.json"
#: when each request of the last 24 hours was made (failed ones too)
REQUEST_LOG = "simplefin-requests.json"
#: requests a linked account may make in 24 hours, failed ones and retries included: the
#: Bridge expects 24 or fewer a day (with "a little leeway"); a few are kept in reserve
DAILY_REQUEST_BUDGET = 20
STATE_VERSION = 1
#: days before the previous request's time that the next one asks from again
OVERLAP_DAYS = 7


@dataclass(frozen=True)
class SavedAnswer:
    """The last good answer of the server for this linked account."""

    fetched_at: datetime
    start_date: int
    pending: bool
    answer: dict[str, Any]
    #: pending transactions of the answer before this one that this one no longer lists
    removed: tuple[str, ...] = ()


def _masked_tree(value: Any, mask: Masker) -> Any:
    """``value`` (parsed JSON) with every string masked: what may be written to disk."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(str(k)): _masked_tree(v, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked_tree(v, mask) for v in value]
    return value


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)  # exact; the mapping reads numeric strings
    raise TypeError(type(value).__name__)


def load_state(state_dir: Path | None, access_url: str) -> SavedAnswer | None:
    """The saved answer of these credentials, or None (none, unreadable, other credentials)."""
    if state_dir is None:
        return None
    path = state_dir / STATE_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            return None
        salt, fingerprint = str(doc["salt"]), str(doc["fingerprint"])
        if not hmac.compare_digest(secret_fingerprint(salt, access_url), fingerprint):
            return None
        fetched_at = datetime.fromisoformat(str(doc["fetched_at"]))
        if fetched_at.tzinfo is None:
            return None
        answer = doc["answer"]
        removed = doc.get("removed", [])
        if not isinstance(answer, dict) or not isinstance(removed, list):
            return None
        return SavedAnswer(
            fetched_at,
            int(doc["start_date"]),
            bool(doc["pending"]),
            answer,
            tuple(str(r) for r in removed),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recent_requests(state_dir: Path, now: datetime) -> list[datetime]:
    """The requests of the last 24 hours (an unreadable log counts as none)."""
    try:
        doc = json.loads((state_dir / REQUEST_LOG).read_text(encoding="utf-8"))
        times = [datetime.fromisoformat(str(t)) for t in doc]
    except (OSError, ValueError, TypeError):
        return []
    return sorted(t for t in times if t.tzinfo and now - timedelta(hours=24) < t <= now)


def record_request(state_dir: Path, recent: list[datetime], now: datetime) -> None:
    write_private(state_dir, REQUEST_LOG, json.dumps([t.isoformat() for t in [*recent, now]]))


def save_state(state_dir: Path, access_url: str, saved: SavedAnswer, mask: Masker) -> None:
    """Write the state file atomically, mode 0600, in a 0700 folder."""
    salt = secrets.token_hex(16)
    doc = {
        "version": STATE_VERSION,
        "salt": salt,
        "fingerprint": secret_fingerprint(salt, access_url),
        "fetched_at": saved.fetched_at.isoformat(),
        "start_date": saved.start_date,
        "pending": saved.pending,
        "answer": _masked_tree(saved.answer, mask),
        "removed": list(saved.removed),
    }
    text = json.dumps(doc, default=_json_default, ensure_ascii=False, sort_keys=True)
    write_private(state_dir, STATE_FILE, text)


def window_start(now: datetime, saved: SavedAnswer | None, history_days: int) -> datetime:
    """Where the transactions asked for begin: ``history_days`` ago on a first fetch,
    else the previous request minus :data:`OVERLAP_DAYS`, never more than
    ``history_days`` back."""
    earliest = now - timedelta(days=history_days)
    if saved is None:
        return earliest
    return max(earliest, min(now, saved.fetched_at - timedelta(days=OVERLAP_DAYS)))


class SimplefinProvider(Provider[SimplefinOptions, SimplefinCredentials]):
    spec = SPEC

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        #: the wall clock (aware UTC); tests pass their own
        self._clock = clock or (lambda: datetime.now(UTC))

    def fetch(
        self, ctx: FetchContext, options: SimplefinOptions, credentials: SimplefinCredentials
    ) -> Snapshot:
        mask = Masker(credentials.secret_values())
        now = self._clock()
        saved = load_state(ctx.state_dir, credentials.access_url)
        fresh = (
            saved is not None
            and saved.pending == options.pending
            and saved.fetched_at <= now < saved.fetched_at + timedelta(hours=options.refresh_hours)
        )
        if fresh:
            assert saved is not None
            return _with_removed(self._snapshot(saved.answer, mask), saved.removed)
        if ctx.state_dir is not None:
            recent = recent_requests(ctx.state_dir, now)
            if len(recent) >= DAILY_REQUEST_BUDGET:
                if saved is not None:  # the latest balances there are, not a failure
                    return _with_removed(self._snapshot(saved.answer, mask), saved.removed)
                raise RateLimited(
                    f"simplefin: {len(recent)} requests in the last 24 hours, and the SimpleFIN "
                    "Bridge expects at most 24 a day: finbot asks again after "
                    f"{recent[0] + timedelta(hours=24):%Y-%m-%d %H:%M} UTC"
                )
            record_request(ctx.state_dir, recent, now)
        start = int(window_start(now, saved, options.history_days).timestamp())
        client = SimplefinClient(credentials.access_url, timeout_s=options.timeout_s, masker=mask)
        answer = client.accounts(start_date=start, pending=options.pending)
        snapshot = self._snapshot(answer, mask)  # only an answer that maps is kept
        removed: tuple[str, ...] = ()
        if saved is not None and saved.pending and options.pending:
            removed = vanished_pending(saved.answer, answer, snapshot, mask)
        if ctx.state_dir is not None:
            save_state(
                ctx.state_dir,
                credentials.access_url,
                SavedAnswer(now, start, options.pending, answer, removed),
                mask,
            )
        return _with_removed(snapshot, removed)

    @staticmethod
    def _snapshot(answer: dict[str, Any], mask: Masker) -> Snapshot:
        try:
            return build_snapshot(answer, mask)
        except ProviderPayloadError as exc:  # may quote the answer: mask what it echoes
            raise ProviderPayloadError(mask(str(exc))) from None


def _with_removed(snapshot: Snapshot, removed: tuple[str, ...]) -> Snapshot:
    if not removed:
        return snapshot
    return Snapshot(snapshot.sub_accounts, snapshot.warnings, snapshot.transactions, removed)


def vanished_pending(
    previous: dict[str, Any], answer: dict[str, Any], snapshot: Snapshot, mask: Masker
) -> tuple[str, ...]:
    """The pending transactions of the ``previous`` answer that ``answer`` (asked with
    ``pending=1`` too) no longer lists, in accounts it lists without any error: they
    posted under another id or were dropped (SimpleFIN names no link between a pending
    transaction and the one that replaces it). Nothing when the answer reports a general
    error (its listing may be partial)."""
    found = notices(answer, mask)
    if any(n.prefix == "gen." for n in found):
        return ()
    errored_conns = {n.conn_id for n in found if n.conn_id}
    errored = {n.account_id for n in found if n.account_id}
    for account in answer.get("accounts") or []:
        if isinstance(account, dict) and account.get("conn_id") in errored_conns:
            errored.add(str(account.get("id")))
    try:
        before = build_snapshot(previous, mask)
    except ProviderError:
        return ()
    listed = {t.id for t in snapshot.transactions}
    subs = {s.id for s in snapshot.sub_accounts} - errored
    return tuple(
        t.id
        for t in before.transactions
        if t.pending and t.sub_account_id in subs and t.id not in listed
    )
