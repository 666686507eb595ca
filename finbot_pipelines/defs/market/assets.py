"""Market data: FX rates (the ECB's euro reference rates, or the config's static table)
into raw.fx_rates, and prices of non-ISO units (CoinGecko, or the config's static table)
into raw.unit_prices."""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg

from finbot_pipelines.config.schema import FinbotConfig
from finbot_pipelines.defs.partitions import DAILY_FX_FRESHNESS
from finbot_pipelines.defs.resources import WAREHOUSE_POOL, FinbotHome
from finbot_pipelines.defs.window import impossible_hours, window_from_tags
from finbot_pipelines.providers.coingecko import fetch_prices
from finbot_pipelines.providers.contract import FIAT_CODES, ProviderError
from finbot_pipelines.providers.ecb_rates import rates_for_range
from finbot_pipelines.warehouse.build_window import last_build, latest_ingested_hour
from finbot_pipelines.warehouse.raw import (
    replace_fx_rates,
    replace_unit_prices,
    units_needing_prices,
)

FX_RATES_KEY = dg.AssetKey(["market", "fx_rates"])


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _static_rows(
    cfg: FinbotConfig, days: Sequence[date]
) -> list[tuple[date, str, str, float, str]]:
    return [
        (d, "EUR", ccy, float(rate), "static")
        for d in days
        for ccy, rate in sorted(cfg.fx_static_rates.items())
        if ccy != "EUR"
    ]


def fx_rows(
    cfg: FinbotConfig, first: date, last: date, today: date
) -> tuple[list[date], list[tuple[date, str, str, float, str]]]:
    """The dates to replace and the rows to write for the partition days [first, last]."""
    if cfg.fx_source == "static":
        dates = _days(first, last)
        return dates, _static_rows(cfg, dates)
    rates = rates_for_range(cfg.fx_ecb_base_url, first, last, today)
    dates = sorted({r.rate_date for r in rates})
    return dates, [(r.rate_date, "EUR", r.quote_ccy, r.rate, "ecb") for r in rates]


def build_fx_asset(partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=FX_RATES_KEY,
        group_name="market",
        kinds={"python", "duckdb"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        description=(
            "Euro reference rates (1 EUR = rate quote currency) by publication date, from the "
            "European Central Bank or, with `fx_source: static`, from the config's table. "
            "Weekends and holidays have no rows: an hour uses the last rate on or before its date."
        ),
        freshness_policy=DAILY_FX_FRESHNESS,
        retry_policy=dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL),
    )
    def fx_rates(context: dg.AssetExecutionContext, finbot: FinbotHome) -> dg.MaterializeResult:
        cfg = finbot.config()
        window = context.partition_time_window
        first = window.start.date()
        last = (window.end - timedelta(days=1)).date()
        today = datetime.now(UTC).date()
        dates, rows = fx_rows(cfg, first, last, today)
        with finbot.warehouse() as con:
            replace_fx_rates(con, dates, rows)
        currencies = sorted({r[2] for r in rows})
        return dg.MaterializeResult(
            metadata={
                "source": cfg.fx_source,
                "rows": len(rows),
                "dates_written": len(dates),
                "newest_rate_date": str(max(dates)) if dates else "none",
                "currencies": ", ".join(currencies),
            }
        )

    return fx_rates


# --------------------------------------------------------------------------- unit prices

UNIT_PRICES_KEY = dg.AssetKey(["market", "unit_prices"])
#: CoinGecko gives current prices: they are written only for hours this recent.
LIVE_PRICE_GRACE = timedelta(hours=2)
#: The currency CoinGecko prices are asked in (FX converts them to each profile's).
COINGECKO_QUOTE = "USD"


@dataclass(frozen=True)
class UnitPriceRows:
    rows: list[tuple[datetime, str, str, Decimal, str]]
    #: units the valuation needs that got no price this run (no id, not in the answer,
    #: or the hours are too old for a live price)
    unpriced: list[str]
    error: str | None = None


def needed_units(units: Iterable[str], cfg: FinbotConfig) -> list[str]:
    """The codes among ``units`` that take their value from a unit price (not FX)."""
    return sorted({u for u in units if u not in FIAT_CODES} | set(cfg.unit_prices))


