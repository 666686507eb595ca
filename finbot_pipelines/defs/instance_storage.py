"""Dagster's embedded SQLite storage, without an fsync and a new engine per event.

Dagster's `SqliteEventLogStorage` creates a SQLAlchemy engine, opens a connection,
commits with `synchronous=FULL` and closes the connection (a WAL checkpoint, another
fsync) for every event it stores. A backfill of a month records about ten thousand
events (each hourly partition of each linked account is planned, then materialised),
so the demo spent two minutes, most of its time, in fsync.

`FinbotSqliteStorage` is Dagster's SQLite storage (same files, same layout under
`$DAGSTER_HOME`) whose event log keeps one open connection per database file it
writes (the cross-run index and the few most recent run files), in WAL mode with
`synchronous=NORMAL`: a commit is durable against a crash of the process, and the
last commits before a power loss may be rolled back, never corrupted (SQLite's WAL
guarantee). That is Dagster's bookkeeping; finbot's raw data lives in DuckDB.

Dagster's UI follows a running run by watching its `<run_id>.db` file for changes; with
a connection kept open, commits land in the `-wal` file only, so each commit to a run
file touches the `.db` file's time stamp, which the watcher sees.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import sqlalchemy as sa
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

#: run files kept open besides the index (a process writes one run at a time, reads a few)
OPEN_RUN_SHARDS = 4


class FinbotSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one long-lived connection per recently used shard."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        super().__init__(base_dir, inst_data)

    def _engine(self, shard: str) -> Engine:
        if self._engines_pid != os.getpid():  # a forked child: never share the parent's
            self._engines = OrderedDict()
            self._engines_pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = sa.create_engine(
            self.conn_string_for_shard(shard),
            poolclass=StaticPool,  # one connection, used under self._db_lock only
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        sa.event.listen(engine, "connect", _tune_connection)
        self._engines[shard] = engine
        run_shards = [s for s in self._engines if s != INDEX_SHARD_NAME]
        while len(run_shards) > OPEN_RUN_SHARDS:
            self._engines.pop(run_shards.pop(0)).dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn
            if shard != INDEX_SHARD_NAME:
                _touch(self.path_for_shard(shard))

    def close_connections(self) -> None:
        with self._db_lock:
            engines, self._engines = self._engines, OrderedDict()
            for engine in engines.values():
                engine.dispose()

    def wipe(self) -> None:
        self.close_connections()  # the run files are deleted: no connection may outlive them
        super().wipe()

    def dispose(self) -> None:
        self.close_connections()
        super().dispose()


def _tune_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _touch(path: str) -> None:
    with suppress(FileNotFoundError):
        os.utime(path)


class FinbotSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (`storage: sqlite:`) with the faster event log above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data)
        self._event_log_storage = FinbotSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> FinbotSqliteStorage:
        base_dir = str(config_value["base_dir"])
        if "@" in base_dir or not os.path.isabs(base_dir):
            raise ValueError(
                f"storage base_dir {base_dir!r} is not a folder: this dagster.yaml is the "
                "repository's template; finbot and finbotctl write its copy into $DAGSTER_HOME"
            )
        os.makedirs(base_dir, exist_ok=True)
        return cls(base_dir, inst_data=inst_data)
