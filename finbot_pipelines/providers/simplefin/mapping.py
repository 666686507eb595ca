"""A SimpleFIN Account Set -> a finbot :class:`~..contract.Snapshot`.

The rules, and the part of the protocol (https://www.simplefin.org/protocol.html and
its v2 draft) each one rests on:

Errors
    The v1 form is ``errors``, "strings suitable for displaying to a user"; the v2
    form is ``errlist``, objects ``{code, msg, conn_id?, account_id?}`` (the draft's
    own sample writes ``message``: both are read) with codes ``gen.`` (general),
    ``gen.auth``, ``gen.api``, ``con.``/``con.auth`` (one connection), ``act.``/
    ``act.failed``/``act.missingdata`` (one account); "consumers ... should handle
    unknown subcodes by falling back to treating the error like a naked ``prefix.``".
    ``gen.auth`` fails the fetch (:class:`AuthenticationFailure`); every other error
    is an ``upstream`` warning (sanitised, masked) and the accounts sent are kept;
    an answer with errors and no account at all fails (``provider_error``, quoting
    them): an account set without accounts is never a snapshot worth 0.
Institutions
    v1 accounts carry ``org`` (``name`` and/or ``domain``); v2 accounts a ``conn_id``
    into ``connections`` (``name``, ``org_id``, ...) and sometimes ``conn_name``.
    The institution names the sub-account: ``"Savings (My Bank)"``.
Sub-accounts
    One per SimpleFIN account, id = the SimpleFIN account id (unique within a
    connection; an id repeated in one answer fails the fetch rather than merging two
    accounts). The protocol has no account type, so it is guessed: ``investment``
    when it lists holdings, else by words of its name (credit card words ->
    ``credit``, loan / mortgage words -> ``loan``, brokerage / retirement words ->
    ``investment``), else ``credit`` when the balance is negative, else
    ``depository``. Currency: an ISO 4217 code as is; a "custom currency" (a URL
    naming e.g. air miles) is skipped with a ``skipped`` warning (finbot cannot value
    it); another code (``BTC``) is kept as the account's unit.
Items
    ``balance`` ("the balance of the account as of balance-date", a numeric string,
    read exactly) is one item, an asset when >= 0, a liability when < 0 (a card or a
    loan owed: ``credit_card``, ``loan``, ``mortgage``; an overdrawn current account:
    ``overdraft``). Holdings (a SimpleFIN Bridge extension, not in the protocol:
    ``{id, currency, description, market_value, shares, symbol, cost_basis, ...}``)
    are the account's value when present: one item per holding (market_value, shares
    as units, symbol), plus ``Cash`` for ``balance - sum(market_value)`` when that is
    positive (the Bridge's balance of a brokerage account is its total); a negative
    remainder is a ``reconciliation`` warning giving both figures (finbot never
    invents a debt). A holding in another currency than its account is kept as
    that many units of that currency (``unit``), valued by FX.
Transactions
    id = ``{account id}:{transaction id}``: the protocol says "an organization may
    reuse transaction ids for different accounts", and a snapshot's ids must be
    unique. ``posted`` (Unix seconds, "if the transaction is pending, this may be
    0") gives the posted date (UTC); ``pending: true`` or ``posted`` 0 makes it
    pending (no posted date); ``transacted_at`` is the authorised date. ``amount``
    is exact, "positive numbers indicate money being deposited into the account"
    (finbot's sign too). ``payee`` (a Bridge extension) is the merchant,
    ``extra.category`` the category. Kind: ``interest`` / ``dividend`` when the
    description says so and money came in, ``fee`` when it says fee or charge and
    money went out, else ``deposit`` (> 0), ``withdrawal`` (< 0), ``other`` (0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from finbot_pipelines.providers.contract import (
    ISO_4217_CODES,
    UNIT_CODE_RE,
    AuthenticationFailure,
    FetchWarning,
    Item,
    ProviderPayloadError,
    Snapshot,
    SubAccount,
    Transaction,
    quantize,
    to_decimal,
)
from finbot_pipelines.providers.http import Masker, body_text, shorten

_CREDIT_WORDS = re.compile(
    r"(?i)\b(credit|card|visa|mastercard|master card|amex|american express|discover)\b"
)
_MORTGAGE_WORDS = re.compile(r"(?i)\b(mortgage|heloc|home equity)\b")
_LOAN_WORDS = re.compile(r"(?i)\b(loan|lending|auto ?loan|student|line of credit)\b")
_INVEST_WORDS = re.compile(
    r"(?i)\b(brokerage|invest\w*|401\(?k\)?|403\(?b\)?|ira|roth|retirement|pension|"
    r"stocks?|securities|trading)\b"
)
_INTEREST_WORDS = re.compile(r"(?i)\binterest\b")
_DIVIDEND_WORDS = re.compile(r"(?i)\b(dividends?|div)\b")
_FEE_WORDS = re.compile(r"(?i)\b(fees?|service charge|monthly charge|overdraft charge)\b")
#: unix seconds accepted for a date: 1970 .. 2200 (beyond is a broken answer)
_MAX_EPOCH = 7_258_118_400


@dataclass(frozen=True)
class Notice:
    """One error the server reported: its code (``gen.`` ... ``act.``), sanitised message
    and what it is about."""

    code: str
    message: str
    conn_id: str | None = None
    account_id: str | None = None

    @property
    def prefix(self) -> str:
        """``gen.``, ``con.`` or ``act.``; an unknown prefix reads as a general error."""
        prefix = self.code.split(".", 1)[0] + "."
        return prefix if prefix in ("gen.", "con.", "act.") else "gen."


def _text(value: object, mask: Masker, limit: int = 200) -> str:
    return shorten(mask(body_text(str(value))), limit)


def _opt_str(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _object_with_id(value: object, where: str) -> tuple[Mapping[str, Any], str]:
    """An object of the answer and its non-empty ``id`` (else the error naming ``where``)."""
    if not isinstance(value, Mapping):
        raise ProviderPayloadError(f"{where}: not an object")
    oid = _opt_str(value.get("id"))
    if oid is None:
        raise ProviderPayloadError(f"{where}: id is missing or empty")
    return value, oid


def notices(body: Mapping[str, Any], mask: Masker) -> list[Notice]:
    """The errors of an Account Set, both forms (``errors`` strings, ``errlist`` objects)."""
    out: list[Notice] = []
    errlist = body.get("errlist")
    if errlist is not None and not isinstance(errlist, list):
        raise ProviderPayloadError("the answer's errlist is not a list")
    for i, err in enumerate(errlist or []):
        if not isinstance(err, Mapping):
            raise ProviderPayloadError(f"errlist[{i}] is not an object")
        code = _opt_str(err.get("code")) or "gen."
        message = err.get("msg", err.get("message"))
        out.append(
            Notice(
                code=code if re.fullmatch(r"[a-z]+\.[\w.-]*", code) else "gen.",
                message=_text(message if message is not None else "(no message)", mask),
                conn_id=_opt_str(err.get("conn_id")),
                account_id=_opt_str(err.get("account_id")),
            )
        )
    errors = body.get("errors")
    if errors is not None and not isinstance(errors, list):
        raise ProviderPayloadError("the answer's errors is not a list")
    known = {n.message for n in out}
    for e in errors or []:
        message = _text(e, mask)
        if message and message not in known:  # a v2 server may send both forms
            out.append(Notice("gen.", message))
    return out


def _institution(
    account: Mapping[str, Any], connections: Mapping[str, Mapping[str, Any]]
) -> str | None:
    org = account.get("org")
    if isinstance(org, Mapping):
        return _opt_str(org.get("name")) or _opt_str(org.get("domain"))
    conn = connections.get(str(account.get("conn_id")))
    if conn is not None:
        name = _opt_str(conn.get("name")) or _opt_str(conn.get("org_name"))
        if name:
            return name
    return _opt_str(account.get("conn_name"))


def _connections(body: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conns = body.get("connections")
    if conns is None:
        return {}
    if not isinstance(conns, list):
        raise ProviderPayloadError("the answer's connections is not a list")
    out: dict[str, Mapping[str, Any]] = {}
    for c in conns:
        if isinstance(c, Mapping) and _opt_str(c.get("conn_id")):
            out[str(c["conn_id"]).strip()] = c
    return out


def _decimal(value: object, where: str) -> Decimal:
    """An exact amount from a numeric string (or a JSON number read as Decimal)."""
    if isinstance(value, float):  # never through a float: the client parses Decimals
        raise ProviderPayloadError(f"{where}: expected a numeric string, got a float")
    try:
        return to_decimal(value, where)
    except ValueError as exc:
        raise ProviderPayloadError(str(exc)) from None


def _epoch(value: object, where: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise ProviderPayloadError(f"{where}: expected a Unix timestamp, got {value!r}")
    try:
        d = Decimal(str(value).strip())
    except ArithmeticError:
        raise ProviderPayloadError(f"{where}: expected a Unix timestamp, got {value!r}") from None
    if not d.is_finite() or d < 0 or d > _MAX_EPOCH or (d == 0 and not allow_zero):
        raise ProviderPayloadError(f"{where}: expected a Unix timestamp, got {value!r}")
    return int(d)


def _day(seconds: int) -> date:
    return datetime.fromtimestamp(seconds, UTC).date()


def account_type(name: str, balance: Decimal, has_holdings: bool) -> str:
    """The guessed type of a SimpleFIN account (the protocol has none): see the module."""
    if has_holdings:
        return "investment"
    if _MORTGAGE_WORDS.search(name) or _LOAN_WORDS.search(name):
        return "loan"
    if _CREDIT_WORDS.search(name):
        return "credit"
    if _INVEST_WORDS.search(name):
        return "investment"
    return "credit" if balance < 0 else "depository"


def _balance_item(name: str, kind: str, balance: Decimal, crypto: bool) -> Item:
    """The balance as one item (``crypto``: the account is kept in a non-ISO unit)."""
    if crypto:
        item_type = "asset" if balance >= 0 else "liability"
        return Item("Balance", item_type, "crypto", "crypto_currency", balance)
    if balance >= 0:
        return Item("Balance", "asset", "cash", "cash", balance)
    if kind == "loan":
        asset_class, asset_type = (
            ("real_estate", "mortgage") if _MORTGAGE_WORDS.search(name) else ("other", "loan")
        )
    elif kind == "credit":
        asset_class, asset_type = "other", "credit_card"
    else:
        asset_class, asset_type = "cash", "overdraft"
    return Item("Balance", "liability", asset_class, asset_type, balance)


def _holding_items(
    holdings: Sequence[Any], currency: str, where: str, mask: Masker
) -> tuple[list[Item], Decimal]:
    """The holdings' items and the sum of the values in the account's currency."""
    items: list[Item] = []
    names: set[str] = set()
    total = Decimal(0)
    for i, h in enumerate(holdings):
        hw = f"{where}, holdings[{i}]"
        if not isinstance(h, Mapping):
            raise ProviderPayloadError(f"{hw}: not an object")
        if "market_value" not in h:
            raise ProviderPayloadError(f"{hw}: market_value is missing")
        value = _decimal(h.get("market_value"), f"{hw}: market_value")
        shares = h.get("shares")
        units = None if shares in (None, "") else _decimal(shares, f"{hw}: shares")
        symbol = _opt_str(h.get("symbol"))
        symbol = _text(symbol, mask, 40) if symbol else None
        label = _opt_str(h.get("description")) or symbol or _opt_str(h.get("id")) or f"Holding {i}"
        name = _text(label, mask, 120)
        if name in names:
            name = f"{name} ({symbol or _opt_str(h.get('id')) or i})"
        while name in names:
            name += f" #{i}"
        names.add(name)
        own = _opt_str(h.get("currency"))
        own = own.upper() if own else None
        if value < 0:
            raise ProviderPayloadError(f"{hw}: market_value {value} is negative")
        if own and own != currency and own in ISO_4217_CODES:
            # valued in its own currency by FX: value None, its amount as units of it
            items.append(Item(name, "asset", "other", "security", None, units=value,
                              currency=own, symbol=symbol, unit=own))  # fmt: skip
            continue
        items.append(Item(name, "asset", "other", "security", value, units=units, symbol=symbol))
        total += value
    return items, total


def _kind(amount: Decimal, description: str) -> str:
    if amount > 0 and _INTEREST_WORDS.search(description):
        return "interest"
    if amount > 0 and _DIVIDEND_WORDS.search(description):
        return "dividend"
    if amount < 0 and _FEE_WORDS.search(description):
        return "fee"
    if amount > 0:
        return "deposit"
    return "withdrawal" if amount < 0 else "other"


def _transactions(
    raw: object, sub_id: str, currency: str, where: str, mask: Masker
) -> list[Transaction]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ProviderPayloadError(f"{where}: transactions is not a list")
    out: list[Transaction] = []
    for i, entry in enumerate(raw):
        t, tid = _object_with_id(entry, f"{where}, transactions[{i}]")
        tw = f"{where}, transaction {tid!r}"
        if "amount" not in t:
            raise ProviderPayloadError(f"{tw}: amount is missing")
        amount = _decimal(t.get("amount"), f"{tw}: amount")
        posted_raw = t.get("posted")
        pending = t.get("pending") is True
        posted: date | None = None
        if posted_raw is None and not pending:
            raise ProviderPayloadError(f"{tw}: posted is missing")
        if posted_raw is not None:
            seconds = _epoch(posted_raw, f"{tw}: posted", allow_zero=True)
            if seconds == 0:
                pending = True  # "If the transaction is pending, this may be 0"
            elif not pending:
                posted = _day(seconds)
        authorized = None
        if t.get("transacted_at") not in (None, 0, "0"):
            authorized = _day(_epoch(t.get("transacted_at"), f"{tw}: transacted_at"))
        description = _text(t.get("description") or "", mask, 500)
        memo = _opt_str(t.get("memo"))
        if memo and memo not in description:
            description = _text(f"{description} — {memo}" if description else memo, mask, 500)
        extra = t.get("extra")
        category = _opt_str(extra.get("category")) if isinstance(extra, Mapping) else None
        payee = _opt_str(t.get("payee"))
        out.append(
            Transaction(
                id=f"{sub_id}:{tid}",
                sub_account_id=sub_id,
                amount=amount,
                currency=currency,
                description=description,
                kind=_kind(amount, description),
                posted=posted,
                pending=pending,
                authorized=authorized,
                merchant=_text(payee, mask, 200) if payee else None,
                category=_text(category, mask, 100) if category else None,
            )
        )
    return out


def build_snapshot(body: Mapping[str, Any], mask: Masker) -> Snapshot:
    """The snapshot of an Account Set (see the module for the rules)."""
    found = notices(body, mask)
    auth = [n for n in found if n.code.startswith("gen.auth")]
    if auth:
        raise AuthenticationFailure(
            "the SimpleFIN server refused the access: "
            + "; ".join(f"{n.code} {n.message}" for n in auth)
        )
    accounts = body.get("accounts")
    if not isinstance(accounts, list):
        raise ProviderPayloadError(
            "the answer has no accounts list"
            + (": " + "; ".join(n.message for n in found) if found else "")
        )
    if not accounts and found:
        raise ProviderPayloadError(
            "the SimpleFIN server sent no account, only errors: "
            + "; ".join(f"{n.code} {n.message}" for n in found)
        )
    connections = _connections(body)
    subs: list[SubAccount] = []
    txns: list[Transaction] = []
    warnings: list[FetchWarning] = []
    names: dict[str, str] = {}
    for i, entry in enumerate(accounts):
        a, sub_id = _object_with_id(entry, f"accounts[{i}]")
        where = f"account {sub_id!r}"
        if sub_id in names:
            raise ProviderPayloadError(
                f"{where} is listed twice (SimpleFIN account ids are unique within a "
                "connection; finbot needs them unique within an access URL)"
            )
        name = _opt_str(a.get("name"))
        if name is None:
            raise ProviderPayloadError(f"{where}: name is missing or empty")
        institution = _institution(a, connections)
        label = _text(f"{name} ({institution})" if institution else name, mask, 200)
        names[sub_id] = label
        currency_raw = _opt_str(a.get("currency"))
        if currency_raw is None:
            raise ProviderPayloadError(f"{where}: currency is missing or empty")
        if "balance" not in a:
            raise ProviderPayloadError(f"{where}: balance is missing")
        balance = _decimal(a.get("balance"), f"{where}: balance")
        if "balance-date" not in a:
            raise ProviderPayloadError(f"{where}: balance-date is missing")
        _epoch(a.get("balance-date"), f"{where}: balance-date")
        if "://" in currency_raw:
            warnings.append(
                FetchWarning(
                    "skipped",
                    f"{label} ({sub_id}) is kept in a custom currency (a SimpleFIN currency "
                    "URL, e.g. reward points): finbot cannot value it, so it is left out",
                )
            )
            continue
        currency = currency_raw.upper()
        if not UNIT_CODE_RE.match(currency):
            raise ProviderPayloadError(
                f"{where}: currency {_text(currency_raw, mask, 40)!r} is neither an ISO 4217 "
                "code nor a custom currency URL"
            )
        holdings = a.get("holdings")
        if holdings is not None and not isinstance(holdings, list):
            raise ProviderPayloadError(f"{where}: holdings is not a list")
        kind = account_type(name, balance, bool(holdings))
        if holdings:
            items, total = _holding_items(holdings, currency, where, mask)
            rest = quantize(balance - total, 18)
            if rest > 0:
                name_cash = "Cash"
                while any(it.name == name_cash for it in items):
                    name_cash += " (balance)"
                items.append(Item(name_cash, "asset", "cash", "cash", rest))
            elif rest < 0:
                warnings.append(
                    FetchWarning(
                        "reconciliation",
                        f"{label} ({sub_id}): the balance is {balance} {currency}, the "
                        f"holdings sum to {total} {currency} (more than the balance by "
                        f"{-rest}); the holdings are the value",
                    )
                )
        else:
            # a sub-account in a non-ISO unit (BTC) is in that unit: its balance is its value
            items = [_balance_item(name, kind, balance, currency not in ISO_4217_CODES)]
        subs.append(SubAccount(sub_id, label, currency, kind, tuple(items)))
        txns += _transactions(a.get("transactions"), sub_id, currency, where, mask)
    for n in found:
        about = ""
        if n.account_id:
            about = f" about account {names.get(n.account_id, n.account_id)!r}"
            if n.account_id not in names:
                about += " (not in the answer: its balance is missing)"
        elif n.conn_id:
            conn = connections.get(n.conn_id, {})
            conn_name = _opt_str(conn.get("name")) if conn else None
            about = f" about connection {_text(conn_name or n.conn_id, mask, 80)!r}"
        hint = ""
        if n.prefix == "con." and n.code.startswith("con.auth"):
            hint = " (sign in to it again at your SimpleFIN Bridge; its balances may be old)"
        warnings.append(FetchWarning("upstream", f"SimpleFIN {n.code}{about}: {n.message}{hint}"))
    if not subs:
        raise ProviderPayloadError(
            "the SimpleFIN server sent no account finbot can value"
            + (": " + "; ".join(w.message for w in warnings) if warnings else "")
        )
    return Snapshot(tuple(subs), tuple(warnings), tuple(txns))
