"""The provider skeleton: a fetch context, options and credentials models, one fetch path.

A provider is a package under ``finbot_pipelines/providers/`` with

``options.py``
    its :class:`ProviderOptions` and :class:`ProviderCredentials` pydantic
    models and its :class:`ProviderSpec`. It imports pydantic and the standard
    library only, so validating ``finbot.yaml`` never imports a client library.
the implementation
    a :class:`Provider` subclass named by ``ProviderSpec.implementation``
    (``"module:Class"``), imported the first time an account is fetched.

Every fetch goes through :func:`fetch_snapshot`: options and credentials are
parsed by their models (an error names the field and never quotes a credential),
the provider's :meth:`Provider.fetch` receives a :class:`FetchContext` and the
parsed models, and the snapshot it returns is validated and checked for unpriced
items (:func:`finalise_snapshot`). Providers read nothing from the environment:
what they need from finbot is in the context.

The error tree and the snapshot types live in :mod:`.contract`.
"""

from __future__ import annotations

import difflib
import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, TypeVar, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError

from finbot_pipelines.providers.contract import (
    FIAT_CODES,
    ISO_4217_CODES,
    UNIT_CODE_RE,
    CredentialsError,
    FetchWarning,
    Item,
    OptionsError,
    RetiredProvider,
    Snapshot,
    SubAccount,
    UnpricedError,
    is_iso_currency,
)

DEFAULT_BROWSER = "/usr/bin/chromium"


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class FetchContext:
    """What a fetch knows about finbot: which account, which hour, where to write.

    ``hour`` is the naive-UTC start of the hour being fetched; providers with
    ``supports_historical = False`` fetch "now" (the ingest refuses to ask them
    for past hours). ``valuation_ccy`` is the owning profile's currency
    (exchanges value balances in it by default). ``priced_units`` are the
    non-ISO units ``market/unit_prices`` can price (the valuation prices an
    unpriced item whose ``unit`` is one of them, or an ISO currency).
    ``debug_dir`` is where a provider may leave debugging artefacts (failure
    screenshots); ``browser`` the Chromium binary scraped portals drive.
    ``state_dir`` is this linked account's own private folder for what a provider
    keeps between fetches (created on first use, mode 0700; None: keep nothing).
    ``transactions_cursor`` is the cursor of the account's change feed stored with its
    newest landed transactions (None: start from the beginning)."""

    linked_account_id: str
    hour: datetime
    valuation_ccy: str | None = None
    priced_units: frozenset[str] = field(default_factory=frozenset)
    debug_dir: Path | None = None
    browser: str = DEFAULT_BROWSER
    state_dir: Path | None = None
    transactions_cursor: str | None = None


# --------------------------------------------------------------------------- option types


def _check_http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"expected an http(s) address without query such as https://api.example.com, got {v!r}"
        )
    return v.rstrip("/")


def _check_iso(v: str) -> str:
    if v not in ISO_4217_CODES:
        hint = " (currency codes are upper case)" if v.upper() in ISO_4217_CODES else ""
        raise ValueError(
            f"expected an ISO 4217 currency code such as GBP, EUR, USD, got {v!r}{hint}"
        )
    return v


def _check_fiat(v: str) -> str:
    if v not in FIAT_CODES:
        raise ValueError(
            f"expected an ISO 4217 fiat currency code such as USD, EUR, GBP, got {v!r}"
        )
    return v


def _check_unit_code(v: str) -> str:
    if not UNIT_CODE_RE.match(v):
        raise ValueError(f"expected an upper-case currency code such as USDT, got {v!r}")
    return v


