"""Relocatable homes: the published catalog names its Parquet files relative to the home,
so a copied, moved or restored home reads its own files, never the original's.

No Dagster: the small marts of test_publish, published with `publish_marts`, read the
way finbot's readers read them (`queries.connect_published`, `finbot sql`) from a working
directory that is not the home. Expected values come from the warehouse's own tables.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.warehouse.publish import publish_marts
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.test_publish import FIRST_HOUR, add_hours, hour_range

LAST_HOUR = datetime(2026, 1, 3, 23)
BUMP = 1000.0  # what the copy's files add to every net worth


def build(home: Path) -> Path:
    home.mkdir()
    add_hours(home / "warehouse.duckdb", hour_range(FIRST_HOUR, LAST_HOUR))
    publish_marts(home / "warehouse.duckdb", home / "finbot.duckdb", "static")
    return home


def from_warehouse(home: Path) -> dict[tuple[str, datetime], float]:
    """Net worth per (profile, hour), read from the warehouse (not the published files)."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select profile_id, valuation_hour, net_worth from marts.fct_profile_valuation_hourly"
        ).fetchall()
    return {(p, h): v for p, h, v in rows}


def published(home: Path) -> dict[tuple[str, datetime], float]:
    with connect_published(home / "finbot.duckdb") as con:
        rows = con.execute(
            "select profile_id, valuation_hour, net_worth from marts.fct_profile_valuation_hourly"
        ).fetchall()
    return {(p, h): v for p, h, v in rows}


def bump_files(home: Path) -> int:
    """Rewrite the home's own profile files with every net worth raised by BUMP."""
    files = sorted((home / "published" / "fct_profile_valuation_hourly").glob("*.parquet"))
    con = duckdb.connect()
    for f in files:
        tmp = f.with_suffix(".tmp")
        con.execute(
            f"copy (select * replace (net_worth + {BUMP} as net_worth) from read_parquet('{f}')) "
            f"to '{tmp}' (format parquet)"
        )
        os.replace(tmp, f)
    con.close()
    return len(files)


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Readers run from a directory that is not the home."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def test_the_catalog_names_its_files_relative_to_the_home(tmp_path: Path) -> None:
    home = build(tmp_path / "home")
    with duckdb.connect(str(home / "finbot.duckdb"), read_only=True) as con:
        views = con.execute("select sql from duckdb_views() where not internal").fetchall()
        sqls = [r[0] for r in views]
        paths = [r[0] for r in con.execute("select path from publish_meta.files").fetchall()]
    named = [p for sql in sqls for p in sql.split("'") if p.endswith(".parquet")]
    assert named and all(p.startswith("published/") for p in named)
    assert paths and all(p.startswith("published/") for p in paths)
    assert not any(str(tmp_path) in sql for sql in sqls)
    assert all((home / p).is_file() for p in named)


def test_a_copied_home_reads_its_own_files(tmp_path: Path, elsewhere: Path) -> None:
    original = build(tmp_path / "original")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    assert bump_files(copy) > 0  # the copy's files now differ from the original's
    want = from_warehouse(original)
    want_copy = {k: v + BUMP for k, v in want.items()}
    assert len(want) == 2 * 72

    assert published(original) == pytest.approx(want)
    assert published(copy) == pytest.approx(want_copy)
    # the original renamed, then deleted: the copy never needed its files
    renamed = original.rename(tmp_path / "renamed")
    assert published(copy) == pytest.approx(want_copy)
    assert published(renamed) == pytest.approx(want)  # a moved home reads its own too
    shutil.rmtree(renamed)
    assert published(copy) == pytest.approx(want_copy)
    # `finbot sql` opens it the same way, from any working directory
    res = CliRunner().invoke(
        main,
        [
            "--home",
            str(copy),
            "sql",
            "select sum(net_worth) as s from fct_profile_valuation_hourly",
            "--format",
            "csv",
        ],
    )
    assert res.exit_code == 0, res.output
    total = Decimal(res.output.strip().splitlines()[-1])
    assert float(total) == pytest.approx(sum(want_copy.values()))


def test_a_moved_home_reads_its_own_files_and_publishes_on(tmp_path: Path, elsewhere: Path) -> None:
    original = build(tmp_path / "original")
    moved = original.rename(tmp_path / "moved")
    assert published(moved) == pytest.approx(from_warehouse(moved))
    # the next publish in the moved home keeps its files: only the new day is written
    new_hour = datetime(2026, 1, 4, 0)
    add_hours(moved / "warehouse.duckdb", [new_hour])
    result = publish_marts(
        moved / "warehouse.duckdb", moved / "finbot.duckdb", "static", (new_hour, new_hour)
    )
    assert not result.full
    got = published(moved)
    assert got == pytest.approx(from_warehouse(moved))
    assert {h for _, h in got} == set(hour_range(FIRST_HOUR, new_hour))


def test_plain_duckdb_clients_open_it_from_the_home_or_with_file_search_path(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the README tells users of the plain duckdb CLI or Python."""
    home = build(tmp_path / "home")
    want = sum(from_warehouse(home).values())
    query = "select sum(net_worth) from fct_profile_valuation_hourly"
    # from elsewhere, without settings, DuckDB looks for the files in the working directory
    with (
        duckdb.connect(str(home / "finbot.duckdb"), read_only=True) as con,
        pytest.raises(duckdb.IOException, match="published/"),
    ):
        con.execute(query).fetchall()
    with duckdb.connect(str(home / "finbot.duckdb"), read_only=True) as con:
        con.execute(f"set file_search_path = '{home}'")
        row = con.execute(query).fetchone()
    assert row is not None and row[0] == pytest.approx(want)
    monkeypatch.chdir(home)  # `cd $FINBOT_HOME`
    with duckdb.connect("finbot.duckdb", read_only=True) as con:
        row = con.execute(query).fetchone()
    assert row is not None and row[0] == pytest.approx(want)
