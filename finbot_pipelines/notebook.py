"""Notebook helpers: the published marts, read-only, drawn in finbot's visual language.

``notebooks/wealth_analysis.ipynb`` (``./finbotctl notebook``) uses these so its matplotlib
charts look like the report and the web app: net worth in its own colour on its own
axes, each account, asset class and currency in the colour :mod:`finbot_pipelines.visual`
gives it, labels as words, gains green and losses red, amounts in the profile's currency
and locale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from finbot_pipelines import visual
from finbot_pipelines.config.loading import load_config
from finbot_pipelines.config.paths import HomePaths

#: matplotlib settings of every finbot figure (quiet axes, no top and right spines)
RC: dict[str, Any] = {
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "axes.titlelocation": "left",
    "axes.titleweight": "bold",
    "legend.frameon": False,
    "figure.dpi": 96,
}


def style() -> None:
    """Apply finbot's quiet axes to matplotlib, and the account palette as the colour
    cycle of any line drawn without a colour (call once, first)."""
    import matplotlib as mpl
    from cycler import cycler

    params: Any = mpl.rcParams  # typed by literal keys only
    params.update(RC)
    params["axes.prop_cycle"] = cycler(color=list(visual.ACCOUNT_PALETTE))


def connect(home: str | Path | None = None) -> tuple[duckdb.DuckDBPyConnection, HomePaths]:
    """A read-only connection to the published marts of ``home`` (default ``$FINBOT_HOME``
    or ``.finbot/`` in the checkout): never the pipeline's warehouse, never a writer."""
    paths = HomePaths.resolve(home)
    if not paths.published.exists():
        raise FileNotFoundError(
            f"{paths.published} does not exist yet: run `./finbotctl demo` first"
        )
    con = duckdb.connect(str(paths.published), read_only=True)
    # the marts name their Parquet files relative to the home: resolve them there
    con.execute("set file_search_path = ?", [str(paths.home)])
    return con, paths


def household(paths: HomePaths) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(locale by profile, account colour by id, account name by id) from finbot.yaml:
    the colours are those of every configured account, as the web app and report use."""
    if not paths.config.exists():
        return {}, {}, {}
    cfg = load_config(paths.config)
    locales = {p.id: p.locale for p in cfg.profiles}
    colours = visual.account_colours(a.id for a in cfg.linked_accounts)
    names = {a.id: a.name for a in cfg.linked_accounts}
    return locales, colours, names


def money_formatter(ccy: str, locale: str = "en_GB") -> Any:
    """A matplotlib tick formatter writing compact amounts (``£375K``)."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _pos: visual.compact_money(x, ccy, locale))


def _dates(ax: Any) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def plot_net_worth(
    ax: Any, df: pd.DataFrame, ccy: str, locale: str = "en_GB", title: str = ""
) -> None:
    """Net worth alone, in its own colour, on its own scale (``df``: valuation_hour,
    net_worth)."""
    ax.plot(df["valuation_hour"], df["net_worth"], color=visual.NET_WORTH, linewidth=2)
    ax.set_title(title or "Net worth")
    ax.yaxis.set_major_formatter(money_formatter(ccy, locale))
    _dates(ax)


def plot_assets_liabilities(
    ax: Any, df: pd.DataFrame, ccy: str, locale: str = "en_GB", title: str = ""
) -> None:
    """Assets and liabilities (negative) on their own axes."""
    ax.plot(df["valuation_hour"], df["total_assets"], color=visual.ASSETS, label="Assets")
    ax.plot(
        df["valuation_hour"],
        df["total_liabilities"],
        color=visual.LIABILITIES,
        label="Liabilities",
    )
    ax.axhline(0, color=visual.NEUTRAL, linewidth=0.8)
    ax.set_title(title or "Assets and liabilities")
    ax.yaxis.set_major_formatter(money_formatter(ccy, locale))
    ax.legend(loc="best")
    _dates(ax)


