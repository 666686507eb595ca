"""finbot's one visual language: colours, labels, number formats and charts.

Shared by the household web app, the HTML wealth report and the notebook, so that a
figure looks the same wherever it is read:

- **Colours carry one meaning each.** Gains are green and losses red, nothing else is.
  Net worth has its own colour; assets and liabilities theirs. Each asset class, each
  currency and each linked account has a colour of its own, taken from three separate
  palettes, so a colour never means the house in one chart and GBP in the next. An
  account's colour depends only on the household's set of account ids
  (:func:`account_colours`), so the report, the web app and the notebook agree.
- **Labels are words** (:func:`label`): "Real estate", not ``real_estate``; "Demo data",
  not ``dummy``; a currency by its name in the reader's locale.
- **Numbers in the profile's locale and currency** (:func:`money`, :func:`percent`),
  through babel's CLDR data: ``£373,051.87`` for en_GB, ``132 827,19 €`` for fr_FR.
- **Charts are inline SVG** (:func:`line_chart`, :func:`column_chart`, :func:`share_bars`):
  no script, no outside request, a few kilobytes each, readable at 390 px (each chart is
  drawn twice, wide and narrow, and CSS shows the one that fits: classes ``chart-wide`` and
  ``chart-narrow``). Every point carries a ``<title>`` with the full name, the date and
  the amount with its currency, which browsers show on hover. Each chart has its own
  scale: net worth is never squashed against assets and liabilities.
"""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import (
    format_compact_currency,
    format_currency,
    format_decimal,
    format_percent,
    get_currency_name,
)

# ----------------------------------------------------------------------------- colours

GAIN = "#1a7f37"
LOSS = "#cf222e"
NEUTRAL = "#6e7781"
NET_WORTH = "#2f5fb3"
ASSETS = "#3a8f86"
LIABILITIES = "#b3541e"
CONTRIBUTIONS = "#7a6fb0"

#: each asset class's own colour (none of them green or red: those mean gain and loss)
ASSET_CLASS_COLOURS: dict[str, str] = {
    "cash": "#3b6fb6",
    "equities": "#e08a1e",
    "fixed_income": "#6cb0d6",
    "crypto": "#b05fb6",
    "real_estate": "#8d6748",
    "commodities": "#c9a227",
    "multi_asset": "#4aa5a0",
    "pension": "#5b4a9e",
    "other": "#8a8f98",
}
#: well-known currencies keep a fixed colour; any other takes one from CURRENCY_PALETTE
CURRENCY_COLOURS: dict[str, str] = {
    "GBP": "#1f3f73",
    "EUR": "#2590a8",
    "USD": "#6b7f2a",
    "CHF": "#a04a3c",
    "JPY": "#d774b5",
    "CAD": "#9b8a1c",
    "AUD": "#cf7f4f",
    "BTC": "#f2a900",
    "ETH": "#627eea",
}
CURRENCY_PALETTE: tuple[str, ...] = (
    "#7d5ba6",
    "#3e8e7e",
    "#b5838d",
    "#5c7a99",
    "#a68a64",
    "#9a6324",
    "#469990",
    "#808000",
)
#: linked accounts: a palette of their own (lighter tones, none shared with the above)
ACCOUNT_PALETTE: tuple[str, ...] = (
    "#4e79a7",
    "#f28e2b",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#a0cbe8",
    "#ffbe7d",
    "#d4a6c8",
    "#86bcb6",
    "#bab0ac",
)
SIDE_COLOURS = {"asset": ASSETS, "liability": LIABILITIES}


def _slot(key: str, size: int) -> int:
    return zlib.crc32(key.encode()) % size


def account_colours(account_ids: Iterable[str]) -> dict[str, str]:
    """A colour per linked account of the household: the same ids always give the same
    colours (ids in sorted order, each at its hash's slot or the next free one), so every
    view of one household agrees whatever subset it shows."""
    out: dict[str, str] = {}
    used: set[int] = set()
    n = len(ACCOUNT_PALETTE)
    for account_id in sorted(set(account_ids)):
        slot = _slot(account_id, n)
        if len(used) < n:
            while slot in used:
                slot = (slot + 1) % n
        used.add(slot)
        out[account_id] = ACCOUNT_PALETTE[slot]
    return out


