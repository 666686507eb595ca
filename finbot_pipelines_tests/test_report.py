"""The wealth report, opened from file:// in headless Chromium, offline.

Numbers on the page are compared with the published marts read here with DuckDB,
independently of the report code (its own SQL; amounts written by babel directly).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from babel.dates import format_date
from babel.numbers import format_currency, format_percent
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Request

from finbot_pipelines import visual
from finbot_pipelines.config.loading import load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.defs.reports.html import (
    STATIC_FX_NOTICE,
    WrittenReport,
    kept_days,
    latest_report_path,
    prune_dated_reports,
    render_html,
    write_reports,
)
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import BuiltHome

ARTIFACTS_ENV = "FINBOT_TEST_ARTIFACTS"
LINE_CHARTS = {
    "chart-net-worth",
    "chart-assets-liabilities",
    "chart-linked-accounts",
    "chart-asset-classes",
}
BAR_CHARTS = {
    "chart-distribution-linked_account",
    "chart-distribution-asset_class",
    "chart-distribution-currency",
}
MAX_REPORT_BYTES = 1_000_000


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


def fmt_money(v: float, ccy: str = "GBP", signed: bool = False) -> str:
    """An amount as en_GB writes it (the e2e profiles have no locale: en_GB)."""
    text = format_currency(v, ccy, locale="en_GB")
    return "+" + text if signed and v > 0 else text


def fmt_pct(v: float) -> str:
    text = format_percent(v, "#,##0.00%", locale="en_GB")
    return "+" + text if v > 0 else text


def rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return f"rgb({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)})"


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


def open_report(
    browser: Browser, path: Path, width: int = 1280, height: int = 900, dark: bool = False
) -> Loaded:
    """Open a report offline from file:// (its charts are inline SVG: drawn at load)."""
    context = browser.new_context(
        offline=True,
        viewport={"width": width, "height": height},
        color_scheme="dark" if dark else "light",
    )
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
    return loaded


