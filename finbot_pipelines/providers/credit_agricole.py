"""``credit_agricole``: Crédit Agricole (France) personal banking, scraped with Playwright.

Login (the regional site's "accéder à mes comptes" page): the account number
(identifiant) goes into ``#Login-account``, then the personal code is typed on
the on-screen keypad ``#clavier_num``, whose ``.Login-key`` keys are shuffled at
every load: each digit's key is found by its label, never by its position. The
"synthesis" page then lists every account, grouped by family (``data-famille``):

=============  ================  ===========================================
family         account_type      item
=============  ================  ===========================================
``COMPTES``    depository        cash/cash (a liability when overdrawn)
``EPARGNE``    depository        cash/cash (livrets, PEL, ...)
``PLACEMENTS`` investment        multi_asset/fund (assurance vie, PEA, ...)
``CREDITS``    loan              liability: real_estate/mortgage for a home
                                 loan (``immobilier``/``habitat``), else
                                 other/loan; value = minus the amount owed
=============  ================  ===========================================

An unknown family, an account without a number or a balance, or a balance that
is not exactly a French amount ("1 234,56 €", non-breaking or narrow spaces,
"-" or U+2212 minus sign) fails the fetch with :class:`ProviderPayloadError` naming the
account: a wrong value is never returned.

Sub-account ids are masked account numbers (``****8901``; more digits when two
accounts share their last four) because the main account number is usually
the login identifiant itself, a credential.

Credentials (vault JSON): ``account_number`` (secret), ``password`` (secret, the
digits of the personal code), ``region`` (not secret, optional when the
``region`` option is set).

Options: ``region`` (the regional bank, e.g. ``paris`` or ``ca-paris``; overrides
nothing: it must agree with the credentials' region when both are set),
``base_url`` (portal origin, default ``https://www.credit-agricole.fr``; pages
are ``<base_url>/ca-<region>/particulier/...``), ``timeout_s`` (every
navigation and wait, default 30), ``debug_dir`` (failure screenshots, default
``$FINBOT_HOME/debug``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from finbot_pipelines.providers.base import (
    AuthenticationFailure,
    CredentialField,
    CredentialsError,
    FetchTimeout,
    Item,
    ProviderError,
    ProviderPayloadError,
    Snapshot,
    SubAccount,
    TransientError,
)
from finbot_pipelines.providers.browser import (
    PortalSession,
    check_common_option,
    map_playwright_error,
    portal_session,
)

PROVIDER_ID = "credit_agricole"
DEFAULT_BASE_URL = "https://www.credit-agricole.fr"
LOGIN_PATH = "/{region}/particulier/acceder-a-mes-comptes.html"
OPTION_KEYS = ("region", "base_url", "timeout_s", "debug_dir")
_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_DIGITS = "0123456789"

# --------------------------------------------------------------------------- selectors

SEL_LOGIN_FORM = "#loginForm"
SEL_ACCOUNT_INPUT = "#Login-account"
SEL_ACCOUNT_SUBMIT = "button[login-submit-btn]"
SEL_KEYPAD = "#clavier_num"
SEL_KEYPAD_KEYS = "#clavier_num .Login-key"
SEL_VALIDATE = "#validation"
SEL_LOGIN_ERROR = "#erreur-keypad"
SEL_PORTAL_ERROR = "div.AemBug-content"
SEL_SYNTHESIS_USER = ".Synthesis-user"
SEL_SYNTHESIS_MAIN = ".Synthesis-main"
STRONG_AUTH_TEXT = re.compile(r"authentification\s+forte", re.IGNORECASE)

# Reads every account row of the synthesis page in one go; missing parts are null.
_READ_ACCOUNTS_JS = """
(main) => {
  const txt = (el) => (el ? el.innerText.trim() : null);
  const out = [];
  for (const section of main.querySelectorAll('[data-famille]')) {
    const family = section.getAttribute('data-famille');
    const title = txt(section.querySelector('.Synthesis-familyTitle'));
    const rows = section.querySelectorAll('.SynthesisMainAccount-head, .Synthesis-product');
    if (!rows.length) out.push({family, title, empty: true});
    for (const row of rows) {
      const isMain = row.classList.contains('SynthesisMainAccount-head');
      out.push({
        family, title, empty: false,
        label: txt(row.querySelector(isMain
          ? '.SynthesisMainAccount-headMainDescriptionItem--label'
          : '.Synthesis-productLabel')),
        number: txt(row.querySelector(isMain
          ? '.SynthesisMainAccount-headMainDescriptionItem--number'
          : '.Synthesis-productNumber')),
        amount: txt(row.querySelector('.Synthesis-amount')),
      });
    }
  }
  return out;
}
"""

# --------------------------------------------------------------------------- amounts

_SPACES = "\u0020\u00a0\u202f\u2009"
_FR_AMOUNT_RE = re.compile(
    r"^(?P<sign>[-+\u2212])?\s*"
    r"(?P<int>\d{1,3}(?:[\u0020\u00a0\u202f\u2009]\d{3})+|\d+)"
    r"(?:,(?P<dec>\d{2}))?"
    r"\s*(?:€|EUR)$"
)


def parse_french_amount(text: str) -> Decimal:
    """``"1 234,56 €"`` -> ``Decimal("1234.56")``; ``"-45,10 €"`` -> ``Decimal("-45.10")``.

    Thousands separated by a space, a non-breaking or a narrow non-breaking
    space; two decimals after a comma (or none); a leading ``-``, U+2212 or ``+``;
    a trailing ``€`` or ``EUR``. Anything else raises ``ValueError``."""
    s = text.strip()
    s = re.sub(f"[{_SPACES}]+", lambda m: m.group(0)[0], s)
    m = _FR_AMOUNT_RE.match(s)
    if not m:
        raise ValueError(f"not a French euro amount: {text!r}")
    digits = re.sub(f"[{_SPACES}]", "", m["int"])
    value = Decimal(f"{digits}.{m['dec'] or '00'}")
    return -value if m["sign"] in ("-", "\u2212") else value


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class _Family:
    account_type: str
    kind: str  # cash | investment | loan


FAMILIES: dict[str, _Family] = {
    "COMPTES": _Family("depository", "cash"),
    "EPARGNE": _Family("depository", "cash"),
    "PLACEMENTS": _Family("investment", "investment"),
    "CREDITS": _Family("loan", "loan"),
}
_HOME_LOAN_RE = re.compile(r"immobilier|habitat", re.IGNORECASE)


@dataclass(frozen=True)
class AccountRow:
    family: str
    label: str
    number: str  # digits only
    amount: Decimal


def _account_digits(text: str) -> str | None:
    m = re.search(r"\d(?:[\d\u0020\u00a0\u202f]*\d)?", text)
    if not m:
        return None
    digits = re.sub(r"\D", "", m.group(0))
    return digits if len(digits) >= 5 else None


def parse_rows(raw_rows: list[dict[str, Any]], prefix: str = PROVIDER_ID) -> list[AccountRow]:
    """Validate what the page showed; raise ProviderPayloadError naming the account."""
    rows: list[AccountRow] = []
    for i, raw in enumerate(raw_rows):
        family = str(raw.get("family") or "").strip().upper()
        section = raw.get("title") or family or f"section {i + 1}"
        if family not in FAMILIES:
            raise ProviderPayloadError(
                f"{prefix}: unsupported account family {family or '(none)'!r} in section "
                f"{section!r}: its accounts cannot be valued (supported: {', '.join(FAMILIES)})"
            )
        if raw.get("empty"):
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: no account row found in section {section!r}"
            )
        label = (raw.get("label") or "").strip()
        if not label:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: account name not found in section "
                f"{section!r} (row {i + 1})"
            )
        number = _account_digits(raw.get("number") or "")
        if number is None:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: account number not found for account "
                f"{label!r} in section {section!r}"
            )
        where = f"account {label!r} (****{number[-4:]})"
        amount_text = raw.get("amount")
        if amount_text is None:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: balance (.Synthesis-amount) not found for "
                f"{where}"
            )
        try:
            amount = parse_french_amount(amount_text)
        except ValueError:
            raise ProviderPayloadError(
                f"{prefix}: unreadable balance {amount_text!r} for {where}"
            ) from None
        rows.append(AccountRow(family, label, number, amount))
    if not rows:
        raise ProviderPayloadError(
            f"{prefix}: the page layout changed: no account section ([data-famille]) found on "
            "the synthesis page"
        )
    return rows


def masked_ids(numbers: list[str]) -> list[str]:
    """``****`` + the shortest suffix (4 digits or more) that keeps every account distinct."""
    distinct = set(numbers)
    if len(distinct) != len(numbers):
        dup = next(n for n in numbers if numbers.count(n) > 1)
        raise ProviderPayloadError(
            f"{PROVIDER_ID}: account ****{dup[-4:]} is listed twice on the synthesis page"
        )
    k = 4
    while len({n[-k:] for n in numbers}) != len(numbers):
        k += 1
    return [f"****{n[-k:]}" if len(n) > k else f"****{n[-4:]}" for n in numbers]


def build_snapshot(rows: list[AccountRow]) -> Snapshot:
    subs: list[SubAccount] = []
    for row, sa_id in zip(rows, masked_ids([r.number for r in rows]), strict=True):
        fam = FAMILIES[row.family]
        value = float(row.amount)
        if fam.kind == "loan":
            owed = float(abs(row.amount))
            home = bool(_HOME_LOAN_RE.search(row.label))
            item = Item(
                name=row.label,
                item_type="liability",
                asset_class="real_estate" if home else "other",
                asset_type="mortgage" if home else "loan",
                value=-owed if owed else 0.0,
            )
        elif fam.kind == "investment":
            if value < 0:
                raise ProviderPayloadError(
                    f"{PROVIDER_ID}: negative balance for investment account {row.label!r} "
                    f"(****{row.number[-4:]})"
                )
            item = Item(row.label, "asset", "multi_asset", "fund", value)
        else:
            item = Item("Cash", "liability" if value < 0 else "asset", "cash", "cash", value)
        subs.append(SubAccount(sa_id, row.label, "EUR", fam.account_type, (item,)))
    return Snapshot(tuple(subs))


# --------------------------------------------------------------------------- provider


def normalise_region(region: str) -> str:
    r = region.strip().lower()
    if not _REGION_RE.match(r):
        raise ValueError("expected a regional bank slug such as 'paris' or 'ca-paris'")
    return r if r.startswith("ca-") else f"ca-{r}"


def _check_options(options: Mapping[str, Any]) -> None:
    if not isinstance(options, Mapping):
        raise ValueError("options: expected a mapping")
    for key, value in options.items():
        if check_common_option(key, value):
            continue
        if key == "region":
            if not isinstance(value, str):
                raise ValueError("options.region: expected a regional bank slug such as 'paris'")
            try:
                normalise_region(value)
            except ValueError as exc:
                raise ValueError(f"options.region: {exc}, got {value!r}") from None
        else:
            raise ValueError(
                f"options.{key}: unknown option (expected one of {', '.join(OPTION_KEYS)})"
            )


class CreditAgricoleProvider:
    id: str = PROVIDER_ID
    description: str = (
        "Crédit Agricole (France): every account of the synthesis page (current, savings, "
        "investments, loans) in EUR, scraped with a headless browser."
    )
    credential_fields: tuple[CredentialField, ...] = (
        CredentialField("account_number", "the account number used as login identifiant"),
        CredentialField("password", "the personal code (digits, typed on the keypad)"),
        CredentialField(
            "region",
            "the regional bank, e.g. 'paris' (or set the 'region' option)",
            secret=False,
            required=False,
        ),
    )
    supports_historical: bool = False

    def validate_options(self, options: Mapping[str, Any]) -> None:
        _check_options(options)

    def fetch(
        self, credentials: Mapping[str, str], options: Mapping[str, Any], as_of: datetime
    ) -> Snapshot:
        try:
            _check_options(options)
        except ValueError as exc:
            raise ProviderError(f"{PROVIDER_ID}: {exc}") from None
        account_number, password, region = _credentials(credentials, options)
        base = str(options.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        login_url = base + LOGIN_PATH.format(region=region)
        secrets = [account_number, password]  # scrubbed from failure screenshots
        with portal_session(PROVIDER_ID, options, secrets) as s:
            _login(s, login_url, account_number, password)
            snapshot = build_snapshot(_read_accounts(s))
            snapshot.validate()
        return snapshot


def _credentials(
    credentials: Mapping[str, str], options: Mapping[str, Any]
) -> tuple[str, str, str]:
    def field(name: str) -> str:
        v = credentials.get(name)
        if not isinstance(v, str) or not v.strip():
            raise CredentialsError(f"{PROVIDER_ID}: credential field {name!r} is missing")
        return v.strip()

    account_number = field("account_number")
    password = field("password")
    if not all(c in _DIGITS for c in password):
        raise CredentialsError(f"{PROVIDER_ID}: the password must be made of digits only")
    regions: list[str] = []
    for src, raw in (
        ("options.region", options.get("region")),
        ("region", credentials.get("region")),
    ):
        if raw is None or raw == "":
            continue
        try:
            regions.append(normalise_region(str(raw)))
        except ValueError as exc:
            raise CredentialsError(f"{PROVIDER_ID}: {src}: {exc}") from None
    if not regions:
        raise CredentialsError(
            f"{PROVIDER_ID}: no region: set the 'region' option or the credential field 'region'"
        )
    if len(set(regions)) > 1:
        raise CredentialsError(
            f"{PROVIDER_ID}: the 'region' option ({regions[0]}) and the credentials' region "
            f"({regions[1]}) disagree"
        )
    return account_number, password, regions[0]


def _login(s: PortalSession, login_url: str, account_number: str, password: str) -> None:
    page = s.page
    s.goto(login_url, "the login page")
    found = s.expect_any(
        {
            "login form": page.locator(SEL_LOGIN_FORM),
            "portal error": page.locator(SEL_PORTAL_ERROR),
        },
        "the login form (#loginForm)",
    )
    if found == "portal error":
        message = s.text(page.locator(SEL_PORTAL_ERROR), "the portal error message")
        raise TransientError(f"{PROVIDER_ID}: the portal is unavailable: {message[:200]}")

    # 1. the identifiant
    s.expect(page.locator(SEL_ACCOUNT_INPUT), "the account number field (#Login-account)")
    with s.step("typing the account number", sensitive=True):
        page.locator(SEL_ACCOUNT_INPUT).fill(account_number)
    s.expect(page.locator(SEL_ACCOUNT_SUBMIT), "the account number button ([login-submit-btn])")
    with s.step("submitting the account number"):
        page.locator(SEL_ACCOUNT_SUBMIT).first.click()

    # 2. the keypad: wait for its keys to show their digits, then map digit -> key
    s.expect(page.locator(SEL_KEYPAD), "the keypad (#clavier_num)")
    keys = page.locator(SEL_KEYPAD_KEYS)
    s.expect(keys, "the keypad keys (#clavier_num .Login-key)")
    labels = _keypad_labels(s)
    key_of: dict[str, int] = {}
    for index, label in enumerate(labels):
        if label in key_of:
            raise s.layout_changed("the keypad", f"digit {label} appears on two keys")
        if label:
            key_of[label] = index
    with s.step("typing the personal code on the keypad", sensitive=True):
        for digit in password:
            keys.nth(key_of[digit]).click()
    s.expect(page.locator(SEL_VALIDATE), "the keypad validation button (#validation)")
    with s.step("validating the personal code"):
        page.locator(SEL_VALIDATE).first.click()

    # 3. the synthesis page, or why not
    try:
        outcome = s.expect_any(
            {
                "synthesis": page.locator(SEL_SYNTHESIS_USER),
                "login error": page.locator(SEL_LOGIN_ERROR),
                "portal error": page.locator(SEL_PORTAL_ERROR),
            },
            "the accounts page (.Synthesis-user) or a login error (#erreur-keypad)",
        )
    except ProviderPayloadError:
        # Only once nothing else showed up: the words also appear in security notices.
        with s.step("looking for a strong authentication request"):
            strong_auth = page.get_by_text(STRONG_AUTH_TEXT).first.is_visible()
        if not strong_auth:
            raise
        outcome = "strong authentication"
    if outcome == "login error":
        message = s.text(page.locator(SEL_LOGIN_ERROR), "the login error message")
        raise AuthenticationFailure(
            f"{PROVIDER_ID}: login refused: {message[:200] or 'wrong account number or code'}"
        )
    if outcome == "strong authentication":
        raise AuthenticationFailure(
            f"{PROVIDER_ID}: the portal asks for a strong authentication (confirm the login "
            "on the Ma Banque app or the portal, then retry)"
        )
    if outcome == "portal error":
        message = s.text(page.locator(SEL_PORTAL_ERROR), "the portal error message")
        raise TransientError(f"{PROVIDER_ID}: the portal is unavailable: {message[:200]}")


def _keypad_labels(s: PortalSession) -> list[str]:
    """The label of every keypad key, in DOM order, once all ten digits are shown."""
    js_ready = """
    (sel) => {
      const labels = Array.from(document.querySelectorAll(sel)).map((k) => k.innerText.trim());
      return '0123456789'.split('').every((d) => labels.includes(d));
    }
    """
    try:
        s.page.wait_for_function(js_ready, arg=SEL_KEYPAD_KEYS, timeout=s.timeout_s * 1000)
    except PlaywrightTimeoutError:
        with s.step("reading the keypad"):
            shown = sorted(
                {t.strip() for t in s.page.locator(SEL_KEYPAD_KEYS).all_inner_texts()}
                & set(_DIGITS)
            )
        if s.page_settled():
            raise s.layout_changed(
                "the keypad digits", f"digits shown: {''.join(shown) or 'none'}"
            ) from None
        raise FetchTimeout(
            f"{PROVIDER_ID}: the keypad did not finish loading within {s.timeout_s:g} s"
        ) from None
    except PlaywrightError as exc:
        raise map_playwright_error(exc, PROVIDER_ID, "reading the keypad", s.timeout_s) from None
    with s.step("reading the keypad"):
        return [t.strip() for t in s.page.locator(SEL_KEYPAD_KEYS).all_inner_texts()]


def _read_accounts(s: PortalSession) -> list[AccountRow]:
    main = s.page.locator(SEL_SYNTHESIS_MAIN)
    s.expect(main, "the accounts list (.Synthesis-main)")
    with s.step("reading the accounts"):
        raw = main.first.evaluate(_READ_ACCOUNTS_JS)
    if not isinstance(raw, list):
        raise s.layout_changed("the accounts list (.Synthesis-main)")
    return parse_rows(raw)
