"""`finbot bench`: measure the pipeline on a synthetic household, honestly.

It builds synthetic FINBOT_HOMEs (in a temp dir, or under ``--home``), lands raw
history through the production ingest code, then measures, each ``--repeat``
times (median reported):

- rebuild: the ``finbot_transform`` job with ``full_refresh`` over all the hours,
  as one run, in a child process (so its peak memory can be read);
- steady hour: one ``finbot_hourly`` run for ONE new hour after H hours of
  history, and the same after 24 hours of history (a second small home);
- fan-out: the ingest asset over N accounts that each answer after a latency,
  against the slowest account alone through the same asset;
- queries on the published marts ($HOME/finbot.duckdb, read-only);
- peak RSS of the rebuild (the Dagster process plus the largest dbt process).

Targets are reported with a pass/fail each; a missed target never fails the
command (exit 0). See docs/performance.md for the figures and what they mean.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import click
import yaml

from finbot_pipelines.config.paths import HomePaths

# --------------------------------------------------------------------------- constants

DEFAULT_ACCOUNTS = 10
DEFAULT_ITEMS = 30
DEFAULT_HOURS = 8760
DEFAULT_REPEAT = 3
DEFAULT_QUERY_RUNS = 20
STEADY_SMALL_HISTORY_HOURS = 24
#: the homes built under the base directory
BENCH_DIRS = ("main", "h24", "fanout")
#: fan-out: every account answers after this latency, the last one after the slow one
FANOUT_LATENCY_S = 0.5
FANOUT_SLOW_LATENCY_S = 1.0

#: name -> upper limit; "query_ms.<name>" applies to each query
TARGETS: dict[str, float] = {
    "rebuild_s": 60.0,
    "steady_ratio": 1.15,
    "steady_hour_s": 20.0,
    "fanout_ratio": 1.2,
    "query_ms": 50.0,
    "peak_rss_mb": 1500.0,
    "web_p95_ms": 50.0,
    "web_errors": 0,
}
#: concurrent clients of the web app while the steady hours publish
WEB_CLIENTS = 20

INGEST_STEP = "ingest_linked_accounts"
DBT_STEP = "finbot_dbt"
PUBLISH_STEP = "published_marts"
REPORT_ASSET = "wealth_report"
FULL_REFRESH_CONFIG: dict[str, Any] = {"ops": {DBT_STEP: {"config": {"full_refresh": True}}}}

QUERIES: dict[str, str] = {
    # one year of daily net worth: the last value of each day, per profile
    "daily_net_worth": """
        select profile_id, cast(valuation_hour as date) as day,
               arg_max(net_worth, valuation_hour) as net_worth
        from marts.fct_profile_valuation_hourly
        where valuation_hour > (select max(valuation_hour)
                                from marts.fct_profile_valuation_hourly) - interval 365 day
        group by all
        order by profile_id, day
    """,
    # the latest holdings tree (profile > linked account > sub-account > item) with the
    # item's 1d/1w/1m/1y/2y changes
    "holdings_tree": """
        with latest as (
            select max(valuation_hour) as h from marts.fct_item_valuation_hourly
        ),
        items as (
            select * from marts.fct_item_valuation_hourly
            where valuation_hour = (select h from latest)
        ),
        changes as (
            select
                profile_id, entity_id,
                max(change_abs) filter (where change_window = '1d') as change_1d,
                max(change_rel) filter (where change_window = '1d') as change_rel_1d,
                max(change_abs) filter (where change_window = '1w') as change_1w,
                max(change_rel) filter (where change_window = '1w') as change_rel_1w,
                max(change_abs) filter (where change_window = '1m') as change_1m,
                max(change_rel) filter (where change_window = '1m') as change_rel_1m,
                max(change_abs) filter (where change_window = '1y') as change_1y,
                max(change_rel) filter (where change_window = '1y') as change_rel_1y,
                max(change_abs) filter (where change_window = '2y') as change_2y,
                max(change_rel) filter (where change_window = '2y') as change_rel_2y
            from marts.fct_valuation_changes
            where valuation_hour = (select h from latest)
                and level = 'item'
                and change_window in ('1d', '1w', '1m', '1y', '2y')
            group by all
        )
        select
            items.profile_id, items.linked_account_id, items.sub_account_id,
            items.item_name, items.asset_class, items.units, items.value,
            changes.* exclude (profile_id, entity_id)
        from items
        left join changes
            on changes.profile_id = items.profile_id
            and changes.entity_id = items.linked_account_id || '/' || items.sub_account_id
                || '/' || items.item_name
        order by all
    """,
    # contributions and market gain apart, per profile, over the usual windows
    "performance": """
        select profile_id, period, start_value, end_value, net_contributions, income,
               costs, market_gain, twr, mwr
        from marts.fct_performance
        where level = 'profile' and period in ('1m', '3m', '1y', 'ytd', 'since_first')
        order by profile_id, period
    """,
    # a year of monthly cash flows by flow class, per profile
    "cash_flows": """
        select profile_id, month_start, flow_class, sum(inflow) as inflow,
               sum(outflow) as outflow,
               sum(net) as net
        from marts.mart_cash_flows
        where level = 'profile'
        group by all
        order by profile_id, month_start, flow_class
    """,
    # the wealth distribution at the latest hour
    "distribution": """
        select * from marts.mart_wealth_distribution
        where valuation_hour = (select max(valuation_hour) from marts.mart_wealth_distribution)
        order by profile_id, dimension, value desc
    """,
}


# --------------------------------------------------------------------------- synthetic homes


def items_per_kind() -> dict[str, int]:
    """How many items each dummy sub-account kind yields (read from the provider itself).

    The cold wallet is left out: its staked ether needs a unit price, which a benchmark
    must not fetch from outside."""
    from finbot_pipelines.providers.dummy.provider import SUB_ACCOUNT_KINDS, dummy_snapshot

    hour = datetime(2024, 1, 1)
    return {
        kind: sum(
            len(s.items)
            for s in dummy_snapshot("bench", {"sub_accounts": [kind]}, hour).sub_accounts
        )
        for kind in SUB_ACCOUNT_KINDS
        if kind != "cold_wallet"
    }


def kinds_for_items(target: int, index: int) -> list[str]:
    """The dummy sub-account kinds whose item count is closest to ``target``.

    The dummy provider yields at most 17 items per linked account (every kind);
    among equally close subsets, accounts take turns so the household varies.
    """
    per_kind = items_per_kind()
    kinds = list(per_kind)
    subsets = [list(c) for r in range(1, len(kinds) + 1) for c in itertools.combinations(kinds, r)]
    best = min(abs(sum(per_kind[k] for k in s) - target) for s in subsets)
    closest = [s for s in subsets if abs(sum(per_kind[k] for k in s) - target) == best]
    return closest[index % len(closest)]


def account_ids(accounts: int) -> list[str]:
    return [f"acct-{i:03d}" for i in range(accounts)]


def bench_config(
    accounts: int,
    items: int,
    history_start: datetime,
    *,
    latencies: Sequence[float] | None = None,
    failures: bool = True,
) -> dict[str, Any]:
    """A finbot.yaml (as a mapping): two profiles, ``accounts`` dummy linked accounts.

    Deterministic: the dummy provider is a pure function of (account, hour). One
    account in four fails transiently for 2 hours every 4 days (``fail_cycle``).
    """
    linked: list[dict[str, Any]] = []
    for i, acc_id in enumerate(account_ids(accounts)):
        options: dict[str, Any] = {
            "sub_accounts": kinds_for_items(items, i),
            "scale": 0.5 + 0.25 * (i % 5),
        }
        if failures and i % 4 == 1:
            options["fail_cycle"] = {"every_hours": 96, "for_hours": 2, "offset_hours": 7 * i}
            options["fail_kind"] = "transient"
        if latencies is not None:
            options["latency_s"] = float(latencies[i])
        linked.append(
            {
                "id": acc_id,
                "profile": "alice" if i % 2 == 0 else "bruno",
                "provider": "dummy",
                "name": f"Bench account {i}",
                "options": options,
            }
        )
    return {
        "history_start": f"{history_start:%Y-%m-%dT%H:%M}",
        "fx_source": "static",
        "fx_static_rates": {"GBP": 0.85, "USD": 1.08},
        "profiles": [
            {"id": "alice", "name": "Alice", "valuation_ccy": "GBP"},
            {"id": "bruno", "name": "Bruno", "valuation_ccy": "EUR"},
        ],
        "linked_accounts": linked,
        # backoff 0: a failing hour costs its attempts, not sleeps; enough workers that
        # every account of an hour is fetched at once (the default 8 would queue N > 8)
        "fetch": {
            "timeout_s": 30,
            "max_attempts": 2,
            "backoff_s": 0,
            "max_workers": max(8, accounts),
        },
    }


def write_home(home: Path, config: Mapping[str, Any]) -> HomePaths:
    from finbot_pipelines.config.home import ensure_dagster_home

    paths = HomePaths(home.resolve())
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    ensure_dagster_home(paths)
    return paths


def fx_weekdays(first: date, last: date) -> list[date]:
    """FX publication days with gaps: weekdays only, plus ``first`` so the first hour has a
    rate. The dbt FX logic carries the previous date's rate over the gaps."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [d for d in days if d == first or d.weekday() < 5]


