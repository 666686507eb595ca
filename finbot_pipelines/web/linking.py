"""Adding a linked account from the browser: the provider form, and Plaid Link.

The same path as `finbot accounts add` and `finbot accounts link plaid`
(:func:`finbot_pipelines.cli_accounts.add_account`): the new account is validated
with the whole config, its credentials are tested with one real fetch, and only then
are the vault entry and finbot.yaml written. Every route needs write access to the
profile in its path (view-only: 403; not visible: 404) and every POST the session's
CSRF token.

Secrets typed into a form are used for that one request and never written back into
a page, a log line or an error. Plaid API keys, needed between the Link token and the
public-token exchange, are kept in this process's memory only, under a random
pending-link id, for at most :data:`PENDING_LIFETIME_S` seconds.

- ``GET /p/{pid}/accounts/add`` (``?provider=ID``: that provider's fields), ``POST``
  the same path to add it (``add_account.html``).
- ``GET /p/{pid}/accounts/add/plaid``: the Plaid API keys form; ``POST``: with
  "use a test institution" (sandbox) the account is linked and added at once,
  otherwise a Link token is created and the browser is sent to
  ``GET ...?pending=ID``, the page running Plaid Link (``plaid_link.html`` and
  ``static/link.js``; its own Content-Security-Policy allows Plaid's script, from
  ``FINBOT_PLAID_LINK_JS``), which POSTs the public token (JSON, ``X-CSRF-Token``)
  to ``POST /p/{pid}/accounts/add/plaid/exchange``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from finbot_pipelines import numbers
from finbot_pipelines.cli_accounts import AddAccountError, AddedAccount, add_account
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.vault import Vault, VaultError
from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import CredentialField, ProviderSpec
from finbot_pipelines.providers.contract import ProviderError
from finbot_pipelines.web.auth import Principal, check_csrf, require_profile
from finbot_pipelines.web.pages import page_principal, render
from finbot_pipelines.web.state import WebState, web_state

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

#: where the Link page loads Plaid's script from (tests point it at a local file)
PLAID_LINK_JS_ENV = "FINBOT_PLAID_LINK_JS"
PENDING_LIFETIME_S = 30 * 60
MAX_PENDING = 100
MAX_FIELD = 4096
#: Plaid's sandbox institution with every product (First Platypus Bank)
SANDBOX_INSTITUTION_ID = "ins_109508"
PLAID_ENVIRONMENTS = ("production", "sandbox", "development")


def plaid_link_js() -> str:
    from finbot_pipelines.providers.plaid.link import PLAID_LINK_JS

    return os.environ.get(PLAID_LINK_JS_ENV) or PLAID_LINK_JS


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def link_page_csp(link_js: str, api_url: str, nonce: str) -> str:
    """The app's policy widened only as Plaid's Link documentation asks, on the Link page
    only: Plaid's script, and the elements it creates, by this response's ``nonce``; its
    frame origin; its API host; inline style attributes (the Link overlay positions itself
    with them; no script can run from a style attribute)."""
    origin = _origin(link_js)
    return (
        f"default-src 'self' {origin}; img-src 'self' data:; "
        f"script-src 'self' 'nonce-{nonce}' {link_js}; "
        f"style-src 'self' 'nonce-{nonce}'; style-src-elem 'self' 'nonce-{nonce}'; "
        "style-src-attr 'unsafe-inline'; "
        f"frame-src {origin}; connect-src 'self' {_origin(api_url)}; font-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


# ------------------------------------------------------------------ pending Plaid links


class LinkExpired(Exception):
    pass


@dataclass
class PendingLink:
    """What the exchange needs after Plaid Link: kept in memory only (never repr'd)."""

    id: str
    user_id: int
    profile_id: str
    account_id: str
    name: str
    credentials_name: str
    environment: str
    api_url: str | None
    created: float
    client_id: str = field(repr=False)
    secret: str = field(repr=False)
    link_token: str = field(repr=False)


class PendingLinks:
    """Pending Plaid links by random id, each for one user and profile, for
    ``lifetime_s`` seconds; ``clock`` is monotonic seconds (tests move it)."""

    def __init__(
        self, lifetime_s: float = PENDING_LIFETIME_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lifetime_s = lifetime_s
        self.clock = clock
        self._items: dict[str, PendingLink] = {}
        self._lock = threading.Lock()

    def _purge(self) -> None:
        now = self.clock()
        for key in [k for k, p in self._items.items() if now - p.created > self.lifetime_s]:
            del self._items[key]

    def add(self, **values: Any) -> PendingLink:
        with self._lock:
            self._purge()
            while len(self._items) >= MAX_PENDING:  # the oldest goes first
                del self._items[next(iter(self._items))]
            link = PendingLink(id=secrets.token_urlsafe(24), created=self.clock(), **values)
            self._items[link.id] = link
            return link

    def _find(self, link_id: str, principal: Principal, profile_id: str) -> PendingLink:
        link = self._items.get(link_id)
        if link is None or link.user_id != principal.user.id or link.profile_id != profile_id:
            raise KeyError(link_id)
        if self.clock() - link.created > self.lifetime_s:
            del self._items[link_id]
            raise LinkExpired(link_id)
        return link

    def get(self, link_id: str, principal: Principal, profile_id: str) -> PendingLink:
        with self._lock:
            return self._find(link_id, principal, profile_id)

    def take(self, link_id: str, principal: Principal, profile_id: str) -> PendingLink:
        """The link, removed: a public token is exchanged once."""
        with self._lock:
            link = self._find(link_id, principal, profile_id)
            del self._items[link_id]
            return link


_links_lock = threading.Lock()


def pending_links(request: Request) -> PendingLinks:
    state = request.app.state
    with _links_lock:
        links = getattr(state, "plaid_links", None)
        if links is None:
            links = PendingLinks()
            state.plaid_links = links
        return links


# ------------------------------------------------------------------ helpers


def _authorise(request: Request, profile_id: str) -> tuple[Principal, WebState]:
    principal = page_principal(request)
    require_profile(principal, profile_id, write=True)
    state = web_state(request)
    if state.profile(profile_id) is None:
        raise HTTPException(404, f"no profile {profile_id!r}")
    return principal, state


async def _authorised_form(
    request: Request, profile_id: str
) -> tuple[Principal, WebState, FormData]:
    """:func:`_authorise`, then the posted form, refused without the session's CSRF token."""
    principal, state = _authorise(request, profile_id)
    form = await request.form()
    csrf = form.get("csrf")
    check_csrf(request, principal, csrf if isinstance(csrf, str) else None)
    return principal, state, form


def _providers() -> list[dict[str, str]]:
    return [
        {"id": pid, "description": registry.get_spec(pid).description}
        for pid in registry.provider_ids()
        if not registry.is_retired(pid)
    ]


def _spec(provider_id: str) -> ProviderSpec | None:
    if not provider_id or registry.is_retired(provider_id):
        return None
    try:
        return registry.get_spec(provider_id)
    except ProviderError:
        return None


def _asked_fields(spec: ProviderSpec) -> tuple[CredentialField, ...]:
    """What the form asks for: the setup's inputs (a SimpleFIN setup token) or the
    credential fields."""
    if spec.credential_fields and spec.setup is not None:
        return spec.setup.input_fields
    return spec.credential_fields


def _field_docs(spec: ProviderSpec) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "description": f.description, "secret": f.secret, "required": f.required}
        for f in _asked_fields(spec)
    ]


