"""Publish: after each build, the marts go to the readers' file `$FINBOT_HOME/finbot.duckdb`."""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from finbot_pipelines.defs.partitions import HOURLY_FRESHNESS
from finbot_pipelines.defs.resources import WAREHOUSE_POOL, FinbotHome
from finbot_pipelines.defs.transform.assets import DBT_STEP
from finbot_pipelines.defs.window import HourWindow, window_from_tags
from finbot_pipelines.warehouse.build_window import build_of_run
from finbot_pipelines.warehouse.publish import publish_marts

PUBLISHED_KEY = dg.AssetKey(["published_marts"])


def full_refresh(run_config: Mapping[str, Any]) -> bool:
    """Whether this run's dbt build was a --full-refresh (every hour rebuilt)."""
    node: Any = run_config
    for key in ("ops", DBT_STEP, "config", "full_refresh"):
        if not isinstance(node, Mapping):
            return False
        node = node.get(key)
    return bool(node)


def build_publish_asset(mart_keys: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=PUBLISHED_KEY,
        deps=list(mart_keys),
        group_name="marts",
        kinds={"duckdb"},
        pool=WAREHOUSE_POOL,
        freshness_policy=HOURLY_FRESHNESS,
        description=(
            "The marts for readers: $FINBOT_HOME/finbot.duckdb (schema `marts`), a small new "
            "catalog file renamed into place at each publish, with the hourly marts as views "
            "over immutable Parquet files in $FINBOT_HOME/published/ (only the periods the run "
            "rebuilt are rewritten) and the small marts as tables. A reader never blocks a run "
            "nor sees half an hour."
        ),
    )
    def published_marts(
        context: dg.AssetExecutionContext, finbot: FinbotHome
    ) -> dg.MaterializeResult:
        paths = finbot.paths
        cfg = finbot.config()
        # the hours the dbt build of this run rebuilt (its window and every later hour, or
        # every hour): only their periods are rewritten
        with finbot.warehouse() as con:
            built = build_of_run(con, context.run.run_id)
        if built is not None:
            window = built[0]
        else:  # no dbt step in this run: what its tags asked for
            asked = (
                None if full_refresh(context.run.run_config) else window_from_tags(context.run.tags)
            )
            window = None if asked is None else (asked.first, asked.last)
        result = publish_marts(paths.warehouse, paths.published, cfg.fx_source, window=window)
        shown = "everything" if result.full or window is None else str(HourWindow(*window))
        context.log.info(
            f"published {shown}: "
            f"{result.files_written} file(s) written, {result.files_deleted} deleted"
        )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(result.path)),
                "published_at": result.published_at.isoformat(timespec="seconds"),
                "fx_source": cfg.fx_source,
                "full": result.full,
                "files_written": result.files_written,
                "files_deleted": result.files_deleted,
                **{f"rows/{name}": n for name, n in result.tables.items()},
                **{f"rows_written/{name}": n for name, n in result.rows_written.items()},
            }
        )

    return published_marts
