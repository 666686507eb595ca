"""Publish the marts to the readers' database file, atomically.

Readers (the CLI, notebooks, the report) open `$FINBOT_HOME/finbot.duckdb`, never
the warehouse. Each publish writes a complete new file next to it and renames it
into place: a reader that has the old file open keeps a consistent old copy, a
reader that opens after the rename sees the new one, and nobody ever sees half an
hour or blocks the pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

PUBLISHED_SCHEMA = "marts"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class PublishResult:
    path: Path
    tables: dict[str, int]
    published_at: datetime


def publish_marts(warehouse: Path, published: Path, fx_source: str) -> PublishResult:
    """Copy every table of the warehouse's `marts` schema into a fresh file, then rename it."""
    published.parent.mkdir(parents=True, exist_ok=True)
    tmp = published.with_name(f".{published.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    now = datetime.now(UTC).replace(tzinfo=None)
    tables: dict[str, int] = {}
    con = duckdb.connect(str(tmp))
    try:
        con.execute(f"attach '{warehouse}' as wh (read_only)")
        names = [
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() "
                "where database_name = 'wh' and schema_name = ? order by 1",
                [PUBLISHED_SCHEMA],
            ).fetchall()
        ]
        con.execute(f"create schema {PUBLISHED_SCHEMA}")
        for name in names:
            con.execute(
                f"create table {PUBLISHED_SCHEMA}.{_q(name)} as "
                f"select * from wh.{PUBLISHED_SCHEMA}.{_q(name)}"
            )
            row = con.execute(f"select count(*) from {PUBLISHED_SCHEMA}.{_q(name)}").fetchone()
            tables[name] = int(row[0]) if row else 0
        con.execute(
            f"create table {PUBLISHED_SCHEMA}.publish_info as "
            "select ?::timestamp as published_at, ?::varchar as fx_source",
            [now, fx_source],
        )
        con.execute("detach wh")
        con.execute("checkpoint")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, published)
    return PublishResult(published, tables, now)
