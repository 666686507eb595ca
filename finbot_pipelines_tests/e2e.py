"""Run the real pipeline for one live hour in a fresh FINBOT_HOME (for provider e2e tests).

Real providers cannot fetch the past, so this ingests the last complete hour,
exactly as the hourly schedule would, with the config and vault given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import ensure_dbt_manifest


@dataclass
class HourRun:
    home: Path
    hour: datetime
    success: bool

    def published(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with connect_published(self.home / "finbot.duckdb") as con:
            return con.execute(sql, params or []).df()

    def raw(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(sql, params or []).df()


def last_complete_hour() -> datetime:
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def run_live_hour(
    home: Path,
    config_yaml: str,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> HourRun:
    """Write ``config_yaml`` (and JSON ``secrets`` into the vault) then run FX + the hourly job.

    The config should use ``fx_source: static`` with rates for every currency involved,
    and a ``history_start`` at least two days back (use ``history_start_for_tests()``).
    """
    ensure_dbt_manifest()
    import json

    from finbot_pipelines.config.home import ensure_dagster_home
    from finbot_pipelines.config.paths import HomePaths
    from finbot_pipelines.config.vault import Vault, init_key_file
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_job, run_published

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
    hour = last_complete_hour()
    day = datetime.combine(hour.date() - timedelta(days=1), datetime.min.time())
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        fx = run_job(defs, FX_JOB, day, day, instance=instance, fmt="%Y-%m-%d", progress=False)
        run = run_job(defs, HOURLY_JOB, hour, hour, instance=instance, progress=False)
    return HourRun(home, hour, fx.success and run_published(run))


def history_start_for_tests() -> str:
    """A `history_start` value two days before now (on a day boundary)."""
    start = last_complete_hour() - timedelta(days=2)
    return start.strftime("%Y-%m-%dT00:00")
