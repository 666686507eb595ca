"""What a fetch returns and how it fails: the contract between providers and the ingest.

A provider returns a :class:`Snapshot` (sub-accounts, their items, and warnings)
or raises a :class:`ProviderError` subclass whose ``code`` lands in
``raw.fetches.error_code``. This module is plain Python (no client library, no
finbot configuration), so everything may import it.

Amounts are exact
-----------------
``Item.value`` and ``Item.units`` are :class:`decimal.Decimal` values, passed as
the service sent them (``Decimal(str(x))`` of a JSON number, never a product of
floats), with at most :data:`MAX_SCALE` decimal places. The raw tables store
them as ``DECIMAL(38, 18)``.

Currencies and units
--------------------
A sub-account's currency is the unit its balance is reported in: an ISO 4217
code (``GBP``), or a non-ISO unit such as a crypto code (``BTC``) for an account
the institution keeps in it. An item's ``currency`` is its own currency, when it
differs or matters (a USD fund in a GBP ISA). ``unit`` is what ``units`` count
when that amount can be valued by a price of the unit alone: an ISO currency
(cash in another currency) or a non-ISO code (crypto, tokens: valued by the
exchange's tickers or by ``market/unit_prices``). Securities (shares, funds)
have no ``unit``: only their provider can price them.

Unpriced items
--------------
An item the provider could not value has ``value = None`` (never 0) and keeps
its ``units``. When it has a ``unit``, the valuation prices it downstream
(``market/unit_prices``, FX); otherwise it stays unvalued. Either way the
snapshot carries an ``unpriced`` warning naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import ClassVar, Literal, get_args

ITEM_TYPES = ("asset", "liability")
ASSET_CLASSES = (
    "cash",
    "equities",
    "fixed_income",
    "crypto",
    "real_estate",
    "commodities",
    "multi_asset",
    "pension",
    "other",
)
AccountType = Literal["depository", "credit", "loan", "investment", "other"]
ACCOUNT_TYPES: tuple[str, ...] = get_args(AccountType)

# Active ISO 4217 codes (national currencies, funds codes, precious metals, SDR).
_ISO_4217_TEXT = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD
    IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
    MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN
    SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES
    VND VUV WST XAF XAG XAU XCD XCG XDR XOF XPD XPF XPT YER ZAR ZMW ZWG
"""
ISO_4217_CODES: frozenset[str] = frozenset(_ISO_4217_TEXT.split())
#: ISO codes that are not money one holds as cash (metals, SDR, fund and index codes).
NON_CASH_ISO_CODES: frozenset[str] = frozenset(
    {"XAU", "XAG", "XPD", "XPT", "XDR", "BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN"}
    | {"UYI", "UYW"}
)
#: Fiat currencies: money one can hold as cash.
FIAT_CODES: frozenset[str] = ISO_4217_CODES - NON_CASH_ISO_CODES

#: A non-ISO unit: upper-case letters and digits, optionally with '.', '-' or '_'
#: (``BTC``, ``USDC``, ``ETH2.S``, ``1INCH``), at most 20 characters.
UNIT_CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,19}$")

#: Most decimal places an amount may carry (the raw tables are DECIMAL(38, 18)).
MAX_SCALE = 18
#: Largest magnitude an amount may have (20 integer digits).
MAX_AMOUNT = Decimal(10) ** 20


def is_iso_currency(code: object) -> bool:
    return isinstance(code, str) and code in ISO_4217_CODES


def is_unit_code(code: object) -> bool:
    """An ISO currency or a non-ISO unit code (``BTC``, ``ETH2.S``)."""
    return isinstance(code, str) and bool(UNIT_CODE_RE.match(code))


