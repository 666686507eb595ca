"""The `finbot` command: set up a home, run the demo, query the marts, manage secrets."""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import click

from finbot_pipelines import numbers
from finbot_pipelines.bench import bench
from finbot_pipelines.cli_accounts import accounts
from finbot_pipelines.cli_web import users, web
from finbot_pipelines.config.home import (
    DEMO_DAYS,
    ensure_dagster_home,
    init_home,
    loose_modes_warning,
    open_home,
    private_umask,
)
from finbot_pipelines.config.loading import ConfigError, load_config
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.vault import Vault, VaultError


def _paths(ctx: click.Context) -> HomePaths:
    paths: HomePaths = ctx.obj
    return paths


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"finbot: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FINBOT_HOME",
    help="The finbot home (default: $FINBOT_HOME, else .finbot/ in the checkout).",
)
@click.pass_context
def main(ctx: click.Context, home: Path | None) -> None:
    """finbot: your household's wealth, fetched hourly, valued in your currency."""
    private_umask()  # every file finbot (and dbt, Dagster) writes from here on is 0600
    paths = HomePaths.resolve(home)
    open_home(paths.home)
    os.environ["FINBOT_HOME"] = str(paths.home)
    os.environ.setdefault("DAGSTER_HOME", str(paths.dagster_home))
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    # a handler that cannot write (a full disk) must not print a traceback per record:
    # the failure's cause is the command's last line
    logging.raiseExceptions = False
    ctx.obj = paths


# --------------------------------------------------------------------------- init / config


