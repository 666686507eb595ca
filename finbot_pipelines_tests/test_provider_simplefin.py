"""The SimpleFIN provider against a fake SimpleFIN server on 127.0.0.1.

The fake (``fakes/simplefin_server.py``) serves the protocol's published examples
(``data/simplefin/protocol_examples.json``, copied from
https://www.simplefin.org/protocol.html and its v2 draft). Every fetch goes through
the production path (``fetch_snapshot``: the models, the client over HTTP, the
mapping, the base's checks); only the clock is the test's. Expected figures are
worked out here by hand from the example data.
"""

from __future__ import annotations

import base64
import copy
import json
import stat
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from finbot_pipelines.config.vault import Vault
from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import FetchContext, fetch_snapshot
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    CredentialsError,
    Item,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
    TransientError,
)
from finbot_pipelines.providers.simplefin.client import claim_credentials, decode_setup_token
from finbot_pipelines.providers.simplefin.options import SPEC, SimplefinOptions, SimplefinSetup
from finbot_pipelines.providers.simplefin.provider import STATE_FILE, SimplefinProvider
from finbot_pipelines_tests.conftest import demo_cli_home, invoke_cli
from finbot_pipelines_tests.fakes.simplefin_server import (
    FakeSimplefin,
    examples,
    without_source,
)

EX = examples()
#: the examples' transaction posted at 793090572 = 1995-02-18 06:56:12 UTC; the clock
#: of most tests is a little later, so that a 60-day history holds it
T0 = datetime(1995, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeSimplefin]:
    with FakeSimplefin() as server:
        yield server


def example(name: str) -> dict[str, Any]:
    value: dict[str, Any] = without_source(copy.deepcopy(EX[name]))
    return value


def fetch(
    fake: FakeSimplefin,
    tmp_path: Path,
    clock: Clock | None = None,
    options: dict[str, Any] | None = None,
    access_url: str | None = None,
) -> Snapshot:
    provider = SimplefinProvider(clock or Clock(T0))
    ctx = FetchContext("sf", T0.replace(tzinfo=None), state_dir=tmp_path / "state" / "sf")
    creds = {"access_url": access_url or fake.access_url}
    return fetch_snapshot(SPEC, provider, ctx, options or {}, creds)


# --------------------------------------------------------------------------- setup token


def test_the_published_demo_token_decodes_to_its_claim_url() -> None:
    # protocol.md, "3. Claim the Access URL": the token and the URL it decodes to
    token = "aHR0cHM6Ly9icmlkZ2Uuc2ltcGxlZmluLm9yZy9zaW1wbGVmaW4vY2xhaW0vZGVtbw=="
    assert decode_setup_token(token) == "https://bridge.simplefin.org/simplefin/claim/demo"
    assert decode_setup_token(f"  {token.rstrip('=')}\n") == decode_setup_token(token)


@pytest.mark.parametrize(
    "token",
    ["", "not base64 at all!", base64.b64encode(b"ftp://x/claim/1").decode(),
     base64.b64encode(b"http://example.org/simplefin/claim/abc").decode()],
)  # fmt: skip
def test_a_bad_setup_token_is_refused_without_quoting_it(token: str) -> None:
    with pytest.raises(CredentialsError) as exc:
        decode_setup_token(token)
    assert (token not in str(exc.value)) or not token
    assert "abc" not in str(exc.value)


def test_a_token_is_claimed_once(fake: FakeSimplefin) -> None:
    token = fake.setup_token()
    options = SimplefinOptions()
    creds = claim_credentials(SimplefinSetup(setup_token=token), options)
    assert creds == {"access_url": fake.access_url}
    with pytest.raises(AuthenticationFailure) as again:
        claim_credentials(SimplefinSetup(setup_token=token), options)
    message = str(again.value)
    assert "HTTP 403" in message and "works only once" in message
    assert "disable it" in message  # the checklist: the token may be compromised
    assert token not in message and fake.state.password not in message
    assert [status for _, status in fake.state.claims] == [200, 403]
    unknown = base64.b64encode(f"{fake.root}/claim/NO-SUCH-TOKEN".encode()).decode()
    with pytest.raises(AuthenticationFailure) as exc:
        claim_credentials(SimplefinSetup(setup_token=unknown), options)
    assert "NO-SUCH-TOKEN" not in str(exc.value)


