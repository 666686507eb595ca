"""Statement files (OFX/QFX, CSV) read by the ``statements`` provider's parsing layer.

Fixtures are in ``data/statements/`` (each names its source). Expected numbers are
worked out by hand from the fixtures, never read back from the parser.
"""

from __future__ import annotations

import hashlib
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from finbot_pipelines.providers.contract import TRANSACTION_KINDS, Snapshot, Transaction
from finbot_pipelines.providers.statements.csvfile import parse_number
from finbot_pipelines.providers.statements.mapping import (
    statement_date,
    sub_account_at_statement_date,
)
from finbot_pipelines.providers.statements.model import Statement, StatementError
from finbot_pipelines.providers.statements.options import (
    CSV_PRESETS,
    CsvOptions,
    StatementsOptions,
)
from finbot_pipelines.providers.statements.parse import parse_statement

DATA = Path(__file__).parent / "data" / "statements"
D = Decimal


def opts(**kwargs: Any) -> StatementsOptions:
    return StatementsOptions.model_validate(kwargs)


def csv_opts(preset: str | None = None, **kwargs: Any) -> StatementsOptions:
    csv = dict(kwargs)
    if preset is not None:
        csv["preset"] = preset
    return opts(csv=csv)


def line_of(path: Path, needle: str, encoding: str = "utf-8", nth: int = 0) -> int:
    """The 1-based line of the ``nth`` line holding ``needle`` (found by the test itself)."""
    lines = path.read_bytes().decode(encoding).splitlines()
    hits = [i + 1 for i, text in enumerate(lines) if needle in text]
    return hits[nth]


def by_id(statement: Statement) -> dict[str, Transaction]:
    return {t.id: t for t in statement.transactions}


def write_variant(
    tmp_path: Path, source: str, old: str, new: str, *, encoding: str = "utf-8", count: int = 1
) -> Path:
    """A copy of the fixture ``source`` with ``old`` replaced by ``new``."""
    text = (DATA / source).read_bytes().decode(encoding)
    assert old in text, old
    out = tmp_path / source
    out.write_bytes(text.replace(old, new, count).encode(encoding))
    return out


def assert_error(
    exc: pytest.ExceptionInfo[StatementError], path: Path, line: int | None, *words: str
) -> None:
    err = exc.value
    assert err.file == path
    assert err.line == line, str(err)
    text = str(err)
    assert str(path) in text
    if line is not None:
        assert f"line {line}" in text
    for w in words:
        assert w in text, (w, text)


# --------------------------------------------------------------------------- OFX


def test_ofx_102_sgml_bank_statement() -> None:
    path = DATA / "bank_ofx102_sgml.ofx"
    st = parse_statement(path)
    assert st.format == "ofx"
    assert st.institution == "NCH"
    assert st.warnings == ()
    assert st.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    (acc,) = st.accounts
    sub = acc.sub_account
    assert (sub.id, sub.currency, sub.account_type) == ("999988", "USD", "depository")
    assert "9988" in sub.name
    assert (acc.period_start, acc.period_end) == (date(2005, 10, 1), date(2005, 10, 28))
    # LEDGERBAL 200.29 / AVAILBAL 150.29 at DTASOF 200510291120 (no offset: GMT)
    assert acc.ledger_balance is not None and acc.available_balance is not None
    assert acc.ledger_balance.amount == D("200.29")
    assert acc.ledger_balance.as_of == date(2005, 10, 29)
    assert acc.ledger_balance.as_of_utc == datetime(2005, 10, 29, 11, 20)
    assert acc.ledger_balance.source == "DTASOF"
    assert acc.available_balance.amount == D("150.29")
    txns = by_id(st)
    expected = {
        # FITID: (amount, kind, posted)
        "00002": (D("-200.00"), "withdrawal", date(2005, 10, 4)),
        "00003": (D("-300.00"), "withdrawal", date(2005, 10, 20)),
        "00004": (D("1250.75"), "deposit", date(2005, 10, 21)),
        # 22:30 EST is 03:30 UTC the next day: the date is the bank's own
        "00005": (D("-4.35"), "withdrawal", date(2005, 10, 24)),
        # a POS with a positive amount is a refund: a deposit
        "00006": (D("15.00"), "deposit", date(2005, 10, 26)),
        "00007": (D("-5.00"), "fee", date(2005, 10, 27)),
        "00008": (D("0.29"), "interest", date(2005, 10, 28)),
    }
    assert set(txns) == {f"999988:{k}" for k in expected}
    for fitid, (amount, kind, posted) in expected.items():
        t = txns[f"999988:{fitid}"]
        assert (t.amount, t.kind, t.posted, t.currency) == (amount, kind, posted, "USD")
        assert t.sub_account_id == "999988" and not t.pending
        t.validate()
    # -200 - 300 + 1250.75 - 4.35 + 15 - 5 + 0.29
    assert sum(t.amount for t in txns.values()) == D("756.69")
    assert "1000" in txns["999988:00002"].description  # a check without a name: its number
    assert txns["999988:00003"].authorized == date(2005, 10, 20)
    pay = txns["999988:00004"]
    assert pay.merchant == "PAYROLL ACME CORP"
    assert "Salary October" in pay.description
    # CHARSET:1252 decoded (0xE9, 0xE8 in the file)
    assert txns["999988:00005"].merchant == "Café Crème"


