"""CSV statement exports, read through a column mapping (:class:`.options.CsvOptions`).

A CSV file is one sub-account (named by the options). Each row is one posted
transaction; a bad row (a date not in the format, an amount that is not a number
in the file's convention, a row with too few fields) rejects the whole file with
the line and the column.

Ids: the bank's own id column when the layout has one, else a content key of the
row's date, amount and description with a counter for identical rows
(:class:`.ids.ContentKeys`): the same rows in an overlapping later export get the
same ids. The balance at the statement's date is the running balance of the
chronologically last row, when the file has a balance column: the file's order
(newest first, as Chase writes, or oldest first) is read from its dates, and from
the running balances when every row has the same date.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from finbot_pipelines.providers.contract import MAX_SCALE, SubAccount, Transaction
from finbot_pipelines.providers.statements.ids import ContentKeys, bank_id, normalise_text
from finbot_pipelines.providers.statements.model import Balance, StatementAccount, StatementError
from finbot_pipelines.providers.statements.options import CsvOptions

#: How many lines may come before the header row when it is looked for.
HEADER_SEARCH_LINES = 50
_CURRENCY_MARKS = "£€$¥"
_NO_BREAK_SPACES = "\u00a0\u202f"


def normalise_name(name: str) -> str:
    """A column name as matched: no accents, case or surrounding spaces."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", plain).strip().casefold()


def decode(path: Path, data: bytes, encoding: str) -> str:
    """The file's text; ``auto``: UTF-8 (a byte-order mark skipped), else Windows-1252."""
    tries = ["utf-8-sig", "cp1252"] if encoding == "auto" else [encoding]
    for codec in tries:
        try:
            return data.decode(codec)
        except UnicodeDecodeError as exc:
            error = exc
    line = data.count(b"\n", 0, error.start) + 1
    what = "UTF-8 nor Windows-1252" if encoding == "auto" else encoding
    raise StatementError(
        path,
        line,
        f"not {'neither ' if encoding == 'auto' else 'valid '}{what} text: set the "
        "option csv.encoding to the file's encoding",
    )


def parse_number(text: str, decimal_separator: str, thousands_separator: str) -> Decimal:
    """An exact amount written the file's way: ``-1 234,56``, ``(12.00)``, ``£5.50``,
    ``12.00-``. Raises ``ValueError`` with what is wrong."""
    t = text.strip()
    for mark in _CURRENCY_MARKS:
        t = t.replace(mark, "")
    if thousands_separator == " ":
        for nb in _NO_BREAK_SPACES:
            t = t.replace(nb, " ")
    t = t.strip()
    negative = False
    if t.startswith("(") and t.endswith(")"):
        negative, t = True, t[1:-1].strip()
    if t.endswith("-") and not t.startswith(("-", "+")):
        negative, t = True, t[:-1].strip()
    if t.startswith(("-", "+")):
        negative ^= t.startswith("-")
        t = t[1:].strip()
    other = "." if decimal_separator == "," else ","
    if other in t and other != thousands_separator:
        raise ValueError(
            f"has {other!r} but the decimal separator is {decimal_separator!r} "
            + (
                f"and the thousands separator {thousands_separator!r}"
                if thousands_separator
                else "and there is no thousands separator"
            )
        )
    integer, _, fraction = t.partition(decimal_separator)
    if thousands_separator and thousands_separator in integer:
        if not re.fullmatch(rf"\d{{1,3}}(?:{re.escape(thousands_separator)}\d{{3}})+", integer):
            raise ValueError(f"misplaced thousands separator {thousands_separator!r}")
        integer = integer.replace(thousands_separator, "")
    if (
        not re.fullmatch(r"\d*", integer)
        or not re.fullmatch(r"\d*", fraction)
        or not (integer or fraction)
    ):
        raise ValueError("is not a number")
    if decimal_separator in t and not fraction:
        raise ValueError("is not a number")
    try:
        digits = (integer or "0") + (f".{fraction}" if fraction else "")
        d = Decimal(f"-{digits}" if negative else digits)
    except InvalidOperation:  # pragma: no cover - the patterns admit only digits
        raise ValueError("is not a number") from None
    if len(fraction) > MAX_SCALE:
        raise ValueError(f"has more than {MAX_SCALE} decimals")
    return d + 0


@dataclass(frozen=True)
class _Row:
    line: int
    posted: date
    amount: Decimal
    balance: Decimal | None
    transaction: Transaction


