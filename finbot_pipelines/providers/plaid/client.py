"""The Plaid client: plaid-python calls, their validation, and their errors as finbot's.

Every call is one POST through the SDK (``PLAID-CLIENT-ID`` / ``PLAID-SECRET``
headers, JSON body) under a network timeout, never retried here (retries and
backoff belong to :mod:`finbot_pipelines.providers.fetching`). The SDK hands
back the raw answer (``_preload_content=False``); this module parses the JSON and
has the SDK validate it against Plaid's schema (``validate_and_convert_types``,
strict), so that every refusal names the field:

* the SDK reports a wrong type or value with ``path_to_item``
  (``accounts[0].balances.current: expected a number or null, got the string
  '110.00 USD'``);
* a missing required field is a ``TypeError`` of the model's constructor
  (``AccountBase._from_openapi_data() missing 1 required positional argument:
  'balances'``) without a path: the path is found by walking the answer along
  the SDK's schema (``accounts[0].balances: required field missing``);
* a body that is not JSON, or JSON but not an object, says so (with the start
  of the body, masked).

The holdings answer is validated piece by piece: its frame (accounts, item)
strictly, then each security and each holding on its own, so that one bad
holding is reported (and left out by :mod:`.mapping`) without losing the rest.
Plaid's schema declares ``institution_value`` and ``institution_price`` non-null,
but institutions do send null: a holding is validated with those two relaxed.
A page of ``/transactions/sync`` is validated strictly (a transaction the SDK
refuses fails the fetch: the cursor is then not advanced, so nothing is lost); a
page of ``/investments/transactions/get`` likewise, but for its securities, each
validated on its own (one that cannot be read only loses its symbol).

Errors
------
Plaid's error object ``{error_type, error_code, error_message, request_id}``
decides: ITEM_LOGIN_REQUIRED, INVALID_ACCESS_TOKEN, INVALID_API_KEYS and the other
"the user must act" codes -> :class:`AuthenticationFailure` (re-link the account);
HTTP 429 / RATE_LIMIT_EXCEEDED -> :class:`RateLimited`; API_ERROR,
INSTITUTION_ERROR, PLANNED_MAINTENANCE, PRODUCT_NOT_READY (and the like) ->
:class:`TransientError`, both with the ``Retry-After`` header when sent;
PRODUCTS_NOT_SUPPORTED, NO_INVESTMENT_ACCOUNTS, NO_LIABILITY_ACCOUNTS (and the
like) -> :class:`ProductUnavailable` (the provider skips that product).
TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION -> :class:`SyncMutation` and
PRODUCT_NOT_READY -> :class:`ProductNotReady`, both transient: the provider
restarts the sync's pagination, or leaves investment transactions for later. An
answer without Plaid's error object (a proxy's page) is mapped by its HTTP status
(:func:`~finbot_pipelines.providers.http.error_for_status`). A refused connection
and other network failures are transient, no answer within the timeout is a
:class:`FetchTimeout`. Every message goes through the credentials'
:class:`~finbot_pipelines.providers.http.Masker`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import plaid
import urllib3
from plaid.api import plaid_api
from plaid.model.accounts_balance_get_request import AccountsBalanceGetRequest
from plaid.model.accounts_get_response import AccountsGetResponse
from plaid.model.holding import Holding
from plaid.model.investments_holdings_get_request import InvestmentsHoldingsGetRequest
from plaid.model.investments_holdings_get_response import InvestmentsHoldingsGetResponse
from plaid.model.investments_transactions_get_request import InvestmentsTransactionsGetRequest
from plaid.model.investments_transactions_get_request_options import (
    InvestmentsTransactionsGetRequestOptions,
)
from plaid.model.investments_transactions_get_response import (
    InvestmentsTransactionsGetResponse,
)
from plaid.model.liabilities_get_request import LiabilitiesGetRequest
from plaid.model.liabilities_get_response import LiabilitiesGetResponse
from plaid.model.security import Security
from plaid.model.transactions_sync_request import TransactionsSyncRequest
from plaid.model.transactions_sync_request_options import TransactionsSyncRequestOptions
from plaid.model.transactions_sync_response import TransactionsSyncResponse
from plaid.model_utils import validate_and_convert_types

from finbot_pipelines.providers.base import format_path
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    TransientError,
)
from finbot_pipelines.providers.http import (
    Masker,
    error_for_status,
    header,
    retry_after_seconds,
    safe_code,
    shorten,
    transport_error,
    upstream_detail,
)
from finbot_pipelines.providers.plaid.mapping import (
    BALANCE,
    HOLDINGS,
    LIABILITIES,
    InvestmentsAnswer,
    RawHolding,
)
from finbot_pipelines.providers.plaid.options import DEFAULT_TIMEOUT_S, RELINK_HINT
from finbot_pipelines.providers.plaid.transactions import (
    INVESTMENT_TRANSACTIONS,
    SYNC,
    InvestmentTransactionsPage,
)

LINK_TOKEN_CREATE = "/link/token/create"
PUBLIC_TOKEN_EXCHANGE = "/item/public_token/exchange"
SANDBOX_PUBLIC_TOKEN_CREATE = "/sandbox/public_token/create"

#: error codes meaning the user must act (log in again, re-consent, new keys)
RELINK_CODES = frozenset(
    {
        "ITEM_LOGIN_REQUIRED",
        "INVALID_ACCESS_TOKEN",
        "INVALID_API_KEYS",
        "INVALID_CREDENTIALS",
        "INVALID_MFA",
        "INVALID_SEND_METHOD",
        "INSUFFICIENT_CREDENTIALS",
        "ITEM_LOCKED",
        "ITEM_NOT_FOUND",
        "ITEM_NOT_SUPPORTED",
        "ACCESS_NOT_GRANTED",
        "USER_SETUP_REQUIRED",
        "USER_PERMISSION_REVOKED",
        "MFA_NOT_SUPPORTED",
        "NO_ACCOUNTS",
        "UNAUTHORIZED_ENVIRONMENT",
        "INVALID_LINK_TOKEN",
    }
)
#: error codes meaning an optional product is not available for this Item
PRODUCT_UNAVAILABLE_CODES = frozenset(
    {
        "PRODUCTS_NOT_SUPPORTED",
        "PRODUCT_NOT_ENABLED",
        "INVALID_PRODUCT",
        "NO_INVESTMENT_ACCOUNTS",
        "NO_INVESTMENT_AUTH_ACCOUNTS",
        "NO_LIABILITY_ACCOUNTS",
        "ADDITIONAL_CONSENT_REQUIRED",
    }
)
#: error codes worth retrying later (besides every 5xx and the error types below)
TRANSIENT_CODES = frozenset(
    {
        "INTERNAL_SERVER_ERROR",
        "PLANNED_MAINTENANCE",
        "INSTITUTION_DOWN",
        "INSTITUTION_NOT_RESPONDING",
        "INSTITUTION_NOT_AVAILABLE",
        "INSTITUTION_NO_LONGER_SUPPORTED_TEMPORARILY",
        "PRODUCT_NOT_READY",
    }
)
TRANSIENT_TYPES = frozenset({"API_ERROR", "INSTITUTION_ERROR"})
RATE_LIMIT = "RATE_LIMIT_EXCEEDED"
#: the Item's transactions changed while /transactions/sync was being paginated
SYNC_MUTATION = "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"
PRODUCT_NOT_READY = "PRODUCT_NOT_READY"

#: Plaid's schema says non-null, institutions send null: validated relaxed, kept None
NULLABLE_HOLDING_FIELDS = ("institution_value", "institution_price")

_MISSING_ARGS_RE = re.compile(
    r"(\w+)\._from_openapi_data\(\) missing \d+ required positional arguments?: (.+)$"
)
#: where the SDK says a value is (``... at ['added'][0]['amount']``), and what it wanted
_SDK_PATH_RE = re.compile(r" at ((?:\[(?:'[^']*'|\d+)\])+)\s*$")
_SDK_PATH_PART_RE = re.compile(r"\[(?:'([^']*)'|(\d+))\]")
_SDK_TYPE_RE = re.compile(r"Invalid type for variable '\w+'\. Required value type is (\w+)")
_SDK_TYPE_NAMES = {
    "float": "a number",
    "int": "a whole number",
    "str": "a string",
    "bool": "true or false",
    "list": "a list",
    "dict": "an object",
    "date": "a date",
    "datetime": "a date-time",
}
_SDK_DATE_HINT = (
    "If you need your parameter to have a fallback string value, please set its type as "
    "`type: {}` in your spec. That allows the value to be any type. "
)


class ProductUnavailable(ProviderError):
    """An optional product is not enabled, or has no accounts, for this Item."""

    def __init__(self, msg: str, error_code: str) -> None:
        super().__init__(msg)
        self.error_code = error_code


class SyncMutation(TransientError):
    """TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION: restart the pagination from its first
    cursor (Plaid: "rather than retrying only the single request that failed")."""


class ProductNotReady(TransientError):
    """PRODUCT_NOT_READY: the product's data is not ready yet (ask again later)."""


