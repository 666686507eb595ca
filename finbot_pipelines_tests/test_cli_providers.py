"""`finbot accounts add` / `link` against the providers' local fakes, from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from finbot_pipelines.config.vault import Vault
from finbot_pipelines_tests.conftest import demo_cli_home, invoke_cli
from finbot_pipelines_tests.fakes import binance_server as bn
from finbot_pipelines_tests.fakes import kraken_server as kr
from finbot_pipelines_tests.fakes.plaid_server import DEFAULT_CLIENT_ID, DEFAULT_SECRET, FakePlaid
from finbot_pipelines_tests.fakes.portals import FakePortals
from finbot_pipelines_tests.test_provider_crypto import (  # noqa: F401 (fixtures)
    binance,
    binance_options,
    kraken,
)
from finbot_pipelines_tests.test_provider_google_sheets import (  # noqa: F401 (fixtures)
    KEY,
    REALISTIC,
    SheetsFixture,
    _share,
    service_account,
    sheets,
)
from finbot_pipelines_tests.test_provider_portals import (  # noqa: F401 (fixtures)
    AEGON_CREDS,
    AEGON_PRODUCTS,
    CA_ACCOUNTS,
    CA_CREDS,
    CA_PASSWORD,
    aegon_options,
    ca_options,
    portals,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return demo_cli_home(tmp_path)


invoke = invoke_cli


def linked(home: Path, account_id: str) -> dict[str, Any]:
    cfg = yaml.safe_load((home / "finbot.yaml").read_text())
    return next(a for a in cfg["linked_accounts"] if a["id"] == account_id)


@pytest.fixture
def plaid() -> Iterator[FakePlaid]:
    with FakePlaid() as fake:
        yield fake


def test_link_plaid_sandbox_stores_the_access_token(home: Path, plaid: FakePlaid) -> None:
    res = invoke(
        home,
        "accounts",
        "link",
        "plaid",
        "--id",
        "bank",
        "--profile",
        "alice",
        "--sandbox",
        "--api-url",
        plaid.url,
        input=f"{DEFAULT_CLIENT_ID}\n{DEFAULT_SECRET}\n",
    )
    assert res.exit_code == 0, res.output
    assert "fetched 8 sub-account(s)" in res.output
    creds = Vault.open(home).get_json("bank")
    assert creds["environment"] == "sandbox"
    assert creds["access_token"].startswith("access-")
    assert DEFAULT_SECRET not in res.output and creds["access_token"] not in res.output
    account = linked(home, "bank")
    assert account["provider"] == "plaid" and account["credentials"] == "bank"
    assert account["options"] == {"api_url": plaid.url}
    assert invoke(home, "accounts", "test", "bank").exit_code == 0


def test_link_plaid_with_a_wrong_secret_saves_nothing(home: Path, plaid: FakePlaid) -> None:
    before = (home / "finbot.yaml").read_text()
    res = invoke(
        home,
        "accounts",
        "link",
        "plaid",
        "--id",
        "bank",
        "--profile",
        "alice",
        "--sandbox",
        "--api-url",
        plaid.url,
        input=f"{DEFAULT_CLIENT_ID}\nnot-the-secret\n",
    )
    assert res.exit_code == 1
    assert "not-the-secret" not in res.output
    assert (home / "finbot.yaml").read_text() == before
    assert Vault.open(home).names() == []


def test_accounts_add_kraken_against_its_fake(home: Path, kraken: kr.KrakenFake) -> None:  # noqa: F811
    creds = json.dumps({"api_key": kr.API_KEY, "api_secret": kr.API_SECRET})
    res = invoke(
        home,
        "accounts",
        "add",
        "kraken",
        "--id",
        "exchange",
        "--profile",
        "alice",
        "--option",
        f"api_url={kraken.url}",
        "--option",
        "enable_rate_limit=false",
        "--credentials-stdin",
        input=creds,
    )
    assert res.exit_code == 0, res.output
    assert "fetched 1 sub-account(s)" in res.output
    assert kr.API_SECRET not in res.output
    assert Vault.open(home).get_json("exchange") == {
        "api_key": kr.API_KEY,
        "api_secret": kr.API_SECRET,
    }
    assert linked(home, "exchange")["options"]["api_url"] == kraken.url


def _add(home: Path, provider: str, options: dict[str, Any], creds: dict[str, str]) -> Any:
    args = ["accounts", "add", provider, "--id", "acc", "--profile", "alice"]
    for key, value in options.items():
        if not key.startswith("_"):
            args += ["--option", f"{key}={json.dumps(value)}"]
    return invoke(home, *args, "--credentials-stdin", input=json.dumps(creds))


def test_accounts_add_binance(home: Path, binance: bn.BinanceFake) -> None:  # noqa: F811
    creds = {"api_key": bn.API_KEY, "api_secret": bn.API_SECRET}
    res = _add(home, "binance", binance_options(binance), creds)
    assert res.exit_code == 0, res.output
    assert "fetched 1 sub-account(s)" in res.output and bn.API_SECRET not in res.output


def test_accounts_add_google_sheets(home: Path, sheets: SheetsFixture) -> None:  # noqa: F811
    _share(sheets, REALISTIC)
    res = _add(home, "google_sheets", sheets.options(KEY), sheets.credentials())
    assert res.exit_code == 0, res.output
    assert "fetched 8 sub-account(s)" in res.output
    assert "PRIVATE KEY" not in res.output


def test_accounts_add_portals(home: Path, portals: FakePortals, tmp_path: Path) -> None:  # noqa: F811
    res = _add(home, "credit_agricole", ca_options(portals, tmp_path), CA_CREDS)
    assert res.exit_code == 0, res.output
    assert f"fetched {len(CA_ACCOUNTS)} sub-account(s)" in res.output
    assert CA_PASSWORD not in res.output
    res = invoke(home, "accounts", "remove", "acc")
    assert res.exit_code == 0
    res = _add(home, "aegon_targetplan", aegon_options(portals, tmp_path), AEGON_CREDS)
    assert res.exit_code == 0, res.output
    assert f"fetched {len(AEGON_PRODUCTS)} sub-account(s)" in res.output
