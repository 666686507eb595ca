"""What a provider keeps between fetches, in its account's ``FetchContext.state_dir``.

Two helpers every such provider uses: :func:`write_private` writes one state file
atomically (a crash leaves the old file or the new one, never half of either), mode
0600 in a 0700 folder; :func:`secret_fingerprint` is a salted HMAC of a credential, so
that a state file can tell it was written for these credentials without holding them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def write_private(state_dir: Path, name: str, text: str) -> None:
    """Write ``state_dir/name`` atomically, mode 0600, in a 0700 folder."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = state_dir / f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, state_dir / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def secret_fingerprint(salt: str, secret: str) -> str:
    """HMAC-SHA256 of ``secret`` keyed by ``salt`` (hex): compare with hmac.compare_digest."""
    return hmac.new(salt.encode(), secret.encode(), hashlib.sha256).hexdigest()