class _Refused(Exception):
    """The SDK refused (part of) an answer; the message names the field."""


# --------------------------------------------------------------------------- HTTP errors


def _error_object(body: object) -> dict[str, Any]:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def map_api_exception(endpoint: str, exc: plaid.ApiException, mask: Masker) -> ProviderError:
    """The typed finbot error for a Plaid error answer (masked: never a credential)."""
    status = int(exc.status or 0)
    err = _error_object(exc.body)
    # codes only when they read as codes: a server may put anything in these fields
    error_type = safe_code(err.get("error_type"))
    error_code = safe_code(err.get("error_code"))
    headers = exc.headers or {}
    retry_after = retry_after_seconds(header(headers, "Retry-After"))
    what = f"Plaid {endpoint}"
    if not error_type and not error_code:  # not Plaid's error object (a proxy, a gateway)
        if status == 0:
            return TransientError(f"{what}: connection failed ({shorten(mask(exc.reason))})")
        body = exc.body if isinstance(exc.body, str) else ""
        return error_for_status(
            status, what, detail=upstream_detail(body, mask), headers=headers, auth_hint=RELINK_HINT
        )
    # Plaid's human message only, never the rest of the body (it may echo the request)
    message = err.get("error_message")
    plaid_msg = upstream_detail(message if isinstance(message, str) else exc.reason or "", mask)
    request_id = safe_code(err.get("request_id"))
    detail = f"{what}: HTTP {status} " + "/".join(x for x in (error_type, error_code) if x)
    if plaid_msg:
        detail += f": {plaid_msg}"
    if request_id:
        detail += f" (request_id {request_id})"
    detail = mask(detail)
    if status == 429 or RATE_LIMIT in (error_type, error_code):
        return RateLimited(detail, retry_after=retry_after)
    if error_code in RELINK_CODES:
        if error_code == "INVALID_API_KEYS":
            hint = f"check the client_id/secret in the Plaid dashboard, or {RELINK_HINT}"
        else:
            hint = RELINK_HINT
        return AuthenticationFailure(f"{detail}; {hint}")
    if error_code in PRODUCT_UNAVAILABLE_CODES:
        return ProductUnavailable(detail, error_code)
    if error_code == SYNC_MUTATION:
        return SyncMutation(detail, retry_after=retry_after)
    if error_code == PRODUCT_NOT_READY:
        return ProductNotReady(detail, retry_after=retry_after)
    if status >= 500 or error_type in TRANSIENT_TYPES or error_code in TRANSIENT_CODES:
        return TransientError(detail, retry_after=retry_after)
    if status in (401, 403):
        return AuthenticationFailure(f"{detail}; {RELINK_HINT}")
    return ProviderPayloadError(detail)


