"""Faults of a scraped portal (``aegon_targetplan``: Playwright + Chromium), one real hourly run.

Eight linked accounts of one profile, each on its own local copy of the Aegon
Targetplan portal (:class:`FakePortals`): one healthy, one per fault, all
fetched in parallel at the newest complete hour.

Unlike the other fault modules, this one runs a single hour: a portal fetch
starts a Chromium (about 1.5 s of CPU each), and a healthy first hour for every
account would add eight more to a module that must stay short. So a failing
account here never had data: it has no valuation row (there is nothing to
carry), is counted stale in its profile and listed, with its error code and no
success, in the health mart. Carrying a failing account's last value is covered
by the other fault modules, through the same ingest and marts.

The healthy account holds (by hand, GBP): £12,345.67 + £999 = 13344.67.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from finbot_pipelines.providers.base import DEFAULT_BROWSER
from finbot_pipelines_tests.fakes.portals import AegonProduct, AegonUser, FakePortals
from finbot_pipelines_tests.faults import (
    FaultRun,
    assert_failed_without_data,
    assert_fresh,
    assert_no_duplicates,
    assert_profile,
    assert_retry_after_honoured,
    config_header,
    fault_hours,
    linked_account,
    run_hours,
)

pytestmark = pytest.mark.skipif(
    not Path(DEFAULT_BROWSER).exists(), reason="Chromium is not installed"
)

PROFILE = "erin"
USERNAME, PASSWORD = "jsmith42", "Corr3ct-Horse!"
PRODUCTS = [
    AegonProduct("Aegon Workplace Pension", "TP12345678", "£12,345.67"),
    AegonProduct("Aegon Top-up Plan", "TP55500011", "£999"),
]
VALUE_GBP = 12345.67 + 999  # 13344.67
MAX_ATTEMPTS = 2
RETRY_AFTER_S = 3
PORTAL_TIMEOUT_S = 30  # every navigation and wait of a healthy fetch (8 Chromiums on 2 cores)
SHORT_TIMEOUT_S = 2  # the timeout account's
FETCH = {"timeout_s": 120, "max_attempts": MAX_ATTEMPTS, "backoff_s": 0.1, "max_workers": 8}
LOGIN = "/targetplanUI/login"
HEALTHY = "aegon-healthy"


@dataclass(frozen=True)
class Fault:
    code: str
    attempts: int  # recorded in raw.fetches.attempt
    message: str  # a fragment of the recorded error message
    login_pages: int  # GET of the login page the portal received (one per attempt)
    login_posts: int  # login forms it received


# The codes are those providers/browser.py and aegon_targetplan/provider.py document
# (HTTP statuses are mapped by providers/http.py's error_for_status).
FAULTS: dict[str, Fault] = {
    # the login page takes longer than the account's timeout_s (Playwright's): retried
    "aegon-timeout": Fault(
        "timeout", MAX_ATTEMPTS, f"no answer within {SHORT_TIMEOUT_S} s", MAX_ATTEMPTS, 0
    ),
    # nobody listens on the portal's port: retried
    "aegon-refused": Fault("transient", MAX_ATTEMPTS, "ERR_CONNECTION_REFUSED", 0, 0),
    "aegon-5xx": Fault(
        "transient",
        MAX_ATTEMPTS,
        "login page (/targetplanUI/login) failed (HTTP 503)",
        MAX_ATTEMPTS,
        0,
    ),
    "aegon-429": Fault(
        "rate_limited",
        MAX_ATTEMPTS,
        "login page (/targetplanUI/login) is rate limiting (HTTP 429)",
        MAX_ATTEMPTS,
        0,
    ),
    # the card values moved to another element: the layout changed, never a guessed value
    "aegon-malformed": Fault("provider_error", 1, "value (span.currency-hero) not found", 1, 1),
    "aegon-auth": Fault("authentication_failure", 1, "login refused", 1, 1),
    # a product card shows no value at all
    "aegon-partial": Fault("provider_error", 1, "unreadable value ''", 1, 1),
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def portal_for(name: str) -> FakePortals:
    """A started local portal answering account ``name`` with its fault."""
    portal = FakePortals(seed=7).start()
    products = PRODUCTS
    if name == "aegon-partial":
        products = [PRODUCTS[0], AegonProduct("Aegon Top-up Plan", "TP55500011", "")]
    portal.add_aegon_user(AegonUser(USERNAME, PASSWORD, products=products))
    if name == "aegon-timeout":
        portal.slow_paths[LOGIN] = SHORT_TIMEOUT_S + 4
    elif name == "aegon-5xx":
        portal.error_status = 503
    elif name == "aegon-429":
        portal.error_status = 429
        portal.error_headers = {"Retry-After": str(RETRY_AFTER_S)}
    elif name == "aegon-malformed":
        portal.change_layout("aegon_value")
    return portal


@dataclass
class World:
    run: FaultRun
    portals: dict[str, FakePortals]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("faults-portal")
    portals: dict[str, FakePortals] = {}
    try:
        config = config_header(PROFILE, "GBP", FETCH, "GBP: 0.85, USD: 1.10")
        secrets: dict[str, dict[str, str]] = {}
        for name in (HEALTHY, *FAULTS):
            if name == "aegon-refused":
                base_url = f"http://127.0.0.1:{closed_port()}"
            else:
                portals[name] = portal_for(name)
                base_url = portals[name].url
            timeout = SHORT_TIMEOUT_S if name == "aegon-timeout" else PORTAL_TIMEOUT_S
            options = {"base_url": base_url, "timeout_s": timeout, "debug_dir": str(tmp / "debug")}
            config += linked_account(name, PROFILE, "aegon_targetplan", options, True)
            password = "Wr0ng-Horse!" if name == "aegon-auth" else PASSWORD
            secrets[name] = {"username": USERNAME, "password": password}
        (hour,) = fault_hours(1)
        yield World(run_hours(tmp / "home", config, secrets, [hour]), portals)
    finally:
        with ThreadPoolExecutor(max(1, len(portals))) as pool:  # each waits for its poll
            list(pool.map(FakePortals.stop, portals.values()))


def requests(portal: FakePortals, method: str, path: str) -> list[float]:
    return [t for t, m, p in portal.requests if (m, p) == (method, path)]


def test_the_run_completes_and_the_healthy_account_is_fresh(world: World) -> None:
    assert world.run.success, world.run.failures
    assert world.run.accounts_failed  # the faulty accounts failed an hour: the run says so
    assert_fresh(world.run, HEALTHY, VALUE_GBP)
    portal = world.portals[HEALTHY]
    assert len(requests(portal, "POST", LOGIN)) == 1
    assert [a.ok for a in portal.attempts] == [True]


@pytest.mark.parametrize("account", list(FAULTS))
def test_a_failing_account_is_recorded_with_its_error_code(world: World, account: str) -> None:
    fault = FAULTS[account]
    assert_failed_without_data(
        world.run, account, code=fault.code, attempts=fault.attempts, message=fault.message
    )
    portal = world.portals.get(account)
    if portal is None:  # refused: nothing listened
        return
    # transient faults were retried (one login page per attempt), others not
    assert len(requests(portal, "GET", LOGIN)) == fault.login_pages
    assert len(requests(portal, "POST", LOGIN)) == fault.login_posts


def test_the_wrong_password_was_tried_once(world: World) -> None:
    attempts = world.portals["aegon-auth"].attempts
    assert [(a.username, a.ok) for a in attempts] == [(USERNAME, False)]


def test_the_429_retry_after_was_honoured(world: World) -> None:
    # backoff alone would wait 0.1 s, and a Chromium start takes about 1 s
    arrivals = requests(world.portals["aegon-429"], "GET", LOGIN)
    assert_retry_after_honoured(arrivals, RETRY_AFTER_S)


def test_every_account_counts_once_and_failures_are_stale(world: World) -> None:
    # only the healthy account has data; the seven others count as stale, never as 0
    assert_profile(
        world.run, PROFILE, world.run.hour, stale_accounts=len(FAULTS), net_worth=VALUE_GBP
    )


def test_nothing_is_duplicated(world: World) -> None:
    assert_no_duplicates(world.run)
