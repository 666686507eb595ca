"""The hours a run builds: from the run's hourly partitions, or from finbot's window tags.

Only the ingest assets are hourly partitioned (a fetch happens at one hour). The
dbt models, the publish and the report are unpartitioned: Dagster would otherwise
book one event per model and per hour (34,000 events for a 30-day rebuild), which
costs far more than the SQL. A run tells them which hours to rebuild with its tags:

- the hourly job's runs carry Dagster's partition tags (`dagster/partition`, or
  `dagster/asset_partition_range_start/end` for a range);
- the transform job is unpartitioned: `finbot/first_hour` and `finbot/last_hour`
  (format `YYYY-MM-DD-HH:MM`, both inclusive) choose the hours; without them the
  run rebuilds every hour of the raw history.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from finbot_pipelines.defs.partitions import HOUR_FMT

FIRST_HOUR_TAG = "finbot/first_hour"
LAST_HOUR_TAG = "finbot/last_hour"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


class WindowTagError(ValueError):
    """A run tag that should name an hour does not."""


@dataclass(frozen=True)
class HourWindow:
    """Hours ``first`` .. ``last``, both inclusive naive-UTC hour starts."""

    first: datetime
    last: datetime

    def __post_init__(self) -> None:
        for ts in (self.first, self.last):
            if ts.minute or ts.second or ts.microsecond or ts.tzinfo is not None:
                raise WindowTagError(f"{ts!r} is not a naive UTC hour start")
        if self.last < self.first:
            raise WindowTagError(f"window ends ({self.last}) before it starts ({self.first})")

    @property
    def hours(self) -> int:
        return int((self.last - self.first) / timedelta(hours=1)) + 1

    def __str__(self) -> str:
        if self.first == self.last:
            return f"{self.first:%Y-%m-%d %H:00}"
        return f"{self.first:%Y-%m-%d %H:00} .. {self.last:%Y-%m-%d %H:00}"


def window_tags(first: datetime, last: datetime) -> dict[str, str]:
    """Tags that make a transform run rebuild the hours [first, last]."""
    window = HourWindow(first, last)
    return {
        FIRST_HOUR_TAG: window.first.strftime(HOUR_FMT),
        LAST_HOUR_TAG: window.last.strftime(HOUR_FMT),
    }


def _hour(tags: Mapping[str, str], name: str) -> datetime:
    value = tags[name]
    try:
        return datetime.strptime(value, HOUR_FMT)
    except ValueError:
        raise WindowTagError(
            f"run tag {name}={value!r} is not an hour like 2026-11-24-13:00"
        ) from None


def window_from_tags(tags: Mapping[str, str]) -> HourWindow | None:
    """The run's hours, or None for "every hour of the history"."""
    if FIRST_HOUR_TAG in tags or LAST_HOUR_TAG in tags:
        if not (FIRST_HOUR_TAG in tags and LAST_HOUR_TAG in tags):
            raise WindowTagError(f"set both {FIRST_HOUR_TAG} and {LAST_HOUR_TAG}, or neither")
        return HourWindow(_hour(tags, FIRST_HOUR_TAG), _hour(tags, LAST_HOUR_TAG))
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return HourWindow(_hour(tags, RANGE_START_TAG), _hour(tags, RANGE_END_TAG))
    if PARTITION_TAG in tags:
        hour = _hour(tags, PARTITION_TAG)
        return HourWindow(hour, hour)
    return None


def with_dependents(window: HourWindow, latest: datetime | None) -> HourWindow:
    """The hours a build of ``window`` must rebuild so the marts equal a full refresh.

    Every figure of an hour depends only on the raw data of that hour and of earlier
    ones: the consistent snapshot carries an account's latest success forward, a
    change compares with an hour up to two years (and a gap) before, a period
    summarises the hours it contains. So when hours [first, last] are (re)built,
    every later hour may change too (a late hour becomes the source a failing
    account carried, or the reference of a change), and nothing earlier does: the
    build must cover [first, max(last, latest ingested hour)]. For the hourly run of
    the newest hour this is the window itself."""
    if latest is None or latest <= window.last:
        return window
    return HourWindow(window.first, latest)


def impossible_hours(
    first: datetime, last: datetime, history_start: datetime, now: datetime
) -> str | None:
    """Why hours [first, last] cannot be valued (None when they can): an hour after the
    current one has not begun (a fetch now would stamp today's balances on it), an
    hour before ``history_start`` is outside the history."""
    current = now.replace(minute=0, second=0, microsecond=0)
    if last > current:
        return (
            f"{last:%Y-%m-%d %H:00} UTC has not begun (the current hour is "
            f"{current:%Y-%m-%d %H:00} UTC): an hour is fetched once it has started, never "
            "before"
        )
    if first < history_start:
        return (
            f"{first:%Y-%m-%d %H:00} UTC is before history_start "
            f"({history_start:%Y-%m-%d %H:00} UTC in finbot.yaml): move history_start earlier "
            "first to value older hours"
        )
    return None
