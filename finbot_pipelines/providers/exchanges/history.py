"""An exchange account's history -> finbot transactions: the rules, the cursor, the windows.

Pure: raw answers (parsed with their numbers as :class:`~decimal.Decimal`) in,
:class:`~finbot_pipelines.providers.contract.Transaction` out. :mod:`.client`
reads the answers, :mod:`.provider` decides what to ask.

What is read
------------
Kraken (``kraken``, or ``ccxt`` with ``exchange: kraken``): ccxt's ``fetch_ledger``,
Kraken's private ``Ledgers`` endpoint ("Get Ledgers Info": every change of every
balance, 50 entries a page, newest first, paged with ``ofs``). Binance has no
spot ledger (ccxt's ``fetch_ledger`` there reads the futures and options
accounts), so ``binance`` reads ccxt's ``fetch_deposits``
(``/sapi/v1/capital/deposit/hisrec``), ``fetch_withdrawals``
(``/sapi/v1/capital/withdraw/history``), both at most 90 days a request and 1000
entries a page (paged with ``offset``), and ``fetch_my_trades`` (``/api/v3/myTrades``,
one symbol a request, 1000 trades a page, paged with ``fromId``). Any other ccxt
exchange: ``fetch_ledger`` when ccxt has it (``exchange.has['fetchLedger']``),
read from ccxt's unified ledger structure (its amounts are floats: their shortest
repr); otherwise no history, with a ``skipped`` warning.

One transaction per balance change
----------------------------------
Every transaction is of the exchange's one sub-account. ``currency`` is the
asset's unit as the balances value it (ccxt's code, ``XXBT`` -> ``BTC``, then the
staking / earn variant's base, ``ETH2.S`` -> ``ETH``, see :mod:`.valuation`); the
code itself is ``symbol``; ``amount`` is exact, in that unit, inflow positive (the
marts value non-ISO units by unit prices). The id is the exchange's own, prefixed
so that two legs never collide:

- a Kraken ledger entry ``L...`` -> ``kraken:L...``, its fee ``kraken:L...:fee``;
- a Binance deposit -> ``binance:deposit:<id>``, a withdrawal
  ``binance:withdrawal:<id>`` and its fee ``binance:withdrawal:<id>:fee``, a trade
  ``binance:trade:<symbol>:<trade id>:base`` / ``:quote`` / ``:fee``.

Kinds (so that performance is right):

- ``deposit`` / ``withdrawal``: crypto or fiat moving into / out of the exchange
  (Kraken ``deposit`` / ``withdrawal``; a Kraken ``withdrawal`` entry with a positive
  amount is a failed withdrawal given back, reported as a positive ``withdrawal``
  so that the two cancel; Binance's deposit and withdrawal histories);
- ``buy`` / ``sell``: the two legs of a trade, each in its own asset: the asset
  received is the ``buy`` leg (positive), the one given the ``sell`` leg (negative)
  (Kraken ``trade``, ``spend``, ``receive``, ``conversion``, ``sale``; Binance's trades,
  ``isBuyer`` saying which side is the base);
- ``fee``: every fee is a transaction of its own, negative, in the asset it was
  charged in (Kraken's ``fee`` column of any entry: the balance changed by
  ``amount - fee``; Binance's ``transactionFee`` of a withdrawal, on top of its
  ``amount``, and a trade's ``commission`` in ``commissionAsset``): a cost, never a
  withdrawal;
- ``interest``: staking and earn rewards (Kraken ``staking``, ``reward``, ``earn`` with
  subtype ``reward``); ``dividend``: Kraken ``dividend``;
- ``transfer``: Kraken ``transfer`` and the other ``earn`` subtypes (spot <-> staking,
  spot <-> futures), ``transfer_id`` the entry's ``refid``. Between spot and staking
  both legs are in this account, in the same unit (ETH and ETH2.S are both ETH):
  they cancel; to futures (not in the balances) it leaves the account;
- ``other``: anything else (``adjustment``, ``rollover``, ``credit``, ``margin`` ...).

``category`` is the exchange's own type (``trade``, ``transfer/spottostaking``,
``deposit``, ``withdrawal``). Entries of ignored currencies (``ignore_currencies``,
Kraken's fee credits ``KFEE``) are left out, like their balances; a zero amount is
no transaction (its fee still is).

Pending and failed
------------------
Kraken's ledger holds only what changed a balance: nothing is pending there.
Binance: a deposit with status 1 (success) or 6 (credited, not yet withdrawable)
is posted; 0 (pending) or 8 (waiting for the user's confirmation) is reported
``pending`` (its date the ``authorized`` one): the balances do not hold it yet
and the marts leave pending ones out; when it is credited the same id comes back
posted and replaces it. A withdrawal with status 6 (completed) is posted; 0, 2 or
4 (e-mail sent, awaiting approval, processing: the balance already lost it) is
pending; 1, 3 or 5 (cancelled, rejected, failed) is never counted: its ids (and
its fee's) are in ``removed_transaction_ids``, withdrawing a pending one reported
earlier. Another status is left out with a ``skipped`` warning naming it.

Windows and the cursor
----------------------
The exchanges' rate limits are strict (Binance weighs ``myTrades`` 20 a request,
per symbol): a fetch asks only what is new. Where each stream stands is the
snapshot's ``transactions_cursor`` (a small JSON text, :class:`HistoryCursor`),
stored by the ingest in the same database transaction as the transactions it
came with, and handed back as ``ctx.transactions_cursor``: a crash loses or
doubles nothing, a re-read entry replaces itself. The first fetch reads
``history_days`` back; later ones from the previous fetch's time minus
:data:`OVERLAP` (a late-booked entry is read again, never missed), Binance's
deposits and withdrawals also from the oldest one still pending (so that its
outcome is seen). Binance windows are at most :data:`BINANCE_WINDOW` long.
Trades are read only for the markets whose two currencies are both held now, or
moved (deposit, withdrawal) in this fetch, or held or moved at a fetch of the last
``history_days`` (the cursor remembers those), or already traded (their last
trade id is in the cursor: the next read starts after it). Limitation: a trade
between two assets that both appeared and disappeared between two fetches is not
seen; nor are Binance's Convert, card purchases, fiat (bank) deposits and
withdrawals, or Simple Earn interest (which then shows as return, not income).
Binance deposits to the Funding wallet (``walletType`` 1) are reported although
the balances read the spot wallet only.

Bounded reads: at most :data:`KRAKEN_MAX_PAGES` ledger pages (newest first) and
:data:`BINANCE_MAX_PAGES` pages per Binance stream a fetch; beyond, the older part
is not read, with a ``skipped`` warning saying from when history is reported.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from finbot_pipelines.providers.contract import (
    UNIT_CODE_RE,
    ProviderPayloadError,
    Transaction,
    to_decimal,
)
from finbot_pipelines.providers.exchanges.valuation import ALWAYS_IGNORED, amount_text, base_asset

#: Entries of a Kraken ledger page (fixed by Kraken).
KRAKEN_PAGE = 50
#: Kraken ledger pages read at most a fetch (2 500 entries).
KRAKEN_MAX_PAGES = 50
#: Entries a Binance history page holds at most (the largest ``limit`` Binance accepts).
BINANCE_PAGE = 1000
#: Pages a Binance stream (deposits, withdrawals, one symbol's trades) reads at most a fetch.
BINANCE_MAX_PAGES = 20
#: Binance's deposit and withdrawal histories answer "less than 90 days" a request.
BINANCE_WINDOW = timedelta(days=90) - timedelta(milliseconds=1)
#: How far back of the previous fetch the next one reads again.
OVERLAP = timedelta(days=1)
CURSOR_VERSION = 1

DEPOSIT_POSTED = frozenset({1, 6})
DEPOSIT_PENDING = frozenset({0, 8})
DEPOSIT_FAILED = frozenset({2, 7})
WITHDRAWAL_POSTED = frozenset({6})
WITHDRAWAL_PENDING = frozenset({0, 2, 4})
WITHDRAWAL_FAILED = frozenset({1, 3, 5})

_KRAKEN_TRADE_TYPES = frozenset({"trade", "spend", "receive", "conversion", "sale"})
_KRAKEN_INCOME_TYPES = frozenset({"staking", "reward"})


# --------------------------------------------------------------------------- cursor


def ms(t: datetime) -> int:
    """Milliseconds since the epoch of an aware (or naive UTC) datetime."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