# --------------------------------------------------------------------------- validation

_TYPE_NAMES: dict[type, str] = {
    float: "a number",
    int: "a whole number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "an object",
    type(None): "null",
    date: "a date",
    datetime: "a date-time",
}


def _expected(classes: object) -> str:
    names: list[str] = []
    for cls in classes if isinstance(classes, tuple | list) else ():
        name = _TYPE_NAMES.get(cls) if isinstance(cls, type) else None
        if name is None:
            name = "an object" if hasattr(cls, "attribute_map") else "a value"
        if name not in names:
            names.append(name)
    names.sort(key=lambda n: n == "null")  # "a number or null"
    return " or ".join(names) or "another value"


def _json_kind(value: object, mask: Masker | None = None) -> str:
    """How a JSON value reads in a message (a string masked, then shortened)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {shorten(repr(mask(value) if mask else value), 60)}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_MISSING = object()


def _at(data: object, path: Sequence[object]) -> object:
    for key in path:
        in_dict = isinstance(data, dict) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data)
        if not (in_dict or in_list):
            return _MISSING
        data = data[key]  # type: ignore[index]
    return data


def _model_names(t: type) -> set[str]:
    """``t``'s name and those of the schemas it is composed of (allOf, oneOf, anyOf)."""
    names = {t.__name__}
    composed = getattr(t, "_composed_schemas", None)
    if isinstance(composed, Mapping):
        for parts in composed.values():
            for part in parts or ():
                if isinstance(part, type):
                    names |= _model_names(part)
    return names


