"""Statement files into the warehouse: the `ingest/statements` asset, its job and the inbox
sensor.

The rules of a landing are in :mod:`finbot_pipelines.warehouse.statement_import`. Here:

- ``ingest/statements`` lands the files of one run: those `finbot import` names (run
  config ``account`` and ``files``: the files stay where they are), or else every file
  waiting in the statements accounts' inboxes (``$FINBOT_HOME/inbox/<id>/``: each moves
  to ``inbox/done/<id>/`` once landed, or to ``inbox/rejected/<id>/`` with a
  ``.reason.txt`` note). Its metadata lists every file's outcome; its check
  ``statements_landed`` fails (severity ERROR) when a file was rejected, so the run shows
  it.
- ``finbot_statements`` runs it, then the dbt build and the publish: the build rebuilds
  from the earliest hour a statement changed (``finbot_control.pending_rebuild``).
- ``statements_inbox_sensor`` looks at the inboxes every minute and asks for a run when a
  file waits there (a file modified in the last few seconds waits for the next look: it
  may still be being written).
"""

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from finbot_pipelines.config.loading import load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.defs.market.assets import FX_COVERAGE_KEY
from finbot_pipelines.defs.resources import WAREHOUSE_POOL, FinbotHome
from finbot_pipelines.defs.window import window_tags
from finbot_pipelines.warehouse.statement_import import (
    FileOutcome,
    import_file,
    import_inbox,
    last_complete_hour,
    statement_accounts,
    waiting_files,
)

STATEMENTS_KEY = dg.AssetKey(["ingest", "statements"])
STATEMENTS_JOB = "finbot_statements"
STATEMENTS_CHECK = "statements_landed"
#: A file modified this recently may still be being written: the next look takes it.
SETTLE_SECONDS = 5.0
#: Transform groups the statements job rebuilds after landing (as the transform job).
_TRANSFORM_GROUPS = ("staging", "intermediate", "marts", "reports")


class StatementsImportConfig(dg.Config):
    """``account`` and ``files``: land these files for that account (`finbot import`);
    empty: every file waiting in the inboxes."""

    account: str | None = None
    files: list[str] = []


def outcomes_metadata(outcomes: list[tuple[str, FileOutcome]]) -> dict[str, Any]:
    counts = {s: sum(1 for _, o in outcomes if o.status == s) for s in ("landed", "rejected")}
    already = sum(1 for _, o in outcomes if o.status == "already imported")
    return {
        "landed": counts["landed"],
        "already_imported": already,
        "rejected": counts["rejected"],
        "files": dg.MetadataValue.json([{"account": a, **o.as_json()} for a, o in outcomes]),
    }


def build_statements_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=STATEMENTS_KEY,
        group_name="statements",
        kinds={"python", "duckdb"},
        pool=WAREHOUSE_POOL,
        description="Statement files of the `statements` accounts (OFX/QFX, CSV) landed: "
        "their balances and positions at the statement's own date, their transactions. "
        "The files `finbot import` names, else every file waiting in inbox/<account>/.",
        check_specs=[
            dg.AssetCheckSpec(
                STATEMENTS_CHECK,
                asset=STATEMENTS_KEY,
                description="Every statement file of the run landed (or was landed before); "
                "a rejected one names the file and the line.",
            )
        ],
    )
    def statements(
        context: dg.AssetExecutionContext, finbot: FinbotHome, config: StatementsImportConfig
    ) -> dg.MaterializeResult:
        cfg = finbot.config()
        paths = finbot.paths
        outcomes: list[tuple[str, FileOutcome]] = []
        with finbot.warehouse() as con:
            if config.account is not None:
                account = next((a for a in cfg.linked_accounts if a.id == config.account), None)
                if account is None or account.provider != "statements":
                    raise dg.Failure(
                        description=f"'{config.account}' is not a statements linked account"
                    )
                for name in config.files:
                    outcomes.append((account.id, import_file(con, account, Path(name))))
            else:
                outcomes = import_inbox(con, cfg, paths.inbox)
        for account_id, o in outcomes:
            line = f"statement {o.file} of '{account_id}': {o.status}"
            if o.status == "rejected":
                context.log.warning(f"{line}: {o.message}")
            else:
                context.log.info(line + (f" ({o.moved_to})" if o.moved_to else ""))
        rejected = [o for _, o in outcomes if o.status == "rejected"]
        return dg.MaterializeResult(
            metadata=outcomes_metadata(outcomes),
            check_results=[
                dg.AssetCheckResult(
                    check_name=STATEMENTS_CHECK,
                    passed=not rejected,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=None
                    if not rejected
                    else "; ".join(f"rejected: {o.message}" for o in rejected)[:2000],
                )
            ],
        )

    return statements


def build_statements_job() -> Any:
    return dg.define_asset_job(
        STATEMENTS_JOB,
        selection=dg.AssetSelection.assets(STATEMENTS_KEY, FX_COVERAGE_KEY)
        | dg.AssetSelection.groups(*_TRANSFORM_GROUPS),
        description="Land statement files (the inbox, or the files `finbot import` names), "
        "then rebuild and publish the marts from the earliest hour they changed.",
    )


def inbox_run_key(paths: HomePaths, account_ids: list[str], now: datetime) -> tuple[str, int]:
    """A key of what waits in the inboxes (names, sizes, times) and the hour, and how many
    settled files wait; a file modified in the last SETTLE_SECONDS is not counted yet."""
    parts: list[str] = [f"{now:%Y-%m-%d %H}"]
    n = 0
    for account_id in account_ids:
        for path in waiting_files(paths.inbox, account_id):
            st = path.stat()
            if now.timestamp() - st.st_mtime < SETTLE_SECONDS:
                continue
            parts.append(f"{account_id}/{path.name}:{st.st_size}:{st.st_mtime_ns}")
            n += 1
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24], n


def build_statements_sensor(home: str) -> dg.SensorDefinition:
    @dg.sensor(
        job_name=STATEMENTS_JOB,
        name="statements_inbox_sensor",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When statement files wait in $FINBOT_HOME/inbox/<account>/, land them "
        "(finbot_statements): done/ once landed, rejected/ with a note otherwise.",
    )
    def statements_inbox_sensor(
        context: dg.SensorEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason:
        paths = HomePaths.resolve(home)
        if not paths.config.exists():
            return dg.SkipReason("no finbot.yaml")
        try:
            cfg = load_config(paths.config)
        except Exception as exc:
            return dg.SkipReason(f"the configuration does not load: {exc}")
        ids = [a.id for a in statement_accounts(cfg)]
        if not ids:
            return dg.SkipReason("no statements linked account")
        now = datetime.now(UTC).replace(tzinfo=None)
        key, n = inbox_run_key(paths, ids, now)
        if not n:
            return dg.SkipReason("no statement file waiting")
        last = last_complete_hour(now)
        return dg.RunRequest(run_key=f"statements-{key}", tags=window_tags(last, last))

    return statements_inbox_sensor
