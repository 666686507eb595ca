"""The `latest_fetch_succeeded` check of each linked account's ingest asset.

Evaluated from `raw.fetches` once the step has landed every account: the newest
hour's fetch (status, code, masked message), whether the account ever succeeded,
and the fix of its error code (`providers.fixes`). It fails:
- with severity ERROR when the account never succeeded (no data at all: it is
  missing from every total) or when the error will not pass by itself
  (authentication, credentials, options, retired provider: the user must act);
- with severity WARN for a failure that usually passes (transient, timeout, rate
  limit, provider error): the last good data is carried, marked stale.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import duckdb

from finbot_pipelines.config.schema import LinkedAccount, account_state
from finbot_pipelines.providers.fixes import fix_for, needs_action

LATEST_FETCH_CHECK = "latest_fetch_succeeded"
#: Run tag: the linked accounts that failed in the run (an hour of it, or its latest
#: fetch), comma-separated.
FAILED_ACCOUNTS_TAG = "finbot/failed_accounts"


@dataclass(frozen=True)
class LatestFetch:
    """What raw.fetches says of one account after the run."""

    status: str  # success | failure | frozen | missing
    error_code: str | None
    error_message: str | None
    last_success_hour: datetime | None
    consecutive_failures: int


def read_latest_fetches(
    con: duckdb.DuckDBPyConnection, accounts: Sequence[LinkedAccount], newest: datetime
) -> dict[str, LatestFetch]:
    """Each account's fetch at ``newest``, its last success and its failures since then."""
    ids = [a.id for a in accounts]
    if not ids:
        return {}
    rows = con.execute(
        """
        with wanted as (select unnest($ids::varchar[]) as linked_account_id),
        last_ok as (
            select linked_account_id, max(fetch_hour) as last_success_hour
            from raw.fetches
            where status = 'success' and linked_account_id in (select * from wanted)
            group by 1
        ),
        failures as (
            select f.linked_account_id, count(*) as n
            from raw.fetches f left join last_ok using (linked_account_id)
            where f.status = 'failure' and f.linked_account_id in (select * from wanted)
              and (last_ok.last_success_hour is null or f.fetch_hour > last_ok.last_success_hour)
            group by 1
        )
        select w.linked_account_id, f.status, f.error_code, f.error_message,
               last_ok.last_success_hour, coalesce(failures.n, 0)
        from wanted w
        left join raw.fetches f
            on f.linked_account_id = w.linked_account_id and f.fetch_hour = $newest
        left join last_ok on last_ok.linked_account_id = w.linked_account_id
        left join failures on failures.linked_account_id = w.linked_account_id
        """,
        {"ids": ids, "newest": newest},
    ).fetchall()
    states = {a.id: account_state(a) for a in accounts}
    out: dict[str, LatestFetch] = {}
    for acc, status, code, message, last_ok, failures in rows:
        state = states.get(str(acc), "active")
        out[str(acc)] = LatestFetch(
            status=str(status) if status else (state if state != "active" else "missing"),
            error_code=code,
            error_message=message,
            last_success_hour=last_ok,
            consecutive_failures=int(failures),
        )
    return out


def latest_fetch_result(
    account: LinkedAccount, newest: datetime, latest: LatestFetch
) -> dg.AssetCheckResult:
    """The check result of one account (see the module docstring)."""
    passed = latest.status in ("success", "frozen", "statement")
    never = latest.last_success_hour is None
    metadata: dict[str, dg.RawMetadataValue] = {
        "hour": f"{newest:%Y-%m-%d %H:00}",
        "status": latest.status,
        "error_code": latest.error_code or "",
        "last_success_hour": (
            f"{latest.last_success_hour:%Y-%m-%d %H:00}" if latest.last_success_hour else "never"
        ),
        "consecutive_failures": latest.consecutive_failures,
    }
    severity = dg.AssetCheckSeverity.WARN
    if not passed:
        metadata["message"] = latest.error_message or ""
        metadata["fix"] = fix_for(
            latest.error_code,
            account.id,
            provider_id=account.provider,
            credentials=account.credentials,
            profile_id=account.profile,
        )
        if never or needs_action(latest.error_code):
            severity = dg.AssetCheckSeverity.ERROR
    elif never and latest.status == "frozen":
        metadata["note"] = "frozen without any successful fetch: it has no value"
    elif never and latest.status == "statement":
        metadata["note"] = (
            f"no statement landed yet: it has no value (drop a statement file into "
            f"inbox/{account.id}/ or run `finbot import FILE --account {account.id}`)"
        )
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(["ingest", account.id]),
        check_name=LATEST_FETCH_CHECK,
        passed=passed,
        severity=severity,
        description=(
            None
            if passed
            else (
                f"{'never fetched successfully' if never else 'latest fetch failed'}: "
                f"{latest.error_code or latest.status}"
            )
        ),
        metadata=metadata,
    )


def latest_fetch_results(
    con: duckdb.DuckDBPyConnection, accounts: Sequence[LinkedAccount], newest: datetime
) -> Iterator[dg.AssetCheckResult]:
    """The check result of every account, once their hours are landed."""
    latest = read_latest_fetches(con, accounts, newest)
    for a in accounts:
        yield latest_fetch_result(a, newest, latest[a.id])
