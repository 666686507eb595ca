"""The google_sheets provider against a fake Sheets API v4 + OAuth token endpoint on 127.0.0.1.

Every fetch goes through the production path (``fetch_snapshot``: options and
credentials models, the JWT grant, gspread's calls, the layout) against the fake.
Expected numbers are written out by hand from the sheets below, never computed by
the code under test; amounts are compared as exact Decimals.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import FetchContext, Provider, fetch_snapshot
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    CredentialsError,
    FetchTimeout,
    Item,
    OptionsError,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
    SubAccount,
    TransientError,
    UnpricedError,
)
from finbot_pipelines.providers.fetching import FetchTask, RetryPolicy, run_one
from finbot_pipelines.providers.google_sheets import layout
from finbot_pipelines.providers.google_sheets.layout import (
    Grid,
    NumberTextError,
    parse_grid,
    parse_number_text,
    template_path,
)
from finbot_pipelines.providers.google_sheets.provider import GoogleSheetsProvider
from finbot_pipelines_tests.fakes.sheets_server import (
    CellValue,
    FakeSheetsServer,
    SheetsFixture,
    grid_from_csv,
    make_service_account,
)

HOUR = datetime(2026, 3, 2, 9)
KEY = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-xyz"
REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "finbot_pipelines" / "providers" / "templates" / "google_sheets_template.csv"
SPEC = registry.get_spec("google_sheets")
D = Decimal

Grid_ = list[list[CellValue]]


def place(*blocks: tuple[str, list[list[CellValue]]]) -> Grid_:
    """A grid with each block of rows written from its top-left cell (A1 notation)."""
    from gspread.utils import a1_to_rowcol

    grid: Grid_ = []
    for anchor, rows in blocks:
        r0, c0 = a1_to_rowcol(anchor)
        for i, row in enumerate(rows):
            r = r0 - 1 + i
            while len(grid) <= r:
                grid.append([])
            line = grid[r]
            for j, v in enumerate(row):
                c = c0 - 1 + j
                while len(line) <= c:
                    line.append("")
                line[c] = v
    return grid


# --------------------------------------------------------------------------- the realistic sheet

# Worksheet "Holdings" (the second tab). ACCOUNTS at D3, columns in another order, an ignored
# "Sub type" column; HOLDINGS at B15 with every column in yet another order, mixed-case
# headers, a notes column, numbers typed as numbers and as text.
REALISTIC = place(
    ("A1", [["Family wealth, updated by hand on the 1st of each month"]]),
    ("D3", [["ACCOUNTS"]]),
    (
        "D4",
        [
            ["Type", "Currency", "Identifier", "Description", "Sub type"],
            ["depository", "GBP", "monzo", "Monzo current account", "checking"],
            ["investment", "gbp", "isa", "Vanguard ISA", ""],
            ["investment", "USD", "ibkr", "Interactive Brokers", ""],
            ["Depository", "EUR", "n26", "N26 savings", "savings"],
            ["other", "EUR", "ledger", "Ledger wallet", ""],
            ["loan", "GBP", "nationwide-mortgage", "Nationwide mortgage", ""],
            ["credit", "GBP", "amex", "", ""],
            ["investment", "CHF", "pillar3", "Pillar 3a pension", ""],
        ],
    ),
    ("A14", [["values are in the account's currency"]]),
    ("B15", [["HOLDINGS"]]),
    (
        "B16",
        [
            [
                "Value",
                "ACCOUNT",
                "Asset_Type",
                "Symbol",
                "Units",
                "Currency",
                "Name",
                "Asset Class",
                "Notes",
            ],
            ["1,234.56", "monzo", "cash", "", "", "", "Cash", "", "salary in on the 25th"],
            [11340, "isa", "etf", "VWRL", 120, "GBP", "", "", ""],
            [3850.0, "isa", "ETF", "VGOV", 200, "", "", "fixed income", "gilts"],
            [412.35, "isa", "cash", "", "", "", "Cash", "", ""],
            [2300.5, "ibkr", "stock", "AAPL", 10, "usd", "Apple", "", ""],
            [5210.75, "ibkr", "fund", "VTSAX", 40, "USD", "", "", ""],
            [1800.25, "ibkr", "bond", "T 4 1/4 2030", 18, "USD", "", "", ""],
            [8000, "n26", "", "", "", "", "Savings pot", "cash", ""],
            [15000, "ledger", "crypto_currency", "BTC", 0.25, "BTC", "", "", ""],
            [2500, "ledger", "Stable Coin", "USDC", 2700, "", "", "", "4-letter code"],
            [185000, "nationwide-mortgage", "mortgage", "", "", "", "Mortgage", "", "owed"],
            [-640.2, "amex", "credit_card", "", "", "", "Balance", "", ""],
            [42000, "pillar3", "", "", "", "", "Pension fund", "pension", ""],
        ],
    ),
    ("B31", [["", "Totals are not read: the table ended at the empty cell B30"]]),
)

# By hand, in each account's currency.
REALISTIC_TOTALS = {
    "monzo": D("1234.56"),
    "isa": D("11340") + D("3850") + D("412.35"),  # 15602.35
    "ibkr": D("2300.50") + D("5210.75") + D("1800.25"),  # 9311.50 USD
    "n26": D("8000"),
    "ledger": D("15000") + D("2500"),  # 17500 EUR
    "nationwide-mortgage": D("-185000"),
    "amex": D("-640.20"),
    "pillar3": D("42000"),  # CHF
}


@pytest.fixture(scope="module")
def service_account() -> tuple[dict[str, str], Any]:
    return make_service_account()


@pytest.fixture
def sheets(service_account: tuple[dict[str, str], Any]) -> Iterator[SheetsFixture]:
    info, public_key = service_account
    with FakeSheetsServer() as fake:
        fake.register_service_account(info["client_email"], public_key)
        yield SheetsFixture(fake, info)


def _ctx(priced_units: frozenset[str] = frozenset()) -> FetchContext:
    return FetchContext(linked_account_id="sheet-main", hour=HOUR, priced_units=priced_units)


def _fetch(
    sheets: SheetsFixture,
    credentials: dict[str, str] | None = None,
    priced_units: frozenset[str] = frozenset(),
    **options: Any,
) -> Snapshot:
    """One fetch on the production path (options model, credentials model, provider, base)."""
    creds = sheets.credentials() if credentials is None else credentials
    return fetch_snapshot(
        SPEC, GoogleSheetsProvider(), _ctx(priced_units), sheets.options(KEY, **options), creds
    )


def _share(sheets: SheetsFixture, grid: Grid_, title: str = "Sheet1", **more: Grid_) -> None:
    sheets.fake.add_spreadsheet(KEY, {title: grid, **more}, shared_with=[sheets.email])


def _by_id(snapshot: Snapshot) -> dict[str, SubAccount]:
    return {sa.id: sa for sa in snapshot.sub_accounts}


def _items(snapshot: Snapshot) -> dict[tuple[str, str], Item]:
    return {(sa.id, i.name): i for sa in snapshot.sub_accounts for i in sa.items}


def _total(sa: SubAccount) -> Decimal:
    return sum((i.value for i in sa.items if i.value is not None), D(0))


def _row(i: Item) -> tuple[Any, ...]:
    return (i.item_type, i.asset_class, i.asset_type, i.value, i.units, i.currency, i.symbol,
            i.unit)  # fmt: skip


def test_provider_is_registered() -> None:
    provider = registry.get_provider("google_sheets")
    assert isinstance(provider, GoogleSheetsProvider)
    assert isinstance(provider, Provider)
    assert provider.spec is SPEC
    assert SPEC.supports_historical is False
    assert [f.name for f in SPEC.credential_fields] == ["service_account_json"]
    assert SPEC.credential_fields[0].secret
    assert [o["name"] for o in registry.option_docs(SPEC)] == [
        "sheet_key", "worksheet", "api_url", "token_url", "timeout_s"
    ]  # fmt: skip
    assert all(o["description"] for o in registry.option_docs(SPEC))


def test_validating_options_imports_no_client_library() -> None:
    code = (
        "import sys\n"
        "from finbot_pipelines.providers import registry\n"
        "spec = registry.get_spec('google_sheets')\n"
        f"o = spec.parse_options({{'sheet_key': {KEY!r}, 'worksheet': 'W', "
        "'api_url': 'http://127.0.0.1:1', 'timeout_s': 5})\n"
        "c = spec.parse_credentials({'service_account_json': "
        '\'{"type": "service_account", "client_email": "a@b.c", "private_key": "k"}\'})\n'
        "assert o.sheet_key and c.client_email == 'a@b.c'\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('gspread', 'google', 'requests')"
        " or m.startswith('finbot_pipelines.config')]\n"
        "print(sorted(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_realistic_sheet(sheets: SheetsFixture) -> None:
    _share(sheets, REALISTIC, "Holdings", Notes=[["nothing to see here"]])
    # the worksheet chosen by title, case-insensitively
    snapshot = _fetch(sheets, worksheet="holdings")
    assert snapshot.warnings == ()
    subs = _by_id(snapshot)
    assert list(subs) == [
        "monzo", "isa", "ibkr", "n26", "ledger", "nationwide-mortgage", "amex", "pillar3"
    ]  # fmt: skip
    assert {k: (s.currency, s.account_type) for k, s in subs.items()} == {
        "monzo": ("GBP", "depository"),
        "isa": ("GBP", "investment"),
        "ibkr": ("USD", "investment"),
        "n26": ("EUR", "depository"),
        "ledger": ("EUR", "other"),
        "nationwide-mortgage": ("GBP", "loan"),
        "amex": ("GBP", "credit"),
        "pillar3": ("CHF", "investment"),
    }
    assert subs["monzo"].name == "Monzo current account"
    assert subs["amex"].name == "amex"  # empty description: the identifier
    for account_id, total in REALISTIC_TOTALS.items():
        assert _total(subs[account_id]) == total, account_id

    items = _items(snapshot)
    assert len(items) == 13
    assert all(isinstance(i.value, Decimal) for i in items.values())
    # the text "1,234.56" read exactly
    assert _row(items[("monzo", "Cash")]) == (
        "asset", "cash", "cash", D("1234.56"), None, None, None, None
    )  # fmt: skip
    assert _row(items[("isa", "VWRL")]) == (
        "asset", "equities", "etf", D(11340), D(120), "GBP", "VWRL", None
    )  # fmt: skip
    # the class column wins over the type's default class
    assert _row(items[("isa", "VGOV")]) == (
        "asset", "fixed_income", "etf", D(3850), D(200), None, "VGOV", None
    )  # fmt: skip
    assert _row(items[("ibkr", "Apple")]) == (
        "asset", "equities", "stock", D("2300.5"), D(10), "USD", "AAPL", None
    )  # fmt: skip
    assert _row(items[("ibkr", "VTSAX")])[1:3] == ("multi_asset", "fund")
    assert _row(items[("ibkr", "T 4 1/4 2030")])[1:3] == ("fixed_income", "bond")
    # class only: a default type
    assert _row(items[("n26", "Savings pot")]) == (
        "asset", "cash", "cash", D(8000), None, None, None, None
    )  # fmt: skip
    # crypto rows count units of their symbol
    assert _row(items[("ledger", "BTC")]) == (
        "asset", "crypto", "crypto_currency", D(15000), D("0.25"), "BTC", "BTC", "BTC"
    )  # fmt: skip
    assert _row(items[("ledger", "USDC")]) == (
        "asset", "crypto", "stable_coin", D(2500), D(2700), None, "USDC", "USDC"
    )  # fmt: skip
    # liabilities: positive amount owed on a mortgage row, negative balance on a card row
    assert _row(items[("nationwide-mortgage", "Mortgage")]) == (
        "liability", "real_estate", "mortgage", D(-185000), None, None, None, None
    )  # fmt: skip
    assert _row(items[("amex", "Balance")]) == (
        "liability", "other", "credit_card", D("-640.2"), None, None, None, None
    )  # fmt: skip
    assert _row(items[("pillar3", "Pension fund")])[:3] == ("asset", "pension", "pension")

    # the wire: one token exchange, then metadata and the values of the whole worksheet
    log = [(r.method, r.path) for r in sheets.fake.requests]
    assert log == [
        ("POST", "/token"),
        ("GET", f"/v4/spreadsheets/{KEY}"),
        ("GET", f"/v4/spreadsheets/{KEY}/values/%27Holdings%27"),  # 'Holdings'
    ]
    assert sheets.fake.requests[1].query == {"includeGridData": ["false"]}
    assert sheets.fake.requests[2].query["valueRenderOption"] == ["UNFORMATTED_VALUE"]


def test_first_worksheet_by_default_and_sheet_address(sheets: SheetsFixture) -> None:
    grid = place(
        ("A1", [["ACCOUNTS"], ["identifier", "currency", "type"], ["cash", "GBP", "depository"]]),
        ("A5", [["HOLDINGS"], ["account", "name", "asset class", "value"],
                ["cash", "Cash", "cash", 99.5]]),
    )  # fmt: skip
    _share(sheets, grid, "Main", Other=[["ACCOUNTS"]])
    url = f"https://docs.google.com/spreadsheets/d/{KEY}/edit#gid=0"
    options = {**sheets.options(KEY), "sheet_key": url}
    parsed = SPEC.parse_options(options)
    assert parsed.sheet_key == KEY  # type: ignore[attr-defined]
    snapshot = fetch_snapshot(SPEC, GoogleSheetsProvider(), _ctx(), options, sheets.credentials())
    assert [(sa.id, sa.name, [i.value for i in sa.items]) for sa in snapshot.sub_accounts] == [
        ("cash", "cash", [D("99.5")])
    ]


def test_vault_entry_may_be_the_key_file_itself(sheets: SheetsFixture) -> None:
    _share(sheets, grid_from_csv(TEMPLATE.read_text()))
    snapshot = _fetch(sheets, credentials=dict(sheets.info))
    assert len(snapshot.sub_accounts) == 8


def test_template_csv_parses(sheets: SheetsFixture) -> None:
    """The shipped template, imported into a sheet, gives the example holdings."""
    assert template_path().read_text() == TEMPLATE.read_text()
    _share(sheets, grid_from_csv(TEMPLATE.read_text()))
    snapshot = _fetch(sheets)
    assert snapshot.warnings == ()
    got = {
        sa.id: (sa.currency, sa.account_type, [(i.name, i.item_type, i.asset_class, i.value)
                                               for i in sa.items])
        for sa in snapshot.sub_accounts
    }  # fmt: skip
    assert got == {
        "current": ("GBP", "depository", [("Cash", "asset", "cash", D("2500.00"))]),
        "savings-eur": ("EUR", "depository", [("Cash", "asset", "cash", D("8000.00"))]),
        "isa": (
            "GBP",
            "investment",
            [
                ("Vanguard FTSE All-World ETF", "asset", "equities", D("11340.00")),
                ("Vanguard UK Gilt ETF", "asset", "fixed_income", D("3850.00")),
                ("Cash", "asset", "cash", D("412.35")),
            ],
        ),
        "us-broker": ("USD", "investment", [("Apple Inc.", "asset", "equities", D("2300.50"))]),
        "wallet": ("EUR", "other", [("Bitcoin", "asset", "crypto", D("15000.00"))]),
        "home": ("GBP", "other", [("House", "asset", "real_estate", D("350000.00"))]),
        "mortgage": ("GBP", "loan", [("Mortgage", "liability", "real_estate", D("-185000.00"))]),
        "credit-card": (
            "GBP", "credit", [("Credit card balance", "liability", "other", D("-640.20"))]
        ),
    }  # fmt: skip
    bitcoin = _items(snapshot)[("wallet", "Bitcoin")]
    assert (bitcoin.units, bitcoin.symbol, bitcoin.unit) == (D("0.25"), "BTC", "BTC")


# --------------------------------------------------------------------------- rule 1: numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234.56", D("1234.56")),
        ("1.234,56", D("1234.56")),
        ("5.500,50", D("5500.50")),  # was read as 5.5005
        ("€5,500.50", D("5500.50")),
        ("5.500,50 €", D("5500.50")),
        ("-1 234,56", D("-1234.56")),
        ("-1\u00a0234,56", D("-1234.56")),  # a no-break space, as locales write it
        ("1,5", D("1.5")),  # was read as 15
        ("1.5", D("1.5")),
        ("0,500", D("0.5")),  # "0" cannot start a thousands group
        ("1234,567", D("1234.567")),  # nor can "1234"
        ("1,2345", D("1.2345")),
        ("1 500", D(1500)),  # a space only groups
        ("1'234.50", D("1234.50")),
        ("1,234,567.89", D("1234567.89")),
        ("1.234.567", D(1234567)),
        ("£-12.30", D("-12.30")),
        ("(1,234.56)", D("-1234.56")),
        ("+7", D(7)),
        (".25", D("0.25")),
        ("1.5E3", D(1500)),
    ],
)
def test_text_numbers_parsed_when_unambiguous(text: str, expected: Decimal) -> None:
    got = parse_number_text(text)
    assert isinstance(got, Decimal)
    assert got == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1,500", "ambiguous"),  # 1500 or 1.5?
        ("1.500", "ambiguous"),
        ("-2,000", "ambiguous"),
        ("12,34,56", "not a number"),
        ("1.2.3", "not a number"),
        ("1,234.567,8", "not a number"),
        ("1,,5", "not a number"),
        ("1.", "not a number"),
        ("abc", "not a number"),
        ("5%", "not a number"),
        ("--5", "not a number"),
        ("€5 $", "not a number"),
        ("1 234.5 6", "not a number"),
    ],
)
def test_text_numbers_refused_when_ambiguous(text: str, reason: str) -> None:
    with pytest.raises(NumberTextError) as err:
        parse_number_text(text)
    assert str(err.value).startswith(reason)


def _one_account(
    holdings: list[list[CellValue]],
    header: list[CellValue] | None = None,
    currency: str = "EUR",
) -> Grid_:
    """ACCOUNTS at A1 (one account ``acc``); HOLDINGS at A5 with ``header`` (default
    account, name, asset class, asset type, units, value: columns A to F)."""
    return place(
        ("A1", [["ACCOUNTS"], ["identifier", "currency", "type"], ["acc", currency, "other"]]),
        (
            "A5",
            [
                ["HOLDINGS"],
                header or ["account", "name", "asset class", "asset type", "units", "value"],
                *holdings,
            ],
        ),
    )


def test_text_numbers_through_the_api_exact(sheets: SheetsFixture) -> None:
    """The two readings the issue found wrong, and JSON numbers used as they are."""
    _share(
        sheets,
        _one_account(
            [
                ["acc", "Livret A", "cash", "cash", "", "5.500,50"],
                ["acc", "Fund", "", "fund", "1,5", "€1.234,56"],
                # more digits than a float holds: a float would give 12345678901234568
                ["acc", "Land", "real_estate", "", "", D("12345678901234567.89")],
                ["acc", "Dust", "cash", "cash", "", D("0.1")],
                ["acc", "More dust", "cash", "cash", "", D("0.2")],
                # a formula's double with 21 decimal places: rounded to the 18 kept
                ["acc", "Tiny", "other", "", D("1.2345678901234567E-5"), 1],
            ]
        ),
    )
    assert float("12345678901234567.89") == 12345678901234568.0  # why floats would not do
    items = _items(_fetch(sheets))
    assert items[("acc", "Livret A")].value == D("5500.50")
    assert items[("acc", "Fund")].units == D("1.5")
    assert items[("acc", "Fund")].value == D("1234.56")
    assert items[("acc", "Land")].value == D("12345678901234567.89")
    # 0.1 + 0.2 in floats is 0.30000000000000004
    assert items[("acc", "Dust")].value + items[("acc", "More dust")].value == D("0.3")  # type: ignore[operator]
    assert items[("acc", "Tiny")].units == D("0.000012345678901235")


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("1,500", "value '1,500' is ambiguous"),
        ("1.500", "value '1.500' is ambiguous"),
        ("12,34,56", "value '12,34,56' is not a number"),
        ("1.2.3", "value '1.2.3' is not a number"),
        ("abc", "value 'abc' is not a number"),
    ],
)
def test_text_number_errors_name_worksheet_cell_and_text(
    sheets: SheetsFixture, cell: str, message: str
) -> None:
    _share(sheets, _one_account([["acc", "Cash", "cash", "cash", "", 10], ["acc", "X", "cash",
                                 "cash", "", cell]]), "Wealth")  # fmt: skip
    with pytest.raises(ProviderPayloadError) as err:
        _fetch(sheets)
    # HOLDINGS at A5: header on row 6, the second data row is row 8; value is column F
    assert str(err.value).startswith(f"worksheet 'Wealth', cell F8: {message}")


# --------------------------------------------------------------------------- rule 2: original


# The original finbot's layout as its provider reads it (finbot/providers/google_sheets.py,
# 2025): the first worksheet; ACCOUNTS with identifier, description, currency, type,
# sub_type; HOLDINGS with account, symbol, type (free text), asset_class, asset_type, units,
# value_in_account_ccy / value_in_item_ccy (exactly one per row), currency, isin_code, custom;
# header names exactly its field names, values its enums' values.
ORIGINAL = place(
    ("B2", [["ACCOUNTS"]]),
    (
        "B3",
        [
            ["identifier", "description", "currency", "type", "sub_type"],
            ["Precious metals", "Precious metals", "EUR", "investment", "other"],
            ["Cash", "Cash", "EUR", "depository", "checking"],
            ["Broker", "Interactive Brokers", "USD", "investment", "brokerage"],
            ["Crowdlending", "October", "EUR", "investment", "other"],
            ["Wallet", "Ledger", "EUR", "other", ""],
            ["Flat", "Flat in Lyon", "EUR", "other", ""],
            ["Mortgage", "Mortgage", "EUR", "loan", "mortgage"],
            ["Card", "Amex", "GBP", "credit", "credit card"],
        ],
    ),
    ("B13", [["HOLDINGS"]]),
    (
        "B14",
        [
            ["account", "symbol", "type", "asset_class", "asset_type", "units",
             "value_in_account_ccy", "value_in_item_ccy", "currency", "isin_code", "custom"],
            ["Precious metals", "Gold bar 1oz", "precious metals", "commodities",
             "precious_metal", 2, 4410.6, "", "EUR", "", "key1=value1; type = precious metals"],
            ["Cash", "EUR", "", "currency", "cash", "", 2500.5, "", "EUR", "", ""],
            ["Cash", "USD", "", "foreign_currency", "cash", "", "", 1000, "USD", "", ""],
            ["Broker", "VWRL", "", "equities", "ETF", 120, 11340, "", "USD", "IE00B3RBWM25", ""],
            ["Broker", "Vanguard Total Bond", "", "fixed_income", "generic_fund", 40, "",
             5210.75, "USD", "", ""],
            ["Broker", "GBP", "", "foreign_currency", "cash", "", "", 250, "GBP", "", ""],
            ["Crowdlending", "Loan #1234", "", "private_debt", "loan", "", 1500, "", "EUR", "",
             ""],
            ["Wallet", "BTC", "", "crypto", "crypto_currency", 0.25, 15000, "", "EUR", "", ""],
            ["Wallet", "USDC", "", "crypto", "stable_coin", 500, "", 500, "USD", "", ""],
            ["Flat", "Flat in Lyon", "", "real_estate", "residential_property", "", 320000, "",
             "EUR", "", ""],
            ["Mortgage", "Mortgage", "", "real_estate", "loan", "", -185000, "", "EUR", "", ""],
            ["Mortgage", "Bridge loan", "", "real_estate", "loan", "", 12000, "", "EUR", "", ""],
            ["Card", "Amex balance", "", "currency", "cash", "", -640.2, "", "GBP", "", ""],
        ],
    ),
)  # fmt: skip


def test_a_sheet_made_for_the_original_finbot_reads_as_it_is(sheets: SheetsFixture) -> None:
    _share(sheets, ORIGINAL, "Sheet1", Archive=[["old"]])
    snapshot = _fetch(sheets)  # no worksheet option: the first one, as the original reads
    assert snapshot.warnings == ()  # ISO amounts in another currency are converted by FX
    subs = _by_id(snapshot)
    assert {k: (s.name, s.currency, s.account_type) for k, s in subs.items()} == {
        "Precious metals": ("Precious metals", "EUR", "investment"),
        "Cash": ("Cash", "EUR", "depository"),
        "Broker": ("Interactive Brokers", "USD", "investment"),
        "Crowdlending": ("October", "EUR", "investment"),
        "Wallet": ("Ledger", "EUR", "other"),
        "Flat": ("Flat in Lyon", "EUR", "other"),
        "Mortgage": ("Mortgage", "EUR", "loan"),
        "Card": ("Amex", "GBP", "credit"),
    }
    got = {k: _row(i) for k, i in _items(snapshot).items()}
    # (item_type, asset_class, asset_type, value, units, currency, symbol, unit), by hand
    assert got == {
        ("Precious metals", "Gold bar 1oz"): (
            "asset", "commodities", "precious_metal", D("4410.6"), D(2), "EUR", "Gold bar 1oz",
            None),
        # currency -> cash
        ("Cash", "EUR"): ("asset", "cash", "cash", D("2500.5"), None, "EUR", "EUR", None),
        # foreign_currency -> cash; a value in the item's currency: 1000 USD, converted by FX
        ("Cash", "USD"): ("asset", "cash", "cash", None, D(1000), "USD", "USD", "USD"),
        # ETF -> etf; the symbol is kept, the ISIN only stands in for a missing symbol
        ("Broker", "VWRL"): ("asset", "equities", "etf", D(11340), D(120), "USD", "VWRL", None),
        # generic_fund -> fund; value_in_item_ccy in the account's currency is the value
        ("Broker", "Vanguard Total Bond"): (
            "asset", "fixed_income", "fund", D("5210.75"), D(40), "USD", "Vanguard Total Bond",
            None),
        ("Broker", "GBP"): ("asset", "cash", "cash", None, D(250), "GBP", "GBP", "GBP"),
        # private_debt -> fixed_income: money lent, an asset
        ("Crowdlending", "Loan #1234"): (
            "asset", "fixed_income", "private_loan", D(1500), None, "EUR", "Loan #1234", None),
        ("Wallet", "BTC"): (
            "asset", "crypto", "crypto_currency", D(15000), D("0.25"), "EUR", "BTC", "BTC"),
        ("Wallet", "USDC"): ("asset", "crypto", "stable_coin", None, D(500), "USD", "USDC", "USD"),
        # residential_property -> property
        ("Flat", "Flat in Lyon"): (
            "asset", "real_estate", "property", D(320000), None, "EUR", "Flat in Lyon", None),
        # loan is the original's debt type: negative whether written negative or positive
        ("Mortgage", "Mortgage"): (
            "liability", "real_estate", "loan", D(-185000), None, "EUR", "Mortgage", None),
        ("Mortgage", "Bridge loan"): (
            "liability", "real_estate", "loan", D(-12000), None, "EUR", "Bridge loan", None),
        # a negative cash balance is owed
        ("Card", "Amex balance"): (
            "liability", "cash", "cash", D("-640.2"), None, "GBP", "Amex balance", None),
    }  # fmt: skip
    # by hand, in each account's currency (rows valued in another currency left to FX)
    assert {k: _total(s) for k, s in subs.items()} == {
        "Precious metals": D("4410.6"),
        "Cash": D("2500.5"),
        "Broker": D(11340) + D("5210.75"),  # 16550.75 USD
        "Crowdlending": D(1500),
        "Wallet": D(15000),
        "Flat": D(320000),
        "Mortgage": D(-185000) - D(12000),  # -197000
        "Card": D("-640.2"),
    }


# The original's 2023 layout (before its account sub-types): account types cash, credit and
# investment; HOLDINGS with value, underlying_ccy, its 2023 class and type names
# (cryptocurrency) and rows with only the free-text type.
ORIGINAL_2023 = place(
    ("A1", [["ACCOUNTS"]]),
    (
        "A2",
        [
            ["identifier", "description", "currency", "type"],
            ["current", "Current account", "GBP", "cash"],
            ["isa", "ISA", "GBP", "investment"],
            ["card", "Card", "GBP", "credit"],
        ],
    ),
    ("A8", [["HOLDINGS"]]),
    (
        "A9",
        [
            ["account", "symbol", "type", "asset_class", "asset_type", "units", "value",
             "underlying_ccy", "custom"],
            ["current", "GBP", "currency", "currency", "cash", "", 1234.56, "GBP", ""],
            ["isa", "VWRL", "equity", "equities", "ETF", 10, 950.5, "GBP", ""],
            ["isa", "Bitcoin", "crypto", "cryptocurrency", "cryptocurrency", 0.1, 4000, "", ""],
            ["isa", "Cash", "currency", "", "", "", 100, "", ""],
            ["card", "Amex", "currency", "currency", "cash", "", -640.2, "", ""],
        ],
    ),
)  # fmt: skip


def test_the_original_finbots_2023_layout_reads_too(sheets: SheetsFixture) -> None:
    _share(sheets, ORIGINAL_2023)
    snapshot = _fetch(sheets)
    assert {sa.id: sa.account_type for sa in snapshot.sub_accounts} == {
        "current": "depository",  # the original's "cash" account type
        "isa": "investment",
        "card": "credit",
    }
    assert {k: _row(i) for k, i in _items(snapshot).items()} == {
        ("current", "GBP"): ("asset", "cash", "cash", D("1234.56"), None, "GBP", "GBP", None),
        ("isa", "VWRL"): ("asset", "equities", "etf", D("950.5"), D(10), "GBP", "VWRL", None),
        # "Bitcoin" is no unit code: no unit (the row has its value anyway)
        ("isa", "Bitcoin"): (
            "asset", "crypto", "crypto_currency", D(4000), D("0.1"), None, "Bitcoin", None),
        # neither class nor type: the free-text type "currency" is the class
        ("isa", "Cash"): ("asset", "cash", "cash", D(100), None, None, "Cash", None),
        ("card", "Amex"): ("liability", "cash", "cash", D("-640.2"), None, None, "Amex", None),
    }  # fmt: skip


def test_mapping_tables_cover_the_original_vocabulary() -> None:
    # the original's enums (finbot/providers/schema.py): every value maps to ours
    original_classes = [
        "equities",
        "fixed_income",
        "private_debt",
        "currency",
        "foreign_currency",
        "crypto",
        "real_estate",
        "commodities",
        "multi_asset",
    ]
    original_types = ["cash", "bond", "stock", "option", "future", "ETF", "ETN", "ETC",
                      "generic_fund", "loan", "precious_metal", "crypto_currency",
                      "utility_token", "security_token", "stable_coin", "commercial_property",
                      "residential_property", "land_property"]  # fmt: skip
    original_account_types = ["depository", "credit", "loan", "investment", "other", "cash"]
    assert {c: layout.ASSET_CLASS_MAP[c] for c in original_classes} == {
        "equities": "equities",
        "fixed_income": "fixed_income",
        "private_debt": "fixed_income",
        "currency": "cash",
        "foreign_currency": "cash",
        "crypto": "crypto",
        "real_estate": "real_estate",
        "commodities": "commodities",
        "multi_asset": "multi_asset",
    }
    assert {t: layout.ASSET_TYPE_MAP[t.lower()][0] for t in original_types} == {
        "cash": "cash", "bond": "bond", "stock": "stock", "option": "option",
        "future": "future", "ETF": "etf", "ETN": "etn", "ETC": "etc", "generic_fund": "fund",
        "loan": "loan", "precious_metal": "precious_metal", "crypto_currency": "crypto_currency",
        "utility_token": "utility_token", "security_token": "security_token",
        "stable_coin": "stable_coin", "commercial_property": "commercial_property",
        "residential_property": "property", "land_property": "land",
    }  # fmt: skip
    assert {t: layout.ACCOUNT_TYPE_MAP[t] for t in original_account_types} == {
        "depository": "depository", "credit": "credit", "loan": "loan",
        "investment": "investment", "other": "other", "cash": "depository",
    }  # fmt: skip


# --------------------------------------------------------------------------- rule 3


def test_liabilities_are_negative_however_written(sheets: SheetsFixture) -> None:
    rows: list[list[CellValue]] = []
    for kind in ("mortgage", "loan", "student_loan", "credit_card", "overdraft"):
        rows.append(["acc", f"{kind} +", "", kind, "", 1000])
        rows.append(["acc", f"{kind} -", "", kind, "", -1000])
    rows.append(["acc", "Overdrawn", "cash", "cash", "", "-25,50"])
    rows.append(["acc", "Paid off", "", "loan", "", 0])
    _share(sheets, _one_account(rows, currency="GBP"))
    items = _items(_fetch(sheets))
    for kind in ("mortgage", "loan", "student_loan", "credit_card", "overdraft"):
        for sign in "+-":
            it = items[("acc", f"{kind} {sign}")]
            assert (it.item_type, it.asset_type, it.value) == ("liability", kind, D(-1000))
    assert (items[("acc", "Overdrawn")].item_type, items[("acc", "Overdrawn")].value) == (
        "liability",
        D("-25.50"),
    )
    assert items[("acc", "Paid off")].value == D(0)
    # 10 x -1000 - 25.50 + 0
    assert sum((i.value for i in items.values() if i.value is not None), D(0)) == D("-10025.50")


CRYPTO: list[list[CellValue]] = [
    ["acc", "Bitcoin", "crypto", "", "", 0.5, 21000],  # priced in the sheet
    ["acc", "Ether", "crypto", "", "ETH", 2, ""],  # units and symbol: unpriced
]
CRYPTO_HEADER: list[CellValue] = ["account", "name", "asset class", "asset type", "symbol",
                                  "units", "value"]  # fmt: skip


def test_crypto_rows_count_units_of_their_symbol(sheets: SheetsFixture) -> None:
    rows = [[*r[:4], "BTC" if r[1] == "Bitcoin" else r[4], *r[5:]] for r in CRYPTO]
    _share(sheets, _one_account(rows, CRYPTO_HEADER))
    # the household prices ETH: the empty value is left to unit_prices, no warning
    snapshot = _fetch(sheets, priced_units=frozenset({"ETH"}))
    items = _items(snapshot)
    assert _row(items[("acc", "Bitcoin")]) == (
        "asset", "crypto", "crypto_currency", D(21000), D("0.5"), None, "BTC", "BTC"
    )  # fmt: skip
    assert _row(items[("acc", "Ether")]) == (
        "asset", "crypto", "crypto_currency", None, D(2), None, "ETH", "ETH"
    )  # fmt: skip
    assert snapshot.warnings == ()

    # nothing prices ETH: kept unpriced, with a warning naming it; the rest keeps its value
    snapshot = _fetch(sheets)
    assert [w.code for w in snapshot.warnings] == ["unpriced"]
    assert "'Ether' (2 ETH)" in snapshot.warnings[0].message
    assert _total(_by_id(snapshot)["acc"]) == D(21000)


def test_an_account_of_unpriced_crypto_only_fails(sheets: SheetsFixture) -> None:
    _share(sheets, _one_account([CRYPTO[1]], CRYPTO_HEADER))
    with pytest.raises(UnpricedError, match="ETH"):
        _fetch(sheets)
    outcome = run_one(_task(sheets), RetryPolicy(backoff_s=0))
    assert (outcome.error_code, outcome.attempts) == ("unpriced", 1)


@pytest.mark.parametrize(
    ("row", "cell"),
    [
        (["acc", "Ether", "crypto", "", "ETH", "", ""], "G7"),  # no units
        (["acc", "Ether", "crypto", "", "", 2, ""], "G7"),  # no symbol
        (["acc", "Ether", "crypto", "", "eth", 2, ""], "G7"),  # no unit code
        (["acc", "Cash", "cash", "", "", 2, ""], "G7"),  # not crypto
    ],
)
def test_an_empty_value_is_an_error_naming_the_cell(
    sheets: SheetsFixture, row: list[CellValue], cell: str
) -> None:
    _share(sheets, _one_account([row], CRYPTO_HEADER))
    with pytest.raises(ProviderPayloadError) as err:
        _fetch(sheets)
    assert str(err.value).startswith(
        f"worksheet 'Sheet1', cell {cell}: value is empty: expected a number"
    )


def test_an_account_kept_in_a_priced_unit(sheets: SheetsFixture) -> None:
    grid = _one_account([["acc", "Coins", "crypto", "", "", 0.5]], currency="BTC")
    _share(sheets, grid)
    with pytest.raises(ProviderPayloadError) as err:
        _fetch(sheets)
    assert "cell B3: currency 'BTC' is not a 3-letter ISO 4217 code" in str(err.value)
    snapshot = _fetch(sheets, priced_units=frozenset({"BTC"}))
    (sa,) = snapshot.sub_accounts
    assert (sa.currency, [i.value for i in sa.items]) == ("BTC", [D("0.5")])


# --------------------------------------------------------------------------- layout errors


def _base() -> dict[str, tuple[str, list[list[CellValue]]]]:
    """A valid layout: ACCOUNTS at A1 (A2:D4), HOLDINGS at F1 (F2:K4)."""
    return {
        "accounts": (
            "A1",
            [
                ["ACCOUNTS"],
                ["identifier", "description", "currency", "type"],
                ["cur", "Current", "GBP", "depository"],
                ["isa", "ISA", "GBP", "investment"],
            ],
        ),
        "holdings": (
            "F1",
            [
                ["HOLDINGS"],
                ["account", "symbol", "asset class", "asset type", "units", "value"],
                ["cur", "Cash", "cash", "cash", "", 100],
                ["isa", "VWRL", "equities", "etf", 10, "950.5"],
            ],
        ),
    }


def _set(blocks: dict[str, tuple[str, list[list[CellValue]]]], table: str, r: int, c: int,
         v: CellValue) -> None:  # fmt: skip
    rows = blocks[table][1]
    while len(rows[r]) <= c:
        rows[r].append("")
    rows[r][c] = v


Mutation = Callable[[dict[str, tuple[str, list[list[CellValue]]]]], object]


def cells(table: str, *edits: tuple[int, int, CellValue]) -> Mutation:
    """Set cells (row, column, value), 0-based inside the table's block."""

    def mutate(blocks: dict[str, tuple[str, list[list[CellValue]]]]) -> None:
        for r, c, v in edits:
            _set(blocks, table, r, c, v)

    return mutate


