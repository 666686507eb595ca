"""``google_sheets``: balances and holdings kept by hand in a Google Sheet.

The sheet is read with a Google Cloud *service account*: create one, enable the
Google Sheets API in its project, download its JSON key, store the key in the
vault and share the spreadsheet with the service account's ``client_email``
(Viewer is enough).

Credentials (the vault entry, a JSON object)
--------------------------------------------
``service_account_json``
    the text of the service account's JSON key file. A vault entry that *is*
    the key file's JSON object (``type``, ``client_email``, ``private_key``,
    ...) is accepted too.

Options (:class:`~.options.GoogleSheetsOptions`)
------------------------------------------------
``sheet_key`` (required): the spreadsheet id, or the sheet's whole address;
``worksheet``: the tab to read (default the first one; matched exactly, else
case-insensitively); ``api_url``, ``token_url``: the Sheets API and the OAuth
token endpoint (default Google's; the token endpoint defaults to the key
file's ``token_uri``); ``timeout_s``: seconds per HTTP request.

Sheet layout
------------
Two tables anywhere on the worksheet, each introduced by a *marker cell*
holding exactly ``ACCOUNTS`` or ``HOLDINGS``. The table's header row is the row
directly below its marker, starting in the marker's column and running right
until the first empty cell. Header names are matched case-insensitively, in any
order (``_``, ``-`` and spaces are the same); columns with other names are
ignored (keep notes there). Data rows follow the header until the first empty
cell (or the next marker) in the table's first column. Tables side by side
need an empty column between them.

``ACCOUNTS`` (one row per sub-account)
    ``identifier`` (or ``id``), ``currency`` (ISO 4217; or a unit your
    ``unit_prices`` price, such as BTC), ``type`` (depository, credit, loan,
    investment or other) and optional ``description`` (or ``name``; default the
    identifier).

``HOLDINGS`` (one row per item)
    ``account`` (an ACCOUNTS identifier); ``symbol`` and/or ``name`` (the item's
    name is ``name`` when given, else the symbol; ``isin`` is the symbol when
    there is none); ``asset class`` (cash, equities, fixed_income, crypto,
    real_estate, commodities, multi_asset, pension, other) and/or ``asset type``
    (stock, etf, fund, bond, cash, crypto_currency, property, mortgage, ...):
    a row with a type only takes the type's class, a row with a class only the
    class's usual type (see :mod:`.layout`); ``value`` in the *account's*
    currency; optional ``units`` and ``currency`` (the holding's own currency).

``TRANSACTIONS`` (optional; one row per transaction)
    ``account`` (an ACCOUNTS identifier, as in HOLDINGS), ``date`` (see Dates),
    ``amount`` (inflow positive: a salary +, a payment -; a number as in HOLDINGS)
    and optional ``id``, ``currency`` (default the account's), ``description``,
    ``kind`` (deposit, withdrawal, transfer, buy, sell, dividend, interest, fee,
    tax, other; plurals and words such as ``contribution``, ``purchase``, ``sale``,
    ``charge`` are read as those; empty: deposit when the amount is positive,
    withdrawal when negative), ``category``, ``symbol`` and ``units``.
    A row without ``id`` is identified by its content: a hash of its account,
    date, amount, description and its occurrence number among identical rows
    (two identical coffees the same day are two transactions); editing one of
    those makes it a new transaction (the old one is removed, see below). A row
    with an ``id`` keeps it whatever else changes; two rows may not share one.

The sheet is the whole truth about its transactions: a row deleted from the sheet
is a transaction removed (``removed_transaction_ids``). Knowing which ids the
previous fetch reported needs memory: this account's state folder keeps
``google_sheets_transactions.json`` (mode 0600), the id sets of the last fetches,
each under a hash of the set; the snapshot's ``transactions_cursor`` is the hash of
its set. The ingest stores the cursor in the same database transaction as the
transactions and hands it back to the next fetch, which removes the ids of *that*
set the sheet no longer has: a fetch that did not land (a crash) is never taken
for one that did. Without the state folder, or when the state was lost, nothing
is removed (nothing can be known). A sheet whose TRANSACTIONS table is gone
removes every transaction it reported.

Dates
-----
A date cell is read as the API shows it (a date typed in a date cell, formatted
by the sheet's locale, or a serial day number in a number cell) when it is
unambiguous: ``2024-01-31`` (a time after it is ignored), ``2024/01/31``,
``31.01.2024``, ``31/01/2024`` and ``01/31/2024`` (the part above 12 is the day),
``31 Jan 2024``, ``January 31, 2024``. ``03/04/2024`` (3 April or March 4?) is an
error naming the cell, as is any other text.

Numbers
-------
Number cells are used exactly as the sheet holds them (the API's unformatted
values, read as exact decimals). A number typed into a text cell is read only
when it is unambiguous: ``1,234.56``, ``1.234,56``, ``5.500,50``, ``€5,500.50``,
``-1 234,56``, ``1'234.50``, ``(12.30)``, ``1,5`` (a single ``,`` or ``.`` that
cannot group thousands, i.e. not followed by exactly three digits or after
``0`` or more than three digits, is the decimal mark). ``1,500`` and ``1.500``
(thousands or decimals?), ``12,34,56``, ``1.2.3`` and any other text are
errors naming the worksheet, the cell and the text. A number with more decimal
places than the warehouse keeps (18; only a formula's result has them) is
rounded to 18.

Liabilities
-----------
A row whose asset type is ``mortgage``, ``loan``, ``student_loan``,
``credit_card`` or ``overdraft`` is a liability; its value may be written as the
positive amount owed or as a negative number, and is stored negative either
way. Any other row with a negative value (an overdrawn cash line) is a
liability too.

Crypto, and rows without a value
--------------------------------
A row of asset class ``crypto`` counts units of its symbol: ``Item.unit`` is the
symbol upper-cased (``BTC``), else the row's currency when that is not an ISO
code. Its value cell may be left empty when the row gives its ``units`` and such
a symbol: the item is then *unpriced* (``value`` None, units kept) and the
household's ``unit_prices`` value it; when they cannot, the fetch carries an
``unpriced`` warning naming it, and an account whose every row is such a row
fails (never a silent 0). Any other empty value cell is an error naming the cell.

Sheets made for the original finbot
-----------------------------------
They read without edits. Their column names (``value_in_account_ccy`` is our
``value``; ``isin_code``; ``underlying_ccy``; ``sub_type``, ``custom`` and
the free-text ``type`` are ignored, ``type`` being read as the class or type of
a row that has neither) and their vocabulary map to ours
(:data:`~.layout.ACCOUNT_TYPE_MAP`, :data:`~.layout.ASSET_CLASS_MAP`,
:data:`~.layout.ASSET_TYPE_MAP`):

- account type ``cash`` -> depository;
- asset classes ``currency`` and ``foreign_currency`` -> cash, ``private_debt``
  -> fixed_income (money lent: an asset; its ``loan`` rows get asset type
  private_loan), ``cryptocurrency`` -> crypto;
- asset types ``ETF``/``ETN``/``ETC`` -> etf/etn/etc, ``generic_fund`` ->
  fund, ``residential_property`` -> property, ``commercial_property`` ->
  commercial_property, ``land_property`` -> land (and their 2024 names without
  ``_property``), ``cryptocurrency`` -> crypto_currency; ``loan`` (outside
  private_debt) is a liability.
- ``value_in_item_ccy`` (or ``value_in_asset_ccy``) is a value in the row's own
  ``currency``. In the account's currency it is the value; in another one the
  item is that amount of that currency (``units`` = the amount, ``unit`` = the
  currency, value None): the valuation converts it at the hour's FX rate (the
  row's share count, if any, is not kept). A row may fill
  ``value_in_account_ccy`` or ``value_in_item_ccy``, not both.

Errors
------
Every layout error is a :class:`~.contract.ProviderPayloadError` naming the
worksheet and the cell in A1 notation, e.g. ``worksheet 'Holdings', cell C7:
value 'abc' is not a number``. HTTP failures are typed through
:mod:`finbot_pipelines.providers.http` (429 and 5xx retried after the server's
Retry-After; a refused key or an unshared sheet is an authentication failure).
No message quotes the key file.

A template to import into a new sheet ships as
``finbot_pipelines/providers/templates/google_sheets_template.csv``
(:func:`template_path`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from finbot_pipelines.providers.base import FetchContext, Provider
from finbot_pipelines.providers.contract import Snapshot
from finbot_pipelines.providers.google_sheets.client import read_worksheet
from finbot_pipelines.providers.google_sheets.layout import Grid, parse_grid, template_path
from finbot_pipelines.providers.google_sheets.options import (
    SPEC,
    GoogleSheetsCredentials,
    GoogleSheetsOptions,
)
from finbot_pipelines.providers.state import write_private

__all__ = ["GoogleSheetsProvider", "Grid", "parse_grid", "template_path"]


class GoogleSheetsProvider(Provider[GoogleSheetsOptions, GoogleSheetsCredentials]):
    spec = SPEC

    def fetch(
        self,
        ctx: FetchContext,
        options: GoogleSheetsOptions,
        credentials: GoogleSheetsCredentials,
    ) -> Snapshot:
        grid = read_worksheet(options, credentials)
        snapshot = parse_grid(grid, ctx.priced_units)
        return with_removed(snapshot, ctx)


STATE_FILE = "google_sheets_transactions.json"
STATE_VERSION = 1
#: id sets kept (the newest first): the cursor the ingest hands back is one of them
#: unless that many fetches in a row failed to land
KEPT_SETS = 5


def ids_hash(ids: Iterable[str]) -> str:
    """The cursor of a set of transaction ids."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:32]


