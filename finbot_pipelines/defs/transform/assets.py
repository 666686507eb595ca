"""dbt assets: staging -> intermediate -> marts, one dbt build per run.

The models are unpartitioned Dagster assets (one materialisation per model and
run, however many hours it rebuilds); the run's hours come from its tags
(`defs.window`) and reach dbt through the `finbot_control.build_window` table
(`warehouse.build_window`), so the incremental models rebuild only those hours
and dbt's partial parsing is never invalidated.
"""

import io
import json
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)
from packaging.version import Version

from finbot_pipelines.defs.automation.runs import DBT_STDOUT_ENV
from finbot_pipelines.defs.market.assets import FX_COVERAGE_KEY, FX_RATES_KEY, UNIT_PRICES_KEY
from finbot_pipelines.defs.partitions import HOURLY_FRESHNESS
from finbot_pipelines.defs.resources import WAREHOUSE_POOL, FinbotHome
from finbot_pipelines.defs.transform.project import dbt_project
from finbot_pipelines.defs.window import HourWindow, window_from_tags, with_dependents
from finbot_pipelines.warehouse.build_window import (
    clear_build_window,
    clear_pending_rebuild,
    last_build,
    latest_ingested_hour,
    pending_rebuild,
    record_build,
    set_build_window,
)
from finbot_pipelines.warehouse.raw import replace_profiles

#: raw tables landed by the ingest assets (one per linked account) ...
INGEST_TABLES = frozenset(
    {"fetches", "sub_accounts", "items", "linked_account_hours", "profiles", "transactions"}
)
#: ... and by the market assets.
MARKET_TABLES = {
    "fx_rates": (FX_RATES_KEY, FX_COVERAGE_KEY),
    "unit_prices": (UNIT_PRICES_KEY,),
}
LAYER_GROUPS = {"staging": "staging", "intermediate": "intermediate", "marts": "marts"}


class FinbotDbtTranslator(DagsterDbtTranslator):
    """Groups by layer, and draws raw sources as edges from the assets that land them.

    A dbt source `raw.items` is written for every linked account, so instead of one
    stub asset per raw table, a model reading a raw source depends on `ingest/landed`
    (materialised once per run, after every account is landed, failed ones too) or on
    the market assets for `raw.fx_rates` and `raw.unit_prices`.
    """

    def __init__(self, ingest_keys: Sequence[dg.AssetKey]) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))
        self._ingest_keys = list(ingest_keys)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        for part in fqn[1:-1]:
            if part in LAYER_GROUPS:
                return LAYER_GROUPS[part]
        return super().get_group_name(dbt_resource_props)

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: Any
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if not unique_id.startswith("model."):
            return spec
        if spec.group_name == "marts":
            spec = spec.replace_attributes(freshness_policy=HOURLY_FRESHNESS)
        sources = manifest["nodes"][unique_id].get("depends_on", {}).get("nodes", [])
        raw_tables = {manifest["sources"][s]["name"] for s in sources if s.startswith("source.")}
        if not raw_tables:
            return spec
        source_keys = {
            super(FinbotDbtTranslator, self).get_asset_spec(manifest, s, project).key
            for s in sources
            if s.startswith("source.")
        }
        deps = [d for d in spec.deps if d.asset_key not in source_keys]
        if raw_tables & INGEST_TABLES:
            deps.extend(dg.AssetDep(k) for k in self._ingest_keys)
        for table, keys in MARKET_TABLES.items():
            if table in raw_tables:
                deps.extend(dg.AssetDep(k) for k in keys)
        return spec.replace_attributes(deps=deps)


