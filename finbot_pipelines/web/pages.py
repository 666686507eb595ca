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
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from finbot_pipelines.web.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    check_csrf,
    identify,
    sign_in,
    sign_in_blocked,
)
from finbot_pipelines.web.data import NotPublished
from finbot_pipelines.web.state import WebState
from finbot_pipelines.web.users import SESSION_LIFETIME

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
    ctx = {"principal": principal, "csrf": principal.csrf if principal else None, **context}
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)


def not_published_page(request: Request, exc: NotPublished) -> Response:
    return render(request, "message.html", None, 503, title="Nothing published yet", text=str(exc))


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None, error: str | None = None) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(request, "login.html", None, login_csrf=token, next=_safe_next(next))
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