# --------------------------------------------------------------------------- account sets


def test_the_v1_account_set_example(fake: FakeSimplefin, tmp_path: Path) -> None:
    fake.state.account_set = example("v1_account_set")
    snap = fetch(fake, tmp_path)
    (sub,) = snap.sub_accounts
    assert (sub.id, sub.name, sub.currency, sub.account_type) == (
        "2930002",
        "Savings (mybank.com)",  # org has a domain and no name
        "USD",
        "depository",
    )
    assert sub.items == (Item("Balance", "asset", "cash", "cash", Decimal("100.23")),)
    (txn,) = snap.transactions
    assert txn.id == "2930002:12394832938403"
    assert txn.amount == Decimal("-33293.43") and txn.currency == "USD"
    assert (txn.posted, txn.pending, txn.kind) == (date(1995, 2, 18), False, "withdrawal")
    assert txn.description == "Uncle Frank's Bait Shop"
    assert snap.warnings == ()
    (query,) = fake.state.requests
    # the first fetch asks for 60 days (the default history): T0 - 60 days
    assert query["start-date"] == [str(int(datetime(1994, 12, 31, 12, tzinfo=UTC).timestamp()))]
    assert query["pending"] == ["1"] and query["version"] == ["2"]
    assert "end-date" not in query


def test_the_v1_errors_strings_are_warnings_and_the_account_stays(
    fake: FakeSimplefin, tmp_path: Path
) -> None:
    fake.state.account_set = example("v1_quickstart_errors")
    snap = fetch(fake, tmp_path)
    assert [s.id for s in snap.sub_accounts] == ["2930002"]
    (warning,) = snap.warnings
    assert warning.code == "upstream" and "You must reauthenticate." in warning.message


def test_the_v2_errlist_and_connections(fake: FakeSimplefin, tmp_path: Path) -> None:
    fake.state.account_set = example("v2_quickstart_errlist")
    snap = fetch(fake, tmp_path)
    (sub,) = snap.sub_accounts
    assert sub.name == "Savings (My Bank - James)"  # from connections, not conn_name
    assert sub.items[0].value == Decimal("100.23")
    (warning,) = snap.warnings
    assert warning.code == "upstream"
    assert "con.auth" in warning.message and "Authentication required" in warning.message
    assert "My Bank - James" in warning.message and "sign in to it again" in warning.message


def test_the_v2_account_set_example(fake: FakeSimplefin, tmp_path: Path) -> None:
    fake.state.account_set = example("v2_account_set")
    snap = fetch(fake, tmp_path)
    (sub,) = snap.sub_accounts
    assert sub.name == "Savings (My Bank - Jill)"
    assert [t.amount for t in snap.transactions] == [Decimal("-33293.43")]


def test_the_v2_error_examples(fake: FakeSimplefin, tmp_path: Path) -> None:
    gen_auth, con_auth, act_failed = EX["v2_error_examples"]["errors"]
    body = example("v2_account_set")
    body["errlist"] = [con_auth, act_failed]
    fake.state.account_set = body
    snap = fetch(fake, tmp_path)
    assert [s.id for s in snap.sub_accounts] == ["2930002"]
    messages = [w.message for w in snap.warnings]
    assert len(messages) == 2 and all(w.code == "upstream" for w in snap.warnings)
    assert "Authentication failed for My Bank - Jim" in messages[0]
    assert "Failed to get all transactions. Try again later." in messages[1]
    assert "ACT-1982398-12398192839182398123" in messages[1]
    assert "not in the answer" in messages[1]
    body["errlist"] = [gen_auth]
    (tmp_path / "state" / "sf" / STATE_FILE).unlink()
    with pytest.raises(AuthenticationFailure, match="No credentials provided"):
        fetch(fake, tmp_path)