LAYOUT_ERRORS: list[tuple[str, Mutation, str]] = [
    ("no accounts marker", cells("accounts", (0, 0, "Accounts:")),
     "worksheet 'Holdings': no cell marked ACCOUNTS"),
    ("no holdings marker", cells("holdings", (0, 0, "")),
     "worksheet 'Holdings': no cell marked HOLDINGS"),
    ("two accounts markers", lambda b: b.update(extra=("A9", [["ACCOUNTS"]])),
     "worksheet 'Holdings', cell A9: more than one cell marked ACCOUNTS (A1, A9)"),
    ("missing currency column", cells("accounts", (1, 2, "notes")),
     "worksheet 'Holdings', cell A2: missing required column 'currency' in the ACCOUNTS header"),
    ("missing value column", cells("holdings", (1, 5, "amount")),
     "worksheet 'Holdings', cell F2: missing column 'value' or 'value in item ccy' in the "
     "HOLDINGS header"),
    ("no class nor type column",
     cells("holdings", (1, 2, "x"), (1, 3, "y")),
     "worksheet 'Holdings', cell F2: missing column 'asset class' or 'asset type'"),
    ("value not a number", cells("holdings", (3, 5, "abc")),
     "worksheet 'Holdings', cell K4: value 'abc' is not a number"),
    ("value ambiguous", cells("holdings", (3, 5, "1.500")),
     "worksheet 'Holdings', cell K4: value '1.500' is ambiguous"),
    ("unknown account", cells("holdings", (3, 0, "ISA2")),
     "worksheet 'Holdings', cell F4: unknown account 'ISA2' (ACCOUNTS has: cur, isa)"),
    ("bad account currency", cells("accounts", (2, 2, "EURO")),
     "worksheet 'Holdings', cell C3: currency 'EURO' is not a 3-letter ISO 4217 code"),
    ("bad account type", cells("accounts", (3, 3, "savings")),
     "worksheet 'Holdings', cell D4: account type 'savings' is not one of depository, credit"),
    ("bad asset class", cells("holdings", (3, 2, "stocks")),
     "worksheet 'Holdings', cell H4: asset class 'stocks' is not one of cash, equities"),
    ("type without a known class",
     cells("holdings", (3, 2, ""), (3, 3, "widget")),
     "worksheet 'Holdings', cell I4: cannot infer the asset class of asset type 'widget'"),
    ("neither class nor type",
     cells("holdings", (2, 2, ""), (2, 3, "")),
     "worksheet 'Holdings', cell I3: the holding has no asset class and no asset type"),
    ("duplicate account", cells("accounts", (3, 0, "cur")),
     "worksheet 'Holdings', cell A4: duplicate account identifier 'cur' (also on row 3)"),
    ("duplicate holding",
     cells("holdings", (3, 0, "cur"), (3, 1, "Cash")),
     "worksheet 'Holdings', cell G4: duplicate holding 'Cash' in account 'cur' (also on row 3)"),
    ("units not a number", cells("holdings", (3, 4, "ten")),
     "worksheet 'Holdings', cell J4: units 'ten' is not a number"),
    ("units ambiguous", cells("holdings", (3, 4, "1,000")),
     "worksheet 'Holdings', cell J4: units '1,000' is ambiguous"),
    ("empty value", cells("holdings", (2, 5, "")),
     "worksheet 'Holdings', cell K3: value is empty: expected a number"),
    ("boolean value", cells("holdings", (2, 5, True)),
     "worksheet 'Holdings', cell K3: value 'TRUE' is not a number"),
    ("too large", cells("holdings", (2, 5, D("1E+21"))),
     "worksheet 'Holdings', cell K3: value '1000000000000000000000' is too large"),
    ("duplicate column", cells("holdings", (1, 6, "Value")),
     "worksheet 'Holdings', cell L2: column 'Value' appears twice in the HOLDINGS header "
     "(also in cell K2)"),
    ("value twice by its original name", cells("holdings", (1, 6, "value_in_account_ccy")),
     "worksheet 'Holdings', cell L2: column 'value_in_account_ccy' appears twice"),
    ("both values", cells("holdings", (1, 6, "value_in_item_ccy"), (2, 6, 5)),
     "worksheet 'Holdings', cell L3: both value_in_account_ccy and value_in_item_ccy are filled"),
    ("misspelt column", cells("holdings", (1, 4, "unit")),
     "worksheet 'Holdings', cell J2: unknown column 'unit' in the HOLDINGS header; "
     "did you mean 'units'?"),
    ("no symbol nor name", cells("holdings", (2, 1, "")),
     "worksheet 'Holdings', cell G3: the holding has no symbol and no name"),
    ("bad holding currency",
     cells("holdings", (1, 6, "currency"), (3, 6, "dollars")),
     "worksheet 'Holdings', cell L4: currency 'dollars' is not a 3-letter ISO 4217 code"),
    ("empty header",
     lambda b: b.update(accounts=("A1", [["ACCOUNTS"], [], ["cur", "Current", "GBP"]])),
     "worksheet 'Holdings', cell A2: the ACCOUNTS header is empty"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(m, e, id=name) for name, m, e in LAYOUT_ERRORS],
)
def test_layout_errors_name_worksheet_and_cell(
    sheets: SheetsFixture, mutate: Mutation, expected: str
) -> None:
    blocks = _base()
    mutate(blocks)
    _share(sheets, place(*blocks.values()), "Holdings")
    with pytest.raises(ProviderPayloadError) as err:
        _fetch(sheets)
    assert str(err.value).startswith(expected), str(err.value)