def chart_stats(page: Page) -> dict[str, dict[str, int]]:
    """Per chart shown (the visible range): lines drawn, bars drawn, legend entries."""
    result: dict[str, dict[str, int]] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('figure[data-testid]')]
            .filter(e => e.offsetParent !== null).map(e => [
            e.getAttribute('data-testid'),
            {
              lines: [...e.querySelectorAll('.chart-wide polyline')]
                .filter(p => p.getAttribute('points').split(' ').length > 1).length,
              bars: e.querySelectorAll('li svg.bar rect').length / 2,
              legend: e.querySelectorAll('.legend li').length,
            }]))"""
    )
    return result


def text_nodes(page: Page) -> list[str]:
    """Every visible text of the page (not attributes, not titles)."""
    texts: list[str] = page.evaluate(
        """() => { const out = []; const w = document.createTreeWalker(document.body,
            NodeFilter.SHOW_TEXT);
          while (w.nextNode()) { const n = w.currentNode; const p = n.parentElement;
            if (!p || ['SCRIPT', 'STYLE', 'title'].includes(p.tagName)) continue;
            if (p.closest('title')) continue;
            const t = n.textContent.trim(); if (t) out.push(t); }
          return out; }"""
    )
    return texts


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
        # self-contained and small: inline SVG, no chart library, nothing from elsewhere
        assert w.latest.stat().st_size <= MAX_REPORT_BYTES
        assert "plotly" not in text.lower()
        assert not re.search(r"<script[^>]+src=|<link[^>]+href=|<img[^>]+src=", text)
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
        assert "url(" not in text and "@import" not in text
        assert '<meta name="viewport"' in text
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
    assert set(spec.kinds) == {"html"}
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
    assert fmt_money(latest["net_worth"]) in summary
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
    assert set(stats) == LINE_CHARTS | BAR_CHARTS
    for chart_id in LINE_CHARTS:
        assert stats[chart_id]["lines"] > 0 and stats[chart_id]["legend"] > 0, stats[chart_id]
    for chart_id in BAR_CHARTS:
        assert stats[chart_id]["bars"] > 0, stats[chart_id]
    # 24 hours of history: one range only, no switch to show
    assert page.locator(".range-tabs").count() == 0

    # header numbers = the marts
    latest = latest_profile_row(db, "alice")
    assert page.get_by_test_id("profile-name").inner_text() == "Alice"
    ccy = page.get_by_test_id("valuation-ccy")
    assert ccy.get_attribute("data-ccy") == "GBP"
    assert ccy.inner_text() == "British Pound (GBP)"
    assert page.get_by_test_id("valuation-hour").get_attribute("datetime") == (
        latest["valuation_hour"].strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert latest["valuation_hour"] == built_home.last
    nw = page.get_by_test_id("net-worth")
    assert float(nw.get_attribute("data-value") or "nan") == latest["net_worth"]
    assert nw.inner_text() == fmt_money(latest["net_worth"])
    li = page.get_by_test_id("total-liabilities")
    assert float(li.get_attribute("data-value") or "nan") == latest["total_liabilities"]
    assert li.inner_text() == fmt_money(latest["total_liabilities"])
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
        assert ch.inner_text() == "—"
    else:
        assert ch.inner_text() == fmt_pct(change["change_rel"])
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
        format_date(month["period_start"], "MMM y", locale="en_GB"),
        fmt_money(month["open"]),
        fmt_money(month["close"]),
        fmt_money(month["low"]),
        fmt_money(month["high"]),
    ]
    assert cells[6] == fmt_pct(month["change_rel"])
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
        assert perf["start_value"] is None and cells[8] == "—"
    else:
        gain = perf["end_value"] - perf["start_value"] - perf["net_contributions"]
        assert perf["market_gain"] == gain
        assert cells[8] == fmt_money(perf["market_gain"], signed=True)

    # no account stale at the last hour of the fixture
    assert page.get_by_test_id("stale-count").get_attribute("data-value") == "0"
    assert page.get_by_test_id("stale-account").count() == 0

    assert loaded.console_errors == [] and loaded.page_errors == []
    page.context.close()


def test_bruno_report_in_euros(
    reports: dict[str, WrittenReport], built_home: BuiltHome, browser: Browser, tmp_path: Path
) -> None:
    db = HomePaths(built_home.home).published
    loaded = open_report(browser, reports["bruno"].latest)
    latest = latest_profile_row(db, "bruno")
    page = loaded.page
    assert page.get_by_test_id("valuation-ccy").get_attribute("data-ccy") == "EUR"
    assert page.get_by_test_id("net-worth").inner_text() == fmt_money(latest["net_worth"], "EUR")
    assert set(chart_stats(page)) == LINE_CHARTS | BAR_CHARTS
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
    assert cell.inner_text().split("\n") == [fmt_money(-42.25), fmt_pct(-0.5)]
    assert "neg" in (cell.get_attribute("class") or "")

    # gains green, losses red: the colours of visual.py
    def colour_of(selector: str) -> str:
        return str(page.eval_on_selector(selector, "e => getComputedStyle(e).color"))

    assert colour_of('[data-testid="change-1d"] span.pos') == rgb(visual.GAIN)
    assert colour_of('tr[data-entity-id="a-bank"] td[data-window="1w"]') == rgb(visual.LOSS)

    # the linked-account chart shows the name literally, not as markup
    legend = page.locator('figure[data-testid="chart-linked-accounts"] .legend').inner_text()
    assert NASTY_NAME in legend
    page.context.close()


# --------------------------------------------------------------------------- the visual language

CODES = re.compile(
    r"\b(real_estate|crypto_currency|fixed_income|multi_asset|stable_coin|credit_card"
    r"|dummy|depository|authentication_failure)\b"
)


def test_labels_are_words(
    reports: dict[str, WrittenReport], built_home: BuiltHome, browser: Browser
) -> None:
    loaded = open_report(browser, reports["alice"].latest)
    texts = text_nodes(loaded.page)
    assert [t for t in texts if CODES.search(t)] == []
    classes = marts_row(
        HomePaths(built_home.home).published,
        "select list(distinct asset_class) as codes from marts.fct_item_valuation_hourly "
        "where profile_id = 'alice' and item_type = 'asset' and value > 0",
    )["codes"]
    assert "crypto" in classes and "cash" in classes
    assert not set(texts) & set(classes)  # never a bare code such as `crypto`
    assert {visual.label("asset_class", c) for c in classes} <= set(texts)
    assert "Demo data" in texts  # the provider `dummy`, as words
    # a hover title names the series and gives the amount with its currency
    title = loaded.page.eval_on_selector(
        'figure[data-testid="chart-net-worth"] .chart-wide rect.hover:last-of-type title',
        "e => e.textContent",
    )
    latest = latest_profile_row(HomePaths(built_home.home).published, "alice")
    assert f"Net worth: {fmt_money(latest['net_worth'])}" in title
    loaded.page.context.close()


def test_net_worth_has_its_own_scale(
    reports: dict[str, WrittenReport], built_home: BuiltHome, browser: Browser
) -> None:
    db = HomePaths(built_home.home).published
    span = marts_row(
        db,
        "select min(net_worth) as lo, max(net_worth) as hi, min(total_assets) as alo "
        "from marts.fct_profile_valuation_hourly where profile_id = 'alice'",
    )
    assert span["hi"] > span["lo"] and span["hi"] - span["lo"] < span["alo"] / 10
    loaded = open_report(browser, reports["alice"].latest)
    box = loaded.page.eval_on_selector(
        'figure[data-testid="chart-net-worth"] .chart-wide svg',
        """svg => { const ys = svg.querySelector('polyline').getAttribute('points').split(' ')
              .map(p => parseFloat(p.split(',')[1]));
            return {height: svg.viewBox.baseVal.height, span: Math.max(...ys) - Math.min(...ys),
                    lines: svg.querySelectorAll('polyline').length}; }""",
    )
    assert box["lines"] == 1  # net worth alone
    assert box["span"] > box["height"] / 2, box
    loaded.page.context.close()


def test_an_account_has_one_colour_everywhere(
    reports: dict[str, WrittenReport], built_home: BuiltHome, browser: Browser
) -> None:
    paths = HomePaths(built_home.home)
    ids = [a.id for a in load_config(paths.config).linked_accounts]
    expected = visual.account_colours(ids)  # what the web app gives the household
    con = connect_published(paths.published)
    try:
        names = dict(
            con.execute(
                "select distinct linked_account_id, linked_account_name "
                "from marts.fct_linked_account_valuation_hourly where profile_id = 'alice'"
            ).fetchall()
        )
    finally:
        con.close()
    page = open_report(browser, reports["alice"].latest).page
    legend = dict(
        page.eval_on_selector_all(
            'figure[data-testid="chart-linked-accounts"] .chart-wide ~ .legend li',
            "els => els.map(e => [e.textContent, e.querySelector('rect').getAttribute('fill')])",
        )
    )
    assert legend == {names[i]: expected[i] for i in names}
    strokes = page.eval_on_selector_all(
        'figure[data-testid="chart-linked-accounts"] .chart-wide polyline',
        "els => els.map(e => e.getAttribute('stroke'))",
    )
    assert sorted(strokes) == sorted(expected[i] for i in names)
    bars = dict(
        page.eval_on_selector_all(
            'figure[data-testid="chart-distribution-linked_account"] li',
            "els => els.map(e => [e.dataset.key, "
            "e.querySelectorAll('rect')[1].getAttribute('fill')])",
        )
    )
    assert bars and all(bars[k] == expected[k] for k in bars)
    for selector, key in (
        ('tr[data-testid="account"]', "linkedAccountId"),
        ('tr[data-testid="liability"]', "bucket"),
        ('tr[data-testid="holding"][data-level="linked_account"]', "entityId"),
    ):
        found = dict(
            page.eval_on_selector_all(
                selector,
                f"els => els.map(e => [e.dataset.{key}, "
                "e.querySelector('svg.swatch rect').getAttribute('fill')])",
            )
        )
        assert found and all(found[k] == expected[k] for k in found), selector
    page.context.close()


def test_no_sideways_scroll_at_390_px_light_and_dark(
    reports: dict[str, WrittenReport], browser: Browser, tmp_path: Path
) -> None:
    for dark in (False, True):
        loaded = open_report(browser, reports["alice"].latest, 390, 844, dark=dark)
        page = loaded.page
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.evaluate("document.body.scrollWidth") <= 390
        # the narrow drawing of each chart is the one shown
        assert page.locator(".chart-narrow svg:visible").count() >= len(LINE_CHARTS)
        assert page.locator(".chart-wide svg:visible").count() == 0
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        r = int(re.findall(r"\d+", background)[0])
        assert (r < 60) if dark else (r > 200), background
        shot(loaded, tmp_path, f"report-alice-390{'-dark' if dark else ''}.png")
        page.context.close()


# --------------------------------------------------------------------------- a long history


def long_history(data: Any, days: int = 730, accounts: int = 12) -> Any:
    """``data`` with two years of history (hourly for the last 31 days, one point a day
    before, as the report reads them), ``accounts`` accounts and every asset class."""
    import dataclasses
    import math

    latest = pd.Timestamp(data.valuation_hour)
    hours = [latest - pd.Timedelta(hours=h) for h in range(31 * 24)]
    hours += [
        latest.normalize() - pd.Timedelta(days=d) + pd.Timedelta(hours=23) for d in range(31, days)
    ]
    hours = sorted(hours)
    wave = [100_000 + 20_000 * math.sin(i / 50) + i * 3 for i in range(len(hours))]
    history = pd.DataFrame(
        {
            "valuation_hour": hours,
            "total_assets": [w + 250_000 for w in wave],
            "total_liabilities": [-250_000 + i for i in range(len(hours))],
            "net_worth": [w + i for i, w in enumerate(wave)],
        }
    )
    by_account = pd.DataFrame(
        [
            {
                "valuation_hour": h,
                "linked_account_id": f"acct-{a:02d}",
                "linked_account_name": f"Account number {a} with a rather long name",
                "value": wave[i] / (a + 1),
            }
            for a in range(accounts)
            for i, h in enumerate(hours)
        ]
    )
    by_class = pd.DataFrame(
        [
            {"valuation_hour": h, "asset_class": c, "value": wave[i] / (k + 2)}
            for k, c in enumerate(visual.ASSET_CLASS_COLOURS)
            for i, h in enumerate(hours)
        ]
    )
    months = pd.date_range(end=latest.normalize(), periods=24, freq="MS")
    monthly = pd.DataFrame(
        {
            "period_start": months[::-1],
            "period_end": months[::-1] + pd.offsets.MonthEnd(0),
            "open": 1.0,
            "close": 2.0,
            "low": 0.5,
            "high": 2.5,
            "change_abs": 1.0,
            "change_rel": 1.0,
            "net_contributions": [1000.0 - 100 * i for i in range(24)],
            "income": 0.0,
            "market_gain": [(-1) ** i * 500.0 for i in range(24)],
            "twr": 0.01,
        }
    )
    return dataclasses.replace(
        data,
        history=history,
        history_by_linked_account=by_account,
        history_by_asset_class=by_class,
        monthly=monthly,
    )


def test_two_years_of_history_stay_under_a_megabyte_and_switch_ranges(
    reports: dict[str, WrittenReport], browser: Browser, tmp_path: Path
) -> None:
    data = long_history(reports["alice"].data)
    page_html = render_html(data, locale="fr_FR")
    assert len(page_html.encode()) <= MAX_REPORT_BYTES
    out = tmp_path / "long.html"
    out.write_text(page_html)
    loaded = open_report(browser, out)
    page = loaded.page
    tabs = page.locator(".range-tabs label").all_inner_texts()
    assert tabs == ["1 month", "6 months", "1 year", "All"]

    def shown() -> list[str]:
        return [
            str(e.get_attribute("data-range"))
            for e in page.locator(".range-panel").all()
            if e.is_visible()
        ]

    assert shown() == ["all"]
    for label, key in (("1 month", "1m"), ("1 year", "1y"), ("All", "all")):
        page.locator(".range-tabs label", has_text=label).click()
        assert shown() == [key]
        fig = page.locator(f'.range-panel[data-range="{key}"] [data-testid="chart-net-worth"]')
        assert 20 < int(fig.get_attribute("data-points") or 0) <= 90
    # at most 8 account lines and one for the others
    legend = page.locator(
        '.range-panel[data-range="all"] [data-testid="chart-linked-accounts"] .legend li'
    ).all_inner_texts()
    assert len(legend) == 9 and legend[-1] == "4 other accounts"
    # contributions against market gain, green gains and red losses
    fills = set(
        page.eval_on_selector_all(
            '[data-testid="chart-monthly"] .chart-wide rect',
            "els => els.map(e => e.getAttribute('fill'))",
        )
    )
    assert {visual.CONTRIBUTIONS, visual.GAIN, visual.LOSS} <= fills
    assert loaded.page_errors == [] and loaded.console_errors == []
    page.context.close()


# --------------------------------------------------------------------------- dated copies


def test_dated_copies_keep_31_days_and_one_a_month_for_24_months(tmp_path: Path) -> None:
    newest = datetime(2026, 12, 2).date()
    days = [newest - timedelta(days=n) for n in range(0, 1000)]
    month_ends = set()
    for y, m in [(2025 + (i // 12), i % 12 + 1) for i in range(23)]:  # 2025-01 .. 2026-11
        nxt = datetime(y + (m == 12), m % 12 + 1, 1).date()
        month_ends.add(nxt - timedelta(days=1))
    expected = {newest - timedelta(days=n) for n in range(31)} | month_ends
    assert kept_days(days, newest) == expected
    assert len(expected) == 31 + 23 - 1  # 2026-11-30 is among the last 31 days

    paths = HomePaths(tmp_path)
    paths.reports.mkdir()
    for d in days[:400]:
        (paths.reports / f"alice-{d.isoformat()}.html").write_text("x")
    other = paths.reports / "alice-x-2020-01-01.html"  # the profile `alice-x`
    other.write_text("x")
    (paths.reports / "alice.html").write_text("x")
    prune_dated_reports(paths, "alice", paths.reports / f"alice-{newest.isoformat()}.html")
    left = {p.name for p in paths.reports.iterdir()}
    assert left == {f"alice-{d.isoformat()}.html" for d in expected if d in days[:400]} | {
        other.name,
        "alice.html",
    }
