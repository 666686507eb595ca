"""The scraping providers (credit_agricole, aegon_targetplan) against local copies of the portals.

One fake server (``fakes/portals.py``) serves both portals on 127.0.0.1 for the
whole module; every browser test launches the real headless Chromium. Expected
values are written out by hand from the displayed amounts.
"""

from __future__ import annotations

import re
import socket
import textwrap
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from finbot_pipelines.providers import browser
from finbot_pipelines.providers.aegon_targetplan import (
    AegonTargetplanProvider,
    parse_gbp_amount,
)
from finbot_pipelines.providers.base import (
    AuthenticationFailure,
    FetchTimeout,
    Item,
    ProviderPayloadError,
    Snapshot,
    SubAccount,
    TransientError,
)
from finbot_pipelines.providers.credit_agricole import (
    CreditAgricoleProvider,
    masked_ids,
    parse_french_amount,
)
from finbot_pipelines.providers.fetching import FetchTask, RetryPolicy, run_one
from finbot_pipelines.providers.registry import get_provider
from finbot_pipelines_tests.fakes.portals import (
    AegonProduct,
    AegonUser,
    CAAccount,
    CAUser,
    FakePortals,
)

pytestmark = pytest.mark.skipif(
    not Path(browser.chromium_executable()).exists(), reason="Chromium is not installed"
)

NBSP = "\u00a0"
NNBSP = "\u202f"  # narrow no-break space
MINUS = "\u2212"
NOW = datetime(2026, 1, 1, 12)

CA_ACCOUNT_NUMBER = "00012345678"  # the identifiant is the main account's number
CA_PASSWORD = "480259"
CA_ACCOUNTS = [
    CAAccount("COMPTES", "Compte de Dépôt", "00012345678", f"2{NBSP}345,67{NBSP}€"),
    CAAccount("COMPTES", "Compte joint", "00098765432", "-45,10 €"),
    CAAccount("EPARGNE", "Livret A", "00011112222", "10 000,00 €"),
    CAAccount("EPARGNE", "LDD Solidaire", "00033334444", f"1{NNBSP}250,00{NBSP}€"),
    CAAccount("PLACEMENTS", "Assurance vie Predissime 9", "00055556666", "25 432,10 €"),
    CAAccount("CREDITS", "Prêt immobilier", "00077778888", "-123 456,78 €"),
    CAAccount("CREDITS", "Prêt personnel", "00099990000", f"{MINUS}3 500,00 €"),
]
# 2345.67 - 45.10 + 10000.00 + 1250.00 + 25432.10 - 123456.78 - 3500.00
CA_TOTAL = -87974.11

