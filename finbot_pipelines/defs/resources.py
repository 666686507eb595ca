"""Resources shared by the Dagster definitions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
        con = duckdb.connect(str(paths.warehouse))
        try:
            try:
                check_warehouse(paths, con)
            except WarehouseLost as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from None
            ensure_raw_schema(con)
            yield con
        finally:
            con.close()
