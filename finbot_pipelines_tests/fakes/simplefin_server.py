"""A fake SimpleFIN server on 127.0.0.1, speaking the SimpleFIN protocol.

From https://www.simplefin.org/protocol.html (v1 and the 2.0 draft):

``POST /simplefin/claim/{token}``
    a setup token is base64 of this URL (:meth:`FakeSimplefin.setup_token`); the
    first claim answers the access URL ``http://user:password@127.0.0.1:PORT/simplefin``
    as plain text, any later claim of it (or an unknown token) 403.
``GET /simplefin/accounts``
    HTTP Basic auth with the access URL's credentials (else 403, as a revoked access
    URL; :attr:`FakeSimplefin.status` forces 402 or 403); ``start-date`` (on or
    after) and ``end-date`` (before) filter transactions by ``posted``, pending ones
    (``pending: true`` or ``posted`` 0) only with ``pending=1``, ``balances-only=1``
    drops them, ``account`` (repeatable) keeps those accounts. The answer is
    :attr:`FakeSimplefin.account_set` (an Account Set, e.g. one of the protocol's
    published examples in ``finbot_pipelines_tests/data/simplefin``), or
    :attr:`FakeSimplefin.raw_body` sent verbatim (a broken answer).

Every ``/accounts`` request is recorded (:attr:`FakeSimplefin.requests`, its query),
so tests count them (the Bridge expects at most 24 a day). With :attr:`echo` on,
``/accounts`` answers 400 with a JSON body quoting the request (its Authorization
header, its query) and the access URL and its password in every encoded form
(``fakes/echo.py``), as a careless server would.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from finbot_pipelines_tests.fakes.echo import echo_record

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "simplefin" / "protocol_examples.json"


def examples() -> dict[str, Any]:
    """The protocol's published examples (see the file's ``_about``), numbers exact."""
    doc: dict[str, Any] = json.loads(EXAMPLES.read_text(encoding="utf-8"), parse_float=Decimal)
    return doc


def without_source(value: Any) -> Any:
    """An example without its ``_source`` notes (what a server would send)."""
    if isinstance(value, dict):
        return {k: without_source(v) for k, v in value.items() if k != "_source"}
    if isinstance(value, list):
        return [without_source(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    """JSON with each Decimal written digit for digit as a JSON number."""

    def default(v: object) -> str:
        if isinstance(v, Decimal):
            return f"@@decimal:{v}@@"
        raise TypeError(type(v).__name__)

    text = json.dumps(value, default=default)
    return text.replace('"@@decimal:', "").replace('@@"', "")


@dataclass
class SimplefinState:
    username: str = "fake-user-4f1c"
    password: str = field(default_factory=lambda: "fake-pass-" + secrets.token_hex(8))
    account_set: dict[str, Any] = field(default_factory=dict)
    raw_body: str | None = None
    #: force this status on /accounts (402 payment required, 403 revoked, 500, ...)
    status: int | None = None
    echo: bool = False
    #: claim token -> claimed already
    tokens: dict[str, bool] = field(default_factory=dict)
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    claims: list[tuple[str, int]] = field(default_factory=list)


def _pending(t: dict[str, Any]) -> bool:
    return t.get("pending") is True or t.get("posted") in (0, "0")


def filter_account_set(body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
    """What the server sends for ``query`` (the protocol's /accounts parameters)."""
    out = copy.deepcopy(body)
    start = int(query["start-date"][0]) if "start-date" in query else None
    end = int(query["end-date"][0]) if "end-date" in query else None
    pending = query.get("pending", ["0"])[0] == "1"
    balances_only = query.get("balances-only", ["0"])[0] == "1"
    wanted = set(query.get("account", []))
    accounts = []
    for account in out.get("accounts", []):
        if wanted and account.get("id") not in wanted:
            continue
        txns = account.get("transactions")
        if isinstance(txns, list):
            kept = []
            for t in txns:
                if _pending(t):
                    if pending:
                        kept.append(t)
                    continue
                posted = int(t["posted"])
                if (start is None or posted >= start) and (end is None or posted < end):
                    kept.append(t)
            account["transactions"] = kept
        if balances_only:
            account.pop("transactions", None)
        accounts.append(account)
    out["accounts"] = accounts
    return out


class FakeSimplefin:
    def __init__(self, state: SimplefinState | None = None) -> None:
        self.state = state or SimplefinState()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:
                outer._claim(self)

            def do_GET(self) -> None:
                outer._accounts(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeSimplefin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeSimplefin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}/simplefin"

    @property
    def access_url(self) -> str:
        s = self.state
        user, password = quote(s.username, safe=""), quote(s.password, safe="")
        return f"http://{user}:{password}@127.0.0.1:{self.port}/simplefin"

    def setup_token(self, claim: str | None = None) -> str:
        """A new setup token (base64 of this server's claim URL), claimable once."""
        claim = claim or "TOKEN-" + secrets.token_hex(12)
        with self._lock:
            self.state.tokens[claim] = False
        return base64.b64encode(f"{self.root}/claim/{claim}".encode()).decode()

    @property
    def account_requests(self) -> int:
        return len(self.state.requests)

    # ------------------------------------------------------------------ endpoints
    def _send(self, h: BaseHTTPRequestHandler, status: int, body: str, ctype: str) -> None:
        data = body.encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _claim(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        prefix = "/simplefin/claim/"
        token = path[len(prefix) :] if path.startswith(prefix) else ""
        with self._lock:
            claimed = self.state.tokens.get(token)
            ok = claimed is False
            if ok:
                self.state.tokens[token] = True
            self.state.claims.append((token, 200 if ok else 403))
        if not ok:
            self._send(h, 403, "Forbidden", "text/plain")
            return
        self._send(h, 200, self.access_url, "text/plain")

    def _accounts(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        if parts.path.rstrip("/") != "/simplefin/accounts":
            self._send(h, 404, "Not Found", "text/plain")
            return
        query = parse_qs(parts.query)
        s = self.state
        with self._lock:
            s.requests.append(query)
        if s.echo:
            record = echo_record(
                "GET", h.path, dict(h.headers.items()), extra=[self.access_url, s.password]
            )
            body = {"errlist": [{"code": "gen.api", "msg": "bad request"}], "echo": record}
            self._send(h, 400, json.dumps(body), "application/json")
            return
        expected = base64.b64encode(f"{s.username}:{s.password}".encode()).decode()
        if h.headers.get("Authorization") != f"Basic {expected}":
            self._send(h, 403, "Forbidden", "text/plain")
            return
        if s.status is not None:
            message = {402: "Payment Required", 403: "Forbidden"}.get(s.status, "Error")
            self._send(h, s.status, message, "text/plain")
            return
        if s.raw_body is not None:
            self._send(h, 200, s.raw_body, "application/json")
            return
        self._send(h, 200, _dumps(filter_account_set(s.account_set, query)), "application/json")
