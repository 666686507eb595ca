"""Issue #13, point 8: bounded input.

YAML aliases cannot blow up, every number of the config and of the provider
options is finite and within sane bounds (the error names the field), and an
empty, damaged or wrongly keyed vault each gets its own message and is never
overwritten.
"""

from __future__ import annotations

import itertools
import json
import os
import string
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from finbot_pipelines.cli import main
from finbot_pipelines.config.home import demo_config_text
from finbot_pipelines.config.loading import ConfigError, load_config
from finbot_pipelines.config.vault import KEY_ENV_VAR, Vault, VaultError, init_key_file

FINBOT = str(Path(sys.executable).parent / "finbot")
PROFILES = "profiles:\n  - {id: me, name: Me, valuation_ccy: EUR}\n"


def invoke(home: Path, *args: str, input: str | None = None, **env: str) -> Any:
    return CliRunner().invoke(main, ["--home", str(home), *args], input=input, env=env)


# --------------------------------------------------------------------------- YAML aliases


def bomb(levels: int = 9) -> str:
    """The classic "billion laughs": 9 levels of 9 aliases each, 9**9 strings."""
    keys = string.ascii_lowercase[:levels]
    lines = [f'{keys[0]}: &{keys[0]} ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, key in itertools.pairwise(keys):
        lines.append(f"{key}: &{key} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n" + PROFILES


def test_an_alias_bomb_is_refused_quickly_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "finbot.yaml").write_text(bomb())
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV_VAR}
    env["FINBOT_HOME"] = str(tmp_path)
    for args in (["config", "check"], ["accounts", "list"]):
        # a hang is a timeout here (far above the milliseconds the check takes)
        res = subprocess.run([FINBOT, *args], capture_output=True, text=True, env=env, timeout=20)
        assert res.returncode == 2, res.stderr
        message = res.stderr
        assert str(tmp_path / "finbot.yaml") in message
        assert "alias bomb" in message
        # it names the line and the key of one of the bomb's own lines
        bomb_lines = {
            n: line.split(":")[0] for n, line in enumerate(bomb().splitlines(), 1) if "&" in line
        }
        assert any(f"line {n}, {key}:" in message for n, key in bomb_lines.items()), message