def test_errors_without_any_account_fail(fake: FakeSimplefin, tmp_path: Path) -> None:
    fake.state.account_set = {"errors": ["You must reauthenticate."], "accounts": []}
    with pytest.raises(ProviderPayloadError, match="You must reauthenticate"):
        fetch(fake, tmp_path)


def test_pending_transactions(fake: FakeSimplefin, tmp_path: Path) -> None:
    body = example("v1_account_set")
    pending = example("v1_pending_transaction")  # "pending": true, posted 793090572
    zero = {"id": "P-2", "posted": 0, "amount": "12.00", "description": "Refund"}
    body["accounts"][0]["transactions"] += [{**pending, "id": "P-1"}, zero]
    fake.state.account_set = body
    snap = fetch(fake, tmp_path)
    by_id = {t.id: t for t in snap.transactions}
    assert set(by_id) == {"2930002:12394832938403", "2930002:P-1", "2930002:P-2"}
    for tid in ("2930002:P-1", "2930002:P-2"):
        assert by_id[tid].pending and by_id[tid].posted is None
    assert by_id["2930002:P-1"].category == "food"
    assert by_id["2930002:P-2"].kind == "deposit" and by_id["2930002:P-2"].amount == 12
    # without pending transactions, the server is not asked for them
    snap = fetch(fake, tmp_path / "other", options={"pending": False})
    assert "pending" not in fake.state.requests[-1]
    assert [t.id for t in snap.transactions] == ["2930002:12394832938403"]


def test_holdings_and_the_cash_remainder(fake: FakeSimplefin, tmp_path: Path) -> None:
    body = example("v2_account_set")
    body["accounts"].append(example("holdings_extension"))
    fake.state.account_set = body
    snap = fetch(fake, tmp_path)
    brokerage = next(s for s in snap.sub_accounts if s.id == "ACT-brokerage-0001")
    assert brokerage.account_type == "investment"
    # balance 15342.67 - (10250.40 + 3892.27 = 14142.67) = 1200.00 of cash
    assert brokerage.items == (
        Item("Vanguard Total Stock Market ETF", "asset", "other", "security",
             Decimal("10250.40"), units=Decimal("40.5"), symbol="VTI"),
        Item("Apple Inc.", "asset", "other", "security", Decimal("3892.27"),
             units=Decimal("20"), symbol="AAPL"),
        Item("Cash", "asset", "cash", "cash", Decimal("1200.00")),
    )  # fmt: skip
    assert sum(i.value for i in brokerage.items if i.value is not None) == Decimal("15342.67")


def test_holdings_worth_more_than_the_balance_warn(fake: FakeSimplefin, tmp_path: Path) -> None:
    account = example("holdings_extension")
    account["balance"] = "14000.00"  # the holdings sum to 14142.67
    fake.state.account_set = {"errlist": [], "connections": [], "accounts": [account]}
    snap = fetch(fake, tmp_path)
    assert [i.name for i in snap.sub_accounts[0].items] == [
        "Vanguard Total Stock Market ETF",
        "Apple Inc.",
    ]
    (warning,) = snap.warnings
    assert warning.code == "reconciliation"
    assert "14000.00" in warning.message and "14142.67" in warning.message


def test_a_card_owed_is_a_liability(fake: FakeSimplefin, tmp_path: Path) -> None:
    card = example("v2_account_set")["accounts"][0]
    card.update(id="ACT-card", name="Visa Signature Card", balance="-512.30", transactions=[])
    fake.state.account_set = {"errlist": [], "accounts": [card]}
    (sub,) = fetch(fake, tmp_path).sub_accounts
    assert sub.account_type == "credit"
    assert sub.items == (Item("Balance", "liability", "other", "credit_card", Decimal("-512.30")),)


