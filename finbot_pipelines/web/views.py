"""What the pages show, built from the published marts (data.py) in the visual language
(finbot_pipelines/visual.py): the formatter the templates use and the dashboard's charts.

Every amount goes through :class:`Fmt`, which writes it in the profile's locale and
currency, inside ``<span class="amount">``, and writes no amount at all while the
privacy switch is on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb
from markupsafe import Markup, escape

from finbot_pipelines import visual
from finbot_pipelines.config.schema import FinbotConfig, Profile
from finbot_pipelines.web import data

#: the dashboard's range buttons (data.RANGES keys)
DASHBOARD_RANGES: tuple[str, ...] = ("1w", "1m", "3m", "6m", "1y", "2y", "all")
RANGE_LABELS = {
    "1d": "1D",
    "1w": "1W",
    "1m": "1M",
    "3m": "3M",
    "6m": "6M",
    "1y": "1Y",
    "2y": "2Y",
    "all": "All",
}
DIMENSIONS: tuple[str, ...] = ("asset_class", "linked_account", "currency")
#: trailing performance periods shown on the dashboard, in this order
PERFORMANCE_PERIODS: tuple[str, ...] = ("1m", "6m", "ytd", "1y", "2y")


def _missing(value: Any) -> bool:
    return data.is_missing(value)


@dataclass
class Fmt:
    """Numbers, dates and labels for one profile's pages."""

    ccy: str
    locale: str = "en_GB"
    private: bool = False
    names: Mapping[str, str] = field(default_factory=dict)
    colours: Mapping[str, str] = field(default_factory=dict)

    def money(self, value: Any, signed: bool = False, ccy: str | None = None) -> Markup:
        text = visual.money(value, ccy or self.ccy, self.locale, signed=signed, mask=self.private)
        cls = "amount"
        if signed and not _missing(value):
            cls += " " + self.sign(value)
        raw = "" if self.private or _missing(value) else f' data-value="{escape(str(value))}"'
        return Markup(f'<span class="{cls}"{raw}>{escape(text)}</span>')

    def change(self, value: Any) -> Markup:
        return self.money(value, signed=True)

    def pct(self, value: Any, signed: bool = True) -> Markup:
        text = visual.percent(value, self.locale, signed=signed)
        cls = f"pct {self.sign(value)}" if signed else "pct"
        return Markup(f'<span class="{cls}">{escape(text)}</span>')

    @staticmethod
    def sign(value: Any) -> str:
        if _missing(value):
            return ""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return ""
        return "gain" if v > 0 else ("loss" if v < 0 else "")

    def units(self, value: Any) -> str:
        return "" if _missing(value) else visual.units(value, self.locale)

    def hour(self, value: Any) -> str:
        return visual.hour_text(value, self.locale) if isinstance(value, datetime) else "—"

    def day(self, value: Any) -> str:
        return visual.day_text(value, self.locale) if isinstance(value, date) else "—"

    def label(self, dimension: str, code: Any) -> str:
        if dimension == "linked_account":
            return visual.label(dimension, code, self.locale, **self.names)
        return visual.label(dimension, None if _missing(code) else str(code), self.locale)

    def colour(self, dimension: str, code: Any) -> str:
        return visual.colour(dimension, str(code), self.colours)

    def swatch(self, dimension: str, code: Any) -> Markup:
        c = escape(self.colour(dimension, code))
        return Markup(
            f'<svg class="swatch" width="10" height="10" aria-hidden="true">'
            f'<rect width="10" height="10" rx="2" fill="{c}"/></svg>'
        )


def formatter(cfg: FinbotConfig, profile: Profile, private: bool, names: Mapping[str, str]) -> Fmt:
    household = [a.id for a in cfg.linked_accounts]
    return Fmt(
        ccy=profile.valuation_ccy,
        locale=visual.known_locale(profile.locale),
        private=private,
        names=dict(names),
        colours=visual.account_colours(household),  # as the report and the notebook
    )


