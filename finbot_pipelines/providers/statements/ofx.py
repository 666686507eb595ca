"""OFX and QFX statement files (OFX 1.x SGML, 2.x XML; Quicken's QFX is OFX).

ofxtools reads the header (OFX version, the charset a 1.x file declares) and
turns the body, with or without SGML's optional closing tags, into an element
tree; this module reads the statements out of that tree. It does not use
ofxtools' typed models (``OFXTree.convert``): they refuse files that real banks
send (a NAME longer than the spec allows, elements out of the spec's order, a
LEDGERBAL without DTASOF), and their errors say neither the line nor the field.
Here every error names the line and the element, and money is read exactly.

Before ofxtools sees the body, :func:`_check_structure` walks its tags once:
ofxtools' tree builder silently mends an unbalanced file (a closing tag that
closes nothing, an aggregate never closed), which could move transactions into
the wrong list; such a file is refused, naming the line.

Real-world quirks handled: a UTF-8 byte-order mark, blank lines before the
header, charset aliases (``CHARSET:ISO-8859-1``/``8859-1``/``WINDOWS-1252``/
``UTF-8``), ``ofx.encoding`` overriding a wrong declaration, Quicken's private
tags (``INTU.BID``, ``INTU.USERID``: ignored), dates with or without time,
milliseconds and a ``[-5:EST]`` offset (a date is the one the file writes, the
bank's own day; the instant is kept in UTC where a time is given), a ``,``
decimal separator (the spec allows it), LEDGERBAL/INVSTMTRS without DTASOF (the
statement's DTEND, else the server's DTSERVER, is its date: ``Balance.source``
says which), a missing FITID (a content key, with a warning), one FITID reused
for different transactions (each gets its content hash appended, with a
warning), and banks that write money out as positive (``ofx.invert_amounts``;
a warning suggests it when a statement's debits are all positive and its
credits negative).

Kinds of transaction (``TRNTYPE`` of a bank or card transaction)
----------------------------------------------------------------
=================================================  ==========================
TRNTYPE                                            kind
=================================================  ==========================
CREDIT, DEP, DIRECTDEP                             deposit (withdrawal if < 0)
DEBIT, PAYMENT, POS, ATM, CHECK, DIRECTDEBIT,      withdrawal (deposit if > 0:
REPEATPMT, CASH                                    a refund)
INT                                                interest
DIV                                                dividend
FEE, SRVCHG                                        fee
XFER                                               transfer
HOLD, OTHER                                        other
=================================================  ==========================

Investment transactions (``INVTRANLIST``): cash amounts are the transaction's
TOTAL with the sign of the cash movement, units with the sign of the holding's
change; ``posted`` is the trade date (DTTRADE), as the positions count it.

=================================================  ==========================
aggregate                                          kind, amount, units
=================================================  ==========================
BUYSTOCK, BUYMF, BUYDEBT, BUYOPT, BUYOTHER         buy, -|TOTAL|, +|UNITS|
SELLSTOCK, SELLMF, SELLDEBT, SELLOPT, SELLOTHER    sell, +|TOTAL|, -|UNITS|
INCOME (INCOMETYPE DIV, CGLONG, CGSHORT)           dividend, +|TOTAL|
INCOME (INTEREST) / (MISC)                         interest / other, +|TOTAL|
REINVEST                                           two transactions: dividend
                                                   +|TOTAL| (id ``FITID``) and
                                                   buy -|TOTAL|, +|UNITS| (id
                                                   ``FITID:reinvest``)
INVEXPENSE                                         fee, -|TOTAL|
MARGININTEREST                                     interest, -|TOTAL|
RETOFCAP                                           other, +|TOTAL|
TRANSFER (securities in or out)                    transfer, 0, ±|UNITS|
SPLIT                                              other, 0, NEWUNITS-OLDUNITS
CLOSUREOPT                                         other, 0, UNITS
INVBANKTRAN                                        as its STMTTRN above
JRNLFUND, JRNLSEC                                  left out, with a warning
                                                   (a move between the
                                                   account's own cash and
                                                   margin sub-accounts)
=================================================  ==========================

Positions (``INVPOSLIST``): POSSTOCK stock, POSMF fund, POSDEBT bond, POSOPT
option, POSOTHER other; a SHORT position has negative units and market value.
"""

from __future__ import annotations

import bisect
import io
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from xml.sax.saxutils import unescape

import ofxtools.models
from ofxtools.header import OFXHeaderError, parse_header
from ofxtools.models.base import Aggregate
from ofxtools.Parser import ParseError, TreeBuilder

from finbot_pipelines.providers.contract import (
    MAX_SCALE,
    SubAccount,
    Transaction,
    is_iso_currency,
)
from finbot_pipelines.providers.statements.ids import (
    ContentKeys,
    amount_text,
    bank_id,
    normalise_text,
)
from finbot_pipelines.providers.statements.model import (
    Balance,
    Position,
    StatementAccount,
    StatementError,
)
from finbot_pipelines.providers.statements.options import OfxOptions