@dataclass
class HistoryCursor:
    """Where each history stream of one exchange account stands (milliseconds since
    the epoch: where the next read starts); None: never read (the look-back applies)."""

    exchange: str
    ledger: int | None = None
    deposits: int | None = None
    withdrawals: int | None = None
    #: unified market symbol -> the last trade id read
    trades: dict[str, int] = field(default_factory=dict)
    #: currency code -> when it was last held or moved (ms)
    assets: dict[str, int] = field(default_factory=dict)

    def to_text(self) -> str:
        doc: dict[str, Any] = {"v": CURSOR_VERSION, "exchange": self.exchange}
        for name in ("ledger", "deposits", "withdrawals"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        if self.trades:
            doc["trades"] = dict(sorted(self.trades.items()))
        if self.assets:
            doc["assets"] = dict(sorted(self.assets.items()))
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_text(cls, text: str | None, exchange: str) -> HistoryCursor:
        """The cursor of ``text``; a fresh one when there is none, it is unreadable or
        of another exchange (the look-back applies: ids are stable, nothing doubles)."""
        fresh = cls(exchange)
        if not text:
            return fresh
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("v") != CURSOR_VERSION:
                return fresh
            if doc.get("exchange") != exchange:
                return fresh
            cur = cls(exchange)
            for name in ("ledger", "deposits", "withdrawals"):
                v = doc.get(name)
                if v is not None:
                    setattr(cur, name, int(v))
            cur.trades = {str(k): int(v) for k, v in (doc.get("trades") or {}).items()}
            cur.assets = {str(k): int(v) for k, v in (doc.get("assets") or {}).items()}
            return cur
        except (ValueError, TypeError, AttributeError):
            return fresh


def windows(start_ms: int, end_ms: int, width: timedelta) -> list[tuple[int, int]]:
    """``[start, end)`` cut in consecutive windows ``(first, last)`` (inclusive, in ms), each
    ``last - first`` at most ``width``."""
    step = int(width.total_seconds() * 1000)
    out = []
    s = start_ms
    while s < end_ms:
        e = min(end_ms - 1, s + step)
        out.append((s, e))
        s = e + 1
    return out


# --------------------------------------------------------------------------- helpers


@dataclass
class Mapped:
    """Transactions read from a history, ids withdrawn, what was left out, and the
    oldest time still pending (ms) of a Binance stream."""

    transactions: dict[str, Transaction] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    oldest_open: int | None = None
    moved: set[str] = field(default_factory=set)

    def add(self, t: Transaction) -> None:
        self.transactions[t.id] = t

    def hold(self, at_ms: int) -> None:
        self.oldest_open = at_ms if self.oldest_open is None else min(self.oldest_open, at_ms)


class Units:
    """The code and the valuing unit of an exchange's asset ids, and which are ignored."""

    def __init__(
        self,
        exchange_id: str,
        code_of: Any,
        listed: Collection[str],
        ignored: Collection[str],
    ) -> None:
        self.exchange_id = exchange_id
        self._code_of = code_of
        self.listed = listed
        self.ignored = {*ignored, *ALWAYS_IGNORED.get(exchange_id, frozenset())}

    def code(self, asset_id: str) -> str:
        return str(self._code_of(asset_id))

    def unit(self, code: str) -> str:
        return base_asset(self.exchange_id, code, self.listed)

    def is_ignored(self, asset_id: str, code: str) -> bool:
        return asset_id in self.ignored or code in self.ignored or self.unit(code) in self.ignored


def _bad(exchange: str, what: str, detail: str) -> ProviderPayloadError:
    return ProviderPayloadError(f"{exchange}: malformed history: {what}: {detail}")


def _num(value: object, exchange: str, what: str) -> Decimal:
    try:
        return to_decimal(value, what)
    except ValueError as exc:
        raise _bad(exchange, what, str(exc)) from None


def _text(entry: Mapping[str, Any], key: str, exchange: str, what: str) -> str:
    v = entry.get(key)
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str) or not v.strip():
        raise _bad(exchange, what, f"no {key!r}")
    return v.strip()


