"""The credential vault: ``$FINBOT_HOME/vault.enc``.

The file is the Fernet token of a JSON object ``{name: value}`` (values are
strings; provider credentials are JSON objects serialised into them). The key
is ``FINBOT_SECRET_KEY`` if set, else the key file ``$FINBOT_HOME/secret.key``
(mode 0600). The key file holds one Fernet key per line: the first encrypts,
every line may decrypt; it only holds two keys for the instant of a rotation,
so a crash mid-rotation never leaves a vault nobody can open.

No secret value ever appears in an exception message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from finbot_pipelines.config.loading import atomic_write_bytes

KEY_ENV_VAR = "FINBOT_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
VAULT_FILE_NAME = "vault.enc"
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class VaultError(Exception):
    """The vault cannot be opened, read or written; or a secret is missing/invalid."""


class SecretNotFound(VaultError, KeyError):
    """No secret has this name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def key_file_path(home: Path) -> Path:
    return home / KEY_FILE_NAME


def vault_path(home: Path) -> Path:
    return home / VAULT_FILE_NAME


def init_key_file(home: Path) -> Path:
    """Create ``home/secret.key`` (mode 0600, a new Fernet key) unless it exists.

    Never overwrites. Returns the key file's path."""
    path = key_file_path(home)
    if path.exists():
        return path
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    try:
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _fernet(key: bytes | str, source: str) -> Fernet:
    try:
        return Fernet(key.strip())
    except (ValueError, TypeError, binascii.Error):
        raise VaultError(
            f"the key from {source} is not a valid Fernet key "
            "(expected 32 url-safe base64-encoded bytes, as made by `finbot init`)"
        ) from None


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not SECRET_NAME_RE.match(name):
        raise VaultError(
            f"invalid secret name {name!r}: expected letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, at most 128 characters"
        )