#: TRNTYPE -> (kind, nominal direction: +1 money in, -1 money out, 0 either).
TRNTYPE_KINDS: dict[str, tuple[str, int]] = {
    "CREDIT": ("deposit", 1),
    "DEP": ("deposit", 1),
    "DIRECTDEP": ("deposit", 1),
    "DEBIT": ("withdrawal", -1),
    "PAYMENT": ("withdrawal", -1),
    "POS": ("withdrawal", -1),
    "ATM": ("withdrawal", -1),
    "CHECK": ("withdrawal", -1),
    "DIRECTDEBIT": ("withdrawal", -1),
    "REPEATPMT": ("withdrawal", -1),
    "CASH": ("withdrawal", -1),
    "INT": ("interest", 0),
    "DIV": ("dividend", 0),
    "FEE": ("fee", 0),
    "SRVCHG": ("fee", 0),
    "XFER": ("transfer", 0),
    "HOLD": ("other", 0),
    "OTHER": ("other", 0),
}
BUY_TAGS = ("BUYSTOCK", "BUYMF", "BUYDEBT", "BUYOPT", "BUYOTHER")
SELL_TAGS = ("SELLSTOCK", "SELLMF", "SELLDEBT", "SELLOPT", "SELLOTHER")
INCOME_KINDS = {
    "DIV": "dividend",
    "CGLONG": "dividend",
    "CGSHORT": "dividend",
    "INTEREST": "interest",
    "MISC": "other",
}
POSITION_TYPES = {
    "POSSTOCK": "stock",
    "POSMF": "fund",
    "POSDEBT": "bond",
    "POSOPT": "option",
    "POSOTHER": "other",
}
SECINFO_TYPES = {
    "STOCKINFO": "stock",
    "MFINFO": "fund",
    "DEBTINFO": "bond",
    "OPTINFO": "option",
    "OTHERINFO": "other",
}
BANK_ACCOUNT_TYPES = {
    "CHECKING": ("depository", "Checking"),
    "SAVINGS": ("depository", "Savings"),
    "MONEYMRKT": ("depository", "Money market"),
    "CD": ("depository", "Certificate of deposit"),
    "CREDITLINE": ("credit", "Credit line"),
}
#: CHARSET values real 1.x files declare -> the value ofxtools knows for that codec.
_CHARSET_ALIASES = {
    "8859-1": "ISO-8859-1",
    "ISO8859-1": "ISO-8859-1",
    "ISO-8859-1": "ISO-8859-1",
    "LATIN1": "ISO-8859-1",
    "LATIN-1": "ISO-8859-1",
    "1252": "1252",
    "CP1252": "1252",
    "WINDOWS-1252": "1252",
    "UTF-8": "NONE",
    "UTF8": "NONE",
    "NONE": "NONE",
}
_CHARSET_RE = re.compile(rb"(CHARSET:[ \t]*)([A-Za-z0-9_-]+)")
_BOM = b"\xef\xbb\xbf"


def looks_like_ofx(data: bytes) -> bool:
    """Whether ``data`` (a file's first bytes) is an OFX/QFX file."""
    head = data[:4096].lstrip(_BOM).lstrip()
    return (
        head.startswith(b"OFXHEADER")
        or (head.startswith(b"<?xml") and b"<?OFX" in head)
        or head.startswith(b"<OFX>")
    )


# --------------------------------------------------------------------------- reading the file


@dataclass(frozen=True)
class _Source:
    """The file, and the line its OFX body starts on."""

    path: Path
    first_line: int


class _Lines:
    """Line numbers of positions in one text (the body, or the body as patched)."""

    def __init__(self, text: str, first_line: int) -> None:
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        self._first = first_line

    def at(self, pos: int) -> int:
        return self._first + bisect.bisect_left(self._newlines, pos)


def _prepare(path: Path, data: bytes, options: OfxOptions) -> bytes:
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    head_end = data.find(b"<")
    head_end = len(data) if head_end < 0 else head_end
    header = data[:head_end]
    if options.encoding is not None:
        try:
            text = data.decode(options.encoding)
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise StatementError(
                path, line, f"not valid {options.encoding} (the ofx.encoding option)"
            ) from None
        data = text.encode("utf-8")
        header = data[:head_end]
        if b"OFXHEADER" in header:
            header = _CHARSET_RE.sub(rb"\1NONE", header, count=1)
        return header + data[head_end:]

    def alias(m: re.Match[bytes]) -> bytes:
        value = m[2].decode("ascii").upper()
        return m[1] + _CHARSET_ALIASES.get(value, value).encode("ascii")

    if b"OFXHEADER" in header:
        header = _CHARSET_RE.sub(alias, header, count=1)
    return header + data[head_end:]


