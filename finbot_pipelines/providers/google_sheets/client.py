"""The wire side of ``google_sheets``: the service account's token, then gspread's API calls.

1. ``POST token_url``: the OAuth 2.0 JWT bearer grant (RFC 7523) Google uses for
   service accounts; the assertion is an RS256 JWT signed with the key file's
   private key (google-auth's signer).
2. ``GET {api_url}/v4/spreadsheets/{id}?includeGridData=false`` (gspread): the
   worksheets' titles.
3. ``GET {api_url}/v4/spreadsheets/{id}/values/'{title}'`` (gspread's session) with
   ``valueRenderOption=UNFORMATTED_VALUE``: number cells come as JSON numbers, read
   here with ``parse_float=Decimal`` (exact, never through a float).

gspread calls a ``requests`` session that sends its ``https://sheets.googleapis.com``
requests to ``api_url`` (a local fake in tests). Each request has the ``timeout_s``
option as its timeout; failures become typed errors through
:mod:`finbot_pipelines.providers.http` (Retry-After honoured, texts masked). No
message ever quotes the key file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import gspread
import requests
from google.auth import crypt, jwt
from google.oauth2.credentials import Credentials as BearerCredentials
from gspread.exceptions import APIError
from gspread.urls import SPREADSHEET_VALUES_URL
from gspread.utils import a1_to_rowcol, absolute_range_name

from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    ProviderError,
    ProviderPayloadError,
)
from finbot_pipelines.providers.google_sheets.layout import Grid
from finbot_pipelines.providers.google_sheets.options import (
    GOOGLE_SHEETS_URL,
    GOOGLE_TOKEN_URL,
    GoogleSheetsCredentials,
    GoogleSheetsOptions,
)
from finbot_pipelines.providers.http import (
    Masker,
    error_for_status,
    safe_code,
    transport_error,
    upstream_detail,
)

#: Read-only access is all finbot needs.
SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: OAuth error codes that mean the key itself was refused
_REFUSED_GRANT_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied"}
)
VALUES_PARAMS: dict[str, Any] = {
    "majorDimension": "ROWS",
    "valueRenderOption": "UNFORMATTED_VALUE",
    "dateTimeRenderOption": "FORMATTED_STRING",
}

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    signer: crypt.Signer
    token_uri: str | None


def service_account(credentials: GoogleSheetsCredentials) -> ServiceAccount:
    """The key file's signer. The message of a key that cannot be read never quotes it."""
    info = credentials.key_info()
    email = credentials.client_email
    try:
        signer = crypt.RSASigner.from_service_account_info(info)
    except Exception:  # whatever the reason, never quote the key
        raise AuthenticationFailure(
            f"google_sheets: credentials.service_account_json (service account {email}): the "
            "private_key could not be read (expected the PEM key of the JSON key file, with "
            "its \\n)"
        ) from None
    token_uri = info.get("token_uri")
    return ServiceAccount(email, signer, token_uri if isinstance(token_uri, str) else None)