@main.command()
@click.option("--demo", is_flag=True, help="Write the demo household config.")
@click.pass_context
def init(ctx: click.Context, demo: bool) -> None:
    """Create FINBOT_HOME: vault key (0600), Dagster instance dir, a first config."""
    paths = _paths(ctx)
    for line in init_home(paths, demo=demo) or ["nothing to do: the home is already set up"]:
        click.echo(line)


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Validate finbot.yaml and say what it holds; warn about files others can read."""
    paths = _paths(ctx)
    warning = loose_modes_warning(paths.home)
    if warning:
        click.echo(f"finbot: {warning}", err=True)
    try:
        cfg = load_config(paths.config)
    except ConfigError as exc:
        _fail(str(exc))
    click.echo(
        f"{paths.config}: valid — {len(cfg.profiles)} profile(s), "
        f"{len(cfg.linked_accounts)} linked account(s), fx_source={cfg.fx_source}"
    )


# --------------------------------------------------------------------------- secrets


@main.group()
def secrets() -> None:
    """Manage the encrypted credential vault ($FINBOT_HOME/vault.enc)."""


def _vault(paths: HomePaths) -> Vault:
    try:
        return Vault.open(paths.home)
    except VaultError as exc:
        _fail(str(exc))
        raise  # unreachable


@secrets.command("set")
@click.argument("name")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from standard input.")
@click.pass_context
def secrets_set(ctx: click.Context, name: str, from_stdin: bool) -> None:
    """Store the secret NAME (prompted without echo, or read from stdin)."""
    vault = _vault(_paths(ctx))
    if from_stdin or not sys.stdin.isatty():
        value = sys.stdin.read().rstrip("\n")
    else:
        value = click.prompt(f"Value for {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        _fail(f"refusing to store an empty value for '{name}'")
    try:
        vault.set(name, value)
    except VaultError as exc:
        _fail(str(exc))
    click.echo(f"stored secret '{name}'")


@secrets.command("list")
@click.pass_context
def secrets_list(ctx: click.Context) -> None:
    """List the secret names (never their values)."""
    for name in _vault(_paths(ctx)).names():
        click.echo(name)


@secrets.command("remove")
@click.argument("name")
@click.pass_context
def secrets_remove(ctx: click.Context, name: str) -> None:
    """Remove the secret NAME."""
    vault = _vault(_paths(ctx))
    try:
        vault.remove(name)
    except VaultError as exc:
        _fail(str(exc))
    click.echo(f"removed secret '{name}'")


@secrets.command("rotate-key")
@click.pass_context
def secrets_rotate_key(ctx: click.Context) -> None:
    """Re-encrypt the vault with a new key (written to the key file, or printed once).

    With a key file ($FINBOT_HOME/secret.key) the new key replaces it. With
    FINBOT_SECRET_KEY the new key is printed once on stderr: set the variable to
    it before the next run.
    """
    from cryptography.fernet import Fernet

    vault = _vault(_paths(ctx))
    new_key = Fernet.generate_key()
    try:
        vault.rotate_key(new_key)
    except VaultError as exc:
        _fail(str(exc))
    if os.environ.get("FINBOT_SECRET_KEY"):
        click.echo(
            "vault re-encrypted. Set FINBOT_SECRET_KEY to this new key now (shown once):",
            err=True,
        )
        click.echo(new_key.decode(), err=True)
    else:
        click.echo(f"vault re-encrypted with a new key in {_paths(ctx).key_file}")


# --------------------------------------------------------------------------- sql


def _format_value(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    if isinstance(v, Decimal):
        return numbers.decimal_text(v)
    return v


def _table_cell(v: Any, scale: int | None) -> str:
    """A cell of `--format table`: every digit kept (decimals exact, floats in their
    shortest form), thousands grouped, valuation amounts with at least 2 decimals."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, Decimal):
        places = 2 if scale == numbers.VALUATION_SCALE else 0
        return numbers.grouped(numbers.decimal_text(v, places))
    if isinstance(v, float):
        return numbers.grouped(repr(v)) if "e" not in repr(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    return str(_format_value(v))


def format_rows(
    columns: list[str],
    rows: list[tuple[Any, ...]],
    fmt: str,
    types: list[Any] | None = None,
) -> str:
    if fmt == "json":
        return numbers.dumps(
            [
                {
                    c: v if isinstance(v, Decimal) else _format_value(v)
                    for c, v in zip(columns, r, strict=True)
                }
                for r in rows
            ],
            indent=2,
            default=str,
        )
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_format_value(v) for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate

    scales = [numbers.scale_of(t) for t in (types or [None] * len(columns))]
    numeric = [
        any(isinstance(r[i], int | float | Decimal) and not isinstance(r[i], bool) for r in rows)
        for i in range(len(columns))
    ]
    cells = [[_table_cell(v, scales[i]) for i, v in enumerate(r)] for r in rows]
    return tabulate(
        cells,
        headers=columns,
        tablefmt="simple",
        disable_numparse=True,
        colalign=["right" if n else "left" for n in numeric] if columns else None,
    )


@main.command()
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str) -> None:
    """Run QUERY on the published marts ($FINBOT_HOME/finbot.duckdb, read-only).

    Tables live in the schema `marts`, e.g. marts.fct_profile_valuation_hourly.
    """
    import duckdb

    from finbot_pipelines.warehouse.queries import open_published

    paths = _paths(ctx)
    if not query.strip():
        _fail('give a query, e.g. finbot sql "select * from fct_profile_valuation_hourly limit 5"')
    try:
        with open_published(paths.published) as con:
            cur = con.execute(query)
            columns = [d[0] for d in cur.description or []]
            types = [d[1] for d in cur.description or []]
            rows = cur.fetchall()
    except FileNotFoundError as exc:
        _fail(str(exc))
    except duckdb.Error as exc:
        _fail(f"query failed: {exc}")
    click.echo(format_rows(columns, rows, fmt, types))


# --------------------------------------------------------------------------- runs


