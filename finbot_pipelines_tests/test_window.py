"""Which hours a run rebuilds, from its tags (pure logic, no Dagster run)."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from finbot_pipelines.defs.window import HourWindow, WindowTagError, window_from_tags, window_tags
from finbot_pipelines.warehouse.build_window import clear_build_window, set_build_window

H13 = datetime(2026, 11, 24, 13)
H15 = datetime(2026, 11, 24, 15)


def test_finbot_tags_round_trip() -> None:
    tags = window_tags(H13, H15)
    assert tags == {"finbot/first_hour": "2026-11-24-13:00", "finbot/last_hour": "2026-11-24-15:00"}
    window = window_from_tags(tags)
    assert window == HourWindow(H13, H15)
    assert window is not None and window.hours == 3


def test_partition_tags_of_the_hourly_job() -> None:
    assert window_from_tags({"dagster/partition": "2026-11-24-13:00"}) == HourWindow(H13, H13)
    ranged = {
        "dagster/asset_partition_range_start": "2026-11-24-13:00",
        "dagster/asset_partition_range_end": "2026-11-24-15:00",
    }
    assert window_from_tags(ranged) == HourWindow(H13, H15)


def test_no_tags_means_every_hour() -> None:
    assert window_from_tags({"dagster/backfill": "abc"}) is None


def test_finbot_tags_win_over_partition_tags() -> None:
    tags = {**window_tags(H15, H15), "dagster/partition": "2026-11-24-13:00"}
    assert window_from_tags(tags) == HourWindow(H15, H15)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"finbot/first_hour": "2026-11-24-13:00"}, "set both"),
        ({"finbot/first_hour": "yesterday", "finbot/last_hour": "2026-11-24-13:00"}, "yesterday"),
        (
            {"finbot/first_hour": "2026-11-24-15:00", "finbot/last_hour": "2026-11-24-13:00"},
            "before it starts",
        ),
        ({"dagster/partition": "2026-11-24"}, "dagster/partition"),
    ],
)
def test_bad_tags_are_named(tags: dict[str, str], message: str) -> None:
    with pytest.raises(WindowTagError, match=message):
        window_from_tags(tags)


def test_window_table_holds_one_window_or_none() -> None:
    con = duckdb.connect(":memory:")
    set_build_window(con, (H13, H15))
    set_build_window(con, (H15, H15))
    assert con.execute("select * from finbot_control.build_window").fetchall() == [(H15, H15)]
    clear_build_window(con)
    assert con.execute("select count(*) from finbot_control.build_window").fetchone() == (0,)