def test_ofx_2_xml_bank_statement() -> None:
    st = parse_statement(DATA / "bank_ofx211_xml.ofx")
    (acc,) = st.accounts
    assert (acc.sub_account.id, acc.sub_account.currency) == ("55501234", "EUR")
    assert acc.sub_account.account_type == "depository"
    assert acc.available_balance is None
    bal = acc.ledger_balance
    assert bal is not None and bal.amount == D("10382.67")
    # 20240131235959.000[+1:CET]: the 31st in Munich, 22:59:59 UTC
    assert bal.as_of == date(2024, 1, 31)
    assert bal.as_of_utc == datetime(2024, 1, 31, 22, 59, 59)
    assert (acc.period_start, acc.period_end) == (date(2024, 1, 1), date(2024, 1, 31))
    txns = by_id(st)
    # the XFER's posting 20240102000000[+1] is 23:00 UTC on the 1st: still the 2nd
    xfer = txns["55501234:2024010200001"]
    assert (xfer.kind, xfer.amount, xfer.posted) == ("transfer", D("500.00"), date(2024, 1, 2))
    bill = txns["55501234:2024011500001"]
    assert bill.merchant == "Stadtwerke München"  # PAYEE/NAME, UTF-8
    assert bill.description == "Stadtwerke München - Abschlag Januar"
    assert (bill.kind, bill.amount) == ("withdrawal", D("-120.50"))
    assert txns["55501234:2024013100001"].kind == "interest"


def test_qfx_credit_card_statement() -> None:
    st = parse_statement(DATA / "creditcard.qfx")
    assert st.institution == "B1"  # INTU.BID and INTU.USERID are Quicken's: ignored
    (acc,) = st.accounts
    sub = acc.sub_account
    assert (sub.id, sub.account_type, sub.currency) == ("4111111111111111", "credit", "USD")
    assert sub.name.endswith("1111") and "4111111111111111" not in sub.name
    assert acc.ledger_balance is not None and acc.ledger_balance.amount == D("-273.56")
    assert acc.available_balance is not None and acc.available_balance.amount == D("4726.44")
    assert acc.ledger_balance.as_of == date(2024, 2, 29)
    kinds = [(t.amount, t.kind) for t in acc.transactions]
    assert kinds == [
        (D("-45.67"), "withdrawal"),
        (D("-1234.56"), "withdrawal"),
        (D("45.67"), "deposit"),  # the refund (CREDIT)
        (D("1000.00"), "deposit"),  # the card payment (PAYMENT, money into the card)
        (D("-39.00"), "fee"),
    ]
    assert all(t.id.startswith("4111111111111111:2024") for t in acc.transactions)
    # purchases, the refund, the payment and the fee: -45.67 - 1234.56 + 45.67 + 1000 - 39
    assert sum(t.amount for t in acc.transactions) == D("-273.56")


def test_ofx_investment_statement() -> None:
    st = parse_statement(DATA / "investment.ofx")
    (acc,) = st.accounts
    assert (acc.sub_account.id, acc.sub_account.account_type) == ("999988", "investment")
    assert (acc.period_start, acc.period_end) == (date(2005, 8, 24), date(2005, 8, 28))
    assert acc.positions_as_of == date(2005, 8, 27)
    assert acc.cash_balance is not None and acc.cash_balance.amount == D("200.00")
    assert acc.cash_balance.as_of == date(2005, 8, 27)
    assert acc.margin_balance is not None and acc.margin_balance.amount == D("-50.00")
    assert acc.short_balance is not None and acc.short_balance.amount == 0
    positions = {p.symbol: p for p in acc.positions}
    assert set(positions) == {"ACME", "LUAXX", "TIFX"}
    acme = positions["ACME"]
    assert (acme.security_id, acme.security_id_type) == ("123456789", "CUSIP")
    assert acme.name == "Acme Development, Inc."
    assert (acme.asset_type, acme.units, acme.unit_price) == ("stock", D("200"), D("49.50"))
    assert acme.market_value == D("9900.00") == acme.units * acme.unit_price
    assert acme.price_as_of == date(2005, 8, 27)
    assert positions["LUAXX"].asset_type == "option"
    fund = positions["TIFX"]
    assert (fund.asset_type, fund.units, fund.market_value) == ("fund", D("10.157"), D("1181.97"))
    # positions 9900 + 500 + 1181.97
    assert sum(p.market_value for p in acc.positions) == D("11581.97")

    txns = by_id(st)
    buy = txns["999988:23321"]
    assert (buy.kind, buy.amount, buy.units, buy.symbol) == ("buy", D("-5025.00"), D("100"), "ACME")
    assert buy.posted == date(2005, 8, 25)  # DTTRADE, not DTSETTLE
    sell = txns["999988:23322"]
    assert (sell.kind, sell.amount, sell.units, sell.symbol) == (
        "sell",
        D("475.05"),
        D("-40"),
        "HACK",
    )
    div = txns["999988:23323"]
    assert (div.kind, div.amount, div.symbol, div.units) == ("dividend", D("32.40"), "ACME", None)
    # REINVEST: the dividend, and the buy it pays for (cash net 0)
    re_div, re_buy = txns["999988:23324"], txns["999988:23324:reinvest"]
    assert (re_div.kind, re_div.amount) == ("dividend", D("18.27"))
    assert (re_buy.kind, re_buy.amount, re_buy.units, re_buy.symbol) == (
        "buy",
        D("-18.27"),
        D("0.157"),
        "TIFX",
    )
    fee = txns["999988:23325"]
    assert (fee.kind, fee.amount) == ("fee", D("-15.00"))
    dep = txns["999988:12345"]
    assert (dep.kind, dep.amount, dep.posted) == ("deposit", D("1000.00"), date(2005, 8, 25))
    assert len(txns) == 7
    # cash: -5025 + 475.05 + 32.40 + 18.27 - 18.27 - 15 + 1000
    assert sum(t.amount for t in txns.values()) == D("-3532.55")


