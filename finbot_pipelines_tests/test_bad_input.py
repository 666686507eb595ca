"""Bad input through the real command line: malformed configs, vault files and sheets.

Each one is a clear error naming the place (file and line, or worksheet and cell),
a non-zero exit, and nothing written.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.config.home import demo_config_text
from finbot_pipelines.config.vault import Vault, init_key_file
from finbot_pipelines_tests.test_config import BAD_CONFIGS
from finbot_pipelines_tests.test_provider_google_sheets import (  # noqa: F401 (fixtures)
    KEY,
    SheetsFixture,
    _share,
    place,
    service_account,
    sheets,
)


def snapshot(home: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime) for p in home.rglob("*")
    }


def invoke(home: Path, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, ["--home", str(home), *args], input=input)


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [pytest.param(case[1], case[2], case[3], id=case[0]) for case in BAD_CONFIGS],
)
@pytest.mark.parametrize("command", [["run"], ["accounts", "list"]])
def test_malformed_config(
    tmp_path: Path, text: str, line: int, field: str, command: list[str]
) -> None:
    (tmp_path / "finbot.yaml").write_text(text)
    before = snapshot(tmp_path)
    res = invoke(tmp_path, *command)
    assert res.exit_code == 2, res.output
    assert f"{tmp_path / 'finbot.yaml'}, line {line}" in res.output
    if field:
        assert field in res.output
    assert "Traceback" not in res.output
    assert snapshot(tmp_path) == before


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "finbot.yaml").write_text(demo_config_text(datetime(2026, 5, 1)))
    init_key_file(tmp_path)
    Vault.open(tmp_path).set("existing", "keep-me-1234")
    return tmp_path


def _corrupt(home: Path) -> None:
    (home / "vault.enc").write_bytes(b"gAAAAA-this-is-not-a-fernet-token\n")


def _truncate(home: Path) -> None:
    data = (home / "vault.enc").read_bytes()
    (home / "vault.enc").write_bytes(data[: len(data) // 2])


def _bad_key(home: Path) -> None:
    (home / "secret.key").write_text("not a fernet key\n")


def _open_key(home: Path) -> None:
    os.chmod(home / "secret.key", 0o644)


def _no_key(home: Path) -> None:
    (home / "secret.key").unlink()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_corrupt, ["vault.enc"]),
        (_truncate, ["vault.enc"]),
        (_bad_key, ["secret.key"]),
        (_open_key, ["secret.key", "600"]),
        (_no_key, ["secret.key", "FINBOT_SECRET_KEY"]),
    ],
    ids=["corrupt-vault", "truncated-vault", "bad-key", "key-readable-by-others", "no-key"],
)
@pytest.mark.parametrize("command", [["secrets", "list"], ["secrets", "set", "new"]])
def test_malformed_vault_or_key(
    home: Path, damage: Any, words: list[str], command: list[str]
) -> None:
    damage(home)
    before = snapshot(home)
    res = invoke(home, *command, input="value-5678\n")
    assert res.exit_code == 2, res.output
    for word in words:
        assert word in res.output, res.output
    assert "keep-me-1234" not in res.output and "Traceback" not in res.output
    assert snapshot(home) == before


SHEETS = {
    "no-accounts-marker": (place(("A1", [["HOLDINGS"]])), ["'Sheet1'", "ACCOUNTS"]),
    "missing-column": (
        place(
            (
                "A1",
                [
                    ["ACCOUNTS"],
                    ["identifier", "description", "type"],
                    ["cur", "Current", "depository"],
                ],
            ),
            ("F1", [["HOLDINGS"], ["account", "symbol", "value"], ["cur", "Cash", 10]]),
        ),
        ["'Sheet1', cell A2", "currency"],
    ),
    "not-a-number": (
        place(
            (
                "A1",
                [
                    ["ACCOUNTS"],
                    ["identifier", "description", "currency", "type"],
                    ["cur", "Current", "EUR", "depository"],
                ],
            ),
            (
                "F1",
                [
                    ["HOLDINGS"],
                    ["account", "symbol", "asset type", "value"],
                    ["cur", "Cash", "cash", "abc"],
                ],
            ),
        ),
        ["'Sheet1', cell I3", "abc"],
    ),
    "unknown-account": (
        place(
            (
                "A1",
                [
                    ["ACCOUNTS"],
                    ["identifier", "description", "currency", "type"],
                    ["cur", "Current", "EUR", "depository"],
                ],
            ),
            (
                "F1",
                [
                    ["HOLDINGS"],
                    ["account", "symbol", "asset type", "value"],
                    ["isa", "Fund", "fund", 100],
                ],
            ),
        ),
        ["'Sheet1', cell F3", "isa"],
    ),
}


@pytest.mark.parametrize("case", sorted(SHEETS))
def test_malformed_sheet(home: Path, sheets: SheetsFixture, case: str) -> None:  # noqa: F811
    grid, words = SHEETS[case]
    _share(sheets, grid)
    before = snapshot(home)
    args = ["accounts", "add", "google_sheets", "--id", "sheet", "--profile", "alice"]
    for key, value in sheets.options(KEY).items():
        args += ["--option", f"{key}={json.dumps(value)}"]
    res = invoke(home, *args, "--credentials-stdin", input=json.dumps(sheets.credentials()))
    assert res.exit_code == 1, res.output
    assert "provider_error" in res.output
    for word in words:
        assert word in res.output, res.output
    assert "PRIVATE KEY" not in res.output
    assert snapshot(home) == before
