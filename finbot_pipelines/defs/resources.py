"""Resources shared by the Dagster definitions."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from finbot_pipelines.config.loading import load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.schema import FinbotConfig
from finbot_pipelines.config.vault import Vault
from finbot_pipelines.warehouse.backup import WarehouseLost, check_warehouse
from finbot_pipelines.warehouse.raw import ensure_raw_schema

#: Every writer of the warehouse file takes a slot of this pool (limit 1 in dagster.yaml).
WAREHOUSE_POOL = "finbot_warehouse"


#: How long a run waits for another process to let go of the warehouse file.
LOCK_WAIT_S = 15.0
_LOCK_PID_RE = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:200]


def lock_holder_message(path: Path, error: str) -> str:
    """One sentence: which process holds the warehouse, and what to do."""
    m = _LOCK_PID_RE.search(error)
    if m is None:
        return f"the warehouse {path} cannot be opened: {error}"
    pid = int(m.group(2))
    cmd = _command_of(pid) or m.group(1)
    return (
        f"the warehouse {path} is held by another process, pid {pid} ({cmd}): only finbot's "
        "runs may open it (readers open finbot.duckdb). Close that program, or stop it with "
        f"`kill {pid}` if it is a finbot run or dbt left over from a killed run, then run "
        "the hours again (`finbot run --hours N`); nothing of this run was written"
    )


def connect_warehouse(path: Path, wait_s: float = LOCK_WAIT_S) -> duckdb.DuckDBPyConnection:
    """Open the warehouse read-write, waiting a little for a process that holds its lock;
    then a `dg.Failure` naming the holder and what to do."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" not in text.lower():
                raise
            if time.monotonic() >= deadline:
                raise dg.Failure(description=lock_holder_message(path, text)) from None
            time.sleep(0.5)


class FinbotHome(dg.ConfigurableResource):
    """One FINBOT_HOME: its config, vault, warehouse and published files."""

    home: str

    @property
    def paths(self) -> HomePaths:
        return HomePaths.resolve(self.home)

    def config(self) -> FinbotConfig:
        return load_config(self.paths.config)

    def vault(self) -> Vault:
        return Vault.open(self.paths.home)

    @contextmanager
    def warehouse(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The pipeline's read-write connection; only runs holding the pool slot call this.

        A warehouse that is missing, replaced or shorter than what was published (see
        `warehouse.identity`) fails the step before anything is written, pointing to
        `finbot restore`, instead of being silently recreated empty."""
        paths = self.paths
        try:
            check_warehouse(paths)
        except WarehouseLost as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        paths.home.mkdir(parents=True, exist_ok=True)
        con = connect_warehouse(paths.warehouse)
        try:
            try:
                check_warehouse(paths, con)
            except WarehouseLost as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from None
            ensure_raw_schema(con)
            yield con
        finally:
            con.close()
