"""What the web app reads: the published marts ($FINBOT_HOME/finbot.duckdb), read-only.

The catalog is replaced by a rename after each publish. :class:`Published` keeps one
read-only connection to the file it opened and opens the new one when the path's inode
changes, so the app sees a newer publish without a restart, and a request always reads
one whole publish (its cursor holds the catalog it started with; the period files a
retired catalog names are kept for a grace period by the publisher).

Every query takes the profile id from the caller, who has authorised it (auth.py): no
function here decides who may see what. Amounts stay ``Decimal`` (exact); the API writes
them as decimal strings with their currency.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from finbot_pipelines.config.loading import load_config
from finbot_pipelines.config.schema import FinbotConfig, LinkedAccount
from finbot_pipelines.warehouse.queries import has_mart, parse_warnings
from finbot_pipelines.warehouse.report_data import load_accounts

#: The change windows of fct_valuation_changes, shortest first.
CHANGE_WINDOWS: tuple[str, ...] = ("1h", "1d", "1w", "1m", "6m", "1y", "2y")
#: History ranges and how far back each reaches (None: all).
RANGES: dict[str, timedelta | None] = {
    "1d": timedelta(days=1),
    "1w": timedelta(days=7),
    "1m": timedelta(days=30),
    "3m": timedelta(days=91),
    "6m": timedelta(days=182),
    "1y": timedelta(days=365),
    "2y": timedelta(days=730),
    "all": None,
}


class NotPublished(RuntimeError):
    """Nothing is published yet (no finbot.duckdb)."""


class Published:
    """A shared read-only view of the published catalog that follows each publish.

    DuckDB keeps one database instance per path in a process, so a second
    ``duckdb.connect(path)`` after the rename would still read the old file. Each
    catalog is therefore attached read-only to its own in-memory connection; the one it
    replaces is closed only after ``RETIRE_AFTER_S`` (a request still reading it keeps
    its cursor until then)."""

    RETIRE_AFTER_S = 300.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._home = str(path.resolve().parent)
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._ident: tuple[int, int] | None = None
        self._retired: list[tuple[float, duckdb.DuckDBPyConnection]] = []

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _open(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"attach '{_sql_text(self.path)}' as published (read_only)")
            con.execute("use published")
            con.execute("set file_search_path = ?", [self._home])
        except BaseException:
            con.close()
            raise
        return con

    def _current(self) -> duckdb.DuckDBPyConnection:
        ident = self._identity()
        if ident is None:
            raise NotPublished(
                f"{self.path} does not exist yet: run `./finbotctl demo` or let a run "
                "publish the marts"
            )
        with self._lock:
            if self._con is None or ident != self._ident:
                now = time.monotonic()
                if self._con is not None:
                    self._retired.append((now, self._con))
                keep = []
                for since, old in self._retired:
                    if now - since >= self.RETIRE_AFTER_S:
                        old.close()
                    else:
                        keep.append((since, old))
                self._retired = keep
                self._con = self._open()
                self._ident = ident
            return self._con

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self._current().cursor()
        try:
            cur.execute("use published")
            cur.execute("set file_search_path = ?", [self._home])
            yield cur
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            for _, old in self._retired:
                old.close()
            if self._con is not None:
                self._con.close()
            self._con = None
            self._ident = None
            self._retired = []


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


class ConfigCache:
    """finbot.yaml, parsed again only when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cfg: FinbotConfig | None = None
        self._ident: tuple[int, int, int] | None = None

    def get(self) -> FinbotConfig:
        st = os.stat(self.path)
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._cfg is None or ident != self._ident:
                self._cfg = load_config(self.path)
                self._ident = ident
            return self._cfg


def _rows(cur: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any]) -> list[dict]:
    res = cur.execute(sql, dict(params))
    cols = [d[0] for d in res.description or []]
    return [dict(zip(cols, r, strict=True)) for r in res.fetchall()]


