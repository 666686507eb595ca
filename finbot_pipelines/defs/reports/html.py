"""The wealth report: one self-contained HTML page per profile (plotly.js inlined).

The page works offline from file://: no CDN, no web font, no request of any kind.
Each key number carries a ``data-testid`` and its raw value in ``data-*``
attributes, so tests (and scrapers) read numbers without parsing formatted text.

Files, under ``$FINBOT_HOME/reports/``, each written atomically (mode 0600: they
show a household's wealth):
- ``<profile_id>.html``: the latest report;
- ``<profile_id>-<YYYY-MM-DD>.html``: one per day of the latest valued hour,
  overwritten during that day.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from plotly.offline import get_plotlyjs

from finbot_pipelines.config.loading import atomic_write_bytes, load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.schema import LinkedAccount
from finbot_pipelines.warehouse.queries import parse_warnings
from finbot_pipelines.warehouse.report_data import (
    DISTRIBUTION_DIMENSIONS,
    STATUS_NEVER_FETCHED,
    STATUS_NEVER_SUCCEEDED,
    STATUS_NO_STATEMENT,
    STATUS_STALE,
    STATUS_STATEMENT,
    TREE_WINDOWS,
    ReportData,
    load_all_report_data,
    num,
)

REPORT_FILE_MODE = 0o600
STATIC_FX_NOTICE = "FX: static rates from finbot.yaml (demo), not market rates"
DATED_RE = re.compile(r"^(?P<profile>.+)-(?P<day>\d{4}-\d{2}-\d{2})\.html$")

RANGE_BUTTONS: list[dict[str, Any]] = [
    {"count": 7, "label": "1W", "step": "day", "stepmode": "backward"},
    {"count": 1, "label": "1M", "step": "month", "stepmode": "backward"},
    {"count": 6, "label": "6M", "step": "month", "stepmode": "backward"},
    {"count": 1, "label": "1Y", "step": "year", "stepmode": "backward"},
    {"count": 2, "label": "2Y", "step": "year", "stepmode": "backward"},
    {"label": "All", "step": "all"},
]
PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
DIMENSION_TITLES = {
    "linked_account": "By linked account",
    "asset_class": "By asset class",
    "currency": "By currency",
}
WINDOW_LABELS = {"1d": "1D", "1w": "1W", "1m": "1M", "6m": "6M", "1y": "1Y", "2y": "2Y"}


# --------------------------------------------------------------------------- formatting


def esc(value: object) -> str:
    """HTML-escape any value for text and attribute contexts."""
    return html.escape("" if value is None else str(value), quote=True)


def raw(value: Any) -> str:
    """A number as a round-trippable attribute value, '' for NULL."""
    f = num(value)
    return "" if f is None else repr(f)


def money(value: Any, ccy: str | None = None, signed: bool = False) -> str:
    f = num(value)
    if f is None:
        return "n/a"
    text = f"{f:+,.2f}" if signed else f"{f:,.2f}"
    return f"{text} {ccy}" if ccy else text


def pct(value: Any, signed: bool = True) -> str:
    f = num(value)
    if f is None:
        return "n/a"
    return f"{f * 100:+.2f}%" if signed else f"{f * 100:.1f}%"


def hour_text(value: Any) -> str:
    if value is None or value is pd.NaT:
        return "n/a"
    ts = pd.Timestamp(value)
    return "n/a" if pd.isna(ts) else ts.strftime("%Y-%m-%d %H:%M UTC")


def day_text(value: Any) -> str:
    """The date of an hour, YYYY-MM-DD (a statement's date), or n/a."""
    text = hour_text(value)
    return text[:10] if text != "n/a" else text


def hour_iso(value: Any) -> str:
    if value is None or value is pd.NaT:
        return ""
    ts = pd.Timestamp(value)
    return "" if pd.isna(ts) else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def is_true(value: Any) -> bool:
    """A SQL boolean that may be NULL/NA/NaN in a frame: True only for a real true."""
    if value is None or value is pd.NA:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


def text_or(value: Any, default: str = "") -> str:
    """A SQL string that may be NULL/NaN in a frame."""
    return value if isinstance(value, str) else default


def sign_class(value: Any) -> str:
    f = num(value)
    if f is None or f == 0:
        return ""
    return "pos" if f > 0 else "neg"


def plot_text(value: object) -> str:
    """Plotly renders a subset of HTML in labels: escape so names show literally."""
    return html.escape(str(value), quote=False)


# --------------------------------------------------------------------------- charts


def _figure_html(fig: go.Figure, div_id: str, title: str) -> str:
    fig.update_layout(
        template="plotly_white",
        title={"text": plot_text(title), "x": 0.01},
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        height=380,
        legend={"orientation": "h", "y": -0.15},
        hovermode="x unified",
    )
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG)
    return f'<div class="chart" data-testid="chart" data-chart="{esc(div_id)}">{body}</div>'


