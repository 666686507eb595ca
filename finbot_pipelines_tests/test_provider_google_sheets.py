"""The google_sheets provider against a fake Sheets API v4 + OAuth token endpoint on 127.0.0.1.

Expected numbers are written out by hand from the sheets below, never computed by
the code under test.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from finbot_pipelines.providers import google_sheets, registry
from finbot_pipelines.providers.base import (
    AuthenticationFailure,
    FetchTimeout,
    Provider,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
    SubAccount,
    TransientError,
)
from finbot_pipelines.providers.fetching import FetchTask, RetryPolicy, run_one
from finbot_pipelines.providers.google_sheets import GoogleSheetsProvider
from finbot_pipelines_tests.fakes.sheets_server import (
    CellValue,
    FakeSheetsServer,
    SheetsFixture,
    grid_from_csv,
    make_service_account,
)

HOUR = datetime(2026, 3, 2, 9)
KEY = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-xyz"
TEMPLATE = Path(google_sheets.__file__).parent / "templates" / "google_sheets_template.csv"

Grid = list[list[CellValue]]


def place(*blocks: tuple[str, list[list[CellValue]]]) -> Grid:
    """A grid with each block of rows written from its top-left cell (A1 notation)."""
    from gspread.utils import a1_to_rowcol

    grid: Grid = []
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
    "monzo": 1234.56,
    "isa": 11340 + 3850 + 412.35,  # 15602.35
    "ibkr": 2300.50 + 5210.75 + 1800.25,  # 9311.50 USD
    "n26": 8000.0,
    "ledger": 15000 + 2500,  # 17500 EUR
    "nationwide-mortgage": -185000.0,
    "amex": -640.20,
    "pillar3": 42000.0,  # CHF
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


def _fetch(sheets: SheetsFixture, **options: Any) -> Snapshot:
    opts = sheets.options(KEY, **options)
    opts["_linked_account_id"] = "sheet-main"
    return GoogleSheetsProvider().fetch(sheets.credentials(), opts, HOUR)


def _share(sheets: SheetsFixture, grid: Grid, title: str = "Sheet1", **more: Grid) -> None:
    sheets.fake.add_spreadsheet(KEY, {title: grid, **more}, shared_with=[sheets.email])


def _by_id(snapshot: Snapshot) -> dict[str, SubAccount]:
    return {sa.id: sa for sa in snapshot.sub_accounts}


def test_provider_is_registered() -> None:
    provider = registry.get_provider("google_sheets")
    assert isinstance(provider, GoogleSheetsProvider)
    assert isinstance(provider, Provider)
    assert provider.supports_historical is False
    assert [f.name for f in provider.credential_fields] == ["service_account_json"]
    assert provider.credential_fields[0].secret


def test_realistic_sheet(sheets: SheetsFixture) -> None:
    _share(sheets, REALISTIC, "Holdings", Notes=[["nothing to see here"]])
    # the worksheet chosen by title, case-insensitively
    snapshot = _fetch(sheets, worksheet="holdings")
    snapshot.validate()
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
        assert math.isclose(sum(i.value for i in subs[account_id].items), total), account_id

    items = {(sa.id, i.name): i for sa in snapshot.sub_accounts for i in sa.items}
    assert len(items) == 13
    row = lambda k: (  # noqa: E731
        items[k].item_type, items[k].asset_class, items[k].asset_type, items[k].value,
        items[k].units, items[k].currency, items[k].symbol,
    )  # fmt: skip
    assert row(("monzo", "Cash")) == ("asset", "cash", "cash", 1234.56, None, None, None)
    assert row(("isa", "VWRL")) == ("asset", "equities", "etf", 11340, 120, "GBP", "VWRL")
    # the class column wins over the type's default class
    assert row(("isa", "VGOV")) == ("asset", "fixed_income", "etf", 3850, 200, None, "VGOV")
    assert row(("ibkr", "Apple")) == ("asset", "equities", "stock", 2300.5, 10, "USD", "AAPL")
    assert row(("ibkr", "VTSAX"))[1:3] == ("multi_asset", "fund")
    assert row(("ibkr", "T 4 1/4 2030"))[1:3] == ("fixed_income", "bond")
    # class only: a default type
    assert row(("n26", "Savings pot")) == ("asset", "cash", "cash", 8000, None, None, None)
    assert row(("ledger", "BTC")) == ("asset", "crypto", "crypto_currency", 15000, 0.25, "BTC",
                                      "BTC")  # fmt: skip
    assert row(("ledger", "USDC"))[1:3] == ("crypto", "stable_coin")
    # liabilities: positive amount owed on a mortgage row, negative balance on a card row
    assert row(("nationwide-mortgage", "Mortgage")) == (
        "liability", "real_estate", "mortgage", -185000, None, None, None
    )  # fmt: skip
    assert row(("amex", "Balance")) == ("liability", "other", "credit_card", -640.2, None, None,
                                        None)  # fmt: skip
    assert row(("pillar3", "Pension fund"))[:3] == ("asset", "pension", "pension")

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
    opts = {**sheets.options(url), "_linked_account_id": "x"}
    GoogleSheetsProvider().validate_options(opts)
    snapshot = GoogleSheetsProvider().fetch(sheets.credentials(), opts, HOUR)
    assert [(sa.id, sa.name, [i.value for i in sa.items]) for sa in snapshot.sub_accounts] == [
        ("cash", "cash", [99.5])
    ]


def test_vault_entry_may_be_the_key_file_itself(sheets: SheetsFixture) -> None:
    _share(sheets, grid_from_csv(TEMPLATE.read_text()))
    opts = {**sheets.options(KEY), "_linked_account_id": "x"}
    snapshot = GoogleSheetsProvider().fetch(dict(sheets.info), opts, HOUR)
    assert len(snapshot.sub_accounts) == 8


def test_template_csv_parses(sheets: SheetsFixture) -> None:
    """The shipped template, imported into a sheet, gives the example holdings."""
    assert google_sheets.template_path().read_text() == TEMPLATE.read_text()
    _share(sheets, grid_from_csv(TEMPLATE.read_text()))
    snapshot = _fetch(sheets)
    snapshot.validate()
    got = {
        sa.id: (sa.currency, sa.account_type, [(i.name, i.item_type, i.asset_class, i.value)
                                               for i in sa.items])
        for sa in snapshot.sub_accounts
    }  # fmt: skip
    assert got == {
        "current": ("GBP", "depository", [("Cash", "asset", "cash", 2500.0)]),
        "savings-eur": ("EUR", "depository", [("Cash", "asset", "cash", 8000.0)]),
        "isa": (
            "GBP",
            "investment",
            [
                ("Vanguard FTSE All-World ETF", "asset", "equities", 11340.0),
                ("Vanguard UK Gilt ETF", "asset", "fixed_income", 3850.0),
                ("Cash", "asset", "cash", 412.35),
            ],
        ),
        "us-broker": ("USD", "investment", [("Apple Inc.", "asset", "equities", 2300.5)]),
        "wallet": ("EUR", "other", [("Bitcoin", "asset", "crypto", 15000.0)]),
        "home": ("GBP", "other", [("House", "asset", "real_estate", 350000.0)]),
        "mortgage": ("GBP", "loan", [("Mortgage", "liability", "real_estate", -185000.0)]),
        "credit-card": (
            "GBP", "credit", [("Credit card balance", "liability", "other", -640.2)]
        ),
    }  # fmt: skip


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
     "worksheet 'Holdings', cell F2: missing required column 'value' in the HOLDINGS header"),
    ("no class nor type column",
     cells("holdings", (1, 2, "x"), (1, 3, "y")),
     "worksheet 'Holdings', cell F2: missing column 'asset class' or 'asset type'"),
    ("value not a number", cells("holdings", (3, 5, "abc")),
     "worksheet 'Holdings', cell K4: value 'abc' is not a number"),
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
    ("empty value", cells("holdings", (2, 5, "")),
     "worksheet 'Holdings', cell K3: value is empty: expected a number"),
    ("boolean value", cells("holdings", (2, 5, True)),
     "worksheet 'Holdings', cell K3: value 'TRUE' is not a number"),
    ("duplicate column", cells("holdings", (1, 6, "Value")),
     "worksheet 'Holdings', cell L2: column 'Value' appears twice in the HOLDINGS header "
     "(also in cell K2)"),
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
    assert expected in str(err.value)


def test_base_layout_is_valid(sheets: SheetsFixture) -> None:
    """The layout the error cases start from parses (so each case fails for its own reason)."""
    _share(sheets, place(*_base().values()), "Holdings")
    snapshot = _fetch(sheets)
    assert {sa.id: [i.value for i in sa.items] for sa in snapshot.sub_accounts} == {
        "cur": [100.0],
        "isa": [950.5],
    }


def test_values_offset_by_the_answered_range() -> None:
    """Cell addresses follow the ValueRange's start when Google trims leading cells."""
    grid = google_sheets.Grid(
        "Sheet1",
        [["ACCOUNTS"], ["identifier", "currency", "type"], ["cur", "GBP", "nope"]],
        row0=3,
        col0=2,
    )
    with pytest.raises(ProviderPayloadError, match=r"worksheet 'Sheet1', cell D5: account type"):
        google_sheets.parse_grid(grid)


