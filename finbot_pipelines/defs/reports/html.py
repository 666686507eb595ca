"""The wealth report: one self-contained HTML page per profile, in finbot's visual language.

The page is a file: it works offline from file:// and can be e-mailed. No CDN, no web
font, no request of any kind, no chart library: the charts are inline SVG from
:mod:`finbot_pipelines.visual`, which the web app and the notebook share, so each account,
asset class and currency keeps its colour everywhere, labels are words, gains are green and
losses red, and amounts are written in the profile's locale and currency. A page stays
well under 1 MB: history charts are downsampled (at most :data:`MAX_POINTS` points per
range, whole days for the long ranges).

The history ranges switch without a script (CSS radio inputs); one tiny inline script
folds the holdings tree. At 390 px nothing scrolls sideways: the tables stack their
cells. Dark mode follows the system (``prefers-color-scheme``).

Each key number carries a ``data-testid`` and its raw value in ``data-*`` attributes, so
tests (and scrapers) read numbers without parsing formatted text.

Files, under ``$FINBOT_HOME/reports/``, each written atomically (mode 0600: they show a
household's wealth):
- ``<profile_id>.html``: the latest report;
- ``<profile_id>-<YYYY-MM-DD>.html``: one per day of the latest valued hour, overwritten
  during that day; :func:`prune_dated_reports` keeps the last
  :data:`KEEP_DAILY_REPORTS` days and, for :data:`KEEP_MONTHLY_REPORTS` months, the last
  copy of each month.
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
from pathlib import Path
from typing import Any

import pandas as pd
from babel.dates import format_date
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from finbot_pipelines import visual
from finbot_pipelines.config.loading import atomic_write_bytes, load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.schema import FinbotConfig, LinkedAccount
from finbot_pipelines.visual import (
    ASSETS,
    CHART_CSS,
    CONTRIBUTIONS,
    GAIN,
    LIABILITIES,
    LOSS,
    NET_WORTH,
    NEUTRAL,
    Bar,
    ColumnGroup,
    Series,
    esc,
)
from finbot_pipelines.warehouse.queries import parse_warnings
from finbot_pipelines.warehouse.report_data import (
    DISTRIBUTION_DIMENSIONS,
    STATUS_FROZEN,
    STATUS_NEVER_FETCHED,
    STATUS_NEVER_SUCCEEDED,
    STATUS_NO_STATEMENT,
    STATUS_OK,
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
#: Dated copies kept per profile: the last this many days, every one...
KEEP_DAILY_REPORTS = 31
#: ... and the last copy of each of this many months (the current one included).
KEEP_MONTHLY_REPORTS = 24

#: History ranges (key, how far back; None: everything), shortest first.
RANGES: tuple[tuple[str, timedelta | None], ...] = (
    ("1m", timedelta(days=30)),
    ("6m", timedelta(days=182)),
    ("1y", timedelta(days=365)),
    ("all", None),
)
#: At most this many points per history chart and range (a page stays small).
MAX_POINTS = 90
#: The by-account chart draws this many accounts (the largest); the others as one line.
MAX_ACCOUNT_LINES = 8
DIMENSION_TITLES = {
    "linked_account": "By linked account",
    "asset_class": "By asset class",
    "currency": "By currency",
}
WINDOW_TITLES = {"1d": "1 day", "1w": "1 week", "1m": "1 month", "1y": "1 year", "2y": "2 years"}
#: The report's account statuses (report_data.STATUS_*) as visual.STATUS_LABELS keys.
_STATUS_KEYS = {
    STATUS_OK: "ok",
    STATUS_STALE: "stale",
    STATUS_FROZEN: "frozen",
    STATUS_NEVER_SUCCEEDED: "never_succeeded",
    STATUS_NEVER_FETCHED: "never_fetched",
    STATUS_STATEMENT: "statement",
    STATUS_NO_STATEMENT: "no_statement",
}


# --------------------------------------------------------------------------- formatting


@dataclass(frozen=True)
class Style:
    """How one profile's report writes: its locale and the household's account colours."""

    ccy: str
    locale: str = "en_GB"
    accounts: Mapping[str, str] | None = None

    def money(self, value: Any, *, signed: bool = False, missing: str = "—") -> str:
        return visual.money(value, self.ccy, self.locale, signed=signed, missing=missing)

    def percent(self, value: Any, *, signed: bool = True) -> str:
        return visual.percent(value, self.locale, signed=signed)

    def account_colour(self, account_id: str) -> str:
        return visual.colour("linked_account", account_id, self.accounts)


def raw(value: Any) -> str:
    """A number as a round-trippable attribute value, '' for NULL."""
    f = num(value)
    return "" if f is None else repr(f)


def _ts(value: Any) -> pd.Timestamp | None:
    if value is None or value is pd.NaT:
        return None
    ts = pd.Timestamp(value)
    return None if pd.isna(ts) else ts


def hour_text(value: Any, locale: str = "en_GB") -> str:
    ts = _ts(value)
    return "—" if ts is None else visual.hour_text(ts.to_pydatetime(), locale)


def day_text(value: Any, locale: str = "en_GB") -> str:
    """The date of an hour (a statement's date), or —."""
    ts = _ts(value)
    return "—" if ts is None else visual.day_text(ts.to_pydatetime(), locale)


def hour_iso(value: Any) -> str:
    ts = _ts(value)
    return "" if ts is None else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


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


def status_key(status: str) -> str:
    return _STATUS_KEYS.get(status, status.replace(" ", "_"))


def status_text(status: str) -> str:
    return visual.label("status", status)


def _swatch(colour: str) -> str:
    return (
        '<svg class="swatch" width="10" height="10" aria-hidden="true">'
        f'<rect width="10" height="10" rx="2" fill="{colour}"/></svg>'
    )


# --------------------------------------------------------------------------- history


def _points(frame: pd.DataFrame, column: str) -> list[tuple[datetime, Any]]:
    return [
        (pd.Timestamp(t).to_pydatetime(), v)
        for t, v in zip(frame["valuation_hour"], frame[column], strict=True)
    ]


def sample_hours(
    hours: Sequence[Any], latest: Any, back: timedelta | None, max_points: int = MAX_POINTS
) -> list[pd.Timestamp]:
    """The hours a history chart of range ``back`` draws: at most ``max_points``, the last
    of each equal bucket counted back from ``latest`` (so the latest hour is always drawn);
    buckets of whole days once they are longer than a day."""
    end = pd.Timestamp(latest)
    ts = sorted({pd.Timestamp(h) for h in hours})
    if back is not None:
        ts = [t for t in ts if t >= end - back]
    if not ts:
        return []
    span_h = max((end - ts[0]) / pd.Timedelta(hours=1), 1.0)
    bucket_h = max(1, math.ceil((span_h + 1) / max_points))
    if bucket_h > 24:
        bucket_h = 24 * math.ceil(bucket_h / 24)
    chosen: dict[int, pd.Timestamp] = {}
    for t in ts:
        k = int(((end - t) / pd.Timedelta(hours=1)) // bucket_h)
        chosen[k] = max(chosen.get(k, t), t)
    return sorted(chosen.values())


def ranges_for(data: ReportData) -> list[tuple[str, timedelta | None]]:
    """The ranges worth a switch: those the history reaches beyond, and "all"."""
    h = data.history
    if h.empty:
        return [("all", None)]
    first = pd.Timestamp(h["valuation_hour"].min())
    latest = pd.Timestamp(data.valuation_hour)
    return [(k, back) for k, back in RANGES if back is None or first < latest - back]


def _at(frame: pd.DataFrame, hours: Sequence[pd.Timestamp]) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame[pd.to_datetime(frame["valuation_hour"]).isin(set(hours))]


def points_for(series_count: int) -> int:
    """Points per range of a chart of ``series_count`` lines: MAX_POINTS for up to four,
    fewer for more (each point's hover title lists every line), never under 40."""
    return max(40, min(MAX_POINTS, MAX_POINTS * 4 // max(series_count, 1)))


HISTORY_TITLES = {
    "chart-net-worth": "Net worth",
    "chart-assets-liabilities": "Assets and liabilities",
    "chart-linked-accounts": "By linked account (value net of its liabilities)",
    "chart-asset-classes": "Assets by asset class",
}


def history_charts(data: ReportData, style: Style, key: str, back: timedelta | None) -> str:
    """The four history charts of one range: net worth alone, assets and liabilities,
    by linked account, by asset class; each on its own scale."""
    all_hours = list(data.history["valuation_hour"]) if not data.history.empty else []

    def hours(series_count: int) -> list[pd.Timestamp]:
        return sample_hours(all_hours, data.valuation_hour, back, points_for(series_count))

    few = hours(2)
    h = _at(data.history, few)
    by_account = data.history_by_linked_account
    n_accounts = min(by_account["linked_account_id"].nunique(), MAX_ACCOUNT_LINES + 1)
    by_class = data.history_by_asset_class
    charts = {
        "chart-net-worth": [Series("Net worth", NET_WORTH, _points(h, "net_worth"), "net_worth")],
        "chart-assets-liabilities": [
            Series("Assets", ASSETS, _points(h, "total_assets"), "assets"),
            Series("Liabilities", LIABILITIES, _points(h, "total_liabilities"), "liabilities"),
        ],
        "chart-linked-accounts": account_series(_at(by_account, hours(n_accounts)), style),
        "chart-asset-classes": asset_class_series(
            _at(by_class, hours(by_class["asset_class"].nunique())), style
        ),
    }
    cards = "".join(
        f'<div class="card chart-card"><h3>{esc(HISTORY_TITLES[testid])}</h3>'
        + visual.line_chart(
            series,
            ccy=style.ccy,
            locale=style.locale,
            title=HISTORY_TITLES[testid],
            testid=testid,
        )
        + "</div>"
        for testid, series in charts.items()
    )
    return f'<div class="range-panel" data-range="{esc(key)}">{cards}</div>'


def account_series(frame: pd.DataFrame, style: Style) -> list[Series]:
    """One line per linked account in its own colour, the largest MAX_ACCOUNT_LINES; the
    others summed as one grey line."""
    if frame.empty:
        return []
    latest = frame.sort_values("valuation_hour").groupby("linked_account_id", sort=True).last()
    order = latest["value"].astype(float).abs().sort_values(ascending=False, kind="stable")
    shown = list(order.index[:MAX_ACCOUNT_LINES])
    series = []
    for la_id in shown:
        grp = frame[frame["linked_account_id"] == la_id]
        names = grp["linked_account_name"].dropna()
        name = str(names.iloc[-1]) if not names.empty else str(la_id)
        series.append(Series(name, style.account_colour(str(la_id)), _points(grp, "value"), la_id))
    rest = frame[~frame["linked_account_id"].isin(shown)]
    if not rest.empty:
        summed = rest.groupby("valuation_hour", as_index=False)["value"].sum()
        n = rest["linked_account_id"].nunique()
        series.append(Series(f"{n} other accounts", NEUTRAL, _points(summed, "value"), "other"))
    return series


def asset_class_series(frame: pd.DataFrame, style: Style) -> list[Series]:
    if frame.empty:
        return []
    return [
        Series(
            visual.label("asset_class", str(cls), style.locale),
            visual.asset_class_colour(str(cls)),
            _points(grp, "value"),
            str(cls),
        )
        for cls, grp in frame.groupby("asset_class", sort=True)
    ]


def history_section(data: ReportData, style: Style) -> str:
    ranges = ranges_for(data)
    panels = "".join(history_charts(data, style, key, back) for key, back in ranges)
    default = ranges[-1][0]
    inputs = "".join(
        f'<input type="radio" name="range" class="range-input" id="range-{k}" value="{k}"'
        f"{' checked' if k == default else ''}>"
        for k, _ in ranges
    )
    tabs = (
        '<div class="range-tabs" role="group" aria-label="Range">'
        + "".join(
            f'<label for="range-{k}" data-range="{k}">{esc(visual.label("window", k))}</label>'
            for k, _ in ranges
        )
        + "</div>"
        if len(ranges) > 1
        else ""
    )
    return (
        '<section id="history"><h2>Valuation history</h2>'
        f'<div class="ranges">{inputs}{tabs}<div class="range-panels">{panels}</div></div>'
        '<p class="sub">Each chart has its own scale. Hover a point for its date and amounts; '
        "long ranges show one point per day or fewer.</p></section>"
    )


def range_css() -> str:
    """Show the panel of the checked range, mark its tab (no script)."""
    rules = []
    for k, _ in RANGES:
        rules.append(
            f"#range-{k}:checked ~ .range-panels .range-panel[data-range='{k}'] "
            "{ display: block; }"
            f"#range-{k}:checked ~ .range-tabs label[data-range='{k}'] "
            "{ background: var(--fg); color: var(--bg); }"
            f"#range-{k}:focus-visible ~ .range-tabs label[data-range='{k}'] "
            "{ outline: 2px solid var(--accent); }"
        )
    return "\n".join(rules)


# --------------------------------------------------------------------------- sections


CSS = """
:root { color-scheme: light dark; --fg:#1d2433; --muted:#5b6475; --line:#e3e7ee;
        --card:#fff; --bg:#f6f7f9; --row:#fafbfc; --warn-bg:#fff6e0; --warn:#8a5300;
        --warn-line:#f1d79a; --accent:#2f5fb3; --pos:@GAIN@; --neg:@LOSS@; }
@media (prefers-color-scheme: dark) {
  :root { --fg:#e6e9ef; --muted:#9aa3b2; --line:#2c3340; --card:#171b22; --bg:#0e1116;
          --row:#1c212a; --warn-bg:#2e2410; --warn:#f0c26b; --warn-line:#5b4619;
          --accent:#7fa6e8; }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
       sans-serif; color:var(--fg); background:var(--bg); overflow-wrap:anywhere; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 16px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
.sub { color: var(--muted); margin: 4px 0 0; font-size: 0.92em; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
          padding:14px 16px; margin: 14px 0; max-width: 100%; }
section h2 { margin: 0 0 10px; font-size: 18px; }
h3 { margin: 0 0 6px; font-size: 15px; }
.notice { background:var(--warn-bg); color:var(--warn); border:1px solid var(--warn-line);
          border-radius:6px; padding:8px 12px; margin:10px 0 0; }
.kpis { display:grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap:10px; }
.kpi { border:1px solid var(--line); border-radius:8px; padding:10px 12px; min-width:0; }
.kpi h3 { margin:0; font-size:12px; text-transform:uppercase; letter-spacing:.04em;
          color:var(--muted); font-weight:600; }
.kpi .big { font-size:22px; font-weight:650; margin:4px 0 0; font-variant-numeric:tabular-nums; }
.kpi small { color: var(--muted); }
.pos { color: var(--pos); } .neg { color: var(--neg); }
.grid { display:grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap:14px; }
.card { min-width: 0; }
.chart-card { margin: 0 0 16px; }
.range-input { position: absolute; opacity: 0; width: 1px; height: 1px; margin: 0; }
.range-tabs { display:flex; flex-wrap:wrap; gap:6px; margin: 0 0 12px; }
.range-tabs label { border:1px solid var(--line); border-radius:14px; padding:3px 12px;
                    cursor:pointer; font-size: 0.9em; }
.range-panel { display: none; }
svg.swatch { vertical-align: baseline; margin-right: 6px; }
.chart .legend svg { width: 10px; height: 10px; flex: none; display: inline-block; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: right;
         vertical-align: top; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td small { color: var(--muted); display:block; }
tr.lvl-linked_account td { font-weight: 650; background: var(--row); }
tr.lvl-sub_account td:first-child { padding-left: 24px; }
tr.lvl-item td:first-child { padding-left: 44px; }
tr.lvl-sub_account td { font-weight: 550; }
td.chg small { font-weight: 400; }
button.toggle { border: 0; background: none; cursor: pointer; font: inherit; padding: 0 4px 0 0;
                color: var(--muted); width: 18px; }
tr.collapsed { display: none !important; }
small.fix { color: var(--warn); }
.badge { display:inline-block; font-size:11px; font-weight:600; border-radius:10px;
         padding:1px 7px; margin-left:6px; background:var(--warn-bg); color:var(--warn);
         border:1px solid var(--warn-line); }
ul.stale { margin: 0; padding-left: 18px; }
ul.stale li { margin: 4px 0; }
ul.warnings { margin: 4px 0 0; padding-left: 18px; font-size: 0.9em; color: var(--warn); }
footer { color: var(--muted); font-size: 12px; margin: 16px 0 32px; }
code { font-size: 12px; }
/* narrow screens: each table row becomes a block, each cell a labelled line */
@media (max-width: 640px) {
  main { padding: 12px 10px; }
  .kpis { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .kpi .big { font-size: 18px; }
  table.stack td.chg:empty { display: none; }
  section { padding: 12px; }
  table.stack, table.stack tbody, table.stack tr, table.stack td { display: block; width: 100%; }
  table.stack thead { display: none; }
  table.stack tr { border-bottom: 1px solid var(--line); padding: 6px 0; }
  table.stack td { border: 0; padding: 2px 0; text-align: right; display: flex;
                   justify-content: space-between; gap: 10px; }
  table.stack td::before { content: attr(data-label); color: var(--muted); font-size: 12px;
                           text-align: left; font-weight: 400; }
  table.stack td:first-child { display: block; text-align: left; font-weight: 600; }
  table.stack td:first-child::before { content: none; }
  table.stack td.chg { display: inline-flex; width: auto; min-width: 48%; }
  tr.lvl-sub_account td:first-child { padding-left: 12px; }
  tr.lvl-item td:first-child { padding-left: 24px; }
  table.stack td small { display: inline; margin-left: 6px; }
  table.stack td:first-child small { display: block; margin-left: 0; }
}
""".replace("@GAIN@", GAIN).replace("@LOSS@", LOSS)

PAGE_JS = """
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


def kpis_section(data: ReportData, style: Style) -> str:
    as_of = esc(hour_text(data.valuation_hour, style.locale))
    change_note = (
        style.money(data.change_1d_abs, signed=True)
        if data.change_1d_abs is not None
        else "no value 24 hours earlier"
    )
    cards = [
        _kpi(
            "net-worth",
            "Net worth",
            esc(style.money(data.net_worth)),
            f'data-value="{raw(data.net_worth)}" data-hour="{hour_iso(data.valuation_hour)}"',
            f"on {as_of}",
        ),
        _kpi(
            "total-assets",
            "Assets",
            esc(style.money(data.total_assets)),
            f'data-value="{raw(data.total_assets)}"',
        ),
        _kpi(
            "total-liabilities",
            "Liabilities",
            esc(style.money(data.total_liabilities)),
            f'data-value="{raw(data.total_liabilities)}"',
        ),
        _kpi(
            "change-1d",
            "24-hour change",
            f'<span class="{sign_class(data.change_1d_rel)}">'
            f"{esc(style.percent(data.change_1d_rel))}</span>",
            f'data-value="{raw(data.change_1d_rel)}" data-abs="{raw(data.change_1d_abs)}"',
            f'<span class="{sign_class(data.change_1d_abs)}">{esc(change_note)}</span>',
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
    """The last error (what kind, masked message) and its fix, for the stale list and the
    accounts table. The code itself stays in the row's data-error-code."""
    code = text_or(r.get("last_error_code"))
    msg = text_or(r.get("last_error_message"))
    fix = text_or(r.get("fix"))
    out = ""
    if code or msg:
        out = (
            f"<strong>{esc(visual.words(code) or 'Error')}</strong>: "
            f'<span class="err" data-testid="account-error">{esc(msg)}</span>'
        )
    if fix:
        out += f'<small class="fix" data-testid="account-fix">fix: {esc(fix)}</small>'
    return out


def stale_section(data: ReportData, style: Style) -> str:
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
                f"(last good data {hour_text(r['source_fetch_hour'], style.locale)})"
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


def _bucket_label(dimension: str, bucket: Any, label: Any, locale: str) -> str:
    if dimension == "linked_account":
        return text_or(label) or text_or(bucket) or "Unknown"
    return visual.label(dimension, bucket if isinstance(bucket, str) else None, locale)


def _bucket_colour(dimension: str, bucket: Any, style: Style) -> str:
    if not isinstance(bucket, str):
        return NEUTRAL
    if dimension == "linked_account":
        return style.account_colour(bucket)
    return visual.colour(dimension, bucket)


def distribution_section(data: ReportData, style: Style) -> str:
    d = data.distribution
    cards = []
    for dim in DISTRIBUTION_DIMENSIONS:
        rows = d[(d["dimension"] == dim) & (d["side"] == "asset")]
        rows = rows[rows["value"].notna() & (rows["value"] > 0)]
        bars = [
            Bar(
                _bucket_label(dim, r.bucket, r.label, style.locale),
                _bucket_colour(dim, r.bucket, style),
                r.value,
                r.share,
                text_or(r.bucket),
            )
            for r in rows.itertuples(index=False)
        ]
        body = (
            visual.share_bars(
                bars,
                ccy=style.ccy,
                locale=style.locale,
                title=DIMENSION_TITLES[dim],
                testid=f"chart-distribution-{dim}",
            )
            if bars
            else f'<p class="sub" data-testid="chart-distribution-{dim}">No assets.</p>'
        )
        cards.append(f'<div class="card"><h3>{esc(DIMENSION_TITLES[dim])}</h3>{body}</div>')
    liab = d[(d["dimension"] == "linked_account") & (d["side"] == "liability")]
    if liab.empty:
        liab_html = '<p class="sub" data-testid="no-liabilities">No liabilities.</p>'
    else:
        rows_html = "".join(
            f'<tr data-testid="liability" data-bucket="{esc(r.bucket)}" '
            f'data-value="{raw(r.value)}">'
            f"<td>{_swatch(_bucket_colour('linked_account', r.bucket, style))}"
            f"{esc(_bucket_label('linked_account', r.bucket, r.label, style.locale))}</td>"
            f'<td data-label="Value">{esc(style.money(r.value))}</td>'
            f'<td data-label="Share">{esc(style.percent(r.share, signed=False))}</td></tr>'
            for r in liab.itertuples(index=False)
        )
        liab_html = (
            '<table class="stack"><thead><tr><th>Linked account</th><th>Value</th>'
            f"<th>Share</th></tr></thead><tbody>{rows_html}</tbody></table>"
        )
    return (
        f'<section id="distribution"><h2>Wealth distribution (assets, '
        f"{esc(hour_text(data.valuation_hour, style.locale))})</h2>"
        f'<div class="grid">{"".join(cards)}</div><h3>Liabilities</h3>{liab_html}</section>'
    )


def _change_cell(abs_value: Any, rel_value: Any, window: str, style: Style) -> str:
    a, r = num(abs_value), num(rel_value)
    attrs = (
        f'data-window="{window}" data-abs="{raw(a)}" data-rel="{raw(r)}" '
        f'data-label="{esc(WINDOW_TITLES[window])}"'
    )
    if a is None:
        return f'<td class="chg" {attrs}></td>'
    rel_text = f"<small>{esc(style.percent(r))}</small>" if r is not None else ""
    return (
        f'<td class="chg {sign_class(a)}" {attrs}>{esc(style.money(a, signed=True))}{rel_text}</td>'
    )


def holding_detail(r: Mapping[str, Any], style: Style) -> str:
    """A holding's second line in words: the provider of a linked account, the kind and
    currency of a sub-account, the asset class, type, symbol and units of an item."""
    level = r["level"]
    loc = style.locale
    parts: list[str] = []
    if level == "linked_account":
        parts.append(visual.label("provider", text_or(r.get("provider_id")) or None, loc))
        if _ts(r.get("statement_hour")) is not None:
            parts.append(f"from the statement of {day_text(r['statement_hour'], loc)}")
    elif level == "sub_account":
        if text_or(r.get("account_type")):
            parts.append(visual.label("account_type", r["account_type"], loc))
        if text_or(r.get("ccy")):
            parts.append(visual.label("currency", r["ccy"], loc))
    else:
        if text_or(r.get("asset_class")):
            parts.append(visual.label("asset_class", r["asset_class"], loc))
        if text_or(r.get("asset_type")):
            parts.append(visual.words(r["asset_type"]))
        if text_or(r.get("symbol")):
            parts.append(str(r["symbol"]))
        if num(r.get("units")) is not None:
            parts.append(f"{visual.units(r['units'], loc)} units")
    return " · ".join(p for p in parts if p)


def holdings_section(data: ReportData, style: Style) -> str:
    h = data.holdings
    head = "".join(f"<th>{esc(WINDOW_TITLES[w])}</th>" for w in TREE_WINDOWS)
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
        swatch = _swatch(style.account_colour(entity)) if level == "linked_account" else ""
        detail_text = holding_detail(r, style)
        detail = f"<small>{esc(detail_text)}</small>" if detail_text else ""
        parent = r["parent_id"] if isinstance(r["parent_id"], str) else ""
        cells = "".join(
            _change_cell(r[f"change_{w}_abs"], r[f"change_{w}_rel"], w, style) for w in TREE_WINDOWS
        )
        rows.append(
            f'<tr class="lvl-{esc(level)}" data-testid="holding" data-level="{esc(level)}" '
            f'data-entity-id="{esc(entity)}" data-parent-id="{esc(parent)}" '
            f'data-value="{raw(r["value"])}">'
            f'<td>{toggle}{swatch}<span class="name">{esc(r["name"])}</span>{stale}{detail}</td>'
            f'<td class="value" data-label="Value">{esc(style.money(r["value"]))}</td>'
            f"{cells}</tr>"
        )
    body = "".join(rows) or '<tr><td colspan="7">No holdings.</td></tr>'
    return (
        f'<section id="holdings"><h2>Holdings ({esc(hour_text(data.valuation_hour, style.locale))}'
        ")</h2>"
        '<p class="sub">Linked account → sub-account → item, with the change over each '
        "window; blank when there is no value to compare with.</p>"
        f'<table class="stack"><thead><tr><th>Holding</th><th>Value</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></section>"
    )


def month_text(value: Any, locale: str) -> str:
    return format_date(pd.Timestamp(value).date(), "MMM y", locale=locale)


def monthly_chart(data: ReportData, style: Style) -> str:
    """Contributions against market gain, month by month (oldest first), when the marts
    have them; empty otherwise."""
    m = data.monthly
    if m.empty or (m["net_contributions"].isna().all() and m["market_gain"].isna().all()):
        return ""
    groups = [
        ColumnGroup(
            month_text(r["period_start"], style.locale),
            {"contributions": r["net_contributions"], "market_gain": r["market_gain"]},
        )
        for r in m.sort_values("period_start").to_dict("records")
    ]
    return visual.column_chart(
        groups[-24:],
        [
            ("contributions", "Contributions", CONTRIBUTIONS),
            ("market_gain", "Market gain", "sign"),
        ],
        ccy=style.ccy,
        locale=style.locale,
        title="Contributions and market gain by month",
        testid="chart-monthly",
    )


def monthly_section(data: ReportData, style: Style) -> str:
    m = data.monthly
    rows = []
    for r in m.to_dict("records"):
        start = pd.Timestamp(r["period_start"])

        def cell(label: str, text: str, cls: str = "") -> str:
            c = f' class="{cls}"' if cls else ""
            return f'<td{c} data-label="{esc(label)}">{esc(text)}</td>'

        rows.append(
            f'<tr data-testid="monthly-row" data-period-start="{start.strftime("%Y-%m-%d")}" '
            f'data-open="{raw(r["open"])}" data-close="{raw(r["close"])}" '
            f'data-low="{raw(r["low"])}" data-high="{raw(r["high"])}" '
            f'data-change-abs="{raw(r["change_abs"])}" data-change-rel="{raw(r["change_rel"])}" '
            f'data-net-contributions="{raw(r.get("net_contributions"))}" '
            f'data-market-gain="{raw(r.get("market_gain"))}" data-twr="{raw(r.get("twr"))}">'
            f"<td>{esc(month_text(start, style.locale))}</td>"
            + cell("Open", style.money(r["open"]))
            + cell("Close", style.money(r["close"]))
            + cell("Low", style.money(r["low"]))
            + cell("High", style.money(r["high"]))
            + cell(
                "Change",
                style.money(r["change_abs"], signed=True),
                sign_class(r["change_abs"]),
            )
            + cell("%", style.percent(r["change_rel"]), sign_class(r["change_rel"]))
            + cell("Contributions", style.money(r.get("net_contributions"), signed=True))
            + cell(
                "Market gain",
                style.money(r.get("market_gain"), signed=True),
                sign_class(r.get("market_gain")),
            )
            + cell("Time-weighted return", style.percent(r.get("twr")), sign_class(r.get("twr")))
            + "</tr>"
        )
    body = "".join(rows) or '<tr><td colspan="10">No month yet.</td></tr>'
    return (
        '<section id="monthly"><h2>Month by month: contributions and market gain</h2>'
        f"{monthly_chart(data, style)}"
        '<p class="sub">Net worth at the first (open) and last (close) valued hour of each '
        "calendar month (UTC), its low and high; the current month is partial. "
        "Contributions: the money put in minus the money taken out (salary, spending, "
        "transfers from outside), from the transactions; market gain: what the money "
        "earned, the month's close minus the previous month's close minus the "
        "contributions; TWR: the time-weighted return. Blank without the previous "
        "month's close.</p>"
        '<table class="stack"><thead><tr><th>Month</th><th>Open</th><th>Close</th><th>Low</th>'
        "<th>High</th><th>Change</th><th>%</th><th>Contributions</th><th>Market gain</th>"
        f"<th>TWR</th></tr></thead><tbody>{body}</tbody></table></section>"
    )


def accounts_section(data: ReportData, style: Style) -> str:
    rows = []
    loc = style.locale
    for r in data.accounts.to_dict("records"):
        status = str(r["status"])
        err = _error_html(r)
        failures = num(r["consecutive_failures"])
        age = num(r["stale_hours"])
        age_html = (
            f"<small>{age:g} h old</small>" if status == STATUS_STALE and age is not None else ""
        )
        if status == STATUS_STATEMENT:
            age_html = f"<small>of {esc(day_text(r['source_fetch_hour'], loc))}</small>"
        elif status == STATUS_NO_STATEMENT:
            age_html = f"<small>drop one into inbox/{esc(r['linked_account_id'])}/</small>"
        notes = "".join(
            f'<li data-testid="account-warning" data-code="{esc(w["code"])}">'
            f"<strong>{esc(visual.words(w['code']))}</strong>: {esc(w['message'])}</li>"
            for w in parse_warnings(r.get("warnings"))
        )
        if notes:
            err += f'<ul class="warnings">{notes}</ul>'
        provider = visual.label("provider", text_or(r["provider_id"]) or None, loc)
        la_id = str(r["linked_account_id"])
        rows.append(
            f'<tr data-testid="account" data-linked-account-id="{esc(la_id)}" '
            f'data-status="{esc(_status_attr(status))}" '
            f'data-error-code="{esc(text_or(r["last_error_code"]))}">'
            f"<td>{_swatch(style.account_colour(la_id))}{esc(r['linked_account_name'])}"
            f"<small>{esc(provider)}</small></td>"
            f'<td data-label="Value">{esc(style.money(r["value"]))}</td>'
            f'<td data-label="Status">{esc(status_text(status))}{age_html}</td>'
            f'<td data-label="Last success">{esc(hour_text(r["last_success_hour"], loc))}</td>'
            f'<td data-label="Failures in a row">{"" if failures is None else int(failures)}</td>'
            f'<td class="text" data-label="">{err}</td></tr>'
        )
    return (
        '<section id="accounts"><h2>Linked accounts</h2><table class="stack"><thead><tr>'
        "<th>Account</th><th>Value</th><th>Status</th><th>Last success</th>"
        '<th>Failures in a row</th><th class="text">Last error and its fix, '
        "warnings</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def render_html(
    data: ReportData,
    generated_at: datetime | None = None,
    *,
    locale: str = "en_GB",
    accounts: Mapping[str, str] | None = None,
) -> str:
    """One profile's report as a self-contained HTML page. ``locale``: the profile's;
    ``accounts``: the household's :func:`visual.account_colours` (every configured
    account id), so an account has the colour the web app gives it."""
    style = Style(data.valuation_ccy, visual.known_locale(locale), accounts)
    loc = style.locale
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
    title = f"Wealth report · {data.profile_name}"
    published = (
        f" from marts published {esc(hour_text(data.published_at, loc))}"
        if data.published_at
        else ""
    )
    meta = json.dumps(
        {
            "profile_id": data.profile_id,
            "valuation_ccy": data.valuation_ccy,
            "valuation_hour": hour_iso(data.valuation_hour),
            "fx_source": data.fx_source,
            "locale": loc,
        }
    ).replace("<", "\\u003c")
    lang = loc.split("_")[0]
    ccy_name = visual.label("currency", data.valuation_ccy, loc)
    return f"""<!DOCTYPE html>
<html lang="{esc(lang)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{esc(title)}</title>
<style>{CHART_CSS}{CSS}{range_css()}</style>
<script type="application/json" id="finbot-report-meta">{meta}</script>
</head>
<body>
<main>
<header>
<h1 data-testid="profile-name"
 data-profile-id="{esc(data.profile_id)}">{esc(data.profile_name)}</h1>
<p class="sub">Wealth report in <span data-testid="valuation-ccy"
 data-ccy="{esc(data.valuation_ccy)}">{esc(ccy_name)}</span>
 · net worth on <time data-testid="valuation-hour" datetime="{hour_iso(data.valuation_hour)}">{
        esc(hour_text(data.valuation_hour, loc))
    }</time></p>
{fx_notice}{fx_missing}
</header>
{kpis_section(data, style)}
{stale_section(data, style)}
{history_section(data, style)}
{distribution_section(data, style)}
{holdings_section(data, style)}
{monthly_section(data, style)}
{accounts_section(data, style)}
<footer>Generated by finbot at {esc(hour_text(generated, loc))}{published}. Values in
{esc(ccy_name)}.</footer>
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
    locale: str = "en_GB"


def report_paths(paths: HomePaths, profile_id: str, day: date) -> tuple[Path, Path]:
    """(latest, dated) report files of a profile."""
    return (
        paths.reports / f"{profile_id}.html",
        paths.reports / f"{profile_id}-{day.isoformat()}.html",
    )


def _config(paths: HomePaths) -> FinbotConfig | None:
    return load_config(paths.config) if paths.config.exists() else None


def _config_profiles(paths: HomePaths) -> list[tuple[str, str]]:
    cfg = _config(paths)
    return [(p.id, p.name) for p in cfg.profiles] if cfg else []


def write_reports(
    paths: HomePaths,
    profile_ids: Sequence[str] | None = None,
    profile_names: Mapping[str, str] | None = None,
    generated_at: datetime | None = None,
    keep_days: int | None = None,
    configured: Sequence[LinkedAccount] | None = None,
    locales: Mapping[str, str] | None = None,
    *,
    prune: bool = False,
) -> list[WrittenReport]:
    """Render every profile's report (or only `profile_ids`) from the published marts.

    Names come from `profile_names`, else from the home's finbot.yaml, else the id; the
    locale from `locales`, else finbot.yaml's profiles, else en_GB. `configured`
    (default: finbot.yaml's linked accounts) adds the enabled accounts never fetched yet
    and gives the account colours (every configured account id of the household). With
    `prune` (or `keep_days`, the days of daily copies), older dated copies are deleted
    (:func:`prune_dated_reports`).
    """
    cfg = _config(paths)
    names = (
        dict(profile_names)
        if profile_names is not None
        else {p.id: p.name for p in (cfg.profiles if cfg else [])}
    )
    locs = (
        dict(locales)
        if locales is not None
        else {p.id: p.locale for p in (cfg.profiles if cfg else [])}
    )
    if configured is None:
        configured = cfg.linked_accounts if cfg else []
    loaded = load_all_report_data(paths.published, names, profile_ids, configured)
    account_ids = [a.id for a in configured] or [
        str(i) for d in loaded for i in d.accounts["linked_account_id"]
    ]
    colours = visual.account_colours(account_ids)
    written: list[WrittenReport] = []
    for data in loaded:
        locale = visual.known_locale(locs.get(data.profile_id))
        page = render_html(data, generated_at, locale=locale, accounts=colours).encode("utf-8")
        latest, dated = report_paths(
            paths, data.profile_id, pd.Timestamp(data.valuation_hour).date()
        )
        atomic_write_bytes(dated, page, REPORT_FILE_MODE)
        atomic_write_bytes(latest, page, REPORT_FILE_MODE)
        written.append(WrittenReport(data.profile_id, latest, dated, data, locale))
        if prune or keep_days is not None:
            prune_dated_reports(
                paths,
                data.profile_id,
                dated,
                keep_days if keep_days is not None else KEEP_DAILY_REPORTS,
            )
    return written


def kept_days(
    days: Iterable[date],
    newest: date,
    keep_days: int = KEEP_DAILY_REPORTS,
    keep_months: int = KEEP_MONTHLY_REPORTS,
) -> set[date]:
    """Which dated copies stay: every day of the last ``keep_days`` days (``newest``
    included), and the last copy of each of the last ``keep_months`` months."""
    days = sorted(set(days))
    keep = {d for d in days if newest - timedelta(days=keep_days) < d <= newest}
    first_month = (newest.year * 12 + newest.month - 1) - (keep_months - 1)
    last_of_month: dict[int, date] = {}
    for d in days:
        m = d.year * 12 + d.month - 1
        if first_month <= m and d <= newest:
            last_of_month[m] = max(last_of_month.get(m, d), d)
    return keep | set(last_of_month.values())


def prune_dated_reports(
    paths: HomePaths,
    profile_id: str,
    newest: Path,
    keep_days: int = KEEP_DAILY_REPORTS,
    keep_months: int = KEEP_MONTHLY_REPORTS,
) -> None:
    """Delete the dated copies of a profile that :func:`kept_days` does not keep."""
    m = DATED_RE.match(newest.name)
    if not m:
        return
    found: dict[date, Path] = {}
    for f in paths.reports.glob(f"{profile_id}-*.html"):
        fm = DATED_RE.match(f.name)
        if fm and fm["profile"] == profile_id:
            try:
                found[date.fromisoformat(fm["day"])] = f
            except ValueError:
                continue
    keep = kept_days(found, date.fromisoformat(m["day"]), keep_days, keep_months)
    for day, f in found.items():
        if day not in keep:
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
            ax.plot(h["valuation_hour"], h["net_worth"], color=NET_WORTH, linewidth=1.4)
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
            _md(visual.money(d.net_worth, d.valuation_ccy, w.locale)),
            _md(visual.percent(d.change_1d_rel, w.locale)),
            _md(stale or "none"),
            _md(hour_text(d.valuation_hour, w.locale)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if written and written[0].data.fx_source == "static":
        lines += ["", f"_{STATIC_FX_NOTICE}_"]
    if png:
        lines += ["", f"![net worth](data:image/png;base64,{base64.b64encode(png).decode()})"]
    return "\n".join(lines)


def _md(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")