def to_decimal(value: object, what: str = "value") -> Decimal:
    """An exact Decimal from a service's number: ``str`` of an int or float, or a
    numeric string (``"0.00160710"``). Raises ``ValueError`` naming ``what``."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int | float | str):
        text = str(value).strip() if isinstance(value, str) else repr(value)
        try:
            d = Decimal(text)
        except ArithmeticError:
            raise ValueError(f"{what}: expected a number, got {value!r}") from None
    else:
        raise ValueError(f"{what}: expected a number, got {type(value).__name__}")
    if not d.is_finite():
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return d + 0  # normalises -0 to 0


def quantize(value: Decimal, places: int = 10) -> Decimal:
    """``value`` rounded half-even to ``places`` decimals, trailing zeros kept off.

    For amounts a provider *computes* (units x price): the service's own amounts
    are passed as they are."""
    q = value.quantize(Decimal(1).scaleb(-places))
    return q.normalize() if q != 0 else Decimal(0)


# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """A fetch failed. ``code`` is stable (stored in raw.fetches.error_code)."""

    code: ClassVar[str] = "provider_error"
    retryable: ClassVar[bool] = False


class AuthenticationFailure(ProviderError):
    """The credentials were refused: retrying will not help, the user must act."""

    code: ClassVar[str] = "authentication_failure"


class TransientError(ProviderError):
    """A failure worth retrying (network, 5xx, maintenance window)."""

    code: ClassVar[str] = "transient"
    retryable: ClassVar[bool] = True

    def __init__(self, msg: str = "", retry_after: float | None = None) -> None:
        super().__init__(msg)
        #: seconds the provider asked us to wait before retrying, when it said so
        self.retry_after = retry_after


class FetchTimeout(TransientError):
    code: ClassVar[str] = "timeout"


class RateLimited(TransientError):
    code: ClassVar[str] = "rate_limited"


class ProviderPayloadError(ProviderError):
    """The provider answered, but with something we cannot use."""

    code: ClassVar[str] = "provider_error"


class CredentialsError(ProviderError):
    """The linked account's credentials are missing from the vault or unreadable."""

    code: ClassVar[str] = "credentials_error"


class OptionsError(ProviderError):
    """The linked account's options are invalid (normally caught when the config loads)."""

    code: ClassVar[str] = "invalid_options"


class UnpricedError(ProviderError):
    """Everything the account holds is unpriced: a value would be a silent 0."""

    code: ClassVar[str] = "unpriced"


class RetiredProvider(ProviderError):
    """The provider no longer exists; the linked account must be removed or frozen."""

    code: ClassVar[str] = "retired_provider"


# --------------------------------------------------------------------------- payload

#: Warning codes a snapshot may carry.
WARNING_CODES = ("reconciliation", "unpriced", "skipped", "upstream")


@dataclass(frozen=True)
class FetchWarning:
    """Something the user should know about a successful fetch.

    ``reconciliation``: the institution's balance and the sum of what it lists
    disagree (the message gives both figures; the listed items are the value).
    ``unpriced``: an item the provider could not value (value None).
    ``skipped``: something the provider reported and finbot left out, on purpose.
    ``upstream``: the service itself reported a problem with part of the account (a
    connection that needs signing in again at the aggregator, an account it could not
    refresh): the message is the service's, sanitised; what it still sent is kept."""

    code: str
    message: str


@dataclass(frozen=True)
class Item:
    """One line of a sub-account. ``value`` is in the sub-account currency;
    liabilities are negative; None when the provider could not value it (see the
    module docstring). ``currency`` is the item's own currency when it differs or
    matters (a USD fund in a GBP ISA); ``symbol`` a ticker, ISIN or crypto code;
    ``unit`` what ``units`` count when a price of the unit values them."""

    name: str
    item_type: str
    asset_class: str
    asset_type: str
    value: Decimal | None
    units: Decimal | None = None
    currency: str | None = None
    symbol: str | None = None
    unit: str | None = None


@dataclass(frozen=True)
class SubAccount:
    id: str
    name: str
    currency: str
    account_type: str
    items: tuple[Item, ...]


#: finbot's kinds of transaction (the provider's own category is kept beside it).
#: deposit / withdrawal: money in or out of the household's accounts (external flows,
#: unless matched as an internal transfer); transfer: a move the provider itself marks
#: as between two accounts; buy / sell: a trade inside an investment account (cash
#: against units); dividend / interest: income; fee / tax: costs; other: the rest.
TransactionKind = Literal[
    "deposit",
    "withdrawal",
    "transfer",
    "buy",
    "sell",
    "dividend",
    "interest",
    "fee",
    "tax",
    "other",
]
TRANSACTION_KINDS: tuple[str, ...] = get_args(TransactionKind)