def _check_unit(unit: str, exchange: str, what: str) -> str:
    if not UNIT_CODE_RE.match(unit):
        raise _bad(exchange, what, f"{unit!r} is not a currency code")
    return unit


def _day(epoch_s: Decimal | float, exchange: str, what: str) -> date:
    try:
        return datetime.fromtimestamp(float(epoch_s), UTC).date()
    except (OverflowError, OSError, ValueError):
        raise _bad(exchange, what, f"time {epoch_s} is not a date") from None


def _ms_field(entry: Mapping[str, Any], key: str, exchange: str, what: str) -> int:
    v = entry.get(key)
    if isinstance(v, bool) or not isinstance(v, int | Decimal | float | str):
        raise _bad(exchange, what, f"no {key!r}")
    try:
        return int(Decimal(str(v)))
    except ArithmeticError:
        raise _bad(exchange, what, f"{key} {v!r} is not a time") from None


def _utc_text_ms(text: object, exchange: str, what: str) -> int:
    """Binance's ``"2019-10-12 11:12:02"`` (UTC) in milliseconds."""
    if not isinstance(text, str):
        raise _bad(exchange, what, f"time {text!r} is not 'YYYY-MM-DD HH:MM:SS'")
    try:
        t = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise _bad(exchange, what, f"time {text!r} is not 'YYYY-MM-DD HH:MM:SS'") from None
    return ms(t)