def _read(path: Path, data: bytes, options: OfxOptions) -> tuple[_Source, str]:
    """The decoded file and the OFX body (from ``<OFX>``)."""
    data = _prepare(path, data, options)
    try:
        header, body = parse_header(io.BytesIO(data))
    except OFXHeaderError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "malformed"
        first = first.replace(" - ", ": ", 1)[:200]
        raise StatementError(
            path,
            1,
            f"not a readable OFX header ({first}); expected OFXHEADER:100 ... or "
            '<?OFX OFXHEADER="200" ...?>',
        ) from None
    except UnicodeDecodeError as exc:
        line: int | None = None
        try:
            data.decode(exc.encoding)
        except UnicodeDecodeError as full:
            line = data.count(b"\n", 0, full.start) + 1
        raise StatementError(
            path,
            line,
            f"not valid {exc.encoding} text, the charset the header declares: set the option "
            "ofx.encoding (cp1252, latin-1 or utf-8) to the one the bank uses",
        ) from None
    codec = getattr(header, "codec", "utf_8")
    text = data.decode(codec)
    offset = max(text.find(body) if body else 0, 0)
    return _Source(path, text.count("\n", 0, offset) + 1), body


_TOKEN_RE = re.compile(
    r"<!\[CDATA\[.*?\]\]>|<!--.*?-->|<(?P<close>/?)(?P<tag>[^<>/\s]*)\s*(?P<empty>/?)>|<",
    re.DOTALL,
)
_TAG_RE = re.compile(r"^[A-Z0-9][A-Z0-9._]*$")


def _data_elements() -> frozenset[str]:
    """The OFX data elements (leaves: NAME, MEMO, TRNAMT, ...) ofxtools' models know."""
    out: set[str] = set()
    for name in dir(ofxtools.models):
        cls = getattr(ofxtools.models, name)
        if name.isupper() and isinstance(cls, type) and issubclass(cls, Aggregate):
            out.update(k.upper() for k in cls.elements)
    return frozenset(out)


_DATA_ELEMENTS = _data_elements()


def _check_structure(src: _Source, body: str) -> tuple[list[int], str]:
    """Refuse an unbalanced body, naming the line. Returns the line of each start tag, in
    order, and the body with each empty SGML data element (``<MEMO>`` followed by the
    next tag: real 1.x files have them) closed, so that it does not swallow what follows."""
    lines = _Lines(body, src.first_line)
    starts: list[int] = []
    closes_at: list[tuple[int, str]] = []
    stack: list[tuple[str, int]] = []
    tokens = list(_TOKEN_RE.finditer(body))
    i = 0
    while i < len(tokens):
        m = tokens[i]
        i += 1
        if m.group(0).startswith(("<![CDATA[", "<!--")):
            continue
        line = lines.at(m.start())
        tag = m.group("tag")
        if tag is None:
            raise StatementError(src.path, line, "a '<' that starts no tag")
        if not _TAG_RE.match(tag):
            raise StatementError(
                src.path, line, f"<{m.group('close')}{tag}> is not an OFX tag (upper case)"
            )
        if m.group("close"):
            if stack and stack[-1][0] == tag:
                stack.pop()
                continue
            if stack:
                raise StatementError(
                    src.path,
                    line,
                    f"</{tag}> while <{stack[-1][0]}> (line {stack[-1][1]}) is not closed",
                )
            raise StatementError(src.path, line, f"</{tag}> closes nothing")
        starts.append(line)
        if m.group("empty"):
            continue
        nxt = tokens[i] if i < len(tokens) else None
        text = body[m.end() : nxt.start() if nxt else len(body)]
        if text.strip():  # a data element; its closing tag is optional in OFX 1.x
            if nxt is not None and nxt.group("close") and nxt.group("tag") == tag:
                i += 1
            continue
        if nxt is not None and nxt.group("close") and nxt.group("tag") == tag:
            i += 1  # an empty element or aggregate: <MEMO></MEMO>
            continue
        if tag in _DATA_ELEMENTS:
            closes_at.append((m.end(), tag))  # an empty data element without its end tag
            continue
        stack.append((tag, line))
    if stack:
        tag, line = stack[-1]
        raise StatementError(src.path, line, f"<{tag}> is never closed")
    patched: list[str] = []
    last = 0
    for pos, tag in closes_at:
        patched.append(body[last:pos])
        patched.append(f"</{tag}>")
        last = pos
    patched.append(body[last:])
    return starts, "".join(patched)


def _tree(src: _Source, body: str) -> tuple[ET.Element, dict[int, int]]:
    starts, body = _check_structure(src, body)
    builder = TreeBuilder()
    try:
        builder.feed(body)
        root = builder.close()
    except ParseError as exc:
        msg = str(exc.args[0]) if exc.args else "unreadable"
        m = re.search(r"position=\[(\d+):\d+\]", msg)
        line = _Lines(body, src.first_line).at(int(m[1])) if m else None
        what = msg.split(" in ", 1)[0] if "Tail text" in msg else msg.split(" - position")[0]
        raise StatementError(src.path, line, f"unreadable OFX: {what[:200]}") from None
    except (IndexError, AssertionError):
        raise StatementError(src.path, None, "unreadable OFX: unbalanced tags") from None
    if not isinstance(root, ET.Element) or root.tag != "OFX":
        raise StatementError(src.path, 1, "the file holds no <OFX> element")
    elements = list(root.iter())
    lines = {id(e): ln for e, ln in zip(elements, starts, strict=False)}
    if len(elements) != len(starts):
        lines = {}
    return root, lines


