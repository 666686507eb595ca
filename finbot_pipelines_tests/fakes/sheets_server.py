"""A fake Google Sheets API v4 (and Google's OAuth token endpoint) on 127.0.0.1.

It speaks the real wire protocol the ``google_sheets`` provider uses:

``POST /token``
    the OAuth 2.0 JWT bearer grant (RFC 7523) of a service account: the
    ``assertion`` is an RS256 JWT signed with the service account's private key;
    the fake verifies the signature with the registered public key, the issuer,
    the audience (this endpoint's address), the expiry and the scope, then
    answers ``{access_token, expires_in, token_type}``; refusals are
    ``400 {"error": "invalid_grant", "error_description": ...}`` as Google's.
``GET /v4/spreadsheets/{id}?includeGridData=false``
    the spreadsheet's metadata (properties and the list of sheets).
``GET /v4/spreadsheets/{id}/values/{range}``
    a ValueRange of a whole sheet (``'Title'`` or ``Title``), with trailing
    empty cells and rows trimmed as Google does, honouring
    ``valueRenderOption`` (``FORMATTED_VALUE`` renders numbers as text). A cell
    holding a :class:`~decimal.Decimal` is sent as a JSON number written with
    exactly its digits (to check that the client never reads it through a float).

Every API call checks the ``Authorization: Bearer`` token and that the sheet
is shared with the token's service account. Errors use Google's format
``{"error": {"code", "message", "status"}}``. Failures can be scripted
(:meth:`FakeSheetsServer.fail_next`) and every request is logged.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from finbot_pipelines_tests.fakes.echo import echo_message, echo_record

CellValue = str | int | float | Decimal | bool | None
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SHEETS_SCOPES = (
    "https://www.googleapis.com/auth/spreadsheets.readonly",
    "https://www.googleapis.com/auth/spreadsheets",
)

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_MESSAGES = {
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute "
    "per user' of service 'sheets.googleapis.com'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}


def make_service_account(
    client_email: str = "finbot-reader@finbot-test.iam.gserviceaccount.com",
    token_uri: str = "https://oauth2.googleapis.com/token",
) -> tuple[dict[str, str], rsa.RSAPublicKey]:
    """A fresh service-account key file (as a dict) and its public key (2048-bit RSA)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    project = client_email.split("@", 1)[1].split(".", 1)[0]
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + client_email.replace("@", "%40"),
        "universe_domain": "googleapis.com",
    }
    return info, key.public_key()


def grid_from_csv(text: str) -> list[list[CellValue]]:
    """Cells of a CSV as the Sheets importer stores them: numeric text becomes numbers."""
    grid: list[list[CellValue]] = []
    for row in csv.reader(io.StringIO(text)):
        out: list[CellValue] = []
        for cell in row:
            s = cell.strip()
            if re.fullmatch(r"[+-]?\d+", s):
                out.append(int(s))
            elif re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?", s):
                out.append(float(s))
            else:
                out.append(cell)
        grid.append(out)
    return grid


def _col_letters(n: int) -> str:
    s = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        s = chr(65 + rem) + s
    return s


def _format(v: CellValue) -> CellValue:
    """FORMATTED_VALUE rendering (an unformatted number cell in an en_GB sheet)."""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int | float):
        return f"{v:g}" if isinstance(v, int) else f"{v:.15g}"
    if isinstance(v, Decimal):
        return format(v, "f")
    return v


_RAW_NUMBER_RE = re.compile(r'"\\u0000(\d+)\\u0000"')


def dumps(body: Any) -> bytes:
    """JSON of ``body``; a Decimal becomes a JSON number with exactly its digits."""
    raw: list[str] = []

    def default(o: object) -> str:
        if isinstance(o, Decimal):
            raw.append(str(o))
            return f"\u0000{len(raw) - 1}\u0000"
        raise TypeError(f"{type(o).__name__} is not JSON")

    text = json.dumps(body, default=default)
    return _RAW_NUMBER_RE.sub(lambda m: raw[int(m[1])], text).encode()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class Failure:
    status: int
    retry_after: str | None = None
    #: only requests whose path starts with this fail ("/token", "/v4/")
    path_prefix: str = "/"
    #: a raw 200 body instead of an error (for malformed payloads)
    body: bytes | None = None
    #: wait this long first; with ``status`` 0, then answer normally (for timeouts)
    delay_s: float = 0.0


@dataclass
class Spreadsheet:
    key: str
    title: str
    sheets: dict[str, list[list[CellValue]]]
    shared_with: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]