def _option_docs(spec: ProviderSpec) -> list[dict[str, Any]]:
    out = []
    for o in registry.option_docs(spec):
        default = o["default"]
        shown = "" if default in (None, [], {}, "") else json.dumps(default, default=str)
        out.append({**o, "placeholder": shown})
    return out


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip()[:MAX_FIELD] if isinstance(value, str) else ""


def _kept_values(form: FormData, spec: ProviderSpec | None) -> dict[str, str]:
    """The non-secret inputs, to fill the form again (a secret is never sent back)."""
    secret = {f"cred.{f.name}" for f in _asked_fields(spec) if f.secret} if spec else set()
    return {
        k: v[:MAX_FIELD]
        for k, v in form.items()
        if isinstance(v, str) and k != "csrf" and k not in secret
    }


def _parse_options(form: FormData, spec: ProviderSpec) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for o in registry.option_docs(spec):
        raw = _text(form, f"option.{o['name']}")
        if not raw:
            continue
        try:
            options[o["name"]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise AddAccountError(
                f"options.{o['name']}: not a value (write it as in finbot.yaml, e.g. "
                "[a, b] for a list)",
                field=f"options.{o['name']}",
            ) from None
    return options


def _web_message(exc: AddAccountError, account_id: str, credentials_name: str | None) -> str:
    """The core's message, worded for the form where it names a command-line flag."""
    if exc.kind == "exists":
        return f"a linked account '{account_id}' already exists: choose another id"
    if exc.kind == "vault_entry_exists":
        return (
            f"the vault already has a secret named '{credentials_name or account_id}': choose "
            "another credentials name, or tick “Use the credentials already in the vault”"
        )
    if exc.kind == "no_stored_entry":
        return (
            f"the vault has no entry named '{credentials_name or account_id}': untick “Use the "
            "credentials already in the vault” and enter the credentials"
        )
    return exc.message


def _status(exc: AddAccountError) -> int:
    if exc.kind in ("exists", "vault_entry_exists"):
        return 409
    return 422 if exc.code == 1 else 400


def _amount(d: Decimal) -> str:
    return numbers.grouped(numbers.decimal_text(d, 2))


def added_summary(added: AddedAccount, paths: HomePaths) -> dict[str, Any]:
    """What the result page shows of a new account and its test fetch."""
    a = added.account
    subs = []
    warnings: list[dict[str, str]] = []
    if added.snapshot is not None:
        for sub in added.snapshot.sub_accounts:
            values = [i.value for i in sub.items if i.value is not None]
            subs.append(
                {
                    "id": sub.id,
                    "name": sub.name,
                    "type": sub.account_type,
                    "currency": sub.currency,
                    "value": _amount(sum(values, Decimal(0))),
                    "items": len(sub.items),
                    "unpriced": sum(1 for i in sub.items if i.value is None),
                }
            )
        warnings = [{"code": w.code, "message": w.message} for w in added.snapshot.warnings]
    note = None
    if added.snapshot is None:
        note = (
            "This account is never fetched: drop its statement files into "
            f"{paths.inbox / a.id}/ or import them with `finbot import FILE... --account {a.id}`."
        )
    return {
        "id": a.id,
        "name": a.name,
        "provider": a.provider,
        "credentials_name": added.credentials_name,
        "stored": added.stored,
        "sub_accounts": subs,
        "warnings": warnings,
        "note": note,
    }


def _message(added: AddedAccount) -> str:
    a = added.account
    found = (
        f"; the test fetch found {len(added.snapshot.sub_accounts)} sub-account(s)"
        if added.snapshot is not None
        else ""
    )
    return f"added linked account '{a.id}' ({a.provider}){found}"


def _quiet(message: str, *, err: bool = False) -> None:
    """The core's progress lines: the page shows the result instead."""


# ------------------------------------------------------------------ the provider form


@router.get("/p/{profile_id}/accounts/add")
def add_form(request: Request, profile_id: str, provider: str = "") -> Response:
    principal, state = _authorise(request, profile_id)
    if provider == "plaid":
        return RedirectResponse(f"/p/{quote(profile_id)}/accounts/add/plaid", status_code=303)
    spec = _spec(provider)
    error = f"unknown provider {provider!r}" if provider and spec is None else None
    return _render_form(request, principal, state, profile_id, spec, {}, error=error)


def _render_form(
    request: Request,
    principal: Principal,
    state: WebState,
    profile_id: str,
    spec: ProviderSpec | None,
    values: Mapping[str, str],
    *,
    error: str | None = None,
    error_field: str | None = None,
    kept_as: str | None = None,
    added: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "add_account.html",
        principal,
        status_code,
        profile=state.profile(profile_id),
        section="accounts",
        profile_id=profile_id,
        providers=_providers(),
        spec=spec,
        fields=_field_docs(spec) if spec else [],
        options=_option_docs(spec) if spec else [],
        has_credentials=bool(spec and spec.credential_fields),
        values=dict(values),
        error=error,
        error_field=error_field,
        kept_as=kept_as,
        added=added,
    )


@router.post("/p/{profile_id}/accounts/add")
async def add_submit(request: Request, profile_id: str) -> Response:
    principal, state, form = await _authorised_form(request, profile_id)
    provider_id = _text(form, "provider")
    spec = _spec(provider_id)
    values = _kept_values(form, spec)
    if spec is None:
        return _render_form(
            request,
            principal,
            state,
            profile_id,
            None,
            values,
            error=f"provider: choose one of the list (got {provider_id!r})"
            if provider_id
            else "provider: required",
            error_field="provider",
            status_code=400,
        )
    if provider_id == "plaid":
        return RedirectResponse(f"/p/{quote(profile_id)}/accounts/add/plaid", status_code=303)
    account_id = _text(form, "id")
    stored = bool(_text(form, "stored"))

    def ask(fields: tuple[CredentialField, ...]) -> dict[str, str]:
        out = {}
        for f in fields:
            value = form.get(f"cred.{f.name}")
            if isinstance(value, str) and value.strip():
                out[f.name] = value.strip()[:MAX_FIELD]
        return out

    try:
        if not account_id:
            raise AddAccountError("id: required (a slug such as my-bank)", field="id")
        options = _parse_options(form, spec)
        added = await run_in_threadpool(
            add_account,
            state.paths,
            provider_id,
            account_id,
            profile_id,
            _text(form, "name") or None,
            options,
            _text(form, "credentials_name") or None,
            ask,
            stored=stored,
            say=_quiet,
        )
    except AddAccountError as exc:
        message = _web_message(exc, account_id, _text(form, "credentials_name") or None)
        if exc.kept_as:
            values["stored"] = "1"
            values["credentials_name"] = exc.kept_as
        return _render_form(
            request,
            principal,
            state,
            profile_id,
            spec,
            values,
            error=message,
            error_field=exc.field,
            kept_as=exc.kept_as,
            status_code=_status(exc),
        )
    log.info("linked account %r (%s) added from the web", account_id, provider_id)
    return _render_form(
        request, principal, state, profile_id, spec, {}, added=added_summary(added, state.paths)
    )


# ------------------------------------------------------------------ Plaid Link


def _plaid_form(
    request: Request,
    principal: Principal,
    state: WebState,
    profile_id: str,
    values: Mapping[str, str],
    *,
    error: str | None = None,
    error_field: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "plaid_link.html",
        principal,
        status_code,
        mode="form",
        profile=state.profile(profile_id),
        section="accounts",
        profile_id=profile_id,
        environments=PLAID_ENVIRONMENTS,
        sandbox_institution=SANDBOX_INSTITUTION_ID,
        values={
            "environment": "production",
            "institution_id": SANDBOX_INSTITUTION_ID,
            **{k: v for k, v in values.items() if v},
        },
        error=error,
        error_field=error_field,
    )


@router.get("/p/{profile_id}/accounts/add/plaid")
def plaid_page(request: Request, profile_id: str, pending: str = "") -> Response:
    principal, state = _authorise(request, profile_id)
    if not pending:
        return _plaid_form(request, principal, state, profile_id, {})
    try:
        link = pending_links(request).get(pending, principal, profile_id)
    except (KeyError, LinkExpired) as exc:
        expired = isinstance(exc, LinkExpired)
        return _plaid_form(
            request,
            principal,
            state,
            profile_id,
            {},
            error=(
                "this Plaid link expired (after 30 minutes): enter the API keys again"
                if expired
                else "this Plaid link is unknown or has expired: enter the API keys again"
            ),
            status_code=410 if expired else 404,
        )
    from finbot_pipelines.providers.plaid.options import resolve_api_url

    link_js = plaid_link_js()
    nonce = secrets.token_urlsafe(18)
    response = render(
        request,
        "plaid_link.html",
        principal,
        mode="link",
        profile=state.profile(profile_id),
        section="accounts",
        profile_id=profile_id,
        link_js=link_js,
        link_token=link.link_token,
        pending_id=link.id,
        account_id=link.account_id,
        exchange_url=f"/p/{quote(profile_id)}/accounts/add/plaid/exchange",
        nonce=nonce,
    )
    response.headers["Content-Security-Policy"] = link_page_csp(
        link_js, resolve_api_url(link.environment, link.api_url), nonce
    )
    return response


def _plaid_credentials(
    api_url: str, client_id: str, secret: str, environment: str, public_token: str
) -> dict[str, str]:
    from finbot_pipelines.providers.plaid.link import exchange_public_token

    access_token = exchange_public_token(api_url, client_id, secret, public_token)
    return {
        "client_id": client_id,
        "secret": secret,
        "access_token": access_token,
        "environment": environment,
    }


def _add_plaid(
    paths: HomePaths,
    profile_id: str,
    account_id: str,
    name: str,
    api_url: str | None,
    credentials_name: str | None,
    creds: dict[str, str],
) -> AddedAccount:
    options = {"api_url": api_url} if api_url else {}
    return add_account(
        paths,
        "plaid",
        account_id,
        profile_id,
        name or None,
        options,
        credentials_name or None,
        lambda fields: creds,
        say=_quiet,
    )


def _sandbox_link(
    paths: HomePaths,
    profile_id: str,
    account_id: str,
    name: str,
    api_url: str | None,
    credentials_name: str | None,
    client_id: str,
    secret: str,
    institution_id: str,
) -> AddedAccount:
    from finbot_pipelines.providers.plaid.link import sandbox_public_token
    from finbot_pipelines.providers.plaid.options import resolve_api_url

    url = resolve_api_url("sandbox", api_url)
    public_token = sandbox_public_token(url, client_id, secret, institution_id)
    creds = _plaid_credentials(url, client_id, secret, "sandbox", public_token)
    return _add_plaid(paths, profile_id, account_id, name, api_url, credentials_name, creds)


@router.post("/p/{profile_id}/accounts/add/plaid")
async def plaid_start(request: Request, profile_id: str) -> Response:
    principal, state, form = await _authorised_form(request, profile_id)
    values = {
        k: _text(form, k)
        for k in ("id", "name", "environment", "api_url", "credentials_name", "institution_id")
    }
    values["test_institution"] = "1" if _text(form, "test_institution") else ""
    client_id, secret = _text(form, "client_id"), _text(form, "secret")
    account_id, environment = values["id"], values["environment"] or "production"
    api_url = values["api_url"] or None

    def refuse(message: str, field: str | None, status: int = 400) -> Response:
        return _plaid_form(
            request,
            principal,
            state,
            profile_id,
            values,
            error=message,
            error_field=field,
            status_code=status,
        )

    for key, text in (("id", account_id), ("client_id", client_id), ("secret", secret)):
        if not text:
            return refuse(f"{key}: required", key)
    if environment not in PLAID_ENVIRONMENTS:
        return refuse(
            f"environment: expected one of {', '.join(PLAID_ENVIRONMENTS)}", "environment"
        )
    if any(a.id == account_id for a in state.config().linked_accounts):
        return refuse(
            f"a linked account '{account_id}' already exists: choose another id", "id", 409
        )
    try:
        Vault.open(state.paths.home)  # before Plaid is asked: the access token must be kept
    except VaultError as exc:
        return refuse(str(exc), None, 500)
    if values["test_institution"]:
        if environment != "sandbox":
            return refuse(
                "environment: a test institution exists in Plaid's sandbox only: choose sandbox",
                "environment",
            )
        try:
            added = await run_in_threadpool(
                _sandbox_link,
                state.paths,
                profile_id,
                account_id,
                values["name"],
                api_url,
                values["credentials_name"] or None,
                client_id,
                secret,
                values["institution_id"] or SANDBOX_INSTITUTION_ID,
            )
        except AddAccountError as exc:
            return refuse(
                _web_message(exc, account_id, values["credentials_name"]), exc.field, _status(exc)
            )
        except (ProviderError, ValueError) as exc:
            return refuse(f"Plaid linking failed: {exc}", None, 502)
        log.info("linked account %r (plaid, sandbox) added from the web", account_id)
        spec = registry.get_spec("plaid")
        return _render_form(
            request, principal, state, profile_id, spec, {}, added=added_summary(added, state.paths)
        )
    from finbot_pipelines.providers.plaid.link import create_link_token
    from finbot_pipelines.providers.plaid.options import resolve_api_url

    try:
        url = resolve_api_url(environment, api_url)
        link_token = await run_in_threadpool(
            create_link_token, url, client_id, secret, f"finbot-user-{principal.user.id}"
        )
    except (ProviderError, ValueError) as exc:
        return refuse(f"Plaid refused to start linking: {exc}", None, 502)
    link = pending_links(request).add(
        user_id=principal.user.id,
        profile_id=profile_id,
        account_id=account_id,
        name=values["name"],
        credentials_name=values["credentials_name"],
        environment=environment,
        api_url=api_url,
        client_id=client_id,
        secret=secret,
        link_token=link_token,
    )
    return RedirectResponse(
        f"/p/{quote(profile_id)}/accounts/add/plaid?pending={quote(link.id)}", status_code=303
    )


def _answer(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"ok": status < 400, "message": message, **extra}, status_code=status)


