"""Backups and restores: `finbot backup` while a real run is landing, `finbot restore` into
an empty home whose published marts then equal the original's row for row, and backups
that are damaged or incomplete refused with a message naming the file.

The original is a copy of the session's built home (24 hours). Expected values are read
from the original's own files (DuckDB, hashlib), never from the code under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from finbot_pipelines import __version__
from finbot_pipelines.cli import main
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.vault import Vault, init_key_file
from finbot_pipelines.warehouse.backup import WarehouseLost, write_backup
from finbot_pipelines_tests.conftest import BuiltHome

EXTRA_HOURS = 6
HOURLY = ("linked_account_hours", "fetches", "sub_accounts", "items")
DATA_TABLES = (*HOURLY, "profiles", "fx_rates", "unit_prices")
DEADLINE_S = 900


def finbot(home: Path, *args: str, **kw: Any) -> subprocess.Popen[str]:
    """`finbot ARGS` in its own process, on `home` (its own Dagster instance)."""
    env = {
        **os.environ,
        "FINBOT_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "finbot_pipelines.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def published_tables(con: duckdb.DuckDBPyConnection, alias: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_catalog = ? "
            "and table_schema = 'marts' and table_name <> 'publish_info' order by 1",
            [alias],
        ).fetchall()
    ]


def mart_differences(a: Path, b: Path) -> dict[str, tuple[int, int, int]]:
    """Per mart: (rows in a, rows of a not in b, rows of b not in a), EXCEPT ALL both ways."""
    con = duckdb.connect()
    # each catalog names its files relative to its own home; file names never repeat
    con.execute("set file_search_path = ?", [f"{a},{b}"])
    con.execute(f"attach '{a / 'finbot.duckdb'}' as a (read_only)")
    con.execute(f"attach '{b / 'finbot.duckdb'}' as b (read_only)")
    names = published_tables(con, "a")
    assert names == published_tables(con, "b")
    out = {}
    for t in names:

        def count(sql: str) -> int:
            row = con.execute(sql).fetchone()
            assert row is not None
            return int(row[0])

        out[t] = (
            count(f"select count(*) from a.marts.{t}"),
            count(f"select count(*) from (from a.marts.{t} except all from b.marts.{t})"),
            count(f"select count(*) from (from b.marts.{t} except all from a.marts.{t})"),
        )
    con.close()
    return out


def rows_per_hour(db: Path) -> dict[str, dict[datetime, int]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            t: dict(con.execute(f"select fetch_hour, count(*) from raw.{t} group by 1").fetchall())
            for t in HOURLY
        }


def parquet_rows_per_hour(backup: Path) -> dict[str, dict[datetime, int]]:
    con = duckdb.connect()
    out = {
        t: dict(
            con.execute(
                f"select fetch_hour, count(*) from read_parquet('{backup / 'raw' / t}.parquet') "
                "group by 1"
            ).fetchall()
        )
        for t in HOURLY
    }
    con.close()
    return out


@dataclass
class Concurrent:
    original: Path
    before: Path  # the original's published marts before the run
    backup: Path
    run_output: str
    backup_output: str
    overlapped: bool
    built: BuiltHome


@pytest.fixture(scope="module")
def concurrent(
    built_home: BuiltHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Concurrent]:
    """A backup taken while `finbot run` lands EXTRA_HOURS new hours in the original."""
    assert built_home.fx_success and built_home.run_success
    root = tmp_path_factory.mktemp("backup")
    original = root / "original"
    shutil.copytree(built_home.home, original)
    before = root / "before"
    before.mkdir()
    shutil.copy2(original / "finbot.duckdb", before / "finbot.duckdb")
    shutil.copytree(original / "published", before / "published")

    last = built_home.last + timedelta(hours=EXTRA_HOURS)
    run = finbot(original, "run", "--last", f"{last:%Y-%m-%d %H:00}", "--hours", str(EXTRA_HOURS))
    lines: list[str] = []
    landing = threading.Event()

    def read() -> None:
        assert run.stderr is not None
        for line in run.stderr:
            lines.append(line)
            if line.startswith("pipeline:"):
                landing.set()  # the FX run is done, the hourly run (ingest first) starts
        landing.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert landing.wait(DEADLINE_S), "the run never started"
        overlapped = run.poll() is None
        dest = root / "dest"
        backup = finbot(original, "backup", str(dest))
        backup_out, backup_err = backup.communicate(timeout=DEADLINE_S)
        assert run.wait(timeout=DEADLINE_S) == 0, "".join(lines)[-4000:]
    finally:
        if run.poll() is None:
            run.kill()
        reader.join(timeout=60)
    assert backup.returncode == 0, backup_out + backup_err[-4000:]
    written = sorted(dest.glob("finbot-backup-*"))
    assert len(written) == 1
    yield Concurrent(
        original,
        before,
        written[0],
        "".join(lines),
        backup_out + backup_err,
        overlapped,
        built_home,
    )


@pytest.fixture(scope="module")
def restored(concurrent: Concurrent) -> Path:
    """The concurrent backup restored into a new, empty home by `finbot restore`."""
    home = concurrent.original.parent / "restored"
    proc = finbot(home, "restore", str(concurrent.backup))
    out, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, out + err[-4000:]
    return home


def test_a_backup_during_a_run_takes_its_turn_and_is_whole(concurrent: Concurrent) -> None:
    assert concurrent.overlapped  # the backup started while the run was landing
    assert "backup written:" in concurrent.backup_output
    manifest = json.loads((concurrent.backup / "manifest.json").read_text())
    extent = manifest["warehouse"]
    built = concurrent.built
    new_last = built.last + timedelta(hours=EXTRA_HOURS)
    # before the run's ingest or after it, never in the middle of it
    assert extent["last_hour"] in (built.last.isoformat(), new_last.isoformat())
    # every hour in the backup is whole: the same rows as the original has for it now
    original = rows_per_hour(concurrent.original / "warehouse.duckdb")
    backed_up = parquet_rows_per_hour(concurrent.backup)
    last = datetime.fromisoformat(extent["last_hour"])
    for table in HOURLY:
        want = {h: n for h, n in original[table].items() if h <= last}
        assert backed_up[table] == want, table


def test_the_manifest_describes_the_backup(concurrent: Concurrent) -> None:
    backup = concurrent.backup
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["finbot_version"] == __version__
    assert datetime.fromisoformat(manifest["created_at"].rstrip("Z")) > datetime(2026, 1, 1)
    con = duckdb.connect()
    for rel, info in manifest["files"].items():
        data = (backup / rel).read_bytes()
        assert info["bytes"] == len(data)
        assert info["sha256"] == hashlib.sha256(data).hexdigest(), rel
    extent = manifest["warehouse"]
    for table in DATA_TABLES:
        row = con.execute(f"select count(*) from read_parquet('{backup}/raw/{table}.parquet')")
        n = row.fetchone()
        assert n is not None and extent["rows"][table] == n[0] == manifest["tables"][table]["rows"]
    first, last, hours = con.execute(
        "select min(fetch_hour), max(fetch_hour), count(distinct fetch_hour) "
        f"from read_parquet('{backup}/raw/linked_account_hours.parquet')"
    ).fetchone() or (None, None, None)
    assert (extent["first_hour"], extent["last_hour"], extent["hours"]) == (
        first.isoformat(),
        last.isoformat(),
        hours,
    )
    with duckdb.connect(str(concurrent.original / "warehouse.duckdb"), read_only=True) as wh:
        identity = wh.execute("select warehouse_id from raw.warehouse_identity").fetchall()
    assert [(extent["warehouse_id"],)] == identity
    assert (backup / "config" / "finbot.yaml").read_bytes() == (
        concurrent.original / "finbot.yaml"
    ).read_bytes()
    assert not (backup / "vault").exists()  # only when asked
    con.close()


def test_a_restored_home_publishes_the_same_marts(concurrent: Concurrent, restored: Path) -> None:
    extent = json.loads((concurrent.backup / "manifest.json").read_text())["warehouse"]
    took_new_hours = extent["last_hour"] != concurrent.built.last.isoformat()
    reference = concurrent.original if took_new_hours else concurrent.before
    diffs = mart_differences(reference, restored)
    assert "fct_profile_valuation_hourly" in diffs and "fct_valuation_changes" in diffs
    for name, (rows, missing, extra) in diffs.items():
        assert rows > 0, name
        assert (missing, extra) == (0, 0), name
    # the restored warehouse is the original's: same identity, the next run goes on
    ids = []
    for home in (concurrent.original, restored):
        with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
            ids.append(con.execute("select warehouse_id from raw.warehouse_identity").fetchall())
    assert ids[0] == ids[1] and len(ids[0]) == 1


# --------------------------------------------------------------------------- no Dagster


@pytest.fixture(scope="module")
def a_backup(concurrent: Concurrent) -> Path:
    return write_backup(HomePaths(concurrent.original), concurrent.original.parent / "b").path


def restore_into(home: Path, src: Path, *extra: str) -> Any:
    return CliRunner().invoke(main, ["--home", str(home), "restore", str(src), *extra])


def _flip_a_byte(backup: Path) -> Path:
    victim = backup / "raw" / "items.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    return victim


def _delete_a_file(backup: Path) -> Path:
    victim = backup / "raw" / "fetches.parquet"
    victim.unlink()
    return victim


def _delete_the_manifest(backup: Path) -> Path:
    victim = backup / "manifest.json"
    victim.unlink()
    return victim


def _truncate_the_manifest(backup: Path) -> Path:
    victim = backup / "manifest.json"
    victim.write_text(victim.read_text()[:200])
    return victim


def _change_the_config(backup: Path) -> Path:
    victim = backup / "config" / "finbot.yaml"
    victim.write_text(victim.read_text() + "\n# edited\n")
    return victim


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_flip_a_byte, "damaged backup"),
        (_delete_a_file, "incomplete backup"),
        (_delete_the_manifest, "incomplete backup"),
        (_truncate_the_manifest, "damaged backup"),
        (_change_the_config, "damaged backup"),
    ],
)
def test_a_damaged_or_incomplete_backup_is_refused(
    a_backup: Path, tmp_path: Path, damage: Any, why: str
) -> None:
    copy = tmp_path / a_backup.name
    shutil.copytree(a_backup, copy)
    victim = damage(copy)
    home = tmp_path / "home"
    res = restore_into(home, copy)
    assert res.exit_code != 0
    assert why in res.output and str(victim) in res.output, res.output
    assert not home.exists() or not any(home.iterdir())  # nothing written


def test_restore_refuses_a_home_that_is_not_empty(a_backup: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "finbot.yaml").write_text("mine\n")
    res = restore_into(home, a_backup)
    assert res.exit_code != 0 and "is not empty" in res.output and "--force" in res.output
    assert sorted(p.name for p in home.iterdir()) == ["finbot.yaml"]
    assert (home / "finbot.yaml").read_text() == "mine\n"


def test_the_vault_only_when_asked_and_never_its_key(
    concurrent: Concurrent, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(
        concurrent.original, home, ignore=shutil.ignore_patterns("dagster", "dbt-target")
    )
    init_key_file(home)
    Vault.open(home).set("bank", "canary-secret-8f3a")
    result = write_backup(HomePaths(home), tmp_path / "dest", with_vault=True)
    assert (result.path / "vault" / "vault.enc").read_bytes() == (home / "vault.enc").read_bytes()
    key = (home / "secret.key").read_bytes().strip()
    for f in result.path.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert key not in data and b"canary-secret-8f3a" not in data, f
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["vault"]["included"] is True
    assert "never copied" in manifest["vault"]["key"]
    assert not any("secret.key" in str(p) for p in result.path.rglob("*"))


def test_the_web_app_users_are_backed_up_without_sessions(
    concurrent: Concurrent, tmp_path: Path
) -> None:
    from finbot_pipelines.warehouse.backup import restore_raw
    from finbot_pipelines.web.users import UserStore

    home = tmp_path / "home"
    shutil.copytree(
        concurrent.original, home, ignore=shutil.ignore_patterns("dagster", "dbt-target")
    )
    store = UserStore.open(HomePaths(home))
    user = store.add_user("alice", "alice-password-5d1", profiles={"alice": "owner"})
    sid, _ = store.create_session(user)
    token = store.create_token("alice")
    result = write_backup(HomePaths(home), tmp_path / "dest")
    copy = result.path / "web" / "users.sqlite3"
    assert (copy.stat().st_mode & 0o777) == 0o600
    data = copy.read_bytes()
    assert b"alice-password-5d1" not in data and token.split("_", 2)[2].encode() not in data
    restored = tmp_path / "restored"
    restore_raw(HomePaths(restored), result.path)
    again = UserStore.open(HomePaths(restored))
    assert again.verify_password("alice", "alice-password-5d1") is not None
    assert again.grants_of(again.require_user("alice").id) == {"alice": "owner"}
    assert again.token(token) is not None, "API tokens survive a restore"
    assert again.session(sid) is None, "sessions do not: everyone signs in again"


def test_the_default_directory_keeps_the_newest(concurrent: Concurrent, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(
        concurrent.original, home, ignore=shutil.ignore_patterns("dagster", "dbt-target")
    )
    paths = HomePaths(home)
    written = [write_backup(paths, keep=2).path for _ in range(3)]
    kept = sorted(p.name for p in (home / "backups").iterdir())
    assert kept == sorted(p.name for p in written[1:])
    assert not written[0].exists()


def test_a_lost_warehouse_is_not_backed_up(concurrent: Concurrent, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(
        concurrent.original, home, ignore=shutil.ignore_patterns("dagster", "dbt-target")
    )
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute(
            "delete from raw.linked_account_hours where fetch_hour = ?", [concurrent.built.first]
        )
    with pytest.raises(WarehouseLost, match="finbot restore"):
        write_backup(HomePaths(home), keep=1)
    assert not (home / "backups").exists() or not any((home / "backups").iterdir())


def test_the_daily_schedule_runs_the_backup_in_the_warehouse_pool(
    concurrent: Concurrent,
) -> None:
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.resources import WAREHOUSE_POOL

    defs = build_definitions(str(concurrent.original))
    job = defs.resolve_job_def("finbot_backup")
    assert [n.definition.pool for n in job.graph.nodes] == [WAREHOUSE_POOL]
    schedule = defs.resolve_schedule_def("finbot_backup_daily_schedule")
    assert schedule.cron_schedule == "35 3 * * *"
    assert schedule.job_name == "finbot_backup"
    assert schedule.default_status.value == "RUNNING"