def _last_complete_hour() -> datetime:
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def _run_pipeline(
    paths: HomePaths, first: datetime, last: datetime, verbose: bool = False
) -> str | None:
    """Land FX for the days, then ingest, transform and publish the hours [first, last];
    None, or the cause of the failure in one line."""
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_failure_cause, run_job, run_published

    ensure_dagster_home(paths)
    defs = build_definitions(str(paths.home))
    yesterday = datetime.combine(
        _last_complete_hour().date() - timedelta(days=1), datetime.min.time()
    )
    fx_first = datetime.combine(first.date(), datetime.min.time())
    with dg.DagsterInstance.get() as instance:
        if fx_first <= yesterday:
            click.echo(f"FX rates {fx_first:%Y-%m-%d} .. {yesterday:%Y-%m-%d}", err=True)
            fx = run_job(
                defs,
                FX_JOB,
                fx_first,
                yesterday,
                instance=instance,
                fmt="%Y-%m-%d",
                verbose=verbose,
            )
            if not fx.success:
                return f"FX rates: {run_failure_cause(fx)}"
        hours = int((last - first) / timedelta(hours=1)) + 1
        click.echo(
            f"pipeline: {hours} hours {first:%Y-%m-%d %H:00} .. {last:%Y-%m-%d %H:00} UTC "
            "as one run",
            err=True,
        )
        result = run_job(defs, HOURLY_JOB, first, last, instance=instance, verbose=verbose)
        # failed only at `every_account_fetched`: published, the failed accounts named
        return None if run_published(result) else run_failure_cause(result)