AEGON_USERNAME = "jsmith42"
AEGON_PASSWORD = "Corr3ct-Horse!"
AEGON_PRODUCTS = [
    AegonProduct("Aegon Workplace Pension", "TP12345678", "£12,345.67"),
    AegonProduct("Aegon Stakeholder Pension", "TP87654321", "£1,002,003.04"),
    AegonProduct("Aegon Top-up Plan", "TP55500011", "£999"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def portals() -> Iterator[FakePortals]:
    with FakePortals(seed=20260101) as fake:
        fake.add_ca_user(CAUser("ca-paris", CA_ACCOUNT_NUMBER, CA_PASSWORD, accounts=CA_ACCOUNTS))
        fake.add_aegon_user(AegonUser(AEGON_USERNAME, AEGON_PASSWORD, products=AEGON_PRODUCTS))
        fake.add_aegon_user(AegonUser("expired", "Old-Pass-1", must_change_password=True))
        yield fake


@pytest.fixture(autouse=True)
def _fresh_portals(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "portals" in request.fixturenames:
        request.getfixturevalue("portals").reset()


def ca_options(portals: FakePortals, debug: Path, **extra: Any) -> dict[str, Any]:
    return {
        "_linked_account_id": "ca-main",
        "base_url": portals.url,
        "region": "paris",
        "timeout_s": 10,
        "debug_dir": str(debug),
        **extra,
    }


def aegon_options(portals: FakePortals, debug: Path, **extra: Any) -> dict[str, Any]:
    return {
        "_linked_account_id": "pension",
        "base_url": portals.url,
        "timeout_s": 10,
        "debug_dir": str(debug),
        **extra,
    }


CA_CREDS = {"account_number": CA_ACCOUNT_NUMBER, "password": CA_PASSWORD}
AEGON_CREDS = {"username": AEGON_USERNAME, "password": AEGON_PASSWORD}


def _shots(debug: Path) -> list[Path]:
    return sorted(debug.glob("*.png")) if debug.exists() else []


# --------------------------------------------------------------------------- pure parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 234,56 €", "1234.56"),
        (f"1{NBSP}234,56{NBSP}€", "1234.56"),
        (f"1{NNBSP}234{NNBSP}567,89 €", "1234567.89"),
        ("-45,10 €", "-45.10"),
        (f"{MINUS}0,01 €", "-0.01"),
        ("- 12,00 €", "-12.00"),
        ("+3,50 €", "3.50"),
        ("0,00 €", "0.00"),
        ("12 000 €", "12000"),
        ("999,99 EUR", "999.99"),
        ("  7,05 €  ", "7.05"),
    ],
)
def test_parse_french_amount(text: str, expected: str) -> None:
    assert parse_french_amount(text) == Decimal(expected)


@pytest.mark.parametrize(
    "text",
    [
        "1.234,56 €",
        "1,234.56 €",
        "1 234,5 €",
        "12 34,56 €",
        "1234,56",
        "1 234,56 $",
        "€",
        "",
        "--1,00 €",
    ],
)
def test_parse_french_amount_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_french_amount(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("£12,345.67", "12345.67"),
        ("£1,002,003.04", "1002003.04"),
        ("£999", "999"),
        ("£0.50", "0.50"),
    ],
)
def test_parse_gbp_amount(text: str, expected: str) -> None:
    assert parse_gbp_amount(text) == Decimal(expected)


@pytest.mark.parametrize("text", ["£12.345,67", "12,345.67", "£1,23.45", "£12,345.6", "$5.00", "£"])
def test_parse_gbp_amount_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_gbp_amount(text)


def test_masked_ids_grow_until_distinct() -> None:
    assert masked_ids(["00012345678", "00098765432"]) == ["****5678", "****5432"]
    assert masked_ids(["11110001234", "22220001234"]) == ["****10001234", "****20001234"]


