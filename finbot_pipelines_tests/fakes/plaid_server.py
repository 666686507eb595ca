"""A fake Plaid API on 127.0.0.1 speaking Plaid's JSON wire protocol.

The data endpoints answer the published example responses of Plaid's OpenAPI
spec (``../shared/data/api-examples/plaid_*.json`` and
``finbot_pipelines_tests/data/plaid/*.json``, read when the fake starts; tests may
edit :attr:`FakePlaid.responses` before fetching).

``/transactions/sync`` is a real change feed: :attr:`FakePlaid.sync_log` is the
Item's ordered list of changes (added, modified, removed), at first the published
example's page; tests append to it (:meth:`FakePlaid.sync_add`, ``sync_modify``,
``sync_remove``, ``sync_post``). A cursor is an opaque string naming a position in
the log; a page holds at most ``count`` changes (default 100, at most 500), folded
per transaction as Plaid does (added then modified: added, latest version; added
then removed: nothing); ``has_more`` while changes remain. A change made while a
client is paginating (it holds a ``has_more`` cursor issued before the change)
makes its next page TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION.
``/investments/transactions/get`` filters the example's transactions (newest first)
to ``start_date``..``end_date`` and pages them by ``options.offset`` /
``options.count`` (default 100, at most 500) with ``total_investment_transactions``. Every call is a
POST with a JSON body; the API keys come in the ``PLAID-CLIENT-ID`` /
``PLAID-SECRET`` headers (what plaid-python sends) or in the body
(``client_id`` / ``secret``, also accepted by Plaid). Errors use Plaid's error
object ``{error_type, error_code, error_message, display_message, request_id}``.

Usage::

    with FakePlaid() as fake:
        creds = fake.credentials()          # client_id, secret, access_token, environment
        options = {"api_url": fake.url}
        fake.fail_next("/accounts/balance/get", 400, "ITEM_LOGIN_REQUIRED", "ITEM_ERROR")
"""

from __future__ import annotations

import base64
import copy
import json
import secrets as _secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from finbot_pipelines_tests.fakes.echo import echo_message, echo_page, echo_record

EXAMPLES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "api-examples"
#: the transactions examples (see its README)
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "plaid"

BALANCE = "/accounts/balance/get"
HOLDINGS = "/investments/holdings/get"
LIABILITIES = "/liabilities/get"
LINK_TOKEN_CREATE = "/link/token/create"
PUBLIC_TOKEN_EXCHANGE = "/item/public_token/exchange"
SANDBOX_PUBLIC_TOKEN_CREATE = "/sandbox/public_token/create"
SYNC = "/transactions/sync"
INVESTMENT_TRANSACTIONS = "/investments/transactions/get"

DATA_FILES = {
    BALANCE: "plaid_accounts_balance_get.json",
    HOLDINGS: "plaid_investments_holdings_get.json",
    LIABILITIES: "plaid_liabilities_get.json",
}
TRANSACTION_FILES = {
    SYNC: "transactions_sync.json",
    INVESTMENT_TRANSACTIONS: "investments_transactions_get.json",
}
ITEM_ENDPOINTS = (*DATA_FILES, *TRANSACTION_FILES)
ENDPOINTS = (*ITEM_ENDPOINTS, LINK_TOKEN_CREATE, PUBLIC_TOKEN_EXCHANGE, SANDBOX_PUBLIC_TOKEN_CREATE)
PRODUCT_ENDPOINTS = {
    "investments": (HOLDINGS, INVESTMENT_TRANSACTIONS),
    "liabilities": (LIABILITIES,),
    "transactions": (SYNC,),
}
#: Plaid's page sizes of both transactions endpoints
DEFAULT_COUNT, MAX_COUNT = 100, 500
SYNC_MUTATION = "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"

DEFAULT_CLIENT_ID = "5f0c1d2e3a4b5c6d7e8f9a0b"
DEFAULT_SECRET = "fake-plaid-secret-7c1e9b2a44d0f3"
DEFAULT_ACCESS_TOKEN = "access-sandbox-3b1f0f6e-6a0e-4c1b-9f55-1d2e3c4b5a69"