def test_every_transaction_meets_the_contract() -> None:
    statements = [
        parse_statement(DATA / name)
        for name in (
            "bank_ofx102_sgml.ofx",
            "bank_ofx211_xml.ofx",
            "creditcard.qfx",
            "investment.ofx",
        )
    ]
    for st in statements:
        ids = [t.id for t in st.transactions]
        assert len(ids) == len(set(ids))
        for t in st.transactions:
            assert isinstance(t.amount, Decimal) and t.kind in TRANSACTION_KINDS
            t.validate(frozenset(a.sub_account.id for a in st.accounts))


# --------------------------------------------------------------------------- CSV presets


def test_csv_uk_bank() -> None:
    st = parse_statement(DATA / "uk_bank_2024_01.csv", csv_opts("uk_bank", currency="GBP"))
    assert st.format == "csv"
    (acc,) = st.accounts
    assert (acc.sub_account.id, acc.sub_account.currency) == ("main", "GBP")
    assert [t.amount for t in acc.transactions] == [
        D("-23.10"),
        D("-3.20"),
        D("-3.20"),
        D("2100.00"),
        D("-150.00"),
    ]
    assert [t.kind for t in acc.transactions] == ["withdrawal"] * 3 + ["deposit", "withdrawal"]
    assert (acc.period_start, acc.period_end) == (date(2024, 1, 2), date(2024, 1, 31))
    # the last row's running balance, at its date
    assert acc.ledger_balance is not None
    assert (acc.ledger_balance.amount, acc.ledger_balance.as_of) == (
        D("3420.50"),
        date(2024, 1, 31),
    )
    assert acc.ledger_balance.source == "last row"
    # two identical coffees stay two transactions
    coffees = [t for t in acc.transactions if t.description == "COSTA COFFEE"]
    assert len(coffees) == 2 and coffees[0].id != coffees[1].id
    assert st.warnings == ()


def test_csv_uk_monzo_uses_the_banks_ids() -> None:
    st = parse_statement(DATA / "uk_monzo.csv", csv_opts("uk_monzo"))
    (acc,) = st.accounts
    assert acc.sub_account.currency == "GBP"
    got = {t.id: (t.amount, t.kind, t.posted, t.merchant, t.category) for t in acc.transactions}
    assert got == {
        "main:tx_0000AaBbCcDd1": (
            D("-4.50"),
            "withdrawal",
            date(2024, 3, 1),
            "Pret A Manger",
            "Eating out",
        ),
        "main:tx_0000AaBbCcDd2": (
            D("25.00"),
            "deposit",
            date(2024, 3, 1),
            "Alex Smith",
            "Transfers",
        ),
        "main:tx_0000AaBbCcDd3": (D("-100.00"), "transfer", date(2024, 3, 2), "Savings", "Savings"),
        "main:tx_0000AaBbCcDd4": (
            D("-4.50"),
            "withdrawal",
            date(2024, 3, 2),
            "Pret A Manger",
            "Eating out",
        ),
    }
    assert acc.ledger_balance is None  # this export has no balance column


def test_csv_fr_bank() -> None:
    st = parse_statement(
        DATA / "fr_bank.csv",
        csv_opts("fr_bank", account_id="courant", account_name="Compte courant"),
    )
    (acc,) = st.accounts
    sub = acc.sub_account
    assert (sub.id, sub.name, sub.currency) == ("courant", "Compte courant", "EUR")
    # Débit 82,40 / Crédit 2 450,00 / Débit 123,45 / Débit 4,20
    assert [t.amount for t in acc.transactions] == [
        D("-82.40"),
        D("2450.00"),
        D("-123.45"),
        D("-4.20"),
    ]
    assert acc.transactions[1].description == "VIR SALAIRE ACME SAS"
    # Solde of the last row: "4 239,95" (opening 2 000,00 - 82,40 + 2 450 - 123,45 - 4,20)
    assert acc.ledger_balance is not None
    assert (
        acc.ledger_balance.amount
        == D("4239.95")
        == D("2000.00") + sum(t.amount for t in acc.transactions)
    )
    assert acc.ledger_balance.as_of == date(2024, 3, 7)
    assert st.warnings == ()  # every running balance agrees, the no-break space included


def test_csv_us_chase_checking_newest_first() -> None:
    st = parse_statement(DATA / "us_chase_checking.csv", csv_opts("us_chase_checking"))
    (acc,) = st.accounts
    # oldest first, whatever the file's order
    assert [t.posted for t in acc.transactions] == sorted(t.posted for t in acc.transactions)
    assert [(t.amount, t.kind) for t in acc.transactions] == [
        (D("-500.00"), "transfer"),  # ACCT_XFER
        (D("-12.00"), "fee"),  # FEE_TRANSACTION
        (D("-150.00"), "withdrawal"),  # CHECK_PAID
        (D("2500.00"), "deposit"),  # ACH_CREDIT
        (D("-23.99"), "withdrawal"),  # DEBIT_CARD
    ]
    # the balance at the statement's date is the newest row's, the first in the file
    assert acc.ledger_balance is not None
    assert (acc.ledger_balance.amount, acc.ledger_balance.as_of) == (D("2406.25"), date(2024, 3, 4))
    assert acc.transactions[2].description == "CHECK 1029"
    assert st.warnings == ()