#: An http(s) address (no query), trailing slash removed.
HttpUrl = Annotated[str, Strict(), AfterValidator(_check_http_url)]
#: The longest timeout an option may ask for (ten minutes).
MAX_SECONDS = 600.0
#: Seconds: a finite number > 0, at most :data:`MAX_SECONDS`.
Seconds = Annotated[float, Strict(), Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
#: An ISO 4217 code; a fiat one; any currency or unit code (BTC, ETH2.S).
IsoCurrency = Annotated[str, Strict(), AfterValidator(_check_iso)]
FiatCurrency = Annotated[str, Strict(), AfterValidator(_check_fiat)]
UnitCode = Annotated[str, Strict(), AfterValidator(_check_unit_code)]


class ProviderOptions(BaseModel):
    """Base of a provider's options (``options:`` of a linked account). Unknown keys
    are refused; field descriptions and defaults document the option."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ProviderCredentials(BaseModel):
    """Base of a provider's credentials (the vault entry, a JSON object).

    Mark fields with :func:`secret` (masked everywhere, prompted without echo)
    or :func:`public`. Unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    def secret_values(self) -> list[str]:
        """The values to mask in messages: the secret fields' and the public fields'
        declared ``masked`` (a login name: shown when typed, never quoted back)."""
        out: list[str] = []
        cls: type[ProviderCredentials] = type(self)
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and (extra.get("secret") or extra.get("masked")):
                v = getattr(self, name)
                if isinstance(v, str) and v:
                    out.append(v)
        return out


def secret(description: str, **kwargs: Any) -> Any:
    """A credential field that is a secret (never echoed, logged or stored in clear)."""
    return Field(description=description, json_schema_extra={"secret": True}, **kwargs)


def public(description: str, *, masked: bool = False, **kwargs: Any) -> Any:
    """A credential field that is not a secret (a region, an environment): prompted with
    echo and quoted in messages; ``masked``: prompted with echo, never quoted back (a
    login name)."""
    return Field(
        description=description,
        json_schema_extra={"secret": False, "masked": masked},
        **kwargs,
    )


class NoCredentials(ProviderCredentials):
    """For providers that need none."""


class AnyOptions(ProviderOptions):
    """Options of a retired provider: anything goes (it cannot be fetched anyway)."""

    model_config = ConfigDict(extra="allow", frozen=True)


# --------------------------------------------------------------------------- validation messages


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field: ``path`` from the model's root."""

    path: tuple[str | int, ...]
    message: str


def format_path(prefix: str, path: Iterable[str | int]) -> str:
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: object) -> str | None:
    if isinstance(value, str | int | float | bool | Decimal) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return None


