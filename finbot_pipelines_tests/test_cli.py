"""The `finbot` command line: config errors, secrets, accounts, help."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.config.vault import Vault
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
)
from finbot_pipelines_tests.conftest import demo_cli_home, invoke_cli

SECRET = "hunter2-canary-0xC0FFEE"


invoke = invoke_cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return demo_cli_home(tmp_path)


class LoginCredentials(ProviderCredentials):
    username: str = public("your login")
    password: str = secret("your password")


class LoginProvider(Provider[ProviderOptions, LoginCredentials]):
    """A provider that needs a password: accepts only SECRET. Its account holds an exact
    amount and a holding it cannot price, and its balance disagrees with its lines."""

    spec = ProviderSpec(
        id="login_test",
        description="test provider with a password",
        options=ProviderOptions,
        credentials=LoginCredentials,
    )

    def fetch(
        self, ctx: FetchContext, options: ProviderOptions, credentials: LoginCredentials
    ) -> Snapshot:
        if credentials.password != SECRET:
            raise AuthenticationFailure(f"password {credentials.password} refused")
        cash = Item("Cash", "asset", "cash", "cash", Decimal("-197011.42") + Decimal("197111.42"))
        fund = Item("Acme fund", "asset", "multi_asset", "fund", None, Decimal("12.5"), "EUR")
        return Snapshot(
            (SubAccount("main", "Main", "EUR", "depository", (cash, fund)),),
            (FetchWarning("reconciliation", "balance 150.00 EUR, items 100.00 EUR"),),
        )


@pytest.fixture
def login_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._SPECS, "login_test", "unused:SPEC")
    monkeypatch.setitem(registry._specs, "login_test", LoginProvider.spec)
    monkeypatch.setitem(registry._instances, "login_test", LoginProvider())


def test_help_lists_the_commands(tmp_path: Path) -> None:
    res = invoke(tmp_path, "--help")
    assert res.exit_code == 0
    for command in ("demo", "run", "sql", "secrets", "accounts", "config", "init"):
        assert command in res.output


def test_config_check_valid(home: Path) -> None:
    res = invoke(home, "config", "check")
    assert res.exit_code == 0 and "valid" in res.output


@pytest.mark.parametrize("command", [["config", "check"], ["run"], ["accounts", "list"]])
def test_bad_config_stops_every_command_before_writing(home: Path, command: list[str]) -> None:
    cfg = yaml.safe_load((home / "finbot.yaml").read_text())
    cfg["profiles"][1]["valuation_ccy"] = "EURO"
    (home / "finbot.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    before = sorted(p.name for p in home.iterdir())
    res = invoke(home, *command)
    assert res.exit_code == 2
    assert str(home / "finbot.yaml") in res.output
    assert "profiles[1].valuation_ccy" in res.output and "ISO 4217" in res.output
    assert "line " in res.output
    assert sorted(p.name for p in home.iterdir()) == before  # nothing written


def test_secrets_round_trip_never_prints_values(home: Path) -> None:
    res = invoke(home, "secrets", "set", "bank-login", input=SECRET + "\n")
    assert res.exit_code == 0 and SECRET not in res.output
    res = invoke(home, "secrets", "set", "other", input="x1234\n")
    assert invoke(home, "secrets", "list").output.split() == ["bank-login", "other"]
    assert Vault.open(home).get("bank-login") == SECRET
    assert invoke(home, "secrets", "remove", "other").exit_code == 0
    assert invoke(home, "secrets", "list").output.split() == ["bank-login"]
    res = invoke(home, "secrets", "remove", "nope")
    assert res.exit_code == 2 and "nope" in res.output
    assert SECRET.encode() not in (home / "vault.enc").read_bytes()


def test_wrong_key_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke(home, "secrets", "set", "a", input="value-1\n").exit_code == 0
    from cryptography.fernet import Fernet

    monkeypatch.setenv("FINBOT_SECRET_KEY", Fernet.generate_key().decode())
    res = invoke(home, "secrets", "list")
    assert res.exit_code == 2
    assert "cannot decrypt" in res.output and "FINBOT_SECRET_KEY" in res.output


def test_accounts_add_freeze_remove_with_dummy(home: Path) -> None:
    res = invoke(
        home,
        "accounts",
        "add",
        "dummy",
        "--id",
        "carol-cash",
        "--profile",
        "bruno",
        "--option",
        "sub_accounts=[cash]",
        "--option",
        "scale=0.5",
    )
    assert res.exit_code == 0, res.output
    assert "fetched 3 sub-account(s)" in res.output
    cfg = yaml.safe_load((home / "finbot.yaml").read_text())
    added = [a for a in cfg["linked_accounts"] if a["id"] == "carol-cash"]
    assert added and added[0]["options"] == {"sub_accounts": ["cash"], "scale": 0.5}
    assert invoke(home, "accounts", "freeze", "carol-cash").exit_code == 0
    cfg = yaml.safe_load((home / "finbot.yaml").read_text())
    assert [a["frozen"] for a in cfg["linked_accounts"] if a["id"] == "carol-cash"] == [True]
    listing = invoke(home, "accounts", "list").output
    assert "carol-cash" in listing and "frozen" in listing
    assert invoke(home, "accounts", "remove", "carol-cash").exit_code == 0
    assert "carol-cash" not in (home / "finbot.yaml").read_text()
    assert invoke(home, "accounts", "test", "carol-cash").exit_code == 2


def test_accounts_add_saves_nothing_when_the_fetch_fails(home: Path, login_provider: None) -> None:
    before = (home / "finbot.yaml").read_text()
    creds = json.dumps({"username": "me", "password": "wrong-password-123"})
    res = invoke(
        home,
        "accounts",
        "add",
        "login_test",
        "--id",
        "bank",
        "--profile",
        "bruno",
        "--credentials-stdin",
        input=creds,
    )
    assert res.exit_code == 1
    assert "authentication_failure" in res.output
    assert "wrong-password-123" not in res.output
    assert (home / "finbot.yaml").read_text() == before
    assert Vault.open(home).names() == []


def test_accounts_add_stores_credentials_after_a_good_fetch(
    home: Path, login_provider: None
) -> None:
    res = invoke(
        home,
        "accounts",
        "add",
        "login_test",
        "--id",
        "bank",
        "--profile",
        "bruno",
        input=f"me\n{SECRET}\n",
    )
    assert res.exit_code == 0, res.output
    assert SECRET not in res.output
    assert json.loads(Vault.open(home).get("bank")) == {"username": "me", "password": SECRET}
    cfg = yaml.safe_load((home / "finbot.yaml").read_text())
    assert [a["credentials"] for a in cfg["linked_accounts"] if a["id"] == "bank"] == ["bank"]
    assert SECRET not in (home / "finbot.yaml").read_text()
    test = invoke(home, "accounts", "test", "bank")
    assert test.exit_code == 0 and "Main" in test.output
    assert "warning (reconciliation): balance 150.00 EUR, items 100.00 EUR" in test.output
    assert "warning (unpriced): 'Acme fund' (12.5) in sub-account 'main'" in test.output
    assert invoke(home, "accounts", "remove", "bank").exit_code == 0
    assert Vault.open(home).names() == []


def test_accounts_add_rejects_a_bad_account(home: Path) -> None:
    res = invoke(home, "accounts", "add", "dummy", "--id", "x", "--profile", "nobody")
    assert res.exit_code == 2
    assert "linked_accounts[6].profile: unknown profile 'nobody'" in res.output
    res = invoke(home, "accounts", "add", "nosuch", "--id", "x")
    assert res.exit_code == 2 and "unknown provider 'nosuch'" in res.output


def test_sql_without_published_file_explains(home: Path) -> None:
    res = invoke(home, "sql", "select 1")
    assert res.exit_code == 2 and "finbotctl demo" in res.output


def test_rotate_key_keeps_the_secrets(home: Path) -> None:
    assert invoke(home, "secrets", "set", "a", input="value-1234\n").exit_code == 0
    old_key = (home / "secret.key").read_bytes()
    res = invoke(home, "secrets", "rotate-key")
    assert res.exit_code == 0, res.output
    assert (home / "secret.key").read_bytes() != old_key
    assert (home / "secret.key").stat().st_mode & 0o777 == 0o600
    assert (home / "vault.enc").stat().st_mode & 0o777 == 0o600
    assert Vault.open(home).get("a") == "value-1234"


def test_a_production_dagster_yaml_is_never_overwritten(tmp_path: Path) -> None:
    from finbot_pipelines.config.home import ensure_dagster_home
    from finbot_pipelines.config.paths import REPO_ROOT, HomePaths

    paths = HomePaths(tmp_path)
    ensure_dagster_home(paths)
    dst = paths.dagster_home / "dagster.yaml"
    # the repository's file, naming this instance's folder for its storage
    template = (REPO_ROOT / "dagster.yaml").read_text()
    expected = template.replace("@DAGSTER_HOME@", str(paths.dagster_home.resolve()))
    assert "@DAGSTER_HOME@" in template and dst.read_text() == expected
    dst.write_text(dst.read_text() + "\n# an older embedded copy\n")
    ensure_dagster_home(paths)  # refreshed
    assert dst.read_text() == expected
    moved = HomePaths(tmp_path / "moved")
    moved.home.mkdir()
    shutil.copytree(paths.dagster_home, moved.dagster_home)
    ensure_dagster_home(moved)  # a moved home's copy names its new folder
    assert (moved.dagster_home / "dagster.yaml").read_text() == template.replace(
        "@DAGSTER_HOME@", str(moved.dagster_home.resolve())
    )
    dst.write_text("storage:\n  postgres: {}\n")
    ensure_dagster_home(paths)  # left alone
    assert dst.read_text() == "storage:\n  postgres: {}\n"


def test_accounts_test_json_is_the_documented_object(home: Path, login_provider: None) -> None:
    """One object with the fetch's sub-accounts, items and warnings; amounts exact numbers."""
    res = invoke(
        home,
        "accounts",
        "add",
        "login_test",
        "--id",
        "bank",
        "--profile",
        "bruno",
        input=f"me\n{SECRET}\n",
    )
    assert res.exit_code == 0, res.output
    res = invoke(home, "accounts", "test", "bank", "--format", "json")
    assert res.exit_code == 0, res.output
    assert '"value": 100,' in res.output  # the exact number (a JSON number, not a string)
    doc = json.loads(res.output, parse_float=Decimal)
    assert doc == {
        "linked_account_id": "bank",
        "provider": "login_test",
        "status": "success",
        "error_code": None,
        "error_message": None,
        "fix": None,
        "attempts": 1,
        "sub_accounts": [
            {
                "id": "main",
                "name": "Main",
                "currency": "EUR",
                "type": "depository",
                "items": [
                    {
                        "name": "Cash",
                        "item_type": "asset",
                        "asset_class": "cash",
                        "asset_type": "cash",
                        "units": None,
                        "value": Decimal("100.00"),
                        "currency": None,
                        "symbol": None,
                        "unit": None,
                    },
                    {
                        "name": "Acme fund",
                        "item_type": "asset",
                        "asset_class": "multi_asset",
                        "asset_type": "fund",
                        "units": Decimal("12.5"),
                        "value": None,
                        "currency": "EUR",
                        "symbol": None,
                        "unit": None,
                    },
                ],
            }
        ],
        "warnings": [
            {"code": "reconciliation", "message": "balance 150.00 EUR, items 100.00 EUR"},
            {
                "code": "unpriced",
                "message": "'Acme fund' (12.5) in sub-account 'main' has no price from "
                "login_test: it is listed without a value",
            },
        ],
    }


