"""The sheet layout: the values of one worksheet -> a :class:`Snapshot` (pure, no I/O).

See :mod:`finbot_pipelines.providers.google_sheets.provider` for the layout as the
user writes it. This module holds the parsing rules: the marked tables (ACCOUNTS,
HOLDINGS and the optional TRANSACTIONS), their columns (ours and the original
finbot's names), the numbers and dates, and the
tables that map the original platform's account types, asset classes and asset
types to ours (:data:`ACCOUNT_TYPE_MAP`, :data:`ASSET_CLASS_MAP`,
:data:`ASSET_TYPE_MAP`). Every error is a :class:`ProviderPayloadError` naming
the worksheet and the cell in A1 notation.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from finbot_pipelines.providers.contract import (
    ACCOUNT_TYPES,
    ASSET_CLASSES,
    ISO_4217_CODES,
    MAX_AMOUNT,
    MAX_SCALE,
    TRANSACTION_KINDS,
    UNIT_CODE_RE,
    Item,
    ProviderPayloadError,
    Snapshot,
    SubAccount,
    Transaction,
    quantize,
    to_decimal,
)

ACCOUNTS_MARKER = "ACCOUNTS"
HOLDINGS_MARKER = "HOLDINGS"
TRANSACTIONS_MARKER = "TRANSACTIONS"
MARKERS = (ACCOUNTS_MARKER, HOLDINGS_MARKER, TRANSACTIONS_MARKER)
MAX_QUOTED_CHARS = 60


def template_path() -> Traversable:
    """The CSV template (two marked tables with example rows) to import into a new sheet."""
    return (
        resources.files("finbot_pipelines.providers") / "templates" / "google_sheets_template.csv"
    )


# --------------------------------------------------------------------------- mapping tables

#: Account type as written -> ours. Ours, and the original finbot's: its sheets
#: before 2024 had ``cash``, ``credit`` and ``investment``; later ones ours.
ACCOUNT_TYPE_MAP: dict[str, str] = {
    **{t: t for t in ACCOUNT_TYPES},
    "cash": "depository",
}

#: Asset class as written -> ours. Ours, two plurals, and the original finbot's
#: classes (``currency`` is cash in the account's currency, ``foreign_currency`` cash
#: in another one; ``private_debt`` is money lent, e.g. crowdlending: an asset).
ASSET_CLASS_MAP: dict[str, str] = {
    **{c: c for c in ASSET_CLASSES},
    "equity": "equities",
    "commodity": "commodities",
    # the original finbot's
    "currency": "cash",
    "foreign_currency": "cash",
    "private_debt": "fixed_income",
    "cryptocurrency": "crypto",  # its name of the crypto class in 2023
}

#: Asset type as written -> (our asset type, the class it implies when the row gives
#: no class). Ours, common aliases, and every type of the original finbot (``ETF``,
#: ``ETN``, ``ETC``, ``generic_fund``, ``precious_metal``, ``utility_token``,
#: ``security_token``, ``*_property`` and their 2024 names without ``_property``).
ASSET_TYPE_MAP: dict[str, tuple[str, str]] = {
    "cash": ("cash", "cash"),
    "deposit": ("deposit", "cash"),
    "savings": ("savings", "cash"),
    "money_market": ("money_market", "cash"),
    "stock": ("stock", "equities"),
    "share": ("stock", "equities"),
    "shares": ("stock", "equities"),
    "equity": ("stock", "equities"),
    "etf": ("etf", "equities"),
    "etn": ("etn", "other"),
    "etc": ("etc", "commodities"),
    "option": ("option", "other"),
    "future": ("future", "other"),
    "fund": ("fund", "multi_asset"),
    "mutual_fund": ("fund", "multi_asset"),
    "generic_fund": ("fund", "multi_asset"),
    "bond": ("bond", "fixed_income"),
    "gilt": ("gilt", "fixed_income"),
    "treasury": ("treasury", "fixed_income"),
    "private_loan": ("private_loan", "fixed_income"),
    "crypto_currency": ("crypto_currency", "crypto"),
    "cryptocurrency": ("crypto_currency", "crypto"),
    "crypto": ("crypto_currency", "crypto"),
    "stable_coin": ("stable_coin", "crypto"),
    "stablecoin": ("stable_coin", "crypto"),
    "utility_token": ("utility_token", "crypto"),
    "security_token": ("security_token", "crypto"),
    "property": ("property", "real_estate"),
    "real_estate": ("property", "real_estate"),
    "residential_property": ("property", "real_estate"),
    "residential": ("property", "real_estate"),
    "commercial_property": ("commercial_property", "real_estate"),
    "commercial": ("commercial_property", "real_estate"),
    "land_property": ("land", "real_estate"),
    "land": ("land", "real_estate"),
    "commodity": ("commodity", "commodities"),
    "precious_metal": ("precious_metal", "commodities"),
    "gold": ("gold", "commodities"),
    "pension": ("pension", "pension"),
    "other": ("other", "other"),
    # liabilities (see LIABILITY_TYPES)
    "mortgage": ("mortgage", "real_estate"),
    "loan": ("loan", "other"),
    "student_loan": ("student_loan", "other"),
    "credit_card": ("credit_card", "other"),
    "overdraft": ("overdraft", "cash"),
}
#: Our asset types that make a row a liability (stored negative, however written).
#: ``loan`` is the original finbot's debt type; a ``loan`` of class ``private_debt``
#: is money the owner lent, an asset of type ``private_loan``.
LIABILITY_TYPES = frozenset({"mortgage", "loan", "student_loan", "credit_card", "overdraft"})
#: Our class -> the asset type of a row that gives the class only.
DEFAULT_ASSET_TYPES: dict[str, str] = {
    "cash": "cash",
    "equities": "stock",
    "fixed_income": "bond",
    "crypto": "crypto_currency",
    "real_estate": "property",
    "commodities": "commodity",
    "multi_asset": "fund",
    "pension": "pension",
    "other": "other",
}
#: Written classes whose default type is not their mapped class's default.
_CLASS_DEFAULT_TYPES = {"private_debt": "private_loan"}


# --------------------------------------------------------------------------- numbers


class NumberTextError(ValueError):
    """A text cell that is not a number, or not unambiguously one."""


_CURRENCY_SIGNS = "€£$¥₹₩₽₺₪฿"
#: separators that can only group thousands (spaces, no-break spaces, apostrophes)
_GROUP_ONLY = " \u00a0\u202f\u2009'\u2019"
_RUN_RE = re.compile(r"[0-9]+|[.,]|[" + _GROUP_ONLY + r"]")
_SCIENTIFIC_RE = re.compile(r"^[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+$")


def _strip_sign_and_currency(text: str) -> tuple[bool, str]:
    """(negative, the digits and separators) of ``text``; at most one sign, one currency
    sign (before or after) and accounting parentheses."""
    s = text.strip().replace("\u2212", "-")
    parenthesised = s.startswith("(") and s.endswith(")")
    if parenthesised:
        s = s[1:-1].strip()
    negative = parenthesised
    signs = currencies = 0
    while s and (s[0] in "+-" or s[0] in _CURRENCY_SIGNS):
        if s[0] in "+-":
            signs += 1
            negative = s[0] == "-"
        else:
            currencies += 1
        s = s[1:].lstrip()
    while s and s[-1] in _CURRENCY_SIGNS:
        currencies += 1
        s = s[:-1].rstrip()
    if signs > 1 or currencies > 1 or (parenthesised and signs):
        raise NumberTextError("not a number")
    return negative, s


def parse_number_text(text: str) -> Decimal:
    """The exact number a text cell holds, when it is unambiguous.

    Accepted: digits with a decimal point or comma and thousands grouped by the other
    mark, spaces or apostrophes (``1,234.56``, ``1.234,56``, ``-1 234,56``,
    ``1'234.50``), one currency sign (``€5,500.50``, ``5.500,50 €``), a sign or
    accounting parentheses, scientific notation. A single ``.`` or ``,`` followed by
    exactly three digits (``1,500``, ``1.500``) could be either: refused, as are
    malformed groups (``12,34,56``, ``1.2.3``). Raises :class:`NumberTextError`
    (message ``"ambiguous: ..."`` or ``"not a number"``)."""
    negative, body = _strip_sign_and_currency(text)
    if not body:
        raise NumberTextError("not a number")
    if _SCIENTIFIC_RE.match(body):
        d = Decimal(body)
        return -d if negative else d
    tokens = _RUN_RE.findall(body)
    if "".join(tokens) != body:
        raise NumberTextError("not a number")
    runs: list[str] = []
    seps: list[str] = []
    expect_digits = True
    for tok in tokens:
        if tok.isdigit():
            if not expect_digits:
                raise NumberTextError("not a number")
            runs.append(tok)
            expect_digits = False
        else:
            if expect_digits:
                if runs or tok not in ".,":  # two separators in a row, or a leading space
                    raise NumberTextError("not a number")
                runs.append("")  # ".5"
            seps.append(tok)
            expect_digits = True
    if expect_digits:  # ends with a separator
        raise NumberTextError("not a number")
    decimal_at = _decimal_separator(runs, seps, body)
    int_runs = runs if decimal_at is None else runs[: decimal_at + 1]
    group_seps = seps if decimal_at is None else seps[:decimal_at]
    if group_seps:
        kinds = {"space" if s in _GROUP_ONLY else s for s in group_seps}
        if len(kinds) > 1 or not (1 <= len(int_runs[0]) <= 3):
            raise NumberTextError("not a number")
        if any(len(r) != 3 for r in int_runs[1:]):
            raise NumberTextError("not a number")
    digits = "".join(int_runs) or "0"
    if decimal_at is not None:
        digits += "." + runs[decimal_at + 1]
    d = Decimal(digits)
    return -d if negative else d


def _decimal_separator(runs: list[str], seps: list[str], body: str) -> int | None:
    """The index in ``seps`` of the decimal mark, None for a whole number."""
    if not seps:
        return None
    marks = [s for s in seps if s in ".,"]
    grouped_by_space = len(marks) < len(seps)
    if grouped_by_space:
        # spaces group thousands: a '.' or ',' is the decimal mark, once, last
        if not marks:
            return None
        if len(marks) > 1 or seps[-1] not in ".,":
            raise NumberTextError("not a number")
        return len(seps) - 1
    if len(set(marks)) == 2:
        # both marks: the last one is the decimal mark and appears once
        last = seps[-1]
        if seps.count(last) != 1:
            raise NumberTextError("not a number")
        return len(seps) - 1
    if len(seps) > 1:
        return None  # the same mark several times: thousands groups
    # one mark, once
    before, after = runs[0], runs[1]
    if len(after) != 3 or before in ("", "0") or len(before) > 3:
        return 0
    raise NumberTextError(
        f"ambiguous: {seps[0]!r} may separate thousands or decimals; type the number in a "
        "number cell, or write it with both marks (1,500.00 or 1.500,00) or a space for "
        "thousands (1 500)"
    )


# --------------------------------------------------------------------------- dates


class DateTextError(ValueError):
    """A text cell that is not a date, or not unambiguously one."""


#: Day 0 of the spreadsheets' serial dates (Sheets and Excel since 1 March 1900).
SERIAL_EPOCH = date(1899, 12, 30)
#: The serial number of 31 December 9999.
SERIAL_MAX = 2_958_465
_ISO_DATE_RE = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_YMD_SLASH_RE = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$")
_DMY_DOT_RE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_SLASH_RE = re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})$")
_NAMED_FORMATS = ("%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%b %d %Y", "%B %d %Y",
                  "%d-%b-%Y", "%d %b, %Y")  # fmt: skip


def _ymd(y: str, m: str, d: str) -> date:
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        raise DateTextError("not a date") from None


def parse_date_text(text: str) -> date:
    """The date a text cell holds, when it is unambiguous.

    Accepted: ISO ``2024-01-31`` (a time after it is ignored), ``2024/01/31``,
    ``31.01.2024`` (day first), ``31/01/2024`` or ``01/31/2024`` when the day is
    above 12 or both are equal (``-`` for ``/`` too), and month names in English
    (``31 Jan 2024``, ``January 31, 2024``). ``03/04/2024`` (3 April or March 4?)
    is refused as ambiguous. Raises :class:`DateTextError`."""
    s = " ".join(text.split())
    if m := _ISO_DATE_RE.match(s) or _YMD_SLASH_RE.match(s):
        return _ymd(*m.groups()[:3])
    if m := _DMY_DOT_RE.match(s):
        d, mo, y = m.groups()
        return _ymd(y, mo, d)
    if m := _SLASH_RE.match(s):
        a, b, y = (int(x) for x in m.groups())
        if a > 12 and b <= 12:
            return _ymd(str(y), str(b), str(a))
        if b > 12 and a <= 12:
            return _ymd(str(y), str(a), str(b))
        if a == b:
            return _ymd(str(y), str(a), str(b))
        if a <= 12 and b <= 12:
            raise DateTextError(
                f"ambiguous: {a}/{b} may be day/month or month/day; write it as "
                f"{y:04d}-{b:02d}-{a:02d} or {y:04d}-{a:02d}-{b:02d} (or type it in a date cell)"
            )
        raise DateTextError("not a date")
    for fmt in _NAMED_FORMATS:
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    raise DateTextError("not a date (expected 2024-01-31, 31.01.2024, 31/01/2024 or 31 Jan 2024)")


# --------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class Grid:
    """The values of one worksheet; ``values[0][0]`` is the cell (``row0``, ``col0``), 1-based.

    Cells are what the Sheets API answers with ``valueRenderOption=UNFORMATTED_VALUE``,
    its JSON parsed with ``parse_float=Decimal``: ``str``, ``int``, ``Decimal``, ``bool``
    (a ``float`` is read as its shortest representation)."""

    worksheet: str
    values: Sequence[Sequence[Any]]
    row0: int = 1
    col0: int = 1


def column_letters(col: int) -> str:
    """``1 -> A``, ``27 -> AA``."""
    s = ""
    while col > 0:
        col, rem = divmod(col - 1, 26)
        s = chr(65 + rem) + s
    return s


def a1(row: int, col: int) -> str:
    """A1 notation of the 1-based (row, column)."""
    return f"{column_letters(col)}{row}"


def _text(v: Any) -> str:
    """A cell as text: numbers without a spurious ``.0``, empty cells as ``""``."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return str(v).strip()


def _quote(v: Any) -> str:
    s = " ".join(_text(v).split())
    return repr(s if len(s) <= MAX_QUOTED_CHARS else s[: MAX_QUOTED_CHARS - 3] + "...")


def _norm(header: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", header).lower().split())


def _slug(v: str) -> str:
    return "_".join(re.sub(r"[\-]+", " ", v).lower().split())


@dataclass(frozen=True)
class _TableSpec:
    marker: str
    #: canonical column -> accepted header names (normalised), the first one documented
    columns: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    #: groups of which at least one column must be present
    one_of: tuple[tuple[str, ...], ...] = ()
    #: header names of the original finbot that carry nothing for us, ignored
    ignored: tuple[str, ...] = ()

    def lookup(self) -> dict[str, str]:
        return {alias: col for col, aliases in self.columns.items() for alias in aliases}


ACCOUNTS_SPEC = _TableSpec(
    ACCOUNTS_MARKER,
    {
        "identifier": ("identifier", "id"),
        "description": ("description", "name"),
        "currency": ("currency", "ccy"),
        "type": ("type", "account type"),
    },
    required=("identifier", "currency", "type"),
    ignored=("sub type",),
)
HOLDINGS_SPEC = _TableSpec(
    HOLDINGS_MARKER,
    {
        "account": ("account", "account identifier", "account id"),
        "symbol": ("symbol", "ticker"),
        "name": ("name", "description"),
        "isin": ("isin", "isin code"),
        "asset_class": ("asset class",),
        "asset_type": ("asset type",),
        "units": ("units", "quantity"),
        # the original's value_in_account_ccy is our value
        "value": ("value", "value in account ccy", "value in account currency"),
        # the original's value in the holding's own currency (value_in_asset_ccy in 2024)
        "value_item_ccy": (
            "value in item ccy",
            "value in item currency",
            "value in asset ccy",
        ),
        # underlying_ccy: the original's name of the column in 2023
        "currency": ("currency", "ccy", "underlying ccy"),
        # the original's free-text type: read as the class or type when neither is given
        "legacy_type": ("type",),
    },
    required=("account",),
    one_of=(
        ("value", "value_item_ccy"),
        ("symbol", "name", "isin"),
        ("asset_class", "asset_type", "legacy_type"),
    ),
    ignored=("custom", "sub type"),
)


TRANSACTIONS_SPEC = _TableSpec(
    TRANSACTIONS_MARKER,
    {
        "id": ("id", "identifier", "transaction id"),
        "account": ("account", "account identifier", "account id"),
        "date": ("date", "posted", "posted date", "booking date"),
        "amount": ("amount", "value"),
        "currency": ("currency", "ccy"),
        "description": ("description", "memo", "details", "payee"),
        "kind": ("kind", "type", "transaction type"),
        "category": ("category",),
        "symbol": ("symbol", "ticker"),
        "units": ("units", "quantity"),
    },
    required=("account", "date", "amount"),
)

#: Kind as written (slugged) -> finbot's kind: ours, plurals and common words.
KIND_MAP: dict[str, str] = {
    **{k: k for k in TRANSACTION_KINDS},
    **{f"{k}s": k for k in TRANSACTION_KINDS if k not in ("tax", "other")},
    "taxes": "tax",
    "contribution": "deposit",
    "contributions": "deposit",
    "credit": "deposit",
    "withdraw": "withdrawal",
    "debit": "withdrawal",
    "payment": "withdrawal",
    "purchase": "buy",
    "bought": "buy",
    "sale": "sell",
    "sold": "sell",
    "div": "dividend",
    "charge": "fee",
    "charges": "fee",
    "commission": "fee",
    "internal_transfer": "transfer",
}


@dataclass(frozen=True)
class _Table:
    spec: _TableSpec
    columns: dict[str, int]  # canonical column -> 0-based column index in the grid
    rows: tuple[int, ...]  # 0-based row indexes of the data rows
    header_row: int
    first_col: int


class _Sheet:
    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.values = grid.values

    def get(self, r: int, c: int) -> Any:
        if 0 <= r < len(self.values) and 0 <= c < len(self.values[r]):
            return self.values[r][c]
        return None

    def a1(self, r: int, c: int) -> str:
        return a1(r + self.grid.row0, c + self.grid.col0)

    def error(self, r: int | None, c: int | None, message: str) -> ProviderPayloadError:
        where = f"worksheet {self.grid.worksheet!r}"
        if r is not None and c is not None:
            where += f", cell {self.a1(r, c)}"
        return ProviderPayloadError(f"{where}: {message}")

    def markers(self, marker: str) -> list[tuple[int, int]]:
        return [
            (r, c)
            for r, row in enumerate(self.values)
            for c, v in enumerate(row)
            if isinstance(v, str) and v.strip() == marker
        ]

    def table(self, spec: _TableSpec, optional: bool = False) -> _Table | None:
        found = self.markers(spec.marker)
        if not found and optional:
            return None
        if not found:
            raise self.error(
                None,
                None,
                f"no cell marked {spec.marker} (put {spec.marker} alone in a cell, with the "
                "table's header row directly below it)",
            )
        if len(found) > 1:
            cells = ", ".join(self.a1(r, c) for r, c in found)
            raise self.error(
                *found[1], f"more than one cell marked {spec.marker} ({cells}): keep one"
            )
        mr, mc = found[0]
        hr = mr + 1
        lookup = spec.lookup()
        columns: dict[str, int] = {}
        seen: list[str] = []
        c = mc
        while _text(self.get(hr, c)):
            raw = _text(self.get(hr, c))
            name = _norm(raw)
            seen.append(raw)
            col = lookup.get(name)
            if col is None:
                if name not in spec.ignored:
                    close = difflib.get_close_matches(name, list(lookup), n=1, cutoff=0.8)
                    if close:
                        raise self.error(
                            hr,
                            c,
                            f"unknown column {raw!r} in the {spec.marker} header; did you mean "
                            f"{close[0]!r}?",
                        )
            elif col in columns:
                raise self.error(
                    hr,
                    c,
                    f"column {raw!r} appears twice in the {spec.marker} header (also in cell "
                    f"{self.a1(hr, columns[col])})",
                )
            else:
                columns[col] = c
            c += 1
        expected = ", ".join(spec.columns[col][0] for col in spec.columns)
        if not seen:
            raise self.error(
                hr,
                mc,
                f"the {spec.marker} header is empty: expected the column names ({expected}) "
                f"in the row below the marker {self.a1(mr, mc)}",
            )
        found_txt = f"(found: {', '.join(seen)})"
        for col in spec.required:
            if col not in columns:
                raise self.error(
                    hr,
                    mc,
                    f"missing required column {spec.columns[col][0]!r} in the {spec.marker} "
                    f"header {found_txt}",
                )
        for group in spec.one_of:
            if not any(col in columns for col in group):
                names = " or ".join(repr(spec.columns[col][0]) for col in group)
                raise self.error(
                    hr, mc, f"missing column {names} in the {spec.marker} header {found_txt}"
                )
        rows: list[int] = []
        r = hr + 1
        while r < len(self.values):
            first = _text(self.get(r, mc))
            if not first or first in MARKERS:
                break
            rows.append(r)
            r += 1
        return _Table(spec, columns, tuple(rows), hr, mc)

    # ----------------------------------------------------------------- cells

    def cell_text(self, table: _Table, r: int, col: str) -> tuple[str, int | None]:
        c = table.columns.get(col)
        if c is None:
            return "", None
        return _text(self.get(r, c)), c

    def is_empty(self, table: _Table, r: int, col: str) -> bool:
        c = table.columns.get(col)
        if c is None:
            return True
        v = self.get(r, c)
        return v is None or (isinstance(v, str) and not v.strip())

    def number(self, table: _Table, r: int, col: str) -> Decimal | None:
        """The exact number in a cell (None when empty); errors name the cell."""
        c = table.columns.get(col)
        if c is None or self.is_empty(table, r, col):
            return None
        v = self.get(r, c)
        label = table.spec.columns[col][0]
        if isinstance(v, bool):
            raise self.error(r, c, f"{label} {_quote(v)} is not a number")
        if isinstance(v, int | float | Decimal):
            try:
                d = to_decimal(v, label)
            except ValueError:
                raise self.error(r, c, f"{label} {_quote(v)} is not a finite number") from None
        elif isinstance(v, str):
            try:
                d = parse_number_text(v)
            except NumberTextError as exc:
                raise self.error(r, c, f"{label} {_quote(v)} is {exc}") from None
        else:
            raise self.error(r, c, f"{label} holds a {type(v).__name__}, not a number")
        if abs(d) >= MAX_AMOUNT:
            raise self.error(r, c, f"{label} {_quote(v)} is too large")
        exponent = d.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_SCALE:
            # a formula's double can carry more places than the warehouse keeps
            d = quantize(d, MAX_SCALE)
        return d + 0

    def day(self, table: _Table, r: int, col: str) -> date:
        """The date in a cell (see :func:`parse_date_text`); errors name the cell."""
        c = table.columns[col]
        v = self.get(r, c)
        label = table.spec.columns[col][0]
        if v is None or (isinstance(v, str) and not v.strip()):
            raise self.error(r, c, f"{label} is empty: expected a date such as 2024-01-31")
        if isinstance(v, bool):
            raise self.error(r, c, f"{label} {_quote(v)} is not a date")
        if isinstance(v, int | float | Decimal):
            # a date cell formatted as a number: the spreadsheet's serial day number
            d = Decimal(str(v))
            if d != d.to_integral_value() or not (1 <= d <= SERIAL_MAX):
                raise self.error(r, c, f"{label} {_quote(v)} is not a date")
            return SERIAL_EPOCH + timedelta(days=int(d))
        try:
            return parse_date_text(str(v))
        except DateTextError as exc:
            raise self.error(r, c, f"{label} {_quote(v)} is {exc}") from None

    def code(
        self,
        table: _Table,
        r: int,
        col: str,
        *,
        required: bool,
        units: Collection[str] = (),
        any_unit: bool = False,
    ) -> str | None:
        """A currency code: ISO 4217, one of ``units``, or (``any_unit``) any unit code."""
        text, c = self.cell_text(table, r, col)
        if c is None or not text:
            if required:
                raise self.error(r, c, "currency is empty: expected an ISO 4217 code such as GBP")
            return None
        code = text.upper()
        if code in ISO_4217_CODES or code in units or (any_unit and UNIT_CODE_RE.match(code)):
            return code
        hint = f" (nor a unit priced by unit_prices: {', '.join(sorted(units))})" if units else ""
        raise self.error(
            r,
            c,
            f"currency {text!r} is not a 3-letter ISO 4217 code such as GBP{hint}",
        )


# --------------------------------------------------------------------------- rows


@dataclass
class _Account:
    row: int
    identifier: str
    name: str
    currency: str
    account_type: str
    items: list[Item] = field(default_factory=list)
    item_rows: dict[str, int] = field(default_factory=dict)


def _crypto_unit(symbol: str, currency: str | None) -> str | None:
    """The unit a crypto row's units count: its symbol when it is a unit code as written
    (``BTC``, not ``Bitcoin``), else its currency when that is not an ISO code."""
    code = symbol.strip()
    if code and UNIT_CODE_RE.match(code):
        return code
    if currency is not None and currency not in ISO_4217_CODES:
        return currency
    return None


def parse_grid(grid: Grid, priced_units: Collection[str] = ()) -> Snapshot:
    """Turn the values of a worksheet into a snapshot (pure; errors name the cell).

    ``priced_units``: the non-ISO units the household's unit prices value (an
    account may be kept in one of them)."""
    sheet = _Sheet(grid)
    units_ok = frozenset(priced_units)
    accounts_table = sheet.table(ACCOUNTS_SPEC)
    assert accounts_table is not None
    accounts: dict[str, _Account] = {}
    for r in accounts_table.rows:
        ident, ic = sheet.cell_text(accounts_table, r, "identifier")
        if ident in accounts:
            raise sheet.error(
                r,
                ic,
                f"duplicate account identifier {ident!r} (also on row "
                f"{accounts[ident].row + grid.row0})",
            )
        description, _ = sheet.cell_text(accounts_table, r, "description")
        ccy = sheet.code(accounts_table, r, "currency", required=True, units=units_ok)
        assert ccy is not None
        kind_text, kc = sheet.cell_text(accounts_table, r, "type")
        kind = ACCOUNT_TYPE_MAP.get(_slug(kind_text))
        if kind is None:
            expected = ", ".join(ACCOUNT_TYPES)
            raise sheet.error(
                r,
                kc,
                f"account type {kind_text!r} is not one of {expected} (or the original "
                "finbot's cash)"
                if kind_text
                else f"account type is empty: expected one of {expected}",
            )
        accounts[ident] = _Account(r, ident, description or ident, ccy, kind)

    holdings_table = sheet.table(HOLDINGS_SPEC)
    assert holdings_table is not None
    for r in holdings_table.rows:
        _holding(sheet, holdings_table, r, accounts, units_ok)

    transactions: list[Transaction] = []
    txn_table = sheet.table(TRANSACTIONS_SPEC, optional=True)
    if txn_table is not None:
        transactions = _transactions(sheet, txn_table, accounts, units_ok)

    return Snapshot(
        tuple(
            SubAccount(a.identifier, a.name, a.currency, a.account_type, tuple(a.items))
            for a in accounts.values()
        ),
        transactions=tuple(transactions),
    )


def has_transactions_table(grid: Grid) -> bool:
    """Whether the worksheet has a TRANSACTIONS marker."""
    return bool(_Sheet(grid).markers(TRANSACTIONS_MARKER))


def content_key(account: str, day: date, amount: Decimal, description: str, n: int) -> str:
    """The id of a TRANSACTIONS row without one: its account, date, amount (however
    written: ``12.5`` and ``12.50`` are the same), description (spaces collapsed) and
    its occurrence ``n`` (1, 2, ...) among identical rows, hashed."""
    text = "\x1f".join(
        (account, day.isoformat(), format(amount.normalize() if amount else Decimal(0), "f"),
         " ".join(description.split()), str(n))
    )  # fmt: skip
    return "row:" + hashlib.sha256(text.encode()).hexdigest()[:24]


def _account_of(
    sheet: _Sheet, t: _Table, r: int, accounts: dict[str, _Account]
) -> tuple[str, _Account]:
    """The ACCOUNTS row a row's ``account`` cell names; an error naming the cell (and the
    closest identifier) when none has it."""
    account_id, ac = sheet.cell_text(t, r, "account")
    account = accounts.get(account_id)
    if account is None:
        known = ", ".join(accounts) or "no rows"
        hint = difflib.get_close_matches(account_id, list(accounts), n=1, cutoff=0.6)
        raise sheet.error(
            r,
            ac,
            f"unknown account {account_id!r} (ACCOUNTS has: {known})"
            + (f"; did you mean {hint[0]!r}?" if hint else ""),
        )
    return account_id, account


def _transactions(
    sheet: _Sheet, t: _Table, accounts: dict[str, _Account], units_ok: frozenset[str]
) -> list[Transaction]:
    out: dict[str, Transaction] = {}
    id_rows: dict[str, int] = {}
    occurrences: dict[tuple[str, date, Decimal, str], int] = {}
    for r in t.rows:
        account_id, account = _account_of(sheet, t, r, accounts)
        day = sheet.day(t, r, "date")
        amount = sheet.number(t, r, "amount")
        if amount is None:
            raise sheet.error(r, t.columns["amount"], "amount is empty: expected a number")
        currency = (
            sheet.code(t, r, "currency", required=False, units={*units_ok, account.currency})
            or account.currency
        )
        description, _ = sheet.cell_text(t, r, "description")
        kind_text, kc = sheet.cell_text(t, r, "kind")
        if kind_text:
            kind = KIND_MAP.get(_slug(kind_text))
            if kind is None:
                close = difflib.get_close_matches(_slug(kind_text), list(KIND_MAP), n=1)
                raise sheet.error(
                    r,
                    kc,
                    f"kind {kind_text!r} is not one of {', '.join(TRANSACTION_KINDS)}"
                    + (f"; did you mean {KIND_MAP[close[0]]!r}?" if close else ""),
                )
        else:
            kind = "deposit" if amount > 0 else "withdrawal" if amount < 0 else "other"
        category, _ = sheet.cell_text(t, r, "category")
        symbol, _ = sheet.cell_text(t, r, "symbol")
        units = sheet.number(t, r, "units")
        given, ic = sheet.cell_text(t, r, "id")
        if given:
            tid = given
            if tid in id_rows:
                raise sheet.error(
                    r,
                    ic,
                    f"duplicate transaction id {tid!r} (also on row "
                    f"{id_rows[tid] + sheet.grid.row0}): give each row its own id, or none",
                )
            if len(tid) > 200:
                raise sheet.error(r, ic, "transaction id is longer than 200 characters")
        else:
            key = (account_id, day, amount.normalize(), " ".join(description.split()))
            occurrences[key] = occurrences.get(key, 0) + 1
            tid = content_key(account_id, day, amount, description, occurrences[key])
        id_rows[tid] = r
        out[tid] = Transaction(
            id=tid,
            sub_account_id=account_id,
            amount=amount,
            currency=currency,
            description=description,
            kind=kind,
            posted=day,
            category=category or None,
            symbol=symbol or None,
            units=units,
        )
    return list(out.values())


def _holding(
    sheet: _Sheet,
    t: _Table,
    r: int,
    accounts: dict[str, _Account],
    units_ok: frozenset[str],
) -> None:
    account_id, account = _account_of(sheet, t, r, accounts)
    symbol, sc = sheet.cell_text(t, r, "symbol")
    isin, isc = sheet.cell_text(t, r, "isin")
    name, nc = sheet.cell_text(t, r, "name")
    symbol = symbol or isin
    name = name or symbol
    if not name:
        c = next(x for x in (nc, sc, isc) if x is not None)
        raise sheet.error(r, c, "the holding has no symbol and no name: fill one of them")
    if name in account.item_rows:
        raise sheet.error(
            r,
            nc if nc is not None else (sc if sc is not None else isc),
            f"duplicate holding {name!r} in account {account_id!r} (also on row "
            f"{account.item_rows[name] + sheet.grid.row0}): give each row a distinct name",
        )
    asset_class, asset_type = _classify(sheet, t, r)
    crypto = asset_class == "crypto"
    ccy = sheet.code(t, r, "currency", required=False, units=units_ok, any_unit=crypto)
    units = sheet.number(t, r, "units")
    liability = asset_type in LIABILITY_TYPES
    unit = _crypto_unit(symbol, ccy) if crypto else None

    value: Decimal | None
    in_account_ccy = not sheet.is_empty(t, r, "value")
    in_item_ccy = not sheet.is_empty(t, r, "value_item_ccy")
    if in_account_ccy and in_item_ccy:
        raise sheet.error(
            r,
            t.columns["value_item_ccy"],
            "both value_in_account_ccy and value_in_item_ccy are filled: keep one",
        )
    if in_account_ccy:
        value = sheet.number(t, r, "value")
    elif in_item_ccy:
        amount = sheet.number(t, r, "value_item_ccy")
        assert amount is not None
        item_ccy = ccy or account.currency
        if item_ccy == account.currency:
            value = amount
        else:
            # an amount of another currency: the valuation converts it (units x rate)
            value, units, unit = None, amount, item_ccy
    elif crypto and units is not None and unit is not None:
        value = None  # priced downstream by unit_prices (see the provider's docstring)
    else:
        value_col = t.columns.get("value", t.columns.get("value_item_ccy"))
        raise sheet.error(
            r,
            value_col,
            "value is empty: expected a number (a crypto row may leave it empty when it gives "
            "its units and a symbol such as BTC: unit_prices then value it)",
        )

    if value is not None:
        liability = liability or value < 0
        if liability:
            value = -abs(value) + 0
    elif units is not None:
        liability = liability or units < 0
        if liability:
            units = -abs(units) + 0
    account.items.append(
        Item(
            name=name,
            item_type="liability" if liability else "asset",
            asset_class=asset_class,
            asset_type=asset_type,
            value=value,
            units=units,
            currency=ccy,
            symbol=symbol or None,
            unit=unit,
        )
    )
    account.item_rows[name] = r


def _classify(sheet: _Sheet, t: _Table, r: int) -> tuple[str, str]:
    """(asset_class, asset_type) of a HOLDINGS row, mapped to ours (see the tables above).

    A written class wins over the class a type implies; a row with a type only takes
    the type's class; a row with a class only takes the class's default type. When
    the row has neither, the original's free-text ``type`` column is tried as a class,
    then as a type."""
    class_text, cc = sheet.cell_text(t, r, "asset_class")
    type_text, tc = sheet.cell_text(t, r, "asset_type")
    if not class_text and not type_text:
        legacy, lc = sheet.cell_text(t, r, "legacy_type")
        slug = _slug(legacy)
        if slug in ASSET_CLASS_MAP:
            class_text, cc = legacy, lc
        elif slug in ASSET_TYPE_MAP:
            type_text, tc = legacy, lc
        else:
            c = next((x for x in (tc, cc, lc) if x is not None), None)
            extra = (
                f" (the type {legacy!r} is neither a known asset class nor a known asset type)"
                if legacy
                else ""
            )
            raise sheet.error(
                r,
                c,
                "the holding has no asset class and no asset type: fill at least one of them"
                + extra,
            )
    written_class = _slug(class_text)
    asset_class = ""
    if class_text:
        mapped = ASSET_CLASS_MAP.get(written_class)
        if mapped is None:
            raise sheet.error(
                r,
                cc,
                f"asset class {class_text!r} is not one of {', '.join(ASSET_CLASSES)} (or "
                f"{', '.join(k for k in ASSET_CLASS_MAP if k not in ASSET_CLASSES)})",
            )
        asset_class = mapped
    asset_type = ""
    if type_text:
        known = ASSET_TYPE_MAP.get(_slug(type_text))
        if known is None:
            if not asset_class:
                raise sheet.error(
                    r,
                    tc,
                    f"cannot infer the asset class of asset type {type_text!r}: fill the asset "
                    f"class column ({', '.join(ASSET_CLASSES)}) or use a known asset type "
                    f"({', '.join(sorted(ASSET_TYPE_MAP))})",
                )
            asset_type = _slug(type_text)  # a type of the user's own, kept as written
        else:
            asset_type = known[0]
            asset_class = asset_class or known[1]
    if written_class == "private_debt" and asset_type == "loan":
        asset_type = "private_loan"  # money lent: an asset
    if not asset_type:
        asset_type = _CLASS_DEFAULT_TYPES.get(written_class, DEFAULT_ASSET_TYPES[asset_class])
    return asset_class, asset_type
