"""The credential vault: ``$FINBOT_HOME/vault.enc``.

The secrets are a JSON object ``{name: value}`` (values are strings; provider
credentials are JSON objects serialised into them), encrypted as one Fernet
token. The file (format 2) is one JSON line::

    {"finbot_vault": 2, "key": "<key fingerprint>", "sha256": "<checksum>", "token": "..."}

``key`` is a one-way fingerprint of the key that encrypted the token and
``sha256`` covers the fingerprint and the token, so a damaged file (a flipped
byte, a truncated copy) is told apart from a key that does not match. A file
of format 1 (the bare token, written before format 2) still opens; the next
change rewrites it in format 2. An absent file is an empty vault; an empty
(0-byte) or damaged file is an error, and is never overwritten. The key
is ``FINBOT_SECRET_KEY`` if set, else the key file ``$FINBOT_HOME/secret.key``
(mode 0600). The key file holds one Fernet key per line: the first encrypts,
every line may decrypt; it only holds two keys for the instant of a rotation,
so a crash mid-rotation never leaves a vault nobody can open.

Every change is a locked read-modify-write (see :mod:`finbot_pipelines.config.locking`):
the vault is re-read under its lock, changed and written atomically, so concurrent
commands never lose each other's secrets.

No secret value ever appears in an exception message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from finbot_pipelines.config.loading import atomic_write_bytes
from finbot_pipelines.config.locking import LockTimeout, file_lock

KEY_ENV_VAR = "FINBOT_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
VAULT_FILE_NAME = "vault.enc"
LOCK_FILE_NAME = ".vault.lock"
VAULT_FORMAT = 2
_RESTORE_HINT = (
    "restore it from a backup (`finbot` never overwrites it while it is like this), or "
    "delete it to start an empty vault (its secrets are then lost)"
)
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
        """Open the vault of ``home`` (an absent vault file opens empty; an empty or
        damaged one raises :class:`VaultError`)."""
        keys, source, from_file = cls._load_keys(home)
        for k in keys:
            _fernet(k, source)  # a malformed key is reported before the file is read
        return cls(home, keys, source, from_file, _read_vault(vault_path(home), keys, source))

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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, str]]:
        """The vault's lock held, and its secrets as they are on disk now (another
        command may have changed them since this one opened the vault)."""
        try:
            with file_lock(self._home / LOCK_FILE_NAME, str(self.path)):
                current = _read_vault(self.path, self._keys, self._key_source)
                self._secrets = current
                yield current
        except LockTimeout as exc:
            raise VaultError(str(exc)) from None

    def set(self, name: str, value: str, *, replace: bool = True) -> None:
        """Store ``name``; with ``replace=False``, refuse if it exists by now."""
        _check_name(name)
        if not isinstance(value, str):
            raise VaultError(f"secret {name!r}: the value must be a string")
        with self._locked() as current:
            if not replace and name in current:
                raise VaultError(f"the vault already has a secret named {name!r}")
            updated = {**current, name: value}
            self._write(updated, self._keys[0])
            self._secrets = updated

    def remove(self, name: str) -> None:
        with self._locked() as current:
            if name not in current:
                raise SecretNotFound(f"no secret named {name!r} in {self.path}")
            updated = {k: v for k, v in current.items() if k != name}
            self._write(updated, self._keys[0])
            self._secrets = updated

    def rotate_key(self, new_key: bytes) -> None:
        """Re-encrypt the vault with ``new_key``.

        With a key file, the file ends up holding ``new_key`` only; the steps are
        ordered so that a crash at any point leaves a vault the key file opens.
        With ``FINBOT_SECRET_KEY``, the caller must update the variable."""
        new = _fernet(new_key, "the new key")
        new_key = new_key.strip()
        with self._locked():
            self._rotate(new, new_key)

    def _rotate(self, new: Fernet, new_key: bytes) -> None:  # under the lock
        if self._key_from_file:
            key_path = key_file_path(self._home)
            # 1. new key first, old keys still there to decrypt
            atomic_write_bytes(key_path, b"\n".join([new_key, *self._keys]) + b"\n", 0o600)
            # 2. vault encrypted with the new key
            self._write(self._secrets, new_key)
            # 3. new key only
            atomic_write_bytes(key_path, new_key + b"\n", 0o600)
        else:
            self._write(self._secrets, new_key)
        self._keys = [new_key]

    def _write(self, secrets: dict[str, str], key: bytes) -> None:
        """Encrypt ``secrets`` with ``key`` and write the vault file (format 2)."""
        payload = json.dumps(secrets, sort_keys=True, ensure_ascii=False).encode("utf-8")
        token = _fernet(key, self._key_source).encrypt(payload).decode("ascii")
        # a new 0600 file renamed over the old one: never a wider mode, even briefly
        atomic_write_bytes(self.path, vault_file_bytes(key_fingerprint(key), token), 0o600)

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


# --------------------------------------------------------------------------- the file


def key_fingerprint(key: bytes) -> str:
    """A one-way, 16-hex-digit name of ``key`` (an HMAC of a constant under the key):
    tells which key encrypted a vault, and reveals nothing of the key."""
    return hmac.new(key.strip(), b"finbot vault key fingerprint", hashlib.sha256).hexdigest()[:16]


def _checksum(fingerprint: str, token: str) -> str:
    return hashlib.sha256(f"{VAULT_FORMAT}\n{fingerprint}\n{token}".encode("ascii")).hexdigest()


def vault_file_bytes(fingerprint: str, token: str) -> bytes:
    """The bytes of a format-2 vault file."""
    doc = {
        "finbot_vault": VAULT_FORMAT,
        "key": fingerprint,
        "sha256": _checksum(fingerprint, token),
        "token": token,
    }
    return json.dumps(doc).encode("ascii") + b"\n"


def _damaged(path: Path, why: str) -> VaultError:
    return VaultError(f"the vault file {path} is damaged ({why}): {_RESTORE_HINT}")


def _read_vault(path: Path, keys: list[bytes], source: str) -> dict[str, str]:
    """The secrets in ``path``: ``{}`` when it is absent, else decrypted with one of
    ``keys``. Empty, damaged and wrong-key files each raise their own message."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise VaultError(f"cannot read {path}: {exc.strerror}") from None
    if not data.strip():
        raise VaultError(
            f"the vault file {path} is empty ({len(data)} bytes; a vault that holds no secret "
            f"is still an encrypted file): {_RESTORE_HINT}"
        )
    data = data.strip()
    if data.startswith(b"{"):
        token, fingerprint = _parse_format_2(path, data)
        by_fp = {key_fingerprint(k): k for k in keys}
        if fingerprint not in by_fp:
            mine = ", ".join(by_fp)
            raise VaultError(
                f"cannot decrypt {path}: the key (from {source}) does not match this vault "
                f"(the vault was encrypted by the key of fingerprint {fingerprint}; {source} "
                f"holds {mine}). The file itself is intact: use the key it was made with"
            )
        try:
            plain = Fernet(by_fp[fingerprint]).decrypt(token)
        except InvalidToken:  # checksum and fingerprint fine: tampered with, not damaged
            raise _damaged(path, "its token does not verify under its own key") from None
    else:
        plain = _decrypt_format_1(path, data, keys, source)
    try:
        secrets = json.loads(plain)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _damaged(path, "its content is not JSON") from None
    if not isinstance(secrets, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
    ):
        raise _damaged(path, "expected a JSON object of strings")
    return secrets


