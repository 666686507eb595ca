"""The scraping providers (credit_agricole, aegon_targetplan) against local copies of the portals.

One fake server (``fakes/portals.py``) serves both portals on 127.0.0.1 for the
whole module; every browser test launches the real headless Chromium through
the production path (``fetch_snapshot``: options and credentials parsed by the
providers' models, then the Playwright scraper). Expected values are written
out by hand from the displayed amounts, as exact Decimals.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from finbot_pipelines.providers import browser
from finbot_pipelines.providers.aegon_targetplan.mapping import parse_gbp_amount
from finbot_pipelines.providers.aegon_targetplan.provider import AegonTargetplanProvider
from finbot_pipelines.providers.base import (
    DEFAULT_BROWSER,
    FetchContext,
    ProviderSpec,
    fetch_snapshot,
)
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    CredentialsError,
    FetchTimeout,
    Item,
    OptionsError,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
    SubAccount,
    TransientError,
)
from finbot_pipelines.providers.credit_agricole.mapping import (
    AccountRow,
    build_snapshot,
    masked_ids,
    parse_french_amount,
    parse_rows,
)
from finbot_pipelines.providers.credit_agricole.options import (
    CreditAgricoleCredentials,
    CreditAgricoleOptions,
    resolve_region,
)
from finbot_pipelines.providers.credit_agricole.provider import CreditAgricoleProvider
from finbot_pipelines.providers.fetching import FetchTask, RetryPolicy, run_one
from finbot_pipelines.providers.registry import get_provider, get_spec
from finbot_pipelines_tests.fakes.portals import (
    AegonProduct,
    AegonUser,
    CAAccount,
    CAUser,
    FakePortals,
)

pytestmark = pytest.mark.skipif(
    not Path(DEFAULT_BROWSER).exists(), reason="Chromium is not installed"
)

NBSP = "\u00a0"
NNBSP = "\u202f"  # narrow no-break space
MINUS = "\u2212"
NOW = datetime(2026, 1, 1, 12)
ROOT = Path(__file__).resolve().parents[1]

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
CA_TOTAL = Decimal("-87974.11")
# the overdraft and both loans: -45.10 - 123456.78 - 3500.00
CA_LIABILITIES = Decimal("-127001.88")

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
        fake.add_aegon_user(AegonUser("locked01", "Locked-Pass-1", locked=True))
        yield fake


@pytest.fixture(autouse=True)
def _fresh_portals(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "portals" in request.fixturenames:
        request.getfixturevalue("portals").reset()


def ca_options(portals: FakePortals, debug: Path | None = None, **extra: Any) -> dict[str, Any]:
    """The options of a linked account (as in finbot.yaml); ``debug`` -> the debug_dir option."""
    opts: dict[str, Any] = {"base_url": portals.url, "region": "paris", "timeout_s": 10}
    if debug is not None:
        opts["debug_dir"] = str(debug)
    return {**opts, **extra}


def aegon_options(portals: FakePortals, debug: Path | None = None, **extra: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {"base_url": portals.url, "timeout_s": 10}
    if debug is not None:
        opts["debug_dir"] = str(debug)
    return {**opts, **extra}


CA_CREDS = {"account_number": CA_ACCOUNT_NUMBER, "password": CA_PASSWORD}
AEGON_CREDS = {"username": AEGON_USERNAME, "password": AEGON_PASSWORD}


def fetch(
    provider_id: str,
    options: Mapping[str, Any],
    credentials: Mapping[str, Any],
    *,
    account: str,
    debug_dir: Path | None = None,
    browser_path: str = DEFAULT_BROWSER,
) -> Snapshot:
    """One fetch through the production path (parse options and credentials, scrape,
    finalise), with the context the ingest builds."""
    ctx = FetchContext(account, NOW, debug_dir=debug_dir, browser=browser_path)
    return fetch_snapshot(
        get_spec(provider_id), get_provider(provider_id), ctx, options, credentials
    )


def fetch_ca(
    options: Mapping[str, Any], creds: Mapping[str, Any] = CA_CREDS, **kw: Any
) -> Snapshot:
    kw.setdefault("account", "ca-main")
    return fetch("credit_agricole", options, creds, **kw)


def fetch_aegon(
    options: Mapping[str, Any], creds: Mapping[str, Any] = AEGON_CREDS, **kw: Any
) -> Snapshot:
    kw.setdefault("account", "pension")
    return fetch("aegon_targetplan", options, creds, **kw)


def _shots(debug: Path) -> list[Path]:
    return sorted(debug.glob("*.png")) if debug.exists() else []


def _spy_screenshots(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """What the page held (HTML, input values) at the moment of each screenshot."""
    seen: list[tuple[str, list[str]]] = []
    original = browser._take_screenshot

    def spy(page: Any, path: Path, secrets: Any = ()) -> None:
        inputs = page.eval_on_selector_all("input", "els => els.map((e) => e.value)")
        seen.append((page.content(), inputs))
        original(page, path, secrets)

    monkeypatch.setattr(browser, "_take_screenshot", spy)
    return seen


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
    value = parse_french_amount(text)
    assert isinstance(value, Decimal) and value == Decimal(expected)


def test_parse_french_amount_has_no_negative_zero() -> None:
    assert str(parse_french_amount("-0,00 €")) == "0.00"


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
    value = parse_gbp_amount(text)
    assert isinstance(value, Decimal) and value == Decimal(expected)


@pytest.mark.parametrize("text", ["£12.345,67", "12,345.67", "£1,23.45", "£12,345.6", "$5.00", "£"])
def test_parse_gbp_amount_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_gbp_amount(text)


def test_masked_ids_grow_until_distinct() -> None:
    assert masked_ids(["00012345678", "00098765432"]) == ["****5678", "****5432"]
    assert masked_ids(["11110001234", "22220001234"]) == ["****10001234", "****20001234"]


def test_snapshot_amounts_stay_exact_decimals() -> None:
    rows = [
        AccountRow("COMPTES", "Compte courant", "00011110001", Decimal("0.10")),
        AccountRow("EPARGNE", "Livret A", "00011110002", Decimal("0.20")),
        AccountRow("CREDITS", "Prêt habitat", "00011110003", Decimal("1000.30")),  # shown > 0
        AccountRow("CREDITS", "Prêt auto", "00011110004", Decimal("0.00")),
    ]
    snap = build_snapshot(rows)
    values = [it.value for _, it in snap.items() if isinstance(it.value, Decimal)]
    assert len(values) == len(rows)
    # a loan is minus the amount owed, whichever sign the page shows; 0.10 + 0.20 is 0.30
    assert values == [Decimal("0.10"), Decimal("0.20"), Decimal("-1000.30"), Decimal("0.00")]
    assert str(values[3]) == "0.00"  # no negative zero
    assert sum(values[:2], Decimal(0)) == Decimal("0.30")
    assert snap.sub_accounts[2].items[0].asset_type == "mortgage"


def test_parse_rows_names_the_family_and_the_account() -> None:
    with pytest.raises(ProviderPayloadError, match=r"unsupported account family 'BOURSE'"):
        parse_rows([{"family": "BOURSE", "title": "Ma bourse", "label": "PEA"}])
    with pytest.raises(
        ProviderPayloadError, match=r"account number not found for account 'Livret A'"
    ):
        parse_rows([{"family": "EPARGNE", "title": "x", "label": "Livret A", "number": "n°"}])
    with pytest.raises(ProviderPayloadError, match=r"no account section"):
        parse_rows([])


# --------------------------------------------------------------------------- options, credentials


def test_registry_and_options() -> None:
    ca = get_provider("credit_agricole")
    aegon = get_provider("aegon_targetplan")
    assert isinstance(ca, CreditAgricoleProvider)
    assert isinstance(aegon, AegonTargetplanProvider)
    ca_spec, aegon_spec = get_spec("credit_agricole"), get_spec("aegon_targetplan")
    assert not ca_spec.supports_historical and not aegon_spec.supports_historical
    assert {f.name for f in ca_spec.credential_fields if f.secret} == {"account_number", "password"}
    assert {f.name for f in ca_spec.credential_fields if not f.required} == {"region"}
    assert {f.name for f in aegon_spec.credential_fields if f.secret} == {"password"}
    opts = ca_spec.parse_options({"region": "ca-paris", "timeout_s": 5})
    assert isinstance(opts, CreditAgricoleOptions)
    assert (opts.region, opts.timeout_s, opts.debug_dir) == ("ca-paris", 5.0, None)
    assert opts.base_url == "https://www.credit-agricole.fr"
    assert ca_spec.parse_options({"region": "Nord-Est"}).region == "ca-nord-est"  # type: ignore[attr-defined]
    a = aegon_spec.parse_options({"base_url": "http://127.0.0.1:1/"})
    assert a.base_url == "http://127.0.0.1:1"  # type: ignore[attr-defined]
    cases: list[tuple[ProviderSpec, dict[str, Any], str]] = [
        (ca_spec, {"regoin": "paris"}, r"^options\.regoin: unknown option .*did you mean 'region'"),
        (aegon_spec, {"base_url": "ftp://x"}, r"^options\.base_url: expected an http"),
        (ca_spec, {"timeout_s": 0}, r"^options\.timeout_s: expected a number greater than 0"),
        (ca_spec, {"timeout_s": 601}, r"^options\.timeout_s: expected a number <= 600"),
        (ca_spec, {"timeout_s": "10"}, r"^options\.timeout_s: expected a number"),
        (ca_spec, {"region": "île de france"}, r"^options\.region: expected a regional bank"),
        (aegon_spec, {"debug_dir": " "}, r"^options\.debug_dir: expected a directory path"),
        (aegon_spec, {"region": "paris"}, r"^options\.region: unknown option"),
    ]
    for spec, bad, expected in cases:
        with pytest.raises(OptionsError, match=expected):
            spec.parse_options(bad)


def test_credentials_errors_name_the_field_never_the_value() -> None:
    spec = get_spec("credit_agricole")
    for creds, field in [
        ({"account_number": CA_ACCOUNT_NUMBER, "password": "48O259"}, "password"),
        ({"password": CA_PASSWORD}, "account_number"),
        ({"account_number": " ", "password": CA_PASSWORD}, "account_number"),
        ({**CA_CREDS, "region": "wrong region!"}, "region"),
    ]:
        with pytest.raises(CredentialsError) as info:
            spec.parse_credentials(creds)
        message = str(info.value)
        assert f"{field}:" in message
        for value in creds.values():
            if value.strip():
                assert value not in message, message
    with pytest.raises(CredentialsError, match=r"password: required"):
        get_spec("aegon_targetplan").parse_credentials({"username": AEGON_USERNAME})


def test_region_from_the_option_or_the_credentials_must_agree() -> None:
    def region(option: str | None, credential: str | None) -> str:
        return resolve_region(
            CreditAgricoleOptions.model_validate({"region": option} if option else {}),
            CreditAgricoleCredentials.model_validate({**CA_CREDS, "region": credential}),
        )

    assert region("paris", None) == "ca-paris"
    assert region(None, "paris") == "ca-paris"
    assert region("paris", "CA-Paris") == "ca-paris"
    with pytest.raises(CredentialsError) as info:
        region("paris", "nord-est")
    message = str(info.value)
    assert "'region'" in message and "options.region" in message
    assert "paris" not in message and "nord" not in message
    with pytest.raises(CredentialsError, match=r"no region: set options.region or the credential"):
        region(None, None)


def test_a_disagreeing_region_fails_before_any_browser(tmp_path: Path) -> None:
    # no portal listens anywhere: the fetch must stop on the credentials
    opts = {"base_url": f"http://127.0.0.1:{_free_port()}", "region": "paris"}
    with pytest.raises(CredentialsError, match="different regional banks"):
        fetch_ca(opts, {**CA_CREDS, "region": "sud"}, debug_dir=tmp_path)
    assert _shots(tmp_path) == []


def test_validating_options_imports_neither_playwright_nor_the_config() -> None:
    code = textwrap.dedent(
        """
        import sys
        from finbot_pipelines.providers import registry
        import finbot_pipelines.providers.credit_agricole
        import finbot_pipelines.providers.aegon_targetplan
        registry.get_spec("credit_agricole").parse_options({"region": "paris"})
        registry.get_spec("aegon_targetplan").parse_options({"timeout_s": 5})
        registry.get_spec("credit_agricole").parse_credentials(
            {"account_number": "123456", "password": "123456"}
        )
        registry.describe("credit_agricole")
        assert not [m for m in sys.modules if m.split(".")[0] == "playwright"], "playwright"
        import finbot_pipelines.providers.credit_agricole.provider
        import finbot_pipelines.providers.aegon_targetplan.provider
        assert "playwright" in sys.modules
        config = [m for m in sys.modules if m.startswith("finbot_pipelines.config")]
        assert not config, config
        print("ok")
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_the_provider_modules_read_no_environment() -> None:
    sources = [ROOT / "finbot_pipelines/providers/browser.py"]
    for pkg in ("credit_agricole", "aegon_targetplan"):
        sources += sorted((ROOT / "finbot_pipelines/providers" / pkg).glob("*.py"))
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for forbidden in ("os.environ", "getenv", "finbot_pipelines.config", "import os"):
            assert forbidden not in text, f"{path.name}: {forbidden}"


