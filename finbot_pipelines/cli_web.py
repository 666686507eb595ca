"""`finbot users ...` (the web app's people and API tokens) and `finbot web` (the app)."""

from __future__ import annotations

import sys

import click

from finbot_pipelines.config.loading import ConfigError, load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.web.users import ACCESS_LEVELS, UserError, UserStore


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"finbot: {message}", err=True)
    sys.exit(code)


def _store(paths: HomePaths) -> UserStore:
    return UserStore.open(paths)


def _profile_ids(paths: HomePaths) -> list[str]:
    try:
        return [p.id for p in load_config(paths.config).profiles]
    except ConfigError as exc:
        _fail(str(exc))
        raise  # unreachable


def _check_profile(paths: HomePaths, profile_id: str) -> None:
    known = _profile_ids(paths)
    if profile_id not in known:
        _fail(f"no profile {profile_id!r} in {paths.config} (profiles: {', '.join(known)})")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group()
def users() -> None:
    """People who may sign in to the web app, what each sees, and their API tokens."""


@users.command("add")
@click.argument("name")
@click.option(
    "--profile",
    "profile_ids",
    multiple=True,
    required=True,
    help="A profile the user owns (repeat for several).",
)
@click.option("--admin", is_flag=True, help="May manage users and their access.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_obj
def users_add(
    paths: HomePaths, name: str, profile_ids: tuple[str, ...], admin: bool, password_stdin: bool
) -> None:
    """Add user NAME owning each --profile (asks for a password of 10 characters or more)."""
    for pid in profile_ids:
        _check_profile(paths, pid)
    store = _store(paths)
    if store.get_user(name) is not None:
        _fail(f"user {name!r} exists already")
    try:
        store.add_user(
            name,
            _read_password(password_stdin),
            admin=admin,
            profiles=dict.fromkeys(profile_ids, "owner"),
        )
    except UserError as exc:
        _fail(str(exc))
    click.echo(
        f"added {'admin ' if admin else ''}{name}, owner of {', '.join(profile_ids)}; "
        "sign in with `finbot web`"
    )


@users.command("list")
@click.pass_obj
def users_list(paths: HomePaths) -> None:
    """Each user, their profiles (owner, full or view) and their API tokens."""
    store = _store(paths)
    people = store.list_users()
    if not people:
        click.echo("no users yet: `finbot users add NAME --profile ID`")
        return
    tokens = store.list_tokens()
    for u in people:
        grants = store.grants_of(u.id)
        shown = ", ".join(f"{p} ({a})" for p, a in grants.items()) or "no profile"
        click.echo(f"{u.name}{' (admin)' if u.is_admin else ''}: {shown}")
        for t in (t for t in tokens if t.user_name == u.name):
            used = t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never"
            label = f" {t.label!r}" if t.label else ""
            click.echo(f"  token {t.id}{label}: {t.scope}, last used {used}")


@users.command("remove")
@click.argument("name")
@click.pass_obj
def users_remove(paths: HomePaths, name: str) -> None:
    """Remove user NAME with their sessions and tokens (the profiles' data stay)."""
    try:
        _store(paths).remove_user(name)
    except UserError as exc:
        _fail(str(exc))
    click.echo(f"removed {name}, their sessions and their API tokens")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_obj
def users_passwd(paths: HomePaths, name: str, password_stdin: bool) -> None:
    """Set NAME's password; every session of NAME ends (API tokens stay)."""
    store = _store(paths)
    try:
        store.require_user(name)
        store.set_password(name, _read_password(password_stdin))
    except UserError as exc:
        _fail(str(exc))
    click.echo(f"{name}'s password changed; their sessions are signed out")


@users.command("share")
@click.argument("name")
@click.option("--profile", "profile_id", required=True, help="The profile to share.")
@click.option(
    "--access",
    type=click.Choice(list(ACCESS_LEVELS)),
    default="view",
    show_default=True,
    help="view: read only; full: may also change the profile's accounts; owner.",
)
@click.option("--revoke", is_flag=True, help="Take the profile away from NAME instead.")
@click.pass_obj
def users_share(paths: HomePaths, name: str, profile_id: str, access: str, revoke: bool) -> None:
    """Let NAME see --profile (or, with --revoke, no longer)."""
    store = _store(paths)
    try:
        if revoke:
            if not store.revoke(name, profile_id):
                _fail(f"{name} had no access to {profile_id!r}")
            click.echo(f"{name} no longer sees {profile_id}")
            return
        _check_profile(paths, profile_id)
        store.grant(name, profile_id, access)  # type: ignore[arg-type]
    except UserError as exc:
        _fail(str(exc))
    click.echo(f"{name} sees {profile_id} ({access})")


@users.command("token")
@click.argument("name")
@click.option("--label", default="", help="What the token is for (shown by `users list`).")
@click.option("--write", is_flag=True, help="May also change accounts (default read-only).")
@click.option("--revoke", "revoke_id", metavar="TOKEN_ID", help="Revoke this token instead.")
@click.pass_obj
def users_token(
    paths: HomePaths, name: str, label: str, write: bool, revoke_id: str | None
) -> None:
    """Print a new API token for NAME (send it as `Authorization: Bearer TOKEN`).

    The token is shown once: only its hash is stored.
    """
    store = _store(paths)
    try:
        if revoke_id:
            if not store.revoke_token(revoke_id, user_name=name):
                _fail(f"{name} has no token {revoke_id!r}")
            click.echo(f"token {revoke_id} of {name} revoked")
            return
        token = store.create_token(name, label=label, scope="write" if write else "read")
    except UserError as exc:
        _fail(str(exc))
    click.echo(token)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--proxy",
    "proxy_ips",
    metavar="ADDRESSES",
    default=None,
    help="Trust X-Forwarded-Proto/For from these proxy addresses (comma-separated), "
    "for a TLS reverse proxy in front of the app.",
)
@click.pass_obj
def web(paths: HomePaths, host: str, port: int, proxy_ips: str | None) -> None:
    """The household web app and its API (/api/v1, OpenAPI at /api/v1/openapi.json).

    It reads only the published marts, so it never blocks a run, and it sees each new
    publish without a restart. Add people first: `finbot users add NAME --profile ID`.
    """
    import uvicorn

    from finbot_pipelines.web.app import create_app

    if not _store(paths).list_users():
        click.echo(
            "finbot: nobody can sign in yet: add someone with "
            "`finbot users add NAME --profile ID --admin`",
            err=True,
        )
    click.echo(f"finbot web on http://{host}:{port} (FINBOT_HOME={paths.home}); Ctrl-C stops it")
    uvicorn.run(
        create_app(paths),
        host=host,
        port=port,
        proxy_headers=proxy_ips is not None,
        forwarded_allow_ips=proxy_ips or "127.0.0.1",
        server_header=False,
        log_level="info",
        access_log=True,
    )