def test_base_layout_is_valid(sheets: SheetsFixture) -> None:
    """The layout the error cases start from parses (so each case fails for its own reason)."""
    _share(sheets, place(*_base().values()), "Holdings")
    snapshot = _fetch(sheets)
    assert {sa.id: [i.value for i in sa.items] for sa in snapshot.sub_accounts} == {
        "cur": [D(100)],
        "isa": [D("950.5")],
    }


def test_values_offset_by_the_answered_range() -> None:
    """Cell addresses follow the ValueRange's start when Google trims leading cells."""
    grid = Grid(
        "Sheet1",
        [["ACCOUNTS"], ["identifier", "currency", "type"], ["cur", "GBP", "nope"]],
        row0=3,
        col0=2,
    )
    with pytest.raises(ProviderPayloadError, match=r"worksheet 'Sheet1', cell D5: account type"):
        parse_grid(grid)


def test_unknown_worksheet(sheets: SheetsFixture) -> None:
    _share(sheets, [["x"]], "Main", Archive=[["y"]])
    with pytest.raises(ProviderPayloadError) as err:
        _fetch(sheets, worksheet="Wealth")
    assert "no worksheet 'Wealth'" in str(err.value)
    assert "'Main', 'Archive'" in str(err.value)


# --------------------------------------------------------------------------- auth and HTTP