def unit_price_rows(
    cfg: FinbotConfig,
    hours: Sequence[datetime],
    units: Sequence[str],
    now: datetime,
    session: Any = None,
) -> UnitPriceRows:
    """The prices to write for ``hours`` (naive UTC): the static table at every hour;
    with CoinGecko, the other ``units`` at the hours no older than LIVE_PRICE_GRACE
    (a current price says nothing about a past hour, which keeps its earlier price)."""
    rows: list[tuple[datetime, str, str, Decimal, str]] = []
    for hour in hours:
        for unit, quote in sorted(cfg.unit_prices.items()):
            ((ccy, price),) = quote.items()
            rows.append((hour, unit, ccy, Decimal(repr(price)), "static"))
    live_units = [u for u in units if u not in cfg.unit_prices]
    if cfg.unit_price_source != "coingecko" or not live_units:
        return UnitPriceRows(rows, [] if cfg.unit_price_source == "coingecko" else live_units)
    now_hour = now.replace(minute=0, second=0, microsecond=0)
    live_hours = [h for h in hours if now_hour - LIVE_PRICE_GRACE <= h <= now_hour]
    if not live_hours:
        return UnitPriceRows(rows, live_units)
    import requests

    own = session is None
    http = session if session is not None else requests.Session()
    try:
        prices = fetch_prices(
            http,
            live_units,
            COINGECKO_QUOTE,
            base_url=cfg.coingecko_base_url,
            ids=cfg.coingecko_ids,
        )
    except ProviderError as exc:
        return UnitPriceRows(rows, live_units, f"{exc.code}: {exc}")
    finally:
        if own:
            http.close()
    for hour in live_hours:
        for unit in sorted(prices):
            p = prices[unit]
            rows.append((hour, unit, p.quote_ccy, p.price, "coingecko"))
    return UnitPriceRows(rows, [u for u in live_units if u not in prices])


def _run_hours(con: Any, tags: Mapping[str, str]) -> list[datetime]:
    """The run's hours (its partition range or window tags), else every ingested hour."""
    window = window_from_tags(tags)
    if window is None:
        rows = con.execute(
            "select distinct fetch_hour from raw.linked_account_hours order by 1"
        ).fetchall()
        return [r[0] for r in rows]
    return [window.first + timedelta(hours=i) for i in range(window.hours)]


def build_unit_prices_asset(ingest_keys: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """Unpartitioned, like the dbt models: the run's hours come from its tags
    (`defs.window`), so a month's backfill books one event here, not 720."""

    @dg.asset(
        key=UNIT_PRICES_KEY,
        group_name="market",
        kinds={"python", "duckdb"},
        pool=WAREHOUSE_POOL,
        deps=list(ingest_keys),
        description=(
            "Prices of the non-ISO units the household holds (crypto, tokens, Plaid's "
            "unofficial currencies) that its providers did not value: 1 unit = price quote "
            "currency, as of each hour of the run. From the config's static `unit_prices` "
            "table at every hour, and, with `unit_price_source: coingecko`, CoinGecko's "
            "simple-price endpoint for the current hour (a past hour keeps its earlier price)."
        ),
    )
    def unit_prices(context: dg.AssetExecutionContext, finbot: FinbotHome) -> dg.MaterializeResult:
        cfg = finbot.config()
        with finbot.warehouse() as con:
            hours = _run_hours(con, context.run.tags)
            units = needed_units(units_needing_prices(con), cfg)
            result = unit_price_rows(cfg, hours, units, datetime.now(UTC).replace(tzinfo=None))
            replace_unit_prices(con, result.rows)
        if result.error:
            context.log.warning(
                f"unit prices: CoinGecko failed ({result.error}); the hours keep their last "
                "known prices"
            )
        if result.unpriced:
            context.log.warning(
                "unit prices: no price for "
                + ", ".join(result.unpriced)
                + " (add them to unit_prices or coingecko_ids in finbot.yaml); their items "
                "stay unvalued where no earlier price exists"
            )
        return dg.MaterializeResult(
            metadata={
                "source": cfg.unit_price_source,
                "hours": len(hours),
                "rows": len(result.rows),
                "units": ", ".join(units) or "none",
                "unpriced": ", ".join(result.unpriced) or "none",
                "error": result.error or "",
            }
        )

    return unit_prices


# --------------------------------------------------------------------------- FX coverage

FX_COVERAGE_KEY = dg.AssetKey(["market", "fx_coverage"])
#: With the ECB, a window is covered when a rate was published this close before it
#: (a long weekend with holidays is 4 days without a publication).
ECB_COVERAGE_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True)
class FxCoverage:
    dates: list[date]
    rows: list[tuple[date, str, str, float, str]]
    error: str | None = None


