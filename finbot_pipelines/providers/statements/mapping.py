"""A statement account as the provider contract's items: what it held at the
statement's own date (:func:`sub_account_at_statement_date`).

Kept beside the parser for the step that lands statements: it decides nothing
about hours (a statement's date is :func:`statement_date`).

- depository: the booked balance (LEDGERBAL, a CSV's last running balance) as
  ``Cash`` (``Overdraft``, a liability, when negative);
- credit (cards, OFX CREDITLINE accounts): the booked balance as it is (OFX
  writes an amount owed negative), a ``credit_card`` liability named as the
  sub-account;
- investment: each position (stock -> equities/stock, fund -> multi_asset/fund,
  bond -> fixed_income/bond, option -> equities/option, other -> other/other) at
  its market value, plus ``Cash`` (INVBAL AVAILCASH, when not 0) and ``Margin
  balance`` (MARGINBALANCE, when negative: a liability).

An account without any balance (a CSV export without a balance column) has no
items: its statement tells transactions only.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from finbot_pipelines.providers.contract import Item, SubAccount
from finbot_pipelines.providers.statements.model import StatementAccount

POSITION_CLASSES: dict[str, tuple[str, str]] = {
    "stock": ("equities", "stock"),
    "fund": ("multi_asset", "fund"),
    "bond": ("fixed_income", "bond"),
    "option": ("equities", "option"),
    "other": ("other", "other"),
}


def statement_date(account: StatementAccount) -> date | None:
    """The date the account's balances are at: the ledger balance's, else the
    positions', else the cash balance's; None when the statement gives no balance."""
    if account.ledger_balance is not None:
        return account.ledger_balance.as_of
    if account.positions_as_of is not None:
        return account.positions_as_of
    if account.cash_balance is not None:
        return account.cash_balance.as_of
    return None


def _cash(value: Decimal) -> Item:
    if value >= 0:
        return Item("Cash", "asset", "cash", "cash", value)
    return Item("Overdraft", "liability", "cash", "overdraft", value)


def account_items(account: StatementAccount) -> tuple[Item, ...]:
    """The items of ``account`` at its statement's date (see the module docstring)."""
    sub = account.sub_account
    ledger = account.ledger_balance
    if sub.account_type == "investment":
        items: list[Item] = []
        names: set[str] = set()
        for p in account.positions:
            asset_class, asset_type = POSITION_CLASSES.get(p.asset_type, ("other", "other"))
            name = p.name
            if name in names:
                name = f"{p.name} ({p.held_in or p.security_id})"
            names.add(name)
            items.append(
                Item(
                    name=name,
                    item_type="asset" if p.market_value >= 0 else "liability",
                    asset_class=asset_class,
                    asset_type=asset_type,
                    value=p.market_value,
                    units=p.units,
                    currency=p.currency if p.currency != sub.currency else None,
                    symbol=p.symbol or p.security_id,
                )
            )
        if account.cash_balance is not None and account.cash_balance.amount != 0:
            items.append(_cash(account.cash_balance.amount))
        margin = account.margin_balance
        if margin is not None and margin.amount < 0:
            items.append(Item("Margin balance", "liability", "cash", "margin_loan", margin.amount))
        if not items and ledger is not None:
            items.append(_cash(ledger.amount))
        return tuple(items)
    if ledger is None:
        return ()
    if sub.account_type in ("credit", "loan"):
        asset_type = {"credit": "credit_card", "loan": "loan"}[sub.account_type]
        value = ledger.amount
        kind = "liability" if value <= 0 else "asset"
        return (Item(sub.name, kind, "other", asset_type, value),)
    return (_cash(ledger.amount),)


def sub_account_at_statement_date(account: StatementAccount) -> SubAccount:
    """The statement's sub-account with its items (:func:`account_items`)."""
    sub = account.sub_account
    return SubAccount(sub.id, sub.name, sub.currency, sub.account_type, account_items(account))