def test_a_custom_currency_account_is_skipped(fake: FakeSimplefin, tmp_path: Path) -> None:
    miles = example("v1_custom_currency_account")
    miles["id"] = "MILES"
    body = example("v1_account_set")
    body["accounts"].append(miles)
    fake.state.account_set = body
    snap = fetch(fake, tmp_path)
    assert [s.id for s in snap.sub_accounts] == ["2930002"]
    (warning,) = snap.warnings
    assert warning.code == "skipped" and "custom currency" in warning.message
    fake.state.account_set = {"errors": [], "accounts": [miles]}
    with pytest.raises(ProviderPayloadError, match="no account finbot can value"):
        fetch(fake, tmp_path / "again")


# --------------------------------------------------------------------------- the quota


def test_hourly_fetches_within_refresh_hours_make_one_request(
    fake: FakeSimplefin, tmp_path: Path
) -> None:
    fake.state.account_set = example("v1_account_set")
    clock = Clock(T0)
    snaps = []
    for hour in range(6):  # the default refresh_hours is 6: hours 0..5 reuse the answer
        clock.now = T0 + timedelta(hours=hour, minutes=5)
        snaps.append(fetch(fake, tmp_path, clock))
    assert fake.account_requests == 1
    assert all(s == snaps[0] for s in snaps)
    state = tmp_path / "state" / "sf" / STATE_FILE
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    text = state.read_text()
    for secret in (
        fake.access_url,
        fake.state.password,
        fake.state.username,
        base64.b64encode(f"{fake.state.username}:{fake.state.password}".encode()).decode(),
    ):
        assert secret not in text
    clock.now = T0 + timedelta(hours=6, minutes=5)  # 6 hours after the first request
    fetch(fake, tmp_path, clock)
    assert fake.account_requests == 2
    # the second request asks from the first request's time minus 7 days of overlap
    first = T0 + timedelta(minutes=5)
    expected = int((first - timedelta(days=7)).timestamp())
    assert fake.state.requests[1]["start-date"] == [str(expected)]


def test_failed_requests_count_against_the_daily_budget(
    fake: FakeSimplefin, tmp_path: Path
) -> None:
    fake.state.status = 503
    clock = Clock(T0)
    for _ in range(20):  # 20 failing requests (retries, say) within 24 hours
        with pytest.raises(TransientError):
            fetch(fake, tmp_path, clock)
        clock.now += timedelta(minutes=30)
    with pytest.raises(RateLimited, match="at most 24 a day") as exc:
        fetch(fake, tmp_path, clock)
    assert "1995-03-02 12:00 UTC" in str(exc.value)  # 24 hours after the first request
    assert fake.account_requests == 20
    fake.state.status = None
    fake.state.account_set = example("v1_account_set")
    clock.now = T0 + timedelta(hours=24, minutes=1)  # the first request has aged out
    assert fetch(fake, tmp_path, clock).sub_accounts[0].id == "2930002"
    assert fake.account_requests == 21
    log = tmp_path / "state" / "sf" / "simplefin-requests.json"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_beyond_the_budget_the_last_answer_is_used(fake: FakeSimplefin, tmp_path: Path) -> None:
    fake.state.account_set = example("v1_account_set")
    clock = Clock(T0)
    first = fetch(fake, tmp_path, clock, options={"refresh_hours": 1})
    # every hour is due (refresh_hours 1), but 20 a day at most: 23 more fetches
    # 61 minutes apart stay within 24 hours (23 * 61 = 1403 minutes) of the first
    for _ in range(23):
        clock.now += timedelta(minutes=61)
        snap = fetch(fake, tmp_path, clock, options={"refresh_hours": 1})
        assert snap.sub_accounts == first.sub_accounts
    assert fake.account_requests == 20


