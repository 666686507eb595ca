"""Landing statement files: their balances at the statement's own date, their transactions.

A ``statements`` linked account is never fetched. Each file (``finbot import``, or the
inbox sensor) is read whole (:func:`~finbot_pipelines.providers.statements.parse.parse_statement`)
and lands in one warehouse transaction, or not at all:

- **The hour.** An account of the file with a balance lands at its statement hour: the
  last hour (23:00 UTC) of the statement's date, or the newest complete hour when that
  is later (a statement of today). A file dated after tomorrow is refused. An account
  without any balance (a CSV without a balance column) lands its transactions only, at
  the hour of its last transaction's date.
- **The days before it.** A bank or card statement lists every transaction of its
  period, so it also tells each earlier day's closing balance: the ledger balance less
  what was posted after that day (:func:`daily_closes`), landed at each day's 23:00 UTC
  from the period's start (at most 400 days). So between two statements the account
  moves with its transactions instead of jumping at the next statement, and its
  performance shows no gain a bank account never had. Not for investment accounts
  (their positions' prices between statements are unknown).
- **What an hour holds.** The linked account's snapshot at a statement hour H is every
  sub-account a statement gave a balance for at or before H, each with its newest such
  balance: a card statement of the 28th and a current account statement of the 30th
  both count on the 30th. Landing an older statement recomposes every later statement
  hour of the account; the ingest's own hours of the account carry the newest
  statement hour before them forward, as they do for any account.
- **The account's hours.** Hours of the profile before finbot knew of the account (a
  statement of last month imported today) get the account, in state ``statement``,
  from the statement's hour on: a statement is the fact that the account existed then.
  Only hours the profile was ingested at: a statement hour the ingest has not reached
  (today's, before the hour's run) holds the statement, and the ingest adds the
  account's row when it lands the hour (never a profile hour with this account alone).
- **Never twice.** A file whose fingerprint (SHA-256 of its bytes) is in
  ``raw.statement_imports`` is not landed again; overlapping statements report the same
  transaction ids (the bank's FITID, else a content key: see ``statements.ids``), and the
  newest version of an id is the one counted.
- **Rebuild.** The earliest hour changed is recorded as a pending rebuild
  (``finbot_control.pending_rebuild``): the next dbt build rebuilds from there on.

Nothing here moves files: :func:`import_inbox` does, after the landing committed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

import duckdb

from finbot_pipelines.config.schema import FinbotConfig, LinkedAccount
from finbot_pipelines.providers.contract import Snapshot, SubAccount
from finbot_pipelines.providers.statements.mapping import (
    statement_date,
    sub_account_at_statement_date,
)
from finbot_pipelines.providers.statements.model import (
    Statement,
    StatementAccount,
    StatementError,
)
from finbot_pipelines.providers.statements.options import StatementsOptions
from finbot_pipelines.providers.statements.parse import parse_statement
from finbot_pipelines.warehouse.build_window import record_pending_rebuild
from finbot_pipelines.warehouse.raw import (
    AccountHourRow,
    FetchRow,
    HourBatch,
    ItemRow,
    StatementImportRow,
    SubAccountRow,
    TransactionRow,
    account_hour_rows,
    hours_before_account,
    imported_fingerprints,
    statement_balance_hours,
    sub_account_rows,
    sub_account_rows_at,
    transaction_rows,
    transaction_rows_at,
    write_hour_batch,
)

PROVIDER_ID = "statements"
#: The hour of a day a statement's balances stand at (its last hour, UTC).
CLOSE_HOUR = time(23)
#: Folders of the inbox that are not accounts' inboxes.
DONE_DIR, REJECTED_DIR = "done", "rejected"

Status = Literal["landed", "already imported", "rejected"]


@dataclass(frozen=True)
class AccountLanded:
    """One account of a landed file: its balance (the items' sum, in ``currency``; None
    without a balance), where it landed, and how many transactions."""

    sub_account_id: str
    name: str
    currency: str
    statement_date: date | None
    balance: Decimal | None
    hour: datetime
    transactions: int
    #: days before the statement's date given the balance its transactions tell
    daily_closes: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "daily_closes": self.daily_closes,
            "sub_account_id": self.sub_account_id,
            "name": self.name,
            "currency": self.currency,
            "statement_date": self.statement_date.isoformat() if self.statement_date else None,
            "balance": None if self.balance is None else str(self.balance),
            "hour": f"{self.hour:%Y-%m-%d %H:00}",
            "transactions": self.transactions,
        }


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file."""

    file: str
    status: Status
    message: str = ""
    accounts: tuple[AccountLanded, ...] = field(default=())
    #: the earliest hour the landing changed (None: nothing changed)
    first_hour: datetime | None = None
    warnings: tuple[str, ...] = field(default=())
    moved_to: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "status": self.status,
            "message": self.message,
            "accounts": [a.as_json() for a in self.accounts],
            "first_hour": f"{self.first_hour:%Y-%m-%d %H:00}" if self.first_hour else None,
            "warnings": list(self.warnings),
            "moved_to": self.moved_to,
        }


