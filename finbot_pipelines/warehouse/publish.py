"""Publish the marts to the readers' database file, atomically, at a cost independent of history.

Readers (the CLI, notebooks, the report) open `$FINBOT_HOME/finbot.duckdb` read-only, never
the warehouse. That file is a small *catalog*, rebuilt and renamed into place at every
publish; the big hourly marts live beside it in immutable Parquet files:

    finbot.duckdb                                   the catalog (schema `marts`)
    published/<table>/<start>.<kind>.<publish id>.parquet
    published/.lock  published/.tmp/                the publish lock, DuckDB's spill directory

- A mart with a `valuation_hour` column is a *period table*: one Parquet file per period,
  rows sorted by valuation_hour so that row-group statistics prune `valuation_hour = X`
  (the latest hours are in small day files). Periods, given the latest day L
  published: one file per month before L's month; in L's month one file per closed week
  (days 1-7, 8-14, 15-21, 22-28) and one per day of L's week (29-31 stay days). So an
  hourly publish rewrites one day (at most 24 hours of rows); a week, once, when it
  closes; a month, once, when it closes. Days-only (the simplest layout) means up to 31
  more files per table, and every query pays for each file it opens (1.5-2.5x slower
  holdings_tree near a month's end). In the catalog each period table is a VIEW over
  exactly its current files, cast back to the warehouse's column types where Parquet would
  change one (HUGEINT). The views name their files relative to the home
  (`read_parquet(['published/<table>/...'])`), so a copied, moved or restored home reads
  its own files. DuckDB resolves such a path against `file_search_path` when set, else the
  process's working directory: every finbot reader opens the catalog through
  `queries.open_published`, which sets `file_search_path` to the home; any other client
  does the same (or `cd $FINBOT_HOME`). DuckDB offers no way for a view to name a file
  relative to the database file itself (a table function's arguments must be constants:
  `duckdb_databases()` cannot be used in them).
- The other marts (health, periods, ...) and `publish_info` are small tables copied whole.
- A publish given `window` (the hours the build just rebuilt) rewrites only the periods
  those hours fall in, plus the periods a new latest day closes (a closed week's day files
  are compacted into a week file, a closed month's into a month file: once each). Every
  rewritten period gets a new file name; a file is never modified after it is written.
- Bookkeeping lives in the catalog itself (schema `publish_meta`: the files with their row
  counts and sizes, the files no longer referenced and since when, the columns, and the
  extent of the warehouse the marts came from: `identity` and the loss check), so it is
  replaced atomically with the views. Paths in it are relative to the home, too. A
  missing or foreign catalog (another layout), a missing or resized file, a changed column
  set, or no window: full publish.
- A file no longer referenced is deleted `GRACE` (24 h) after it stopped being referenced,
  so a reader that opened an older catalog keeps reading it. Files that no catalog ever
  referenced (a publish killed before its rename) are deleted by the next publish.
- Crash safety: nothing a committed catalog references is touched before the rename, and
  the rename is the commit (files and catalog fsynced before it). One publisher at a time
  (an exclusive lock on `published/.lock`, on top of Dagster's pool).

The publish reads the previous catalog through an in-memory connection that ATTACHes it:
`duckdb.connect(path)` would reuse a DuckDB instance already open on that path in this
process, which still sees the file that was there before the last rename. (The same holds
for readers: a process keeps seeing the catalog it first opened for as long as it keeps a
connection to it open, and after GRACE that catalog's older files may be gone.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from finbot_pipelines.warehouse.identity import read_extent, write_mirror

PUBLISHED_SCHEMA = "marts"
META_SCHEMA = "publish_meta"
PERIOD_COLUMN = "valuation_hour"
#: Bump when the layout of the files or of `publish_meta` changes: the next publish is full.
#: 2: paths relative to the home, and the warehouse mirror.
LAYOUT_VERSION = 2
#: `publish_meta.state.root` of a catalog whose paths are relative to its home.
RELATIVE_ROOT = "published"
#: How long a file stays on disk after the last catalog referencing it was replaced.
GRACE = timedelta(hours=24)
MEMORY_LIMIT = "1GB"
#: Types Parquet cannot hold exactly: written as the right-hand type, cast back in the view.
_WRITE_AS = {"HUGEINT": "DECIMAL(38,0)"}

Columns = list[tuple[str, str]]  # (name, DuckDB type) in table order


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def files_root(published: Path) -> Path:
    """The directory of the period files of the catalog `published`."""
    return published.parent.resolve() / RELATIVE_ROOT


def relative(path: Path, root: Path) -> str:
    """How the catalog names a file of `root` (the home's published/): from the home."""
    return path.relative_to(root.parent).as_posix()


@dataclass(frozen=True, order=True)
class Period:
    """Days [start, end) published in one file; kind is month, week or day."""

    start: date
    end: date
    kind: str

    def contains(self, other: Period) -> bool:
        return self.start <= other.start and other.end <= self.end

    def overlaps(self, other: Period) -> bool:
        return self.start < other.end and other.start < self.end


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _next_month(d: date) -> date:
    return (d.replace(day=1) + timedelta(days=32)).replace(day=1)


def period_of(day: date, latest: date) -> Period:
    """The period whose file holds `day` when `latest` is the latest day published."""
    month, next_month = _month_start(day), _next_month(day)
    if (day.year, day.month) < (latest.year, latest.month):
        return Period(month, next_month, "month")
    week = (day.day - 1) // 7
    if (day.year, day.month) == (latest.year, latest.month) and week < (latest.day - 1) // 7:
        start = month + timedelta(days=7 * week)
        return Period(start, min(start + timedelta(days=7), next_month), "week")
    return Period(day, day + timedelta(days=1), "day")


@dataclass(frozen=True)
class PeriodFile:
    table: str
    period: Period
    path: Path
    rows: int
    size: int


@dataclass(frozen=True)
class PublishResult:
    path: Path
    #: Rows of every published table: small tables counted in the catalog, period tables
    #: summed from the row counts recorded when each file was written (no scan of history).
    tables: dict[str, int]
    published_at: datetime
    #: True when everything was rewritten (no window, first publish, layout or schema change).
    full: bool = True
    #: Rows and files written by this publish (the work done), per period table.
    rows_written: dict[str, int] = field(default_factory=dict)
    files_written: int = 0
    #: Files deleted: past their grace period, or never referenced by any catalog.
    files_deleted: int = 0


@dataclass
class _State:
    """What the previous catalog says (only when it belongs to this home and layout)."""

    latest_hour: datetime | None
    files: list[PeriodFile]
    retired: dict[Path, datetime]
    columns: dict[str, Columns]


# --------------------------------------------------------------------------- entry point


def publish_marts(
    warehouse: Path,
    published: Path,
    fx_source: str,
    window: tuple[datetime, datetime] | None = None,
) -> PublishResult:
    """Publish the warehouse's `marts` schema to the catalog `published` and its files.

    `window` = (first_hour, last_hour), inclusive naive-UTC hour starts of the hours the
    build just rebuilt; None republishes everything (first publish, full rebuild).
    """
    if window is not None:
        first, last = (_naive_utc(h) for h in window)
        if first > last:
            raise ValueError(f"publish window starts after it ends: {first} > {last}")
        window = (first, last)
    root = files_root(published)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / ".lock"):
        return _publish(warehouse, published, root, fx_source, window)