def _missing_field(
    data: object, types: object, path: list[str | int], model: str, attr: str
) -> list[str | int] | None:
    """The path of the first object of ``model`` lacking ``attr`` in ``data`` (walking the
    SDK's schema ``types``), None when not found."""
    for t in types if isinstance(types, tuple | list) else (types,):
        if isinstance(t, list) and isinstance(data, list):
            for i, element in enumerate(data):
                found = _missing_field(element, tuple(t), [*path, i], model, attr)
                if found is not None:
                    return found
        elif isinstance(t, dict) and isinstance(data, dict):
            (value_types,) = t.values() or [()]
            for key, value in data.items():
                found = _missing_field(value, value_types, [*path, str(key)], model, attr)
                if found is not None:
                    return found
        elif isinstance(t, type) and hasattr(t, "attribute_map") and isinstance(data, dict):
            attribute_map: Mapping[str, str] = t.attribute_map
            if model in _model_names(t) and attribute_map.get(attr, attr) not in data:
                return [*path, attribute_map.get(attr, attr)]
            openapi_types: Mapping[str, object] = getattr(t, "openapi_types", {})
            for name, key in attribute_map.items():
                if key in data and name in openapi_types:
                    found = _missing_field(
                        data[key], openapi_types[name], [*path, key], model, attr
                    )
                    if found is not None:
                        return found
    return None


def _sdk_path(text: str) -> list[str | int]:
    """The path an SDK message ends with (``at ['added'][0]['amount']``), else []."""
    m = _SDK_PATH_RE.search(text)
    if m is None:
        return []
    return [key if num == "" else int(num) for key, num in _SDK_PATH_PART_RE.findall(m.group(1))]


def _where(path: Sequence[object]) -> str:
    return format_path("", [p if isinstance(p, int) else str(p) for p in path]) or "the answer"