# --------------------------------------------------------------------------- values


#: Entities OFX files write besides XML's own (``&amp;``, ``&lt;``, ``&gt;``).
_ENTITIES = {"&nbsp;": " ", "&apos;": "'", "&quot;": '"'}
_DT_RE = re.compile(
    r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})"
    r"(?:(?P<H>\d{2})(?P<M>\d{2})(?:(?P<S>\d{2})(?:\.(?P<f>\d{1,6}))?)?)?"
    r"\s*(?:\[\s*(?P<off>[+-]?\d{1,2}(?:[.:]\d{2}(?=[\]:]|$))?)?\s*(?::\s*(?P<tz>[^\]]*))?\])?$"
)
_AMOUNT_RE = re.compile(r"^[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)$")


@dataclass(frozen=True)
class _When:
    day: date
    utc: datetime | None


class _Reader:
    """Values of one file's element tree, with the line of each element for errors."""

    def __init__(self, path: Path, lines: dict[int, int]) -> None:
        self.path = path
        self.lines = lines

    def line(self, elem: ET.Element | None) -> int | None:
        return self.lines.get(id(elem)) if elem is not None else None

    def error(self, elem: ET.Element | None, message: str) -> StatementError:
        return StatementError(self.path, self.line(elem), message)

    def child(self, parent: ET.Element, tag: str, *, where: str) -> ET.Element:
        found = parent.find(tag)
        if found is None:
            raise self.error(parent, f"<{parent.tag}> has no <{tag}> ({where})")
        return found

    def text(self, parent: ET.Element, tag: str) -> str | None:
        """The element's text, its entities (``&amp;``, ``&lt;``, ``&nbsp;``) read."""
        found = parent.find(tag)
        if found is None or found.text is None or not found.text.strip():
            return None
        return unescape(found.text, _ENTITIES).strip() or None

    def required_text(self, parent: ET.Element, tag: str) -> str:
        value = self.text(parent, tag)
        if value is None:
            raise self.error(parent, f"<{parent.tag}> has no <{tag}>")
        return value

    def amount(self, parent: ET.Element, tag: str) -> Decimal | None:
        found = parent.find(tag)
        value = self.text(parent, tag)
        if value is None:
            return None
        if not _AMOUNT_RE.match(value):
            raise self.error(found, f"<{tag}> {value!r} is not a number")
        try:
            d = Decimal(value.replace(",", "."))
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            raise self.error(found, f"<{tag}> {value!r} is not a number") from None
        exponent = d.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_SCALE:
            raise self.error(found, f"<{tag}> {value!r} has more than {MAX_SCALE} decimals")
        return d + 0

    def required_amount(self, parent: ET.Element, tag: str) -> Decimal:
        value = self.amount(parent, tag)
        if value is None:
            raise self.error(parent, f"<{parent.tag}> has no <{tag}>")
        return value

    def when(self, parent: ET.Element, tag: str) -> _When | None:
        found = parent.find(tag)
        value = self.text(parent, tag)
        if value is None:
            return None
        m = _DT_RE.match(value)
        bad = f"<{tag}> {value!r} is not an OFX date (YYYYMMDD[HHMMSS[.XXX]][[offset:TZ]])"
        if not m:
            raise self.error(found, bad)
        try:
            day = date(int(m["y"]), int(m["m"]), int(m["d"]))
            if m["H"] is None:
                return _When(day, None)
            local = datetime(
                day.year,
                day.month,
                day.day,
                int(m["H"]),
                int(m["M"]),
                min(int(m["S"] or 0), 59),
                int((m["f"] or "0").ljust(6, "0")),
            )
        except ValueError:
            raise self.error(found, bad) from None
        off = m["off"]
        if off is None and m["tz"]:
            return _When(day, None)  # a zone name without an offset: the instant is unknown
        offset = timedelta(0)
        if off:
            sign = -1 if off.startswith("-") else 1
            hours, _, minutes = off.lstrip("+-").replace(":", ".").partition(".")
            offset = sign * timedelta(hours=int(hours), minutes=int(minutes or 0))
        return _When(day, local - offset)


# --------------------------------------------------------------------------- statements


@dataclass
class _Context:
    reader: _Reader
    options: OfxOptions
    server_time: _When | None
    securities: dict[str, tuple[str | None, str, str]]  # id -> (ticker, name, asset type)
    warnings: list[str]
    #: the line of each transaction read (for the messages about repeated ids)
    txn_lines: dict[int, int | None] = field(default_factory=dict)