def _naive_utc(hour: datetime) -> datetime:
    if hour.tzinfo is not None:
        hour = hour.astimezone(UTC).replace(tzinfo=None)
    return hour


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _publish(
    warehouse: Path,
    published: Path,
    root: Path,
    fx_source: str,
    window: tuple[datetime, datetime] | None,
) -> PublishResult:
    now = _utcnow()
    publish_id = now.strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(3)
    for stale in published.parent.glob(f".{published.name}.*.tmp*"):
        stale.unlink(missing_ok=True)  # catalogs of publishes killed before their rename
    prev = _read_state(published, root)
    tmp = published.with_name(f".{published.name}.{publish_id}.tmp")
    written: list[PeriodFile] = []
    con = duckdb.connect()  # in memory: the catalog is ATTACHed, see the module docstring
    try:
        con.execute(f"set memory_limit = {_lit(MEMORY_LIMIT)}")
        con.execute(f"set temp_directory = {_lit(root / '.tmp')}")
        # the views name their files relative to the home: resolved against it
        con.execute(f"set file_search_path = {_lit(root.parent)}")
        con.execute(f"attach {_lit(warehouse)} as wh (read_only)")
        marts = _warehouse_marts(con)
        period_tables = {n: c for n, c in marts.items() if any(x == PERIOD_COLUMN for x, _ in c)}
        full = window is None or prev is None or not _consistent(prev, period_tables, root)
        plan = _plan(con, prev if not full else None, period_tables, window)
        if plan is None:  # the previous files do not fit the periods: start again
            full, plan = True, _plan(con, None, period_tables, window)
            assert plan is not None
        latest_hour, dirty, kept = plan
        for table, periods in dirty.items():
            _write_periods(con, root, table, period_tables[table], periods, publish_id, written)
        current = sorted(kept + written, key=lambda f: (f.table, f.period))
        retired, doomed = _collect_garbage(prev, root, current, now)
        counts = _write_catalog(
            con,
            root,
            tmp,
            marts,
            current,
            retired,
            publish_info=(now, fx_source, publish_id),
            state=(RELATIVE_ROOT, publish_id, now, latest_hour),
        )
    except BaseException:
        con.close()
        for f in written:
            f.path.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        raise
    con.close()
    for f in written:
        fsync_file(f.path)
    fsync_file(tmp)
    _commit(tmp, published)
    deleted = _delete(doomed, root)

    for name in period_tables:
        counts[name] = sum(f.rows for f in current if f.table == name)
    rows_written = {name: 0 for name in period_tables}
    for f in written:
        rows_written[f.table] += f.rows
    return PublishResult(
        path=published,
        tables=dict(sorted(counts.items())),
        published_at=now,
        full=full,
        rows_written=rows_written,
        files_written=len(written),
        files_deleted=deleted,
    )