@dataclass(frozen=True)
class Transaction:
    """One transaction of a sub-account, as the provider reports it.

    ``id`` is the provider's own id, stable for this transaction (with the linked
    account it identifies it: re-reporting it replaces the earlier version).
    ``amount`` is exact, in ``currency`` (the sub-account's currency), inflow
    positive (a salary +, a card payment -, a buy - on the cash side).
    ``posted`` is the date it was booked (None while pending), ``authorized`` the
    date it was made when the provider says so. A posted transaction that replaces
    a pending one names it in ``pending_id`` (the pending one then disappears).
    ``symbol`` and ``units`` for investment transactions (units bought +, sold -).
    ``transfer_id`` is the provider's own link between the two legs of a transfer.
    ``merchant`` and ``category`` as the provider gives them."""

    id: str
    sub_account_id: str
    amount: Decimal
    currency: str
    description: str
    kind: str
    posted: date | None
    pending: bool = False
    authorized: date | None = None
    pending_id: str | None = None
    merchant: str | None = None
    category: str | None = None
    symbol: str | None = None
    units: Decimal | None = None
    transfer_id: str | None = None

    def validate(self, sub_account_ids: frozenset[str] | None = None) -> None:
        """Raise :class:`ProviderPayloadError` naming the transaction and the field."""
        where = f"transaction {self.id!r}"
        if not isinstance(self.id, str) or not self.id.strip() or len(self.id) > 200:
            raise ProviderPayloadError(f"transaction with an empty or over-long id {self.id!r}")
        if sub_account_ids is not None and self.sub_account_id not in sub_account_ids:
            raise ProviderPayloadError(
                f"{where}: sub-account {self.sub_account_id!r} is not in the snapshot"
            )
        _check_amount(self.amount, f"{where}: amount")
        _check_unit(self.currency, f"{where}: currency")
        if self.kind not in TRANSACTION_KINDS:
            raise ProviderPayloadError(
                f"{where}: kind {self.kind!r} is not one of {', '.join(TRANSACTION_KINDS)}"
            )
        if self.pending:
            if self.pending_id is not None:
                raise ProviderPayloadError(f"{where}: a pending transaction cannot replace one")
        elif self.posted is None:
            raise ProviderPayloadError(f"{where}: a posted transaction needs its posted date")
        for name in ("posted", "authorized"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, date) or isinstance(v, datetime)):
                raise ProviderPayloadError(f"{where}: {name} must be a date, got {v!r}")
        if self.units is not None:
            _check_amount(self.units, f"{where}: units")
        if not isinstance(self.description, str):
            raise ProviderPayloadError(f"{where}: description must be text")


@dataclass(frozen=True)
class Snapshot:
    """What one fetch found: the sub-accounts and their items at the hour, warnings,
    and the transactions the provider reported in this fetch (new, changed or
    re-reported ones; ``removed_transaction_ids`` are ids it withdrew).
    ``transactions_cursor``: where the provider's change feed stands after these
    transactions (Plaid's sync cursor), stored with them and handed to the next fetch
    as ``FetchContext.transactions_cursor``."""

    sub_accounts: tuple[SubAccount, ...]
    warnings: tuple[FetchWarning, ...] = field(default=())
    transactions: tuple[Transaction, ...] = field(default=())
    removed_transaction_ids: tuple[str, ...] = field(default=())
    transactions_cursor: str | None = None

    def items(self) -> list[tuple[SubAccount, Item]]:
        return [(sa, it) for sa in self.sub_accounts for it in sa.items]

    def with_warnings(self, *warnings: FetchWarning) -> Snapshot:
        return Snapshot(
            self.sub_accounts,
            (*self.warnings, *warnings),
            self.transactions,
            self.removed_transaction_ids,
            self.transactions_cursor,
        )

    def validate(self) -> None:
        """Raise :class:`ProviderPayloadError` on the first inconsistency found.

        A snapshot without any sub-account is refused: every provider reports at
        least one (an exchange account holding nothing is one sub-account without
        items), so an empty answer is a failed fetch, never a success worth 0."""
        if not self.sub_accounts:
            raise ProviderPayloadError(
                "the answer holds no sub-account: an empty answer is not a snapshot"
            )
        seen_ids: set[str] = set()
        for sa in self.sub_accounts:
            where = f"sub-account {sa.id!r}"
            if not isinstance(sa.id, str) or not sa.id.strip():
                raise ProviderPayloadError("sub-account with an empty id")
            if sa.id in seen_ids:
                raise ProviderPayloadError(f"duplicate sub-account id {sa.id!r}")
            seen_ids.add(sa.id)
            if not isinstance(sa.name, str) or not sa.name.strip():
                raise ProviderPayloadError(f"{where}: empty name")
            _check_unit(sa.currency, f"{where}: currency")
            if sa.account_type not in ACCOUNT_TYPES:
                raise ProviderPayloadError(
                    f"{where}: account_type {sa.account_type!r} is not one of "
                    f"{', '.join(ACCOUNT_TYPES)}"
                )
            seen_names: set[str] = set()
            for item in sa.items:
                _validate_item(item, where, seen_names)
        subs = frozenset(seen_ids)
        seen_txns: set[str] = set()
        for t in self.transactions:
            if not isinstance(t, Transaction):
                raise ProviderPayloadError(f"not a transaction: {t!r}")
            t.validate(subs)
            if t.id in seen_txns:
                raise ProviderPayloadError(f"duplicate transaction id {t.id!r}")
            seen_txns.add(t.id)
        for w in self.warnings:
            if not isinstance(w, FetchWarning) or w.code not in WARNING_CODES:
                raise ProviderPayloadError(f"unknown warning {w!r}")
            if not isinstance(w.message, str) or not w.message.strip():
                raise ProviderPayloadError(f"warning {w.code!r} without a message")


