"""``aegon_targetplan``: Aegon Targetplan (UK workplace pensions), scraped with Playwright.

Login on ``/targetplanUI/login`` (``input#username``, ``input#password``, the
``#submitButtonAjaxId`` button). The portal then shows either the investments
dashboard (``a#nav-primary-profile``), a login error (``#error-container-wrapper``,
-> :class:`AuthenticationFailure` with the portal's words) or the "Edit password"
page (``#page-heading``, -> :class:`AuthenticationFailure`: the user must change
the password on the portal). Every product card (``.card-product-1``) becomes a
sub-account: name from ``.card-body h3``, value from ``.card-body
span.currency-hero`` ("£12,345.67", parsed exactly), id the last word of
``.card-footer`` (the policy number). Currency GBP, account_type investment,
one item: asset_class pension, asset_type fund.

Credentials (vault JSON): ``username`` (not secret), ``password`` (secret).

Options: ``base_url`` (portal origin, default ``https://lwp.aegon.co.uk``),
``timeout_s`` (every navigation and wait, default 30), ``debug_dir`` (failure
screenshots, default ``$FINBOT_HOME/debug``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from finbot_pipelines.providers.base import (
    AuthenticationFailure,
    CredentialField,
    CredentialsError,
    Item,
    ProviderError,
    ProviderPayloadError,
    Snapshot,
    SubAccount,
)
from finbot_pipelines.providers.browser import PortalSession, check_common_option, portal_session

PROVIDER_ID = "aegon_targetplan"
DEFAULT_BASE_URL = "https://lwp.aegon.co.uk"
LOGIN_PATH = "/targetplanUI/login"
OPTION_KEYS = ("base_url", "timeout_s", "debug_dir")

SEL_USERNAME = "input#username"
SEL_PASSWORD = "input#password"
SEL_SUBMIT = "#submitButtonAjaxId"
SEL_LOGGED_IN = "a#nav-primary-profile"
SEL_LOGIN_ERROR = "#error-container-wrapper"
SEL_PAGE_HEADING = "#page-heading"
SEL_CARDS = ".card-product-1"
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

_GBP_RE = re.compile(
    r"^(?P<sign>[-\u2212])?\s*£\s*(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<dec>\d{2}))?$"
)


def parse_gbp_amount(text: str) -> Decimal:
    """``"£12,345.67"`` -> ``Decimal("12345.67")``. Comma thousands, two decimals
    (or none), an optional leading minus. Anything else raises ``ValueError``."""
    m = _GBP_RE.match(text.strip().replace("\u00a0", " "))
    if not m:
        raise ValueError(f"not a sterling amount: {text!r}")
    value = Decimal(f"{m['int'].replace(',', '')}.{m['dec'] or '00'}")
    return -value if m["sign"] else value


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    value: Decimal


def parse_cards(raw_cards: list[dict[str, Any]], prefix: str = PROVIDER_ID) -> list[Product]:
    """Validate what the cards showed; raise ProviderPayloadError naming the product."""
    if not raw_cards:
        raise ProviderPayloadError(
            f"{prefix}: the page layout changed: no product card ({SEL_CARDS}) on the "
            "investments page"
        )
    products: list[Product] = []
    for i, raw in enumerate(raw_cards):
        name = (raw.get("name") or "").strip()
        if not name:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: product name (.card-body h3) not found "
                f"on product card {i + 1}"
            )
        footer = (raw.get("footer") or "").split()
        if not footer:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: policy number (.card-footer) not found "
                f"for product {name!r}"
            )
        value_text = raw.get("value")
        if value_text is None:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: value (span.currency-hero) not found for "
                f"product {name!r}"
            )
        try:
            value = parse_gbp_amount(value_text)
        except ValueError:
            raise ProviderPayloadError(
                f"{prefix}: unreadable value {value_text!r} for product {name!r}"
            ) from None
        if value < 0:
            raise ProviderPayloadError(f"{prefix}: negative value {value_text!r} for {name!r}")
        products.append(Product(footer[-1], name, value))
    return products


def build_snapshot(products: list[Product]) -> Snapshot:
    return Snapshot(
        tuple(
            SubAccount(
                p.id,
                p.name,
                "GBP",
                "investment",
                (Item(p.name, "asset", "pension", "fund", float(p.value)),),
            )
            for p in products
        )
    )


def _check_options(options: Mapping[str, Any]) -> None:
    if not isinstance(options, Mapping):
        raise ValueError("options: expected a mapping")
    for key, value in options.items():
        if not check_common_option(key, value):
            raise ValueError(
                f"options.{key}: unknown option (expected one of {', '.join(OPTION_KEYS)})"
            )


class AegonTargetplanProvider:
    id: str = PROVIDER_ID
    description: str = (
        "Aegon Targetplan (UK pensions): the value of every product, in GBP, scraped with a "
        "headless browser."
    )
    credential_fields: tuple[CredentialField, ...] = (
        CredentialField("username", "the Targetplan username", secret=False),
        CredentialField("password", "the Targetplan password"),
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
        username = credentials.get("username")
        password = credentials.get("password")
        for name, v in (("username", username), ("password", password)):
            if not isinstance(v, str) or not v:
                raise CredentialsError(f"{PROVIDER_ID}: credential field {name!r} is missing")
        assert isinstance(username, str) and isinstance(password, str)
        base = str(options.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        secrets = [username, password]  # scrubbed from failure screenshots and messages
        with portal_session(PROVIDER_ID, options, secrets) as s:
            _login(s, base + LOGIN_PATH, username, password)
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
