"""Production instance storage: deploy/dagster.yaml on a real PostgreSQL server.

One hourly partition of the real pipeline runs with the instance loaded from the
repo's deploy/dagster.yaml (every value from FINBOT_PG_* and friends); the run,
its events and the pool slot are then read back from PostgreSQL directly.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import E2E_CONFIG, REPO, ensure_dbt_manifest
from finbot_pipelines_tests.pg import PgInfo, postgres_server

DEPLOY = REPO / "deploy"
HOUR = datetime(2026, 1, 5, 3)
ACCOUNTS = ("a-bank", "a-invest", "a-crypto", "b-bank")


def yaml_env_vars(text: str) -> set[str]:
    return set(re.findall(r"\{\s*env:\s*([A-Z0-9_]+)\s*\}", text))


def env_example_vars() -> set[str]:
    text = (DEPLOY / "finbot.env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_env_example_covers_the_instance_config() -> None:
    """Every variable deploy/dagster.yaml reads is documented in finbot.env.example."""
    needed = yaml_env_vars((DEPLOY / "dagster.yaml").read_text())
    assert {"FINBOT_PG_HOST", "FINBOT_PG_PORT", "FINBOT_PG_PASSWORD"} <= needed
    assert needed <= env_example_vars()
    for unit in ("finbot-webserver.service", "finbot-daemon.service", "finbot-web.service"):
        text = (DEPLOY / unit).read_text()
        assert "EnvironmentFile=/etc/finbot/finbot.env" in text
        assert "Environment=DAGSTER_HOME=" in text


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgInfo]:
    with postgres_server(tmp_path_factory.mktemp("pg")) as info:
        yield info


def query(pg: PgInfo, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    con = psycopg2.connect(pg.url)
    try:
        with con.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        con.close()


@pytest.mark.timeout(240)
def test_hourly_run_on_postgres_instance_storage(
    pg: PgInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_dbt_manifest()
    from finbot_pipelines.config.paths import HomePaths
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_job
    from finbot_pipelines.defs.resources import WAREHOUSE_POOL

    # The production layout: DAGSTER_HOME beside FINBOT_HOME, not inside it.
    paths = HomePaths(tmp_path / "home")
    paths.home.mkdir()
    paths.config.write_text(E2E_CONFIG)
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copyfile(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")
    compute_logs = dagster_home / "compute_logs"
    for key, value in pg.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FINBOT_COMPUTE_LOG_DIR", str(compute_logs))
    monkeypatch.setenv("FINBOT_HOME", str(paths.home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))

    defs = build_definitions(str(paths.home))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert not instance.telemetry_enabled
        fx = run_job(defs, FX_JOB, HOUR, HOUR, instance=instance, fmt="%Y-%m-%d", progress=False)
        run = run_job(defs, HOURLY_JOB, HOUR, HOUR, instance=instance, progress=False)
    assert fx.success
    assert run.success

    # Straight from PostgreSQL, not through Dagster.
    rows = query(
        pg, "select run_id, status from runs where run_id in (%s, %s)", (fx.run_id, run.run_id)
    )
    statuses = {str(run_id): str(status) for run_id, status in rows}
    assert statuses == {fx.run_id: "SUCCESS", run.run_id: "SUCCESS"}
    materialized = query(
        pg,
        "select asset_key, partition from event_logs"
        " where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
        (run.run_id,),
    )
    ingest = {
        dg.AssetKey.from_db_string(key).path[1]: part  # type: ignore[union-attr]
        for key, part in materialized
        if isinstance(key, str) and key.startswith('["ingest"')
    }
    # each account's hour, and `ingest/landed` (unpartitioned) once
    assert ingest == {
        **{account: HOUR.strftime("%Y-%m-%d-%H:%M") for account in ACCOUNTS},
        "landed": None,
    }
    (events,) = query(pg, "select count(*) from event_logs where run_id = %s", (run.run_id,))[0]
    assert isinstance(events, int) and events > len(materialized)
    # The warehouse pool got its default limit of one slot, in PostgreSQL.
    assert query(
        pg, "select count(*) from concurrency_slots where concurrency_key = %s", (WAREHOUSE_POOL,)
    ) == [(1,)]

    # Step output went to the compute-log directory on local disk ...
    assert list((compute_logs / run.run_id).rglob("*.out"))
    # ... and nothing of the instance landed in SQLite, in DAGSTER_HOME or FINBOT_HOME.
    assert not [p for p in tmp_path.rglob("*") if p.suffix in {".db", ".sqlite"}]
    # The pipeline itself ran: the hour is published for readers.
    with connect_published(paths.published) as con:
        hours = con.execute(
            "select count(distinct profile_id) from marts.fct_profile_valuation_hourly"
            " where valuation_hour = ?",
            [HOUR],
        ).fetchone()
    assert hours == (2,)