def test_registry_and_options() -> None:
    ca = get_provider("credit_agricole")
    aegon = get_provider("aegon_targetplan")
    assert isinstance(ca, CreditAgricoleProvider)
    assert isinstance(aegon, AegonTargetplanProvider)
    assert not ca.supports_historical and not aegon.supports_historical
    assert {f.name for f in ca.credential_fields if f.secret} == {"account_number", "password"}
    ca.validate_options({"_linked_account_id": "x", "region": "ca-paris", "timeout_s": 5})
    aegon.validate_options({"_linked_account_id": "x", "base_url": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match=r"^options\.regoin: unknown option"):
        ca.validate_options({"regoin": "paris"})
    with pytest.raises(ValueError, match=r"^options\.base_url: expected an http"):
        aegon.validate_options({"base_url": "ftp://x"})
    with pytest.raises(ValueError, match=r"^options\.timeout_s:"):
        ca.validate_options({"timeout_s": 0})


# --------------------------------------------------------------------------- credit_agricole


def test_ca_reads_every_account_of_the_synthesis_page(portals: FakePortals, tmp_path: Path) -> None:
    snap = CreditAgricoleProvider().fetch(CA_CREDS, ca_options(portals, tmp_path), NOW)

    def cash(v: float) -> tuple[Item, ...]:
        return (Item("Cash", "liability" if v < 0 else "asset", "cash", "cash", v),)

    assert snap == Snapshot(
        (
            SubAccount("****5678", "Compte de Dépôt", "EUR", "depository", cash(2345.67)),
            SubAccount("****5432", "Compte joint", "EUR", "depository", cash(-45.10)),
            SubAccount("****2222", "Livret A", "EUR", "depository", cash(10000.00)),
            SubAccount("****4444", "LDD Solidaire", "EUR", "depository", cash(1250.00)),
            SubAccount(
                "****6666",
                "Assurance vie Predissime 9",
                "EUR",
                "investment",
                (Item("Assurance vie Predissime 9", "asset", "multi_asset", "fund", 25432.10),),
            ),
            SubAccount(
                "****8888",
                "Prêt immobilier",
                "EUR",
                "loan",
                (Item("Prêt immobilier", "liability", "real_estate", "mortgage", -123456.78),),
            ),
            SubAccount(
                "****0000",
                "Prêt personnel",
                "EUR",
                "loan",
                (Item("Prêt personnel", "liability", "other", "loan", -3500.00),),
            ),
        )
    )
    total = sum(it.value for sa in snap.sub_accounts for it in sa.items)
    assert total == pytest.approx(CA_TOTAL, abs=1e-9)
    # the identifiant (a credential) never becomes an id or a name
    assert CA_ACCOUNT_NUMBER not in repr(snap)
    [attempt] = portals.attempts
    assert attempt.ok and attempt.username == CA_ACCOUNT_NUMBER
    assert _shots(tmp_path) == []


def test_ca_keypad_digits_are_found_by_label_in_any_layout(
    portals: FakePortals, tmp_path: Path
) -> None:
    blanks = [""] * 6
    identity = [*"0123456789", *blanks]
    reversed_with_gaps = ["", "9", "", "8", "7", "", "6", "5", "", "4", "3", "2", "", "1", "0", ""]
    portals.forced_keypads.extend([identity, reversed_with_gaps])  # then a seeded random one
    provider = CreditAgricoleProvider()
    for _ in range(3):
        provider.fetch(CA_CREDS, ca_options(portals, tmp_path), NOW)
    assert len(portals.attempts) == 3
    layouts = [a.keypad for a in portals.attempts]
    assert layouts[0] == identity and layouts[1] == reversed_with_gaps
    assert layouts[2] not in (identity, reversed_with_gaps)
    for attempt in portals.attempts:
        # the server decoded the clicked positions with the layout it served
        assert attempt.ok and attempt.password == CA_PASSWORD


def test_ca_wrong_password_is_an_authentication_failure(
    portals: FakePortals, tmp_path: Path
) -> None:
    creds = {**CA_CREDS, "password": "480250"}
    with pytest.raises(AuthenticationFailure, match="code personnel est incorrect") as info:
        CreditAgricoleProvider().fetch(creds, ca_options(portals, tmp_path), NOW)
    message = str(info.value)
    assert "480250" not in message and CA_ACCOUNT_NUMBER not in message
    [attempt] = portals.attempts
    assert not attempt.ok and attempt.password == "480250"
    [shot] = _shots(tmp_path)  # authentication failures get a screenshot too
    assert str(shot) in message


def test_ca_unreadable_amount_names_the_account(portals: FakePortals, tmp_path: Path) -> None:
    user = CAUser(
        "ca-nord-est",
        "00022223333",
        "111111",
        accounts=[
            CAAccount("COMPTES", "Compte courant", "00022223333", "100,00 €"),
            CAAccount("EPARGNE", "Livret Jeune", "00044445555", "1,234.56 €"),
        ],
    )
    portals.add_ca_user(user)
    opts = ca_options(portals, tmp_path, region="nord-est")
    creds = {"account_number": "00022223333", "password": "111111"}
    with pytest.raises(
        ProviderPayloadError, match=r"unreadable balance '1,234.56 €' for account 'Livret Jeune'"
    ):
        CreditAgricoleProvider().fetch(creds, opts, NOW)


def test_ca_changed_layout_is_a_clear_provider_error_with_a_clean_screenshot(
    portals: FakePortals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, list[str]]] = []
    original = browser._take_screenshot

    def spy(page: Any, path: Path, secrets: Any = ()) -> None:
        inputs = page.eval_on_selector_all("input", "els => els.map((e) => e.value)")
        seen.append((page.content(), inputs))
        original(page, path, secrets)

    monkeypatch.setattr(browser, "_take_screenshot", spy)
    portals.change_layout("ca_balance")
    with pytest.raises(ProviderPayloadError) as info:
        CreditAgricoleProvider().fetch(CA_CREDS, ca_options(portals, tmp_path), NOW)
    message = str(info.value)
    assert info.value.code == "provider_error"
    assert "page layout changed" in message
    assert "balance (.Synthesis-amount) not found for account 'Compte de Dépôt'" in message
    [shot] = _shots(tmp_path)
    assert re.fullmatch(r"credit_agricole-ca-main-\d{8}T\d{12}Z\.png", shot.name)
    assert shot.stat().st_size > 1000 and str(shot) in message
    [(html, inputs)] = seen
    assert "Bonjour" in html  # the synthesis page was on screen...
    for secret in (CA_PASSWORD, CA_ACCOUNT_NUMBER):  # ...without any credential
        assert secret not in html and secret not in shot.name and secret not in message
        assert all(secret not in v for v in inputs)