def test_the_code_location_refuses_a_bomb_too(tmp_path: Path) -> None:
    (tmp_path / "finbot.yaml").write_text(bomb())
    code = (
        "from finbot_pipelines.definitions import build_definitions\n"
        "from finbot_pipelines.config.loading import ConfigError\n"
        "try:\n"
        f"    build_definitions({str(tmp_path)!r})\n"
        "except ConfigError as exc:\n"
        "    print('refused:', exc)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,  # importing Dagster and dbt's manifest takes seconds; the check does not
        env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
    )
    assert "refused:" in res.stdout and "alias bomb" in res.stdout, res.stderr[-2000:]


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "finbot.yaml"
    path.write_text(PROFILES + "fx_static_rates: &r\n  GBP: *r\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "recursive alias" in str(info.value)
    assert info.value.line == 3


def test_deep_nesting_and_huge_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "finbot.yaml"
    path.write_text("profiles: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)
    path.write_text(PROFILES + "# " + "x" * 5_000_000 + "\n")
    with pytest.raises(ConfigError, match="bytes: a finbot config is at most"):
        load_config(path)


def test_ordinary_anchors_and_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "finbot.yaml"
    path.write_text(
        PROFILES
        + "linked_accounts:\n"
        + "  - {id: a, profile: me, provider: dummy, name: A, options: &opts {scale: 2.5}}\n"
        + "  - {id: b, profile: me, provider: dummy, name: B, options: *opts}\n"
    )
    cfg = load_config(path)
    assert [la.options for la in cfg.linked_accounts] == [{"scale": 2.5}, {"scale": 2.5}]


# --------------------------------------------------------------------------- numbers

CONFIG_WITH = {
    "fetch.timeout_s": "fetch:\n  timeout_s: {v}\n",
    "fetch.backoff_s": "fetch:\n  backoff_s: {v}\n",
    "fetch.max_attempts": "fetch:\n  max_attempts: {v}\n",
    "fetch.max_workers": "fetch:\n  max_workers: {v}\n",
    "notifications.failure_threshold_hours": "notifications:\n  failure_threshold_hours: {v}\n",
    "fx_static_rates.USD": "fx_static_rates:\n  USD: {v}\n",
    "unit_prices.BTC.USD": "unit_prices:\n  BTC:\n    USD: {v}\n",
    "linked_accounts[0].options.scale": (
        "linked_accounts:\n  - id: d\n    profile: me\n    provider: dummy\n    name: D\n"
        "    options:\n      scale: {v}\n"
    ),
    "linked_accounts[0].options.latency_s": (
        "linked_accounts:\n  - id: d\n    profile: me\n    provider: dummy\n    name: D\n"
        "    options:\n      latency_s: {v}\n"
    ),
    "linked_accounts[0].options.flaky_attempts": (
        "linked_accounts:\n  - id: d\n    profile: me\n    provider: dummy\n    name: D\n"
        "    options:\n      flaky_attempts: {v}\n"
    ),
    "linked_accounts[0].options.timeout_s": (
        "linked_accounts:\n  - id: k\n    profile: me\n    provider: kraken\n    name: K\n"
        "    credentials: k\n    options:\n      timeout_s: {v}\n"
    ),
    "linked_accounts[0].options.dust_threshold": (
        "linked_accounts:\n  - id: k\n    profile: me\n    provider: kraken\n    name: K\n"
        "    credentials: k\n    options:\n      dust_threshold: {v}\n"
    ),
}

BAD_NUMBERS = {
    "fetch.timeout_s": [".inf", ".nan", "-1", "0", "601", "1.0e+400"],
    "fetch.backoff_s": [".inf", ".nan", "-0.5", "3601"],
    "fetch.max_attempts": ["-1", "0", "11", "1000000000000000000000"],
    "fetch.max_workers": ["0", "257", "1.0e+9"],
    "notifications.failure_threshold_hours": ["0", "721", ".inf"],
    "fx_static_rates.USD": [".inf", ".nan", "-1", "0", "1.0e+300"],
    "unit_prices.BTC.USD": [".inf", ".nan", "-65000", "1.0e+300"],
    "linked_accounts[0].options.scale": [".inf", ".nan", "-1", "1.0e+9"],
    "linked_accounts[0].options.latency_s": [".inf", "-1", "86400"],
    "linked_accounts[0].options.flaky_attempts": ["-1", "21", "1000000"],
    "linked_accounts[0].options.timeout_s": [".inf", ".nan", "-1", "0", "601"],
    "linked_accounts[0].options.dust_threshold": [".inf", ".nan", "-1", "1.0e+300"],
}
GOOD_NUMBERS = {
    "fetch.timeout_s": ["0.5", "600"],
    "fetch.backoff_s": ["0", "3600"],
    "fetch.max_attempts": ["1", "10"],
    "fetch.max_workers": ["1", "256"],
    "notifications.failure_threshold_hours": ["1", "720"],
    "fx_static_rates.USD": ["1.08", "1.0e+9"],
    "unit_prices.BTC.USD": ["65000", "0.000001"],
    "linked_accounts[0].options.scale": ["0.001", "1000"],
    "linked_accounts[0].options.latency_s": ["0", "3600"],
    "linked_accounts[0].options.flaky_attempts": ["0", "20"],
    "linked_accounts[0].options.timeout_s": ["1", "600"],
    "linked_accounts[0].options.dust_threshold": ["0", "1.0e+6"],
}


def _line_of_value(text: str, value: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.endswith(f": {value}"))


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for f, values in BAD_NUMBERS.items() for v in values]
)
def test_config_check_refuses_a_bad_number_naming_the_field(
    tmp_path: Path, field: str, value: str
) -> None:
    text = PROFILES + CONFIG_WITH[field].format(v=value)
    (tmp_path / "finbot.yaml").write_text(text)
    res = invoke(tmp_path, "config", "check")
    assert res.exit_code == 2, res.output
    line = _line_of_value(text, value)
    assert f"finbot.yaml, line {line}, {field}: expected" in res.output, res.output


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for f, values in GOOD_NUMBERS.items() for v in values]
)
def test_config_check_accepts_sane_numbers(tmp_path: Path, field: str, value: str) -> None:
    (tmp_path / "finbot.yaml").write_text(PROFILES + CONFIG_WITH[field].format(v=value))
    res = invoke(tmp_path, "config", "check")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("value", ["0001-01-01T00:00", "1999-12-31T23:00"])
def test_history_start_is_bounded(tmp_path: Path, value: str) -> None:
    (tmp_path / "finbot.yaml").write_text(PROFILES + f'history_start: "{value}"\n')
    res = invoke(tmp_path, "config", "check")
    assert res.exit_code == 2
    assert "line 3, history_start: expected 2000-01-01T00:00 or later" in res.output


def test_accounts_add_refuses_an_infinite_option(tmp_path: Path) -> None:
    (tmp_path / "finbot.yaml").write_text(demo_config_text(datetime(2026, 5, 1)))
    before = (tmp_path / "finbot.yaml").read_bytes()
    res = invoke(tmp_path, "accounts", "add", "dummy", "--id", "x", "--profile", "alice",
                 "--option", "latency_s=.inf")  # fmt: skip
    assert res.exit_code == 2
    assert "options.latency_s: expected a finite number" in res.output
    assert (tmp_path / "finbot.yaml").read_bytes() == before


# --------------------------------------------------------------------------- the vault


