"""Read-only access to the published marts, for the CLI, reports and notebooks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb


def connect_published(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published catalog whose views find their files.

    The views name their Parquet files relative to the home (`published/...`): DuckDB
    resolves such paths against `file_search_path`, else the working directory, so it is
    set to the catalog's directory (the home), whatever the caller's working directory.
    """
    home = path.resolve().parent
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("set file_search_path = ?", [str(home)])
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def open_published(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the published database read-only; it is never the warehouse."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist yet: run `./finbotctl demo` or let a run publish the marts"
        )
    con = connect_published(path)
    try:
        yield con
    finally:
        con.close()


def latest_net_worth(path: Path) -> list[dict[str, Any]]:
    """Each profile's valuation at its latest valued hour."""
    with open_published(path) as con:
        cur = con.execute(
            """
            select profile_id, valuation_hour, valuation_ccy, total_assets,
                   total_liabilities, net_worth, stale_accounts
            from marts.fct_profile_valuation_hourly
            qualify row_number() over (partition by profile_id order by valuation_hour desc) = 1
            order by profile_id
            """
        )
        cols = [d[0] for d in cur.description or []]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def has_mart(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the published catalog open on ``con`` has the mart ``name`` (one published
    before the mart existed has not)."""
    row = con.execute(
        "select count(*) from duckdb_tables() where schema_name = 'marts' and table_name = ?",
        [name],
    ).fetchone()
    return bool(row and row[0])


def profile_performance(path: Path, period: str = "since_first") -> list[dict[str, Any]]:
    """Each profile's performance over ``period`` (fct_performance): contributions apart
    from market gain. Empty when the published catalog has no such mart yet."""
    with open_published(path) as con:
        if not has_mart(con, "fct_performance"):
            return []
        cur = con.execute(
            """
            select profile_id, valuation_ccy, start_day, end_day, start_value, end_value,
                   net_contributions, income, costs, market_gain, twr, mwr
            from marts.fct_performance
            where level = 'profile' and period = ?
            order by profile_id
            """,
            [period],
        )
        cols = [d[0] for d in cur.description or []]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def parse_warnings(raw: object) -> list[dict[str, str]]:
    """The warnings of a fetch ({code, message} each), from the JSON list stored in
    ``raw.fetches.warnings`` and ``mart_linked_account_health.warnings``."""
    if not isinstance(raw, str) or not raw:
        return []
    try:
        parsed = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(parsed, list):
        return []
    return [
        {"code": str(w.get("code", "")), "message": str(w.get("message", ""))}
        for w in parsed
        if isinstance(w, dict)
    ]
