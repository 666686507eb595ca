"""What a statement file holds, once read: :class:`Statement` and its parts, and
:class:`StatementError`, the one error a bad file raises.

Plain dataclasses (no Dagster, no warehouse). Amounts are exact
:class:`~decimal.Decimal` values as the file writes them; transactions are the
provider contract's :class:`~finbot_pipelines.providers.contract.Transaction`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from finbot_pipelines.providers.contract import SubAccount, Transaction

StatementFormat = Literal["ofx", "csv"]


class StatementError(Exception):
    """A statement file that cannot be read. Names the file, and the line (1-based)
    and field when the problem has one; nothing of the file is kept."""

    def __init__(self, file: Path | str, line: int | None, message: str) -> None:
        self.file = Path(file)
        self.line = line
        self.message = message
        where = f"{self.file}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Balance:
    """An amount of the account at the statement's own date.

    ``as_of`` is the date as the file writes it (the bank's local date);
    ``as_of_utc`` the instant when the file gives a time (naive UTC), else None.
    ``source`` says where the date comes from: ``DTASOF``, or, when a file leaves
    it out, ``DTEND`` (the statement's end) or ``DTSERVER`` (when the file was
    made); ``last row`` for a CSV's running balance."""

    amount: Decimal
    as_of: date
    as_of_utc: datetime | None = None
    source: str = "DTASOF"


@dataclass(frozen=True)
class Position:
    """One holding of an investment statement (OFX ``INVPOSLIST``).

    ``security_id`` is the file's ``UNIQUEID`` (``security_id_type`` CUSIP, ISIN,
    ...), ``symbol`` the ticker from its ``SECLIST`` when given, ``name`` the
    security's name (else its id). ``units`` are negative for a short position;
    ``market_value`` is in ``currency`` (the account's unless the position says
    otherwise). ``asset_type`` is finbot's: stock, fund, bond, option, other."""

    security_id: str
    security_id_type: str
    symbol: str | None
    name: str
    asset_type: str
    units: Decimal
    unit_price: Decimal
    market_value: Decimal
    currency: str
    price_as_of: date | None
    held_in: str | None = None


@dataclass(frozen=True)
class StatementAccount:
    """One account of a statement file: the sub-account (``items`` left empty: the
    balances and positions below are what the file reports), the statement's
    period, its balances at the statement's date, and its transactions.

    ``ledger_balance``: OFX LEDGERBAL (the booked balance; for a CSV the last
    row's running balance); ``available_balance``: OFX AVAILBAL (what may be
    spent: on a credit card, the credit left); ``cash_balance``: an investment
    account's ``INVBAL`` ``AVAILCASH`` (``margin_balance`` and ``short_balance``
    beside it); ``positions`` at ``positions_as_of`` (INVSTMTRS DTASOF).
    ``period_start``/``period_end``: OFX DTSTART/DTEND of the transaction list
    (for a CSV, its first and last row's dates). ``removed_transaction_ids``: ids
    an OFX correction (CORRECTACTION DELETE or REPLACE) withdraws."""

    sub_account: SubAccount
    period_start: date | None
    period_end: date | None
    transactions: tuple[Transaction, ...]
    ledger_balance: Balance | None = None
    available_balance: Balance | None = None
    cash_balance: Balance | None = None
    margin_balance: Balance | None = None
    short_balance: Balance | None = None
    positions: tuple[Position, ...] = field(default=())
    positions_as_of: date | None = None
    removed_transaction_ids: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Statement:
    """A whole statement file: its accounts, and its fingerprint (the SHA-256 of
    its bytes, hex: the same file dropped twice has the same one).

    ``institution`` is the file's ``FI/ORG`` when it names one; ``warnings``
    things the user should know that did not stop the read."""

    path: Path
    format: StatementFormat
    fingerprint: str
    accounts: tuple[StatementAccount, ...]
    institution: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def transactions(self) -> tuple[Transaction, ...]:
        return tuple(t for a in self.accounts for t in a.transactions)
