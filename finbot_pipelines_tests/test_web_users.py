"""`finbot users ...` and the user store, without Dagster or the web app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.web import users as users_mod
from finbot_pipelines.web.users import UserError, UserStore
from finbot_pipelines_tests.conftest import demo_cli_home, invoke_cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return demo_cli_home(tmp_path)


def test_users_commands_add_share_token_passwd_remove(home: Path) -> None:
    r = invoke_cli(home, "users", "add", "alice", "--profile", "alice", "--admin",
                   "--password-stdin", input="alice-password-1\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "added admin alice, owner of alice" in r.output
    r = invoke_cli(home, "users", "add", "bruno", "--profile", "bruno", input="pw-bruno-123\n" * 2)
    assert r.exit_code == 0, r.output  # asked twice (confirmation), without echo
    r = invoke_cli(home, "users", "share", "bruno", "--profile", "alice")
    assert r.exit_code == 0 and "bruno sees alice (view)" in r.output
    r = invoke_cli(home, "users", "token", "bruno", "--label", "sheet")
    token = r.output.strip()
    assert r.exit_code == 0 and token.startswith("fbt_")
    listed = invoke_cli(home, "users", "list").output
    assert "alice (admin): alice (owner)" in listed
    assert "bruno: alice (view), bruno (owner)" in listed
    assert "'sheet': read, last used never" in listed
    assert token not in listed and token.split("_", 2)[2] not in listed
    store = UserStore.open(HomePaths(home))
    assert store.token(token) is not None
    assert store.verify_password("bruno", "pw-bruno-123") is not None
    r = invoke_cli(home, "users", "passwd", "bruno", "--password-stdin", input="pw-bruno-456\n")
    assert r.exit_code == 0, r.output
    assert store.verify_password("bruno", "pw-bruno-123") is None
    assert store.verify_password("bruno", "pw-bruno-456") is not None
    token_id = token.split("_")[1]
    r = invoke_cli(home, "users", "token", "bruno", "--revoke", token_id)
    assert r.exit_code == 0 and store.token(token) is None
    r = invoke_cli(home, "users", "share", "bruno", "--profile", "alice", "--revoke")
    assert r.exit_code == 0
    assert store.grants_of(store.require_user("bruno").id) == {"bruno": "owner"}
    r = invoke_cli(home, "users", "remove", "bruno")
    assert r.exit_code == 0 and store.get_user("bruno") is None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "eve", "--profile", "nobody"], "long-enough-pw\n", "no profile 'nobody'"),
        (["add", "eve", "--profile", "alice", "--password-stdin"], "short\n", "at least 10"),
        (["add", "Eve!", "--profile", "alice", "--password-stdin"], "long-enough-pw\n",
         "is not a user name"),
        (["passwd", "nobody", "--password-stdin"], "long-enough-pw\n", "no user 'nobody'"),
        (["share", "nobody", "--profile", "alice"], None, "no user 'nobody'"),
        (["token", "nobody"], None, "no user 'nobody'"),
    ],
)  # fmt: skip
def test_users_commands_refuse_bad_input_naming_it(
    home: Path, args: list[str], stdin: str | None, message: str
) -> None:
    r = invoke_cli(home, "users", *args, input=stdin)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert UserStore.open(HomePaths(home)).list_users() == []


def test_sessions_expire_and_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = UserStore(tmp_path / "web" / "users.sqlite3")
    user = store.add_user("alice", "alice-password-1")
    sid, csrf = store.create_session(user)
    session = store.session(sid)
    assert session is not None and session.csrf == csrf and session.user.name == "alice"
    assert store.session(sid + "x") is None
    later = datetime.now(UTC) + users_mod.SESSION_LIFETIME + timedelta(minutes=1)
    monkeypatch.setattr(users_mod, "_now", lambda: later)
    assert store.session(sid) is None, "an expired session is refused (and deleted)"
    monkeypatch.undo()
    assert store.session(sid) is None
    sid, _ = store.create_session(user)
    store.end_session(sid)
    assert store.session(sid) is None


def test_failed_sign_ins_count_within_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = UserStore(tmp_path / "users.sqlite3")
    store.record_failure("name:alice", "client:1.2.3.4")
    store.record_failure("name:alice")
    assert store.failures("name:alice") == 2 and store.failures("client:1.2.3.4") == 1
    later = datetime.now(UTC) + users_mod.FAILURE_WINDOW + timedelta(seconds=1)
    monkeypatch.setattr(users_mod, "_now", lambda: later)
    assert store.failures("name:alice") == 0


def test_grant_access_levels_and_duplicates(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.sqlite3")
    store.add_user("alice", "alice-password-1", profiles={"alice": "owner"})
    with pytest.raises(UserError, match="exists already"):
        store.add_user("alice", "alice-password-1")
    with pytest.raises(UserError, match="access must be one of"):
        store.grant("alice", "bruno", "admin")  # type: ignore[arg-type]
    store.grant("alice", "bruno", "view")
    store.grant("alice", "bruno", "full")
    assert store.grants_of(store.require_user("alice").id) == {"alice": "owner", "bruno": "full"}
