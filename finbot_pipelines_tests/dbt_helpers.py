"""Helpers for the dbt mart tests: a synthetic raw warehouse and a dbt runner.

The raw rows are generated deterministically (no randomness between runs) and cover
the awkward cases the marts must get right: several currencies, liabilities, a failing
account, an account that never succeeded yet, a frozen account, an account removed
midway, an account added midway, duplicate item names in one sub-account, an empty
sub-account and an FX gap over a long weekend.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb

from finbot_pipelines.warehouse.raw import ensure_raw_schema

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DBT_EXECUTABLE = REPO_ROOT / ".venv" / "bin" / "dbt"

START_HOUR = datetime(2026, 10, 29, 0)  # a Thursday
N_HOURS = 144  # six days: Thu 10-29 .. Tue 11-03, across a weekend and a month end
HOURS = [START_HOUR + timedelta(hours=h) for h in range(N_HOURS)]

PROFILES = [("alice", "Alice", "GBP"), ("bob", "Bob", "EUR")]

# EUR -> quote rates on ECB business days. Nothing on Sat 10-31, Sun 11-01 and the
# (pretend) bank holiday Mon 11-02: those days must use Friday 10-30.
FX_RATES: dict[date, dict[str, float]] = {
    date(2026, 10, 26): {"GBP": 0.8712, "USD": 1.0811},
    date(2026, 10, 27): {"GBP": 0.8698, "USD": 1.0794},
    date(2026, 10, 28): {"GBP": 0.8731, "USD": 1.0832},
    date(2026, 10, 29): {"GBP": 0.8745, "USD": 1.0865},
    date(2026, 10, 30): {"GBP": 0.8767, "USD": 1.0901},
    date(2026, 11, 3): {"GBP": 0.8702, "USD": 1.0756},
}


@dataclass
class Account:
    linked_account_id: str
    profile_id: str
    provider_id: str
    name: str
    # sub_account_id -> (name, currency, account_type, [(item_name, item_type,
    #                     asset_class, asset_type, item_ccy, symbol, base_value, units)])
    sub_accounts: dict[str, tuple[str, str, str, list[tuple]]]
    first_hour: int = 0
    removed_from: int | None = None  # no linked_account_hours row from this hour on
    frozen_from: int | None = None  # state frozen (not fetched) from this hour on
    failing_hours: set[int] = field(default_factory=set)


ACCOUNTS = [
    Account(
        "alice-bank",
        "alice",
        "plaid",
        "Alice Bank",
        {
            "current": (
                "Current account",
                "GBP",
                "depository",
                [("Cash", "asset", "cash", "cash", "GBP", None, 2500.0, None)],
            ),
            "card": (
                "Credit card",
                "GBP",
                "credit",
                [("Card balance", "liability", "cash", "credit_card", "GBP", None, -640.0, None)],
            ),
        },
        failing_hours=set(range(30, 36)),
    ),
    Account(
        "alice-broker",
        "alice",
        "ibkr",
        "Alice Broker",
        {
            "isa": (
                "Stocks & Shares ISA",
                "GBP",
                "investment",
                [
                    (
                        "Vanguard FTSE All-World",
                        "asset",
                        "equities",
                        "etf",
                        "USD",
                        "VWRL",
                        21000.0,
                        180.0,
                    ),
                    # a second lot with the same name: merged with the first
                    (
                        "Vanguard FTSE All-World",
                        "asset",
                        "equities",
                        "etf",
                        "USD",
                        "VWRL",
                        3000.0,
                        25.0,
                    ),
                    ("Cash", "asset", "cash", "cash", "GBP", None, 150.0, None),
                ],
            ),
            "us": (
                "US margin account",
                "USD",
                "investment",
                [
                    ("Apple Inc.", "asset", "equities", "stock", "USD", "AAPL", 8000.0, 40.0),
                    ("USD Cash", "asset", "cash", "cash", "USD", None, 1200.0, None),
                ],
            ),
        },
        failing_hours=set(range(140, 144)),
    ),
    Account(
        "alice-kraken",
        "alice",
        "kraken",
        "Kraken",
        {
            "spot": (
                "Spot wallet",
                "EUR",
                "investment",
                [
                    ("BTC", "asset", "crypto", "crypto_currency", "BTC", "BTC", 5200.0, 0.08),
                    ("USDC", "asset", "crypto", "stable_coin", "USDC", "USDC", 300.0, 330.0),
                ],
            ),
        },
        removed_from=100,
    ),
    Account(
        "alice-house",
        "alice",
        "google_sheet",
        "House sheet",
        {
            "property": (
                "Flat",
                "GBP",
                "other",
                [("Flat", "asset", "real_estate", "property", "GBP", None, 310000.0, None)],
            ),
            "mortgage": (
                "Mortgage",
                "GBP",
                "loan",
                [
                    (
                        "Mortgage",
                        "liability",
                        "real_estate",
                        "mortgage",
                        "GBP",
                        None,
                        -190000.0,
                        None,
                    )
                ],
            ),
        },
        frozen_from=48,
    ),
    Account(
        "bob-bank",
        "bob",
        "plaid",
        "Bob Bank",
        {
            "current": (
                "Girokonto",
                "EUR",
                "depository",
                [("Cash", "asset", "cash", "cash", "EUR", None, 4100.0, None)],
            ),
            "savings": (
                "USD savings",
                "USD",
                "depository",
                [("Savings", "asset", "cash", "cash", "USD", None, 9000.0, None)],
            ),
            "empty": ("Empty pot", "EUR", "depository", []),
            "loan": (
                "Car loan",
                "EUR",
                "loan",
                [("Car loan", "liability", "other", "loan", "EUR", None, -7300.0, None)],
            ),
        },
    ),
    Account(
        "bob-pension",
        "bob",
        "pension_portal",
        "Bob Pension",
        {
            "pension": (
                "Workplace pension",
                "GBP",
                "investment",
                [("Pension fund", "asset", "pension", "fund", "GBP", None, 45000.0, 1500.0)],
            ),
        },
        # never succeeded during its first four hours, then a 3-hour outage
        failing_hours=set(range(4)) | {70, 71, 72},
    ),
    Account(
        "bob-crypto",
        "bob",
        "kraken",
        "Bob Kraken",
        {
            "spot": (
                "Spot wallet",
                "USD",
                "investment",
                [("ETH", "asset", "crypto", "crypto_currency", "ETH", "ETH", 2100.0, 0.9)],
            ),
        },
        first_hour=60,
    ),
]


def _drift(rng: random.Random, base: float, hour: int) -> float:
    """A deterministic hourly value around ``base`` (never crossing zero)."""
    return round(base * (1 + 0.002 * hour + 0.01 * (rng.random() - 0.5)), 2)


def populate_raw(path: Path) -> None:
    """Create the raw schema in a new DuckDB file and fill it with the fixture."""
    con = duckdb.connect(str(path))
    try:
        ensure_raw_schema(con)
        con.executemany("insert into raw.profiles values (?, ?, ?)", PROFILES)
        con.executemany(
            "insert into raw.fx_rates values (?, 'EUR', ?, ?, 'ecb')",
            [(d, ccy, rate) for d, rates in FX_RATES.items() for ccy, rate in rates.items()],
        )
        rng = random.Random(20261029)
        account_hours, fetches, subs, items = [], [], [], []
        for h, hour in enumerate(HOURS):
            for acc in ACCOUNTS:
                if h < acc.first_hour or (acc.removed_from is not None and h >= acc.removed_from):
                    continue
                frozen = acc.frozen_from is not None and h >= acc.frozen_from
                account_hours.append(
                    (
                        hour,
                        acc.profile_id,
                        acc.linked_account_id,
                        acc.provider_id,
                        acc.name,
                        "frozen" if frozen else "active",
                    )
                )
                if frozen:
                    continue
                ok = h not in acc.failing_hours
                started = hour + timedelta(minutes=2)
                fetches.append(
                    (
                        hour,
                        acc.profile_id,
                        acc.linked_account_id,
                        acc.provider_id,
                        started,
                        started + timedelta(seconds=7),
                        "success" if ok else "failure",
                        None if ok else "timeout",
                        None if ok else f"{acc.provider_id} did not answer within 30 s",
                        1 if ok else 3,
                    )
                )
                if not ok:
                    continue
                for sub_id, (sub_name, ccy, acc_type, sub_items) in acc.sub_accounts.items():
                    subs.append((hour, acc.linked_account_id, sub_id, sub_name, ccy, acc_type))
                    for name, itype, aclass, atype, iccy, symbol, base, units in sub_items:
                        items.append(
                            (
                                hour,
                                acc.linked_account_id,
                                sub_id,
                                name,
                                itype,
                                aclass,
                                atype,
                                None if units is None else Decimal(repr(units)),
                                Decimal(repr(_drift(rng, base, h))),
                                iccy,
                                symbol,
                            )
                        )
        con.executemany(
            "insert into raw.linked_account_hours values (?, ?, ?, ?, ?, ?)", account_hours
        )
        con.executemany(
            "insert into raw.fetches (fetch_hour, profile_id, linked_account_id, provider_id, "
            "started_at, finished_at, status, error_code, error_message, attempt) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            fetches,
        )
        con.executemany("insert into raw.sub_accounts values (?, ?, ?, ?, ?, ?)", subs)
        # amounts as Decimals: exact in the DECIMAL columns (a float would bring its noise)
        con.executemany(
            "insert into raw.items (fetch_hour, linked_account_id, sub_account_id, item_name, "
            "item_type, asset_class, asset_type, units, value, currency, symbol) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            items,
        )
    finally:
        con.close()


@dataclass
class DbtRunner:
    """Runs the dbt CLI in a subprocess against one warehouse file, with private
    target and log directories (safe under parallel test runs)."""

    warehouse: Path
    work_dir: Path
    invocations: list[tuple[list[str], float]] = field(default_factory=list)

    def run(self, *args: str, dbt_vars: dict[str, str] | None = None, check: bool = True):
        cmd = [
            str(DBT_EXECUTABLE),
            *args,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(self.work_dir / "target"),
            "--log-path",
            str(self.work_dir / "logs"),
        ]
        if dbt_vars:
            cmd += ["--vars", json.dumps(dbt_vars)]
        env = {
            **os.environ,
            "FINBOT_WAREHOUSE": str(self.warehouse),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "FINBOT_DBT_TARGET": "local",
        }
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
        self.invocations.append((cmd, time.monotonic() - t0))
        if check and proc.returncode != 0:
            raise AssertionError(
                f"dbt {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-8000:]}\n"
                f"{proc.stderr[-4000:]}"
            )
        return proc


def hour_str(h: int) -> str:
    return HOURS[h].strftime("%Y-%m-%d %H:%M:%S")
