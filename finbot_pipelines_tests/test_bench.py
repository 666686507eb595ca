"""`finbot bench` stays runnable: a quick run through the click command, --json checked.

Only the shape and sanity of the figures are checked here, never the targets: the
benchmark reports misses, it does not fail on them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from finbot_pipelines.bench import TARGETS, bench, kinds_for_items
from finbot_pipelines_tests.conftest import ensure_dbt_manifest

QUERY_NAMES = ("daily_net_worth", "holdings_tree", "performance", "cash_flows", "distribution")
POSITIVE_SECONDS = (
    "rebuild_s",
    "steady_hour_s",
    "steady_hour_s_24h",
    "fanout_s",
    "fanout_slowest_s",
)


def test_items_per_account_is_the_closest_the_dummy_provider_gives() -> None:
    from finbot_pipelines.bench import items_per_kind

    per_kind = items_per_kind()
    assert sum(per_kind[k] for k in kinds_for_items(10, 0)) == 10
    assert sum(per_kind[k] for k in kinds_for_items(1, 3)) == 1
    # 30 is more than the dummy provider has: every kind, all 17 items
    assert sorted(kinds_for_items(30, 0)) == sorted(per_kind)


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ensure_dbt_manifest()
    home: Path = tmp_path_factory.mktemp("bench")
    args = ["--hours", "48", "--accounts", "3", "--items", "10", "--repeat", "1"]
    # 4 web clients, not 20: the measure is the bench's, not this test's (20 threads in a
    # test worker slowed the whole suite); the target stays the one for 20
    args += ["--query-runs", "3", "--web-clients", "4", "--home", str(home), "--json"]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # the command cleans up what it built under --home unless --keep
    assert not (home / "main").exists()
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_bench_json_has_every_field_with_sane_values(bench_json: dict[str, Any]) -> None:
    data = bench_json
    assert (data["accounts"], data["items"], data["hours"]) == (3, 10, 48)
    assert data["items_per_account"] == 10
    for name in POSITIVE_SECONDS:
        assert isinstance(data[name], float) and 0 < data[name] < 600, name
    for name in ("steady_ratio", "fanout_ratio"):
        assert isinstance(data[name], float) and 0.1 < data[name] < 10, name
    assert data["steady_ratio"] == pytest.approx(
        data["steady_hour_s"] / data["steady_hour_s_24h"], rel=0.01
    )
    # every dummy account answers after 0.5 s, the slowest after 1.0 s: neither can be faster
    assert data["fanout_slowest_s"] >= 1.0
    assert data["fanout_s"] >= 1.0
    assert set(data["query_ms"]) == set(QUERY_NAMES)
    for name in QUERY_NAMES:
        assert isinstance(data["query_ms"][name], float) and 0 < data["query_ms"][name] < 10_000
    assert isinstance(data["peak_rss_mb"], float) and 50 < data["peak_rss_mb"] < 20_000


def test_bench_json_reports_targets_and_where_the_time_goes(bench_json: dict[str, Any]) -> None:
    data = bench_json
    targets = data["targets"]
    expected = {k for k in TARGETS if k != "query_ms"} | {f"query_ms.{q}" for q in QUERY_NAMES}
    assert set(targets) == expected
    for name, t in targets.items():
        assert isinstance(t["pass"], bool), name
        assert t["pass"] == (t["value"] <= t["limit"]), name
    steps = data["steady_breakdown"]["steps_s"]
    assert {"ingest_linked_accounts", "finbot_dbt", "published_marts"} <= set(steps)
    assert data["steady_breakdown"]["dbt_own_elapsed_s"] > 0
    phases = data["steady_breakdown"]["dbt_step_phases_s"]
    assert set(phases) == {"prelaunch_s", "process_start_s", "parse_s", "execute_s", "after_s"}
    # a steady hour is a whole process: start-up plus the run, which is steps plus Dagster
    steady = data["steady_breakdown"]
    assert steady["process_startup_s"] > 0 and steady["run_wall_s"] > 0
    assert steady["wall_s"] == pytest.approx(
        steady["process_startup_s"] + steady["run_wall_s"], abs=0.01
    )
    assert {"ingest_linked_accounts", "finbot_dbt", "published_marts", "wealth_report"} <= set(
        steady["steps_s"]
    )
    assert "finbot_dbt" in data["rebuild_breakdown"]["steps_s"]
    # the memory is sampled over the whole process tree: dbt (a child) is in it
    rebuild = data["rebuild_breakdown"]
    assert rebuild["children_rss_mb"] > 50
    assert data["peak_rss_mb"] >= max(rebuild["dagster_rss_mb"], rebuild["children_rss_mb"])
    assert data["machine"]["nproc"] >= 1


def test_bench_measures_the_web_app_while_the_hours_publish(bench_json: dict[str, Any]) -> None:
    web = bench_json["web"]
    assert web["clients"] == 4
    assert web["requests"] > 20, "every client made calls during the steady hour"
    assert web["errors"] == 0, web["first_errors"]
    assert 0 < web["p50_ms"] <= web["p95_ms"] <= web["max_ms"]
    assert bench_json["web_p95_ms"] == web["p95_ms"]
    targets = bench_json["targets"]
    assert targets["web_p95_ms"]["limit"] == 50
    assert targets["web_errors"]["value"] == 0
