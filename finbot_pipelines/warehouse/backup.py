"""Backups of a home's raw history and config, their restore, and starting over.

A backup is a directory `finbot-backup-<UTC time>/`, written as `.<name>.partial` and
renamed into place once complete (so a listed backup is never half-written):

    manifest.json          format version, finbot version, created_at, the warehouse's
                           identity and extent, and every file with its size and SHA-256
    raw/<table>.parquet    each table of the warehouse's raw schema (the history)
    config/finbot.yaml     the configuration
    vault/vault.enc        only with `with_vault`: the vault, still encrypted. The key
                           (secret.key or FINBOT_SECRET_KEY) is never copied: keep it apart.
    web/users.sqlite3      when the home has web app users: people, their argon2 password
                           hashes, grants and hashed API tokens (sessions and sign-in
                           failures are left out: a restored home signs everyone in anew)

The marts are not backed up: a restore rebuilds them from the raw history through the
normal pipeline (the `finbot_transform` job), so they equal the original's.

Consistency: every raw table is read in one read-only transaction, by a process holding
the warehouse pool slot (the backup op runs in the `finbot_backup` job, taking its turn
like any step that opens the warehouse: DuckDB lets no other process open a file that a
process has open read-write, and the other way round).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from finbot_pipelines import __version__
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.warehouse.identity import (
    Extent,
    WarehouseLost,
    check_extent,
    check_home,
    check_open,
    read_extent,
    shrinkage,
)
from finbot_pipelines.warehouse.publish import fsync_file

FORMAT_VERSION = 1
PREFIX = "finbot-backup-"
MANIFEST = "manifest.json"
KEY_NOTE = (
    "the vault key (secret.key or FINBOT_SECRET_KEY) is never copied into a backup: "
    "keep it apart, the vault cannot be read without it"
)


USERS_FILE = "web/users.sqlite3"


def _users_file(paths: HomePaths) -> Path:
    return paths.web / "users.sqlite3"


def _copy_users(src: Path, dst: Path) -> None:
    """A consistent copy of the web app's users file (SQLite's online backup, so a
    sign-in writing meanwhile is either in it or not), without sessions and failures."""
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
        target.execute("delete from sessions")
        target.execute("delete from login_failures")
        target.commit()
        target.execute("vacuum")
    finally:
        target.close()
        source.close()
    os.chmod(dst, 0o600)


class BackupError(RuntimeError):
    """A backup that cannot be written, or one that is damaged or incomplete."""


def _lit(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def default_dir(paths: HomePaths) -> Path:
    return paths.home / "backups"


def list_backups(directory: Path) -> list[Path]:
    """The complete backups in `directory`, oldest first (their names sort by time)."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and (p / MANIFEST).is_file()
    )


def latest_backup(paths: HomePaths) -> Path | None:
    found = list_backups(default_dir(paths))
    return found[-1] if found else None


