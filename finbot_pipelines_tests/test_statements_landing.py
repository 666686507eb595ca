"""Statement files land at their own dates (finbot_pipelines.warehouse.statement_import), at
the warehouse level: no Dagster here (the end-to-end path is test_statements_import.py).

Expected figures are read off the files written in the tests (and the fixtures'
balances: bank_ofx211_xml.ofx LEDGERBAL 10382.67 EUR at 2024-01-31, creditcard.qfx
LEDGERBAL -273.56 USD at 2024-02-29).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from finbot_pipelines.config.schema import LinkedAccount
from finbot_pipelines.providers.statements.parse import parse_statement
from finbot_pipelines.warehouse.build_window import pending_rebuild
from finbot_pipelines.warehouse.raw import (
    AccountHourRow,
    HourBatch,
    ensure_raw_schema,
    forget_hours,
    write_hour_batch,
)
from finbot_pipelines.warehouse.statement_import import (
    import_file,
    import_inbox,
    land_statement,
    waiting_files,
)

DATA = Path(__file__).parent / "data" / "statements"
#: "now" of every landing here: 2026-03-10 14:20 UTC (last complete hour 13:00)
NOW = datetime(2026, 3, 10, 14, 20)
PROFILE_HOURS = [datetime(2026, 3, 7) + timedelta(hours=i) for i in range(3 * 24 + 14)]
CSV_OPTIONS = {"csv": {"preset": "uk_bank", "currency": "GBP", "account_id": "current"}}


def account(options: dict[str, object] | None = None) -> LinkedAccount:
    return LinkedAccount(
        id="bank",
        profile="me",
        provider="statements",
        name="My bank",
        options=options if options is not None else CSV_OPTIONS,
    )


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """A warehouse whose profile 'me' has hourly ingested hours 2026-03-07 00:00 .. 03-10
    13:00 (one fetched account, 'other'); the bank account is not known yet."""
    c = duckdb.connect(str(tmp_path / "wh.duckdb"))
    ensure_raw_schema(c)
    write_hour_batch(
        c,
        HourBatch(
            keys=[(h, "other") for h in PROFILE_HOURS],
            account_hours=[
                AccountHourRow(h, "me", "other", "dummy", "Other", "active") for h in PROFILE_HOURS
            ],
            fetches=[],
            sub_accounts=[],
            items=[],
        ),
    )
    return c


def csv_file(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    lines = ["Date,Description,Amount,Balance", *(",".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def first_statement(tmp_path: Path) -> Path:
    # balance after the last row (08/03): 1000.00 - 20.00 + 2500.00 = 3480.00
    return csv_file(
        tmp_path / "march-1.csv",
        [
            ("07/03/2026", "TESCO", "-20.00", "980.00"),
            ("08/03/2026", "SALARY ACME", "2500.00", "3480.00"),
        ],
    )


def items(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute(
        "select fetch_hour, sub_account_id, item_name, value from raw.items "
        "where linked_account_id = 'bank' order by 1, 2, 3"
    ).fetchall()


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = [
        "fetches",
        "sub_accounts",
        "items",
        "transactions",
        "linked_account_hours",
        "statement_imports",
    ]
    out = {}
    for t in tables:
        row = con.execute(f"select count(*) from raw.{t}").fetchone()
        out[t] = int(row[0]) if row else 0
    return out


def test_a_statement_lands_at_its_own_date(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    outcome = import_file(con, account(), first_statement(tmp_path), now=NOW)
    assert outcome.status == "landed", outcome.message
    h = datetime(2026, 3, 8, 23)
    day_before = datetime(2026, 3, 7, 23)
    assert outcome.first_hour == day_before
    # 07/03's close told by the transactions: 3480.00 - 2500.00 = 980.00 (the file's own
    # running balance of that row)
    assert items(con) == [
        (day_before, "current", "Cash", Decimal("980.00")),
        (h, "current", "Cash", Decimal("3480.00")),
    ]
    fetch = con.execute(
        "select fetch_hour, status, provider_id, profile_id from raw.fetches "
        "where linked_account_id = 'bank'"
    ).fetchall()
    assert fetch == [
        (day_before, "success", "statements", "me"),
        (h, "success", "statements", "me"),
    ]
    txns = con.execute(
        "select posted_date, amount, fetch_hour from raw.transactions "
        "where linked_account_id = 'bank' order by 1"
    ).fetchall()
    assert txns == [
        (date(2026, 3, 7), Decimal("-20.00"), h),
        (date(2026, 3, 8), Decimal("2500.00"), h),
    ]
    # the account existed from its statement's hour: every later hour of the profile has it
    hours = con.execute(
        "select min(fetch_hour), max(fetch_hour), count(*), any_value(state) "
        "from raw.linked_account_hours where linked_account_id = 'bank'"
    ).fetchone()
    later = [x for x in PROFILE_HOURS if x >= day_before]
    assert hours == (day_before, later[-1], len(later), "statement")
    pending = pending_rebuild(con)
    assert pending is not None and pending[0] == day_before


def test_the_same_file_twice_changes_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = first_statement(tmp_path)
    assert import_file(con, account(), path, now=NOW).status == "landed"
    before = table_counts(con)
    copy = tmp_path / "copy-of-it.csv"
    copy.write_bytes(path.read_bytes())
    again = import_file(con, account(), copy, now=NOW)
    assert again.status == "already imported"
    assert table_counts(con) == before


def test_an_overlapping_statement_counts_each_transaction_once(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    assert import_file(con, account(), first_statement(tmp_path), now=NOW).status == "landed"
    # the next export repeats 08/03 and adds 10/03 (today: lands at the newest complete hour)
    second = csv_file(
        tmp_path / "march-2.csv",
        [
            ("08/03/2026", "SALARY ACME", "2500.00", "3480.00"),
            ("10/03/2026", "RENT", "-1200.00", "2280.00"),
        ],
    )
    outcome = import_file(con, account(), second, now=NOW)
    assert outcome.status == "landed", outcome.message
    today = datetime(2026, 3, 10, 13)
    assert outcome.accounts[0].hour == today
    current = con.execute(
        "select transaction_id, arg_max(amount, fetch_hour) from raw.transactions "
        "where linked_account_id = 'bank' group by 1 order by 2"
    ).fetchall()
    assert [a for _, a in current] == [Decimal("-1200.00"), Decimal("-20.00"), Decimal("2500.00")]
    # the second file's days: 08/03 and 09/03 close at 2280.00 + 1200.00 = 3480.00
    assert items(con) == [
        (datetime(2026, 3, 7, 23), "current", "Cash", Decimal("980.00")),
        (datetime(2026, 3, 8, 23), "current", "Cash", Decimal("3480.00")),
        (datetime(2026, 3, 9, 23), "current", "Cash", Decimal("3480.00")),
        (today, "current", "Cash", Decimal("2280.00")),
    ]


def test_each_hour_holds_every_sub_accounts_newest_balance(
    con: duckdb.DuckDBPyConnection,
) -> None:
    card = parse_statement(DATA / "creditcard.qfx")
    bank = parse_statement(DATA / "bank_ofx211_xml.ofx")
    acc = account({})
    card_hour, bank_hour = datetime(2024, 2, 29, 23), datetime(2024, 1, 31, 23)
    card_name = "Credit card ...1111"
    assert land_statement(con, acc, card, now=NOW).status == "landed"
    assert at(con, card_hour) == [("4111111111111111", card_name, Decimal("-273.56"))]
    # the card statement's days: 1 February closes at -273.56 less everything posted after
    card_txns = [(t.posted, t.amount) for t in card.transactions]
    period_start = card.accounts[0].period_start
    assert period_start is not None
    feb1 = Decimal("-273.56") - sum(a for d, a in card_txns if d and d > period_start)
    first_close = datetime.combine(period_start, datetime.min.time()).replace(hour=23)
    assert at(con, first_close) == [("4111111111111111", card_name, feb1)]
    # an older statement of another account of the same login: the card's hour now holds
    # both (the bank's balance of January still stands on 29 February)
    outcome = land_statement(con, acc, bank, now=NOW)
    assert outcome.first_hour is not None and outcome.first_hour <= bank_hour
    assert at(con, bank_hour) == [("55501234", "Cash", Decimal("10382.67"))]
    assert at(con, card_hour) == [
        ("4111111111111111", card_name, Decimal("-273.56")),
        ("55501234", "Cash", Decimal("10382.67")),
    ]
    # the card's transactions stayed at its hour when that hour was rewritten
    per_hour = con.execute(
        "select fetch_hour, count(*) from raw.transactions group by 1 order by 1"
    ).fetchall()
    assert per_hour == [(bank_hour, 3), (card_hour, 5)]


def at(con: duckdb.DuckDBPyConnection, hour: datetime) -> list[tuple[object, ...]]:
    return con.execute(
        "select sub_account_id, item_name, value from raw.items "
        "where linked_account_id = 'bank' and fetch_hour = ? order by 1, 2",
        [hour],
    ).fetchall()


def test_daily_closes_match_the_files_running_balance() -> None:
    """uk_bank_2024_01.csv writes each row's running balance: the close the landing derives
    for each day (from the final balance and the transactions) is the last balance the file
    writes for that day."""
    import csv

    from finbot_pipelines.providers.statements.options import StatementsOptions
    from finbot_pipelines.warehouse.statement_import import daily_closes

    path = DATA / "uk_bank_2024_01.csv"
    written: dict[date, Decimal] = {}
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    for row in csv.DictReader(lines):
        d = datetime.strptime(row["Date"], "%d/%m/%Y").date()
        written[d] = Decimal(row["Balance"])  # the day's last row wins
    st = parse_statement(
        path, StatementsOptions.model_validate({"csv": {"preset": "uk_bank", "currency": "GBP"}})
    )
    closes = daily_closes(st.accounts[0])
    last_day = max(written)
    assert closes  # the period has days before its last
    for d, amount in closes.items():
        assert d < last_day
        known = [b for k, b in written.items() if k <= d]
        if d in written:
            assert amount == written[d], d
        elif known:  # a day without rows keeps the previous day's balance
            assert amount == written[max(k for k in written if k <= d)], d


def test_a_bad_file_is_rejected_whole_and_moved_with_a_note(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "bank").mkdir(parents=True)
    good = first_statement(inbox / "bank")
    bad = csv_file(
        inbox / "bank" / "broken.csv",
        [("09/03/2026", "SHOP", "-5.00", "3475.00"), ("10/03/2026", "CAFE", "12,3x", "0")],
    )
    before = table_counts(con)
    from finbot_pipelines.config.schema import FinbotConfig

    cfg = FinbotConfig.model_validate(
        {
            "profiles": [{"id": "me", "name": "Me", "valuation_ccy": "GBP"}],
            "linked_accounts": [account().model_dump()],
        }
    )
    outcomes = dict((o.file, o) for _, o in import_inbox(con, cfg, inbox, now=NOW))
    assert outcomes["march-1.csv"].status == "landed"
    assert outcomes["broken.csv"].status == "rejected"
    assert "broken.csv, line 3" in outcomes["broken.csv"].message
    assert not good.exists() and not bad.exists()
    assert (inbox / "done" / "bank" / "march-1.csv").is_file()
    note = (inbox / "rejected" / "bank" / "broken.csv.reason.txt").read_text()
    assert "broken.csv, line 3" in note
    assert waiting_files(inbox, "bank") == []
    # only the good file's rows were written: its 2 transactions, nothing of 09/03
    after = table_counts(con)
    assert after["transactions"] - before["transactions"] == 2
    assert not con.execute(
        "select 1 from raw.transactions where posted_date = date '2026-03-09'"
    ).fetchall()


def test_a_statement_dated_in_the_future_is_refused(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    before = table_counts(con)
    path = csv_file(tmp_path / "future.csv", [("20/03/2026", "X", "-1.00", "99.00")])
    outcome = import_file(con, account(), path, now=NOW)
    assert outcome.status == "rejected"
    assert "2026-03-20 is in the future" in outcome.message
    assert table_counts(con) == before


def test_the_ingest_keeps_what_statements_landed_at_its_hours(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """An hourly ingest re-run of a statement hour replaces only the account's hour row."""
    assert import_file(con, account(), first_statement(tmp_path), now=NOW).status == "landed"
    h = datetime(2026, 3, 8, 23)
    before = items(con)
    write_hour_batch(
        con,
        HourBatch(
            keys=[],
            state_only_keys=[(h, "bank")],
            account_hours=[AccountHourRow(h, "me", "bank", "statements", "My bank", "statement")],
            fetches=[],
            sub_accounts=[],
            items=[],
        ),
    )
    assert items(con) == before
    assert con.execute(
        "select count(*) from raw.linked_account_hours where linked_account_id = 'bank' "
        "and fetch_hour = ?",
        [h],
    ).fetchone() == (1,)


