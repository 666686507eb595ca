"""Ingest: one hourly-partitioned asset per enabled linked account, all fetched in one step.

The step fetches every selected account for every hour of its partition range in
parallel (timeout, retries and backoff in `providers.fetching`), then lands each
chunk of hours in the raw tables in one transaction. A failing account is
recorded in `raw.fetches` with its error code and never stops the others.
Writers of the warehouse are serialised by the `finbot_warehouse` pool.

Each account's hourly partitions are materialised only for the hours it was
fetched (or frozen): an hour whose fetch failed is left unmaterialised, so once
the run ends as failed (`defs.ingest.gate`) the partitions view shows exactly
those hours as failed. What reads the raw tables (dbt, the unit prices) depends
on `ingest/landed`, materialised once per run whatever failed, so a failed
account never stops the marts.
"""

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from finbot_pipelines.config.paths import browser_executable
from finbot_pipelines.config.schema import FinbotConfig, LinkedAccount, account_state
from finbot_pipelines.config.vault import Vault, VaultError
from finbot_pipelines.defs.ingest.checks import (
    FAILED_ACCOUNTS_TAG,
    LATEST_FETCH_CHECK,
    latest_fetch_results,
)
from finbot_pipelines.defs.partitions import HOUR_FMT, HOURLY_FRESHNESS, naive_utc
from finbot_pipelines.defs.resources import WAREHOUSE_POOL, FinbotHome
from finbot_pipelines.defs.window import impossible_hours
from finbot_pipelines.providers.fetching import (
    CredentialsUnavailable,
    FetchOutcome,
    FetchTask,
    RetryPolicy,
    iter_fetches,
)
from finbot_pipelines.providers.registry import get_provider, get_spec
from finbot_pipelines.warehouse.raw import (
    AccountHourRow,
    FetchRow,
    HourBatch,
    ItemRow,
    SubAccountRow,
    latest_cursors,
    replace_profiles,
    sub_account_rows,
    transaction_rows,
    write_hour_batch,
)

#: Hours landed per transaction: bounds memory and shows progress on long backfills.
CHUNK_HOURS = 24
#: How old an hour a provider that cannot fetch the past may still be asked for.
LIVE_GRACE = timedelta(hours=2)


#: The raw tables hold every selected account's hours of the run (failures included).
LANDED_KEY = dg.AssetKey(["ingest", "landed"])


def ingest_key(linked_account_id: str) -> dg.AssetKey:
    return dg.AssetKey(["ingest", linked_account_id])


def _hours(start: datetime, end: datetime) -> list[datetime]:
    n = int((end - start) / timedelta(hours=1))
    return [start + timedelta(hours=i) for i in range(n)]


def refuse_past_hours(
    accounts: Sequence[LinkedAccount], hours: Sequence[datetime], now: datetime
) -> None:
    """Raise a clear Failure when a live-only provider is asked for an hour in the past."""
    if not hours:
        return
    oldest = min(hours)
    limit = now.replace(minute=0, second=0, microsecond=0) - LIVE_GRACE
    if oldest >= limit:
        return
    live = [
        a
        for a in accounts
        if not a.frozen
        and get_spec(a.provider).fetched
        and not get_spec(a.provider).supports_historical
    ]
    if not live:
        return
    names = ", ".join(f"'{a.id}' ({a.provider})" for a in live)
    raise dg.Failure(
        description=(
            f"Refused: linked account(s) {names} can only be fetched live, and this run asks "
            f"for hours from {oldest:%Y-%m-%d %H:00} UTC, older than {limit:%Y-%m-%d %H:00} "
            "UTC. Providers such as these return today's balances, so a past hour cannot be "
            "fetched. Materialise only the historical-capable accounts for past hours, or "
            "rebuild the transforms from the raw history already stored."
        )
    )