class FakeSheetsServer:
    """The fake; use as a context manager (``with FakeSheetsServer() as fake:``)."""

    def __init__(self) -> None:
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.service_accounts: dict[str, rsa.RSAPublicKey] = {}
        self.tokens: dict[str, str] = {}  # access token -> client_email
        self.requests: list[LoggedRequest] = []
        #: called with the path of every request as it arrives, before it is answered
        #: (fault tests switch the fake to a failure mode from here; it may block)
        self.on_request: Callable[[str], None] | None = None
        #: ``"token"``: the token endpoint refuses every grant, echoing the request (the
        #: signed assertion) and :attr:`echo_extra`; ``"api"``: tokens are granted, every
        #: API call answers 403 echoing its headers (the bearer token) and
        #: :attr:`echo_extra` (e.g. the service account's key); None: off
        self.echo: str | None = None
        self.echo_extra: list[str] = []
        #: the raw body and Authorization header of every request answered by an echo
        self.echoed: list[tuple[str, str]] = []
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- setup

    @property
    def url(self) -> str:
        """The API address (for the provider's ``api_url`` option)."""
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    def register_service_account(self, client_email: str, public_key: rsa.RSAPublicKey) -> None:
        self.service_accounts[client_email] = public_key

    def add_spreadsheet(
        self,
        key: str,
        sheets: Mapping[str, Sequence[Sequence[CellValue]]],
        shared_with: Sequence[str] = (),
        title: str = "Wealth",
    ) -> Spreadsheet:
        sp = Spreadsheet(
            key, title, {t: [list(r) for r in g] for t, g in sheets.items()}, set(shared_with)
        )
        self.spreadsheets[key] = sp
        return sp

    def fail_next(
        self,
        status: int,
        times: int = 1,
        retry_after: str | None = None,
        path_prefix: str = "/",
        body: bytes | None = None,
    ) -> None:
        """The next ``times`` requests under ``path_prefix`` fail with ``status``."""
        with self._lock:
            self._failures.extend(
                Failure(status, retry_after, path_prefix, body) for _ in range(times)
            )

    def delay_next(self, seconds: float, times: int = 1, path_prefix: str = "/v4/") -> None:
        """The next ``times`` requests under ``path_prefix`` answer after ``seconds``."""
        with self._lock:
            self._failures.extend(
                Failure(0, None, path_prefix, None, seconds) for _ in range(times)
            )

    def api_requests(self) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path.startswith("/v4/")]

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeSheetsServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-sheets", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def refuse_connections(self) -> None:
        """Stop listening: later connections are refused; requests already accepted are answered.

        Safe to call from ``on_request`` (a request thread); ``stop`` still cleans up."""
        if self._server is not None:
            self._server.shutdown()
            self._server.socket.close()

    def __enter__(self) -> FakeSheetsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- behaviour

    def _take_failure(self, path: str) -> Failure | None:
        with self._lock:
            for i, f in enumerate(self._failures):
                if path.startswith(f.path_prefix):
                    return self._failures.pop(i)
        return None

    def _grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        def refuse(desc: str) -> tuple[int, dict[str, Any]]:
            return 400, {"error": "invalid_grant", "error_description": desc}

        if form.get("grant_type") != [JWT_BEARER_GRANT]:
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "Invalid grant_type: " + ",".join(form.get("grant_type", [])),
            }
        assertion = (form.get("assertion") or [""])[0]
        parts = assertion.split(".")
        if len(parts) != 3:
            return refuse(
                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
            )
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except ValueError:
            return refuse("Invalid JWT: malformed")
        if header.get("alg") != "RS256":
            return refuse("Invalid JWT: alg must be RS256")
        public_key = self.service_accounts.get(str(claims.get("iss")))
        if public_key is None:
            return refuse("Invalid grant: account not found")
        try:
            public_key.verify(
                signature,
                f"{parts[0]}.{parts[1]}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return refuse("Invalid JWT Signature.")
        now = time.time()
        if claims.get("aud") != self.token_url:
            return refuse("Invalid JWT: audience does not match the token endpoint")
        if not (claims.get("iat", 0) - 300 <= now < claims.get("exp", 0)):
            return refuse(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe."
            )
        scopes = str(claims.get("scope", "")).split()
        if not any(s in SHEETS_SCOPES for s in scopes):
            return 400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope."}
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = str(claims["iss"])
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _api(
        self, path: str, query: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        m = re.fullmatch(r"/v4/spreadsheets/([^/]+)(?:/values/(.+))?", path)
        if not m:
            return _google_error(404, f"Method not found: {path}")
        token = (authorization or "").removeprefix("Bearer ").strip()
        email = (
            self.tokens.get(token)
            if authorization and authorization.startswith("Bearer ")
            else None
        )
        if email is None:
            return _google_error(401)
        key = unquote(m[1])
        sp = self.spreadsheets.get(key)
        if sp is None:
            return _google_error(404)
        if email not in sp.shared_with:
            return _google_error(403)
        if m[2] is None:
            return 200, self._metadata(sp)
        return self._values(sp, unquote(m[2]), query)

    def _metadata(self, sp: Spreadsheet) -> dict[str, Any]:
        sheets = []
        for i, (title, grid) in enumerate(sp.sheets.items()):
            cols = max((len(r) for r in grid), default=0)
            sheets.append(
                {
                    "properties": {
                        "sheetId": 0 if i == 0 else 1000 + i,
                        "title": title,
                        "index": i,
                        "sheetType": "GRID",
                        "gridProperties": {
                            "rowCount": max(1000, len(grid)),
                            "columnCount": max(26, cols),
                        },
                    }
                }
            )
        return {
            "spreadsheetId": sp.key,
            "properties": {
                "title": sp.title,
                "locale": "en_GB",
                "autoRecalc": "ON_CHANGE",
                "timeZone": "Europe/London",
            },
            "sheets": sheets,
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{sp.key}/edit",
        }

    def _values(
        self, sp: Spreadsheet, rng: str, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, Any]]:
        if rng.startswith("'"):
            m = re.fullmatch(r"'((?:[^']|'')*)'", rng)
            title = m[1].replace("''", "'") if m else None
        else:
            title = rng if "!" not in rng else None
        if title is None or title not in sp.sheets:
            return _google_error(400, f"Unable to parse range: {rng}")
        grid = sp.sheets[title]
        render = (query.get("valueRenderOption") or ["FORMATTED_VALUE"])[0]
        rows: list[list[CellValue]] = []
        for row in grid:
            out: list[CellValue] = [("" if v is None else v) for v in row]
            while out and out[-1] == "":
                out.pop()
            if render == "FORMATTED_VALUE":
                out = [_format(v) for v in out]
            rows.append(out)
        while rows and not rows[-1]:
            rows.pop()
        quoted = (
            title if re.fullmatch(r"[A-Za-z0-9_]+", title) else "'" + title.replace("'", "''") + "'"
        )
        n_rows = max(1000, len(grid))
        n_cols = max(26, max((len(r) for r in grid), default=0))
        body: dict[str, Any] = {
            "range": f"{quoted}!A1:{_col_letters(n_cols)}{n_rows}",
            "majorDimension": "ROWS",
        }
        if rows:
            body["values"] = rows
        return 200, body


def _google_error(status: int, message: str | None = None) -> tuple[int, dict[str, Any]]:
    return status, {
        "error": {
            "code": status,
            "message": message or _MESSAGES.get(status, "error"),
            "status": _STATUS.get(status, "UNKNOWN"),
        }
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSheetsServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(
        self, status: int, body: dict[str, Any] | bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        data = body if isinstance(body, bytes) else dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.fake.requests.append(LoggedRequest(method, parts.path, query))
        hook = self.fake.on_request
        if hook is not None:
            hook(parts.path)
        failure = self.fake._take_failure(parts.path)
        if failure is not None and failure.delay_s:
            time.sleep(failure.delay_s)
        if failure is not None and failure.status:
            if failure.body is not None:
                self._send(failure.status, failure.body)
                return
            status, body = _google_error(failure.status)
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
            if parts.path == "/token" and failure.status < 500 and failure.status != 429:
                body = {"error": "invalid_grant", "error_description": "refused"}
            self._send(status, body, headers)
            return
        echo = self.fake.echo
        if (echo == "token" and parts.path == "/token") or (
            echo == "api" and parts.path.startswith("/v4/")
        ):
            self._echo(method, raw.decode("utf-8", "replace"))
            return
        if method == "POST" and parts.path == "/token":
            form = parse_qs(raw.decode())
            status, body = self.fake._grant(form)
        elif method == "GET":
            status, body = self.fake._api(parts.path, query, self.headers.get("Authorization"))
        else:
            status, body = _google_error(404, f"Method not found: {method} {parts.path}")
        self._send(status, body)

    def _echo(self, method: str, raw: str) -> None:
        headers = dict(self.headers)
        extra = self.fake.echo_extra
        self.fake.echoed.append((raw, headers.get("Authorization", "")))
        record = echo_record(method, self.path, headers, raw, extra=extra)
        message = echo_message(method, self.path, headers, raw)
        if self.fake.echo == "token":
            self._send(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": f"Invalid JWT Signature. {message}",
                    "echo": record,
                },
            )
            return
        status, body = _google_error(403, f"The caller does not have permission: {message}")
        body["error"]["details"] = [record]
        self._send(status, body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@dataclass
class SheetsFixture:
    """A started fake with one service account registered (what most tests want)."""

    fake: FakeSheetsServer
    info: dict[str, str]

    @property
    def email(self) -> str:
        return self.info["client_email"]

    def credentials(self) -> dict[str, str]:
        return {"service_account_json": json.dumps(self.info)}

    def options(self, sheet_key: str, **extra: Any) -> dict[str, Any]:
        return {
            "sheet_key": sheet_key,
            "api_url": self.fake.url,
            "token_url": self.fake.token_url,
            **extra,
        }