def _task(
    sheets: SheetsFixture, credentials: dict[str, str] | None = None, **options: Any
) -> FetchTask:
    creds = sheets.credentials() if credentials is None else credentials
    return FetchTask(
        hour=HOUR,
        linked_account_id="sheet-main",
        provider=GoogleSheetsProvider(),
        options=sheets.options(KEY, **options),
        credentials=lambda: creds,
    )


def _no_key_material(message: str, info: dict[str, str]) -> None:
    assert "PRIVATE KEY" not in message
    assert info["private_key"][40:80] not in message
    assert info["private_key_id"] not in message


def test_sheet_not_shared_is_an_authentication_failure(sheets: SheetsFixture) -> None:
    sheets.fake.add_spreadsheet(KEY, {"Sheet1": REALISTIC}, shared_with=["someone@else.com"])
    outcome = run_one(_task(sheets), RetryPolicy(backoff_s=0))
    assert outcome.error_code == "authentication_failure"
    assert outcome.attempts == 1  # never retried
    assert outcome.error_message is not None
    assert f"share the sheet with {sheets.email}" in outcome.error_message
    assert "HTTP 403" in outcome.error_message
    _no_key_material(outcome.error_message, sheets.info)


def test_unknown_service_account_and_wrong_key(sheets: SheetsFixture) -> None:
    _share(sheets, REALISTIC)
    stranger, _ = make_service_account("stranger@other-project.iam.gserviceaccount.com")
    with pytest.raises(AuthenticationFailure) as err:
        _fetch(sheets, credentials={"service_account_json": json.dumps(stranger)})
    assert "stranger@other-project.iam.gserviceaccount.com" in str(err.value)
    assert "account not found" in str(err.value)
    _no_key_material(str(err.value), stranger)

    # right email, someone else's key (a deleted / rotated key)
    other_key, _ = make_service_account(sheets.email)
    with pytest.raises(AuthenticationFailure, match="Invalid JWT Signature"):
        _fetch(sheets, credentials={"service_account_json": json.dumps(other_key)})


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ({"service_account_json": "{not json"}, "got text that is not a JSON object"),
        ({"service_account_json": '["a"]'}, "got text that is not a JSON object"),
        ({"api_key": "abcd"}, "service_account_json: required"),
        ({"service_account_json": '{"type": "authorized_user"}'}, "expected a service account"),
        ({"service_account_json": '{"private_key": "x"}'}, "without client_email"),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n"}, "without client_email"),
        ({"service_account_json": '{"client_email": "a@b.c"}'}, "without private_key"),
    ],
)
def test_invalid_service_account_json(
    sheets: SheetsFixture, credentials: dict[str, str], expected: str
) -> None:
    with pytest.raises(CredentialsError) as err:
        _fetch(sheets, credentials=credentials)
    assert str(err.value).startswith("google_sheets credentials: service_account_json: ")
    assert expected in str(err.value)
    assert "c2VjcmV0" not in str(err.value) and "{not json" not in str(err.value)
    assert sheets.fake.requests == []  # refused before any request


