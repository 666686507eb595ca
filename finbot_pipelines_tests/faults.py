"""Shared plumbing of the fault modules (``test_faults_<kind>.py``).

Each module runs the real hourly job ONCE, over the two newest complete hours,
for one profile holding a healthy linked account plus one linked account per
fault, each on its own fake server. The first hour every account is healthy;
the second hour each fault account meets its fault. So a failing account has
last good data to carry: it must show at the fault hour as stale (with the
first hour's value), with its error code in ``mart_linked_account_health``,
while the healthy account is fresh and nothing is counted twice.

Live providers fetch "now" whatever the hour asked, so the two fetches of an
account are told apart by their order: the HTTP API modules fetch one account
at a time (``max_workers: 1``; the ingest goes hour by hour), and a
:class:`FaultSwitch` on each fake lets the requests of the first fetch through,
then applies the fault to every later request. The ``dummy`` can fail a given
hour by itself (fetched in parallel); the portal module runs a single hour (see
its docstring). The provider clients are the production ones, only the servers
are fakes.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from finbot_pipelines.defs.automation.runs import failed_steps, run_published
from finbot_pipelines.defs.ingest.gate import GATE_STEP
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import ensure_dbt_manifest
from finbot_pipelines_tests.e2e import history_start_for_tests, last_complete_hour

#: a held request (a server that hangs) is released after this long at the latest
HOLD_LIMIT_S = 120.0
#: never start a run closer than this to an hour boundary (the hours would shift)
BOUNDARY_MARGIN_S = 30.0

#: the key of every row of the raw tables and of the published marts
RAW_KEYS: dict[str, tuple[str, ...]] = {
    "raw.fetches": ("fetch_hour", "linked_account_id"),
    "raw.linked_account_hours": ("fetch_hour", "linked_account_id"),
    "raw.sub_accounts": ("fetch_hour", "linked_account_id", "sub_account_id"),
    "raw.items": ("fetch_hour", "linked_account_id", "sub_account_id", "item_name"),
}
MART_KEYS: dict[str, tuple[str, ...]] = {
    "marts.fct_profile_valuation_hourly": ("profile_id", "valuation_hour"),
    "marts.fct_linked_account_valuation_hourly": ("valuation_hour", "linked_account_id"),
    "marts.fct_sub_account_valuation_hourly": (
        "valuation_hour",
        "linked_account_id",
        "sub_account_id",
    ),
    "marts.fct_item_valuation_hourly": (
        "valuation_hour",
        "linked_account_id",
        "sub_account_id",
        "item_name",
    ),
    "marts.mart_linked_account_health": ("profile_id", "linked_account_id"),
}


# --------------------------------------------------------------------------- the fakes' switch


class FaultSwitch:
    """An ``on_request`` hook for a fake: healthy first, faulty after.

    The first ``healthy`` requests (the first hour's fetch) are left alone; on the
    last of them ``at_switch`` runs (e.g. the fake stops listening), and every
    later request goes through ``fault(path)`` first, which switches the fake's
    answer to that request (or holds it, see :meth:`hold`). Arrival times are logged.
    """

    def __init__(
        self,
        healthy: int,
        fault: Callable[[str], None] | None = None,
        *,
        at_switch: Callable[[], None] | None = None,
    ) -> None:
        self.healthy = healthy
        self.fault = fault
        self.at_switch = at_switch
        self.log: list[tuple[float, str]] = []
        self.released = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, path: str) -> None:
        with self._lock:
            self.log.append((time.monotonic(), path))
            n = len(self.log)
        if n == self.healthy and self.at_switch is not None:
            self.at_switch()
        elif n > self.healthy and self.fault is not None:
            self.fault(path)

    def hold(self, path: str) -> None:
        """A fault: leave the request unanswered until :meth:`release` (a hung server)."""
        self.released.wait(HOLD_LIMIT_S)

    def release(self) -> None:
        self.released.set()

    def first_hour_paths(self) -> list[str]:
        with self._lock:
            return [p for _, p in self.log[: self.healthy]]

    def fault_hour_requests(self, path: str | None = None) -> list[float]:
        """Arrival times of the requests after the healthy ones (to ``path`` if given)."""
        with self._lock:
            return [t for t, p in self.log[self.healthy :] if path is None or p == path]

    def fault_hour_paths(self) -> tuple[str, ...]:
        """The paths requested after the healthy ones, in order."""
        with self._lock:
            return tuple(p for _, p in self.log[self.healthy :])


def stop_fakes(switches: Mapping[str, FaultSwitch], fakes: Mapping[str, Any]) -> None:
    """Let held requests go, then stop every fake (the end of a module's fixture)."""
    for switch in switches.values():
        switch.release()
    for fake in fakes.values():
        fake.stop()


def assert_retry_after_honoured(arrivals: Sequence[float], retry_after_s: float) -> None:
    """Consecutive attempts came at least ``retry_after_s`` apart (backoff alone is far shorter)."""
    assert len(arrivals) >= 2, arrivals
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap >= retry_after_s - 0.02 for gap in gaps), gaps


# --------------------------------------------------------------------------- the run


@dataclass
class FaultRun:
    """A FINBOT_HOME after one run of the hourly job over ``hours``."""

    home: Path
    hours: tuple[datetime, ...]
    success: bool
    failures: list[str] = field(default_factory=list)
    #: the run ended failed at `every_account_fetched` (an account failed an hour)
    accounts_failed: bool = False

    @property
    def before(self) -> datetime:
        """The first hour (every account healthy)."""
        return self.hours[0]

    @property
    def hour(self) -> datetime:
        """The fault hour (the newest)."""
        return self.hours[-1]

    def published(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """A query on the published database (``marts.*``), as readers see it."""
        with connect_published(self.home / "finbot.duckdb") as con:
            return con.execute(sql, list(params)).df()

    def raw(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """A query on the warehouse (``raw.*``), after the run released it."""
        with duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(sql, list(params)).df()


def fault_hours(n: int = 2) -> tuple[datetime, ...]:
    """The ``n`` newest complete hours, oldest first, far enough from an hour boundary.

    Live providers may only be asked for the last two hours: if the clock crossed
    an hour between now and the ingest, the oldest hour would be refused."""
    # import the pipeline first (seconds when cold), so that little time passes from
    # here to the ingest
    ensure_dbt_manifest()
    import finbot_pipelines.definitions
    import finbot_pipelines.defs.automation.runs  # noqa: F401

    now = datetime.now(UTC)
    to_next_hour = 3600 - (now.minute * 60 + now.second + now.microsecond / 1e6)
    if to_next_hour < BOUNDARY_MARGIN_S:
        time.sleep(to_next_hour + 1)
    last = last_complete_hour()
    return tuple(last - timedelta(hours=n - 1 - i) for i in range(n))


def config_header(
    profile: str, valuation_ccy: str, fetch: Mapping[str, float | int], rates: str
) -> str:
    """The top of a finbot.yaml: static FX (per 1 EUR), one profile, the fetch settings."""
    settings = ", ".join(f"{k}: {v}" for k, v in fetch.items())
    return (
        f'history_start: "{history_start_for_tests()}"\n'
        "fx_source: static\n"
        f"fx_static_rates: {{{rates}}}\n"
        "profiles:\n"
        f"  - {{id: {profile}, name: {profile.title()}, valuation_ccy: {valuation_ccy}}}\n"
        f"fetch: {{{settings}}}\n"
        "linked_accounts:\n"
    )


def linked_account(
    account_id: str, profile: str, provider: str, options: Mapping[str, Any], credentials: bool
) -> str:
    """One entry of ``linked_accounts`` (options as JSON, which is YAML)."""
    lines = [
        f"  - id: {account_id}",
        f"    profile: {profile}",
        f"    provider: {provider}",
        f"    name: {account_id.replace('-', ' ').title()}",
        f"    options: {json.dumps(dict(options))}",
    ]
    if credentials:
        lines.append(f"    credentials: {account_id}")
    return "\n".join(lines) + "\n"


def run_hours(
    home: Path,
    config_yaml: str,
    secrets: Mapping[str, Mapping[str, str]],
    hours: Sequence[datetime],
) -> FaultRun:
    """Write the config and vault, land the FX rates, run the hourly job once over ``hours``."""
    ensure_dbt_manifest()
    import dagster as dg

    from finbot_pipelines.config.home import ensure_dagster_home
    from finbot_pipelines.config.paths import HomePaths
    from finbot_pipelines.config.vault import Vault, init_key_file
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_job

    paths = HomePaths(home)
    home.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(config_yaml)
    init_key_file(home)
    if secrets:
        vault = Vault.open(home)
        for name, value in secrets.items():
            vault.set(name, json.dumps(dict(value)))
    ensure_dagster_home(paths)
    defs = build_definitions(str(home))
    first, last = min(hours), max(hours)
    day = datetime.combine(first.date() - timedelta(days=1), datetime.min.time())
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        fx = run_job(defs, FX_JOB, day, day, instance=instance, fmt="%Y-%m-%d", progress=False)
        run = run_job(defs, HOURLY_JOB, first, last, instance=instance, progress=False)
    published = run_published(run)
    failures = [
        f"{e.step_key}: {e.step_failure_data.error.to_string()}"
        if e.step_failure_data is not None and e.step_failure_data.error is not None
        else str(e.message)
        for result in (fx, run)
        for e in result.all_events
        if (e.is_step_failure and e.step_key != GATE_STEP)
        or (e.is_run_failure and not (result is run and published))
    ]
    return FaultRun(
        home,
        tuple(hours),
        fx.success and published,
        failures,
        accounts_failed=GATE_STEP in failed_steps(run),
    )


# --------------------------------------------------------------------------- assertions


def _one(df: pd.DataFrame, what: str) -> dict[str, Any]:
    assert len(df) == 1, f"{what}: expected one row, got {len(df)}\n{df}"
    row: dict[str, Any] = df.iloc[0].to_dict()
    return row


def _null(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT


def fetch_row(run: FaultRun, account: str, hour: datetime) -> dict[str, Any]:
    return _one(
        run.raw(
            "select status, error_code, error_message, attempt, started_at, finished_at "
            "from raw.fetches where linked_account_id = ? and fetch_hour = ?",
            [account, hour],
        ),
        f"raw.fetches of {account} at {hour}",
    )


def health_row(run: FaultRun, account: str) -> dict[str, Any]:
    return _one(
        run.published(
            "select * from marts.mart_linked_account_health where linked_account_id = ?",
            [account],
        ),
        f"mart_linked_account_health of {account}",
    )


def valuation_rows(run: FaultRun, account: str, hour: datetime) -> pd.DataFrame:
    return run.published(
        "select value, is_stale, source_fetch_hour from marts.fct_linked_account_valuation_hourly "
        "where linked_account_id = ? and valuation_hour = ?",
        [account, hour],
    )


def raw_lines_at(run: FaultRun, account: str, hour: datetime) -> tuple[int, int]:
    """(sub-accounts, items) landed for ``account`` at ``hour``."""
    where = "where linked_account_id = ? and fetch_hour = ?"
    subs = run.raw(f"select count(*) as n from raw.sub_accounts {where}", [account, hour])
    items = run.raw(f"select count(*) as n from raw.items {where}", [account, hour])
    return int(subs["n"].iloc[0]), int(items["n"].iloc[0])


def assert_fresh(
    run: FaultRun, account: str, value: float | Mapping[datetime, float], *, rel: float = 1e-9
) -> None:
    """Fetched at every hour of the run, first try; fresh at each with ``value`` (per hour)."""
    for hour in run.hours:
        expected = value[hour] if isinstance(value, Mapping) else value
        f = fetch_row(run, account, hour)
        assert (f["status"], f["attempt"]) == ("success", 1), f
        assert _null(f["error_code"]) and _null(f["error_message"]), f
        v = _one(valuation_rows(run, account, hour), f"valuation of {account} at {hour}")
        assert not bool(v["is_stale"]), v
        assert v["source_fetch_hour"] == hour, v
        assert float(v["value"]) == pytest.approx(expected, rel=rel), (account, hour)
    h = health_row(run, account)
    assert h["last_attempt_hour"] == run.hour and h["last_success_hour"] == run.hour, h
    assert h["consecutive_failures"] == 0, h
    assert _null(h["last_error_code"]) and _null(h["last_error_message"]), h


def assert_stale(
    run: FaultRun,
    account: str,
    *,
    code: str,
    attempts: int,
    message: str,
    value: float,
    rel: float = 1e-9,
) -> dict[str, Any]:
    """Healthy at the first hour, failed at the fault hour with ``code`` after ``attempts``:
    nothing of the failed fetch landed, its last good value is carried, marked stale.
    Returns the failed raw.fetches row."""
    ok = fetch_row(run, account, run.before)
    assert (ok["status"], ok["attempt"]) == ("success", 1), ok
    f = fetch_row(run, account, run.hour)
    assert f["status"] == "failure", f
    assert f["error_code"] == code, f
    assert f["attempt"] == attempts, f
    assert message in str(f["error_message"]), f
    assert raw_lines_at(run, account, run.hour) == (0, 0)  # nothing partial landed
    v = _one(valuation_rows(run, account, run.hour), f"valuation of {account} at {run.hour}")
    assert bool(v["is_stale"]), v
    assert v["source_fetch_hour"] == run.before, v
    assert float(v["value"]) == pytest.approx(value, rel=rel), account
    # item by item too: the first hour's items, each carried and marked stale
    items = run.published(
        "select valuation_hour, count(*) as n, count(*) filter (where is_stale and "
        "source_fetch_hour = ?) as carried from marts.fct_item_valuation_hourly "
        "where linked_account_id = ? group by valuation_hour",
        [run.before, account],
    ).set_index("valuation_hour")
    assert int(items.loc[run.before, "n"]) > 0, items
    assert int(items.loc[run.hour, "n"]) == int(items.loc[run.before, "n"]), items
    assert int(items.loc[run.hour, "carried"]) == int(items.loc[run.hour, "n"]), items
    h = health_row(run, account)
    assert h["last_attempt_hour"] == run.hour, h
    assert h["last_success_hour"] == run.before, h
    assert h["consecutive_failures"] == 1, h
    assert h["last_error_code"] == code, h
    assert h["last_error_message"] == f["error_message"], h
    return f


def assert_failed_without_data(
    run: FaultRun, account: str, *, code: str, attempts: int, message: str
) -> dict[str, Any]:
    """Failed at its only hour with ``code`` after ``attempts``: no data, so no valuation
    row (nothing to carry), listed in the health mart as never successful."""
    f = fetch_row(run, account, run.hour)
    assert f["status"] == "failure", f
    assert f["error_code"] == code, f
    assert f["attempt"] == attempts, f
    assert message in str(f["error_message"]), f
    assert raw_lines_at(run, account, run.hour) == (0, 0)
    assert valuation_rows(run, account, run.hour).empty
    assert run.published(
        "select 1 from marts.fct_item_valuation_hourly where linked_account_id = ?", [account]
    ).empty
    h = health_row(run, account)
    assert h["last_attempt_hour"] == run.hour, h
    assert _null(h["last_success_hour"]), h
    assert h["consecutive_failures"] == 1, h
    assert h["last_error_code"] == code, h
    assert h["last_error_message"] == f["error_message"], h
    return f


def assert_profile(
    run: FaultRun,
    profile: str,
    hour: datetime,
    *,
    stale_accounts: int,
    net_worth: float,
    rel: float = 1e-9,
) -> None:
    p = _one(
        run.published(
            "select net_worth, stale_accounts from marts.fct_profile_valuation_hourly "
            "where profile_id = ? and valuation_hour = ?",
            [profile, hour],
        ),
        f"profile {profile} at {hour}",
    )
    assert p["stale_accounts"] == stale_accounts, p
    assert float(p["net_worth"]) == pytest.approx(net_worth, rel=rel), p


def assert_counted_once_at_both_hours(
    run: FaultRun, profile: str, faults: int, value: float
) -> None:
    """One healthy account and ``faults`` failing ones, each worth ``value``: every account
    counts once at both hours (a failing one with its first-hour value), the failing
    ones stale at the fault hour."""
    net_worth = (1 + faults) * value
    assert_profile(run, profile, run.before, stale_accounts=0, net_worth=net_worth)
    assert_profile(run, profile, run.hour, stale_accounts=faults, net_worth=net_worth)


def assert_no_duplicates(run: FaultRun) -> None:
    """No key appears twice in a raw table or a published mart."""
    for tables, query in ((RAW_KEYS, run.raw), (MART_KEYS, run.published)):
        for table, key in tables.items():
            cols = ", ".join(key)
            dup = query(
                f"select {cols}, count(*) as n from {table} group by all having count(*) > 1"
            )
            assert dup.empty, f"{table}: duplicated {key}\n{dup}"
            assert not query(f"select 1 from {table} limit 1").empty, f"{table} is empty"