def _commit(tmp: Path, published: Path) -> None:
    """The commit point: readers opening `published` from now on see the new catalog."""
    os.replace(tmp, published)
    fsync_file(published.parent)


# --------------------------------------------------------------------------- state


def _read_state(published: Path, root: Path) -> _State | None:
    """The previous catalog's bookkeeping, or None when it is absent, unreadable, of another
    layout or of another home (its files would not be ours)."""
    if not published.exists():
        return None
    con = duckdb.connect()
    try:
        con.execute(f"attach {_lit(published)} as prev (read_only)")
        row = con.execute(
            f"select layout, root, latest_hour from prev.{META_SCHEMA}.state"
        ).fetchone()
        if row is None or row[0] != LAYOUT_VERSION or row[1] != RELATIVE_ROOT:
            return None
        home = root.parent
        files = [
            PeriodFile(t, Period(s, e, k), home / p, int(n), int(b))
            for t, k, s, e, p, n, b in con.execute(
                "select table_name, kind, period_start, period_end, path, row_count, byte_size "
                f"from prev.{META_SCHEMA}.files order by table_name, period_start"
            ).fetchall()
        ]
        retired = {
            home / p: at
            for p, at in con.execute(
                f"select path, retired_at from prev.{META_SCHEMA}.retired"
            ).fetchall()
        }
        columns: dict[str, Columns] = {}
        for t, name, typ in con.execute(
            "select table_name, column_name, data_type "
            f"from prev.{META_SCHEMA}.columns order by table_name, column_index"
        ).fetchall():
            columns.setdefault(t, []).append((name, typ))
        return _State(row[2], files, retired, columns)
    except duckdb.Error:
        return None
    finally:
        con.close()


def _warehouse_marts(con: duckdb.DuckDBPyConnection) -> dict[str, Columns]:
    marts: dict[str, Columns] = {}
    for table, column, typ in con.execute(
        "select c.table_name, c.column_name, c.data_type from duckdb_columns() c "
        "join duckdb_tables() t using (database_name, schema_name, table_name) "
        "where c.database_name = 'wh' and c.schema_name = ? "
        "order by c.table_name, c.column_index",
        [PUBLISHED_SCHEMA],
    ).fetchall():
        marts.setdefault(table, []).append((column, typ))
    return marts


