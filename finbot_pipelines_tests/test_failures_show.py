"""Failures show: an account that never succeeded is visible everywhere, with its fix.

One small home, built once for the module by `finbot run` from the command line (no
daemon): a healthy dummy account and `locked`, whose provider always refuses its
credentials (an expired token). Expected texts are written here from the contract
(what the provider raised, masked; the documented fix), not read from the code.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.config.loading import load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.vault import Vault, init_key_file
from finbot_pipelines.defs.automation.notifications import (
    FAILED_ACCOUNTS_TAG,
    NOTIFIED_TAG,
    build_notification_sensor,
    digest_message,
    notify_run_outcome,
)
from finbot_pipelines.defs.reports.html import stale_note, write_reports
from finbot_pipelines.providers import contract, fixes, registry
from finbot_pipelines.providers.base import (
    FetchContext,
    Provider,
    ProviderCredentials,
    ProviderOptions,
    ProviderSpec,
    secret,
)
from finbot_pipelines.providers.contract import AuthenticationFailure, Snapshot
from finbot_pipelines_tests.conftest import ensure_dbt_manifest
from finbot_pipelines_tests.fakes.webhook import WebhookReceiver

TOKEN = "expired-tok-4b1d9e77c0"  # the locked account's credential: must show nowhere
HOOK_TOKEN = "hook-CANARY-a81f03"  # the notification URL's secret: must show nowhere
#: what the provider raises, with the credential masked as the fetch masks it
MASKED_MESSAGE = "token *** was refused: it expired"
HOURS = 3


class LockedCredentials(ProviderCredentials):
    api_token: str = secret("API token")


class LockedProvider(Provider[ProviderOptions, LockedCredentials]):
    spec = ProviderSpec(
        id="locked_test",
        description="test provider whose token always is refused",
        options=ProviderOptions,
        credentials=LockedCredentials,
        supports_historical=True,
    )

    def fetch(
        self, ctx: FetchContext, options: ProviderOptions, credentials: LockedCredentials
    ) -> Snapshot:
        raise AuthenticationFailure(f"token {credentials.api_token} was refused: it expired")


def _config(port: int, history_start: datetime) -> str:
    return f"""\
history_start: "{history_start:%Y-%m-%dT%H:00}"
fx_source: static
fx_static_rates: {{GBP: 0.85, USD: 1.1}}
profiles: [{{id: me, name: Me, valuation_ccy: EUR}}]
linked_accounts:
  - {{id: locked, profile: me, provider: locked_test, name: Locked bank,
     credentials: locked-creds}}
  - {{id: demo, profile: me, provider: dummy, name: Demo, options: {{sub_accounts: [cash]}}}}
fetch: {{timeout_s: 20, max_attempts: 2, backoff_s: 0}}
notifications:
  urls: ["json://127.0.0.1:{port}/hook/{{secret:hook-token}}"]
  daily_digest: false
  failure_threshold_hours: 2
