"""Options and credentials of the ``credit_agricole`` provider (no Playwright here).

Credentials (the vault entry): ``account_number`` (secret: the login
identifiant, usually the main account's number), ``password`` (secret: the
digits of the personal code, typed on the portal's keypad), ``region`` (not
secret, optional when the ``region`` option is set).

The regional bank may be named by the ``region`` option or by the credentials'
``region``; when both are set they must agree (:func:`resolve_region`).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from finbot_pipelines.providers.base import (
    HttpUrl,
    ProviderCredentials,
    ProviderSpec,
    public,
    secret,
)
from finbot_pipelines.providers.contract import CredentialsError
from finbot_pipelines.providers.portal_options import PortalOptions

PROVIDER_ID = "credit_agricole"
DEFAULT_BASE_URL = "https://www.credit-agricole.fr"
_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_REGION_EXPECTED = "expected a regional bank slug such as 'paris' or 'ca-paris'"


def normalise_region(region: str) -> str:
    """``"Paris"`` / ``"ca-paris"`` -> ``"ca-paris"``; ``ValueError`` for anything else."""
    r = region.strip().lower()
    if not _REGION_RE.match(r):
        raise ValueError(_REGION_EXPECTED)
    return r if r.startswith("ca-") else f"ca-{r}"


def _option_region(v: str) -> str:
    try:
        return normalise_region(v)
    except ValueError:
        raise ValueError(f"{_REGION_EXPECTED}, got {v!r}") from None


def _credential_region(v: str | None) -> str | None:
    if v is None or not v.strip():
        return None
    return normalise_region(v)  # the message never quotes the value


def _check_digits(v: str) -> str:
    if not v.isascii() or not v.isdigit():
        raise ValueError("expected the digits of the personal code only")
    return v


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class CreditAgricoleOptions(PortalOptions):
    region: Annotated[str, AfterValidator(_option_region)] | None = Field(
        default=None,
        description=(
            "the regional bank, e.g. 'paris' or 'ca-paris' (or the credentials' region; "
            "both must agree when both are set)"
        ),
    )
    base_url: HttpUrl = Field(
        default=DEFAULT_BASE_URL,
        description="portal origin; pages are <base_url>/ca-<region>/particulier/...",
    )


class CreditAgricoleCredentials(ProviderCredentials):
    account_number: NonEmpty = secret("the account number used as login identifiant")
    password: Annotated[NonEmpty, AfterValidator(_check_digits)] = secret(
        "the personal code (digits, typed on the keypad)"
    )
    region: Annotated[str | None, AfterValidator(_credential_region)] = public(
        "the regional bank, e.g. 'paris' (or set the 'region' option)", default=None
    )


def resolve_region(options: CreditAgricoleOptions, credentials: CreditAgricoleCredentials) -> str:
    """The regional bank (``ca-<slug>``) from the option and/or the credentials.

    :class:`CredentialsError` naming the fields (never their values) when neither
    is set or they disagree."""
    option, credential = options.region, credentials.region
    if option and credential and option != credential:
        raise CredentialsError(
            f"{PROVIDER_ID}: the credential field 'region' and options.region name different "
            "regional banks: make them agree, or set only one"
        )
    region = option or credential
    if not region:
        raise CredentialsError(
            f"{PROVIDER_ID}: no region: set options.region or the credential field 'region'"
        )
    return region


SPEC = ProviderSpec(
    id=PROVIDER_ID,
    description=(
        "Crédit Agricole (France): every account of the synthesis page (current, savings, "
        "investments, loans) in EUR, scraped with a headless browser."
    ),
    options=CreditAgricoleOptions,
    credentials=CreditAgricoleCredentials,
    supports_historical=False,
    implementation="finbot_pipelines.providers.credit_agricole.provider:CreditAgricoleProvider",
)
