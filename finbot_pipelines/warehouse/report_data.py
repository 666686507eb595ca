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

from finbot_pipelines.config.schema import LinkedAccount, account_state
from finbot_pipelines.providers.fixes import NEVER_FETCHED, fix_for
from finbot_pipelines.warehouse.queries import has_mart, open_published

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
    #: is_stale, the parts of the detail as codes (provider_id, statement_hour of a linked
    #: account; account_type, ccy of a sub-account; asset_class, asset_type, symbol, units
    #: of an item), then change_<window>_abs / change_<window>_rel for TREE_WINDOWS
    holdings: pd.DataFrame
    #: newest first: period_start, period_end, open, close, low, high, change_abs, change_rel
    monthly: pd.DataFrame
    #: one row per linked account valued at the latest hour, then those never successful
    #: (no value) or never fetched: linked_account_id, linked_account_name, provider_id,
    #: account_state, value, is_stale, stale_hours, source_fetch_hour, last_attempt_hour,
    #: last_success_hour, consecutive_failures, last_error_code, last_error_message,
    #: unvalued_items, warning_count, warnings (JSON), status (STATUS_*), fix
    accounts: pd.DataFrame

    @property
    def stale(self) -> pd.DataFrame:
        """The linked accounts that are not up to date: their value at the latest hour is
        carried from an older fetch, or they never succeeded (no value at all)."""
        return self.accounts[self.accounts["status"].isin(NOT_UP_TO_DATE)]


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
    configured: Sequence[LinkedAccount] = (),
) -> ReportData:
    """Read one profile's report from an open published database.

    ``configured``: the linked accounts of finbot.yaml, to list the enabled ones
    never fetched yet (the marts cannot know them)."""
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
        accounts=load_accounts(con, profile_id, hour, configured),
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
                   case when account_state = 'statement'
                        then provider_id || ' · from statement of '
                             || strftime(source_fetch_hour, '%Y-%m-%d')
                        else provider_id end as detail,
                   value, is_stale and account_state <> 'statement' as is_stale,
                   provider_id, case when account_state = 'statement'
                                     then source_fetch_hour end as statement_hour,
                   null::varchar as account_type, null::varchar as ccy,
                   null::varchar as asset_class, null::varchar as asset_type,
                   null::varchar as symbol, null::double as units,
                   linked_account_name as k1, '' as k2, '' as k3
            from marts.fct_linked_account_valuation_hourly
            where profile_id = $profile and valuation_hour = $hour
            union all
            select 'sub_account', linked_account_id || '/' || sub_account_id,
                   linked_account_id, sub_account_name,
                   account_type || ' · ' || sub_account_ccy, value, is_stale,
                   null, null, account_type, sub_account_ccy, null, null, null, null,
                   linked_account_name, sub_account_name, ''
            from marts.fct_sub_account_valuation_hourly
            where profile_id = $profile and valuation_hour = $hour
            union all
            select 'item', linked_account_id || '/' || sub_account_id || '/' || item_name,
                   linked_account_id || '/' || sub_account_id, item_name,
                   concat_ws(' · ', asset_class, asset_type, symbol,
                             case when units is not null then units::varchar || ' units' end),
                   value, is_stale,
                   null, null, null, null, asset_class, asset_type, symbol, units::double,
                   linked_account_name, sub_account_name, item_name
            from marts.fct_item_valuation_hourly
            where profile_id = $profile and valuation_hour = $hour
        )
        select n.level, n.entity_id, n.parent_id, n.name, n.detail, n.value, n.is_stale,
               n.provider_id, n.statement_hour, n.account_type, n.ccy, n.asset_class,
               n.asset_type, n.symbol, n.units,
               {change_cols}
        from nodes n
        left join changes c on c.level = n.level and c.entity_id = n.entity_id
        order by lower(n.k1), n.entity_id.split('/')[1], lower(n.k2),
                 n.entity_id.split('/')[2], lower(n.k3), n.entity_id
        """,
        {"profile": profile_id, "hour": hour},
    )


def load_monthly(con: duckdb.DuckDBPyConnection, profile_id: str) -> pd.DataFrame:
    """Monthly net-worth candles, newest first, with the month's net contributions,
    income and market gain (fct_performance; NULL without the previous month's close,
    or in a catalog published before that mart existed)."""
    if has_mart(con, "fct_performance"):
        join = """
        left join marts.fct_performance f
            on f.level = 'profile' and f.profile_id = m.profile_id
            and f.period_kind = 'calendar_month' and f.period = strftime(m.period_start, '%Y-%m')
        """
        extra = "f.net_contributions, f.income, f.market_gain, f.twr"
    else:
        join = ""
        extra = (
            "null::decimal(38, 10) as net_contributions, null::decimal(38, 10) as income, "
            "null::decimal(38, 10) as market_gain, null::double as twr"
        )
    return _frame(
        con,
        f"""
        select m.period_start, m.period_end, m.open, m.close, m.low, m.high,
               m.change_abs, m.change_rel, {extra}
        from marts.mart_valuation_periods m
        {join}
        where m.profile_id = ? and m.frequency = 'monthly'
        order by m.period_start desc
        """,
        [profile_id],
    )


#: Status of a linked account in the report and `accounts list`.
STATUS_OK = "ok"
STATUS_STALE = "stale"
STATUS_FROZEN = "frozen"
STATUS_NEVER_SUCCEEDED = "never succeeded"
STATUS_NEVER_FETCHED = "never fetched"
#: A statements account: valued from its newest statement (at that statement's date).
STATUS_STATEMENT = "from statement"
#: A statements account no statement has landed for yet: it has no value.
STATUS_NO_STATEMENT = "no statement yet"
#: Statuses of accounts that are not up to date (the report's stale count).
NOT_UP_TO_DATE = (STATUS_STALE, STATUS_NEVER_SUCCEEDED, STATUS_NEVER_FETCHED, STATUS_NO_STATEMENT)

_ACCOUNT_COLUMNS = [
    "linked_account_id",
    "linked_account_name",
    "provider_id",
    "account_state",
    "value",
    "is_stale",
    "stale_hours",
    "source_fetch_hour",
    "last_attempt_hour",
    "last_success_hour",
    "consecutive_failures",
    "last_error_code",
    "last_error_message",
    "unvalued_items",
    "warning_count",
    "warnings",
]


def account_status(
    *,
    valued: bool,
    is_stale: Any,
    account_state: Any,
    last_attempt_hour: Any,
    last_success_hour: Any,
) -> str:
    """ok, stale, frozen, from statement, never succeeded, never fetched or no statement
    yet (see NOT_UP_TO_DATE). A statements account's value is that of its newest statement,
    as of the statement's date: never "stale" for being older than the hour."""
    if account_state == "statement":
        return STATUS_STATEMENT if valued else STATUS_NO_STATEMENT
    if valued:
        if not _missing(is_stale) and bool(is_stale):
            return STATUS_STALE
        return STATUS_FROZEN if account_state == "frozen" else STATUS_OK
    if account_state == "frozen":
        return STATUS_FROZEN
    if not _missing(last_success_hour):
        return STATUS_STALE  # it has data, but none at this hour
    if _missing(last_attempt_hour):
        return STATUS_NEVER_FETCHED
    return STATUS_NEVER_SUCCEEDED


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or bool(pd.isna(value))