def test_unreadable_private_key_is_not_quoted(sheets: SheetsFixture) -> None:
    info = {**sheets.info, "private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXN0dWZm\n"}
    outcome = run_one(_task(sheets, {"service_account_json": json.dumps(info)}), RetryPolicy())
    assert outcome.error_code == "authentication_failure"
    assert outcome.error_message is not None
    assert "private_key could not be read" in outcome.error_message
    assert sheets.email in outcome.error_message
    assert "c2VjcmV0LXN0dWZm" not in outcome.error_message
    assert sheets.fake.requests == []


def test_expired_token_is_an_authentication_failure(sheets: SheetsFixture) -> None:
    _share(sheets, REALISTIC)
    sheets.fake.fail_next(401, path_prefix="/v4/")
    with pytest.raises(AuthenticationFailure, match="HTTP 401"):
        _fetch(sheets)


def test_missing_spreadsheet_names_the_key(sheets: SheetsFixture) -> None:
    outcome = run_one(_task(sheets), RetryPolicy(backoff_s=0))
    assert outcome.error_code == "provider_error"
    assert outcome.attempts == 1
    assert outcome.error_message is not None
    assert f"spreadsheet '{KEY}' not found" in outcome.error_message


def test_rate_limit_is_retried_after_the_asked_delay(sheets: SheetsFixture) -> None:
    _share(sheets, REALISTIC)
    sheets.fake.fail_next(429, retry_after="7", path_prefix="/v4/spreadsheets/")
    with pytest.raises(RateLimited) as err:
        _fetch(sheets)
    assert err.value.retry_after == 7.0
    assert "HTTP 429" in str(err.value)

    sheets.fake.fail_next(429, retry_after="7", path_prefix="/v4/spreadsheets/")
    slept: list[float] = []
    outcome = run_one(_task(sheets), RetryPolicy(backoff_s=0), sleep=slept.append)
    assert outcome.ok, outcome.error_message
    assert outcome.attempts == 2
    assert slept == [7.0]


