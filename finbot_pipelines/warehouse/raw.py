"""The raw landing tables of the warehouse and the idempotent writes into them.

This is the only place where Python writes SQL into the warehouse: everything
downstream of these tables lives in dbt. Each write replaces the rows of the
(hour, linked account) pairs it covers inside one transaction, so re-running a
partition never duplicates and a crash never leaves half an hour behind.

All timestamps are naive UTC (`TIMESTAMP`), hours are truncated to the hour.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import duckdb
import pandas as pd

from finbot_pipelines.providers.contract import Snapshot, SubAccount
from finbot_pipelines.warehouse.identity import ensure_identity, record_forgotten

RAW_DDL = """
create schema if not exists raw;

create table if not exists raw.fetches (
    fetch_hour        timestamp not null,
    profile_id        varchar   not null,
    linked_account_id varchar   not null,
    provider_id       varchar   not null,
    started_at        timestamp not null,
    finished_at       timestamp not null,
    status            varchar   not null,   -- success | failure
    error_code        varchar,
    error_message     varchar,
    attempt           integer   not null,   -- attempts made for this hour (1 = first try)
    warnings          varchar,              -- JSON list of {code, message} of a successful fetch
    primary key (fetch_hour, linked_account_id)
);

create table if not exists raw.sub_accounts (
    fetch_hour        timestamp not null,
    linked_account_id varchar   not null,
    sub_account_id    varchar   not null,
    name              varchar   not null,
    currency          varchar   not null,
    account_type      varchar   not null,   -- depository | credit | loan | investment | other
    primary key (fetch_hour, linked_account_id, sub_account_id)
);

create table if not exists raw.items (
    fetch_hour        timestamp not null,
    linked_account_id varchar   not null,
    sub_account_id    varchar   not null,
    item_name         varchar   not null,
    item_type         varchar   not null,   -- asset | liability
    asset_class       varchar   not null,
    asset_type        varchar   not null,
    units             decimal(38, 18),
    value             decimal(38, 18),      -- in the sub-account currency; liabilities < 0;
                                            -- NULL: the provider could not price it
    currency          varchar,              -- the item's own currency, when it has one
    symbol            varchar,
    unit              varchar               -- what units count when a unit price values them
);

-- Which linked accounts a profile had at each ingested hour, and in which state.
-- Enabled accounts get one row per hour: 'active' (fetched), 'frozen' (not
-- fetched, keeps its last value) or 'statement' (never fetched: its values land from
-- statement files at their own dates, raw.statement_imports). Disabled or removed
-- accounts get none, so they stop counting from that hour while their history stays.
create table if not exists raw.linked_account_hours (
    fetch_hour          timestamp not null,
    profile_id          varchar   not null,
    linked_account_id   varchar   not null,
    provider_id         varchar   not null,
    linked_account_name varchar   not null,
    state               varchar   not null,  -- active | frozen | statement
    primary key (fetch_hour, linked_account_id)
);

-- Every version of a transaction a fetch reported: one row per (fetch hour, linked
-- account, provider transaction id), replaced with its hour like the rows above. The
-- current version of a transaction is the one of the latest hour that reported it
-- (dbt: stg_raw__transactions); `removed` is the provider withdrawing it; a posted
-- transaction naming `pending_transaction_id` replaces that pending one.
create table if not exists raw.transactions (
    fetch_hour             timestamp not null,
    linked_account_id      varchar   not null,
    transaction_id         varchar   not null,   -- the provider's own id
    sub_account_id         varchar,              -- NULL for a removal
    posted_date            date,                 -- NULL while pending
    authorized_date        date,
    pending                boolean   not null,
    pending_transaction_id varchar,              -- the pending one this posted one replaces
    amount                 decimal(38, 18),      -- in `currency`, inflow positive
    currency               varchar,              -- the sub-account's currency
    description            varchar,
    merchant               varchar,
    category               varchar,              -- as the provider gives it
    kind                   varchar,              -- deposit | withdrawal | transfer | buy | sell
                                                 -- | dividend | interest | fee | tax | other
    symbol                 varchar,
    units                  decimal(38, 18),
    transfer_id            varchar,              -- the provider's link between two legs
    removed                boolean   not null,
    primary key (fetch_hour, linked_account_id, transaction_id)
);