def outcome_rows(
    account: LinkedAccount, outcome: FetchOutcome
) -> tuple[FetchRow, list[SubAccountRow], list[ItemRow]]:
    hour = outcome.task.hour
    fetch = FetchRow(
        fetch_hour=hour,
        profile_id=account.profile,
        linked_account_id=account.id,
        provider_id=account.provider,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        status="success" if outcome.ok else "failure",
        error_code=outcome.error_code,
        error_message=outcome.error_message,
        attempt=outcome.attempts,
        warnings=warnings_json(outcome),
    )
    subs: list[SubAccountRow] = []
    items: list[ItemRow] = []
    if outcome.snapshot is not None:
        subs, items = sub_account_rows(account.id, hour, outcome.snapshot.sub_accounts)
    return fetch, subs, items


def hour_outcome(
    fetch: FetchRow, subs: Sequence[SubAccountRow], items: Sequence[ItemRow]
) -> dict[str, Any]:
    """One hour's outcome of one account: the metadata of that partition's materialisation."""
    out: dict[str, Any] = {"status": fetch.status, "attempts": fetch.attempt}
    if fetch.status == "success":
        out["sub_accounts"] = len(subs)
        out["items"] = len(items)
        out["warnings"] = len(json.loads(fetch.warnings)) if fetch.warnings else 0
    else:
        out["error_code"] = fetch.error_code or ""
        out["error_message"] = (fetch.error_message or "")[:500]
    return out


_STATE_NOTES = {
    "frozen": " — frozen: keeps its last value",
    "statement": " — from statement files: the hour records the account; its values land "
    "from `finbot import` and the inbox at the statements' own dates",
}


def _outcome_of(
    account: LinkedAccount, hour: datetime, outcomes: Mapping[datetime, Mapping[str, Any]]
) -> dict[str, Any]:
    state = account_state(account)
    return dict(outcomes.get(hour) or {"status": state if state != "active" else "not fetched"})


def hour_materializations(
    account: LinkedAccount,
    hours: Sequence[datetime],
    outcomes: Mapping[datetime, Mapping[str, Any]],
) -> Iterator[dg.AssetMaterialization]:
    """One materialisation per hour that did not fail, with that hour's outcome as its
    metadata (not the run's totals); a failed hour stays unmaterialised, so the run's
    failure (`defs.ingest.gate`) shows it as a failed partition."""
    key = ingest_key(account.id)
    for hour in hours:
        outcome = _outcome_of(account, hour, outcomes)
        if outcome["status"] != "failure":
            yield dg.AssetMaterialization(
                asset_key=key, partition=hour.strftime(HOUR_FMT), metadata=outcome
            )