def write_fx_rates(paths: HomePaths, first: date, last: date) -> int:
    """The config's static rates, for weekdays only, through the production raw write."""
    from finbot_pipelines.config.loading import load_config
    from finbot_pipelines.defs.market.assets import fx_rows
    from finbot_pipelines.defs.resources import FinbotHome
    from finbot_pipelines.warehouse.raw import replace_fx_rates

    cfg = load_config(paths.config)
    keep = set(fx_weekdays(first, last))
    _, rows = fx_rows(cfg, first, last, datetime.now(UTC).date())
    rows = [r for r in rows if r[0] in keep]
    with FinbotHome(home=str(paths.home)).warehouse() as con:
        replace_fx_rates(con, sorted(keep), rows)
    return len(keep)


def land_raw_history(paths: HomePaths, first: datetime, hours: int) -> float:
    """Fetch and land ``hours`` hours of every account: the ingest asset's own function.

    `defs.ingest.assets.ingest_hours` is what the ingest multi-asset runs (fetches in
    parallel through `providers.fetching`, one `write_hour_batch` transaction per 24
    hours); called directly it skips only Dagster's per-partition event bookkeeping.
    Returns the seconds taken.
    """
    import dagster as dg

    from finbot_pipelines.config.loading import load_config
    from finbot_pipelines.defs.ingest.assets import ingest_hours
    from finbot_pipelines.defs.resources import FinbotHome

    cfg = load_config(paths.config)
    finbot = FinbotHome(home=str(paths.home))
    all_hours = [first + timedelta(hours=i) for i in range(hours)]
    started = time.perf_counter()
    ingest_hours(dg.build_asset_context(), finbot, cfg, cfg.enabled_linked_accounts(), all_hours)
    return time.perf_counter() - started