-- The transactions cursor a provider returned with the hour's fetch (Plaid's
-- /transactions/sync): written in the same transaction as the transactions it
-- follows, so a crash resumes from the last cursor whose changes are stored.
create table if not exists raw.transaction_cursors (
    fetch_hour        timestamp not null,
    linked_account_id varchar   not null,
    cursor            varchar   not null,
    primary key (fetch_hour, linked_account_id)
);

-- The statement files landed (finbot import, the inbox): one row per balance a file
-- gave an account of it, at statement_hour (the statement's own date, or with derived
-- the close of an earlier day of its period told by its transactions), or one row with
-- statement_hour NULL for an account without any balance (only its transactions landed,
-- at transactions_hour). A file whose fingerprint is here is never landed again.
create table if not exists raw.statement_imports (
    linked_account_id varchar   not null,
    fingerprint       varchar   not null,   -- SHA-256 of the file's bytes
    sub_account_id    varchar   not null,
    file_name         varchar   not null,
    file_format       varchar   not null,   -- ofx | csv
    imported_at       timestamp not null,
    statement_date    date,                 -- the date the balance is at
    statement_hour    timestamp,            -- where it landed (NULL: no balance)
    derived           boolean   not null,   -- a day's close from the transactions
    transactions_hour timestamp not null,   -- where its transactions landed
    period_start      date,
    period_end        date,
    transactions      integer   not null
);

-- The profiles of the current configuration (replaced on every ingest).
create table if not exists raw.profiles (
    profile_id    varchar not null primary key,
    profile_name  varchar not null,
    valuation_ccy varchar not null
);

-- Euro reference rates: 1 base_ccy (always EUR) = rate quote_ccy.
create table if not exists raw.fx_rates (
    rate_date date    not null,
    base_ccy  varchar not null,
    quote_ccy varchar not null,
    rate      double  not null,
    source    varchar not null,   -- ecb | static
    primary key (rate_date, base_ccy, quote_ccy)
);

-- Prices of non-ISO units (crypto, tokens): 1 unit = price quote_ccy from price_hour
-- on, until the unit's next price (market/unit_prices).
create table if not exists raw.unit_prices (
    price_hour timestamp       not null,
    unit       varchar         not null,
    quote_ccy  varchar         not null,   -- an ISO currency
    price      decimal(38, 18) not null,
    source     varchar         not null,   -- coingecko | static
    primary key (price_hour, unit)
);
"""


#: Columns added after the first release: (table, column, type).
_ADDED_COLUMNS = (
    ("fetches", "warnings", "varchar"),
    ("items", "unit", "varchar"),
)
#: Columns whose type changed: (table, column, new type). Old values are converted
#: through their shortest text form, so a double 0.1 becomes exactly 0.1.
_RETYPED_COLUMNS = (
    ("items", "units", "decimal(38, 18)"),
    ("items", "value", "decimal(38, 18)"),
)
AMOUNT_TYPE = "DECIMAL(38,18)"


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema and tables when absent, and bring an older warehouse's
    tables to the current columns (idempotent)."""
    con.execute(RAW_DDL)
    columns = con.execute(
        "select table_name, column_name, data_type, is_nullable from information_schema.columns "
        "where table_schema = 'raw'"
    ).fetchall()
    types = {(t, c): dt for t, c, dt, _ in columns}
    nullable = {(t, c): n == "YES" for t, c, _, n in columns}
    for table, column, kind in _ADDED_COLUMNS:
        if (table, column) not in types:
            con.execute(f"alter table raw.{table} add column {column} {kind}")
    for table, column, kind in _RETYPED_COLUMNS:
        if types.get((table, column), AMOUNT_TYPE).replace(" ", "") != AMOUNT_TYPE:
            con.execute(
                f"alter table raw.{table} alter column {column} set data type {kind} "
                f"using cast(cast({column} as varchar) as {kind})"
            )
    if not nullable.get(("items", "value"), True):  # NOT NULL before unpriced items existed
        con.execute("alter table raw.items alter column value drop not null")
    ensure_identity(con)  # the warehouse's random id, created with it


