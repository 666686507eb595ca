"""Plaid answers -> a :class:`~finbot_pipelines.providers.contract.Snapshot` (pure: no I/O, no SDK).

The input is what :mod:`.client` returns: the answers of ``/accounts/balance/get``,
``/investments/holdings/get`` (an :class:`InvestmentsAnswer`: each holding
validated on its own) and ``/liabilities/get``, as plain dicts already checked by
plaid-python against Plaid's schema. Amounts are the SDK's floats, whose ``repr``
is the JSON text for every amount Plaid sends (at most 15 significant digits):
:func:`~finbot_pipelines.providers.contract.to_decimal` turns them into exact
decimals, and every sum below is a Decimal sum.

Accounts
--------
One sub-account per Plaid account (id = ``account_id``), merged by id across the
three answers (the balance answer wins): an account present in several answers
(a credit card in the balance and the liabilities answers) is counted once. Its
type is ``depository``, ``credit``, ``loan``, ``investment`` (``brokerage`` too)
or ``other``; its currency ``balances.iso_currency_code`` (an ISO 4217 code), else
``balances.unofficial_currency_code`` (a non-ISO unit such as ``BTC``, ``DOGE``,
``USDC``; see below).

* depository: one ``Cash`` item, the current balance (``available`` when
  ``current`` is null); a negative balance is an ``Overdraft`` liability.
* credit / loan: one liability item, minus the current balance (the amount
  owed), typed from the liabilities answer or the subtype: ``credit_card``,
  ``student_loan``, ``mortgage`` (asset class ``real_estate``), ``line_of_credit``,
  ``loan``. A
  negative ``current`` (a credit in the user's favour) is an asset.
* investment (and any account the holdings answer lists holdings for): one item
  per holding, see below. When the investments product was not read (not in the
  ``products`` option, or not available for the Item), an investment account is
  one ``Account balance`` item (other/investment_account): what the institution
  reported.
* anything else: one ``Balance`` item (other/other).

Unofficial currencies
---------------------
An account whose ``iso_currency_code`` is null and ``unofficial_currency_code``
is set (Plaid's codes for crypto and other non-ISO units, 3 to 5+ letters) is a
sub-account in that unit. Unless its holdings are listed, its one item is an
asset classed crypto/crypto_currency (never cash) named after the code, with
``units = value =`` the balance and ``unit`` = the code (the valuation converts
it with unit prices). A code that is not an upper-case unit code is an error
naming ``balances.unofficial_currency_code`` and the account.

Holdings
--------
Each holding is one item: units = ``quantity``, value = ``institution_value``,
else ``quantity x institution_price`` (exact, rounded to 10 places), else the
holding is unpriced (``value=None``, units kept; the fetch path adds the
``unpriced`` warning). Classed by security type (equity -> equities/stock, etf ->
equities/etf, mutual fund -> multi_asset/fund, fixed income -> fixed_income/bond,
cash -> cash/cash, cryptocurrency -> crypto/crypto_currency, loan -> other/loan,
derivative -> other/derivative, else other/other); symbol = ticker, else ISIN,
CUSIP or SEDOL; a cryptocurrency's ``unit`` is its ticker (and a cash security
whose ticker is its currency has that currency as ``unit``), so unit prices can
value it if unpriced. A negative holding (a short position) is a liability.

A holding in another currency than its account's goes into a second sub-account
``<account_id>:<CCY>`` named ``<account name> (CCY)``.

A holding that cannot be read (refused by the SDK, its security absent or
unreadable, a bad currency code) is left out with a ``skipped`` warning naming it
and its security; the rest of the account stays. When that leaves an account
with nothing priced, the fetch fails naming the holdings (never a silent 0).

Reconciliation (nothing is invented)
------------------------------------
The listed holdings are the value of an investment account. When its
``balances.current`` differs from the sum of its holdings' values by more than
:data:`ISO_TOLERANCE` (half a cent; :data:`UNIT_TOLERANCE` for a non-ISO unit),
the snapshot carries a ``reconciliation`` warning naming the account and both
figures. An investment account for which the holdings answer lists nothing has
no items (value 0), with that warning when its balance is not 0. The comparison
is skipped when holdings are in several currencies (no FX here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from finbot_pipelines.providers.contract import (
    FetchWarning,
    Item,
    ProviderPayloadError,
    Snapshot,
    SubAccount,
    is_iso_currency,
    is_unit_code,
    quantize,
    to_decimal,
)

BALANCE = "/accounts/balance/get"
HOLDINGS = "/investments/holdings/get"
LIABILITIES = "/liabilities/get"

#: balance and holdings agree within half a cent of an ISO currency...
ISO_TOLERANCE = Decimal("0.005")
#: ... or within half a satoshi of a non-ISO unit
UNIT_TOLERANCE = Decimal("0.000000005")

#: Plaid security type -> (asset_class, asset_type)
SECURITY_TYPES: dict[str, tuple[str, str]] = {
    "equity": ("equities", "stock"),
    "etf": ("equities", "etf"),
    "mutual fund": ("multi_asset", "fund"),
    "fixed income": ("fixed_income", "bond"),
    "cash": ("cash", "cash"),
    "cryptocurrency": ("crypto", "crypto_currency"),
    "loan": ("other", "loan"),
    "derivative": ("other", "derivative"),
    "other": ("other", "other"),
}
ACCOUNT_TYPES: dict[str, str] = {
    "depository": "depository",
    "credit": "credit",
    "loan": "loan",
    "investment": "investment",
    "brokerage": "investment",
}
LIABILITY_KINDS = ("credit", "student", "mortgage", "loan", "line_of_credit")


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class RawHolding:
    """One entry of the holdings answer: validated (``data``) or refused (``problem``)."""

    index: int
    data: Mapping[str, Any] | None
    problem: str | None = None
    account_id: str | None = None
    security_id: str | None = None


@dataclass(frozen=True)
class InvestmentsAnswer:
    """``/investments/holdings/get``, each holding and security validated on its own."""

    accounts: Sequence[Mapping[str, Any]]
    holdings: Sequence[RawHolding]
    #: security_id -> the security
    securities: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: security_id -> why the security could not be read (naming the field)
    bad_securities: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _fail(message: str) -> ProviderPayloadError:
    return ProviderPayloadError(f"Plaid {message}")


def _text(d: Decimal) -> str:
    """A decimal as plain text, without exponent or trailing zeros."""
    return format(d.normalize() if d != 0 else Decimal(0), "f")


def _enum(v: object) -> str:
    return str(getattr(v, "value", v) or "").strip().lower()


def _str(v: object) -> str | None:
    return v.strip() if isinstance(v, str) and v.strip() else None


@dataclass
class _Account:
    data: Mapping[str, Any]
    source: str
    index: int

    @property
    def id(self) -> str:
        return str(self.data["account_id"])

    @property
    def name(self) -> str:
        return _str(self.data.get("name")) or _str(self.data.get("official_name")) or self.id

    @property
    def label(self) -> str:
        return f"{self.name!r} ({self.id})"

    def where(self, path: str) -> str:
        return f"{self.source}: accounts[{self.index}].{path}"

    @property
    def balances(self) -> Mapping[str, Any]:
        bal = self.data.get("balances")
        if not isinstance(bal, Mapping):
            raise _fail(f"{self.where('balances')} is missing (account {self.label})")
        return bal

    def amount(self, key: str) -> Decimal | None:
        v = self.balances.get(key)
        if v is None:
            return None
        try:
            return to_decimal(v, self.where(f"balances.{key}"))
        except ValueError as exc:
            raise _fail(f"{exc} (account {self.label})") from None

    def balance(self, *, allow_available: bool) -> Decimal:
        cur = self.amount("current")
        if cur is None and allow_available:
            cur = self.amount("available")
        if cur is None:
            also = " (and balances.available)" if allow_available else ""
            raise _fail(
                f"{self.where('balances.current')} is null{also}: cannot value account {self.label}"
            )
        return cur


def _account_currency(acc: _Account) -> tuple[str, bool]:
    """The account's currency and whether it is a non-ISO unit."""
    bal = acc.balances
    iso = bal.get("iso_currency_code")
    unofficial = bal.get("unofficial_currency_code")
    if iso is not None:
        if not is_iso_currency(iso):
            raise _fail(
                f"{acc.where('balances.iso_currency_code')}: expected an ISO 4217 currency "
                f"code such as USD, got {iso!r} (account {acc.label})"
            )
        return str(iso), False
    if unofficial is not None:
        if not is_unit_code(unofficial):
            raise _fail(
                f"{acc.where('balances.unofficial_currency_code')}: expected an upper-case "
                f"unit code such as BTC or USDC, got {unofficial!r} (account {acc.label})"
            )
        return str(unofficial), True
    raise _fail(
        f"{acc.where('balances')}: iso_currency_code and unofficial_currency_code are both "
        f"null (account {acc.label})"
    )


