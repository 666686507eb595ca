"""Notifications through apprise: a daily digest, failing/recovered linked accounts, failed runs.

Every pipeline run (hourly or transform), however it was launched, ends in
`notify_run_outcome(instance, run_id, home)`, called by the command line right
after its run (`runs.run_job`) and by the run-status sensors of the daemon, so a
`finbot run` from cron notifies as a scheduled run does. For each run, exactly once
(a file lock in the home and the run tag `finbot/notified`, checked under it), it:
- tags the run `finbot/failed_accounts=a,b` with the linked accounts whose
  `latest_fetch_succeeded` check failed in the run (the ingest step already named
  those that failed any hour of it);
- after a run that published (it succeeded, or failed only at the gate
  `every_account_fetched` because some accounts failed), `after_successful_run`
  reads the published marts and notifies once when a linked account has failed
  for `failure_threshold_hours` consecutive hours, and once when it recovers, and
  sends the daily digest (net worth, 1-day change, accounts not up to date with
  their last error and its fix) after the first run of each UTC day;
- after a failed run, notifies once per streak of failed runs (the next successful
  run ends the streak).
What was already sent is kept in `$FINBOT_HOME/notifications.json`. Messages are
built from the marts and the run's check results only (error messages there were
masked at fetch time), and a URL may take a secret from the vault as
``{secret:NAME}``: neither a URL nor a secret ever appears in a message, a log line
or an error.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.schema import FinbotConfig, LinkedAccount
from finbot_pipelines.config.vault import Vault
from finbot_pipelines.defs.automation.jobs import HOURLY_JOB, TRANSFORM_JOB
from finbot_pipelines.defs.ingest.checks import FAILED_ACCOUNTS_TAG, LATEST_FETCH_CHECK
from finbot_pipelines.defs.ingest.gate import only_the_gate_failed
from finbot_pipelines.providers.fixes import fix_for
from finbot_pipelines.warehouse.queries import open_published

__all__ = ["FAILED_ACCOUNTS_TAG", "NOTIFIED_TAG", "notify_run_outcome"]

#: Run tag: set once the run's outcome was handled (tagged, notified); its value says when.
NOTIFIED_TAG = "finbot/notified"
#: The jobs whose runs are notified.
PIPELINE_JOBS = (HOURLY_JOB, TRANSFORM_JOB)

_SECRET_REF = re.compile(r"\{secret:([A-Za-z0-9][A-Za-z0-9_.-]{0,127})\}")


class NotificationError(Exception):
    """Sending failed; the message never includes the URL (it may hold a token)."""


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    kind: str = "info"  # info | success | warning | failure


# --------------------------------------------------------------------------- content


def _money(value: float | None, ccy: str) -> str:
    return "n/a" if value is None else f"{value:,.2f} {ccy}"


def _fix(
    account_id: str, code: str | None, accounts: Mapping[str, LinkedAccount], profile_id: str
) -> str:
    a = accounts.get(account_id)
    return fix_for(
        code,
        account_id,
        provider_id=a.provider if a else None,
        credentials=a.credentials if a else None,
        profile_id=profile_id,
    )


def digest_message(
    published: Path, fx_source: str, accounts: Mapping[str, LinkedAccount] | None = None
) -> Message:
    """Each profile's net worth at its latest hour, its 1-day change, and the accounts not
    up to date (carried from an older fetch, or never successful) with their last error
    and its fix. ``accounts``: finbot.yaml's linked accounts by id, for the fixes."""
    known = dict(accounts or {})
    with open_published(published) as con:
        profiles = con.execute(
            """
            select p.profile_id, p.valuation_hour, p.valuation_ccy, p.net_worth,
                   p.total_liabilities, c.change_abs, c.change_rel
            from marts.fct_profile_valuation_hourly p
            left join marts.fct_valuation_changes c
              on c.level = 'profile' and c.entity_id = p.profile_id
             and c.profile_id = p.profile_id and c.valuation_hour = p.valuation_hour
             and c.change_window = '1d'
            qualify row_number() over (partition by p.profile_id order by p.valuation_hour desc) = 1
            order by p.profile_id
            """
        ).fetchall()
        stale = con.execute(
            """
            with latest as (
                select l.profile_id, l.linked_account_id, l.is_stale, l.stale_hours,
                       l.account_state
                from marts.fct_linked_account_valuation_hourly l
                where l.valuation_hour = (
                    select max(valuation_hour) from marts.fct_profile_valuation_hourly p
                    where p.profile_id = l.profile_id)
            )
            select profile_id, linked_account_id, latest.stale_hours,
                   h.last_error_code, h.last_error_message, h.last_success_hour,
                   h.last_attempt_hour
            from latest
            full join marts.mart_linked_account_health h using (profile_id, linked_account_id)
            -- a statements account's value is its newest statement's: not behind for that
            where coalesce(latest.is_stale, true)
              and not coalesce(latest.account_state = 'statement' and latest.stale_hours >= 0,
                               false)
            order by 1, 2
            """
        ).fetchall()
    lines = []
    for pid, hour, ccy, net, liabilities, change_abs, change_rel in profiles:
        if change_abs is None:
            change = "1-day change n/a"
        else:
            rel = "" if change_rel is None else f" ({change_rel:+.2%})"
            change = f"1-day change {change_abs:+,.2f} {ccy}{rel}"
        lines.append(
            f"{pid}: net worth {_money(net, ccy)} at {hour:%Y-%m-%d %H:00} UTC; {change}; "
            f"liabilities {_money(liabilities, ccy)}"
        )
    if stale:
        lines.append("Accounts not up to date:")
        for pid, acc, hours, code, message, last_ok, last_attempt in stale:
            if last_ok is None and last_attempt is not None:
                what = "never fetched successfully: no value, not in the totals"
            elif hours is None:
                what = "no value at the latest hour"
            else:
                what = f"last good data {hours} h old"
            if code:
                lines.append(f"  {pid}/{acc}: {what} ({code}: {message or ''})")
                lines.append(f"    fix: {_fix(acc, code, known, pid)}")
            else:
                lines.append(f"  {pid}/{acc}: {what} (frozen or not yet fetched)")
    else:
        lines.append("Every linked account is up to date.")
    if fx_source == "static":
        lines.append("FX: static rates from finbot.yaml, not market rates.")
    return Message("finbot daily digest", "\n".join(lines), "info")


