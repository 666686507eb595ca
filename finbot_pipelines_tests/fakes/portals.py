"""Local copies of the scraped portals (Crédit Agricole, Aegon Targetplan) on 127.0.0.1.

The pages live in ``portal_pages/``; this module serves them with the state a
real portal keeps: session cookies, the login POSTs, wrong credentials, a
keypad shuffled at every load (positions are decoded server-side with the
layout handed to that page), locked accounts, a maintenance page, slow pages,
HTTP error statuses (every request, or only the requests of one path: a keypad,
an XHR login), and a "changed layout" switch that renames the elements a
scraper relies on.

Usage::

    with FakePortals() as portals:
        portals.add_ca_user(CAUser(region="ca-paris", account_number="...", ...))
        portals.url  # http://127.0.0.1:<port>, the providers' base_url

Crédit Agricole pages: ``/<region>/particulier/acceder-a-mes-comptes.html`` (GET,
POST), ``.../acceder-a-mes-comptes.keypad.json``, ``.../operations/synthese.html``.
Aegon pages: ``/targetplanUI/login`` (GET, POST JSON), ``/targetplanUI/investments``,
``/targetplanUI/edit-password``.
"""

from __future__ import annotations

import base64
import html
import json
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

from finbot_pipelines_tests.fakes.echo import echo_record

PAGES_DIR = Path(__file__).resolve().parent / "portal_pages"
CA_COOKIE = "JSESSIONID"
AEGON_COOKIE = "TPSESSIONID"
KEYPAD_CELLS = 16  # a 4 x 4 grid: the ten digits and six blank keys

#: ``change_layout`` switches: name -> replacements applied to every page and script served
LAYOUT_CHANGES: dict[str, tuple[tuple[str, str], ...]] = {
    # the identifiant field was renamed
    "ca_login_form": (('id="Login-account"', 'id="Login-identifier"'),),
    # the keypad keys got a new class
    "ca_keypad": (('"Login-key"', '"Keypad-key"'), ('"Login-key ', '"Keypad-key ')),
    # the balances moved to a new element
    "ca_balance": (('class="Synthesis-amount"', 'class="Synthesis-balance"'),),
    # the login button was renamed (the password is already typed when it is looked for)
    "aegon_submit": (('id="submitButtonAjaxId"', 'id="loginSubmit"'),),
    # the card values moved to a new element
    "aegon_value": (('class="currency-hero"', 'class="currency-display"'),),
}


@dataclass
class CAAccount:
    family: str  # COMPTES | EPARGNE | PLACEMENTS | CREDITS (or anything, to test)
    label: str
    number: str
    amount: str  # exactly as displayed, e.g. "1\u00a0234,56\u00a0€"


CA_FAMILY_TITLES = {
    "COMPTES": "Mes comptes",
    "EPARGNE": "Mon épargne",
    "PLACEMENTS": "Mes placements",
    "CREDITS": "Mes crédits",
}


@dataclass
class CAUser:
    region: str  # e.g. "ca-paris"
    account_number: str
    password: str  # digits
    name: str = "M. DUPONT"
    accounts: list[CAAccount] = field(default_factory=list)  # the first is the main account
    strong_auth: bool = False  # the login is held for a strong authentication
    locked: bool = False  # the online access is blocked: every login is refused


@dataclass
class AegonProduct:
    name: str
    policy: str
    value: str  # as displayed, e.g. "£12,345.67"


@dataclass
class AegonUser:
    username: str
    password: str
    name: str = "Jane Smith"
    products: list[AegonProduct] = field(default_factory=list)
    must_change_password: bool = False
    locked: bool = False  # too many failed attempts: every login is refused


@dataclass
class LoginAttempt:
    portal: str
    username: str
    password: str  # as decoded by the server (for the keypad: positions -> digits)
    ok: bool
    keypad: list[str] | None = None  # the layout the positions were decoded with


