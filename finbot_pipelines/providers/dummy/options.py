"""Options of the ``dummy`` provider (no credentials).

Every option is optional; see :mod:`finbot_pipelines.providers.dummy.provider`
for what the household holds.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator

from finbot_pipelines.providers.base import ProviderOptions, ProviderSpec

SUB_ACCOUNT_KINDS = (
    "cash",
    "stocks",
    "pension",
    "crypto",
    "cold_wallet",
    "property",
    "mortgage",
    "credit_card",
)
#: What an account without a `sub_accounts` option holds (the home and the cold wallet
#: are opt-in).
DEFAULT_SUB_ACCOUNT_KINDS = tuple(
    k for k in SUB_ACCOUNT_KINDS if k not in ("property", "cold_wallet")
)
FAIL_KINDS = (
    "transient",
    "authentication_failure",
    "provider_error",
    "timeout",
    "rate_limited",
    "empty",
    "malformed",
)
SubAccountKind = Literal[
    "cash", "stocks", "pension", "crypto", "cold_wallet", "property", "mortgage", "credit_card"
]
FailKind = Literal[
    "transient",
    "authentication_failure",
    "provider_error",
    "timeout",
    "rate_limited",
    "empty",
    "malformed",
]

DEFAULT_SUB_ACCOUNT_KIND_LIST: list[SubAccountKind] = [
    "cash", "stocks", "pension", "crypto", "mortgage", "credit_card"
]  # fmt: skip
_HOUR_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):00(?::00)?$")


def parse_hour(value: object) -> datetime | None:
    """The hour of a ``"YYYY-MM-DDTHH:00"`` string (or an on-the-hour datetime)."""
    if isinstance(value, datetime):
        if value.minute or value.second or value.microsecond:
            return None
        return value.replace(tzinfo=None)
    if not isinstance(value, str):
        return None
    m = _HOUR_RE.match(value)
    if not m:
        return None
    try:
        return datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]))
    except ValueError:
        return None


def _check_hour(v: object) -> object:
    if parse_hour(v) is None:
        raise ValueError(
            f'expected an hour "YYYY-MM-DDTHH:00" such as "2024-03-01T10:00", got {v!r}'
        )
    return v


def _unique_kinds(v: list[str]) -> list[str]:
    for i, kind in enumerate(v):
        if kind in v[:i]:
            raise ValueError(f"{kind!r} is listed twice")
    return v


Hour = Annotated[str | datetime, AfterValidator(_check_hour)]
#: Seconds the dummy may sleep: finite, 0 to an hour.
NonNegativeSeconds = Annotated[float, Strict(), Field(ge=0, le=3600, allow_inf_nan=False)]
#: Hours in a cycle or an offset: up to about a century.
MAX_CYCLE_HOURS = 24 * 366 * 100


class FailCycle(BaseModel):
    """Fails at the hours ``h`` (since the epoch) where
    ``(h - offset_hours) % every_hours < for_hours``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    every_hours: int = Field(ge=1, le=MAX_CYCLE_HOURS, description="cycle length in hours, >= 1")
    for_hours: int = Field(
        ge=0, le=MAX_CYCLE_HOURS, description="failing hours at the start of each cycle"
    )
    offset_hours: int = Field(
        default=0, ge=0, le=MAX_CYCLE_HOURS, description="shift of the cycle in hours"
    )

    @model_validator(mode="after")
    def _within_cycle(self) -> FailCycle:
        if self.for_hours > self.every_hours:
            raise ValueError(f"for_hours: expected at most every_hours ({self.every_hours})")
        return self


class DummyOptions(ProviderOptions):
    sub_accounts: Annotated[
        list[SubAccountKind], Field(min_length=1), AfterValidator(_unique_kinds)
    ] = Field(
        default_factory=lambda: list(DEFAULT_SUB_ACCOUNT_KIND_LIST),
        description=(
            f"kinds to include: {', '.join(SUB_ACCOUNT_KINDS)} (default all but property and "
            "cold_wallet)"
        ),
    )
    scale: float = Field(
        default=1.0,
        gt=0,
        le=1e6,
        allow_inf_nan=False,
        description="multiplies every value and unit count (at most 1e6)",
    )
    fail_hours: list[Hour] = Field(
        default_factory=list, description='hours "YYYY-MM-DDTHH:00" at which the fetch fails'
    )
    fail_cycle: FailCycle | None = Field(
        default=None, description="{every_hours, for_hours, offset_hours}: a failure cycle"
    )
    fail_kind: FailKind = Field(
        default="transient", description=f"how failing hours fail: {', '.join(FAIL_KINDS)}"
    )
    sleep_s: NonNegativeSeconds = Field(
        default=5.0, description="with fail_kind timeout: seconds to sleep before answering"
    )
    flaky_attempts: int = Field(
        default=0,
        ge=0,
        le=20,
        description="the first N calls per (account, hour) fail transiently (0 to 20)",
    )
    latency_s: NonNegativeSeconds = Field(
        default=0.0, description="seconds to wait before answering"
    )


SPEC = ProviderSpec(
    id="dummy",
    description=(
        "Synthetic household (cash in GBP/EUR/USD, ISA, pension, crypto, home (opt-in), mortgage, "
        "credit card), deterministic per linked account and hour; no credentials."
    ),
    options=DummyOptions,
    supports_historical=True,
    implementation="finbot_pipelines.providers.dummy.provider:DummyProvider",
)