def _unique(name: str, symbol: str | None, seen: set[str]) -> str:
    candidate = name
    if candidate in seen and symbol:
        candidate = f"{name} ({symbol})"
    base, n = candidate, 2
    while candidate in seen:
        candidate = f"{base} #{n}"
        n += 1
    seen.add(candidate)
    return candidate


def _unit_item(code: str, value: Decimal) -> Item:
    """The balance of an account kept in a non-ISO unit (BTC): crypto, never cash."""
    return Item(
        name=code,
        item_type="asset" if value >= 0 else "liability",
        asset_class="crypto",
        asset_type="crypto_currency",
        value=value,
        units=value,
        currency=code,
        symbol=code,
        unit=code,
    )


def _liability_item(name: str, kind: str, subtype: str, owed: Decimal) -> Item:
    if kind == "mortgage" or subtype in ("mortgage", "home equity"):
        asset_class, asset_type = "real_estate", "mortgage"
    elif kind == "credit" or subtype in ("credit card", "paypal"):
        asset_class, asset_type = "other", "credit_card"
    elif kind == "student" or subtype == "student":
        asset_class, asset_type = "other", "student_loan"
    elif kind == "line_of_credit" or subtype == "line of credit":
        asset_class, asset_type = "other", "line_of_credit"
    else:
        asset_class, asset_type = "other", "loan"
    value = -owed + 0
    return Item(
        name=name,
        item_type="liability" if value <= 0 else "asset",
        asset_class=asset_class,
        asset_type=asset_type,
        value=value,
    )