def _num(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The (nested) model whose field ``loc[-1]`` is, following ``loc[:-1]``."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        info = fields.get(part) if isinstance(fields, dict) else None
        if info is None:
            return None
        current = _model_in(info.annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def describe_errors(
    exc: ValidationError, model: type[BaseModel], *, show_input: bool
) -> list[FieldIssue]:
    """Readable issues for a pydantic error: ``expected ...``, ``got ...`` (inputs only
    when ``show_input``: never for credentials), did-you-mean for unknown keys."""
    issues: list[FieldIssue] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind = err["type"]
        ctx = err.get("ctx") or {}
        got = _short(err.get("input")) if show_input else None
        got_text = f", got {got}" if got is not None else ""
        owner = _model_at(model, loc) if loc else None
        info = owner.model_fields.get(str(loc[-1])) if owner is not None else None
        if kind == "missing":
            desc = info.description if info is not None else None
            message = "required" + (f": {desc}" if desc else "")
        elif kind == "extra_forbidden":
            allowed = list(owner.model_fields) if owner is not None else []
            message = "unknown option"
            if allowed:
                message += f" (expected one of {', '.join(allowed)})"
                close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
                if close:
                    message += f"; did you mean {close[0]!r}?"
        elif kind == "value_error":
            error = ctx.get("error")
            message = str(error) if error is not None else str(err["msg"])
            message = message.removeprefix("Value error, ")
        elif kind in ("bool_type", "bool_parsing"):
            message = f"expected true or false{got_text}"
        elif kind in ("int_type", "int_parsing", "int_from_float"):
            message = f"expected a whole number{got_text}"
        elif kind in ("float_type", "float_parsing", "decimal_type", "decimal_parsing"):
            message = f"expected a number{got_text}"
        elif kind == "finite_number":
            message = f"expected a finite number{got_text}"
        elif kind in ("string_type", "string_sub_type"):
            message = f"expected a string{got_text}"
        elif kind == "string_too_short":
            message = "expected a non-empty string"
        elif kind == "list_type":
            message = f"expected a list{got_text}"
        elif kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
            message = f"expected a mapping{got_text}"
        elif kind == "too_short":
            n = ctx.get("min_length")
            message = f"expected at least {n} item{'s' if n != 1 else ''}"
        elif kind == "too_long":
            message = f"expected at most {ctx.get('max_length')} items"
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            noun = "a whole number" if info is not None and info.annotation is int else "a number"
            bound = {
                "greater_than": f"greater than {_num(ctx.get('gt'))}",
                "greater_than_equal": f">= {_num(ctx.get('ge'))}",
                "less_than": f"less than {_num(ctx.get('lt'))}",
                "less_than_equal": f"<= {_num(ctx.get('le'))}",
            }[kind]
            message = f"expected {noun} {bound}{got_text}"
        elif kind == "literal_error":
            choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
            message = f"expected one of {', '.join(choices)}{got_text}"
        else:
            msg = str(err["msg"])
            message = (
                "expected " + msg.removeprefix("Input should be ") + got_text
                if msg.startswith("Input should be ")
                else msg
            )
        issues.append(FieldIssue(loc, message))
    return issues


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class CredentialField:
    """One field of the JSON object stored in the vault for a linked account."""

    name: str
    description: str
    secret: bool = True
    required: bool = True


@dataclass(frozen=True)
class CredentialsSetup:
    """How ``finbot accounts add`` obtains a provider's credentials from what the user
    has, when that is not the credentials themselves (a one-time SimpleFIN setup token
    is exchanged for an access URL).

    ``inputs`` is the model of what is asked (prompted like credentials: secrets
    without echo); ``implementation`` (``"module:function"``, imported when used) is
    called as ``function(inputs, options)`` with the parsed models and returns the
    credentials (a dict of the provider's credential fields), or raises a
    :class:`~.contract.ProviderError` whose message never quotes a secret. ``note``
    is said when it fails."""

    inputs: type[ProviderCredentials]
    implementation: str
    note: str = ""

    @property
    def input_fields(self) -> tuple[CredentialField, ...]:
        return _credential_fields(self.inputs)

    def load(self) -> Callable[[Any, Any], dict[str, str]]:
        module_name, _, name = self.implementation.partition(":")
        function: Callable[[Any, Any], dict[str, str]] = getattr(
            importlib.import_module(module_name), name
        )
        return function


def _credential_fields(model: type[ProviderCredentials]) -> tuple[CredentialField, ...]:
    out = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        is_secret = bool(extra.get("secret", True)) if isinstance(extra, dict) else True
        out.append(
            CredentialField(
                name=name,
                description=info.description or name,
                secret=is_secret,
                required=info.is_required(),
            )
        )
    return tuple(out)


OptionsT = TypeVar("OptionsT", bound=ProviderOptions)
CredentialsT = TypeVar("CredentialsT", bound=ProviderCredentials)


@dataclass(frozen=True)
class ProviderSpec:
    """What finbot knows of a provider without importing its client library."""

    id: str
    description: str
    options: type[ProviderOptions]
    credentials: type[ProviderCredentials] = NoCredentials
    supports_historical: bool = False
    #: ``"module:Class"`` of the :class:`Provider` subclass; None for a retired provider
    implementation: str | None = None
    #: why the provider is retired (every fetch fails with this message)
    retired: str | None = None
    #: how `finbot accounts add` obtains the credentials when the user does not type
    #: them (None: it asks for the credential fields)
    setup: CredentialsSetup | None = None
    #: False for a provider the hourly ingest never fetches (``statements``: its
    #: balances and transactions land from files, at their own dates)
    fetched: bool = True

    @property
    def credential_fields(self) -> tuple[CredentialField, ...]:
        return _credential_fields(self.credentials)

    def parse_options(self, options: Mapping[str, Any] | None) -> ProviderOptions:
        """The options as the provider's model; :class:`OptionsError` naming the field."""
        if options is not None and not isinstance(options, Mapping):
            raise OptionsError("options: expected a mapping")
        try:
            return self.options.model_validate(dict(options or {}))
        except ValidationError as exc:
            issue = describe_errors(exc, self.options, show_input=True)[0]
            raise OptionsError(
                f"{format_path('options', issue.path)}: {issue.message}",
            ) from None

    def option_issues(self, options: Mapping[str, Any]) -> list[FieldIssue]:
        """Every problem with ``options`` (paths relative to ``options``)."""
        try:
            self.options.model_validate(dict(options))
        except ValidationError as exc:
            return describe_errors(exc, self.options, show_input=True)
        return []

    def parse_credentials(self, credentials: Mapping[str, Any] | None) -> ProviderCredentials:
        """The vault entry as the provider's model; :class:`CredentialsError` naming the
        field, never its value."""
        if credentials is not None and not isinstance(credentials, Mapping):
            raise CredentialsError(f"{self.id}: the credentials are not a JSON object")
        try:
            return self.credentials.model_validate(dict(credentials or {}))
        except ValidationError as exc:
            issues = describe_errors(exc, self.credentials, show_input=False)
            text = "; ".join(f"{format_path('', i.path) or '(root)'}: {i.message}" for i in issues)
            raise CredentialsError(f"{self.id} credentials: {text}") from None


class Provider(ABC, Generic[OptionsT, CredentialsT]):
    """A provider implementation. Subclasses set ``spec`` and implement :meth:`fetch`."""

    spec: ClassVar[ProviderSpec]

    @abstractmethod
    def fetch(self, ctx: FetchContext, options: OptionsT, credentials: CredentialsT) -> Snapshot:
        """One snapshot of the linked account ``ctx.linked_account_id``.

        Raise a :class:`~.contract.ProviderError` subclass on failure. Credential
        values must never appear in an exception message, a log line or the
        snapshot."""


class RetiredImplementation(Provider[ProviderOptions, ProviderCredentials]):
    """Stands in for a provider that no longer exists: every fetch fails."""

    def __init__(self, spec: ProviderSpec) -> None:
        self._spec = spec

    def fetch(
        self, ctx: FetchContext, options: ProviderOptions, credentials: ProviderCredentials
    ) -> Snapshot:
        raise RetiredProvider(self._spec.retired or f"{self._spec.id} is retired")


class NotFetchedImplementation(Provider[ProviderOptions, ProviderCredentials]):
    """Stands in for a provider the ingest never fetches (``fetched = False``): asking it
    for a snapshot is an error that says where its values come from instead."""

    def __init__(self, spec: ProviderSpec) -> None:
        self._spec = spec

    def fetch(
        self, ctx: FetchContext, options: ProviderOptions, credentials: ProviderCredentials
    ) -> Snapshot:
        raise OptionsError(
            f"'{ctx.linked_account_id}' ({self._spec.id}) is never fetched: its values land "
            f"from statement files (`finbot import FILE --account {ctx.linked_account_id}`, "
            f"or files dropped into inbox/{ctx.linked_account_id}/)"
        )


def load_implementation(spec: ProviderSpec) -> Provider[Any, Any]:
    if not spec.fetched:
        return NotFetchedImplementation(spec)
    if spec.implementation is None:
        return RetiredImplementation(spec)
    module_name, _, class_name = spec.implementation.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider[Any, Any] = cls()
    return provider


# --------------------------------------------------------------------------- one fetch


def fetch_snapshot(
    spec: ProviderSpec,
    provider: Provider[Any, Any],
    ctx: FetchContext,
    options: Mapping[str, Any] | None,
    credentials: Mapping[str, Any] | None,
) -> Snapshot:
    """Parse, fetch, finalise: the one path every fetch takes."""
    parsed_options = spec.parse_options(options)
    parsed_credentials = spec.parse_credentials(credentials)
    snapshot = provider.fetch(ctx, parsed_options, parsed_credentials)
    return finalise_snapshot(snapshot, ctx, spec.id)


def priced_downstream(item: Item, ctx: FetchContext) -> bool:
    """An unpriced item the valuation can still price: its unit is an ISO currency
    (FX) or one of the household's unit prices."""
    return item.unit is not None and (is_iso_currency(item.unit) or item.unit in ctx.priced_units)


def _amount(d: Decimal | None) -> str:
    return "?" if d is None else format(d.normalize() if d != 0 else Decimal(0), "f")


def unpriced_label(sub: SubAccount, item: Item) -> str:
    what = item.unit or item.symbol or ""
    units = f"{_amount(item.units)} {what}".strip()
    return f"{item.name!r} ({units}) in sub-account {sub.id!r}"


def finalise_snapshot(snapshot: Snapshot, ctx: FetchContext, provider_id: str) -> Snapshot:
    """Validate ``snapshot``; warn about each item nothing can price; refuse a snapshot
    whose every item is unpriced (it would be a silent 0)."""
    snapshot.validate()
    pairs = snapshot.items()
    unpriced = [(sa, it) for sa, it in pairs if it.value is None and not priced_downstream(it, ctx)]
    if pairs and len(unpriced) == len(pairs):
        names = sorted({it.unit or it.symbol or it.name for _, it in unpriced})
        raise UnpricedError(
            f"{provider_id}: cannot value anything this account holds: {', '.join(names)} "
            "(no price from the provider, and no unit price for them: add them to "
            "`unit_prices` in finbot.yaml, or leave them out with the provider's options)"
        )
    warnings = [
        FetchWarning(
            "unpriced",
            f"{unpriced_label(sa, it)} has no price from {provider_id}"
            + (
                f" nor a unit price for {it.unit}: add {it.unit} to `unit_prices`"
                if it.unit
                else ": it is listed without a value"
            ),
        )
        for sa, it in unpriced
    ]
    return snapshot.with_warnings(*warnings) if warnings else snapshot


def sum_values(items: Sequence[Item]) -> Decimal:
    """The exact sum of the priced items' values."""
    return sum((it.value for it in items if it.value is not None), Decimal(0))