def last_complete_hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def hour_of(day: date, now: datetime) -> datetime:
    """The statement hour of ``day``: its 23:00 UTC, or the newest complete hour."""
    return min(datetime.combine(day, CLOSE_HOUR), last_complete_hour(now))


def statements_options(account: LinkedAccount) -> StatementsOptions:
    return StatementsOptions.model_validate(dict(account.options))


#: Account types whose daily balances a statement's transactions tell (not investments:
#: their positions' prices between two statements are unknown).
DERIVED_TYPES = ("depository", "credit", "loan")
#: Most days before a statement's date given a balance derived from its transactions.
MAX_DERIVED_DAYS = 400


def daily_closes(acc: StatementAccount) -> dict[date, Decimal]:
    """The balance at the end of each day of the statement's period before its date, from
    its ledger balance and its transactions: balance(d) = ledger - the amounts posted
    after d up to the statement's date (a statement lists every transaction of its
    period). Empty for investment accounts, or without a ledger balance or a period."""
    ledger = acc.ledger_balance
    if (
        ledger is None
        or acc.period_start is None
        or acc.sub_account.account_type not in DERIVED_TYPES
    ):
        return {}
    day = ledger.as_of
    first = max(acc.period_start, day - timedelta(days=MAX_DERIVED_DAYS))
    posted = [(t.posted, t.amount) for t in acc.transactions if t.posted and not t.pending]
    out: dict[date, Decimal] = {}
    d = first
    while d < day:
        out[d] = ledger.amount - sum((a for p, a in posted if d < p <= day), Decimal(0))
        d += timedelta(days=1)
    return out


@dataclass
class _Planned:
    """One account of the file, placed: its balances by hour (the statement's own and the
    daily closes its transactions tell), and where its transactions land."""

    sub_account_id: str
    balances: dict[datetime, tuple[date, bool, SubAccount]]  # hour -> (date, derived, sub)
    transactions_hour: datetime
    landed: AccountLanded


def _plan(statement: Statement, now: datetime) -> list[_Planned]:
    today = now.date()
    out: list[_Planned] = []
    for acc in statement.accounts:
        sub = acc.sub_account
        day = statement_date(acc)
        txn_days = [t.posted or t.authorized for t in acc.transactions]
        last_txn = max((d for d in txn_days if d is not None), default=None)
        for what, d in (("statement date", day), ("transaction date", last_txn)):
            if d is not None and d > today + timedelta(days=1):
                raise StatementError(
                    statement.path, None, f"account {sub.id!r}: its {what} {d} is in the future"
                )
        balance_hour = hour_of(day, now) if day is not None else None
        txn_hour = balance_hour or hour_of(last_txn or acc.period_end or today, now)
        composed = sub_account_at_statement_date(acc)
        balances: dict[datetime, tuple[date, bool, SubAccount]] = {}
        if day is not None and balance_hour is not None:
            for d, amount in daily_closes(acc).items():
                assert acc.ledger_balance is not None  # daily_closes needs it
                ledger = replace(acc.ledger_balance, amount=amount, as_of=d, as_of_utc=None)
                balances[hour_of(d, now)] = (
                    d,
                    True,
                    sub_account_at_statement_date(replace(acc, ledger_balance=ledger)),
                )
            balances[balance_hour] = (day, False, composed)
        balance = (
            sum((i.value for i in composed.items if i.value is not None), Decimal(0))
            if day is not None
            else None
        )
        out.append(
            _Planned(
                sub.id,
                balances,
                txn_hour,
                AccountLanded(
                    sub.id,
                    sub.name,
                    sub.currency,
                    day,
                    balance,
                    txn_hour,
                    len(acc.transactions),
                    daily_closes=sum(1 for _, derived, _ in balances.values() if derived),
                ),
            )
        )
    return out