# --------------------------------------------------------------------------- holdings


class _Skip(Exception):
    """A holding that cannot be read (the message names the field)."""


@dataclass
class _HoldingOut:
    currency: str
    item: Item


def _holding_currency(h: Mapping[str, Any], sec: Mapping[str, Any], where: str, ccy: str) -> str:
    """The holding's own currency, else its security's, else the account's."""
    sources = ((f"{where}.", h), (f"its security {sec.get('security_id')}: ", sec))
    for prefix, obj in sources:
        iso = obj.get("iso_currency_code")
        if iso is not None:
            if not is_iso_currency(iso):
                raise _Skip(
                    f"{prefix}iso_currency_code: expected an ISO 4217 currency code, got {iso!r}"
                )
            return str(iso)
        unofficial = obj.get("unofficial_currency_code")
        if unofficial is not None:
            if not is_unit_code(unofficial):
                raise _Skip(
                    f"{prefix}unofficial_currency_code: expected an upper-case unit code "
                    f"such as BTC, got {unofficial!r}"
                )
            return str(unofficial)
    return ccy


def _number(v: object, what: str) -> Decimal | None:
    if v is None:
        return None
    try:
        return to_decimal(v, what)
    except ValueError as exc:
        raise _Skip(str(exc)) from None


def _holding(
    raw: RawHolding, answer: InvestmentsAnswer, account_ccy: str, seen: dict[str, set[str]]
) -> _HoldingOut:
    if raw.data is None:
        raise _Skip(raw.problem or f"holdings[{raw.index}] could not be read")
    h = raw.data
    where = f"holdings[{raw.index}]"
    sid = str(h.get("security_id"))
    sec = answer.securities.get(sid)
    if sec is None:
        problem = answer.bad_securities.get(sid)
        if problem is not None:
            raise _Skip(f"its security could not be read: {problem}")
        raise _Skip(f"{where}.security_id {sid!r} is absent from securities")
    ccy = _holding_currency(h, sec, where, account_ccy)
    units = _number(h.get("quantity"), f"{where}.quantity")
    value = _number(h.get("institution_value"), f"{where}.institution_value")
    if value is None:
        price = _number(h.get("institution_price"), f"{where}.institution_price")
        if units is not None and price is not None:
            value = quantize(units * price)
    if value is None and units is None:
        raise _Skip(f"{where}: neither institution_value nor quantity is given")
    sec_type = _enum(sec.get("type"))
    asset_class, asset_type = SECURITY_TYPES.get(sec_type, ("other", "other"))
    ticker = _str(sec.get("ticker_symbol"))
    symbol = ticker or next(
        (s for k in ("isin", "cusip", "sedol") if (s := _str(sec.get(k))) is not None), None
    )
    unit: str | None = None
    if sec_type == "cryptocurrency" and ticker is not None and is_unit_code(ticker):
        unit = ticker
    elif sec_type == "cash" and ticker == ccy:
        unit = ccy
    amount = value if value is not None else units
    name = _unique(_str(sec.get("name")) or symbol or sid, symbol, seen.setdefault(ccy, set()))
    item = Item(
        name=name,
        item_type="liability" if amount is not None and amount < 0 else "asset",
        asset_class=asset_class,
        asset_type=asset_type,
        value=value,
        units=units,
        currency=ccy,
        symbol=symbol,
        unit=unit,
    )
    return _HoldingOut(ccy, item)