def _with_range_selector(fig: go.Figure, ccy: str) -> go.Figure:
    fig.update_xaxes(
        type="date",
        rangeselector={"buttons": RANGE_BUTTONS, "x": 0, "y": 1.02, "yanchor": "bottom"},
    )
    fig.update_yaxes(title_text=ccy, tickformat=",.0f")
    return fig


def _no_data(fig: go.Figure, text: str = "no data") -> None:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)


def net_worth_chart(data: ReportData) -> str:
    h = data.history
    fig = go.Figure()
    for col, name, dash in (
        ("net_worth", "Net worth", None),
        ("total_assets", "Assets", "dot"),
        ("total_liabilities", "Liabilities", "dot"),
    ):
        fig.add_trace(
            go.Scatter(
                x=h["valuation_hour"],
                y=h[col],
                name=name,
                mode="lines",
                line={"width": 2.5 if col == "net_worth" else 1.2, "dash": dash},
            )
        )
    if h.empty:
        _no_data(fig)
    return _figure_html(
        _with_range_selector(fig, data.valuation_ccy), "chart-net-worth", "Net worth"
    )


def linked_account_chart(data: ReportData) -> str:
    h = data.history_by_linked_account
    fig = go.Figure()
    for la_id, grp in h.groupby("linked_account_id", sort=True):
        name = (
            grp["linked_account_name"].dropna().iloc[-1]
            if grp["linked_account_name"].notna().any()
            else la_id
        )
        fig.add_trace(
            go.Scatter(x=grp["valuation_hour"], y=grp["value"], name=plot_text(name), mode="lines")
        )
    if h.empty:
        _no_data(fig)
    return _figure_html(
        _with_range_selector(fig, data.valuation_ccy),
        "chart-linked-accounts",
        "By linked account (value net of liabilities)",
    )


def asset_class_chart(data: ReportData) -> str:
    h = data.history_by_asset_class
    fig = go.Figure()
    for cls, grp in h.groupby("asset_class", sort=True):
        fig.add_trace(
            go.Scatter(
                x=grp["valuation_hour"],
                y=grp["value"],
                name=plot_text(cls),
                mode="lines",
                stackgroup="assets",
            )
        )
    if h.empty:
        _no_data(fig)
    return _figure_html(
        _with_range_selector(fig, data.valuation_ccy),
        "chart-asset-classes",
        "Assets by asset class",
    )


def distribution_chart(data: ReportData, dimension: str) -> str:
    d = data.distribution
    rows = d[(d["dimension"] == dimension) & (d["side"] == "asset")]
    rows = rows[rows["value"].notna() & (rows["value"] > 0)]
    fig = go.Figure(
        go.Pie(
            labels=[plot_text(v) for v in rows["label"]],
            values=rows["value"].tolist(),
            hole=0.45,
            sort=False,
            textinfo="percent",
            hovertemplate="%{label}<br>%{value:,.2f} "
            + data.valuation_ccy
            + "<br>%{percent}<extra></extra>",
        )
    )
    if rows.empty:
        _no_data(fig, "no assets")
    html_ = _figure_html(fig, f"chart-distribution-{dimension}", DIMENSION_TITLES[dimension])
    return html_.replace('class="chart"', 'class="chart pie"', 1)


# --------------------------------------------------------------------------- sections