def parse_ofx(
    path: Path, data: bytes, options: OfxOptions
) -> tuple[tuple[StatementAccount, ...], str | None, tuple[str, ...]]:
    """The accounts of an OFX/QFX file, its institution (FI/ORG) and warnings.

    Raises :class:`StatementError` naming the file, the line and the element."""
    src, body = _read(path, data, options)
    root, lines = _tree(src, body)
    reader = _Reader(path, lines)
    sonrs = root.find("SIGNONMSGSRSV1/SONRS")
    server_time = None
    institution = None
    if sonrs is not None:
        _check_status(reader, sonrs, "the sign-on")
        server_time = reader.when(sonrs, "DTSERVER")
        institution = reader.text(sonrs, "FI/ORG") if sonrs.find("FI") is not None else None
    ctx = _Context(reader, options, server_time, _securities(reader, root), [])
    accounts: list[StatementAccount] = []
    found = False
    for wrapper_tag, stmt_tag in (
        ("STMTTRNRS", "STMTRS"),
        ("CCSTMTTRNRS", "CCSTMTRS"),
        ("INVSTMTTRNRS", "INVSTMTRS"),
    ):
        for wrapper in root.iter(wrapper_tag):
            found = True
            stmt = wrapper.find(stmt_tag)
            if stmt is None:
                _check_status(reader, wrapper, "the statement")
                raise reader.error(wrapper, f"<{wrapper_tag}> holds no <{stmt_tag}>")
            if stmt_tag == "INVSTMTRS":
                accounts.append(_investment_statement(ctx, stmt))
            else:
                accounts.append(_bank_statement(ctx, stmt, credit_card=stmt_tag == "CCSTMTRS"))
    if not found:
        raise StatementError(
            path, None, "the file holds no statement (STMTRS, CCSTMTRS or INVSTMTRS)"
        )
    seen: set[str] = set()
    for acc in accounts:
        if acc.sub_account.id in seen:
            raise StatementError(path, None, f"the file holds account {acc.sub_account.id!r} twice")
        seen.add(acc.sub_account.id)
    return tuple(accounts), institution, tuple(ctx.warnings)


def _check_status(reader: _Reader, parent: ET.Element, what: str) -> None:
    status = parent.find("STATUS")
    if status is None:
        return
    code = reader.text(status, "CODE")
    if code is not None and code != "0":
        message = reader.text(status, "MESSAGE")
        raise reader.error(
            status,
            f"the bank answered with an error for {what}: code {code}"
            + (f" ({message[:200]})" if message else ""),
        )


def _securities(reader: _Reader, root: ET.Element) -> dict[str, tuple[str | None, str, str]]:
    out: dict[str, tuple[str | None, str, str]] = {}
    for seclist in root.iter("SECLIST"):
        for info in seclist:
            secinfo = info.find("SECINFO")
            if secinfo is None:
                continue
            secid = secinfo.find("SECID")
            if secid is None:
                continue
            uid = reader.text(secid, "UNIQUEID")
            if uid is None:
                continue
            name = reader.text(secinfo, "SECNAME") or uid
            out[uid] = (reader.text(secinfo, "TICKER"), name, SECINFO_TYPES.get(info.tag, "other"))
    return out


def _currency(ctx: _Context, stmt: ET.Element) -> str:
    ccy = ctx.reader.required_text(stmt, "CURDEF").upper()
    if not is_iso_currency(ccy):
        raise ctx.reader.error(stmt.find("CURDEF"), f"<CURDEF> {ccy!r} is not an ISO 4217 code")
    return ccy


def _dated_balance(
    ctx: _Context, agg: ET.Element, amount: Decimal, period_end: _When | None
) -> Balance:
    asof = ctx.reader.when(agg, "DTASOF")
    if asof is not None:
        return Balance(amount, asof.day, asof.utc, "DTASOF")
    for fallback, source in ((period_end, "DTEND"), (ctx.server_time, "DTSERVER")):
        if fallback is not None:
            return Balance(amount, fallback.day, fallback.utc, source)
    raise ctx.reader.error(
        agg, f"<{agg.tag}> has no <DTASOF>, and the file no DTEND or DTSERVER to date it by"
    )


def _name(ctx: _Context, acctid: str, label: str) -> str:
    given = ctx.options.account_names.get(acctid)
    if given:
        return given
    return f"{label} {acctid}" if len(acctid) <= 4 else f"{label} ...{acctid[-4:]}"


def _period(ctx: _Context, tranlist: ET.Element | None) -> tuple[_When | None, _When | None]:
    if tranlist is None:
        return None, None
    return ctx.reader.when(tranlist, "DTSTART"), ctx.reader.when(tranlist, "DTEND")