def account_health(published: Path) -> list[dict[str, Any]]:
    with open_published(published) as con:
        cur = con.execute("select * from marts.mart_linked_account_health order by all")
        cols = [d[0] for d in cur.description or []]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def health_transitions(
    health: Sequence[Mapping[str, Any]],
    failing: set[str],
    threshold: int,
    accounts: Mapping[str, LinkedAccount] | None = None,
) -> tuple[list[Message], set[str]]:
    """Messages for accounts that crossed the threshold or recovered; the new failing set.

    ``accounts``: finbot.yaml's linked accounts by id, for the fix of each failure."""
    messages: list[Message] = []
    now_failing = set(failing)
    for row in health:
        key = f"{row['profile_id']}/{row['linked_account_id']}"
        failures = int(row["consecutive_failures"] or 0)
        if failures >= threshold and key not in failing:
            now_failing.add(key)
            if row["last_success_hour"] is None:
                carried = (
                    "It has never been fetched successfully: it has no value and is not in "
                    "the totals."
                )
            else:
                carried = (
                    f"Its last good data, from {row['last_success_hour']:%Y-%m-%d %H:00} UTC, "
                    "is carried and marked stale."
                )
            fix = _fix(
                str(row["linked_account_id"]),
                row["last_error_code"],
                accounts or {},
                str(row["profile_id"]),
            )
            messages.append(
                Message(
                    f"finbot: {key} is failing",
                    f"Linked account {key} has failed for {failures} consecutive hours "
                    f"({row['last_error_code']}: {row['last_error_message']}). {carried} "
                    f"Fix: {fix}.",
                    "failure",
                )
            )
        elif failures == 0 and key in failing:
            now_failing.discard(key)
            messages.append(
                Message(
                    f"finbot: {key} recovered",
                    f"Linked account {key} was fetched successfully at "
                    f"{row['last_success_hour']:%Y-%m-%d %H:00} UTC.",
                    "success",
                )
            )
    # accounts removed from the config stop being tracked
    present = {f"{r['profile_id']}/{r['linked_account_id']}" for r in health}
    return messages, now_failing & present


# --------------------------------------------------------------------------- sending


def resolve_urls(urls: Sequence[str], vault: Callable[[], Vault]) -> list[str]:
    """Replace every ``{secret:NAME}`` by the vault's value (the vault opens only if needed)."""
    if not any(_SECRET_REF.search(u) for u in urls):
        return list(urls)
    opened = vault()
    return [_SECRET_REF.sub(lambda m: opened.get(m.group(1)), u) for u in urls]