def _check_unit(ccy: object, what: str) -> None:
    if not is_unit_code(ccy):
        raise ProviderPayloadError(
            f"{what} {ccy!r} is not a currency code (ISO 4217 such as GBP, or an upper-case "
            "unit code such as BTC)"
        )


def _check_amount(v: object, what: str) -> None:
    if not isinstance(v, Decimal):
        raise ProviderPayloadError(
            f"{what} is not an exact decimal number (got {type(v).__name__})"
        )
    if not v.is_finite():
        raise ProviderPayloadError(f"{what} is not finite")
    exponent = v.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_SCALE:
        raise ProviderPayloadError(f"{what} {v} has more than {MAX_SCALE} decimal places")
    if abs(v) >= MAX_AMOUNT:
        raise ProviderPayloadError(f"{what} {v} is too large")


def _validate_item(item: Item, where: str, seen_names: set[str]) -> None:
    if not isinstance(item.name, str) or not item.name.strip():
        raise ProviderPayloadError(f"{where}: item with an empty name")
    iw = f"{where}, item {item.name!r}"
    if item.name in seen_names:
        raise ProviderPayloadError(f"{where}: duplicate item name {item.name!r}")
    seen_names.add(item.name)
    if item.item_type not in ITEM_TYPES:
        raise ProviderPayloadError(f"{iw}: item_type {item.item_type!r} is not asset or liability")
    if item.asset_class not in ASSET_CLASSES:
        raise ProviderPayloadError(
            f"{iw}: asset_class {item.asset_class!r} is not one of {', '.join(ASSET_CLASSES)}"
        )
    if not isinstance(item.asset_type, str) or not item.asset_type.strip():
        raise ProviderPayloadError(f"{iw}: empty asset_type")
    if item.value is None:
        if item.units is None:
            raise ProviderPayloadError(f"{iw}: an unpriced item (value None) must carry its units")
    else:
        _check_amount(item.value, f"{iw}: value")
        if item.item_type == "liability" and item.value > 0:
            raise ProviderPayloadError(
                f"{iw}: a liability must have a value <= 0, got {item.value}"
            )
        if item.item_type == "asset" and item.value < 0:
            raise ProviderPayloadError(f"{iw}: an asset must have a value >= 0, got {item.value}")
    if item.units is not None:
        _check_amount(item.units, f"{iw}: units")
    if item.currency is not None:
        _check_unit(item.currency, f"{iw}: currency")
    if item.unit is not None:
        _check_unit(item.unit, f"{iw}: unit")
    if item.symbol is not None and (not isinstance(item.symbol, str) or not item.symbol.strip()):
        raise ProviderPayloadError(f"{iw}: symbol must be None or a non-empty string")
