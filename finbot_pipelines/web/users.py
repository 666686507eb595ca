"""The web app's people: users, what each may see, sessions, API tokens, sign-in attempts.

One SQLite file, ``$FINBOT_HOME/web/users.sqlite3`` (mode 0600, in a 0700 folder), apart
from the warehouse and the marts: the pipeline never reads it and a web request never
writes the marts. What it holds:

- users: a name, an argon2id password hash (argon2-cffi's defaults, a memory-hard KDF),
  an admin flag and the time the password last changed;
- grants: which profiles a user may see, as ``owner`` or shared ``full`` (may change the
  profile's accounts) or ``view`` (read only). A user sees nothing else; an admin manages
  users and grants but sees only the profiles granted to them, like anyone;
- sessions: the SHA-256 of a random session id (never the id itself), its CSRF token and
  its expiry. Signing out deletes the session; a password change deletes all of them;
- API tokens: ``fbt_<id>_<secret>``, stored as the SHA-256 of the whole token (a random
  256-bit secret needs no slow hash), ``read`` unless created with ``write``;
- failed sign-ins, for the rate limit (``MAX_FAILURES_PER_NAME`` per name and
  ``MAX_FAILURES_PER_CLIENT`` per client address within ``FAILURE_WINDOW``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from finbot_pipelines.config.paths import HomePaths

Access = Literal["owner", "full", "view"]
Scope = Literal["read", "write"]
ACCESS_LEVELS: tuple[Access, ...] = ("owner", "full", "view")
SCOPES: tuple[Scope, ...] = ("read", "write")

MIN_PASSWORD_LENGTH = 10
SESSION_LIFETIME = timedelta(days=14)
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_CLIENT = 20
TOKEN_PREFIX = "fbt_"
#: how precisely `users list` knows when a token was last used
TOKEN_USE_RESOLUTION = timedelta(minutes=1)

_NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
_TOKEN_RE = re.compile(r"^fbt_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_HASHER = PasswordHasher()
# verified against when the name is unknown, so an unknown name costs what a wrong
# password costs (no user enumeration by timing)
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))

_SCHEMA = """
create table if not exists users (
    id integer primary key,
    name text not null unique,
    password_hash text not null,
    is_admin integer not null default 0,
    created_at text not null,
    password_changed_at text not null
);
create table if not exists grants (
    user_id integer not null references users(id) on delete cascade,
    profile_id text not null,
    access text not null check (access in ('owner', 'full', 'view')),
    primary key (user_id, profile_id)
);
create table if not exists sessions (
    id_hash text primary key,
    user_id integer not null references users(id) on delete cascade,
    csrf text not null,
    created_at text not null,
    expires_at text not null
);
create table if not exists tokens (
    id text primary key,
    user_id integer not null references users(id) on delete cascade,
    secret_hash text not null,
    label text not null,
    scope text not null check (scope in ('read', 'write')),
    created_at text not null,
    last_used_at text
);
create table if not exists login_failures (
    key text not null,
    at text not null
);
create index if not exists login_failures_key on login_failures(key, at);
"""


class UserError(ValueError):
    """A refused change (unknown user, weak password, bad name...), with the reason."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True)
