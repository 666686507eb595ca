"""Who is asking, and what they may see: sessions, API tokens, CSRF and the sign-in limit.

Every request is authorised here, on the server. A page or an API call names a profile,
a linked account or a transaction by id; :func:`require_profile` answers 404 for a
profile the caller may not see (the same answer as for one that does not exist, so ids
cannot be probed) and 403 when the caller sees it but may not change it.

- Pages authenticate with the ``finbot_session`` cookie (HttpOnly, SameSite=Lax, Secure
  behind HTTPS). Each session has a CSRF token: every form carries it and every unsafe
  request made with the cookie must present it (form field ``csrf`` or header
  ``X-CSRF-Token``).
- Scripts authenticate with ``Authorization: Bearer fbt_...``; a token is ``read`` unless
  it was created ``write``, and a bearer request needs no CSRF token (a browser never
  sends it by itself).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Literal

from fastapi import HTTPException, Request

from finbot_pipelines.web.users import (
    MAX_FAILURES_PER_CLIENT,
    MAX_FAILURES_PER_NAME,
    Access,
    Scope,
    User,
    UserStore,
)

SESSION_COOKIE = "finbot_session"
LOGIN_CSRF_COOKIE = "finbot_login_csrf"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Principal:
    user: User
    grants: dict[str, Access]
    via: Literal["session", "token"]
    scope: Scope
    csrf: str | None = None
    session_id: str | None = field(default=None, repr=False)

    def access(self, profile_id: str) -> Access | None:
        return self.grants.get(profile_id)

    def can_write(self, profile_id: str) -> bool:
        return self.scope == "write" and self.grants.get(profile_id) in ("owner", "full")


class AuthFailed(HTTPException):
    def __init__(self, detail: str = "sign in first, or send Authorization: Bearer TOKEN"):
        super().__init__(401, detail, headers={"WWW-Authenticate": "Bearer"})


def identify(request: Request, store: UserStore) -> Principal | None:
    """The caller from a bearer token (when an Authorization header is sent, it alone
    counts) or the session cookie; None when neither identifies a user."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        found = store.token(token.strip())
        if found is None:
            return None
        user, scope, _ = found
        return Principal(user, store.grants_of(user.id), "token", scope)
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    session = store.session(sid)
    if session is None:
        return None
    return Principal(
        session.user,
        store.grants_of(session.user.id),
        "session",
        "write",
        csrf=session.csrf,
        session_id=sid,
    )


def csrf_ok(principal: Principal, presented: str | None) -> bool:
    if principal.via == "token":
        return True
    return bool(presented and principal.csrf and hmac.compare_digest(presented, principal.csrf))


def check_csrf(request: Request, principal: Principal, form_value: str | None = None) -> None:
    """Refuse an unsafe request made with the session cookie without its CSRF token."""
    if request.method not in UNSAFE_METHODS:
        return
    presented = form_value or request.headers.get(CSRF_HEADER)
    if not csrf_ok(principal, presented):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")


def require_profile(principal: Principal, profile_id: str, *, write: bool = False) -> Access:
    access = principal.access(profile_id)
    if access is None:
        raise HTTPException(404, f"no profile {profile_id!r}")
    if write and not principal.can_write(profile_id):
        reason = (
            "this API token is read-only"
            if principal.scope == "read"
            else f"profile {profile_id!r} is shared with you view-only"
        )
        raise HTTPException(403, reason)
    return access


def require_admin(principal: Principal) -> None:
    if not principal.user.is_admin or principal.scope != "write":
        raise HTTPException(403, "only an admin may manage users")


def client_key(request: Request) -> str:
    return f"client:{request.client.host if request.client else 'unknown'}"


def sign_in_blocked(store: UserStore, request: Request, name: str) -> bool:
    """Too many recent failures for this name or from this client."""
    return (
        store.failures(f"name:{name.lower()}") >= MAX_FAILURES_PER_NAME
        or store.failures(client_key(request)) >= MAX_FAILURES_PER_CLIENT
    )


def sign_in(store: UserStore, request: Request, name: str, password: str) -> User | None:
    """The user, or None for a wrong name or password (the failure is counted)."""
    user = store.verify_password(name, password)
    if user is None:
        store.record_failure(f"name:{name.lower()}", client_key(request))
        return None
    store.clear_failures(f"name:{name.lower()}")
    return user
