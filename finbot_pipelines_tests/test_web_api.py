"""The web app's API and sign-in, through its ASGI app on a copy of the session's home.

Expected figures are read from the published marts with duckdb (not through the web
code); the authorisation matrix walks every route the app has, so a new route is covered
(or the test names it).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.web import api, linking, pages
from finbot_pipelines.web.app import create_app
from finbot_pipelines.web.users import MAX_FAILURES_PER_NAME, UserStore
from finbot_pipelines_tests.conftest import BuiltHome

PASSWORDS = {
    "alice": "alice-secret-pw",
    "bruno": "bruno-secret-pw",
    "carol": "carol-secret-pw",
    "dave": "dave-secret-pw!",
}


@dataclass
class Web:
    home: Path
    paths: HomePaths
    store: UserStore
    tokens: dict[str, str]


def _published(home: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(home / "finbot.duckdb"), read_only=True)
    con.execute("set file_search_path = ?", [str(home)])
    return con


@pytest.fixture(scope="module")
def web(built_home: BuiltHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """A copy of the built home (config, vault key, published marts) with four people:
    alice owns alice, bruno owns bruno, carol owns nothing, dave sees alice view-only."""
    assert built_home.run_success
    home = tmp_path_factory.mktemp("web") / "home"
    shutil.copytree(
        built_home.home, home, ignore=shutil.ignore_patterns("dagster", "warehouse.duckdb*")
    )
    paths = HomePaths(home)
    store = UserStore.open(paths)
    store.add_user("alice", PASSWORDS["alice"], admin=True, profiles={"alice": "owner"})
    store.add_user("bruno", PASSWORDS["bruno"], profiles={"bruno": "owner"})
    store.add_user("carol", PASSWORDS["carol"])
    store.add_user("dave", PASSWORDS["dave"], profiles={"alice": "view"})
    tokens = {name: store.create_token(name, label="tests") for name in PASSWORDS}
    tokens["alice-write"] = store.create_token("alice", label="tests", scope="write")
    yield Web(home, paths, store, tokens)


@pytest.fixture(scope="module")
def client(web: Web) -> Iterator[TestClient]:
    with TestClient(create_app(web.paths)) as c:
        yield c


def bearer(web: Web, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {web.tokens[who]}"}


def sign_in(client: TestClient, name: str, password: str) -> Any:
    client.cookies.clear()
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf": csrf.group(1), "next": "/"},
        follow_redirects=False,
    )


# ------------------------------------------------------------------------ figures


def test_profile_figures_are_the_marts(web: Web, client: TestClient) -> None:
    with _published(web.home) as con:
        latest = con.execute(
            "select valuation_hour, net_worth, total_assets, total_liabilities "
            "from marts.fct_profile_valuation_hourly where profile_id = 'alice' "
            "order by valuation_hour desc limit 1"
        ).fetchone()
    assert latest is not None
    r = client.get("/api/v1/profiles/alice", headers=bearer(web, "alice"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valuation_ccy"] == "GBP"
    assert body["valuation_hour"].startswith(latest[0].isoformat())
    assert Decimal(body["net_worth"]["amount"]) == latest[1]
    assert body["net_worth"]["currency"] == "GBP"
    assert Decimal(body["total_assets"]["amount"]) == latest[2]
    assert Decimal(body["total_liabilities"]["amount"]) == latest[3]
    # assets + liabilities (negative) = net worth, to the cent
    assert Decimal(body["total_assets"]["amount"]) + Decimal(
        body["total_liabilities"]["amount"]
    ) == Decimal(body["net_worth"]["amount"])
    assert [c["window"] for c in body["changes"]] == ["1h", "1d", "1w", "1m", "6m", "1y", "2y"]


def test_history_by_day_is_the_last_hour_of_each_day(web: Web, client: TestClient) -> None:
    with _published(web.home) as con:
        frame = pd.DataFrame(
            con.execute(
                "select valuation_hour, net_worth from marts.fct_profile_valuation_hourly "
                "where profile_id = 'bruno' order by valuation_hour"
            ).fetchall(),
            columns=["valuation_hour", "net_worth"],
        )  # fetchall keeps the exact Decimals
    frame["day"] = frame["valuation_hour"].dt.floor("D")
    expected = frame.groupby("day").tail(1)
    r = client.get(
        "/api/v1/profiles/bruno/net-worth",
        params={"range": "all", "granularity": "day"},
        headers=bearer(web, "bruno"),
    )
    assert r.status_code == 200, r.text
    points = r.json()["points"]
    assert [pd.Timestamp(p["hour"]).tz_convert(None) for p in points] == list(
        expected["valuation_hour"]
    )
    assert [Decimal(p["net_worth"]) for p in points] == list(expected["net_worth"])
    hourly = client.get(
        "/api/v1/profiles/bruno/net-worth",
        params={"range": "all", "granularity": "hour"},
        headers=bearer(web, "bruno"),
    ).json()["points"]
    assert len(hourly) == len(frame)


def test_holdings_tree_sums_to_net_worth(web: Web, client: TestClient) -> None:
    body = client.get("/api/v1/profiles/alice/holdings", headers=bearer(web, "alice")).json()
    nodes = body["nodes"]
    accounts = [n for n in nodes if n["level"] == "linked_account"]
    net = client.get("/api/v1/profiles/alice", headers=bearer(web, "alice")).json()["net_worth"]
    assert sum(Decimal(n["value"]["amount"]) for n in accounts) == Decimal(net["amount"])
    by_id = {n["id"]: n for n in nodes}
    for n in nodes:
        if n["parent_id"] is not None:
            assert n["parent_id"] in by_id, n
    for a in accounts:
        subs = [n for n in nodes if n["parent_id"] == a["id"]]
        assert sum(Decimal(s["value"]["amount"]) for s in subs) == Decimal(a["value"]["amount"])


def test_transactions_filter_and_pages(web: Web, client: TestClient) -> None:
    with _published(web.home) as con:
        total = con.execute(
            "select count(*) from marts.fct_transactions where profile_id = 'alice'"
        ).fetchone()
        deposits = con.execute(
            "select count(*) from marts.fct_transactions "
            "where profile_id = 'alice' and kind = 'deposit' and linked_account_id = 'a-bank'"
        ).fetchone()
    assert total and total[0] > 3, "the e2e household has transactions"
    h = bearer(web, "alice")
    first = client.get("/api/v1/profiles/alice/transactions?limit=2", headers=h).json()
    assert first["total"] == total[0] and len(first["items"]) == 2
    seen: list[tuple[str, str]] = []
    offset = 0
    while True:
        page = client.get(
            f"/api/v1/profiles/alice/transactions?limit=7&offset={offset}", headers=h
        ).json()
        if not page["items"]:
            break
        seen += [(t["linked_account_id"], t["transaction_id"]) for t in page["items"]]
        offset += 7
    assert len(seen) == len(set(seen)) == total[0]
    filtered = client.get(
        "/api/v1/profiles/alice/transactions?kind=deposit&account=a-bank&limit=500", headers=h
    ).json()
    assert deposits and filtered["total"] == deposits[0]
    assert {t["kind"] for t in filtered["items"]} <= {"deposit"}
    one = filtered["items"][0] if filtered["items"] else first["items"][0]
    got = client.get(
        f"/api/v1/accounts/{one['linked_account_id']}/transactions/{one['transaction_id']}",
        headers=h,
    )
    assert got.status_code == 200 and got.json() == one


def test_openapi_document(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/profiles/{profile_id}/net-worth" in doc["paths"]
    assert set(doc["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyCookie"}


# ---------------------------------------------------------- authorisation matrix


def _victim_ids(web: Web) -> dict[str, dict[str, str]]:
    """For each profile: one of its linked accounts and one of its transactions."""
    out: dict[str, dict[str, str]] = {}
    with _published(web.home) as con:
        for profile in ("alice", "bruno"):
            row = con.execute(
                "select linked_account_id, transaction_id from marts.fct_transactions "
                "where profile_id = ? order by 1, 2 limit 1",
                [profile],
            ).fetchone()
            assert row is not None, profile
            out[profile] = {"account_id": row[0], "transaction_id": row[1]}
    return out


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path template) of every route of the app's API and pages (the OpenAPI
    document's operations are among them)."""
    out = []
    for route in [*api.router.routes, *linking.router.routes, *pages.router.routes]:
        if not isinstance(route, APIRoute):
            continue
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            out.append((method, route.path))
    doc = client.get("/api/v1/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented <= set(out), documented - set(out)
    return out


def _secret_markers(web: Web, profile: str) -> list[str]:
    """Strings only a view of ``profile``'s data would contain."""
    with _published(web.home) as con:
        names = con.execute(
            "select distinct linked_account_name from marts.mart_linked_account_health "
            "where profile_id = ?",
            [profile],
        ).fetchall()
        nw = con.execute(
            "select net_worth from marts.fct_profile_valuation_hourly where profile_id = ? "
            "order by valuation_hour desc limit 1",
            [profile],
        ).fetchone()
    assert nw is not None
    whole = str(int(abs(nw[0])))
    return [n for (n,) in names] + [whole, f"{int(abs(nw[0])):,}"]


PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/api/v1/openapi.json")}


@pytest.mark.parametrize("who", ["bruno", "carol", "dave", "stranger", "bruno-session"])
def test_nobody_reads_or_changes_another_profile(web: Web, client: TestClient, who: str) -> None:
    """Every route, with alice's ids (and bruno's for dave): never a 2xx, never her data."""
    victims = _victim_ids(web)
    cases = [("alice", victims["alice"])]
    if who == "dave":  # dave sees alice view-only: his foreign profile is bruno's
        cases = [("bruno", victims["bruno"])]
    headers: dict[str, str] = {}
    client.cookies.clear()
    if who == "bruno-session":
        assert sign_in(client, "bruno", PASSWORDS["bruno"]).status_code == 303
    elif who != "stranger":
        headers = bearer(web, who)
    routes = _routes(client)
    assert len(routes) >= 15
    checked = 0
    for victim, ids in cases:
        markers = _secret_markers(web, victim)
        for method, template in routes:
            if (method, template) in PUBLIC:
                continue
            path = (
                template.replace("{profile_id}", victim)
                .replace("{account_id}", ids["account_id"])
                .replace("{transaction_id}", ids["transaction_id"])
            )
            if "{" in path:
                raise AssertionError(f"the matrix does not know a parameter of {template}")
            r = client.request(
                method,
                path,
                params={"profile": victim, "account": ids["account_id"]},
                headers=headers,
                follow_redirects=False,
            )
            checked += 1
            if "{" in template:
                assert r.status_code in (303, 401, 403, 404), (who, method, path, r.status_code)
            # a route without ids (/api/v1/me, a page of one's own) answers for the caller
            # alone; no answer ever shows the victim's data
            for marker in markers:
                assert marker not in r.text, (who, method, path, marker)
    assert checked >= len(routes) - len(PUBLIC)
    # nothing was changed by all of that
    cfg = (web.home / "finbot.yaml").read_text()
    assert "frozen: true" not in cfg
    client.cookies.clear()


def test_view_only_and_read_tokens_cannot_change(web: Web, client: TestClient) -> None:
    victims = _victim_ids(web)
    account = victims["alice"]["account_id"]
    for who in ("dave", "alice"):  # dave: view-only share; alice: her read-only token
        r = client.post(f"/api/v1/accounts/{account}/freeze", headers=bearer(web, who))
        assert r.status_code == 403, (who, r.text)
        # dave reads alice's data
        assert (
            client.get(f"/api/v1/accounts/{account}", headers=bearer(web, who)).status_code == 200
        )
    assert "frozen: true" not in (web.home / "finbot.yaml").read_text()


def test_write_token_freezes_and_unfreezes(web: Web, client: TestClient) -> None:
    account = _victim_ids(web)["alice"]["account_id"]
    h = bearer(web, "alice-write")
    r = client.post(f"/api/v1/accounts/{account}/freeze", headers=h)
    assert r.status_code == 200, r.text
    assert client.get(f"/api/v1/accounts/{account}", headers=h).json()["frozen"] is True
    r = client.post(f"/api/v1/accounts/{account}/unfreeze", headers=h)
    assert r.status_code == 200, r.text
    assert "frozen: true" not in (web.home / "finbot.yaml").read_text()


# ------------------------------------------------------------------------ sign-in


def test_session_cookie_flags_and_csrf(web: Web, client: TestClient) -> None:
    r = sign_in(client, "alice", PASSWORDS["alice"])
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "finbot_session=" in cookie and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert client.get("/api/v1/me").json()["name"] == "alice"
    account = _victim_ids(web)["alice"]["account_id"]
    # the session may change alice's accounts, but only with its CSRF token
    assert client.post(f"/api/v1/accounts/{account}/freeze").status_code == 403
    assert (
        client.post(
            f"/api/v1/accounts/{account}/freeze", headers={"X-CSRF-Token": "wrong"}
        ).status_code
        == 403
    )
    assert client.post("/logout", data={"csrf": "wrong"}).status_code == 403
    assert client.get("/api/v1/me").status_code == 200, "a refused sign-out changes nothing"
    # the sign-in form itself refuses a post without its token
    client.cookies.clear()
    r = client.post("/login", data={"name": "alice", "password": PASSWORDS["alice"], "csrf": "x"})
    assert r.status_code == 403
    assert "finbot_session" not in r.headers.get("set-cookie", "")


def _csrf_of_session(web: Web, sid: str) -> str:
    session = web.store.session(sid)
    assert session is not None
    return session.csrf


def test_sign_out_and_password_change_end_sessions(web: Web, client: TestClient) -> None:
    assert sign_in(client, "bruno", PASSWORDS["bruno"]).status_code == 303
    sid = client.cookies.get("finbot_session")
    assert sid
    r = client.post("/logout", data={"csrf": _csrf_of_session(web, sid)}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()
    client.cookies.set("finbot_session", sid)
    assert client.get("/api/v1/me").status_code == 401, "a signed-out cookie is refused"
    # a password change ends every session
    assert sign_in(client, "bruno", PASSWORDS["bruno"]).status_code == 303
    sid = client.cookies.get("finbot_session")
    assert client.get("/api/v1/me").status_code == 200
    web.store.set_password("bruno", "bruno-new-password")
    client.cookies.clear()
    client.cookies.set("finbot_session", sid or "")
    assert client.get("/api/v1/me").status_code == 401
    assert sign_in(client, "bruno", PASSWORDS["bruno"]).status_code == 401
    assert sign_in(client, "bruno", "bruno-new-password").status_code == 303
    web.store.set_password("bruno", PASSWORDS["bruno"])
    client.cookies.clear()


def test_wrong_passwords_are_rate_limited(web: Web, client: TestClient) -> None:
    for _ in range(MAX_FAILURES_PER_NAME):
        assert sign_in(client, "carol", "not-her-password").status_code == 401
    blocked = sign_in(client, "carol", PASSWORDS["carol"])
    assert blocked.status_code == 429, "even the right password waits out the limit"
    assert "finbot_session" not in blocked.headers.get("set-cookie", "")
    assert blocked.headers["retry-after"]
    # another name is not blocked by carol's failures
    assert sign_in(client, "dave", PASSWORDS["dave"]).status_code == 303
    web.store.clear_failures("name:carol")
    assert sign_in(client, "carol", PASSWORDS["carol"]).status_code == 303
    client.cookies.clear()


def test_a_wrong_or_malformed_token_is_refused(web: Web, client: TestClient) -> None:
    client.cookies.clear()
    real = web.tokens["alice"]
    for token in (real[:-2] + "xx", "fbt_000000000000_" + "a" * 43, "garbage", ""):
        r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
    r = client.get("/api/v1/me", headers={"Authorization": f"Basic {real}"})
    assert r.status_code == 401


def test_the_users_file_holds_no_secret(web: Web) -> None:
    path = web.paths.web / "users.sqlite3"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())
    for secret in [*PASSWORDS.values(), *(t.split("_", 2)[2] for t in web.tokens.values())]:
        assert secret.encode() not in raw
    with sqlite3.connect(path) as db:
        hashes = [h for (h,) in db.execute("select password_hash from users")]
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)