def test_unknown_worksheet(sheets: SheetsFixture) -> None:
    _share(sheets, [["x"]], "Main", Archive=[["y"]])
    with pytest.raises(ProviderPayloadError) as err:
        _fetch(sheets, worksheet="Wealth")
    assert "no worksheet 'Wealth'" in str(err.value)
    assert "'Main', 'Archive'" in str(err.value)


# --------------------------------------------------------------------------- auth and HTTP


def _task(sheets: SheetsFixture, credentials: dict[str, str] | None = None) -> FetchTask:
    creds = sheets.credentials() if credentials is None else credentials
    return FetchTask(
        hour=HOUR,
        linked_account_id="sheet-main",
        provider=GoogleSheetsProvider(),
        options=sheets.options(KEY),
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
        GoogleSheetsProvider().fetch(
            {"service_account_json": json.dumps(stranger)}, sheets.options(KEY), HOUR
        )
    assert "stranger@other-project.iam.gserviceaccount.com" in str(err.value)
    assert "account not found" in str(err.value)
    _no_key_material(str(err.value), stranger)

    # right email, someone else's key (a deleted / rotated key)
    other_key, _ = make_service_account(sheets.email)
    with pytest.raises(AuthenticationFailure, match="Invalid JWT Signature"):
        GoogleSheetsProvider().fetch(
            {"service_account_json": json.dumps(other_key)}, sheets.options(KEY), HOUR
        )


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ({"service_account_json": "{not json"}, "is not a JSON object"),
        ({"service_account_json": '["a"]'}, "is not a JSON object"),
        ({"api_key": "abcd"}, "no service_account_json field"),
        ({"service_account_json": '{"type": "authorized_user"}'}, "not a service account key"),
        ({"service_account_json": '{"private_key": "x"}'}, "has no client_email"),
    ],
)
def test_invalid_service_account_json(
    sheets: SheetsFixture, credentials: dict[str, str], expected: str
) -> None:
    with pytest.raises(AuthenticationFailure, match=expected):
        GoogleSheetsProvider().fetch(credentials, sheets.options(KEY), HOUR)
    assert sheets.fake.requests == []  # refused before any request


