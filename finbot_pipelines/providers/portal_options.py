"""Options every scraped portal takes (pydantic only: no Playwright here).

``timeout_s`` bounds every navigation and wait; ``debug_dir`` overrides the fetch
context's folder for failure screenshots. Each portal's options model adds its
``base_url`` (and whatever else it needs) to :class:`PortalOptions`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from finbot_pipelines.providers.base import ProviderOptions, Seconds

DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 600.0


def _check_directory(v: str) -> str:
    if not v.strip():
        raise ValueError("expected a directory path")
    return v


DebugDir = Annotated[str, AfterValidator(_check_directory)]
PortalTimeout = Annotated[Seconds, Field(le=MAX_TIMEOUT_S)]


class PortalOptions(ProviderOptions):
    timeout_s: PortalTimeout = Field(
        default=DEFAULT_TIMEOUT_S,
        description=f"seconds for every navigation and wait, at most {MAX_TIMEOUT_S:g}",
    )
    debug_dir: DebugDir | None = Field(
        default=None,
        description="folder for failure screenshots (default: finbot's debug folder)",
    )