CSS = """
:root { --fg:#1d2433; --muted:#5b6475; --line:#e3e7ee; --pos:#0a7d38; --neg:#b42318;
        --warn-bg:#fff6e0; --warn:#8a5300; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
       sans-serif; color:var(--fg); background:var(--bg); }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
header h1 { margin: 0 0 4px; font-size: 28px; }
.sub { color: var(--muted); margin: 0; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 20px;
          margin: 16px 0; }
section h2 { margin: 0 0 12px; font-size: 18px; }
.notice { background:var(--warn-bg); color:var(--warn); border:1px solid #f1d79a;
          border-radius:6px; padding:8px 12px; margin:12px 0 0; }
.kpis { display:grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap:12px; }
.kpi { border:1px solid var(--line); border-radius:8px; padding:12px 14px; background:#fff; }
.kpi h3 { margin:0; font-size:12px; text-transform:uppercase; letter-spacing:.04em;
          color:var(--muted); font-weight:600; }
.kpi .big { font-size:24px; font-weight:650; margin:4px 0 0; font-variant-numeric:tabular-nums; }
.kpi small { color: var(--muted); }
.pos { color: var(--pos); } .neg { color: var(--neg); }
/* explicit columns: a chart drawn while the page is parsed already has its final width */
.grid3 { display:grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap:12px; }
@media (max-width: 900px) { .grid3 { grid-template-columns: minmax(0, 1fr); } }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: right;
         vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td small { color: var(--muted); display:block; }
tr.lvl-linked_account td { font-weight: 650; background: #fafbfc; }
tr.lvl-sub_account td:first-child { padding-left: 28px; }
tr.lvl-item td:first-child { padding-left: 52px; }
tr.lvl-sub_account td { font-weight: 550; }
button.toggle { border: 0; background: none; cursor: pointer; font: inherit; padding: 0 4px 0 0;
                color: var(--muted); width: 18px; }
tr.collapsed { display: none; }
small.fix { color: var(--warn); }
.badge { display:inline-block; font-size:11px; font-weight:600; border-radius:10px;
         padding:1px 7px; margin-left:6px; background:var(--warn-bg); color:var(--warn);
         border:1px solid #f1d79a; }
ul.stale { margin: 0; padding-left: 18px; }
ul.stale li { margin: 4px 0; }
ul.warnings { margin: 4px 0 0; padding-left: 18px; font-size: 0.9em; color: #8a5a00; }
footer { color: var(--muted); font-size: 12px; margin: 16px 0 32px; }
code { font-size: 12px; }
"""

PAGE_JS = """
window.addEventListener('load', function () {
  document.querySelectorAll('.js-plotly-plot').forEach(function (el) { Plotly.Plots.resize(el); });
});
document.querySelectorAll('button.toggle').forEach(function (btn) {
  btn.addEventListener('click', function () {
    var id = btn.getAttribute('data-target');
    var open = btn.getAttribute('aria-expanded') === 'true';
    btn.setAttribute('aria-expanded', open ? 'false' : 'true');
    btn.textContent = open ? '\\u25B8' : '\\u25BE';
    document.querySelectorAll('#holdings tr[data-entity-id]').forEach(function (tr) {
      var eid = tr.getAttribute('data-entity-id');
      if (eid.indexOf(id + '/') !== 0) { return; }
      if (open) { tr.classList.add('collapsed'); return; }
      var parent = tr.getAttribute('data-parent-id');
      var pbtn = document.querySelector('button.toggle[data-target="' + CSS.escape(parent) + '"]');
      if (parent === id || (pbtn && pbtn.getAttribute('aria-expanded') === 'true')) {
        tr.classList.remove('collapsed');
      }
    });
  });
});
"""


def _kpi(testid: str, title: str, value_html: str, attrs: str, note: str = "") -> str:
    note_html = f"<small>{note}</small>" if note else ""
    return (
        f'<div class="kpi"><h3>{esc(title)}</h3>'
        f'<p class="big" data-testid="{esc(testid)}" {attrs}>{value_html}</p>{note_html}</div>'
    )


