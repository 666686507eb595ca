"""`every_account_fetched`: the last asset of the hourly job, failing the run when a
linked account failed an hour of it.

Dagster shows an hourly partition as failed when a failed run planned it and did not
materialise it. The ingest step leaves each account's failed hours unmaterialised
and goes on (the marts and the report are built and published from everything that
was fetched); this asset then fails the run, after the publish, so those hours turn
red in each account's partitions view and the run does not say "Success" while an
account failed. A run whose only failed step is this one published its hours
(`only_the_gate_failed`, `runs.run_published`): the command line, the notifications
and the tests treat it so.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

from finbot_pipelines.defs.ingest.assets import LANDED_KEY
from finbot_pipelines.defs.reports.assets import REPORT_KEY

GATE_KEY = dg.AssetKey(["every_account_fetched"])
#: The step (op) of the gate asset in the run's event log.
GATE_STEP = "every_account_fetched"
GATE_GROUP = "health"


def failed_accounts_sentence(failed: Mapping[str, Mapping[str, Any]]) -> str:
    """One sentence naming each failed account, its failed hours and last error code."""
    parts = []
    for account_id, f in sorted(failed.items()):
        n = int(f.get("failed_hours") or 0)
        span = (
            f"{f.get('first_failed_hour')} UTC"
            if n == 1
            else f"{f.get('first_failed_hour')} .. {f.get('last_failed_hour')} UTC"
        )
        code = f.get("last_error_code") or "error"
        parts.append(f"'{account_id}' {n} hour{'s' if n != 1 else ''} ({span}, {code})")
    return (
        "linked accounts failed in this run: "
        + "; ".join(parts)
        + ". Everything else is published; those hours show as failed in each account's "
        "partitions, and `finbot accounts list` shows each error and its fix."
    )


def _landed_metadata(instance: dg.DagsterInstance, run_id: str) -> Mapping[str, Any] | None:
    """The metadata of this run's `ingest/landed` materialisation (None if there is none)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=LANDED_KEY), limit=20
    ).records
    for record in records:
        if record.run_id == run_id and record.asset_materialization is not None:
            return {
                k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()
            }
    return None


def build_gate_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=GATE_KEY,
        deps=[REPORT_KEY],
        group_name=GATE_GROUP,
        kinds={"python"},
        description=(
            "Fails the run, after the marts and the report are published, when a linked "
            "account failed an hour of it: the failure names each account, its failed "
            "hours and error code, and those hours show as failed in the account's "
            "partitions view. Succeeds when every selected account was fetched (or frozen) "
            "for every hour."
        ),
    )
    def every_account_fetched(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        meta = _landed_metadata(context.instance, context.run_id)
        if meta is None:
            return dg.MaterializeResult(metadata={"checked": "no ingest in this run"})
        failed = meta.get("failed_accounts") or {}
        if failed:
            raise dg.Failure(
                description=failed_accounts_sentence(failed),
                metadata={
                    "failed_accounts": dg.MetadataValue.json(dict(failed)),
                    "failed_hours": int(meta.get("failed_hours") or 0),
                },
                allow_retries=False,
            )
        return dg.MaterializeResult(
            metadata={"accounts": int(meta.get("accounts") or 0), "hours": meta.get("hours", 0)}
        )

    return every_account_fetched


def only_the_gate_failed(step_failures: Iterable[str]) -> bool:
    """Whether a failed run whose failed steps are ``step_failures`` failed only at the
    gate: some accounts failed, everything else ran and was published."""
    return set(step_failures) == {GATE_STEP}