def fx_coverage(
    cfg: FinbotConfig,
    existing: Sequence[tuple[date, str, str, float, str]],
    first: date,
    last: date,
    today: date,
) -> FxCoverage:
    """The FX rows to land so that the days [first, last] can be valued.

    Static: every day of [first, last] holds exactly the config's table (a day whose
    rows differ, e.g. after the table changed, is replaced). ECB: when no ECB rate is
    dated within the week before ``first`` up to ``last`` (a fresh or a lost
    warehouse), the ECB's rates for the range are fetched; otherwise the daily FX job
    keeps them (``existing``: the rows already stored for that range)."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    if cfg.fx_source == "static":
        wanted = _static_rows(cfg, days)
        have: dict[date, set[tuple[str, float, str]]] = {}
        for d, _, ccy, rate, source in existing:
            have.setdefault(d, set()).add((ccy, float(rate), source))
        want: dict[date, set[tuple[str, float, str]]] = {}
        for d, _, ccy, rate, source in wanted:
            want.setdefault(d, set()).add((ccy, rate, source))
        stale = [d for d in days if have.get(d, set()) != want.get(d, set())]
        return FxCoverage(stale, [r for r in wanted if r[0] in set(stale)])
    lo = first - ECB_COVERAGE_LOOKBACK
    if any(lo <= d <= last and source == "ecb" for d, _, _, _, source in existing):
        return FxCoverage([], [])
    try:
        rates = rates_for_range(cfg.fx_ecb_base_url, first, min(last, today), today)
    except ProviderError as exc:
        return FxCoverage([], [], f"{exc.code}: {exc}")
    dates = sorted({r.rate_date for r in rates})
    return FxCoverage(dates, [(r.rate_date, "EUR", r.quote_ccy, r.rate, "ecb") for r in rates])


def _static_table_changed(con: Any, cfg: FinbotConfig) -> bool:
    """Whether the static FX table differs from the one the last build valued with (or
    nothing was built yet): only then are the days outside the run's window checked."""
    built = last_build(con)
    if built is None:
        return True
    previous = json.loads(built[1]).get("fx_static_rates")
    return bool(previous != cfg.valuation_settings()["fx_static_rates"])


def build_fx_coverage_asset() -> dg.AssetsDefinition:
    """No dependency on the ingest assets on purpose: the rates depend on the run's hours,
    not on what was fetched, and an unpartitioned asset downstream of the hourly ingest
    costs Dagster a lookup per stored hour (0.5 s a run after a year of history)."""

    @dg.asset(
        key=FX_COVERAGE_KEY,
        group_name="market",
        kinds={"python", "duckdb"},
        pool=WAREHOUSE_POOL,
        description=(
            "Makes sure the FX rates the run's hours need are landed before the transform: "
            "with `fx_source: static`, every day of the history holds the config's table "
            "(re-landed when the table changes); with the ECB, a range without any rate (a "
            "fresh or a lost warehouse) gets the ECB's rates. The daily FX job keeps the ECB "
            "rates current; this step only fills what is missing."
        ),
    )
    def fx_coverage_asset(
        context: dg.AssetExecutionContext, finbot: FinbotHome
    ) -> dg.MaterializeResult:
        cfg = finbot.config()
        window = window_from_tags(context.run.tags)
        now = datetime.now(UTC).replace(tzinfo=None)
        if window is not None:
            why = impossible_hours(window.first, window.last, cfg.history_start, now)
            if why:  # the ingest refuses these hours too: land nothing for them
                context.log.warning(f"FX coverage: nothing landed: {why}")
                return dg.MaterializeResult(metadata={"source": cfg.fx_source, "skipped": why})
        today = now.date()
        with finbot.warehouse() as con:
            newest = latest_ingested_hour(con)
            first_raw = con.execute(
                "select min(fetch_hour) from raw.linked_account_hours"
            ).fetchone()
            start = first_raw[0] if first_raw and first_raw[0] is not None else None
            if window is not None:
                first, last = window.first.date(), window.last.date()
            else:
                first = (start or cfg.history_start).date()
                last = (newest or datetime.now(UTC).replace(tzinfo=None)).date()
            if cfg.fx_source == "static" and start is not None and _static_table_changed(con, cfg):
                first = min(first, start.date())  # a changed table revalues the whole history
            existing = con.execute(
                "select rate_date, base_ccy, quote_ccy, rate, source from raw.fx_rates "
                "where rate_date between ? and ?",
                [first - ECB_COVERAGE_LOOKBACK, last],
            ).fetchall()
            coverage = fx_coverage(cfg, existing, first, last, today)
            if coverage.dates:
                replace_fx_rates(con, coverage.dates, coverage.rows)
        if coverage.error:
            context.log.warning(
                f"FX coverage: the ECB could not be read ({coverage.error}); hours without a "
                "rate stay unvalued until the daily FX job lands one"
            )
        elif coverage.dates:
            context.log.info(
                f"FX coverage: landed the {cfg.fx_source} rates of {len(coverage.dates)} day(s) "
                f"({min(coverage.dates)} .. {max(coverage.dates)})"
            )
        return dg.MaterializeResult(
            metadata={
                "source": cfg.fx_source,
                "days_written": len(coverage.dates),
                "rows": len(coverage.rows),
                "error": coverage.error or "",
            }
        )

    return fx_coverage_asset
