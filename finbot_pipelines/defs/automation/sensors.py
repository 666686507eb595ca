"""Sensors: rebuild the hours an FX publication changes."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from finbot_pipelines.defs.automation.jobs import TRANSFORM_JOB
from finbot_pipelines.defs.market.assets import FX_RATES_KEY
from finbot_pipelines.defs.window import window_tags

#: How far back an FX publication may reach when rebuilding hours.
MAX_REBUILD = timedelta(days=7)


def fx_rebuild_window(
    partition_day: str, now: datetime, history_start: datetime
) -> tuple[datetime, datetime] | None:
    """The hours whose valuation the rates of ``partition_day`` can change.

    The ECB publishes day D's rates in the afternoon of D, so hours of D (and of
    any day since, until the next publication) were valued with an older rate.
    Rebuilding them makes the incremental marts equal a full refresh.
    """
    first = datetime.strptime(partition_day, "%Y-%m-%d")
    last = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    first = max(first, last - MAX_REBUILD, history_start)
    if first > last:
        return None
    return first, last


def build_fx_rebuild_sensor(history_start: datetime, fx_source: str) -> dg.SensorDefinition:
    @dg.asset_sensor(
        asset_key=FX_RATES_KEY,
        job_name=TRANSFORM_JOB,
        name="fx_rates_rebuild_sensor",
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When a day's FX rates land, rebuild (without fetching) the hours valued "
        "before they were published, so they use the right rate.",
    )
    def fx_rates_rebuild_sensor(
        context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
    ) -> dg.RunRequest | dg.SkipReason:
        if fx_source == "static":
            return dg.SkipReason("static FX rates are known before the hours they value")
        event = asset_event.dagster_event
        partition = event.partition if event else None
        if not partition:
            return dg.SkipReason("FX materialisation without a partition")
        window = fx_rebuild_window(partition, datetime.now(UTC).replace(tzinfo=None), history_start)
        if window is None:
            return dg.SkipReason(f"FX rates of {partition} affect no valued hour yet")
        first, last = window
        return dg.RunRequest(
            run_key=f"fx-{partition}-{asset_event.run_id}-{asset_event.timestamp}",
            tags=window_tags(first, last),
        )

    return fx_rates_rebuild_sensor
