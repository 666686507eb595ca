"""Linking a Plaid Item: from API keys to the credentials the ``plaid`` provider needs.

Plain functions (no click), wired by the CLI as ``finbot accounts link plaid``.
Every Plaid call goes through the provider's client (:class:`.client.PlaidClient`):
the same validation and error mapping; failures raise the typed
:class:`~finbot_pipelines.providers.contract.ProviderError` subclasses, whose
messages never contain a credential.

Usage (what the CLI command does)::

    from finbot_pipelines.providers.plaid.link import link_account

    creds = link_account(
        client_id=..., secret=...,          # prompted, hidden
        environment="production",           # or "sandbox"
        sandbox=False,                      # --sandbox: no browser, test institution
        open_browser=True,
        announce=click.echo,                # prints the local page address
    )
    vault.set("plaid-main", json.dumps(creds))   # {client_id, secret, access_token, environment}

and the linked account in ``finbot.yaml``::

    - {id: my-bank, profile: alice, provider: plaid, name: My bank, credentials: plaid-main}

Two flows:

* ``sandbox=True``: ``/sandbox/public_token/create`` makes a public token for a
  test institution (``ins_109508``, First Platypus Bank) without any browser,
  then ``/item/public_token/exchange`` turns it into an access token.
* otherwise: ``/link/token/create`` makes a Link token, :func:`serve_link_page`
  serves a page on 127.0.0.1 that opens Plaid Link in the user's browser; Link
  hands the page a public token which the page POSTs back to the local server;
  it is then exchanged for the access token.
"""

from __future__ import annotations

import html
import json
import secrets as _secrets
import threading
import webbrowser
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from plaid.model.country_code import CountryCode
from plaid.model.item_public_token_exchange_request import ItemPublicTokenExchangeRequest
from plaid.model.item_public_token_exchange_response import ItemPublicTokenExchangeResponse
from plaid.model.link_token_create_request import LinkTokenCreateRequest
from plaid.model.link_token_create_request_user import LinkTokenCreateRequestUser
from plaid.model.link_token_create_response import LinkTokenCreateResponse
from plaid.model.link_token_transactions import LinkTokenTransactions
from plaid.model.products import Products
from plaid.model.sandbox_public_token_create_request import SandboxPublicTokenCreateRequest
from plaid.model.sandbox_public_token_create_response import SandboxPublicTokenCreateResponse

from finbot_pipelines.providers.contract import ProviderError
from finbot_pipelines.providers.http import Masker
from finbot_pipelines.providers.plaid.client import (
    LINK_TOKEN_CREATE,
    PUBLIC_TOKEN_EXCHANGE,
    SANDBOX_PUBLIC_TOKEN_CREATE,
    PlaidClient,
)
from finbot_pipelines.providers.plaid.options import DEFAULT_TIMEOUT_S, resolve_api_url

PLAID_LINK_JS = "https://cdn.plaid.com/link/v2/stable/link-initialize.js"
#: First Platypus Bank, Plaid's sandbox institution with every product
SANDBOX_INSTITUTION_ID = "ins_109508"
#: products Link requires: ``transactions`` is offered by most banks, card issuers and
#: lenders and brings real-time balances with it
DEFAULT_LINK_PRODUCTS: tuple[str, ...] = ("transactions",)
#: products added when the institution supports them (never restrict the institution list)
DEFAULT_OPTIONAL_PRODUCTS: tuple[str, ...] = ("investments", "liabilities")
DEFAULT_COUNTRY_CODES: tuple[str, ...] = ("US", "CA", "GB", "IE", "FR", "ES", "NL", "DE")
DEFAULT_SANDBOX_PRODUCTS: tuple[str, ...] = ("transactions", "investments", "liabilities")
DEFAULT_PAGE_TIMEOUT_S = 600.0
#: days of transaction history Plaid fetches for a new Item (its default is 90, at most
#: 730): the first /transactions/sync then reports two years, for returns over 2y
TRANSACTIONS_DAYS_REQUESTED = 730


class PlaidLinkError(ProviderError):
    """Linking did not complete (the user closed Link, or never finished)."""


