"""``credit_agricole``: Crédit Agricole (France) personal banking, scraped with Playwright.

Login (the regional site's "accéder à mes comptes" page,
``<base_url>/ca-<region>/particulier/acceder-a-mes-comptes.html``): the account
number (identifiant) goes into ``#Login-account``, then the personal code is
typed on the on-screen keypad ``#clavier_num``, whose ``.Login-key`` keys are
shuffled at every load: each digit's key is found by its label, never by its
position. The portal then shows the "synthesis" page listing every account
(read and mapped by :mod:`.mapping`), a login error (``#erreur-keypad``: a wrong
code, a locked access -> :class:`AuthenticationFailure` with the portal's
words), a strong authentication request (-> :class:`AuthenticationFailure`: the
user must confirm the login on the app) or a maintenance notice
(``div.AemBug-content`` -> :class:`TransientError`).

Browser plumbing (timeouts, HTTP statuses with Retry-After, layout changes,
scrubbed failure screenshots, masked messages) is :mod:`..browser`'s. Options
and credentials: :mod:`.options`.
"""

from __future__ import annotations

import re

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from finbot_pipelines.providers.base import FetchContext, Provider
from finbot_pipelines.providers.browser import (
    PortalSession,
    map_playwright_error,
    portal_session,
)
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    FetchTimeout,
    ProviderPayloadError,
    Snapshot,
    TransientError,
)
from finbot_pipelines.providers.credit_agricole.mapping import (
    AccountRow,
    build_snapshot,
    parse_rows,
)
from finbot_pipelines.providers.credit_agricole.options import (
    PROVIDER_ID,
    SPEC,
    CreditAgricoleCredentials,
    CreditAgricoleOptions,
    resolve_region,
)

LOGIN_PATH = "/{region}/particulier/acceder-a-mes-comptes.html"
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

# True once every digit is shown on a key (the labels arrive after the keys).
_KEYPAD_READY_JS = """
(sel) => {
  const labels = Array.from(document.querySelectorAll(sel)).map((k) => k.innerText.trim());
  return '0123456789'.split('').every((d) => labels.includes(d));
}
"""


class CreditAgricoleProvider(Provider[CreditAgricoleOptions, CreditAgricoleCredentials]):
    spec = SPEC

    def fetch(
        self,
        ctx: FetchContext,
        options: CreditAgricoleOptions,
        credentials: CreditAgricoleCredentials,
    ) -> Snapshot:
        region = resolve_region(options, credentials)
        login_url = options.base_url + LOGIN_PATH.format(region=region)
        account_number, password = credentials.account_number, credentials.password
        with portal_session(
            PROVIDER_ID,
            ctx,
            timeout_s=options.timeout_s,
            secrets=[account_number, password],  # scrubbed from screenshots and messages
            debug_dir=options.debug_dir,
            locale="fr-FR",
        ) as s:
            _login(s, login_url, account_number, password)
            snapshot = build_snapshot(_read_accounts(s))
            snapshot.validate()
        return snapshot


def _portal_unavailable(s: PortalSession) -> TransientError:
    message = s.text(s.page.locator(SEL_PORTAL_ERROR), "the portal error message")
    return TransientError(f"{PROVIDER_ID}: the portal is unavailable: {message[:200]}")


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
        raise _portal_unavailable(s)

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
        raise _portal_unavailable(s)


def _keypad_labels(s: PortalSession) -> list[str]:
    """The label of every keypad key, in DOM order, once all ten digits are shown."""
    try:
        s.page.wait_for_function(_KEYPAD_READY_JS, arg=SEL_KEYPAD_KEYS, timeout=s.timeout_s * 1000)
    except PlaywrightTimeoutError:
        with s.step("reading the keypad"):
            shown = sorted(
                {t.strip() for t in s.page.locator(SEL_KEYPAD_KEYS).all_inner_texts()}
                & set(_DIGITS)
            )
        failed = s.failed_answer_error()
        if failed is not None:
            raise failed from None
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
