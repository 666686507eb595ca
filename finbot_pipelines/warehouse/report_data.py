"""What the wealth report shows, read from the published marts (read-only).

Plain Python, no Dagster and no rendering: each query returns a pandas frame or a
small dataclass. `load_report_data` gathers everything one profile's report needs
at the profile's latest valued hour. The SQL here only reads the published marts;
every computation (sums, changes, periods) already happened in dbt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from finbot_pipelines.warehouse.queries import open_published

#: Change windows shown in the holdings tree, in order.
TREE_WINDOWS: tuple[str, ...] = ("1d", "1w", "1m", "1y", "2y")
#: Distribution dimensions shown as charts, in order.
DISTRIBUTION_DIMENSIONS: tuple[str, ...] = ("linked_account", "asset_class", "currency")
#: History charts keep every hour of this many last days, one point per day before.
HOURLY_HISTORY_DAYS = 31


@dataclass(frozen=True)
class ReportData:
    """Everything one profile's report shows, at its latest valued hour."""

    profile_id: str
    profile_name: str
    valuation_ccy: str
    valuation_hour: datetime
    net_worth: float | None
    total_assets: float | None
    total_liabilities: float | None
    stale_accounts: int
    #: items nothing could price at the latest hour (not in the totals)
    unvalued_items: int
    change_1d_abs: float | None
    change_1d_rel: float | None
    fx_source: str | None
    published_at: datetime | None
    #: valuation_hour, total_assets, total_liabilities, net_worth
    history: pd.DataFrame
    #: valuation_hour, linked_account_id, linked_account_name, value
    history_by_linked_account: pd.DataFrame
    #: valuation_hour, asset_class, value (assets only)
    history_by_asset_class: pd.DataFrame
    #: latest hour: dimension, side, bucket, label, value, share
    distribution: pd.DataFrame
    #: latest hour, tree order: level, entity_id, parent_id, name, detail, value,
    #: is_stale, then change_<window>_abs / change_<window>_rel for TREE_WINDOWS
    holdings: pd.DataFrame
    #: newest first: period_start, period_end, open, close, low, high, change_abs, change_rel
    monthly: pd.DataFrame
    #: one row per linked account valued at the latest hour: linked_account_id,
    #: linked_account_name, provider_id, account_state, value, is_stale, stale_hours,
    #: source_fetch_hour, last_attempt_hour, last_success_hour, consecutive_failures,
    #: last_error_code, last_error_message, unvalued_items, warning_count, warnings (JSON)
    accounts: pd.DataFrame

    @property
    def stale(self) -> pd.DataFrame:
        """The linked accounts whose value at the latest hour is carried from an older fetch."""
        return self.accounts[self.accounts["is_stale"].eq(True).fillna(False).astype(bool)]