def history_charts(rows: Sequence[Mapping[str, Any]], fmt: Fmt) -> tuple[str, str]:
    """(net worth, assets and liabilities): two charts, each on its own scale."""
    hours = [r["valuation_hour"] for r in rows]
    nw = visual.Series(
        "Net worth", visual.NET_WORTH, list(zip(hours, [r["net_worth"] for r in rows], strict=True))
    )
    assets = visual.Series(
        "Assets", visual.ASSETS, list(zip(hours, [r["total_assets"] for r in rows], strict=True))
    )
    liabilities = visual.Series(
        "Liabilities",
        visual.LIABILITIES,
        list(zip(hours, [r["total_liabilities"] for r in rows], strict=True)),
    )
    return (
        visual.line_chart(
            [nw],
            ccy=fmt.ccy,
            locale=fmt.locale,
            mask=fmt.private,
            title="Net worth",
            testid="net-worth-chart",
        ),
        visual.line_chart(
            [assets, liabilities],
            ccy=fmt.ccy,
            locale=fmt.locale,
            mask=fmt.private,
            title="Assets and liabilities",
            testid="assets-liabilities-chart",
        ),
    )


def distribution_bars(
    rows: Sequence[Mapping[str, Any]], dimension: str, fmt: Fmt
) -> dict[str, str]:
    """Share bars per side (asset, liability) of one dimension."""
    out: dict[str, str] = {}
    for side in ("asset", "liability"):
        bars = [
            visual.Bar(
                fmt.label(dimension, r["bucket"]),
                fmt.colour(dimension, r["bucket"]),
                r["value"],
                r["share"],
                key=str(r["bucket"]),
            )
            for r in rows
            if r["side"] == side
        ]
        if bars:
            out[side] = visual.share_bars(
                bars,
                ccy=fmt.ccy,
                locale=fmt.locale,
                title=f"{visual.label('side', side)} {visual.DIMENSION_LABELS[dimension].lower()}",
                testid=f"distribution-{side}",
                mask=fmt.private,
            )
    return out


def performance_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The trailing periods of PERFORMANCE_PERIODS that the history covers, then since the
    first valuation."""
    by = {(r["period_kind"], r["period"]): r for r in rows}
    out = [
        by[("trailing", p)]
        for p in PERFORMANCE_PERIODS
        if ("trailing", p) in by and by[("trailing", p)]["start_day"] is not None
    ]
    out += [r for r in rows if r["period_kind"] == "since_first"]
    return out


def period_label(row: Mapping[str, Any]) -> str:
    if row["period_kind"] == "since_first":
        return "Since the first valuation"
    if row["period_kind"] == "trailing":
        return visual.label("window", str(row["period"]))
    return str(row["period"])


def monthly_chart(rows: Sequence[Mapping[str, Any]], fmt: Fmt) -> str:
    """Net contributions against market gain, per calendar month (the last 12)."""
    months = sorted(
        (r for r in rows if r["period_kind"] == "calendar_month" and r["start_day"] is not None),
        key=lambda r: r["start_day"],
    )[-12:]
    groups = [
        visual.ColumnGroup(
            visual.month_text(r["start_day"], fmt.locale),
            {"flows": r["net_contributions"], "gain": r["market_gain"]},
        )
        for r in months
    ]
    return visual.column_chart(
        groups,
        [
            ("flows", "Net contributions", visual.CONTRIBUTIONS),
            ("gain", "Market gain", "sign"),
        ],
        ccy=fmt.ccy,
        locale=fmt.locale,
        title="Contributions and market gain by month",
        testid="performance-chart",
        mask=fmt.private,
    )


@dataclass
class TreeNode:
    row: Mapping[str, Any]
    children: list[TreeNode] = field(default_factory=list)


def holdings_tree(rows: Sequence[Mapping[str, Any]]) -> list[TreeNode]:
    """data.holdings' rows (tree order) as nested nodes: account > sub-account > item."""
    nodes = {str(r["entity_id"]): TreeNode(r) for r in rows}
    roots: list[TreeNode] = []
    for r in rows:
        node = nodes[str(r["entity_id"])]
        parent = r.get("parent_id")
        if parent and str(parent) in nodes:
            nodes[str(parent)].children.append(node)
        else:
            roots.append(node)
    return roots


def names_of(cur: duckdb.DuckDBPyConnection, profile_id: str, cfg: FinbotConfig) -> dict[str, str]:
    names = data.linked_account_names(cur, profile_id)
    for a in cfg.linked_accounts:
        if a.profile == profile_id and a.name:
            names[a.id] = a.name
    return names