def _security_label(raw: RawHolding, answer: InvestmentsAnswer) -> str:
    sid = raw.security_id or "?"
    sec = answer.securities.get(sid)
    name = _str(sec.get("name")) if sec is not None else None
    ticker = _str(sec.get("ticker_symbol")) if sec is not None else None
    extra = ", ".join(repr(x) for x in (name, ticker) if x)
    return f"security {sid}" + (f" {extra}" if extra else "")


def _reconcile(
    acc: _Account,
    ccy: str,
    is_unit: bool,
    items: Sequence[Item],
    *,
    skipped: int,
) -> FetchWarning | None:
    current = acc.amount("current")
    if current is None:
        return None
    listed = sum((it.value for it in items if it.value is not None), Decimal(0))
    tolerance = UNIT_TOLERANCE if is_unit else ISO_TOLERANCE
    if abs(current - listed) <= tolerance:
        return None
    unpriced = sum(1 for it in items if it.value is None)
    notes = []
    if unpriced:
        notes.append(f"{unpriced} unpriced")
    if skipped:
        notes.append(f"{skipped} left out")
    not_counted = f", not counting {' and '.join(notes)}" if notes else ""
    if not items and not skipped:
        what = f"the holdings answer lists no holding for it (0 {ccy})"
    else:
        n = len(items)
        what = (
            f"its {n} listed holding{'s sum' if n != 1 else ' sums'} to {_text(listed)} {ccy}"
            f"{not_counted}"
        )
    return FetchWarning(
        "reconciliation",
        f"Plaid account {acc.label}: the institution's balance is {_text(current)} {ccy} but "
        f"{what}; difference {_text(current - listed)} {ccy}. The holdings are the value: "
        f"{_text(listed)} {ccy}",
    )


def _holding_sub_accounts(
    acc: _Account,
    ccy: str,
    is_unit: bool,
    account_type: str,
    raws: Sequence[RawHolding],
    answer: InvestmentsAnswer,
    priced_units: frozenset[str],
) -> tuple[list[SubAccount], list[FetchWarning]]:
    by_ccy: dict[str, list[Item]] = {ccy: []}
    seen: dict[str, set[str]] = {}
    warnings: list[FetchWarning] = []
    problems: list[str] = []
    for raw in raws:
        try:
            out = _holding(raw, answer, ccy, seen)
        except _Skip as exc:
            label = _security_label(raw, answer)
            problems.append(f"holdings[{raw.index}] ({label}): {exc}")
            warnings.append(
                FetchWarning(
                    "skipped",
                    f"Plaid account {acc.label}: left out holdings[{raw.index}] ({label}): {exc}",
                )
            )
            continue
        by_ccy.setdefault(out.currency, []).append(out.item)
    items = [it for group in by_ccy.values() for it in group]
    if problems and not any(
        it.value is not None
        or (it.unit is not None and (is_iso_currency(it.unit) or it.unit in priced_units))
        for it in items
    ):
        raise _fail(
            f"{HOLDINGS}: account {acc.label}: none of its {len(raws)} holdings can be valued: "
            + "; ".join(problems)
        )
    own = by_ccy.pop(ccy)
    if not by_ccy:
        warning = _reconcile(acc, ccy, is_unit, own, skipped=len(problems))
        if warning is not None:
            warnings.append(warning)
    subs = [SubAccount(acc.id, acc.name, ccy, account_type, tuple(own))]
    for other, group in by_ccy.items():
        subs.append(
            SubAccount(
                f"{acc.id}:{other}", f"{acc.name} ({other})", other, account_type, tuple(group)
            )
        )
    return subs, warnings


# --------------------------------------------------------------------------- accounts


@dataclass
class _Answers:
    accounts: dict[str, _Account] = field(default_factory=dict)
    investments: InvestmentsAnswer | None = None
    #: account_id -> its holdings (investments read), in answer order
    holdings: dict[str, list[RawHolding]] = field(default_factory=dict)
    liability_kind: dict[str, str] = field(default_factory=dict)

    def add_accounts(self, source: str, accounts: Iterable[Mapping[str, Any]]) -> None:
        for i, acc in enumerate(accounts):
            account_id = acc.get("account_id")
            if not isinstance(account_id, str) or not account_id.strip():
                raise _fail(f"{source}: accounts[{i}].account_id: expected a non-empty string")
            self.accounts.setdefault(account_id, _Account(acc, source, i))