def num(value: Any) -> float | None:
    """A SQL/pandas number as a float, None for NULL/NaN/NA."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> pd.DataFrame:
    return con.execute(sql, params if isinstance(params, Mapping) else list(params)).df()


def list_profiles(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Profiles with at least one valued hour, by id."""
    rows = con.execute(
        "select distinct profile_id from marts.fct_profile_valuation_hourly order by 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def publish_info(con: duckdb.DuckDBPyConnection) -> tuple[datetime | None, str | None]:
    """(published_at, fx_source) of the published file, (None, None) when absent."""
    exists = con.execute(
        "select count(*) from duckdb_tables() "
        "where schema_name = 'marts' and table_name = 'publish_info'"
    ).fetchone()
    if not exists or not exists[0]:
        return None, None
    row = con.execute("select published_at, fx_source from marts.publish_info limit 1").fetchone()
    if row is None:
        return None, None
    return row[0], (str(row[1]) if row[1] is not None else None)


def _history_hours_cte() -> str:
    # Hourly points for the last HOURLY_HISTORY_DAYS days, the last hour of each day
    # before: a two-year report stays small, recent changes stay precise.
    return f"""
        with hours as (
            select valuation_hour
            from marts.fct_profile_valuation_hourly
            where profile_id = $profile
            qualify valuation_hour >= $latest - interval {HOURLY_HISTORY_DAYS} day
                or row_number() over (
                    partition by date_trunc('day', valuation_hour) order by valuation_hour desc
                ) = 1
        )
    """


def load_report_data(
    con: duckdb.DuckDBPyConnection,
    profile_id: str,
    profile_name: str | None = None,
) -> ReportData:
    """Read one profile's report from an open published database."""
    latest = con.execute(
        """
        select valuation_hour, valuation_ccy, total_assets, total_liabilities, net_worth,
               stale_accounts, unvalued_items
        from marts.fct_profile_valuation_hourly
        where profile_id = ?
        order by valuation_hour desc
        limit 1
        """,
        [profile_id],
    ).fetchone()
    if latest is None:
        raise LookupError(f"profile {profile_id!r} has no valued hour in the published marts")
    hour, ccy, assets, liabilities, net_worth, stale_accounts, unvalued_items = latest
    change = con.execute(
        """
        select change_abs, change_rel from marts.fct_valuation_changes
        where profile_id = ? and level = 'profile' and entity_id = ?
          and valuation_hour = ? and change_window = '1d'
        """,
        [profile_id, profile_id, hour],
    ).fetchone()
    published_at, fx_source = publish_info(con)
    params = {"profile": profile_id, "latest": hour}

    history = con.execute(
        _history_hours_cte()
        + """
        select p.valuation_hour, p.total_assets, p.total_liabilities, p.net_worth
        from marts.fct_profile_valuation_hourly p
        join hours using (valuation_hour)
        where p.profile_id = $profile
        order by p.valuation_hour
        """,
        params,
    ).df()
    by_linked_account = con.execute(
        _history_hours_cte()
        + """
        select l.valuation_hour, l.linked_account_id, l.linked_account_name, l.value
        from marts.fct_linked_account_valuation_hourly l
        join hours using (valuation_hour)
        where l.profile_id = $profile
        order by l.linked_account_id, l.valuation_hour
        """,
        params,
    ).df()
    by_asset_class = con.execute(
        _history_hours_cte()
        + """
        select d.valuation_hour, d.bucket as asset_class, d.value
        from marts.mart_wealth_distribution d
        join hours using (valuation_hour)
        where d.profile_id = $profile and d.dimension = 'asset_class' and d.side = 'asset'
        order by d.bucket, d.valuation_hour
        """,
        params,
    ).df()
    distribution = _frame(
        con,
        """
        with names as (
            select distinct linked_account_id, linked_account_name
            from marts.fct_linked_account_valuation_hourly
            where profile_id = ? and valuation_hour = ?
        )
        select d.dimension, d.side, d.bucket,
               case when d.dimension = 'linked_account'
                    then coalesce(names.linked_account_name, d.bucket)
                    else coalesce(d.bucket, '(none)') end as label,
               d.value, d.share
        from marts.mart_wealth_distribution d
        left join names on d.dimension = 'linked_account' and d.bucket = names.linked_account_id
        where d.profile_id = ? and d.valuation_hour = ?
        order by d.dimension, d.side, d.value desc nulls last, d.bucket
        """,
        [profile_id, hour, profile_id, hour],
    )
    return ReportData(
        profile_id=profile_id,
        profile_name=profile_name or profile_id,
        valuation_ccy=str(ccy),
        valuation_hour=hour,
        net_worth=num(net_worth),
        total_assets=num(assets),
        total_liabilities=num(liabilities),
        stale_accounts=int(stale_accounts or 0),
        unvalued_items=int(unvalued_items or 0),
        change_1d_abs=num(change[0]) if change else None,
        change_1d_rel=num(change[1]) if change else None,
        fx_source=fx_source,
        published_at=published_at,
        history=history,
        history_by_linked_account=by_linked_account,
        history_by_asset_class=by_asset_class,
        distribution=distribution,
        holdings=load_holdings(con, profile_id, hour),
        monthly=load_monthly(con, profile_id),
        accounts=load_accounts(con, profile_id, hour),
    )


def load_holdings(con: duckdb.DuckDBPyConnection, profile_id: str, hour: datetime) -> pd.DataFrame:
    """The linked account -> sub-account -> item tree at `hour`, with changes, in tree order."""
    pivots = ",\n".join(
        f"max(change_abs) filter (where change_window = '{w}') as change_{w}_abs, "
        f"max(change_rel) filter (where change_window = '{w}') as change_{w}_rel"
        for w in TREE_WINDOWS
    )
    change_cols = ", ".join(f"c.change_{w}_abs, c.change_{w}_rel" for w in TREE_WINDOWS)
    return _frame(
        con,
        f"""
        with changes as (
            select level, entity_id, {pivots}
            from marts.fct_valuation_changes
            where profile_id = $profile and valuation_hour = $hour
            group by level, entity_id
        ),
        nodes as (
            select 'linked_account' as level, linked_account_id as entity_id,
                   null::varchar as parent_id, linked_account_name as name,
                   provider_id as detail, value, is_stale,
                   linked_account_name as k1, '' as k2, '' as k3
            from marts.fct_linked_account_valuation_hourly
            where profile_id = $profile and valuation_hour = $hour
            union all
            select 'sub_account', linked_account_id || '/' || sub_account_id,
                   linked_account_id, sub_account_name,
                   account_type || ' · ' || sub_account_ccy, value, is_stale,
                   linked_account_name, sub_account_name, ''
            from marts.fct_sub_account_valuation_hourly
            where profile_id = $profile and valuation_hour = $hour
            union all
            select 'item', linked_account_id || '/' || sub_account_id || '/' || item_name,
                   linked_account_id || '/' || sub_account_id, item_name,
                   concat_ws(' · ', asset_class, asset_type, symbol,
                             case when units is not null then units::varchar || ' units' end),
                   value, is_stale,
                   linked_account_name, sub_account_name, item_name
            from marts.fct_item_valuation_hourly
            where profile_id = $profile and valuation_hour = $hour
        )
        select n.level, n.entity_id, n.parent_id, n.name, n.detail, n.value, n.is_stale,
               {change_cols}
        from nodes n
        left join changes c on c.level = n.level and c.entity_id = n.entity_id
        order by lower(n.k1), n.entity_id.split('/')[1], lower(n.k2),
                 n.entity_id.split('/')[2], lower(n.k3), n.entity_id
        """,
        {"profile": profile_id, "hour": hour},
    )


def load_monthly(con: duckdb.DuckDBPyConnection, profile_id: str) -> pd.DataFrame:
    """Monthly net-worth candles, newest first."""
    return _frame(
        con,
        """
        select period_start, period_end, open, close, low, high, change_abs, change_rel
        from marts.mart_valuation_periods
        where profile_id = ? and frequency = 'monthly'
        order by period_start desc
        """,
        [profile_id],
    )


def load_accounts(con: duckdb.DuckDBPyConnection, profile_id: str, hour: datetime) -> pd.DataFrame:
    """Each linked account valued at `hour`, its staleness and its fetch health."""
    return _frame(
        con,
        """
        select l.linked_account_id, l.linked_account_name, l.provider_id, l.account_state,
               l.value, l.is_stale, l.stale_hours, l.source_fetch_hour,
               h.last_attempt_hour, h.last_success_hour, h.consecutive_failures,
               h.last_error_code, h.last_error_message, l.unvalued_items,
               coalesce(h.warning_count, 0) as warning_count,
               coalesce(h.warnings, '[]') as warnings
        from marts.fct_linked_account_valuation_hourly l
        left join marts.mart_linked_account_health h
            on h.profile_id = l.profile_id and h.linked_account_id = l.linked_account_id
        where l.profile_id = ? and l.valuation_hour = ?
        order by lower(l.linked_account_name), l.linked_account_id
        """,
        [profile_id, hour],
    )


def load_all_report_data(
    published: Path,
    profile_names: Mapping[str, str] | None = None,
    profile_ids: Sequence[str] | None = None,
) -> list[ReportData]:
    """Every profile's report data (or only `profile_ids`) from the published file."""
    names = dict(profile_names or {})
    with open_published(published) as con:
        available = list_profiles(con)
        wanted = list(profile_ids) if profile_ids is not None else available
        missing = [p for p in wanted if p not in available]
        if missing:
            raise LookupError(
                f"no valued hour for profile(s) {', '.join(missing)} in {published} "
                f"(profiles with data: {', '.join(available) or 'none'})"
            )
        return [load_report_data(con, p, names.get(p)) for p in wanted]