@dataclass(frozen=True)
class FetchRow:
    fetch_hour: datetime
    profile_id: str
    linked_account_id: str
    provider_id: str
    started_at: datetime
    finished_at: datetime
    status: str
    error_code: str | None
    error_message: str | None
    attempt: int
    warnings: str | None = None  # JSON list of {code, message}


@dataclass(frozen=True)
class SubAccountRow:
    fetch_hour: datetime
    linked_account_id: str
    sub_account_id: str
    name: str
    currency: str
    account_type: str


@dataclass(frozen=True)
class ItemRow:
    fetch_hour: datetime
    linked_account_id: str
    sub_account_id: str
    item_name: str
    item_type: str
    asset_class: str
    asset_type: str
    units: Decimal | None
    value: Decimal | None
    currency: str | None
    symbol: str | None
    unit: str | None = None


@dataclass(frozen=True)
class AccountHourRow:
    fetch_hour: datetime
    profile_id: str
    linked_account_id: str
    provider_id: str
    linked_account_name: str
    state: str


@dataclass(frozen=True)
class TransactionRow:
    fetch_hour: datetime
    linked_account_id: str
    transaction_id: str
    sub_account_id: str | None
    posted_date: date | None
    authorized_date: date | None
    pending: bool
    pending_transaction_id: str | None
    amount: Decimal | None
    currency: str | None
    description: str | None
    merchant: str | None
    category: str | None
    kind: str | None
    symbol: str | None
    units: Decimal | None
    transfer_id: str | None
    removed: bool = False


@dataclass(frozen=True)
class CursorRow:
    fetch_hour: datetime
    linked_account_id: str
    cursor: str


@dataclass(frozen=True)
class StatementImportRow:
    linked_account_id: str
    fingerprint: str
    sub_account_id: str
    file_name: str
    file_format: str
    imported_at: datetime
    statement_date: date | None
    statement_hour: datetime | None
    derived: bool
    transactions_hour: datetime
    period_start: date | None
    period_end: date | None
    transactions: int


@dataclass
class HourBatch:
    """Everything one ingest writes for a set of (hour, linked account) pairs.

    ``keys``: the pairs whose rows of every hourly table are replaced.
    ``state_only_keys``: pairs of which only the linked_account_hours row is replaced
    (a statements account's hours: what its statements landed there stays).
    ``statement_imports``: the statement files this batch lands (inserted)."""

    keys: list[tuple[datetime, str]]
    account_hours: list[AccountHourRow]
    fetches: list[FetchRow]
    sub_accounts: list[SubAccountRow]
    items: list[ItemRow]
    transactions: list[TransactionRow] = field(default_factory=list)
    cursors: list[CursorRow] = field(default_factory=list)
    state_only_keys: list[tuple[datetime, str]] = field(default_factory=list)
    statement_imports: list[StatementImportRow] = field(default_factory=list)