def currency_colour(code: str) -> str:
    return CURRENCY_COLOURS.get(code) or CURRENCY_PALETTE[_slot(code, len(CURRENCY_PALETTE))]


def asset_class_colour(code: str) -> str:
    return ASSET_CLASS_COLOURS.get(code, ASSET_CLASS_COLOURS["other"])


def colour(dimension: str, code: str, accounts: Mapping[str, str] | None = None) -> str:
    """The colour of ``code`` in ``dimension`` (asset_class, currency, linked_account,
    side); ``accounts``: the household's :func:`account_colours`."""
    if dimension == "asset_class":
        return asset_class_colour(code)
    if dimension == "currency":
        return currency_colour(code)
    if dimension == "side":
        return SIDE_COLOURS.get(code, NEUTRAL)
    if dimension == "linked_account":
        if accounts and code in accounts:
            return accounts[code]
        return ACCOUNT_PALETTE[_slot(code, len(ACCOUNT_PALETTE))]
    return NEUTRAL


def sign_colour(value: Any) -> str:
    v = _num(value)
    if v is None or v == 0:
        return NEUTRAL
    return GAIN if v > 0 else LOSS


# ----------------------------------------------------------------------------- labels

ASSET_CLASS_LABELS: dict[str, str] = {
    "cash": "Cash",
    "equities": "Equities",
    "fixed_income": "Bonds",
    "crypto": "Crypto",
    "real_estate": "Real estate",
    "commodities": "Commodities",
    "multi_asset": "Mixed funds",
    "pension": "Pensions",
    "other": "Other",
}
ACCOUNT_TYPE_LABELS: dict[str, str] = {
    "depository": "Current and savings",
    "credit": "Credit card",
    "loan": "Loan",
    "investment": "Investments",
    "other": "Other",
}
PROVIDER_TITLES: dict[str, str] = {
    "dummy": "Demo data",
    "plaid": "Plaid (bank)",
    "simplefin": "SimpleFIN (bank)",
    "kraken": "Kraken",
    "binance": "Binance",
    "ccxt": "Crypto exchange",
    "google_sheets": "Google Sheet",
    "credit_agricole": "Crédit Agricole",
    "aegon_targetplan": "Aegon pension",
    "statements": "Statement files",
    "bittrex": "Bittrex (closed)",
}
SIDE_LABELS = {"asset": "Assets", "liability": "Liabilities"}
DIMENSION_LABELS = {
    "linked_account": "By account",
    "asset_class": "By asset class",
    "currency": "By currency",
}
WINDOW_LABELS = {
    "1h": "1 hour",
    "1d": "1 day",
    "1w": "1 week",
    "1m": "1 month",
    "3m": "3 months",
    "6m": "6 months",
    "1y": "1 year",
    "2y": "2 years",
    "ytd": "Year to date",
    "all": "All",
}
#: mart_linked_account_health's statuses (warehouse/report_data.py STATUS_*)
STATUS_LABELS = {
    "ok": "Up to date",
    "stale": "Stale",
    "frozen": "Frozen",
    "never succeeded": "Never succeeded",
    "never fetched": "Not fetched yet",
    "from statement": "From statements",
    "no statement yet": "No statement yet",
}


def words(code: str | None) -> str:
    """A code as words: ``crypto_currency`` -> ``Crypto currency``."""
    if not code:
        return ""
    text = str(code).replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def currency_name(code: str, locale: str = "en_GB") -> str:
    """``British pound (GBP)``; a unit CLDR does not know (a coin) is its code."""
    try:
        name = get_currency_name(code, locale=locale)
    except (UnknownLocaleError, ValueError):
        name = code
    return code if not name or name == code else f"{name} ({code})"


