"""Advisory locks that serialise every change to ``finbot.yaml`` and the vault.

A change is a read-modify-write: take the lock, read the file as it is now, apply
the change, write a new file and rename it into place, release. Two commands
changing the same file therefore queue instead of losing each other's change.

The lock is ``flock(2)`` on a small file beside the one it protects
(``.finbot.yaml.lock``, ``.vault.lock``); the kernel drops it when the holder
exits, even on a crash, so a stale lock cannot outlive its process. Nobody holds
a lock while waiting for a person: commands ask their questions first.

A command that waits more than :data:`ANNOUNCE_AFTER_S` says so on stderr (what it
waits for, and which process holds the lock), and gives up after
``$FINBOT_LOCK_TIMEOUT_S`` seconds (default :data:`DEFAULT_TIMEOUT_S`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TIMEOUT_ENV_VAR = "FINBOT_LOCK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 120.0
#: Waiting longer than this is announced once.
ANNOUNCE_AFTER_S = 1.0
_POLL_S = 0.05


class LockTimeout(Exception):
    """Another finbot command held the lock for longer than the deadline."""


def lock_timeout_s() -> float:
    """``$FINBOT_LOCK_TIMEOUT_S`` when it is a number > 0, else the default."""
    raw = os.environ.get(TIMEOUT_ENV_VAR, "").strip()
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if 0 < value <= 24 * 3600 else DEFAULT_TIMEOUT_S


def _say(message: str) -> None:
    print(f"finbot: {message}", file=sys.stderr, flush=True)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        if text:
            return f" (held by {text})"
    return ""


@contextlib.contextmanager
def file_lock(
    lock_path: Path,
    what: str,
    *,
    timeout_s: float | None = None,
    announce: Callable[[str], None] = _say,
) -> Iterator[None]:
    """Hold the exclusive lock ``lock_path`` for the body; ``what`` names the file it
    protects in the messages (e.g. ``/x/finbot.yaml``)."""
    deadline_s = lock_timeout_s() if timeout_s is None else timeout_s
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        start = time.monotonic()
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= deadline_s:
                    raise LockTimeout(
                        f"gave up after {deadline_s:g} s waiting for another finbot command "
                        f"to finish changing {what}{_holder(fd)}; nothing was changed. Try "
                        f"again when it is done (or set {TIMEOUT_ENV_VAR} to wait longer)"
                    ) from None
                if not announced and waited >= ANNOUNCE_AFTER_S:
                    announce(
                        f"waiting for another finbot command to finish changing "
                        f"{what}{_holder(fd)} (giving up after {deadline_s:g} s) ..."
                    )
                    announced = True
                time.sleep(_POLL_S)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv[:3])[:150]}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_path_for(path: Path) -> Path:
    """The lock file guarding ``path``: ``.<name>.lock`` in the same directory."""
    stem = path.name.split(".")[0] if path.name.endswith(".enc") else path.name
    return path.with_name(f".{stem}.lock")
