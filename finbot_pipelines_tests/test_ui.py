"""`./finbotctl ui`: webserver and daemon on 127.0.0.1, showing the lineage; TERM stops them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from finbot_pipelines_tests.conftest import E2E_CONFIG, REPO, ensure_dbt_manifest

QUERY = """
{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(port: int, query: str) -> dict[str, object]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_ui_lists_assets_with_lineage_and_stops_on_sigterm(tmp_path: Path) -> None:
    ensure_dbt_manifest()
    home = tmp_path / "home"
    home.mkdir()
    (home / "finbot.yaml").write_text(E2E_CONFIG)
    port = free_port()
    web_port = free_port()
    env = {**os.environ, "FINBOT_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen(
        [str(REPO / "finbotctl"), "ui", "--port", str(port), "--web-port", str(web_port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "ui.log").read_text()
                assert time.monotonic() < deadline, "the UI did not come up"
                time.sleep(1)
        nodes = graphql(port, QUERY)["data"]["assetNodes"]  # type: ignore[index]
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        for account in ("a-bank", "a-invest", "a-crypto", "b-bank"):
            assert by_key[f"ingest/{account}"]["groupName"] == "ingest"
        # accounts -> ingest/landed (once per run, whatever failed) -> the raw models
        deps = {"/".join(d["path"]) for d in by_key["staging/stg_raw__items"]["dependencyKeys"]}
        assert "ingest/landed" in deps
        landed = {"/".join(d["path"]) for d in by_key["ingest/landed"]["dependencyKeys"]}
        assert {"ingest/a-bank", "ingest/b-bank"} <= landed
        gate = {"/".join(d["path"]) for d in by_key["every_account_fetched"]["dependencyKeys"]}
        assert gate == {"wealth_report"}
        mart = by_key["marts/fct_profile_valuation_hourly"]
        assert mart["groupName"] == "marts"
        published = {"/".join(d["path"]) for d in by_key["published_marts"]["dependencyKeys"]}
        assert "marts/fct_profile_valuation_hourly" in published
        assert by_key["market/fx_rates"]["groupName"] == "market"
        # the daemon runs beside the webserver (it starts the schedule)
        assert (home / "dagster" / "dagster.yaml").exists()
        # and the household web app beside them (its sign-in page)
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/login", timeout=5) as r:
                    assert b"Sign in" in r.read()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "ui.log").read_text()
                assert time.monotonic() < deadline, "the web app did not come up"
                time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
    assert code is not None
    # nothing of it keeps running
    time.sleep(1)
    for p in (port, web_port):
        left = subprocess.run(["pgrep", "-f", "--", f"--port {p}"], capture_output=True, text=True)
        assert left.returncode == 1, left.stdout  # 1: no process matched
    # nor any process of its Dagster instance (the daemon was seen outliving `dagster dev`)
    assert _processes_naming(f"{home / 'dagster'}/") == []


def _processes_naming(text: str) -> list[str]:
    """The command lines of running processes that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line and "pytest" not in line:
            found.append(line[:300])
    return found


def test_the_asset_graph_explains_itself(tmp_path: Path) -> None:
    """Groups, descriptions, kinds, column schemas, dbt tests as checks, freshness."""
    ensure_dbt_manifest()
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions

    (tmp_path / "finbot.yaml").write_text(E2E_CONFIG)
    graph = build_definitions(str(tmp_path)).resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {
        "ingest",
        "market",
        "staging",
        "intermediate",
        "marts",
        "reports",
        "health",
        "statements",
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key.to_user_string()} has no description"
        assert node.kinds, f"{key.to_user_string()} has no kinds"
    hourly = [
        dg.AssetKey(["ingest", "a-bank"]),
        dg.AssetKey(["marts", "fct_profile_valuation_hourly"]),
        dg.AssetKey(["published_marts"]),
        dg.AssetKey(["wealth_report"]),
    ]
    for key in hourly:
        assert graph.get(key).freshness_policy is not None, key.to_user_string()
    mart = graph.get(dg.AssetKey(["marts", "fct_profile_valuation_hourly"]))
    columns = {c.name for c in mart.metadata["dagster/column_schema"].columns}
    assert {"profile_id", "valuation_hour", "net_worth", "stale_accounts"} <= columns
    checks = {c.name for c in graph.asset_check_keys if c.asset_key == mart.key}
    assert checks, "the mart's dbt tests are not asset checks"
    assert graph.get(dg.AssetKey(["market", "fx_rates"])).kinds >= {"python", "duckdb"}