def test_csv_us_chase_credit() -> None:
    st = parse_statement(DATA / "us_chase_credit.csv", csv_opts("us_chase_credit"))
    (acc,) = st.accounts
    assert acc.sub_account.account_type == "credit"
    got = [(t.posted, t.authorized, t.amount, t.kind, t.category) for t in acc.transactions]
    assert got == [
        (date(2024, 2, 28), date(2024, 2, 27), D("12.99"), "deposit", "Shopping"),
        (date(2024, 2, 29), date(2024, 2, 28), D("350.00"), "transfer", None),
        (date(2024, 3, 2), date(2024, 3, 1), D("-42.10"), "withdrawal", "Shopping"),
        (date(2024, 3, 3), date(2024, 3, 2), D("-5.75"), "withdrawal", "Food & Drink"),
    ]
    assert acc.ledger_balance is None


def test_csv_us_amex_charges_positive() -> None:
    st = parse_statement(DATA / "us_amex.csv", csv_opts("us_amex"))
    (acc,) = st.accounts
    # written 23.45, "1,204.10", -500.00: charges positive in the file, inflow positive here
    assert [(t.posted, t.amount, t.kind) for t in acc.transactions] == [
        (date(2024, 3, 1), D("500.00"), "deposit"),
        (date(2024, 3, 3), D("-1204.10"), "withdrawal"),
        (date(2024, 3, 5), D("-23.45"), "withdrawal"),
    ]


def test_csv_columns_without_a_preset(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "Booked|Text|Out|In|Ref\n2024-05-02|Rent|1.250,00||R1\n2024-05-03|Refund||12,5|R2\n",
        encoding="utf-8",
    )
    o = csv_opts(
        columns={
            "date": "booked",
            "description": "TEXT",
            "debit": "Out",
            "credit": "In",
            "id": "Ref",
        },
        delimiter="|",
        date_format="%Y-%m-%d",
        decimal_separator=",",
        thousands_separator=".",
        currency="CHF",
        account_id="giro",
    )
    st = parse_statement(path, o)
    assert [(t.id, t.amount) for t in st.transactions] == [
        ("giro:R1", D("-1250.00")),
        ("giro:R2", D("12.5")),
    ]


# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("bank_ofx102_sgml.ofx", None),
        ("investment.ofx", None),
        ("uk_bank_2024_01.csv", {"preset": "uk_bank", "currency": "GBP"}),
        ("fr_bank.csv", {"preset": "fr_bank"}),
    ],
)
def test_reparsing_gives_the_same_ids(name: str, options: dict[str, Any] | None) -> None:
    o = opts(csv=options) if options else None
    first, second = parse_statement(DATA / name, o), parse_statement(DATA / name, o)
    assert [t.id for t in first.transactions] == [t.id for t in second.transactions]
    assert first.transactions == second.transactions
    assert first.fingerprint == second.fingerprint


def test_copied_file_has_the_same_fingerprint_and_ids(tmp_path: Path) -> None:
    copy = tmp_path / "again.qfx"
    copy.write_bytes((DATA / "creditcard.qfx").read_bytes())
    a, b = parse_statement(DATA / "creditcard.qfx"), parse_statement(copy)
    assert a.fingerprint == b.fingerprint
    assert [t.id for t in a.transactions] == [t.id for t in b.transactions]
    edited = write_variant(tmp_path, "creditcard.qfx", "LATE FEE", "LATE  FEE", encoding="cp1252")
    assert parse_statement(edited).fingerprint != a.fingerprint


def test_overlapping_csv_statements_share_ids() -> None:
    o = csv_opts("uk_bank", currency="GBP")
    jan = parse_statement(DATA / "uk_bank_2024_01.csv", o)
    feb = parse_statement(DATA / "uk_bank_2024_02.csv", o)
    jan_ids = {(t.posted, t.description): t.id for t in jan.transactions}
    feb_ids = {(t.posted, t.description): t.id for t in feb.transactions}
    shared = [
        (date(2024, 1, 15), "SALARY ACME LTD"),
        (date(2024, 1, 31), "DIRECT DEBIT COUNCIL TAX"),  # written with two spaces in feb
    ]
    for key in shared:
        assert jan_ids[key] == feb_ids[key]
    assert set(jan_ids.values()) & set(feb_ids.values()) == {jan_ids[k] for k in shared}
    # the same coffee on another day is another transaction
    feb_coffees = {t.id for t in feb.transactions if t.description == "COSTA COFFEE"}
    jan_coffees = {t.id for t in jan.transactions if t.description == "COSTA COFFEE"}
    assert len(feb_coffees) == 2 and not feb_coffees & jan_coffees


def test_overlapping_ofx_statements_share_ids(tmp_path: Path) -> None:
    """Two statements cut from the fixture: FITIDs 00002-00005 and 00004-00008."""
    text = (DATA / "bank_ofx102_sgml.ofx").read_bytes().decode("cp1252")
    head, _, rest = text.partition("<STMTTRN>")
    blocks = ["<STMTTRN>" + b for b in rest.split("<STMTTRN>")]
    tail_at = blocks[-1].index("</BANKTRANLIST>")
    tail = blocks[-1][tail_at:]
    blocks[-1] = blocks[-1][:tail_at]
    assert len(blocks) == 7
    first = tmp_path / "first.ofx"
    second = tmp_path / "second.ofx"
    first.write_bytes((head + "".join(blocks[:4]) + tail).encode("cp1252"))
    second.write_bytes((head + "".join(blocks[2:]) + tail).encode("cp1252"))
    a, b = by_id(parse_statement(first)), by_id(parse_statement(second))
    assert set(a) & set(b) == {"999988:00004", "999988:00005"}
    for shared in ("999988:00004", "999988:00005"):
        assert a[shared] == b[shared]


