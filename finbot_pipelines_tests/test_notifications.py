"""Notifications: digest and failure/recovery messages, delivered to a local HTTP receiver."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from finbot_pipelines.config.loading import load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.vault import Vault, init_key_file
from finbot_pipelines.defs.automation.notifications import (
    Message,
    NotificationError,
    after_successful_run,
    digest_message,
    health_transitions,
    send,
)
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import E2E_CONFIG, BuiltHome
from finbot_pipelines_tests.fakes.webhook import WebhookReceiver

TOKEN = "tok-CANARY-5e3f9a"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.stop()


def test_digest_matches_the_marts(built_home: BuiltHome) -> None:
    published = HomePaths(built_home.home).published
    msg = digest_message(published, "static")
    with connect_published(published) as con:
        latest = con.execute(
            "select profile_id, valuation_ccy, net_worth from marts.fct_profile_valuation_hourly "
            "where valuation_hour = ?",
            [built_home.last],
        ).fetchall()
        day_before = dict(
            con.execute(
                "select profile_id, net_worth from marts.fct_profile_valuation_hourly "
                "where valuation_hour = ?",
                [built_home.first],
            ).fetchall()
        )
    assert len(latest) == 2
    for pid, ccy, net in latest:
        assert f"{pid}: net worth {net:,.2f} {ccy}" in msg.body
        # the data starts 23 hours before the last hour: no 1-day reference exists
        assert day_before[pid] is not None
    assert msg.body.count("1-day change n/a") == 2
    assert "Every linked account is up to date." in msg.body
    assert "static rates" in msg.body


def row(failures: int, acc: str = "bank") -> dict[str, Any]:
    return {
        "profile_id": "me",
        "linked_account_id": acc,
        "consecutive_failures": failures,
        "last_error_code": "authentication_failure" if failures else None,
        "last_error_message": "login refused" if failures else None,
        "last_success_hour": datetime(2026, 3, 1, 9),
    }


def test_failure_is_notified_once_and_recovery_once() -> None:
    failing: set[str] = set()
    sent: list[Message] = []
    for failures in (1, 5, 6, 7, 8, 0, 0, 6):
        msgs, failing = health_transitions([row(failures)], failing, threshold=6)
        sent += msgs
    assert [m.kind for m in sent] == ["failure", "success", "failure"]
    assert "failed for 6 consecutive hours" in sent[0].body
    assert "authentication_failure: login refused" in sent[0].body
    # an account that left the config is forgotten
    assert health_transitions([], {"me/bank"}, 6) == ([], set())


def _home_with_notifications(built_home: BuiltHome, tmp_path: Path, port: int) -> HomePaths:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(HomePaths(built_home.home).published, home / "finbot.duckdb")
    # the catalog names its files relative to its home: the copy gets them too
    shutil.copytree(HomePaths(built_home.home).home / "published", home / "published")
    url = f"json://127.0.0.1:{port}/hook/{{secret:hook-token}}"
    (home / "finbot.yaml").write_text(
        E2E_CONFIG + f"notifications:\n  urls: ['{url}']\n  failure_threshold_hours: 6\n"
    )
    init_key_file(home)
    Vault.open(home).set("hook-token", TOKEN)
    return HomePaths(home)


def _set_failures(paths: HomePaths, account: str, failures: int) -> None:
    with duckdb.connect(str(paths.published)) as con:
        con.execute(
            "update marts.mart_linked_account_health set consecutive_failures = ?, "
            "last_error_code = 'transient', last_error_message = 'HTTP 503' "
            "where linked_account_id = ?",
            [failures, account],
        )


def test_after_runs_digest_daily_failure_and_recovery_once(
    built_home: BuiltHome, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    paths = _home_with_notifications(built_home, tmp_path, receiver.port)
    cfg = load_config(paths.config)
    day1 = datetime(2026, 1, 6, 0, 5)
    # first run of the day: the digest
    assert [m.title for m in after_successful_run(paths, cfg, day1)] == ["finbot daily digest"]
    # a later run the same day, nothing new
    assert after_successful_run(paths, cfg, day1.replace(hour=3)) == []
    _set_failures(paths, "a-bank", 6)
    sent = after_successful_run(paths, cfg, day1.replace(hour=6))
    assert [m.title for m in sent] == ["finbot: alice/a-bank is failing"]
    assert after_successful_run(paths, cfg, day1.replace(hour=7)) == []
    _set_failures(paths, "a-bank", 0)
    sent = after_successful_run(paths, cfg, day1.replace(hour=8))
    assert [m.title for m in sent] == ["finbot: alice/a-bank recovered"]
    # next day: a new digest
    nxt = after_successful_run(paths, cfg, datetime(2026, 1, 7, 0, 5))
    assert [m.title for m in nxt] == ["finbot daily digest"]
    # all four reached the receiver, at the URL with the vault's token; no message holds it
    assert [p["title"] for p in receiver.posts] == [
        "finbot daily digest",
        "finbot: alice/a-bank is failing",
        "finbot: alice/a-bank recovered",
        "finbot daily digest",
    ]
    assert all(p == f"/hook/{TOKEN}" for p in receiver.paths)
    assert all(TOKEN not in json.dumps(p) for p in receiver.posts)
    assert TOKEN not in (paths.home / "notifications.json").read_text()


def test_a_delivery_failure_never_shows_the_url(receiver: WebhookReceiver) -> None:
    receiver.status = 500
    with pytest.raises(NotificationError) as info:
        send([f"json://127.0.0.1:{receiver.port}/hook/{TOKEN}"], Message("t", "b"))
    assert TOKEN not in str(info.value)
    with pytest.raises(NotificationError) as info:
        send([f"nosuchscheme://{TOKEN}"], Message("t", "b"))
    assert TOKEN not in str(info.value)


def test_no_urls_no_messages(built_home: BuiltHome) -> None:
    cfg = load_config(HomePaths(built_home.home).config)
    assert after_successful_run(HomePaths(built_home.home), cfg) == []
