"""The schema of ``$FINBOT_HOME/finbot.yaml`` (pydantic v2).

Every model forbids unknown keys. Cross-field checks that point at one precise
field raise :class:`FieldPathError` so the loader can report the exact field
and line (e.g. ``linked_accounts[1].profile``).

Example::

    history_start: "2024-01-01T00:00"
    fx_source: ecb
    profiles:
      - {id: alice, name: Alice, valuation_ccy: GBP}
    linked_accounts:
      - id: alice-demo
        profile: alice
        provider: dummy
        name: Demo bank
        options: {sub_accounts: [cash, stocks]}
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import babel
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_serializer,
    field_validator,
    model_validator,
)

from finbot_pipelines.providers import registry
from finbot_pipelines.providers.coingecko import DEFAULT_BASE_URL as COINGECKO_BASE_URL
from finbot_pipelines.providers.coingecko import DEFAULT_COINGECKO_IDS
from finbot_pipelines.providers.contract import FIAT_CODES, ISO_4217_CODES, UNIT_CODE_RE

SLUG_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_HISTORY_START = datetime(2024, 1, 1)
#: Hourly partitions from here to now: about 230,000 at most.
EARLIEST_HISTORY_START = datetime(2000, 1, 1)

_CCY_EXPECTED = "expected an ISO 4217 currency code such as GBP, EUR, USD"

#: Bounds of the numbers of the config: finite, and within what a household can mean.
MAX_TIMEOUT_S = 600.0
MAX_BACKOFF_S = 3600.0
MAX_WORKERS = 256  # threads; `finbot bench` uses one per account
#: units of a currency per 1 EUR, or the price of one unit of a crypto asset
MAX_RATE = 1e12


def _sane_positive(x: float) -> bool:
    return math.isfinite(x) and 0 < x <= MAX_RATE


class FieldPathError(ValueError):
    """A validation error about a precise field, relative to the model whose
    validator raised it. ``path`` is a tuple of keys and list indices."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{format_path(path)}: {message}")