def _account_sub_accounts(
    acc: _Account, answers: _Answers, priced_units: frozenset[str]
) -> tuple[list[SubAccount], list[FetchWarning]]:
    ccy, is_unit = _account_currency(acc)
    plaid_type = _enum(acc.data.get("type"))
    subtype = _enum(acc.data.get("subtype"))
    account_type = ACCOUNT_TYPES.get(plaid_type, "other")
    name = acc.name

    def one(item: Item) -> tuple[list[SubAccount], list[FetchWarning]]:
        return [SubAccount(acc.id, name, ccy, account_type, (item,))], []

    raws = answers.holdings.get(acc.id)
    if raws and answers.investments is not None:
        return _holding_sub_accounts(
            acc, ccy, is_unit, account_type, raws, answers.investments, priced_units
        )
    if account_type in ("credit", "loan"):
        owed = acc.balance(allow_available=False)
        kind = answers.liability_kind.get(acc.id, "")
        return one(_liability_item(name, kind, subtype, owed))
    if is_unit:
        return one(_unit_item(ccy, acc.balance(allow_available=True)))
    if account_type == "depository":
        value = acc.balance(allow_available=True)
        if value >= 0:
            return one(Item("Cash", "asset", "cash", "cash", value))
        return one(Item("Overdraft", "liability", "cash", "overdraft", value))
    if account_type == "investment":
        if answers.investments is None:  # not read: the balance is what was reported
            value = acc.balance(allow_available=True)
            return one(
                Item(
                    "Account balance",
                    "asset" if value >= 0 else "liability",
                    "other",
                    "investment_account",
                    value,
                )
            )
        warning = _reconcile(acc, ccy, is_unit, [], skipped=0)
        return [SubAccount(acc.id, name, ccy, account_type, ())], [warning] if warning else []
    value = acc.balance(allow_available=True)
    return one(Item("Balance", "asset" if value >= 0 else "liability", "other", "other", value))


def check_balance_answer(balance: Mapping[str, Any]) -> None:
    """Refuse a balance answer listing no account: Plaid answers NO_ACCOUNTS for an Item
    without accounts, so an empty list is a broken answer, never a balance of 0."""
    if not balance.get("accounts"):
        raise _fail(f"{BALANCE}: the answer lists no account (an Item has at least one)")


def build_snapshot(
    balance: Mapping[str, Any],
    investments: InvestmentsAnswer | None = None,
    liabilities: Mapping[str, Any] | None = None,
    *,
    priced_units: frozenset[str] = frozenset(),
) -> Snapshot:
    """The snapshot of one Item from its answers (``investments`` / ``liabilities`` None:
    the product was not read). ``priced_units``: the non-ISO units the household's unit
    prices can value (an account whose readable holdings are all unpriced fails
    unless they can be valued so)."""
    check_balance_answer(balance)
    answers = _Answers(investments=investments)
    answers.add_accounts(BALANCE, balance["accounts"])
    warnings: list[FetchWarning] = []
    if investments is not None:
        answers.add_accounts(HOLDINGS, investments.accounts)
        for raw in investments.holdings:
            if raw.account_id is not None and raw.account_id in answers.accounts:
                answers.holdings.setdefault(raw.account_id, []).append(raw)
                continue
            why = (
                f"its account {raw.account_id} is not among the answer's accounts"
                if raw.account_id is not None
                else (raw.problem or "it names no account")
            )
            warnings.append(
                FetchWarning(
                    "skipped",
                    f"Plaid {HOLDINGS}: left out holdings[{raw.index}] "
                    f"({_security_label(raw, investments)}): {why}",
                )
            )
    if liabilities is not None:
        answers.add_accounts(LIABILITIES, liabilities.get("accounts") or [])
        groups = liabilities.get("liabilities") or {}
        for kind in LIABILITY_KINDS:
            for entry in groups.get(kind) or []:
                account_id = entry.get("account_id")
                if isinstance(account_id, str) and account_id:
                    answers.liability_kind[account_id] = kind
    subs: list[SubAccount] = []
    for acc in answers.accounts.values():
        acc_subs, acc_warnings = _account_sub_accounts(acc, answers, priced_units)
        subs.extend(acc_subs)
        warnings.extend(acc_warnings)
    snapshot = Snapshot(tuple(subs), tuple(warnings))
    snapshot.validate()
    return snapshot