def validate(
    data: object,
    model: type,
    path: Sequence[str | int] = (),
    *,
    configuration: plaid.Configuration,
    mask: Masker,
) -> dict[str, Any]:
    """``data`` (the part of an answer at ``path``) checked by the SDK as ``model``; a plain
    dict of it. Raises :class:`_Refused` naming the field."""
    prefix = list(path)
    try:
        result = validate_and_convert_types(
            data, (model,), prefix, True, True, configuration=configuration
        )
        out: dict[str, Any] = result.to_dict()
        return out
    except plaid.ApiTypeError as exc:
        where = list(exc.path_to_item or prefix)
        got = _at(data, where[len(prefix) :])
        got_text = "" if got is _MISSING else f", got {_json_kind(got, mask)}"
        message = f"{_where(where)}: expected {_expected(exc.valid_classes)}{got_text}"
    except (plaid.OpenApiException, TypeError, ValueError, KeyError, AttributeError) as exc:
        text = str(exc)
        m = _MISSING_ARGS_RE.search(text)
        if m is not None:  # a model's constructor (possibly inside a composed schema)
            model_name = m.group(1)
            places = []
            for name in re.findall(r"'(\w+)'", m.group(2)):
                found = _missing_field(data, (model,), prefix, model_name, name)
                places.append(_where(found) if found else f"{model_name}.{name}")
            message = f"{', '.join(places)}: required field missing"
        elif isinstance(exc, plaid.OpenApiException):  # ApiValueError (a bad date...)
            where = list(getattr(exc, "path_to_item", None) or _sdk_path(text) or prefix)
            wanted = _SDK_TYPE_RE.search(text)  # a wrong type inside a composed schema
            if wanted is not None:
                got = _at(data, where[len(prefix) :])
                got_text = "" if got is _MISSING else f", got {_json_kind(got, mask)}"
                expected = _SDK_TYPE_NAMES.get(wanted.group(1), "another value")
                message = f"{_where(where)}: expected {expected}{got_text}"
            else:
                text = text.split(" at [")[0].removeprefix(_SDK_DATE_HINT)
                message = f"{_where(where)}: {shorten(mask(text))}"
        else:
            message = f"{_where(prefix)}: {type(exc).__name__}: {shorten(mask(text))}"
    raise _Refused(mask(message))


# --------------------------------------------------------------------------- the client


def make_api(api_url: str, client_id: str, secret: str) -> plaid_api.PlaidApi:
    """A plaid-python client for ``api_url`` that never retries on its own."""
    configuration = plaid.Configuration(
        host=api_url.rstrip("/"), api_key={"clientId": client_id, "secret": secret}
    )
    configuration.retries = False  # one attempt per call: fetching.py decides on retries
    return plaid_api.PlaidApi(plaid.ApiClient(configuration))