def format_path(loc: Iterable[str | int]) -> str:
    """``("linked_accounts", 1, "provider")`` -> ``linked_accounts[1].provider``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def known_list(value: object, known: Iterable[str]) -> str:
    """``(known: a, b)`` plus a did-you-mean when one is close."""
    names = sorted(known)
    text = f"(known: {', '.join(names) if names else 'none'})"
    close = difflib.get_close_matches(str(value), names, n=1)
    if close:
        text += f"; did you mean {close[0]!r}?"
    return text


# --------------------------------------------------------------------------- field types


def _check_slug(v: str) -> str:
    if not SLUG_RE.match(v):
        raise ValueError(
            "expected a slug: 1-64 lowercase letters, digits, '-' or '_', starting with a "
            f"letter, got {v!r}"
        )
    return v


def check_currency(v: str) -> str:
    if v not in ISO_4217_CODES:
        hint = " (currency codes are upper case)" if v.upper() in ISO_4217_CODES else ""
        raise ValueError(f"{_CCY_EXPECTED}, got {v!r}{hint}")
    return v


def _check_non_empty(v: str) -> str:
    if not v.strip():
        raise ValueError("expected a non-empty name")
    return v


def _check_secret_name(v: str | None) -> str | None:
    if v is not None and not SECRET_NAME_RE.match(v):
        raise ValueError(
            "expected the name of a vault entry (letters, digits, '_', '.', '-', starting "
            f"with a letter or digit, at most 128 characters), got {v!r}"
        )
    return v


def _check_locale(value: str) -> str:
    try:
        babel.Locale.parse(value.replace("-", "_"))
    except (ValueError, babel.UnknownLocaleError):
        raise ValueError(f"{value!r} is not a locale such as en_GB, fr_FR or de_DE") from None
    return value.replace("-", "_")


Slug = Annotated[str, AfterValidator(_check_slug)]
CurrencyCode = Annotated[str, AfterValidator(check_currency)]
Name = Annotated[str, AfterValidator(_check_non_empty)]
Locale = Annotated[str, AfterValidator(_check_locale)]
SecretName = Annotated[str | None, AfterValidator(_check_secret_name)]


# --------------------------------------------------------------------------- models


class Profile(BaseModel):
    """One person of the household."""

    model_config = ConfigDict(extra="forbid")

    id: Slug = Field(description="a slug such as 'alice'")
    name: Name = Field(description="a display name such as 'Alice'")
    valuation_ccy: CurrencyCode = Field(
        description="the ISO 4217 currency the profile is valued in, such as GBP"
    )
    locale: Locale = Field(
        default="en_GB",
        description=(
            "how the web app and the report write numbers and dates, a locale such as "
            "en_GB, en_US, fr_FR or de_DE"
        ),
    )


class LinkedAccount(BaseModel):
    """One login at one provider, owned by a profile."""

    model_config = ConfigDict(extra="forbid")

    id: Slug = Field(description="a slug such as 'alice-monzo'")
    profile: Slug = Field(description="the id of the profile owning the account")
    provider: str = Field(description="a provider id such as 'dummy'")
    name: Name = Field(description="a display name such as 'Monzo'")
    credentials: SecretName = Field(
        default=None, description="the name of a vault entry holding the credentials"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="a mapping of provider options"
    )
    frozen: StrictBool = Field(default=False, description="true or false")
    enabled: StrictBool = Field(default=True, description="true or false")

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, v: str) -> str:
        if v not in registry.provider_ids():
            raise ValueError(f"unknown provider {v!r} {known_list(v, registry.provider_ids())}")
        return v

    @model_validator(mode="after")
    def _provider_checks(self) -> LinkedAccount:
        issues = registry.option_issues(self.provider, self.options)
        if issues:
            raise FieldPathError(("options", *issues[0].path), issues[0].message)
        spec = registry.get_spec(self.provider)
        needs = [f.name for f in spec.credential_fields if f.required]
        if needs and self.credentials is None and self.enabled and not self.frozen:
            raise FieldPathError(
                ("credentials",),
                f"provider {self.provider!r} needs credentials: expected the name of a vault "
                f"entry holding a JSON object with {', '.join(needs)}",
            )
        if not spec.fetched and self.id in ("done", "rejected"):
            raise FieldPathError(
                ("id",),
                f"{self.id!r} is the inbox's folder of handled files: choose another id",
            )
        return self


def account_state(account: LinkedAccount) -> str:
    """The account's state at an ingested hour: ``frozen``, ``statement`` (a provider that
    is never fetched: its values land from statement files) or ``active``."""
    if account.frozen:
        return "frozen"
    if not registry.get_spec(account.provider).fetched:
        return "statement"
    return "active"


class FetchSettings(BaseModel):
    """How the ingest fetches: per-attempt timeout, retries, parallelism."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        description=f"seconds per attempt, > 0 and at most {MAX_TIMEOUT_S:g}",
    )
    max_attempts: int = Field(default=3, ge=1, le=10, description="attempts per hour, 1 to 10")
    backoff_s: float = Field(
        default=2.0,
        ge=0,
        le=MAX_BACKOFF_S,
        allow_inf_nan=False,
        description=f"seconds before the first retry, 0 to {MAX_BACKOFF_S:g}",
    )
    max_workers: int = Field(
        default=8,
        ge=1,
        le=MAX_WORKERS,
        description=f"linked accounts fetched in parallel, 1 to {MAX_WORKERS}",
    )


