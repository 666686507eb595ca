"""The household's pages, rendered on the server (Jinja2 templates in ``templates/``, CSS
and one small script in ``static/``; no outside request).

Every page authorises its caller with the session cookie (:func:`page_principal`: to the
sign-in page when there is none) and every form carries the session's CSRF token. The
sign-in form, before any session exists, uses a double-submit token (a cookie and the
same value in the form).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from finbot_pipelines import visual
from finbot_pipelines.config.schema import Profile
from finbot_pipelines.providers.contract import TRANSACTION_KINDS
from finbot_pipelines.web import actions, data, views
from finbot_pipelines.web.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    check_csrf,
    identify,
    require_profile,
    sign_in,
    sign_in_blocked,
)
from finbot_pipelines.web.data import NotPublished
from finbot_pipelines.web.state import WebState
from finbot_pipelines.web.users import SESSION_LIFETIME, UserError

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

router = APIRouter(include_in_schema=False)


class SignInRequired(Exception):
    """Raised by :func:`page_principal`; answered with a redirect to the sign-in page."""


def state_of(request: Request) -> WebState:
    state: WebState = request.app.state.finbot
    return state


def page_principal(request: Request) -> Principal:
    """The signed-in user of a page request (never a bearer token: pages are for people);
    an unsafe request must carry the session's CSRF token."""
    principal = identify(request, state_of(request).store)
    if principal is None or principal.via != "session":
        raise HTTPException(
            303, "sign in first", headers={"Location": "/login?next=" + _next_of(request)}
        )
    return principal


def _next_of(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return quote(target, safe="")


def _safe_next(value: str | None) -> str:
    """Only a path of this site (no scheme, no //host) is followed after signing in."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def render(
    request: Request,
    template: str,
    principal: Principal | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page; a signed-in page also gets what the header needs (the caller's profiles,
    their display preferences, the page's own address)."""
    ctx: dict[str, Any] = {
        "principal": principal,
        "csrf": principal.csrf if principal else None,
        "prefs": _prefs(request),
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "label": visual.label,
    }
    if principal is not None:
        ctx["profiles"] = state_of(request).visible_profiles(principal)
    ctx.update(context)
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)