def kpis_section(data: ReportData) -> str:
    ccy = data.valuation_ccy
    as_of = esc(hour_text(data.valuation_hour))
    change_text = pct(data.change_1d_rel)
    change_note = (
        money(data.change_1d_abs, ccy, signed=True)
        if data.change_1d_abs is not None
        else "no value 24 hours earlier"
    )
    cards = [
        _kpi(
            "net-worth",
            "Net worth",
            esc(money(data.net_worth, ccy)),
            f'data-value="{raw(data.net_worth)}" data-hour="{hour_iso(data.valuation_hour)}"',
            f"on {as_of}",
        ),
        _kpi(
            "total-assets",
            "Assets",
            esc(money(data.total_assets, ccy)),
            f'data-value="{raw(data.total_assets)}"',
        ),
        _kpi(
            "total-liabilities",
            "Liabilities",
            esc(money(data.total_liabilities, ccy)),
            f'data-value="{raw(data.total_liabilities)}"',
        ),
        _kpi(
            "change-1d",
            "24-hour change",
            f'<span class="{sign_class(data.change_1d_rel)}">{esc(change_text)}</span>',
            f'data-value="{raw(data.change_1d_rel)}" data-abs="{raw(data.change_1d_abs)}"',
            esc(change_note),
        ),
        _kpi(
            "stale-count",
            "Stale accounts",
            str(len(data.stale)),
            f'data-value="{len(data.stale)}"',
            esc(stale_note(data.stale)),
        ),
    ]
    return f'<section id="summary"><div class="kpis">{"".join(cards)}</div></section>'


def stale_note(stale: pd.DataFrame) -> str:
    """The stale count's note: "all up to date" only when no account is behind."""
    if stale.empty:
        return "all up to date"
    parts = []
    carried = int(stale["status"].eq(STATUS_STALE).sum())
    never_ok = int(stale["status"].eq(STATUS_NEVER_SUCCEEDED).sum())
    never_fetched = int(stale["status"].eq(STATUS_NEVER_FETCHED).sum())
    no_statement = int(stale["status"].eq(STATUS_NO_STATEMENT).sum())
    if carried:
        parts.append(f"{carried} carried from an older fetch")
    if never_ok:
        parts.append(f"{never_ok} never succeeded (not in the totals)")
    if never_fetched:
        parts.append(f"{never_fetched} never fetched")
    if no_statement:
        parts.append(f"{no_statement} without any statement yet (not in the totals)")
    return "; ".join(parts)


def _error_html(r: Mapping[str, Any]) -> str:
    """The last error (code, masked message) and its fix, for the stale list and the table."""
    code = text_or(r.get("last_error_code"))
    msg = text_or(r.get("last_error_message"))
    fix = text_or(r.get("fix"))
    out = ""
    if code or msg:
        out = (
            f"<code>{esc(code or 'error')}</code> "
            f'<span class="err" data-testid="account-error">{esc(msg)}</span>'
        )
    if fix:
        out += f'<small class="fix" data-testid="account-fix">fix: {esc(fix)}</small>'
    return out


def stale_section(data: ReportData) -> str:
    stale = data.stale
    if stale.empty:
        return ""
    items = []
    for r in stale.to_dict("records"):
        status = str(r["status"])
        if status == STATUS_NEVER_SUCCEEDED:
            what = "has never been fetched successfully: it has no value and is not in the totals"
        elif status == STATUS_NEVER_FETCHED:
            what = "has not been fetched yet: it has no value and is not in the totals"
        elif status == STATUS_NO_STATEMENT:
            what = (
                "has no statement yet: it has no value and is not in the totals (drop a "
                f"statement file into inbox/{r['linked_account_id']}/ or run `finbot import`)"
            )
        else:
            age = num(r["stale_hours"])
            age_text = f"{age:g} h" if age is not None else "unknown age"
            what = (
                f"is stale: its value is {age_text} old "
                f"(last good data {hour_text(r['source_fetch_hour'])})"
            )
        err = _error_html(r)
        items.append(
            '<li data-testid="stale-account" '
            f'data-linked-account-id="{esc(r["linked_account_id"])}"'
            f' data-stale-hours="{raw(r["stale_hours"])}" data-status="{esc(_status_attr(status))}"'
            f' data-error-code="{esc(text_or(r["last_error_code"]))}">'
            f"<strong>{esc(r['linked_account_name'])}</strong> {esc(what)}"
            f"{'; last error ' + err if err else ''}</li>"
        )
    return (
        '<section id="stale"><h2>Stale accounts</h2>'
        '<p class="sub">These accounts are not up to date at the latest hour: the last good '
        "values of those that have one are counted, marked with their age; those that never "
        "succeeded have no value. Each failure says how to fix it.</p>"
        f'<ul class="stale">{"".join(items)}</ul></section>'
    )


def _status_attr(status: str) -> str:
    return status.replace(" ", "_")