def test_the_saved_answer_is_not_used_for_other_credentials(
    fake: FakeSimplefin, tmp_path: Path
) -> None:
    fake.state.account_set = example("v1_account_set")
    fetch(fake, tmp_path)
    other = fake.access_url.replace(fake.state.password, "another-password")
    with pytest.raises(AuthenticationFailure):
        fetch(fake, tmp_path, access_url=other)  # asked the server, which refused it
    assert fake.account_requests == 2


def test_refresh_hours_is_bounded() -> None:
    for bad in (0, 169, 1.5):
        assert SPEC.option_issues({"refresh_hours": bad})
    assert SPEC.option_issues({"history_days": 366})
    assert not SPEC.option_issues({"refresh_hours": 24, "history_days": 30})


def test_a_pending_transaction_no_longer_listed_is_removed(
    fake: FakeSimplefin, tmp_path: Path
) -> None:
    body = example("v1_account_set")
    pending = {**example("v1_pending_transaction"), "id": "P-1"}
    body["accounts"][0]["transactions"].append(pending)
    fake.state.account_set = body
    clock = Clock(T0)
    assert fetch(fake, tmp_path, clock).removed_transaction_ids == ()
    # it posted a day before the clock, under an id of its own (the next request asks
    # from T0 - 7 days, so a 1995-02-18 transaction is no longer asked for)
    when = int((T0 - timedelta(days=1)).timestamp())
    posted = {"id": "T-2", "posted": when, "amount": "-33293.43",
              "description": "Uncle Frank's Bait Shop"}  # fmt: skip
    body["accounts"][0]["transactions"] = [body["accounts"][0]["transactions"][0], posted]
    clock.now = T0 + timedelta(hours=7)
    snap = fetch(fake, tmp_path, clock)
    assert snap.removed_transaction_ids == ("2930002:P-1",)
    assert [t.id for t in snap.transactions] == ["2930002:T-2"]
    assert snap.transactions[0].posted == date(1995, 2, 28)
    clock.now = T0 + timedelta(hours=8)  # the same answer again: the same snapshot
    assert fetch(fake, tmp_path, clock) == snap and fake.account_requests == 2


def test_nothing_is_removed_from_an_account_the_server_reports_an_error_for(
    fake: FakeSimplefin, tmp_path: Path
) -> None:
    body = example("v2_account_set")
    pending = {**example("v1_pending_transaction"), "id": "P-1"}
    body["accounts"][0]["transactions"].append(pending)
    fake.state.account_set = body
    clock = Clock(T0)
    fetch(fake, tmp_path, clock)
    body["accounts"][0]["transactions"] = []
    body["errlist"] = [{"code": "act.missingdata", "msg": "Incomplete transaction listing.",
                        "account_id": "2930002"}]  # fmt: skip
    clock.now = T0 + timedelta(hours=7)
    snap = fetch(fake, tmp_path, clock)
    assert snap.removed_transaction_ids == ()
    assert [w.code for w in snap.warnings] == ["upstream"]


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("status", "words"), [(402, "payment required"), (403, "access refused")])
def test_payment_required_and_revoked_are_authentication_failures(
    fake: FakeSimplefin, tmp_path: Path, status: int, words: str
) -> None:
    fake.state.status = status
    with pytest.raises(AuthenticationFailure) as exc:
        fetch(fake, tmp_path)
    assert words in str(exc.value) and f"HTTP {status}" in str(exc.value)
    assert fake.state.password not in str(exc.value)
    assert not (tmp_path / "state" / "sf" / STATE_FILE).exists()


