"""The provider registry: provider id -> provider object.

Adding a provider is one line in :data:`_PROVIDERS` (``"id": "module:Class"``).
Modules are imported lazily, on first use, so a provider with heavy imports
costs nothing to a command that never touches it. Retired providers are one
line in :data:`_RETIRED`: they stay valid in ``finbot.yaml`` (so history keeps
its name) but every fetch fails with :class:`RetiredProvider`.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from finbot_pipelines.providers.base import (
    CredentialField,
    Provider,
    ProviderError,
    RetiredProvider,
    Snapshot,
)

# One line per provider: id -> "module:ClassName" (instantiated with no arguments).
_PROVIDERS: dict[str, str] = {
    "dummy": "finbot_pipelines.providers.dummy:DummyProvider",
    "plaid": "finbot_pipelines.providers.plaid:PlaidProvider",
    "kraken": "finbot_pipelines.providers.crypto_exchange:KrakenProvider",
    "binance": "finbot_pipelines.providers.crypto_exchange:BinanceProvider",
    "ccxt": "finbot_pipelines.providers.crypto_exchange:CcxtProvider",
    "google_sheets": "finbot_pipelines.providers.google_sheets:GoogleSheetsProvider",
    "credit_agricole": "finbot_pipelines.providers.credit_agricole:CreditAgricoleProvider",
    "aegon_targetplan": "finbot_pipelines.providers.aegon_targetplan:AegonTargetplanProvider",
}

# One line per retired provider: id -> the message every fetch fails with.
_RETIRED: dict[str, str] = {
    "bittrex": "bittrex closed in 2023; remove or freeze this linked account",
}

_instances: dict[str, Provider] = {}
_lock = threading.Lock()


class UnknownProvider(ProviderError, KeyError):
    """No provider has this id."""

    code: ClassVar[str] = "unknown_provider"

    def __init__(self, provider_id: str) -> None:
        self.provider_id = provider_id
        msg = f"unknown provider {provider_id!r} (known: {', '.join(provider_ids())})"
        close = difflib.get_close_matches(str(provider_id), provider_ids(), n=1)
        if close:
            msg += f"; did you mean {close[0]!r}?"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RetiredProviderStub:
    """Stands in for a provider that no longer exists."""

    credential_fields: tuple[CredentialField, ...] = ()
    supports_historical: bool = False

    def __init__(self, provider_id: str, reason: str) -> None:
        self.id = provider_id
        self.reason = reason
        self.description = f"retired: {reason}"

    def validate_options(self, options: Mapping[str, Any]) -> None:
        return None  # anything goes: the account cannot be fetched anyway

    def fetch(
        self, credentials: Mapping[str, str], options: Mapping[str, Any], as_of: datetime
    ) -> Snapshot:
        raise RetiredProvider(self.reason)


def provider_ids() -> list[str]:
    """All registered provider ids (retired ones included), sorted."""
    return sorted({*_PROVIDERS, *_RETIRED})


def is_retired(provider_id: str) -> bool:
    return provider_id in _RETIRED


def get_provider(provider_id: str) -> Provider:
    """The provider registered under ``provider_id`` (one shared instance)."""
    with _lock:
        inst = _instances.get(provider_id)
        if inst is not None:
            return inst
        if provider_id in _RETIRED:
            inst = RetiredProviderStub(provider_id, _RETIRED[provider_id])
        elif provider_id in _PROVIDERS:
            module_name, _, class_name = _PROVIDERS[provider_id].partition(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            inst = cls()
        else:
            raise UnknownProvider(provider_id)
        _instances[provider_id] = inst
        return inst


def validate_options(provider_id: str, options: Mapping[str, Any]) -> None:
    """Let the provider check a linked account's options (``ValueError`` if bad)."""
    get_provider(provider_id).validate_options(options)


def describe(provider_id: str) -> dict[str, Any]:
    """A JSON-able description, for ``finbot providers`` and docs."""
    p = get_provider(provider_id)
    return {
        "id": provider_id,
        "description": p.description,
        "credential_fields": [
            {
                "name": f.name,
                "description": f.description,
                "secret": f.secret,
                "required": f.required,
            }
            for f in p.credential_fields
        ],
        "supports_historical": p.supports_historical,
        "retired": is_retired(provider_id),
    }
