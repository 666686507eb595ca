"""Answers of the read API kept until the next publish (an ASGI middleware).

Between two publishes every GET under /api/v1 answers the same for the same caller, so
the first answer is kept and replayed. What keys an answer:

- the published catalog's identity (inode and mtime: a publish renames a new file into
  place) and finbot.yaml's (names, frozen flags), so a publish or a config edit is seen
  at once;
- the caller: user id, scope and their grants, taken from the request by
  :func:`auth.identify` on every request (a revoked token or an ended session is
  refused at once; a share changed in the users file changes the key);
- the path and the query string.

Only 200 answers are kept, each at most MAX_ENTRY_BYTES, in an LRU of MAX_ENTRIES and
MAX_BYTES; pages (HTML, with their session's CSRF token) are never kept.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finbot_pipelines.web.auth import identify

MAX_ENTRIES = 4096
MAX_BYTES = 128 * 1024 * 1024
MAX_ENTRY_BYTES = 4 * 1024 * 1024
PREFIX = "/api/v1/"
NOT_KEPT = frozenset({"/api/v1/openapi.json"})
#: (status, raw headers, body)
Entry = tuple[int, list[tuple[bytes, bytes]], bytes]


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class AnswerCache:
    """The middleware; ``state`` gives the app's WebState (paths and user store)."""

    def __init__(self, app: ASGIApp, state: Callable[[], Any]) -> None:
        self.app = app
        self.state = state
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], Entry] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def _key(self, scope: Scope) -> tuple[Any, ...] | None:
        state = self.state()
        principal = identify(Request(scope), state.store)
        if principal is None:
            return None
        published = _stat(state.paths.published)
        if published is None:
            return None
        return (
            published,
            _stat(state.paths.config),
            principal.user.id,
            principal.scope,
            tuple(sorted(principal.grants.items())),
            scope["path"],
            scope.get("query_string", b""),
        )

    def _get(self, key: tuple[Any, ...]) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return entry

    def _put(
        self, key: tuple[Any, ...], entry: tuple[int, list[tuple[bytes, bytes]], bytes]
    ) -> None:
        size = len(entry[2])
        if size > MAX_ENTRY_BYTES:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[2])
            self._entries[key] = entry
            self._bytes += size
            while self._entries and (len(self._entries) > MAX_ENTRIES or self._bytes > MAX_BYTES):
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped[2])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(PREFIX)
            or scope["path"] in NOT_KEPT
        ):
            await self.app(scope, receive, send)
            return
        key = await run_in_threadpool(self._key, scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        entry = self._get(key)
        if entry is not None:
            status, headers, body = entry
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and started.get("status") == 200:
                    self._put(key, (200, list(started.get("headers", [])), b"".join(chunks)))
            await send(message)

        await self.app(scope, receive, capture)