def _load_sets(state_dir: Path) -> list[tuple[str, list[str]]]:
    try:
        doc = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            return []
        return [(str(h), [str(i) for i in ids]) for h, ids in doc["sets"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _save_sets(state_dir: Path, sets: list[tuple[str, list[str]]]) -> None:
    """Write the state file atomically, mode 0600, in a 0700 folder."""
    text = json.dumps({"version": STATE_VERSION, "sets": [[h, ids] for h, ids in sets]})
    write_private(state_dir, STATE_FILE, text)


def with_removed(snapshot: Snapshot, ctx: FetchContext) -> Snapshot:
    """``snapshot`` with the ids of the previous landed fetch the sheet no longer has
    removed, and its own id set's cursor (see the module docstring)."""
    if ctx.state_dir is None:
        return snapshot
    ids = [t.id for t in snapshot.transactions]
    cursor = ids_hash(ids)
    sets = _load_sets(ctx.state_dir)
    previous = dict(sets).get(ctx.transactions_cursor or "")
    removed = sorted(set(previous or ()) - set(ids))
    kept = [(cursor, sorted(ids)), *((h, s) for h, s in sets if h != cursor)][:KEPT_SETS]
    _save_sets(ctx.state_dir, kept)
    return Snapshot(
        snapshot.sub_accounts,
        snapshot.warnings,
        snapshot.transactions,
        tuple(removed),
        cursor,
    )