# --------------------------------------------------------------------------- runs


@dataclass
class RunTiming:
    """One Dagster run: wall time and where it went."""

    wall_s: float
    success: bool
    steps: dict[str, float] = field(default_factory=dict)
    dbt_elapsed_s: float | None = None
    dbt_phases: dict[str, float] = field(default_factory=dict)
    #: for runs in a child process: the run itself, and the process around it
    run_wall_s: float | None = None
    startup_s: float | None = None
    defs_load_s: float | None = None

    @property
    def dagster_overhead_s(self) -> float:
        """Run wall time outside every step: run creation, resources, events, teardown."""
        run = self.run_wall_s if self.run_wall_s is not None else self.wall_s
        return max(0.0, run - sum(self.steps.values()))


def step_durations(instance: Any, run_id: str) -> dict[str, float]:
    stats = instance.get_run_step_stats(run_id)
    return {
        s.step_key: round(s.end_time - s.start_time, 3)
        for s in stats
        if s.start_time is not None and s.end_time is not None
    }


def dbt_elapsed(paths: HomePaths, since: float) -> float | None:
    """dbt's own execution time (run_results.json elapsed_time) of its newest invocation."""
    found = [p for p in paths.dbt_target.rglob("run_results.json") if p.stat().st_mtime >= since]
    if not found:
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    try:
        return round(float(json.loads(newest.read_text())["elapsed_time"]), 3)
    except (ValueError, KeyError, TypeError):
        return None


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def dbt_phases(paths: HomePaths, instance: Any, run_id: str) -> dict[str, float]:
    """Split the dbt step of a run into phases, from Dagster's log and dbt's own dbt.log.

    prelaunch: step start -> dagster-dbt logs "Running dbt command";
    process_start: -> dbt's first log line (interpreter and imports);
    parse: -> dbt's "Concurrency" line (project parse; full when --vars changed);
    execute: -> "Finished running" (models and tests);
    after: -> step end (dbt exit, the remaining Dagster events).
    """
    step_start = step_end = launched = None
    for rec in instance.all_logs(run_id):
        if rec.step_key != DBT_STEP:
            continue
        event = rec.dagster_event
        if event is not None and event.event_type_value == "STEP_START":
            step_start = rec.timestamp
        elif event is not None and event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            step_end = rec.timestamp
        elif event is None and "Running dbt command" in (rec.user_message or ""):
            launched = rec.timestamp
    log_file = paths.dbt_target / "dbt.log"
    if None in (step_start, step_end, launched) or not log_file.exists():
        return {}
    marks: dict[str, float] = {}
    with log_file.open() as f:
        for line in f:
            try:
                info = json.loads(line)["info"]
            except (ValueError, KeyError):
                continue
            ts = _ts(info["ts"])
            if launched is None or ts < launched:
                continue
            name = info.get("name")
            if name == "MainReportVersion":
                marks = {"first": ts}
            elif name == "ConcurrencyLine" and "first" in marks:
                marks["parsed"] = ts
            elif name == "FinishedRunningStats" and "parsed" in marks:
                marks["executed"] = ts
    if len(marks) < 3:
        return {}
    assert step_start is not None and step_end is not None and launched is not None
    return {
        "prelaunch_s": round(launched - step_start, 3),
        "process_start_s": round(marks["first"] - launched, 3),
        "parse_s": round(marks["parsed"] - marks["first"], 3),
        "execute_s": round(marks["executed"] - marks["parsed"], 3),
        "after_s": round(step_end - marks["executed"], 3),
    }