def _ms_day(at_ms: int) -> date:
    return datetime.fromtimestamp(at_ms / 1000, UTC).date()


# --------------------------------------------------------------------------- Kraken


def kraken_kind(entry_type: str, subtype: str, amount: Decimal) -> str:
    """finbot's kind of a Kraken ledger entry (see the module docstring)."""
    if entry_type == "deposit":
        return "deposit" if amount >= 0 else "withdrawal"
    if entry_type == "withdrawal":
        return "withdrawal"
    if entry_type in _KRAKEN_TRADE_TYPES:
        return "buy" if amount > 0 else "sell"
    if entry_type in _KRAKEN_INCOME_TYPES or (entry_type == "earn" and subtype == "reward"):
        return "interest"
    if entry_type == "dividend":
        return "dividend"
    if entry_type in ("transfer", "earn"):
        return "transfer"
    return "other"


def kraken_ledger(
    ledger: Mapping[str, Any], units: Units, sub_account_id: str, out: Mapped
) -> int | None:
    """Add the transactions of a Kraken ``result.ledger`` page to ``out``; the newest
    entry's time (ms), or None when the page is empty."""
    newest: int | None = None
    for ledger_id, entry in ledger.items():
        what = f"ledger entry {ledger_id}"
        if not isinstance(entry, Mapping):
            raise _bad("kraken", what, "not an object")
        asset = _text(entry, "asset", "kraken", what)
        entry_type = str(entry.get("type") or "").strip().lower()
        subtype = str(entry.get("subtype") or "").strip().lower()
        amount = _num(entry.get("amount"), "kraken", f"{what}: amount")
        fee = _num(entry.get("fee", "0"), "kraken", f"{what}: fee")
        t = entry.get("time")
        if isinstance(t, bool) or not isinstance(t, int | float | Decimal | str):
            raise _bad("kraken", what, "no 'time'")
        t_dec = _num(t, "kraken", f"{what}: time")
        posted = _day(t_dec, "kraken", what)
        at = int(t_dec * 1000)
        newest = at if newest is None else max(newest, at)
        code = units.code(asset)
        if units.is_ignored(asset, code):
            continue
        unit = _check_unit(units.unit(code), "kraken", what)
        refid = str(entry.get("refid") or "").strip() or None
        category = entry_type + (f"/{subtype}" if subtype else "") if entry_type else None
        kind = kraken_kind(entry_type, subtype, amount)
        ref = f" {refid}" if refid else ""
        if amount != 0:
            label = entry_type or "entry"
            if entry_type == "withdrawal" and amount > 0:
                label = "withdrawal returned"
            out.add(
                Transaction(
                    id=f"kraken:{ledger_id}",
                    sub_account_id=sub_account_id,
                    amount=amount,
                    currency=unit,
                    description=f"Kraken {label}{ref}: {amount_text(amount)} {code}",
                    kind=kind,
                    posted=posted,
                    category=category,
                    symbol=code,
                    units=amount if kind in ("buy", "sell") else None,
                    transfer_id=refid if kind == "transfer" else None,
                )
            )
            if kind in ("deposit", "withdrawal", "transfer"):
                out.moved.add(code)
        if fee != 0:
            out.add(
                Transaction(
                    id=f"kraken:{ledger_id}:fee",
                    sub_account_id=sub_account_id,
                    amount=-fee,
                    currency=unit,
                    description=f"Kraken fee ({entry_type or 'entry'}{ref}): "
                    f"{amount_text(fee)} {code}",
                    kind="fee",
                    posted=posted,
                    category=category,
                    symbol=code,
                )
            )
    return newest


