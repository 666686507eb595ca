"""The one Dagster entry point: `dagster dev -m finbot_pipelines.definitions`.

The linked-account assets are built from `$FINBOT_HOME/finbot.yaml` when the code
location loads; reload the location in the UI after changing the config.
"""

from __future__ import annotations

import sys
import warnings
from datetime import datetime
from pathlib import Path

import dagster as dg

from finbot_pipelines.config.home import open_home, private_dbt_target, private_umask
from finbot_pipelines.config.loading import load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.schema import FinbotConfig
from finbot_pipelines.defs.automation.backups import backup_job, backup_schedule
from finbot_pipelines.defs.automation.jobs import HOURLY_JOB, TRANSFORM_JOB, build_jobs
from finbot_pipelines.defs.automation.notifications import build_notification_sensors
from finbot_pipelines.defs.automation.runs import PROGRESS_LOGGER, finbot_progress
from finbot_pipelines.defs.automation.sensors import build_fx_rebuild_sensor
from finbot_pipelines.defs.ingest.assets import LANDED_KEY, build_ingest_assets
from finbot_pipelines.defs.ingest.gate import build_gate_asset
from finbot_pipelines.defs.ingest.statements import (
    STATEMENTS_JOB,
    STATEMENTS_KEY,
    build_statements_asset,
    build_statements_job,
    build_statements_sensor,
)
from finbot_pipelines.defs.market.assets import (
    build_fx_asset,
    build_fx_coverage_asset,
    build_unit_prices_asset,
)
from finbot_pipelines.defs.partitions import daily_partitions, hourly_partitions
from finbot_pipelines.defs.reports.assets import build_report_asset
from finbot_pipelines.defs.resources import FinbotHome
from finbot_pipelines.defs.transform.assets import (
    FinbotDbtCliResource,
    build_dbt_assets,
    write_dbt_launcher,
)
from finbot_pipelines.defs.transform.project import dbt_project
from finbot_pipelines.defs.transform.publish import build_publish_asset

DEFAULT_HISTORY_START = datetime(2024, 1, 1)
#: dbt from the same environment as this Python, whether or not the venv is on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")

# BackfillPolicy and pools are marked beta; finbot relies on them deliberately.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def dbt_launcher() -> str:
    """dbt through the launcher that makes it die with its run, written beside dbt in this
    environment (not in the home); plain dbt where that folder cannot be written."""
    try:
        return str(write_dbt_launcher(Path(DBT_EXECUTABLE).parent, DBT_EXECUTABLE))
    except OSError:
        return DBT_EXECUTABLE


def build_definitions(home: str | None = None) -> dg.Definitions:
    paths = HomePaths.resolve(home)
    private_umask()  # private by default: see config/home.py
    open_home(paths.home)
    private_dbt_target(paths)
    cfg: FinbotConfig | None = load_config(paths.config) if paths.config.exists() else None
    start = cfg.history_start if cfg else DEFAULT_HISTORY_START
    hourly = hourly_partitions(start)
    daily = daily_partitions(start)

    ingest = build_ingest_assets(cfg, hourly) if cfg else None
    # what reads the raw tables depends on `ingest/landed`, materialised once per run
    # whatever failed (an account's own asset skips its failed hours)
    # ... and on `ingest/statements` (statement files, landed at their own dates)
    ingest_keys = [LANDED_KEY, STATEMENTS_KEY] if ingest is not None else [STATEMENTS_KEY]
    fx = build_fx_asset(daily)
    unit_prices = build_unit_prices_asset(ingest_keys)
    fx_coverage = build_fx_coverage_asset()
    dbt = build_dbt_assets(ingest_keys)
    mart_keys = [k for k, g in dbt.group_names_by_key.items() if g == "marts"]
    publish = build_publish_asset(mart_keys)
    report = build_report_asset()
    jobs, schedules = build_jobs(hourly, daily)

    assets: list[dg.AssetsDefinition] = [
        build_statements_asset(),
        fx,
        fx_coverage,
        unit_prices,
        dbt,
        publish,
        report,
    ]
    if ingest is not None:
        assets[:0] = [ingest, build_gate_asset()]
    return dg.Definitions(
        assets=assets,
        jobs=[*jobs, build_statements_job(), backup_job],
        schedules=[*schedules, backup_schedule],
        sensors=[
            build_fx_rebuild_sensor(start, cfg.fx_source if cfg else "ecb"),
            build_statements_sensor(str(paths.home)),
            *build_notification_sensors(
                str(paths.home), [HOURLY_JOB, TRANSFORM_JOB, STATEMENTS_JOB]
            ),
        ],
        loggers={PROGRESS_LOGGER: finbot_progress},
        resources={
            "finbot": FinbotHome(home=str(paths.home)),
            "dbt": FinbotDbtCliResource(
                project_dir=str(dbt_project.project_dir),
                profiles_dir=str(dbt_project.profiles_dir),
                dbt_executable=dbt_launcher(),
            ),
        },
    )


defs = build_definitions()
