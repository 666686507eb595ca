"""Faults of a sheet provider (``google_sheets`` through gspread), one real hourly run, two hours.

Nine linked accounts of one profile, each reading its own fake Google Sheets API
(and OAuth token endpoint) speaking Google's wire protocol, see
:mod:`finbot_pipelines_tests.faults`: every account is healthy at the first
hour; at the second one stays healthy and each other meets one fault.

Every fake serves the sheet below, worth (by hand, GBP):
2500.50 cash + 11340 VWRL + 412.35 ISA cash - 640.20 card owed = 13612.65.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from finbot_pipelines_tests.fakes.sheets_server import (
    CellValue,
    FakeSheetsServer,
    SheetsFixture,
    make_service_account,
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

PROFILE = "carol"
KEY = "1FaUlTsHeEtKeY0123456789abcdefGHIJ"
TITLE = "Wealth"
GRID: list[list[CellValue]] = [
    ["ACCOUNTS"],
    ["Identifier", "Description", "Currency", "Type"],
    ["current", "Current account", "GBP", "depository"],
    ["isa", "Stocks & shares ISA", "GBP", "investment"],
    ["card", "Credit card", "GBP", "credit"],
    [],
    ["HOLDINGS"],
    ["Account", "Name", "Symbol", "Asset type", "Units", "Value"],
    ["current", "Cash", "", "cash", "", 2500.50],
    ["isa", "", "VWRL", "etf", 120, 11340],
    ["isa", "Cash", "", "cash", "", 412.35],
    ["card", "Balance", "", "credit_card", "", 640.20],
]
VALUE_GBP = 2500.50 + 11340 + 412.35 - 640.20  # 13612.65
TIMEOUT_S = 1
MAX_ATTEMPTS = 2
RETRY_AFTER_S = 1
FETCH = {"timeout_s": TIMEOUT_S, "max_attempts": MAX_ATTEMPTS, "backoff_s": 0.05, "max_workers": 1}
TOKEN, METADATA = "/token", f"/v4/spreadsheets/{KEY}"
VALUES = f"/v4/spreadsheets/{KEY}/values/%27{TITLE}%27"
HEALTHY = "sheet-healthy"


@dataclass(frozen=True)
class Fault:
    code: str
    attempts: int  # recorded in raw.fetches.attempt
    message: str  # a fragment of the recorded error message
    requests: tuple[str, ...]  # what the fake received at the fault hour, in order


# The codes are those finbot_pipelines/providers/google_sheets/ (client.py) gives each answer.
FAULTS: dict[str, Fault] = {
    # the fake holds the token request past fetch.timeout_s: the ingest's timeout, retried
    "sheet-timeout": Fault(
        "timeout", MAX_ATTEMPTS, f"no answer within {TIMEOUT_S:g} s", (TOKEN,) * 2
    ),
    # the fake stops listening after the first hour: connection refused, retried
    "sheet-refused": Fault("transient", MAX_ATTEMPTS, "could not be reached", ()),
    "sheet-5xx": Fault("transient", MAX_ATTEMPTS, "(HTTP 503)", (TOKEN, METADATA) * 2),
    "sheet-429": Fault("rate_limited", MAX_ATTEMPTS, "(HTTP 429)", (TOKEN, METADATA) * 2),
    # an HTML page with status 200 for the values: never retried, never a value
    "sheet-malformed": Fault("provider_error", 1, "not JSON", (TOKEN, METADATA, VALUES)),
    # the service account was deleted: the token endpoint answers invalid_grant
    "sheet-auth": Fault("authentication_failure", 1, "invalid_grant", (TOKEN,)),
    # the worksheet came back without any value
    "sheet-empty": Fault("provider_error", 1, "no cell marked ACCOUNTS", (TOKEN, METADATA, VALUES)),
    # the values stop after the ACCOUNTS table: no holdings, never accounts worth 0
    "sheet-partial": Fault(
        "provider_error", 1, "no cell marked HOLDINGS", (TOKEN, METADATA, VALUES)
    ),
}


def value_range(values: list[list[CellValue]] | None) -> bytes:
    """A ValueRange as the Sheets API answers it (no ``values`` key when there are none)."""
    body: dict[str, Any] = {"range": f"{TITLE}!A1:Z1000", "majorDimension": "ROWS"}
    if values:
        body["values"] = values
    return json.dumps(body).encode()


def switch_for(name: str, fake: FakeSheetsServer) -> FaultSwitch:
    """The fault of account ``name``: how its fake answers after the first hour."""

    def api_error(status: int, retry_after: str | None = None) -> Callable[[str], None]:
        def fault(p: str) -> None:
            if p.startswith("/v4/"):
                fake.fail_next(status, retry_after=retry_after, path_prefix=p)

        return fault

    def values(body: bytes) -> Callable[[str], None]:
        def fault(p: str) -> None:
            if p == VALUES:
                fake.fail_next(200, path_prefix=p, body=body)

        return fault

    def delete_service_account(p: str) -> None:
        fake.service_accounts.clear()

    faults: dict[str, Callable[[str], None] | None] = {
        HEALTHY: None,
        "sheet-refused": None,
        "sheet-5xx": api_error(503),
        "sheet-429": api_error(429, str(RETRY_AFTER_S)),
        "sheet-malformed": values(b"<html><body>Service Unavailable</body></html>"),
        "sheet-auth": delete_service_account,
        "sheet-empty": values(value_range(None)),
        "sheet-partial": values(value_range(GRID[:5])),
    }
    if name == "sheet-timeout":
        switch = FaultSwitch(3)
        switch.fault = switch.hold
        return switch
    at_switch = fake.refuse_connections if name == "sheet-refused" else None
    return FaultSwitch(3, faults[name], at_switch=at_switch)


@dataclass
class World:
    run: FaultRun
    switches: dict[str, FaultSwitch]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    info, public_key = make_service_account()
    fakes: dict[str, FakeSheetsServer] = {}
    switches: dict[str, FaultSwitch] = {}
    try:
        config = config_header(PROFILE, "GBP", FETCH, "GBP: 0.85, USD: 1.10")
        secrets: dict[str, dict[str, str]] = {}
        for name in (HEALTHY, *FAULTS):
            fake = fakes[name] = FakeSheetsServer().start()
            fake.register_service_account(info["client_email"], public_key)
            fake.add_spreadsheet(KEY, {TITLE: GRID}, shared_with=[info["client_email"]])
            fake.on_request = switches[name] = switch_for(name, fake)
            sheets = SheetsFixture(fake, info)
            config += linked_account(name, PROFILE, "google_sheets", sheets.options(KEY), True)
            secrets[name] = sheets.credentials()
        home = tmp_path_factory.mktemp("faults-sheet") / "home"
        yield World(run_hours(home, config, secrets, fault_hours()), switches)
    finally:
        stop_fakes(switches, fakes)


def test_the_run_completes_and_the_healthy_account_is_fresh(world: World) -> None:
    assert world.run.success, world.run.failures
    assert world.run.accounts_failed  # the faulty accounts failed an hour: the run says so
    assert_fresh(world.run, HEALTHY, VALUE_GBP)
    switch = world.switches[HEALTHY]
    assert switch.first_hour_paths() == [TOKEN, METADATA, VALUES]
    assert switch.fault_hour_paths() == (TOKEN, METADATA, VALUES)


@pytest.mark.parametrize("account", list(FAULTS))
def test_a_failing_account_is_stale_with_its_error_code(world: World, account: str) -> None:
    fault = FAULTS[account]
    switch = world.switches[account]
    assert switch.first_hour_paths() == [TOKEN, METADATA, VALUES]  # healthy first hour
    assert_stale(
        world.run,
        account,
        code=fault.code,
        attempts=fault.attempts,
        message=fault.message,
        value=VALUE_GBP,
    )
    # transient faults were retried (each attempt from the token on), others not
    assert switch.fault_hour_paths() == fault.requests


def test_the_429_retry_after_was_honoured(world: World) -> None:
    # backoff alone would wait 0.05 s: the gap comes from the answer's Retry-After
    arrivals = world.switches["sheet-429"].fault_hour_requests(METADATA)
    assert_retry_after_honoured(arrivals, RETRY_AFTER_S)


def test_every_account_counts_once_and_failures_are_stale(world: World) -> None:
    assert_counted_once_at_both_hours(world.run, PROFILE, len(FAULTS), VALUE_GBP)


def test_nothing_is_duplicated(world: World) -> None:
    assert_no_duplicates(world.run)
