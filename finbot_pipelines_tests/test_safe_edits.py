"""Issue #13, point 3: every change to finbot.yaml and the vault is a locked, atomic
read-modify-write that keeps the file's comments and layout.

The commands run as real processes through the `finbot` entry point, as a person
would run them in three terminals.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from finbot_pipelines.config.home import demo_config_text
from finbot_pipelines.config.locking import file_lock
from finbot_pipelines.config.vault import Vault, init_key_file
from finbot_pipelines_tests.conftest import wait_for
from finbot_pipelines_tests.fakes import kraken_server as kr
from finbot_pipelines_tests.test_provider_crypto import kraken  # noqa: F401 (fixture)

FINBOT = str(Path(sys.executable).parent / "finbot")
DEADLINE_S = 120.0


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "finbot.yaml").write_text(demo_config_text(datetime(2026, 5, 1)))
    init_key_file(tmp_path)
    Vault.open(tmp_path).set("existing", "keep-me")
    return tmp_path


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FINBOT_SECRET_KEY"}
    return {
        **env,
        "FINBOT_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        **extra,
    }


def run(home: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FINBOT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for(home, **env),
        timeout=DEADLINE_S,
    )


def blocked_reading_stdin(proc: subprocess.Popen[str]) -> bool:
    """The process's main thread sits in read(0, ...) (x86-64 syscall 0 on fd 0)."""
    try:
        fields = Path(f"/proc/{proc.pid}/syscall").read_text().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] == "0" and int(fields[1], 16) == 0


def ids(home: Path) -> list[str]:
    doc = yaml.safe_load((home / "finbot.yaml").read_text())
    return [a["id"] for a in doc["linked_accounts"]]


def is_subsequence(small: list[str], big: list[str]) -> bool:
    it = iter(big)
    return all(any(line == other for other in it) for line in small)