def failed_hours_summary(
    outcomes: Mapping[str, Mapping[datetime, Mapping[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Per account with failed hours: how many, the first and last, the last error code."""
    out: dict[str, dict[str, Any]] = {}
    for account_id in sorted(outcomes):
        failed = sorted(h for h, o in outcomes[account_id].items() if o["status"] == "failure")
        if not failed:
            continue
        last = outcomes[account_id][failed[-1]]
        out[account_id] = {
            "failed_hours": len(failed),
            "first_failed_hour": failed[0].strftime("%Y-%m-%d %H:00"),
            "last_failed_hour": failed[-1].strftime("%Y-%m-%d %H:00"),
            "last_error_code": last.get("error_code") or "",
        }
    return out


def warnings_json(outcome: FetchOutcome) -> str | None:
    """The warnings of a successful fetch as a JSON list of {code, message}."""
    if outcome.snapshot is None:
        return None
    return json.dumps(
        [{"code": w.code, "message": w.message} for w in outcome.snapshot.warnings],
        ensure_ascii=False,
    )


class _Credentials:
    """Resolves a linked account's credentials from the vault, only when a fetch needs them."""

    def __init__(self, finbot: FinbotHome) -> None:
        self._finbot = finbot
        self._vault: Vault | None = None

    def resolver(self, account: LinkedAccount) -> Any:
        name = account.credentials
        if not name:
            return dict

        def resolve() -> Mapping[str, Any]:
            try:
                if self._vault is None:
                    self._vault = self._finbot.vault()
                return self._vault.get_json(name)
            except VaultError as exc:
                raise CredentialsUnavailable(str(exc)) from None

        return resolve


def _policy(cfg: FinbotConfig) -> RetryPolicy:
    f = cfg.fetch
    return RetryPolicy(
        timeout_s=f.timeout_s,
        max_attempts=f.max_attempts,
        backoff_s=f.backoff_s,
        max_workers=f.max_workers,
    )


def iter_ingest_hours(
    context: dg.AssetExecutionContext,
    finbot: FinbotHome,
    cfg: FinbotConfig,
    accounts: Sequence[LinkedAccount],
    hours: Sequence[datetime],
    stats: dict[str, Counter[str]],
    latest: dict[str, tuple[str, str | None]],
    per_hour: dict[str, dict[datetime, dict[str, Any]]] | None = None,
) -> Iterator[str]:
    """Fetch and land every (hour, account); yield each account id once all its hours
    are landed, as soon as they are.

    Hours go in chunks of CHUNK_HOURS, each chunk's fetches in parallel. Earlier chunks
    land in one transaction each; in the last chunk each account lands (its own
    transaction) as soon as its last fetch answers, so an account's materialisation is
    recorded while slower accounts are still answering: N accounts cost about the
    slowest one, Dagster's bookkeeping included. ``stats`` receives per-account outcome
    counters; ``latest`` each fetched account's (status, error code) at the newest hour.
    """
    creds = _Credentials(finbot)
    policy = _policy(cfg)
    currencies = {p.id: p.valuation_ccy for p in cfg.profiles}
    priced_units = cfg.priced_units()
    debug_dir = finbot.paths.debug
    browser = browser_executable()
    for a in accounts:
        stats.setdefault(a.id, Counter())
    last_error: dict[str, str] = {}
    newest = max(hours) if hours else None
    with finbot.warehouse() as con:
        replace_profiles(con, [(p.id, p.name, p.valuation_ccy) for p in cfg.profiles])
        # a change feed resumes from the cursor stored with the newest landed transactions
        # (providers with a cursor fetch live: one hour per run)
        cursors = latest_cursors(con, [a.id for a in accounts])
        for start in range(0, len(hours), CHUNK_HOURS):
            chunk = hours[start : start + CHUNK_HOURS]
            final = start + CHUNK_HOURS >= len(hours)
            batches = {a.id: _empty_batch() for a in accounts}
            tasks: list[FetchTask] = []
            task_accounts: list[LinkedAccount] = []
            for hour in chunk:
                for a in accounts:
                    batch = batches[a.id]
                    state = account_state(a)
                    # an account not fetched (frozen, statements) keeps what was landed at
                    # the hour (a statement, a fetch from before it was frozen)
                    (batch.keys if state == "active" else batch.state_only_keys).append(
                        (hour, a.id)
                    )
                    batch.account_hours.append(
                        AccountHourRow(hour, a.profile, a.id, a.provider, a.name, state)
                    )
                    if state != "active":
                        stats[a.id][state] += 1
                        continue
                    tasks.append(
                        FetchTask(
                            hour,
                            a.id,
                            get_provider(a.provider),
                            a.options,
                            creds.resolver(a),
                            valuation_ccy=currencies.get(a.profile),
                            priced_units=priced_units,
                            debug_dir=debug_dir,
                            browser=browser,
                            state_root=finbot.paths.state,
                            transactions_cursor=cursors.get(a.id),
                        )
                    )
                    task_accounts.append(a)
            pending = Counter(a.id for a in task_accounts)
            failures = 0
            if final:  # accounts with nothing to fetch (frozen, statements) are complete
                for a in accounts:
                    if not pending[a.id]:
                        write_hour_batch(con, batches.pop(a.id))
                        yield a.id
            for index, outcome in iter_fetches(tasks, policy):
                a = task_accounts[index]
                fetch, subs, items = outcome_rows(a, outcome)
                if fetch.fetch_hour == newest:
                    latest[a.id] = (fetch.status, fetch.error_code)
                if per_hour is not None:
                    per_hour.setdefault(a.id, {})[fetch.fetch_hour] = hour_outcome(
                        fetch, subs, items
                    )
                batch = batches[a.id]
                batch.fetches.append(fetch)
                batch.sub_accounts.extend(subs)
                batch.items.extend(items)
                if outcome.snapshot is not None:
                    txns, cursor_rows = transaction_rows(a.id, fetch.fetch_hour, outcome.snapshot)
                    batch.transactions.extend(txns)
                    batch.cursors.extend(cursor_rows)
                stats[a.id]["success" if outcome.ok else "failure"] += 1
                stats[a.id]["retries"] += outcome.attempts - 1
                if not outcome.ok:
                    failures += 1
                    last_error[a.id] = f"{outcome.error_code}: {outcome.error_message}"
                pending[a.id] -= 1
                if final and not pending[a.id]:
                    write_hour_batch(con, batches.pop(a.id))
                    yield a.id
            if batches:
                write_hour_batch(con, _merge(batches.values()))
            done = min(start + CHUNK_HOURS, len(hours))
            context.log.info(
                f"progress: fetching and landing: {done}/{len(hours)} hours landed "
                f"(up to {chunk[-1]:%Y-%m-%d %H:00} UTC; {len(accounts)} accounts; "
                f"{failures} failed fetches in this chunk)"
            )
    for account_id, err in last_error.items():
        context.log.warning(f"linked account '{account_id}': last failure {err}")


def _empty_batch() -> HourBatch:
    return HourBatch(keys=[], account_hours=[], fetches=[], sub_accounts=[], items=[])


def _merge(batches: Iterable[HourBatch]) -> HourBatch:
    merged = _empty_batch()
    for b in batches:
        merged.keys.extend(b.keys)
        merged.account_hours.extend(b.account_hours)
        merged.fetches.extend(b.fetches)
        merged.sub_accounts.extend(b.sub_accounts)
        merged.items.extend(b.items)
        merged.transactions.extend(b.transactions)
        merged.cursors.extend(b.cursors)
        merged.state_only_keys.extend(b.state_only_keys)
    return merged


def ingest_hours(
    context: dg.AssetExecutionContext,
    finbot: FinbotHome,
    cfg: FinbotConfig,
    accounts: Sequence[LinkedAccount],
    hours: Sequence[datetime],
    latest: dict[str, tuple[str, str | None]] | None = None,
) -> dict[str, Counter[str]]:
    """Fetch and land every (hour, account); return per-account outcome counters."""
    stats: dict[str, Counter[str]] = {}
    for _ in iter_ingest_hours(
        context, finbot, cfg, accounts, hours, stats, {} if latest is None else latest
    ):
        pass
    return stats


def build_ingest_assets(
    cfg: FinbotConfig, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition | None:
    accounts = cfg.enabled_linked_accounts()
    if not accounts:
        return None
    specs = [
        dg.AssetSpec(
            key=ingest_key(a.id),
            description=(
                f"Hourly snapshot of the linked account '{a.name}' ({a.provider}) of profile "
                f"'{a.profile}'{_STATE_NOTES.get(account_state(a), '')}. "
                "Lands raw.fetches, raw.sub_accounts, raw.items and raw.transactions."
            ),
            group_name="ingest",
            kinds={"python", "duckdb"},
            metadata={"provider": a.provider, "profile": a.profile, "frozen": a.frozen},
            tags={"finbot/provider": a.provider, "finbot/profile": a.profile},
            partitions_def=partitions,
            skippable=True,
            freshness_policy=HOURLY_FRESHNESS,
        )
        for a in accounts
    ]
    landed = dg.AssetSpec(
        key=LANDED_KEY,
        deps=[ingest_key(a.id) for a in accounts],
        description=(
            "The raw tables (raw.fetches, raw.sub_accounts, raw.items, "
            "raw.linked_account_hours, raw.profiles) hold every selected linked account's "
            "hours of the run, failed fetches included: what dbt and the unit prices read. "
            "Materialised once per run, whatever failed; its metadata counts the failed "
            "hours of each account (those hours stay unmaterialised in the account's "
            "partitions, and the run ends as failed at `every_account_fetched`)."
        ),
        group_name="ingest",
        kinds={"duckdb"},
        skippable=True,
    )
    checks = [
        dg.AssetCheckSpec(
            LATEST_FETCH_CHECK,
            asset=ingest_key(a.id),
            description=(
                "The newest hour of this run was fetched successfully. On failure its "
                "metadata gives the error code, the (masked) message and the fix; severity "
                "ERROR when the account never succeeded or the user must act (e.g. an "
                "authentication failure), WARN otherwise."
            ),
        )
        for a in accounts
    ]

    @dg.multi_asset(
        name="ingest_linked_accounts",
        specs=[*specs, landed],
        check_specs=checks,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
    )
    def ingest_linked_accounts(
        context: dg.AssetExecutionContext, finbot: FinbotHome
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetMaterialization]:
        cfg_now = finbot.config()
        by_id = {a.id: a for a in cfg_now.enabled_linked_accounts()}
        wanted = [k.path[-1] for k in context.selected_asset_keys if k != LANDED_KEY]
        selected = [by_id[i] for i in wanted if i in by_id]
        for gone in sorted(set(wanted) - set(by_id)):
            context.log.warning(
                f"linked account '{gone}' is no longer enabled in the config: skipped"
            )
        with_landed = LANDED_KEY in context.selected_asset_keys
        if not selected:  # (only `ingest/landed` asked for: nothing to fetch)
            if with_landed:
                yield dg.MaterializeResult(asset_key=LANDED_KEY, metadata={"accounts": 0})
            return
        window = context.partition_time_window
        hours = _hours(naive_utc(window.start), naive_utc(window.end))
        now = datetime.now(UTC).replace(tzinfo=None)
        if hours:
            why = impossible_hours(hours[0], hours[-1], cfg_now.history_start, now)
            if why:
                raise dg.Failure(description=f"Refused: {why}. Nothing was fetched or written.")
        refuse_past_hours(selected, hours, now)
        latest: dict[str, tuple[str, str | None]] = {}
        stats: dict[str, Counter[str]] = {}
        newest = hours[-1] if hours else None
        by_account = {a.id: a for a in selected}
        per_hour: dict[str, dict[datetime, dict[str, Any]]] = {}
        failed: dict[str, dict[str, Any]] = {}
        # each account's materialisations and check as soon as its hours are landed
        for recorded, account_id in enumerate(
            iter_ingest_hours(context, finbot, cfg_now, selected, hours, stats, latest, per_hour)
        ):
            a = by_account[account_id]
            outcomes = per_hour.pop(a.id, {})
            if len(hours) > 1:
                context.log.info(
                    f"progress: recording: {len(hours)} hourly materialisations of '{a.id}' "
                    f"({recorded + 1}/{len(selected)} accounts)"
                )
            failed.update(failed_hours_summary({a.id: outcomes}))
            yield from hour_materializations(a, hours, outcomes)
        if failed:
            context.instance.add_run_tags(context.run_id, {FAILED_ACCOUNTS_TAG: ",".join(failed)})
        if with_landed:
            yield dg.MaterializeResult(
                asset_key=LANDED_KEY,
                metadata={
                    "accounts": len(selected),
                    "hours": len(hours),
                    "first_hour": hours[0].strftime("%Y-%m-%d %H:00") if hours else "",
                    "last_hour": hours[-1].strftime("%Y-%m-%d %H:00") if hours else "",
                    "failed_hours": sum(f["failed_hours"] for f in failed.values()),
                    "failed_accounts": dg.MetadataValue.json(failed),
                    "outcomes": dg.MetadataValue.json(
                        {
                            a.id: {
                                "provider": a.provider,
                                "successes": stats[a.id]["success"],
                                "failures": stats[a.id]["failure"],
                                "retries": stats[a.id]["retries"],
                                "frozen_hours": stats[a.id]["frozen"],
                            }
                            for a in selected
                        }
                    ),
                },
            )
        # the latest-fetch checks, from raw.fetches: message, fix, ever succeeded
        if newest is not None and selected:
            with finbot.warehouse() as con:
                checks = list(latest_fetch_results(con, selected, newest))
            yield from checks

    return ingest_linked_accounts