def test_retry_after_of_the_token_endpoint_as_an_http_date(sheets: SheetsFixture) -> None:
    _share(sheets, REALISTIC)
    sheets.fake.fail_next(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", path_prefix="/token")
    with pytest.raises(TransientError) as err:
        _fetch(sheets)
    assert err.value.retry_after == 0.0  # a date in the past: retry now
    sheets.fake.fail_next(429, retry_after="3", path_prefix="/token")
    with pytest.raises(RateLimited) as err2:
        _fetch(sheets)
    assert err2.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "prefix"), [(500, "/v4/"), (503, "/v4/"), (503, "/token"), (429, "/token")]
)
def test_server_errors_are_transient_and_retried(
    sheets: SheetsFixture, status: int, prefix: str
) -> None:
    _share(sheets, REALISTIC)
    sheets.fake.fail_next(status, times=2, path_prefix=prefix)
    outcome = run_one(_task(sheets), RetryPolicy(backoff_s=0), sleep=lambda s: None)
    assert outcome.ok, outcome.error_message
    assert outcome.attempts == 3
    assert outcome.snapshot is not None
    assert sum((_total(sa) for sa in outcome.snapshot.sub_accounts), D(0)) == sum(
        REALISTIC_TOTALS.values(), D(0)
    )


def test_server_errors_exhausting_the_attempts(sheets: SheetsFixture) -> None:
    _share(sheets, REALISTIC)
    sheets.fake.fail_next(503, times=3, path_prefix="/v4/")
    with pytest.raises(TransientError, match="HTTP 503"):
        _fetch(sheets)
    outcome = run_one(_task(sheets), RetryPolicy(max_attempts=2, backoff_s=0))
    assert (outcome.error_code, outcome.attempts) == ("transient", 2)