def test_a_server_error_is_transient(fake: FakeSimplefin, tmp_path: Path) -> None:
    fake.state.status = 503
    with pytest.raises(TransientError):
        fetch(fake, tmp_path)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda a: a.update(balance="one hundred"), "account '2930002': balance"),
        (lambda a: a.pop("balance-date"), "account '2930002': balance-date is missing"),
        (lambda a: a["transactions"][0].pop("amount"), "transaction '12394832938403': amount"),
        (lambda a: a.update(currency="US dollars"), "account '2930002': currency"),
    ],
)
def test_a_bad_payload_names_the_field(
    fake: FakeSimplefin, tmp_path: Path, change: Any, fragment: str
) -> None:
    body = example("v1_account_set")
    change(body["accounts"][0])
    fake.state.account_set = body
    with pytest.raises(ProviderPayloadError) as exc:
        fetch(fake, tmp_path)
    assert fragment in str(exc.value)
    assert not (tmp_path / "state" / "sf" / STATE_FILE).exists()  # a bad answer is not kept


def test_a_body_that_is_not_an_account_set(fake: FakeSimplefin, tmp_path: Path) -> None:
    fake.state.raw_body = "<html>maintenance</html>"
    with pytest.raises(ProviderPayloadError, match="not JSON"):
        fetch(fake, tmp_path)
    fake.state.raw_body = json.dumps({"errors": []})
    with pytest.raises(ProviderPayloadError, match="no accounts list"):
        fetch(fake, tmp_path)


def test_an_echoing_server_gets_no_credential_into_the_message(
    fake: FakeSimplefin, tmp_path: Path
) -> None:
    fake.state.echo = True
    with pytest.raises(ProviderPayloadError) as exc:
        fetch(fake, tmp_path)
    message = str(exc.value)
    pair = f"{fake.state.username}:{fake.state.password}"
    for secret in (fake.state.password, quote(fake.access_url, safe=""), pair,
                   base64.b64encode(pair.encode()).decode()):  # fmt: skip
        assert secret not in message
    assert "HTTP 400" in message and "gen.api" in message


def test_the_provider_is_registered() -> None:
    assert "simplefin" in registry.provider_ids()
    fields = [f.name for f in SPEC.credential_fields]
    assert fields == ["access_url"]
    assert SPEC.setup is not None and [f.name for f in SPEC.setup.input_fields] == ["setup_token"]


# --------------------------------------------------------------------------- accounts add


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return demo_cli_home(tmp_path)


invoke = invoke_cli


def _add(home: Path, token: str, *extra: str) -> Any:
    args = ["accounts", "add", "simplefin", "--id", "sf", "--profile", "alice", *extra]
    return invoke(home, *args, "--credentials-stdin", input=token + "\n")


def test_accounts_add_claims_the_token_once_and_stores_the_access_url(
    home: Path, fake: FakeSimplefin
) -> None:
    fake.state.account_set = example("v2_account_set")
    token = fake.setup_token()
    res = _add(home, token)
    assert res.exit_code == 0, res.output
    assert "fetched 1 sub-account(s)" in res.output
    assert Vault.open(home).get_json("sf") == {"access_url": fake.access_url}
    assert token not in res.output and fake.state.password not in res.output
    cfg = yaml.safe_load((home / "finbot.yaml").read_text())
    account = next(a for a in cfg["linked_accounts"] if a["id"] == "sf")
    assert account["provider"] == "simplefin" and account["credentials"] == "sf"
    # the test fetch's answer is kept: the first hourly fetch does not ask again
    assert (home / "state" / "sf" / STATE_FILE).exists()
    assert invoke(home, "accounts", "test", "sf").exit_code == 0
    assert fake.account_requests == 1


def test_accounts_add_with_a_spent_token_saves_nothing(home: Path, fake: FakeSimplefin) -> None:
    token = fake.setup_token()
    claim_credentials(SimplefinSetup(setup_token=token), SimplefinOptions())  # someone else
    before = (home / "finbot.yaml").read_text()
    res = _add(home, token)
    assert res.exit_code == 1
    assert "nothing was saved" in res.output and "works only once" in res.output
    assert token not in res.output
    assert (home / "finbot.yaml").read_text() == before
    assert Vault.open(home).names() == []