def _consistent(prev: _State, period_tables: dict[str, Columns], root: Path) -> bool:
    """The previous files can be kept: same tables and columns, every file where it was."""
    if prev.columns != period_tables:
        return False
    for f in prev.files:
        if f.path.parent.parent != root or f.table not in period_tables:
            return False
        try:
            if f.path.stat().st_size != f.size:
                return False
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- plan


def _days(first: date, last: date) -> Iterator[date]:
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


def _plan(
    con: duckdb.DuckDBPyConnection,
    prev: _State | None,
    period_tables: dict[str, Columns],
    window: tuple[datetime, datetime] | None,
) -> tuple[datetime | None, dict[str, set[Period]], list[PeriodFile]] | None:
    """(latest hour, periods to write per table, files kept), or None when the previous
    files do not line up with the periods (then everything is rewritten)."""
    if prev is None or window is None:
        return _plan_full(con, period_tables)
    first, last = window
    if prev.latest_hour is not None and last > prev.latest_hour:
        # hours built after the last publish but never published (a failed publish)
        first = min(first, prev.latest_hour + timedelta(hours=1))
    latest = last if prev.latest_hour is None else max(last, prev.latest_hour)
    touched = {period_of(d, latest.date()) for d in _days(first.date(), last.date())}
    dirty: dict[str, set[Period]] = {}
    kept: list[PeriodFile] = []
    for table in period_tables:
        files = [f for f in prev.files if f.table == table]
        periods = set(touched)
        for f in files:
            # a period now closed (a new week, a new month): its files are compacted
            target = period_of(f.period.start, latest.date())
            if target != f.period:
                periods.add(target)
        for f in files:
            hit = [p for p in periods if p.overlaps(f.period)]
            if not hit:
                kept.append(f)
            elif not any(p.contains(f.period) for p in hit):
                return None
        dirty[table] = periods
    return latest, dirty, kept


def _plan_full(
    con: duckdb.DuckDBPyConnection, period_tables: dict[str, Columns]
) -> tuple[datetime | None, dict[str, set[Period]], list[PeriodFile]]:
    days: dict[str, list[date]] = {}
    latest_hour: datetime | None = None
    for table in period_tables:
        rows = con.execute(
            f"select cast({_q(PERIOD_COLUMN)} as date), max({_q(PERIOD_COLUMN)}) "
            f"from wh.{PUBLISHED_SCHEMA}.{_q(table)} where {_q(PERIOD_COLUMN)} is not null "
            "group by 1"
        ).fetchall()
        days[table] = [r[0] for r in rows]
        for _, hour in rows:
            if latest_hour is None or hour > latest_hour:
                latest_hour = hour
    dirty: dict[str, set[Period]] = {}
    for table in period_tables:
        dirty[table] = (
            {period_of(d, latest_hour.date()) for d in days[table]} if latest_hour else set()
        )
    return latest_hour, dirty, []


# --------------------------------------------------------------------------- files


def _write_periods(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    table: str,
    columns: Columns,
    periods: set[Period],
    publish_id: str,
    written: list[PeriodFile],
) -> None:
    """Write the files of `periods`, appending each to `written` as soon as it exists.

    Periods of one month (the latest month's weeks and days) are read from the warehouse
    once, into a sorted temporary table: when the warehouse's rows are not stored in hour
    order (a full refresh), each read of a period scans the whole table.
    """
    source = f"wh.{PUBLISHED_SCHEMA}.{_q(table)}"
    by_month: dict[date, list[Period]] = {}
    for period in sorted(periods):
        by_month.setdefault(_month_start(period.start), []).append(period)
    for group in by_month.values():
        staged = len(group) > 1
        if staged:
            con.execute(
                f"create or replace temp table publish_stage as {_select(source, columns)} "
                f"where {_in_period()} order by {_q(PERIOD_COLUMN)}",
                _bounds(Period(group[0].start, group[-1].end, "stage")),
            )
        try:
            for period in group:
                f = _write_period(con, root, table, columns, period, publish_id, staged=staged)
                if f is not None:
                    written.append(f)
        finally:
            if staged:
                con.execute("drop table if exists publish_stage")


