"""Options of the ``statements`` provider: how to read a bank's statement files
(pydantic and the standard library only: no OFX library here).

A linked account of this provider reads the files dropped into
``$FINBOT_HOME/inbox/<linked-account-id>/``. OFX/QFX files describe themselves
(accounts, currency, balances), so :class:`OfxOptions` only corrects what a bank
gets wrong. A CSV export says nothing about itself: :class:`CsvOptions` names
the account it belongs to and how to read its columns, usually through a
:data:`CSV_PRESETS` layout plus the account's currency::

    options:
      csv: {preset: fr_bank, currency: EUR, account_id: courant, account_name: Compte courant}

Presets (anything set beside ``preset`` wins; optional columns a preset names,
such as ``balance``, are read when the file has them):

``uk_bank``
    the common four-column UK layout ``Date,Description,Amount,Balance``:
    day-first dates (``31/01/2024``), one signed amount column (money out
    negative), a running balance.
``uk_monzo``
    Monzo's export: ``Transaction ID,Date,Time,Type,Name,Emoji,Category,Amount,
    Currency,...,Description,...``; the bank's own ``Transaction ID`` is the id,
    ``Name`` the merchant, a ``Pot transfer`` a transfer.
``fr_bank``
    the French banks' ``Date;Libellé;Débit;Crédit`` (Crédit Agricole, Banque
    Postale, CIC style): ``;`` between fields, ``,`` decimals, a space (or a
    no-break space) between thousands, unsigned amounts in a ``Débit`` or a
    ``Crédit`` column, often a few lines (account number, period) above the
    header (found by itself: see ``header_row``), and a ``Solde`` column when
    the bank gives one.
``us_chase_checking``
    Chase checking/savings: ``Details,Posting Date,Description,Amount,Type,
    Balance,Check or Slip #`` (and a trailing comma on every row), month-first
    dates, newest row first; the ``Type`` codes (``ACH_DEBIT``, ``ACCT_XFER``,
    ``FEE_TRANSACTION``, ...) give the kind.
``us_chase_credit``
    Chase credit cards: ``Transaction Date,Post Date,Description,Category,Type,
    Amount,Memo``; purchases negative; ``Type`` is ``Sale``, ``Payment``,
    ``Return``, ``Fee``, ``Adjustment``.
``us_amex``
    American Express (US): ``Date,Description,Amount`` (and optional extended
    columns), charges written *positive* and payments negative
    (``debits_positive: true``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from finbot_pipelines.providers.base import (
    IsoCurrency,
    ProviderOptions,
    ProviderSpec,
)
from finbot_pipelines.providers.contract import ACCOUNT_TYPES, AccountType
from finbot_pipelines.providers.contract import TransactionKind as Kind

PresetName = Literal[
    "uk_bank", "uk_monzo", "fr_bank", "us_chase_checking", "us_chase_credit", "us_amex"
]
#: The encodings a CSV may be read with: ``auto`` is UTF-8 (a byte-order mark is
#: skipped), else Windows-1252 when the file is not valid UTF-8.
Encoding = Literal["auto", "utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"]
#: Charsets an OFX file's own declaration may be overridden with.
OfxEncoding = Literal["utf-8", "cp1252", "latin-1"]


def _check_text(v: str) -> str:
    if not v.strip():
        raise ValueError("expected a non-empty name")
    return v


def _check_delimiter(v: str) -> str:
    if len(v) != 1 or v in '\r\n"' or v.isalnum():
        raise ValueError(f"expected one separator character such as , ; | or a tab, got {v!r}")
    return v


def _check_date_format(v: str) -> str:
    if not all(d in v for d in ("%d", "%m")) or not any(y in v for y in ("%Y", "%y")):
        raise ValueError(
            f"expected a strftime date format with %d, %m and %Y (or %y) such as %d/%m/%Y, "
            f"got {v!r}"
        )
    return v


def _check_columns(v: list[str]) -> list[str]:
    if not v:
        raise ValueError("expected at least one column name")
    for name in v:
        _check_text(name)
    return v


Name = Annotated[str, AfterValidator(_check_text)]
Delimiter = Annotated[str, AfterValidator(_check_delimiter)]
DateFormat = Annotated[str, AfterValidator(_check_date_format)]
ColumnList = Annotated[
    list[str],
    BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
    AfterValidator(_check_columns),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CsvColumns(_Model):
    """Which header names hold what. Names are matched without regard to case,
    accents or surrounding spaces (``Libelle`` finds ``Libellé``)."""

    date: Name = Field(description="the booking (posting) date")
    amount: Name | None = Field(
        default=None, description="one signed amount (or give debit and credit)"
    )
    debit: Name | None = Field(default=None, description="money out, unsigned or negative")
    credit: Name | None = Field(default=None, description="money in, unsigned")
    description: ColumnList = Field(
        description="the description: one column, or several joined with ' - '"
    )
    payee: Name | None = Field(default=None, description="the merchant or counterparty")
    category: Name | None = Field(default=None, description="the bank's category")
    balance: Name | None = Field(default=None, description="the running balance after the row")
    id: Name | None = Field(default=None, description="the bank's own transaction id")
    type: Name | None = Field(
        default=None, description="the bank's transaction type (mapped by `kinds`)"
    )
    authorized_date: Name | None = Field(
        default=None, description="the date the transaction was made (card date)"
    )

    @model_validator(mode="after")
    def _amount_or_debit_credit(self) -> CsvColumns:
        if self.amount is None and (self.debit is None or self.credit is None):
            raise ValueError("give an amount column, or both a debit and a credit column")
        if self.amount is not None and (self.debit is not None or self.credit is not None):
            raise ValueError("give either an amount column or debit and credit columns, not both")
        return self


#: What each preset sets (see the module docstring). Optional columns named by a
#: preset (``balance``, ``category``, ...) are read when the file has them.
CSV_PRESETS: dict[str, dict[str, Any]] = {
    "uk_bank": {
        "columns": {
            "date": "Date",
            "description": ["Description"],
            "amount": "Amount",
            "balance": "Balance",
        },
        "date_format": "%d/%m/%Y",
    },
    "uk_monzo": {
        "columns": {
            "date": "Date",
            "description": ["Name"],
            "amount": "Amount",
            "payee": "Name",
            "category": "Category",
            "id": "Transaction ID",
            "type": "Type",
            "balance": "Balance",
        },
        "date_format": "%d/%m/%Y",
        "currency": "GBP",
        "kinds": {"Pot transfer": "transfer"},
    },
    "fr_bank": {
        "columns": {
            "date": "Date",
            "description": ["Libellé"],
            "debit": "Débit",
            "credit": "Crédit",
            "balance": "Solde",
        },
        "delimiter": ";",
        "decimal_separator": ",",
        "thousands_separator": " ",
        "date_format": "%d/%m/%Y",
        "currency": "EUR",
    },
    "us_chase_checking": {
        "columns": {
            "date": "Posting Date",
            "description": ["Description"],
            "amount": "Amount",
            "type": "Type",
            "balance": "Balance",
        },
        "date_format": "%m/%d/%Y",
        "thousands_separator": ",",
        "currency": "USD",
        "kinds": {
            "ACH_CREDIT": "deposit",
            "ACH_DEBIT": "withdrawal",
            "ACCT_XFER": "transfer",
            "ATM": "withdrawal",
            "ATM_DEPOSIT": "deposit",
            "BILLPAY": "withdrawal",
            "CHECK_DEPOSIT": "deposit",
            "CHECK_PAID": "withdrawal",
            "DEBIT_CARD": "withdrawal",
            "DEPOSIT": "deposit",
            "FEE_TRANSACTION": "fee",
            "LOAN_PMT": "withdrawal",
            "MISC_CREDIT": "deposit",
            "MISC_DEBIT": "withdrawal",
            "QUICKPAY_CREDIT": "deposit",
            "QUICKPAY_DEBIT": "withdrawal",
            "WIRE_INCOMING": "deposit",
            "WIRE_OUTGOING": "withdrawal",
            "INTEREST": "interest",
        },
    },
    "us_chase_credit": {
        "columns": {
            "date": "Post Date",
            "authorized_date": "Transaction Date",
            "description": ["Description"],
            "amount": "Amount",
            "category": "Category",
            "type": "Type",
        },
        "date_format": "%m/%d/%Y",
        "thousands_separator": ",",
        "currency": "USD",
        "account_type": "credit",
        "kinds": {
            "Sale": "withdrawal",
            "Return": "deposit",
            "Payment": "transfer",
            "Fee": "fee",
            "Adjustment": "other",
        },
    },
    "us_amex": {
        "columns": {
            "date": "Date",
            "description": ["Description"],
            "amount": "Amount",
            "category": "Category",
        },
        "date_format": "%m/%d/%Y",
        "thousands_separator": ",",
        "debits_positive": True,
        "currency": "USD",
        "account_type": "credit",
    },
}
#: The columns of a preset that are read only when the file has them.
PRESET_OPTIONAL_COLUMNS = ("payee", "category", "balance", "id", "type", "authorized_date")


class CsvOptions(_Model):
    """How to read one bank's CSV export, and which sub-account it is."""

    preset: PresetName | None = Field(
        default=None, description=f"a known layout: {', '.join(CSV_PRESETS)}"
    )
    columns: CsvColumns = Field(description="which header names hold what")
    account_id: Name = Field(
        default="main", description="the sub-account id the file's rows belong to"
    )
    account_name: Name | None = Field(
        default=None, description="the sub-account's name (default its id)"
    )
    currency: IsoCurrency = Field(description="the currency of the account (ISO 4217)")
    account_type: AccountType = Field(
        default="depository", description=f"one of {', '.join(ACCOUNT_TYPES)}"
    )
    delimiter: Delimiter = Field(default=",", description="the field separator")
    encoding: Encoding = Field(
        default="auto", description="the file's encoding; auto: UTF-8, else Windows-1252"
    )
    header_row: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description=(
            "the line number of the header row (1 = the first line); default: the first "
            "line naming the date and amount columns"
        ),
    )
    footer_rows: int = Field(
        default=0,
        ge=0,
        le=20,
        description="non-empty lines at the end that are not transactions (a closing balance line)",
    )
    date_format: DateFormat = Field(default="%d/%m/%Y", description="strftime format of dates")
    decimal_separator: Literal[".", ","] = Field(default=".", description="'.' or ','")
    thousands_separator: Literal["", ",", ".", " ", "'"] = Field(
        default="",
        description="the thousands separator ('' none; ' ' also accepts a no-break space)",
    )
    debits_positive: bool = Field(
        default=False,
        description="the single amount column writes money out as positive (card exports)",
    )
    kinds: dict[str, Kind] = Field(
        default_factory=dict,
        description="the type column's values -> finbot kinds (default: by the amount's sign)",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """The preset's settings under the ones given (``columns`` merged name by name;
        giving ``amount`` or ``debit``/``credit`` replaces the preset's amount columns)."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset")
        if not isinstance(preset, str) or preset not in CSV_PRESETS:
            return data
        data = dict(data)
        given_columns = data.get("columns")
        for key, value in CSV_PRESETS[preset].items():
            if key == "columns":
                merged = dict(value)
                if isinstance(given_columns, dict):
                    if any(k in given_columns for k in ("amount", "debit", "credit")):
                        for k in ("amount", "debit", "credit"):
                            merged.pop(k, None)
                    merged.update(given_columns)
                data["columns"] = merged
            elif key == "kinds":
                data["kinds"] = {**value, **(data.get("kinds") or {})}
            else:
                data.setdefault(key, value)
        return data

    def column_is_optional(self, field: str) -> bool:
        """Whether ``columns.<field>`` may be missing from the file: an optional column
        (balance, category, ...) that comes from the preset."""
        if self.preset is None or field not in PRESET_OPTIONAL_COLUMNS:
            return False
        preset_columns = CSV_PRESETS[self.preset]["columns"]
        return bool(preset_columns.get(field) == getattr(self.columns, field))


class OfxOptions(_Model):
    """Corrections for OFX/QFX files (they describe themselves otherwise)."""

    encoding: OfxEncoding | None = Field(
        default=None,
        description="read the file in this charset instead of the one its header declares",
    )
    invert_amounts: bool = Field(
        default=False,
        description=(
            "the bank writes money out as positive: negate every bank and card transaction "
            "(STMTTRN) and LEDGERBAL/AVAILBAL (OFX says money out is negative)"
        ),
    )
    account_names: dict[str, Name] = Field(
        default_factory=dict, description="account id (ACCTID) -> the sub-account's name"
    )


class StatementsOptions(ProviderOptions):
    """Options of a ``statements`` linked account."""

    ofx: OfxOptions = Field(default_factory=OfxOptions, description="OFX/QFX corrections")
    csv: CsvOptions | None = Field(
        default=None, description="how to read CSV exports (needed for CSV files)"
    )


SPEC = ProviderSpec(
    id="statements",
    description=(
        "Statement files of a bank, card or brokerage (OFX/QFX, or CSV with a column "
        "mapping): never fetched; files dropped into inbox/<account-id>/ (or given to "
        "`finbot import`) land their balances and positions at the statement's own date, "
        "and their transactions."
    ),
    options=StatementsOptions,
    supports_historical=True,
    fetched=False,
)