def distribution_section(data: ReportData) -> str:
    pies = "".join(distribution_chart(data, dim) for dim in DISTRIBUTION_DIMENSIONS)
    d = data.distribution
    liab = d[(d["dimension"] == "linked_account") & (d["side"] == "liability")]
    if liab.empty:
        liab_html = '<p class="sub" data-testid="no-liabilities">No liabilities.</p>'
    else:
        rows = "".join(
            f'<tr data-testid="liability" data-bucket="{esc(r.bucket)}" '
            f'data-value="{raw(r.value)}"><td>{esc(r.label)}</td>'
            f"<td>{esc(money(r.value, data.valuation_ccy))}</td>"
            f"<td>{esc(pct(r.share, signed=False))}</td></tr>"
            for r in liab.itertuples(index=False)
        )
        liab_html = (
            "<table><thead><tr><th>Liabilities by linked account</th><th>Value</th>"
            f"<th>Share</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return (
        f'<section id="distribution"><h2>Wealth distribution (assets, '
        f"{esc(hour_text(data.valuation_hour))})</h2>"
        f'<div class="grid3">{pies}</div><h3>Liabilities</h3>{liab_html}</section>'
    )


def _change_cell(abs_value: Any, rel_value: Any, window: str) -> str:
    a, r = num(abs_value), num(rel_value)
    attrs = f'data-window="{window}" data-abs="{raw(a)}" data-rel="{raw(r)}"'
    if a is None:
        return f'<td class="chg" {attrs}></td>'
    rel_text = f"<small>{esc(pct(r))}</small>" if r is not None else ""
    return f'<td class="chg {sign_class(a)}" {attrs}>{esc(money(a, signed=True))}{rel_text}</td>'


def holdings_section(data: ReportData) -> str:
    h = data.holdings
    head = "".join(f"<th>{WINDOW_LABELS[w]}</th>" for w in TREE_WINDOWS)
    rows: list[str] = []
    has_children = set(h["parent_id"].dropna())
    for r in h.to_dict("records"):
        level = str(r["level"])
        entity = str(r["entity_id"])
        toggle = ""
        if entity in has_children:
            toggle = (
                f'<button class="toggle" type="button" aria-expanded="true" '
                f'data-target="{esc(entity)}" title="collapse / expand">\u25be</button>'
            )
        stale = (
            '<span class="badge">stale</span>'
            if level == "linked_account" and is_true(r["is_stale"])
            else ""
        )
        detail = f"<small>{esc(r['detail'])}</small>" if isinstance(r["detail"], str) else ""
        parent = r["parent_id"] if isinstance(r["parent_id"], str) else ""
        cells = "".join(
            _change_cell(r[f"change_{w}_abs"], r[f"change_{w}_rel"], w) for w in TREE_WINDOWS
        )
        rows.append(
            f'<tr class="lvl-{esc(level)}" data-testid="holding" data-level="{esc(level)}" '
            f'data-entity-id="{esc(entity)}" data-parent-id="{esc(parent)}" '
            f'data-value="{raw(r["value"])}">'
            f'<td>{toggle}<span class="name">{esc(r["name"])}</span>{stale}{detail}</td>'
            f'<td class="value">{esc(money(r["value"]))}</td>{cells}</tr>'
        )
    body = "".join(rows) or '<tr><td colspan="7">No holdings.</td></tr>'
    return (
        f'<section id="holdings"><h2>Holdings ({esc(data.valuation_ccy)}, '
        f"{esc(hour_text(data.valuation_hour))})</h2>"
        '<p class="sub">Linked account → sub-account → item; changes are absolute and '
        "relative, blank when there is no value to compare with.</p>"
        f"<table><thead><tr><th>Holding</th><th>Value</th>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></section>"
    )