# --------------------------------------------------------------------------- bad files


def test_ofx_bad_date_names_the_line(tmp_path: Path) -> None:
    path = write_variant(
        tmp_path,
        "bank_ofx102_sgml.ofx",
        "<DTPOSTED>20051020",
        "<DTPOSTED>20051320",
        encoding="cp1252",
    )
    line = line_of(path, "<DTPOSTED>20051320", "cp1252")
    with pytest.raises(StatementError) as exc:
        parse_statement(path)
    assert_error(exc, path, line, "DTPOSTED", "20051320")


def test_ofx_bad_amount_names_the_line(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "bank_ofx211_xml.ofx", "<TRNAMT>3.17<", "<TRNAMT>3.1.7<")
    with pytest.raises(StatementError) as exc:
        parse_statement(path)
    assert_error(exc, path, line_of(path, "<TRNAMT>3.1.7<"), "TRNAMT", "3.1.7")


def test_unbalanced_sgml_is_refused(tmp_path: Path) -> None:
    # a transaction's closing tag lost: the next one would nest inside it
    text = (DATA / "bank_ofx102_sgml.ofx").read_bytes().decode("cp1252")
    cut = text.index("</STMTTRN>", text.index("<FITID>00005"))
    path = tmp_path / "unbalanced.ofx"
    path.write_bytes((text[:cut] + text[cut + len("</STMTTRN>\r\n") :]).encode("cp1252"))
    with pytest.raises(StatementError) as exc:
        parse_statement(path)
    opened = line_of(path, "<STMTTRN>", "cp1252", nth=3)  # FITID 00005's, now never closed
    assert_error(exc, path, line_of(path, "</BANKTRANLIST>", "cp1252"), "STMTTRN", f"line {opened}")


def test_truncated_ofx_is_refused(tmp_path: Path) -> None:
    text = (DATA / "bank_ofx211_xml.ofx").read_text(encoding="utf-8")
    path = tmp_path / "truncated.ofx"
    path.write_text(text[: text.index("<LEDGERBAL>")], encoding="utf-8")
    with pytest.raises(StatementError) as exc:
        parse_statement(path)
    assert exc.value.line is not None and "never closed" in str(exc.value)


def test_stray_closing_tag_is_refused(tmp_path: Path) -> None:
    path = write_variant(
        tmp_path,
        "creditcard.qfx",
        "</CCACCTFROM>",
        "</CCACCTFROM>\n</CCACCTFROM>",
        encoding="cp1252",
    )
    with pytest.raises(StatementError) as exc:
        parse_statement(path)
    assert_error(exc, path, line_of(path, "</CCACCTFROM>", "cp1252", nth=1), "</CCACCTFROM>")


def test_ofx_without_a_statement(tmp_path: Path) -> None:
    text = (DATA / "bank_ofx211_xml.ofx").read_text(encoding="utf-8")
    start, end = (
        text.index("<BANKMSGSRSV1>"),
        text.index("</BANKMSGSRSV1>") + len("</BANKMSGSRSV1>"),
    )
    path = tmp_path / "signon-only.ofx"
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    with pytest.raises(StatementError, match="no statement"):
        parse_statement(path)


def test_not_an_ofx_header(tmp_path: Path) -> None:
    path = tmp_path / "x.ofx"
    path.write_text("hello\n", encoding="utf-8")
    with pytest.raises(StatementError) as exc:
        parse_statement(path)
    assert exc.value.file == path


def test_csv_bad_date_names_the_line(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "uk_bank_2024_01.csv", "15/01/2024", "15/13/2024")
    with pytest.raises(StatementError) as exc:
        parse_statement(path, csv_opts("uk_bank", currency="GBP"))
    assert_error(exc, path, line_of(path, "15/13/2024"), "'Date'", "15/13/2024", "%d/%m/%Y")


def test_csv_bad_amount_rejects_the_whole_file(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "fr_bank.csv", "123,45", "123.45", encoding="cp1252")
    with pytest.raises(StatementError) as exc:
        parse_statement(path, csv_opts("fr_bank"))
    assert_error(exc, path, line_of(path, "123.45", "cp1252"), "Débit", "123.45", "decimal")


def test_csv_missing_amount_column(tmp_path: Path) -> None:
    path = tmp_path / "no-amount.csv"
    path.write_text(
        "Date,Description,Value,Balance\n02/01/2024,TESCO,-1.00,9.00\n", encoding="utf-8"
    )
    with pytest.raises(StatementError) as exc:
        parse_statement(path, csv_opts("uk_bank", currency="GBP", header_row=1))
    assert_error(exc, path, 1, "'Amount'", "'Value'")
    # without header_row, no line names both the date and the amount columns
    with pytest.raises(StatementError, match="no header row"):
        parse_statement(path, csv_opts("uk_bank", currency="GBP"))