def _fix(row: Mapping[str, Any], configured: Mapping[str, LinkedAccount], profile_id: str) -> str:
    status = row["status"]
    code = row["last_error_code"] if isinstance(row["last_error_code"], str) else None
    if status == STATUS_NEVER_FETCHED and code is None:
        code = NEVER_FETCHED
    if code is None:
        return ""
    acc_id = str(row["linked_account_id"])
    a = configured.get(acc_id)
    provider = row["provider_id"] if isinstance(row["provider_id"], str) else None
    return fix_for(
        code,
        acc_id,
        provider_id=a.provider if a else provider,
        credentials=a.credentials if a else None,
        profile_id=profile_id,
    )


def load_accounts(
    con: duckdb.DuckDBPyConnection,
    profile_id: str,
    hour: datetime,
    configured: Sequence[LinkedAccount] = (),
) -> pd.DataFrame:
    """Each linked account of the profile: valued at `hour`, or never successful yet.

    The accounts valued at `hour` with their staleness and fetch health; then those of
    the health mart that have no value (they never succeeded: no data, not in the
    totals); then the enabled accounts of ``configured`` (the profile's, from
    finbot.yaml) that were never fetched at all. Adds ``status`` (:func:`account_status`)
    and ``fix`` (from the error code, ``providers.fixes``).
    """
    frame = _frame(
        con,
        """
        with valued as (
            select l.linked_account_id, l.linked_account_name, l.provider_id,
                   l.account_state, l.value, l.is_stale, l.stale_hours, l.source_fetch_hour,
                   h.last_attempt_hour, h.last_success_hour, h.consecutive_failures,
                   h.last_error_code, h.last_error_message, l.unvalued_items,
                   coalesce(h.warning_count, 0) as warning_count,
                   coalesce(h.warnings, '[]') as warnings, true as valued
            from marts.fct_linked_account_valuation_hourly l
            left join marts.mart_linked_account_health h
                on h.profile_id = l.profile_id and h.linked_account_id = l.linked_account_id
            where l.profile_id = $profile and l.valuation_hour = $hour
        ),
        unvalued as (
            select h.linked_account_id, h.linked_account_name, h.provider_id,
                   h.account_state, null::decimal(38, 10) as value, null::boolean as is_stale,
                   null::integer as stale_hours, null::timestamp as source_fetch_hour,
                   h.last_attempt_hour, h.last_success_hour, h.consecutive_failures,
                   h.last_error_code, h.last_error_message, 0 as unvalued_items,
                   h.warning_count, h.warnings, false as valued
            from marts.mart_linked_account_health h
            where h.profile_id = $profile
              and h.linked_account_id not in (select linked_account_id from valued)
        )
        select * from valued
        union all by name
        select * from unvalued
        order by lower(linked_account_name), linked_account_id
        """,
        {"profile": profile_id, "hour": hour},
    )
    mine = [a for a in configured if a.profile == profile_id]
    known = set(frame["linked_account_id"])
    never = [
        {
            "linked_account_id": a.id,
            "linked_account_name": a.name,
            "provider_id": a.provider,
            "account_state": account_state(a),
            "consecutive_failures": 0,
            "unvalued_items": 0,
            "warning_count": 0,
            "warnings": "[]",
            "valued": False,
        }
        for a in mine
        if a.enabled and a.id not in known
    ]
    if never:
        extra = pd.DataFrame(never).reindex(columns=[*_ACCOUNT_COLUMNS, "valued"])
        frame = pd.concat([frame.astype(object), extra.astype(object)], ignore_index=True)
    frame["status"] = [
        account_status(
            valued=bool(r["valued"]),
            is_stale=r["is_stale"],
            account_state=r["account_state"],
            last_attempt_hour=r["last_attempt_hour"],
            last_success_hour=r["last_success_hour"],
        )
        for r in frame.to_dict("records")
    ]
    by_id = {a.id: a for a in mine}
    frame["fix"] = [_fix(r, by_id, profile_id) for r in frame.to_dict("records")]
    return frame.drop(columns=["valued"])


def load_all_report_data(
    published: Path,
    profile_names: Mapping[str, str] | None = None,
    profile_ids: Sequence[str] | None = None,
    configured: Sequence[LinkedAccount] = (),
) -> list[ReportData]:
    """Every profile's report data (or only `profile_ids`) from the published file;
    ``configured``: finbot.yaml's linked accounts (see :func:`load_report_data`)."""
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
        return [load_report_data(con, p, names.get(p), configured) for p in wanted]