def check_warehouse(paths: HomePaths, con: duckdb.DuckDBPyConnection | None = None) -> None:
    """The loss check of `identity` for this home: before opening (`con` None), or of an
    open connection. Raises WarehouseLost."""
    latest = latest_backup(paths)
    if con is None:
        check_home(paths.home, paths.warehouse, paths.published, latest)
    else:
        check_open(con, paths.home, paths.warehouse, paths.published, latest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class BackupResult:
    path: Path
    extent: Extent
    with_vault: bool
    pruned: list[Path]


def _name(directory: Path, now: datetime) -> str:
    base = f"{PREFIX}{now:%Y%m%dT%H%M%SZ}"
    name, n = base, 1
    while (directory / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def write_backup(
    paths: HomePaths,
    dest: Path | None = None,
    *,
    with_vault: bool = False,
    keep: int | None = None,
) -> BackupResult:
    """Back up the home's raw history and config into a new directory in `dest` (default
    `$FINBOT_HOME/backups/`). With `keep`, the oldest backups of `dest` beyond that many
    are deleted afterwards. The caller holds the warehouse pool slot."""
    directory = (dest or default_dir(paths)).expanduser().resolve()
    check_warehouse(paths)
    if not paths.warehouse.exists():
        raise BackupError(f"no warehouse at {paths.warehouse}: nothing to back up")
    if not paths.config.exists():
        raise BackupError(f"no config at {paths.config}: nothing to back up")
    if with_vault and not paths.vault.exists():
        raise BackupError(f"--with-vault: there is no vault at {paths.vault}")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f".{PREFIX}*.partial"):
        shutil.rmtree(stale, ignore_errors=True)  # a backup killed before its rename
    now = _utcnow()
    name = _name(directory, now)
    work = directory / f".{name}.partial"
    (work / "raw").mkdir(parents=True)
    try:
        tables, extent = _export_raw(paths, work / "raw")
        # never back up a lost warehouse: pruning would then drop the good backups
        check_extent(extent, paths.home, paths.warehouse, paths.published, latest_backup(paths))
        files: dict[str, dict[str, Any]] = {}
        (work / "config").mkdir()
        shutil.copyfile(paths.config, work / "config" / "finbot.yaml")
        files["config/finbot.yaml"] = {}
        if with_vault:
            (work / "vault").mkdir()
            shutil.copyfile(paths.vault, work / "vault" / "vault.enc")
            files["vault/vault.enc"] = {}
        if _users_file(paths).exists():
            (work / "web").mkdir()
            _copy_users(_users_file(paths), work / USERS_FILE)
            files[USERS_FILE] = {}
        for info in tables.values():
            files[info["file"]] = {"rows": info["rows"]}
        for rel, info in files.items():
            p = work / rel
            fsync_file(p)
            info.update(bytes=p.stat().st_size, sha256=_sha256(p))
        manifest = {
            "format": "finbot-backup",
            "format_version": FORMAT_VERSION,
            "finbot_version": __version__,
            "created_at": now.isoformat(timespec="seconds") + "Z",
            "warehouse": extent.to_json(),
            "tables": tables,
            "files": files,
            "vault": {"included": with_vault, "key": KEY_NOTE},
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        fsync_file(work / MANIFEST)
        os.replace(work, directory / name)
        fsync_file(directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    pruned = prune(directory, keep) if keep is not None else []
    return BackupResult(directory / name, extent, with_vault, pruned)


def _export_raw(paths: HomePaths, out: Path) -> tuple[dict[str, dict[str, Any]], Extent]:
    """Every raw table to Parquet, read in one transaction: one consistent state."""
    con = duckdb.connect()  # in memory, the warehouse ATTACHed read-only
    try:
        try:
            con.execute(f"attach {_lit(paths.warehouse)} as wh (read_only)")
        except duckdb.Error as exc:
            raise BackupError(f"cannot open the warehouse {paths.warehouse}: {exc}") from exc
        con.execute("begin transaction")
        extent = read_extent(con, "wh")
        tables: dict[str, dict[str, Any]] = {}
        names = [
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() where database_name = 'wh' "
                "and schema_name = 'raw' order by table_name"
            ).fetchall()
        ]
        for table in names:
            columns = [
                {"name": c, "type": t}
                for c, t in con.execute(
                    "select column_name, data_type from duckdb_columns() "
                    "where database_name = 'wh' and schema_name = 'raw' and table_name = ? "
                    "order by column_index",
                    [table],
                ).fetchall()
            ]
            rel = f"raw/{table}.parquet"
            row = con.execute(
                f"copy (select * from wh.raw.{_q(table)}) to {_lit(out / f'{table}.parquet')} "
                "(format parquet)"
            ).fetchone()
            tables[table] = {"file": rel, "rows": int(row[0]) if row else 0, "columns": columns}
        con.execute("commit")
        return tables, extent
    finally:
        con.close()


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete the oldest backups of `directory` beyond the newest `keep`."""
    found = list_backups(directory)
    doomed = found[: max(0, len(found) - keep)]
    for p in doomed:
        shutil.rmtree(p)
    return doomed


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Manifest:
    path: Path
    data: dict[str, Any]

    @property
    def extent(self) -> Extent:
        return Extent.from_json(self.data["warehouse"])

    @property
    def tables(self) -> dict[str, dict[str, Any]]:
        tables: dict[str, dict[str, Any]] = self.data["tables"]
        return tables

    @property
    def with_vault(self) -> bool:
        return "vault/vault.enc" in self.data["files"]

    @property
    def with_users(self) -> bool:
        return USERS_FILE in self.data["files"]


def verify_backup(src: Path) -> Manifest:
    """Check a backup whole (manifest, every file's size and checksum, every table's rows);
    BackupError naming the file otherwise."""
    if not src.is_dir():
        raise BackupError(f"{src} is not a backup directory")
    mpath = src / MANIFEST
    if not mpath.is_file():
        raise BackupError(f"incomplete backup: {mpath} is missing")
    try:
        data = json.loads(mpath.read_text())
        if not isinstance(data, dict) or data.get("format") != "finbot-backup":
            raise ValueError("not a finbot backup manifest")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version {version!r}, this finbot reads {FORMAT_VERSION}")
        files, tables = data["files"], data["tables"]
        Extent.from_json(data["warehouse"])
        if not isinstance(files, dict) or not isinstance(tables, dict):
            raise ValueError("files and tables must be objects")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"damaged backup: {mpath} cannot be read: {exc}") from exc
    if "config/finbot.yaml" not in files:
        raise BackupError(f"damaged backup: {mpath} lists no config/finbot.yaml")
    for rel, info in sorted(files.items()):
        p = src / rel
        if not p.is_file():
            raise BackupError(f"incomplete backup: {p} is missing")
        if p.stat().st_size != info.get("bytes") or _sha256(p) != info.get("sha256"):
            raise BackupError(f"damaged backup: {p} does not match its checksum in {mpath}")
    con = duckdb.connect()
    try:
        for table, info in sorted(tables.items()):
            p = src / str(info.get("file"))
            if info.get("file") not in files:
                raise BackupError(f"damaged backup: {mpath} lists table {table} without a file")
            try:
                row = con.execute(f"select count(*) from read_parquet({_lit(p)})").fetchone()
            except duckdb.Error as exc:
                raise BackupError(f"damaged backup: {p} cannot be read: {exc}") from exc
            if row is None or int(row[0]) != int(info.get("rows", -1)):
                raise BackupError(
                    f"damaged backup: {p} holds {row[0] if row else 0} rows, "
                    f"{mpath} says {info.get('rows')}"
                )
    finally:
        con.close()
    return Manifest(src, data)


# --------------------------------------------------------------------------- restore


def _aside(path: Path, why: str, stamp: str) -> Path | None:
    """Rename `path` out of the way (kept, never deleted), or None when absent."""
    if not path.exists():
        return None
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    os.replace(path, target)
    return target


def _clear_published(paths: HomePaths) -> None:
    """Remove the catalog and its files: the next publish writes them anew."""
    paths.published.unlink(missing_ok=True)
    shutil.rmtree(paths.home / "published", ignore_errors=True)


@contextlib.contextmanager
def _new_warehouse(paths: HomePaths) -> Iterator[duckdb.DuckDBPyConnection]:
    """A warehouse written beside the home's and renamed into place when complete."""
    tmp = paths.warehouse.with_name(".warehouse.duckdb.restoring")
    tmp.unlink(missing_ok=True)
    tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        yield con
        con.execute("checkpoint")
        con.close()
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        raise
    fsync_file(tmp)
    os.replace(tmp, paths.warehouse)
    fsync_file(paths.home)


def is_empty_home(paths: HomePaths) -> bool:
    return not paths.home.exists() or not any(paths.home.iterdir())


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    set_aside: list[Path]
    vault_restored: bool


def restore_raw(paths: HomePaths, src: Path, *, force: bool = False) -> RestoreResult:
    """Restore the raw history, config (and vault, when backed up) of `src` into the home.

    Refuses a non-empty home unless `force`; then the home's warehouse, config and vault
    are renamed aside (`<name>.before-restore-<time>`, never deleted) and its published
    catalog removed. The marts are rebuilt by the caller (the transform job)."""
    from finbot_pipelines.warehouse.raw import ensure_raw_schema

    manifest = verify_backup(src.expanduser().resolve())
    if not is_empty_home(paths) and not force:
        raise BackupError(
            f"{paths.home} is not empty: restore into an empty FINBOT_HOME, or add --force to "
            "replace its warehouse and config (they are renamed aside, not deleted)"
        )
    paths.home.mkdir(parents=True, exist_ok=True)
    stamp = _utcnow().strftime("%Y%m%dT%H%M%SZ")
    aside = [
        p
        for p in (
            _aside(paths.warehouse, "before-restore", stamp),
            _aside(paths.config, "before-restore", stamp),
            _aside(paths.vault, "before-restore", stamp) if manifest.with_vault else None,
            _aside(_users_file(paths), "before-restore", stamp) if manifest.with_users else None,
        )
        if p is not None
    ]
    _clear_published(paths)
    with _new_warehouse(paths) as con:
        ensure_raw_schema(con)
        con.execute("begin transaction")
        for table, info in sorted(manifest.tables.items()):
            source = f"read_parquet({_lit(manifest.path / info['file'])})"
            exists = con.execute(
                "select 1 from duckdb_tables() where database_name = current_database() "
                "and schema_name = 'raw' and table_name = ?",
                [table],
            ).fetchone()
            if exists:
                con.execute(f"delete from raw.{_q(table)}")
                con.execute(f"insert into raw.{_q(table)} by name select * from {source}")
            else:  # a table this version does not create: kept as it was
                con.execute(f"create table raw.{_q(table)} as select * from {source}")
        con.execute("commit")
        got = read_extent(con)
        why = shrinkage(got, manifest.extent)
        rows = {t: got.rows.get(t, 0) for t in manifest.extent.rows}
        if why is not None or rows != manifest.extent.rows:
            raise BackupError(
                f"the restored warehouse does not match {manifest.path / MANIFEST}: "
                f"{why or f'rows {rows} != {manifest.extent.rows}'}"
            )
    shutil.copyfile(manifest.path / "config" / "finbot.yaml", paths.config)
    if manifest.with_vault:
        shutil.copyfile(manifest.path / "vault" / "vault.enc", paths.vault)
    if manifest.with_users:
        paths.web.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(manifest.path / USERS_FILE, _users_file(paths))
        os.chmod(_users_file(paths), 0o600)
    return RestoreResult(manifest, aside, manifest.with_vault)


def start_over(paths: HomePaths) -> list[str]:
    """Begin an empty history on purpose: the warehouse is renamed aside (kept), the
    published marts removed, and a new warehouse (a new identity) created."""
    from finbot_pipelines.warehouse.raw import ensure_raw_schema

    done: list[str] = []
    stamp = _utcnow().strftime("%Y%m%dT%H%M%SZ")
    moved = _aside(paths.warehouse, "discarded", stamp)
    if moved is not None:
        done.append(f"the old warehouse is kept as {moved} (delete it when sure)")
    if paths.published.exists() or (paths.home / "published").exists():
        done.append(f"removed the published marts {paths.published} and their files")
    _clear_published(paths)
    paths.home.mkdir(parents=True, exist_ok=True)
    with _new_warehouse(paths) as con:
        ensure_raw_schema(con)
        wid = read_extent(con).warehouse_id
    done.append(f"created an empty warehouse {paths.warehouse} (id {wid})")
    return done


__all__ = [
    "BackupError",
    "BackupResult",
    "Manifest",
    "RestoreResult",
    "WarehouseLost",
    "check_warehouse",
    "latest_backup",
    "list_backups",
    "prune",
    "restore_raw",
    "start_over",
    "verify_backup",
    "write_backup",
]
