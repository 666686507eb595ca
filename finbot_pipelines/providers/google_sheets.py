"""``google_sheets``: balances and holdings kept by hand in a Google Sheet.

The sheet is read with a Google Cloud *service account*: create one, download
its JSON key, store the key in the vault and share the spreadsheet with the
service account's ``client_email`` (Viewer is enough).

Credentials (the vault entry, a JSON object)
--------------------------------------------
``service_account_json``
    the text of the service account's JSON key file. A vault entry that *is*
    the key file's JSON object (``type``, ``client_email``, ``private_key``,
    ...) is accepted too.

Options
-------
``sheet_key`` (required)
    the spreadsheet id, the part between ``/d/`` and ``/edit`` of the sheet's
    address (the whole ``https://docs.google.com/spreadsheets/d/...`` address
    is accepted too).
``worksheet``
    the title of the worksheet (tab) holding the tables; default the first one.
``api_url``
    the Sheets API address, default ``https://sheets.googleapis.com``.
``token_url``
    the OAuth 2.0 token endpoint the service account's signed JWT is exchanged
    at, default the key file's ``token_uri``, else
    ``https://oauth2.googleapis.com/token``.

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
    ``identifier`` (or ``id``), ``currency`` (ISO 4217), ``type``
    (depository, credit, loan, investment or other) and optional
    ``description`` (or ``name``; default the identifier).

``HOLDINGS`` (one row per item)
    ``account`` (an ACCOUNTS identifier); ``symbol`` and/or ``name`` (the item's
    name is ``name`` when given, else the symbol; ``isin`` is accepted as the
    symbol); ``asset class`` (cash, equities, fixed_income, crypto,
    real_estate, commodities, multi_asset, pension, other) and/or ``asset type``
    (stock, etf, fund, bond, cash, crypto_currency, property, mortgage, ...):
    the class is inferred from the type when only the type is given (see
    :data:`ASSET_TYPE_CLASSES`); ``value`` in the *account's* currency;
    optional ``units`` and ``currency`` (the holding's own currency).

Liabilities: a row whose asset type is ``mortgage``, ``loan``,
``student_loan``, ``credit_card`` or ``overdraft`` is a liability; its value
may be written as the positive amount owed or as a negative number, and is
stored negative either way. Any other row with a negative value (an overdrawn
cash line) is stored as a liability too.

Every layout error is a :class:`ProviderPayloadError` naming the worksheet and
the cell in A1 notation, e.g. ``worksheet 'Holdings', cell C7: value 'abc' is
not a number``.

A template to import into a new sheet ships as
``finbot_pipelines/providers/templates/google_sheets_template.csv``
(:func:`template_path`).
"""

from __future__ import annotations

import difflib
import email.utils
import json
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any
from urllib.parse import urlsplit

import gspread
import requests
from google.auth import crypt, jwt
from google.oauth2.credentials import Credentials as BearerCredentials
from gspread.exceptions import APIError
from gspread.utils import a1_to_rowcol, absolute_range_name, rowcol_to_a1

from finbot_pipelines.providers.base import (
    ACCOUNT_TYPES,
    ASSET_CLASSES,
    LINKED_ACCOUNT_ID_OPTION,
    AuthenticationFailure,
    CredentialField,
    FetchTimeout,
    Item,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
    SubAccount,
    TransientError,
)

#: The address gspread calls; rewritten to ``options.api_url`` when set.
GOOGLE_SHEETS_URL = "https://sheets.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
#: Read-only access is all finbot needs.
SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: seconds per HTTP request (connect and read); the ingest retries, never this module
HTTP_TIMEOUT_S = 30.0
#: longest server message quoted in an error
MAX_QUOTED_CHARS = 200

ACCOUNTS_MARKER = "ACCOUNTS"
HOLDINGS_MARKER = "HOLDINGS"
MARKERS = (ACCOUNTS_MARKER, HOLDINGS_MARKER)

