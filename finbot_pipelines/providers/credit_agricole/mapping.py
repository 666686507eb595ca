"""What the synthesis page shows -> a snapshot (pure: no browser).

=============  ================  ===========================================
family         account_type      item
=============  ================  ===========================================
``COMPTES``    depository        cash/cash (a liability when overdrawn)
``EPARGNE``    depository        cash/cash (livrets, PEL, ...)
``PLACEMENTS`` investment        multi_asset/fund (assurance vie, PEA, ...)
``CREDITS``    loan              liability: real_estate/mortgage for a home
                                 loan (``immobilier``/``habitat``), else
                                 other/loan; value = minus the amount owed
=============  ================  ===========================================

Balances are exact: the French amount shown ("1 234,56 €") becomes the
:class:`~decimal.Decimal` ``1234.56`` and goes into the item as it is. An
unknown family, an account without a number or a balance, or a balance that is
not exactly a French amount fails the fetch with :class:`ProviderPayloadError`
naming the account: a wrong value is never returned.

Sub-account ids are masked account numbers (``****8901``; more digits when two
accounts share their last four) because the main account number is usually
the login identifiant itself, a credential.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from finbot_pipelines.providers.contract import (
    Item,
    ProviderPayloadError,
    Snapshot,
    SubAccount,
)
from finbot_pipelines.providers.credit_agricole.options import PROVIDER_ID

# --------------------------------------------------------------------------- amounts

_SPACES = "\u0020\u00a0\u202f\u2009"
_FR_AMOUNT_RE = re.compile(
    r"^(?P<sign>[-+\u2212])?\s*"
    r"(?P<int>\d{1,3}(?:[\u0020\u00a0\u202f\u2009]\d{3})+|\d+)"
    r"(?:,(?P<dec>\d{2}))?"
    r"\s*(?:€|EUR)$"
)


def parse_french_amount(text: str) -> Decimal:
    """``"1 234,56 €"`` -> ``Decimal("1234.56")``; ``"-45,10 €"`` -> ``Decimal("-45.10")``.

    Thousands separated by a space, a non-breaking or a narrow non-breaking
    space; two decimals after a comma (or none); a leading ``-``, U+2212 or ``+``;
    a trailing ``€`` or ``EUR``. Anything else raises ``ValueError``."""
    s = text.strip()
    s = re.sub(f"[{_SPACES}]+", lambda m: m.group(0)[0], s)
    m = _FR_AMOUNT_RE.match(s)
    if not m:
        raise ValueError(f"not a French euro amount: {text!r}")
    digits = re.sub(f"[{_SPACES}]", "", m["int"])
    value = Decimal(f"{digits}.{m['dec'] or '00'}")
    return (-value if m["sign"] in ("-", "\u2212") else value) + 0  # -0.00 -> 0.00


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class Family:
    account_type: str
    kind: str  # cash | investment | loan


FAMILIES: dict[str, Family] = {
    "COMPTES": Family("depository", "cash"),
    "EPARGNE": Family("depository", "cash"),
    "PLACEMENTS": Family("investment", "investment"),
    "CREDITS": Family("loan", "loan"),
}
_HOME_LOAN_RE = re.compile(r"immobilier|habitat", re.IGNORECASE)


@dataclass(frozen=True)
class AccountRow:
    family: str
    label: str
    number: str  # digits only
    amount: Decimal


def _account_digits(text: str) -> str | None:
    m = re.search(r"\d(?:[\d\u0020\u00a0\u202f]*\d)?", text)
    if not m:
        return None
    digits = re.sub(r"\D", "", m.group(0))
    return digits if len(digits) >= 5 else None


def parse_rows(
    raw_rows: Sequence[Mapping[str, Any]], prefix: str = PROVIDER_ID
) -> list[AccountRow]:
    """Validate what the page showed; raise ProviderPayloadError naming the account."""
    rows: list[AccountRow] = []
    for i, raw in enumerate(raw_rows):
        family = str(raw.get("family") or "").strip().upper()
        section = raw.get("title") or family or f"section {i + 1}"
        if family not in FAMILIES:
            raise ProviderPayloadError(
                f"{prefix}: unsupported account family {family or '(none)'!r} in section "
                f"{section!r}: its accounts cannot be valued (supported: {', '.join(FAMILIES)})"
            )
        if raw.get("empty"):
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: no account row found in section {section!r}"
            )
        label = str(raw.get("label") or "").strip()
        if not label:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: account name not found in section "
                f"{section!r} (row {i + 1})"
            )
        number = _account_digits(str(raw.get("number") or ""))
        if number is None:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: account number not found for account "
                f"{label!r} in section {section!r}"
            )
        where = f"account {label!r} (****{number[-4:]})"
        amount_text = raw.get("amount")
        if amount_text is None:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: balance (.Synthesis-amount) not found for "
                f"{where}"
            )
        try:
            amount = parse_french_amount(str(amount_text))
        except ValueError:
            raise ProviderPayloadError(
                f"{prefix}: unreadable balance {amount_text!r} for {where}"
            ) from None
        rows.append(AccountRow(family, label, number, amount))
    if not rows:
        raise ProviderPayloadError(
            f"{prefix}: the page layout changed: no account section ([data-famille]) found on "
            "the synthesis page"
        )
    return rows


def masked_ids(numbers: list[str]) -> list[str]:
    """``****`` + the shortest suffix (4 digits or more) that keeps every account distinct."""
    distinct = set(numbers)
    if len(distinct) != len(numbers):
        dup = next(n for n in numbers if numbers.count(n) > 1)
        raise ProviderPayloadError(
            f"{PROVIDER_ID}: account ****{dup[-4:]} is listed twice on the synthesis page"
        )
    k = 4
    while len({n[-k:] for n in numbers}) != len(numbers):
        k += 1
    return [f"****{n[-k:]}" if len(n) > k else f"****{n[-4:]}" for n in numbers]


def build_snapshot(rows: list[AccountRow]) -> Snapshot:
    """One EUR sub-account per row, its balance exactly as shown."""
    subs: list[SubAccount] = []
    for row, sa_id in zip(rows, masked_ids([r.number for r in rows]), strict=True):
        fam = FAMILIES[row.family]
        value = row.amount
        if fam.kind == "loan":
            home = bool(_HOME_LOAN_RE.search(row.label))
            item = Item(
                name=row.label,
                item_type="liability",
                asset_class="real_estate" if home else "other",
                asset_type="mortgage" if home else "loan",
                value=-abs(value) + 0,  # the amount owed, whichever sign the page shows
            )
        elif fam.kind == "investment":
            if value < 0:
                raise ProviderPayloadError(
                    f"{PROVIDER_ID}: negative balance for investment account {row.label!r} "
                    f"(****{row.number[-4:]})"
                )
            item = Item(row.label, "asset", "multi_asset", "fund", value)
        else:
            item = Item("Cash", "liability" if value < 0 else "asset", "cash", "cash", value)
        subs.append(SubAccount(sa_id, row.label, "EUR", fam.account_type, (item,)))
    return Snapshot(tuple(subs))