class _Columns:
    """Where each mapped column is in the header row."""

    def __init__(self, path: Path, line: int, header: list[str], options: CsvOptions) -> None:
        self.path = path
        self.options = options
        self.index: dict[str, int] = {}
        for i, name in enumerate(header):
            self.index.setdefault(normalise_name(name), i)
        self.header = header
        self.header_line = line
        cols = options.columns
        self.date = self.find("date", cols.date)
        self.amount = self.find("amount", cols.amount) if cols.amount else None
        self.debit = self.find("debit", cols.debit) if cols.debit else None
        self.credit = self.find("credit", cols.credit) if cols.credit else None
        self.description = [self.find("description", c) for c in cols.description]
        self.optional: dict[str, int | None] = {}
        for field in ("payee", "category", "balance", "id", "type", "authorized_date"):
            name = getattr(cols, field)
            if name is None:
                self.optional[field] = None
            elif normalise_name(name) in self.index or not options.column_is_optional(field):
                self.optional[field] = self.find(field, name)
            else:
                self.optional[field] = None

    def find(self, field: str, name: str) -> int:
        i = self.index.get(normalise_name(name))
        if i is None:
            found = ", ".join(repr(h) for h in self.header if h.strip())
            raise StatementError(
                self.path,
                self.header_line,
                f"no column {name!r} (the {field} column) in the header row; its columns are "
                f"{found or 'none'} (delimiter {self.options.delimiter!r})",
            )
        return i

    @property
    def width(self) -> int:
        return len(self.header)


