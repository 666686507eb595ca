"""Issue #13, point 5: private by default.

A small demo home is set up and run through the real `finbot` entry point, from
a shell whose umask is the usual 022 (what a person has): afterwards every
folder under FINBOT_HOME is 0700 and every file 0600 (the warehouse, the
published file and its Parquet files, Dagster's storage, dbt's logs, reports,
the config and the vault). `config check` warns about a file left looser.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from finbot_pipelines.config.home import loose_modes, loose_modes_warning

FINBOT = str(Path(sys.executable).parent / "finbot")
TIMEOUT_S = 600


def finbot(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FINBOT_SECRET_KEY", "DAGSTER_HOME")}
    env.update(FINBOT_HOME=str(home), DAGSTER_DISABLE_TELEMETRY="1")
    return subprocess.run(
        [FINBOT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_S,
        preexec_fn=lambda: os.umask(0o022),  # a person's usual umask
    )


def offenders(home: Path) -> list[str]:
    """Every path under ``home`` (itself included) whose mode is not 0700 (folders) or
    0600 (files), computed here without the code under test."""
    bad = []
    for root, dirs, files in os.walk(home):
        for name, want in [(d, 0o700) for d in dirs] + [(f, 0o600) for f in files]:
            p = Path(root) / name
            st = p.lstat()
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) != want:
                bad.append(f"{p} {stat.S_IMODE(st.st_mode):04o}")
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode != 0o700:
        bad.append(f"{home} {mode:04o}")
    return bad


@pytest.fixture(scope="module")
def run_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A demo home after init, a secret, a run of 3 hours (ingest, dbt, publish,
    report), a query and a config edit, all as separate commands."""
    home = tmp_path_factory.mktemp("modes") / "home"
    home.mkdir()
    os.chmod(home, 0o755)  # as an older finbot, or a person, left it
    steps = [
        ("init", "--demo"),
        ("secrets", "set", "my-secret", "--stdin"),
        ("run", "--hours", "3"),
        ("report",),
        ("sql", "select count(*) from marts.fct_profile_valuation_hourly"),
        ("accounts", "add", "dummy", "--id", "extra", "--profile", "alice"),
        ("accounts", "freeze", "extra"),
    ]
    for args in steps:
        res = finbot(home, *args, stdin="value-1\n")
        assert res.returncode == 0, (args, res.stdout[-2000:], res.stderr[-4000:])
    yield home


def test_every_folder_0700_and_every_file_0600(run_home: Path) -> None:
    names = {p.name for p in run_home.iterdir()}
    # the run really wrote what the issue lists (else the walk would prove little)
    assert {"warehouse.duckdb", "finbot.duckdb", "vault.enc", "finbot.yaml"} <= names, names
    assert any(run_home.glob("published/**/*.parquet"))
    assert any(run_home.glob("dagster/**/*.db")), sorted(run_home.glob("dagster/**/*"))
    assert any(run_home.glob("reports/*.html"))
    assert offenders(run_home) == []


def test_config_check_is_quiet_on_a_private_home(run_home: Path) -> None:
    res = finbot(run_home, "config", "check")
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr


def test_config_check_warns_about_a_loose_file(run_home: Path) -> None:
    target = run_home / "warehouse.duckdb"
    os.chmod(target, 0o644)
    try:
        res = finbot(run_home, "config", "check")
        assert res.returncode == 0, res.stderr  # a warning, not a failure
        assert f"{target} (0644)" in res.stderr
        assert f"chmod -R go-rwx {run_home}" in res.stderr
        assert "valid" in res.stdout
    finally:
        os.chmod(target, 0o600)


def test_a_loose_home_is_tightened_when_finbot_opens_it(tmp_path: Path) -> None:
    home = tmp_path / "old-home"
    home.mkdir()
    (home / "finbot.yaml").write_text("profiles:\n  - {id: me, name: Me, valuation_ccy: EUR}\n")
    os.chmod(home, 0o755)
    os.chmod(home / "finbot.yaml", 0o644)
    res = finbot(home, "config", "check")
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    # files DuckDB or a person wrote keep their mode: only warned about
    assert f"{home / 'finbot.yaml'} (0644)" in res.stderr
    assert stat.S_IMODE((home / "finbot.yaml").stat().st_mode) == 0o644


def test_loose_modes_lists_dirs_and_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir(mode=0o700)
    (tmp_path / "sub" / "a").write_text("x")
    (tmp_path / "b").write_text("x")
    os.chmod(tmp_path, 0o700)
    os.chmod(tmp_path / "sub" / "a", 0o640)
    os.chmod(tmp_path / "b", 0o600)
    assert loose_modes(tmp_path) == [(tmp_path / "sub" / "a", 0o640)]
    os.chmod(tmp_path / "sub", 0o755)
    assert sorted(loose_modes(tmp_path)) == [
        (tmp_path / "sub", 0o755),
        (tmp_path / "sub" / "a", 0o640),
    ]
    os.chmod(tmp_path / "sub", 0o700)
    os.chmod(tmp_path / "sub" / "a", 0o600)
    assert loose_modes(tmp_path) == [] and loose_modes_warning(tmp_path) is None