@contextlib.contextmanager
def quiet(log: TextIO | None) -> Iterator[None]:
    """Send stdout and stderr (Dagster's, dbt's and finbot's progress lines) to ``log``.

    Both the Python streams and the file descriptors 1 and 2 are redirected, so the
    output of child processes cannot mix with the table or the JSON on stdout.
    """
    if log is None:
        yield
        return
    log.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        log.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def timed_job(
    paths: HomePaths,
    defs: Any,
    instance: Any,
    job_name: str,
    first: datetime | None,
    last: datetime | None,
    *,
    run_config: Mapping[str, Any] | None = None,
    log: TextIO | None = None,
    phases: bool = False,
) -> RunTiming:
    """Run ``job_name`` over [first, last] (None: every hour) as one run, like `finbot run`."""
    from finbot_pipelines.defs.automation.runs import run_job, run_published

    since = time.time()
    with quiet(log):
        started = time.perf_counter()
        result = run_job(
            defs, job_name, first, last, instance=instance, progress=True, run_config=run_config
        )
        wall = time.perf_counter() - started
    return RunTiming(
        wall_s=round(wall, 3),
        success=run_published(result),
        steps=step_durations(instance, result.run_id),
        dbt_elapsed_s=dbt_elapsed(paths, since),
        dbt_phases=dbt_phases(paths, instance, result.run_id) if phases else {},
    )


def steady_child(argv: Sequence[str]) -> None:
    """Entry point of a steady-hour child process: HOME HOUR OUT_JSON.

    What a run worker launched by the daemon does for a scheduled tick: a fresh
    interpreter imports the code location, loads the definitions and executes the
    `finbot_hourly` run of one hour. The parent times the whole process.
    """
    home, hour_s, out = argv
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    started = time.perf_counter()
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import HOURLY_JOB

    paths = HomePaths(Path(home))
    defs = build_definitions(home)
    load_s = time.perf_counter() - started
    hour = datetime.fromisoformat(hour_s)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        t = timed_job(paths, defs, instance, HOURLY_JOB, hour, hour, phases=True)
    Path(out).write_text(json.dumps({**asdict(t), "defs_load_s": round(load_s, 3)}))


def steady_hours(
    paths: HomePaths,
    first_new_hour: datetime,
    repeat: int,
    log_path: Path,
) -> list[RunTiming]:
    """``repeat`` scheduled-style `finbot_hourly` runs, each for ONE new hour, each in a
    fresh process (interpreter start, imports, definitions and the run: what a
    scheduled tick costs). ``wall_s`` is the whole process; the breakdown adds
    ``startup_s`` (everything before the run starts and after it ends)."""
    out = paths.home / "steady-result.json"
    code = "import sys; from finbot_pipelines.bench import steady_child; steady_child(sys.argv[1:])"
    timings: list[RunTiming] = []
    for i in range(repeat):
        hour = first_new_hour + timedelta(hours=i)
        out.unlink(missing_ok=True)
        with log_path.open("a") as log:
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", code, str(paths.home), hour.isoformat(), str(out)],
                stdout=log, stderr=log, env={**os.environ}, check=False,
            )  # fmt: skip
            wall = time.perf_counter() - started
        if proc.returncode != 0 or not out.exists():
            raise click.ClickException(f"a steady-hour process failed: see {log_path}")
        data = json.loads(out.read_text())
        run_wall = float(data["wall_s"])
        timings.append(
            RunTiming(
                wall_s=round(wall, 3),
                success=data["success"],
                steps=data["steps"],
                dbt_elapsed_s=data["dbt_elapsed_s"],
                dbt_phases=data["dbt_phases"],
                run_wall_s=round(run_wall, 3),
                startup_s=round(wall - run_wall, 3),
                defs_load_s=data["defs_load_s"],
            )
        )
    return timings


def initial_build(paths: HomePaths, log: TextIO | None) -> None:
    """Build and publish every mart of the raw history with one full-refresh transform run."""
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import TRANSFORM_JOB

    defs = build_definitions(str(paths.home))
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        t = timed_job(
            paths, defs, instance, TRANSFORM_JOB, None, None,
            run_config=FULL_REFRESH_CONFIG, log=log,
        )  # fmt: skip
    if not t.success:
        raise click.ClickException(f"the initial build of {paths.home} failed: see {log_hint(log)}")


def log_hint(log: TextIO | None) -> str:
    return getattr(log, "name", "the messages above")


# --------------------------------------------------------------------------- rebuild (child)