def test_a_new_publish_is_seen_without_a_restart(web: Web, tmp_path: Path) -> None:
    """The publisher renames a new catalog into place: the running app reads it at the
    next request (its earlier answer came from the catalog it had open)."""
    home = tmp_path / "home"
    shutil.copytree(web.home, home)
    paths = HomePaths(home)
    with TestClient(create_app(paths)) as c:
        h = {"Authorization": f"Bearer {web.tokens['bruno']}"}
        before = Decimal(c.get("/api/v1/profiles/bruno", headers=h).json()["net_worth"]["amount"])
        staged = home / "finbot.duckdb.new"
        shutil.copy(home / "finbot.duckdb", staged)
        con = duckdb.connect(str(staged))
        con.execute("set file_search_path = ?", [str(home)])
        con.execute(
            "create table marts.nw as select * replace (net_worth + 1000 as net_worth) "
            "from marts.fct_profile_valuation_hourly"
        )
        con.execute("drop view marts.fct_profile_valuation_hourly")
        con.execute("alter table marts.nw rename to fct_profile_valuation_hourly")
        con.close()
        staged.replace(home / "finbot.duckdb")
        after = Decimal(c.get("/api/v1/profiles/bruno", headers=h).json()["net_worth"]["amount"])
    assert after == before + 1000


def test_performance_by_period_kind_is_the_mart(web: Web, client: TestClient) -> None:
    with _published(web.home) as con:
        counts = dict(
            con.execute(
                "select period_kind, count(*) from marts.fct_performance "
                "where profile_id = 'alice' and level = 'profile' group by 1"
            ).fetchall()
        )
    assert set(counts) == {"trailing", "calendar_month", "calendar_year", "since_first"}
    h = bearer(web, "alice")
    for kind, n in counts.items():
        r = client.get(f"/api/v1/profiles/alice/performance?period_kind={kind}", headers=h)
        assert r.status_code == 200, r.text
        assert len(r.json()) == n and {p["period_kind"] for p in r.json()} == {kind}
    everything = client.get("/api/v1/profiles/alice/performance", headers=h).json()
    assert len(everything) == sum(counts.values())