def monthly_section(data: ReportData) -> str:
    m = data.monthly
    rows = []
    for r in m.to_dict("records"):
        start = pd.Timestamp(r["period_start"])
        rows.append(
            f'<tr data-testid="monthly-row" data-period-start="{start.strftime("%Y-%m-%d")}" '
            f'data-open="{raw(r["open"])}" data-close="{raw(r["close"])}" '
            f'data-low="{raw(r["low"])}" data-high="{raw(r["high"])}" '
            f'data-change-abs="{raw(r["change_abs"])}" data-change-rel="{raw(r["change_rel"])}" '
            f'data-net-contributions="{raw(r.get("net_contributions"))}" '
            f'data-market-gain="{raw(r.get("market_gain"))}" data-twr="{raw(r.get("twr"))}">'
            f"<td>{start.strftime('%Y-%m')}</td>"
            f"<td>{esc(money(r['open']))}</td><td>{esc(money(r['close']))}</td>"
            f"<td>{esc(money(r['low']))}</td><td>{esc(money(r['high']))}</td>"
            f'<td class="{sign_class(r["change_abs"])}">'
            f"{esc(money(r['change_abs'], signed=True))}</td>"
            f'<td class="{sign_class(r["change_rel"])}">{esc(pct(r["change_rel"]))}</td>'
            f"<td>{esc(money(r.get('net_contributions'), signed=True))}</td>"
            f'<td class="{sign_class(r.get("market_gain"))}">'
            f"{esc(money(r.get('market_gain'), signed=True))}</td>"
            f'<td class="{sign_class(r.get("twr"))}">{esc(pct(r.get("twr")))}</td></tr>'
        )
    body = "".join(rows) or '<tr><td colspan="10">No month yet.</td></tr>'
    return (
        f'<section id="monthly"><h2>Monthly: contributions and market gain '
        f"({esc(data.valuation_ccy)})</h2>"
        '<p class="sub">Net worth at the first (open) and last (close) valued hour of each '
        "calendar month (UTC), its low and high; the current month is partial. "
        "Contributions: the money put in minus the money taken out (salary, spending, "
        "transfers from outside), from the transactions; market gain: what the money "
        "earned, the month's close minus the previous month's close minus the "
        "contributions; TWR: the time-weighted return. Blank without the previous "
        "month's close.</p>"
        "<table><thead><tr><th>Month</th><th>Open</th><th>Close</th><th>Low</th><th>High</th>"
        "<th>Change</th><th>%</th><th>Contributions</th><th>Market gain</th><th>TWR</th>"
        f"</tr></thead><tbody>{body}</tbody></table></section>"
    )


