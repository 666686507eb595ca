"""Notifications through apprise: a daily digest, and failing/recovered linked accounts.

After every successful hourly (or transform) run, `after_successful_run` reads the
published marts and:
- notifies once when a linked account has failed for `failure_threshold_hours`
  consecutive hours, and once when it recovers;
- sends the daily digest (net worth, 1-day change, stale accounts) after the
  first run of each UTC day.
What was already sent is kept in `$FINBOT_HOME/notifications.json`. Messages are
built from the marts only (error messages there were masked at fetch time), and
a URL may take a secret from the vault as ``{secret:NAME}``: neither a URL nor a
secret ever appears in a message, a log line or an error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.schema import FinbotConfig
from finbot_pipelines.config.vault import Vault
from finbot_pipelines.warehouse.queries import open_published

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


def digest_message(published: Path, fx_source: str) -> Message:
    """Each profile's net worth at its latest hour, its 1-day change, its stale accounts."""
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
            select l.profile_id, l.linked_account_id, l.stale_hours, h.last_error_code
            from marts.fct_linked_account_valuation_hourly l
            left join marts.mart_linked_account_health h using (profile_id, linked_account_id)
            where l.is_stale
              and l.valuation_hour = (
                select max(valuation_hour) from marts.fct_profile_valuation_hourly p
                where p.profile_id = l.profile_id)
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
        lines.append("Stale accounts:")
        lines += [
            f"  {pid}/{acc}: last good data {hours} h old ({code or 'frozen or not yet fetched'})"
            for pid, acc, hours, code in stale
        ]
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
    health: Sequence[Mapping[str, Any]], failing: set[str], threshold: int
) -> tuple[list[Message], set[str]]:
    """Messages for accounts that crossed the threshold or recovered; the new failing set."""
    messages: list[Message] = []
    now_failing = set(failing)
    for row in health:
        key = f"{row['profile_id']}/{row['linked_account_id']}"
        failures = int(row["consecutive_failures"] or 0)
        if failures >= threshold and key not in failing:
            now_failing.add(key)
            messages.append(
                Message(
                    f"finbot: {key} is failing",
                    f"Linked account {key} has failed for {failures} consecutive hours "
                    f"({row['last_error_code']}: {row['last_error_message']}). Its last good "
                    f"data, from {row['last_success_hour'] or 'never'}, is carried and marked "
                    "stale. `./finbotctl accounts test "
                    f"{row['linked_account_id']}` shows the error now.",
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
    messages, failing = health_transitions(
        account_health(paths.published),
        set(state.get("failing", [])),
        settings.failure_threshold_hours,
    )
    today = now.date().isoformat()
    if settings.daily_digest and state.get("digest_date") != today:
        messages.append(digest_message(paths.published, cfg.fx_source))
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


def build_notification_sensor(home: str, job_names: Sequence[str]) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="finbot_notifications_sensor",
        description="After each successful pipeline run: notify failing or recovered linked "
        "accounts once, and send the daily digest after the day's first run.",
        default_status=dg.DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=False,
    )
    def finbot_notifications_sensor(context: dg.RunStatusSensorContext) -> dg.SkipReason | None:
        if context.dagster_run.job_name not in job_names:
            return dg.SkipReason(f"not a pipeline run ({context.dagster_run.job_name})")
        from finbot_pipelines.config.loading import load_config

        paths = HomePaths.resolve(home)
        sent = after_successful_run(paths, load_config(paths.config))
        for m in sent:
            context.log.info(f"notified: {m.title}")
        return None

    return finbot_notifications_sensor
