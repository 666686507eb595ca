"""Publish: after each build, the marts go to the readers' file `$FINBOT_HOME/finbot.duckdb`."""

from collections.abc import Sequence

import dagster as dg

from finbot_pipelines.defs.partitions import HOURLY_FRESHNESS
from finbot_pipelines.defs.resources import WAREHOUSE_POOL, FinbotHome
from finbot_pipelines.warehouse.publish import publish_marts

PUBLISHED_KEY = dg.AssetKey(["published_marts"])


def build_publish_asset(mart_keys: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=PUBLISHED_KEY,
        deps=list(mart_keys),
        group_name="marts",
        kinds={"duckdb"},
        pool=WAREHOUSE_POOL,
        freshness_policy=HOURLY_FRESHNESS,
        description=(
            "The marts, copied to $FINBOT_HOME/finbot.duckdb (schema `marts`) for readers: "
            "a new file renamed into place, so a reader never blocks a run nor sees half an hour."
        ),
    )
    def published_marts(finbot: FinbotHome) -> dg.MaterializeResult:
        paths = finbot.paths
        cfg = finbot.config()
        result = publish_marts(paths.warehouse, paths.published, cfg.fx_source)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(result.path)),
                "published_at": result.published_at.isoformat(timespec="seconds"),
                "fx_source": cfg.fx_source,
                **{f"rows/{name}": n for name, n in result.tables.items()},
            }
        )

    return published_marts