@contextlib.contextmanager
def tree_rss_sampler(interval_s: float = 0.05) -> Iterator[dict[str, float]]:
    """Sample the RSS of this process plus all its descendants (dbt, DuckDB inside it).

    Yields a dict whose ``peak_mb`` is the largest sum seen: the memory the
    machine actually needed at once, not the sum of each process's own peak.
    """
    import threading

    import psutil

    me = psutil.Process()
    found: dict[str, float] = {"peak_mb": 0.0, "self_peak_mb": 0.0, "children_peak_mb": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while True:
            total = own = 0.0
            with contextlib.suppress(psutil.Error):
                own = me.memory_info().rss / 2**20
            total = own
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss / 2**20
            found["peak_mb"] = max(found["peak_mb"], total)
            found["self_peak_mb"] = max(found["self_peak_mb"], own)
            found["children_peak_mb"] = max(found["children_peak_mb"], total - own)
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()


def rebuild_child(argv: Sequence[str]) -> None:
    """Entry point of the rebuild child process: HOME OUT_JSON.

    Runs `finbot_transform` with full_refresh (every hour of the raw history) as one
    run, while sampling the memory of the process tree, and writes both to OUT_JSON.
    """
    home, out = argv
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import TRANSFORM_JOB

    paths = HomePaths(Path(home))
    started = time.perf_counter()
    defs = build_definitions(home)
    load_s = time.perf_counter() - started
    with (
        dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance,
        tree_rss_sampler() as rss,
    ):
        t = timed_job(
            paths, defs, instance, TRANSFORM_JOB, None, None, run_config=FULL_REFRESH_CONFIG
        )
    Path(out).write_text(
        json.dumps(
            {
                **asdict(t),
                "defs_load_s": round(load_s, 3),
                "peak_rss_mb": round(rss["peak_mb"], 1),
                "dagster_rss_mb": round(rss["self_peak_mb"], 1),
                "dbt_rss_mb": round(rss["children_peak_mb"], 1),
            }
        )
    )


@dataclass
class RebuildTiming:
    run: RunTiming
    defs_load_s: float
    peak_rss_mb: float
    dagster_rss_mb: float
    dbt_rss_mb: float


def rebuild(paths: HomePaths, log_path: Path) -> RebuildTiming:
    """One full-refresh rebuild of all the raw history in a child process (for its memory)."""
    out = paths.home / "rebuild-result.json"
    out.unlink(missing_ok=True)
    code = (
        "import sys; from finbot_pipelines.bench import rebuild_child; rebuild_child(sys.argv[1:])"
    )
    with log_path.open("a") as log:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(paths.home), str(out)],
            stdout=log, stderr=log, env={**os.environ}, check=False,
        )  # fmt: skip
    if proc.returncode != 0 or not out.exists():
        raise click.ClickException(f"the rebuild process failed: see {log_path}")
    data = json.loads(out.read_text())
    run = RunTiming(
        wall_s=data["wall_s"],
        success=data["success"],
        steps=data["steps"],
        dbt_elapsed_s=data["dbt_elapsed_s"],
    )
    return RebuildTiming(
        run, data["defs_load_s"], data["peak_rss_mb"], data["dagster_rss_mb"], data["dbt_rss_mb"]
    )


# --------------------------------------------------------------------------- fan-out


def fanout(paths: HomePaths, hour: datetime, repeat: int, log: TextIO | None) -> dict[str, Any]:
    """The ingest asset for one hour: every account at once, then the slowest alone.

    Times are the ingest step's duration from the run's step stats (fetch in parallel,
    land the rows, read back the latest fetch status); the run's wall time is kept too.
    """
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.ingest.assets import ingest_key
    from finbot_pipelines.defs.partitions import HOUR_FMT

    defs = build_definitions(str(paths.home))
    ids = account_ids(len(yaml.safe_load(paths.config.read_text())["linked_accounts"]))
    ingest = defs.resolve_assets_def(ingest_key(ids[0]))
    all_s: list[float] = []
    slowest_s: list[float] = []
    all_wall: list[float] = []
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        for _ in range(repeat):
            for keys, sink in (
                ([ingest_key(i) for i in ids], all_s),
                ([ingest_key(ids[-1])], None),
            ):
                with quiet(log):
                    started = time.perf_counter()
                    result = dg.materialize(
                        [ingest],
                        instance=instance,
                        partition_key=hour.strftime(HOUR_FMT),
                        selection=keys,
                        raise_on_error=False,
                    )
                    wall = time.perf_counter() - started
                if not result.success:
                    raise click.ClickException(f"the fan-out ingest failed: see {log_hint(log)}")
                step = step_durations(instance, result.run_id).get(INGEST_STEP, wall)
                if sink is None:
                    slowest_s.append(step)
                else:
                    sink.append(step)
                    all_wall.append(wall)
    fan, slow = statistics.median(all_s), statistics.median(slowest_s)
    return {
        "fanout_s": round(fan, 3),
        "fanout_slowest_s": round(slow, 3),
        "fanout_ratio": round(fan / slow, 3) if slow else None,
        "fanout_run_wall_s": round(statistics.median(all_wall), 3),
        "fanout_latencies_s": {"each": FANOUT_LATENCY_S, "slowest": FANOUT_SLOW_LATENCY_S},
    }


# --------------------------------------------------------------------------- queries


def count_transactions(published: Path) -> int:
    """How many transactions the published household holds (the dummy accounts' cash moves)."""
    from finbot_pipelines.warehouse.queries import open_published

    with open_published(published) as con:
        row = con.execute("select count(*) from marts.fct_transactions").fetchone()
    return int(row[0]) if row else 0