def _select(source: str, columns: Columns) -> str:
    """select every column of `source`, those Parquet cannot hold exactly converted."""
    return (
        "select "
        + ", ".join(
            f"cast({_q(c)} as {_WRITE_AS[t]}) as {_q(c)}" if t in _WRITE_AS else _q(c)
            for c, t in columns
        )
        + f" from {source}"
    )


def _in_period() -> str:
    return f"{_q(PERIOD_COLUMN)} >= ? and {_q(PERIOD_COLUMN)} < ?"


def _bounds(period: Period) -> list[datetime]:
    return [
        datetime.combine(period.start, datetime.min.time()),
        datetime.combine(period.end, datetime.min.time()),
    ]


def _write_period(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    table: str,
    columns: Columns,
    period: Period,
    publish_id: str,
    *,
    staged: bool = False,
) -> PeriodFile | None:
    """Write the rows of `period` (from the warehouse, or from the staged month, already
    converted and sorted) to a new file; None (and no file) when there are none.

    Rows are sorted by valuation_hour only: that is what row-group pruning needs, and
    sorting on more keys doubled the cost of a full publish."""
    directory = root / table
    directory.mkdir(exist_ok=True)
    path = directory / f"{period.start.isoformat()}.{period.kind}.{publish_id}.parquet"
    if staged:
        query = f"select * from publish_stage where {_in_period()}"
    else:
        source = f"wh.{PUBLISHED_SCHEMA}.{_q(table)}"
        query = f"{_select(source, columns)} where {_in_period()} order by {_q(PERIOD_COLUMN)}"
    row = con.execute(
        f"copy ({query}) to {_lit(path)} (format parquet)", _bounds(period)
    ).fetchone()
    rows = int(row[0]) if row else 0
    if rows == 0:
        path.unlink(missing_ok=True)
        return None
    return PeriodFile(table, period, path, rows, path.stat().st_size)


def _collect_garbage(
    prev: _State | None, root: Path, current: Sequence[PeriodFile], now: datetime
) -> tuple[dict[Path, datetime], list[Path]]:
    """(files to keep listed as retired with the time they stopped being referenced, files
    to delete once the new catalog is in place)."""
    current_paths = {f.path for f in current}
    retired: dict[Path, datetime] = {}
    if prev is not None:
        retired.update(prev.retired)
        for f in prev.files:
            retired.setdefault(f.path, now)
    for path in current_paths:
        retired.pop(path, None)
    retired = {p: at for p, at in retired.items() if p.exists()}
    doomed = [p for p, at in retired.items() if at + GRACE <= now]
    for p in doomed:
        del retired[p]
    for path in _period_files_on_disk(root):
        if path in current_paths or path in retired:
            continue
        if prev is not None:
            doomed.append(path)  # referenced by no catalog: a publish killed before its rename
        else:
            retired[path] = now  # unknown history: an older catalog may still be read
    return retired, doomed


def _period_files_on_disk(root: Path) -> Iterator[Path]:
    for directory in sorted(root.iterdir()):
        if directory.is_dir() and not directory.name.startswith("."):
            yield from sorted(p for p in directory.iterdir() if p.is_file())


