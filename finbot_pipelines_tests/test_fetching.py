"""The fetch runner: parallel, timeouts, retries with backoff, secrets masked, never raises."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pydantic import Field

from finbot_pipelines.config.schema import LinkedAccount
from finbot_pipelines.defs.ingest.assets import refuse_past_hours
from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import (
    FetchContext,
    Provider,
    ProviderCredentials,
    ProviderOptions,
    ProviderSpec,
    public,
    secret,
)
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    FetchWarning,
    Item,
    RateLimited,
    Snapshot,
    SubAccount,
    TransientError,
)
from finbot_pipelines.providers.fetching import (
    CredentialsUnavailable,
    FetchTask,
    RetryPolicy,
    iter_fetches,
    run_fetches,
    run_one,
)

HOUR = datetime(2026, 3, 2, 9)
SNAP = Snapshot(
    (
        SubAccount(
            "cur",
            "Current",
            "GBP",
            "depository",
            (Item("Cash", "asset", "cash", "cash", Decimal("10.00")),),
        ),
    )
)


class ScriptedOptions(ProviderOptions):
    x: int = Field(default=0, description="a number")


class ScriptedCredentials(ProviderCredentials):
    username: str | None = public("a user name", default=None)
    password: str | None = secret("a password", default=None)


SCRIPTED = ProviderSpec(
    id="scripted",
    description="test provider",
    options=ScriptedOptions,
    credentials=ScriptedCredentials,
    supports_historical=True,
)


class ScriptedProvider(Provider[ScriptedOptions, ScriptedCredentials]):
    """Raises the scripted errors in order, then returns its snapshot; records every call."""

    spec = SCRIPTED

    def __init__(
        self, script: list[BaseException | float] | None = None, snapshot: Snapshot = SNAP
    ) -> None:
        self.script = list(script or [])
        self.snapshot = snapshot
        self.calls: list[FetchContext] = []
        self.lock = threading.Lock()

    def fetch(
        self, ctx: FetchContext, options: ScriptedOptions, credentials: ScriptedCredentials
    ) -> Snapshot:
        with self.lock:
            self.calls.append(ctx)
            step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, float):
            time.sleep(step)
        return self.snapshot


POLICY = RetryPolicy(timeout_s=1.0, max_attempts=3, backoff_s=0.5, max_workers=4)


def task(
    p: ScriptedProvider, creds: Mapping[str, Any] | None = None, account: str = "acc"
) -> FetchTask:
    return FetchTask(HOUR, account, p, {"x": 1}, lambda: creds or {})


def task_with(p: ScriptedProvider, options: Mapping[str, Any]) -> FetchTask:
    return FetchTask(HOUR, "acc", p, options)


def test_success_first_try_passes_the_context() -> None:
    p = ScriptedProvider()
    t = FetchTask(
        HOUR,
        "acc",
        p,
        {"x": 1},
        valuation_ccy="EUR",
        priced_units=frozenset({"BTC"}),
        debug_dir=Path("/tmp/debug"),
        browser="/opt/chromium",
    )
    out = run_one(t, POLICY, sleep=lambda s: None)
    assert out.ok and out.attempts == 1 and out.snapshot == SNAP
    assert p.calls == [
        FetchContext("acc", HOUR, "EUR", frozenset({"BTC"}), Path("/tmp/debug"), "/opt/chromium")
    ]


def test_bad_options_fail_the_fetch_naming_the_field() -> None:
    out = run_one(task_with(ScriptedProvider(), {"x": "one"}), POLICY, sleep=lambda s: None)
    assert (out.ok, out.error_code, out.attempts) == (False, "invalid_options", 1)
    assert out.error_message == "options.x: expected a whole number, got 'one'"


def test_bad_credentials_never_quote_the_value() -> None:
    out = run_one(
        task(ScriptedProvider(), {"password": ["hunter2-secret"]}),  # type: ignore[dict-item]
        POLICY,
        sleep=lambda s: None,
    )
    assert (out.ok, out.error_code) == (False, "credentials_error")
    assert out.error_message == "scripted credentials: password: expected a string"
    assert "hunter2" not in (out.error_message or "")


def test_an_unreadable_vault_is_a_credentials_error() -> None:
    def broken() -> Mapping[str, Any]:
        raise CredentialsUnavailable("the vault key does not match")

    out = run_one(FetchTask(HOUR, "acc", ScriptedProvider(), {}, broken), POLICY)
    assert (out.ok, out.error_code) == (False, "credentials_error")
    assert "could not be read from the vault: the vault key does not match" in (
        out.error_message or ""
    )


def test_warnings_reach_the_outcome() -> None:
    warned = SNAP.with_warnings(FetchWarning("reconciliation", "balance 10 vs holdings 8"))
    out = run_one(task(ScriptedProvider(snapshot=warned)), POLICY, sleep=lambda s: None)
    assert out.snapshot is not None
    assert out.snapshot.warnings == (FetchWarning("reconciliation", "balance 10 vs holdings 8"),)


def test_unpriced_items_warn_and_an_all_unpriced_snapshot_fails() -> None:
    def wallet(*items: Item) -> Snapshot:
        return Snapshot((SubAccount("w", "Wallet", "USD", "investment", items),))

    eth = Item(
        "ETH", "asset", "crypto", "crypto_currency", Decimal(5), Decimal("0.002"), unit="ETH"
    )
    foo = Item("FOO", "asset", "crypto", "crypto_currency", None, Decimal(100), unit="FOO")
    btc = Item("BTC", "asset", "crypto", "crypto_currency", None, Decimal("0.5"), unit="BTC")
    # partly unpriced: the rest stays, FOO is named in a warning
    out = run_one(task(ScriptedProvider(snapshot=wallet(eth, foo))), POLICY)
    assert out.snapshot is not None
    (w,) = out.snapshot.warnings
    assert w.code == "unpriced" and "'FOO' (100 FOO)" in w.message and "unit_prices" in w.message
    # everything unpriced: a failure naming the currencies, never a success worth 0
    out = run_one(task(ScriptedProvider(snapshot=wallet(foo))), POLICY)
    assert (out.ok, out.error_code) == (False, "unpriced")
    assert "FOO" in (out.error_message or "")
    # a unit the household's unit prices know is valued downstream: no warning, no failure
    t = FetchTask(
        HOUR, "acc", ScriptedProvider(snapshot=wallet(btc)), {}, priced_units=frozenset({"BTC"})
    )
    out = run_one(t, POLICY)
    assert out.snapshot is not None and out.snapshot.warnings == ()


def test_transient_errors_are_retried_with_exponential_backoff() -> None:
    p = ScriptedProvider([TransientError("503"), TransientError("503")])
    sleeps: list[float] = []
    out = run_one(task(p), POLICY, sleep=sleeps.append)
    assert out.ok and out.attempts == 3
    assert sleeps == [0.5, 1.0]


def test_retry_after_is_honoured() -> None:
    p = ScriptedProvider([RateLimited("429", retry_after=7)])
    sleeps: list[float] = []
    out = run_one(task(p), POLICY, sleep=sleeps.append)
    assert out.ok and sleeps == [7.0]


def test_authentication_failure_is_not_retried() -> None:
    p = ScriptedProvider([AuthenticationFailure("bad login")])
    out = run_one(task(p), POLICY, sleep=lambda s: None)
    assert not out.ok
    assert (out.attempts, out.error_code, out.error_message) == (
        1,
        "authentication_failure",
        "bad login",
    )


def test_exhausted_retries_record_the_last_error() -> None:
    p = ScriptedProvider([TransientError("down")] * 3)
    out = run_one(task(p), POLICY, sleep=lambda s: None)
    assert (out.ok, out.attempts, out.error_code) == (False, 3, "transient")


def test_a_hanging_provider_times_out_and_is_retried() -> None:
    p = ScriptedProvider([3.0, 3.0])  # sleeps longer than the 1 s timeout twice, then answers
    policy = RetryPolicy(timeout_s=0.2, max_attempts=3, backoff_s=0)
    out = run_one(task(p), policy)
    assert out.ok and out.attempts == 3


def test_timeout_code_when_every_attempt_hangs() -> None:
    p = ScriptedProvider([2.0, 2.0])
    out = run_one(task(p), RetryPolicy(timeout_s=0.1, max_attempts=2, backoff_s=0))
    assert (out.ok, out.error_code) == (False, "timeout")


def test_provider_bug_becomes_provider_error_without_stopping() -> None:
    p = ScriptedProvider([KeyError("balance")])
    out = run_one(task(p), POLICY, sleep=lambda s: None)
    assert (out.ok, out.error_code, out.attempts) == (False, "provider_error", 1)
    assert "KeyError" in (out.error_message or "")


def test_credentials_in_error_messages_are_masked() -> None:
    secret = "s3cr3t-passw0rd"
    p = ScriptedProvider([AuthenticationFailure(f"login refused for password {secret}")])
    out = run_one(task(p, {"password": secret}), POLICY, sleep=lambda s: None)
    assert secret not in (out.error_message or "")
    assert "***" in (out.error_message or "")


def test_invalid_snapshot_is_a_provider_error() -> None:
    bad = Snapshot((SubAccount("x", "X", "gbp", "depository", ()),))

    out = run_one(task(ScriptedProvider(snapshot=bad)), POLICY, sleep=lambda s: None)
    assert (out.ok, out.error_code) == (False, "provider_error")


def test_fetches_run_in_parallel_and_keep_order() -> None:
    providers = [ScriptedProvider([0.3]) for _ in range(4)]
    tasks = [task(p, account=f"a{i}") for i, p in enumerate(providers)]
    t0 = time.monotonic()
    outs = run_fetches(tasks, RetryPolicy(timeout_s=5, max_workers=4))
    elapsed = time.monotonic() - t0
    assert [o.task.linked_account_id for o in outs] == ["a0", "a1", "a2", "a3"]
    assert all(o.ok for o in outs)
    assert elapsed < 4 * 0.3  # not one after the other


def test_outcomes_stream_as_each_fetch_finishes() -> None:
    """The fast accounts are handed over (to be landed and recorded) before the slow one
    answers, so their bookkeeping overlaps the wait."""
    tasks = [task(ScriptedProvider([0.6]), account="slow")]
    tasks += [task(ScriptedProvider([0.05]), account=f"fast{i}") for i in range(3)]
    t0 = time.monotonic()
    seen = [
        (tasks[i].linked_account_id, time.monotonic() - t0)
        for i, _ in iter_fetches(tasks, RetryPolicy(timeout_s=5, max_workers=4))
    ]
    assert [name for name, _ in seen][-1] == "slow"
    assert {name for name, _ in seen[:3]} == {"fast0", "fast1", "fast2"}
    assert all(at < 0.6 for _, at in seen[:3])  # before the slow one could answer


def test_one_failure_does_not_stop_the_others() -> None:
    tasks = [
        task(ScriptedProvider([AuthenticationFailure("no")]), account="bad"),
        task(ScriptedProvider(), account="good"),
    ]
    outs = run_fetches(tasks, POLICY, sleep=lambda s: None)
    assert [(o.task.linked_account_id, o.ok) for o in outs] == [("bad", False), ("good", True)]


def test_past_hours_are_refused_for_live_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    live = dataclasses.replace(SCRIPTED, id="live", supports_historical=False)
    real_get = registry.get_spec
    monkeypatch.setattr(
        "finbot_pipelines.defs.ingest.assets.get_spec",
        lambda pid: live if pid == "live" else real_get(pid),
    )
    accounts = [
        # model_construct: "live" is a stand-in, not a registered provider
        LinkedAccount.model_construct(
            id="bank", profile="me", provider="live", name="Bank", frozen=False
        ),
        LinkedAccount.model_construct(
            id="demo", profile="me", provider="dummy", name="Demo", frozen=False
        ),
    ]
    now = datetime(2026, 3, 2, 12, 10)
    # the hour that just ended is fine
    refuse_past_hours(accounts, [datetime(2026, 3, 2, 11)], now)
    with pytest.raises(dg.Failure) as info:
        refuse_past_hours(accounts, [now - timedelta(days=3)], now)
    text = str(info.value.description)
    assert "'bank' (live)" in text and "'demo'" not in text
    assert "rebuild the transforms" in text
    # historical-capable providers may fetch any hour
    refuse_past_hours(accounts[1:], [now - timedelta(days=300)], now)
