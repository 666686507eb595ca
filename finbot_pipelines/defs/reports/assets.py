"""The wealth report asset: one self-contained HTML page per profile after each publish."""

import dagster as dg

from finbot_pipelines.defs.partitions import HOURLY_FRESHNESS
from finbot_pipelines.defs.reports.html import (
    KEEP_DAILY_REPORTS,
    KEEP_MONTHLY_REPORTS,
    net_worth_png,
    summary_markdown,
    write_reports,
)
from finbot_pipelines.defs.resources import FinbotHome
from finbot_pipelines.defs.transform.publish import PUBLISHED_KEY
from finbot_pipelines.warehouse.report_data import num

REPORT_KEY = dg.AssetKey(["wealth_report"])
#: Dated copies kept per profile: every day of the last 31 days (each well under 1 MB)...
KEEP_DAILY_REPORTS_DAYS = KEEP_DAILY_REPORTS
#: ... and the last copy of each of the last 24 months.
KEEP_MONTHLY_REPORTS_MONTHS = KEEP_MONTHLY_REPORTS


def build_report_asset() -> dg.AssetsDefinition:
    """`wealth_report`: reads the published marts (never the warehouse), so it needs no
    pool slot; a run over many hours renders once, from the latest published hour."""

    @dg.asset(
        key=REPORT_KEY,
        deps=[PUBLISHED_KEY],
        group_name="reports",
        kinds={"html"},
        freshness_policy=HOURLY_FRESHNESS,
        description=(
            "One self-contained HTML wealth report per profile (inline SVG charts, no "
            "script library, works offline and by e-mail, under 1 MB) in "
            "$FINBOT_HOME/reports/: <profile>.html, the latest, and "
            f"<profile>-<YYYY-MM-DD>.html, one per day for the last {KEEP_DAILY_REPORTS} "
            f"days and the last of each month for {KEEP_MONTHLY_REPORTS} months. Built from "
            "the published marts at each profile's latest valued hour, in the profile's "
            "locale and currency."
        ),
    )
    def wealth_report(
        context: dg.AssetExecutionContext, finbot: FinbotHome
    ) -> dg.MaterializeResult:
        paths = finbot.paths
        cfg = finbot.config()
        written = write_reports(
            paths,
            profile_names={p.id: p.name for p in cfg.profiles},
            locales={p.id: p.locale for p in cfg.profiles},
            configured=cfg.linked_accounts,
            prune=True,
        )
        for w in written:
            context.log.info(f"wealth report of {w.profile_id}: {w.latest}")
        png = net_worth_png([w.data for w in written]) if written else None
        metadata: dict[str, dg.RawMetadataValue] = {
            "summary": dg.MetadataValue.md(summary_markdown(written, png)),
            "reports_dir": dg.MetadataValue.path(str(paths.reports)),
            "profiles": len(written),
        }
        for w in written:
            metadata[f"{w.profile_id}/report"] = dg.MetadataValue.path(str(w.latest))
            metadata[f"{w.profile_id}/daily_report"] = dg.MetadataValue.path(str(w.dated))
            metadata[f"{w.profile_id}/valuation_hour"] = w.data.valuation_hour.isoformat(
                timespec="minutes"
            )
            net_worth = num(w.data.net_worth)
            if net_worth is not None:
                metadata[f"{w.profile_id}/net_worth"] = dg.MetadataValue.float(net_worth)
        return dg.MaterializeResult(metadata=metadata)

    return wealth_report