def test_csv_short_row_and_empty_amount(tmp_path: Path) -> None:
    short = write_variant(
        tmp_path, "uk_bank_2024_01.csv", "TESCO STORES 2041,-23.10,1476.90", "TESCO"
    )
    with pytest.raises(StatementError) as exc:
        parse_statement(short, csv_opts("uk_bank", currency="GBP"))
    assert_error(exc, short, line_of(short, "TESCO"), "fields")
    (tmp_path / "b").mkdir()
    empty = write_variant(tmp_path / "b", "uk_bank_2024_01.csv", ",-23.10,", ",,")
    with pytest.raises(StatementError) as exc:
        parse_statement(empty, csv_opts("uk_bank", currency="GBP"))
    assert_error(exc, empty, line_of(empty, "TESCO"), "no amount")


def test_csv_repeated_id_is_refused(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "uk_monzo.csv", "tx_0000AaBbCcDd4", "tx_0000AaBbCcDd1")
    with pytest.raises(StatementError) as exc:
        parse_statement(path, csv_opts("uk_monzo"))
    first = line_of(path, "tx_0000AaBbCcDd1")
    assert_error(exc, path, line_of(path, "tx_0000AaBbCcDd1", nth=1), f"line {first}")


def test_csv_needs_its_options() -> None:
    with pytest.raises(StatementError, match="csv options"):
        parse_statement(DATA / "uk_bank_2024_01.csv")


def test_unknown_file_kind(tmp_path: Path) -> None:
    path = tmp_path / "statement.pdf"
    path.write_bytes(b"%PDF-1.7\n")
    with pytest.raises(StatementError, match="not a statement file"):
        parse_statement(path)


# --------------------------------------------------------------------------- OFX quirks


def test_missing_dtasof_falls_back_to_the_statement_end(tmp_path: Path) -> None:
    path = write_variant(
        tmp_path, "bank_ofx211_xml.ofx", "<DTASOF>20240131235959.000[+1:CET]</DTASOF>", ""
    )
    (acc,) = parse_statement(path).accounts
    bal = acc.ledger_balance
    assert bal is not None
    assert (bal.amount, bal.as_of, bal.source) == (D("10382.67"), date(2024, 1, 31), "DTEND")
    # and without DTEND either: the server's time (20240201093000[+1:CET])
    no_end = tmp_path / "no-end.ofx"
    text = path.read_text(encoding="utf-8").replace("<DTEND>20240131235959.000[+1:CET]</DTEND>", "")
    no_end.write_text(text, encoding="utf-8")
    (acc,) = parse_statement(no_end).accounts
    assert acc.ledger_balance is not None
    assert (acc.ledger_balance.as_of, acc.ledger_balance.source) == (date(2024, 2, 1), "DTSERVER")
    assert acc.period_end is None


def test_byte_order_mark_and_charset_aliases(tmp_path: Path) -> None:
    data = (DATA / "bank_ofx102_sgml.ofx").read_bytes()
    for charset, encoding in (("ISO-8859-1", "latin-1"), ("8859-1", "latin-1"), ("UTF-8", "utf-8")):
        text = data.decode("cp1252").replace("CHARSET:1252", f"CHARSET:{charset}")
        path = tmp_path / f"{charset}.ofx"
        path.write_bytes(b"\xef\xbb\xbf" + text.encode(encoding))
        txns = by_id(parse_statement(path))
        assert txns["999988:00005"].merchant == "Café Crème", charset


def test_wrong_declared_charset(tmp_path: Path) -> None:
    # declares UTF-8 (CHARSET:NONE) but holds Windows-1252 bytes
    path = write_variant(
        tmp_path, "bank_ofx102_sgml.ofx", "CHARSET:1252", "CHARSET:NONE", encoding="cp1252"
    )
    with pytest.raises(StatementError) as exc:
        parse_statement(path)
    assert_error(exc, path, line_of(path, "<NAME>Caf", "cp1252"), "ofx.encoding")
    txns = by_id(parse_statement(path, opts(ofx={"encoding": "cp1252"})))
    assert txns["999988:00005"].merchant == "Café Crème"


def test_invert_amounts(tmp_path: Path) -> None:
    text = (DATA / "creditcard.qfx").read_bytes().decode("cp1252")
    for a, b in (("-45.67", "X1"), ("<TRNAMT>45.67", "<TRNAMT>-45.67"), ("X1", "45.67")):
        text = text.replace(a, b)
    for a, b in (("-1234.56", "1234.56"), ("1000.00", "-1000.00"), ("-39.00", "39.00")):
        text = text.replace(a, b)
    text = text.replace("<BALAMT>-273.56", "<BALAMT>273.56")
    path = tmp_path / "inverted.qfx"
    path.write_bytes(text.encode("cp1252"))
    plain = parse_statement(path)
    assert any("invert_amounts" in w for w in plain.warnings)
    fixed = parse_statement(path, opts(ofx={"invert_amounts": True}))
    original = parse_statement(DATA / "creditcard.qfx")
    assert [(t.id, t.amount, t.kind) for t in fixed.transactions] == [
        (t.id, t.amount, t.kind) for t in original.transactions
    ]
    assert fixed.accounts[0].ledger_balance == original.accounts[0].ledger_balance
    assert fixed.warnings == ()


