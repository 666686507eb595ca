"""Jobs and schedules: the hourly pipeline and the daily FX rates."""

from __future__ import annotations

from typing import Any

import dagster as dg

from finbot_pipelines.defs.market.assets import FX_COVERAGE_KEY, FX_RATES_KEY, UNIT_PRICES_KEY

HOURLY_JOB = "finbot_hourly"
TRANSFORM_JOB = "finbot_transform"
FX_JOB = "finbot_fx_daily"
PIPELINE_GROUPS = ("ingest", "staging", "intermediate", "marts", "reports", "health")
TRANSFORM_GROUPS = ("staging", "intermediate", "marts", "reports")


def build_jobs(
    hourly: dg.PartitionsDefinition, daily: dg.PartitionsDefinition
) -> tuple[list[dg.UnresolvedAssetJobDefinition], list[Any]]:
    hourly_job = dg.define_asset_job(
        HOURLY_JOB,
        selection=dg.AssetSelection.groups(*PIPELINE_GROUPS)
        | dg.AssetSelection.assets(FX_COVERAGE_KEY, UNIT_PRICES_KEY),
        partitions_def=hourly,
        description="Fetch every linked account for the hour, make sure its FX rates are "
        "landed, price the units its providers did not value, build the marts (and every later "
        "hour they change), publish them and the report; then fail the run, at "
        "every_account_fetched, if a linked account failed an hour of it.",
    )
    transform_job = dg.define_asset_job(
        TRANSFORM_JOB,
        selection=dg.AssetSelection.groups(*TRANSFORM_GROUPS)
        | dg.AssetSelection.assets(FX_COVERAGE_KEY),
        description="Rebuild and publish the marts from the raw history already stored (no "
        "fetching): after an FX correction or a change to the models. Every hour by default; "
        "the run tags finbot/first_hour and finbot/last_hour (YYYY-MM-DD-HH:MM, inclusive) "
        "limit it to those hours.",
    )
    fx_job = dg.define_asset_job(
        FX_JOB,
        selection=dg.AssetSelection.assets(FX_RATES_KEY),
        partitions_def=daily,
        description="Land the day's euro reference rates.",
    )
    schedules = [
        dg.build_schedule_from_partitioned_job(
            hourly_job,
            minute_of_hour=5,
            name="finbot_hourly_schedule",
            description="Five minutes past every hour: ingest, transform and publish the hour "
            "that just ended.",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        ),
        dg.build_schedule_from_partitioned_job(
            fx_job,
            hour_of_day=16,
            minute_of_hour=30,
            name="finbot_fx_daily_schedule",
            description="Every day at 16:30 UTC, after the ECB publishes (around 16:00 CET), "
            "land the rates of the previous day.",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        ),
    ]
    return [hourly_job, transform_job, fx_job], schedules