def _bank_statement(ctx: _Context, stmt: ET.Element, *, credit_card: bool) -> StatementAccount:
    r = ctx.reader
    ccy = _currency(ctx, stmt)
    acct = r.child(stmt, "CCACCTFROM" if credit_card else "BANKACCTFROM", where="the account")
    acctid = r.required_text(acct, "ACCTID")
    if credit_card:
        account_type, label = "credit", "Credit card"
    else:
        accttype = (r.text(acct, "ACCTTYPE") or "CHECKING").upper()
        account_type, label = BANK_ACCOUNT_TYPES.get(accttype, ("depository", accttype.title()))
    sub = SubAccount(acctid, _name(ctx, acctid, label), ccy, account_type, ())
    tranlist = stmt.find("BANKTRANLIST")
    start, end = _period(ctx, tranlist)
    txns: list[Transaction] = []
    removed: list[str] = []
    keys = ContentKeys(acctid)
    if tranlist is not None:
        for trn in tranlist.findall("STMTTRN"):
            _bank_transaction(ctx, trn, sub, keys, txns, removed)
    txns = _unique_ids(ctx, sub, txns)
    sign = Decimal(-1) if ctx.options.invert_amounts else Decimal(1)
    balances: dict[str, Balance | None] = {}
    for tag in ("LEDGERBAL", "AVAILBAL"):
        agg = stmt.find(tag)
        balances[tag] = (
            _dated_balance(ctx, agg, sign * r.required_amount(agg, "BALAMT") + 0, end)
            if agg is not None
            else None
        )
    _sign_warning(ctx, sub, tranlist)
    return StatementAccount(
        sub_account=sub,
        period_start=start.day if start else None,
        period_end=end.day if end else None,
        transactions=tuple(txns),
        ledger_balance=balances["LEDGERBAL"],
        available_balance=balances["AVAILBAL"],
        removed_transaction_ids=tuple(removed),
    )


def _description(*parts: str | None) -> str:
    out: list[str] = []
    for p in parts:
        if p and normalise_text(p) and normalise_text(p) not in out:
            out.append(normalise_text(p))
    return " - ".join(out)


def _converted(ctx: _Context, trn: ET.Element, amount: Decimal, ccy: str) -> Decimal:
    """The amount in the account's currency: a <CURRENCY> aggregate says the amount is
    in another currency, CURRATE converting it (ORIGCURRENCY: already converted)."""
    cur = trn.find("CURRENCY")
    if cur is None:
        return amount
    rate = ctx.reader.required_amount(cur, "CURRATE")
    sym = (ctx.reader.text(cur, "CURSYM") or ccy).upper()
    if sym == ccy:
        return amount
    product = amount * rate
    exponent = product.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_SCALE:
        product = product.quantize(Decimal(1).scaleb(-MAX_SCALE))
    return product + 0


def _bank_transaction(
    ctx: _Context,
    trn: ET.Element,
    sub: SubAccount,
    keys: ContentKeys,
    out: list[Transaction],
    removed: list[str],
) -> None:
    r = ctx.reader
    trntype = r.required_text(trn, "TRNTYPE").upper()
    if trntype not in TRNTYPE_KINDS:
        raise r.error(
            trn.find("TRNTYPE"),
            f"<TRNTYPE> {trntype!r} is not one of {', '.join(TRNTYPE_KINDS)}",
        )
    posted = r.when(trn, "DTPOSTED")
    if posted is None:
        raise r.error(trn, "<STMTTRN> has no <DTPOSTED>")
    amount = _converted(ctx, trn, r.required_amount(trn, "TRNAMT"), sub.currency)
    if ctx.options.invert_amounts:
        amount = -amount + 0
    correct_id = r.text(trn, "CORRECTFITID")
    action = (r.text(trn, "CORRECTACTION") or "").upper()
    if correct_id is not None and action == "DELETE":
        removed.append(bank_id(sub.id, correct_id))
        return
    payee = trn.find("PAYEE")
    name = r.text(trn, "NAME") or (r.text(payee, "NAME") if payee is not None else None)
    memo = r.text(trn, "MEMO")
    checknum = r.text(trn, "CHECKNUM")
    description = _description(r.text(trn, "EXTDNAME") or name, memo)
    if not description:
        description = f"{trntype.title()} {checknum}" if checknum else trntype.title()
    kind, direction = TRNTYPE_KINDS[trntype]
    if direction and amount != 0 and (amount > 0) != (direction > 0):
        kind = "deposit" if amount > 0 else "withdrawal"
    fitid = r.text(trn, "FITID")
    if fitid is None:
        txn_id = keys.next(posted.day, amount, description)
        ctx.warnings.append(
            f"line {r.line(trn)}: a transaction without FITID: its id is made of its date, "
            "amount and description"
        )
    else:
        txn_id = bank_id(sub.id, fitid)
    if correct_id is not None and action == "REPLACE":
        removed.append(bank_id(sub.id, correct_id))
    user = r.when(trn, "DTUSER")
    out.append(
        Transaction(
            id=txn_id,
            sub_account_id=sub.id,
            amount=amount,
            currency=sub.currency,
            description=description,
            kind=kind,
            posted=posted.day,
            authorized=user.day if user else None,
            merchant=normalise_text(name) if name else None,
        )
    )
    ctx.txn_lines[id(out[-1])] = r.line(trn)