def test_a_claim_whose_test_fetch_fails_keeps_the_access_url(
    home: Path, fake: FakeSimplefin
) -> None:
    fake.state.status = 402
    before = (home / "finbot.yaml").read_text()
    res = _add(home, fake.setup_token())
    assert res.exit_code == 1
    assert "--stored-credentials" in res.output and "payment required" in res.output
    assert (home / "finbot.yaml").read_text() == before
    assert Vault.open(home).get_json("sf") == {"access_url": fake.access_url}
    fake.state.status = None
    fake.state.account_set = example("v1_account_set")
    res = invoke(home, "accounts", "add", "simplefin", "--id", "sf", "--profile", "alice",
                 "--stored-credentials")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "read from the vault as 'sf'" in res.output


def test_accounts_add_prompts_for_the_token_without_echo(home: Path, fake: FakeSimplefin) -> None:
    fake.state.account_set = example("v1_account_set")
    token = fake.setup_token()
    res = invoke(home, "accounts", "add", "simplefin", "--id", "sf", "--profile", "alice",
                 input=token + "\n")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "setup_token (SimpleFIN setup token" in res.output
    assert token not in res.output
    assert Vault.open(home).get_json("sf") == {"access_url": fake.access_url}


# --------------------------------------------------------------------------- the pipeline


def test_a_live_hour_lands_the_accounts_transactions(tmp_path: Path) -> None:
    """`finbot`'s hourly job on a SimpleFIN account: the protocol's v1 account set with
    its transaction moved to yesterday, and a pending one today, lands in
    marts.fct_transactions, valued in the EUR profile at the static 1 EUR = 1.10 USD."""
    from finbot_pipelines.warehouse.queries import connect_published
    from finbot_pipelines_tests.e2e import (
        history_start_for_tests,
        last_complete_hour,
        run_live_hour,
    )

    now = datetime.now(UTC)
    yesterday = int((now - timedelta(days=1)).timestamp())
    body = example("v1_account_set")
    account = body["accounts"][0]
    account["balance-date"] = int(now.timestamp())
    account["transactions"][0]["posted"] = yesterday
    account["transactions"].append(
        {"id": "p-77", "posted": 0, "pending": True, "amount": "-12.00", "description": "Cafe"}
    )
    with FakeSimplefin() as server:
        server.state.account_set = body
        config = f"""\
history_start: "{history_start_for_tests()}"
fx_source: static
fx_static_rates: {{USD: 1.10}}
profiles: [{{id: me, name: Me, valuation_ccy: EUR}}]
linked_accounts:
  - {{id: sf, profile: me, provider: simplefin, name: Bridge, credentials: sf-creds}}
"""
        run = run_live_hour(
            tmp_path / "home", config, {"sf-creds": {"access_url": server.access_url}}
        )
    assert run.success
    assert run.hour == last_complete_hour()
    with connect_published(tmp_path / "home" / "finbot.duckdb") as con:
        rows = con.execute(
            "select transaction_id, amount, currency, pending, kind, amount_valuation, "
            "transaction_date from marts.fct_transactions order by transaction_id"
        ).fetchall()
    posted_day = datetime.fromtimestamp(yesterday, UTC).date()
    first_seen_day = run.hour.date()
    assert rows == [
        (
            "2930002:12394832938403",
            Decimal("-33293.430000000000000000"),
            "USD",
            False,
            "withdrawal",
            (Decimal("-33293.43") / Decimal("1.10")).quantize(Decimal("1e-10")),
            posted_day,
        ),
        (
            "2930002:p-77",
            Decimal("-12.000000000000000000"),
            "USD",
            True,
            "withdrawal",
            (Decimal("-12.00") / Decimal("1.10")).quantize(Decimal("1e-10")),
            first_seen_day,
        ),
    ]
