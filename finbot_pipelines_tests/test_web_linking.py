"""Adding a linked account from the browser: the provider form, SimpleFIN, Plaid Link.

Through the real ASGI app on a copy of the session's built home, with only the
providers' servers faked (fakes/plaid_server.py, fakes/simplefin_server.py): every
request goes through the production path (the form, `add_account`, the provider's
client, its test fetch, the vault and finbot.yaml). Expected values come from the
fakes' published examples, never from the code under test.
"""

from __future__ import annotations

import base64
import copy
import html
import json
import logging
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.vault import Vault, init_key_file
from finbot_pipelines.web.app import CONTENT_SECURITY_POLICY, create_app
from finbot_pipelines.web.users import UserStore
from finbot_pipelines_tests.conftest import BuiltHome
from finbot_pipelines_tests.fakes.plaid_server import EXAMPLES_DIR, FakePlaid
from finbot_pipelines_tests.fakes.simplefin_server import (
    FakeSimplefin,
    examples,
    without_source,
)

PASSWORDS = {"alice": "alice-secret-pw", "bruno": "bruno-secret-pw", "dave": "dave-secret-pw!"}
LINK_JS = "http://127.0.0.1:9/plaid/link-initialize.js"
#: every account of the fake's three example Items answers (balances, holdings,
#: liabilities: Plaid's published examples), by name: each is one sub-account
PLAID_ACCOUNT_NAMES = {
    a["name"]
    for name in ("accounts_balance_get", "investments_holdings_get", "liabilities_get")
    for a in json.loads((EXAMPLES_DIR / f"plaid_{name}.json").read_text())["accounts"]
}


@dataclass
class Home:
    home: Path
    paths: HomePaths


