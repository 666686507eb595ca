"""The hours a dbt build rebuilds, handed to dbt through a one-row table.

Passing the window as `--vars` changes dbt's parse inputs every hour, and dbt
then re-parses the whole project (3-5 s a run). Instead the dbt asset writes the
window to `finbot_control.build_window` just before `dbt build` and empties it
right after; the `hour_window` macros read it when the models execute, so the
parsed project never changes and dbt's partial parsing applies. No row means
every hour (a full rebuild), which is also what a hand-run `dbt build` gets.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

CONTROL_DDL = """
create schema if not exists finbot_control;
create table if not exists finbot_control.build_window (
    first_hour timestamp not null,
    last_hour  timestamp not null
);
"""


def set_build_window(
    con: duckdb.DuckDBPyConnection, window: tuple[datetime, datetime] | None
) -> None:
    """Replace the window dbt will read (None: every hour)."""
    con.execute(CONTROL_DDL)
    con.execute("begin transaction")
    con.execute("delete from finbot_control.build_window")
    if window is not None:
        con.execute("insert into finbot_control.build_window values (?, ?)", list(window))
    con.execute("commit")


def clear_build_window(con: duckdb.DuckDBPyConnection) -> None:
    set_build_window(con, None)