def test_fitid_quirks(tmp_path: Path) -> None:
    text = (DATA / "bank_ofx102_sgml.ofx").read_bytes().decode("cp1252")
    # a FITID left out, one reused for another transaction, one transaction listed twice
    text = text.replace("<FITID>00003\r\n", "")
    text = text.replace("<FITID>00007", "<FITID>00006")
    block_start = text.index("<STMTTRN>", text.index("<FITID>00004") - 80)
    block_end = text.index("</STMTTRN>", block_start) + len("</STMTTRN>\r\n")
    text = text[:block_end] + text[block_start:block_end] + text[block_end:]
    path = tmp_path / "quirks.ofx"
    path.write_bytes(text.encode("cp1252"))
    st = parse_statement(path)
    txns = st.transactions
    assert len(txns) == 7  # the repeated one kept once
    assert sum(t.amount for t in txns) == D("756.69")
    atm = [t for t in txns if t.amount == D("-300.00")]
    assert len(atm) == 1 and atm[0].id.startswith("999988:2005-10-20:")
    reused = sorted((t for t in txns if t.id.startswith("999988:00006")), key=lambda t: t.amount)
    assert [t.amount for t in reused] == [D("-5.00"), D("15.00")]
    assert reused[0].id != reused[1].id
    assert len(st.warnings) == 3
    assert parse_statement(path).transactions == st.transactions  # stable


def test_correction_delete(tmp_path: Path) -> None:
    path = write_variant(
        tmp_path,
        "bank_ofx211_xml.ofx",
        "<FITID>2024013100001</FITID>",
        "<FITID>2024013100009</FITID><CORRECTFITID>2024011500001</CORRECTFITID>"
        "<CORRECTACTION>DELETE</CORRECTACTION>",
    )
    (acc,) = parse_statement(path).accounts
    assert acc.removed_transaction_ids == ("55501234:2024011500001",)
    assert "55501234:2024013100009" not in {t.id for t in acc.transactions}


# --------------------------------------------------------------------------- options


def test_numbers_written_the_files_way() -> None:
    assert parse_number("1 234,56", ",", " ") == D("1234.56")
    assert parse_number("-1\u00a0234,56", ",", " ") == D("-1234.56")
    assert parse_number("(12.00)", ".", ",") == D("-12.00")
    assert parse_number("£5.50", ".", "") == D("5.50")
    assert parse_number("12.00-", ".", "") == D("-12.00")
    assert parse_number("+7", ".", "") == D("7")
    for text, dec, thousands in (
        ("1,500", ".", ""),  # thousands or decimals? refused without a thousands separator
        ("1.500,00", ".", ","),
        ("12,34,5", ",", ""),
        ("1,23", ".", ","),  # a misplaced thousands separator
        ("abc", ".", ""),
        ("", ".", ""),
    ):
        with pytest.raises(ValueError):
            parse_number(text, dec, thousands)


def test_presets_and_their_overrides() -> None:
    o = CsvOptions.model_validate({"preset": "fr_bank", "currency": "CHF", "kinds": {"X": "fee"}})
    assert (o.delimiter, o.decimal_separator, o.currency) == (";", ",", "CHF")
    assert o.columns.debit == "Débit" and o.columns.amount is None
    # giving an amount column replaces the preset's debit and credit columns
    o = CsvOptions.model_validate({"preset": "fr_bank", "columns": {"amount": "Montant"}})
    assert (o.columns.amount, o.columns.debit, o.columns.credit) == ("Montant", None, None)
    assert o.columns.date == "Date"
    chase = CsvOptions.model_validate({"preset": "us_chase_checking", "kinds": {"ATM": "other"}})
    assert chase.kinds["ATM"] == "other" and chase.kinds["ACH_DEBIT"] == "withdrawal"
    assert set(CSV_PRESETS) == {
        "uk_bank",
        "uk_monzo",
        "fr_bank",
        "us_chase_checking",
        "us_chase_credit",
        "us_amex",
    }
    for preset in CSV_PRESETS:  # every preset is complete with a currency
        CsvOptions.model_validate({"preset": preset, "currency": "USD"})


