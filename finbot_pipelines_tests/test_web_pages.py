"""The web app's pages, through its ASGI app on a copy of the session's home.

Figures are read from the published marts with duckdb and formatted by hand (not by the
web code or babel) where the test checks how a locale writes them. The authorisation
matrix of every page route is in test_web_api.py; the browser tests (Chromium) in
test_web_browser.py.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.web.app import create_app
from finbot_pipelines.web.users import UserStore
from finbot_pipelines_tests.conftest import BuiltHome

PASSWORDS = {"alice": "alice-pages-pw", "bruno": "bruno-pages-pw", "dave": "dave-pages-pw"}


@dataclass
class Site:
    home: Path
    paths: HomePaths
    store: UserStore


@pytest.fixture(scope="module")
def site(built_home: BuiltHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A copy of the built home; bruno reads French (fr_FR), dave sees alice view-only."""
    assert built_home.run_success
    home = tmp_path_factory.mktemp("pages") / "home"
    shutil.copytree(
        built_home.home, home, ignore=shutil.ignore_patterns("dagster", "warehouse.duckdb*")
    )
    cfg = home / "finbot.yaml"
    text = cfg.read_text()
    assert "{id: bruno, name: Bruno, valuation_ccy: EUR}" in text
    cfg.write_text(
        text.replace(
            "{id: bruno, name: Bruno, valuation_ccy: EUR}",
            "{id: bruno, name: Bruno, valuation_ccy: EUR, locale: fr_FR}",
        )
    )
    paths = HomePaths(home)
    store = UserStore.open(paths)
    store.add_user("alice", PASSWORDS["alice"], admin=True, profiles={"alice": "owner"})
    store.add_user("bruno", PASSWORDS["bruno"], profiles={"bruno": "owner"})
    store.add_user("dave", PASSWORDS["dave"], profiles={"alice": "view"})
    yield Site(home, paths, store)


@pytest.fixture(scope="module")
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site.paths)) as c:
        yield c


