"""Config changes that alter past values revalue the whole history before the next publish.

A household is built hour by hour by the real jobs; then a profile's valuation
currency changes, then a static FX rate: the next run values every stored hour again
(never two currencies for one profile, never a change that did not happen), and the
expected figures are recomputed here from the dummy provider's holdings and the
config's rates.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from finbot_pipelines.config.home import ensure_dagster_home
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.providers.dummy.provider import dummy_snapshot
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import ensure_dbt_manifest

FIRST = datetime(2026, 1, 5, 0)
CONFIG = {
    "history_start": "2026-01-05T00:00",
    "fx_source": "static",
    "fx_static_rates": {"GBP": 0.85, "USD": 1.10},
    "profiles": [
        {"id": "alice", "name": "Alice", "valuation_ccy": "GBP"},
        {"id": "bruno", "name": "Bruno", "valuation_ccy": "EUR"},
    ],
    "linked_accounts": [
        {
            "id": "a-bank",
            "profile": "alice",
            "provider": "dummy",
            "name": "A bank",
            "options": {"sub_accounts": ["cash"]},
        },
        {
            "id": "b-bank",
            "profile": "bruno",
            "provider": "dummy",
            "name": "B bank",
            "options": {"sub_accounts": ["cash", "credit_card"]},
        },
    ],
    "fetch": {"timeout_s": 20, "max_attempts": 1, "backoff_s": 0},
}


def expected_net_worth(cfg: dict, profile: str, at: datetime) -> Decimal:
    per_eur = {
        "EUR": Decimal(1),
        **{k: Decimal(repr(v)) for k, v in cfg["fx_static_rates"].items()},
    }
    ccy = next(p["valuation_ccy"] for p in cfg["profiles"] if p["id"] == profile)
    total = Decimal(0)
    for acc in cfg["linked_accounts"]:
        if acc["profile"] != profile:
            continue
        for sa in dummy_snapshot(acc["id"], acc["options"], at).sub_accounts:
            for it in sa.items:
                assert it.value is not None
                total += it.value / per_eur[sa.currency] * per_eur[ccy]
    return total


class Home:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.paths = HomePaths(home)
        home.mkdir()
        ensure_dagster_home(self.paths)

    def write(self, cfg: dict) -> None:
        self.paths.config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def run(self, first: int, last: int) -> tuple[bool, str]:
        """Run the hourly job over hours [first, last]; (success, the run's log messages)."""
        from finbot_pipelines.definitions import build_definitions
        from finbot_pipelines.defs.automation.jobs import HOURLY_JOB
        from finbot_pipelines.defs.automation.runs import run_job

        defs = build_definitions(str(self.home))
        with dg.DagsterInstance.from_config(str(self.paths.dagster_home)) as instance:
            result = run_job(
                defs,
                HOURLY_JOB,
                FIRST + timedelta(hours=first),
                FIRST + timedelta(hours=last),
                instance=instance,
                progress=False,
            )
            logs = "\n".join(e.user_message for e in instance.all_logs(result.run_id))
        return result.success, logs

    def published(self, sql: str) -> pd.DataFrame:
        with connect_published(self.paths.published) as con:
            return con.execute(sql).df()

    def exact(self, sql: str) -> list[tuple]:
        with connect_published(self.paths.published) as con:
            return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    ensure_dbt_manifest()
    return Home(tmp_path_factory.mktemp("config-changes") / "home")


def test_a_new_valuation_currency_revalues_every_hour_before_publishing(home: Home) -> None:
    cfg = yaml.safe_load(yaml.safe_dump(CONFIG))
    home.write(cfg)
    ok, _ = home.run(0, 5)
    assert ok  # no FX job ran: the hourly job landed the static rates itself
    cfg["profiles"][1]["valuation_ccy"] = "GBP"
    home.write(cfg)
    ok, logs = home.run(6, 6)
    assert ok
    assert "the valuation settings changed since the last build" in logs
    assert "valuation_ccy.bruno: EUR -> GBP" in logs
    rows = home.exact(
        "select valuation_hour, valuation_ccy, net_worth from marts.fct_profile_valuation_hourly "
        "where profile_id = 'bruno' order by 1"
    )
    assert [r[0] for r in rows] == [FIRST + timedelta(hours=h) for h in range(7)]
    assert {r[1] for r in rows} == {"GBP"}  # never two currencies for one profile
    for at, _, net_worth in rows:
        assert abs(net_worth - expected_net_worth(cfg, "bruno", at)) < Decimal("1e-6"), at
    for table in (
        "fct_linked_account_valuation_hourly",
        "fct_sub_account_valuation_hourly",
        "fct_item_valuation_hourly",
    ):
        ccys = home.published(
            f"select distinct valuation_ccy from marts.{table} where profile_id = 'bruno'"
        )
        assert ccys["valuation_ccy"].tolist() == ["GBP"], table
    # the 1h change at hour 6 compares two GBP figures: no gain that never happened
    (change,) = home.exact(
        "select change_abs from marts.fct_valuation_changes where level = 'profile' "
        "and entity_id = 'bruno' and change_window = '1h' "
        f"and valuation_hour = '{FIRST + timedelta(hours=6)}'"
    )
    assert abs(change[0] - (rows[6][2] - rows[5][2])) < Decimal("1e-9")
    assert abs(change[0]) < 50  # a cash account moves a little in an hour, not 18 %


def test_a_new_static_rate_revalues_every_hour(home: Home) -> None:
    cfg = yaml.safe_load(home.paths.config.read_text())
    cfg["fx_static_rates"]["GBP"] = 0.80
    home.write(cfg)
    ok, logs = home.run(7, 7)
    assert ok
    assert "fx_static_rates.GBP: 0.85 -> 0.8" in logs
    with duckdb.connect(str(home.paths.warehouse), read_only=True) as con:
        rates = con.execute(
            "select distinct rate from raw.fx_rates where quote_ccy = 'GBP'"
        ).fetchall()
    assert rates == [(0.8,)]  # every day of the history re-landed with the new table
    for profile in ("alice", "bruno"):
        rows = home.exact(
            "select valuation_hour, net_worth from marts.fct_profile_valuation_hourly "
            f"where profile_id = '{profile}' order by 1"
        )
        assert len(rows) == 8
        for at, net_worth in rows:
            assert abs(net_worth - expected_net_worth(cfg, profile, at)) < Decimal("1e-6"), (
                profile,
                at,
            )


# An unchanged config rebuilds only the hours asked for (and the later ones): see
# test_pipeline.test_rebuild_touches_only_its_window, whose earlier hour stays untouched.
