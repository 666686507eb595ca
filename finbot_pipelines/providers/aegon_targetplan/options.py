"""Options and credentials of the ``aegon_targetplan`` provider (no Playwright here).

Credentials (the vault entry): ``username`` (not secret), ``password`` (secret).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from finbot_pipelines.providers.base import (
    HttpUrl,
    ProviderCredentials,
    ProviderSpec,
    public,
    secret,
)
from finbot_pipelines.providers.portal_options import PortalOptions

PROVIDER_ID = "aegon_targetplan"
DEFAULT_BASE_URL = "https://lwp.aegon.co.uk"


class AegonTargetplanOptions(PortalOptions):
    base_url: HttpUrl = Field(
        default=DEFAULT_BASE_URL,
        description="portal origin; the login page is <base_url>/targetplanUI/login",
    )


class AegonTargetplanCredentials(ProviderCredentials):
    username: Annotated[str, StringConstraints(min_length=1)] = public(
        "the Targetplan username", masked=True
    )
    password: Annotated[str, StringConstraints(min_length=1)] = secret("the Targetplan password")


SPEC = ProviderSpec(
    id=PROVIDER_ID,
    description=(
        "Aegon Targetplan (UK pensions): the value of every product, in GBP, scraped with a "
        "headless browser."
    ),
    options=AegonTargetplanOptions,
    credentials=AegonTargetplanCredentials,
    supports_historical=False,
    implementation=("finbot_pipelines.providers.aegon_targetplan.provider:AegonTargetplanProvider"),
)