def _rows_with_lines(text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    out: list[tuple[int, list[str]]] = []
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return out
        except csv.Error as exc:
            raise ValueError(f"{reader.line_num}:{exc}") from None
        out.append((start, row))
        start = reader.line_num + 1


def _find_header(path: Path, rows: list[tuple[int, list[str]]], options: CsvOptions) -> int:
    """The index in ``rows`` of the header row."""
    cols = options.columns
    if options.header_row is not None:
        for i, (line, _) in enumerate(rows):
            if line >= options.header_row:
                return i
        raise StatementError(path, None, f"the file has no line {options.header_row} (header_row)")
    names_needed = [cols.date, *(c for c in (cols.amount, cols.debit, cols.credit) if c)]
    wanted = {normalise_name(c) for c in (*names_needed, *cols.description)}
    for i, (line, row) in enumerate(rows):
        if line > HEADER_SEARCH_LINES:
            break
        names = {normalise_name(c) for c in row}
        if wanted <= names:
            return i
    amount = cols.amount or cols.debit
    raise StatementError(
        path,
        None,
        f"no header row naming the columns {cols.date!r} and {amount!r} in the first "
        f"{HEADER_SEARCH_LINES} lines (delimiter {options.delimiter!r}; is this the right "
        "preset or columns?)",
    )


def parse_csv(
    path: Path, data: bytes, options: CsvOptions
) -> tuple[StatementAccount, tuple[str, ...]]:
    """The one account of a CSV export, and warnings. Raises :class:`StatementError`."""
    text = decode(path, data, options.encoding)
    try:
        rows = _rows_with_lines(text, options.delimiter)
    except ValueError as exc:
        line_text, _, msg = str(exc).partition(":")
        raise StatementError(path, int(line_text), f"unreadable CSV: {msg}") from None
    h = _find_header(path, rows, options)
    header_line, header = rows[h]
    cols = _Columns(path, header_line, header, options)
    sub = SubAccount(
        options.account_id,
        options.account_name or options.account_id,
        options.currency,
        options.account_type,
        (),
    )
    keys = ContentKeys(sub.id)
    seen_ids: dict[str, int] = {}
    parsed: list[_Row] = []
    body = [(line, row) for line, row in rows[h + 1 :] if any(c.strip() for c in row)]
    if options.footer_rows:
        body = body[: -options.footer_rows]
    for line, row in body:
        parsed.append(_row(path, line, row, cols, sub, keys, seen_ids))
    if not parsed:
        raise StatementError(path, header_line, "no transaction rows under the header row")
    warnings: list[str] = []
    ordered = _chronological(parsed)
    last = ordered[-1]
    balance = None
    if last.balance is not None:
        balance = Balance(last.balance, last.posted, None, "last row")
        _reconcile(path, ordered, warnings)
    account = StatementAccount(
        sub_account=sub,
        period_start=min(r.posted for r in parsed),
        period_end=max(r.posted for r in parsed),
        transactions=tuple(r.transaction for r in ordered),
        ledger_balance=balance,
    )
    return account, tuple(warnings)


def _cell(row: list[str], i: int | None) -> str:
    return row[i].strip() if i is not None and i < len(row) else ""


def _row(
    path: Path,
    line: int,
    row: list[str],
    cols: _Columns,
    sub: SubAccount,
    keys: ContentKeys,
    seen_ids: dict[str, int],
) -> _Row:
    o = cols.options
    needed = max(
        i
        for i in (cols.date, cols.amount, cols.debit, cols.credit, *cols.description)
        if i is not None
    )
    if len(row) <= needed:
        raise StatementError(
            path,
            line,
            f"{len(row)} fields, the header row (line {cols.header_line}) has {cols.width}",
        )
    if len(row) > cols.width and any(c.strip() for c in row[cols.width :]):
        raise StatementError(
            path, line, f"{len(row)} fields, more than the header row's {cols.width}"
        )

    def name(i: int | None) -> str:
        return cols.header[i] if i is not None else "?"

    def when(i: int) -> date:
        value = _cell(row, i)
        try:
            return datetime.strptime(value, o.date_format).date()
        except ValueError:
            raise StatementError(
                path,
                line,
                f"column {name(i)!r}: {value!r} is not a date in the format {o.date_format}",
            ) from None

    def number(i: int | None) -> Decimal | None:
        value = _cell(row, i)
        if not value:
            return None
        try:
            return parse_number(value, o.decimal_separator, o.thousands_separator)
        except ValueError as exc:
            raise StatementError(path, line, f"column {name(i)!r}: {value!r} {exc}") from None

    posted = when(cols.date)
    if cols.amount is not None:
        amount = number(cols.amount)
        if amount is None:
            raise StatementError(path, line, f"column {name(cols.amount)!r}: no amount")
        if o.debits_positive:
            amount = -amount + 0
    else:
        debit, credit = number(cols.debit), number(cols.credit)
        if debit is None and credit is None:
            raise StatementError(
                path,
                line,
                f"no amount: both {name(cols.debit)!r} and {name(cols.credit)!r} are empty",
            )
        amount = abs(credit or Decimal(0)) - abs(debit or Decimal(0)) + 0
    balance = number(cols.optional["balance"])
    payee = _cell(row, cols.optional["payee"]) or None
    parts: list[str] = []
    for i in cols.description:
        text = normalise_text(_cell(row, i))
        if text and text not in parts:
            parts.append(text)
    description = " - ".join(parts) or (payee or "")
    type_value = _cell(row, cols.optional["type"])
    kind = o.kinds.get(type_value) if type_value else None
    if kind is None and type_value:
        folded = {k.casefold(): v for k, v in o.kinds.items()}
        kind = folded.get(type_value.casefold())
    if kind is None:
        kind = "deposit" if amount > 0 else ("withdrawal" if amount < 0 else "other")
    own_id = _cell(row, cols.optional["id"])
    if own_id:
        txn_id = bank_id(sub.id, own_id)
        if txn_id in seen_ids:
            raise StatementError(
                path,
                line,
                f"column {name(cols.optional['id'])!r}: id {own_id!r} is already the id of "
                f"line {seen_ids[txn_id]}",
            )
        seen_ids[txn_id] = line
    else:
        txn_id = keys.next(posted, amount, description)
    made = cols.optional["authorized_date"]
    authorized = when(made) if made is not None and _cell(row, made) else None
    category = _cell(row, cols.optional["category"]) or None
    txn = Transaction(
        id=txn_id,
        sub_account_id=sub.id,
        amount=amount,
        currency=sub.currency,
        description=description,
        kind=kind,
        posted=posted,
        authorized=authorized,
        merchant=normalise_text(payee) if payee else None,
        category=category,
    )
    return _Row(line, posted, amount, balance, txn)


def _chain(rows: list[_Row]) -> bool:
    """Whether each running balance is the previous one plus the row's amount."""
    return all(
        b.balance is not None and a.balance is not None and b.balance == a.balance + b.amount
        for a, b in itertools.pairwise(rows)
    )


def _chronological(rows: list[_Row]) -> list[_Row]:
    """The rows oldest first (the file may list them either way)."""
    days = [r.posted for r in rows]
    ascending = all(a <= b for a, b in itertools.pairwise(days))
    descending = all(a >= b for a, b in itertools.pairwise(days))
    if ascending and descending:  # one day: the running balances tell, when there are any
        backwards = list(reversed(rows))
        return backwards if len(rows) > 1 and _chain(backwards) and not _chain(rows) else rows
    if descending:
        return list(reversed(rows))
    if ascending:
        return rows
    # neither: keep the file's order within a day, days in order
    return sorted(rows, key=lambda r: r.posted)


def _reconcile(path: Path, rows: list[_Row], warnings: list[str]) -> None:
    for a, b in itertools.pairwise(rows):
        if a.balance is None or b.balance is None:
            continue
        if b.balance != a.balance + b.amount:
            warnings.append(
                f"{path.name}, line {b.line}: the running balance {b.balance} is not the "
                f"previous one ({a.balance}, line {a.line}) plus the amount {b.amount}"
            )
            return