def land_statement(
    con: duckdb.DuckDBPyConnection,
    account: LinkedAccount,
    statement: Statement,
    *,
    now: datetime | None = None,
    file_name: str | None = None,
) -> FileOutcome:
    """Land one read statement file for ``account`` (see the module docstring), in one
    transaction. Raises :class:`StatementError` for a file that cannot be placed."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    name = file_name or statement.path.name
    if statement.fingerprint in imported_fingerprints(con, account.id):
        return FileOutcome(name, "already imported", "the same file was landed before")
    planned = _plan(statement, now)
    new_records = {(p.sub_account_id, h) for p in planned for h in p.balances}
    existing = [r for r in statement_balance_hours(con, account.id) if r not in new_records]
    earliest = min([p.transactions_hour for p in planned] + [h for _, h in new_records])
    hours = sorted(
        {p.transactions_hour for p in planned}
        | {h for _, h in new_records}
        | {h for _, h in existing if h >= earliest}
    )
    records = sorted([*existing, *new_records], key=lambda r: r[1])

    # each hour's snapshot: every sub-account's newest balance at or before the hour
    def newest_at(hour: datetime) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        for sub_id, h in records:
            if h <= hour:
                out[sub_id] = h
        return out

    compositions = {h: newest_at(h) for h in hours}
    needed = {(s, h) for comp in compositions.values() for s, h in comp.items()}
    stored_subs, stored_items = sub_account_rows_at(
        con, account.id, [r for r in needed if r not in new_records]
    )
    new_subs: dict[tuple[str, datetime], SubAccountRow] = {}
    new_items: dict[tuple[str, datetime], list[ItemRow]] = {}
    for p in planned:
        for h, (_, _, sub) in p.balances.items():
            subs, items = sub_account_rows(account.id, h, [sub])
            new_subs[(p.sub_account_id, h)] = subs[0]
            new_items[(p.sub_account_id, h)] = items

    # transactions: what the hours held, with this file's (an id it reports again replaces
    # the hour's earlier version)
    new_txns: list[TransactionRow] = []
    for acc, p in zip(statement.accounts, planned, strict=True):
        rows, _ = transaction_rows(
            account.id,
            p.transactions_hour,
            Snapshot(
                (acc.sub_account,),
                transactions=acc.transactions,
                removed_transaction_ids=acc.removed_transaction_ids,
            ),
        )
        new_txns.extend(rows)
    replaced = {(t.fetch_hour, t.transaction_id) for t in new_txns}
    kept_txns = [
        t
        for t in transaction_rows_at(con, account.id, hours)
        if (t.fetch_hour, t.transaction_id) not in replaced
    ]

    stored_hours = account_hour_rows(con, account.id, hours)
    # the account joins only hours the profile was ingested at: an hour the ingest has not
    # reached yet gets the account's row from the ingest (and then carries the statement)
    fill = hours_before_account(con, account.profile, account.id, earliest)
    profile_hours = set(fill)
    batch = HourBatch(keys=[], account_hours=[], fetches=[], sub_accounts=[], items=[])
    for hour in hours:
        batch.keys.append((hour, account.id))
        row = stored_hours.get(hour)
        if row is None and hour in profile_hours:
            row = AccountHourRow(
                hour, account.profile, account.id, account.provider, account.name, "statement"
            )
        if row is not None:
            batch.account_hours.append(row)
        comp = compositions[hour]
        if not comp:
            continue
        batch.fetches.append(
            FetchRow(
                fetch_hour=hour,
                profile_id=account.profile,
                linked_account_id=account.id,
                provider_id=account.provider,
                started_at=now,
                finished_at=now,
                status="success",
                error_code=None,
                error_message=None,
                attempt=1,
                warnings=json.dumps([]),
            )
        )
        for sub_id, h in sorted(comp.items()):
            key = (sub_id, h)
            sub_row = new_subs.get(key) or stored_subs.get(key)
            if sub_row is None:  # a record whose rows are gone (forgotten hours)
                continue
            batch.sub_accounts.append(replace(sub_row, fetch_hour=hour))
            items = new_items[key] if key in new_items else stored_items.get(key, [])
            batch.items.extend(replace(i, fetch_hour=hour) for i in items)
    batch.transactions = [*kept_txns, *new_txns]
    hour_set = set(hours)
    for hour in fill:
        if hour in hour_set:
            continue
        batch.state_only_keys.append((hour, account.id))
        batch.account_hours.append(
            AccountHourRow(
                hour, account.profile, account.id, account.provider, account.name, "statement"
            )
        )
    batch.statement_imports = []
    for acc, p in zip(statement.accounts, planned, strict=True):
        # one row per balance landed (none: a row without, for the transactions)
        landed: list[tuple[datetime | None, date | None, bool]] = [
            (h, d, derived) for h, (d, derived, _) in sorted(p.balances.items())
        ] or [(None, None, False)]
        batch.statement_imports.extend(
            StatementImportRow(
                linked_account_id=account.id,
                fingerprint=statement.fingerprint,
                sub_account_id=p.sub_account_id,
                file_name=name,
                file_format=statement.format,
                imported_at=now,
                statement_date=d,
                statement_hour=h,
                derived=derived,
                transactions_hour=p.transactions_hour,
                period_start=acc.period_start,
                period_end=acc.period_end,
                transactions=len(acc.transactions),
            )
            for h, d, derived in landed
        )
    write_hour_batch(con, batch)
    record_pending_rebuild(con, earliest, f"statement {name} of '{account.id}'")
    return FileOutcome(
        name,
        "landed",
        accounts=tuple(p.landed for p in planned),
        first_hour=earliest,
        warnings=statement.warnings,
    )


def import_file(
    con: duckdb.DuckDBPyConnection,
    account: LinkedAccount,
    path: Path,
    *,
    now: datetime | None = None,
) -> FileOutcome:
    """Read and land one file; a file that cannot be read or placed is ``rejected`` with
    the reason (file, line, field), and nothing of it is written."""
    try:
        statement = parse_statement(path, statements_options(account))
        return land_statement(con, account, statement, now=now)
    except StatementError as exc:
        return FileOutcome(path.name, "rejected", str(exc))


def statement_accounts(cfg: FinbotConfig) -> list[LinkedAccount]:
    """The enabled ``statements`` accounts of the config."""
    return [a for a in cfg.linked_accounts if a.enabled and a.provider == PROVIDER_ID]


def waiting_files(inbox: Path, account_id: str) -> list[Path]:
    """The files waiting in ``inbox/<account_id>/`` (not hidden, oldest first)."""
    folder = inbox / account_id
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    n = 1
    while target.exists():
        stem, dot, suffix = name.partition(".")
        target = folder / f"{stem}-{n}{dot}{suffix}"
        n += 1
    return target


def move_processed(inbox: Path, account_id: str, path: Path, outcome: FileOutcome) -> Path:
    """Move an inbox file once handled: ``done/<id>/`` (landed or already imported), or
    ``rejected/<id>/`` with ``<name>.reason.txt`` beside it naming the file and the line."""
    rejected = outcome.status == "rejected"
    folder = inbox / (REJECTED_DIR if rejected else DONE_DIR) / account_id
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, path.name)
    shutil.move(str(path), target)
    if rejected:
        note = target.with_name(target.name + ".reason.txt")
        note.write_text(
            f"{outcome.message}\n\nNothing of this file was landed. Fix it (or the account's "
            f"statement options in finbot.yaml) and drop it into inbox/{account_id}/ again.\n",
            encoding="utf-8",
        )
    return target


def import_inbox(
    con: duckdb.DuckDBPyConnection,
    cfg: FinbotConfig,
    inbox: Path,
    accounts: Sequence[LinkedAccount] | None = None,
    *,
    now: datetime | None = None,
) -> list[tuple[str, FileOutcome]]:
    """Land every file waiting in the inboxes of ``accounts`` (default: every statements
    account), moving each once its landing committed: ``(account id, outcome)`` pairs."""
    out: list[tuple[str, FileOutcome]] = []
    for account in accounts if accounts is not None else statement_accounts(cfg):
        for path in waiting_files(inbox, account.id):
            outcome = import_file(con, account, path, now=now)
            moved = move_processed(inbox, account.id, path, outcome)
            out.append((account.id, replace(outcome, moved_to=str(moved.relative_to(inbox)))))
    return out