# --------------------------------------------------------------------------- Binance


def binance_deposits(rows: Iterable[Any], units: Units, sub_account_id: str, out: Mapped) -> None:
    """Add a ``/sapi/v1/capital/deposit/hisrec`` page to ``out``."""
    for i, row in enumerate(rows):
        what = f"deposit [{i}]"
        if not isinstance(row, Mapping):
            raise _bad("binance", what, "not an object")
        dep_id = _text(row, "id", "binance", what) if row.get("id") else None
        dep_id = dep_id or _text(row, "txId", "binance", what)
        what = f"deposit {dep_id}"
        coin = _text(row, "coin", "binance", what)
        amount = _num(row.get("amount"), "binance", f"{what}: amount")
        status = row.get("status")
        inserted = _ms_field(row, "insertTime", "binance", what)
        tid = f"binance:deposit:{dep_id}"
        if status in DEPOSIT_FAILED:
            out.removed.append(tid)
            continue
        if status not in DEPOSIT_POSTED and status not in DEPOSIT_PENDING:
            out.skipped.append(f"deposit {dep_id} ({amount_text(amount)} {coin}, status {status})")
            continue
        code = units.code(coin)
        if units.is_ignored(coin, code) or amount == 0:
            continue
        unit = _check_unit(units.unit(code), "binance", what)
        pending = status in DEPOSIT_PENDING
        if pending:
            out.hold(inserted)
        done = row.get("completeTime")
        posted_ms = (
            _ms_field(row, "completeTime", "binance", what) if done not in (None, 0) else inserted
        )
        network = str(row.get("network") or "").strip()
        out.moved.add(code)
        out.add(
            Transaction(
                id=tid,
                sub_account_id=sub_account_id,
                amount=amount,
                currency=unit,
                description=f"Binance deposit: {amount_text(amount)} {code}"
                + (f" ({network})" if network else ""),
                kind="deposit",
                posted=None if pending else _ms_day(posted_ms),
                pending=pending,
                authorized=_ms_day(inserted),
                category="deposit",
                symbol=code,
            )
        )