def plot_accounts(
    ax: Any,
    df: pd.DataFrame,
    ccy: str,
    colours: Mapping[str, str],
    locale: str = "en_GB",
    title: str = "",
) -> None:
    """One line per linked account (``df``: valuation_hour, linked_account_id,
    linked_account_name, value), each in its household colour."""
    for la_id, grp in df.groupby("linked_account_id", sort=True):
        name = grp["linked_account_name"].dropna()
        ax.plot(
            grp["valuation_hour"],
            grp["value"],
            color=visual.colour("linked_account", str(la_id), colours),
            label=str(name.iloc[-1]) if not name.empty else str(la_id),
        )
    ax.set_title(title or "By linked account")
    ax.yaxis.set_major_formatter(money_formatter(ccy, locale))
    ax.legend(loc="best", fontsize="small")
    _dates(ax)


def plot_shares(
    ax: Any,
    df: pd.DataFrame,
    dimension: str,
    locale: str = "en_GB",
    colours: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
    title: str = "",
) -> None:
    """Horizontal bars of each bucket's share of the assets (``df``: bucket, share), in
    the bucket's colour, labelled in words."""
    rows = df.sort_values("share", ascending=True)
    labels = [visual.label(dimension, str(b), locale, **dict(names or {})) for b in rows["bucket"]]
    bar_colours = [visual.colour(dimension, str(b), colours) for b in rows["bucket"]]
    ax.barh(labels, rows["share"].astype(float) * 100, color=bar_colours)
    ax.set_xlabel("% of assets")
    ax.grid(axis="y", visible=False)
    ax.set_title(title or visual.DIMENSION_LABELS.get(dimension, visual.words(dimension)))


def plot_gains(
    ax: Any,
    labels: Sequence[str],
    values: Sequence[Any],
    ccy: str,
    locale: str = "en_GB",
    title: str = "",
) -> None:
    """Columns around zero: gains green, losses red."""
    vals = [float(v) if v is not None and not pd.isna(v) else 0.0 for v in values]
    ax.bar(list(labels), vals, color=[visual.sign_colour(v) for v in vals])
    ax.axhline(0, color=visual.NEUTRAL, linewidth=0.8)
    ax.yaxis.set_major_formatter(money_formatter(ccy, locale))
    ax.grid(axis="x", visible=False)
    ax.set_title(title)


def plot_contributions(
    ax: Any,
    contributions: Any,
    market_gain: Any,
    ccy: str,
    locale: str = "en_GB",
    title: str = "",
) -> None:
    """Money put in (its own colour) against what it earned (green gain, red loss)."""
    c = float(contributions) if contributions is not None else 0.0
    g = float(market_gain) if market_gain is not None else 0.0
    ax.bar(
        ["Contributions", "Market gain"],
        [c, g],
        color=[visual.CONTRIBUTIONS, visual.sign_colour(g)],
    )
    ax.axhline(0, color=visual.NEUTRAL, linewidth=0.8)
    ax.yaxis.set_major_formatter(money_formatter(ccy, locale))
    ax.grid(axis="x", visible=False)
    ax.set_title(title or "Contributions and market gain")


def words_frame(df: pd.DataFrame, locale: str = "en_GB", **names: str) -> pd.DataFrame:
    """``df`` with its code columns (asset_class, currency, provider, bucket with a
    dimension column) written as words, for display."""
    out = df.copy()
    for col in ("asset_class", "currency", "provider"):
        if col in out:
            out[col] = [visual.label(col, v, locale) if isinstance(v, str) else v for v in out[col]]
    if "bucket" in out and "dimension" in out:
        out["bucket"] = [
            visual.label(str(d), b, locale, **names) if isinstance(b, str) else b
            for d, b in zip(out["dimension"], out["bucket"], strict=True)
        ]
        out["dimension"] = [
            visual.DIMENSION_LABELS.get(str(d), visual.words(d)) for d in out["dimension"]
        ]
    return out