def test_accounts_test_json_on_failure_exits_non_zero(home: Path, login_provider: None) -> None:
    vault = Vault.open(home)
    vault.set("bank", json.dumps({"username": "me", "password": "wrong-password-123"}))
    cfg = yaml.safe_load((home / "finbot.yaml").read_text())
    cfg["linked_accounts"].append(
        {
            "id": "bank",
            "profile": "bruno",
            "provider": "login_test",
            "name": "Bank",
            "credentials": "bank",
        }
    )
    (home / "finbot.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = invoke(home, "accounts", "test", "bank", "--format", "json")
    assert res.exit_code == 1
    doc = json.loads(res.output)
    assert (doc["status"], doc["error_code"]) == ("failure", "authentication_failure")
    assert doc["sub_accounts"] == [] and doc["warnings"] == []
    assert "wrong-password-123" not in res.output and "***" in doc["error_message"]
    assert "`finbot secrets set bank`" in doc["fix"]


def test_accounts_providers_come_from_the_models() -> None:
    res = CliRunner().invoke(main, ["accounts", "providers", "--format", "json"])
    assert res.exit_code == 0, res.output
    docs = {d["id"]: d for d in json.loads(res.output)}
    assert set(docs) == set(registry.provider_ids())
    for pid, d in docs.items():
        spec = registry.get_spec(pid)
        assert [f["name"] for f in d["credential_fields"]] == list(spec.credentials.model_fields)
        assert [o["name"] for o in d["options"]] == list(spec.options.model_fields)
        assert all(o["description"] for o in d["options"]), pid
    text = CliRunner().invoke(main, ["accounts", "providers"]).output
    assert "dummy\n" in text and "    scale (default 1.0): multiplies every value" in text


def test_the_readme_providers_table_is_generated_from_the_models() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = CliRunner().invoke(main, ["accounts", "providers", "--format", "markdown"]).output
    assert table.strip() in readme, "regenerate it: finbot accounts providers --format markdown"