def accounts_section(data: ReportData) -> str:
    rows = []
    for r in data.accounts.to_dict("records"):
        status = str(r["status"])
        err = _error_html(r)
        failures = num(r["consecutive_failures"])
        age = num(r["stale_hours"])
        age_html = (
            f"<small>{age:g} h old</small>" if status == STATUS_STALE and age is not None else ""
        )
        if status == STATUS_STATEMENT:
            age_html = f"<small>of {esc(day_text(r['source_fetch_hour']))}</small>"
        elif status == STATUS_NO_STATEMENT:
            age_html = f"<small>drop one into inbox/{esc(r['linked_account_id'])}/</small>"
        notes = "".join(
            f'<li data-testid="account-warning" data-code="{esc(w["code"])}">'
            f"<code>{esc(w['code'])}</code> {esc(w['message'])}</li>"
            for w in parse_warnings(r.get("warnings"))
        )
        if notes:
            err += f'<ul class="warnings">{notes}</ul>'
        provider = text_or(r["provider_id"])
        rows.append(
            f'<tr data-testid="account" data-linked-account-id="{esc(r["linked_account_id"])}" '
            f'data-status="{esc(_status_attr(status))}" '
            f'data-error-code="{esc(text_or(r["last_error_code"]))}">'
            f"<td>{esc(r['linked_account_name'])}<small>{esc(provider)}</small></td>"
            f"<td>{esc(money(r['value']))}</td>"
            f"<td>{esc(status)}{age_html}</td>"
            f"<td>{esc(hour_text(r['last_success_hour']))}</td>"
            f"<td>{'' if failures is None else int(failures)}</td>"
            f'<td style="text-align:left">{err}</td></tr>'
        )
    return (
        '<section id="accounts"><h2>Linked accounts</h2><table><thead><tr>'
        "<th>Account</th><th>Value</th><th>Status</th><th>Last success</th>"
        '<th>Failures in a row</th><th style="text-align:left">Last error and its fix, '
        "warnings</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


@cache
def _plotly_js() -> str:
    return get_plotlyjs()


def render_html(data: ReportData, generated_at: datetime | None = None) -> str:
    """One profile's report as a self-contained HTML page (plotly.js inlined)."""
    generated = generated_at or datetime.now(UTC).replace(tzinfo=None)
    fx_notice = (
        f'<p class="notice" data-testid="fx-notice">{esc(STATIC_FX_NOTICE)}</p>'
        if data.fx_source == "static"
        else ""
    )
    fx_missing = (
        f'<p class="notice" data-testid="unvalued" data-value="{data.unvalued_items}">'
        f"{data.unvalued_items} item{'s' if data.unvalued_items != 1 else ''} could not be "
        "valued (no price from the provider and no rate or unit price for them): they are "
        "listed without a value and left out of the totals. Add their currency to the FX "
        "rates or their unit to <code>unit_prices</code>.</p>"
        if data.unvalued_items
        else ""
    )
    history = (
        '<section id="history"><h2>Valuation history</h2>'
        f"{net_worth_chart(data)}{linked_account_chart(data)}{asset_class_chart(data)}"
        "</section>"
    )
    title = f"Wealth report · {data.profile_name}"
    published = (
        f" from marts published {esc(hour_text(data.published_at))}" if data.published_at else ""
    )
    meta = json.dumps(
        {
            "profile_id": data.profile_id,
            "valuation_ccy": data.valuation_ccy,
            "valuation_hour": hour_iso(data.valuation_hour),
            "fx_source": data.fx_source,
        }
    ).replace("<", "\\u003c")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
<script>{_plotly_js()}</script>
<script type="application/json" id="finbot-report-meta">{meta}</script>
</head>
<body>
<main>
<header>
<h1 data-testid="profile-name"
 data-profile-id="{esc(data.profile_id)}">{esc(data.profile_name)}</h1>
<p class="sub">Wealth report in <span data-testid="valuation-ccy">{esc(data.valuation_ccy)}</span>
 · net worth on <time data-testid="valuation-hour" datetime="{hour_iso(data.valuation_hour)}">{
        esc(hour_text(data.valuation_hour))
    }</time></p>
{fx_notice}{fx_missing}
</header>
{kpis_section(data)}
{stale_section(data)}
{history}
{distribution_section(data)}
{holdings_section(data)}
{monthly_section(data)}
{accounts_section(data)}
<footer>Generated by finbot at {esc(hour_text(generated))}{published}. Values in
{esc(data.valuation_ccy)}; history charts show every hour of the last month and one point
per day before.</footer>
</main>
<script>{PAGE_JS}</script>
</body>
</html>
"""


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class WrittenReport:
    profile_id: str
    latest: Path
    dated: Path
    data: ReportData


def report_paths(paths: HomePaths, profile_id: str, day: date) -> tuple[Path, Path]:
    """(latest, dated) report files of a profile."""
    return (
        paths.reports / f"{profile_id}.html",
        paths.reports / f"{profile_id}-{day.isoformat()}.html",
    )


def _config_profiles(paths: HomePaths) -> list[tuple[str, str]]:
    if not paths.config.exists():
        return []
    return [(p.id, p.name) for p in load_config(paths.config).profiles]


def write_reports(
    paths: HomePaths,
    profile_ids: Sequence[str] | None = None,
    profile_names: Mapping[str, str] | None = None,
    generated_at: datetime | None = None,
    keep_days: int | None = None,
    configured: Sequence[LinkedAccount] | None = None,
) -> list[WrittenReport]:
    """Render every profile's report (or only `profile_ids`) from the published marts.

    Names come from `profile_names`, else from the home's finbot.yaml, else the id.
    `configured` (default: finbot.yaml's linked accounts) adds the enabled accounts
    never fetched yet. With `keep_days`, dated reports older than that many days are
    deleted.
    """
    names = dict(profile_names) if profile_names is not None else dict(_config_profiles(paths))
    if configured is None:
        configured = load_config(paths.config).linked_accounts if paths.config.exists() else []
    written: list[WrittenReport] = []
    for data in load_all_report_data(paths.published, names, profile_ids, configured):
        page = render_html(data, generated_at).encode("utf-8")
        latest, dated = report_paths(
            paths, data.profile_id, pd.Timestamp(data.valuation_hour).date()
        )
        atomic_write_bytes(dated, page, REPORT_FILE_MODE)
        atomic_write_bytes(latest, page, REPORT_FILE_MODE)
        written.append(WrittenReport(data.profile_id, latest, dated, data))
        if keep_days is not None:
            prune_dated_reports(paths, data.profile_id, dated, keep_days)
    return written


def prune_dated_reports(paths: HomePaths, profile_id: str, newest: Path, keep_days: int) -> None:
    m = DATED_RE.match(newest.name)
    if not m:
        return
    cutoff = date.fromisoformat(m["day"]) - timedelta(days=keep_days)
    for f in paths.reports.glob(f"{profile_id}-*.html"):
        fm = DATED_RE.match(f.name)
        if fm and fm["profile"] == profile_id and date.fromisoformat(fm["day"]) < cutoff:
            f.unlink(missing_ok=True)


def latest_report_path(paths: HomePaths, profile_id: str | None = None) -> Path:
    """The latest report of `profile_id`; without one, of the first profile of finbot.yaml
    that has a report (or the newest report when there is no config).

    Raises FileNotFoundError with a message saying how to make one.
    """
    how = (
        "materialise the `wealth_report` asset (the hourly job does; `./finbotctl demo` builds one)"
    )
    reports = paths.reports
    if profile_id is not None:
        path = reports / f"{profile_id}.html"
        if path.is_file():
            return path
        known = sorted(_latest_report_ids(reports))
        hint = f" (reports exist for: {', '.join(known)})" if known else ""
        raise FileNotFoundError(f"no report for profile {profile_id!r} in {reports}{hint}: {how}")
    for pid, _ in _config_profiles(paths):
        path = reports / f"{pid}.html"
        if path.is_file():
            return path
    candidates = [reports / f"{pid}.html" for pid in _latest_report_ids(reports)]
    if candidates:
        return max(candidates, key=lambda p: p.stat().st_mtime)
    raise FileNotFoundError(f"no wealth report in {reports} yet: {how}")


def _latest_report_ids(reports: Path) -> Iterable[str]:
    if not reports.is_dir():
        return []
    return [
        f.stem
        for f in reports.glob("*.html")
        if not f.name.startswith(".") and not DATED_RE.match(f.name)
    ]


# --------------------------------------------------------------------------- metadata


def net_worth_png(reports: Sequence[ReportData], max_bytes: int = 100_000) -> bytes:
    """A small PNG of each profile's net worth (one panel per profile), for Dagster metadata."""
    shown = list(reports)[:6]
    for dpi in (80, 60, 45, 30):
        fig = Figure(figsize=(6.0, 1.9 * max(len(shown), 1)), dpi=dpi)
        FigureCanvasAgg(fig)
        axes = fig.subplots(max(len(shown), 1), 1, squeeze=False)[:, 0]
        for ax, data in zip(axes, shown, strict=False):
            h = data.history.dropna(subset=["net_worth"])
            ax.plot(h["valuation_hour"], h["net_worth"], color="#1f5fbf", linewidth=1.4)
            ax.set_title(f"{data.profile_name} ({data.valuation_ccy})", fontsize=9, loc="left")
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.yaxis.set_major_formatter("{x:,.0f}")
        for ax in axes[len(shown) :]:
            ax.set_axis_off()
        fig.autofmt_xdate()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        png = buf.getvalue()
        if len(png) <= max_bytes:
            return png
    return png


def summary_markdown(written: Sequence[WrittenReport], png: bytes | None = None) -> str:
    """Markdown for the Dagster UI: per profile net worth, 24h change, stale accounts."""
    lines = [
        "| Profile | Net worth | 24h change | Stale accounts | As of |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for w in written:
        d = w.data
        stale = ", ".join(
            f"{name} ({num(hours):g} h)"
            if num(hours) is not None
            else f"{name} ({status}: {code})"
            if isinstance(code, str)
            else f"{name} ({status})"
            for name, hours, status, code in zip(
                d.stale["linked_account_name"],
                d.stale["stale_hours"],
                d.stale["status"],
                d.stale["last_error_code"],
                strict=True,
            )
        )
        cells = [
            _md(f"{d.profile_name} ({d.profile_id})"),
            _md(money(d.net_worth, d.valuation_ccy)),
            _md(pct(d.change_1d_rel)),
            _md(stale or "none"),
            _md(hour_text(d.valuation_hour)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if written and written[0].data.fx_source == "static":
        lines += ["", f"_{STATIC_FX_NOTICE}_"]
    if png:
        lines += ["", f"![net worth](data:image/png;base64,{base64.b64encode(png).decode()})"]
    return "\n".join(lines)


def _md(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")