def _parse_format_2(path: Path, data: bytes) -> tuple[bytes, str]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _damaged(path, "it is not the JSON line of a finbot vault") from None
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(f), str) for f in ("key", "sha256", "token")
    ):
        raise _damaged(path, "fields key, sha256 or token are missing")
    if doc.get("finbot_vault") != VAULT_FORMAT:
        raise VaultError(
            f"{path} is a finbot vault of format {doc.get('finbot_vault')!r}, which this "
            f"finbot cannot read (it reads formats 1 and {VAULT_FORMAT}): upgrade finbot"
        )
    fingerprint, token = doc["key"], doc["token"]
    try:
        expected = _checksum(fingerprint, token)
    except UnicodeEncodeError:
        raise _damaged(path, "its checksum is not that of its content") from None
    if not hmac.compare_digest(expected, doc["sha256"]):
        raise _damaged(path, "its checksum is not that of its content")
    return token.encode("ascii"), fingerprint


def _decrypt_format_1(path: Path, token: bytes, keys: list[bytes], source: str) -> bytes:
    """A vault file written before format 2: the bare Fernet token."""
    try:
        return MultiFernet([Fernet(k) for k in keys]).decrypt(token)
    except InvalidToken:
        if _looks_like_fernet_token(token):
            raise VaultError(
                f"cannot decrypt {path}: the key (from {source}) does not match this vault, or "
                "the file is damaged (it was written before finbot kept a checksum, so the two "
                "cannot be told apart): try the key it was made with, else " + _RESTORE_HINT
            ) from None
        raise _damaged(path, "it is not an encrypted finbot vault") from None
