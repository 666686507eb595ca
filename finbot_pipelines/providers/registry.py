"""The provider registry: provider id -> its spec (options, credentials) and implementation.

Adding a provider is one line in :data:`_SPECS` (``"id": "module:NAME"`` of its
:class:`~.base.ProviderSpec`, in the provider's ``options`` module). Specs import
pydantic only, so validating ``finbot.yaml`` imports no client library; the
implementation is imported the first time an account of the provider is
fetched. Retired providers are one line in :data:`_RETIRED`: they stay valid in
``finbot.yaml`` (so history keeps its name) but every fetch fails with
:class:`~.contract.RetiredProvider`.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from finbot_pipelines.providers.base import (
    AnyOptions,
    FieldIssue,
    Provider,
    ProviderSpec,
    load_implementation,
)
from finbot_pipelines.providers.contract import ProviderError

# One line per provider: id -> "module:SPEC" (a ProviderSpec in the provider's options module).
_SPECS: dict[str, str] = {
    "dummy": "finbot_pipelines.providers.dummy.options:SPEC",
    "plaid": "finbot_pipelines.providers.plaid.options:SPEC",
    "kraken": "finbot_pipelines.providers.exchanges.options:KRAKEN",
    "binance": "finbot_pipelines.providers.exchanges.options:BINANCE",
    "ccxt": "finbot_pipelines.providers.exchanges.options:CCXT",
    "google_sheets": "finbot_pipelines.providers.google_sheets.options:SPEC",
    "credit_agricole": "finbot_pipelines.providers.credit_agricole.options:SPEC",
    "aegon_targetplan": "finbot_pipelines.providers.aegon_targetplan.options:SPEC",
    "simplefin": "finbot_pipelines.providers.simplefin.options:SPEC",
    "statements": "finbot_pipelines.providers.statements.options:SPEC",
}

# One line per retired provider: id -> the message every fetch fails with.
_RETIRED: dict[str, str] = {
    "bittrex": "bittrex closed in 2023; remove or freeze this linked account",
}

_specs: dict[str, ProviderSpec] = {}
_instances: dict[str, Provider[Any, Any]] = {}
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


def provider_ids() -> list[str]:
    """All registered provider ids (retired ones included), sorted."""
    return sorted({*_SPECS, *_RETIRED})


def is_retired(provider_id: str) -> bool:
    return provider_id in _RETIRED


def get_spec(provider_id: str) -> ProviderSpec:
    """The spec of ``provider_id`` (imports its options module, never its client)."""
    with _lock:
        spec = _specs.get(provider_id)
        if spec is not None:
            return spec
        if provider_id in _RETIRED:
            spec = ProviderSpec(
                id=provider_id,
                description=f"retired: {_RETIRED[provider_id]}",
                options=AnyOptions,
                retired=_RETIRED[provider_id],
            )
        elif provider_id in _SPECS:
            module_name, _, name = _SPECS[provider_id].partition(":")
            spec = getattr(importlib.import_module(module_name), name)
            assert isinstance(spec, ProviderSpec) and spec.id == provider_id, provider_id
        else:
            raise UnknownProvider(provider_id)
        _specs[provider_id] = spec
        return spec


def get_provider(provider_id: str) -> Provider[Any, Any]:
    """The implementation of ``provider_id`` (one shared instance; imports its client)."""
    spec = get_spec(provider_id)
    with _lock:
        inst = _instances.get(provider_id)
        if inst is None:
            inst = load_implementation(spec)
            _instances[provider_id] = inst
        return inst


def option_issues(provider_id: str, options: Mapping[str, Any]) -> list[FieldIssue]:
    """Every problem with a linked account's options (paths relative to ``options``)."""
    return get_spec(provider_id).option_issues(options)


def describe(provider_id: str) -> dict[str, Any]:
    """A JSON-able description, for ``finbot accounts providers`` and the docs."""
    spec = get_spec(provider_id)
    return {
        "id": provider_id,
        "description": spec.description,
        "credential_fields": [
            {
                "name": f.name,
                "description": f.description,
                "secret": f.secret,
                "required": f.required,
            }
            for f in spec.credential_fields
        ],
        # what `accounts add` asks for instead, when the credentials are obtained from it
        "setup_fields": [
            {"name": f.name, "description": f.description, "secret": f.secret}
            for f in (spec.setup.input_fields if spec.setup is not None else ())
        ],
        "options": option_docs(spec),
        "supports_historical": spec.supports_historical,
        "retired": is_retired(provider_id),
    }


def option_docs(spec: ProviderSpec) -> list[dict[str, Any]]:
    """Each option of ``spec``: name, description, default (None when required)."""
    out = []
    for name, info in spec.options.model_fields.items():
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):  # a nested model: its own non-empty settings
            default = default.model_dump(exclude_defaults=True) or None
        out.append(
            {
                "name": name,
                "description": info.description or "",
                "required": required,
                "default": default,
            }
        )
    return out
