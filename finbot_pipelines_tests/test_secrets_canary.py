"""Canary credentials through a real pipeline with failures: they must leak nowhere.

A test provider receives canary credentials from the vault and, on some hours,
fails with messages that quote them (as a careless library would). After the
runs, no file under FINBOT_HOME but the vault holds them, no table (warehouse,
published marts) nor Dagster event holds them, and neither does the output.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.config.home import ensure_dagster_home
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.vault import Vault, init_key_file
from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import (
    FetchContext,
    Provider,
    ProviderCredentials,
    ProviderOptions,
    ProviderSpec,
    public,
    secret,
)
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    FetchWarning,
    Item,
    Snapshot,
    SubAccount,
    TransientError,
)
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import ensure_dbt_manifest

CANARIES = {
    "username": "canary-user-7f3a91",
    "password": "Canary-Pa55-d41d8cd9",
    "api_token": "cnry_tok_9b2e6c0f4a7d",
}
FIRST = datetime(2026, 2, 2, 0)
HOURS = 6


class CanaryCredentials(ProviderCredentials):
    username: str = public("login", masked=True)
    password: str = secret("password")
    api_token: str = secret("token")


class CanaryProvider(Provider[ProviderOptions, CanaryCredentials]):
    spec = ProviderSpec(
        id="canary_test",
        description="test provider that quotes its credentials when it fails",
        options=ProviderOptions,
        credentials=CanaryCredentials,
        supports_historical=True,  # a test double: lets the test use fixed past hours
    )

    def fetch(
        self, ctx: FetchContext, options: ProviderOptions, credentials: CanaryCredentials
    ) -> Snapshot:
        assert credentials.model_dump() == CANARIES
        hour = ctx.hour.hour
        if hour == 2:
            raise AuthenticationFailure(
                f"login {credentials.username} / {credentials.password} refused"
            )
        if hour == 3:
            raise TransientError(
                f"GET https://api.example/v1?token={credentials.api_token}: HTTP 503"
            )
        if hour == 4:
            raise RuntimeError(f"library crashed with {credentials.model_dump()}")
        item = Item("Savings", "asset", "cash", "cash", Decimal(5000 + hour))
        # a careless provider may quote a credential in a warning too: masked as well
        warning = FetchWarning("reconciliation", f"balance of {credentials.username} differs")
        return Snapshot(
            (SubAccount("main", "Main account", "EUR", "depository", (item,)),),
            (warning,) if hour == 5 else (),
        )


CONFIG = """\
history_start: "2026-02-01T00:00"
fx_source: static
fx_static_rates: {GBP: 0.85, USD: 1.1}
profiles: [{id: me, name: Me, valuation_ccy: EUR}]
linked_accounts:
  - {id: canary, profile: me, provider: canary_test, name: Canary bank, credentials: canary-creds}
  - id: demo
    profile: me
    provider: dummy
    name: Demo
    options: {sub_accounts: [cash], fail_hours: ["2026-02-02T01:00"]}
fetch: {timeout_s: 20, max_attempts: 2, backoff_s: 0}
"""


def _strings_in_tables(db: Path) -> list[str]:
    out: list[str] = []
    with connect_published(db) as con:
        cols = con.execute(
            "select schema_name, table_name, column_name from duckdb_columns() "
            "where data_type = 'VARCHAR' and not internal"
        ).fetchall()
        for schema, table, column in cols:
            out += [
                str(v[0])
                for v in con.execute(
                    f'select distinct "{column}" from "{schema}"."{table}" '
                    f'where "{column}" is not null'
                ).fetchall()
            ]
    return out


def test_canary_credentials_leak_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    ensure_dbt_manifest()
    monkeypatch.setitem(registry._SPECS, "canary_test", "unused:SPEC")
    monkeypatch.setitem(registry._specs, "canary_test", CanaryProvider.spec)
    monkeypatch.setitem(registry._instances, "canary_test", CanaryProvider())
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_job

    home = tmp_path / "home"
    home.mkdir()
    paths = HomePaths(home)
    paths.config.write_text(CONFIG)
    init_key_file(home)
    Vault.open(home).set("canary-creds", json.dumps(CANARIES))
    ensure_dagster_home(paths)
    defs = build_definitions(str(home))
    last = FIRST + timedelta(hours=HOURS - 1)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        assert run_job(defs, FX_JOB, FIRST, FIRST, instance=instance, fmt="%Y-%m-%d").success
        assert run_job(defs, HOURLY_JOB, FIRST, last, instance=instance).success
    for args in (["accounts", "list"], ["sql", "select * from marts.mart_linked_account_health"]):
        res = CliRunner().invoke(main, ["--home", str(home), *args])
        assert res.exit_code == 0, res.output
        print(res.output)

    # the failures were recorded, with their codes, and masked
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        failures = con.execute(
            "select hour(fetch_hour), error_code, error_message from raw.fetches "
            "where linked_account_id = 'canary' and status = 'failure' order by 1"
        ).fetchall()
    assert [(h, c) for h, c, _ in failures] == [
        (2, "authentication_failure"),
        (3, "transient"),
        (4, "provider_error"),
    ]
    messages = [m for _, _, m in failures]
    assert messages[0] == "login *** / *** refused"
    assert messages[1] == "GET https://api.example/v1?… HTTP 503"  # the query string is cut
    assert messages[2].startswith("RuntimeError: library crashed with {'username': '***'")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        (warnings,) = con.execute(
            "select warnings from raw.fetches where linked_account_id = 'canary' "
            "and hour(fetch_hour) = 5"
        ).fetchone() or ("",)
    assert json.loads(warnings) == [{"code": "reconciliation", "message": "balance of *** differs"}]

    canaries = [v.encode() for v in CANARIES.values()]
    # 1. no file under FINBOT_HOME but the vault (and its key) holds a canary
    checked = 0
    for f in home.rglob("*"):
        if not f.is_file() or f in (paths.vault, paths.key_file):
            continue
        data = f.read_bytes()
        checked += 1
        for c in canaries:
            assert c not in data, f"{c!r} found in {f}"
    assert checked > 10
    # 2. no table value holds one (DuckDB may compress strings on disk: read them back)
    for db in (paths.warehouse, paths.published):
        for value in _strings_in_tables(db):
            for c in CANARIES.values():
                assert c not in value, f"{c!r} in a table of {db.name}"
    # 3. nor Dagster's events (messages, metadata, errors)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        for run in instance.get_runs():
            for event in instance.all_logs(run.run_id):
                blob = json.dumps(dg.serialize_value(event))
                for c in CANARIES.values():
                    assert c not in blob, f"{c!r} in an event of run {run.run_id}"
    # 4. nor stdout / stderr
    out, err = capfd.readouterr()
    for c in CANARIES.values():
        assert c not in out and c not in err
    # the vault does hold them, encrypted
    assert Vault.open(home).get_json("canary-creds") == CANARIES