def create_link_token(
    api_url: str,
    client_id: str,
    secret: str,
    user_id: str,
    *,
    products: Sequence[str] = DEFAULT_LINK_PRODUCTS,
    optional_products: Sequence[str] = DEFAULT_OPTIONAL_PRODUCTS,
    country_codes: Sequence[str] = DEFAULT_COUNTRY_CODES,
    client_name: str = "finbot",
    language: str = "en",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> str:
    """``/link/token/create``: a short-lived token to open Plaid Link with.

    ``user_id`` is Plaid's ``client_user_id``: a stable, non-personal id of the
    finbot user (not an e-mail address)."""
    client = PlaidClient(api_url, client_id, secret, timeout_s=timeout_s)
    request = LinkTokenCreateRequest(
        client_name=client_name,
        language=language,
        country_codes=[CountryCode(c) for c in country_codes],
        user=LinkTokenCreateRequestUser(client_user_id=user_id),
        products=[Products(p) for p in products],
        optional_products=[Products(p) for p in optional_products],
        transactions=LinkTokenTransactions(days_requested=TRANSACTIONS_DAYS_REQUESTED),
    )
    answer = client.call(
        LINK_TOKEN_CREATE, client.api.link_token_create, request, LinkTokenCreateResponse
    )
    return str(answer["link_token"])


def exchange_public_token(
    api_url: str,
    client_id: str,
    secret: str,
    public_token: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> str:
    """``/item/public_token/exchange``: the Item's permanent access token."""
    client = PlaidClient(
        api_url,
        client_id,
        secret,
        timeout_s=timeout_s,
        masker=Masker([client_id, secret, public_token]),
    )
    answer = client.call(
        PUBLIC_TOKEN_EXCHANGE,
        client.api.item_public_token_exchange,
        ItemPublicTokenExchangeRequest(public_token=public_token),
        ItemPublicTokenExchangeResponse,
    )
    return str(answer["access_token"])


def sandbox_public_token(
    api_url: str,
    client_id: str,
    secret: str,
    institution_id: str = SANDBOX_INSTITUTION_ID,
    products: Sequence[str] = DEFAULT_SANDBOX_PRODUCTS,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> str:
    """``/sandbox/public_token/create``: a public token for a sandbox institution, no browser."""
    client = PlaidClient(api_url, client_id, secret, timeout_s=timeout_s)
    answer = client.call(
        SANDBOX_PUBLIC_TOKEN_CREATE,
        client.api.sandbox_public_token_create,
        SandboxPublicTokenCreateRequest(
            institution_id=institution_id, initial_products=[Products(p) for p in products]
        ),
        SandboxPublicTokenCreateResponse,
    )
    return str(answer["public_token"])


# --------------------------------------------------------------------------- the local page

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>finbot: link an account with Plaid</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em}}
button{{font-size:1.1em;padding:.5em 1.2em}}</style></head>
<body><h1>finbot</h1><p id="status">Opening Plaid Link&hellip;</p>
<button id="open" type="button">Open Plaid Link</button>
<script src="{link_js}"></script>
<script>
const statusEl = document.getElementById("status");
function post(path, payload) {{
  return fetch(path, {{method: "POST", headers: {{"Content-Type": "application/json"}},
                      body: JSON.stringify(payload)}});
}}
const handler = Plaid.create({{
  token: {token_js},
  onSuccess: (public_token, metadata) => {{
    statusEl.textContent = "Linked. Handing the result to finbot...";
    post("{base}public_token", {{public_token: public_token,
      institution: metadata && metadata.institution ? metadata.institution.name : null}})
      .then(r => {{ statusEl.textContent = r.ok
        ? "Done: you can close this tab and go back to the terminal."
        : "finbot refused the answer (HTTP " + r.status + ")."; }});
  }},
  onExit: (err, metadata) => {{
    statusEl.textContent = err ? "Plaid Link failed: " + (err.display_message || err.error_message)
                               : "Plaid Link was closed. Reload this page to try again.";
    post("{base}exit", {{error_code: err ? err.error_code : null}});
  }},
}});
document.getElementById("open").onclick = () => handler.open();
handler.open();
</script></body></html>
"""


class _LinkServer(ThreadingHTTPServer):
    daemon_threads = True
    base_path: str
    page: bytes
    allowed_hosts: set[str]
    done: threading.Event
    result: dict[str, Any]


class _LinkHandler(BaseHTTPRequestHandler):
    server: _LinkServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _host_ok(self) -> bool:
        # refuse other host names (DNS rebinding): only the address we printed
        return (self.headers.get("Host") or "") in self.server.allowed_hosts

    def do_GET(self) -> None:
        if not self._host_ok() or self.path.split("?")[0] != self.server.base_path:
            self._reply(404, b'{"error": "not found"}')
            return
        self._reply(200, self.server.page, "text/html; charset=utf-8")

    def do_POST(self) -> None:
        base = self.server.base_path
        if not self._host_ok() or self.path not in (base + "public_token", base + "exit"):
            self._reply(404, b'{"error": "not found"}')
            return
        if "application/json" not in (self.headers.get("Content-Type") or ""):
            self._reply(415, b'{"error": "expected application/json"}')
            return
        try:
            length = min(int(self.headers.get("Content-Length") or 0), 65536)
            payload = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._reply(400, b'{"error": "expected a JSON object"}')
            return
        if self.path.endswith("/exit"):
            code = payload.get("error_code")
            self.server.result["exit"] = str(code) if isinstance(code, str) else None
            self._reply(200, b'{"ok": true}')
            # a closed Link can be reopened from the page: keep waiting until the timeout
            return
        token = payload.get("public_token")
        if not isinstance(token, str) or not token.startswith("public-"):
            self._reply(400, b'{"error": "expected a public_token"}')
            return
        self.server.result["public_token"] = token
        self._reply(200, b'{"ok": true}')
        self.server.done.set()


def serve_link_page(
    link_token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_s: float = DEFAULT_PAGE_TIMEOUT_S,
    *,
    on_ready: Callable[[str], None] | None = None,
    open_browser: bool = False,
) -> str:
    """Serve a page opening Plaid Link on ``host:port``; return the public token it gets.

    The page (at a random, unguessable path) loads Plaid's script from
    ``https://cdn.plaid.com/link/v2/stable/link-initialize.js`` and opens Link with
    ``link_token``; when the user has logged in to their institution, Link hands
    the page a public token, which the page POSTs (JSON) back to this server.
    Calls ``on_ready(url)`` once the page is served (print it for the user) and
    opens it in the default browser when ``open_browser``.

    This needs a real browser with internet access: it cannot be exercised in
    the offline tests, which only check the local half (the page is served and
    a POSTed public token is returned). Institutions using OAuth in production
    also need a ``redirect_uri`` registered with Plaid, which this page does not
    set up.

    Raises :class:`PlaidLinkError` when no public token arrives within ``timeout_s``.
    """
    base_path = f"/{_secrets.token_urlsafe(18)}/"
    server = _LinkServer((host, port), _LinkHandler)
    bound_port = server.server_address[1]
    server.base_path = base_path
    server.allowed_hosts = {f"{host}:{bound_port}", f"localhost:{bound_port}"}
    server.page = _PAGE.format(
        link_js=html.escape(PLAID_LINK_JS),
        token_js=json.dumps(link_token).replace("</", "<\\/"),
        base=base_path,
    ).encode()
    server.done = threading.Event()
    server.result = {}
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="plaid-link-page", daemon=True
    )
    thread.start()
    url = f"http://{host}:{bound_port}{base_path}"
    try:
        if on_ready is not None:
            on_ready(url)
        if open_browser:
            webbrowser.open(url)
        if not server.done.wait(timeout_s):
            exited = server.result.get("exit", "")
            why = f"Plaid Link was closed ({exited})" if exited else "Plaid Link was not completed"
            raise PlaidLinkError(f"{why} within {timeout_s:g} s; nothing was linked")
        return str(server.result["public_token"])
    finally:
        server.shutdown()
        server.server_close()


def link_account(
    api_url: str | None = None,
    client_id: str = "",
    secret: str = "",
    environment: str = "production",
    sandbox: bool = False,
    institution_id: str = SANDBOX_INSTITUTION_ID,
    open_browser: bool = True,
    *,
    user_id: str = "finbot-user",
    announce: Callable[[str], None] | None = None,
    timeout_s: float = DEFAULT_PAGE_TIMEOUT_S,
) -> dict[str, str]:
    """Link one Plaid Item and return its vault entry
    ``{client_id, secret, access_token, environment}``.

    ``sandbox=True`` (CLI ``--sandbox``) forces the sandbox environment and links
    ``institution_id`` without a browser. Otherwise a Link page is served locally
    (see :func:`serve_link_page`); ``announce`` receives a line to show the user
    (the page address). ``api_url`` overrides Plaid's host (default: the host of
    ``environment``).
    """
    if not client_id or not secret:
        raise ValueError("client_id and secret are required")
    env = "sandbox" if sandbox else environment
    url = resolve_api_url(env, api_url)
    if sandbox:
        public_token = sandbox_public_token(url, client_id, secret, institution_id)
    else:
        link_token = create_link_token(url, client_id, secret, user_id)

        def ready(page_url: str) -> None:
            if announce is not None:
                announce(f"Open {page_url} in your browser to link your account with Plaid.")

        public_token = serve_link_page(
            link_token, timeout_s=timeout_s, on_ready=ready, open_browser=open_browser
        )
    access_token = exchange_public_token(url, client_id, secret, public_token)
    return {
        "client_id": client_id,
        "secret": secret,
        "access_token": access_token,
        "environment": env,
    }
