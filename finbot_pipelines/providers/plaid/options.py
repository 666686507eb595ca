"""Options and credentials of the ``plaid`` provider (pydantic only: no plaid-python here).

Validating ``finbot.yaml`` imports this module and never the SDK; the client is in
:mod:`.client`, the mapping in :mod:`.mapping`, the provider in :mod:`.provider`.

Credentials (one vault entry, a JSON object, written by ``finbot accounts link plaid``)
--------------------------------------------------------------------------------------
``client_id``, ``secret`` (secrets)
    the API keys of your Plaid developer account (Plaid dashboard, Developers > Keys).
``access_token`` (secret)
    the Item's access token, obtained by linking (:mod:`.link`).
``environment`` (public)
    ``sandbox``, ``development`` or ``production``: picks Plaid's host. Plaid
    retired ``development`` in 2024; it is accepted for old credentials.

Options (all optional)
----------------------
``api_url``
    the address of the Plaid API (default: the host of the credentials'
    environment). Tests point it at a local fake.
``timeout_s``
    network timeout of each call, seconds (default 30, at most 300).
``products``
    the optional products read besides balances: ``investments`` (holdings, and
    investment transactions once a day), ``liabilities`` and ``transactions``
    (bank and card transactions through ``/transactions/sync``); default all
    three. A product Plaid says is not available for the Item is skipped, never a
    failure. Plaid may add (and bill) a product the first time it is called on an
    Item: leave out the ones you do not want.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from finbot_pipelines.providers.base import (
    HttpUrl,
    ProviderCredentials,
    ProviderOptions,
    ProviderSpec,
    Seconds,
    public,
)
from finbot_pipelines.providers.base import secret as secret_field

PROVIDER_ID = "plaid"
PLAID_HOSTS: dict[str, str] = {
    "sandbox": "https://sandbox.plaid.com",
    "development": "https://development.plaid.com",
    "production": "https://production.plaid.com",
}
ENVIRONMENTS = tuple(PLAID_HOSTS)
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 300.0
Product = Literal["investments", "liabilities", "transactions"]
OPTIONAL_PRODUCTS: tuple[Product, ...] = ("investments", "liabilities", "transactions")
RELINK_HINT = "re-link this account (finbot accounts link plaid)"

Environment = Literal["sandbox", "development", "production"]


def _unique_products(v: list[str]) -> list[str]:
    for i, product in enumerate(v):
        if product in v[:i]:
            raise ValueError(f"expected each product once, got {product!r} twice")
    return v


def _environment(v: object) -> object:
    """``" Production "`` -> ``"production"`` (old vault entries were written by hand)."""
    return v.strip().lower() if isinstance(v, str) else v


NonEmpty = Annotated[str, StringConstraints(min_length=1)]
PlaidTimeout = Annotated[Seconds, Field(le=MAX_TIMEOUT_S)]
Products = Annotated[list[Product], AfterValidator(_unique_products)]


class PlaidOptions(ProviderOptions):
    api_url: HttpUrl | None = Field(
        default=None,
        description=(
            "address of the Plaid API (default: the host of the credentials' environment, "
            "https://<environment>.plaid.com)"
        ),
    )
    timeout_s: PlaidTimeout = Field(
        default=DEFAULT_TIMEOUT_S,
        description=f"network timeout of each Plaid call in seconds, at most {MAX_TIMEOUT_S:g}",
    )
    products: Products = Field(
        default_factory=lambda: list(OPTIONAL_PRODUCTS),
        description=(
            "optional products to read besides balances: investments (holdings, and "
            "investment transactions once a day), liabilities (cards, student loans, "
            "mortgages) and transactions (bank and card transactions); one Plaid does not "
            "offer for the Item is skipped; Plaid may bill a product the first time it is "
            "called"
        ),
    )


class PlaidCredentials(ProviderCredentials):
    client_id: NonEmpty = secret_field("Plaid API client_id (Plaid dashboard, Developers > Keys)")
    secret: NonEmpty = secret_field("Plaid API secret of the environment")
    access_token: NonEmpty = secret_field(
        "access token of the linked Item (from `finbot accounts link plaid`)"
    )
    environment: Annotated[Environment, BeforeValidator(_environment)] = public(
        "Plaid environment: sandbox, development or production"
    )


def resolve_api_url(environment: str, api_url: str | None = None) -> str:
    """``api_url`` when given, else the host of ``environment``."""
    if api_url:
        return api_url.rstrip("/")
    if environment not in PLAID_HOSTS:
        raise ValueError(
            f"environment: expected one of {', '.join(ENVIRONMENTS)}, got {environment!r}"
        )
    return PLAID_HOSTS[environment]


SPEC = ProviderSpec(
    id=PROVIDER_ID,
    description=(
        "Banks, cards, loans and brokerages through Plaid: balances, investment holdings, "
        "liabilities and transactions of one Plaid Item (link it with "
        "`finbot accounts link plaid`)."
    ),
    options=PlaidOptions,
    credentials=PlaidCredentials,
    supports_historical=False,
    implementation="finbot_pipelines.providers.plaid.provider:PlaidProvider",
)