def load_examples() -> dict[str, dict[str, Any]]:
    """The example answers of the data endpoints, freshly parsed; the investment
    transactions' accounts renamed to the other examples' ids (see data/plaid/README)."""
    out = {ep: json.loads((EXAMPLES_DIR / name).read_text()) for ep, name in DATA_FILES.items()}
    out.update(
        {ep: json.loads((DATA_DIR / name).read_text()) for ep, name in TRANSACTION_FILES.items()}
    )
    ids = {a["name"]: a["account_id"] for ep in DATA_FILES for a in out[ep]["accounts"]}
    inv = out[INVESTMENT_TRANSACTIONS]
    renamed = {a["account_id"]: ids[a["name"]] for a in inv["accounts"] if a["name"] in ids}
    for entry in (*inv["accounts"], *inv["investment_transactions"]):
        entry["account_id"] = renamed.get(entry["account_id"], entry["account_id"])
    return out


def example_changes(page: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A sync answer's page as changes of the log: ``(kind, transaction)``, kind one of
    added, modified, removed (a removed one is ``{account_id, transaction_id}``)."""
    return [
        (kind, copy.deepcopy(t)) for kind in ("added", "modified", "removed") for t in page[kind]
    ]


@dataclass(frozen=True)
class _Cursor:
    position: int
    generation: int
    has_more: bool


def _request_id() -> str:
    return _secrets.token_urlsafe(12)[:15]


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    raw: str


@dataclass
class _Failure:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)


JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence the test output
        return None

    def do_GET(self) -> None:
        self._send(404, self.server.fake.error_body("INVALID_REQUEST", "NOT_FOUND", "not found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        status, body, headers = self.server.fake.handle(self.path, dict(self.headers), raw)
        self._send(status, body, headers)

    def _send(
        self, status: int, body: dict[str, Any] | str, headers: Mapping[str, str] | None = None
    ) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        extra = dict(headers or {})
        content_type = extra.pop("Content-Type", JSON_CONTENT_TYPE)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakePlaid


class FakePlaid:
    """A real HTTP server in a thread; use as a context manager, then ``.url``."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        secret: str = DEFAULT_SECRET,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        responses: Mapping[str, dict[str, Any]] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.client_id = client_id
        self.secret = secret
        self.access_token = access_token
        #: answers of the data endpoints (edit freely before a fetch)
        self.responses: dict[str, dict[str, Any]] = (
            copy.deepcopy(dict(responses)) if responses is not None else load_examples()
        )
        #: seconds every answer waits (to provoke client timeouts)
        self.delay_s = delay_s
        #: called with the path of every request as it arrives, before it is answered
        #: (fault tests switch the fake to a failure mode from here; it may block)
        self.on_request: Callable[[str], None] | None = None
        #: ``"json"``: every call answers a Plaid error echoing the request (headers, body,
        #: the secret URL-encoded); ``"html"``: a gateway's 502 page echoing it; None: off
        self.echo: str | None = None
        self.requests: list[RecordedRequest] = []
        self.access_tokens: set[str] = {access_token}
        self.public_tokens: set[str] = set()
        self.link_tokens: list[str] = []
        #: the Item's transaction changes, in order (see the module)
        self.sync_log: list[tuple[str, dict[str, Any]]] = example_changes(self.responses[SYNC])
        #: what every sync answer says (NOT_READY: nothing yet, an empty next_cursor)
        self.transactions_update_status = "HISTORICAL_UPDATE_COMPLETE"
        self._generation = 0
        self._cursors: dict[str, _Cursor] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._missing: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakePlaid:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-plaid", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def refuse_connections(self) -> None:
        """Stop listening: later connections are refused; requests already accepted are answered.

        Safe to call from ``on_request`` (a request thread); ``stop`` still cleans up."""
        if self._server is not None:
            self._server.shutdown()
            self._server.socket.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakePlaid is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def credentials(self, environment: str = "sandbox") -> dict[str, str]:
        """The vault entry a linked account pointing at this fake would hold."""
        return {
            "client_id": self.client_id,
            "secret": self.secret,
            "access_token": self.access_token,
            "environment": environment,
        }

    # ------------------------------------------------------------------ scenario knobs

    def fail_next(
        self,
        endpoint: str,
        status: int,
        error_code: str,
        error_type: str,
        headers: Mapping[str, str] | None = None,
        *,
        times: int = 1,
        message: str | None = None,
    ) -> None:
        """The next ``times`` calls of ``endpoint`` answer this Plaid error."""
        body = self.error_body(error_type, error_code, message or f"simulated {error_code}")
        with self._lock:
            self._failures.setdefault(endpoint, []).extend(
                _Failure(status, body, dict(headers or {})) for _ in range(times)
            )

    def malformed(
        self,
        endpoint: str,
        body: dict[str, Any] | str,
        *,
        status: int = 200,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next ``times`` calls of ``endpoint`` answer ``body`` (a dict or raw text) with
        ``status`` (a proxy's error page too: pass ``headers={"Content-Type": "text/html"}``)."""
        with self._lock:
            self._failures.setdefault(endpoint, []).extend(
                _Failure(status, copy.deepcopy(body), dict(headers or {})) for _ in range(times)
            )

    def account(self, endpoint: str, account_id: str) -> dict[str, Any]:
        """The account ``account_id`` of the answer of ``endpoint`` (to edit it in place)."""
        for acc in self.responses[endpoint]["accounts"]:
            if acc["account_id"] == account_id:
                return acc
        raise KeyError(account_id)

    def holdings_of(self, account_id: str) -> list[dict[str, Any]]:
        """The holdings of ``account_id`` in the holdings answer (to edit them in place)."""
        return [h for h in self.responses[HOLDINGS]["holdings"] if h["account_id"] == account_id]

    def products_missing(self, *products: str, error_code: str = "PRODUCTS_NOT_SUPPORTED") -> None:
        """``investments`` / ``liabilities`` / ``transactions`` are not enabled for the Item
        (until reset)."""
        with self._lock:
            for p in products:
                for endpoint in PRODUCT_ENDPOINTS[p]:
                    self._missing[endpoint] = error_code

    # ------------------------------------------------------------------ the change feed

    def transaction(self, transaction_id: str, **changes: Any) -> dict[str, Any]:
        """A transaction like the published example's added one, with its own id and
        ``changes`` (``amount``, ``date``, ``pending``...)."""
        t = copy.deepcopy(self.responses[SYNC]["added"][0])
        t.update(transaction_id=transaction_id, pending_transaction_id=None, **changes)
        return t

    def _change(self, *changes: tuple[str, dict[str, Any]]) -> None:
        with self._lock:
            self.sync_log.extend((kind, copy.deepcopy(t)) for kind, t in changes)
            self._generation += 1

    def sync_add(self, *transactions: dict[str, Any]) -> None:
        self._change(*(("added", t) for t in transactions))

    def sync_modify(self, *transactions: dict[str, Any]) -> None:
        self._change(*(("modified", t) for t in transactions))

    def sync_remove(self, *transaction_ids: str) -> None:
        self._change(*(("removed", self._removal(tid)) for tid in transaction_ids))

    def sync_post(self, pending_id: str, posted: dict[str, Any]) -> None:
        """The pending ``pending_id`` posts as ``posted``: Plaid removes the pending one and
        adds the posted one naming it in ``pending_transaction_id``."""
        posted = {**posted, "pending": False, "pending_transaction_id": pending_id}
        self._change(("removed", self._removal(pending_id)), ("added", posted))

    def _removal(self, transaction_id: str) -> dict[str, Any]:
        for kind, t in reversed(self.sync_log):
            if t["transaction_id"] == transaction_id and kind != "removed":
                return {"account_id": t["account_id"], "transaction_id": transaction_id}
        raise KeyError(transaction_id)

    def _new_cursor(self, position: int, has_more: bool) -> str:
        cursor = base64.b64encode(_secrets.token_bytes(60)).decode()
        self._cursors[cursor] = _Cursor(position, self._generation, has_more)
        return cursor

    def issue_public_token(self) -> str:
        """What Plaid Link hands the browser after a successful login (for link tests)."""
        token = f"public-sandbox-{_secrets.token_hex(16)}"
        with self._lock:
            self.public_tokens.add(token)
        return token

    def calls(self, endpoint: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == endpoint)

    # ------------------------------------------------------------------ protocol

    @staticmethod
    def error_body(error_type: str, error_code: str, message: str) -> dict[str, Any]:
        return {
            "error_type": error_type,
            "error_code": error_code,
            "error_code_reason": None,
            "error_message": message,
            "display_message": None,
            "request_id": _request_id(),
            "causes": [],
            "status": None,
            "documentation_url": f"https://plaid.com/docs/errors/#{error_code.lower()}",
            "suggested_action": None,
        }

    def _error(
        self, status: int, error_type: str, error_code: str, message: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        body = self.error_body(error_type, error_code, message)
        body["status"] = status
        return status, body, {}

    def handle(
        self, path: str, headers: dict[str, str], raw: str
    ) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(RecordedRequest(path, headers, body, raw))
        hook = self.on_request
        if hook is not None:
            hook(path)
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        if self.echo is not None:
            return self._echo(path, headers, raw)
        if path not in ENDPOINTS:
            return self._error(404, "INVALID_REQUEST", "NOT_FOUND", f"unknown endpoint {path}")
        if not isinstance(body, dict):
            return self._error(
                400, "INVALID_REQUEST", "INVALID_BODY", "body could not be parsed as JSON"
            )
        lower = {k.lower(): v for k, v in headers.items()}
        client_id = lower.get("plaid-client-id") or body.get("client_id")
        secret = lower.get("plaid-secret") or body.get("secret")
        if not client_id or not secret:
            return self._error(
                400,
                "INVALID_REQUEST",
                "MISSING_FIELDS",
                "the following required fields are missing: client_id, secret",
            )
        if client_id != self.client_id or secret != self.secret:
            return self._error(
                400, "INVALID_INPUT", "INVALID_API_KEYS", "invalid client_id or secret provided"
            )
        with self._lock:
            queue = self._failures.get(path)
            failure = queue.pop(0) if queue else None
            missing = self._missing.get(path)
        if failure is not None:
            return failure.status, failure.body, failure.headers
        if path in ITEM_ENDPOINTS:
            token = body.get("access_token")
            if not token:
                return self._error(
                    400,
                    "INVALID_REQUEST",
                    "MISSING_FIELDS",
                    "the following required fields are missing: access_token",
                )
            if token not in self.access_tokens:
                return self._error(
                    400,
                    "INVALID_INPUT",
                    "INVALID_ACCESS_TOKEN",
                    "provided access token is in an invalid format or does not exist",
                )
            if missing:
                return self._error(
                    400,
                    "ITEM_ERROR",
                    missing,
                    "the requested product is not supported by this Item",
                )
            if path == SYNC:
                return self._sync(body)
            if path == INVESTMENT_TRANSACTIONS:
                return self._investment_transactions(body)
            return 200, copy.deepcopy(self.responses[path]), {}
        if path == LINK_TOKEN_CREATE:
            return self._link_token_create(body)
        if path == SANDBOX_PUBLIC_TOKEN_CREATE:
            return self._sandbox_public_token_create(body)
        return self._public_token_exchange(body)

    def _count(self, value: object) -> int | None:
        if value is None:
            return DEFAULT_COUNT
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
            return None
        return value

    def _sync(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        count = self._count(body.get("count"))
        if count is None:
            return self._error(
                400, "INVALID_REQUEST", "INVALID_FIELD", f"count must be 1 to {MAX_COUNT}"
            )
        cursor = body.get("cursor") or ""
        answer: dict[str, Any] = {
            "accounts": copy.deepcopy(self.responses[BALANCE]["accounts"]),
            "added": [],
            "modified": [],
            "removed": [],
            "next_cursor": "",
            "has_more": False,
            "request_id": _request_id(),
            "transactions_update_status": self.transactions_update_status,
        }
        with self._lock:
            if self.transactions_update_status == "NOT_READY":
                return 200, answer, {}
            if cursor:
                state = self._cursors.get(str(cursor))
                if state is None:
                    return self._error(
                        400, "INVALID_REQUEST", "INVALID_FIELD", "cursor is not valid"
                    )
                if state.has_more and state.generation != self._generation:
                    return self._error(
                        400,
                        "TRANSACTIONS_ERROR",
                        SYNC_MUTATION,
                        "Underlying transaction data changed since last page was fetched. "
                        "Please restart pagination from last update.",
                    )
                start = state.position
            else:
                start = 0
            changes = self.sync_log[start : start + count]
            end = start + len(changes)
            has_more = end < len(self.sync_log)
            answer["next_cursor"] = self._new_cursor(end, has_more)
        answer["has_more"] = has_more
        added: dict[str, dict[str, Any]] = {}
        modified: dict[str, dict[str, Any]] = {}
        removed: dict[str, dict[str, Any]] = {}
        for kind, t in changes:  # folded per transaction within the page
            tid = t["transaction_id"]
            if kind == "added":
                removed.pop(tid, None)
                added[tid] = t
            elif kind == "modified":
                (added if tid in added else modified)[tid] = t
            elif tid in added:
                del added[tid]
            else:
                modified.pop(tid, None)
                removed[tid] = t
        answer["added"] = copy.deepcopy(list(added.values()))
        answer["modified"] = copy.deepcopy(list(modified.values()))
        answer["removed"] = copy.deepcopy(list(removed.values()))
        return 200, answer, {}

    def _investment_transactions(
        self, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            start = date.fromisoformat(str(body["start_date"]))
            end = date.fromisoformat(str(body["end_date"]))
        except KeyError:
            return self._error(
                400,
                "INVALID_REQUEST",
                "MISSING_FIELDS",
                "the following required fields are missing: start_date, end_date",
            )
        except ValueError:
            return self._error(400, "INVALID_REQUEST", "INVALID_FIELD", "dates must be YYYY-MM-DD")
        if end < start:
            return self._error(
                400, "INVALID_INPUT", "INVALID_FIELD", "end_date must be on or after start_date"
            )
        options = body.get("options") or {}
        count = self._count(options.get("count"))
        offset = options.get("offset", 0)
        if count is None or not isinstance(offset, int) or offset < 0:
            return self._error(
                400,
                "INVALID_REQUEST",
                "INVALID_FIELD",
                f"options.count must be 1 to {MAX_COUNT}, options.offset >= 0",
            )
        answer = copy.deepcopy(self.responses[INVESTMENT_TRANSACTIONS])
        window = [
            t
            for t in answer["investment_transactions"]
            if start <= date.fromisoformat(t["date"]) <= end
        ]
        window.sort(key=lambda t: t["date"], reverse=True)  # stable: newest first
        answer["investment_transactions"] = window[offset : offset + count]
        answer["total_investment_transactions"] = len(window)
        answer["request_id"] = _request_id()
        return 200, answer, {}

    def _echo(
        self, path: str, headers: dict[str, str], raw: str
    ) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
        """An answer quoting the request back (see :attr:`echo`)."""
        if self.echo == "html":
            page = echo_page("POST", path, headers, raw, extra=[self.secret])
            return 502, page, {"Content-Type": "text/html; charset=utf-8"}
        body = self.error_body(
            "INVALID_REQUEST", "INVALID_FIELD", echo_message("POST", path, headers, raw)
        )
        body["display_message"] = f"request {raw} with secret {quote(self.secret, safe='')}"
        body["status"] = 400
        body["echo"] = echo_record("POST", path, headers, raw, extra=[self.secret])
        return 400, body, {}

    def _link_token_create(
        self, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        user = body.get("user")
        missing = [k for k in ("client_name", "language", "country_codes") if not body.get(k)]
        if not isinstance(user, dict) or not user.get("client_user_id"):
            missing.append("user.client_user_id")
        if missing:
            return self._error(
                400,
                "INVALID_REQUEST",
                "MISSING_FIELDS",
                f"the following required fields are missing: {', '.join(missing)}",
            )
        if not any(body.get(k) for k in ("products", "optional_products")):
            return self._error(400, "INVALID_REQUEST", "INVALID_FIELD", "products must be set")
        token = f"link-sandbox-{_secrets.token_hex(16)}"
        with self._lock:
            self.link_tokens.append(token)
        expiration = (datetime.now(UTC) + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, {"link_token": token, "expiration": expiration, "request_id": _request_id()}, {}

    def _sandbox_public_token_create(
        self, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        institution = body.get("institution_id")
        products = body.get("initial_products")
        if not institution or not products:
            return self._error(
                400,
                "INVALID_REQUEST",
                "MISSING_FIELDS",
                "the following required fields are missing: institution_id, initial_products",
            )
        if not str(institution).startswith("ins_"):
            return self._error(
                400, "INVALID_INPUT", "INVALID_INSTITUTION", "invalid institution_id provided"
            )
        return 200, {"public_token": self.issue_public_token(), "request_id": _request_id()}, {}

    def _public_token_exchange(
        self, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        token = body.get("public_token")
        with self._lock:
            known = token in self.public_tokens
            if known:
                self.public_tokens.discard(str(token))  # single use, like Plaid's
        if not known:
            return self._error(
                400,
                "INVALID_INPUT",
                "INVALID_PUBLIC_TOKEN",
                "provided public token is expired or invalid",
            )
        access_token = f"access-sandbox-{_secrets.token_hex(16)}"
        with self._lock:
            self.access_tokens.add(access_token)
        return (
            200,
            {
                "access_token": access_token,
                "item_id": _secrets.token_urlsafe(27),
                "request_id": _request_id(),
            },
            {},
        )