def binance_withdrawals(
    rows: Iterable[Any], units: Units, sub_account_id: str, out: Mapped
) -> None:
    """Add a ``/sapi/v1/capital/withdraw/history`` page to ``out``: the amount sent and,
    apart, ``transactionFee`` (both left the balance)."""
    for i, row in enumerate(rows):
        what = f"withdrawal [{i}]"
        if not isinstance(row, Mapping):
            raise _bad("binance", what, "not an object")
        wid = _text(row, "id", "binance", what)
        what = f"withdrawal {wid}"
        coin = _text(row, "coin", "binance", what)
        amount = _num(row.get("amount"), "binance", f"{what}: amount")
        fee = _num(row.get("transactionFee", "0"), "binance", f"{what}: transactionFee")
        status = row.get("status")
        applied = _utc_text_ms(row.get("applyTime"), "binance", f"{what}: applyTime")
        tid = f"binance:withdrawal:{wid}"
        if status in WITHDRAWAL_FAILED:
            out.removed.extend((tid, f"{tid}:fee"))
            continue
        if status not in WITHDRAWAL_POSTED and status not in WITHDRAWAL_PENDING:
            out.skipped.append(f"withdrawal {wid} ({amount_text(amount)} {coin}, status {status})")
            continue
        code = units.code(coin)
        if units.is_ignored(coin, code):
            continue
        unit = _check_unit(units.unit(code), "binance", what)
        pending = status in WITHDRAWAL_PENDING
        if pending:
            out.hold(applied)
        done = row.get("completeTime")
        posted_ms = _utc_text_ms(done, "binance", f"{what}: completeTime") if done else applied
        posted = None if pending else _ms_day(posted_ms)
        network = str(row.get("network") or "").strip()
        out.moved.add(code)
        if amount != 0:
            out.add(
                Transaction(
                    id=tid,
                    sub_account_id=sub_account_id,
                    amount=-amount,
                    currency=unit,
                    description=f"Binance withdrawal: {amount_text(amount)} {code}"
                    + (f" ({network})" if network else ""),
                    kind="withdrawal",
                    posted=posted,
                    pending=pending,
                    authorized=_ms_day(applied),
                    category="withdrawal",
                    symbol=code,
                )
            )
        if fee != 0:
            out.add(
                Transaction(
                    id=f"{tid}:fee",
                    sub_account_id=sub_account_id,
                    amount=-fee,
                    currency=unit,
                    description=f"Binance withdrawal fee: {amount_text(fee)} {code}",
                    kind="fee",
                    posted=posted,
                    pending=pending,
                    authorized=_ms_day(applied),
                    category="withdrawal",
                    symbol=code,
                )
            )


def binance_trades(
    rows: Iterable[Any],
    symbol: str,
    base: str,
    quote: str,
    units: Units,
    sub_account_id: str,
    out: Mapped,
) -> int | None:
    """Add a ``/api/v3/myTrades`` page of market ``symbol`` (codes ``base``/``quote``) to
    ``out``: per trade a base leg, a quote leg and the commission; the last trade id."""
    last: int | None = None
    for i, row in enumerate(rows):
        what = f"trade [{i}] of {symbol}"
        if not isinstance(row, Mapping):
            raise _bad("binance", what, "not an object")
        trade_id = row.get("id")
        if isinstance(trade_id, bool) or not isinstance(trade_id, int):
            raise _bad("binance", what, "no integer 'id'")
        what = f"trade {trade_id} of {symbol}"
        last = trade_id if last is None else max(last, trade_id)
        raw_symbol = _text(row, "symbol", "binance", what)
        qty = _num(row.get("qty"), "binance", f"{what}: qty")
        quote_qty = _num(row.get("quoteQty"), "binance", f"{what}: quoteQty")
        commission = _num(row.get("commission", "0"), "binance", f"{what}: commission")
        buyer = row.get("isBuyer")
        if not isinstance(buyer, bool):
            raise _bad("binance", what, "no boolean 'isBuyer'")
        at = _ms_field(row, "time", "binance", what)
        posted = _ms_day(at)
        sign = 1 if buyer else -1
        tid = f"binance:trade:{raw_symbol}:{trade_id}"
        side = "buy" if buyer else "sell"
        desc = (
            f"Binance trade {raw_symbol} #{trade_id}: {side} {amount_text(qty)} {base} "
            f"for {amount_text(quote_qty)} {quote}"
        )
        for leg, code, amount in (("base", base, sign * qty), ("quote", quote, -sign * quote_qty)):
            if amount == 0 or units.is_ignored(code, code):
                continue
            out.add(
                Transaction(
                    id=f"{tid}:{leg}",
                    sub_account_id=sub_account_id,
                    amount=amount,
                    currency=_check_unit(units.unit(code), "binance", what),
                    description=desc,
                    kind="buy" if amount > 0 else "sell",
                    posted=posted,
                    category="trade",
                    symbol=code,
                    units=amount,
                )
            )
        if commission != 0:
            fee_asset = _text(row, "commissionAsset", "binance", what)
            fee_code = units.code(fee_asset)
            if not units.is_ignored(fee_asset, fee_code):
                out.add(
                    Transaction(
                        id=f"{tid}:fee",
                        sub_account_id=sub_account_id,
                        amount=-commission,
                        currency=_check_unit(units.unit(fee_code), "binance", what),
                        description=f"Binance trading fee ({raw_symbol} #{trade_id}): "
                        f"{amount_text(commission)} {fee_code}",
                        kind="fee",
                        posted=posted,
                        category="trade",
                        symbol=fee_code,
                    )
                )
    return last


