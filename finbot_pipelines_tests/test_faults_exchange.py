"""Faults of an exchange provider (``binance`` through ccxt), one real hourly run over two hours.

Nine linked accounts of one profile, each on its own fake Binance spot API
speaking Binance's wire protocol (signed requests, Binance's error codes), see
:mod:`finbot_pipelines_tests.faults`: every account is healthy at the first
hour; at the second one stays healthy and each other meets one fault.

Every fake holds (by hand, quote currency EUR): BTC 0.4 free + 0.1 locked at
BTC/EUR 60000 = 30000; ETH 2 at ETH/BTC 0.05 (so 3000 EUR each) = 6000; EUR 100.
Total 36100 EUR.

A ticker answer lacking a market is no longer a fault: the balance is kept unpriced
and the rest valued (with an ``unpriced`` warning; tested in test_provider_crypto).
The fault is an account whose every balance is unpriced: at the fault hour it holds
only ETHW, a token without any market on the fake nor a default CoinGecko id, so
nothing can be valued (``unpriced``, never a success worth 0).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from finbot_pipelines_tests.conftest import SHARED_DATA
from finbot_pipelines_tests.fakes import binance_server as bn
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

PROFILE = "bruno"
VALUE_EUR = 0.5 * 60000 + 2 * 0.05 * 60000 + 100  # 36100
TIMEOUT_S = 1
MAX_ATTEMPTS = 2
RETRY_AFTER_S = 1
FETCH = {"timeout_s": TIMEOUT_S, "max_attempts": MAX_ATTEMPTS, "backoff_s": 0.05, "max_workers": 1}
MARKETS, ACCOUNT, TICKERS = "/api/v3/exchangeInfo", "/api/v3/account", "/api/v3/ticker/24hr"
HEALTHY = "binance-healthy"
CREDENTIALS = {"api_key": bn.API_KEY, "api_secret": bn.API_SECRET}


@dataclass(frozen=True)
class Fault:
    code: str
    attempts: int  # recorded in raw.fetches.attempt
    message: str  # a fragment of the recorded error message
    requests: tuple[str, ...]  # what the fake received at the fault hour, in order


# The codes are those providers/exchanges/provider.py documents for each answer.
FAULTS: dict[str, Fault] = {
    # the fake holds the first request past fetch.timeout_s: the ingest's timeout, retried
    "binance-timeout": Fault(
        "timeout", MAX_ATTEMPTS, f"no answer within {TIMEOUT_S:g} s", (MARKETS,) * 2
    ),
    # the fake stops listening after the first hour: connection refused, retried
    "binance-refused": Fault("transient", MAX_ATTEMPTS, "exchange unreachable", ()),
    "binance-5xx": Fault("transient", MAX_ATTEMPTS, "503 Service Unavailable", (MARKETS,) * 2),
    "binance-429": Fault("rate_limited", MAX_ATTEMPTS, "Too many requests", (MARKETS,) * 2),
    # an amount that is not a number: never retried, never a value
    "binance-malformed": Fault("provider_error", 1, "malformed answer", (MARKETS, ACCOUNT)),
    # the API key was revoked: Binance answers 401 -2015
    "binance-auth": Fault("authentication_failure", 1, "-2015", (MARKETS, ACCOUNT)),
    # HTTP 200 with an empty body where the balances should be
    "binance-empty": Fault("provider_error", 1, "no 'balances' list", (MARKETS, ACCOUNT)),
    # the account holds a token without any market nor unit price: nothing can be valued,
    # a failure naming it (never a success worth 0); not retried, no ticker asked
    "binance-unpriced": Fault(
        "unpriced", 1, "cannot value anything this account holds: ETHW", (MARKETS, ACCOUNT)
    ),
}


def fake_state() -> bn.BinanceState:
    """The published example answers, with the balances and tickers of the docstring."""
    state = bn.BinanceFake.state_from_examples(SHARED_DATA)
    template = next(iter(state.tickers.values()))
    state.account["balances"] = [
        {"asset": "BTC", "free": "0.40000000", "locked": "0.10000000"},
        {"asset": "ETH", "free": "2.00000000", "locked": "0.00000000"},
        {"asset": "EUR", "free": "100.00000000", "locked": "0.00000000"},
    ]
    state.tickers = {
        "BTCEUR": bn.ticker_24hr(template, "BTCEUR", "60000.00000000"),
        "ETHBTC": bn.ticker_24hr(template, "ETHBTC", "0.05000000"),
    }
    return state


def switch_for(name: str, fake: bn.BinanceFake) -> FaultSwitch:
    """The fault of account ``name``: how its fake answers after the first hour."""
    st = fake.state

    def answer(body: object, status: int, headers: dict[str, str] | None = None) -> None:
        fake.fail_next(body, status, headers, path_prefix=MARKETS)

    def on(path: str, body: object) -> Callable[[str], None]:
        return lambda p: fake.fail_next(body, 200, path_prefix=p) if p == path else None

    def revoke_key(p: str) -> None:
        st.api_key = "revoked-key"

    too_many = {"code": -1003, "msg": "Too many requests; current limit is 6000 request weight."}
    bad_amount = copy.deepcopy(st.account)
    bad_amount["balances"][0]["free"] = "lots"
    unpriced_only = copy.deepcopy(st.account)
    unpriced_only["balances"] = [{"asset": "ETHW", "free": "2.00000000", "locked": "0.00000000"}]
    faults: dict[str, Callable[[str], None] | None] = {
        HEALTHY: None,
        "binance-refused": None,
        "binance-5xx": lambda p: answer("<html><body>503 Service Unavailable</body></html>", 503),
        "binance-429": lambda p: answer(too_many, 429, {"Retry-After": str(RETRY_AFTER_S)}),
        "binance-malformed": on(ACCOUNT, bad_amount),
        "binance-auth": revoke_key,
        "binance-empty": on(ACCOUNT, ""),
        "binance-unpriced": on(ACCOUNT, unpriced_only),
    }
    if name == "binance-timeout":
        switch = FaultSwitch(3)
        switch.fault = switch.hold
        return switch
    at_switch = fake.refuse_connections if name == "binance-refused" else None
    return FaultSwitch(3, faults[name], at_switch=at_switch)


@dataclass
class World:
    run: FaultRun
    switches: dict[str, FaultSwitch]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fakes: dict[str, bn.BinanceFake] = {}
    switches: dict[str, FaultSwitch] = {}
    try:
        config = config_header(PROFILE, "EUR", FETCH, "GBP: 0.85, USD: 1.10")
        for name in (HEALTHY, *FAULTS):
            fake = fakes[name] = bn.BinanceFake(fake_state()).start()
            fake.state.on_request = switches[name] = switch_for(name, fake)
            # balances only: the faults are those of the balance conversation (a failing
            # history never fails a fetch: test_provider_crypto tests it at the provider)
            options = {
                "api_url": fake.url,
                "enable_rate_limit": False,
                "quote_ccy": "EUR",
                "transactions": False,
            }
            config += linked_account(name, PROFILE, "binance", options, True)
        secrets = {name: CREDENTIALS for name in fakes}
        home = tmp_path_factory.mktemp("faults-exchange") / "home"
        yield World(run_hours(home, config, secrets, fault_hours()), switches)
    finally:
        stop_fakes(switches, fakes)


def test_the_run_completes_and_the_healthy_account_is_fresh(world: World) -> None:
    assert world.run.success, world.run.failures
    assert world.run.accounts_failed  # the faulty accounts failed an hour: the run says so
    assert_fresh(world.run, HEALTHY, VALUE_EUR)
    switch = world.switches[HEALTHY]
    assert switch.first_hour_paths() == [MARKETS, ACCOUNT, TICKERS]
    assert switch.fault_hour_paths() == (MARKETS, ACCOUNT, TICKERS)


@pytest.mark.parametrize("account", list(FAULTS))
def test_a_failing_account_is_stale_with_its_error_code(world: World, account: str) -> None:
    fault = FAULTS[account]
    switch = world.switches[account]
    assert switch.first_hour_paths() == [MARKETS, ACCOUNT, TICKERS]  # healthy first hour
    assert_stale(
        world.run,
        account,
        code=fault.code,
        attempts=fault.attempts,
        message=fault.message,
        value=VALUE_EUR,
    )
    # transient faults were retried (each attempt failed on its first request), others not
    assert switch.fault_hour_paths() == fault.requests


def test_the_429_retry_after_was_honoured(world: World) -> None:
    # backoff alone would wait 0.05 s: the gap comes from the answer's Retry-After
    arrivals = world.switches["binance-429"].fault_hour_requests(MARKETS)
    assert_retry_after_honoured(arrivals, RETRY_AFTER_S)


def test_every_account_counts_once_and_failures_are_stale(world: World) -> None:
    assert_counted_once_at_both_hours(world.run, PROFILE, len(FAULTS), VALUE_EUR)


def test_nothing_is_duplicated(world: World) -> None:
    assert_no_duplicates(world.run)