def test_ca_keypad_layout_change(portals: FakePortals, tmp_path: Path) -> None:
    portals.change_layout("ca_keypad")
    with pytest.raises(ProviderPayloadError, match=r"page layout changed: the keypad keys"):
        CreditAgricoleProvider().fetch(CA_CREDS, ca_options(portals, tmp_path, timeout_s=1), NOW)


def test_ca_strong_authentication_request(portals: FakePortals, tmp_path: Path) -> None:
    portals.add_ca_user(CAUser("ca-sud", "00066667777", "222222", strong_auth=True))
    opts = ca_options(portals, tmp_path, region="sud", timeout_s=1)
    creds = {"account_number": "00066667777", "password": "222222"}
    with pytest.raises(AuthenticationFailure, match="strong authentication"):
        CreditAgricoleProvider().fetch(creds, opts, NOW)


def test_ca_maintenance_page_is_transient(portals: FakePortals, tmp_path: Path) -> None:
    portals.maintenance = True
    with pytest.raises(TransientError, match="momentanément indisponible"):
        CreditAgricoleProvider().fetch(CA_CREDS, ca_options(portals, tmp_path), NOW)


def test_ca_slow_portal_is_a_timeout(portals: FakePortals, tmp_path: Path) -> None:
    portals.slow_paths["operations/synthese.html"] = 2.0
    with pytest.raises(FetchTimeout, match=r"no answer within 1 s"):
        CreditAgricoleProvider().fetch(CA_CREDS, ca_options(portals, tmp_path, timeout_s=1), NOW)


def test_unreachable_portal_is_transient_and_retried(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    opts = {"base_url": url, "region": "paris", "timeout_s": 5, "debug_dir": str(tmp_path)}
    task = FetchTask(NOW, "ca-main", CreditAgricoleProvider(), opts, lambda: CA_CREDS)
    outcome = run_one(task, RetryPolicy(timeout_s=30, max_attempts=2, backoff_s=0))
    assert outcome.error_code == "transient" and outcome.attempts == 2
    assert outcome.error_message is not None
    assert "ERR_CONNECTION_REFUSED" in outcome.error_message
    with pytest.raises(TransientError, match="portal unreachable"):
        AegonTargetplanProvider().fetch(
            AEGON_CREDS, {"base_url": url, "debug_dir": str(tmp_path)}, NOW
        )
    assert _shots(tmp_path) == []  # nothing was rendered: no screenshot


# --------------------------------------------------------------------------- aegon_targetplan


def test_aegon_reads_every_product_card(portals: FakePortals, tmp_path: Path) -> None:
    snap = AegonTargetplanProvider().fetch(AEGON_CREDS, aegon_options(portals, tmp_path), NOW)

    def product(pid: str, name: str, value: float) -> SubAccount:
        return SubAccount(
            pid, name, "GBP", "investment", (Item(name, "asset", "pension", "fund", value),)
        )

    assert snap == Snapshot(
        (
            product("TP12345678", "Aegon Workplace Pension", 12345.67),
            product("TP87654321", "Aegon Stakeholder Pension", 1002003.04),
            product("TP55500011", "Aegon Top-up Plan", 999.0),
        )
    )
    [attempt] = portals.attempts
    assert attempt.ok


def test_aegon_wrong_password_and_password_change(portals: FakePortals, tmp_path: Path) -> None:
    provider = AegonTargetplanProvider()
    with pytest.raises(
        AuthenticationFailure, match="username or password you entered is incorrect"
    ):
        provider.fetch(
            {**AEGON_CREDS, "password": "nope-nope"}, aegon_options(portals, tmp_path), NOW
        )
    with pytest.raises(AuthenticationFailure, match="requires a password change"):
        provider.fetch(
            {"username": "expired", "password": "Old-Pass-1"}, aegon_options(portals, tmp_path), NOW
        )


def test_aegon_changed_layout_clears_the_typed_password_before_the_screenshot(
    portals: FakePortals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, list[str]]] = []
    original = browser._take_screenshot

    def spy(page: Any, path: Path, secrets: Any = ()) -> None:
        inputs = page.eval_on_selector_all("input", "els => els.map((e) => e.value)")
        seen.append((page.content(), inputs))
        original(page, path, secrets)

    monkeypatch.setattr(browser, "_take_screenshot", spy)
    portals.change_layout("aegon_submit")
    opts = aegon_options(portals, tmp_path, timeout_s=1)
    with pytest.raises(ProviderPayloadError) as info:
        AegonTargetplanProvider().fetch(AEGON_CREDS, opts, NOW)
    message = str(info.value)
    assert "page layout changed: the login button (#submitButtonAjaxId) not found" in message
    [shot] = _shots(tmp_path)
    assert re.fullmatch(r"aegon_targetplan-pension-\d{8}T\d{12}Z\.png", shot.name)
    [(html, inputs)] = seen
    assert 'id="password"' in html  # the login form, password already typed, was on screen
    assert AEGON_PASSWORD not in html and all(AEGON_PASSWORD not in v for v in inputs)
    assert portals.attempts == []  # never submitted