def label(dimension: str, code: str | None, locale: str = "en_GB", **names: str) -> str:
    """``code`` of ``dimension`` as words. ``names``: display names by code (linked
    accounts: their configured names) win over everything else."""
    if code is None:
        return "Unknown"
    if code in names:
        return names[code]
    if dimension == "asset_class":
        return ASSET_CLASS_LABELS.get(code, words(code))
    if dimension == "currency":
        return currency_name(code, locale)
    if dimension == "provider":
        return PROVIDER_TITLES.get(code, words(code))
    if dimension == "account_type":
        return ACCOUNT_TYPE_LABELS.get(code, words(code))
    if dimension == "side":
        return SIDE_LABELS.get(code, words(code))
    if dimension == "window":
        return WINDOW_LABELS.get(code, code)
    if dimension == "status":
        return STATUS_LABELS.get(code, words(code))
    return words(code)


# ----------------------------------------------------------------------------- numbers


def _num(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return None if value.is_nan() else value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or math.isinf(f):
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def known_locale(locale: str | None) -> str:
    try:
        Locale.parse(locale or "en_GB")
    except (UnknownLocaleError, ValueError, TypeError):
        return "en_GB"
    return str(locale or "en_GB")


#: what an amount reads as while the privacy switch is on
MASK = "•••••"


def money(
    value: Any,
    ccy: str,
    locale: str = "en_GB",
    *,
    signed: bool = False,
    missing: str = "—",
    mask: bool = False,
) -> str:
    """``value`` in ``ccy`` as the locale writes it; ``signed``: a + on gains; ``mask``:
    the privacy switch is on (the amount is not written at all)."""
    v = _num(value)
    if v is None:
        return missing
    if mask:
        return MASK
    try:
        text = format_currency(v, ccy, locale=locale)
    except (UnknownLocaleError, ValueError):
        text = f"{format_decimal(v, format='#,##0.00', locale='en_GB')} {ccy}"
    return ("+" + text) if signed and v > 0 else text


def compact_money(value: Any, ccy: str, locale: str = "en_GB", *, mask: bool = False) -> str:
    v = _num(value)
    if v is None:
        return "—"
    if mask:
        return MASK
    if abs(v) < 1000:
        return money(v.quantize(Decimal(1)), ccy, locale).replace(".00", "").replace(",00", "")
    try:
        return format_compact_currency(v, ccy, locale=locale, fraction_digits=1)
    except (UnknownLocaleError, ValueError):
        return f"{v:,.0f} {ccy}"


@cache
def _percent_pattern(locale: str) -> str:
    """The locale's own percent pattern (``#,##0 %`` in French) with two decimals."""
    try:
        pattern = Locale.parse(locale).percent_formats[None].pattern
    except (UnknownLocaleError, ValueError, KeyError):
        pattern = "#,##0%"
    return pattern.replace("#,##0", "#,##0.00", 1) if "0.0" not in pattern else pattern


def percent(value: Any, locale: str = "en_GB", *, signed: bool = True, missing: str = "—") -> str:
    """A ratio (0.0123) as ``+1.23%`` in the locale's way."""
    v = _num(value)
    if v is None:
        return missing
    text = format_percent(v, _percent_pattern(locale), locale=locale)
    return ("+" + text) if signed and v > 0 else text


def units(value: Any, locale: str = "en_GB") -> str:
    v = _num(value)
    if v is None:
        return "—"
    return format_decimal(v, format="#,##0.########", locale=locale)


def day_text(value: date | datetime, locale: str = "en_GB") -> str:
    d = value.date() if isinstance(value, datetime) else value
    return format_date(d, "d MMM y", locale=locale)


def month_text(value: date | datetime, locale: str = "en_GB") -> str:
    d = value.date() if isinstance(value, datetime) else value
    return format_date(d, "MMM y", locale=locale)


def hour_text(value: datetime, locale: str = "en_GB") -> str:
    return format_datetime(value, "d MMM y, HH:mm", locale=locale) + " UTC"


# ----------------------------------------------------------------------------- charts


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class Series:
    """One line: its name (words), colour and (time, value) points."""

    name: str
    colour: str
    points: Sequence[tuple[datetime, Any]]
    key: str = ""


@dataclass(frozen=True)
class Bar:
    """One bucket of :func:`share_bars`: label, colour, value, share of its side (0..1)."""

    label: str
    colour: str
    value: Any
    share: Any
    key: str = ""


@dataclass(frozen=True)
class ColumnGroup:
    """One category of :func:`column_chart` (a month): its label and values by series."""

    label: str
    values: Mapping[str, Any] = field(default_factory=dict)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi == lo:
        pad = abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def _time_ticks(t0: float, t1: float, n: int, locale: str) -> list[tuple[float, str]]:
    if t1 <= t0:
        return [(t0, day_text(_from_ts(t0), locale))]
    span_days = (t1 - t0) / 86400
    fmt = "d MMM" if span_days < 300 else "MMM y"
    if span_days < 2:
        fmt = "HH:mm"
    out = []
    for i in range(n):
        t = t0 + (t1 - t0) * i / max(n - 1, 1)
        out.append((t, format_datetime(_from_ts(t), fmt, locale=locale)))
    return out


EPOCH = datetime(1970, 1, 1)


def _ts(d: datetime) -> float:
    return (d.replace(tzinfo=None) - EPOCH).total_seconds()


def _from_ts(t: float) -> datetime:
    return EPOCH + timedelta(seconds=t)


def _fmt_num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _line_svg(
    series: Sequence[Series],
    ccy: str,
    locale: str,
    title: str,
    width: int,
    height: int,
    x_ticks: int,
    font: int,
    mask: bool = False,
) -> str:
    pts = [(s, [(t, _num(v)) for t, v in s.points]) for s in series]
    values = [float(v) for _, ps in pts for _, v in ps if v is not None]
    times = [_ts(t) for _, ps in pts for t, _ in ps]
    left, right, top, bottom = font * 5.2, 8.0, 8.0, font * 2.0
    plot_w, plot_h = width - left - right, height - top - bottom
    head = (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
        f'font-size="{font}" xmlns="http://www.w3.org/2000/svg">'
    )
    if not values:
        return (
            head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            'fill="currentColor" opacity="0.6">no data yet</text></svg>'
        )
    ticks = nice_ticks(min(values), max(values))
    y0, y1 = ticks[0], ticks[-1]
    t0, t1 = min(times), max(times)

    def x(t: float) -> float:
        return left + (plot_w * (t - t0) / (t1 - t0) if t1 > t0 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - y0) / (y1 - y0))

    out = [head]
    for tick in ticks:
        yy = _fmt_num(y(tick))
        out.append(
            f'<line x1="{_fmt_num(left)}" x2="{width - right}" y1="{yy}" y2="{yy}" '
            'stroke="currentColor" stroke-opacity="0.12"/>'
            f'<text x="{_fmt_num(left - 4)}" y="{yy}" dy="0.32em" text-anchor="end" '
            f'fill="currentColor" fill-opacity="0.7">'
            f"{esc(compact_money(tick, ccy, locale, mask=mask))}</text>"
        )
    for tt, text in _time_ticks(t0, t1, x_ticks, locale):
        anchor = "start" if tt == t0 else ("end" if tt == t1 else "middle")
        out.append(
            f'<text x="{_fmt_num(x(tt))}" y="{height - font * 0.5}" text-anchor="{anchor}" '
            f'fill="currentColor" fill-opacity="0.7">{esc(text)}</text>'
        )
    for s, ps in pts:
        segs: list[list[str]] = [[]]
        for t, v in ps:
            if v is None:
                segs.append([])
                continue
            segs[-1].append(f"{_fmt_num(x(_ts(t)))},{_fmt_num(y(float(v)))}")
        for seg in segs:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{s.colour}"/>')
            elif seg:
                out.append(
                    f'<polyline points="{" ".join(seg)}" fill="none" stroke="{s.colour}" '
                    'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>'
                )
    # hover: one transparent column per time, titled with every series' value then
    all_times = sorted({t for _, ps in pts for t, _ in ps}, key=_ts)
    if all_times:
        xs = [x(_ts(t)) for t in all_times]
        by_time = [{t: v for t, v in ps} for _, ps in pts]
        for i, t in enumerate(all_times):
            a = left if i == 0 else (xs[i - 1] + xs[i]) / 2
            b = width - right if i == len(xs) - 1 else (xs[i] + xs[i + 1]) / 2
            lines = [hour_text(t, locale) if t.hour or t.minute else day_text(t, locale)]
            for (s, _), values_at in zip(pts, by_time, strict=True):
                if t in values_at:
                    lines.append(f"{s.name}: {money(values_at[t], ccy, locale, mask=mask)}")
            out.append(
                f'<rect class="hover" x="{_fmt_num(a)}" y="{top}" '
                f'width="{_fmt_num(max(b - a, 0.5))}" '
                f'height="{_fmt_num(plot_h)}" fill="transparent"><title>{esc(chr(10).join(lines))}'
                "</title></rect>"
            )
    out.append("</svg>")
    return "".join(out)


