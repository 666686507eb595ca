"""Shared fixtures: one small FINBOT_HOME built once per session through the real jobs."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


def demo_cli_home(path: Path) -> Path:
    """A home at ``path`` with the demo config (history from 2026-05-01) and a vault key:
    what the command-line tests start from."""
    from finbot_pipelines.config.home import demo_config_text
    from finbot_pipelines.config.vault import init_key_file

    (path / "finbot.yaml").write_text(demo_config_text(datetime(2026, 5, 1)))
    init_key_file(path)
    return path


def invoke_cli(home: Path, *args: str, input: str | None = None) -> Any:
    """``finbot --home HOME ARGS...`` through click's runner (its result)."""
    from click.testing import CliRunner

    from finbot_pipelines.cli import main

    return CliRunner().invoke(main, ["--home", str(home), *args], input=input)


def wait_for(condition: Callable[[], object], what: str, deadline_s: float = 60.0) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after a generous deadline
    (never a fixed sleep: a loaded machine only takes longer)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {deadline_s:g} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    from finbot_pipelines.providers.browser import LAUNCH_ARGS, chromium_executable

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium_executable(), headless=True, args=list(LAUNCH_ARGS)
        )
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def running_web(
    home: Path, log: Path, port: int, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`finbot web` on ``home`` in its own process (its output in ``log``), until the
    block ends; yields its base URL once it answers."""
    import httpx

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finbot_pipelines.cli", "--home", str(home), "web",
             "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/login", timeout=5).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None  # it died: stop waiting, the next line says so

    try:
        wait_for(up, "finbot web to answer", deadline_s=120)
        assert proc.poll() is None, f"finbot web exited: {log.read_text()[-2000:]}"
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def ensure_dbt_manifest() -> None:
    """@dbt_assets reads target/manifest.json at import: build it when a plain pytest runs first."""
    manifest = REPO / "dbt_project" / "target" / "manifest.json"
    if manifest.exists():
        return
    env = {**os.environ, "FINBOT_WAREHOUSE": str(REPO / "dbt_project" / "target" / "parse.duckdb")}
    subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "dbt"),
            "parse",
            "--quiet",
            "--project-dir",
            ".",
            "--profiles-dir",
            ".",
        ],
        cwd=REPO / "dbt_project",
        env=env,
        check=True,
    )


E2E_CONFIG = """\
history_start: "2026-01-05T00:00"
fx_source: static
fx_static_rates:
  GBP: 0.85
  USD: 1.10
profiles:
  - {id: alice, name: Alice, valuation_ccy: GBP}
  - {id: bruno, name: Bruno, valuation_ccy: EUR}
linked_accounts:
  - id: a-bank
    profile: alice
    provider: dummy
    name: Alice bank
    options: {sub_accounts: [cash, credit_card]}
  - id: a-invest
    profile: alice
    provider: dummy
    name: Alice invest
    options:
      sub_accounts: [stocks, pension]
      fail_hours: ["2026-01-05T10:00", "2026-01-05T11:00"]
      fail_kind: authentication_failure
  - id: a-crypto
    profile: alice
    provider: dummy
    name: Alice crypto
    options: {sub_accounts: [crypto], flaky_attempts: 1}
  - id: b-bank
    profile: bruno
    provider: dummy
    name: Bruno bank
    options: {sub_accounts: [cash, mortgage], scale: 0.7}
fetch: {timeout_s: 20, max_attempts: 3, backoff_s: 0, max_workers: 4}
"""

FIRST_HOUR = datetime(2026, 1, 5, 0)
HOURS = 24


@dataclass
class BuiltHome:
    home: Path
    first: datetime
    last: datetime
    fx_success: bool
    run_success: bool


@pytest.fixture(scope="session")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltHome]:
    """A FINBOT_HOME with 24 hours of the e2e household, built by the real jobs, once."""
    ensure_dbt_manifest()
    import dagster as dg

    from finbot_pipelines.config.home import ensure_dagster_home
    from finbot_pipelines.config.paths import HomePaths
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_job, run_published

    home = tmp_path_factory.mktemp("finbot-home")
    paths = HomePaths(home)
    paths.config.write_text(E2E_CONFIG)
    ensure_dagster_home(paths)
    defs = build_definitions(str(home))
    last = FIRST_HOUR + timedelta(hours=HOURS - 1)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        fx = run_job(defs, FX_JOB, FIRST_HOUR, FIRST_HOUR, instance=instance, fmt="%Y-%m-%d")
        run = run_job(defs, HOURLY_JOB, FIRST_HOUR, last, instance=instance)
    yield BuiltHome(home, FIRST_HOUR, last, fx.success, run_published(run))
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_leaked_defs_state_storage() -> None:
    """Forget the defs-state storage a closed Dagster instance left behind.

    `with DagsterInstance...:` sets a context variable to the instance's defs-state
    storage on enter, and (dagster 1.13) never resets it on exit. A later
    `build_definitions` outside any instance then reaches the storage of an
    instance already garbage-collected ("Attempted to resolve undefined
    DagsterInstance weakref"), depending on test order and on the GC. A process
    running one command (the CLI, a run worker) never meets this.
    """
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)


#: what `finbot`'s main() and run_job set in os.environ for the rest of the process
_PROCESS_ENV = ("FINBOT_HOME", "DAGSTER_HOME", "FINBOT_DBT_STDOUT", "DBT_USE_COLORS")


@pytest.fixture(autouse=True)
def _no_leaked_process_env() -> Iterator[None]:
    """A command invoked through CliRunner sets FINBOT_HOME (and DAGSTER_HOME) for the
    process, as it should for a real command; a later test in the same worker must not
    build its definitions from that home."""
    saved = {name: os.environ.get(name) for name in _PROCESS_ENV}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


#: The test modules that take longest (minutes of Dagster runs and dbt builds), longest
#: first (from `./finbotctl test --durations=80`, 2026-12-02). They are collected first,
#: so that `./finbotctl test`'s two workers (`--dist loadfile`: a module at a time) start
#: them first and finish about together; in alphabetical order a long module drawn last
#: keeps one worker busy while the other idles. A scheduling hint only: a module missing
#: here runs after them, as collected.
SLOW_MODULES = (
    "test_bench.py",
    "test_dbt_marts.py",
    "test_crash_safety.py",
    "test_backup.py",
    "test_provider_portals.py",
    "test_secrets_canary.py",
    "test_schedule_during_backfill.py",
    "test_statements_import.py",
    "test_transactions.py",
    "test_history_order.py",
    "test_first_run.py",
    "test_pipeline.py",
    "test_config_changes.py",
    "test_unit_prices.py",
    "test_web_pages.py",
    "test_web_api.py",
    "test_faults_portal.py",
    "test_file_modes.py",
    "test_impossible_hours.py",
    "test_postgres_instance.py",
    "test_publish.py",
    "test_faults_sheet.py",
    "test_web_linking.py",
    "test_faults_api.py",
    "test_web_browser.py",
    "test_faults_exchange.py",
    "test_provider_simplefin.py",
    "test_faults_dummy.py",
    "test_ui.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a module
