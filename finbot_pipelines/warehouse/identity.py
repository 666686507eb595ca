"""The warehouse's identity and extent, and the check that a lost warehouse is noticed.

Raw history is irreplaceable (a bank never sends a past hour again), so a warehouse that
is missing, replaced by another one or shorter than what the published marts were built
from must stop the pipeline instead of being silently recreated empty.

- Identity: `raw.warehouse_identity` holds one row, a random id created with the
  warehouse (kept by a backup and its restore).
- Extent: the first and last ingested hour, the number of hours and of account-hours
  (rows of `raw.linked_account_hours`), the rows of every raw table, and the hours
  deliberately forgotten (`finbot hours forget`, tallied in `raw.forgotten_hours`). It
  is computed from the raw tables when asked, never stored beside them.
- Mirror: each publish writes the warehouse's extent into the catalog
  (`publish_meta.warehouse` of finbot.duckdb); each backup writes it into its manifest.
- Check (`check_home`, before a run opens the warehouse): with a mirror, the warehouse
  must exist, carry the mirror's identity, and hold at least as many hours and
  account-hours (counting those forgotten on purpose), from no later a first hour to no
  earlier a last hour (unless hours were forgotten since). Without a catalog, a
  missing warehouse is a new home, unless the home has backups. Re-running an hour may
  land fewer items (an account failing on the retry), so item counts are reported, not
  checked.

Starting over is explicit: `finbot restore --empty` (see `backup.start_over`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

IDENTITY_DDL = """
create table if not exists raw.warehouse_identity (
    warehouse_id varchar   not null,   -- random, created with the warehouse
    created_at   timestamp not null
);
-- Hours removed on purpose (`finbot hours forget`): the loss check counts them.
create table if not exists raw.forgotten_hours (
    forgotten_at  timestamp not null,
    first_hour    timestamp not null,
    last_hour     timestamp not null,
    hours         bigint    not null,
    account_hours bigint    not null
);
"""

#: The catalog table holding the extent of the warehouse the marts were published from.
MIRROR_TABLE = "warehouse"
#: Tables of the raw schema that are bookkeeping, not history.
META_TABLES = ("warehouse_identity", "forgotten_hours")


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_warehouse_id() -> str:
    return secrets.token_hex(8)


def ensure_identity(con: duckdb.DuckDBPyConnection, warehouse_id: str | None = None) -> str:
    """Create the identity table (and its row, with a new random id) when absent."""
    con.execute(IDENTITY_DDL)
    row = con.execute("select warehouse_id from raw.warehouse_identity limit 1").fetchone()
    if row is not None:
        return str(row[0])
    wid = warehouse_id or new_warehouse_id()
    con.execute("insert into raw.warehouse_identity values (?, ?)", [wid, _utcnow()])
    return wid


@dataclass(frozen=True)
class Extent:
    """What a warehouse holds (or held when the marts were published / backed up)."""

    warehouse_id: str | None
    first_hour: datetime | None = None
    last_hour: datetime | None = None
    hours: int = 0
    account_hours: int = 0
    forgotten_hours: int = 0
    forgotten_account_hours: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.hours or self.first_hour is None or self.last_hour is None:
            return "no hours"
        return (
            f"{self.hours} hour(s), {self.first_hour:%Y-%m-%d %H:00} .. "
            f"{self.last_hour:%Y-%m-%d %H:00} UTC, {self.account_hours} account-hour(s)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "warehouse_id": self.warehouse_id,
            "first_hour": self.first_hour.isoformat() if self.first_hour else None,
            "last_hour": self.last_hour.isoformat() if self.last_hour else None,
            "hours": self.hours,
            "account_hours": self.account_hours,
            "forgotten_hours": self.forgotten_hours,
            "forgotten_account_hours": self.forgotten_account_hours,
            "rows": dict(sorted(self.rows.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Extent:
        def hour(v: object) -> datetime | None:
            return datetime.fromisoformat(str(v)) if v else None

        return cls(
            warehouse_id=data.get("warehouse_id"),
            first_hour=hour(data.get("first_hour")),
            last_hour=hour(data.get("last_hour")),
            hours=int(data.get("hours", 0)),
            account_hours=int(data.get("account_hours", 0)),
            forgotten_hours=int(data.get("forgotten_hours", 0)),
            forgotten_account_hours=int(data.get("forgotten_account_hours", 0)),
            rows={str(k): int(v) for k, v in dict(data.get("rows") or {}).items()},
        )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def raw_tables(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> list[str]:
    """The base tables of the raw schema (of the attached `catalog`, or the default one)."""
    where = "database_name = ?" if catalog else "database_name = current_database()"
    params = [catalog] if catalog else []
    return [
        r[0]
        for r in con.execute(
            f"select table_name from duckdb_tables() where {where} and schema_name = 'raw' "
            "order by table_name",
            params,
        ).fetchall()
    ]


def read_extent(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> Extent:
    """The extent of the warehouse open on `con` (or ATTACHed as `catalog`)."""
    tables = raw_tables(con, catalog)
    raw = f"{_q(catalog)}.raw" if catalog else "raw"

    def one(sql: str) -> tuple[Any, ...]:
        row = con.execute(sql).fetchone()
        assert row is not None
        return tuple(row)

    rows = {t: int(one(f"select count(*) from {raw}.{_q(t)}")[0]) for t in tables}
    wid = None
    if "warehouse_identity" in tables:
        found = con.execute(f"select warehouse_id from {raw}.warehouse_identity limit 1").fetchone()
        wid = str(found[0]) if found else None
    first = last = None
    hours = 0
    if "linked_account_hours" in tables:
        first, last, hours = one(
            f"select min(fetch_hour), max(fetch_hour), count(distinct fetch_hour) "
            f"from {raw}.linked_account_hours"
        )
    f_hours = f_account_hours = 0
    if "forgotten_hours" in tables:
        f_hours, f_account_hours = one(
            f"select coalesce(sum(hours), 0), coalesce(sum(account_hours), 0) "
            f"from {raw}.forgotten_hours"
        )
    return Extent(
        warehouse_id=wid,
        first_hour=first,
        last_hour=last,
        hours=int(hours),
        account_hours=rows.get("linked_account_hours", 0),
        forgotten_hours=int(f_hours),
        forgotten_account_hours=int(f_account_hours),
        rows={t: n for t, n in rows.items() if t not in META_TABLES},
    )


def record_forgotten(
    con: duckdb.DuckDBPyConnection, first: datetime, last: datetime, hours: int, account_hours: int
) -> None:
    """Tally hours removed on purpose (inside the caller's transaction)."""
    con.execute(IDENTITY_DDL)
    con.execute(
        "insert into raw.forgotten_hours values (?, ?, ?, ?, ?)",
        [_utcnow(), first, last, hours, account_hours],
    )


def shrinkage(current: Extent, published: Extent) -> str | None:
    """Why `current` cannot be the warehouse `published` describes, or None."""
    if published.warehouse_id is None:
        return None
    if current.warehouse_id != published.warehouse_id:
        return (
            f"it is another warehouse (id {current.warehouse_id or 'none'}), not the one the "
            f"published marts come from (id {published.warehouse_id}, {published.describe()})"
        )
    have = current.hours + current.forgotten_hours
    had = published.hours + published.forgotten_hours
    have_ah = current.account_hours + current.forgotten_account_hours
    had_ah = published.account_hours + published.forgotten_account_hours
    forgotten_since = current.forgotten_hours > published.forgotten_hours
    ends_moved = (
        published.first_hour is not None
        and (current.first_hour is None or current.first_hour > published.first_hour)
    ) or (
        published.last_hour is not None
        and (current.last_hour is None or current.last_hour < published.last_hour)
    )
    if have < had or have_ah < had_ah or (ends_moved and not forgotten_since):
        return (
            f"it holds {current.describe()}, less than the published marts were built from "
            f"({published.describe()})"
        )
    return None


def _lit(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def published_mirror(published: Path) -> Extent | None:
    """The extent the catalog `published` was built from (None: no catalog, or one
    written before finbot kept a mirror). Read through an in-memory ATTACH: see
    `publish`'s module docstring."""
    if not published.exists():
        return None
    con = duckdb.connect()
    try:
        con.execute(f"attach {_lit(published)} as cat (read_only)")
        found = con.execute(
            "select 1 from duckdb_tables() where database_name = 'cat' "
            f"and schema_name = 'publish_meta' and table_name = '{MIRROR_TABLE}'"
        ).fetchone()
        if found is None:
            return None
        row = con.execute(
            "select warehouse_id, first_hour, last_hour, hours, account_hours, "
            f"forgotten_hours, forgotten_account_hours from cat.publish_meta.{MIRROR_TABLE}"
        ).fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    if row is None:
        return None
    return Extent(row[0], row[1], row[2], int(row[3]), int(row[4]), int(row[5]), int(row[6]))


def write_mirror(con: duckdb.DuckDBPyConnection, catalog: str, extent: Extent) -> None:
    """Write `extent` into `<catalog>.publish_meta.warehouse` (the schema exists)."""
    con.execute(
        f"create table {catalog}.publish_meta.{MIRROR_TABLE} (warehouse_id varchar, "
        "first_hour timestamp, last_hour timestamp, hours bigint, account_hours bigint, "
        "forgotten_hours bigint, forgotten_account_hours bigint)"
    )
    con.execute(
        f"insert into {catalog}.publish_meta.{MIRROR_TABLE} values (?, ?, ?, ?, ?, ?, ?)",
        [
            extent.warehouse_id,
            extent.first_hour,
            extent.last_hour,
            extent.hours,
            extent.account_hours,
            extent.forgotten_hours,
            extent.forgotten_account_hours,
        ],
    )


class WarehouseLost(RuntimeError):
    """The warehouse is missing, replaced or shorter than what was published."""


def _advice(home: Path, latest_backup: Path | None) -> str:
    where = (
        f"the latest backup is {latest_backup}: `finbot restore {latest_backup} --force`"
        if latest_backup is not None
        else "restore a backup with `finbot restore SRC --force` (no backup found in "
        f"{home / 'backups'})"
    )
    return (
        f"Nothing was written. Raw history cannot be fetched again: {where}. To start over "
        "with an empty history on purpose, run `finbot restore --empty`."
    )


def check_home(home: Path, warehouse: Path, published: Path, latest_backup: Path | None) -> None:
    """Raise WarehouseLost when the warehouse is missing, replaced or shorter than the
    published marts say (see the module docstring). Opens the warehouse only read-only
    and briefly, and only when there is a mirror to compare it with."""
    mirror = published_mirror(published)
    if not warehouse.exists():
        if published.exists():
            what = f" ({mirror.describe()})" if mirror else ""
            raise WarehouseLost(
                f"the warehouse {warehouse} is missing, but marts were published from it"
                f"{what}. " + _advice(home, latest_backup)
            )
        if latest_backup is not None:
            raise WarehouseLost(
                f"the warehouse {warehouse} is missing and nothing is published, but this "
                "home has backups. " + _advice(home, latest_backup)
            )
        return  # a new home


def check_open(
    con: duckdb.DuckDBPyConnection,
    home: Path,
    warehouse: Path,
    published: Path,
    latest_backup: Path | None,
) -> None:
    """The check of an open warehouse connection against the published mirror."""
    check_extent(read_extent(con), home, warehouse, published, latest_backup)


def check_extent(
    extent: Extent, home: Path, warehouse: Path, published: Path, latest_backup: Path | None
) -> None:
    """The check of a warehouse's extent against the published mirror."""
    mirror = published_mirror(published)
    if mirror is None:
        return
    why = shrinkage(extent, mirror)
    if why is not None:
        raise WarehouseLost(
            f"the warehouse {warehouse} cannot be the one the published marts "
            f"({published}) were built from: {why}. " + _advice(home, latest_backup)
        )
