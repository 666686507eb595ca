"""The visual language (finbot_pipelines/visual.py): pure functions, no Dagster."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta
from decimal import Decimal
from xml.etree import ElementTree

import pytest

from finbot_pipelines import visual as v
from finbot_pipelines.providers.contract import ACCOUNT_TYPES, ASSET_CLASSES
from finbot_pipelines.providers.registry import provider_ids


def test_one_colour_one_meaning() -> None:
    """Gains green, losses red, and no asset class, currency or account shares a colour
    with another family or with gain and loss."""
    families = [
        set(v.ASSET_CLASS_COLOURS.values()),
        set(v.CURRENCY_COLOURS.values()) | set(v.CURRENCY_PALETTE),
        set(v.ACCOUNT_PALETTE),
        {v.GAIN, v.LOSS, v.NET_WORTH, v.ASSETS, v.LIABILITIES, v.CONTRIBUTIONS},
    ]
    for i, a in enumerate(families):
        for b in families[i + 1 :]:
            assert not a & b
    assert len(set(v.ASSET_CLASS_COLOURS.values())) == len(v.ASSET_CLASS_COLOURS)
    assert set(v.ASSET_CLASS_COLOURS) == set(ASSET_CLASSES)
    green, red = int(v.GAIN[3:5], 16), int(v.LOSS[1:3], 16)
    assert green > int(v.GAIN[1:3], 16) and red > int(v.LOSS[3:5], 16)


def test_account_colours_are_stable_and_distinct() -> None:
    ids = ["alice-bank", "alice-house", "alice-mortgage", "alice-crypto", "bruno-bank"]
    first = v.account_colours(ids)
    assert first == v.account_colours(list(reversed(ids)))
    assert len(set(first.values())) == len(ids)
    assert v.colour("linked_account", "alice-house", first) == first["alice-house"]


def test_labels_are_words() -> None:
    for code in ASSET_CLASSES:
        assert "_" not in v.label("asset_class", code)
    for code in ACCOUNT_TYPES:
        assert "_" not in v.label("account_type", code)
    for pid in provider_ids():
        assert "_" not in v.label("provider", pid), pid
    assert v.label("asset_class", "real_estate") == "Real estate"
    assert v.label("provider", "dummy") == "Demo data"
    assert v.label("currency", "GBP") == "British Pound (GBP)"
    assert v.label("currency", "EUR", "fr_FR") == "euro (EUR)"
    assert v.label("linked_account", "x", x="My bank") == "My bank"
    assert v.words("crypto_currency") == "Crypto currency"


@pytest.mark.parametrize(
    ("value", "ccy", "locale", "signed", "expected"),
    [
        (Decimal("373051.87"), "GBP", "en_GB", False, "£373,051.87"),
        (Decimal("132827.19"), "EUR", "fr_FR", False, "132\u202f827,19\xa0€"),
        (Decimal("-219.37"), "GBP", "en_GB", True, "-£219.37"),
        (Decimal("12.5"), "GBP", "en_GB", True, "+£12.50"),
        (None, "GBP", "en_GB", False, "—"),
        (float("nan"), "GBP", "en_GB", False, "—"),
    ],
)
def test_money_in_the_locale(
    value: object, ccy: str, locale: str, signed: bool, expected: str
) -> None:
    assert v.money(value, ccy, locale, signed=signed) == expected


def test_percent() -> None:
    assert v.percent(Decimal("-0.0045")) == "-0.45%"
    assert v.percent(0.0301, "fr_FR") == "+3,01\xa0%"


@pytest.mark.parametrize(("lo", "hi"), [(369_000, 373_051.87), (-5, 12), (0.5, 0.5), (-900, -100)])
def test_nice_ticks_cover_the_range(lo: float, hi: float) -> None:
    ticks = v.nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi
    steps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1


def _svgs(fragment: str) -> list[ElementTree.Element]:
    return [
        ElementTree.fromstring(m.group(0))
        for m in re.finditer(r"<svg viewBox.*?</svg>", fragment, flags=re.S)
    ]


def test_a_line_uses_its_own_scale_and_titles_carry_the_currency() -> None:
    """Net worth between 370,000 and 373,000: its line spans most of the plot height
    (not a flat line at the top of a 0..400k axis), and hovering names the amount."""
    start = datetime(2026, 11, 1)
    values = [Decimal(370_000 + 100 * i) for i in range(31)]
    pts = [(start + timedelta(days=i), x) for i, x in enumerate(values)]
    html = v.line_chart(
        [v.Series("Net worth", v.NET_WORTH, pts)], ccy="GBP", title="Net worth", testid="nw"
    )
    assert 'data-testid="nw"' in html
    for svg in _svgs(html):
        height = float(svg.get("viewBox", "").split()[3])
        line = svg.find("{http://www.w3.org/2000/svg}polyline")
        assert line is not None
        ys = [float(p.split(",")[1]) for p in (line.get("points") or "").split()]
        assert (max(ys) - min(ys)) > 0.5 * height
        titles = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title")]
        assert len(titles) == len(pts)
        assert titles[-1].endswith("Net worth: £373,000.00")
    assert "Net worth" in html.split('<ul class="legend">')[1]


def test_share_bars_and_columns() -> None:
    bars = [
        v.Bar("Real estate", v.asset_class_colour("real_estate"), Decimal("300000"), 0.75),
        v.Bar("Cash", v.asset_class_colour("cash"), Decimal("100000"), 0.25),
    ]
    html = v.share_bars(bars, ccy="EUR", locale="fr_FR", title="Assets")
    assert "300\u202f000,00\xa0€" in html and "75,00\xa0%" in html
    assert 'width="75"' in html and 'width="25"' in html
    groups = [
        v.ColumnGroup("Oct", {"flows": Decimal("100"), "gain": Decimal("-50")}),
        v.ColumnGroup("Nov", {"flows": Decimal("0"), "gain": Decimal("20")}),
    ]
    cols = v.column_chart(
        groups,
        [("flows", "Contributions", v.CONTRIBUTIONS), ("gain", "Market gain", "sign")],
        ccy="GBP",
        title="Performance",
    )
    svg = _svgs(cols)[0]
    fills = [r.get("fill") for r in svg.iter("{http://www.w3.org/2000/svg}rect")]
    assert fills.count(v.LOSS) == 1 and fills.count(v.GAIN) == 1
    assert "Market gain: -£50.00" in cols