def _unique_ids(ctx: _Context, sub: SubAccount, txns: list[Transaction]) -> list[Transaction]:
    """One transaction per id: a FITID the file repeats for the same transaction is
    kept once; one it reuses for different transactions gets each its content hash."""
    groups: dict[str, list[Transaction]] = defaultdict(list)
    for t in txns:
        groups[t.id].append(t)
    out: list[Transaction] = []
    done: set[str] = set()
    for t in txns:
        group = groups[t.id]
        if len(group) == 1:
            out.append(t)
            continue
        if t.id in done:
            continue
        done.add(t.id)
        distinct: dict[tuple[object, ...], Transaction] = {}
        for g in group:
            distinct.setdefault((g.posted, g.amount, g.description, g.kind, g.units), g)
        lines = ", ".join(str(ctx.txn_lines.get(id(g))) for g in group)
        if len(distinct) == 1:
            out.append(group[0])
            ctx.warnings.append(
                f"{sub.id}: transaction {t.id!r} is listed {len(group)} times (lines {lines}); "
                "kept once"
            )
            continue
        keys = ContentKeys(t.id)
        for g in group:
            assert g.posted is not None
            new_id = keys.next(g.posted, g.amount, g.description)
            out.append(replace(g, id=new_id))
        ctx.warnings.append(
            f"{sub.id}: FITID {t.id.split(':', 1)[1]!r} is used by {len(group)} different "
            f"transactions (lines {lines}); each id gets its content key"
        )
    return out


#: The types whose direction is never in doubt (a PAYMENT into a card is positive).
_CLEAR_DIRECTIONS = {
    "CREDIT": 1,
    "DEP": 1,
    "DIRECTDEP": 1,
    "DEBIT": -1,
    "POS": -1,
    "ATM": -1,
    "CHECK": -1,
    "DIRECTDEBIT": -1,
}


def _sign_warning(ctx: _Context, sub: SubAccount, tranlist: ET.Element | None) -> None:
    if tranlist is None or ctx.options.invert_amounts:
        return
    against = agreeing = 0
    for trn in tranlist.findall("STMTTRN"):
        trntype = (ctx.reader.text(trn, "TRNTYPE") or "").upper()
        direction = _CLEAR_DIRECTIONS.get(trntype, 0)
        amount = ctx.reader.amount(trn, "TRNAMT")
        if not direction or not amount:
            continue
        if (amount > 0) == (direction > 0):
            agreeing += 1
        else:
            against += 1
    if against >= 3 and agreeing == 0:
        ctx.warnings.append(
            f"{sub.id}: every debit is positive and every credit negative: if the bank writes "
            "money out as positive, set the option ofx.invert_amounts"
        )


# --------------------------------------------------------------------------- investments


def _investment_statement(ctx: _Context, stmt: ET.Element) -> StatementAccount:
    r = ctx.reader
    ccy = _currency(ctx, stmt)
    acct = r.child(stmt, "INVACCTFROM", where="the account")
    acctid = r.required_text(acct, "ACCTID")
    sub = SubAccount(acctid, _name(ctx, acctid, "Investment"), ccy, "investment", ())
    tranlist = stmt.find("INVTRANLIST")
    start, end = _period(ctx, tranlist)
    asof = r.when(stmt, "DTASOF")
    statement_date = asof or end or ctx.server_time
    txns: list[Transaction] = []
    removed: list[str] = []
    keys = ContentKeys(acctid)
    if tranlist is not None:
        for trn in tranlist:
            _investment_transaction(ctx, trn, sub, keys, txns, removed)
    txns = _unique_ids(ctx, sub, txns)
    positions: list[Position] = []
    poslist = stmt.find("INVPOSLIST")
    if poslist is not None:
        for pos in poslist:
            if pos.tag in POSITION_TYPES:
                positions.append(_position(ctx, pos, ccy))
    balances: dict[str, Balance | None] = {"AVAILCASH": None, "MARGINBALANCE": None}
    balances["SHORTBALANCE"] = None
    invbal = stmt.find("INVBAL")
    if invbal is not None:
        for tag in balances:
            amount = r.amount(invbal, tag)
            if amount is not None:
                if statement_date is None:
                    raise r.error(
                        stmt, "<INVSTMTRS> has no <DTASOF>, and the file no DTEND or DTSERVER"
                    )
                source = "DTASOF" if asof else ("DTEND" if end else "DTSERVER")
                balances[tag] = Balance(amount, statement_date.day, statement_date.utc, source)
    if positions and statement_date is None:
        raise r.error(stmt, "<INVSTMTRS> has no <DTASOF>, and the file no DTEND or DTSERVER")
    return StatementAccount(
        sub_account=sub,
        period_start=start.day if start else None,
        period_end=end.day if end else None,
        transactions=tuple(txns),
        cash_balance=balances["AVAILCASH"],
        margin_balance=balances["MARGINBALANCE"],
        short_balance=balances["SHORTBALANCE"],
        positions=tuple(positions),
        positions_as_of=statement_date.day if statement_date and positions else None,
        removed_transaction_ids=tuple(removed),
    )


def _security(ctx: _Context, parent: ET.Element) -> tuple[str, str, str | None, str, str]:
    """(unique id, id type, ticker, name, asset type) of ``parent``'s SECID."""
    r = ctx.reader
    secid = r.child(parent, "SECID", where="the security")
    uid = r.required_text(secid, "UNIQUEID")
    uid_type = r.text(secid, "UNIQUEIDTYPE") or "OTHER"
    ticker, name, asset_type = ctx.securities.get(uid, (None, uid, "other"))
    return uid, uid_type, ticker, name, asset_type