def sign_in(client: TestClient, name: str, password: str | None = None) -> None:
    client.cookies.clear()
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text
    r = client.post(
        "/login",
        data={
            "name": name,
            "password": password or PASSWORDS[name],
            "csrf": csrf.group(1),
            "next": "/",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def _published(home: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(home / "finbot.duckdb"), read_only=True)
    con.execute("set file_search_path = ?", [str(home)])
    return con


def _latest(site: Site, profile: str) -> tuple[Any, ...]:
    with _published(site.home) as con:
        row = con.execute(
            "select valuation_hour, net_worth, total_assets, total_liabilities "
            "from marts.fct_profile_valuation_hourly where profile_id = ? "
            "order by valuation_hour desc limit 1",
            [profile],
        ).fetchone()
    assert row is not None
    return row


def _testid_value(html: str, testid: str) -> Decimal:
    m = re.search(
        rf'data-testid="{testid}"[^>]*>\s*<span class="amount[^"]*" data-value="([^"]+)"', html
    )
    assert m, testid
    return Decimal(m.group(1))


def _french(value: Decimal) -> str:
    """How fr_FR writes an amount in euros, by hand: narrow no-break spaces between
    thousands, a decimal comma, then a no-break space and the sign."""
    sign = "-" if value < 0 else ""
    whole, cents = f"{abs(value):.2f}".split(".")
    groups = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    thin = "\u202f"
    return f"{sign}{thin.join(groups)},{cents}\xa0€"


def _english(value: Decimal) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}£{abs(value):,.2f}"


def test_dashboard_shows_the_marts_in_the_profiles_locale(site: Site, client: TestClient) -> None:
    _, nw, assets, liabilities = _latest(site, "alice")
    sign_in(client, "alice")
    r = client.get("/", follow_redirects=True)
    assert r.status_code == 200 and str(r.url).endswith("/p/alice")
    html = r.text
    assert _testid_value(html, "net-worth") == nw
    assert _testid_value(html, "total-assets") == assets
    assert _testid_value(html, "total-liabilities") == liabilities
    assert _english(nw) in html
    for testid in ("net-worth-chart", "assets-liabilities-chart", "distribution-asset"):
        assert f'data-testid="{testid}"' in html
    _, nw_b, _, _ = _latest(site, "bruno")
    sign_in(client, "bruno")
    french = client.get("/p/bruno").text
    assert _french(nw_b) in french
    assert _testid_value(french, "net-worth") == nw_b
    client.cookies.clear()


@pytest.mark.parametrize("range_", ["1w", "1m", "all"])
def test_the_history_has_a_point_per_period_of_its_range(
    site: Site, client: TestClient, range_: str
) -> None:
    with _published(site.home) as con:
        frame = pd.DataFrame(
            con.execute(
                "select valuation_hour from marts.fct_profile_valuation_hourly "
                "where profile_id = 'alice' order by 1"
            ).fetchall(),
            columns=["hour"],
        )
    end = frame["hour"].max()
    span = {"1w": pd.Timedelta(days=7), "1m": pd.Timedelta(days=30), "all": None}[range_]
    within = frame if span is None else frame[frame["hour"] > end - span]
    # by the range (hours up to a week, days up to a year, weeks beyond), then finer
    # while that gives fewer than 8 points
    grains = {"1w": ["hour"], "1m": ["day", "hour"], "all": ["week", "day", "hour"]}[range_]
    for grain in grains:
        keys = {
            "hour": within["hour"],
            "day": within["hour"].dt.floor("D"),
            "week": within["hour"].dt.to_period("W").astype(str),
        }[grain]
        expected = keys.nunique()
        if expected >= 8:
            break
    sign_in(client, "alice")
    html = client.get(f"/p/alice?range={range_}").text
    m = re.search(r'data-testid="net-worth-chart" data-points="(\d+)"', html)
    assert m and int(m.group(1)) == expected
    assert f'aria-current="true" data-testid="range-{range_}"' in html
    client.cookies.clear()


def test_distribution_buckets_are_the_marts(site: Site, client: TestClient) -> None:
    with _published(site.home) as con:
        hour = _latest(site, "alice")[0]
        rows = con.execute(
            "select side, bucket from marts.mart_wealth_distribution where profile_id = 'alice' "
            "and valuation_hour = ? and dimension = 'currency'",
            [hour],
        ).fetchall()
    sign_in(client, "alice")
    html = client.get("/p/alice?dim=currency").text
    shown = set(re.findall(r'<li data-key="([^"]+)"', html))
    assert shown == {bucket for _, bucket in rows}
    assert "British Pound (GBP)" in html, "currencies by name"
    client.cookies.clear()


def test_holdings_drill_down_values_are_the_marts(site: Site, client: TestClient) -> None:
    with _published(site.home) as con:
        hour = _latest(site, "alice")[0]
        accounts = con.execute(
            "select linked_account_id, value from marts.fct_linked_account_valuation_hourly "
            "where profile_id = 'alice' and valuation_hour = ?",
            [hour],
        ).fetchall()
        items = con.execute(
            "select count(*) from marts.fct_item_valuation_hourly "
            "where profile_id = 'alice' and valuation_hour = ?",
            [hour],
        ).fetchone()
    sign_in(client, "alice")
    html = client.get("/p/alice/holdings").text
    for account_id, value in accounts:
        node = re.search(
            rf'data-testid="node-{account_id}".*?<span class="node-value"><span class="amount" '
            r'data-value="([^"]+)"',
            html,
            flags=re.S,
        )
        assert node and Decimal(node.group(1)) == value, account_id
    assert items and html.count('class="node item"') == items[0]
    assert "_" not in "".join(re.findall(r"<small>([^<]*)</small>", html)), "labels are words"
    page = client.get(f"/accounts/{accounts[0][0]}")
    assert page.status_code == 200 and "Latest transactions" in page.text
    client.cookies.clear()


def test_transactions_page_filters_and_pages(site: Site, client: TestClient) -> None:
    with _published(site.home) as con:
        total = con.execute(
            "select count(*) from marts.fct_transactions where profile_id = 'alice'"
        ).fetchone()
        bank = con.execute(
            "select count(*) from marts.fct_transactions "
            "where profile_id = 'alice' and linked_account_id = 'a-bank'"
        ).fetchone()
    assert total and bank
    sign_in(client, "alice")
    html = client.get("/p/alice/transactions").text
    assert re.search(rf'data-testid="tx-total">{total[0]} transactions?', html)
    assert html.count('data-testid="tx-a-') == min(total[0], 50)
    html = client.get("/p/alice/transactions?account=a-bank").text
    assert re.search(rf'data-testid="tx-total">{bank[0]} transactions?', html)
    bad = client.get("/p/alice/transactions?from=not-a-date&kind=nonsense")
    assert bad.status_code == 200, "a bad filter is ignored, not an error page"
    client.cookies.clear()


def test_the_privacy_switch_writes_no_amount(site: Site, client: TestClient) -> None:
    _, nw, assets, _ = _latest(site, "alice")
    sign_in(client, "alice")
    page = client.get("/p/alice")
    r = client.post(
        "/privacy", data={"csrf": csrf_of(page.text), "next": "/p/alice"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/p/alice"
    markers = [_english(nw), _english(assets), f"{abs(nw):.2f}", f"{int(abs(nw)):,}"]
    for path in ("/p/alice", "/p/alice/holdings", "/p/alice/accounts", "/p/alice/transactions"):
        html = client.get(path).text
        assert "•••••" in html, path
        assert "data-value=" not in html, path
        for marker in markers:
            assert marker not in html, (path, marker)
        assert not re.search(r"£\d", html), path
    page = client.get("/p/alice")
    client.post("/privacy", data={"csrf": csrf_of(page.text), "next": "/p/alice"})
    assert _english(nw) in client.get("/p/alice").text
    client.cookies.clear()


def test_theme_and_display_settings(site: Site, client: TestClient) -> None:
    sign_in(client, "alice")
    page = client.get("/settings")
    assert 'data-theme="dark"' not in page.text
    r = client.post(
        "/settings/display",
        data={"csrf": csrf_of(page.text), "theme": "dark", "next": "/p/alice"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert 'data-theme="dark"' in client.get("/p/alice").text
    assert (
        client.post(
            "/settings/display", data={"theme": "light"}, follow_redirects=False
        ).status_code
        == 403
    ), "no CSRF token, no change"
    client.cookies.clear()


def test_tokens_made_and_revoked_in_settings(site: Site, client: TestClient) -> None:
    sign_in(client, "alice")
    page = client.get("/settings")
    r = client.post(
        "/settings/tokens", data={"csrf": csrf_of(page.text), "label": "sheet", "scope": "read"}
    )
    m = re.search(r'data-testid="new-token">(fbt_[^<]+)<', r.text)
    assert m
    token = m.group(1)
    token_id = token.split("_")[1]
    assert token not in client.get("/settings").text, "a token is shown once"
    client.cookies.clear()
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["scope"] == "read"
    sign_in(client, "alice")
    page = client.get("/settings")
    r = client.post(
        "/settings/tokens/revoke", data={"csrf": csrf_of(page.text), "token_id": token_id}
    )
    assert r.status_code == 200 and "was revoked" in r.text
    client.cookies.clear()
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_password_change_in_settings_ends_the_session(site: Site, client: TestClient) -> None:
    site.store.add_user("erin", "erin-first-pw", profiles={"alice": "view"})
    sign_in(client, "erin", "erin-first-pw")
    page = client.get("/settings")
    csrf = csrf_of(page.text)
    wrong = client.post(
        "/settings/password",
        data={
            "csrf": csrf,
            "current": "nope",
            "new": "erin-second-pw",
            "confirm": "erin-second-pw",
        },
    )
    assert wrong.status_code == 400 and "current password is wrong" in wrong.text
    sid = client.cookies.get("finbot_session")
    r = client.post(
        "/settings/password",
        data={
            "csrf": csrf,
            "current": "erin-first-pw",
            "new": "erin-second-pw",
            "confirm": "erin-second-pw",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    client.cookies.clear()
    client.cookies.set("finbot_session", sid or "")
    assert client.get("/p/alice", follow_redirects=False).status_code == 303
    sign_in(client, "erin", "erin-second-pw")
    client.cookies.clear()


def test_account_actions_from_the_accounts_page(site: Site, client: TestClient) -> None:
    sign_in(client, "dave")
    page = client.get("/p/alice/accounts")
    assert page.status_code == 200
    assert 'data-testid="freeze-a-bank"' not in page.text, "a view-only share has no buttons"
    r = client.post("/accounts/a-bank/freeze", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 403
    sign_in(client, "alice")
    page = client.get("/p/alice/accounts")
    assert client.post("/accounts/a-bank/freeze", data={"csrf": "wrong"}).status_code == 403
    r = client.post("/accounts/a-bank/freeze", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 200 and "is frozen" in r.text
    assert 'data-testid="unfreeze-a-bank"' in r.text
    cfg = (site.home / "finbot.yaml").read_text()
    assert re.search(r"id: a-bank(?:(?!\n  - ).)*frozen: true", cfg, flags=re.S)
    r = client.post("/accounts/a-bank/unfreeze", data={"csrf": csrf_of(r.text)})
    assert r.status_code == 200 and "frozen: true" not in (site.home / "finbot.yaml").read_text()
    r = client.post("/accounts/a-bank/test", data={"csrf": csrf_of(r.text)})
    assert r.status_code == 200 and "the test fetch worked" in r.text
    client.cookies.clear()


def test_no_telemetry_whatever_the_environment(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI's own OpenTelemetry instrumentation stays off even when the environment
    asks for it: nothing about a household's requests is exported."""
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    app = create_app(site.paths)
    assert app._native_telemetry.enabled() is False


def _answer_cache(client: TestClient) -> Any:
    from finbot_pipelines.web.cache import AnswerCache

    stack = client.app.middleware_stack  # type: ignore[attr-defined]
    while stack is not None and not isinstance(stack, AnswerCache):
        stack = getattr(stack, "app", None)
    assert stack is not None, "the app keeps its API answers"
    return stack


def test_kept_answers_follow_tokens_shares_and_the_config(site: Site, client: TestClient) -> None:
    """A kept answer is replayed only to the same caller with the same grants, and never
    outlives a revoked token, a withdrawn share or a config edit."""
    token = site.store.create_token("dave", label="cache")
    h = {"Authorization": f"Bearer {token}"}
    client.get("/p/alice")  # builds the middleware stack
    cache = _answer_cache(client)
    first = client.get("/api/v1/profiles/alice/accounts", headers=h)
    assert first.status_code == 200
    hits = cache.hits
    again = client.get("/api/v1/profiles/alice/accounts", headers=h)
    assert again.content == first.content and cache.hits == hits + 1
    assert again.headers["content-security-policy"] == first.headers["content-security-policy"]
    # a config edit (alice freezes a-bank) is seen at once
    sign_in(client, "alice")
    page = client.get("/p/alice/accounts")
    client.post("/accounts/a-bank/freeze", data={"csrf": csrf_of(page.text)})
    client.cookies.clear()
    frozen = {
        a["id"]: a["frozen"]
        for a in client.get("/api/v1/profiles/alice/accounts", headers=h).json()
    }
    assert frozen["a-bank"] is True
    sign_in(client, "alice")
    page = client.get("/p/alice/accounts")
    client.post("/accounts/a-bank/unfreeze", data={"csrf": csrf_of(page.text)})
    client.cookies.clear()
    # a withdrawn share: 404 at once
    site.store.revoke("dave", "alice")
    assert client.get("/api/v1/profiles/alice/accounts", headers=h).status_code == 404
    site.store.grant("dave", "alice", "view")
    assert client.get("/api/v1/profiles/alice/accounts", headers=h).status_code == 200
    # a revoked token: 401 at once
    site.store.revoke_token(token.split("_")[1], user_name="dave")
    assert client.get("/api/v1/profiles/alice/accounts", headers=h).status_code == 401


def test_an_admin_adds_shares_and_removes_people(site: Site, client: TestClient) -> None:
    sign_in(client, "bruno")  # not an admin
    assert client.get("/admin").status_code == 403
    csrf = csrf_of(client.get("/settings").text)
    r = client.post("/admin/users", data={"csrf": csrf, "name": "mallory", "password": "x" * 12})
    assert r.status_code == 403 and site.store.get_user("mallory") is None
    sign_in(client, "alice")
    page = client.get("/admin")
    assert page.status_code == 200 and 'data-testid="user-bruno"' in page.text
    csrf = csrf_of(page.text)
    assert (
        client.post("/admin/users", data={"name": "frank", "password": "f" * 12}).status_code == 403
    )
    r = client.post(
        "/admin/users",
        data={"csrf": csrf, "name": "frank", "password": "frank-first-pw", "profile": "alice"},
    )
    assert r.status_code == 200 and "frank may now sign in" in r.text
    # an admin shares only what they own: not bruno's profile, not to themselves
    r = client.post(
        "/admin/share", data={"csrf": csrf, "name": "frank", "profile": "bruno", "access": "view"}
    )
    assert r.status_code == 400 and "only the profiles you own" in r.text
    r = client.post(
        "/admin/share", data={"csrf": csrf, "name": "alice", "profile": "bruno", "access": "full"}
    )
    assert r.status_code == 400 and site.store.grants_of(site.store.require_user("alice").id) == {
        "alice": "owner"
    }
    sign_in(client, "frank", "frank-first-pw")
    assert client.get("/p/alice").status_code == 200
    assert client.get("/p/bruno").status_code == 404
    sign_in(client, "alice")
    csrf = csrf_of(client.get("/admin").text)
    r = client.post("/admin/unshare", data={"csrf": csrf, "name": "frank", "profile": "alice"})
    assert r.status_code == 200 and "no longer sees" in r.text
    assert site.store.grants_of(site.store.require_user("frank").id) == {}
    r = client.post("/admin/remove", data={"csrf": csrf, "name": "alice"})
    assert r.status_code == 400, "an admin does not remove themselves"
    r = client.post("/admin/remove", data={"csrf": csrf, "name": "frank"})
    assert r.status_code == 200 and site.store.get_user("frank") is None
    client.cookies.clear()


def test_an_account_has_the_reports_colour(site: Site, client: TestClient) -> None:
    """The web app colours each account as the report does (test_report.py checks the
    report against the same): by every configured account id of the household."""
    from finbot_pipelines import visual
    from finbot_pipelines.config.loading import load_config

    ids = [a.id for a in load_config(site.paths.config).linked_accounts]
    expected = visual.account_colours(ids)
    sign_in(client, "alice")
    for path in ("/p/alice/holdings", "/p/alice/accounts"):
        html = client.get(path).text
        for account_id in ("a-bank", "a-invest", "a-crypto"):
            m = re.search(
                rf'data-testid="(?:node|account)-{account_id}".*?<rect width="10" height="10" '
                r'rx="2" fill="([^"]+)"',
                html,
                flags=re.S,
            )
            assert m and m.group(1) == expected[account_id], (path, account_id)
    client.cookies.clear()


def test_names_are_escaped_everywhere(site: Site, client: TestClient) -> None:
    """An account named with markup is shown as text on every page and in every chart."""
    cfg = site.home / "finbot.yaml"
    original = cfg.read_text()
    evil = '<img src=x onerror="alert(1)">'
    assert "name: Alice crypto" in original
    cfg.write_text(original.replace("name: Alice crypto", f"name: '{evil}'"))
    try:
        sign_in(client, "alice")
        for path in (
            "/p/alice?dim=linked_account",
            "/p/alice/holdings",
            "/p/alice/accounts",
            "/p/alice/transactions",
            "/accounts/a-crypto",
        ):
            html = client.get(path).text
            assert evil not in html, path
            assert "&lt;img src=x onerror=" in html, path
    finally:
        cfg.write_text(original)
        client.cookies.clear()