def test_unreadable_private_key_is_not_quoted(sheets: SheetsFixture) -> None:
    info = {**sheets.info, "private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXN0dWZm\n"}
    outcome = run_one(_task(sheets, {"service_account_json": json.dumps(info)}), RetryPolicy())
    assert outcome.error_code == "authentication_failure"
    assert outcome.error_message is not None
    assert "private_key could not be read" in outcome.error_message
    assert sheets.email in outcome.error_message
    assert "c2VjcmV0LXN0dWZm" not in outcome.error_message


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

    sheets.fake.fail_next(429, retry_after="7", path_prefix="/v4/spreadsheets/")
    slept: list[float] = []
    outcome = run_one(_task(sheets), RetryPolicy(backoff_s=0), sleep=slept.append)
    assert outcome.ok, outcome.error_message
    assert outcome.attempts == 2
    assert slept == [7.0]


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
    assert math.isclose(
        sum(i.value for sa in outcome.snapshot.sub_accounts for i in sa.items),
        sum(REALISTIC_TOTALS.values()),
    )


def test_server_errors_exhausting_the_attempts(sheets: SheetsFixture) -> None:
    _share(sheets, REALISTIC)
    sheets.fake.fail_next(503, times=3, path_prefix="/v4/")
    with pytest.raises(TransientError, match="HTTP 503"):
        _fetch(sheets)
    outcome = run_one(_task(sheets), RetryPolicy(max_attempts=2, backoff_s=0))
    assert (outcome.error_code, outcome.attempts) == ("transient", 2)


def test_connection_refused_and_timeout(
    sheets: SheetsFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = {**sheets.options(KEY), "api_url": f"http://127.0.0.1:{port}"}
    with pytest.raises(TransientError, match="could not be reached"):
        GoogleSheetsProvider().fetch(sheets.credentials(), opts, HOUR)

    _share(sheets, REALISTIC)
    monkeypatch.setattr(google_sheets, "HTTP_TIMEOUT_S", 0.3)
    sheets.fake.delay_next(1.0)
    with pytest.raises(FetchTimeout):
        _fetch(sheets)


@pytest.mark.parametrize(
    ("prefix", "body"),
    [
        ("/v4/", b"<html>Service Unavailable</html>"),
        ("/v4/", b'{"spreadsheetId": "x"}'),
        (f"/v4/spreadsheets/{KEY}/values", b'{"range": "A1:B2", "values": "nope"}'),
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


# --------------------------------------------------------------------------- options


def test_validate_options() -> None:
    p = GoogleSheetsProvider()
    p.validate_options({"sheet_key": KEY, "_linked_account_id": "a"})
    p.validate_options(
        {"sheet_key": KEY, "worksheet": "Wealth", "api_url": "http://127.0.0.1:1",
         "token_url": "http://127.0.0.1:1/token"}
    )  # fmt: skip
    bad = [
        ({}, r"^options\.sheet_key: required"),
        ({"sheet_key": "no spaces allowed"}, r"^options\.sheet_key: expected"),
        ({"sheet_key": KEY, "worksheet": ""}, r"^options\.worksheet: expected"),
        ({"sheet_key": KEY, "api_url": "sheets.googleapis.com"}, r"^options\.api_url: expected"),
        ({"sheet_key": KEY, "sheet": "x"}, r"^options\.sheet: unknown option"),
    ]
    for options, pattern in bad:
        with pytest.raises(ValueError, match=pattern):
            p.validate_options(options)


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