def _hour_option(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        hour = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{name} must be an hour like '2026-11-24 13:00' (UTC), got {value!r}")
    if hour.minute or hour.second or hour.microsecond or hour.tzinfo is not None:
        _fail(f"{name} must be a whole hour in UTC without a time zone, got {value!r}")
    return hour


def print_net_worth(paths: HomePaths) -> None:
    from finbot_pipelines.warehouse.queries import latest_net_worth

    cfg = load_config(paths.config)
    rows = latest_net_worth(paths.published)
    fx_note = (
        "FX: static demo rates from finbot.yaml, not market rates"
        if cfg.fx_source == "static"
        else "FX: ECB euro reference rates"
    )
    click.echo("")
    click.echo(f"Net worth at the latest hour ({fx_note}):")
    for r in rows:
        stale = f", {r['stale_accounts']} stale account(s)" if r["stale_accounts"] else ""
        click.echo(
            f"  {r['profile_id']:<12} {r['net_worth']:>14,.2f} {r['valuation_ccy']}  "
            f"(assets {r['total_assets']:,.2f}, liabilities {r['total_liabilities']:,.2f}; "
            f"{r['valuation_hour']:%Y-%m-%d %H:00} UTC{stale})"
        )
    print_performance(paths)


def _amount(value: object) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def print_performance(paths: HomePaths) -> None:
    """Since the first valuation: what was put in, apart from what the money earned."""
    from finbot_pipelines.warehouse.queries import profile_performance

    rows = [r for r in profile_performance(paths.published) if r["start_day"] is not None]
    if not rows:
        return
    click.echo("Since the first valuation (contributions apart from market gain):")
    for r in rows:
        twr = "n/a" if r["twr"] is None else f"{100 * r['twr']:+.2f} %"
        click.echo(
            f"  {r['profile_id']:<12} {r['start_day']:%Y-%m-%d} .. {r['end_day']:%Y-%m-%d}: "
            f"net contributions {_amount(r['net_contributions'])} {r['valuation_ccy']}, "
            f"income {_amount(r['income'])}, market gain {_amount(r['market_gain'])} "
            f"(time-weighted return {twr})"
        )


@main.command()
@click.option(
    "--days", default=DEMO_DAYS, show_default=True, help="Hours of history to backfill, in days."
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Also print dbt's line for every model and test."
)
@click.pass_context
def demo(ctx: click.Context, days: int, verbose: bool) -> None:
    """Set up the demo household and backfill, build and publish its last DAYS days."""
    paths = _paths(ctx)
    for line in init_home(paths, demo=True):
        click.echo(line, err=True)
    try:
        cfg = load_config(paths.config)
    except ConfigError as exc:
        _fail(str(exc))
    last = _last_complete_hour()
    first = max(last - timedelta(hours=days * 24 - 1), cfg.history_start)
    cause = _run_pipeline(paths, first, last, verbose)
    if cause:
        _fail(f"the demo run failed: {cause}", 1)
    print_net_worth(paths)
    for profile in load_config(paths.config).profiles:
        latest = paths.reports / f"{profile.id}.html"
        if latest.exists():
            click.echo(f"  {profile.id} report: {latest}")
    click.echo(
        "\nNext:\n"
        "  ./finbotctl ui      # the Dagster UI on http://127.0.0.1:3000: runs, assets, lineage\n"
        '  ./finbotctl sql "select * from marts.fct_profile_valuation_hourly '
        'order by valuation_hour desc limit 5"\n'
        f"  published marts: {paths.published}"
    )


@main.command()
@click.option(
    "--hours",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many hours, ending at --last.",
)
@click.option(
    "--last",
    "last_s",
    default=None,
    help="The last hour to run, 'YYYY-MM-DD HH:00' UTC (default: the last complete hour).",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Also print dbt's line for every model and test."
)
@click.pass_context
def run(ctx: click.Context, hours: int, last_s: str | None, verbose: bool) -> None:
    """Ingest, transform and publish some hours now, as one run (what the schedule does)."""
    paths = _paths(ctx)
    try:
        cfg = load_config(paths.config)
    except ConfigError as exc:
        _fail(str(exc))
    from finbot_pipelines.defs.window import impossible_hours

    last = _hour_option(last_s, "--last") or _last_complete_hour()
    first = last - timedelta(hours=hours - 1)
    why = impossible_hours(first, last, cfg.history_start, datetime.now(UTC).replace(tzinfo=None))
    if why:
        _fail(f"refused: {why}; nothing was fetched or written")
    cause = _run_pipeline(paths, first, last, verbose)
    if cause:
        _fail(f"the run failed: {cause}", 1)
    print_net_worth(paths)


@main.group()
def hours() -> None:
    """Manage the hours of the history (raw data and marts)."""


@hours.command("forget")
@click.option("--first", "first_s", required=True, help="First hour to forget, 'YYYY-MM-DD HH:00'.")
@click.option("--last", "last_s", required=True, help="Last hour to forget, 'YYYY-MM-DD HH:00'.")
@click.option("--yes", is_flag=True, help="Do not ask for a confirmation.")
@click.pass_context
def hours_forget(ctx: click.Context, first_s: str, last_s: str, yes: bool) -> None:
    """Remove the hours FIRST .. LAST (UTC, both inclusive) that should not be there.

    Their raw fetches, balances and prices are deleted from the warehouse, and the
    marts are rebuilt and published from what stays (the later hours too: they may
    have carried values from or referred to the forgotten ones). A bank will not
    send a past hour again: only forget what is wrong (a future hour, a test).
    """
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import TRANSFORM_JOB
    from finbot_pipelines.defs.automation.runs import run_job
    from finbot_pipelines.warehouse.build_window import latest_ingested_hour
    from finbot_pipelines.warehouse.raw import ensure_raw_schema, forget_hours, hour_counts

    paths = _paths(ctx)
    try:
        load_config(paths.config)
    except ConfigError as exc:
        _fail(str(exc))
    first, last = _hour_option(first_s, "--first"), _hour_option(last_s, "--last")
    assert first is not None and last is not None
    if last < first:
        _fail(f"--last ({last_s}) is before --first ({first_s})")
    if not paths.warehouse.exists():
        _fail(f"no warehouse at {paths.warehouse}: nothing to forget")
    import duckdb

    try:
        con = duckdb.connect(str(paths.warehouse))
    except duckdb.Error as exc:
        _fail(f"cannot open the warehouse {paths.warehouse}: {exc}")
    try:
        ensure_raw_schema(con)
        counts = hour_counts(con, first, last)
        window = f"{first:%Y-%m-%d %H:00} .. {last:%Y-%m-%d %H:00} UTC"
        if not any(counts.values()):
            click.echo(f"no hour of {window} is stored: nothing to forget")
            return
        click.echo(
            f"{window}: {counts['linked_account_hours']} account-hour(s), "
            f"{counts['fetches']} fetch(es), {counts['items']} item row(s), "
            f"{counts['unit_prices']} unit price(s)"
        )
        if not yes and not click.confirm("forget these hours for good?", default=False):
            _fail("nothing was forgotten", 1)
        forget_hours(con, first, last)
        latest = latest_ingested_hour(con)
    finally:
        con.close()
    rebuild_last = max(last, latest) if latest is not None else last
    click.echo(
        f"forgotten; rebuilding {first:%Y-%m-%d %H:00} .. {rebuild_last:%Y-%m-%d %H:00} UTC",
        err=True,
    )
    ensure_dagster_home(paths)
    defs = build_definitions(str(paths.home))
    with dg.DagsterInstance.get() as instance:
        result = run_job(defs, TRANSFORM_JOB, first, rebuild_last, instance=instance)
    if not result.success:
        _fail(
            "the hours are forgotten but the rebuild failed: run "
            f"`finbot rebuild --first '{first:%Y-%m-%d %H:00}' --last "
            f"'{rebuild_last:%Y-%m-%d %H:00}'`",
            1,
        )


@main.command()
@click.option("--first", "first_s", default=None, help="First hour to rebuild, 'YYYY-MM-DD HH:00'.")
@click.option("--last", "last_s", default=None, help="Last hour to rebuild, 'YYYY-MM-DD HH:00'.")
@click.option(
    "--full-refresh",
    is_flag=True,
    help="Drop and rebuild every mart from all the raw history (after a change to the models).",
)
@click.pass_context
def rebuild(
    ctx: click.Context, first_s: str | None, last_s: str | None, full_refresh: bool
) -> None:
    """Rebuild and publish the marts from the raw history already stored, fetching nothing.

    Without --first/--last every hour is rebuilt; with them, only those hours (UTC,
    both inclusive), e.g. after correcting FX rates. One run of the finbot_transform job.
    """
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import TRANSFORM_JOB
    from finbot_pipelines.defs.automation.runs import run_failure_cause, run_job
    from finbot_pipelines.defs.transform.assets import DBT_STEP

    paths = _paths(ctx)
    try:
        cfg = load_config(paths.config)
    except ConfigError as exc:
        _fail(str(exc))
    first, last = _hour_option(first_s, "--first"), _hour_option(last_s, "--last")
    if (first is None) != (last is None):
        _fail("give both --first and --last, or neither (every hour)")
    if first is not None and last is not None and last < first:
        _fail(f"--last ({last_s}) is before --first ({first_s})")
    if first is not None and last is not None:
        from finbot_pipelines.defs.window import impossible_hours

        now = datetime.now(UTC).replace(tzinfo=None)
        why = impossible_hours(first, last, cfg.history_start, now)
        if why:
            _fail(f"refused: {why}; nothing was rebuilt")
    if full_refresh and first is not None:
        _fail("--full-refresh rebuilds every hour: leave out --first and --last")
    ensure_dagster_home(paths)
    defs = build_definitions(str(paths.home))
    config = {"ops": {DBT_STEP: {"config": {"full_refresh": True}}}} if full_refresh else None
    what = "every hour" if first is None else f"{first:%Y-%m-%d %H:00} .. {last:%Y-%m-%d %H:00} UTC"
    click.echo(f"rebuild: {what}{' (full refresh)' if full_refresh else ''}", err=True)
    with dg.DagsterInstance.get() as instance:
        result = run_job(defs, TRANSFORM_JOB, first, last, instance=instance, run_config=config)
    if not result.success:
        _fail(f"the rebuild failed: {run_failure_cause(result)}", 1)
    print_net_worth(paths)


def format_statement_outcome(outcome: dict[str, Any]) -> list[str]:
    """Lines telling what became of one statement file (the asset's metadata of it)."""
    status = outcome["status"]
    if status == "rejected":
        return [f"rejected: {outcome['message']}"]
    if status != "landed":
        return [f"{outcome['file']}: {status} ({outcome['message']}): nothing changed"]
    lines = [f"{outcome['file']}: landed"]
    for a in outcome["accounts"]:
        balance = (
            f"balance {numbers.grouped(numbers.decimal_text(Decimal(a['balance']), 2))} "
            f"{a['currency']} at {a['statement_date']}"
            if a["balance"] is not None
            else "no balance in the file (transactions only)"
        )
        closes = (
            f"; the {a['daily_closes']} day(s) before it from its transactions"
            if a.get("daily_closes")
            else ""
        )
        lines.append(
            f"  {a['sub_account_id']} ({a['name']}): {balance}; {a['transactions']} "
            f"transaction(s), at {a['hour']} UTC{closes}"
        )
    lines.extend(f"  note: {w}" for w in outcome["warnings"])
    return lines


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--account", "account_id", required=True, help="The statements linked account they belong to."
)
@click.pass_context
def import_statements(ctx: click.Context, files: tuple[Path, ...], account_id: str) -> None:
    """Land statement files (OFX/QFX, or CSV as the account's options describe) for the
    `statements` linked account ID, then rebuild and publish the hours they change.

    Balances and positions land at each statement's own date, transactions with them; a
    file landed before (the same bytes) changes nothing, overlapping statements never
    count a transaction twice. A file that cannot be read is refused whole, naming the
    file and the line. The files stay where they are (files dropped into
    $FINBOT_HOME/inbox/ID/ are landed by the inbox sensor and moved). Exits 1 when a
    file was refused.
    """
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.runs import run_failure_cause, run_job
    from finbot_pipelines.defs.ingest.statements import STATEMENTS_JOB, STATEMENTS_KEY
    from finbot_pipelines.warehouse.statement_import import PROVIDER_ID, last_complete_hour

    paths = _paths(ctx)
    try:
        cfg = load_config(paths.config)
    except ConfigError as exc:
        _fail(str(exc))
    account = next((a for a in cfg.linked_accounts if a.id == account_id), None)
    if account is None:
        _fail(f"no linked account '{account_id}' in {paths.config}")
    if account.provider != PROVIDER_ID:
        _fail(
            f"'{account_id}' is a {account.provider} account: statement files land in a "
            f"{PROVIDER_ID} account (`finbot accounts add {PROVIDER_ID} --id ID --profile P`)"
        )
    if not account.enabled:
        _fail(f"'{account_id}' is disabled: enable it first")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail(f"no such file: {', '.join(missing)}")
    ensure_dagster_home(paths)
    defs = build_definitions(str(paths.home))
    last = last_complete_hour(datetime.now(UTC).replace(tzinfo=None))
    config = {
        "ops": {
            "ingest__statements": {
                "config": {"account": account_id, "files": [str(f.resolve()) for f in files]}
            }
        }
    }
    with dg.DagsterInstance.get() as instance:
        result = run_job(defs, STATEMENTS_JOB, last, last, instance=instance, run_config=config)
    outcomes: list[dict[str, Any]] = []
    for mat in result.asset_materializations_for_node("ingest__statements"):
        if mat.asset_key == STATEMENTS_KEY:
            value = mat.metadata.get("files")
            outcomes = list(getattr(value, "data", None) or [])
    for o in outcomes:
        for line in format_statement_outcome(o):
            click.echo(line)
    if not result.success:
        _fail(f"the import failed: {run_failure_cause(result)}", 1)
    print_net_worth(paths)
    if any(o["status"] == "rejected" for o in outcomes):
        sys.exit(1)