class FinbotDbtCliResource(DbtCliResource):
    """`DbtCliResource` without two costs finbot does not need (4-6 s a run here).

    Before each invocation dagster-dbt (0.29) runs `dbt --version` in a subprocess
    (a whole dbt start-up) to learn the version, and builds an in-process dbt
    adapter, used only to fetch row counts and column metadata, which finbot does
    not ask for. finbot's dbt is dbt-core from this same environment, so the
    installed package's version is the answer, and no adapter is built (dagster-dbt
    handles a missing adapter: it is what the fusion engine gets).
    """

    @cached_property
    def _cli_version(self) -> Version:
        return Version(installed_version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None


#: dbt's lines kept (without --verbose they are not printed) to explain a failed build
TAIL_LINES = 400
MAX_ERROR_LINES = 8
_DBT_ERROR_RE = re.compile(r"\b(ERROR|FAIL|Error|Failure)\b")
#: the pid the dbt launcher must be the child of (it exits when that process is gone)
DBT_PARENT_ENV = "FINBOT_DBT_PARENT_PID"


class _Tail(io.TextIOBase):
    """A stdout that keeps dbt's last lines instead of printing them."""

    def __init__(self, lines: deque[str]) -> None:
        self.lines = lines
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        self.lines.extend(p for p in parts if p.strip())
        return len(text)


@contextmanager
def dbt_stdout(quiet: bool) -> Iterator[deque[str]]:
    """Around the dbt stream: dagster-dbt prints each dbt event to stdout. Quiet (the CLI
    without --verbose) keeps them in a bounded tail instead, for the failure message."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    if not quiet:
        yield tail
        return
    saved = sys.stdout
    sys.stdout = _Tail(tail)
    try:
        yield tail
    finally:
        sys.stdout = saved


def write_dbt_launcher(directory: Path, dbt: str) -> Path:
    """An executable that runs ``dbt`` so that it dies with the process that started it
    (Linux's parent-death signal): a run killed with SIGKILL leaves no dbt holding the
    warehouse lock. Rewritten only when its content changes."""
    text = (
        f"#!{sys.executable}\n"
        "# written by finbot (defs/transform/assets.py): dbt dies with the run that started it\n"
        "import ctypes, os, signal, sys\n"
        "try:\n"
        "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)\n"
        "except (OSError, AttributeError):\n"
        "    pass\n"
        f"parent = os.environ.get({DBT_PARENT_ENV!r}, '')\n"
        "if parent.isdigit() and os.getppid() != int(parent):\n"
        "    sys.exit('finbot: the run that started dbt is gone')\n"
        f"os.execv({dbt!r}, [{dbt!r}, *sys.argv[1:]])\n"
    )
    path = directory / "finbot-dbt-launcher"
    if not path.exists() or path.read_text() != text:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o700)
        os.replace(tmp, path)
    return path


#: the op (and step) name of the dbt assets
DBT_STEP = "finbot_dbt"


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False


def missing_fx_pairs_note(finbot: FinbotHome) -> str:
    """Name the FX pairs the valuation needed and could not find, if any."""
    try:
        with finbot.warehouse() as con:
            rows = con.execute(
                "select pair, first_missing_hour, last_missing_hour "
                "from intermediate.int_fx_missing_pairs order by pair"
            ).fetchall()
    except Exception:  # the view may not exist yet if the build failed earlier
        return ""
    if not rows:
        return ""
    pairs = "; ".join(f"{p} ({a:%Y-%m-%d %H:00} .. {b:%Y-%m-%d %H:00} UTC)" for p, a, b in rows)
    return (
        f" Missing FX rates: {pairs}. Add the currencies to the rates (fx_static_rates, or a "
        "source that publishes them) and rebuild those hours."
    )


def build_dbt_assets(ingest_keys: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        dagster_dbt_translator=FinbotDbtTranslator(ingest_keys),
        pool=WAREHOUSE_POOL,
        name=DBT_STEP,
    )
    def finbot_dbt(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        finbot: FinbotHome,
        config: DbtBuildConfig,
    ) -> Iterator[Any]:
        paths = finbot.paths
        cfg = finbot.config()
        valuation = json.dumps(cfg.valuation_settings(), sort_keys=True)
        with finbot.warehouse() as con:  # also creates the raw schema the sources read
            # the profiles' currencies of the config now, also when nothing was ingested
            replace_profiles(con, [(p.id, p.name, p.valuation_ccy) for p in cfg.profiles])
            asked = None if config.full_refresh else window_from_tags(context.run.tags)
            # hours a statement landed in the past are rebuilt with the next build
            pending = pending_rebuild(con)
            widened = ""
            if asked is not None and pending is not None and pending[0] < asked.first:
                asked = HourWindow(pending[0], asked.last)
                widened = f"hours from {pending[0]:%Y-%m-%d %H:00} changed (statements landed)"
            window, why = build_window_of(
                asked, latest_ingested_hour(con), last_build(con), valuation
            )
            why = "; ".join(w for w in (widened, why) if w)
            set_build_window(con, None if window is None else (window.first, window.last))
        context.log.info(
            f"dbt build of {'every hour' if window is None else f'{window} ({window.hours} h)'}"
            + (" with --full-refresh" if config.full_refresh else "")
            + (f": {why}" if why else "")
        )
        os.environ["FINBOT_WAREHOUSE"] = str(paths.warehouse)
        os.environ[DBT_PARENT_ENV] = str(os.getpid())  # the launcher dies with this process
        quiet = os.environ.get(DBT_STDOUT_ENV) == "quiet"
        # colour codes only for a terminal (not in compute logs, pipes or cron mail)
        os.environ["DBT_USE_COLORS"] = "true" if not quiet and sys.stdout.isatty() else "false"
        # dbt unit tests check the SQL, not the data: the test suite runs them
        # (test_dbt_marts); every hourly build runs the data tests only.
        args = ["build", "--exclude-resource-type", "unit_test"]
        if config.full_refresh:
            args.append("--full-refresh")
        paths.dbt_target.mkdir(parents=True, exist_ok=True)
        invocation = None
        try:
            invocation = dbt.cli(
                args, context=context, target_path=paths.dbt_target, raise_on_error=False
            )
            with dbt_stdout(quiet) as tail:
                yield from invocation.stream()
        finally:
            # if reading dbt's events failed, dbt still runs and holds the warehouse: stop
            # it first, so that the error raised is that failure, not the lock
            if invocation is not None:
                stop_process(invocation.process)
            with finbot.warehouse() as con:
                clear_build_window(con)
        if not invocation.is_successful():
            errors = [line for line in tail if _DBT_ERROR_RE.search(line)][-MAX_ERROR_LINES:]
            raise dg.Failure(
                description="dbt build failed"
                + (": " + " | ".join(errors) if errors else ": see the failing models and checks")
                + "."
                + missing_fx_pairs_note(finbot)
            )
        with finbot.warehouse() as con:
            if pending is not None:
                clear_pending_rebuild(con, pending[1])
            record_build(
                con,
                context.run.run_id,
                None if window is None else (window.first, window.last),
                valuation,
                datetime.now(UTC).replace(tzinfo=None),
            )

    return finbot_dbt


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """Terminate ``proc`` if it still runs and wait for it (killed after ``grace_s``)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def build_window_of(
    asked: HourWindow | None,
    latest: datetime | None,
    previous: tuple[tuple[datetime, datetime] | None, str] | None,
    valuation: str,
) -> tuple[HourWindow | None, str]:
    """The hours a dbt build must rebuild, and why when it is more than asked.

    ``asked`` is the run's window (None: every hour), ``latest`` the newest ingested
    hour, ``previous`` the last build's (window, valuation settings) and ``valuation``
    this config's. Settings that value past hours (a valuation currency, the static
    rates, the static unit prices, the history start) changed since the last build:
    every hour, so no mart mixes the old and the new. Otherwise the asked hours and
    every later one (:func:`with_dependents`)."""
    if asked is None:
        return None, ""
    if previous is not None and previous[1] != valuation:
        changed = valuation_changes(json.loads(previous[1]), json.loads(valuation))
        return None, (
            f"the valuation settings changed since the last build ({'; '.join(changed)}): "
            "every hour is valued again"
        )
    window = with_dependents(asked, latest)
    if window != asked:
        return window, (
            f"the hours after {asked.last:%Y-%m-%d %H:00} depend on the ones rebuilt "
            "(carried values, change references, periods): rebuilt up to "
            f"{window.last:%Y-%m-%d %H:00}"
        )
    return window, ""


def valuation_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two valuation settings, in words."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    out.append(f"{key}.{k}: {a.get(k)} -> {b.get(k)}")
        else:
            out.append(f"{key}: {a} -> {b}")
    return out