OPTION_KEYS = ("sheet_key", "worksheet", "api_url", "token_url")
_SHEET_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{10,}$")
_SHEET_URL_RE = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_NUMBER_NOISE_RE = re.compile(r"[,\s\u00a0\u202f£$€¥]")

#: asset type -> asset class, used when a HOLDINGS row gives the type only
ASSET_TYPE_CLASSES: dict[str, str] = {
    "cash": "cash",
    "deposit": "cash",
    "savings": "cash",
    "money_market": "cash",
    "stock": "equities",
    "share": "equities",
    "shares": "equities",
    "equity": "equities",
    "etf": "equities",
    "fund": "multi_asset",
    "mutual_fund": "multi_asset",
    "bond": "fixed_income",
    "gilt": "fixed_income",
    "treasury": "fixed_income",
    "crypto_currency": "crypto",
    "cryptocurrency": "crypto",
    "crypto": "crypto",
    "stable_coin": "crypto",
    "stablecoin": "crypto",
    "property": "real_estate",
    "real_estate": "real_estate",
    "commodity": "commodities",
    "precious_metal": "commodities",
    "gold": "commodities",
    "pension": "pension",
    "other": "other",
    # liabilities
    "mortgage": "real_estate",
    "loan": "other",
    "student_loan": "other",
    "credit_card": "other",
    "overdraft": "cash",
}
#: asset types that make a HOLDINGS row a liability
LIABILITY_TYPES = frozenset({"mortgage", "loan", "student_loan", "credit_card", "overdraft"})
#: asset class -> asset type, used when a HOLDINGS row gives the class only
DEFAULT_ASSET_TYPES: dict[str, str] = {
    "cash": "cash",
    "equities": "stock",
    "fixed_income": "bond",
    "crypto": "crypto_currency",
    "real_estate": "property",
    "commodities": "commodity",
    "multi_asset": "fund",
    "pension": "pension",
    "other": "other",
}
_ASSET_CLASS_ALIASES = {"equity": "equities", "commodity": "commodities"}


def template_path() -> Traversable:
    """The CSV template (two marked tables with example rows) to import into a new sheet."""
    return (
        resources.files("finbot_pipelines.providers") / "templates" / "google_sheets_template.csv"
    )


# --------------------------------------------------------------------------- options


def _check_url(p: str, v: object) -> None:
    if (
        not isinstance(v, str)
        or urlsplit(v).scheme not in ("http", "https")
        or not urlsplit(v).netloc
    ):
        raise ValueError(f"{p}: expected an http(s) address such as https://example.com, got {v!r}")


def _check_options(options: Mapping[str, Any]) -> None:
    if not isinstance(options, Mapping):
        raise ValueError("options: expected a mapping")
    for key, v in options.items():
        p = f"options.{key}"
        if key == LINKED_ACCOUNT_ID_OPTION:
            if not isinstance(v, str) or not v:
                raise ValueError(f"{p}: expected a non-empty string (the linked account id)")
        elif key == "sheet_key":
            if not isinstance(v, str) or _sheet_key(v) is None:
                raise ValueError(
                    f"{p}: expected a spreadsheet id (the part between /d/ and /edit in the "
                    f"sheet's address) or the sheet's address, got {v!r}"
                )
        elif key == "worksheet":
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"{p}: expected the title of a worksheet (tab), got {v!r}")
        elif key in ("api_url", "token_url"):
            _check_url(p, v)
        else:
            raise ValueError(f"{p}: unknown option (expected one of {', '.join(OPTION_KEYS)})")
    if "sheet_key" not in options:
        raise ValueError(
            "options.sheet_key: required, expected a spreadsheet id (the part between /d/ and "
            "/edit in the sheet's address)"
        )


def _sheet_key(value: str) -> str | None:
    """The spreadsheet id in ``value`` (an id or a docs.google.com address)."""
    value = value.strip()
    m = _SHEET_URL_RE.search(value)
    if m and value.startswith(("http://", "https://")):
        return m[1]
    return value if _SHEET_KEY_RE.match(value) else None


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class _ServiceAccount:
    client_email: str
    signer: crypt.Signer
    token_uri: str | None


