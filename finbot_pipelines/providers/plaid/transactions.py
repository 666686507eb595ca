"""Plaid transactions -> finbot :class:`~finbot_pipelines.providers.contract.Transaction` (pure).

The input is what :mod:`.client` returns, already checked by plaid-python against
Plaid's schema: the pages of ``/transactions/sync`` (bank, card and student-loan
accounts) and of ``/investments/transactions/get`` (investment accounts). Amounts
are the SDK's floats, read exactly as their JSON text by
:func:`~finbot_pipelines.providers.contract.to_decimal`.

Signs
-----
Plaid's amounts are **positive for money out** of the account (a card purchase, a
buy of shares) and negative for money in (a salary, a sale, a dividend). finbot's
are inflow positive: every amount is negated (``72.1`` spent at Walmart is
``-72.1``; a ``-8.72`` dividend is ``+8.72``). The currency is the transaction's
``iso_currency_code``, else its ``unofficial_currency_code`` (a non-ISO unit such
as ``BTC``); a transaction with neither is an error naming the field.

Bank and card transactions (``/transactions/sync``)
---------------------------------------------------
Id: Plaid's ``transaction_id``; sub-account: its ``account_id``. ``pending``;
``date`` is the posted date of a posted transaction (a pending one has none);
``authorized_date`` the day it was made; ``pending_transaction_id`` of a posted
transaction names the pending one it replaces (``pending_id``); ``name`` is the
description, ``merchant_name`` the merchant, ``personal_finance_category``
(``detailed``, else ``primary``) the category. The kind follows Plaid's published
personal finance category taxonomy (PFC v1 and v2 names alike):

* ``INCOME_DIVIDENDS`` -> dividend, ``INCOME_INTEREST_EARNED`` -> interest (income);
* ``INCOME_TAX_REFUND`` and ``..._TAX_PAYMENT`` (``GOVERNMENT_AND_NON_PROFIT_TAX_PAYMENT``)
  -> tax (a cost, a refund being a negative one);
* ``BANK_FEES`` (ATM, overdraft, foreign transaction, interest charged...) -> fee;
* ``TRANSFER_IN`` / ``TRANSFER_OUT`` -> transfer, and ``LOAN_PAYMENTS`` (a card,
  a mortgage or a student loan paid from the account) -> transfer too: money moved
  to a debt of the household's own (internal when that account is linked, else an
  external flow, as any unmatched transfer);
* anything else (wages, shopping, rent, other income) -> deposit when money comes
  in, withdrawal when it goes out (other for an amount of 0).

``removed`` lists the ids Plaid withdrew: they become ``removed_transaction_ids``
(a pending transaction that posted is removed and its posted one added, naming it).

Investment transactions (``/investments/transactions/get``)
-----------------------------------------------------------
Id: Plaid's ``investment_transaction_id``; sub-account: its ``account_id`` (or
``<account_id>:<CCY>`` when the transaction is in another currency and the account
has holdings in it, see :mod:`.mapping`). Posted on ``date`` (never pending),
authorised on the day of ``transaction_datetime`` when given. ``quantity`` is
``units`` (Plaid: positive bought, negative sold), the security's ticker, else
ISIN, CUSIP or SEDOL, is ``symbol`` (from the answer's ``securities``); the
category is ``type/subtype`` (``cash/dividend``). ``fees`` are part of ``amount``
("the complete value of the transaction"), so they are named in the description
(``fees 7.99 USD``), never counted again. Kinds, by Plaid's type and subtype:

* ``buy`` -> buy, ``sell`` -> sell (a trade inside the account);
* ``buy/contribution`` -> deposit of the amount bought: Plaid says that "for a
  simultaneous cash contribution and purchase of a security, the portion ...
  representing the purchase takes precedence, and the amount is represented as
  positive", but for the household it is new money coming in (what a 401k
  statement calls a contribution); likewise ``sell/distribution`` ("outflow of
  assets from a tax-advantaged account") -> withdrawal of the amount sold;
* dividends (``dividend``, ``qualified dividend``, ``non-qualified dividend``) and
  capital gain distributions (``long-term`` / ``short-term capital gain``,
  ``unqualified gain``) -> dividend; ``interest``, ``interest receivable`` -> interest;
* ``tax``, ``tax withheld``, ``non-resident tax`` -> tax; every ``... fee`` and
  ``margin expense`` -> fee;
* ``contribution``, ``deposit``, ``withdrawal``, ``loan payment``, ``pending credit``,
  ``pending debit`` -> deposit / withdrawal by sign; ``transfer``, ``send``,
  ``request`` -> transfer;
* position changes without cash (``split``, ``merger``, ``spin off``, ``stock
  distribution``, ``exercise``, ``expire``, ``assignment``, ``adjustment``, ``trade``,
  ``rebalance``, ``return of principal``) and ``cancel`` -> other.

Accounts not in the snapshot
----------------------------
``/accounts/balance/get`` lists every account of the Item (the holdings and
liabilities answers add theirs, see :mod:`.mapping`), and a transaction belongs to
a sub-account of the snapshot. A transaction whose account none of those answers
lists (an account the user unticked at Plaid since) is left out with a ``skipped``
warning naming it, its account and its amount: failing instead would block the
Item's balances and its other transactions at every fetch, since the same change
comes back until the cursor moves on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from finbot_pipelines.providers.contract import (
    FetchWarning,
    ProviderPayloadError,
    Transaction,
    is_unit_code,
    to_decimal,
)
from finbot_pipelines.providers.http import Masker

SYNC = "/transactions/sync"
INVESTMENT_TRANSACTIONS = "/investments/transactions/get"

#: longest description, merchant and category kept (Plaid's names are short)
_MAX_TEXT = 500

#: investment subtypes -> kind (after buy/sell and the special cases, see the module)
INVESTMENT_SUBTYPE_KINDS: dict[str, str] = {
    "dividend": "dividend",
    "qualified dividend": "dividend",
    "non-qualified dividend": "dividend",
    "long-term capital gain": "dividend",
    "short-term capital gain": "dividend",
    "unqualified gain": "dividend",
    "interest": "interest",
    "interest receivable": "interest",
    "tax": "tax",
    "tax withheld": "tax",
    "non-resident tax": "tax",
    "account fee": "fee",
    "fund fee": "fee",
    "legal fee": "fee",
    "management fee": "fee",
    "margin expense": "fee",
    "miscellaneous fee": "fee",
    "transfer fee": "fee",
    "trust fee": "fee",
    "transfer": "transfer",
    "send": "transfer",
    "request": "transfer",
    "split": "other",
    "merger": "other",
    "spin off": "other",
    "stock distribution": "other",
    "exercise": "other",
    "expire": "other",
    "assignment": "other",
    "adjustment": "other",
    "trade": "other",
    "rebalance": "other",
    "return of principal": "other",
}


@dataclass(frozen=True)
class SyncResult:
    """A whole ``/transactions/sync`` pagination, its pages folded together in order:
    the latest version of every added or modified transaction, the removed ids, and
    the final ``next_cursor`` ("" when Plaid has no transactions for the Item yet)."""

    transactions: Mapping[str, Mapping[str, Any]]
    removed: Sequence[str]
    cursor: str
    status: str | None = None
    pages: int = 1


class SyncFolder:
    """Folds the pages of one pagination: a later page's version of an id wins, an id
    removed after being added is only removed, one re-added after removal is kept."""

    def __init__(self) -> None:
        self.transactions: dict[str, Mapping[str, Any]] = {}
        self.removed: dict[str, None] = {}
        self.pages = 0

    def add(self, page: Mapping[str, Any]) -> None:
        self.pages += 1
        for key in ("added", "modified"):
            for i, t in enumerate(page.get(key) or []):
                tid = _str(t.get("transaction_id"))
                if tid is None:
                    raise _fail(SYNC, f"{key}[{i}].transaction_id: expected a non-empty string")
                self.removed.pop(tid, None)
                self.transactions.pop(tid, None)  # the newest version goes last
                self.transactions[tid] = t
        for i, r in enumerate(page.get("removed") or []):
            tid = _str(r.get("transaction_id"))
            if tid is None:
                raise _fail(SYNC, f"removed[{i}].transaction_id: expected a non-empty string")
            self.transactions.pop(tid, None)
            self.removed[tid] = None

    def result(self, cursor: str, status: str | None) -> SyncResult:
        return SyncResult(dict(self.transactions), tuple(self.removed), cursor, status, self.pages)


@dataclass(frozen=True)
class InvestmentTransactionsPage:
    """One page of ``/investments/transactions/get`` (securities validated one by one)."""

    accounts: Sequence[Mapping[str, Any]]
    transactions: Sequence[Mapping[str, Any]]
    total: int
    #: security_id -> the security (the ones the SDK could read)
    securities: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class SubAccountRef:
    """What the transactions need of a sub-account of the snapshot."""

    id: str
    currency: str


@dataclass
class Mapped:
    transactions: list[Transaction] = field(default_factory=list)
    warnings: list[FetchWarning] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def _fail(endpoint: str, message: str) -> ProviderPayloadError:
    return ProviderPayloadError(f"Plaid {endpoint}: malformed answer: {message}")


def _str(v: object) -> str | None:
    return v.strip() if isinstance(v, str) and v.strip() else None


def _enum(v: object) -> str:
    return str(getattr(v, "value", v) or "").strip().lower()


def _day(v: object) -> date | None:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, str) and v.strip():
        return date.fromisoformat(v.strip()[:10])
    return None


def _plain(d: Decimal) -> str:
    return format(d.normalize() if d != 0 else Decimal(0), "f")


def _clip(text: str | None, mask: Masker) -> str | None:
    if text is None:
        return None
    out = mask(text)
    return out if len(out) <= _MAX_TEXT else out[: _MAX_TEXT - 3] + "..."


def _amount(t: Mapping[str, Any], endpoint: str, where: str, key: str = "amount") -> Decimal:
    try:
        return to_decimal(t.get(key), f"{where}.{key}")
    except ValueError as exc:
        raise _fail(endpoint, str(exc)) from None


def _currency(t: Mapping[str, Any], endpoint: str, where: str) -> str:
    iso = t.get("iso_currency_code")
    unofficial = t.get("unofficial_currency_code")
    for key, code in (("iso_currency_code", iso), ("unofficial_currency_code", unofficial)):
        if code is None:
            continue
        if not is_unit_code(code):
            raise _fail(
                endpoint, f"{where}.{key}: expected a currency code such as USD, got {code!r}"
            )
        return str(code)
    raise _fail(endpoint, f"{where}: iso_currency_code and unofficial_currency_code are both null")


def sign_kind(amount: Decimal) -> str:
    """deposit for money in, withdrawal for money out, other for nothing."""
    if amount > 0:
        return "deposit"
    return "withdrawal" if amount < 0 else "other"


def category_kind(primary: str | None, detailed: str | None, amount: Decimal) -> str:
    """The finbot kind of a bank or card transaction from its PFC (see the module)."""
    p = (primary or "").upper()
    d = (detailed or "").upper()
    if d.startswith("INCOME_DIVIDEND"):
        return "dividend"
    if d.startswith("INCOME_INTEREST"):
        return "interest"
    if d == "INCOME_TAX_REFUND" or d.endswith("_TAX_PAYMENT"):
        return "tax"
    if p == "BANK_FEES" or d.startswith("BANK_FEES"):
        return "fee"
    if p in ("TRANSFER_IN", "TRANSFER_OUT", "LOAN_PAYMENTS"):
        return "transfer"
    return sign_kind(amount)


def investment_kind(kind_type: str, subtype: str, amount: Decimal) -> tuple[str, Decimal]:
    """The finbot kind of an investment transaction and its inflow-positive amount
    (``amount`` already negated; see the module for the two special cases)."""
    if kind_type == "cancel":
        return "other", amount
    if subtype == "contribution" and kind_type == "buy":
        return "deposit", abs(amount)
    if subtype == "distribution" and kind_type == "sell":
        return "withdrawal", -abs(amount)
    if kind_type == "buy":
        return "buy", amount
    if kind_type == "sell":
        return "sell", amount
    kind = INVESTMENT_SUBTYPE_KINDS.get(subtype)
    if kind is not None:
        return kind, amount
    if kind_type == "transfer":
        return ("transfer" if amount != 0 else "other"), amount
    if kind_type == "fee" and amount < 0:
        return "fee", amount
    return sign_kind(amount), amount


def _sub_account(
    account_id: str, currency: str, subs: Mapping[str, SubAccountRef]
) -> SubAccountRef | None:
    """The sub-account of ``account_id`` a transaction in ``currency`` belongs to."""
    own = subs.get(account_id)
    if own is None:
        return None
    if currency != own.currency:
        other = subs.get(f"{account_id}:{currency}")
        if other is not None:
            return other
    return own


def _left_out(endpoint: str, tid: str, account_id: str, amount: Decimal, ccy: str) -> FetchWarning:
    return FetchWarning(
        "skipped",
        f"Plaid {endpoint}: left out transaction {tid} ({_plain(amount)} {ccy}): its account "
        f"{account_id} is not among the Item's accounts in this fetch's answers",
    )


# --------------------------------------------------------------------------- bank and card


def sync_transactions(
    transactions: Iterable[Mapping[str, Any]], subs: Mapping[str, SubAccountRef], mask: Masker
) -> Mapped:
    """The transactions of a folded ``/transactions/sync`` pagination."""
    out = Mapped()
    for t in transactions:
        tid = str(t.get("transaction_id"))
        where = f"transaction {tid}"
        account_id = _str(t.get("account_id"))
        if account_id is None:
            raise _fail(SYNC, f"{where}.account_id: expected a non-empty string")
        amount = -_amount(t, SYNC, where)
        currency = _currency(t, SYNC, where)
        sub = _sub_account(account_id, currency, subs)
        if sub is None:
            out.warnings.append(_left_out(SYNC, tid, account_id, amount, currency))
            continue
        pending = t.get("pending") is True
        posted = None if pending else _day(t.get("date"))
        if not pending and posted is None:
            raise _fail(SYNC, f"{where}.date: a posted transaction needs its date")
        pfc = t.get("personal_finance_category")
        primary = _str(pfc.get("primary")) if isinstance(pfc, Mapping) else None
        detailed = _str(pfc.get("detailed")) if isinstance(pfc, Mapping) else None
        out.transactions.append(
            Transaction(
                id=tid,
                sub_account_id=sub.id,
                amount=amount,
                currency=currency,
                description=_clip(_str(t.get("name")) or _str(t.get("merchant_name")), mask) or "",
                kind=category_kind(primary, detailed, amount),
                posted=posted,
                pending=pending,
                authorized=_day(t.get("authorized_date")),
                pending_id=None if pending else _str(t.get("pending_transaction_id")),
                merchant=_clip(_str(t.get("merchant_name")), mask),
                category=_clip(detailed or primary, mask),
            )
        )
    return out


# --------------------------------------------------------------------------- investments


def _symbol(security: Mapping[str, Any] | None) -> str | None:
    if security is None:
        return None
    for key in ("ticker_symbol", "isin", "cusip", "sedol"):
        s = _str(security.get(key))
        if s is not None:
            return s
    return None


def investment_transactions(
    transactions: Iterable[Mapping[str, Any]],
    securities: Mapping[str, Mapping[str, Any]],
    subs: Mapping[str, SubAccountRef],
    mask: Masker,
) -> Mapped:
    """The transactions of every page of ``/investments/transactions/get`` (an id listed
    twice, as pages may shift, is kept once: its last version)."""
    out = Mapped()
    seen: dict[str, Transaction] = {}
    for t in transactions:
        tid = _str(t.get("investment_transaction_id"))
        if tid is None:
            raise _fail(
                INVESTMENT_TRANSACTIONS, "investment_transaction_id: expected a non-empty string"
            )
        where = f"investment transaction {tid}"
        account_id = _str(t.get("account_id"))
        if account_id is None:
            raise _fail(INVESTMENT_TRANSACTIONS, f"{where}.account_id: expected a non-empty string")
        plaid_amount = _amount(t, INVESTMENT_TRANSACTIONS, where)
        currency = _currency(t, INVESTMENT_TRANSACTIONS, where)
        kind_type, subtype = _enum(t.get("type")), _enum(t.get("subtype"))
        kind, amount = investment_kind(kind_type, subtype, -plaid_amount)
        sub = _sub_account(account_id, currency, subs)
        if sub is None:
            out.warnings.append(
                _left_out(INVESTMENT_TRANSACTIONS, tid, account_id, amount, currency)
            )
            continue
        posted = _day(t.get("date"))
        if posted is None:
            raise _fail(INVESTMENT_TRANSACTIONS, f"{where}.date: expected a date")
        quantity = _amount(t, INVESTMENT_TRANSACTIONS, where, "quantity")
        fees = None if t.get("fees") is None else _amount(t, INVESTMENT_TRANSACTIONS, where, "fees")
        description = _str(t.get("name")) or f"{kind_type} {subtype}".strip()
        if fees:
            description += f" (fees {_plain(fees)} {currency})"
        security_id = _str(t.get("security_id"))
        seen[tid] = Transaction(
            id=tid,
            sub_account_id=sub.id,
            amount=amount,
            currency=currency,
            description=_clip(description, mask) or "",
            kind=kind,
            posted=posted,
            authorized=_day(t.get("transaction_datetime")),
            category=_clip("/".join(x for x in (kind_type, subtype) if x) or None, mask),
            symbol=_clip(_symbol(securities.get(security_id) if security_id else None), mask),
            units=quantity if quantity != 0 else None,
        )
    out.transactions = list(seen.values())
    return out