# --------------------------------------------------------------------------- any ccxt


_CCXT_KINDS = {
    "trade": None,  # by direction
    "fee": "fee",
    "rebate": "interest",
    "cashback": "interest",
    "referral": "interest",
    "transfer": "transfer",
}


def ccxt_ledger(
    entries: Iterable[Any], exchange_id: str, units: Units, sub_account_id: str, out: Mapped
) -> int | None:
    """Add ccxt's unified ledger entries to ``out``; the newest entry's time (ms)."""
    newest: int | None = None
    for i, e in enumerate(entries):
        what = f"ledger entry [{i}]"
        if not isinstance(e, Mapping):
            raise _bad(exchange_id, what, "not an object")
        eid = str(e.get("id") or "").strip()
        if not eid:
            raise _bad(exchange_id, what, "no 'id'")
        what = f"ledger entry {eid}"
        code = str(e.get("currency") or "").strip()
        if not code:
            raise _bad(exchange_id, what, "no 'currency'")
        ts = e.get("timestamp")
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise _bad(exchange_id, what, "no 'timestamp'")
        at = int(ts)
        newest = at if newest is None else max(newest, at)
        if units.is_ignored(code, code):
            continue
        amount = _num(e.get("amount"), exchange_id, f"{what}: amount")
        amount = -abs(amount) if e.get("direction") == "out" else abs(amount)
        entry_type = str(e.get("type") or "").strip().lower()
        if entry_type == "transaction":
            kind = "deposit" if amount > 0 else "withdrawal"
        elif entry_type == "trade":
            kind = "buy" if amount > 0 else "sell"
        else:
            kind = _CCXT_KINDS.get(entry_type) or "other"
        unit = _check_unit(units.unit(code), exchange_id, what)
        posted = _ms_day(at)
        if amount != 0:
            out.add(
                Transaction(
                    id=f"{exchange_id}:{eid}",
                    sub_account_id=sub_account_id,
                    amount=amount,
                    currency=unit,
                    description=f"{exchange_id} {entry_type or 'entry'}: "
                    f"{amount_text(amount)} {code}",
                    kind=kind,
                    posted=posted,
                    category=entry_type or None,
                    symbol=code,
                    units=amount if kind in ("buy", "sell") else None,
                )
            )
        fee = e.get("fee")
        cost = fee.get("cost") if isinstance(fee, Mapping) else None
        if cost not in (None, 0):
            fee_amount = _num(cost, exchange_id, f"{what}: fee")
            fee_code = str(fee.get("currency") or code) if isinstance(fee, Mapping) else code
            if fee_amount != 0 and kind != "fee":
                out.add(
                    Transaction(
                        id=f"{exchange_id}:{eid}:fee",
                        sub_account_id=sub_account_id,
                        amount=-abs(fee_amount),
                        currency=_check_unit(units.unit(fee_code), exchange_id, what),
                        description=f"{exchange_id} fee: {amount_text(abs(fee_amount))} {fee_code}",
                        kind="fee",
                        posted=posted,
                        category=entry_type or None,
                        symbol=fee_code,
                    )
                )
    return newest
