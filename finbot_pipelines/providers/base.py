"""The provider contract: what a provider returns, how it fails, what it needs.

A provider is plain Python (no Dagster, no DuckDB). It receives the decrypted
credentials of one linked account, that account's options from ``finbot.yaml``
and the hour being fetched, and returns a :class:`Snapshot` of sub-accounts and
items, or raises a :class:`ProviderError` subclass whose ``code`` lands in
``raw.fetches.error_code``.

Reserved options
----------------
Besides the user's options, the ingest injects reserved keys starting with
``_`` into ``options`` before calling :meth:`Provider.fetch`:

``_linked_account_id`` (:data:`LINKED_ACCOUNT_ID_OPTION`)
    the id of the linked account being fetched. Every provider receives it; it
    lets deterministic providers (``dummy``) vary per account and lets others
    label their logs. Users cannot set reserved keys in ``finbot.yaml``.

``validate_options`` must accept the reserved keys.

Time
----
``as_of`` is the naive-UTC start of the hour being fetched. Providers with
``supports_historical = False`` ignore it and fetch "now"; the ingest refuses
to ask them for past hours.

Secrets
-------
Credential values must never appear in an exception message, a log line or a
returned snapshot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

ITEM_TYPES = ("asset", "liability")
ASSET_CLASSES = (
    "cash",
    "equities",
    "fixed_income",
    "crypto",
    "real_estate",
    "commodities",
    "multi_asset",
    "pension",
    "other",
)
ACCOUNT_TYPES = ("depository", "credit", "loan", "investment", "other")

#: The reserved option every provider receives: the id of the linked account.
LINKED_ACCOUNT_ID_OPTION = "_linked_account_id"
#: Prefix of option keys reserved for finbot itself (users cannot set them).
RESERVED_OPTION_PREFIX = "_"

_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """A fetch failed. ``code`` is stable (stored in raw.fetches.error_code)."""

    code: ClassVar[str] = "provider_error"
    retryable: ClassVar[bool] = False


class AuthenticationFailure(ProviderError):
    """The credentials were refused: retrying will not help, the user must act."""

    code: ClassVar[str] = "authentication_failure"


class TransientError(ProviderError):
    """A failure worth retrying (network, 5xx, maintenance window)."""

    code: ClassVar[str] = "transient"
    retryable: ClassVar[bool] = True

    def __init__(self, msg: str = "", retry_after: float | None = None) -> None:
        super().__init__(msg)
        #: seconds the provider asked us to wait before retrying, when it said so
        self.retry_after = retry_after


class FetchTimeout(TransientError):
    code: ClassVar[str] = "timeout"


class RateLimited(TransientError):
    code: ClassVar[str] = "rate_limited"


class ProviderPayloadError(ProviderError):
    """The provider answered, but with something we cannot use."""

    code: ClassVar[str] = "provider_error"


class CredentialsError(ProviderError):
    """The linked account's credentials are missing from the vault or unreadable."""

    code: ClassVar[str] = "credentials_error"


class RetiredProvider(ProviderError):
    """The provider no longer exists; the linked account must be removed or frozen."""

    code: ClassVar[str] = "retired_provider"


# --------------------------------------------------------------------------- payload


@dataclass(frozen=True)
class Item:
    """One line of a sub-account. ``value`` is in the sub-account currency;
    liabilities are negative. ``currency`` is the item's own currency when it
    differs or matters (a USD fund in a GBP ISA); ``symbol`` a ticker or ISIN."""

    name: str
    item_type: str
    asset_class: str
    asset_type: str
    value: float
    units: float | None = None
    currency: str | None = None
    symbol: str | None = None