class StderrReader:
    """Collects a process's stderr lines as they come (so a test can wait for one)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def popen(home: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [FINBOT, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_for(home, **env),
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEADLINE_S)


def test_three_concurrent_edits_all_land_and_comments_stay(
    home: Path,
    kraken: kr.KrakenFake,  # noqa: F811
    popen: Callable[..., subprocess.Popen[str]],
) -> None:
    """`accounts add kraken` waits at its credential prompt while `secrets set other` and
    `accounts add dummy --id d2` complete: all three changes are there at the end."""
    original = (home / "finbot.yaml").read_text()
    first = popen(
        "accounts",
        "add",
        "kraken",
        "--id",
        "exchange",
        "--profile",
        "alice",
        "--option",
        f"api_url={kraken.url}",
        "--option",
        "enable_rate_limit=false",
        "--credentials-stdin",
    )
    # it has read the config and opened the vault, and now waits for the person
    wait_for(
        lambda: blocked_reading_stdin(first) or first.poll() is not None, "the prompt", DEADLINE_S
    )
    assert first.poll() is None, first.communicate()

    other = run(home, "secrets", "set", "other", "--stdin", stdin="other-value\n")
    assert other.returncode == 0, other.stderr
    d2 = run(home, "accounts", "add", "dummy", "--id", "d2", "--profile", "alice")
    assert d2.returncode == 0, d2.stderr
    assert first.poll() is None  # still at its prompt: it held no lock meanwhile

    creds = json.dumps({"api_key": kr.API_KEY, "api_secret": kr.API_SECRET})
    _, err = first.communicate(creds, timeout=DEADLINE_S)
    assert first.returncode == 0, err

    vault = Vault.open(home)
    assert vault.names() == ["exchange", "existing", "other"]
    assert vault.get("other") == "other-value"
    assert vault.get("existing") == "keep-me"
    assert vault.get_json("exchange") == {"api_key": kr.API_KEY, "api_secret": kr.API_SECRET}
    assert ids(home)[-2:] == ["d2", "exchange"]
    text = (home / "finbot.yaml").read_text()
    # every line of the original file is still there, in order: comments, layout, quotes
    assert is_subsequence(original.splitlines(), text.splitlines()), text
    assert original.count("#") == text.count("#")
    assert sorted(p.name for p in home.iterdir() if p.name.endswith(".tmp")) == []


def test_freeze_changes_one_line_only(home: Path) -> None:
    original = (home / "finbot.yaml").read_text()
    res = run(home, "accounts", "freeze", "alice-invest")
    assert res.returncode == 0, res.stderr
    diff = [
        line
        for line in difflib.unified_diff(
            original.splitlines(), (home / "finbot.yaml").read_text().splitlines(), lineterm=""
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert diff == ["+    frozen: true"]
    res = run(home, "accounts", "unfreeze", "alice-invest")
    assert res.returncode == 0, res.stderr
    res = run(home, "accounts", "remove", "alice-crypto")
    assert res.returncode == 0, res.stderr
    text = (home / "finbot.yaml").read_text()
    assert "    frozen: false" in text and "alice-crypto" not in text
    # the comments of the other accounts are still there
    assert "# fails for 3 hours every 4 days" in text
    assert "# the first attempt of every hour fails transiently" in text
    assert "# The demo cannot reach the European Central Bank" in text


def test_a_waiting_command_says_so_then_completes(
    home: Path, popen: Callable[..., subprocess.Popen[str]]
) -> None:
    config = home / "finbot.yaml"
    before = config.read_bytes()
    with file_lock(home / ".finbot.yaml.lock", "test"):
        proc = popen("accounts", "freeze", "alice-bank")
        stderr = StderrReader(proc)
        wait_for(
            lambda: "waiting for another finbot command" in stderr.text(), "the notice", DEADLINE_S
        )
        assert str(config) in stderr.text()
        assert proc.poll() is None and config.read_bytes() == before
    assert proc.wait(timeout=DEADLINE_S) == 0, stderr.text()
    doc = yaml.safe_load(config.read_text())
    assert doc["linked_accounts"][0] == {**doc["linked_accounts"][0], "frozen": True}


def test_a_command_gives_up_after_the_deadline(home: Path) -> None:
    vault_before = (home / "vault.enc").read_bytes()
    config_before = (home / "finbot.yaml").read_bytes()
    with (
        file_lock(home / ".vault.lock", "test"),
        file_lock(home / ".finbot.yaml.lock", "test"),
    ):
        res = run(home, "secrets", "set", "x", "--stdin", stdin="v\n", FINBOT_LOCK_TIMEOUT_S="1")
        assert res.returncode == 2
        assert "gave up after 1 s waiting for another finbot command" in res.stderr
        assert str(home / "vault.enc") in res.stderr and "nothing was changed" in res.stderr
        res = run(home, "accounts", "freeze", "alice-bank", FINBOT_LOCK_TIMEOUT_S="1")
        assert res.returncode == 2
        assert "gave up after 1 s" in res.stderr and str(home / "finbot.yaml") in res.stderr
    assert (home / "vault.enc").read_bytes() == vault_before
    assert (home / "finbot.yaml").read_bytes() == config_before


def test_many_concurrent_secret_sets_lose_nothing(home: Path) -> None:
    """Eight `secrets set` at once: eight secrets (plus the one already there)."""
    procs = [
        subprocess.Popen(
            [FINBOT, "secrets", "set", f"s{i}", "--stdin"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_for(home),
        )
        for i in range(8)
    ]
    for i, proc in enumerate(procs):
        _, err = proc.communicate(f"value-{i}\n", timeout=DEADLINE_S)
        assert proc.returncode == 0, err
    vault = Vault.open(home)
    assert vault.names() == sorted(["existing", *(f"s{i}" for i in range(8))])
    assert [vault.get(f"s{i}") for i in range(8)] == [f"value-{i}" for i in range(8)]
