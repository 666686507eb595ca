"""FX rates: the ECB's euro reference rates (or the config's static table) into raw.fx_rates."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from finbot_pipelines.config.schema import FinbotConfig
from finbot_pipelines.defs.partitions import DAILY_FX_FRESHNESS
from finbot_pipelines.defs.resources import WAREHOUSE_POOL, FinbotHome
from finbot_pipelines.providers.ecb_rates import rates_for_range
from finbot_pipelines.warehouse.raw import replace_fx_rates

FX_RATES_KEY = dg.AssetKey(["market", "fx_rates"])


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def fx_rows(
    cfg: FinbotConfig, first: date, last: date, today: date
) -> tuple[list[date], list[tuple[date, str, str, float, str]]]:
    """The dates to replace and the rows to write for the partition days [first, last]."""
    if cfg.fx_source == "static":
        dates = _days(first, last)
        rows = [
            (d, "EUR", ccy, float(rate), "static")
            for d in dates
            for ccy, rate in sorted(cfg.fx_static_rates.items())
            if ccy != "EUR"
        ]
        return dates, rows
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
