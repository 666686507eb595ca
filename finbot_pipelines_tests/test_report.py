"""The wealth report, opened from file:// in headless Chromium, offline.

Numbers on the page are compared with the published marts read here with DuckDB,
independently of the report code (its own SQL, its own formatting).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Request, sync_playwright

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.defs.reports.html import (
    STATIC_FX_NOTICE,
    WrittenReport,
    latest_report_path,
    write_reports,
)
from finbot_pipelines.providers.browser import LAUNCH_ARGS, chromium_executable
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import BuiltHome

ARTIFACTS_ENV = "FINBOT_TEST_ARTIFACTS"
CHART_IDS = {
    "chart-net-worth",
    "chart-linked-accounts",
    "chart-asset-classes",
    "chart-distribution-linked_account",
    "chart-distribution-asset_class",
    "chart-distribution-currency",
}
RANGE_LABELS = ["1W", "1M", "6M", "1Y", "2Y", "All"]


# --------------------------------------------------------------------------- helpers


def marts_row(db: Path, sql: str, params: list[Any] | None = None) -> dict[str, Any]:
    con = connect_published(db)
    try:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description or []]
        row = cur.fetchone()
    finally:
        con.close()
    assert row is not None, sql
    # the report shows DECIMAL amounts through floats: compare with the same floats
    return {c: float(v) if isinstance(v, Decimal) else v for c, v in zip(cols, row, strict=True)}


def latest_profile_row(db: Path, profile_id: str) -> dict[str, Any]:
    return marts_row(
        db,
        "select * from marts.fct_profile_valuation_hourly where profile_id = ? "
        "order by valuation_hour desc limit 1",
        [profile_id],
    )


def fmt_money(v: float, ccy: str = "") -> str:
    s = f"{v:,.2f}"
    return f"{s} {ccy}" if ccy else s


def attr_float(value: str | None) -> float | None:
    return None if value is None or value == "" else float(value)


def keep_artifact(src: Path) -> None:
    dest = os.environ.get(ARTIFACTS_ENV)
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, Path(dest) / src.name)


@dataclass
class Loaded:
    page: Page
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium_executable(), headless=True, args=list(LAUNCH_ARGS)
        )
        try:
            yield b
        finally:
            b.close()


def open_report(browser: Browser, path: Path) -> Loaded:
    """Open a report offline from file:// and wait until plotly drew every chart."""
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    loaded = Loaded(page)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            loaded.console_errors.append(msg.text)

    def on_request(req: Request) -> None:
        loaded.requests.append(req.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: loaded.page_errors.append(str(exc)))
    page.on("request", on_request)

    def on_dialog(dialog: Dialog) -> None:
        loaded.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_function(
        "() => { const p = document.querySelectorAll('.js-plotly-plot');"
        " return p.length > 0 && [...p].every(e => e.querySelector('svg.main-svg')); }",
        timeout=30_000,
    )
    return loaded