def time_queries(published: Path, runs: int) -> dict[str, float]:
    """Median milliseconds of each query (after one warm-up) on a read-only connection."""
    from finbot_pipelines.warehouse.queries import open_published

    out: dict[str, float] = {}
    with open_published(published) as con:
        for name, sql in QUERIES.items():
            rows = con.execute(sql).fetchall()
            if not rows:
                raise click.ClickException(f"query {name} returned no rows on {published}")
            samples: list[float] = []
            for _ in range(runs):
                started = time.perf_counter()
                con.execute(sql).fetchall()
                samples.append((time.perf_counter() - started) * 1000)
            out[name] = round(statistics.median(samples), 2)
    return out


def _dashboard_paths(profile_id: str) -> list[str]:
    """The API calls the dashboard makes for one profile."""
    base = f"/api/v1/profiles/{profile_id}"
    return [
        base,
        f"{base}/net-worth?range=1m",
        f"{base}/net-worth?range=1y",
        f"{base}/distribution?dimension=asset_class",
        f"{base}/distribution?dimension=linked_account",
        f"{base}/performance?period_kind=since_first",
    ]


@contextlib.contextmanager
def web_load(paths: HomePaths, clients: int, log_path: Path) -> Iterator[dict[str, Any]]:
    """`finbot web` on ``paths`` (a real uvicorn process) and ``clients`` threads calling
    the dashboard's API in a loop for as long as the block runs (the steady hours publish
    meanwhile). Yields the result mapping, filled when the block ends: requests, errors,
    p50/p95/max milliseconds."""
    import socket
    import threading

    import httpx

    from finbot_pipelines.web.users import UserStore

    store = UserStore.open(paths)
    if store.get_user("bench") is None:
        store.add_user(
            "bench", secrets.token_urlsafe(16), profiles={"alice": "owner", "bruno": "owner"}
        )
    token = store.create_token("bench", label="bench")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finbot_pipelines.cli", "--home", str(paths.home), "web",
             "--port", str(port)],
            stdout=log, stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/login", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise click.ClickException(f"finbot web did not start: see {log_path}")
            time.sleep(0.2)
        stop = threading.Event()
        samples: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        urls = [*_dashboard_paths("alice"), *_dashboard_paths("bruno")]

        def client(n: int) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
                i = n
                while not stop.is_set():
                    url = urls[i % len(urls)]
                    i += 1
                    started = time.perf_counter()
                    try:
                        status = str(c.get(url).status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    ms = (time.perf_counter() - started) * 1000
                    with lock:
                        samples.append(ms)
                        if status != "200":
                            errors.append(f"{url}: {status}")

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
        for t in threads:
            t.start()
        try:
            yield out
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        ordered = sorted(samples)
        out.update(
            {
                "clients": clients,
                "requests": len(ordered),
                "errors": len(errors),
                "first_errors": errors[:5],
                "p50_ms": round(statistics.median(ordered), 2) if ordered else None,
                "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2) if ordered else None,
                "max_ms": round(ordered[-1], 2) if ordered else None,
            }
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_mb: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = round(int(line.split()[1]) / 1024)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu or platform.processor(),
        "mem_total_mb": mem_mb,
        "python": platform.python_version(),
    }


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def median_run(timings: Sequence[RunTiming]) -> RunTiming:
    """The run with the median wall time (its step breakdown goes with it)."""
    ordered = sorted(timings, key=lambda t: t.wall_s)
    return ordered[(len(ordered) - 1) // 2]


def breakdown(t: RunTiming) -> dict[str, Any]:
    """Where a run's time went: steps, dbt itself, Dagster around the steps."""
    dbt_step = t.steps.get(DBT_STEP)
    return {
        "wall_s": t.wall_s,
        "steps_s": t.steps,
        "dbt_own_elapsed_s": t.dbt_elapsed_s,
        "dbt_step_minus_dbt_s": (
            round(dbt_step - t.dbt_elapsed_s, 3)
            if dbt_step is not None and t.dbt_elapsed_s is not None
            else None
        ),
        "dagster_outside_steps_s": round(t.dagster_overhead_s, 3),
        "dbt_step_phases_s": t.dbt_phases,
        "run_wall_s": t.run_wall_s,
        "process_startup_s": t.startup_s,
        "defs_load_s": t.defs_load_s,
    }


def evaluate_targets(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with its limit, the measured value and pass (value <= limit)."""
    values: dict[str, Any] = {k: result.get(k) for k in TARGETS if k != "query_ms"}
    for name, ms in (result.get("query_ms") or {}).items():
        values[f"query_ms.{name}"] = ms
    out: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        limit = TARGETS["query_ms" if name.startswith("query_ms.") else name]
        ok = isinstance(value, int | float) and value <= limit
        out[name] = {"limit": limit, "value": value, "pass": bool(ok)}
    return out


def render_table(result: Mapping[str, Any]) -> str:
    from tabulate import tabulate

    rows: list[tuple[str, str, str, str]] = []
    for name, t in result["targets"].items():
        value = t["value"]
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        rows.append((name, shown, f"<= {t['limit']:g}", "pass" if t["pass"] else "MISS"))
    extra = [
        ("steady_hour_s_24h", result["steady_hour_s_24h"]),
        ("fanout_s", result["fanout_s"]),
        ("fanout_slowest_s", result["fanout_slowest_s"]),
        ("land_raw_s", result["land_raw_s"]),
        ("transactions (in the household)", result["transactions"]),
        ("web requests (p50 ms)", f"{result['web']['requests']} ({result['web']['p50_ms']})"),
    ]
    rows.extend((n, f"{v:,.3f}" if isinstance(v, float) else str(v), "", "") for n, v in extra)
    head = (
        f"finbot bench: {result['accounts']} accounts x ~{result['items_per_account']} items "
        f"(asked {result['items']}), {result['hours']} hours, repeat {result['repeat']}, "
        f"load {result['load_before']} -> "
        f"{result['load_after']} on {result['machine']['nproc']} cores"
    )
    steady = result["steady_breakdown"]
    where = (
        f"steady hour (median run): process {steady['wall_s']} s = start-up (interpreter, "
        f"imports, definitions, instance) {steady['process_startup_s']} s + run "
        f"{steady['run_wall_s']} s; run = steps {steady['steps_s']} + Dagster outside steps "
        f"{steady['dagster_outside_steps_s']} s; dbt step phases {steady['dbt_step_phases_s']}"
    )
    rb = result["rebuild_breakdown"]
    where_rb = (
        f"rebuild (median run): wall {rb['wall_s']} s = steps {rb['steps_s']} + Dagster "
        f"outside steps {rb['dagster_outside_steps_s']} s; dbt itself {rb['dbt_own_elapsed_s']} s"
    )
    table = tabulate(rows, headers=["measure", "value", "target", ""], tablefmt="simple")
    return "\n".join([head, "", table, "", where, where_rb])


# --------------------------------------------------------------------------- the command


def _median(xs: Sequence[float]) -> float:
    return round(statistics.median(xs), 3)


def _say(text: str) -> None:
    click.echo(f"bench: {text}", err=True)


def run_bench(
    base: Path,
    *,
    accounts: int,
    items: int,
    hours: int,
    repeat: int,
    query_runs: int,
    verbose: bool,
    web_clients: int = WEB_CLIENTS,
) -> dict[str, Any]:
    """Build the homes under ``base``, measure everything, return the result mapping."""
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / "bench.log"
    load_before = load_avg()
    per_kind = items_per_kind()
    per_account = [sum(per_kind[k] for k in kinds_for_items(items, i)) for i in range(accounts)]

    # timeline: H hours of history ending `repeat` hours before the last complete hour,
    # so every steady run is a NEW hour that Dagster's hourly partitions already have
    now_hour = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    last_steady = now_hour - timedelta(hours=1)
    first_steady = last_steady - timedelta(hours=repeat - 1)
    first = first_steady - timedelta(hours=hours)
    small_first = first_steady - timedelta(hours=STEADY_SMALL_HISTORY_HOURS)

    log_ctx = contextlib.nullcontext(None) if verbose else log_path.open("a")
    with log_ctx as log:
        # -- the main home: H hours of raw history
        main = write_home(base / "main", bench_config(accounts, items, first))
        write_fx_rates(main, first.date(), last_steady.date())
        _say(f"landing {hours} hours x {accounts} accounts of raw history in {main.home}")
        with quiet(log):
            land_s = land_raw_history(main, first, hours)
        _say(f"landed in {land_s:.1f} s")

        # -- rebuild, each in a child process (for its peak memory)
        rebuilds: list[RebuildTiming] = []
        for i in range(repeat):
            _say(f"rebuild {i + 1}/{repeat}: full refresh of all {hours} hours as one run")
            rb = rebuild(main, log_path)
            if not rb.run.success:
                raise click.ClickException(f"the rebuild run failed: see {log_path}")
            rebuilds.append(rb)
            _say(f"rebuild took {rb.run.wall_s:.1f} s, peak {rb.peak_rss_mb:.0f} MB")

        # -- queries on the published marts of H hours
        _say(f"queries on {main.published}, {query_runs} runs each")
        query_ms = time_queries(main.published, query_runs)
        transactions = count_transactions(main.published)

        # -- steady hours after H hours, then after 24 hours
        _say(
            f"steady hour after {hours} hours of history, {repeat} new hour(s), while "
            f"{web_clients} clients call the web app's dashboard API"
        )
        with web_load(main, web_clients, log_path) as web:
            steady = steady_hours(main, first_steady, repeat, log_path)
        _say(f"web: {web['requests']} requests, p95 {web['p95_ms']} ms, {web['errors']} errors")
        small = write_home(base / "h24", bench_config(accounts, items, small_first))
        write_fx_rates(small, small_first.date(), last_steady.date())
        with quiet(log):
            land_raw_history(small, small_first, STEADY_SMALL_HISTORY_HOURS)
        initial_build(small, log)
        _say(f"steady hour after {STEADY_SMALL_HISTORY_HOURS} hours of history")
        steady_small = steady_hours(small, first_steady, repeat, log_path)
        failed = [t for t in [*steady, *steady_small] if not t.success]
        if failed:
            raise click.ClickException(f"a steady-hour run failed: see {log_hint(log)}")

        # -- fan-out of the ingest
        latencies = [FANOUT_LATENCY_S] * (accounts - 1) + [FANOUT_SLOW_LATENCY_S]
        fan_home = write_home(
            base / "fanout",
            bench_config(accounts, items, last_steady, latencies=latencies, failures=False),
        )
        _say(f"fan-out: {accounts} accounts answering after {FANOUT_LATENCY_S} s "
             f"(one after {FANOUT_SLOW_LATENCY_S} s)")  # fmt: skip
        fan = fanout(fan_home, last_steady, repeat, log)

    steady_s = _median([t.wall_s for t in steady])
    steady_small_s = _median([t.wall_s for t in steady_small])
    result: dict[str, Any] = {
        "accounts": accounts,
        "items": items,
        "items_per_account": round(sum(per_account) / len(per_account), 1),
        "hours": hours,
        "repeat": repeat,
        "rebuild_s": _median([r.run.wall_s for r in rebuilds]),
        "steady_hour_s": steady_s,
        "steady_hour_s_24h": steady_small_s,
        "steady_ratio": round(steady_s / steady_small_s, 3),
        "fanout_s": fan["fanout_s"],
        "fanout_slowest_s": fan["fanout_slowest_s"],
        "fanout_ratio": fan["fanout_ratio"],
        "query_ms": query_ms,
        "peak_rss_mb": max(r.peak_rss_mb for r in rebuilds),
        "land_raw_s": round(land_s, 3),
        "transactions": transactions,
        "web_p95_ms": web["p95_ms"],
        "web_errors": web["errors"],
        "web": web,
        "rebuild_breakdown": {
            **breakdown(median_run([r.run for r in rebuilds])),
            "defs_load_s": _median([r.defs_load_s for r in rebuilds]),
            "dagster_rss_mb": max(r.dagster_rss_mb for r in rebuilds),
            "children_rss_mb": max(r.dbt_rss_mb for r in rebuilds),
        },
        "steady_breakdown": breakdown(median_run(steady)),
        "steady_breakdown_24h": breakdown(median_run(steady_small)),
        "fanout_detail": {k: fan[k] for k in ("fanout_run_wall_s", "fanout_latencies_s")},
        "machine": machine_info(),
        "load_before": load_before,
        "load_after": load_avg(),
        "home": str(base),
    }
    result["targets"] = evaluate_targets(result)
    return result


@click.command()
@click.option("--accounts", default=DEFAULT_ACCOUNTS, show_default=True, type=click.IntRange(1))
@click.option(
    "--items",
    default=DEFAULT_ITEMS,
    show_default=True,
    type=click.IntRange(1),
    help="Items per linked account, approximately (the dummy provider gives at most 17).",
)
@click.option(
    "--hours", default=DEFAULT_HOURS, show_default=True, type=click.IntRange(1),
    help="Hours of raw history.",
)  # fmt: skip
@click.option(
    "--repeat", default=DEFAULT_REPEAT, show_default=True, type=click.IntRange(1),
    help="Runs of each measure (the median is reported).",
)  # fmt: skip
@click.option("--query-runs", default=DEFAULT_QUERY_RUNS, show_default=True, type=click.IntRange(1))
@click.option(
    "--web-clients",
    default=WEB_CLIENTS,
    show_default=True,
    type=click.IntRange(1),
    help="Concurrent clients of the web app during the steady hour (the target is for 20).",
)
@click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build the benchmark homes under DIR (default: a temp dir).",
)
@click.option("--keep", is_flag=True, help="Keep the homes (and bench.log) afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--verbose", is_flag=True, help="Show the runs' progress instead of logging it.")
def bench(
    accounts: int,
    items: int,
    hours: int,
    repeat: int,
    query_runs: int,
    web_clients: int,
    home: Path | None,
    keep: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Benchmark rebuild, steady hour, fan-out, queries and memory on a synthetic household.

    Always exits 0 when the measures could be taken: missed targets are reported, not
    failed. Progress goes to stderr; the table (or with --json the one JSON object) to
    stdout.
    """
    base = home.resolve() if home else Path(tempfile.mkdtemp(prefix="finbot-bench-"))
    try:
        result = run_bench(
            base,
            accounts=accounts,
            items=items,
            hours=hours,
            repeat=repeat,
            query_runs=query_runs,
            verbose=verbose,
            web_clients=web_clients,
        )
    finally:
        if keep:
            _say(f"homes kept under {base}")
        elif home is None:
            shutil.rmtree(base, ignore_errors=True)
        else:  # only what the benchmark made: DIR may hold other things
            for name in BENCH_DIRS:
                shutil.rmtree(base / name, ignore_errors=True)
            (base / "bench.log").unlink(missing_ok=True)
    if as_json:
        click.echo(json.dumps(result, default=str))
    else:
        click.echo(render_table(result))


if __name__ == "__main__":
    bench()