def test_connection_refused_and_timeout(sheets: SheetsFixture) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match="could not be reached"):
        _fetch(sheets, api_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="could not be reached"):
        _fetch(sheets, token_url=f"http://127.0.0.1:{port}/token")

    _share(sheets, REALISTIC)
    sheets.fake.delay_next(1.0)
    with pytest.raises(FetchTimeout, match=r"no answer within 0\.3 s"):
        _fetch(sheets, timeout_s=0.3)


@pytest.mark.parametrize(
    ("prefix", "body"),
    [
        ("/v4/", b"<html>Service Unavailable</html>"),
        ("/v4/", b'{"spreadsheetId": "x"}'),
        (f"/v4/spreadsheets/{KEY}/values", b"<html>Service Unavailable</html>"),
        (f"/v4/spreadsheets/{KEY}/values", b'{"range": "A1:B2", "values": "nope"}'),
        (f"/v4/spreadsheets/{KEY}/values", b'{"values": [[{"a": 1}]]}'),
        (f"/v4/spreadsheets/{KEY}/values", b'{"values": [[NaN]]}'),
        ("/token", b'{"token_type": "Bearer"}'),
    ],
)
def test_malformed_payload_is_a_provider_error(
    sheets: SheetsFixture, prefix: str, body: bytes
) -> None:
    _share(sheets, REALISTIC)
    sheets.fake.fail_next(200, path_prefix=prefix, body=body)
    outcome = run_one(_task(sheets), RetryPolicy(backoff_s=0))
    assert outcome.error_code == "provider_error", outcome.error_message
    assert outcome.attempts == 1


def test_an_echoed_key_is_masked(sheets: SheetsFixture) -> None:
    """Even if the token endpoint quoted the key back, the message would not show it."""
    _share(sheets, REALISTIC)
    echoed = json.dumps({"error": "invalid_request", "error_description": "bad assertion "
        + sheets.info["private_key"] + " " + sheets.info["private_key_id"]}).encode()  # fmt: skip
    sheets.fake.fail_next(400, path_prefix="/token", body=echoed)
    with pytest.raises(ProviderPayloadError) as err:
        _fetch(sheets)
    assert "HTTP 400" in str(err.value) and "***" in str(err.value)
    _no_key_material(str(err.value), sheets.info)


# --------------------------------------------------------------------------- options


def test_validate_options() -> None:
    SPEC.parse_options({"sheet_key": KEY})
    SPEC.parse_options(
        {"sheet_key": KEY, "worksheet": "Wealth", "api_url": "http://127.0.0.1:1",
         "token_url": "http://127.0.0.1:1/token", "timeout_s": 5}
    )  # fmt: skip
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, r"^options\.sheet_key: required"),
        ({"sheet_key": "no spaces allowed"}, r"^options\.sheet_key: expected a spreadsheet id"),
        ({"sheet_key": "https://example.com/x"}, r"^options\.sheet_key: expected"),
        ({"sheet_key": KEY, "worksheet": ""}, r"^options\.worksheet: expected"),
        ({"sheet_key": KEY, "api_url": "sheets.googleapis.com"}, r"^options\.api_url: expected"),
        ({"sheet_key": KEY, "timeout_s": 0}, r"^options\.timeout_s: expected a number greater"),
        ({"sheet_key": KEY, "sheet": "x"}, r"^options\.sheet: unknown option"),
    ]
    for options, pattern in bad:
        with pytest.raises(OptionsError, match=pattern):
            SPEC.parse_options(options)
        assert registry.option_issues("google_sheets", options)


# --------------------------------------------------------------------------- end to end


def test_end_to_end_hour_through_the_pipeline(tmp_path: Path, sheets: SheetsFixture) -> None:
    from finbot_pipelines_tests.e2e import history_start_for_tests, run_live_hour

    _share(sheets, REALISTIC, "Holdings")
    config = f"""\
history_start: "{history_start_for_tests()}"
fx_source: static
fx_static_rates: {{GBP: 0.85, USD: 1.10, CHF: 0.95}}
profiles:
  - {{id: alice, name: Alice, valuation_ccy: GBP}}
linked_accounts:
  - id: sheet-main
    profile: alice
    provider: google_sheets
    name: My sheet
    credentials: sheet-main
    options:
      sheet_key: "{KEY}"
      worksheet: Holdings
      api_url: "{sheets.fake.url}"
      token_url: "{sheets.fake.token_url}"
fetch: {{timeout_s: 20, max_attempts: 2, backoff_s: 0, max_workers: 2}}
"""
    run = run_live_hour(tmp_path / "home", config, {"sheet-main": sheets.credentials()})
    assert run.success

    # By hand, into GBP with rates per 1 EUR (GBP 0.85, USD 1.10, CHF 0.95):
    gbp = 1234.56 + 15602.35 - 185000 - 640.20  # -168803.29
    usd = 9311.50 * 0.85 / 1.10  # 7195.25
    eur = (8000 + 17500) * 0.85  # 21675.00
    chf = 42000 * 0.85 / 0.95  # 37578.947368...
    expected = gbp + usd + eur + chf  # -102354.0926...
    assert math.isclose(expected, -102354.09263, abs_tol=1e-4)

    df = run.published(
        "select value, total_liabilities, is_stale from marts.fct_linked_account_valuation_hourly "
        "where linked_account_id = 'sheet-main' and valuation_hour = ?",
        [run.hour],
    )
    assert len(df) == 1
    assert math.isclose(float(df["value"][0]), expected, abs_tol=0.01)
    assert math.isclose(float(df["total_liabilities"][0]), -185640.20, abs_tol=0.01)
    assert not bool(df["is_stale"][0])
    fetches = run.raw(
        "select status, error_code from raw.fetches where linked_account_id = 'sheet-main'"
    )
    assert list(fetches["status"]) == ["success"]
    assert fetches["error_code"].isna().all()
    items = run.raw(
        "select item_name, value, units, unit from raw.items "
        "where linked_account_id = 'sheet-main' and sub_account_id = 'ledger' order by item_name"
    )
    assert [(n, D(str(v))) for n, v in zip(items["item_name"], items["value"], strict=True)] == [
        ("BTC", D(15000)),
        ("USDC", D(2500)),
    ]


# --------------------------------------------------------------------------- TRANSACTIONS


def _txn_ctx(state_dir: Path | None, cursor: str | None = None) -> FetchContext:
    return FetchContext(
        linked_account_id="sheet-main", hour=HOUR, state_dir=state_dir, transactions_cursor=cursor
    )


def _fetch_txns(sheets: SheetsFixture, ctx: FetchContext) -> Snapshot:
    return fetch_snapshot(
        SPEC, GoogleSheetsProvider(), ctx, sheets.options(KEY), sheets.credentials()
    )


def _with_txns(rows: list[list[CellValue]], anchor: str = "A8") -> Grid_:
    """The base layout plus a TRANSACTIONS table at ``anchor`` (header then ``rows``)."""
    blocks = _base()
    return place(*blocks.values(), (anchor, [["TRANSACTIONS"], *rows]))


TXN_HEADER: list[CellValue] = ["account", "date", "amount", "description", "kind", "id"]


def test_template_transactions(sheets: SheetsFixture, tmp_path: Path) -> None:
    _share(sheets, grid_from_csv(TEMPLATE.read_text()))
    snap = _fetch_txns(sheets, _txn_ctx(tmp_path))
    got = [
        (t.sub_account_id, t.posted, t.amount, t.currency, t.kind, t.description, t.category)
        for t in snap.transactions
    ]
    day = datetime(2026, 2, 3).date()
    assert got == [
        ("current", datetime(2026, 1, 30).date(), D("3200"), "GBP", "deposit", "Salary", "salary"),
        ("current", datetime(2026, 2, 1).date(), D("-1250"), "GBP", "withdrawal", "Rent",
         "housing"),
        ("current", day, D("-500"), "GBP", "transfer", "To the ISA", None),
        ("isa", day, D("500"), "GBP", "transfer", "From the current account", None),
        ("isa", datetime(2026, 2, 10).date(), D("12.4"), "GBP", "dividend", "VWRL dividend", None),
        ("isa", datetime(2026, 2, 10).date(), D("-1.5"), "GBP", "fee", "Platform fee", None),
    ]  # fmt: skip
    ids = [t.id for t in snap.transactions]
    assert ids[0] == "pay-2026-01" and all(i.startswith("row:") for i in ids[1:])
    assert len(set(ids)) == 6
    assert snap.removed_transaction_ids == () and snap.transactions_cursor