def publish_info(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    if not has_mart(cur, "publish_info"):
        return {}
    rows = _rows(cur, "select published_at, fx_source, publish_id from marts.publish_info", {})
    return rows[0] if rows else {}


# ---------------------------------------------------------------------- valuation


def latest(cur: duckdb.DuckDBPyConnection, profile_id: str) -> dict[str, Any] | None:
    """The profile's latest valued hour, with its changes over every window."""
    rows = _rows(
        cur,
        """
        select valuation_hour, valuation_ccy, total_assets, total_liabilities, net_worth,
               stale_accounts, unvalued_items
        from marts.fct_profile_valuation_hourly
        where profile_id = $p
        order by valuation_hour desc
        limit 1
        """,
        {"p": profile_id},
    )
    if not rows:
        return None
    row = rows[0]
    row["changes"] = changes(cur, profile_id, "profile", profile_id, row["valuation_hour"])
    return row


def changes(
    cur: duckdb.DuckDBPyConnection, profile_id: str, level: str, entity_id: str, hour: datetime
) -> dict[str, dict[str, Any]]:
    rows = _rows(
        cur,
        """
        select change_window, reference_hour, change_abs, change_rel
        from marts.fct_valuation_changes
        where profile_id = $p and level = $l and entity_id = $e and valuation_hour = $h
        """,
        {"p": profile_id, "l": level, "e": entity_id, "h": hour},
    )
    by_window = {str(r["change_window"]): r for r in rows}
    return {
        w: by_window.get(w, {"reference_hour": None, "change_abs": None, "change_rel": None})
        for w in CHANGE_WINDOWS
    }


def auto_granularity(range_: str) -> str:
    if range_ in ("1d", "1w"):
        return "hour"
    if range_ in ("2y", "all"):
        return "week"
    return "day"


#: auto granularity falls back to a finer one while the range holds fewer points than this
MIN_AUTO_POINTS = 8
FINER = {"month": "week", "week": "day", "day": "hour"}


def history(
    cur: duckdb.DuckDBPyConnection, profile_id: str, range_: str, granularity: str
) -> tuple[str, list[dict[str, Any]]]:
    """(granularity used, points): the last valued hour of each period of ``granularity``
    within ``range_`` back from the latest hour, oldest first. ``auto``: by the range
    (hours up to a week, days up to a year, weeks beyond), then finer while that gives
    fewer than MIN_AUTO_POINTS points (a young household's month is its hours)."""
    if granularity != "auto":
        return granularity, _history(cur, profile_id, range_, granularity)
    used = auto_granularity(range_)
    rows = _history(cur, profile_id, range_, used)
    while len(rows) < MIN_AUTO_POINTS and used in FINER:
        used = FINER[used]
        rows = _history(cur, profile_id, range_, used)
    return used, rows


def _history(
    cur: duckdb.DuckDBPyConnection, profile_id: str, range_: str, granularity: str
) -> list[dict[str, Any]]:
    span = RANGES[range_]
    bucket = {
        "hour": "valuation_hour",
        "day": "date_trunc('day', valuation_hour)",
        "week": "date_trunc('week', valuation_hour)",
        "month": "date_trunc('month', valuation_hour)",
    }[granularity]
    since = (
        "true"
        if span is None
        else f"valuation_hour > (select max(valuation_hour) from p) - interval "
        f"{int(span.total_seconds())} second"
    )
    return _rows(
        cur,
        f"""
        with p as (
            select * from marts.fct_profile_valuation_hourly where profile_id = $p
        )
        select valuation_hour, total_assets, total_liabilities, net_worth
        from p
        where {since}
        qualify row_number() over (partition by {bucket} order by valuation_hour desc) = 1
        order by valuation_hour
        """,
        {"p": profile_id},
    )


def holdings(cur: duckdb.DuckDBPyConnection, profile_id: str, hour: datetime) -> list[dict]:
    """The linked account -> sub-account -> item tree at ``hour``, in tree order, each node
    with its change over every window."""
    pivots = ",\n".join(
        f"max(change_abs) filter (where change_window = '{w}') as change_{w}_abs, "
        f"max(change_rel) filter (where change_window = '{w}') as change_{w}_rel, "
        f"max(reference_hour) filter (where change_window = '{w}') as change_{w}_ref"
        for w in CHANGE_WINDOWS
    )
    cols = ", ".join(
        f"c.change_{w}_abs, c.change_{w}_rel, c.change_{w}_ref" for w in CHANGE_WINDOWS
    )
    rows = _rows(
        cur,
        f"""
        with changes as (
            select level, entity_id, {pivots}
            from marts.fct_valuation_changes
            where profile_id = $p and valuation_hour = $h
            group by level, entity_id
        ),
        nodes as (
            select 'linked_account' as level, linked_account_id as entity_id,
                   null::varchar as parent_id, linked_account_id, linked_account_name as name,
                   provider_id, account_state, null::varchar as account_type,
                   null::varchar as currency, null::varchar as asset_class,
                   null::varchar as symbol, null::decimal(38, 18) as units,
                   value, is_stale and account_state <> 'statement' as is_stale,
                   source_fetch_hour, unvalued_items > 0 as is_unvalued,
                   lower(linked_account_name) as k1, '' as k2, '' as k3
            from marts.fct_linked_account_valuation_hourly
            where profile_id = $p and valuation_hour = $h
            union all
            select 'sub_account', linked_account_id || '/' || sub_account_id, linked_account_id,
                   linked_account_id, sub_account_name, provider_id, null, account_type,
                   sub_account_ccy, null, null, null, value, is_stale, source_fetch_hour,
                   unvalued_items > 0, lower(linked_account_name), lower(sub_account_name), ''
            from marts.fct_sub_account_valuation_hourly
            where profile_id = $p and valuation_hour = $h
            union all
            select 'item', linked_account_id || '/' || sub_account_id || '/' || item_name,
                   linked_account_id || '/' || sub_account_id, linked_account_id, item_name,
                   provider_id, null, account_type, item_ccy, asset_class, symbol, units,
                   value, is_stale, source_fetch_hour, is_unvalued,
                   lower(linked_account_name), lower(sub_account_name), lower(item_name)
            from marts.fct_item_valuation_hourly
            where profile_id = $p and valuation_hour = $h
        )
        select n.* exclude (k1, k2, k3), {cols}
        from nodes n
        left join changes c on c.level = n.level and c.entity_id = n.entity_id
        order by n.k1, n.linked_account_id, n.k2, n.entity_id.split('/')[2], n.k3,
                 n.entity_id
        """,
        {"p": profile_id, "h": hour},
    )
    for r in rows:
        r["changes"] = {
            w: {
                "change_abs": r.pop(f"change_{w}_abs"),
                "change_rel": r.pop(f"change_{w}_rel"),
                "reference_hour": r.pop(f"change_{w}_ref"),
            }
            for w in CHANGE_WINDOWS
        }
    return rows


def distribution(
    cur: duckdb.DuckDBPyConnection, profile_id: str, hour: datetime, dimension: str
) -> list[dict[str, Any]]:
    return _rows(
        cur,
        """
        select d.side, d.bucket, d.value, d.share
        from marts.mart_wealth_distribution d
        where d.profile_id = $p and d.valuation_hour = $h and d.dimension = $d
        order by d.side, d.value desc, d.bucket
        """,
        {"p": profile_id, "h": hour, "d": dimension},
    )


def linked_account_names(cur: duckdb.DuckDBPyConnection, profile_id: str) -> dict[str, str]:
    rows = _rows(
        cur,
        "select linked_account_id, linked_account_name from marts.mart_linked_account_health "
        "where profile_id = $p",
        {"p": profile_id},
    )
    return {str(r["linked_account_id"]): str(r["linked_account_name"]) for r in rows}


# ----------------------------------------------------------------------- accounts


def accounts(
    cur: duckdb.DuckDBPyConnection,
    profile_id: str,
    hour: datetime | None,
    configured: Sequence[LinkedAccount],
) -> list[dict[str, Any]]:
    """The profile's linked accounts with their health, status and fix (as the report)."""
    frame = load_accounts(cur, profile_id, hour or datetime(1970, 1, 1), configured)
    by_id = {a.id: a for a in configured if a.profile == profile_id}
    out: list[dict[str, Any]] = []
    for r in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        a = by_id.get(str(r["linked_account_id"]))
        r["warnings"] = parse_warnings(r.get("warnings"))
        r["configured"] = a is not None
        r["frozen"] = bool(a.frozen) if a else False
        r["enabled"] = bool(a.enabled) if a else False
        out.append(r)
    return out


# ------------------------------------------------------------ performance, flows


def performance(
    cur: duckdb.DuckDBPyConnection, profile_id: str, level: str, period_kind: str | None
) -> list[dict[str, Any]]:
    if not has_mart(cur, "fct_performance"):
        return []
    return _rows(
        cur,
        """
        select level, coalesce(linked_account_id, profile_id) as entity_id, linked_account_id,
               valuation_ccy, period_kind, period, start_day, end_day, end_hour,
               start_value, end_value, net_contributions, income, costs, market_gain,
               twr, mwr, unvalued_flows
        from marts.fct_performance
        where profile_id = $p and level = $l and ($k is null or period_kind = $k)
        order by entity_id, period_kind, start_day desc, period
        """,
        {"p": profile_id, "l": level, "k": period_kind},
    )


def cash_flows(
    cur: duckdb.DuckDBPyConnection,
    profile_id: str,
    level: str,
    first_month: date | None,
    last_month: date | None,
) -> list[dict[str, Any]]:
    if not has_mart(cur, "mart_cash_flows"):
        return []
    return _rows(
        cur,
        """
        select level, linked_account_id, month_start, flow_class, kind, category,
               valuation_ccy, inflow, outflow, net, transactions, unvalued_transactions
        from marts.mart_cash_flows
        where profile_id = $p and level = $l
          and ($f is null or month_start >= $f) and ($t is null or month_start <= $t)
        order by month_start desc, linked_account_id, flow_class, kind, category
        """,
        {"p": profile_id, "l": level, "f": first_month, "t": last_month},
    )


@dataclass(frozen=True)
class TransactionFilter:
    linked_account_id: str | None = None
    kind: str | None = None
    first_day: date | None = None
    last_day: date | None = None
    text: str | None = None
    include_pending: bool = True


_TX_WHERE = """
    profile_id = $p
    and ($a is null or linked_account_id = $a)
    and ($k is null or kind = $k)
    and ($f is null or transaction_date >= $f)
    and ($t is null or transaction_date <= $t)
    and ($pending or not pending)
    and ($q is null or contains(lower(coalesce(description, '') || ' '
                                     || coalesce(merchant, '') || ' '
                                     || coalesce(category, '')), lower($q)))
"""
_TX_COLS = """
    linked_account_id, linked_account_name, provider_id, sub_account_id, transaction_id,
    transaction_date, posted_date, pending, amount, currency, valuation_ccy,
    amount_valuation, kind, is_internal_transfer, matched_linked_account_id, flow_class,
    category, description, merchant, symbol, units
"""


def transactions(
    cur: duckdb.DuckDBPyConnection,
    profile_id: str,
    flt: TransactionFilter,
    limit: int,
    offset: int,
) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page newest first)."""
    if not has_mart(cur, "fct_transactions"):
        return 0, []
    params = {
        "p": profile_id,
        "a": flt.linked_account_id,
        "k": flt.kind,
        "f": flt.first_day,
        "t": flt.last_day,
        "q": flt.text,
        "pending": flt.include_pending,
    }
    total_row = cur.execute(
        f"select count(*) from marts.fct_transactions where {_TX_WHERE}", params
    ).fetchone()
    rows = _rows(
        cur,
        f"""
        select {_TX_COLS} from marts.fct_transactions where {_TX_WHERE}
        order by transaction_date desc, linked_account_id, transaction_id
        limit {int(limit)} offset {int(offset)}
        """,
        params,
    )
    return (int(total_row[0]) if total_row else 0), rows


def transaction(
    cur: duckdb.DuckDBPyConnection, profile_id: str, linked_account_id: str, transaction_id: str
) -> dict[str, Any] | None:
    if not has_mart(cur, "fct_transactions"):
        return None
    rows = _rows(
        cur,
        f"""
        select {_TX_COLS} from marts.fct_transactions
        where profile_id = $p and linked_account_id = $a and transaction_id = $x
        """,
        {"p": profile_id, "a": linked_account_id, "x": transaction_id},
    )
    return rows[0] if rows else None


def is_missing(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and value != value)
    )


def decimal_text(value: Any) -> str | None:
    """An exact amount as a plain decimal string: at least 2 decimals, no trailing zeros
    beyond them, never an exponent (None stays None)."""
    if is_missing(value):
        return None
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    text = format(d, "f")
    if "." not in text:
        return text + ".00"
    whole, frac = text.split(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac.ljust(2, '0')}"