class Token:
    id: str
    user_name: str
    label: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UserError(
            f"{name!r} is not a user name: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter, at most 64 characters"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password or "\n" in password:
        raise UserError("the password must not start or end with spaces or hold a line break")
    return password


class UserStore:
    """The users file; each call opens its own short SQLite connection (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(path, 0o600)
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute("pragma journal_mode = wal")
            db.executescript(_SCHEMA)  # commits by itself
        finally:
            db.close()

    @classmethod
    def open(cls, paths: HomePaths) -> UserStore:
        return cls(paths.web / "users.sqlite3")

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection, kept (each request reads the file two or three
        times: opening a connection each time was most of a cached answer's cost)."""
        ino = os.stat(self.path).st_ino  # a restore puts a new file in place
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "ino", None) != ino:
            if db is not None:
                db.close()
            db = self._connect()
            self._local.db, self._local.ino = db, ino
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("pragma foreign_keys = on")
        db.execute("pragma busy_timeout = 30000")
        return db

    @contextmanager
    def _db(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: ``write`` takes the write lock at once (no lost update);
        a read takes none (WAL: readers never wait for a writer, and each read
        transaction sees every write committed before it began)."""
        if not write:
            db = self._reader()
            db.execute("begin")
            try:
                yield db
            finally:
                if db.in_transaction:
                    db.execute("rollback")
            return
        db = self._connect()
        try:
            db.execute("begin immediate")
            try:
                yield db
            except BaseException:
                db.execute("rollback")
                raise
            db.execute("commit")
        finally:
            db.close()

    # ------------------------------------------------------------------ users

    @staticmethod
    def _user(row: sqlite3.Row | tuple[object, ...]) -> User:
        uid, name, admin, created, changed = row
        return User(int(str(uid)), str(name), bool(admin), _dt(str(created)), _dt(str(changed)))

    _USER_COLS = "id, name, is_admin, created_at, password_changed_at"

    def add_user(
        self,
        name: str,
        password: str,
        *,
        admin: bool = False,
        profiles: Mapping[str, Access] | None = None,
    ) -> User:
        check_name(name)
        pw_hash = _HASHER.hash(check_password(password))
        now = _ts(_now())
        with self._db() as db:
            if db.execute("select 1 from users where name = ?", [name]).fetchone():
                raise UserError(f"user {name!r} exists already")
            cur = db.execute(
                "insert into users (name, password_hash, is_admin, created_at, "
                "password_changed_at) values (?, ?, ?, ?, ?)",
                [name, pw_hash, int(admin), now, now],
            )
            uid = cur.lastrowid
            for profile_id, access in (profiles or {}).items():
                db.execute(
                    "insert into grants (user_id, profile_id, access) values (?, ?, ?)",
                    [uid, profile_id, access],
                )
        user = self.get_user(name)
        assert user is not None
        return user

    def get_user(self, name: str) -> User | None:
        with self._db(write=False) as db:
            row = db.execute(
                f"select {self._USER_COLS} from users where name = ?", [name]
            ).fetchone()
        return self._user(row) if row else None

    def require_user(self, name: str) -> User:
        user = self.get_user(name)
        if user is None:
            known = ", ".join(u.name for u in self.list_users()) or "none"
            raise UserError(f"no user {name!r} (users: {known})")
        return user

    def list_users(self) -> list[User]:
        with self._db(write=False) as db:
            rows = db.execute(f"select {self._USER_COLS} from users order by name").fetchall()
        return [self._user(r) for r in rows]

    def remove_user(self, name: str) -> None:
        user = self.require_user(name)
        with self._db() as db:
            db.execute("delete from users where id = ?", [user.id])

    def set_admin(self, name: str, admin: bool) -> None:
        user = self.require_user(name)
        with self._db() as db:
            db.execute("update users set is_admin = ? where id = ?", [int(admin), user.id])

    def set_password(self, name: str, password: str) -> None:
        """A new password; every session of the user ends (API tokens stay)."""
        user = self.require_user(name)
        pw_hash = _HASHER.hash(check_password(password))
        with self._db() as db:
            db.execute(
                "update users set password_hash = ?, password_changed_at = ? where id = ?",
                [pw_hash, _ts(_now()), user.id],
            )
            db.execute("delete from sessions where user_id = ?", [user.id])

    def verify_password(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None (same cost for unknown names)."""
        with self._db(write=False) as db:
            row = db.execute(
                f"select {self._USER_COLS}, password_hash from users where name = ?", [name]
            ).fetchone()
        stored = str(row[5]) if row else _DUMMY_HASH
        try:
            _HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        user = self._user(row[:5])
        if _HASHER.check_needs_rehash(stored):
            with self._db() as db:
                db.execute(
                    "update users set password_hash = ? where id = ?",
                    [_HASHER.hash(password), user.id],
                )
        return user

    # ----------------------------------------------------------------- grants

    def grant(self, name: str, profile_id: str, access: Access) -> None:
        if access not in ACCESS_LEVELS:
            raise UserError(f"access must be one of {', '.join(ACCESS_LEVELS)}, not {access!r}")
        user = self.require_user(name)
        with self._db() as db:
            db.execute(
                "insert into grants (user_id, profile_id, access) values (?, ?, ?) "
                "on conflict (user_id, profile_id) do update set access = excluded.access",
                [user.id, profile_id, access],
            )

    def revoke(self, name: str, profile_id: str) -> bool:
        user = self.require_user(name)
        with self._db() as db:
            cur = db.execute(
                "delete from grants where user_id = ? and profile_id = ?", [user.id, profile_id]
            )
        return cur.rowcount > 0

    def grants_of(self, user_id: int) -> dict[str, Access]:
        with self._db(write=False) as db:
            rows = db.execute(
                "select profile_id, access from grants where user_id = ? order by profile_id",
                [user_id],
            ).fetchall()
        return {str(p): a for p, a in rows}

    # --------------------------------------------------------------- sessions

    def create_session(self, user: User) -> tuple[str, str]:
        """(session id for the cookie, its CSRF token); only the id's hash is stored."""
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = _now()
        with self._db() as db:
            db.execute("delete from sessions where expires_at < ?", [_ts(now)])
            db.execute(
                "insert into sessions (id_hash, user_id, csrf, created_at, expires_at) "
                "values (?, ?, ?, ?, ?)",
                [_sha256(sid), user.id, csrf, _ts(now), _ts(now + SESSION_LIFETIME)],
            )
        return sid, csrf

    def session(self, sid: str) -> Session | None:
        if not sid or len(sid) > 200:
            return None
        with self._db(write=False) as db:
            row = db.execute(
                "select u.id, u.name, u.is_admin, u.created_at, u.password_changed_at, "
                "s.csrf, s.expires_at from sessions s join users u on u.id = s.user_id "
                "where s.id_hash = ?",
                [_sha256(sid)],
            ).fetchone()
        if row is None:
            return None
        expires = _dt(str(row[6]))
        if expires <= _now():
            self.end_session(sid)
            return None
        return Session(self._user(row[:5]), str(row[5]), expires)

    def end_session(self, sid: str) -> None:
        with self._db() as db:
            db.execute("delete from sessions where id_hash = ?", [_sha256(sid)])

    # ----------------------------------------------------------------- tokens

    def create_token(self, name: str, *, label: str = "", scope: Scope = "read") -> str:
        """A new API token for ``name``, shown once: only its hash is kept."""
        if scope not in SCOPES:
            raise UserError(f"scope must be read or write, not {scope!r}")
        user = self.require_user(name)
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        with self._db() as db:
            db.execute(
                "insert into tokens (id, user_id, secret_hash, label, scope, created_at) "
                "values (?, ?, ?, ?, ?, ?)",
                [token_id, user.id, _sha256(token), label, scope, _ts(_now())],
            )
        return token

    def token(self, raw: str) -> tuple[User, Scope, str] | None:
        """(user, scope, token id) of a presented token, None when unknown or malformed."""
        m = _TOKEN_RE.match(raw or "")
        if not m:
            return None
        with self._db(write=False) as db:
            row = db.execute(
                "select u.id, u.name, u.is_admin, u.created_at, u.password_changed_at, "
                "t.secret_hash, t.scope, t.last_used_at from tokens t "
                "join users u on u.id = t.user_id where t.id = ?",
                [m.group(1)],
            ).fetchone()
        if row is None or not hmac.compare_digest(str(row[5]), _sha256(raw)):
            return None
        now = _now()
        if row[7] is None or now - _dt(str(row[7])) >= TOKEN_USE_RESOLUTION:
            # at most one write a minute per token: a script's requests never queue on it
            with self._db() as db:
                db.execute(
                    "update tokens set last_used_at = ? where id = ?", [_ts(now), m.group(1)]
                )
        scope: Scope = "write" if row[6] == "write" else "read"
        return self._user(row[:5]), scope, m.group(1)

    def list_tokens(self, name: str | None = None) -> list[Token]:
        sql = (
            "select t.id, u.name, t.label, t.scope, t.created_at, t.last_used_at "
            "from tokens t join users u on u.id = t.user_id"
        )
        params: list[object] = []
        if name is not None:
            sql += " where u.name = ?"
            params.append(name)
        with self._db(write=False) as db:
            rows = db.execute(sql + " order by u.name, t.created_at", params).fetchall()
        return [
            Token(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                "write" if r[3] == "write" else "read",
                _dt(str(r[4])),
                _dt(str(r[5])) if r[5] else None,
            )
            for r in rows
        ]

    def revoke_token(self, token_id: str, *, user_name: str | None = None) -> bool:
        sql = "delete from tokens where id = ?"
        params: list[object] = [token_id]
        if user_name is not None:
            sql += " and user_id = (select id from users where name = ?)"
            params.append(user_name)
        with self._db() as db:
            cur = db.execute(sql, params)
        return cur.rowcount > 0

    # ------------------------------------------------------- sign-in attempts

    def failures(self, key: str) -> int:
        since = _ts(_now() - FAILURE_WINDOW)
        with self._db() as db:
            db.execute("delete from login_failures where at < ?", [since])
            row = db.execute(
                "select count(*) from login_failures where key = ? and at >= ?", [key, since]
            ).fetchone()
        return int(row[0]) if row else 0

    def record_failure(self, *keys: str) -> None:
        now = _ts(_now())
        with self._db() as db:
            db.executemany(
                "insert into login_failures (key, at) values (?, ?)", [(k, now) for k in keys]
            )

    def clear_failures(self, key: str) -> None:
        with self._db() as db:
            db.execute("delete from login_failures where key = ?", [key])