class _GoogleSession(requests.Session):
    """A requests session that sends the Sheets API calls to ``api_url``, with a timeout."""

    def __init__(self, api_url: str, timeout_s: float) -> None:
        super().__init__()
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if isinstance(url, str) and url.startswith(GOOGLE_SHEETS_URL + "/"):
            url = self.api_url + url[len(GOOGLE_SHEETS_URL) :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().request(method, url, *args, **kwargs)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _oauth_error(body: Any) -> tuple[str, str]:
    """(error code, description) of an OAuth error body (or of Google's API error format)."""
    if not isinstance(body, Mapping):
        return "", ""
    err: Any = body.get("error")
    desc: Any = body.get("error_description")
    if isinstance(err, Mapping):  # some Google endpoints answer in the API error format
        desc = err.get("message")
        err = err.get("status")
    # the code only if it reads as one, the description only (never the rest of the body)
    return safe_code(err), (desc if isinstance(desc, str) else "")


def access_token(
    session: requests.Session,
    account: ServiceAccount,
    token_url: str,
    timeout_s: float,
    mask: Masker,
) -> str:
    """The OAuth 2.0 JWT bearer grant (RFC 7523) Google uses for service accounts."""
    now = int(time.time())
    assertion = jwt.encode(
        account.signer,
        {"iss": account.client_email, "scope": SCOPE, "aud": token_url, "iat": now,
         "exp": now + 3600},
    )  # fmt: skip
    what = f"google_sheets: the token endpoint {token_url}"
    mask = mask.extended([assertion.decode("ascii")])  # a signed grant: a credential too
    try:
        response = session.post(
            token_url,
            data={"grant_type": JWT_BEARER_GRANT, "assertion": assertion.decode("ascii")},
            headers={"Accept": "application/json"},
            timeout=timeout_s,
        )
    except requests.RequestException as exc:
        raise transport_error(exc, what, timeout_s) from None
    body = _json_or_none(response)
    status = response.status_code
    if status == 200:
        token = body.get("access_token") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            raise ProviderPayloadError(f"{what} answered without an access_token")
        return token
    code, desc = _oauth_error(body)
    detail = upstream_detail(f"{code}: {desc}" if code and desc else (code or desc), mask)
    if status in (401, 403) or (status == 400 and code in _REFUSED_GRANT_ERRORS):
        raise AuthenticationFailure(
            f"google_sheets: the service account {account.client_email} was refused by the "
            f"token endpoint {token_url} (HTTP {status})"
            + (f" ({detail})" if detail else "")
            + ": check that the key in the vault is the current key of an enabled service "
            "account"
        )
    raise error_for_status(status, what, detail=detail, headers=response.headers)


def _api_error(exc: APIError, sheet_key: str, email: str, mask: Masker) -> ProviderError:
    status = exc.response.status_code
    message = exc.error.get("message") if isinstance(exc.error, Mapping) else None
    detail = upstream_detail(message, mask) if isinstance(message, str) and message else ""
    if status == 401:
        return AuthenticationFailure(
            f"google_sheets: the Sheets API refused the service account {email}'s access "
            f"token (HTTP 401)" + (f": {detail}" if detail else "")
        )
    if status == 403:
        return AuthenticationFailure(
            f"google_sheets: the service account {email} may not read spreadsheet "
            f"{sheet_key!r} (HTTP 403" + (f": {detail}" if detail else "") + "): share the "
            f"sheet with {email} (Viewer is enough) and check the Google Sheets API is "
            "enabled in its project"
        )
    if status == 404:
        return ProviderPayloadError(
            f"google_sheets: spreadsheet {sheet_key!r} not found (HTTP 404): check "
            "options.sheet_key (the id between /d/ and /edit in the sheet's address)"
        )
    return error_for_status(
        status,
        f"google_sheets: the Sheets API, reading spreadsheet {sheet_key!r},",
        detail=detail,
        headers=exc.response.headers,
    )


def _call(
    fn: Callable[[], T], what: str, timeout_s: float, on_api_error: Callable[[APIError], Exception]
) -> T:
    """``fn()`` (a gspread call) with its failures as typed errors."""
    try:
        return fn()
    except APIError as exc:
        raise on_api_error(exc) from None
    except requests.exceptions.JSONDecodeError:
        raise ProviderPayloadError(f"{what} answered with a body that is not JSON") from None
    except requests.RequestException as exc:
        raise transport_error(exc, what, timeout_s) from None


def pick_worksheet(meta: Any, sheet_key: str, wanted: str | None) -> str:
    """The title of the worksheet to read: ``wanted`` (exactly, else case-insensitively),
    or the first one."""
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def grid_from_values(payload: Any, title: str, sheet_key: str) -> Grid:
    """A :class:`Grid` of a ValueRange (``{"range", "majorDimension", "values"}``)."""
    where = f"google_sheets: the values of worksheet {title!r} of {sheet_key!r}"
    if not isinstance(payload, Mapping):
        raise ProviderPayloadError(f"{where} are not an object")
    values = payload.get("values", [])
    if not isinstance(values, list) or not all(isinstance(r, list) for r in values):
        raise ProviderPayloadError(f"{where} are not a list of rows")
    for row in values:
        for v in row:
            if v is not None and not isinstance(v, str | int | Decimal | bool):
                raise ProviderPayloadError(f"{where} hold a cell of type {type(v).__name__}")
    row0, col0 = 1, 1
    rng = payload.get("range")
    if isinstance(rng, str) and "!" in rng:  # "'Sheet 1'!B2:F30": the values start at B2
        start = rng.rsplit("!", 1)[1].split(":", 1)[0]
        try:
            row0, col0 = a1_to_rowcol(start)
        except Exception:
            row0, col0 = 1, 1
    return Grid(title, values, row0, col0)


def read_worksheet(options: GoogleSheetsOptions, credentials: GoogleSheetsCredentials) -> Grid:
    """Authenticate and read the values of the configured worksheet."""
    account = service_account(credentials)
    mask = Masker(credentials.secret_values())
    key = options.sheet_key
    token_url = options.token_url or account.token_uri or GOOGLE_TOKEN_URL
    timeout_s = options.timeout_s
    what = f"google_sheets: the Sheets API ({options.api_url})"

    def on_api_error(exc: APIError) -> Exception:
        return _api_error(exc, key, account.client_email, mask)

    with _GoogleSession(options.api_url, timeout_s) as session:
        token = access_token(session, account, token_url, timeout_s, mask)
        mask = mask.extended([token])  # an API error may echo the bearer token
        session.headers["Authorization"] = f"Bearer {token}"
        client = gspread.Client(auth=BearerCredentials(token), session=session)
        client.set_timeout(timeout_s)
        http = client.http_client
        meta = _call(lambda: http.fetch_sheet_metadata(key), what, timeout_s, on_api_error)
        title = pick_worksheet(meta, key, options.worksheet)
        url = SPREADSHEET_VALUES_URL % (key, quote(absolute_range_name(title)))
        response = _call(
            lambda: http.request("get", url, params=VALUES_PARAMS), what, timeout_s, on_api_error
        )
        try:
            # exact numbers: never through a float
            payload = json.loads(response.content, parse_float=Decimal, parse_constant=_no_constant)
        except ValueError:
            raise ProviderPayloadError(f"{what} answered with a body that is not JSON") from None
    return grid_from_values(payload, title, key)