class PlaidClient:
    """The Plaid calls finbot makes, each returning a validated answer (plain dicts)."""

    def __init__(
        self,
        api_url: str,
        client_id: str,
        secret: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        masker: Masker | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self.mask = masker or Masker([client_id, secret])
        self.api = make_api(self.api_url, client_id, secret)

    # ------------------------------------------------------------------ transport

    def post(self, endpoint: str, call: Callable[..., Any], request: Any) -> dict[str, Any]:
        """One call; the answer's JSON object (not yet validated)."""
        what = f"Plaid {endpoint}"
        try:
            response = call(request, _preload_content=False, _request_timeout=self.timeout_s)
            try:
                raw: bytes = response.data
                status = int(response.status)
                content_type = str(response.headers.get("Content-Type") or "")
            finally:
                response.release_conn()
        except plaid.ApiException as exc:
            raise map_api_exception(endpoint, exc, self.mask) from None
        except urllib3.exceptions.NewConnectionError:  # a ConnectTimeoutError subclass, oddly
            raise TransientError(f"{what}: connection failed (refused)") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise transport_error(exc, what, self.timeout_s) from None
        except (UnicodeDecodeError, plaid.OpenApiException) as exc:  # an unreadable error body
            raise ProviderPayloadError(
                self.mask(f"{what}: unreadable answer ({type(exc).__name__})")
            ) from None
        return self._json_object(endpoint, raw, status, content_type)

    def _json_object(
        self, endpoint: str, raw: bytes, status: int, content_type: str
    ) -> dict[str, Any]:
        what = f"Plaid {endpoint}: malformed answer (HTTP {status}"
        what += f", {content_type.split(';')[0].strip()})" if content_type else ")"
        m = re.search(r"charset=([\w-]+)", content_type)
        try:
            text = raw.decode(m.group(1) if m else "utf-8")
        except (LookupError, UnicodeDecodeError):
            raise ProviderPayloadError(f"{what}: the body is not UTF-8 text") from None
        if not text.strip():
            raise ProviderPayloadError(f"{what}: the body is empty, expected a JSON object")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            start = upstream_detail(text, self.mask, 80)
            raise ProviderPayloadError(
                f"{what}: the body is not JSON ({exc.msg} at line {exc.lineno} column "
                f"{exc.colno}): {start!r}"
            ) from None
        if not isinstance(data, dict):
            kind = "a list" if isinstance(data, list) else _json_kind(data, self.mask)
            raise ProviderPayloadError(f"{what}: the body is {kind}, expected a JSON object")
        return data

    def _validated(self, endpoint: str, data: object, model: type) -> dict[str, Any]:
        try:
            return validate(
                data, model, configuration=self.api.api_client.configuration, mask=self.mask
            )
        except _Refused as exc:
            raise ProviderPayloadError(f"Plaid {endpoint}: malformed answer: {exc}") from None

    # ------------------------------------------------------------------ data endpoints

    def accounts_balance(self, access_token: str) -> dict[str, Any]:
        """``/accounts/balance/get``: real-time balances of every account of the Item."""
        data = self.post(
            BALANCE,
            self.api.accounts_balance_get,
            AccountsBalanceGetRequest(access_token=access_token),
        )
        return self._validated(BALANCE, data, AccountsGetResponse)

    def liabilities(self, access_token: str) -> dict[str, Any]:
        """``/liabilities/get``: cards, student loans, mortgages (raises ProductUnavailable)."""
        data = self.post(
            LIABILITIES, self.api.liabilities_get, LiabilitiesGetRequest(access_token=access_token)
        )
        return self._validated(LIABILITIES, data, LiabilitiesGetResponse)

    def investments_holdings(self, access_token: str) -> InvestmentsAnswer:
        """``/investments/holdings/get``: the frame validated strictly, each security and
        holding on its own (raises ProductUnavailable)."""
        data = self.post(
            HOLDINGS,
            self.api.investments_holdings_get,
            InvestmentsHoldingsGetRequest(access_token=access_token),
        )
        self._lists(HOLDINGS, data, ("holdings", "securities"))
        frame = self._validated(
            HOLDINGS, {**data, "holdings": [], "securities": []}, InvestmentsHoldingsGetResponse
        )
        configuration = self.api.api_client.configuration
        securities, bad_securities = self._securities(HOLDINGS, data["securities"])
        holdings: list[RawHolding] = []
        for i, h in enumerate(data["holdings"]):
            holdings.append(self._holding(i, h, configuration))
        return InvestmentsAnswer(
            accounts=frame["accounts"],
            holdings=holdings,
            securities=securities,
            bad_securities=bad_securities,
        )

    def _lists(self, endpoint: str, data: Mapping[str, Any], keys: Sequence[str]) -> None:
        for key in keys:
            if key not in data:
                raise ProviderPayloadError(
                    f"Plaid {endpoint}: malformed answer: {key}: required field missing"
                )
            if not isinstance(data[key], list):
                raise ProviderPayloadError(
                    f"Plaid {endpoint}: malformed answer: {key}: expected a list, got "
                    f"{_json_kind(data[key], self.mask)}"
                )

    def _securities(
        self, endpoint: str, raw: Sequence[object]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """The securities of an answer, each validated on its own: security_id -> the
        security, and security_id -> why it could not be read."""
        configuration = self.api.api_client.configuration
        securities: dict[str, dict[str, Any]] = {}
        bad: dict[str, str] = {}
        for i, sec in enumerate(raw):
            sid = sec.get("security_id") if isinstance(sec, dict) else None
            if not isinstance(sid, str) or not sid:
                raise ProviderPayloadError(
                    f"Plaid {endpoint}: malformed answer: securities[{i}].security_id: expected "
                    f"a string, got {_json_kind(sid, self.mask)}"
                )
            try:
                securities.setdefault(
                    sid,
                    validate(
                        sec,
                        Security,
                        ["securities", i],
                        configuration=configuration,
                        mask=self.mask,
                    ),
                )
            except _Refused as exc:
                bad.setdefault(sid, str(exc))
        return securities, bad

    def transactions_sync(
        self, access_token: str, cursor: str | None, count: int
    ) -> dict[str, Any]:
        """One page of ``/transactions/sync`` from ``cursor`` (None: Plaid's empty cursor,
        from the beginning), validated strictly (raises ProductUnavailable, SyncMutation)."""
        request = TransactionsSyncRequest(
            access_token=access_token,
            cursor=cursor or "",
            count=count,
            options=TransactionsSyncRequestOptions(include_personal_finance_category=True),
        )
        data = self.post(SYNC, self.api.transactions_sync, request)
        return self._validated(SYNC, data, TransactionsSyncResponse)

    def investments_transactions(
        self, access_token: str, start: date, end: date, *, offset: int, count: int
    ) -> InvestmentTransactionsPage:
        """One page of ``/investments/transactions/get`` (``start``..``end`` inclusive, from
        ``offset``): the frame and every transaction strictly, each security on its own
        (raises ProductUnavailable, ProductNotReady)."""
        request = InvestmentsTransactionsGetRequest(
            access_token=access_token,
            start_date=start,
            end_date=end,
            options=InvestmentsTransactionsGetRequestOptions(count=count, offset=offset),
        )
        data = self.post(INVESTMENT_TRANSACTIONS, self.api.investments_transactions_get, request)
        self._lists(INVESTMENT_TRANSACTIONS, data, ("investment_transactions", "securities"))
        frame = self._validated(
            INVESTMENT_TRANSACTIONS, {**data, "securities": []}, InvestmentsTransactionsGetResponse
        )
        securities, _ = self._securities(INVESTMENT_TRANSACTIONS, data["securities"])
        return InvestmentTransactionsPage(
            accounts=frame["accounts"],
            transactions=frame["investment_transactions"],
            total=int(frame["total_investment_transactions"]),
            securities=securities,
        )

    def _holding(self, i: int, h: object, configuration: plaid.Configuration) -> RawHolding:
        if not isinstance(h, dict):
            kind = _json_kind(h, self.mask)
            return RawHolding(i, None, f"holdings[{i}]: expected an object, got {kind}")
        account_id = h.get("account_id") if isinstance(h.get("account_id"), str) else None
        security_id = h.get("security_id") if isinstance(h.get("security_id"), str) else None
        nulls = [k for k in NULLABLE_HOLDING_FIELDS if k in h and h[k] is None]
        relaxed = {**h, **dict.fromkeys(nulls, 0.0)}
        try:
            holding = validate(
                relaxed, Holding, ["holdings", i], configuration=configuration, mask=self.mask
            )
        except _Refused as exc:
            return RawHolding(i, None, str(exc), account_id, security_id)
        holding.update(dict.fromkeys(nulls))
        return RawHolding(i, holding, None, account_id, security_id)

    # ------------------------------------------------------------------ linking

    def call(
        self, endpoint: str, call: Callable[..., Any], request: Any, model: type
    ) -> dict[str, Any]:
        """Any other call (linking): the answer validated as the SDK response ``model``."""
        return self._validated(endpoint, self.post(endpoint, call, request), model)