def _service_account(credentials: Mapping[str, str]) -> _ServiceAccount:
    """Parse the vault entry. Messages never quote the key material."""
    if "service_account_json" in credentials:
        text = credentials["service_account_json"]
        try:
            info = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            info = None
        if not isinstance(info, dict):
            raise AuthenticationFailure(
                "credentials.service_account_json is not a JSON object: expected the content "
                "of the service account's JSON key file"
            )
    elif "private_key" in credentials or "client_email" in credentials:
        info = dict(credentials)  # the vault entry is the key file itself
    else:
        raise AuthenticationFailure(
            "the credentials have no service_account_json field: expected a JSON object "
            '{"service_account_json": "<content of the service account JSON key file>"}'
        )
    kind = info.get("type", "service_account")
    if kind != "service_account":
        raise AuthenticationFailure(
            f"credentials.service_account_json is a key of type {str(kind)[:40]!r}, not a "
            'service account key (expected "type": "service_account")'
        )
    client_email = info.get("client_email")
    if not isinstance(client_email, str) or "@" not in client_email:
        raise AuthenticationFailure(
            "credentials.service_account_json has no client_email: expected a service account "
            "JSON key file"
        )
    key = info.get("private_key")
    if not isinstance(key, str) or not key.strip():
        raise AuthenticationFailure(
            f"credentials.service_account_json (service account {client_email}) has no private_key"
        )
    try:
        signer = crypt.RSASigner.from_service_account_info(info)
    except Exception:  # whatever the reason, never quote the key
        raise AuthenticationFailure(
            f"credentials.service_account_json (service account {client_email}): the private_key "
            "could not be read (expected the PEM key of the JSON key file, with its \\n)"
        ) from None
    token_uri = info.get("token_uri")
    return _ServiceAccount(
        client_email, signer, token_uri if isinstance(token_uri, str) and token_uri else None
    )


# --------------------------------------------------------------------------- HTTP


class _GoogleSession(requests.Session):
    """A requests session that sends the Sheets API calls to ``api_url``."""

    def __init__(self, api_url: str) -> None:
        super().__init__()
        self.api_url = api_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if isinstance(url, str) and url.startswith(GOOGLE_SHEETS_URL + "/"):
            url = self.api_url + url[len(GOOGLE_SHEETS_URL) :]
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        return super().request(method, url, *args, **kwargs)