"""


@dataclass
class Home:
    paths: HomePaths
    receiver: WebhookReceiver
    run_output: str
    list_output: str
    instance_dir: Path
    history_start: datetime
    hours: list[datetime]
    posts_after_run: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    ensure_dbt_manifest()
    receiver = WebhookReceiver()
    root = tmp_path_factory.mktemp("failures-home")
    paths = HomePaths(root)
    now_hour = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    paths.config.write_text(_config(receiver.port, now_hour - timedelta(days=2)))
    init_key_file(root)
    Vault.open(root).set("locked-creds", json.dumps({"api_token": TOKEN}))
    Vault.open(root).set("hook-token", HOOK_TOKEN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._SPECS, "locked_test", "unused:SPEC")
        mp.setitem(registry._specs, "locked_test", LockedProvider.spec)
        mp.setitem(registry._instances, "locked_test", LockedProvider())
        mp.setenv("DAGSTER_HOME", str(paths.dagster_home))
        mp.setenv("FINBOT_HOME", str(root))
        runner = CliRunner()
        ran = runner.invoke(main, ["--home", str(root), "run", "--hours", str(HOURS)])
        assert ran.exit_code == 0, ran.output
        listed = runner.invoke(main, ["--home", str(root), "accounts", "list"])
        assert listed.exit_code == 0, listed.output
        with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
            first = _hourly_run(instance).tags["dagster/asset_partition_range_start"]
        first_hour = datetime.strptime(first, "%Y-%m-%d-%H:%M")
        yield Home(
            paths,
            receiver,
            ran.output,
            listed.output,
            paths.dagster_home,
            now_hour - timedelta(days=2),
            [first_hour + timedelta(hours=i) for i in range(HOURS)],
            list(receiver.posts),
        )
    receiver.stop()


def _hourly_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="finbot_hourly"))
    assert len(runs) == 1, [r.run_id for r in runs]
    return runs[0]


# --------------------------------------------------------------------------- the fixes


def _error_classes(cls: type[contract.ProviderError]) -> list[type[contract.ProviderError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _error_classes(sub)
    return out


def test_every_error_code_has_its_own_fix() -> None:
    codes = {c.code for c in _error_classes(contract.ProviderError)}
    codes.add(registry.UnknownProvider.code)
    assert codes <= set(fixes.known_codes()), codes - set(fixes.known_codes())
    # authentication: re-link or new credentials, with the account's own names
    fix = fixes.fix_for(
        "authentication_failure", "locked", provider_id="kraken", credentials="k-creds"
    )
    assert "`finbot secrets set k-creds`" in fix
    assert "`finbot accounts add kraken --id locked" in fix
    assert fixes.needs_action("authentication_failure") and not fixes.needs_action("transient")
    # an unknown code still says something useful
    assert "`finbot accounts test x`" in fixes.fix_for("brand_new_code", "x")


def test_stale_note_never_says_all_up_to_date_when_an_account_is_behind() -> None:
    def frame(*statuses: str) -> pd.DataFrame:
        return pd.DataFrame({"status": list(statuses)})

    assert stale_note(frame()) == "all up to date"
    for status in ("stale", "never succeeded", "never fetched"):
        assert "up to date" not in stale_note(frame(status))
    assert stale_note(frame("never succeeded")) == "1 never succeeded (not in the totals)"


# --------------------------------------------------------------------------- the home


def test_the_run_fails_only_at_the_gate_and_tags_the_failed_account(home: Home) -> None:
    """The run publishes everything (the command succeeds) but does not say "Success":
    it fails at its last step, naming the account, its hours and its error."""
    with dg.DagsterInstance.from_config(str(home.instance_dir)) as instance:
        run = _hourly_run(instance)
        failures = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        ).records
        steps = {r.event_log_entry.step_key: r.event_log_entry.dagster_event for r in failures}
        successes = {
            r.event_log_entry.step_key
            for r in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
            ).records
        }
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert set(steps) == {"every_account_fetched"}
    assert {"ingest_linked_accounts", "finbot_dbt", "published_marts", "wealth_report"} <= (
        successes
    )
    event = steps["every_account_fetched"]
    assert event is not None and event.step_failure_data is not None
    error = event.step_failure_data.user_failure_data
    assert error is not None
    first, last = home.hours[0], home.hours[-1]
    assert error.description == (
        f"linked accounts failed in this run: 'locked' {HOURS} hours "
        f"({first:%Y-%m-%d %H:00} .. {last:%Y-%m-%d %H:00} UTC, authentication_failure). "
        "Everything else is published; those hours show as failed in each account's "
        "partitions, and `finbot accounts list` shows each error and its fix."
    )
    assert run.tags[FAILED_ACCOUNTS_TAG] == "locked"
    assert NOTIFIED_TAG in run.tags
    assert "every_account_fetched: FAILED linked accounts failed in this run" in home.run_output
    assert TOKEN not in home.run_output


def _partition_status(
    instance: dg.DagsterInstance, home: Home, account: str
) -> tuple[set[str], set[str]]:
    """(materialised, failed) partitions of an account's asset, as the UI's partitions
    view computes them (Dagster's asset status cache)."""
    from dagster._core.storage.partition_status_cache import (
        get_and_update_asset_status_cache_value,
    )

    hourly = dg.HourlyPartitionsDefinition(
        start_date=f"{home.history_start:%Y-%m-%d-%H:%M}", fmt="%Y-%m-%d-%H:%M"
    )
    value = get_and_update_asset_status_cache_value(
        instance, dg.AssetKey(["ingest", account]), hourly
    )
    assert value is not None
    return (
        set(value.deserialize_materialized_partition_subsets(hourly).get_partition_keys()),
        set(value.deserialize_failed_partition_subsets(hourly).get_partition_keys()),
    )


def test_failed_hours_are_failed_partitions_and_good_hours_carry_their_outcome(
    home: Home,
) -> None:
    keys = {f"{h:%Y-%m-%d-%H:%M}" for h in home.hours}
    with dg.DagsterInstance.from_config(str(home.instance_dir)) as instance:
        locked_done, locked_failed = _partition_status(instance, home, "locked")
        demo_done, demo_failed = _partition_status(instance, home, "demo")
        demo_meta = {
            r.partition_key: {
                k: getattr(v, "value", v)
                for k, v in (
                    r.asset_materialization.metadata if r.asset_materialization else {}
                ).items()
            }
            for r in instance.fetch_materializations(
                dg.AssetKey(["ingest", "demo"]), limit=100
            ).records
        }
        landed = instance.fetch_materializations(dg.AssetKey(["ingest", "landed"]), limit=5)
    assert (locked_done, locked_failed) == (set(), keys)
    assert (demo_done, demo_failed) == (keys, set())
    assert set(demo_meta) == keys
    for meta in demo_meta.values():  # the hour's own outcome, not the run's totals
        assert meta["status"] == "success" and meta["attempts"] == 1, meta
        # `cash` is three current accounts (GBP, EUR, USD), one item each
        assert (meta["sub_accounts"], meta["items"], meta["warnings"]) == (3, 3, 0), meta
        assert "hours" not in meta and "successes" not in meta, meta
    [record] = landed.records  # once per run, whatever failed
    assert record.asset_materialization is not None
    landed_meta = {
        k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()
    }
    assert landed_meta["failed_hours"] == HOURS
    assert landed_meta["failed_accounts"]["locked"]["failed_hours"] == HOURS
    assert set(landed_meta["failed_accounts"]) == {"locked"}
    assert landed_meta["outcomes"]["locked"]["failures"] == HOURS
    assert landed_meta["outcomes"]["demo"]["successes"] == HOURS


def test_the_check_fails_with_the_message_and_the_fix(home: Home) -> None:
    with dg.DagsterInstance.from_config(str(home.instance_dir)) as instance:
        run = _hourly_run(instance)
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
    evaluations = {}
    for r in records:
        event = r.event_log_entry.dagster_event
        assert event is not None
        data = event.event_specific_data
        assert isinstance(data, dg.AssetCheckEvaluation)
        if data.check_name == "latest_fetch_succeeded":  # (dbt's tests are checks too)
            evaluations[data.asset_key.path[-1]] = data
    assert set(evaluations) == {"locked", "demo"}
    assert evaluations["demo"].passed
    locked = evaluations["locked"]
    assert not locked.passed
    assert locked.severity == dg.AssetCheckSeverity.ERROR  # never succeeded
    meta = {k: v.value for k, v in locked.metadata.items()}
    assert meta["error_code"] == "authentication_failure"
    assert meta["message"] == MASKED_MESSAGE
    assert meta["last_success_hour"] == "never"
    assert meta["consecutive_failures"] == HOURS
    assert "`finbot secrets set locked-creds`" in str(meta["fix"])
    assert "`finbot accounts add locked_test --id locked --profile me`" in str(meta["fix"])


class _Rows(HTMLParser):
    """The elements with a data-testid, their attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, Any]] = []
        self._open: list[tuple[str, dict[str, Any]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "data-testid" in a:
            el: dict[str, Any] = {**a, "text": ""}
            self.found.append(el)
            self._open.append((tag, el))
        elif self._open:
            self._open.append((tag, {}))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for _, el in self._open:
            if el:
                el["text"] += data

    def by(self, testid: str) -> list[dict[str, Any]]:
        return [e for e in self.found if e["data-testid"] == testid]


def _parse(page: str) -> _Rows:
    p = _Rows()
    p.feed(page)
    return p


def test_the_report_counts_and_lists_the_account_that_never_succeeded(home: Home) -> None:
    page = (home.paths.reports / "me.html").read_text()
    rows = _parse(page)
    assert rows.by("stale-count")[0]["data-value"] == "1"
    assert "all up to date" not in page
    accounts = {r["data-linked-account-id"]: r for r in rows.by("account")}
    assert set(accounts) == {"locked", "demo"}
    assert accounts["demo"]["data-status"] == "ok"
    locked = accounts["locked"]
    assert locked["data-status"] == "never_succeeded"
    assert locked["data-error-code"] == "authentication_failure"
    assert MASKED_MESSAGE in locked["text"]
    assert "finbot secrets set locked-creds" in locked["text"]
    stale = rows.by("stale-account")
    assert [s["data-linked-account-id"] for s in stale] == ["locked"]
    assert "never been fetched successfully" in stale[0]["text"]
    assert TOKEN not in page and HOOK_TOKEN not in page


def test_an_enabled_account_never_fetched_shows_too(home: Home, tmp_path: Path) -> None:
    cfg = load_config(home.paths.config)
    extra = cfg.linked_accounts[1].model_copy(update={"id": "newbie", "name": "New bank"})
    out = HomePaths(tmp_path)
    out.published.parent.mkdir(parents=True, exist_ok=True)
    out.published.write_bytes(home.paths.published.read_bytes())
    # the catalog names its Parquet files relative to the home: copy them too
    shutil.copytree(home.paths.home / "published", out.home / "published")
    [written] = write_reports(
        out, profile_names={"me": "Me"}, configured=[*cfg.linked_accounts, extra]
    )
    rows = _parse(written.latest.read_text())
    assert rows.by("stale-count")[0]["data-value"] == "2"
    accounts = {r["data-linked-account-id"]: r for r in rows.by("account")}
    assert accounts["newbie"]["data-status"] == "never_fetched"
    assert "the next run fetches it" in accounts["newbie"]["text"]


def test_accounts_list_shows_the_last_message_and_the_fix(home: Home) -> None:
    out = home.list_output
    assert f"locked (never succeeded): authentication_failure: {MASKED_MESSAGE}" in out
    assert "fix: re-link this account: store new credentials with " in out
    assert "`finbot secrets set locked-creds`" in out
    assert TOKEN not in out


def test_one_notification_from_the_cli_run_and_none_from_the_sensor(home: Home) -> None:
    # `finbot run` (no daemon) sent the one message due: locked failed 3 hours >= 2
    assert len(home.posts_after_run) == 1, home.posts_after_run
    post = home.posts_after_run[0]
    assert post["title"] == "finbot: me/locked is failing"
    body = post["message"]
    assert "authentication_failure" in body and MASKED_MESSAGE in body
    assert "has never been fetched successfully" in body
    assert "`finbot secrets set locked-creds`" in body
    blob = json.dumps(home.posts_after_run) + home.run_output
    assert TOKEN not in blob and HOOK_TOKEN not in blob
    # the command says so too (it published: its exit code is 0)
    assert "notified: finbot: me/locked is failing" in home.run_output
    assert "these linked accounts failed in this run: locked" in home.run_output
    assert home.receiver.paths == [f"/hook/{HOOK_TOKEN}"]  # the vault's token reached the URL
    # the daemon's sensor (or a second call) sees the run tagged as notified: nothing more
    with dg.DagsterInstance.from_config(str(home.instance_dir)) as instance:
        run = _hourly_run(instance)
        assert notify_run_outcome(instance, run.run_id, home.paths.home) is None
        sensor = build_notification_sensor(
            str(home.paths.home), ["finbot_hourly"], dg.DagsterRunStatus.FAILURE
        )
        ended = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        event = ended[0].event_log_entry.dagster_event
        assert event is not None
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=run,
        )
        result = sensor(context)
    assert isinstance(result, dg.SkipReason), result
    assert "handled already" in (result.skip_message or "")
    assert len(home.receiver.posts) == 1


def test_the_digest_names_the_account_and_its_fix(home: Home) -> None:
    cfg = load_config(home.paths.config)
    msg = digest_message(home.paths.published, "static", {a.id: a for a in cfg.linked_accounts})
    assert "Every linked account is up to date." not in msg.body
    assert "me/locked: never fetched successfully" in msg.body
    assert MASKED_MESSAGE in msg.body and "`finbot secrets set locked-creds`" in msg.body


def test_a_failed_run_is_notified_once_per_streak(home: Home) -> None:
    """Failed and successful runs of tiny jobs in an ephemeral instance: the first failure
    of a streak is notified (job, run, failed step), the next ones are not, a successful
    run ends the streak."""

    @dg.op
    def boom() -> None:
        raise RuntimeError(f"the library quoted {TOKEN}")

    @dg.op
    def fine() -> None:
        return None

    failing = dg.GraphDefinition(name="tiny_failing", node_defs=[boom]).to_job()
    working = dg.GraphDefinition(name="tiny_working", node_defs=[fine]).to_job()
    sent: list[Any] = []
    jobs = ["tiny_failing", "tiny_working"]
    state = home.paths.home / "notifications.json"
    before = json.loads(state.read_text())

    def outcome(job: dg.JobDefinition, instance: dg.DagsterInstance) -> list[Any] | None:
        run = job.execute_in_process(instance=instance, raise_on_error=False)
        return notify_run_outcome(
            instance,
            run.run_id,
            home.paths.home,
            sender=lambda _u, m: sent.append(m),
            job_names=jobs,
        )

    try:
        with dg.DagsterInstance.ephemeral() as instance:
            first = outcome(failing, instance)
            assert first is not None and [m.title for m in first] == [
                "finbot: a tiny_failing run failed"
            ]
            assert "failed at boom" in first[0].body and TOKEN not in first[0].body
            assert outcome(failing, instance) == []  # same streak
            assert outcome(working, instance) == []  # nothing due, ends the streak
            again = outcome(failing, instance)
            assert again is not None and len(again) == 1
            runs = instance.get_runs()
            assert all(NOTIFIED_TAG in r.tags for r in runs) and len(runs) == 4
    finally:
        state.write_text(json.dumps(before))
    assert len(sent) == 2
