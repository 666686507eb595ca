"""Partitions: hours for linked accounts and transforms, days for FX rates."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

HOUR_FMT = "%Y-%m-%d-%H:%M"

#: Hourly assets are expected fresh: a warning after 2 hours without a run, a failure after 3.
HOURLY_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=3), warn_window=timedelta(hours=2)
)
#: FX rates: the ECB publishes on business days; a long weekend is 4 days.
DAILY_FX_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(days=5), warn_window=timedelta(days=4)
)


def hourly_partitions(start: datetime) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(
        start_date=start.strftime(HOUR_FMT), timezone="UTC", fmt=HOUR_FMT
    )


def daily_partitions(start: datetime) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.strftime("%Y-%m-%d"), timezone="UTC")


def naive_utc(ts: datetime) -> datetime:
    """A tz-aware datetime as naive UTC (the warehouse convention)."""
    if ts.tzinfo is None:
        return ts
    from datetime import UTC

    return ts.astimezone(UTC).replace(tzinfo=None)
