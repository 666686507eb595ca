"""The hours a dbt build rebuilds, handed to dbt through a one-row table.

Passing the window as `--vars` changes dbt's parse inputs every hour, and dbt
then re-parses the whole project (3-5 s a run). Instead the dbt asset writes the
window to `finbot_control.build_window` just before `dbt build` and empties it
right after; the `hour_window` macros read it when the models execute, so the
parsed project never changes and dbt's partial parsing applies. No row means
every hour (a full rebuild), which is also what a hand-run `dbt build` gets.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

CONTROL_DDL = """
create schema if not exists finbot_control;
create table if not exists finbot_control.build_window (
    first_hour timestamp not null,
    last_hour  timestamp not null
);
-- What each successful dbt build rebuilt (NULL bounds: every hour), for the publish of
-- the same run, and the valuation settings it used (a JSON object); the newest few kept.
create table if not exists finbot_control.builds (
    run_id      varchar   not null,
    first_hour  timestamp,
    last_hour   timestamp,
    valuation   varchar   not null,
    finished_at timestamp not null
);
-- Hours a writer changed in the past (a statement landed at its own date): the next dbt
-- build rebuilds from the earliest of them on, then clears them.
create table if not exists finbot_control.pending_rebuild (
    first_hour  timestamp not null,
    reason      varchar   not null,
    recorded_at timestamp not null
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


def latest_ingested_hour(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The newest hour of the raw history (None for an empty warehouse); the raw schema
    must exist (every warehouse connection of the pipeline creates it)."""
    found = con.execute("select max(fetch_hour) from raw.linked_account_hours").fetchone()
    return found[0] if found else None


#: builds remembered (the publish of a run reads its own; the newest tells the settings)
KEPT_BUILDS = 50


def record_build(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    window: tuple[datetime, datetime] | None,
    valuation: str,
    finished_at: datetime,
) -> None:
    """Remember what a successful dbt build rebuilt and with which valuation settings."""
    con.execute(CONTROL_DDL)
    first, last = window if window is not None else (None, None)
    con.execute("begin transaction")
    con.execute(
        "insert into finbot_control.builds values (?, ?, ?, ?, ?)",
        [run_id, first, last, valuation, finished_at],
    )
    con.execute(
        "delete from finbot_control.builds where finished_at < (select min(finished_at) "
        "from (select finished_at from finbot_control.builds order by finished_at desc "
        f"limit {KEPT_BUILDS}))"
    )
    con.execute("commit")


def _build(row: tuple[object, ...] | None) -> tuple[tuple[datetime, datetime] | None, str] | None:
    if row is None:
        return None
    first, last, valuation = row
    window = (first, last) if isinstance(first, datetime) and isinstance(last, datetime) else None
    return window, str(valuation)


def last_build(
    con: duckdb.DuckDBPyConnection,
) -> tuple[tuple[datetime, datetime] | None, str] | None:
    """(window, valuation settings) of the newest successful dbt build; None before any."""
    con.execute(CONTROL_DDL)
    return _build(
        con.execute(
            "select first_hour, last_hour, valuation from finbot_control.builds "
            "order by finished_at desc limit 1"
        ).fetchone()
    )


def build_of_run(
    con: duckdb.DuckDBPyConnection, run_id: str
) -> tuple[tuple[datetime, datetime] | None, str] | None:
    """(window, valuation settings) of the dbt build of run ``run_id``; None without one."""
    con.execute(CONTROL_DDL)
    return _build(
        con.execute(
            "select first_hour, last_hour, valuation from finbot_control.builds "
            "where run_id = ? order by finished_at desc limit 1",
            [run_id],
        ).fetchone()
    )


def record_pending_rebuild(
    con: duckdb.DuckDBPyConnection, first_hour: datetime, reason: str
) -> None:
    """Ask the next dbt build to rebuild from ``first_hour`` on (the caller's transaction
    has committed the hours it changed)."""
    con.execute(CONTROL_DDL)
    con.execute(
        "insert into finbot_control.pending_rebuild values (?, ?, ?)",
        [first_hour, reason, datetime.now(UTC).replace(tzinfo=None)],
    )


def pending_rebuild(con: duckdb.DuckDBPyConnection) -> tuple[datetime, datetime] | None:
    """(the earliest hour waiting to be rebuilt, when the newest request was recorded), or
    None when nothing waits."""
    con.execute(CONTROL_DDL)
    row = con.execute(
        "select min(first_hour), max(recorded_at) from finbot_control.pending_rebuild"
    ).fetchone()
    if not row or row[0] is None:
        return None
    return row[0], row[1]


def clear_pending_rebuild(con: duckdb.DuckDBPyConnection, recorded_until: datetime) -> None:
    """Forget the requests a successful build covered (those recorded up to ``recorded_until``)."""
    con.execute(CONTROL_DDL)
    con.execute(
        "delete from finbot_control.pending_rebuild where recorded_at <= ?", [recorded_until]
    )