def test_aegon_changed_card_layout(portals: FakePortals, tmp_path: Path) -> None:
    portals.change_layout("aegon_value")
    with pytest.raises(
        ProviderPayloadError,
        match=r"page layout changed: value \(span.currency-hero\) not found for product "
        r"'Aegon Workplace Pension'",
    ):
        AegonTargetplanProvider().fetch(AEGON_CREDS, aegon_options(portals, tmp_path), NOW)


# --------------------------------------------------------------------------- end to end


def test_credit_agricole_through_the_real_pipeline(portals: FakePortals, tmp_path: Path) -> None:
    from finbot_pipelines_tests.e2e import history_start_for_tests, run_live_hour

    config = textwrap.dedent(
        f"""\
        history_start: "{history_start_for_tests()}"
        fx_source: static
        fx_static_rates: {{GBP: 0.85, USD: 1.1}}
        profiles:
          - {{id: claire, name: Claire, valuation_ccy: EUR}}
        linked_accounts:
          - id: ca-main
            profile: claire
            provider: credit_agricole
            name: Crédit Agricole
            credentials: ca-main
            options:
              base_url: "{portals.url}"
              region: paris
              timeout_s: 20
              debug_dir: "{tmp_path / "debug"}"
        fetch: {{timeout_s: 60, max_attempts: 1, backoff_s: 0, max_workers: 1}}
        """
    )
    run = run_live_hour(tmp_path / "home", config, {"ca-main": CA_CREDS})
    fetches = run.raw("select status, error_code, error_message from raw.fetches")
    assert list(fetches["status"]) == ["success"], fetches.to_dict("records")
    assert run.success
    df = run.published(
        "select value, total_liabilities, is_stale from marts.fct_linked_account_valuation_hourly "
        "where linked_account_id = 'ca-main' and valuation_hour = ?",
        [run.hour],
    )
    assert len(df) == 1
    assert float(df["value"][0]) == pytest.approx(CA_TOTAL, abs=0.005)
    # liabilities: the overdraft and both loans, -45.10 - 123456.78 - 3500.00
    assert float(df["total_liabilities"][0]) == pytest.approx(-127001.88, abs=0.005)
    assert not bool(df["is_stale"][0])
    ids = run.raw("select sub_account_id from raw.sub_accounts")["sub_account_id"]
    assert CA_ACCOUNT_NUMBER not in "".join(ids)
