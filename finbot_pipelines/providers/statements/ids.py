"""Transaction ids of statement files: the bank's own id when the file has one, else a
content key that is the same whenever the same rows come again (an overlapping later
statement, the same file twice).

Every id starts with the sub-account id (``<sub-account>:<key>``): a bank's ids are
unique per account only (OFX FITID), and one linked account's inbox may hold files
of several accounts.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import date
from decimal import Decimal

#: Longest id the contract accepts.
MAX_ID_LENGTH = 200
_SPACES = re.compile(r"\s+")


def amount_text(amount: Decimal) -> str:
    """``-12.5`` for ``-12.50``: one text per number, whatever its scale."""
    return format(amount.normalize(), "f") if amount != 0 else "0"


def normalise_text(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def bank_id(sub_account_id: str, own_id: str) -> str:
    """The id of a transaction the bank identifies (OFX FITID, a CSV id column)."""
    own = own_id.strip()
    out = f"{sub_account_id}:{own}"
    if len(out) <= MAX_ID_LENGTH:
        return out
    digest = hashlib.sha256(own.encode("utf-8")).hexdigest()[:40]
    return f"{sub_account_id[: MAX_ID_LENGTH - 46]}:sha256:{digest}"


class ContentKeys:
    """Content keys for rows without an id of their own, one file at a time:
    ``<sub-account>:<date>:<hash of date, amount and description>:<n>``, ``n``
    counting identical rows in the file (0 for the first), so that two identical
    rows (two coffees of the same price on the same day) stay two transactions and
    keep their ids when the same rows come again."""

    def __init__(self, sub_account_id: str) -> None:
        self.sub_account_id = sub_account_id
        self._seen: Counter[tuple[str, str, str]] = Counter()

    def next(self, posted: date, amount: Decimal, description: str) -> str:
        key = (posted.isoformat(), amount_text(amount), normalise_text(description).casefold())
        n = self._seen[key]
        self._seen[key] += 1
        digest = hashlib.sha256("\x1f".join(key).encode("utf-8")).hexdigest()[:20]
        return f"{self.sub_account_id[:150]}:{key[0]}:{digest}:{n}"