@main.command()
@click.option("--profile", "profile_id", help="The profile (default: the first with a report).")
@click.pass_context
def report(ctx: click.Context, profile_id: str | None) -> None:
    """Print the path of the latest HTML wealth report."""
    from finbot_pipelines.defs.reports.html import latest_report_path

    try:
        click.echo(str(latest_report_path(_paths(ctx), profile_id)))
    except FileNotFoundError as exc:
        _fail(str(exc), 1)


# --------------------------------------------------------------------------- backup / restore


@main.command()
@click.argument("dest", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--with-vault",
    is_flag=True,
    help="Also copy the encrypted vault (its key is never copied: keep it apart).",
)
@click.pass_context
def backup(ctx: click.Context, dest: Path | None, with_vault: bool) -> None:
    """Back up the raw history and the config into a new directory in DEST.

    DEST defaults to $FINBOT_HOME/backups/, where the config's `backups_kept` newest
    backups are kept (7 by default); the daily schedule writes there too. The backup
    takes its turn at the warehouse (the finbot_warehouse pool slot): while a run is
    using it, the backup waits. `finbot restore DIR` rebuilds a home from it.
    """
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.backups import BACKUP_JOB, BACKUP_STEP
    from finbot_pipelines.defs.automation.runs import run_job
    from finbot_pipelines.defs.resources import WAREHOUSE_POOL
    from finbot_pipelines.warehouse.backup import KEY_NOTE

    paths = _paths(ctx)
    try:
        load_config(paths.config)
    except ConfigError as exc:
        _fail(str(exc))
    ensure_dagster_home(paths)
    defs = build_definitions(str(paths.home))
    config = {
        "ops": {
            BACKUP_STEP: {
                "config": {"dest": str(dest.resolve()) if dest else "", "with_vault": with_vault}
            }
        }
    }
    with dg.DagsterInstance.get() as instance:
        busy = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).active_slot_count
        if busy:
            click.echo(
                f"a run is using the warehouse (pool {WAREHOUSE_POOL}): the backup waits for "
                "its turn",
                err=True,
            )
        result = run_job(defs, BACKUP_JOB, None, None, instance=instance, run_config=config)
    if not result.success:
        _fail("the backup failed: see the messages above, or the run in the UI", 1)
    click.echo(f"backup written: {result.output_for_node(BACKUP_STEP)}")
    if with_vault:
        click.echo(f"the vault is in the backup, encrypted; {KEY_NOTE}")