@pytest.fixture(scope="module")
def home(built_home: BuiltHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A copy of the built home (its config, vault key and marts): alice owns alice,
    bruno owns bruno, dave sees alice view-only."""
    assert built_home.run_success
    target = tmp_path_factory.mktemp("web-linking") / "home"
    shutil.copytree(
        built_home.home, target, ignore=shutil.ignore_patterns("dagster", "warehouse.duckdb*")
    )
    init_key_file(target)  # the built home's accounts have no credentials: no key yet
    paths = HomePaths(target)
    store = UserStore.open(paths)
    store.add_user("alice", PASSWORDS["alice"], profiles={"alice": "owner"})
    store.add_user("bruno", PASSWORDS["bruno"], profiles={"bruno": "owner"})
    store.add_user("dave", PASSWORDS["dave"], profiles={"alice": "view"})
    yield Home(target, paths)


@pytest.fixture(scope="module")
def client(home: Home) -> Iterator[TestClient]:
    with TestClient(create_app(home.paths)) as c:
        yield c


def sign_in(client: TestClient, name: str) -> None:
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, page.text
    r = client.post(
        "/login",
        data={"name": name, "password": PASSWORDS[name], "csrf": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, text
    return found.group(1)


def accounts(home: Home) -> dict[str, dict[str, Any]]:
    cfg = yaml.safe_load(home.paths.config.read_text())
    return {a["id"]: a for a in cfg["linked_accounts"]}


def vault_names(home: Home) -> set[str]:
    return set(Vault.open(home.home).names())


def error_of(text: str) -> str:
    found = re.search(r'data-testid="(?:add-account|plaid)-error">([^<]*)<', text)
    assert found, text
    return html.unescape(found.group(1))


def add(client: TestClient, profile: str, provider: str, **fields: str) -> httpx.Response:
    form = client.get(f"/p/{profile}/accounts/add", params={"provider": provider})
    assert form.status_code == 200, form.text
    return client.post(
        f"/p/{profile}/accounts/add",
        data={"csrf": csrf_of(form.text), "provider": provider, **fields},
    )


# ------------------------------------------------------------------ the provider form


def test_the_form_lists_the_providers_and_asks_for_secrets_hidden(client: TestClient) -> None:
    sign_in(client, "alice")
    first = client.get("/p/alice/accounts/add")
    assert first.status_code == 200
    assert 'data-testid="provider-select"' in first.text
    assert 'value="dummy"' in first.text and 'value="simplefin"' in first.text
    assert 'value="bittrex"' not in first.text  # retired
    kraken = client.get("/p/alice/accounts/add?provider=kraken").text
    assert re.search(r'name="cred.api_secret" type="password"', kraken)
    assert 'data-testid="add-account-form"' in kraken and 'name="csrf"' in kraken
    sf = client.get("/p/alice/accounts/add?provider=simplefin").text
    assert re.search(r'name="cred.setup_token" type="password"', sf)
    assert "cred.access_url" not in sf  # the setup token is asked, not the access URL
    plaid = client.get("/p/alice/accounts/add?provider=plaid", follow_redirects=False)
    assert plaid.status_code == 303
    assert plaid.headers["location"] == "/p/alice/accounts/add/plaid"


def test_a_dummy_account_is_added_once(client: TestClient, home: Home) -> None:
    sign_in(client, "alice")
    r = add(
        client,
        "alice",
        "dummy",
        id="web-dummy",
        name="Web dummy",
        **{"option.sub_accounts": "[credit_card]"},
    )
    assert r.status_code == 200, r.text
    assert 'data-testid="added-account-id">web-dummy<' in r.text
    rows = re.findall(r'data-testid="added-sub-account">\s*<td>([^<]+)</td>', r.text)
    assert rows == ["credit-card"]  # the dummy's one card account, the kind asked for
    saved = accounts(home)["web-dummy"]
    assert saved["provider"] == "dummy" and saved["profile"] == "alice"
    assert saved["name"] == "Web dummy"
    assert saved["options"] == {"sub_accounts": ["credit_card"]}
    assert "credentials" not in saved
    before = home.paths.config.read_text()
    again = add(client, "alice", "dummy", id="web-dummy", name="Another name")
    assert again.status_code == 409
    assert "a linked account 'web-dummy' already exists" in error_of(again.text)
    assert 'value="Another name"' in again.text  # the inputs are kept
    assert home.paths.config.read_text() == before


def test_a_missing_or_wrong_field_is_named(client: TestClient, home: Home) -> None:
    sign_in(client, "alice")
    before = home.paths.config.read_text()
    no_id = add(client, "alice", "dummy", name="No id")
    assert no_id.status_code == 400
    assert error_of(no_id.text).startswith("id: required")
    assert 'value="No id"' in no_id.text
    bad = add(client, "alice", "dummy", id="web-bad", **{"option.scale": "[1, 2]"})
    assert bad.status_code == 400
    assert "options.scale" in error_of(bad.text)
    assert 'aria-invalid="true"' in bad.text
    secret = "k-" + "s3cr3t" * 4
    creds = add(client, "alice", "kraken", id="web-kraken", **{"cred.api_key": secret})
    assert creds.status_code == 400
    assert error_of(creds.text) == "missing credential field(s): api_secret"
    assert secret not in creds.text  # a typed secret is never sent back
    assert home.paths.config.read_text() == before
    assert "web-kraken" not in vault_names(home)


def test_without_csrf_or_write_access_nothing_is_added(client: TestClient, home: Home) -> None:
    before = home.paths.config.read_text()
    sign_in(client, "alice")
    r = client.post("/p/alice/accounts/add", data={"provider": "dummy", "id": "web-nocsrf"})
    assert r.status_code == 403
    sign_in(client, "dave")  # alice's profile, view-only
    assert client.get("/p/alice/accounts/add").status_code == 403
    sign_in(client, "bruno")
    assert client.get("/p/alice/accounts/add").status_code == 404
    assert client.get("/p/nobody/accounts/add").status_code == 404
    client.cookies.clear()
    anon = client.get("/p/alice/accounts/add", follow_redirects=False)
    assert anon.status_code == 303 and anon.headers["location"].startswith("/login")
    assert home.paths.config.read_text() == before


# ------------------------------------------------------------------ SimpleFIN


def _example(name: str) -> dict[str, Any]:
    value: dict[str, Any] = without_source(copy.deepcopy(examples()[name]))
    return value


def test_simplefin_setup_token_is_claimed_and_the_account_added(
    client: TestClient, home: Home
) -> None:
    sign_in(client, "alice")
    with FakeSimplefin() as fake:
        fake.state.account_set = _example("v2_account_set")
        token = fake.setup_token()
        r = add(client, "alice", "simplefin", id="web-sf", **{"cred.setup_token": token})
        assert r.status_code == 200, r.text
        rows = re.findall(r'data-testid="added-sub-account">\s*<td>([^<]+)</td>', r.text)
        assert rows == [a["id"] for a in _example("v2_account_set")["accounts"]]
        assert Vault.open(home.home).get_json("web-sf") == {"access_url": fake.access_url}
        assert token not in r.text and fake.state.password not in r.text
        assert fake.access_url not in r.text
        assert accounts(home)["web-sf"]["credentials"] == "web-sf"


def test_a_bad_setup_token_stores_nothing(client: TestClient, home: Home) -> None:
    sign_in(client, "alice")
    before = home.paths.config.read_text()
    with FakeSimplefin() as fake:
        spent = fake.setup_token()
        assert httpx.post(base64.b64decode(spent).decode()).status_code == 200
        r = add(client, "alice", "simplefin", id="web-sf-bad", **{"cred.setup_token": spent})
        assert r.status_code == 422
        assert "nothing was saved" in error_of(r.text)
        assert spent not in r.text
        garbage = add(
            client, "alice", "simplefin", id="web-sf-bad", **{"cred.setup_token": "not a token"}
        )
        assert garbage.status_code in (400, 422)
        assert error_of(garbage.text) and "not a token" not in garbage.text
    assert home.paths.config.read_text() == before
    assert "web-sf-bad" not in vault_names(home)


def test_a_claim_whose_test_fetch_fails_keeps_the_credentials(
    client: TestClient, home: Home
) -> None:
    sign_in(client, "alice")
    with FakeSimplefin() as fake:
        fake.state.status = 402
        r = add(
            client,
            "alice",
            "simplefin",
            id="web-sf-402",
            **{"cred.setup_token": fake.setup_token()},
        )
        assert r.status_code == 422
        assert "test fetch failed" in error_of(r.text)
        assert 'data-testid="kept-credentials"' in r.text
        assert Vault.open(home.home).get_json("web-sf-402") == {"access_url": fake.access_url}
        assert "web-sf-402" not in accounts(home)
        assert re.search(r'name="stored" value="1" checked', r.text)
        fake.state.status = None
        fake.state.account_set = _example("v1_account_set")
        done = add(
            client,
            "alice",
            "simplefin",
            id="web-sf-402",
            stored="1",
            credentials_name="web-sf-402",
        )
        assert done.status_code == 200, done.text
        assert "read from the vault" in done.text
        assert accounts(home)["web-sf-402"]["credentials"] == "web-sf-402"


# ------------------------------------------------------------------ Plaid


@pytest.fixture
def plaid() -> Iterator[FakePlaid]:
    with FakePlaid() as fake:
        yield fake


def _no_plaid_secret(fake: FakePlaid, *texts: str) -> None:
    tokens = [fake.client_id, fake.secret, *fake.access_tokens]
    for text in texts:
        for token in tokens:
            assert token not in text


def test_plaid_sandbox_test_institution(
    client: TestClient, home: Home, plaid: FakePlaid, caplog: pytest.LogCaptureFixture
) -> None:
    sign_in(client, "alice")
    form = client.get("/p/alice/accounts/add/plaid")
    assert form.status_code == 200 and 'data-testid="plaid-form"' in form.text
    assert "Content-Security-Policy" in form.headers
    assert form.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    with caplog.at_level(logging.DEBUG):
        r = client.post(
            "/p/alice/accounts/add/plaid",
            data={
                "csrf": csrf_of(form.text),
                "id": "web-plaid-sbx",
                "name": "Sandbox bank",
                "client_id": plaid.client_id,
                "secret": plaid.secret,
                "environment": "sandbox",
                "test_institution": "1",
                "api_url": plaid.url,
            },
        )
    assert r.status_code == 200, r.text
    assert 'data-testid="added-account-id">web-plaid-sbx<' in r.text
    names = re.findall(r'data-testid="added-sub-account">\s*<td>[^<]+</td><td>([^<]+)<', r.text)
    assert sorted(names) == sorted(PLAID_ACCOUNT_NAMES)
    stored = Vault.open(home.home).get_json("web-plaid-sbx")
    new_tokens = plaid.access_tokens - {plaid.access_token}
    assert len(new_tokens) == 1 and stored["access_token"] in new_tokens
    assert stored == {
        "client_id": plaid.client_id,
        "secret": plaid.secret,
        "access_token": stored["access_token"],
        "environment": "sandbox",
    }
    assert plaid.calls("/sandbox/public_token/create") == 1
    assert plaid.calls("/item/public_token/exchange") == 1
    assert accounts(home)["web-plaid-sbx"]["options"] == {"api_url": plaid.url}
    _no_plaid_secret(plaid, r.text, caplog.text, *(str(rec.args) for rec in caplog.records))


def test_plaid_sandbox_needs_the_sandbox_environment(client: TestClient, plaid: FakePlaid) -> None:
    sign_in(client, "alice")
    form = client.get("/p/alice/accounts/add/plaid")
    r = client.post(
        "/p/alice/accounts/add/plaid",
        data={
            "csrf": csrf_of(form.text),
            "id": "web-plaid-x",
            "client_id": plaid.client_id,
            "secret": plaid.secret,
            "environment": "production",
            "test_institution": "1",
            "api_url": plaid.url,
        },
    )
    assert r.status_code == 400
    assert error_of(r.text).startswith("environment:")
    _no_plaid_secret(plaid, r.text)
    missing = client.post(
        "/p/alice/accounts/add/plaid",
        data={"csrf": csrf_of(form.text), "id": "web-plaid-x", "client_id": plaid.client_id},
    )
    assert missing.status_code == 400 and error_of(missing.text) == "secret: required"
    assert plaid.calls("/sandbox/public_token/create") == 0


def _start_link(client: TestClient, plaid: FakePlaid, account_id: str) -> str:
    """POST the keys; the pending id of the Link page it redirects to."""
    form = client.get("/p/alice/accounts/add/plaid")
    r = client.post(
        "/p/alice/accounts/add/plaid",
        data={
            "csrf": csrf_of(form.text),
            "id": account_id,
            "client_id": plaid.client_id,
            "secret": plaid.secret,
            "environment": "sandbox",
            "api_url": plaid.url,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("/p/alice/accounts/add/plaid?pending=")
    _no_plaid_secret(plaid, location, str(r.headers), str(client.cookies))
    return location.split("pending=", 1)[1]


def test_plaid_link_page_and_exchange(
    client: TestClient,
    home: Home,
    plaid: FakePlaid,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("FINBOT_PLAID_LINK_JS", LINK_JS)
    sign_in(client, "alice")
    with caplog.at_level(logging.DEBUG):
        pending = _start_link(client, plaid, "web-plaid-link")
        page = client.get(f"/p/alice/accounts/add/plaid?pending={pending}")
    assert page.status_code == 200, page.text
    assert plaid.link_tokens and f'data-link-token="{plaid.link_tokens[-1]}"' in page.text
    assert f'<script src="{LINK_JS}" nonce="' in page.text
    assert '<script src="/static/link.js" nonce="' in page.text
    assert "<script>" not in page.text  # no inline script
    csp = page.headers["content-security-policy"]
    nonce = re.search(r'<script src="/static/link\.js" nonce="([^"]+)">', page.text)
    assert nonce, "the page's scripts carry the response's nonce"
    assert f"script-src 'self' 'nonce-{nonce.group(1)}' {LINK_JS};" in csp
    assert f"style-src-elem 'self' 'nonce-{nonce.group(1)}';" in csp
    assert "frame-src http://127.0.0.1:9;" in csp
    assert "frame-ancestors 'none'" in csp
    # only that page: the keys form and the other pages keep the app's policy
    other = client.get("/p/alice/accounts/add")
    assert other.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert client.get("/static/link.js").status_code == 200
    _no_plaid_secret(plaid, page.text)
    csrf = csrf_of(page.text)
    body = {"pending_id": pending, "public_token": plaid.issue_public_token()}
    url = "/p/alice/accounts/add/plaid/exchange"
    assert client.post(url, json=body).status_code == 403  # no CSRF token
    assert client.post(url, json=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    sign_in(client, "dave")  # view-only on alice
    assert client.post(url, json=body, headers={"X-CSRF-Token": csrf}).status_code == 403
    sign_in(client, "bruno")  # does not see alice
    assert client.post(url, json=body, headers={"X-CSRF-Token": csrf}).status_code == 404
    bruno_csrf = csrf_of(client.get("/p/bruno/accounts/add").text)
    other_profile = client.post(
        "/p/bruno/accounts/add/plaid/exchange", json=body, headers={"X-CSRF-Token": bruno_csrf}
    )
    assert other_profile.status_code == 404  # alice's pending link is not bruno's
    assert plaid.calls("/item/public_token/exchange") == 0
    sign_in(client, "alice")
    csrf = csrf_of(client.get("/p/alice/accounts/add").text)
    with caplog.at_level(logging.DEBUG):
        r = client.post(url, json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["ok"] is True and answer["account_id"] == "web-plaid-link"
    assert "web-plaid-link" in answer["message"]
    assert answer["sub_accounts"] == len(PLAID_ACCOUNT_NAMES)
    stored = Vault.open(home.home).get_json("web-plaid-link")
    assert stored["access_token"] in plaid.access_tokens - {plaid.access_token}
    assert (stored["client_id"], stored["secret"]) == (plaid.client_id, plaid.secret)
    assert stored["environment"] == "sandbox"
    assert accounts(home)["web-plaid-link"]["provider"] == "plaid"
    _no_plaid_secret(plaid, r.text, caplog.text, *(str(rec.args) for rec in caplog.records))
    again = client.post(url, json=body, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 404 and "start again" in again.json()["message"]


def test_an_expired_or_unknown_pending_link(
    client: TestClient, home: Home, plaid: FakePlaid
) -> None:
    sign_in(client, "alice")
    pending = _start_link(client, plaid, "web-plaid-late")
    csrf = csrf_of(client.get("/p/alice/accounts/add").text)
    url = "/p/alice/accounts/add/plaid/exchange"
    unknown = client.post(
        url, json={"pending_id": "nope", "public_token": "public-sandbox-x"},
        headers={"X-CSRF-Token": csrf},
    )  # fmt: skip
    assert unknown.status_code == 404 and "start again" in unknown.json()["message"]
    page = client.get("/p/alice/accounts/add/plaid?pending=nope")
    assert page.status_code == 404 and "unknown or has expired" in error_of(page.text)
    links = client.app.state.plaid_links  # type: ignore[attr-defined]
    monkey_now = time.monotonic() + 31 * 60
    real_clock = links.clock
    links.clock = lambda: monkey_now
    try:
        late = client.post(
            url,
            json={"pending_id": pending, "public_token": plaid.issue_public_token()},
            headers={"X-CSRF-Token": csrf},
        )
        assert late.status_code == 410 and "expired" in late.json()["message"]
        assert client.get(f"/p/alice/accounts/add/plaid?pending={pending}").status_code == 404
        late_pending = _start_link(client, plaid, "web-plaid-late")
        links.clock = lambda: monkey_now + 31 * 60
        late_page = client.get(f"/p/alice/accounts/add/plaid?pending={late_pending}")
        assert late_page.status_code == 410 and "expired" in error_of(late_page.text)
    finally:
        links.clock = real_clock
    assert plaid.calls("/item/public_token/exchange") == 0
    assert "web-plaid-late" not in accounts(home)
    bad = client.post(url, content=b"not json", headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 400 and bad.json()["ok"] is False
