"""Launch the pipeline's jobs from the command line, in-process, with a progress display.

Runs go to the Dagster instance of `$DAGSTER_HOME` (the embedded default is
`$FINBOT_HOME/dagster`), so they show in the UI like scheduled ones.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

import dagster as dg

from finbot_pipelines.defs.partitions import HOUR_FMT

PROGRESS_LOGGER = "finbot_progress"


class _ProgressHandler(logging.Handler):
    """Prints the run's story in a few lines: steps, ingest progress, dbt models, failures."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.started = time.monotonic()
        self.models = 0

    def _print(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {text}", file=self.stream, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        meta: Mapping[str, Any] = getattr(record, "dagster_meta", {}) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None:
            message = str(meta.get("orig_message") or record.getMessage())
            if record.levelno >= logging.WARNING or message.startswith("progress:"):
                self._print(f"{step}: {message}")
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self._print(f"{step}: started")
        elif kind == "STEP_SUCCESS":
            self._print(f"{step}: done")
        elif kind == "ASSET_MATERIALIZATION" and step.startswith("finbot_dbt"):
            self.models += 1
            key = event.asset_key.to_user_string() if event.asset_key else "?"
            self._print(f"{step}: built {key} ({self.models})")
        elif kind == "STEP_FAILURE":
            err = event.step_failure_data.error if event.step_failure_data else None
            self._print(f"{step}: FAILED {err.message.strip() if err else ''}")
        elif kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if data is not None and not getattr(data, "passed", True):
                key = data.asset_key.to_user_string()
                self._print(f"{step}: check {data.check_name} on {key} did not pass")


@dg.logger(None, description="Concise progress on stderr, for `finbot demo` and `finbot run`.")
def finbot_progress(_init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.getLogger(PROGRESS_LOGGER)
    log.handlers = [_ProgressHandler(sys.stderr)]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def partition_range_tags(first: datetime, last: datetime, fmt: str = HOUR_FMT) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.strftime(fmt),
        "dagster/asset_partition_range_end": last.strftime(fmt),
    }


def run_job(
    defs: dg.Definitions,
    job_name: str,
    first: datetime,
    last: datetime,
    *,
    instance: dg.DagsterInstance,
    fmt: str = HOUR_FMT,
    progress: bool = True,
    run_config: Mapping[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute ``job_name`` over the partitions [first, last] as one run."""
    job = defs.resolve_job_def(job_name)
    config: dict[str, Any] = dict(run_config or {})
    if progress:
        config["loggers"] = {PROGRESS_LOGGER: {}}
    return job.execute_in_process(
        instance=instance,
        tags=partition_range_tags(first, last, fmt),
        run_config=config,
        raise_on_error=False,
    )