class Vault:
    """An opened vault. Mutations are written to disk immediately and atomically."""

    def __init__(
        self,
        home: Path,
        keys: list[bytes],
        key_source: str,
        key_from_file: bool,
        secrets: dict[str, str],
    ) -> None:
        self._home = home
        self._keys = keys
        self._key_source = key_source
        self._key_from_file = key_from_file
        self._secrets = secrets

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, home: Path) -> Vault:
        """Open the vault of ``home`` (an absent or empty vault file opens empty)."""
        keys, source, from_file = cls._load_keys(home)
        crypto = MultiFernet([_fernet(k, source) for k in keys])
        path = vault_path(home)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise VaultError(f"cannot read {path}: {exc.strerror}") from None
        secrets: dict[str, str] = {}
        if data.strip():
            secrets = cls._decrypt(path, data.strip(), crypto, source)
        return cls(home, keys, source, from_file, secrets)

    @staticmethod
    def _load_keys(home: Path) -> tuple[list[bytes], str, bool]:
        env = os.environ.get(KEY_ENV_VAR, "").strip()
        if env:
            return [env.encode()], KEY_ENV_VAR, False
        path = key_file_path(home)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise VaultError(
                f"no vault key: {KEY_ENV_VAR} is not set and {path} does not exist "
                "(run `finbot init` to create a key file)"
            ) from None
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise VaultError(
                f"{path} has permissions {mode:04o}, readable by others: run `chmod 600 {path}`"
            )
        try:
            lines = [ln.strip() for ln in path.read_bytes().splitlines() if ln.strip()]
        except OSError as exc:
            raise VaultError(f"cannot read {path}: {exc.strerror}") from None
        if not lines:
            raise VaultError(f"{path} is empty: expected a Fernet key")
        return lines, str(path), True

    @staticmethod
    def _decrypt(path: Path, token: bytes, crypto: MultiFernet, source: str) -> dict[str, str]:
        try:
            plain = crypto.decrypt(token)
        except InvalidToken:
            if _looks_like_fernet_token(token):
                raise VaultError(
                    f"cannot decrypt {path}: the key (from {source}) does not match this vault"
                ) from None
            raise VaultError(f"{path} is corrupt: it is not an encrypted finbot vault") from None
        try:
            secrets = json.loads(plain)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise VaultError(f"{path} is corrupt: its content is not JSON") from None
        if not isinstance(secrets, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
        ):
            raise VaultError(f"{path} is corrupt: expected a JSON object of strings")
        return secrets

    # ------------------------------------------------------------------ reading

    @property
    def path(self) -> Path:
        return vault_path(self._home)

    @property
    def key_source(self) -> str:
        """``FINBOT_SECRET_KEY`` or the key file's path."""
        return self._key_source

    def names(self) -> list[str]:
        return sorted(self._secrets)

    def __contains__(self, name: object) -> bool:
        return name in self._secrets

    def __len__(self) -> int:
        return len(self._secrets)

    def get(self, name: str) -> str:
        try:
            return self._secrets[name]
        except (KeyError, TypeError):
            raise SecretNotFound(f"no secret named {name!r} in {self.path}") from None

    def get_json(self, name: str) -> dict[str, str]:
        """The secret parsed as a JSON object of strings (provider credentials)."""
        raw = self.get(name)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise VaultError(
                f"secret {name!r} is not valid JSON: expected a JSON object such as "
                '{"api_key": "..."}'
            ) from None
        if not isinstance(value, dict):
            raise VaultError(f"secret {name!r} is not a JSON object (expected {{field: value}})")
        for field, v in value.items():
            if not isinstance(v, str):
                raise VaultError(f"secret {name!r}: field {field!r} must be a string")
        return value

    # ------------------------------------------------------------------ writing

    def set(self, name: str, value: str) -> None:
        _check_name(name)
        if not isinstance(value, str):
            raise VaultError(f"secret {name!r}: the value must be a string")
        updated = {**self._secrets, name: value}
        self._write(updated, self._encryptor())
        self._secrets = updated

    def remove(self, name: str) -> None:
        if name not in self._secrets:
            raise SecretNotFound(f"no secret named {name!r} in {self.path}")
        updated = {k: v for k, v in self._secrets.items() if k != name}
        self._write(updated, self._encryptor())
        self._secrets = updated

    def rotate_key(self, new_key: bytes) -> None:
        """Re-encrypt the vault with ``new_key``.

        With a key file, the file ends up holding ``new_key`` only; the steps are
        ordered so that a crash at any point leaves a vault the key file opens.
        With ``FINBOT_SECRET_KEY``, the caller must update the variable."""
        new = _fernet(new_key, "the new key")
        new_key = new_key.strip()
        if self._key_from_file:
            key_path = key_file_path(self._home)
            # 1. new key first, old keys still there to decrypt
            atomic_write_bytes(key_path, b"\n".join([new_key, *self._keys]) + b"\n", 0o600)
            # 2. vault encrypted with the new key
            self._write(self._secrets, new)
            # 3. new key only
            atomic_write_bytes(key_path, new_key + b"\n", 0o600)
        else:
            self._write(self._secrets, new)
        self._keys = [new_key]

    def _encryptor(self) -> Fernet:
        return _fernet(self._keys[0], self._key_source)

    def _write(self, secrets: dict[str, str], crypto: Fernet) -> None:
        payload = json.dumps(secrets, sort_keys=True, ensure_ascii=False).encode("utf-8")
        # a new 0600 file renamed over the old one: never a wider mode, even briefly
        atomic_write_bytes(self.path, crypto.encrypt(payload) + b"\n", 0o600)

    # ------------------------------------------------------------------ safety

    def __repr__(self) -> str:
        return (
            f"Vault(path={str(self.path)!r}, key_source={self._key_source!r}, secrets={len(self)})"
        )

    __str__ = __repr__


def _looks_like_fernet_token(token: bytes) -> bool:
    try:
        raw = base64.urlsafe_b64decode(token)
    except (binascii.Error, ValueError):
        return False
    # version byte 0x80, timestamp (8), IV (16), >= 1 block of ciphertext (16), HMAC (32)
    return len(raw) >= 73 and raw[0] == 0x80