# --------------------------------------------------------------------------- credit_agricole


def test_ca_reads_every_account_of_the_synthesis_page(
    portals: FakePortals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the binary comes from the context, never from the environment
    monkeypatch.setenv("FINBOT_CHROMIUM", str(tmp_path / "no-such-chromium"))
    snap = fetch_ca(ca_options(portals), debug_dir=tmp_path)

    def cash(v: str) -> tuple[Item, ...]:
        d = Decimal(v)
        return (Item("Cash", "liability" if d < 0 else "asset", "cash", "cash", d),)

    assert snap == Snapshot(
        (
            SubAccount("****5678", "Compte de Dépôt", "EUR", "depository", cash("2345.67")),
            SubAccount("****5432", "Compte joint", "EUR", "depository", cash("-45.10")),
            SubAccount("****2222", "Livret A", "EUR", "depository", cash("10000.00")),
            SubAccount("****4444", "LDD Solidaire", "EUR", "depository", cash("1250.00")),
            SubAccount(
                "****6666",
                "Assurance vie Predissime 9",
                "EUR",
                "investment",
                (
                    Item(
                        "Assurance vie Predissime 9",
                        "asset",
                        "multi_asset",
                        "fund",
                        Decimal("25432.10"),
                    ),
                ),
            ),
            SubAccount(
                "****8888",
                "Prêt immobilier",
                "EUR",
                "loan",
                (
                    Item(
                        "Prêt immobilier",
                        "liability",
                        "real_estate",
                        "mortgage",
                        Decimal("-123456.78"),
                    ),
                ),
            ),
            SubAccount(
                "****0000",
                "Prêt personnel",
                "EUR",
                "loan",
                (Item("Prêt personnel", "liability", "other", "loan", Decimal("-3500.00")),),
            ),
        )
    )
    values = [it.value for _, it in snap.items()]
    assert all(isinstance(v, Decimal) for v in values)
    assert sum((v for v in values if v is not None), Decimal(0)) == CA_TOTAL
    assert sum((v for v in values if v is not None and v < 0), Decimal(0)) == CA_LIABILITIES
    assert snap.warnings == ()  # balances only: nothing to reconcile, everything priced
    # the identifiant (a credential) never becomes an id or a name
    assert CA_ACCOUNT_NUMBER not in repr(snap)
    [attempt] = portals.attempts
    assert attempt.ok and attempt.username == CA_ACCOUNT_NUMBER
    assert _shots(tmp_path) == []


def test_ca_region_from_the_credentials(portals: FakePortals) -> None:
    opts = {k: v for k, v in ca_options(portals).items() if k != "region"}
    snap = fetch_ca(opts, {**CA_CREDS, "region": "ca-paris"})
    assert len(snap.sub_accounts) == len(CA_ACCOUNTS)


def test_ca_keypad_digits_are_found_by_label_in_any_layout(portals: FakePortals) -> None:
    blanks = [""] * 6
    identity = [*"0123456789", *blanks]
    reversed_with_gaps = ["", "9", "", "8", "7", "", "6", "5", "", "4", "3", "2", "", "1", "0", ""]
    portals.forced_keypads.extend([identity, reversed_with_gaps])  # then a seeded random one
    for _ in range(3):
        fetch_ca(ca_options(portals))
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
    ctx_debug = tmp_path / "ctx-debug"  # no debug_dir option: the context's folder
    with pytest.raises(AuthenticationFailure, match="code personnel est incorrect") as info:
        fetch_ca(ca_options(portals), creds, debug_dir=ctx_debug)
    message = str(info.value)
    assert "480250" not in message and CA_ACCOUNT_NUMBER not in message
    [attempt] = portals.attempts
    assert not attempt.ok and attempt.password == "480250"
    [shot] = _shots(ctx_debug)  # authentication failures get a screenshot too
    assert re.fullmatch(r"credit_agricole-ca-main-\d{8}T\d{12}Z\.png", shot.name)
    assert str(shot) in message


def test_ca_locked_access_is_an_authentication_failure_without_the_identifiant(
    portals: FakePortals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _spy_screenshots(monkeypatch)
    portals.add_ca_user(
        CAUser("ca-ouest", "00012121212", "333333", accounts=CA_ACCOUNTS[:1], locked=True)
    )
    creds = {"account_number": "00012121212", "password": "333333"}
    with pytest.raises(AuthenticationFailure, match=r"login refused: .*est bloqué") as info:
        fetch_ca(ca_options(portals, region="ouest"), creds, account="ca-ouest", debug_dir=tmp_path)
    message = str(info.value)
    # the portal named the identifiant: masked in the message, wiped from the screenshot
    assert "l'identifiant *** est bloqué" in message
    assert "00012121212" not in message
    [shot] = _shots(tmp_path)
    assert str(shot) in message
    [(html, inputs)] = seen
    assert "est bloqué" in html
    assert "00012121212" not in html and all("00012121212" not in v for v in inputs)


def test_ca_unreadable_amount_names_the_account(portals: FakePortals) -> None:
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
    opts = ca_options(portals, region="nord-est")
    creds = {"account_number": "00022223333", "password": "111111"}
    with pytest.raises(
        ProviderPayloadError, match=r"unreadable balance '1,234.56 €' for account 'Livret Jeune'"
    ):
        fetch_ca(opts, creds)


def test_ca_changed_layout_is_a_clear_provider_error_with_a_clean_screenshot(
    portals: FakePortals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _spy_screenshots(monkeypatch)
    portals.change_layout("ca_balance")
    option_debug, ctx_debug = tmp_path / "option", tmp_path / "ctx"
    with pytest.raises(ProviderPayloadError) as info:
        fetch_ca(ca_options(portals, option_debug), debug_dir=ctx_debug)
    message = str(info.value)
    assert info.value.code == "provider_error"
    assert "page layout changed" in message
    assert "balance (.Synthesis-amount) not found for account 'Compte de Dépôt'" in message
    [shot] = _shots(option_debug)  # the debug_dir option overrides the context's folder
    assert _shots(ctx_debug) == []
    assert re.fullmatch(r"credit_agricole-ca-main-\d{8}T\d{12}Z\.png", shot.name)
    assert shot.stat().st_size > 1000 and str(shot) in message
    [(html, inputs)] = seen
    assert "Bonjour" in html  # the synthesis page was on screen...
    for secret in (CA_PASSWORD, CA_ACCOUNT_NUMBER):  # ...without any credential
        assert secret not in html and secret not in shot.name and secret not in message
        assert all(secret not in v for v in inputs)


def test_ca_keypad_layout_change(portals: FakePortals) -> None:
    portals.change_layout("ca_keypad")
    with pytest.raises(ProviderPayloadError, match=r"page layout changed: the keypad keys"):
        fetch_ca(ca_options(portals, timeout_s=1))


def test_ca_keypad_request_answered_503_is_transient_with_its_retry_after(
    portals: FakePortals,
) -> None:
    portals.error_status = 503
    portals.error_path = "keypad.json"
    portals.error_headers = {"Retry-After": "5"}
    with pytest.raises(TransientError) as info:
        fetch_ca(ca_options(portals, timeout_s=2))
    assert type(info.value) is TransientError
    assert info.value.retry_after == 5.0
    assert "/ca-paris/particulier/acceder-a-mes-comptes.keypad.json" in str(info.value)
    assert "(HTTP 503)" in str(info.value)
    assert portals.attempts == []


def test_ca_strong_authentication_request(portals: FakePortals) -> None:
    portals.add_ca_user(CAUser("ca-sud", "00066667777", "222222", strong_auth=True))
    opts = ca_options(portals, region="sud", timeout_s=1)
    creds = {"account_number": "00066667777", "password": "222222"}
    with pytest.raises(AuthenticationFailure, match="strong authentication"):
        fetch_ca(opts, creds)


def test_ca_maintenance_page_is_transient(portals: FakePortals) -> None:
    portals.maintenance = True
    with pytest.raises(TransientError, match="momentanément indisponible"):
        fetch_ca(ca_options(portals))


def test_ca_slow_portal_is_a_timeout(portals: FakePortals) -> None:
    portals.slow_paths["operations/synthese.html"] = 2.0
    with pytest.raises(FetchTimeout, match=r"no answer within 1 s"):
        fetch_ca(ca_options(portals, timeout_s=1))


def test_ca_429_and_503_carry_the_retry_after_and_the_retries_honour_it(
    portals: FakePortals, tmp_path: Path
) -> None:
    portals.error_status = 429
    portals.error_headers = {"Retry-After": "7"}
    task = FetchTask(
        NOW,
        "ca-main",
        get_provider("credit_agricole"),
        ca_options(portals),
        lambda: CA_CREDS,
        debug_dir=tmp_path,
    )
    slept: list[float] = []
    outcome = run_one(task, RetryPolicy(timeout_s=60, max_attempts=2, backoff_s=0.5), slept.append)
    assert (outcome.error_code, outcome.attempts) == ("rate_limited", 2)
    assert outcome.error_message is not None and "(HTTP 429)" in outcome.error_message
    assert slept == [7.0]  # max(backoff 0.5, Retry-After 7)
    # an HTTP date two minutes ahead
    portals.error_status = 503
    portals.error_headers = {
        "Retry-After": format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    }
    with pytest.raises(TransientError) as info:
        fetch_ca(ca_options(portals))
    assert info.value.retry_after is not None and 100 < info.value.retry_after <= 120
    assert "the login page (/ca-paris/particulier/acceder-a-mes-comptes.html)" in str(info.value)


def test_unreachable_portal_is_transient_and_retried(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    opts = {"base_url": url, "region": "paris", "timeout_s": 5}
    task = FetchTask(
        NOW, "ca-main", get_provider("credit_agricole"), opts, lambda: CA_CREDS, debug_dir=tmp_path
    )
    outcome = run_one(task, RetryPolicy(timeout_s=30, max_attempts=2, backoff_s=0))
    assert outcome.error_code == "transient" and outcome.attempts == 2
    assert outcome.error_message is not None
    assert "ERR_CONNECTION_REFUSED" in outcome.error_message
    with pytest.raises(TransientError, match="portal unreachable"):
        fetch_aegon({"base_url": url}, debug_dir=tmp_path)
    assert _shots(tmp_path) == []  # nothing was rendered: no screenshot


def test_the_browser_comes_from_the_context(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-chromium")
    with pytest.raises(ProviderError, match=re.escape(f"Chromium not found at {missing}")):
        fetch_aegon({"base_url": "http://127.0.0.1:1"}, browser_path=missing)


# --------------------------------------------------------------------------- aegon_targetplan


def test_aegon_reads_every_product_card(portals: FakePortals) -> None:
    snap = fetch_aegon(aegon_options(portals))

    def product(pid: str, name: str, value: str) -> SubAccount:
        item = Item(name, "asset", "pension", "fund", Decimal(value))
        return SubAccount(pid, name, "GBP", "investment", (item,))

    assert snap == Snapshot(
        (
            product("TP12345678", "Aegon Workplace Pension", "12345.67"),
            product("TP87654321", "Aegon Stakeholder Pension", "1002003.04"),
            product("TP55500011", "Aegon Top-up Plan", "999"),
        )
    )
    values = [it.value for _, it in snap.items()]
    assert all(isinstance(v, Decimal) for v in values)
    # 12345.67 + 1002003.04 + 999 = 1015347.71
    assert sum((v for v in values if v is not None), Decimal(0)) == Decimal("1015347.71")
    [attempt] = portals.attempts
    assert attempt.ok


def test_aegon_wrong_password_and_password_change(portals: FakePortals, tmp_path: Path) -> None:
    with pytest.raises(
        AuthenticationFailure, match="username or password you entered is incorrect"
    ) as info:
        fetch_aegon(aegon_options(portals), {**AEGON_CREDS, "password": "nope-nope"})
    # neither a debug_dir option nor a context folder: no screenshot, the error stands alone
    assert "screenshot" not in str(info.value)
    with pytest.raises(AuthenticationFailure, match="requires a password change"):
        fetch_aegon(aegon_options(portals), {"username": "expired", "password": "Old-Pass-1"})


def test_aegon_locked_account_is_an_authentication_failure(
    portals: FakePortals, tmp_path: Path
) -> None:
    with pytest.raises(AuthenticationFailure, match=r"login refused: Your account has been locked"):
        fetch_aegon(
            aegon_options(portals),
            {"username": "locked01", "password": "Locked-Pass-1"},
            debug_dir=tmp_path,
        )
    [shot] = _shots(tmp_path)
    assert shot.name.startswith("aegon_targetplan-pension-")
    assert [(a.username, a.ok) for a in portals.attempts] == [("locked01", False)]


def test_aegon_login_request_answered_429_is_rate_limited(portals: FakePortals) -> None:
    # the login page loads; the XHR carrying the credentials is refused
    portals.error_status = 429
    portals.error_path = "/targetplanUI/login"
    portals.error_method = "POST"
    portals.error_headers = {"Retry-After": "11"}
    with pytest.raises(RateLimited) as info:
        fetch_aegon(aegon_options(portals, timeout_s=2))
    assert info.value.retry_after == 11.0
    message = str(info.value)
    assert "the request for /targetplanUI/login" in message and "(HTTP 429)" in message
    assert AEGON_PASSWORD not in message


def test_aegon_changed_layout_clears_the_typed_password_before_the_screenshot(
    portals: FakePortals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _spy_screenshots(monkeypatch)
    portals.change_layout("aegon_submit")
    with pytest.raises(ProviderPayloadError) as info:
        fetch_aegon(aegon_options(portals, tmp_path, timeout_s=1))
    message = str(info.value)
    assert "page layout changed: the login button (#submitButtonAjaxId) not found" in message
    [shot] = _shots(tmp_path)
    assert re.fullmatch(r"aegon_targetplan-pension-\d{8}T\d{12}Z\.png", shot.name)
    [(html, inputs)] = seen
    assert 'id="password"' in html  # the login form, password already typed, was on screen
    assert AEGON_PASSWORD not in html and all(AEGON_PASSWORD not in v for v in inputs)
    assert AEGON_USERNAME not in html and all(AEGON_USERNAME not in v for v in inputs)
    assert portals.attempts == []  # never submitted


def test_aegon_changed_card_layout(portals: FakePortals) -> None:
    portals.change_layout("aegon_value")
    with pytest.raises(
        ProviderPayloadError,
        match=r"page layout changed: value \(span.currency-hero\) not found for product "
        r"'Aegon Workplace Pension'",
    ):
        fetch_aegon(aegon_options(portals))


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
    fetches = run.raw("select status, error_code, error_message, warnings from raw.fetches")
    assert list(fetches["status"]) == ["success"], fetches.to_dict("records")
    assert json.loads(fetches["warnings"][0]) == []
    assert run.success
    df = run.published(
        "select cast(value as varchar) as value, cast(total_liabilities as varchar) as "
        "total_liabilities, is_stale from marts.fct_linked_account_valuation_hourly "
        "where linked_account_id = 'ca-main' and valuation_hour = ?",
        [run.hour],
    )
    assert len(df) == 1
    assert Decimal(df["value"][0]) == CA_TOTAL  # exact, as the page showed the balances
    assert Decimal(df["total_liabilities"][0]) == CA_LIABILITIES
    assert not bool(df["is_stale"][0])
    # read as text: pandas would turn DECIMAL(38, 18) into floats
    items = run.raw("select cast(value as varchar) as value from raw.items")
    assert sorted(Decimal(v) for v in items["value"]) == sorted(
        Decimal(v)
        for v in ("2345.67", "-45.10", "10000.00", "1250.00", "25432.10", "-123456.78", "-3500.00")
    )
    ids = run.raw("select sub_account_id from raw.sub_accounts")["sub_account_id"]
    assert CA_ACCOUNT_NUMBER not in "".join(ids)