@router.post("/p/{profile_id}/accounts/add/plaid/exchange")
async def plaid_exchange(request: Request, profile_id: str) -> Response:
    principal, state = _authorise(request, profile_id)
    check_csrf(request, principal)
    raw = await request.body()
    try:
        body = json.loads(raw[:65536]) if len(raw) <= 65536 else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _answer(400, "expected a JSON object {pending_id, public_token}")
    pending_id, public_token = body.get("pending_id"), body.get("public_token")
    if not isinstance(pending_id, str) or not pending_id:
        return _answer(400, "pending_id: required")
    if not isinstance(public_token, str) or not public_token.startswith("public-"):
        return _answer(400, "public_token: expected the public token Plaid Link gave")
    links = pending_links(request)
    try:
        link = links.take(pending_id, principal, profile_id)
    except LinkExpired:
        return _answer(410, "this Plaid link expired (after 30 minutes): start again")
    except KeyError:
        return _answer(404, "no such pending Plaid link (it may have expired): start again")
    from finbot_pipelines.providers.plaid.options import resolve_api_url

    try:
        url = resolve_api_url(link.environment, link.api_url)
        creds = await run_in_threadpool(
            _plaid_credentials, url, link.client_id, link.secret, link.environment, public_token
        )
        added = await run_in_threadpool(
            _add_plaid,
            state.paths,
            profile_id,
            link.account_id,
            link.name,
            link.api_url,
            link.credentials_name or None,
            creds,
        )
    except AddAccountError as exc:
        message = _web_message(exc, link.account_id, link.credentials_name)
        return _answer(_status(exc), message, field=exc.field)
    except (ProviderError, ValueError) as exc:
        return _answer(502, f"Plaid linking failed: {exc}; start again")
    log.info("linked account %r (plaid) added from the web", link.account_id)
    return _answer(
        200,
        _message(added),
        account_id=added.account.id,
        sub_accounts=len(added.snapshot.sub_accounts) if added.snapshot else 0,
    )
