"""The web app in Debian's Chromium (Playwright), against `finbot web` running on a copy
of the session's home: sign in, the dashboard's charts drawn, a range switch, the holdings
drill-down, a phone width with no sideways scroll, dark mode, the privacy switch, and
sign-out. Any request to another origin fails the test (the app works offline).

It also takes the README's screenshots (docs/img/web-dashboard.png, web-phone.png; set
FINBOT_SCREENSHOT_DIR to write them elsewhere).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.vault import Vault, init_key_file
from finbot_pipelines.web.users import UserStore
from finbot_pipelines_tests.conftest import BuiltHome, running_web
from finbot_pipelines_tests.fakes.plaid_server import FakePlaid
from finbot_pipelines_tests.fakes.simplefin_server import FakeSimplefin, examples, without_source
from finbot_pipelines_tests.test_ui import free_port

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "alice-browser-pw"
PAGES = ("", "/holdings", "/accounts", "/transactions")


@dataclass
class Server:
    base: str
    home: Path
    log: Path
    link_js_url: str
    #: "js": makes the Link script's text when the browser asks for it
    link_script: dict[str, Callable[[], str]]


class _ScriptHandler(BaseHTTPRequestHandler):
    """Serves the stand-in for Plaid's Link script (what Plaid's CDN serves)."""

    script: dict[str, Callable[[], str]] = {}

    def do_GET(self) -> None:
        make = self.script.get("js") if self.path.endswith(".js") else None
        body = make().encode() if make else b"<!doctype html><title>Link</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/javascript" if make else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(built_home: BuiltHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    assert built_home.run_success
    root = tmp_path_factory.mktemp("browser")
    home = root / "home"
    shutil.copytree(
        built_home.home, home, ignore=shutil.ignore_patterns("dagster", "warehouse.duckdb*")
    )
    init_key_file(home)  # the built home's accounts have no credentials: no vault key yet
    store = UserStore.open(HomePaths(home))
    store.add_user("alice", PASSWORD, profiles={"alice": "owner", "bruno": "view"})
    port = free_port()
    log = root / "web.log"
    script: dict[str, Callable[[], str]] = {}
    handler = type("Handler", (_ScriptHandler,), {"script": script})
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    link_js_url = f"http://127.0.0.1:{cdn.server_address[1]}/link-initialize.js"
    env = {**os.environ, "FINBOT_PLAID_LINK_JS": link_js_url}
    try:
        with running_web(home, log, port, env) as base:
            yield Server(base, home, log, link_js_url, script)
    finally:
        cdn.shutdown()


class Offline:
    """Every request the pages make; any to another origin is a failure (``allowed``: the
    Plaid Link page's own script)."""

    def __init__(self, base: str, allowed: tuple[str, ...] = ()) -> None:
        self.base = base
        self.allowed = allowed
        self.outside: list[str] = []

    def __call__(self, request: Request) -> None:
        url = request.url
        if not url.startswith((self.base, "data:", *self.allowed)):
            self.outside.append(url)


def _context(browser: Browser, server: Server, **kwargs: object) -> tuple[BrowserContext, Offline]:
    context = browser.new_context(**kwargs)  # type: ignore[arg-type]
    seen = Offline(server.base)
    context.on("request", seen)
    return context, seen


def _sign_in(page: Page, server: Server) -> None:
    page.goto(f"{server.base}/p/alice")
    assert "/login" in page.url, "a page asks to sign in first"
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("[data-testid=sign-in]")
    page.wait_for_selector("[data-testid=net-worth]")
    assert page.url.endswith("/p/alice"), "back to the page asked for"


def _net_worth(server: Server) -> Decimal:
    con = duckdb.connect(str(server.home / "finbot.duckdb"), read_only=True)
    try:
        con.execute("set file_search_path = ?", [str(server.home)])
        row = con.execute(
            "select net_worth from marts.fct_profile_valuation_hourly where profile_id = 'alice' "
            "order by valuation_hour desc limit 1"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return Decimal(row[0])


def _screenshots() -> Path:
    target = Path(os.environ.get("FINBOT_SCREENSHOT_DIR") or ROOT / "docs" / "img")
    target.mkdir(parents=True, exist_ok=True)
    return target


def _drawn_lines(page: Page, testid: str) -> list[float]:
    """Heights (px) of the visible polylines of a chart: drawn means taller than flat."""
    heights: list[float] = []
    for line in page.locator(f"[data-testid={testid}] polyline").all():
        if line.is_visible():
            box = line.bounding_box()
            if box:
                heights.append(box["height"])
    return heights


def test_dashboard_drill_down_and_sign_out(browser: Browser, server: Server) -> None:
    context, seen = _context(browser, server, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(page, server)
    nw = _net_worth(server)
    shown = page.locator("[data-testid=net-worth] .amount")
    assert Decimal(shown.get_attribute("data-value") or "") == nw
    assert shown.inner_text() == f"{'-' if nw < 0 else ''}£{abs(nw):,.2f}"
    # the net worth chart, on its own scale, is drawn: its line is not flat
    heights = _drawn_lines(page, "net-worth-chart")
    assert heights and max(heights) > 40, heights
    assert _drawn_lines(page, "assets-liabilities-chart")
    assert page.locator("[data-testid=distribution-asset] li").count() >= 2
    page.locator("[data-testid=net-worth-chart]").scroll_into_view_if_needed()
    page.screenshot(path=str(_screenshots() / "web-dashboard.png"))
    # a range button redraws the history for that range
    before = page.get_attribute("[data-testid=net-worth-chart]", "data-points")
    page.click("[data-testid=range-1w]")
    page.wait_for_url(re.compile(r"range=1w"))
    assert page.get_attribute("[data-testid=range-1w]", "aria-current") == "true"
    assert page.get_attribute("[data-testid=net-worth-chart]", "data-points")
    assert before is not None
    # drill down: open an account in the holdings, see its sub-accounts and items
    page.click("[data-testid=nav-holdings]")
    node = page.locator("[data-testid=node-a-bank]")
    sub = node.locator("li.sub_account").first
    assert not sub.is_visible()
    node.locator("summary").first.click()
    sub.wait_for(state="visible")
    sub.locator("summary").first.click()
    node.locator("li.item").first.wait_for(state="visible")
    # and an account's own page
    node.locator("a[href='/accounts/a-bank']").click()
    page.wait_for_selector("text=Latest transactions")
    # sign out: the session is gone, a page asks to sign in again
    page.click("[data-testid=sign-out]")
    page.wait_for_url(re.compile(r"/login"))
    page.goto(f"{server.base}/p/alice")
    assert "/login" in page.url
    assert not errors, errors
    assert not seen.outside, seen.outside
    context.close()


def test_phone_width_dark_mode_and_privacy(browser: Browser, server: Server) -> None:
    context, seen = _context(
        browser,
        server,
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = context.new_page()
    _sign_in(page, server)
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(13, 17, 23)", "the system's dark mode is followed"
    for profile in ("alice", "bruno"):
        for suffix in (*PAGES, "?range=all&dim=linked_account"):
            page.goto(f"{server.base}/p/{profile}{suffix}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (profile, suffix, width)
    for path in ("/settings", "/accounts/a-bank"):
        page.goto(server.base + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    page.goto(f"{server.base}/p/alice")
    # the narrow chart is the one shown, and it is drawn
    assert page.locator("[data-testid=net-worth-chart] .chart-narrow").is_visible()
    assert not page.locator("[data-testid=net-worth-chart] .chart-wide").is_visible()
    assert _drawn_lines(page, "net-worth-chart")
    page.screenshot(path=str(_screenshots() / "web-phone.png"))
    # the privacy switch hides every amount, and the choice is kept
    page.click("[data-testid=privacy-switch]")
    page.wait_for_selector("[data-testid=privacy-switch][aria-pressed=true]")
    text = page.inner_text("main")
    assert "•••••" in text and not re.search(r"£\s?\d", text), "no amount is written"
    page.goto(f"{server.base}/p/alice/holdings")
    assert not re.search(r"£\s?\d", page.inner_text("main"))
    page.click("[data-testid=privacy-switch]")
    page.wait_for_selector("[data-testid=privacy-switch][aria-pressed=false]")
    assert re.search(r"£\d", page.inner_text("main"))
    # dark mode chosen in settings wins over the system
    page.goto(f"{server.base}/settings")
    page.check("[data-testid=theme-light]")
    page.click("[data-testid=save-display]")
    page.wait_for_load_state()
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(246, 247, 249)", bg
    assert not seen.outside, seen.outside
    context.close()


def test_adding_a_simplefin_account_in_the_browser(browser: Browser, server: Server) -> None:
    """The add-account form, with a one-time SimpleFIN setup token from the local fake:
    the app claims it, test-fetches the fake's published example accounts, keeps the
    access URL in the vault and shows the new account on the accounts page."""
    context, seen = _context(browser, server, viewport={"width": 390, "height": 844})
    page = context.new_page()
    _sign_in(page, server)
    account_set = without_source(copy.deepcopy(examples()["v2_account_set"]))
    with FakeSimplefin() as fake:
        fake.state.account_set = account_set
        token = fake.setup_token()
        page.click("[data-testid=nav-accounts]")
        page.click("[data-testid=add-account]")
        page.select_option("[data-testid=provider-select]", "simplefin")
        page.click("[data-testid=choose-provider]")
        page.fill("[data-testid=account-id]", "sf-browser")
        page.fill("[data-testid=account-name]", "Bank via SimpleFIN")
        page.fill("[data-testid=cred-setup_token]", token)
        page.click("[data-testid=add-account-submit]")
        page.wait_for_selector("[data-testid=added-account-id]", timeout=120_000)
        assert page.inner_text("[data-testid=added-account-id]").strip() == "sf-browser"
        rows = page.locator("[data-testid=added-sub-account]").count()
        assert rows == len(account_set["accounts"])
        assert token not in page.content() and fake.access_url not in page.content()
        assert Vault.open(server.home).get_json("sf-browser") == {"access_url": fake.access_url}
    page.goto(f"{server.base}/p/alice/accounts")
    card = page.locator("[data-testid=account-sf-browser]")
    assert card.is_visible() and "Bank via SimpleFIN" in card.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert not seen.outside, seen.outside
    context.close()


#: What Plaid Link does in the browser once the user has picked their bank and signed in
#: there: it calls ``onSuccess`` with a public token (made here by the Plaid fake's
#: sandbox endpoint, as Plaid's servers make it for a real Link session). It checks it
#: was opened with the link token finbot asked Plaid for.
FAKE_LINK_JS = """
var scriptNonce = document.currentScript && document.currentScript.nonce;
var frameOrigin = new URL(document.currentScript.src).origin;
window.Plaid = {
  create: function (config) {
    return {
      open: function () {
        // as Plaid's script does: its own styles (with the page's nonce), an overlay
        // positioned by a style attribute, and Link itself in a frame from its origin
        var style = document.createElement("style");
        style.nonce = scriptNonce;
        style.textContent = ".plaid-overlay { position: fixed; inset: 0; }";
        document.head.appendChild(style);
        var frame = document.createElement("iframe");
        frame.setAttribute("style", "position: fixed; inset: 0; border: 0;");
        frame.src = frameOrigin + "/link/frame.html";
        document.body.appendChild(frame);
        if (config.token !== %(link_token)s) {
          config.onExit({error_code: "INVALID_LINK_TOKEN", error_message: "wrong link token"});
          return;
        }
        setTimeout(function () {
          config.onSuccess(%(public_token)s, {institution: {name: "First Platypus Bank"}});
        }, 0);
      }
    };
  }
};
"""


def test_plaid_link_in_the_browser(browser: Browser, server: Server) -> None:
    """The keys form, then the Link page: finbot's link.js opens Link with the link token
    finbot got from Plaid (the local fake), hands the public token back with the page's
    CSRF token, and finbot exchanges it and adds the account."""
    with FakePlaid() as plaid:
        public = plaid.issue_public_token()
        context, seen = _context(browser, server, viewport={"width": 390, "height": 844})
        seen.allowed = (server.link_js_url.rsplit("/", 1)[0],)
        page = context.new_page()
        refused: list[str] = []
        page.on(
            "console",
            lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
        )
        _sign_in(page, server)
        page.goto(f"{server.base}/p/alice/accounts/add/plaid")
        page.fill("[data-testid=plaid-account-id]", "plaid-browser")
        page.fill("[data-testid=plaid-account-name]", "Platypus via Link")
        page.fill("[data-testid=plaid-client-id]", plaid.client_id)
        page.fill("[data-testid=plaid-secret]", plaid.secret)
        page.select_option("[data-testid=plaid-environment]", "sandbox")
        page.click("text=More")
        page.fill("[data-testid=plaid-api-url]", plaid.url)

        server.link_script["js"] = lambda: (
            FAKE_LINK_JS
            % {
                "link_token": json.dumps(plaid.link_tokens[-1]),
                "public_token": json.dumps(public),
            }
        )
        page.click("[data-testid=plaid-start]")
        page.wait_for_url(re.compile(r"pending="))
        status = page.locator("[data-testid=plaid-status].ok")
        status.wait_for(timeout=120_000)
        assert "plaid-browser" in status.inner_text()
        assert page.locator("iframe").count() == 1
        assert not refused, refused
        text = page.content()
        for secret in (plaid.client_id, plaid.secret, public, *plaid.access_tokens):
            assert secret not in text
        stored = Vault.open(server.home).get_json("plaid-browser")
        assert stored["access_token"] in plaid.access_tokens - {plaid.access_token}
        assert plaid.calls("/item/public_token/exchange") == 1
    page.goto(f"{server.base}/p/alice/accounts")
    assert page.locator("[data-testid=account-plaid-browser]").is_visible()
    assert not seen.outside, seen.outside
    context.close()