def _delete(paths: Sequence[Path], root: Path) -> int:
    deleted = 0
    for path in paths:
        if path.parent.parent != root:
            continue  # never delete outside this home's files
        try:
            path.unlink()
            deleted += 1
        except FileNotFoundError:
            pass
    for directory in root.iterdir():
        if directory.is_dir() and not directory.name.startswith("."):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: a mart that no longer exists
    return deleted


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to the disk (before renaming what depends on it into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- catalog


def _write_catalog(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    tmp: Path,
    marts: dict[str, Columns],
    current: Sequence[PeriodFile],
    retired: dict[Path, datetime],
    *,
    publish_info: tuple[datetime, str, str],
    state: tuple[str, str, datetime, datetime | None],
) -> dict[str, int]:
    """Write the catalog to `tmp`; the row counts of the tables copied whole."""
    con.execute(f"attach {_lit(tmp)} as cat")
    con.execute(f"create schema cat.{PUBLISHED_SCHEMA}")
    con.execute(f"create schema cat.{META_SCHEMA}")
    by_table: dict[str, list[PeriodFile]] = {}
    for f in current:
        by_table.setdefault(f.table, []).append(f)
    period_tables = {n for n, cols in marts.items() if any(c == PERIOD_COLUMN for c, _ in cols)}
    counts: dict[str, int] = {}
    for name, columns in marts.items():
        target = f"cat.{PUBLISHED_SCHEMA}.{_q(name)}"
        source = f"wh.{PUBLISHED_SCHEMA}.{_q(name)}"
        files = by_table.get(name, [])
        if name not in period_tables:
            con.execute(f"create table {target} as select * from {source}")
            row = con.execute(f"select count(*) from {target}").fetchone()
            counts[name] = int(row[0]) if row else 0
        elif not files:
            con.execute(f"create table {target} as select * from {source} limit 0")
        else:
            con.execute(f"create view {target} as {_view_sql(con, root, columns, files)}")
    con.execute(
        f"create table cat.{PUBLISHED_SCHEMA}.publish_info as "
        "select ?::timestamp as published_at, ?::varchar as fx_source, ?::varchar as publish_id",
        list(publish_info),
    )
    # the marts are also in the default schema (`main`), as views: a client that opens the
    # file finds `fct_profile_valuation_hourly` as well as `marts.fct_profile_valuation_hourly`
    # (written from inside the catalog, so they name no catalog and work under any file name)
    con.execute("use cat")
    try:
        for name in [*marts, "publish_info"]:
            con.execute(
                f"create view main.{_q(name)} as select * from {PUBLISHED_SCHEMA}.{_q(name)}"
            )
    finally:
        con.execute("use memory")
    meta = f"cat.{META_SCHEMA}"
    con.execute(
        f"create table {meta}.state (layout integer, root varchar, publish_id varchar, "
        "published_at timestamp, latest_hour timestamp)"
    )
    con.execute(f"insert into {meta}.state values (?, ?, ?, ?, ?)", [LAYOUT_VERSION, *state])
    con.execute(
        f"create table {meta}.files (table_name varchar, kind varchar, period_start date, "
        "period_end date, path varchar, row_count bigint, byte_size bigint)"
    )
    if current:
        _insert(
            con,
            f"{meta}.files",
            [
                [
                    f.table,
                    f.period.kind,
                    f.period.start,
                    f.period.end,
                    relative(f.path, root),
                    f.rows,
                    f.size,
                ]
                for f in current
            ],
        )
    con.execute(f"create table {meta}.retired (path varchar, retired_at timestamp)")
    if retired:
        _insert(
            con,
            f"{meta}.retired",
            [[relative(p, root), at] for p, at in sorted(retired.items())],
        )
    con.execute(
        f"create table {meta}.columns (table_name varchar, column_index integer, "
        "column_name varchar, data_type varchar)"
    )
    column_rows = [
        [name, i, c, t] for name in sorted(period_tables) for i, (c, t) in enumerate(marts[name])
    ]
    if column_rows:
        _insert(con, f"{meta}.columns", column_rows)
    # the extent of the warehouse these marts come from: the loss check compares with it
    write_mirror(con, "cat", read_extent(con, "wh"))
    con.execute("checkpoint cat")
    con.execute("detach cat")
    return counts


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Sequence[object]]) -> None:
    """One INSERT for all rows (executemany costs milliseconds a row)."""
    values = ", ".join("(" + ", ".join("?" * len(r)) + ")" for r in rows)
    con.execute(f"insert into {table} values {values}", [v for r in rows for v in r])


def _view_sql(
    con: duckdb.DuckDBPyConnection, root: Path, columns: Columns, files: Sequence[PeriodFile]
) -> str:
    """select over the files (named relative to the home), each column with the
    warehouse's name and type."""
    paths = ", ".join(_lit(relative(f.path, root)) for f in files)
    source = f"read_parquet([{paths}], hive_partitioning = false, union_by_name = false)"
    parquet_types = {
        r[0]: r[1]
        for r in con.execute(
            f"describe select * from read_parquet({_lit(files[-1].path)})"
        ).fetchall()
    }
    select = ", ".join(
        _q(c) if parquet_types.get(c) == t else f"cast({_q(c)} as {t}) as {_q(c)}"
        for c, t in columns
    )
    return f"select {select} from {source}"
