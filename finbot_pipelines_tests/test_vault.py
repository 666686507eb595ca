"""The encrypted credential vault."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from finbot_pipelines.config.vault import (
    KEY_ENV_VAR,
    SecretNotFound,
    Vault,
    VaultError,
    init_key_file,
)

SECRET = "s3cr3t-P4ssw0rd-do-not-leak"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def token_of(path: Path) -> bytes:
    """The Fernet token inside a vault file (format 2: one JSON line)."""
    doc = json.loads(path.read_bytes())
    assert doc["finbot_vault"] == 2
    return str(doc["token"]).encode()


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_key_file(tmp_path)
    return tmp_path


def test_init_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    old_umask = os.umask(0o000)  # even with a permissive umask
    try:
        path = init_key_file(tmp_path / "home")
    finally:
        os.umask(old_umask)
    assert path == tmp_path / "home" / "secret.key"
    assert mode(path) == 0o600
    key = path.read_bytes()
    Fernet(key.strip())  # a valid key
    assert init_key_file(tmp_path / "home") == path
    assert path.read_bytes() == key


def test_round_trip_and_persistence(home: Path) -> None:
    vault = Vault.open(home)
    assert vault.names() == []
    vault.set("plaid-alice", json.dumps({"access_token": SECRET}))
    vault.set("b.other_1", "value-2")
    vault.set("A-first", "value-3")
    assert vault.names() == ["A-first", "b.other_1", "plaid-alice"]
    assert vault.get("b.other_1") == "value-2"
    assert vault.get_json("plaid-alice") == {"access_token": SECRET}

    vault_file = home / "vault.enc"
    assert mode(vault_file) == 0o600
    assert SECRET.encode() not in vault_file.read_bytes()

    again = Vault.open(home)
    assert again.names() == ["A-first", "b.other_1", "plaid-alice"]
    assert again.get_json("plaid-alice") == {"access_token": SECRET}
    again.set("b.other_1", "changed")
    again.remove("A-first")

    third = Vault.open(home)
    assert third.names() == ["b.other_1", "plaid-alice"]
    assert third.get("b.other_1") == "changed"
    files = sorted(p.name for p in home.iterdir())
    assert files == [".vault.lock", "secret.key", "vault.enc"]  # the lock file stays, empty


def test_missing_secret(home: Path) -> None:
    vault = Vault.open(home)
    with pytest.raises(VaultError, match="no secret named 'nope'"):
        vault.get("nope")
    with pytest.raises(KeyError):  # also a KeyError
        vault.get("nope")
    with pytest.raises(SecretNotFound):
        vault.remove("nope")


@pytest.mark.parametrize("name", ["", "-starts-with-dash", "has space", "slash/x", "x" * 129])
def test_invalid_secret_names(home: Path, name: str) -> None:
    with pytest.raises(VaultError, match="invalid secret name"):
        Vault.open(home).set(name, "v")


def test_absent_vault_file_opens_empty(home: Path) -> None:
    assert Vault.open(home).names() == []


def test_empty_vault_file_is_refused(home: Path) -> None:
    (home / "vault.enc").write_bytes(b"")
    with pytest.raises(VaultError, match="is empty"):
        Vault.open(home)


def test_key_from_env_takes_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key()
    monkeypatch.setenv(KEY_ENV_VAR, key.decode())
    vault = Vault.open(tmp_path)  # no key file needed
    assert vault.key_source == KEY_ENV_VAR
    vault.set("x", SECRET)
    assert not (tmp_path / "secret.key").exists()
    assert json.loads(Fernet(key).decrypt(token_of(tmp_path / "vault.enc"))) == {"x": SECRET}

    monkeypatch.delenv(KEY_ENV_VAR)
    init_key_file(tmp_path)  # a different key in the file
    with pytest.raises(VaultError) as info:
        Vault.open(tmp_path)
    assert str(info.value).startswith(
        f"cannot decrypt {tmp_path / 'vault.enc'}: the key (from {tmp_path / 'secret.key'}) "
        "does not match this vault"
    )


def test_wrong_env_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Vault.open(home).set("x", SECRET)
    monkeypatch.setenv(KEY_ENV_VAR, Fernet.generate_key().decode())
    with pytest.raises(VaultError) as info:
        Vault.open(home)
    assert str(info.value).startswith(
        f"cannot decrypt {home / 'vault.enc'}: the key (from FINBOT_SECRET_KEY) "
        "does not match this vault"
    )


def test_invalid_env_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, "not-a-key")
    with pytest.raises(VaultError, match="FINBOT_SECRET_KEY is not a valid Fernet key") as info:
        Vault.open(tmp_path)
    assert "not-a-key" not in str(info.value)


def test_no_key_anywhere(tmp_path: Path) -> None:
    with pytest.raises(VaultError) as info:
        Vault.open(tmp_path)
    message = str(info.value)
    assert KEY_ENV_VAR in message
    assert str(tmp_path / "secret.key") in message
    assert "finbot init" in message


def test_key_file_too_open(home: Path) -> None:
    key_file = home / "secret.key"
    os.chmod(key_file, 0o644)
    with pytest.raises(VaultError) as info:
        Vault.open(home)
    assert f"chmod 600 {key_file}" in str(info.value)
    assert "0644" in str(info.value)


def test_corrupt_vault_file(home: Path) -> None:
    (home / "vault.enc").write_bytes(b"this is not a vault\n")
    with pytest.raises(VaultError) as info:
        Vault.open(home)
    assert str(home / "vault.enc") in str(info.value)
    assert "damaged" in str(info.value)


def test_vault_holding_non_json(home: Path) -> None:
    key = (home / "secret.key").read_bytes().strip()
    (home / "vault.enc").write_bytes(Fernet(key).encrypt(b"[1, 2"))  # format 1
    with pytest.raises(VaultError, match="damaged"):
        Vault.open(home)


def test_secret_values_never_leak(home: Path) -> None:
    vault = Vault.open(home)
    vault.set("creds", SECRET)
    vault.set("half-json", '{"api_key": "' + SECRET + '"')
    vault.set("json-list", json.dumps([SECRET]))
    vault.set("json-number", json.dumps({"api_key": SECRET, "n": 1}))
    assert SECRET not in repr(vault)
    assert SECRET not in str(vault)
    messages = []
    for name in ("creds", "half-json", "json-list", "json-number"):
        with pytest.raises(VaultError) as info:
            vault.get_json(name)
        assert name in str(info.value)
        messages.append(str(info.value))
        # no chained exception (a JSONDecodeError carries the whole document)
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__
    assert all(SECRET not in m for m in messages)
    assert "is not valid JSON" in messages[0]
    assert "field 'n' must be a string" in messages[3]
    with pytest.raises(VaultError) as info:
        vault.set("bad name", SECRET)
    assert SECRET not in str(info.value)


def test_rotate_key_with_key_file(home: Path) -> None:
    vault = Vault.open(home)
    vault.set("a", SECRET)
    old_key = (home / "secret.key").read_bytes().strip()
    new_key = Fernet.generate_key()
    vault.rotate_key(new_key)
    assert (home / "secret.key").read_bytes().strip() == new_key
    assert mode(home / "secret.key") == 0o600
    assert mode(home / "vault.enc") == 0o600
    token = token_of(home / "vault.enc")
    assert json.loads(Fernet(new_key).decrypt(token)) == {"a": SECRET}
    with pytest.raises(Exception):  # noqa: B017 - the old key no longer opens it
        Fernet(old_key).decrypt(token)
    vault.set("b", "after rotation")  # the in-memory vault uses the new key
    reopened = Vault.open(home)
    assert reopened.get("a") == SECRET
    assert reopened.get("b") == "after rotation"
    files = sorted(p.name for p in home.iterdir())
    assert files == [".vault.lock", "secret.key", "vault.enc"]  # the lock file stays, empty


def test_key_file_mid_rotation_still_opens(home: Path) -> None:
    """A crash after step 1 of a rotation (key file holds new + old key)."""
    Vault.open(home).set("a", SECRET)
    old_key = (home / "secret.key").read_bytes().strip()
    new_key = Fernet.generate_key()
    fd = os.open(home / "secret.key", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, new_key + b"\n" + old_key + b"\n")
    os.close(fd)
    assert Vault.open(home).get("a") == SECRET


def test_rotate_key_with_env_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, Fernet.generate_key().decode())
    vault = Vault.open(tmp_path)
    vault.set("a", SECRET)
    new_key = Fernet.generate_key()
    vault.rotate_key(new_key)
    assert not (tmp_path / "secret.key").exists()
    monkeypatch.setenv(KEY_ENV_VAR, new_key.decode())
    assert Vault.open(tmp_path).get("a") == SECRET


def test_rotate_to_invalid_key(home: Path) -> None:
    vault = Vault.open(home)
    vault.set("a", SECRET)
    with pytest.raises(VaultError, match="not a valid Fernet key"):
        vault.rotate_key(b"short")
    assert Vault.open(home).get("a") == SECRET
