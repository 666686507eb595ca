"""``aegon_targetplan``: Aegon Targetplan (UK workplace pensions), scraped with Playwright.

Login on ``<base_url>/targetplanUI/login`` (``input#username``,
``input#password``, the ``#submitButtonAjaxId`` button; the portal logs in over
XHR). The portal then shows either the investments dashboard
(``a#nav-primary-profile``), a login error (``#error-container-wrapper``: a wrong
password, a locked account -> :class:`AuthenticationFailure` with the portal's
words) or the "Edit password" page (``#page-heading``, ->
:class:`AuthenticationFailure`: the user must change the password on the
portal). The product cards are read and mapped by :mod:`.mapping`.

Browser plumbing (timeouts, HTTP statuses with Retry-After, the login XHR's
429/5xx included, layout changes, scrubbed failure screenshots, masked
messages) is :mod:`..browser`'s. Options and credentials: :mod:`.options`.
"""

from __future__ import annotations

import re

from finbot_pipelines.providers.aegon_targetplan.mapping import (
    SEL_CARDS,
    Product,
    build_snapshot,
    parse_cards,
)
from finbot_pipelines.providers.aegon_targetplan.options import (
    PROVIDER_ID,
    SPEC,
    AegonTargetplanCredentials,
    AegonTargetplanOptions,
)
from finbot_pipelines.providers.base import FetchContext, Provider
from finbot_pipelines.providers.browser import PortalSession, portal_session
from finbot_pipelines.providers.contract import AuthenticationFailure, Snapshot

LOGIN_PATH = "/targetplanUI/login"

SEL_USERNAME = "input#username"
SEL_PASSWORD = "input#password"
SEL_SUBMIT = "#submitButtonAjaxId"
SEL_LOGGED_IN = "a#nav-primary-profile"
SEL_LOGIN_ERROR = "#error-container-wrapper"
SEL_PAGE_HEADING = "#page-heading"
EDIT_PASSWORD_TEXT = re.compile(r"edit\s+password", re.IGNORECASE)

_READ_CARDS_JS = """
(cards) => cards.map((card) => {
  const txt = (el) => (el ? el.innerText.trim() : null);
  return {
    name: txt(card.querySelector('.card-body h3')),
    value: txt(card.querySelector('.card-body span.currency-hero')),
    footer: txt(card.querySelector('.card-footer')),
  };
})
"""


class AegonTargetplanProvider(Provider[AegonTargetplanOptions, AegonTargetplanCredentials]):
    spec = SPEC

    def fetch(
        self,
        ctx: FetchContext,
        options: AegonTargetplanOptions,
        credentials: AegonTargetplanCredentials,
    ) -> Snapshot:
        username, password = credentials.username, credentials.password
        with portal_session(
            PROVIDER_ID,
            ctx,
            timeout_s=options.timeout_s,
            secrets=[username, password],  # scrubbed from screenshots and messages
            debug_dir=options.debug_dir,
            locale="en-GB",
        ) as s:
            _login(s, options.base_url + LOGIN_PATH, username, password)
            snapshot = build_snapshot(_read_products(s))
            snapshot.validate()
        return snapshot


def _login(s: PortalSession, url: str, username: str, password: str) -> None:
    page = s.page
    s.goto(url, "the login page")
    s.expect(page.locator(SEL_USERNAME), "the username field (input#username)")
    s.expect(page.locator(SEL_PASSWORD), "the password field (input#password)")
    with s.step("typing the username", sensitive=True):
        page.locator(SEL_USERNAME).fill(username)
    with s.step("typing the password", sensitive=True):
        page.locator(SEL_PASSWORD).fill(password)
    s.expect(page.locator(SEL_SUBMIT), "the login button (#submitButtonAjaxId)")
    with s.step("submitting the login form"):
        page.locator(SEL_SUBMIT).first.click()
    outcome = s.expect_any(
        {
            "dashboard": page.locator(SEL_LOGGED_IN),
            "login error": page.locator(SEL_LOGIN_ERROR),
            "password change": page.locator(SEL_PAGE_HEADING).filter(has_text=EDIT_PASSWORD_TEXT),
        },
        "the investments page (a#nav-primary-profile) or a login error",
    )
    if outcome == "login error":
        message = s.text(page.locator(SEL_LOGIN_ERROR), "the login error message")
        raise AuthenticationFailure(
            f"{PROVIDER_ID}: login refused: {message[:200] or 'wrong username or password'}"
        )
    if outcome == "password change":
        raise AuthenticationFailure(
            f"{PROVIDER_ID}: the portal requires a password change: change it on the portal, "
            "then update the vault entry"
        )


def _read_products(s: PortalSession) -> list[Product]:
    cards = s.page.locator(SEL_CARDS)
    s.expect(cards, f"the product cards ({SEL_CARDS})")
    with s.step("reading the product cards"):
        raw = cards.evaluate_all(_READ_CARDS_JS)
    if not isinstance(raw, list):
        raise s.layout_changed(f"the product cards ({SEL_CARDS})")
    return parse_cards(raw)
