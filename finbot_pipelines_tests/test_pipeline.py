"""End to end: real Dagster jobs over a tmp FINBOT_HOME, checked against an independent sum."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.providers.dummy.provider import dummy_snapshot
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import E2E_CONFIG, BuiltHome

RAW_TABLES = ("fetches", "sub_accounts", "items", "linked_account_hours")


def expected_profile_valuations(first: datetime, hours: int) -> pd.DataFrame:
    """Net worth per profile and hour, straight from the dummy provider's output.

    As-of rule: an account contributes its latest successful hour at or before the
    hour; values convert sub-account currency -> EUR -> profile currency.
    """
    cfg = yaml.safe_load(E2E_CONFIG)
    per_eur = {"EUR": 1.0, **cfg["fx_static_rates"]}
    ccy = {p["id"]: p["valuation_ccy"] for p in cfg["profiles"]}
    rows = []
    for i in range(hours):
        hour = first + timedelta(hours=i)
        for acc in cfg["linked_accounts"]:
            failing = {datetime.fromisoformat(h) for h in acc["options"].get("fail_hours", [])}
            source = hour
            while source in failing:
                source -= timedelta(hours=1)
            if source < first:
                continue
            snap = dummy_snapshot(acc["id"], acc["options"], source)
            for sub in snap.sub_accounts:
                for item in sub.items:
                    assert item.value is not None
                    value = float(item.value) / per_eur[sub.currency] * per_eur[ccy[acc["profile"]]]
                    rows.append((acc["profile"], hour, item.item_type, value))
    df = pd.DataFrame(rows, columns=["profile_id", "valuation_hour", "item_type", "value"])
    assets = df[df.item_type == "asset"].groupby(["profile_id", "valuation_hour"]).value.sum()
    liabs = df[df.item_type == "liability"].groupby(["profile_id", "valuation_hour"]).value.sum()
    out = pd.DataFrame({"total_assets": assets, "total_liabilities": liabs}).fillna(0.0)
    out["net_worth"] = out.total_assets + out.total_liabilities
    return out.reset_index().sort_values(["profile_id", "valuation_hour"]).reset_index(drop=True)


def published(home: BuiltHome, sql: str) -> pd.DataFrame:
    with connect_published(HomePaths(home.home).published) as con:
        return con.execute(sql).df()


def warehouse(home: BuiltHome, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(HomePaths(home.home).warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_runs_succeed(built_home: BuiltHome) -> None:
    assert built_home.fx_success
    assert built_home.run_success


def test_net_worth_equals_independent_sum(built_home: BuiltHome) -> None:
    got = published(
        built_home,
        "select profile_id, valuation_hour, total_assets, total_liabilities, net_worth "
        "from marts.fct_profile_valuation_hourly order by profile_id, valuation_hour",
    )
    want = expected_profile_valuations(built_home.first, 24)
    assert len(got) == len(want) == 48
    got["valuation_hour"] = pd.to_datetime(got.valuation_hour)
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), want, check_dtype=False, check_exact=False, rtol=1e-9
    )


def test_valuation_currency_and_stale_accounts(built_home: BuiltHome) -> None:
    df = published(
        built_home,
        "select profile_id, valuation_hour, valuation_ccy, stale_accounts "
        "from marts.fct_profile_valuation_hourly",
    )
    assert dict(df.groupby("profile_id").valuation_ccy.first()) == {"alice": "GBP", "bruno": "EUR"}
    stale = df[df.stale_accounts > 0]
    assert sorted((r.profile_id, r.valuation_hour.hour) for r in stale.itertuples()) == [
        ("alice", 10),
        ("alice", 11),
    ]


def test_failing_account_recorded_and_others_fetched(built_home: BuiltHome) -> None:
    rows = warehouse(
        built_home,
        "select linked_account_id, hour(fetch_hour), status, error_code, attempt "
        "from raw.fetches order by 1, 2",
    )
    assert len(rows) == 4 * 24
    failures = [r for r in rows if r[2] == "failure"]
    # authentication failures are not retried
    assert failures == [
        ("a-invest", 10, "failure", "authentication_failure", 1),
        ("a-invest", 11, "failure", "authentication_failure", 1),
    ]
    # the flaky account failed its first attempt every hour and succeeded on the retry
    assert {r[4] for r in rows if r[0] == "a-crypto"} == {2}
    assert all(r[2] == "success" for r in rows if r[0] != "a-invest")


def test_rematerialising_a_partition_leaves_no_duplicates(built_home: BuiltHome) -> None:
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_job

    def counts() -> dict[str, int]:
        return {t: warehouse(built_home, f"select count(*) from raw.{t}")[0][0] for t in RAW_TABLES}

    before = counts()
    marts_before = published(
        built_home, "select * from marts.fct_profile_valuation_hourly order by all"
    )
    hour = built_home.first + timedelta(hours=5)
    paths = HomePaths(built_home.home)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        result = run_job(
            build_definitions(str(built_home.home)),
            HOURLY_JOB,
            hour,
            hour,
            instance=instance,
            progress=False,
        )
    assert result.success
    assert counts() == before
    marts_after = published(
        built_home, "select * from marts.fct_profile_valuation_hourly order by all"
    )
    pd.testing.assert_frame_equal(marts_before, marts_after)


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_finbot_sql_reads_the_published_file(built_home: BuiltHome, fmt: str) -> None:
    query = (
        "select profile_id, count(*) as hours from marts.fct_profile_valuation_hourly "
        "group by 1 order by 1"
    )
    res = CliRunner().invoke(main, ["--home", str(built_home.home), "sql", query, "--format", fmt])
    assert res.exit_code == 0, res.output
    if fmt == "json":
        assert json.loads(res.output) == [
            {"profile_id": "alice", "hours": 24},
            {"profile_id": "bruno", "hours": 24},
        ]
    elif fmt == "csv":
        assert res.output.splitlines() == ["profile_id,hours", "alice,24", "bruno,24"]
    else:
        assert "alice" in res.output and "24" in res.output


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_finbot_sql_prints_every_amount_exactly(built_home: BuiltHome, fmt: str) -> None:
    """Amounts are DECIMAL: every format prints their digits, never a float's noise, and
    units and rates are not rounded."""
    query = (
        "select item_name, units, value_sub_account_ccy, value, fx_rate "
        "from marts.fct_item_valuation_hourly where units is not null "
        "order by valuation_hour, linked_account_id, sub_account_id, item_name limit 40"
    )
    with connect_published(HomePaths(built_home.home).published) as con:
        expected = con.execute(query).fetchall()
    res = CliRunner().invoke(main, ["--home", str(built_home.home), "sql", query, "--format", fmt])
    assert res.exit_code == 0, res.output

    def text(d: Decimal) -> str:  # the exact digits, without trailing zeros
        return format(d.normalize(), "f") if d != 0 else "0"

    if fmt == "json":
        rows = json.loads(res.output, parse_float=Decimal)
        assert [
            (r["item_name"], r["units"], r["value_sub_account_ccy"], r["value"]) for r in rows
        ] == [(n, u, vs, v) for n, u, vs, v, _ in expected]
        assert '"units": "' not in res.output  # numbers, not strings
    elif fmt == "csv":
        lines = res.output.splitlines()[1:]
        assert lines == [f"{n},{text(u)},{text(vs)},{text(v)},{r!r}" for n, u, vs, v, r in expected]
    else:
        body = res.output.splitlines()[2:]  # after the header and its rule
        assert len(body) == len(expected)
        for line, (n, u, vs, v, r) in zip(body, expected, strict=True):
            cells = line.replace(",", "").split()
            assert cells[-4:] == [
                text(u),
                text(vs),
                # valuation amounts keep at least 2 decimals
                text(v) if len(text(v).partition(".")[2]) >= 2 else f"{v:.2f}",
                repr(r),
            ], line
            assert line.startswith(n)
    assert "99999999" not in res.output and "00000001" not in res.output


def test_finbot_sql_error_is_clear(built_home: BuiltHome) -> None:
    res = CliRunner().invoke(
        main, ["--home", str(built_home.home), "sql", "select * from marts.no_such_table"]
    )
    assert res.exit_code == 2
    assert "query failed" in res.output and "no_such_table" in res.output


def test_the_hourly_run_wrote_each_profiles_report(built_home: BuiltHome) -> None:
    reports = HomePaths(built_home.home).reports
    for profile in ("alice", "bruno"):
        page = reports / f"{profile}.html"
        assert 20_000 < page.stat().st_size <= 1_000_000  # its charts are inline SVG
        assert 'data-testid="chart-net-worth"' in page.read_text()
        assert (reports / f"{profile}-{built_home.last:%Y-%m-%d}.html").exists()
    res = CliRunner().invoke(main, ["--home", str(built_home.home), "report", "--profile", "bruno"])
    assert res.exit_code == 0 and res.output.strip() == str(reports / "bruno.html")


def test_a_run_books_each_model_once_whatever_its_hours(built_home: BuiltHome) -> None:
    """The 24-hour run materialised each dbt model once, and each ingest asset 24 times.

    dbt models are unpartitioned: Dagster's per-partition bookkeeping of 17 models x
    every hour was what made a year's rebuild take hours (docs/performance.md).
    """
    from finbot_pipelines.defs.automation.jobs import HOURLY_JOB

    paths = HomePaths(built_home.home)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=HOURLY_JOB))
        start = built_home.first.strftime("%Y-%m-%d-%H:%M")
        (first_run,) = [
            r for r in runs if r.tags.get("dagster/asset_partition_range_start") == start
        ]
        records = instance.get_records_for_run(
            first_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
    keys = [r.event_log_entry.dagster_event.asset_key for r in records]  # type: ignore[union-attr]
    per_key: dict[str, int] = {}
    for key in keys:
        assert key is not None
        per_key[key.to_user_string()] = per_key.get(key.to_user_string(), 0) + 1
    models = {
        k: n for k, n in per_key.items() if k.startswith(("staging/", "intermediate/", "marts/"))
    }
    assert "marts/fct_profile_valuation_hourly" in models
    assert set(models.values()) == {1}
    ingest = {k: n for k, n in per_key.items() if k.startswith("ingest/")}
    accounts = yaml.safe_load(E2E_CONFIG)["linked_accounts"]
    # an account's failed hours (its `fail_hours`) stay unmaterialised; `ingest/landed`
    # is materialised once, whatever failed
    expected = {
        f"ingest/{a['id']}": 24 - len(a.get("options", {}).get("fail_hours", [])) for a in accounts
    }
    assert expected["ingest/a-invest"] == 22
    assert ingest == {**expected, "ingest/landed": 1}
    assert per_key["published_marts"] == 1 and per_key["wealth_report"] == 1


def test_rebuild_touches_only_its_window(built_home: BuiltHome) -> None:
    """`finbot rebuild --first --last` recomputes those hours and no other; without a
    window it recomputes every hour."""
    paths = HomePaths(built_home.home)
    inside = built_home.first + timedelta(hours=10)
    outside = built_home.first + timedelta(hours=3)
    table = "marts.fct_profile_valuation_hourly"
    truth = published(built_home, f"select * from {table} order by all")

    def corrupt() -> None:
        with duckdb.connect(str(paths.warehouse)) as con:
            con.execute(
                f"update {table} set net_worth = -1 where valuation_hour in (?, ?)",
                [inside, outside],
            )

    def net_worth_at(hour: datetime) -> set[float]:
        rows = published(
            built_home, f"select net_worth from {table} where valuation_hour = '{hour}'"
        )
        return set(rows.net_worth.astype(float))

    env = {"FINBOT_HOME": str(built_home.home), "DAGSTER_HOME": str(paths.dagster_home)}
    corrupt()
    window = ["--first", f"{inside - timedelta(hours=1):%Y-%m-%d %H:00}"]
    window += ["--last", f"{inside + timedelta(hours=1):%Y-%m-%d %H:00}"]
    result = CliRunner().invoke(main, ["rebuild", *window], env=env)
    assert result.exit_code == 0, result.output
    assert -1.0 not in net_worth_at(inside)
    assert net_worth_at(outside) == {-1.0}  # outside the window: left as it was

    result = CliRunner().invoke(main, ["rebuild"], env=env)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(
        truth, published(built_home, f"select * from {table} order by all")
    )