def _position(ctx: _Context, pos: ET.Element, ccy: str) -> Position:
    r = ctx.reader
    invpos = r.child(pos, "INVPOS", where="the position")
    uid, uid_type, ticker, name, _ = _security(ctx, invpos)
    units = r.required_amount(invpos, "UNITS")
    price = r.required_amount(invpos, "UNITPRICE")
    value = r.required_amount(invpos, "MKTVAL")
    if (r.text(invpos, "POSTYPE") or "LONG").upper() == "SHORT":
        units, value = -abs(units), -abs(value)
    cur = invpos.find("CURRENCY")
    own = (r.text(cur, "CURSYM") or ccy).upper() if cur is not None else ccy
    priced = r.when(invpos, "DTPRICEASOF")
    return Position(
        security_id=uid,
        security_id_type=uid_type,
        symbol=ticker,
        name=name,
        asset_type=POSITION_TYPES[pos.tag],
        units=units,
        unit_price=price,
        market_value=value,
        currency=own,
        price_as_of=priced.day if priced else None,
        held_in=r.text(invpos, "HELDINACCT"),
    )


def _investment_transaction(
    ctx: _Context,
    trn: ET.Element,
    sub: SubAccount,
    keys: ContentKeys,
    out: list[Transaction],
    removed: list[str],
) -> None:
    r = ctx.reader
    tag = trn.tag
    if tag in ("DTSTART", "DTEND") or "." in tag:
        return
    if tag == "INVBANKTRAN":
        stmttrn = r.child(trn, "STMTTRN", where="the cash transaction")
        _bank_transaction(ctx, stmttrn, sub, keys, out, removed)
        return
    if tag in ("JRNLFUND", "JRNLSEC"):
        ctx.warnings.append(
            f"line {r.line(trn)}: <{tag}> (a move between the account's own cash and margin "
            "sub-accounts) is left out"
        )
        return
    body = trn
    if tag in BUY_TAGS or tag in SELL_TAGS:
        body = r.child(trn, "INVBUY" if tag in BUY_TAGS else "INVSELL", where="the trade")
    known = (*BUY_TAGS, *SELL_TAGS, "INCOME", "REINVEST", "INVEXPENSE", "MARGININTEREST")
    if tag not in (*known, "RETOFCAP", "TRANSFER", "SPLIT", "CLOSUREOPT"):
        ctx.warnings.append(f"line {r.line(trn)}: <{tag}> is not a known transaction: left out")
        return
    invtran = r.child(body, "INVTRAN", where="the transaction's id and date")
    fitid = r.required_text(invtran, "FITID")
    traded = r.when(invtran, "DTTRADE")
    if traded is None:
        raise r.error(invtran, "<INVTRAN> has no <DTTRADE>")
    memo = r.text(invtran, "MEMO")
    uid = ticker = name = None
    if body.find("SECID") is not None:
        uid, _, ticker, name, _ = _security(ctx, body)
    symbol = ticker or uid

    def total() -> Decimal:
        return abs(_converted(ctx, body, r.required_amount(body, "TOTAL"), sub.currency))

    def units() -> Decimal:
        return abs(r.required_amount(body, "UNITS"))

    def add(kind: str, amount: Decimal, n: Decimal | None, suffix: str = "") -> None:
        label = {"buy": "Buy", "sell": "Sell"}.get(kind, kind.title())
        what = " ".join(x for x in (label, amount_text(n) if n else None, name) if x)
        out.append(
            Transaction(
                id=bank_id(sub.id, fitid + suffix),
                sub_account_id=sub.id,
                amount=amount + 0,
                currency=sub.currency,
                description=_description(memo) or what,
                kind=kind,
                posted=traded.day,
                symbol=symbol,
                units=n,
            )
        )
        ctx.txn_lines[id(out[-1])] = r.line(trn)

    if tag in BUY_TAGS:
        add("buy", -total(), units())
    elif tag in SELL_TAGS:
        add("sell", total(), -units())
    elif tag == "INCOME":
        income = INCOME_KINDS.get((r.text(body, "INCOMETYPE") or "MISC").upper(), "other")
        add(income, total(), None)
    elif tag == "REINVEST":
        reinvested = INCOME_KINDS.get((r.text(body, "INCOMETYPE") or "DIV").upper(), "dividend")
        add(reinvested, total(), None)
        add("buy", -total(), units(), ":reinvest")
    elif tag == "INVEXPENSE":
        add("fee", -total(), None)
    elif tag == "MARGININTEREST":
        add("interest", -total(), None)
    elif tag == "RETOFCAP":
        add("other", total(), None)
    elif tag == "TRANSFER":
        direction = (r.text(body, "TFERACTION") or "IN").upper()
        n = units()
        add("transfer", Decimal(0), n if direction == "IN" else -n)
    elif tag == "SPLIT":
        add(
            "other",
            Decimal(0),
            r.required_amount(body, "NEWUNITS") - r.required_amount(body, "OLDUNITS"),
        )
    else:  # CLOSUREOPT
        add("other", Decimal(0), r.required_amount(body, "UNITS"))