def send(urls: Sequence[str], message: Message) -> None:
    import apprise

    notifier = apprise.Apprise()
    for i, url in enumerate(urls):
        if not notifier.add(url):
            raise NotificationError(f"notification URL #{i + 1} is not a valid apprise URL")
    kinds = {
        "info": apprise.NotifyType.INFO,
        "success": apprise.NotifyType.SUCCESS,
        "warning": apprise.NotifyType.WARNING,
        "failure": apprise.NotifyType.FAILURE,
    }
    if not notifier.notify(body=message.body, title=message.title, notify_type=kinds[message.kind]):
        raise NotificationError(f"could not deliver '{message.title}' to every notification URL")


# --------------------------------------------------------------------------- state + entry


def _state_path(paths: HomePaths) -> Path:
    return paths.home / "notifications.json"


def _load_state(paths: HomePaths) -> dict[str, Any]:
    try:
        return dict(json.loads(_state_path(paths).read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _save_state(paths: HomePaths, state: Mapping[str, Any]) -> None:
    tmp = _state_path(paths).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, _state_path(paths))


def after_successful_run(
    paths: HomePaths,
    cfg: FinbotConfig,
    now: datetime | None = None,
    sender: Callable[[Sequence[str], Message], None] = send,
) -> list[Message]:
    """Send what is due after a successful run; return the messages sent."""
    settings = cfg.notifications
    if not settings.urls or not paths.published.exists():
        return []
    now = now or datetime.now(UTC).replace(tzinfo=None)
    state = _load_state(paths)
    accounts = {a.id: a for a in cfg.linked_accounts}
    messages, failing = health_transitions(
        account_health(paths.published),
        set(state.get("failing", [])),
        settings.failure_threshold_hours,
        accounts,
    )
    today = now.date().isoformat()
    if settings.daily_digest and state.get("digest_date") != today:
        messages.append(digest_message(paths.published, cfg.fx_source, accounts))
    if not messages:
        return []
    urls = resolve_urls(settings.urls, lambda: Vault.open(paths.home))
    for message in messages:
        sender(urls, message)
    if settings.daily_digest and any(m.title == "finbot daily digest" for m in messages):
        state["digest_date"] = today
    state["failing"] = sorted(failing)
    _save_state(paths, state)
    return messages


# --------------------------------------------------------------------------- each run


@dataclass(frozen=True)
class FailedAccount:
    """A linked account whose `latest_fetch_succeeded` check failed in a run."""

    linked_account_id: str
    error_code: str
    message: str
    fix: str
    last_success_hour: str


def failed_accounts_of_run(instance: dg.DagsterInstance, run_id: str) -> list[FailedAccount]:
    """The accounts whose latest-fetch check failed in the run, from its event log."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    out: dict[str, FailedAccount] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data if event else None
        if not isinstance(data, dg.AssetCheckEvaluation) or data.check_name != LATEST_FETCH_CHECK:
            continue
        account = data.asset_key.path[-1]
        if data.passed:
            out.pop(account, None)
            continue
        meta = {k: getattr(v, "value", v) for k, v in (data.metadata or {}).items()}
        out[account] = FailedAccount(
            account,
            str(meta.get("error_code") or meta.get("status") or ""),
            str(meta.get("message") or ""),
            str(meta.get("fix") or ""),
            str(meta.get("last_success_hour") or ""),
        )
    return [out[k] for k in sorted(out)]


def run_failed_message(
    run: dg.DagsterRun, failed_steps: Sequence[str], failed: Sequence[FailedAccount]
) -> Message:
    """What a failed run says: its job, id and failed steps (never an error text, which
    may quote anything), and the accounts that failed in it with their fixes."""
    lines = [
        f"The {run.job_name} run {run.run_id} failed"
        + (f" at {', '.join(failed_steps)}" if failed_steps else "")
        + ": the published marts keep the previous hours. The run's page in the Dagster UI "
        "shows the error."
    ]
    lines += _failed_account_lines(failed)
    return Message(f"finbot: a {run.job_name} run failed", "\n".join(lines), "failure")


def _failed_account_lines(failed: Sequence[FailedAccount]) -> list[str]:
    lines = []
    if failed:
        lines.append("Linked accounts whose latest fetch failed:")
    for f in failed:
        never = " (never succeeded)" if f.last_success_hour == "never" else ""
        lines.append(f"  {f.linked_account_id}{never}: {f.error_code}: {f.message}")
        if f.fix:
            lines.append(f"    fix: {f.fix}")
    return lines


def _failed_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    steps = {r.event_log_entry.step_key for r in records if r.event_log_entry.step_key}
    return sorted(steps)


@contextmanager
def _home_lock(paths: HomePaths) -> Iterator[None]:
    """One process at a time handles run outcomes in a home (CLI and daemon alike)."""
    paths.home.mkdir(parents=True, exist_ok=True)
    with open(paths.home / "notifications.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def notify_run_outcome(
    instance: dg.DagsterInstance,
    run_id: str,
    home: str | Path | None = None,
    *,
    now: datetime | None = None,
    sender: Callable[[Sequence[str], Message], None] = send,
    job_names: Sequence[str] = PIPELINE_JOBS,
) -> list[Message] | None:
    """Handle the end of one pipeline run, exactly once, whoever calls first.

    Tags the run with its failed accounts (`finbot/failed_accounts`), sends what is
    due (see the module docstring), then tags it `finbot/notified`. Returns the
    messages sent, or None when the run was handled already, is not finished or is not
    a pipeline run. A delivery error propagates and leaves the run without
    `finbot/notified` (what was sent before it is remembered in notifications.json).
    """
    from finbot_pipelines.config.loading import load_config

    paths = HomePaths.resolve(home)
    with _home_lock(paths):
        run = instance.get_run_by_id(run_id)
        if run is None or run.job_name not in job_names or NOTIFIED_TAG in run.tags:
            return None
        if run.status not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
            return None
        failed = failed_accounts_of_run(instance, run_id)
        tagged = {a for a in run.tags.get(FAILED_ACCOUNTS_TAG, "").split(",") if a}
        named = tagged | {f.linked_account_id for f in failed}
        if named != tagged:
            instance.add_run_tags(run_id, {FAILED_ACCOUNTS_TAG: ",".join(sorted(named))})
        cfg = load_config(paths.config)
        now = now or datetime.now(UTC).replace(tzinfo=None)
        if run.status == dg.DagsterRunStatus.SUCCESS or only_the_gate_failed(
            _failed_steps(instance, run_id)
        ):
            messages = after_successful_run(paths, cfg, now, sender)
            state = _load_state(paths)
            if state.pop("run_failing", None) is not None:
                _save_state(paths, state)
        else:
            messages = _after_failed_run(paths, cfg, run, failed, sender, instance)
        instance.add_run_tags(
            run_id, {NOTIFIED_TAG: f"{now:%Y-%m-%dT%H:%M}Z, {len(messages)} message(s)"}
        )
        return messages


def _after_failed_run(
    paths: HomePaths,
    cfg: FinbotConfig,
    run: dg.DagsterRun,
    failed: Sequence[FailedAccount],
    sender: Callable[[Sequence[str], Message], None],
    instance: dg.DagsterInstance,
) -> list[Message]:
    state = _load_state(paths)
    if not cfg.notifications.urls or state.get("run_failing"):
        return []
    message = run_failed_message(run, _failed_steps(instance, run.run_id), failed)
    urls = resolve_urls(cfg.notifications.urls, lambda: Vault.open(paths.home))
    sender(urls, message)
    state["run_failing"] = run.run_id
    _save_state(paths, state)
    return [message]


def build_notification_sensor(
    home: str, job_names: Sequence[str], status: dg.DagsterRunStatus = dg.DagsterRunStatus.SUCCESS
) -> dg.SensorDefinition:
    """The daemon's side of `notify_run_outcome`, for runs that end with ``status``."""
    ok = status == dg.DagsterRunStatus.SUCCESS

    @dg.run_status_sensor(
        run_status=status,
        name="finbot_notifications_sensor" if ok else "finbot_failed_run_notifications_sensor",
        description=(
            "After each successful pipeline run: tag its failed linked accounts, notify "
            "failing or recovered linked accounts once, and send the daily digest after the "
            "day's first run."
            if ok
            else "After each failed pipeline run: tag its failed linked accounts and notify "
            "once per streak of failed runs."
        )
        + " Runs started from the command line are handled by the command itself "
        "(the run tag finbot/notified says it was done).",
        default_status=dg.DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=False,
    )
    def finbot_notifications_sensor(context: dg.RunStatusSensorContext) -> dg.SkipReason | None:
        run = context.dagster_run
        if run.job_name not in job_names:
            return dg.SkipReason(f"not a pipeline run ({run.job_name})")
        sent = notify_run_outcome(context.instance, run.run_id, home, job_names=job_names)
        if sent is None:
            return dg.SkipReason(f"run {run.run_id} was handled already")
        for m in sent:
            context.log.info(f"notified: {m.title}")
        return None

    return finbot_notifications_sensor


def build_notification_sensors(home: str, job_names: Sequence[str]) -> list[dg.SensorDefinition]:
    """The run-status sensors of successful and of failed pipeline runs."""
    return [
        build_notification_sensor(home, job_names, dg.DagsterRunStatus.SUCCESS),
        build_notification_sensor(home, job_names, dg.DagsterRunStatus.FAILURE),
    ]