def test_forgotten_hours_let_the_file_land_again(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = first_statement(tmp_path)
    assert import_file(con, account(), path, now=NOW).status == "landed"
    h = datetime(2026, 3, 8, 23)
    forget_hours(con, h, h)
    assert import_file(con, account(), path, now=NOW).status == "landed"
    assert items(con) == [
        (datetime(2026, 3, 7, 23), "current", "Cash", Decimal("980.00")),
        (h, "current", "Cash", Decimal("3480.00")),
    ]


def test_an_hour_the_ingest_has_not_reached_gets_no_lone_account_row(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Today's statement, landed before the ingest ran its hour: the statement is stored at
    the hour, but the profile gets no hour holding this account alone."""
    later = datetime(2026, 3, 11, 10, 20)  # the profile's newest ingested hour: 03-10 13:00
    path = csv_file(tmp_path / "today.csv", [("11/03/2026", "CAFE", "-2.00", "98.00")])
    outcome = import_file(con, account(), path, now=later)
    assert outcome.status == "landed", outcome.message
    h = datetime(2026, 3, 11, 9)
    assert items(con) == [(h, "current", "Cash", Decimal("98.00"))]
    assert con.execute(
        "select count(*) from raw.linked_account_hours where fetch_hour = ?", [h]
    ).fetchone() == (0,)


def test_accounts_add_and_test_a_statements_account(tmp_path: Path) -> None:
    """`accounts add statements` needs no test fetch; `accounts test` reads what waits in
    the inbox (writing and moving nothing), and exits 1 naming a file it cannot read."""
    from finbot_pipelines_tests.conftest import demo_cli_home, invoke_cli

    home = demo_cli_home(tmp_path)
    added = invoke_cli(
        home, "accounts", "add", "statements", "--id", "my-bank", "--profile", "alice",
        "--option", "csv={preset: uk_bank, currency: GBP, account_id: current}",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "is never fetched" in added.output and "my-bank" in (home / "finbot.yaml").read_text()
    nothing = invoke_cli(home, "accounts", "test", "my-bank")
    assert nothing.exit_code == 0 and "nothing to read" in nothing.output
    inbox = home / "inbox" / "my-bank"
    inbox.mkdir(parents=True)
    first_statement(inbox)
    tested = invoke_cli(home, "accounts", "test", "my-bank")
    assert tested.exit_code == 0, tested.output
    assert "current: balance 3,480.00 GBP at 2026-03-08; 2 transaction(s)" in tested.output
    csv_file(inbox / "bad.csv", [("09/03/2026", "SHOP", "five", "0")])
    bad = invoke_cli(home, "accounts", "test", "my-bank")
    assert bad.exit_code == 1 and "bad.csv, line 2" in bad.output
    assert sorted(p.name for p in inbox.iterdir()) == ["bad.csv", "march-1.csv"]  # not moved
    assert not (home / "warehouse.duckdb").exists()