def legend(items: Iterable[tuple[str, str]]) -> str:
    """An HTML legend: (label, colour) pairs, each with its swatch."""
    cells = "".join(
        f'<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" '
        f'rx="2" fill="{c}"/></svg>{esc(name)}</li>'
        for name, c in items
    )
    return f'<ul class="legend">{cells}</ul>'


def line_chart(
    series: Sequence[Series],
    *,
    ccy: str,
    locale: str = "en_GB",
    title: str,
    testid: str = "",
    mask: bool = False,
) -> str:
    """A time chart of ``series`` on its own scale, wide and narrow, with its legend."""
    tid = f' data-testid="{esc(testid)}"' if testid else ""
    wide = _line_svg(series, ccy, locale, title, 720, 260, 5, 12, mask)
    narrow = _line_svg(series, ccy, locale, title, 360, 220, 3, 11, mask)
    points = sum(1 for s in series for _ in s.points)
    return (
        f'<figure class="chart"{tid} data-points="{points}">'
        f'<div class="chart-wide">{wide}</div><div class="chart-narrow">{narrow}</div>'
        f"{legend((s.name, s.colour) for s in series)}</figure>"
    )


def share_bars(
    bars: Sequence[Bar],
    *,
    ccy: str,
    locale: str = "en_GB",
    title: str,
    testid: str = "",
    mask: bool = False,
) -> str:
    """Buckets as rows: swatch and label, a bar as long as the share, the amount and the
    share. HTML rows (not one picture), so they wrap at any width."""
    tid = f' data-testid="{esc(testid)}"' if testid else ""
    rows = []
    for b in bars:
        share = _num(b.share)
        pct = float(share) * 100 if share is not None else 0.0
        amount = money(b.value, ccy, locale, mask=mask)
        tip = f"{b.label}: {amount} ({percent(share, locale, signed=False)})"
        rows.append(
            f'<li data-key="{esc(b.key)}" title="{esc(tip)}">'
            f'<span class="bar-label">{esc(b.label)}</span>'
            f'<span class="bar-value">{esc(money(b.value, ccy, locale, mask=mask))}</span>'
            f'<span class="bar-share">{esc(percent(share, locale, signed=False))}</span>'
            f'<svg class="bar" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect width="100" height="6" rx="1" fill="currentColor" fill-opacity="0.08"/>'
            f'<rect width="{_fmt_num(max(min(pct, 100), 0))}" height="6" rx="1" fill="{b.colour}"/>'
            "</svg></li>"
        )
    return f'<figure class="bars"{tid} aria-label="{esc(title)}"><ul>{"".join(rows)}</ul></figure>'