def not_published_page(request: Request, exc: NotPublished) -> Response:
    return render(request, "message.html", None, 503, title="Nothing published yet", text=str(exc))


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None, changed: str | None = None) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request, "login.html", None, login_csrf=token, next=_safe_next(next), changed=bool(changed)
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )
    return response


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    name: str = Form(..., max_length=64),
    password: str = Form(..., max_length=1024),
    csrf: str = Form(""),
    next: str = Form("/"),
) -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not csrf or not hmac.compare_digest(cookie, csrf):
        return render(
            request,
            "login.html",
            None,
            403,
            login_csrf=cookie or secrets.token_urlsafe(32),
            next=_safe_next(next),
            error="The form expired: please sign in again.",
        )
    store = state_of(request).store
    name = name.strip().lower()
    if sign_in_blocked(store, request, name):
        response = render(
            request,
            "login.html",
            None,
            429,
            login_csrf=cookie,
            next=_safe_next(next),
            error="Too many failed sign-ins: wait 15 minutes and try again.",
        )
        response.headers["Retry-After"] = "900"
        return response
    user = sign_in(store, request, name, password)
    if user is None:
        return render(
            request,
            "login.html",
            None,
            401,
            login_csrf=cookie,
            next=_safe_next(next),
            error="Wrong name or password.",
        )
    sid, _ = store.create_session(user)
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    redirect.set_cookie(
        SESSION_COOKIE,
        sid,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    redirect.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return redirect


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    principal = page_principal(request)
    check_csrf(request, principal, csrf)
    if principal.session_id:
        state_of(request).store.end_session(principal.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ------------------------------------------------------------------ the household's pages

PRIVACY_COOKIE = "finbot_privacy"
THEME_COOKIE = "finbot_theme"
THEMES = ("auto", "light", "dark")
TRANSACTIONS_PER_PAGE = 50


def _prefs(request: Request) -> dict[str, Any]:
    theme = request.cookies.get(THEME_COOKIE, "auto")
    return {
        "private": request.cookies.get(PRIVACY_COOKIE) == "on",
        "theme": theme if theme in THEMES else "auto",
    }


def _cursor(state: WebState) -> Any:
    return state.published.cursor()  # NotPublished: the app answers with not_published_page


def _page_profile(state: WebState, principal: Principal, profile_id: str) -> tuple[Profile, str]:
    access = require_profile(principal, profile_id)
    profile = state.profile(profile_id)
    if profile is None:
        raise HTTPException(404, f"no profile {profile_id!r}")
    return profile, access


def _page(
    request: Request,
    template: str,
    principal: Principal,
    profile: Profile | None,
    fmt: views.Fmt | None,
    section: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    return render(
        request,
        template,
        principal,
        status_code,
        profile=profile,
        can_write=bool(profile and principal.can_write(profile.id)),
        fmt=fmt,
        section=section,
        **context,
    )


def _fmt(state: WebState, request: Request, cur: Any, profile: Profile) -> views.Fmt:
    cfg = state.config()
    return views.formatter(
        cfg, profile, _prefs(request)["private"], views.names_of(cur, profile.id, cfg)
    )


def _choice(value: str | None, allowed: tuple[str, ...] | list[str], default: str) -> str:
    return value if value is not None and value in allowed else default


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    principal = page_principal(request)
    visible = state_of(request).visible_profiles(principal)
    if visible:
        return RedirectResponse(f"/p/{quote(visible[0].id, safe='')}", status_code=303)
    return _page(
        request,
        "message.html",
        principal,
        None,
        None,
        "",
        title="Nothing to show yet",
        text="No profile is shared with you yet: ask the household's admin (`finbot users share`).",
    )


@router.get("/p/{profile_id}", response_class=HTMLResponse)
def dashboard(
    request: Request, profile_id: str, range: str | None = None, dim: str | None = None
) -> Response:
    """Net worth and its change, history on its own scale, distribution, performance."""
    principal = page_principal(request)
    state = state_of(request)
    profile, _ = _page_profile(state, principal, profile_id)
    range_ = _choice(range, views.DASHBOARD_RANGES, "1m")
    dimension = _choice(dim, views.DIMENSIONS, "asset_class")
    with _cursor(state) as cur:
        fmt = _fmt(state, request, cur, profile)
        row = data.latest(cur, profile.id)
        hour = row["valuation_hour"] if row else None
        _, points = data.history(cur, profile.id, range_, "auto")
        dist = data.distribution(cur, profile.id, hour, dimension) if hour else []
        perf = data.performance(cur, profile.id, "profile", None)
        info = data.publish_info(cur)
    net_worth_chart, sides_chart = views.history_charts(points, fmt)
    return _page(
        request,
        "dashboard.html",
        principal,
        profile,
        fmt,
        "dashboard",
        row=row,
        info=info,
        range=range_,
        ranges=views.DASHBOARD_RANGES,
        range_labels=views.RANGE_LABELS,
        dimension=dimension,
        dimensions=views.DIMENSIONS,
        dimension_labels=visual.DIMENSION_LABELS,
        net_worth_chart=Markup(net_worth_chart),
        sides_chart=Markup(sides_chart),
        distribution={
            k: Markup(v) for k, v in views.distribution_bars(dist, dimension, fmt).items()
        },
        performance=views.performance_rows(perf),
        period_label=views.period_label,
        monthly_chart=Markup(views.monthly_chart(perf, fmt)),
        windows=data.CHANGE_WINDOWS,
    )


@router.get("/p/{profile_id}/holdings", response_class=HTMLResponse)
def holdings_page(request: Request, profile_id: str, open: str | None = None) -> Response:
    """Linked accounts > sub-accounts > items, each with its changes (a drill-down)."""
    principal = page_principal(request)
    state = state_of(request)
    profile, _ = _page_profile(state, principal, profile_id)
    with _cursor(state) as cur:
        fmt = _fmt(state, request, cur, profile)
        row = data.latest(cur, profile.id)
        hour = row["valuation_hour"] if row else None
        rows = data.holdings(cur, profile.id, hour) if hour else []
    return _page(
        request,
        "holdings.html",
        principal,
        profile,
        fmt,
        "holdings",
        row=row,
        nodes=views.holdings_tree(rows),
        opened=open,
        windows=("1d", "1w", "1m", "1y"),
    )


def _accounts_context(
    state: WebState, request: Request, profile: Profile
) -> tuple[views.Fmt, list[dict[str, Any]]]:
    with _cursor(state) as cur:
        fmt = _fmt(state, request, cur, profile)
        row = data.latest(cur, profile.id)
        rows = data.accounts(
            cur, profile.id, row["valuation_hour"] if row else None, state.config().linked_accounts
        )
    return fmt, rows


@router.get("/p/{profile_id}/accounts", response_class=HTMLResponse)
def accounts_page(request: Request, profile_id: str) -> Response:
    """Each linked account's health, last error and its fix, and what can be done to it."""
    principal = page_principal(request)
    state = state_of(request)
    profile, _ = _page_profile(state, principal, profile_id)
    fmt, rows = _accounts_context(state, request, profile)
    return _page(request, "accounts.html", principal, profile, fmt, "accounts", accounts=rows)


def _account_page_owner(state: WebState, principal: Principal, account_id: str) -> Profile:
    profile_id = state.account_profile(account_id)
    if profile_id is None or principal.access(profile_id) is None:
        raise HTTPException(404, f"no linked account {account_id!r}")
    profile, _ = _page_profile(state, principal, profile_id)
    return profile


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
def account_page(request: Request, account_id: str) -> Response:
    """One linked account: health, holdings and its latest transactions."""
    principal = page_principal(request)
    state = state_of(request)
    profile = _account_page_owner(state, principal, account_id)
    with _cursor(state) as cur:
        fmt = _fmt(state, request, cur, profile)
        row = data.latest(cur, profile.id)
        hour = row["valuation_hour"] if row else None
        health = data.accounts(cur, profile.id, hour, state.config().linked_accounts)
        rows = data.holdings(cur, profile.id, hour) if hour else []
        _, txs = data.transactions(
            cur, profile.id, data.TransactionFilter(linked_account_id=account_id), 20, 0
        )
    account = next((a for a in health if a["linked_account_id"] == account_id), None)
    if account is None:
        raise HTTPException(404, f"no linked account {account_id!r}")
    tree = [n for n in views.holdings_tree(rows) if n.row["linked_account_id"] == account_id]
    return _page(
        request,
        "account.html",
        principal,
        profile,
        fmt,
        "accounts",
        a=account,
        nodes=tree,
        transactions=txs,
        windows=("1d", "1w", "1m", "1y"),
    )


def _account_action(request: Request, account_id: str, csrf: str, action: str) -> Response:
    principal = page_principal(request)
    check_csrf(request, principal, csrf)
    state = state_of(request)
    profile = _account_page_owner(state, principal, account_id)
    require_profile(principal, profile.id, write=True)
    if not any(a.id == account_id for a in state.config().linked_accounts):
        raise HTTPException(404, f"{account_id!r} is not in the config any more")
    outcome: dict[str, Any] | None = None
    ok = True
    try:
        if action == "test":
            outcome = actions.test(state.paths, account_id)
            ok = bool(outcome["ok"])
            message = (
                f"{account_id}: the test fetch worked ({outcome['sub_accounts']} sub-accounts, "
                f"{outcome['items']} items); nothing was written"
                if ok
                else f"{account_id}: the test fetch failed: {outcome['error_message']}"
            )
        elif action == "remove":
            message = actions.remove(state.paths, account_id)
        else:
            message = actions.set_frozen(state.paths, account_id, action == "freeze")
    except actions.ActionError as exc:
        ok, message = False, str(exc)
    fmt, rows = _accounts_context(state, request, profile)
    return _page(
        request,
        "accounts.html",
        principal,
        profile,
        fmt,
        "accounts",
        status_code=200 if ok else 409,
        accounts=rows,
        result={"ok": ok, "message": message, "account_id": account_id, "outcome": outcome},
    )


@router.post("/accounts/{account_id}/freeze", response_class=HTMLResponse)
def account_freeze(request: Request, account_id: str, csrf: str = Form("")) -> Response:
    return _account_action(request, account_id, csrf, "freeze")


@router.post("/accounts/{account_id}/unfreeze", response_class=HTMLResponse)
def account_unfreeze(request: Request, account_id: str, csrf: str = Form("")) -> Response:
    return _account_action(request, account_id, csrf, "unfreeze")


@router.post("/accounts/{account_id}/test", response_class=HTMLResponse)
def account_test(request: Request, account_id: str, csrf: str = Form("")) -> Response:
    return _account_action(request, account_id, csrf, "test")


@router.post("/accounts/{account_id}/remove", response_class=HTMLResponse)
def account_remove(request: Request, account_id: str, csrf: str = Form("")) -> Response:
    return _account_action(request, account_id, csrf, "remove")


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/p/{profile_id}/transactions", response_class=HTMLResponse)
def transactions_page(
    request: Request,
    profile_id: str,
    account: str | None = None,
    kind: str | None = None,
    first: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """The profile's transactions, newest first: filter by account, kind, dates and text."""
    principal = page_principal(request)
    state = state_of(request)
    profile, _ = _page_profile(state, principal, profile_id)
    kinds = list(TRANSACTION_KINDS)
    flt = data.TransactionFilter(
        linked_account_id=account or None,
        kind=_choice(kind, kinds, "") or None,
        first_day=_day(first),
        last_day=_day(last),
        text=(q or "").strip() or None,
    )
    with _cursor(state) as cur:
        fmt = _fmt(state, request, cur, profile)
        total, rows = data.transactions(
            cur, profile.id, flt, TRANSACTIONS_PER_PAGE, (page - 1) * TRANSACTIONS_PER_PAGE
        )
    pages = max(1, -(-total // TRANSACTIONS_PER_PAGE))
    query = {
        k: v
        for k, v in {
            "account": flt.linked_account_id,
            "kind": flt.kind,
            "from": flt.first_day.isoformat() if flt.first_day else None,
            "to": flt.last_day.isoformat() if flt.last_day else None,
            "q": flt.text,
        }.items()
        if v
    }
    return _page(
        request,
        "transactions.html",
        principal,
        profile,
        fmt,
        "transactions",
        flt=flt,
        kinds=kinds,
        total=total,
        transactions=rows,
        page=page,
        pages=pages,
        page_url=lambda n: f"?{urlencode({**query, 'page': n})}",
    )


# ------------------------------------------------------------------------ settings


def _settings(
    request: Request, principal: Principal, status_code: int = 200, **context: Any
) -> HTMLResponse:
    store = state_of(request).store
    return _page(
        request,
        "settings.html",
        principal,
        None,
        None,
        "settings",
        status_code,
        tokens=store.list_tokens(principal.user.name),
        themes=THEMES,
        **context,
    )


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request) -> Response:
    """Password, API tokens, theme and the privacy switch."""
    return _settings(request, page_principal(request))


@router.post("/settings/password", response_class=HTMLResponse)
def settings_password(
    request: Request,
    current: str = Form("", max_length=1024),
    new: str = Form("", max_length=1024),
    confirm: str = Form("", max_length=1024),
    csrf: str = Form(""),
) -> Response:
    """A new password ends every session, this one too: the user signs in again."""
    principal = page_principal(request)
    check_csrf(request, principal, csrf)
    store = state_of(request).store
    name = principal.user.name
    if store.verify_password(name, current) is None:
        return _settings(request, principal, 400, error="The current password is wrong.")
    if new != confirm:
        return _settings(request, principal, 400, error="The new passwords differ.")
    try:
        store.set_password(name, new)
    except UserError as exc:
        return _settings(request, principal, 400, error=str(exc))
    response = RedirectResponse("/login?changed=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/settings/tokens", response_class=HTMLResponse)
def settings_token_new(
    request: Request,
    label: str = Form("", max_length=100),
    scope: str = Form("read"),
    csrf: str = Form(""),
) -> Response:
    """A new API token, shown once on this answer (only its hash is kept)."""
    principal = page_principal(request)
    check_csrf(request, principal, csrf)
    try:
        token = state_of(request).store.create_token(
            principal.user.name, label=label.strip(), scope="write" if scope == "write" else "read"
        )
    except UserError as exc:
        return _settings(request, principal, 400, error=str(exc))
    return _settings(request, principal, new_token=token)


@router.post("/settings/tokens/revoke", response_class=HTMLResponse)
def settings_token_revoke(
    request: Request, token_id: str = Form("", max_length=64), csrf: str = Form("")
) -> Response:
    principal = page_principal(request)
    check_csrf(request, principal, csrf)
    if not state_of(request).store.revoke_token(token_id, user_name=principal.user.name):
        return _settings(request, principal, 404, error=f"You have no token {token_id!r}.")
    return _settings(request, principal, done=f"Token {token_id} was revoked.")


def _pref_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=400 * 24 * 3600,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


@router.post("/settings/display")
def settings_display(
    request: Request,
    theme: str = Form("auto"),
    privacy: str | None = Form(None),
    next: str = Form("/settings"),
    csrf: str = Form(""),
) -> Response:
    """Theme (auto follows the system), and the privacy switch: no amount is written."""
    principal = page_principal(request)
    check_csrf(request, principal, csrf)
    response = RedirectResponse(_safe_next(next), status_code=303)
    _pref_cookie(response, request, THEME_COOKIE, theme if theme in THEMES else "auto")
    _pref_cookie(response, request, PRIVACY_COOKIE, "on" if privacy == "on" else "off")
    return response


@router.post("/privacy")
def privacy_toggle(request: Request, next: str = Form("/"), csrf: str = Form("")) -> Response:
    """The header's switch: hide amounts, or show them again."""
    principal = page_principal(request)
    check_csrf(request, principal, csrf)
    response = RedirectResponse(_safe_next(next), status_code=303)
    on = _prefs(request)["private"]
    _pref_cookie(response, request, PRIVACY_COOKIE, "off" if on else "on")
    return response


# --------------------------------------------------------------------------- admin


def _admin(request: Request, csrf: str | None = None) -> Principal:
    principal = page_principal(request)
    if csrf is not None:
        check_csrf(request, principal, csrf)
    if principal.via != "session" or not principal.user.is_admin:
        raise HTTPException(403, "only an admin manages people")
    return principal


def _owned(principal: Principal) -> list[str]:
    """The profiles an admin may share from the web: those they own (an admin never
    grants themselves, or anyone, a profile that is not theirs)."""
    return sorted(p for p, a in principal.grants.items() if a == "owner")


def _admin_page(
    request: Request, principal: Principal, status_code: int = 200, **context: Any
) -> HTMLResponse:
    store = state_of(request).store
    users = [(u, store.grants_of(u.id)) for u in store.list_users()]
    tokens: dict[str, int] = {}
    for t in store.list_tokens():
        tokens[t.user_name] = tokens.get(t.user_name, 0) + 1
    names = {p.id: p.name for p in state_of(request).config().profiles}
    return _page(
        request,
        "admin.html",
        principal,
        None,
        None,
        "admin",
        status_code,
        users=users,
        tokens=tokens,
        owned=_owned(principal),
        profile_names=names,
        **context,
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request) -> Response:
    """People: who may sign in, what each sees; add, share and remove (an admin only)."""
    return _admin_page(request, _admin(request))


def _admin_change(request: Request, principal: Principal, change: Any) -> Response:
    try:
        done = change()
    except UserError as exc:
        return _admin_page(request, principal, 400, error=str(exc))
    return _admin_page(request, principal, done=done)


def _shareable(principal: Principal, profile_id: str, access: str) -> str:
    if profile_id not in _owned(principal):
        raise UserError(f"you may share only the profiles you own, not {profile_id!r}")
    if access not in ("view", "full"):
        raise UserError("access must be view or full")
    return access


@router.post("/admin/users", response_class=HTMLResponse)
def admin_add_user(
    request: Request,
    name: str = Form("", max_length=64),
    password: str = Form("", max_length=1024),
    profile: str = Form("", max_length=64),
    access: str = Form("view"),
    csrf: str = Form(""),
) -> Response:
    principal = _admin(request, csrf)
    store = state_of(request).store

    def change() -> str:
        grants: dict[str, Any] = {}
        if profile:
            grants[profile] = _shareable(principal, profile, access)
        store.add_user(name.strip().lower(), password, profiles=grants)
        return f"{name.strip().lower()} may now sign in" + (
            f" and sees {profile} ({access})" if profile else ""
        )

    return _admin_change(request, principal, change)


@router.post("/admin/share", response_class=HTMLResponse)
def admin_share(
    request: Request,
    name: str = Form("", max_length=64),
    profile: str = Form("", max_length=64),
    access: str = Form("view"),
    csrf: str = Form(""),
) -> Response:
    principal = _admin(request, csrf)
    store = state_of(request).store

    def change() -> str:
        store.grant(name, profile, _shareable(principal, profile, access))  # type: ignore[arg-type]
        return f"{name} now sees {profile} ({access})"

    return _admin_change(request, principal, change)


@router.post("/admin/unshare", response_class=HTMLResponse)
def admin_unshare(
    request: Request,
    name: str = Form("", max_length=64),
    profile: str = Form("", max_length=64),
    csrf: str = Form(""),
) -> Response:
    principal = _admin(request, csrf)
    store = state_of(request).store

    def change() -> str:
        _shareable(principal, profile, "view")
        if name == principal.user.name:
            raise UserError("you cannot take your own profile away from yourself")
        if not store.revoke(name, profile):
            raise UserError(f"{name} does not see {profile}")
        return f"{name} no longer sees {profile}"

    return _admin_change(request, principal, change)


@router.post("/admin/remove", response_class=HTMLResponse)
def admin_remove(
    request: Request, name: str = Form("", max_length=64), csrf: str = Form("")
) -> Response:
    principal = _admin(request, csrf)
    store = state_of(request).store

    def change() -> str:
        if name == principal.user.name:
            raise UserError("you cannot remove yourself (another admin, or the CLI, can)")
        store.require_user(name)
        store.remove_user(name)
        return f"{name} was removed, with their sessions and API tokens"

    return _admin_change(request, principal, change)
