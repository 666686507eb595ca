"""Faults of an API provider (``plaid``), one real hourly run over two live hours.

Nine linked accounts of one profile, each on its own fake Plaid API speaking
Plaid's wire protocol (see :mod:`finbot_pipelines_tests.faults`): every account
is healthy at the first hour; at the second, one stays healthy and each other
meets one fault. Every fake serves Plaid's published examples, whose accounts
sum (by hand, USD, see test_provider_plaid; investment accounts at their listed
holdings: IRA 0.01 + 110, 401k 2.11 + 20.84 + 636.309 + 1373.6865 + 948.08 +
12345.67 = 15326.6955, crypto 4437.35905) to
110 + 43200 + 110.01 + 15326.6955 + 4437.35905 - 410 - 65262 - 56302.06 = -58789.99545.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from finbot_pipelines_tests.fakes.plaid_server import (
    BALANCE,
    HOLDINGS,
    INVESTMENT_TRANSACTIONS,
    LIABILITIES,
    SYNC,
    FakePlaid,
)
from finbot_pipelines_tests.faults import (
    FaultRun,
    FaultSwitch,
    assert_counted_once_at_both_hours,
    assert_fresh,
    assert_no_duplicates,
    assert_retry_after_honoured,
    assert_stale,
    config_header,
    fault_hours,
    linked_account,
    run_hours,
    stop_fakes,
)

PROFILE = "alice"
VALUE_USD = -58789.99545  # every account's value, by hand (module docstring)
TIMEOUT_S = 1
MAX_ATTEMPTS = 2
RETRY_AFTER_S = 1
FETCH = {"timeout_s": TIMEOUT_S, "max_attempts": MAX_ATTEMPTS, "backoff_s": 0.05, "max_workers": 1}
# a first fetch: balance, holdings, liabilities, transactions sync, investment transactions
FIRST_FETCH = [BALANCE, HOLDINGS, LIABILITIES, SYNC, INVESTMENT_TRANSACTIONS]
REQUESTS_PER_FETCH = len(FIRST_FETCH)
# an hour later the investment transactions are not asked again (once a day)
LATER_FETCH = [BALANCE, HOLDINGS, LIABILITIES, SYNC]
HEALTHY = "plaid-healthy"


@dataclass(frozen=True)
class Fault:
    code: str
    attempts: int  # recorded in raw.fetches.attempt
    message: str  # a fragment of the recorded error message
    balance_calls: int  # /accounts/balance/get calls the fake received at the fault hour


# The codes are those providers/plaid/client.py and mapping.py document for each answer
# (typed errors of providers/contract.py).
FAULTS: dict[str, Fault] = {
    # the fake holds the request past fetch.timeout_s: the ingest's timeout, retried
    "plaid-timeout": Fault("timeout", MAX_ATTEMPTS, f"no answer within {TIMEOUT_S} s", 2),
    # the fake stops listening after the first hour: connection refused, retried
    "plaid-refused": Fault("transient", MAX_ATTEMPTS, "connection failed (refused)", 0),
    "plaid-5xx": Fault("transient", MAX_ATTEMPTS, "HTTP 500 API_ERROR/INTERNAL_SERVER_ERROR", 2),
    "plaid-429": Fault("rate_limited", MAX_ATTEMPTS, "HTTP 429 RATE_LIMIT_EXCEEDED", 2),
    # an HTML error page with status 200: never retried, never a value
    "plaid-malformed": Fault("provider_error", 1, "malformed answer", 1),
    "plaid-auth": Fault("authentication_failure", 1, "ITEM_LOGIN_REQUIRED", 1),
    # well-formed answers listing no account: an error, never a balance of 0
    "plaid-empty": Fault("provider_error", 1, "lists no account", 1),
    # the holdings answer lacks every security its holdings refer to: one missing security
    # only leaves its holdings out (a warning), none at all leaves accounts with nothing
    "plaid-partial": Fault("provider_error", 1, "absent from securities", 1),
}


def empty_answer(fake: FakePlaid, path: str) -> dict[str, Any]:
    body = copy.deepcopy(fake.responses[path])
    body["accounts"] = []
    if path == HOLDINGS:
        body["holdings"], body["securities"] = [], []
    if path == LIABILITIES:
        body["liabilities"] = {"credit": [], "mortgage": [], "student": []}
    return body


def partial_holdings(fake: FakePlaid) -> dict[str, Any]:
    body = copy.deepcopy(fake.responses[HOLDINGS])
    body["securities"] = []  # every holding refers to an absent security
    return body


def switch_for(name: str, fake: FakePlaid) -> FaultSwitch:
    """The fault of account ``name``: how its fake answers after the first hour."""
    faults: dict[str, Callable[[str], None] | None] = {
        HEALTHY: None,
        "plaid-refused": None,
        "plaid-5xx": lambda p: fake.fail_next(p, 500, "INTERNAL_SERVER_ERROR", "API_ERROR"),
        "plaid-429": lambda p: fake.fail_next(
            p,
            429,
            "RATE_LIMIT_EXCEEDED",
            "RATE_LIMIT_EXCEEDED",
            {"Retry-After": str(RETRY_AFTER_S)},
        ),
        "plaid-malformed": lambda p: fake.malformed(p, "<html><body>Bad gateway</body></html>"),
        "plaid-auth": lambda p: fake.fail_next(p, 400, "ITEM_LOGIN_REQUIRED", "ITEM_ERROR"),
        "plaid-empty": lambda p: fake.malformed(p, empty_answer(fake, p)),
        "plaid-partial": lambda p: (
            fake.malformed(p, partial_holdings(fake)) if p == HOLDINGS else None
        ),
    }
    if name == "plaid-timeout":
        switch = FaultSwitch(REQUESTS_PER_FETCH)
        switch.fault = switch.hold
        return switch
    at_switch = fake.refuse_connections if name == "plaid-refused" else None
    return FaultSwitch(REQUESTS_PER_FETCH, faults[name], at_switch=at_switch)


@dataclass
class World:
    run: FaultRun
    switches: dict[str, FaultSwitch]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fakes: dict[str, FakePlaid] = {}
    switches: dict[str, FaultSwitch] = {}
    try:
        config = config_header(PROFILE, "USD", FETCH, "GBP: 0.85, USD: 1.10")
        secrets: dict[str, dict[str, str]] = {}
        for name in (HEALTHY, *FAULTS):
            fake = fakes[name] = FakePlaid()
            fake.start()
            fake.on_request = switches[name] = switch_for(name, fake)
            config += linked_account(name, PROFILE, "plaid", {"api_url": fake.url}, True)
            secrets[name] = fake.credentials()
        home = tmp_path_factory.mktemp("faults-api") / "home"
        yield World(run_hours(home, config, secrets, fault_hours()), switches)
    finally:
        stop_fakes(switches, fakes)


def test_the_run_completes_and_the_healthy_account_is_fresh(world: World) -> None:
    assert world.run.success, world.run.failures
    assert world.run.accounts_failed  # the faulty accounts failed an hour: the run says so
    assert_fresh(world.run, HEALTHY, VALUE_USD)
    # it was fetched in full at both hours (investment transactions once a day)
    switch = world.switches[HEALTHY]
    assert switch.first_hour_paths() == FIRST_FETCH
    assert list(switch.fault_hour_paths()) == LATER_FETCH


@pytest.mark.parametrize("account", list(FAULTS))
def test_a_failing_account_is_stale_with_its_error_code(world: World, account: str) -> None:
    fault = FAULTS[account]
    switch = world.switches[account]
    assert switch.first_hour_paths() == FIRST_FETCH  # healthy first hour
    assert_stale(
        world.run,
        account,
        code=fault.code,
        attempts=fault.attempts,
        message=fault.message,
        value=VALUE_USD,
    )
    # transient faults were retried (each attempt failed on its first call), others not
    assert len(switch.fault_hour_requests(BALANCE)) == fault.balance_calls
    if account != "plaid-partial":
        assert len(switch.fault_hour_requests()) == fault.balance_calls
    else:
        assert len(switch.fault_hour_requests(HOLDINGS)) == 1


def test_the_429_retry_after_was_honoured(world: World) -> None:
    # backoff alone would wait 0.05 s: the gap comes from the answer's Retry-After
    assert_retry_after_honoured(world.switches["plaid-429"].fault_hour_requests(), RETRY_AFTER_S)


def test_every_account_counts_once_and_failures_are_stale(world: World) -> None:
    assert_counted_once_at_both_hours(world.run, PROFILE, len(FAULTS), VALUE_USD)


def test_nothing_is_duplicated(world: World) -> None:
    assert_no_duplicates(world.run)