def transaction_rows(
    account_id: str, hour: datetime, snapshot: Snapshot
) -> tuple[list[TransactionRow], list[CursorRow]]:
    """The transactions (and removals, and the cursor) a successful fetch reported."""
    rows = [
        TransactionRow(
            fetch_hour=hour,
            linked_account_id=account_id,
            transaction_id=t.id,
            sub_account_id=t.sub_account_id,
            posted_date=t.posted,
            authorized_date=t.authorized,
            pending=t.pending,
            pending_transaction_id=t.pending_id,
            amount=t.amount,
            currency=t.currency,
            description=t.description,
            merchant=t.merchant,
            category=t.category,
            kind=t.kind,
            symbol=t.symbol,
            units=t.units,
            transfer_id=t.transfer_id,
        )
        for t in snapshot.transactions
    ]
    reported = {t.id for t in snapshot.transactions}
    rows.extend(
        TransactionRow(
            hour, account_id, tid, None, None, None, False, None, None, None, None, None,
            None, None, None, None, None, removed=True,
        )
        for tid in dict.fromkeys(snapshot.removed_transaction_ids)
        if tid not in reported
    )  # fmt: skip
    cursors = (
        [CursorRow(hour, account_id, snapshot.transactions_cursor)]
        if snapshot.transactions_cursor
        else []
    )
    return rows, cursors


def sub_account_rows(
    account_id: str, hour: datetime, sub_accounts: Sequence[SubAccount]
) -> tuple[list[SubAccountRow], list[ItemRow]]:
    """The sub-account and item rows of a snapshot's sub-accounts at ``hour``."""
    subs: list[SubAccountRow] = []
    items: list[ItemRow] = []
    for sub in sub_accounts:
        subs.append(
            SubAccountRow(hour, account_id, sub.id, sub.name, sub.currency, sub.account_type)
        )
        items.extend(
            ItemRow(
                fetch_hour=hour,
                linked_account_id=account_id,
                sub_account_id=sub.id,
                item_name=it.name,
                item_type=it.item_type,
                asset_class=it.asset_class,
                asset_type=it.asset_type,
                units=it.units,
                value=it.value,
                currency=it.currency,
                symbol=it.symbol,
                unit=it.unit,
            )
            for it in sub.items
        )
    return subs, items


_FETCH_COLS = tuple(FetchRow.__dataclass_fields__)
_SUB_COLS = tuple(SubAccountRow.__dataclass_fields__)
_ITEM_COLS = tuple(ItemRow.__dataclass_fields__)
_HOUR_COLS = tuple(AccountHourRow.__dataclass_fields__)
_TXN_COLS = tuple(TransactionRow.__dataclass_fields__)
_CURSOR_COLS = tuple(CursorRow.__dataclass_fields__)
_IMPORT_COLS = tuple(StatementImportRow.__dataclass_fields__)


def _cell(v: object) -> object:
    """Decimals go in as text and are cast to DECIMAL in SQL: never through a float."""
    return str(v) if isinstance(v, Decimal) else v


def _frame(objs: Sequence[object], cols: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [tuple(_cell(getattr(o, c)) for c in cols) for o in objs], columns=list(cols)
    )


#: How each table's batch frame is inserted (amounts cast from text to DECIMAL).
_INSERT_SELECT = {
    "items": ", ".join(
        f"cast({c} as {AMOUNT_TYPE}) as {c}" if c in ("units", "value") else c for c in _ITEM_COLS
    ),
    "transactions": ", ".join(
        f"cast({c} as {AMOUNT_TYPE}) as {c}"
        if c in ("units", "amount")
        else f"cast({c} as date) as {c}"
        if c in ("posted_date", "authorized_date")
        else f"cast({c} as boolean) as {c}"
        if c in ("pending", "removed")
        else f"cast({c} as varchar) as {c}"
        if c != "fetch_hour"
        else c
        for c in _TXN_COLS
    ),
    "statement_imports": ", ".join(
        f"cast({c} as date) as {c}"
        if c in ("statement_date", "period_start", "period_end")
        else f"cast({c} as timestamp) as {c}"
        if c in ("statement_hour", "transactions_hour", "imported_at")
        else f"cast({c} as integer) as {c}"
        if c == "transactions"
        else f"cast({c} as boolean) as {c}"
        if c == "derived"
        else c
        for c in _IMPORT_COLS
    ),
}


