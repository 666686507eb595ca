"""Run provider fetches: in parallel, each attempt under a timeout, transient errors retried.

Plain Python, no Dagster: the ingest asset builds a list of `FetchTask`s and gets
one `FetchOutcome` per task back, in the same order. A task never raises: every
failure becomes an outcome with an error code, so one account failing never stops
the others. Credentials are resolved inside the worker, just before the call,
and any credential value that leaks into an error message is masked.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from finbot_pipelines.providers.base import (
    DEFAULT_BROWSER,
    FetchContext,
    Provider,
    fetch_snapshot,
)
from finbot_pipelines.providers.contract import (
    CredentialsError,
    FetchTimeout,
    FetchWarning,
    ProviderError,
    Snapshot,
)
from finbot_pipelines.providers.http import Masker

MAX_RETRY_AFTER_S = 120.0
MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 60.0
    max_attempts: int = 3
    backoff_s: float = 2.0
    max_workers: int = 8


@dataclass(frozen=True)
class FetchTask:
    """One attempt-set at one linked account for one hour.

    ``credentials`` is called inside the worker, just before each attempt; it may
    raise :class:`CredentialsUnavailable` (e.g. the vault cannot be opened)."""

    hour: datetime
    linked_account_id: str
    provider: Provider[Any, Any]
    options: Mapping[str, Any]
    credentials: Callable[[], Mapping[str, Any]] = field(default=lambda: {})
    valuation_ccy: str | None = None
    priced_units: frozenset[str] = field(default_factory=frozenset)
    debug_dir: Path | None = None
    browser: str = DEFAULT_BROWSER
    #: the folder of all accounts' state; the context gets this account's subfolder
    state_root: Path | None = None
    transactions_cursor: str | None = None

    def context(self) -> FetchContext:
        return FetchContext(
            linked_account_id=self.linked_account_id,
            hour=self.hour,
            valuation_ccy=self.valuation_ccy,
            priced_units=self.priced_units,
            debug_dir=self.debug_dir,
            browser=self.browser,
            state_dir=(
                self.state_root / self.linked_account_id if self.state_root is not None else None
            ),
            transactions_cursor=self.transactions_cursor,
        )


class CredentialsUnavailable(Exception):
    """The credentials resolver could not read the vault (the message names why)."""


@dataclass(frozen=True)
class FetchOutcome:
    task: FetchTask
    started_at: datetime
    finished_at: datetime
    attempts: int
    snapshot: Snapshot | None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.snapshot is not None


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def mask_secrets(message: str, secrets: Sequence[str]) -> str:
    """Replace every credential value (of 4+ characters) found in ``message`` by ***,
    in its plain and encoded forms."""
    return Masker(secrets)(message)


def _secret_values(provider: Provider[Any, Any], creds: Mapping[str, Any]) -> list[str]:
    """The credential values to mask: those the provider's credentials model declares
    secret (or masked); every value when the entry does not even parse."""
    try:
        return provider.spec.parse_credentials(creds).secret_values()
    except ProviderError:
        return [v for v in creds.values() if isinstance(v, str)]


def _masked(snapshot: Snapshot, secrets: Sequence[str]) -> Snapshot:
    """The snapshot with every credential value masked in its warnings (a provider may
    quote a request or an answer in one) and in its transactions' texts."""
    if not secrets or not (snapshot.warnings or snapshot.transactions):
        return snapshot
    mask = Masker(secrets)
    warnings = tuple(
        FetchWarning(w.code, mask(w.message)[:MAX_MESSAGE_CHARS]) for w in snapshot.warnings
    )
    transactions = tuple(
        dataclasses.replace(
            t,
            description=mask(t.description),
            merchant=mask(t.merchant) if t.merchant else t.merchant,
            category=mask(t.category) if t.category else t.category,
        )
        for t in snapshot.transactions
    )
    return dataclasses.replace(snapshot, warnings=warnings, transactions=transactions)


def _call_with_timeout(fn: Callable[[], Snapshot], timeout_s: float) -> Snapshot:
    """Run ``fn`` in a daemon thread; raise FetchTimeout if it has not returned in time.

    A thread cannot be killed: a provider that hangs keeps its thread until it
    returns, but the fetch is recorded as timed out and the run moves on.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="finbot-fetch", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise FetchTimeout(f"no answer within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    result: Snapshot = box["result"]
    return result


def _resolve_credentials(task: FetchTask) -> Mapping[str, Any]:
    try:
        return task.credentials()
    except CredentialsUnavailable as exc:
        raise CredentialsError(
            f"the credentials of linked account '{task.linked_account_id}' could not be read "
            f"from the vault: {exc}"
        ) from exc


def run_one(
    task: FetchTask, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep
) -> FetchOutcome:
    started = _utcnow()
    secrets: list[str] = []
    attempt = 0
    error: ProviderError | None = None
    while attempt < policy.max_attempts:
        attempt += 1
        try:
            creds = _resolve_credentials(task)
            secrets = _secret_values(task.provider, creds)
            snapshot = _call_with_timeout(
                partial(
                    fetch_snapshot,
                    task.provider.spec,
                    task.provider,
                    task.context(),
                    task.options,
                    creds,
                ),
                policy.timeout_s,
            )
            return FetchOutcome(task, started, _utcnow(), attempt, _masked(snapshot, secrets))
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # a provider bug must not stop the other accounts
            error = ProviderError(f"{type(exc).__name__}: {exc}")
        if not error.retryable or attempt >= policy.max_attempts:
            break
        delay = policy.backoff_s * (2 ** (attempt - 1))
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_S))
        if delay > 0:
            sleep(delay)
    assert error is not None
    message = mask_secrets(str(error) or type(error).__name__, secrets)[:MAX_MESSAGE_CHARS]
    return FetchOutcome(task, started, _utcnow(), attempt, None, error.code, message)


def run_fetches(
    tasks: Sequence[FetchTask],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> list[FetchOutcome]:
    """Fetch every task in parallel (up to ``policy.max_workers``); outcomes keep task order."""
    outcomes: list[FetchOutcome | None] = [None] * len(tasks)
    for index, outcome in iter_fetches(tasks, policy, sleep):
        outcomes[index] = outcome
    return [o for o in outcomes if o is not None]


def iter_fetches(
    tasks: Sequence[FetchTask],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[int, FetchOutcome]]:
    """Fetch every task in parallel; yield (task index, outcome) as each one finishes,
    so the caller can land an account while slower ones are still answering."""
    if not tasks:
        return
    workers = max(1, min(policy.max_workers, len(tasks)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="finbot-ingest") as pool:
        futures = {pool.submit(run_one, t, policy, sleep): i for i, t in enumerate(tasks)}
        for future in as_completed(futures):
            yield futures[future], future.result()