@main.command()
@click.argument(
    "src", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--force",
    is_flag=True,
    help="Restore into a home that is not empty: its warehouse and config are renamed aside.",
)
@click.option(
    "--empty",
    is_flag=True,
    help="Start over with an empty history instead (no SRC): the warehouse is renamed aside.",
)
@click.option("--yes", is_flag=True, help="Do not ask for a confirmation (with --empty).")
@click.pass_context
def restore(ctx: click.Context, src: Path | None, force: bool, empty: bool, yes: bool) -> None:
    """Rebuild the home from the backup SRC: raw history, config (and vault), then the marts.

    The home must be empty (a new FINBOT_HOME) unless --force. The backup is checked
    whole first (manifest, checksums, row counts): a damaged or incomplete one is refused,
    naming the file. The marts are then rebuilt and published by the finbot_transform
    job, so they equal the original's. `finbot restore --empty` starts over on purpose
    with an empty history (the only way to: a lost warehouse otherwise stops every run).
    """
    import dagster as dg

    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import TRANSFORM_JOB
    from finbot_pipelines.defs.automation.runs import run_job
    from finbot_pipelines.warehouse.backup import KEY_NOTE, BackupError, restore_raw, start_over

    paths = _paths(ctx)
    if empty:
        if src is not None:
            _fail("give either SRC or --empty, not both")
        if not yes and not click.confirm(
            f"start {paths.home} over with an empty history? (the warehouse is kept aside)",
            default=False,
        ):
            _fail("nothing was changed", 1)
        for line in start_over(paths):
            click.echo(line)
        return
    if src is None:
        _fail("give the backup directory to restore, e.g. finbot restore ~/finbot/backups/...")
    try:
        restored = restore_raw(paths, src, force=force)
    except BackupError as exc:
        _fail(str(exc))
    extent = restored.manifest.extent
    click.echo(f"restored {extent.describe()} and the config from {restored.manifest.path}")
    for p in restored.set_aside:
        click.echo(f"  kept the previous {p.name.split('.before-restore')[0]} as {p}")
    if restored.vault_restored:
        click.echo(f"restored the encrypted vault; {KEY_NOTE}")
    if restored.manifest.with_users:
        click.echo("restored the web app's users and API tokens (everyone signs in again)")
    try:
        load_config(paths.config)
    except ConfigError as exc:
        _fail(f"the restored config is not valid here: {exc}")
    click.echo("rebuilding and publishing the marts from the restored history", err=True)
    ensure_dagster_home(paths)
    defs = build_definitions(str(paths.home))
    with dg.DagsterInstance.get() as instance:
        result = run_job(defs, TRANSFORM_JOB, None, None, instance=instance)
    if not result.success:
        _fail("the history is restored but the rebuild failed: run `finbot rebuild`", 1)
    print_net_worth(paths)


main.add_command(accounts)
main.add_command(bench)
main.add_command(users)
main.add_command(web)

if __name__ == "__main__":
    main()