def test_content_keys_are_stable_and_count_identical_rows(sheets: SheetsFixture) -> None:
    rows: list[list[CellValue]] = [
        TXN_HEADER,
        ["cur", "2026-03-01", "-3.20", "Coffee", "", ""],
        ["cur", "2026-03-01", -3.2, "Coffee", "", ""],  # the same, typed as a number: twice
        ["cur", "2026-03-02", "-3.20", "Coffee", "", ""],
    ]
    _share(sheets, _with_txns(rows), "Holdings")
    first = _fetch(sheets)
    assert [t.amount for t in first.transactions] == [D("-3.20"), D("-3.2"), D("-3.20")]
    assert [t.kind for t in first.transactions] == ["withdrawal"] * 3  # by the sign
    assert len({t.id for t in first.transactions}) == 3
    # the rows in another order (and 3.20 written 3.2): the same ids
    reordered = [rows[0], rows[3], ["cur", "2026-03-01", "-3.2", "Coffee", "", ""], rows[2]]
    _share(sheets, _with_txns(reordered, "A9"), "Holdings")
    again = _fetch(sheets)
    assert {t.id for t in again.transactions} == {t.id for t in first.transactions}


def test_rows_deleted_from_the_sheet_are_removed(sheets: SheetsFixture, tmp_path: Path) -> None:
    rows: list[list[CellValue]] = [
        TXN_HEADER,
        ["cur", "2026-03-01", 2500, "Salary", "deposit", "sal-03"],
        ["cur", "2026-03-02", -40, "Groceries", "", ""],
        ["isa", "2026-03-03", -2, "Fee", "fee", ""],
    ]
    _share(sheets, _with_txns(rows), "Holdings")
    first = _fetch_txns(sheets, _txn_ctx(tmp_path))
    by_desc = {t.description: t.id for t in first.transactions}
    # the groceries row is deleted (and a new row added)
    rows2 = [rows[0], rows[1], rows[3], ["cur", "2026-03-04", -9, "Cinema", "", ""]]
    _share(sheets, _with_txns(rows2), "Holdings")
    second = _fetch_txns(sheets, _txn_ctx(tmp_path, first.transactions_cursor))
    assert second.removed_transaction_ids == (by_desc["Groceries"],)
    assert {t.description for t in second.transactions} == {"Salary", "Fee", "Cinema"}
    # that fetch never landed: the next one is handed the first cursor again and removes
    # the same row (never taken for landed)
    third = _fetch_txns(sheets, _txn_ctx(tmp_path, first.transactions_cursor))
    assert third.removed_transaction_ids == (by_desc["Groceries"],)
    # after the second one landed: nothing more to remove
    fourth = _fetch_txns(sheets, _txn_ctx(tmp_path, second.transactions_cursor))
    assert fourth.removed_transaction_ids == ()
    # the table deleted: every transaction it held is removed
    _share(sheets, place(*_base().values()), "Holdings")
    gone = _fetch_txns(sheets, _txn_ctx(tmp_path, second.transactions_cursor))
    assert gone.transactions == ()
    assert set(gone.removed_transaction_ids) == {t.id for t in second.transactions}
    # the state file is private
    assert ((tmp_path / "google_sheets_transactions.json").stat().st_mode & 0o777) == 0o600
    # without a state folder nothing can be known: nothing removed, no cursor
    blind = _fetch_txns(sheets, _txn_ctx(None, first.transactions_cursor))
    assert blind.removed_transaction_ids == () and blind.transactions_cursor is None


def test_transaction_columns_kinds_currency_and_units(sheets: SheetsFixture) -> None:
    rows: list[list[CellValue]] = [
        ["Account", "Date", "Amount", "CCY", "Memo", "Type", "Category", "Ticker", "Quantity"],
        ["isa", "13/03/2026", "-950,50", "", "Buy VWRL", "Purchase", "trade", "VWRL", 10],
        ["isa", "March 11, 2026", "12.40", "usd", "Dividend", "Dividends", "", "VWRL", ""],
        ["cur", 46093, "1 000,00", "EUR", "From my sister", "contribution", "", "", ""],
        ["cur", "2026-03-12T09:30:00Z", 0, "", "Card check", "", "", "", ""],
    ]
    _share(sheets, _with_txns(rows), "Holdings")
    got = [
        (t.sub_account_id, t.posted, t.amount, t.currency, t.kind, t.symbol, t.units, t.category)
        for t in _fetch(sheets).transactions
    ]
    # 46093 is the serial day number of 12 March 2026 (45292 is 1 January 2024, 2024 has
    # 366 days and 2025 365: 1 January 2026 is 46023, and 12 March its 71st day)
    assert got == [
        ("isa", datetime(2026, 3, 13).date(), D("-950.50"), "GBP", "buy", "VWRL", D("10"),
         "trade"),
        ("isa", datetime(2026, 3, 11).date(), D("12.40"), "USD", "dividend", "VWRL", None, None),
        ("cur", datetime(2026, 3, 12).date(), D("1000.00"), "EUR", "deposit", None, None, None),
        ("cur", datetime(2026, 3, 12).date(), D("0"), "GBP", "other", None, None, None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", (2026, 1, 31)),
        ("2026-1-5", (2026, 1, 5)),
        ("2026-01-31 14:05:00", (2026, 1, 31)),
        ("2026/01/31", (2026, 1, 31)),
        ("31.01.2026", (2026, 1, 31)),
        ("31/01/2026", (2026, 1, 31)),
        ("01/31/2026", (2026, 1, 31)),
        ("05/05/2026", (2026, 5, 5)),
        ("31-01-2026", (2026, 1, 31)),
        ("31 Jan 2026", (2026, 1, 31)),
        ("January 31, 2026", (2026, 1, 31)),
    ],
)
def test_dates_parsed_when_unambiguous(text: str, expected: tuple[int, int, int]) -> None:
    assert layout.parse_date_text(text) == datetime(*expected).date()


@pytest.mark.parametrize(
    ("text", "reason"),
    [("03/04/2026", "ambiguous"), ("2026-02-30", "not a date"), ("31/13/2026", "not a date"),
     ("yesterday", "not a date"), ("2026", "not a date")],
)  # fmt: skip
def test_dates_refused(text: str, reason: str) -> None:
    with pytest.raises(layout.DateTextError, match=reason):
        layout.parse_date_text(text)


TXN_ERRORS: list[tuple[list[CellValue], str]] = [
    (["bank", "2026-03-01", 1, "", "", ""],
     "worksheet 'Holdings', cell A11: unknown account 'bank' (ACCOUNTS has: cur, isa)"),
    (["cur", "03/04/2026", 1, "", "", ""],
     "worksheet 'Holdings', cell B11: date '03/04/2026' is ambiguous"),
    (["cur", "soon", 1, "", "", ""], "worksheet 'Holdings', cell B11: date 'soon' is not a date"),
    (["cur", "", 1, "", "", ""], "worksheet 'Holdings', cell B11: date is empty"),
    (["cur", "2026-03-01", "", "", "", ""], "worksheet 'Holdings', cell C11: amount is empty"),
    (["cur", "2026-03-01", "1,500", "", "", ""],
     "worksheet 'Holdings', cell C11: amount '1,500' is ambiguous"),
    (["cur", "2026-03-01", 1, "", "dividnd", ""],
     "worksheet 'Holdings', cell E11: kind 'dividnd' is not one of deposit, withdrawal"),
    (["cur", "2026-03-01", 1, "", "", "t-1"],
     "worksheet 'Holdings', cell F11: duplicate transaction id 't-1' (also on row 10)"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "message"), TXN_ERRORS)
def test_transaction_errors_name_worksheet_and_cell(row: list[CellValue], message: str) -> None:
    rows = [TXN_HEADER, ["cur", "2026-03-01", 5, "", "", "t-1"], row]
    grid = Grid("Holdings", _with_txns(rows))
    with pytest.raises(ProviderPayloadError) as err:
        parse_grid(grid)
    assert str(err.value).startswith(message), str(err.value)


def test_a_misspelt_kind_is_named(sheets: SheetsFixture) -> None:
    rows = [TXN_HEADER, ["cur", "2026-03-01", 1, "", "dividnd", ""]]
    _share(sheets, _with_txns(rows), "Holdings")
    with pytest.raises(ProviderPayloadError, match="did you mean 'dividend'"):
        _fetch(sheets)