@pytest.fixture
def vault_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    (tmp_path / "finbot.yaml").write_text(demo_config_text(datetime(2026, 5, 1)))
    init_key_file(tmp_path)
    vault = Vault.open(tmp_path)
    vault.set("existing", "keep-me-1234")
    vault.set("second", "also-kept-5678")
    return tmp_path


def _fails_without_writing(home: Path, **env: str) -> str:
    """`secrets list` and `secrets set` both refuse; the vault file is unchanged."""
    before = (home / "vault.enc").read_bytes()
    listed = invoke(home, "secrets", "list", **env)
    stored = invoke(home, "secrets", "set", "new", "--stdin", input="value-5678\n", **env)
    assert listed.exit_code == 2 and stored.exit_code == 2, (listed.output, stored.output)
    assert listed.output == stored.output  # one message, whatever the command
    assert (home / "vault.enc").read_bytes() == before
    assert "keep-me-1234" not in stored.output
    return str(stored.output)


def _flip(data: bytes, at: int) -> bytes:
    """``data`` with the byte at ``at`` changed to another base64url letter (a damaged
    token that still decodes: XOR-ing a bit could leave the alphabet, e.g. 'z' -> '{',
    and make another error, depending on the random token)."""
    return data[:at] + (b"B" if data[at : at + 1] == b"A" else b"A") + data[at + 1 :]


def test_an_empty_vault_file_is_reported_and_kept(vault_home: Path) -> None:
    (vault_home / "vault.enc").write_bytes(b"")
    message = _fails_without_writing(vault_home)
    assert f"the vault file {vault_home / 'vault.enc'} is empty" in message
    assert "restore it from a backup" in message
    assert (vault_home / "vault.enc").stat().st_size == 0


@pytest.mark.parametrize("where", ["token", "key", "sha256"])
def test_a_flipped_byte_is_damage_not_a_wrong_key(vault_home: Path, where: str) -> None:
    path = vault_home / "vault.enc"
    data = path.read_bytes()
    doc = json.loads(data)
    # a byte in the middle of the field's value
    at = data.index(doc[where].encode()) + len(doc[where]) // 2
    path.write_bytes(_flip(data, at))
    message = _fails_without_writing(vault_home)
    assert f"the vault file {path} is damaged" in message
    assert "restore it from a backup" in message
    assert "does not match" not in message


def test_a_truncated_vault_is_damage(vault_home: Path) -> None:
    path = vault_home / "vault.enc"
    path.write_bytes(path.read_bytes()[:100])
    assert "is damaged" in _fails_without_writing(vault_home)


def test_a_wrong_key_is_not_damage(vault_home: Path) -> None:
    other_key = Fernet.generate_key().decode()
    message = _fails_without_writing(vault_home, **{KEY_ENV_VAR: other_key})
    assert "the key (from FINBOT_SECRET_KEY) does not match this vault" in message
    assert "the file itself is intact" in message.lower()
    assert "damaged" not in message
    assert other_key not in message


def test_the_three_messages_differ(vault_home: Path) -> None:
    path = vault_home / "vault.enc"
    good = path.read_bytes()
    wrong_key = {KEY_ENV_VAR: Fernet.generate_key().decode()}
    messages = [_fails_without_writing(vault_home, **wrong_key)]
    path.write_bytes(_flip(good, len(good) // 2))
    messages.append(_fails_without_writing(vault_home))
    path.write_bytes(b"")
    messages.append(_fails_without_writing(vault_home))
    kinds = [("does not match" in m, "is damaged" in m, "is empty" in m) for m in messages]
    assert kinds == [(True, False, False), (False, True, False), (False, False, True)], messages


def test_a_format_1_vault_still_opens_and_is_migrated(vault_home: Path) -> None:
    """Vault files written before the checksum: the bare Fernet token."""
    key = (vault_home / "secret.key").read_bytes().strip()
    path = vault_home / "vault.enc"
    old_secrets = {"legacy": "old-value-1", "other": "old-value-2"}
    path.write_bytes(Fernet(key).encrypt(json.dumps(old_secrets).encode()) + b"\n")
    vault = Vault.open(vault_home)
    assert vault.names() == ["legacy", "other"] and vault.get("legacy") == "old-value-1"
    res = invoke(vault_home, "secrets", "set", "new", "--stdin", input="new-value\n")
    assert res.exit_code == 0, res.output
    doc = json.loads(path.read_bytes())
    assert doc["finbot_vault"] == 2
    assert json.loads(Fernet(key).decrypt(doc["token"].encode())) == {
        **old_secrets,
        "new": "new-value",
    }


def test_a_damaged_format_1_vault_says_both_causes(vault_home: Path) -> None:
    key = (vault_home / "secret.key").read_bytes().strip()
    path = vault_home / "vault.enc"
    token = Fernet(key).encrypt(b'{"a": "b"}')
    path.write_bytes(_flip(token, 40) + b"\n")
    with pytest.raises(VaultError) as info:
        Vault.open(vault_home)
    assert "does not match this vault, or the file is damaged" in str(info.value)