@dataclass(frozen=True)
class SubAccount:
    id: str
    name: str
    currency: str
    account_type: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Snapshot:
    sub_accounts: tuple[SubAccount, ...]

    def validate(self) -> None:
        """Raise :class:`ProviderPayloadError` on the first inconsistency found.

        A snapshot without any sub-account is refused: every provider reports at
        least one (an exchange account holding nothing is one sub-account without
        items), so an empty answer is a failed fetch, never a success worth 0."""
        if not self.sub_accounts:
            raise ProviderPayloadError(
                "the answer holds no sub-account: an empty answer is not a snapshot"
            )
        seen_ids: set[str] = set()
        for sa in self.sub_accounts:
            where = f"sub-account {sa.id!r}"
            if not isinstance(sa.id, str) or not sa.id.strip():
                raise ProviderPayloadError("sub-account with an empty id")
            if sa.id in seen_ids:
                raise ProviderPayloadError(f"duplicate sub-account id {sa.id!r}")
            seen_ids.add(sa.id)
            if not isinstance(sa.name, str) or not sa.name.strip():
                raise ProviderPayloadError(f"{where}: empty name")
            _check_currency(sa.currency, f"{where}: currency")
            if sa.account_type not in ACCOUNT_TYPES:
                raise ProviderPayloadError(
                    f"{where}: account_type {sa.account_type!r} is not one of "
                    f"{', '.join(ACCOUNT_TYPES)}"
                )
            seen_names: set[str] = set()
            for item in sa.items:
                _validate_item(item, where, seen_names)


def _check_currency(ccy: object, what: str) -> None:
    if not isinstance(ccy, str) or not _CURRENCY_RE.match(ccy):
        raise ProviderPayloadError(f"{what} {ccy!r} is not a 3-letter upper-case currency code")


def _validate_item(item: Item, where: str, seen_names: set[str]) -> None:
    if not isinstance(item.name, str) or not item.name.strip():
        raise ProviderPayloadError(f"{where}: item with an empty name")
    iw = f"{where}, item {item.name!r}"
    if item.name in seen_names:
        raise ProviderPayloadError(f"{where}: duplicate item name {item.name!r}")
    seen_names.add(item.name)
    if item.item_type not in ITEM_TYPES:
        raise ProviderPayloadError(f"{iw}: item_type {item.item_type!r} is not asset or liability")
    if item.asset_class not in ASSET_CLASSES:
        raise ProviderPayloadError(
            f"{iw}: asset_class {item.asset_class!r} is not one of {', '.join(ASSET_CLASSES)}"
        )
    if not isinstance(item.asset_type, str) or not item.asset_type.strip():
        raise ProviderPayloadError(f"{iw}: empty asset_type")
    if isinstance(item.value, bool) or not isinstance(item.value, int | float):
        raise ProviderPayloadError(f"{iw}: value is not a number")
    if not math.isfinite(item.value):
        raise ProviderPayloadError(f"{iw}: value is not finite")
    if item.units is not None and (
        isinstance(item.units, bool)
        or not isinstance(item.units, int | float)
        or not math.isfinite(item.units)
    ):
        raise ProviderPayloadError(f"{iw}: units is not a finite number")
    if item.item_type == "liability" and item.value > 0:
        raise ProviderPayloadError(f"{iw}: a liability must have a value <= 0, got {item.value}")
    if item.item_type == "asset" and item.value < 0:
        raise ProviderPayloadError(f"{iw}: an asset must have a value >= 0, got {item.value}")
    if item.currency is not None:
        _check_currency(item.currency, f"{iw}: currency")
    if item.symbol is not None and (not isinstance(item.symbol, str) or not item.symbol.strip()):
        raise ProviderPayloadError(f"{iw}: symbol must be None or a non-empty string")


# --------------------------------------------------------------------------- provider


@dataclass(frozen=True)
class CredentialField:
    """One field of the JSON object stored in the vault for a linked account."""

    name: str
    description: str
    secret: bool = True
    required: bool = True


@runtime_checkable
class Provider(Protocol):
    id: str
    description: str
    credential_fields: tuple[CredentialField, ...]
    supports_historical: bool

    def validate_options(self, options: Mapping[str, Any]) -> None:
        """Raise ``ValueError("options.<key>: expected ...")`` on the first bad option.

        Must accept the reserved keys (see the module docstring)."""
        ...

    def fetch(
        self, credentials: Mapping[str, str], options: Mapping[str, Any], as_of: datetime
    ) -> Snapshot:
        """Fetch one snapshot. ``credentials`` is the vault entry parsed as a JSON
        object (empty when the provider needs none)."""
        ...