@pytest.mark.parametrize(
    "bad",
    [
        {"preset": "nope", "currency": "GBP"},
        {"preset": "uk_bank"},  # no currency
        {"preset": "uk_bank", "currency": "gbp"},
        {"preset": "uk_bank", "currency": "GBP", "delimiter": ";;"},
        {"preset": "uk_bank", "currency": "GBP", "date_format": "%Y"},
        {"preset": "uk_bank", "currency": "GBP", "surprise": 1},
        {"columns": {"date": "D", "description": "X"}, "currency": "GBP"},  # no amount
        {
            "columns": {"date": "D", "description": "X", "amount": "A", "debit": "B"},
            "currency": "GBP",
        },
    ],
)
def test_bad_csv_options(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CsvOptions.model_validate(bad)


def test_statements_options_refuse_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        StatementsOptions.model_validate({"ofx": {"encodng": "cp1252"}})
    assert StatementsOptions.model_validate({}).csv is None


def test_empty_sgml_elements_and_entities(tmp_path: Path) -> None:
    # <MEMO> with nothing after it (no end tag) must not swallow the next elements
    path = write_variant(
        tmp_path,
        "bank_ofx102_sgml.ofx",
        "<NAME>PAYROLL ACME CORP\r\n<MEMO>Salary October",
        "<MEMO>\r\n<NAME>AT&amp;T &lt;MOBILE&gt;\r\n<MEMO>",
        encoding="cp1252",
    )
    txns = by_id(parse_statement(path))
    pay = txns["999988:00004"]
    assert pay.merchant == "AT&T <MOBILE>"
    assert pay.description == "AT&T <MOBILE>"
    assert (pay.amount, pay.posted) == (D("1250.75"), date(2005, 10, 21))
    assert len(txns) == 7


def test_xml_self_closing_element(tmp_path: Path) -> None:
    path = write_variant(
        tmp_path, "bank_ofx211_xml.ofx", "<NAME>Zinsen</NAME>", "<NAME>Zinsen</NAME><MEMO/>"
    )
    txns = by_id(parse_statement(path))
    assert txns["55501234:2024013100001"].description == "Zinsen"


def test_a_large_statement_is_read_quickly(tmp_path: Path) -> None:
    text = (DATA / "bank_ofx211_xml.ofx").read_text(encoding="utf-8")
    one = text[text.index("<STMTTRN>") : text.index("</STMTTRN>") + len("</STMTTRN>")]
    many = "".join(
        one.replace("2024010200001", f"X{i:06d}").replace("500.00", f"{i}.01") for i in range(20000)
    )
    path = tmp_path / "big.ofx"
    path.write_text(text.replace(one, many, 1), encoding="utf-8")
    started = time.monotonic()
    st = parse_statement(path)
    assert len(st.transactions) == 20000 + 2
    # 0.01 + 1.01 + ... + 19999.01, and the file's other two
    expected = sum(Decimal(i) for i in range(20000)) + Decimal("0.01") * 20000
    assert sum(t.amount for t in st.transactions) == expected + D("-120.50") + D("3.17")
    assert time.monotonic() - started < 30


def test_csv_footer_rows(tmp_path: Path) -> None:
    text = (DATA / "fr_bank.csv").read_bytes().decode("cp1252")
    path = tmp_path / "fr_footer.csv"
    path.write_bytes((text + "\nSolde au 07/03/2024;;;;4 239,95\n").encode("cp1252"))
    with pytest.raises(StatementError) as exc:
        parse_statement(path, csv_opts("fr_bank"))
    assert_error(exc, path, line_of(path, "Solde au", "cp1252"), "'Date'", "Solde au")
    st = parse_statement(path, csv_opts("fr_bank", footer_rows=1))
    assert len(st.transactions) == 4
    assert st.accounts[0].ledger_balance is not None
    assert st.accounts[0].ledger_balance.amount == D("4239.95")


# --------------------------------------------------------------------------- items


def _items(name: str, o: StatementsOptions | None = None) -> list[tuple[Any, ...]]:
    (acc,) = parse_statement(DATA / name, o).accounts
    sub = sub_account_at_statement_date(acc)
    return [(i.name, i.item_type, i.asset_class, i.asset_type, i.value, i.units) for i in sub.items]


def test_items_at_the_statement_date() -> None:
    assert _items("bank_ofx102_sgml.ofx") == [("Cash", "asset", "cash", "cash", D("200.29"), None)]
    (card,) = _items("creditcard.qfx")
    assert card[1:5] == ("liability", "other", "credit_card", D("-273.56"))
    assert _items("investment.ofx") == [
        ("Acme Development, Inc.", "asset", "equities", "stock", D("9900.00"), D("200")),
        ("Lucky Airlines Jan 97 Put", "asset", "equities", "option", D("500"), D("1")),
        ("Total Index Fund", "asset", "multi_asset", "fund", D("1181.97"), D("10.157")),
        ("Cash", "asset", "cash", "cash", D("200.00"), None),
        ("Margin balance", "liability", "cash", "margin_loan", D("-50.00"), None),
    ]
    assert _items("uk_monzo.csv", csv_opts("uk_monzo")) == []  # no balance column
    (acc,) = parse_statement(DATA / "investment.ofx").accounts
    assert statement_date(acc) == date(2005, 8, 27)
    snapshot_sub = sub_account_at_statement_date(acc)
    Snapshot((snapshot_sub,), transactions=acc.transactions).validate()


@pytest.mark.parametrize(
    ("written", "day", "utc"),
    [
        ("20240131120000[+5.30:IST]", date(2024, 1, 31), datetime(2024, 1, 31, 6, 30)),
        ("20240131013000.000[-8:PST]", date(2024, 1, 31), datetime(2024, 1, 31, 9, 30)),
        ("20240131230000[+2]", date(2024, 1, 31), datetime(2024, 1, 31, 21, 0)),
        ("20240131120000.5", date(2024, 1, 31), datetime(2024, 1, 31, 12, 0, 0, 500000)),
        ("202401311200", date(2024, 1, 31), datetime(2024, 1, 31, 12, 0)),
        ("20240131", date(2024, 1, 31), None),
        ("20240131120000[:EST]", date(2024, 1, 31), None),  # a zone without an offset
    ],
)
def test_ofx_dates(tmp_path: Path, written: str, day: date, utc: datetime | None) -> None:
    path = write_variant(
        tmp_path,
        "bank_ofx211_xml.ofx",
        "<DTASOF>20240131235959.000[+1:CET]</DTASOF>",
        f"<DTASOF>{written}</DTASOF>",
    )
    (acc,) = parse_statement(path).accounts
    assert acc.ledger_balance is not None
    assert (acc.ledger_balance.as_of, acc.ledger_balance.as_of_utc) == (day, utc)


def test_csv_lines_count_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "multiline.csv"
    path.write_text(
        'Date,Description,Amount,Balance\n02/01/2024,"TESCO\nSTORES",-1.00,9.00\n'
        "03/01/2024,COSTA,-x,8.00\n",
        encoding="utf-8",
    )
    with pytest.raises(StatementError) as exc:
        parse_statement(path, csv_opts("uk_bank", currency="GBP"))
    assert_error(exc, path, 4, "'Amount'", "'-x'")