def _retry_after(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _quote(text: object) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= MAX_QUOTED_CHARS else s[: MAX_QUOTED_CHARS - 3] + "..."


@contextmanager
def _network_errors(what: str) -> Iterator[None]:
    """Map transport failures to typed errors (HTTP statuses are mapped by the callers)."""
    try:
        yield
    except requests.exceptions.JSONDecodeError:
        raise ProviderPayloadError(
            f"google_sheets: {what} answered with a body that is not JSON"
        ) from None
    except requests.exceptions.Timeout:
        raise FetchTimeout(
            f"google_sheets: {what}: no answer within {HTTP_TIMEOUT_S:g} s"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise TransientError(
            f"google_sheets: {what} could not be reached ({type(exc).__name__})"
        ) from None


def _access_token(session: requests.Session, account: _ServiceAccount, token_url: str) -> str:
    """The OAuth 2.0 JWT bearer grant (RFC 7523) Google uses for service accounts."""
    now = int(time.time())
    assertion = jwt.encode(
        account.signer,
        {
            "iss": account.client_email,
            "scope": SCOPE,
            "aud": token_url,
            "iat": now,
            "exp": now + 3600,
        },
    )
    what = f"the token endpoint {token_url}"
    with _network_errors(what):
        response = session.post(
            token_url,
            data={"grant_type": JWT_BEARER_GRANT, "assertion": assertion.decode("ascii")},
            headers={"Accept": "application/json"},
            timeout=HTTP_TIMEOUT_S,
        )
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
    if status == 200:
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderPayloadError(f"google_sheets: {what} answered without an access_token")
        return token
    detail = ""
    if isinstance(body, dict):
        err = body.get("error")
        desc = body.get("error_description")
        if isinstance(err, dict):  # some Google endpoints answer in the API error format
            desc, err = err.get("message"), err.get("status")
        detail = (
            f" ({_quote(err)}: {_quote(desc)})" if desc else (f" ({_quote(err)})" if err else "")
        )
    if status == 429:
        raise RateLimited(
            f"google_sheets: {what} is rate limiting (HTTP 429){detail}",
            retry_after=_retry_after(response),
        )
    if status >= 500:
        raise TransientError(
            f"google_sheets: {what} failed (HTTP {status}){detail}",
            retry_after=_retry_after(response),
        )
    if status in (400, 401, 403):
        raise AuthenticationFailure(
            f"google_sheets: the service account {account.client_email} was refused by "
            f"{what} (HTTP {status}){detail}: check that the key in the vault is the current "
            "key of an enabled service account"
        )
    raise ProviderPayloadError(f"google_sheets: {what} answered HTTP {status}{detail}")


def _api_error(exc: APIError, what: str, sheet_key: str, email_: str) -> Exception:
    status = exc.response.status_code
    message = exc.error.get("message") if isinstance(exc.error, Mapping) else None
    detail = f": {_quote(message)}" if message else ""
    if status == 401:
        return AuthenticationFailure(
            f"google_sheets: the Sheets API refused the service account {email_}'s access "
            f"token (HTTP 401){detail}"
        )
    if status == 403:
        return AuthenticationFailure(
            f"google_sheets: the service account {email_} may not read spreadsheet "
            f"{sheet_key!r} (HTTP 403{detail}): share the sheet with {email_} (Viewer is "
            "enough) and check the Google Sheets API is enabled in its project"
        )
    if status == 404:
        return ProviderPayloadError(
            f"google_sheets: spreadsheet {sheet_key!r} not found (HTTP 404): check "
            "options.sheet_key (the id between /d/ and /edit in the sheet's address)"
        )
    if status == 429:
        return RateLimited(
            f"google_sheets: the Sheets API is rate limiting {what} (HTTP 429){detail}",
            retry_after=_retry_after(exc.response),
        )
    if status >= 500:
        return TransientError(
            f"google_sheets: the Sheets API failed {what} (HTTP {status}){detail}",
            retry_after=_retry_after(exc.response),
        )
    return ProviderPayloadError(
        f"google_sheets: the Sheets API refused {what} (HTTP {status}){detail}"
    )


@dataclass(frozen=True)
class Grid:
    """The values of one worksheet; ``values[0][0]`` is the cell (``row0``, ``col0``), 1-based."""

    worksheet: str
    values: Sequence[Sequence[Any]]
    row0: int = 1
    col0: int = 1


def _pick_worksheet(meta: Any, sheet_key: str, wanted: str | None) -> str:
    sheets = meta.get("sheets") if isinstance(meta, Mapping) else None
    if not isinstance(sheets, list):
        raise ProviderPayloadError(
            f"google_sheets: the metadata of spreadsheet {sheet_key!r} has no list of sheets"
        )
    titles: list[str] = []
    for s in sheets:
        props = s.get("properties") if isinstance(s, Mapping) else None
        title = props.get("title") if isinstance(props, Mapping) else None
        if not isinstance(title, str):
            raise ProviderPayloadError(
                f"google_sheets: the metadata of spreadsheet {sheet_key!r} has a sheet "
                "without a title"
            )
        titles.append(title)
    if not titles:
        raise ProviderPayloadError(f"google_sheets: spreadsheet {sheet_key!r} has no worksheet")
    if wanted is None:
        return titles[0]
    if wanted in titles:
        return wanted
    folded = [t for t in titles if t.strip().casefold() == wanted.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    raise ProviderPayloadError(
        f"google_sheets: spreadsheet {sheet_key!r} has no worksheet {wanted!r} "
        f"(options.worksheet; worksheets: {', '.join(repr(t) for t in titles)})"
    )


def _grid_from_values(payload: Any, title: str, sheet_key: str) -> Grid:
    if not isinstance(payload, Mapping):
        raise ProviderPayloadError(
            f"google_sheets: the values of worksheet {title!r} of {sheet_key!r} are not an object"
        )
    values = payload.get("values", [])
    if not isinstance(values, list) or not all(isinstance(r, list) for r in values):
        raise ProviderPayloadError(
            f"google_sheets: the values of worksheet {title!r} of {sheet_key!r} are not a list "
            "of rows"
        )
    for row in values:
        for v in row:
            if v is not None and not isinstance(v, str | int | float | bool):
                raise ProviderPayloadError(
                    f"google_sheets: worksheet {title!r} of {sheet_key!r} holds a cell value "
                    f"of type {type(v).__name__}"
                )
    row0, col0 = 1, 1
    rng = payload.get("range")
    if isinstance(rng, str) and "!" in rng:  # "'Sheet 1'!B2:F30": the values start at B2
        start = rng.rsplit("!", 1)[1].split(":", 1)[0]
        try:
            row0, col0 = a1_to_rowcol(start)
        except Exception:
            row0, col0 = 1, 1
    return Grid(title, values, row0, col0)


def read_worksheet(credentials: Mapping[str, str], options: Mapping[str, Any]) -> Grid:
    """Authenticate and read the values of the configured worksheet."""
    account = _service_account(credentials)
    sheet_key = _sheet_key(str(options["sheet_key"])) or str(options["sheet_key"])
    api_url = str(options.get("api_url") or GOOGLE_SHEETS_URL)
    token_url = str(options.get("token_url") or account.token_uri or GOOGLE_TOKEN_URL)
    wanted = options.get("worksheet")
    with _GoogleSession(api_url) as session:
        token = _access_token(session, account, token_url)
        session.headers["Authorization"] = f"Bearer {token}"
        client = gspread.Client(auth=BearerCredentials(token), session=session)
        client.set_timeout(HTTP_TIMEOUT_S)
        http = client.http_client
        what = f"the Sheets API ({api_url})"
        try:
            with _network_errors(what):
                meta = http.fetch_sheet_metadata(sheet_key)
            title = _pick_worksheet(meta, sheet_key, str(wanted) if wanted else None)
            with _network_errors(what):
                payload = http.values_get(
                    sheet_key,
                    absolute_range_name(title),
                    params={
                        "majorDimension": "ROWS",
                        "valueRenderOption": "UNFORMATTED_VALUE",
                        "dateTimeRenderOption": "FORMATTED_STRING",
                    },
                )
        except APIError as exc:
            raise _api_error(
                exc, f"reading spreadsheet {sheet_key!r}", sheet_key, account.client_email
            ) from None
    return _grid_from_values(payload, title, sheet_key)


# --------------------------------------------------------------------------- layout


def _text(v: Any) -> str:
    """A cell as text: numbers without a spurious ``.0``, empty cells as ``""``."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return str(v).strip()


def _norm(header: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", header).lower().split())


def _slug(v: str) -> str:
    return "_".join(re.sub(r"[\-]+", " ", v).lower().split())


@dataclass(frozen=True)
class _TableSpec:
    marker: str
    #: canonical column -> accepted header names (normalised)
    columns: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    #: groups of which at least one column must be present
    one_of: tuple[tuple[str, ...], ...] = ()
    #: header names known from the original finbot layout, silently ignored
    ignored: tuple[str, ...] = ()

    def lookup(self) -> dict[str, str]:
        return {alias: col for col, aliases in self.columns.items() for alias in aliases}


ACCOUNTS_SPEC = _TableSpec(
    ACCOUNTS_MARKER,
    {
        "identifier": ("identifier", "id"),
        "description": ("description", "name"),
        "currency": ("currency", "ccy"),
        "type": ("type", "account type"),
    },
    required=("identifier", "currency", "type"),
    ignored=("sub type",),
)
HOLDINGS_SPEC = _TableSpec(
    HOLDINGS_MARKER,
    {
        "account": ("account", "account identifier", "account id"),
        "symbol": ("symbol", "ticker"),
        "name": ("name", "description"),
        "isin": ("isin", "isin code"),
        "asset_class": ("asset class",),
        "asset_type": ("asset type",),
        "units": ("units", "quantity"),
        "value": ("value", "value in account ccy", "value in account currency"),
        "currency": ("currency", "ccy"),
    },
    required=("account", "value"),
    one_of=(("symbol", "name", "isin"), ("asset_class", "asset_type")),
    ignored=("type", "custom", "value in item ccy", "sub type"),
)


@dataclass(frozen=True)
class _Table:
    spec: _TableSpec
    columns: dict[str, int]  # canonical column -> 0-based column index in the grid
    rows: tuple[int, ...]  # 0-based row indexes of the data rows


class _Sheet:
    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.values = grid.values

    def get(self, r: int, c: int) -> Any:
        if 0 <= r < len(self.values) and 0 <= c < len(self.values[r]):
            return self.values[r][c]
        return None

    def a1(self, r: int, c: int) -> str:
        return rowcol_to_a1(r + self.grid.row0, c + self.grid.col0)

    def error(self, r: int | None, c: int | None, message: str) -> ProviderPayloadError:
        where = f"worksheet {self.grid.worksheet!r}"
        if r is not None and c is not None:
            where += f", cell {self.a1(r, c)}"
        return ProviderPayloadError(f"{where}: {message}")

    def markers(self, marker: str) -> list[tuple[int, int]]:
        return [
            (r, c)
            for r, row in enumerate(self.values)
            for c, v in enumerate(row)
            if isinstance(v, str) and v.strip() == marker
        ]

    def table(self, spec: _TableSpec) -> _Table:
        found = self.markers(spec.marker)
        if not found:
            raise self.error(
                None,
                None,
                f"no cell marked {spec.marker} (put {spec.marker} alone in a cell, with the "
                "table's header row directly below it)",
            )
        if len(found) > 1:
            cells = ", ".join(self.a1(r, c) for r, c in found)
            raise self.error(
                *found[1], f"more than one cell marked {spec.marker} ({cells}): keep one"
            )
        mr, mc = found[0]
        hr = mr + 1
        lookup = spec.lookup()
        columns: dict[str, int] = {}
        seen: list[str] = []
        c = mc
        while _text(self.get(hr, c)):
            raw = _text(self.get(hr, c))
            name = _norm(raw)
            seen.append(raw)
            col = lookup.get(name)
            if col is None:
                if name not in spec.ignored:
                    close = difflib.get_close_matches(name, list(lookup), n=1, cutoff=0.8)
                    if close:
                        raise self.error(
                            hr,
                            c,
                            f"unknown column {raw!r} in the {spec.marker} header; did you mean "
                            f"{close[0]!r}?",
                        )
            elif col in columns:
                raise self.error(
                    hr,
                    c,
                    f"column {raw!r} appears twice in the {spec.marker} header (also in cell "
                    f"{self.a1(hr, columns[col])})",
                )
            else:
                columns[col] = c
            c += 1
        expected = ", ".join(spec.columns)
        if not seen:
            raise self.error(
                hr,
                mc,
                f"the {spec.marker} header is empty: expected the column names ({expected}) "
                f"in the row below the marker {self.a1(mr, mc)}",
            )
        found_txt = f"(found: {', '.join(seen)})"
        for col in spec.required:
            if col not in columns:
                raise self.error(
                    hr,
                    mc,
                    f"missing required column {spec.columns[col][0]!r} in the {spec.marker} "
                    f"header {found_txt}",
                )
        for group in spec.one_of:
            if not any(col in columns for col in group):
                names = " or ".join(repr(spec.columns[col][0]) for col in group)
                raise self.error(
                    hr, mc, f"missing column {names} in the {spec.marker} header {found_txt}"
                )
        rows: list[int] = []
        r = hr + 1
        while r < len(self.values):
            first = _text(self.get(r, mc))
            if not first or first in MARKERS:
                break
            rows.append(r)
            r += 1
        return _Table(spec, columns, tuple(rows))

    # ----------------------------------------------------------------- cells

    def cell_text(self, table: _Table, r: int, col: str) -> tuple[str, int | None]:
        c = table.columns.get(col)
        if c is None:
            return "", None
        return _text(self.get(r, c)), c

    def number(self, table: _Table, r: int, col: str, *, required: bool) -> float | None:
        c = table.columns.get(col)
        if c is None:
            return None
        v = self.get(r, c)
        label = table.spec.columns[col][0]
        if v is None or (isinstance(v, str) and not v.strip()):
            if required:
                raise self.error(r, c, f"{label} is empty: expected a number")
            return None
        if isinstance(v, bool):
            raise self.error(r, c, f"{label} {_text(v)!r} is not a number")
        if isinstance(v, int | float):
            x = float(v)
        else:
            s = _NUMBER_NOISE_RE.sub("", str(v))
            if not _NUMBER_RE.match(s):
                raise self.error(r, c, f"{label} {_quote(v)!r} is not a number")
            x = float(s)
        if not math.isfinite(x):
            raise self.error(r, c, f"{label} {_quote(v)!r} is not a finite number")
        return x

    def currency(self, table: _Table, r: int, col: str, *, required: bool) -> str | None:
        text, c = self.cell_text(table, r, col)
        if c is None or not text:
            if required:
                raise self.error(r, c, "currency is empty: expected an ISO 4217 code such as GBP")
            return None
        code = text.upper()
        if not _CURRENCY_RE.match(code):
            raise self.error(r, c, f"currency {text!r} is not a 3-letter ISO 4217 code such as GBP")
        return code


@dataclass
class _Account:
    row: int
    identifier: str
    name: str
    currency: str
    account_type: str
    items: list[Item]
    item_rows: dict[str, int]


def parse_grid(grid: Grid) -> Snapshot:
    """Turn the values of a worksheet into a snapshot (pure; errors name the cell)."""
    sheet = _Sheet(grid)
    accounts_table = sheet.table(ACCOUNTS_SPEC)
    accounts: dict[str, _Account] = {}
    for r in accounts_table.rows:
        ident, ic = sheet.cell_text(accounts_table, r, "identifier")
        if ident in accounts:
            raise sheet.error(
                r,
                ic,
                f"duplicate account identifier {ident!r} (also on row "
                f"{accounts[ident].row + grid.row0})",
            )
        description, _ = sheet.cell_text(accounts_table, r, "description")
        ccy = sheet.currency(accounts_table, r, "currency", required=True)
        assert ccy is not None
        kind_text, kc = sheet.cell_text(accounts_table, r, "type")
        kind = _slug(kind_text)
        if kind not in ACCOUNT_TYPES:
            raise sheet.error(
                r,
                kc,
                f"account type {kind_text!r} is not one of {', '.join(ACCOUNT_TYPES)}"
                if kind_text
                else f"account type is empty: expected one of {', '.join(ACCOUNT_TYPES)}",
            )
        accounts[ident] = _Account(r, ident, description or ident, ccy, kind, [], {})

    holdings_table = sheet.table(HOLDINGS_SPEC)
    for r in holdings_table.rows:
        account_id, ac = sheet.cell_text(holdings_table, r, "account")
        account = accounts.get(account_id)
        if account is None:
            known = ", ".join(accounts) or "no rows"
            hint = difflib.get_close_matches(account_id, list(accounts), n=1, cutoff=0.6)
            raise sheet.error(
                r,
                ac,
                f"unknown account {account_id!r} (ACCOUNTS has: {known})"
                + (f"; did you mean {hint[0]!r}?" if hint else ""),
            )
        symbol, sc = sheet.cell_text(holdings_table, r, "symbol")
        isin, isc = sheet.cell_text(holdings_table, r, "isin")
        name, nc = sheet.cell_text(holdings_table, r, "name")
        symbol = symbol or isin
        name = name or symbol
        if not name:
            c = next(x for x in (nc, sc, isc) if x is not None)
            raise sheet.error(r, c, "the holding has no symbol and no name: fill one of them")
        if name in account.item_rows:
            raise sheet.error(
                r,
                nc if nc is not None else sc,
                f"duplicate holding {name!r} in account {account_id!r} (also on row "
                f"{account.item_rows[name] + grid.row0}): give each row a distinct name",
            )
        asset_class, asset_type = _classify(sheet, holdings_table, r)
        value = sheet.number(holdings_table, r, "value", required=True)
        assert value is not None
        units = sheet.number(holdings_table, r, "units", required=False)
        ccy = sheet.currency(holdings_table, r, "currency", required=False)
        liability = asset_type in LIABILITY_TYPES or value < 0
        if liability:
            value = -abs(value) if value else 0.0
        account.items.append(
            Item(
                name=name,
                item_type="liability" if liability else "asset",
                asset_class=asset_class,
                asset_type=asset_type,
                value=value,
                units=units,
                currency=ccy,
                symbol=symbol or None,
            )
        )
        account.item_rows[name] = r

    return Snapshot(
        tuple(
            SubAccount(a.identifier, a.name, a.currency, a.account_type, tuple(a.items))
            for a in accounts.values()
        )
    )


def _classify(sheet: _Sheet, table: _Table, r: int) -> tuple[str, str]:
    """(asset_class, asset_type) of a HOLDINGS row, the class inferred from the type if need be."""
    class_text, cc = sheet.cell_text(table, r, "asset_class")
    type_text, tc = sheet.cell_text(table, r, "asset_type")
    asset_type = _slug(type_text)
    asset_class = ""
    if class_text:
        asset_class = _slug(class_text)
        asset_class = _ASSET_CLASS_ALIASES.get(asset_class, asset_class)
        if asset_class not in ASSET_CLASSES:
            raise sheet.error(
                r, cc, f"asset class {class_text!r} is not one of {', '.join(ASSET_CLASSES)}"
            )
    if not asset_type and not asset_class:
        c = tc if tc is not None else cc
        raise sheet.error(
            r, c, "the holding has no asset class and no asset type: fill at least one of them"
        )
    if not asset_class:
        inferred = ASSET_TYPE_CLASSES.get(asset_type)
        if inferred is None:
            raise sheet.error(
                r,
                tc,
                f"cannot infer the asset class of asset type {type_text!r}: fill the asset "
                f"class column ({', '.join(ASSET_CLASSES)}) or use a known asset type "
                f"({', '.join(sorted(ASSET_TYPE_CLASSES))})",
            )
        asset_class = inferred
    if not asset_type:
        asset_type = DEFAULT_ASSET_TYPES[asset_class]
    return asset_class, asset_type


# --------------------------------------------------------------------------- provider


class GoogleSheetsProvider:
    id: str = "google_sheets"
    description: str = (
        "Accounts and holdings kept by hand in a Google Sheet (two tables marked ACCOUNTS "
        "and HOLDINGS), read with a service account the sheet is shared with."
    )
    credential_fields: tuple[CredentialField, ...] = (
        CredentialField(
            "service_account_json",
            "the content of the Google Cloud service account's JSON key file (share the "
            "sheet with its client_email)",
        ),
    )
    supports_historical: bool = False

    def validate_options(self, options: Mapping[str, Any]) -> None:
        _check_options(options)

    def fetch(
        self, credentials: Mapping[str, str], options: Mapping[str, Any], as_of: datetime
    ) -> Snapshot:
        try:
            _check_options(options)
        except ValueError as exc:
            raise ProviderPayloadError(f"google_sheets: {exc}") from None
        snapshot = parse_grid(read_worksheet(credentials, options))
        snapshot.validate()
        return snapshot