def chart_stats(page: Page) -> dict[str, dict[str, int]]:
    """Per plotly chart: traces drawn and SVG paths with geometry."""
    result: dict[str, dict[str, int]] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')].map(e => [
            e.id,
            {
              traces: e.querySelectorAll('g.trace, g.slice').length,
              paths: [...e.querySelectorAll(
                  'g.trace path.js-line, g.trace path.js-fill, g.slice path.surface')]
                .filter(p => (p.getAttribute('d') || '').length > 10).length,
              data: (e.data || []).length,
            }]))"""
    )
    return result


def shot(loaded: Loaded, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    loaded.page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000
    keep_artifact(out)
    return out


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reports(built_home: BuiltHome) -> dict[str, WrittenReport]:
    assert built_home.run_success, "the session pipeline run failed"
    written = write_reports(HomePaths(built_home.home))
    return {w.profile_id: w for w in written}


# --------------------------------------------------------------------------- tests


def test_report_files(reports: dict[str, WrittenReport], built_home: BuiltHome) -> None:
    paths = HomePaths(built_home.home)
    assert set(reports) == {"alice", "bruno"}
    day = built_home.last.date().isoformat()
    for pid, w in reports.items():
        assert w.latest == paths.reports / f"{pid}.html"
        assert w.dated == paths.reports / f"{pid}-{day}.html"
        assert w.latest.read_bytes() == w.dated.read_bytes()
        text = w.latest.read_text()
        # self-contained: plotly.js inlined, nothing loaded from elsewhere
        assert "plotly.js v" in text
        assert not re.search(r"<script[^>]+src=|<link[^>]+href=", text)
        assert (w.latest.stat().st_mode & 0o777) == 0o600
    assert not [p for p in paths.reports.iterdir() if p.name.endswith(".tmp")]


def test_report_asset_materialises(built_home: BuiltHome, tmp_path: Path) -> None:
    import dagster as dg

    from finbot_pipelines.defs.reports.assets import REPORT_KEY, build_report_asset
    from finbot_pipelines.defs.resources import FinbotHome

    src = HomePaths(built_home.home)
    paths = HomePaths(tmp_path / "home")
    paths.home.mkdir()
    shutil.copy2(src.published, paths.published)
    shutil.copytree(src.home / "published", paths.home / "published")  # files relative to home
    shutil.copy2(src.config, paths.config)
    asset = build_report_asset()
    assert asset.key == REPORT_KEY
    spec = asset.specs_by_key[REPORT_KEY]
    assert spec.group_name == "reports"
    assert set(spec.kinds) == {"html", "plotly"}
    assert dg.AssetKey(["published_marts"]) in {d.asset_key for d in spec.deps}
    assert asset.partitions_def is None  # a run over many hours renders once

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [asset],
            resources={"finbot": FinbotHome(home=str(paths.home))},
            instance=instance,
        )
    assert result.success
    (mat,) = result.asset_materializations_for_node("wealth_report")
    md = mat.metadata["summary"]
    assert isinstance(md, dg.MarkdownMetadataValue)
    summary = md.md_str or ""
    latest = latest_profile_row(paths.published, "alice")
    assert f"{latest['net_worth']:,.2f} GBP" in summary
    assert "| Alice (alice) |" in summary and "| Bruno (bruno) |" in summary
    assert STATIC_FX_NOTICE in summary
    m = re.search(r"!\[net worth\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", summary)
    assert m
    png = base64.b64decode(m.group(1))
    assert png.startswith(b"\x89PNG") and len(png) < 100_000
    for pid in ("alice", "bruno"):
        report = mat.metadata[f"{pid}/report"]
        assert isinstance(report, dg.PathMetadataValue)
        assert Path(report.path) == paths.reports / f"{pid}.html"
        assert Path(report.path).is_file()
        assert (paths.reports / f"{pid}-{built_home.last.date().isoformat()}.html").is_file()
    assert mat.metadata["alice/net_worth"] == dg.MetadataValue.float(latest["net_worth"])


def test_latest_report_path(reports: dict[str, WrittenReport], built_home: BuiltHome) -> None:
    paths = HomePaths(built_home.home)
    assert latest_report_path(paths, "bruno") == reports["bruno"].latest
    # without a profile: the first profile of finbot.yaml
    assert latest_report_path(paths, None) == reports["alice"].latest
    with pytest.raises(FileNotFoundError, match=r"no report for profile 'carol'.*alice, bruno"):
        latest_report_path(paths, "carol")


def test_latest_report_path_without_reports(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no wealth report in .* yet: materialise"):
        latest_report_path(HomePaths(tmp_path), None)


# Browser tests last: Playwright's sync API owns an event loop while the browser is open.


def test_report_in_browser_matches_marts(
    reports: dict[str, WrittenReport], built_home: BuiltHome, browser: Browser, tmp_path: Path
) -> None:
    db = HomePaths(built_home.home).published
    loaded = open_report(browser, reports["alice"].latest)
    page = loaded.page
    shot(loaded, tmp_path, "report-alice.png")

    # offline, no errors, nothing requested but the file itself
    assert loaded.console_errors == []
    assert loaded.page_errors == []
    assert loaded.requests, "the page request itself is recorded"
    assert all(u.startswith(("file://", "data:", "blob:")) for u in loaded.requests), (
        loaded.requests
    )

    # every chart drawn with geometry
    stats = chart_stats(page)
    assert set(stats) == CHART_IDS
    for chart_id, s in stats.items():
        assert s["data"] > 0 and s["traces"] > 0 and s["paths"] > 0, (chart_id, s)
    labels = page.eval_on_selector_all(
        "#chart-net-worth .rangeselector .button text", "els => els.map(e => e.textContent)"
    )
    assert labels == RANGE_LABELS

    # header numbers = the marts
    latest = latest_profile_row(db, "alice")
    assert page.get_by_test_id("profile-name").inner_text() == "Alice"
    assert page.get_by_test_id("valuation-ccy").inner_text() == "GBP"
    assert page.get_by_test_id("valuation-hour").get_attribute("datetime") == (
        latest["valuation_hour"].strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert latest["valuation_hour"] == built_home.last
    nw = page.get_by_test_id("net-worth")
    assert float(nw.get_attribute("data-value") or "nan") == latest["net_worth"]
    assert nw.inner_text() == fmt_money(latest["net_worth"], "GBP")
    li = page.get_by_test_id("total-liabilities")
    assert float(li.get_attribute("data-value") or "nan") == latest["total_liabilities"]
    assert li.inner_text() == fmt_money(latest["total_liabilities"], "GBP")
    assert latest["total_liabilities"] < 0
    change = marts_row(
        db,
        "select change_abs, change_rel from marts.fct_valuation_changes where profile_id = ? "
        "and level = 'profile' and entity_id = ? and valuation_hour = ? and change_window = '1d'",
        ["alice", "alice", latest["valuation_hour"]],
    )
    ch = page.get_by_test_id("change-1d")
    assert attr_float(ch.get_attribute("data-value")) == change["change_rel"]
    if change["change_rel"] is None:  # 24 hours of history: no value a day earlier
        assert ch.inner_text() == "n/a"
    else:
        assert ch.inner_text() == f"{change['change_rel'] * 100:+.2f}%"
    assert page.get_by_test_id("fx-notice").inner_text() == STATIC_FX_NOTICE

    # a holdings-tree row: an item of the bank's cash sub-account, and the linked account
    item = marts_row(
        db,
        "select linked_account_id || '/' || sub_account_id || '/' || item_name as entity_id, "
        "item_name, value from marts.fct_item_valuation_hourly "
        "where profile_id = 'alice' and linked_account_id = 'a-bank' and valuation_hour = ? "
        "and item_type = 'asset' order by sub_account_id, item_name limit 1",
        [latest["valuation_hour"]],
    )
    row = page.locator(f'tr[data-testid="holding"][data-entity-id="{item["entity_id"]}"]')
    assert row.count() == 1
    assert float(row.get_attribute("data-value") or "nan") == item["value"]
    assert row.locator("td").nth(0).inner_text().startswith(item["item_name"])
    assert row.locator("td").nth(1).inner_text() == fmt_money(item["value"])
    item_changes = marts_row(
        db,
        "select max(change_abs) filter (where change_window = '1d') as d1, "
        "max(change_abs) filter (where change_window = '1w') as w1 "
        "from marts.fct_valuation_changes where profile_id = 'alice' and level = 'item' "
        "and entity_id = ? and valuation_hour = ?",
        [item["entity_id"], latest["valuation_hour"]],
    )
    cell_1d = row.locator('td[data-window="1d"]')
    assert attr_float(cell_1d.get_attribute("data-abs")) == item_changes["d1"]
    if item_changes["d1"] is None:
        assert cell_1d.inner_text() == ""  # blank, not 0
    la = marts_row(
        db,
        "select value from marts.fct_linked_account_valuation_hourly "
        "where profile_id = 'alice' and linked_account_id = 'a-bank' and valuation_hour = ?",
        [latest["valuation_hour"]],
    )
    la_row = page.locator('tr[data-testid="holding"][data-entity-id="a-bank"]')
    assert float(la_row.get_attribute("data-value") or "nan") == la["value"]
    n_items = marts_row(
        db,
        "select count(*) as n from marts.fct_item_valuation_hourly "
        "where profile_id = 'alice' and valuation_hour = ?",
        [latest["valuation_hour"]],
    )["n"]
    assert page.locator('tr[data-testid="holding"][data-level="item"]').count() == n_items

    # collapsing the linked account hides its sub-accounts and items, expanding shows them
    page.locator('button.toggle[data-target="a-bank"]').click()
    assert page.locator('tr[data-entity-id^="a-bank/"]:visible').count() == 0
    assert la_row.is_visible()
    page.locator('button.toggle[data-target="a-bank"]').click()
    assert row.is_visible()

    # the monthly row
    month = marts_row(
        db,
        "select * from marts.mart_valuation_periods "
        "where profile_id = 'alice' and frequency = 'monthly' order by period_start desc limit 1",
    )
    mrow = page.locator(
        f'tr[data-testid="monthly-row"][data-period-start="{month["period_start"].isoformat()}"]'
    )
    assert mrow.count() == 1
    for key in ("open", "close", "low", "high"):
        assert float(mrow.get_attribute(f"data-{key}") or "nan") == month[key]
    assert attr_float(mrow.get_attribute("data-change-abs")) == month["change_abs"]
    cells = mrow.locator("td").all_inner_texts()
    assert cells[:5] == [
        month["period_start"].strftime("%Y-%m"),
        fmt_money(month["open"]),
        fmt_money(month["close"]),
        fmt_money(month["low"]),
        fmt_money(month["high"]),
    ]
    assert cells[6] == f"{month['change_rel'] * 100:+.2f}%"
    # the month's contributions apart from its market gain, as fct_performance has them
    perf = marts_row(
        db,
        "select net_contributions, market_gain, twr, start_value, end_value "
        "from marts.fct_performance where level = 'profile' and profile_id = 'alice' "
        f"and period_kind = 'calendar_month' and period = '{month['period_start']:%Y-%m}'",
    )
    for attr, key in (
        ("data-net-contributions", "net_contributions"),
        ("data-market-gain", "market_gain"),
        ("data-twr", "twr"),
    ):
        expected = None if perf[key] is None else float(perf[key])
        assert attr_float(mrow.get_attribute(attr)) == expected, (attr, perf)
    if perf["market_gain"] is None:  # the fixture's first month: no previous close
        assert perf["start_value"] is None and cells[8] == "n/a"
    else:
        gain = perf["end_value"] - perf["start_value"] - perf["net_contributions"]
        assert perf["market_gain"] == gain
        assert cells[8] == f"{perf['market_gain']:+,.2f}"

    # no account stale at the last hour of the fixture
    assert page.get_by_test_id("stale-count").get_attribute("data-value") == "0"
    assert page.get_by_test_id("stale-account").count() == 0

    # the 1W range button narrows the net-worth chart to the last 7 days
    page.locator("#chart-net-worth .rangeselector .button", has_text="1W").click()
    x_range = page.evaluate("() => document.getElementById('chart-net-worth').layout.xaxis.range")
    end = datetime.fromisoformat(str(x_range[1])[:19])
    start = datetime.fromisoformat(str(x_range[0])[:19])
    assert end - start == timedelta(days=7)
    assert loaded.console_errors == [] and loaded.page_errors == []
    page.context.close()


def test_bruno_report_in_euros(
    reports: dict[str, WrittenReport], built_home: BuiltHome, browser: Browser, tmp_path: Path
) -> None:
    db = HomePaths(built_home.home).published
    loaded = open_report(browser, reports["bruno"].latest)
    latest = latest_profile_row(db, "bruno")
    page = loaded.page
    assert page.get_by_test_id("valuation-ccy").inner_text() == "EUR"
    assert page.get_by_test_id("net-worth").inner_text() == fmt_money(latest["net_worth"], "EUR")
    assert set(chart_stats(page)) == CHART_IDS
    assert loaded.console_errors == [] and loaded.page_errors == []
    shot(loaded, tmp_path, "report-bruno.png")
    page.context.close()


NASTY_NAME = '<img src=x onerror="window.__pwned=1">Al & "Co"'
NASTY_ERROR = 'login refused: <script>window.__pwned=2</script> & "retry"'


@pytest.fixture
def doctored_home(built_home: BuiltHome, tmp_path: Path) -> HomePaths:
    """A copy of the built home whose marts say an account is stale with an error, a day-ago
    change exists, and names carry HTML; the profile name in finbot.yaml carries HTML too."""
    src = HomePaths(built_home.home)
    paths = HomePaths(tmp_path / "home")
    paths.home.mkdir()
    shutil.copy2(src.published, paths.published)
    # the catalog names its files relative to its home: the copy gets them too
    shutil.copytree(src.home / "published", paths.home / "published")
    cfg = src.config.read_text().replace("name: Alice,", "name: 'Alice <b>&amp; co</b>',")
    assert cfg != src.config.read_text()
    paths.config.write_text(cfg)
    last = built_home.last
    con = duckdb.connect(str(paths.published))
    con.execute("set file_search_path = ?", [str(paths.home)])  # the views' relative paths
    try:
        # the hourly marts are views over read-only Parquet files: make this copy's own
        for mart in ("fct_linked_account_valuation_hourly", "fct_valuation_changes"):
            con.execute(f"create table marts.{mart}_copy as select * from marts.{mart}")
            con.execute(f"drop view marts.{mart}")
            con.execute(f"alter table marts.{mart}_copy rename to {mart}")
        con.execute(
            "update marts.fct_linked_account_valuation_hourly set is_stale = true, "
            "stale_hours = 5, source_fetch_hour = ? - interval 5 hour, linked_account_name = ? "
            "where profile_id = 'alice' and linked_account_id = 'a-invest' and valuation_hour = ?",
            [last, NASTY_NAME, last],
        )
        con.execute(
            "update marts.mart_linked_account_health set consecutive_failures = 5, "
            "last_error_code = 'authentication_failure', last_error_message = ? "
            "where linked_account_id = 'a-invest'",
            [NASTY_ERROR],
        )
        con.execute(
            "update marts.fct_valuation_changes set change_abs = 123.5, change_rel = 0.0125 "
            "where profile_id = 'alice' and level = 'profile' and valuation_hour = ? "
            "and change_window = '1d'",
            [last],
        )
        con.execute(
            "update marts.fct_valuation_changes set change_abs = -42.25, change_rel = -0.5 "
            "where profile_id = 'alice' and level = 'linked_account' and entity_id = 'a-bank' "
            "and valuation_hour = ? and change_window = '1w'",
            [last],
        )
    finally:
        con.close()
    return paths


def test_stale_account_error_changes_and_escaping(
    doctored_home: HomePaths, built_home: BuiltHome, browser: Browser, tmp_path: Path
) -> None:
    (w,) = write_reports(doctored_home, ["alice"])
    text = w.latest.read_text()
    assert NASTY_NAME not in text and NASTY_ERROR not in text
    loaded = open_report(browser, w.latest)
    page = loaded.page
    shot(loaded, tmp_path, "report-alice-stale.png")
    assert page.evaluate("() => window.__pwned") is None
    assert loaded.dialogs == [] and loaded.page_errors == []
    assert loaded.console_errors == []
    assert page.get_by_test_id("profile-name").inner_text() == "Alice <b>&amp; co</b>"

    stale = page.get_by_test_id("stale-account")
    assert stale.count() == 1
    assert stale.get_attribute("data-linked-account-id") == "a-invest"
    assert stale.get_attribute("data-stale-hours") == "5.0"
    assert stale.get_attribute("data-error-code") == "authentication_failure"
    stale_text = stale.inner_text()
    assert NASTY_NAME in stale_text and NASTY_ERROR in stale_text and "5 h old" in stale_text
    assert page.get_by_test_id("stale-count").get_attribute("data-value") == "1"
    assert page.locator('tr[data-entity-id="a-invest"] .badge').inner_text() == "stale"

    ch = page.get_by_test_id("change-1d")
    assert ch.get_attribute("data-value") == "0.0125"
    assert ch.get_attribute("data-abs") == "123.5"
    assert ch.inner_text() == "+1.25%"
    cell = page.locator('tr[data-entity-id="a-bank"] td[data-window="1w"]')
    assert cell.get_attribute("data-abs") == "-42.25"
    assert cell.inner_text().split("\n") == ["-42.25", "-50.00%"]
    assert "neg" in (cell.get_attribute("class") or "")

    # the linked-account chart shows the name literally, not as markup
    names = page.evaluate(
        "() => document.getElementById('chart-linked-accounts').data.map(t => t.name)"
    )
    assert any("&lt;img" in n for n in names)
    page.context.close()