def _failpoint(name: str) -> None:
    """Crash tests only: with FINBOT_FAILPOINT=<name>, die here as a power cut would."""
    if os.environ.get("FINBOT_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def write_hour_batch(con: duckdb.DuckDBPyConnection, batch: HourBatch) -> None:
    """Replace the rows of every (hour, linked account) in ``batch.keys`` (and the
    linked_account_hours rows of ``batch.state_only_keys``) in one transaction."""
    if not batch.keys and not batch.state_only_keys:
        return
    keys = pd.DataFrame(batch.keys, columns=["fetch_hour", "linked_account_id"])
    state_keys = pd.DataFrame(
        [*batch.keys, *batch.state_only_keys], columns=["fetch_hour", "linked_account_id"]
    )
    frames = {
        "linked_account_hours": _frame(batch.account_hours, _HOUR_COLS),
        "fetches": _frame(batch.fetches, _FETCH_COLS),
        "sub_accounts": _frame(batch.sub_accounts, _SUB_COLS),
        "items": _frame(batch.items, _ITEM_COLS),
        "transactions": _frame(batch.transactions, _TXN_COLS),
        "transaction_cursors": _frame(batch.cursors, _CURSOR_COLS),
    }
    con.execute("begin transaction")
    try:
        con.register("_batch_keys", keys)
        con.register("_batch_state_keys", state_keys)
        for table in frames:
            source = "_batch_state_keys" if table == "linked_account_hours" else "_batch_keys"
            con.execute(
                f"delete from raw.{table} t using {source} k "
                "where t.fetch_hour = k.fetch_hour and t.linked_account_id = k.linked_account_id"
            )
        if batch.statement_imports:
            frames["statement_imports"] = _frame(batch.statement_imports, _IMPORT_COLS)
        for table, frame in frames.items():
            if len(frame):
                con.register("_batch_rows", frame)
                select = _INSERT_SELECT.get(table, "*")
                con.execute(f"insert into raw.{table} by name select {select} from _batch_rows")
                con.unregister("_batch_rows")
        con.unregister("_batch_keys")
        con.unregister("_batch_state_keys")
        _failpoint("raw_write_before_commit")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def replace_profiles(
    con: duckdb.DuckDBPyConnection, profiles: Sequence[tuple[str, str, str]]
) -> None:
    """Replace raw.profiles with (profile_id, profile_name, valuation_ccy) rows."""
    con.execute("begin transaction")
    try:
        con.execute("delete from raw.profiles")
        if profiles:
            con.executemany("insert into raw.profiles values (?, ?, ?)", list(profiles))
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def replace_fx_rates(
    con: duckdb.DuckDBPyConnection,
    dates: Sequence[date],
    rows: Sequence[tuple[date, str, str, float, str]],
) -> None:
    """Replace the rates of the given dates with (rate_date, base, quote, rate, source) rows."""
    con.execute("begin transaction")
    try:
        if dates:
            con.executemany("delete from raw.fx_rates where rate_date = ?", [(d,) for d in dates])
        if rows:
            con.executemany("insert into raw.fx_rates values (?, ?, ?, ?, ?)", list(rows))
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def replace_unit_prices(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[tuple[datetime, str, str, Decimal, str]],
) -> None:
    """Write (price_hour, unit, quote_ccy, price, source) rows, each replacing the price
    of its (hour, unit), in one transaction (prices go in as text: exact)."""
    if not rows:
        return
    con.execute("begin transaction")
    try:
        frame = pd.DataFrame(
            [(h, u, q, str(p), src) for h, u, q, p, src in rows],
            columns=["price_hour", "unit", "quote_ccy", "price", "source"],
        )
        con.register("_unit_prices", frame)
        con.execute(
            "delete from raw.unit_prices t using _unit_prices n "
            "where t.price_hour = n.price_hour and t.unit = n.unit"
        )
        con.execute(
            "insert into raw.unit_prices select price_hour, unit, quote_ccy, "
            f"cast(price as {AMOUNT_TYPE}), source from _unit_prices"
        )
        con.unregister("_unit_prices")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def units_needing_prices(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every unit code the valuation may need a price of: the currencies of the
    sub-accounts and the units of the items their provider left unpriced (ISO
    currencies included; the caller keeps the non-ISO ones)."""
    rows = con.execute(
        "select distinct upper(currency) from raw.sub_accounts "
        "union select distinct upper(unit) from raw.items where value is null and unit is not null"
    ).fetchall()
    return sorted(r[0] for r in rows if r[0])


#: raw tables holding hours, and their hour column
_HOURLY_RAW = (
    ("linked_account_hours", "fetch_hour"),
    ("fetches", "fetch_hour"),
    ("sub_accounts", "fetch_hour"),
    ("items", "fetch_hour"),
    ("transactions", "fetch_hour"),
    ("transaction_cursors", "fetch_hour"),
    ("unit_prices", "price_hour"),
)


def hour_counts(con: duckdb.DuckDBPyConnection, first: datetime, last: datetime) -> dict[str, int]:
    """Rows of each raw table at the hours [first, last]."""
    return {
        table: int(
            (
                con.execute(
                    f"select count(*) from raw.{table} where {column} between ? and ?",
                    [first, last],
                ).fetchone()
                or (0,)
            )[0]
        )
        for table, column in _HOURLY_RAW
    }


def forget_hours(con: duckdb.DuckDBPyConnection, first: datetime, last: datetime) -> dict[str, int]:
    """Delete the hours [first, last] from the raw tables and from every hourly model built
    from them (the marts are then rebuilt from what stays), in one transaction. Returns
    the raw rows deleted per table."""
    counts = hour_counts(con, first, last)
    distinct = con.execute(
        "select count(distinct fetch_hour) from raw.linked_account_hours "
        "where fetch_hour between ? and ?",
        [first, last],
    ).fetchone()
    models = con.execute(
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_schema in ('intermediate', 'marts') "
        "and column_name in ('valuation_hour', 'period_start') "
        "and table_name in (select table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_schema in ('intermediate', 'marts'))"
    ).fetchall()
    con.execute("begin transaction")
    try:
        for table, column in _HOURLY_RAW:
            con.execute(f"delete from raw.{table} where {column} between ? and ?", [first, last])
        # a statement file some of whose hours are forgotten may be imported again
        con.execute(
            "delete from raw.statement_imports where fingerprint in (select fingerprint "
            "from raw.statement_imports where statement_hour between $1 and $2 "
            "or transactions_hour between $1 and $2)",
            [first, last],
        )
        # tallied, so that the loss check tells these hours from hours lost
        record_forgotten(
            con, first, last, int(distinct[0]) if distinct else 0, counts["linked_account_hours"]
        )
        for schema, table, column in models:
            if column == "valuation_hour":
                con.execute(
                    f'delete from "{schema}"."{table}" where valuation_hour between ? and ?',
                    [first, last],
                )
            else:  # a period mart: the periods touching the hours are recomputed
                con.execute(
                    f'delete from "{schema}"."{table}" where period_end >= ? and period_start <= ?',
                    [first.date(), last.date()],
                )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return counts


def latest_cursors(
    con: duckdb.DuckDBPyConnection, linked_account_ids: Sequence[str]
) -> dict[str, str]:
    """Each account's newest stored transactions cursor (what its next fetch resumes from)."""
    if not linked_account_ids:
        return {}
    rows = con.execute(
        "select linked_account_id, arg_max(cursor, fetch_hour) from raw.transaction_cursors "
        "where linked_account_id in (select unnest(?)) group by 1",
        [list(linked_account_ids)],
    ).fetchall()
    return {str(a): str(c) for a, c in rows}


# --------------------------------------------------------------------------- statements


def imported_fingerprints(con: duckdb.DuckDBPyConnection, linked_account_id: str) -> set[str]:
    """The fingerprints of the statement files already landed for the account."""
    rows = con.execute(
        "select distinct fingerprint from raw.statement_imports where linked_account_id = ?",
        [linked_account_id],
    ).fetchall()
    return {str(r[0]) for r in rows}


def statement_balance_hours(
    con: duckdb.DuckDBPyConnection, linked_account_id: str
) -> list[tuple[str, datetime]]:
    """Every (sub-account, hour) a landed statement gave the account's balances at."""
    rows = con.execute(
        "select distinct sub_account_id, statement_hour from raw.statement_imports "
        "where linked_account_id = ? and statement_hour is not null order by 2, 1",
        [linked_account_id],
    ).fetchall()
    return [(str(s), h) for s, h in rows]


def sub_account_rows_at(
    con: duckdb.DuckDBPyConnection, linked_account_id: str, pairs: Sequence[tuple[str, datetime]]
) -> tuple[dict[tuple[str, datetime], SubAccountRow], dict[tuple[str, datetime], list[ItemRow]]]:
    """The stored sub-account rows and item rows of (sub-account, hour) pairs."""
    subs: dict[tuple[str, datetime], SubAccountRow] = {}
    items: dict[tuple[str, datetime], list[ItemRow]] = {}
    if not pairs:
        return subs, items
    wanted = pd.DataFrame(list(pairs), columns=["sub_account_id", "fetch_hour"])
    con.register("_wanted_subs", wanted)
    try:
        for r in con.execute(
            f"select {', '.join(f's.{c}' for c in _SUB_COLS)} from raw.sub_accounts s "
            "join _wanted_subs w using (sub_account_id, fetch_hour) "
            "where s.linked_account_id = ?",
            [linked_account_id],
        ).fetchall():
            row = SubAccountRow(*r)
            subs[(row.sub_account_id, row.fetch_hour)] = row
        for r in con.execute(
            f"select {', '.join(f'i.{c}' for c in _ITEM_COLS)} from raw.items i "
            "join _wanted_subs w using (sub_account_id, fetch_hour) "
            "where i.linked_account_id = ? order by i.item_name",
            [linked_account_id],
        ).fetchall():
            item = ItemRow(*r)
            items.setdefault((item.sub_account_id, item.fetch_hour), []).append(item)
    finally:
        con.unregister("_wanted_subs")
    return subs, items


def transaction_rows_at(
    con: duckdb.DuckDBPyConnection, linked_account_id: str, hours: Sequence[datetime]
) -> list[TransactionRow]:
    """The stored transaction rows of the account at ``hours``."""
    if not hours:
        return []
    rows = con.execute(
        f"select {', '.join(_TXN_COLS)} from raw.transactions "
        "where linked_account_id = ? and fetch_hour in (select unnest(?))",
        [linked_account_id, list(hours)],
    ).fetchall()
    return [TransactionRow(*r) for r in rows]


def account_hour_rows(
    con: duckdb.DuckDBPyConnection, linked_account_id: str, hours: Sequence[datetime]
) -> dict[datetime, AccountHourRow]:
    """The account's linked_account_hours rows at ``hours``."""
    if not hours:
        return {}
    rows = con.execute(
        f"select {', '.join(_HOUR_COLS)} from raw.linked_account_hours "
        "where linked_account_id = ? and fetch_hour in (select unnest(?))",
        [linked_account_id, list(hours)],
    ).fetchall()
    return {r[0]: AccountHourRow(*r) for r in rows}


def hours_before_account(
    con: duckdb.DuckDBPyConnection, profile_id: str, linked_account_id: str, first: datetime
) -> list[datetime]:
    """The profile's ingested hours from ``first`` on that come before the account's first
    hour (all of them from ``first`` when the account has none): the hours a statement
    dated ``first`` shows the account existed in, before finbot knew of it."""
    rows = con.execute(
        "select distinct fetch_hour from raw.linked_account_hours where profile_id = $1 "
        "and fetch_hour >= $3 and fetch_hour < coalesce((select min(fetch_hour) from "
        "raw.linked_account_hours where linked_account_id = $2), timestamp '9999-12-31') "
        "order by 1",
        [profile_id, linked_account_id, first],
    ).fetchall()
    return [r[0] for r in rows]
