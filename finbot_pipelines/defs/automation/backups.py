"""The backup job and its daily schedule: raw history and config into $FINBOT_HOME/backups/.

The backup op takes the `finbot_warehouse` pool slot like every step that opens the
warehouse, so it waits for a running pipeline step to finish and no step of a run can
find the file locked by it (DuckDB: while a process has the file open read-write no
other process can open it, and a reader blocks a writer's open). `finbot backup` runs
the same job in-process.
"""

from pathlib import Path

import dagster as dg

from finbot_pipelines.defs.resources import WAREHOUSE_POOL, FinbotHome
from finbot_pipelines.warehouse.backup import BackupError, WarehouseLost, write_backup

BACKUP_JOB = "finbot_backup"
BACKUP_STEP = "finbot_backup_op"  # not the job's name: Dagster wants op and graph names apart


class BackupConfig(dg.Config):
    """dest: the directory the backup is written in (empty: $FINBOT_HOME/backups/, where
    the config's backups_kept newest are kept); with_vault: also copy the encrypted vault
    (never its key)."""

    dest: str = ""
    with_vault: bool = False


@dg.op(
    name=BACKUP_STEP,
    pool=WAREHOUSE_POOL,
    out=dg.Out(str, description="the path of the backup written"),
    description="Back up the warehouse's raw history and the config (the vault when asked), "
    "read in one transaction while holding the warehouse pool slot.",
)
def backup_op(context: dg.OpExecutionContext, config: BackupConfig, finbot: FinbotHome) -> str:
    paths = finbot.paths
    cfg = finbot.config()
    dest = Path(config.dest) if config.dest else None
    default = dest is None or dest.expanduser().resolve() == paths.home / "backups"
    try:
        result = write_backup(
            paths,
            dest,
            with_vault=config.with_vault,
            keep=cfg.backups_kept if default else None,
        )
    except (BackupError, WarehouseLost) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.log.info(
        f"progress: backed up {result.extent.describe()} to {result.path}"
        + (f"; deleted {len(result.pruned)} older backup(s)" if result.pruned else "")
    )
    context.log_event(
        dg.AssetObservation(
            asset_key=dg.AssetKey(["finbot_backup"]),
            metadata={
                "path": dg.MetadataValue.path(str(result.path)),
                "hours": result.extent.hours,
                "warehouse_id": result.extent.warehouse_id or "",
                "with_vault": result.with_vault,
                "pruned": len(result.pruned),
            },
        )
    )
    return str(result.path)


@dg.job(
    name=BACKUP_JOB,
    description="Back up the raw history and the config into $FINBOT_HOME/backups/ (the "
    "config's backups_kept newest are kept); `finbot restore` rebuilds a home from one.",
)
def backup_job() -> None:
    backup_op()


backup_schedule = dg.ScheduleDefinition(
    name="finbot_backup_daily_schedule",
    job=backup_job,
    cron_schedule="35 3 * * *",
    execution_timezone="UTC",
    description="Every day at 03:35 UTC (between two hourly runs): back up the raw history "
    "and the config into $FINBOT_HOME/backups/.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