@dataclass
class _Session:
    ca_user: CAUser | None = None
    keypads: dict[str, list[str]] = field(default_factory=dict)
    aegon_user: AegonUser | None = None


class FakePortals:
    """A threaded HTTP server on 127.0.0.1 serving both portals."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.ca_users: dict[tuple[str, str], CAUser] = {}
        self.aegon_users: dict[str, AegonUser] = {}
        self.attempts: list[LoginAttempt] = []
        self.keypad_layouts: list[list[str]] = []  # every layout handed out
        self.forced_keypads: list[list[str]] = []  # handed out first, in order
        self.changed_layout: set[str] = set()
        self.slow_paths: dict[str, float] = {}  # path substring -> seconds to wait
        self.maintenance = False
        #: when set, every request is answered with this HTTP status (and ``error_headers``)
        self.error_status: int | None = None
        self.error_headers: dict[str, str] = {}
        #: when set, ``error_status`` answers only the requests whose path contains it
        self.error_path: str | None = None
        #: when set, ``error_status`` answers only the requests of this method (GET, POST)
        self.error_method: str | None = None
        #: when set, every Aegon login is refused with a message echoing the login form
        #: back (the username and password plain, URL-encoded, in base64): a careless portal
        self.echo_login = False
        #: every request as it arrived: (time.monotonic(), method, path)
        self.requests: list[tuple[float, str, str]] = []
        self.sessions: dict[str, _Session] = {}
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakePortals:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.portals = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakePortals:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- state

    def add_ca_user(self, user: CAUser) -> CAUser:
        self.ca_users[(user.region, user.account_number)] = user
        return user

    def add_aegon_user(self, user: AegonUser) -> AegonUser:
        self.aegon_users[user.username] = user
        return user

    def change_layout(self, *names: str) -> None:
        unknown = set(names) - set(LAYOUT_CHANGES)
        assert not unknown, f"unknown layout changes {unknown}"
        self.changed_layout.update(names)

    def reset(self) -> None:
        """Back to normal behaviour (users are kept; history and sessions are cleared)."""
        with self.lock:
            self.attempts.clear()
            self.keypad_layouts.clear()
            self.forced_keypads.clear()
            self.changed_layout.clear()
            self.slow_paths.clear()
            self.maintenance = False
            self.error_status = None
            self.error_headers = {}
            self.error_path = None
            self.error_method = None
            self.requests.clear()
            self.sessions.clear()

    def new_keypad(self) -> list[str]:
        with self.lock:
            if self.forced_keypads:
                layout = list(self.forced_keypads.pop(0))
            else:
                layout = [*"0123456789", *([""] * (KEYPAD_CELLS - 10))]
                self.rng.shuffle(layout)
            self.keypad_layouts.append(layout)
            return layout

    def render(self, relpath: str, values: dict[str, str] | None = None) -> str:
        """A page of ``portal_pages`` with ``{{KEY}}`` replaced (values are inserted as is)."""
        text = (PAGES_DIR / relpath).read_text(encoding="utf-8")
        for key, value in (values or {}).items():
            text = text.replace("{{" + key + "}}", value)
        return text

    def apply_layout_changes(self, text: str) -> str:
        for name in sorted(self.changed_layout):
            for old, new in LAYOUT_CHANGES[name]:
                text = text.replace(old, new)
        return text


def _region_name(region: str) -> str:
    return region.removeprefix("ca-").replace("-", " ").title()


def _esc(value: str) -> str:
    return html.escape(value, quote=True)


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakePortal/1.0"
    protocol_version = "HTTP/1.1"

    @property
    def portals(self) -> FakePortals:
        p: FakePortals = self.server.portals  # type: ignore[attr-defined]
        return p

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # -- plumbing

    def _cookie(self, name: str) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        jar = SimpleCookie()
        jar.load(raw)
        morsel = jar.get(name)
        return morsel.value if morsel else None

    def _session(self, cookie: str) -> tuple[str, _Session, bool]:
        sid = self._cookie(cookie)
        with self.portals.lock:
            if sid and sid in self.portals.sessions:
                return sid, self.portals.sessions[sid], False
            sid = secrets.token_hex(16)
            session = _Session()
            self.portals.sessions[sid] = session
            return sid, session, True

    def _send(
        self,
        status: int,
        body: str | bytes,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(body, str):
            body = self.portals.apply_layout_changes(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str, headers: dict[str, str] | None = None) -> None:
        self._send(HTTPStatus.FOUND, "", headers={"Location": location, **(headers or {})})

    def _set_cookie(self, name: str, sid: str) -> dict[str, str]:
        return {"Set-Cookie": f"{name}={sid}; Path=/; HttpOnly; SameSite=Lax"}

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _maybe_slow(self, path: str) -> None:
        for fragment, seconds in list(self.portals.slow_paths.items()):
            if fragment in path:
                time.sleep(seconds)

    def _arrived(self, method: str, path: str) -> bool:
        """Log the request; answer it with ``error_status`` when set (then return True)."""
        with self.portals.lock:
            self.portals.requests.append((time.monotonic(), method, path))
            status, headers = self.portals.error_status, dict(self.portals.error_headers)
            only_path, only_method = self.portals.error_path, self.portals.error_method
        if (
            status is None
            or (only_path is not None and only_path not in path)
            or (only_method is not None and only_method != method)
        ):
            return False
        if method == "POST":
            self._body()
        page = f"<html><body><h1>{status} {_esc(HTTPStatus(status).phrase)}</h1></body></html>"
        self._send(status, page, headers=headers)
        return True

    # -- dispatch

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if self._arrived("GET", path):
            return
        self._maybe_slow(path)
        if path.startswith("/static/"):
            return self._static(path)
        if path.startswith("/targetplanUI/"):
            return self._aegon_get(path)
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[1] == "particulier":
            return self._ca_get(parts[0], "/".join(parts[2:]))
        self._send(HTTPStatus.NOT_FOUND, "<h1>Page introuvable</h1>")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if self._arrived("POST", path):
            return
        self._maybe_slow(path)
        if path == "/targetplanUI/login":
            return self._aegon_login()
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[1:] == ["particulier", "acceder-a-mes-comptes.html"]:
            return self._ca_login(parts[0])
        self._send(HTTPStatus.NOT_FOUND, "<h1>Not found</h1>")

    def _static(self, path: str) -> None:
        rel = path.removeprefix("/static/")
        target = (PAGES_DIR / rel).resolve()
        if PAGES_DIR not in target.parents or not target.is_file():
            return self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
        ctype = {
            ".css": "text/css; charset=utf-8",
            ".js": "text/javascript; charset=utf-8",
        }.get(target.suffix, "application/octet-stream")
        self._send(HTTPStatus.OK, target.read_text(encoding="utf-8"), ctype)

    # -- Crédit Agricole

    def _ca_known_region(self, region: str) -> bool:
        return any(r == region for r, _ in self.portals.ca_users)

    def _ca_login_page(
        self, region: str, error: str = "", headers: dict[str, str] | None = None
    ) -> None:
        block = (
            f'<div id="erreur-keypad" class="Login-error" role="alert">{_esc(error)}</div>'
            if error
            else ""
        )
        page = self.portals.render(
            "credit_agricole/acceder-a-mes-comptes.html",
            {"REGION": region, "REGION_NAME": _esc(_region_name(region)), "ERROR": block},
        )
        self._send(HTTPStatus.OK, page, headers=headers)

    def _ca_get(self, region: str, rest: str) -> None:
        if not self._ca_known_region(region):
            return self._send(HTTPStatus.NOT_FOUND, "<h1>Page introuvable</h1>")
        if self.portals.maintenance:
            return self._send(
                HTTPStatus.OK, self.portals.render("credit_agricole/maintenance.html")
            )
        sid, session, new = self._session(CA_COOKIE)
        headers = self._set_cookie(CA_COOKIE, sid) if new else {}
        if rest == "acceder-a-mes-comptes.html":
            return self._ca_login_page(region, headers=headers)
        if rest == "acceder-a-mes-comptes.keypad.json":
            layout = self.portals.new_keypad()
            keypad_id = secrets.token_hex(8)
            with self.portals.lock:
                session.keypads[keypad_id] = layout
            body = json.dumps({"keypadId": keypad_id, "keys": layout})
            return self._send(HTTPStatus.OK, body, "application/json", headers)
        if rest == "authentification-forte.html":
            page = self.portals.render(
                "credit_agricole/authentification-forte.html",
                {"REGION": region, "REGION_NAME": _esc(_region_name(region))},
            )
            return self._send(HTTPStatus.OK, page, headers=headers)
        if rest == "operations/synthese.html":
            user = session.ca_user
            if user is None or user.region != region:
                return self._redirect(f"/{region}/particulier/acceder-a-mes-comptes.html", headers)
            if user.strong_auth:
                return self._redirect(f"/{region}/particulier/authentification-forte.html", headers)
            return self._send(HTTPStatus.OK, self._ca_synthesis(user), headers=headers)
        self._send(HTTPStatus.NOT_FOUND, "<h1>Page introuvable</h1>", headers=headers)

    def _ca_login(self, region: str) -> None:
        if not self._ca_known_region(region):
            return self._send(HTTPStatus.NOT_FOUND, "<h1>Page introuvable</h1>")
        sid, session, new = self._session(CA_COOKIE)
        headers = self._set_cookie(CA_COOKIE, sid) if new else {}
        form = parse_qs(self._body().decode("utf-8"), keep_blank_values=True)
        username = (form.get("j_username") or [""])[0].strip()
        positions = (form.get("j_password") or [""])[0]
        keypad_id = (form.get("keypadId") or [""])[0]
        with self.portals.lock:
            layout = session.keypads.pop(keypad_id, None)
        decoded = ""
        if layout is not None and positions:
            try:
                decoded = "".join(layout[int(p)] for p in positions.split(","))
            except (ValueError, IndexError):
                decoded = ""
        user = self.portals.ca_users.get((region, username))
        ok = user is not None and layout is not None and decoded == user.password
        if ok and user is not None and user.locked:
            self.portals.attempts.append(
                LoginAttempt("credit_agricole", username, decoded, False, layout)
            )
            # the portal names the blocked identifiant (a scraper must mask it)
            return self._ca_login_page(
                region,
                f"L'accès à la banque en ligne de l'identifiant {username} est bloqué. "
                "Contactez votre conseiller pour le débloquer.",
                headers,
            )
        self.portals.attempts.append(LoginAttempt("credit_agricole", username, decoded, ok, layout))
        if not ok:
            return self._ca_login_page(
                region,
                "Votre identifiant ou votre code personnel est incorrect. "
                "Veuillez vérifier votre saisie.",
                headers,
            )
        session.ca_user = user
        self._redirect(f"/{region}/particulier/operations/synthese.html", headers)

    def _ca_synthesis(self, user: CAUser) -> str:
        sections: list[str] = []
        if user.accounts:
            main = user.accounts[0]
            sections.append(
                self.portals.render(
                    "credit_agricole/synthese-main-account.html",
                    {
                        "FAMILY": _esc(main.family),
                        "TITLE": _esc(CA_FAMILY_TITLES.get(main.family, main.family.title())),
                        "LABEL": _esc(main.label),
                        "NUMBER": _esc(main.number),
                        "AMOUNT": _esc(main.amount),
                    },
                )
            )
        families: dict[str, list[CAAccount]] = {}
        for acc in user.accounts[1:]:
            families.setdefault(acc.family, []).append(acc)
        for family, accounts in families.items():
            products = "".join(
                self.portals.render(
                    "credit_agricole/synthese-product.html",
                    {"LABEL": _esc(a.label), "NUMBER": _esc(a.number), "AMOUNT": _esc(a.amount)},
                )
                for a in accounts
            )
            sections.append(
                self.portals.render(
                    "credit_agricole/synthese-family.html",
                    {
                        "FAMILY": _esc(family),
                        "TITLE": _esc(CA_FAMILY_TITLES.get(family, family.title())),
                        "PRODUCTS": products,
                    },
                )
            )
        return self.portals.render(
            "credit_agricole/synthese.html",
            {
                "REGION": user.region,
                "REGION_NAME": _esc(_region_name(user.region)),
                "USER": _esc(user.name),
                "SECTIONS": "".join(sections),
            },
        )

    # -- Aegon Targetplan

    def _aegon_get(self, path: str) -> None:
        sid, session, new = self._session(AEGON_COOKIE)
        headers = self._set_cookie(AEGON_COOKIE, sid) if new else {}
        if path == "/targetplanUI/login":
            return self._send(
                HTTPStatus.OK, self.portals.render("aegon_targetplan/login.html"), headers=headers
            )
        user = session.aegon_user
        if user is None:
            return self._redirect("/targetplanUI/login", headers)
        if path == "/targetplanUI/edit-password":
            return self._send(
                HTTPStatus.OK,
                self.portals.render("aegon_targetplan/edit-password.html"),
                headers=headers,
            )
        if path == "/targetplanUI/investments":
            if user.must_change_password:
                return self._redirect("/targetplanUI/edit-password", headers)
            cards = "".join(
                self.portals.render(
                    "aegon_targetplan/investments-card.html",
                    {"NAME": _esc(p.name), "VALUE": _esc(p.value), "POLICY": _esc(p.policy)},
                )
                for p in user.products
            )
            page = self.portals.render(
                "aegon_targetplan/investments.html", {"USER": _esc(user.name), "CARDS": cards}
            )
            return self._send(HTTPStatus.OK, page, headers=headers)
        self._send(HTTPStatus.NOT_FOUND, "<h1>Page not found</h1>", headers=headers)

    def _aegon_login(self) -> None:
        sid, session, new = self._session(AEGON_COOKIE)
        headers = self._set_cookie(AEGON_COOKIE, sid) if new else {}
        try:
            data = json.loads(self._body() or b"{}")
        except ValueError:
            data = {}
        username = str(data.get("username", ""))
        password = str(data.get("password", ""))
        user = self.portals.aegon_users.get(username)
        ok = user is not None and user.password == password
        if self.portals.echo_login:
            self.portals.attempts.append(
                LoginAttempt("aegon_targetplan", username, password, False)
            )
            raw = json.dumps(data)
            basic = base64.b64encode(f"{username}:{password}".encode()).decode()
            message = (
                f"Login failed for {username} / {password}: the form "
                f"username={quote_plus(username)}&password={quote_plus(password)} "
                f"(Basic {basic}) was refused"
            )
            body = json.dumps({"error": message, "echo": echo_record("POST", "/login", {}, raw)})
            return self._send(HTTPStatus.UNAUTHORIZED, body, "application/json", headers)
        if ok and user is not None and user.locked:
            self.portals.attempts.append(
                LoginAttempt("aegon_targetplan", username, password, False)
            )
            body = json.dumps(
                {
                    "error": "Your account has been locked after too many unsuccessful login "
                    "attempts. Please call us to unlock it."
                }
            )
            return self._send(HTTPStatus.FORBIDDEN, body, "application/json", headers)
        self.portals.attempts.append(LoginAttempt("aegon_targetplan", username, password, ok))
        if not ok:
            body = json.dumps(
                {
                    "error": "The username or password you entered is incorrect. Please try "
                    "again or reset your password."
                }
            )
            return self._send(HTTPStatus.UNAUTHORIZED, body, "application/json", headers)
        session.aegon_user = user
        target = (
            "/targetplanUI/edit-password"
            if user is not None and user.must_change_password
            else "/targetplanUI/investments"
        )
        self._send(HTTPStatus.OK, json.dumps({"redirect": target}), "application/json", headers)
