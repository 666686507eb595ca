"""Options and credentials of the ``google_sheets`` provider (pydantic and the stdlib only).

Validating ``finbot.yaml`` imports this module, never gspread or google-auth.
See :mod:`finbot_pipelines.providers.google_sheets.provider` for the sheet layout.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, Strict, field_validator, model_validator

from finbot_pipelines.providers.base import (
    HttpUrl,
    ProviderCredentials,
    ProviderOptions,
    ProviderSpec,
    Seconds,
    secret,
)

#: The Sheets API address gspread calls (the ``api_url`` option replaces it).
GOOGLE_SHEETS_URL = "https://sheets.googleapis.com"
#: The token endpoint used when neither ``token_url`` nor the key file's ``token_uri`` says.
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_TIMEOUT_S = 30.0

_SHEET_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{10,}$")
_SHEET_URL_RE = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")
#: fields a service account key file has, when the vault entry is the key file itself
_KEY_FILE_FIELDS = ("private_key", "client_email")


def sheet_id(value: str) -> str | None:
    """The spreadsheet id in ``value`` (an id, or the sheet's ``.../spreadsheets/d/<id>/...``
    address), None when it holds none."""
    value = value.strip()
    if value.startswith(("http://", "https://")):
        m = _SHEET_URL_RE.search(value)
        return m[1] if m else None
    return value if _SHEET_KEY_RE.match(value) else None


def _check_sheet_key(v: str) -> str:
    key = sheet_id(v)
    if key is None:
        raise ValueError(
            "expected a spreadsheet id (the part between /d/ and /edit in the sheet's address) "
            f"or the sheet's address, got {v!r}"
        )
    return key


def _check_worksheet(v: str) -> str:
    if not v.strip():
        raise ValueError(f"expected the title of a worksheet (tab), got {v!r}")
    return v


SheetKey = Annotated[str, Strict(), AfterValidator(_check_sheet_key)]
WorksheetTitle = Annotated[str, Strict(), AfterValidator(_check_worksheet)]


class GoogleSheetsOptions(ProviderOptions):
    sheet_key: SheetKey = Field(
        description=(
            "the spreadsheet id (the part between /d/ and /edit of the sheet's address), or the "
            "whole address"
        )
    )
    worksheet: WorksheetTitle | None = Field(
        default=None,
        description="title of the worksheet (tab) holding the tables; default the first one",
    )
    api_url: HttpUrl = Field(default=GOOGLE_SHEETS_URL, description="the Sheets API address")
    token_url: HttpUrl | None = Field(
        default=None,
        description=(
            "the OAuth 2.0 token endpoint the service account's signed JWT is exchanged at; "
            f"default the key file's token_uri, else {GOOGLE_TOKEN_URL}"
        ),
    )
    timeout_s: Seconds = Field(
        default=DEFAULT_TIMEOUT_S, description="seconds per HTTP request (connect and read)"
    )


class GoogleSheetsCredentials(ProviderCredentials):
    """The vault entry: ``{"service_account_json": "<the key file's content>"}``, or the
    key file's JSON object itself (``type``, ``client_email``, ``private_key``, ...).

    Checks here never quote the key: the private key is read (and refused when it
    cannot be) by the client, which needs the crypto library."""

    service_account_json: str = secret(
        "the content of the Google Cloud service account's JSON key file (share the sheet "
        "with its client_email)"
    )

    @model_validator(mode="before")
    @classmethod
    def _key_file_itself(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "service_account_json" not in data
            and any(k in data for k in _KEY_FILE_FIELDS)
        ):
            return {"service_account_json": json.dumps(data)}
        return data

    @field_validator("service_account_json")
    @classmethod
    def _service_account_key(cls, v: str) -> str:
        try:
            info = json.loads(v)
        except ValueError:
            info = None
        if not isinstance(info, dict):
            raise ValueError(
                "expected the content of the service account's JSON key file (a JSON object), "
                "got text that is not a JSON object"
            )
        kind = info.get("type", "service_account")
        if kind != "service_account":
            shown = kind if isinstance(kind, str) and len(kind) <= 40 else type(kind).__name__
            raise ValueError(
                'expected a service account key ("type": "service_account"), got a key of type '
                f"{shown!r}"
            )
        email = info.get("client_email")
        if not isinstance(email, str) or "@" not in email:
            raise ValueError(
                "expected a service account JSON key file, got one without client_email"
            )
        key = info.get("private_key")
        if not isinstance(key, str) or not key.strip():
            raise ValueError(
                f"expected a service account JSON key file, got one without private_key "
                f"(service account {email})"
            )
        token_uri = info.get("token_uri")
        if token_uri is not None and not isinstance(token_uri, str):
            raise ValueError(f"expected token_uri to be an address (service account {email})")
        return v

    def key_info(self) -> dict[str, Any]:
        """The key file as a JSON object (checked by the validator)."""
        info: dict[str, Any] = json.loads(self.service_account_json)
        return info

    @property
    def client_email(self) -> str:
        return str(self.key_info()["client_email"])

    def secret_values(self) -> list[str]:
        """The whole key file, and the key and its id alone (to mask in messages)."""
        info = self.key_info()
        out = [self.service_account_json]
        for name in ("private_key", "private_key_id"):
            v = info.get(name)
            if isinstance(v, str) and v:
                out.append(v)
        return out


SPEC = ProviderSpec(
    id="google_sheets",
    description=(
        "Accounts and holdings kept by hand in a Google Sheet (two tables marked ACCOUNTS "
        "and HOLDINGS; sheets made for the original finbot read as they are), read with a "
        "service account the sheet is shared with."
    ),
    options=GoogleSheetsOptions,
    credentials=GoogleSheetsCredentials,
    supports_historical=False,
    implementation="finbot_pipelines.providers.google_sheets.provider:GoogleSheetsProvider",
)