def _column_svg(
    groups: Sequence[ColumnGroup],
    series: Sequence[tuple[str, str, str]],
    ccy: str,
    locale: str,
    title: str,
    width: int,
    height: int,
    font: int,
    mask: bool = False,
) -> str:
    values = [float(v) for g in groups for k, _, _ in series if (v := _num(g.values.get(k)))]
    head = (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
        f'font-size="{font}" xmlns="http://www.w3.org/2000/svg">'
    )
    if not groups:
        return (
            head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            'fill="currentColor" opacity="0.6">no data yet</text></svg>'
        )
    ticks = nice_ticks(min([0.0, *values]), max([0.0, *values]))
    y0, y1 = ticks[0], ticks[-1]
    left, right, top, bottom = font * 5.2, 8.0, 8.0, font * 2.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - y0) / (y1 - y0))

    out = [head]
    for tick in ticks:
        yy = _fmt_num(y(tick))
        out.append(
            f'<line x1="{_fmt_num(left)}" x2="{width - right}" y1="{yy}" y2="{yy}" '
            f'stroke="currentColor" stroke-opacity="{0.5 if tick == 0 else 0.12}"/>'
            f'<text x="{_fmt_num(left - 4)}" y="{yy}" dy="0.32em" text-anchor="end" '
            f'fill="currentColor" fill-opacity="0.7">'
            f"{esc(compact_money(tick, ccy, locale, mask=mask))}</text>"
        )
    slot = plot_w / len(groups)
    bar_w = slot * 0.8 / max(len(series), 1)
    label_every = max(1, math.ceil(len(groups) * font * 4 / plot_w))
    for i, g in enumerate(groups):
        gx = left + slot * i + slot * 0.1
        for j, (key, name, col) in enumerate(series):
            v = _num(g.values.get(key))
            if v is None:
                continue
            fill = sign_colour(v) if col == "sign" else col
            ya, yb = sorted((y(0.0), y(float(v))))
            out.append(
                f'<rect x="{_fmt_num(gx + j * bar_w)}" y="{_fmt_num(ya)}" '
                f'width="{_fmt_num(bar_w * 0.92)}" height="{_fmt_num(max(yb - ya, 0.5))}" '
                f'fill="{fill}"><title>{esc(g.label)}\n{esc(name)}: '
                f"{esc(money(v, ccy, locale, signed=True, mask=mask))}</title></rect>"
            )
        if i % label_every == 0:
            out.append(
                f'<text x="{_fmt_num(left + slot * (i + 0.5))}" y="{height - font * 0.5}" '
                f'text-anchor="middle" fill="currentColor" fill-opacity="0.7">{esc(g.label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def column_chart(
    groups: Sequence[ColumnGroup],
    series: Sequence[tuple[str, str, str]],
    *,
    ccy: str,
    locale: str = "en_GB",
    title: str,
    testid: str = "",
    mask: bool = False,
) -> str:
    """Grouped columns around zero: ``series`` is (key, name, colour) with colour
    ``"sign"`` for green gains and red losses (market gain against contributions)."""
    tid = f' data-testid="{esc(testid)}"' if testid else ""
    wide = _column_svg(groups, series, ccy, locale, title, 720, 240, 12, mask)
    narrow = _column_svg(groups[-6:], series, ccy, locale, title, 360, 220, 11, mask)
    swatches = [(n, GAIN if c == "sign" else c) for _, n, c in series]
    if any(c == "sign" for _, _, c in series):
        swatches = [(n, c) for n, c in swatches] + [("Loss", LOSS)]
        swatches = [(f"{n} (gain)" if c == GAIN else n, c) for n, c in swatches]
    return (
        f'<figure class="chart"{tid}><div class="chart-wide">{wide}</div>'
        f'<div class="chart-narrow">{narrow}</div>{legend(swatches)}</figure>'
    )


#: the CSS every page showing these charts needs (the web app's app.css has the same rules)
CHART_CSS = """
.chart { margin: 0; }
.chart-wide svg, .chart-narrow svg { width: 100%; height: auto; display: block;
  overflow: visible; }
.chart-narrow { display: none; }
@media (max-width: 560px) { .chart-wide { display: none; } .chart-narrow { display: block; } }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 6px 0 0;
  padding: 0; font-size: 0.85em; }
.legend li { display: inline-flex; align-items: center; gap: 5px; }
.bars { margin: 0; } .bars ul { list-style: none; margin: 0; padding: 0; }
.bars li { display: grid; grid-template-columns: 1fr auto auto; gap: 2px 10px;
  padding: 5px 0; align-items: baseline; }
.bars .bar { grid-column: 1 / -1; width: 100%; height: 8px; display: block; }
.bars .bar-label { overflow-wrap: anywhere; }
.bars .bar-value { font-variant-numeric: tabular-nums; white-space: nowrap; }
.bars .bar-share { font-variant-numeric: tabular-nums; opacity: 0.7; min-width: 4.5em;
  text-align: right; }
"""
