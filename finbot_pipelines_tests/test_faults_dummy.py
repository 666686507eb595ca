"""Faults of the ``dummy`` provider, one real hourly run over two hours.

The dummy has no server: its faults are its own failure options, set for the
second hour only (``fail_hours``), so the accounts are fetched in parallel. One
profile holds a healthy account and one account per fault. The dummy has no
connection to refuse nor HTTP status to answer: ``fail_kind: transient`` is what
both a refused connection and a 5xx become in every provider, so one account
stands for both. ``empty`` and ``malformed`` answer, like a broken API, a snapshot
the ingest must refuse (no sub-account; an asset valued NaN).

Expected values are the sums of the dummy's pure model (``dummy_snapshot``) of
each account at each hour: its pension (GBP, an asset) and mortgage (GBP, a
liability), in a GBP profile, so no FX is involved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from finbot_pipelines.providers.dummy.provider import RATE_LIMIT_RETRY_AFTER_S, dummy_snapshot
from finbot_pipelines_tests.faults import (
    FaultRun,
    assert_fresh,
    assert_no_duplicates,
    assert_profile,
    assert_stale,
    config_header,
    fault_hours,
    fetch_row,
    linked_account,
    run_hours,
)

PROFILE = "dora"
TIMEOUT_S = 1
MAX_ATTEMPTS = 2
FETCH = {"timeout_s": TIMEOUT_S, "max_attempts": MAX_ATTEMPTS, "backoff_s": 0, "max_workers": 8}
HEALTHY = "dummy-healthy"
OPTIONS: dict[str, Any] = {"sub_accounts": ["pension", "mortgage"]}


@dataclass(frozen=True)
class Fault:
    options: dict[str, Any]
    code: str
    attempts: int  # recorded in raw.fetches.attempt
    message: str  # a fragment of the recorded error message


FAULTS: dict[str, Fault] = {
    # sleeps past fetch.timeout_s: the ingest's timeout, retried
    "dummy-timeout": Fault(
        {"fail_kind": "timeout", "sleep_s": 3},
        "timeout",
        MAX_ATTEMPTS,
        f"no answer within {TIMEOUT_S} s",
    ),
    # a refused connection or a 5xx
    "dummy-transient": Fault(
        {"fail_kind": "transient"}, "transient", MAX_ATTEMPTS, "simulated transient failure"
    ),
    # a 429 asking to retry after RATE_LIMIT_RETRY_AFTER_S
    "dummy-429": Fault(
        {"fail_kind": "rate_limited"}, "rate_limited", MAX_ATTEMPTS, "simulated rate limit"
    ),
    "dummy-malformed": Fault(
        {"fail_kind": "malformed"}, "provider_error", 1, "value is not finite"
    ),
    "dummy-auth": Fault(
        {"fail_kind": "authentication_failure"},
        "authentication_failure",
        1,
        "simulated authentication failure",
    ),
    "dummy-empty": Fault({"fail_kind": "empty"}, "provider_error", 1, "no sub-account"),
}


def value_of(account: str, hour: datetime) -> float:
    """The dummy's model of ``account`` at ``hour``: items summed, liabilities negative."""
    snapshot = dummy_snapshot(account, OPTIONS, hour)
    return math.fsum(i.value for sa in snapshot.sub_accounts for i in sa.items)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> FaultRun:
    hours = fault_hours()
    fail_hours = [hours[-1].strftime("%Y-%m-%dT%H:00")]  # the second hour only
    config = config_header(PROFILE, "GBP", FETCH, "GBP: 0.85, USD: 1.10")
    config += linked_account(HEALTHY, PROFILE, "dummy", OPTIONS, False)
    for name, fault in FAULTS.items():
        options = {**OPTIONS, "fail_hours": fail_hours, **fault.options}
        config += linked_account(name, PROFILE, "dummy", options, False)
    home = tmp_path_factory.mktemp("faults-dummy") / "home"
    return run_hours(home, config, {}, hours)


def test_the_run_completes_and_the_healthy_account_is_fresh(run: FaultRun) -> None:
    assert run.success, run.failures
    assert run.accounts_failed  # the faulty accounts failed an hour: the run says so at its end
    values = {hour: value_of(HEALTHY, hour) for hour in run.hours}
    assert values[run.before] != values[run.hour]  # the hours are told apart by value
    assert_fresh(run, HEALTHY, values)


@pytest.mark.parametrize("account", list(FAULTS))
def test_a_failing_account_is_stale_with_its_error_code(run: FaultRun, account: str) -> None:
    fault = FAULTS[account]
    assert_stale(
        run,
        account,
        code=fault.code,
        attempts=fault.attempts,
        message=fault.message,
        value=value_of(account, run.before),  # the last good value, not the hour's
    )


def test_the_429_retry_after_was_honoured(run: FaultRun) -> None:
    # no backoff (backoff_s 0): the wait between the two attempts is the Retry-After
    f = fetch_row(run, "dummy-429", run.hour)
    waited = (f["finished_at"] - f["started_at"]).total_seconds()
    assert waited >= RATE_LIMIT_RETRY_AFTER_S * (MAX_ATTEMPTS - 1) - 0.01, waited


def test_every_account_counts_once_and_failures_are_stale(run: FaultRun) -> None:
    accounts = [HEALTHY, *FAULTS]
    before = math.fsum(value_of(a, run.before) for a in accounts)
    assert_profile(run, PROFILE, run.before, stale_accounts=0, net_worth=before)
    now = value_of(HEALTHY, run.hour) + math.fsum(value_of(a, run.before) for a in FAULTS)
    assert_profile(run, PROFILE, run.hour, stale_accounts=len(FAULTS), net_worth=now)


def test_nothing_is_duplicated(run: FaultRun) -> None:
    assert_no_duplicates(run)