class NotificationSettings(BaseModel):
    """Where and when finbot notifies (apprise URLs, e.g. ``mailto://``, ``ntfy://``, ``json://``)."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(
        default_factory=list,
        description="a list of apprise URLs; {secret:NAME} is replaced by a vault secret",
    )
    daily_digest: bool = Field(
        default=True, description="true to send a digest after the first run of each day"
    )
    failure_threshold_hours: int = Field(
        default=6,
        ge=1,
        le=24 * 30,
        description="consecutive failed hours before a linked account is reported (1 to 720)",
    )


class FinbotConfig(BaseModel):
    """The whole ``finbot.yaml``."""

    model_config = ConfigDict(extra="forbid")

    history_start: datetime = Field(
        default=DEFAULT_HISTORY_START,
        description="the first hour to ingest (naive UTC, on the hour) such as 2024-01-01T00:00",
    )
    fx_source: Literal["ecb", "static"] = Field(default="ecb", description="'ecb' or 'static'")
    fx_static_rates: dict[str, float] = Field(
        default_factory=dict,
        description="a mapping of ISO currency code to units of that currency per 1 EUR",
    )
    fx_ecb_base_url: str = Field(
        default="https://www.ecb.europa.eu/stats/eurofxref",
        pattern=r"^https?://",
        description="the address the ECB's eurofxref files are read from (http or https)",
    )
    unit_price_source: Literal["coingecko", "static"] = Field(
        default="coingecko",
        description="'coingecko' or 'static': where prices of non-ISO units (crypto) come from",
    )
    unit_prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description=(
            "a mapping of unit code (BTC) to one {ISO currency: price of 1 unit}, such as "
            "{BTC: {USD: 65000}}; with coingecko, these units keep their static price"
        ),
    )
    coingecko_base_url: str = Field(
        default=COINGECKO_BASE_URL,
        pattern=r"^https?://",
        description="the address of CoinGecko's API (http or https)",
    )
    coingecko_ids: dict[str, str] = Field(
        default_factory=dict,
        description="a mapping of unit code to CoinGecko coin id, such as {XYZ: xyz-token}",
    )
    fetch: FetchSettings = Field(default_factory=FetchSettings, description="fetch settings")
    notifications: NotificationSettings = Field(
        default_factory=NotificationSettings, description="notification settings"
    )
    backups_kept: int = Field(
        default=7,
        ge=1,
        le=1000,
        description="how many backups `finbot backup` and the daily schedule keep in "
        "$FINBOT_HOME/backups/ (the oldest beyond that are deleted), a whole number 1-1000",
    )
    profiles: list[Profile] = Field(
        min_length=1, description="a list of at least one profile (id, name, valuation_ccy)"
    )
    linked_accounts: list[LinkedAccount] = Field(
        default_factory=list, description="a list of linked accounts"
    )

    @field_validator("history_start", mode="before")
    @classmethod
    def _parse_history_start(cls, v: object) -> datetime:
        expected = "expected a date-time such as 2024-01-01T00:00 (UTC, on the hour)"
        if isinstance(v, str):
            try:
                v = datetime.fromisoformat(v.strip())
            except ValueError:
                raise ValueError(f"{expected}, got {v!r}") from None
        elif isinstance(v, date) and not isinstance(v, datetime):
            v = datetime(v.year, v.month, v.day)
        if not isinstance(v, datetime):
            raise ValueError(f"{expected}, got {v!r}")
        if v.tzinfo is not None:
            v = v.astimezone(UTC).replace(tzinfo=None)
        if v.minute or v.second or v.microsecond:
            raise ValueError(
                f"expected a time on the hour such as {v:%Y-%m-%dT%H}:00, got {v.isoformat()}"
            )
        if v < EARLIEST_HISTORY_START:
            raise ValueError(
                f"expected {EARLIEST_HISTORY_START:%Y-%m-%dT%H:%M} or later (each hour since "
                f"is a partition to run), got {v:%Y-%m-%dT%H:%M}"
            )
        now = datetime.now(UTC).replace(tzinfo=None)
        if v > now:
            raise ValueError(
                f"{v:%Y-%m-%dT%H:%M} is in the future: expected the first hour of the history, "
                f"at the latest the current hour ({now:%Y-%m-%dT%H}:00 UTC)"
            )
        return v

    @field_serializer("history_start", when_used="json")
    def _dump_history_start(self, v: datetime) -> str:
        return v.strftime("%Y-%m-%dT%H:%M")

    @model_validator(mode="after")
    def _cross_checks(self) -> FinbotConfig:
        # unique profile ids
        first: dict[str, int] = {}
        for i, p in enumerate(self.profiles):
            if p.id in first:
                raise FieldPathError(
                    ("profiles", i, "id"),
                    f"duplicate profile id {p.id!r} (already used by profiles[{first[p.id]}])",
                )
            first[p.id] = i
        # unique linked account ids, existing profile references
        seen: dict[str, int] = {}
        for i, la in enumerate(self.linked_accounts):
            if la.id in seen:
                raise FieldPathError(
                    ("linked_accounts", i, "id"),
                    f"duplicate linked account id {la.id!r} "
                    f"(already used by linked_accounts[{seen[la.id]}])",
                )
            seen[la.id] = i
            if la.profile not in first:
                raise FieldPathError(
                    ("linked_accounts", i, "profile"),
                    f"unknown profile {la.profile!r} {known_list(la.profile, first)}",
                )
        # static FX rates
        for ccy, rate in self.fx_static_rates.items():
            if ccy not in ISO_4217_CODES:
                raise FieldPathError(("fx_static_rates", ccy), f"{_CCY_EXPECTED}, got {ccy!r}")
            if not _sane_positive(rate):
                raise FieldPathError(
                    ("fx_static_rates", ccy),
                    f"expected a finite rate > 0 and at most {MAX_RATE:g} ({ccy} per 1 EUR), "
                    f"got {rate!r}",
                )
            if ccy == "EUR" and rate != 1.0:
                raise FieldPathError(
                    ("fx_static_rates", ccy),
                    f"EUR is the base currency: its rate must be 1, got {rate!r}",
                )
        # static unit prices and CoinGecko ids
        for unit, quote in self.unit_prices.items():
            where: tuple[str | int, ...] = ("unit_prices", unit)
            if not UNIT_CODE_RE.match(unit) or unit in FIAT_CODES:
                raise FieldPathError(
                    where,
                    "expected a non-ISO unit code such as BTC (fiat currencies take their rate "
                    f"from the FX rates), got {unit!r}",
                )
            if len(quote) != 1:
                raise FieldPathError(
                    where, f"expected one {{currency: price}} such as {{USD: 65000}}, got {quote!r}"
                )
            ((ccy, price),) = quote.items()
            if ccy not in ISO_4217_CODES:
                raise FieldPathError((*where, ccy), f"{_CCY_EXPECTED}, got {ccy!r}")
            if not _sane_positive(price):
                raise FieldPathError(
                    (*where, ccy),
                    f"expected a finite price > 0 and at most {MAX_RATE:g} ({ccy} per 1 {unit}), "
                    f"got {price!r}",
                )
        for unit, coin in self.coingecko_ids.items():
            if not UNIT_CODE_RE.match(unit):
                raise FieldPathError(
                    ("coingecko_ids", unit), f"expected a unit code such as BTC, got {unit!r}"
                )
            if not re.match(r"^[a-z0-9][a-z0-9-]{0,99}$", coin):
                raise FieldPathError(
                    ("coingecko_ids", unit),
                    f"expected a CoinGecko coin id such as bitcoin, got {coin!r}",
                )
        if self.fx_source == "static":
            needed = sorted({p.valuation_ccy for p in self.profiles} - {"EUR"})
            if not self.fx_static_rates and needed:
                raise FieldPathError(
                    ("fx_static_rates",),
                    "required when fx_source is 'static': expected a mapping of currency to "
                    f"units per 1 EUR covering {', '.join(needed)}",
                )
            missing = [c for c in needed if c not in self.fx_static_rates]
            if missing:
                raise FieldPathError(
                    ("fx_static_rates",),
                    f"missing a rate for {', '.join(missing)} (valuation currency of a profile); "
                    "expected units of that currency per 1 EUR",
                )
        return self

    # ---------------------------------------------------------------- helpers

    def profile(self, profile_id: str) -> Profile:
        """The profile with this id (``KeyError`` if none)."""
        for p in self.profiles:
            if p.id == profile_id:
                return p
        raise KeyError(
            f"unknown profile {profile_id!r} {known_list(profile_id, self.profile_ids())}"
        )

    def profile_ids(self) -> list[str]:
        return [p.id for p in self.profiles]

    def linked_account(self, linked_account_id: str) -> LinkedAccount:
        """The linked account with this id (``KeyError`` if none)."""
        for la in self.linked_accounts:
            if la.id == linked_account_id:
                return la
        known = [la.id for la in self.linked_accounts]
        raise KeyError(
            f"unknown linked account {linked_account_id!r} {known_list(linked_account_id, known)}"
        )

    def linked_accounts_of(self, profile_id: str) -> list[LinkedAccount]:
        """The profile's linked accounts, in file order (disabled ones included)."""
        return [la for la in self.linked_accounts if la.profile == profile_id]

    def valuation_settings(self) -> dict[str, Any]:
        """The settings that value past hours: when one changes, every stored hour must be
        valued again (a mart must never mix two currencies for one profile, nor two
        static rates for one day)."""
        return {
            "valuation_ccy": {p.id: p.valuation_ccy for p in self.profiles},
            "fx_source": self.fx_source,
            "fx_static_rates": dict(sorted(self.fx_static_rates.items()))
            if self.fx_source == "static"
            else {},
            "unit_prices": {u: dict(q) for u, q in sorted(self.unit_prices.items())},
            "history_start": self.history_start.strftime("%Y-%m-%dT%H:%M"),
        }

    def priced_units(self) -> frozenset[str]:
        """The non-ISO units ``market/unit_prices`` can price with this config."""
        units = set(self.unit_prices)
        if self.unit_price_source == "coingecko":
            units |= set(DEFAULT_COINGECKO_IDS) | set(self.coingecko_ids)
        return frozenset(units)

    def enabled_linked_accounts(self) -> list[LinkedAccount]:
        """Linked accounts with ``enabled: true``, frozen ones included (the ingest
        keeps their last value without fetching them)."""
        return [la for la in self.linked_accounts if la.enabled]

    def fetchable_linked_accounts(self) -> list[LinkedAccount]:
        """Enabled and not frozen: the accounts the ingest actually fetches."""
        return [la for la in self.linked_accounts if la.enabled and not la.frozen]
