"""``plaid``: bank, card, loan and brokerage accounts through Plaid (plaid-python).

One linked account is one Plaid *Item* (one login at one institution). A fetch
makes up to three calls, each under its own network timeout and never retried
here (retries and backoff belong to :mod:`finbot_pipelines.providers.fetching`):

``/accounts/balance/get``
    real-time balances of every account of the Item (always called).
``/investments/holdings/get``
    holdings and their securities (skipped when the Item has no investments).
``/liabilities/get``
    credit cards, student loans and mortgages (skipped likewise).

Credentials (one vault entry, a JSON object)
--------------------------------------------
``client_id``, ``secret``
    the Plaid API keys of your Plaid developer account (dashboard.plaid.com).
``access_token``
    the Item's access token, obtained by linking: ``finbot accounts link plaid``
    (see :mod:`finbot_pipelines.providers.plaid_link`).
``environment``
    ``sandbox``, ``development`` or ``production``: picks Plaid's host. Plaid
    retired ``development`` in 2024; it is accepted for old credentials.

Options (all optional)
----------------------
``api_url``
    the address of the Plaid API, default the host of the credential's
    environment (``https://production.plaid.com``...). Tests point it at a fake.
``timeout_s``
    network timeout of each call in seconds, default 30.
``products``
    which optional products to read, a list of ``investments`` and
    ``liabilities``, default both. Plaid may add (and bill) a product the first
    time it is called on an Item: leave out the ones you do not want.

Mapping
-------
* One sub-account per Plaid account; its id is the Plaid ``account_id``, its
  currency the account's ``iso_currency_code`` (else its unofficial code), its
  type ``depository``, ``credit``, ``loan``, ``investment`` (``brokerage`` too)
  or ``other``. Accounts are merged by ``account_id`` across the three answers
  (the balance answer wins): an account present in several answers (a credit
  card in both the balance and the liabilities answers) is counted once.
* depository: one ``Cash`` item = the current balance (``available`` when
  ``current`` is null); a negative balance is an ``Overdraft`` liability.
* credit / loan: one liability item = -current balance (amount owed), typed
  from the liabilities answer or the subtype: ``credit_card``, ``student_loan``
  (asset class ``other``), ``mortgage`` (asset class ``real_estate``), ``loan``.
  A credit balance in the user's favour (negative ``current``) is an asset.
* investment: one item per holding (units = ``quantity``, value =
  ``institution_value``, currency = the holding's currency, symbol = ticker,
  else ISIN, CUSIP or SEDOL), classed by security type: equity -> equities/stock,
  etf -> equities/etf, mutual fund -> multi_asset/fund, fixed income ->
  fixed_income/bond, cash -> cash/cash, cryptocurrency -> crypto/crypto_currency,
  loan -> other/loan, derivative -> other/derivative, anything else ->
  other/other. A negative holding value (a short position) is a liability.

  Uninvested cash rule: Plaid's ``balances.current`` of an investment account
  is the value of its holdings plus its cash. When it exceeds the sum of the
  holdings' values by more than half a cent, the difference is added as one
  ``Uninvested cash`` item (cash/cash). When it is lower (a stale balance, a
  margin loan) the holdings alone are reported: they are itemised and priced,
  the balance is not.

  Holdings in a currency other than the account's cannot be converted here
  (the provider has no FX rates): they go into a second sub-account
  ``<account_id>:<CCY>`` named ``<account name> (CCY)``, and the uninvested cash
  rule is then skipped for that account (its balance mixes currencies).
  An investment account for which no holdings could be read (the product is
  not enabled) is one ``Account balance`` item (other/investment_account).
* other types: one ``Balance`` item (other/other).

Errors
------
ITEM_LOGIN_REQUIRED, INVALID_ACCESS_TOKEN, INVALID_API_KEYS and the other
"the user must act" codes -> :class:`AuthenticationFailure` (re-link the
account); HTTP 429 / RATE_LIMIT_EXCEEDED -> :class:`RateLimited` (with the
``Retry-After`` header when sent); 5xx, API_ERROR, INSTITUTION_ERROR,
PLANNED_MAINTENANCE, PRODUCT_NOT_READY, connection errors ->
:class:`TransientError`; timeouts -> :class:`FetchTimeout`; an answer the SDK
cannot deserialise or that lacks a needed value -> :class:`ProviderPayloadError`
naming the field, and so is a balance answer listing no account (never a 0).
PRODUCTS_NOT_SUPPORTED, NO_INVESTMENT_ACCOUNTS, NO_LIABILITY_ACCOUNTS (and the
like) on the optional products skip that product.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import plaid
import urllib3
from plaid.api import plaid_api
from plaid.model.accounts_balance_get_request import AccountsBalanceGetRequest
from plaid.model.investments_holdings_get_request import InvestmentsHoldingsGetRequest
from plaid.model.liabilities_get_request import LiabilitiesGetRequest

from finbot_pipelines.providers.base import (
    RESERVED_OPTION_PREFIX,
    AuthenticationFailure,
    CredentialField,
    CredentialsError,
    FetchTimeout,
    Item,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    Snapshot,
    SubAccount,
    TransientError,
)

T = TypeVar("T")

PLAID_HOSTS: dict[str, str] = {
    "sandbox": "https://sandbox.plaid.com",
    "development": "https://development.plaid.com",
    "production": "https://production.plaid.com",
}
ENVIRONMENTS = tuple(PLAID_HOSTS)
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 300.0
OPTIONAL_PRODUCTS = ("investments", "liabilities")
OPTION_KEYS = ("api_url", "timeout_s", "products")
RELINK_HINT = "re-link this account (finbot accounts link plaid)"
#: below this difference (in the account currency) balance and holdings agree
CASH_TOLERANCE = 0.005

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
#: error codes worth retrying later (besides every 5xx and error type)
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

#: Plaid security type -> (asset_class, asset_type)
SECURITY_TYPES: dict[str, tuple[str, str]] = {
    "equity": ("equities", "stock"),
    "etf": ("equities", "etf"),
    "mutual fund": ("multi_asset", "fund"),
    "fixed income": ("fixed_income", "bond"),
    "cash": ("cash", "cash"),
    "cryptocurrency": ("crypto", "crypto_currency"),
    "loan": ("other", "loan"),
    "derivative": ("other", "derivative"),
    "other": ("other", "other"),
}
ACCOUNT_TYPE_MAP: dict[str, str] = {
    "depository": "depository",
    "credit": "credit",
    "loan": "loan",
    "investment": "investment",
    "brokerage": "investment",
}

_MISSING_ARGS_RE = re.compile(
    r"(\w+)\._from_openapi_data\(\) missing \d+ required positional arguments?: (.+)$"
)


# --------------------------------------------------------------------------- errors


class ProductUnavailable(ProviderError):
    """An optional product is not enabled / has no accounts for this Item."""

    def __init__(self, msg: str, error_code: str) -> None:
        super().__init__(msg)
        self.error_code = error_code


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for s in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _error_body(body: object) -> dict[str, Any]:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def map_api_exception(
    endpoint: str, exc: plaid.ApiException, secrets: Sequence[str] = ()
) -> ProviderError:
    """The typed finbot error for a Plaid HTTP error answer (never quotes a credential)."""
    status = int(exc.status or 0)
    err = _error_body(exc.body)
    error_type = str(err.get("error_type") or "")
    error_code = str(err.get("error_code") or "")
    plaid_msg = str(err.get("error_message") or exc.reason or "").strip()[:200]
    request_id = str(err.get("request_id") or "")
    what = "/".join(x for x in (error_type, error_code) if x) or "no error code"
    detail = f"Plaid {endpoint}: HTTP {status} {what}"
    if plaid_msg:
        detail += f": {plaid_msg}"
    if request_id:
        detail += f" (request_id {request_id})"
    detail = _scrub(detail, secrets)
    headers = dict(exc.headers or {})

    if status == 429 or "RATE_LIMIT_EXCEEDED" in (error_type, error_code):
        return RateLimited(detail, retry_after=_retry_after(headers))
    if error_code in RELINK_CODES or (status in (401, 403) and not error_code):
        if error_code == "INVALID_API_KEYS":
            hint = f"check the client_id/secret in the Plaid dashboard, or {RELINK_HINT}"
        else:
            hint = RELINK_HINT
        return AuthenticationFailure(f"{detail}; {hint}")
    if error_code in PRODUCT_UNAVAILABLE_CODES:
        return ProductUnavailable(detail, error_code)
    if (
        status == 0
        or status >= 500
        or error_type in TRANSIENT_TYPES
        or error_code in TRANSIENT_CODES
    ):
        return TransientError(detail, retry_after=_retry_after(headers))
    return ProviderError(detail)


def _path(path_to_item: object) -> str:
    items = path_to_item if isinstance(path_to_item, list | tuple) else []
    parts = [p for p in items if p != "received_data"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def call_plaid(
    endpoint: str,
    fn: Callable[..., T],
    request: Any,
    timeout_s: float,
    secrets: Sequence[str] = (),
) -> T:
    """Call one SDK method once and turn every failure into a typed :class:`ProviderError`."""
    try:
        return fn(request, _request_timeout=timeout_s)
    except plaid.ApiException as exc:
        raise map_api_exception(endpoint, exc, secrets) from None
    except urllib3.exceptions.NewConnectionError:  # a ConnectTimeoutError subclass, oddly
        raise TransientError(f"Plaid {endpoint}: connection failed (refused)") from None
    except urllib3.exceptions.TimeoutError:
        raise FetchTimeout(f"Plaid {endpoint}: no answer within {timeout_s:g} s") from None
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TransientError(
            _scrub(f"Plaid {endpoint}: connection failed ({type(reason).__name__})", secrets)
        ) from None
    except (ConnectionError, OSError) as exc:
        raise TransientError(
            f"Plaid {endpoint}: connection failed ({type(exc).__name__})"
        ) from None
    except plaid.OpenApiException as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        first = first.split(" at ['received_data']")[0]
        where = _path(getattr(exc, "path_to_item", None))
        if not where:
            raise ProviderPayloadError(
                f"Plaid {endpoint}: malformed answer: the body is not the expected JSON object"
            ) from None
        raise ProviderPayloadError(
            _scrub(f"Plaid {endpoint}: malformed answer at {where}: {first}"[:400], secrets)
        ) from None
    except TypeError as exc:
        m = _MISSING_ARGS_RE.search(str(exc))
        if m:
            model, fields = m.group(1), m.group(2)
            raise ProviderPayloadError(
                f"Plaid {endpoint}: incomplete answer: {model} lacks required field(s) {fields}"
            ) from None
        raise ProviderPayloadError(
            _scrub(f"Plaid {endpoint}: malformed answer: {exc}"[:400], secrets)
        ) from None
    except (ValueError, KeyError, AttributeError) as exc:
        raise ProviderPayloadError(
            _scrub(
                f"Plaid {endpoint}: malformed answer: {type(exc).__name__}: {exc}"[:400], secrets
            )
        ) from None


def make_client(api_url: str, client_id: str, secret: str) -> plaid_api.PlaidApi:
    """A Plaid API client for ``api_url`` that never retries on its own."""
    configuration = plaid.Configuration(
        host=api_url.rstrip("/"), api_key={"clientId": client_id, "secret": secret}
    )
    configuration.retries = False  # one attempt per call: fetching.py decides on retries
    return plaid_api.PlaidApi(plaid.ApiClient(configuration))


def resolve_api_url(environment: str, api_url: str | None = None) -> str:
    if api_url:
        return api_url.rstrip("/")
    if environment not in PLAID_HOSTS:
        raise ValueError(
            f"environment: expected one of {', '.join(ENVIRONMENTS)}, got {environment!r}"
        )
    return PLAID_HOSTS[environment]


# --------------------------------------------------------------------------- options


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_options(options: Mapping[str, Any]) -> None:
    if not isinstance(options, Mapping):
        raise ValueError("options: expected a mapping")
    for key, v in options.items():
        p = f"options.{key}"
        if isinstance(key, str) and key.startswith(RESERVED_OPTION_PREFIX):
            continue  # reserved keys injected by the ingest (_linked_account_id)
        if key == "api_url":
            if not isinstance(v, str) or not re.match(r"^https?://[^\s/]+", v):
                raise ValueError(
                    f"{p}: expected an http(s) address such as {PLAID_HOSTS['sandbox']}"
                )
        elif key == "timeout_s":
            if not _is_number(v) or not 0 < v <= MAX_TIMEOUT_S:
                raise ValueError(f"{p}: expected a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
        elif key == "products":
            if not isinstance(v, list):
                raise ValueError(f"{p}: expected a list of {', '.join(OPTIONAL_PRODUCTS)}")
            for i, x in enumerate(v):
                if x not in OPTIONAL_PRODUCTS:
                    raise ValueError(
                        f"{p}[{i}]: expected one of {', '.join(OPTIONAL_PRODUCTS)}, got {x!r}"
                    )
        else:
            raise ValueError(f"{p}: unknown option (expected one of {', '.join(OPTION_KEYS)})")


# --------------------------------------------------------------------------- mapping


@dataclass
class _Account:
    data: dict[str, Any]
    source: str  # which answer it came from, for error messages
    index: int


@dataclass
class _Answers:
    accounts: dict[str, _Account] = field(default_factory=dict)
    holdings: dict[str, list[dict[str, Any]]] | None = None  # None: investments not read
    securities: dict[str, dict[str, Any]] = field(default_factory=dict)
    liability_kind: dict[str, str] = field(default_factory=dict)

    def add_accounts(self, source: str, accounts: Sequence[dict[str, Any]]) -> None:
        for i, acc in enumerate(accounts):
            self.accounts.setdefault(str(acc["account_id"]), _Account(acc, source, i))


def _num(v: object) -> float | None:
    if v is None:
        return None
    if not _is_number(v):
        return None
    return float(v)  # type: ignore[arg-type]


def _clean(x: float) -> float:
    """Round off float noise (Plaid amounts have at most a few decimals)."""
    return round(x, 8) + 0.0


def _account_currency(acc: _Account) -> str:
    bal = acc.data.get("balances") or {}
    ccy = bal.get("iso_currency_code") or bal.get("unofficial_currency_code")
    if not isinstance(ccy, str) or not re.fullmatch(r"[A-Z]{3}", ccy):
        where = f"{acc.source} accounts[{acc.index}] ({acc.data.get('account_id')})"
        raise ProviderPayloadError(
            f"Plaid {where}: balances.iso_currency_code is "
            + ("missing" if not ccy else f"{ccy!r}, not a 3-letter currency code")
        )
    return ccy


def _current(acc: _Account, *, allow_available: bool) -> float:
    bal = acc.data.get("balances") or {}
    cur = _num(bal.get("current"))
    if cur is None and allow_available:
        cur = _num(bal.get("available"))
    if cur is None:
        where = f"{acc.source} accounts[{acc.index}] ({acc.data.get('account_id')})"
        raise ProviderPayloadError(f"Plaid {where}: balances.current is missing")
    return cur


def _enum(v: object) -> str:
    return str(getattr(v, "value", v) or "").lower()


def _liability_item(name: str, kind: str, subtype: str, owed: float) -> Item:
    if kind == "mortgage" or subtype in ("mortgage", "home equity"):
        asset_class, asset_type = "real_estate", "mortgage"
    elif kind == "credit" or subtype in ("credit card", "paypal"):
        asset_class, asset_type = "other", "credit_card"
    elif kind == "student" or subtype == "student":
        asset_class, asset_type = "other", "student_loan"
    else:
        asset_class, asset_type = "other", "loan"
    value = _clean(-owed)
    return Item(
        name=name,
        item_type="liability" if value <= 0 else "asset",
        asset_class=asset_class,
        asset_type=asset_type,
        value=value,
    )


def _unique(name: str, symbol: str | None, seen: set[str]) -> str:
    candidate = name
    if candidate in seen and symbol:
        candidate = f"{name} ({symbol})"
    n = 2
    base = candidate
    while candidate in seen:
        candidate = f"{base} #{n}"
        n += 1
    seen.add(candidate)
    return candidate


def _holding_items(
    acc: _Account, account_ccy: str, holdings: list[dict[str, Any]], answers: _Answers
) -> dict[str, list[Item]]:
    """Items per currency (the account currency first)."""
    by_ccy: dict[str, list[Item]] = {account_ccy: []}
    seen: dict[str, set[str]] = {}
    for h in holdings:
        sec_id = str(h.get("security_id"))
        sec = answers.securities.get(sec_id)
        if sec is None:
            raise ProviderPayloadError(
                f"Plaid /investments/holdings/get: holding of account {acc.data['account_id']} "
                f"refers to security_id {sec_id!r} absent from securities"
            )
        ccy = (
            h.get("iso_currency_code")
            or h.get("unofficial_currency_code")
            or sec.get("iso_currency_code")
            or sec.get("unofficial_currency_code")
            or account_ccy
        )
        value = _num(h.get("institution_value"))
        if value is None:
            raise ProviderPayloadError(
                f"Plaid /investments/holdings/get: holding {sec_id} of account "
                f"{acc.data['account_id']}: institution_value is missing"
            )
        units = _num(h.get("quantity"))
        asset_class, asset_type = SECURITY_TYPES.get(
            str(sec.get("type") or "").lower(), ("other", "other")
        )
        symbol = next(
            (
                str(sec[k])
                for k in ("ticker_symbol", "isin", "cusip", "sedol")
                if isinstance(sec.get(k), str) and sec[k].strip()
            ),
            None,
        )
        raw_name = str(sec.get("name") or symbol or sec_id).strip() or sec_id
        name = _unique(raw_name, symbol, seen.setdefault(ccy, set()))
        value = _clean(value)
        by_ccy.setdefault(ccy, []).append(
            Item(
                name=name,
                item_type="asset" if value >= 0 else "liability",
                asset_class=asset_class,
                asset_type=asset_type,
                value=value,
                units=units,
                currency=ccy,
                symbol=symbol,
            )
        )
    return by_ccy


def _sub_accounts(acc: _Account, answers: _Answers) -> list[SubAccount]:
    data = acc.data
    account_id = str(data["account_id"])
    name = str(data.get("name") or data.get("official_name") or account_id).strip() or account_id
    ccy = _account_currency(acc)
    plaid_type = _enum(data.get("type"))
    subtype = _enum(data.get("subtype"))
    account_type = ACCOUNT_TYPE_MAP.get(plaid_type, "other")
    holdings = (answers.holdings or {}).get(account_id)

    if holdings:
        by_ccy = _holding_items(acc, ccy, holdings, answers)
        own = by_ccy.pop(ccy)
        if not by_ccy:  # balance and holdings in one currency: the uninvested cash rule
            bal = _num((data.get("balances") or {}).get("current"))
            total = math.fsum(i.value for i in own)
            if bal is not None and bal - total > CASH_TOLERANCE:
                seen = {i.name for i in own}
                own.append(
                    Item(
                        _unique("Uninvested cash", None, seen),
                        "asset",
                        "cash",
                        "cash",
                        _clean(bal - total),
                        currency=ccy,
                    )
                )
        out = [SubAccount(account_id, name, ccy, account_type, tuple(own))]
        for other_ccy, items in by_ccy.items():
            out.append(
                SubAccount(
                    f"{account_id}:{other_ccy}",
                    f"{name} ({other_ccy})",
                    other_ccy,
                    account_type,
                    tuple(items),
                )
            )
        return out

    if account_type == "depository":
        value = _clean(_current(acc, allow_available=True))
        item = (
            Item("Cash", "asset", "cash", "cash", value)
            if value >= 0
            else Item("Overdraft", "liability", "cash", "overdraft", value)
        )
        return [SubAccount(account_id, name, ccy, account_type, (item,))]
    if account_type in ("credit", "loan"):
        owed = _current(acc, allow_available=False)
        kind = answers.liability_kind.get(account_id, "")
        item = _liability_item(name, kind, subtype, owed)
        return [SubAccount(account_id, name, ccy, account_type, (item,))]
    if account_type == "investment":
        if answers.holdings is not None:
            # holdings were read and this account has none: all of it is cash
            value = _clean(_current(acc, allow_available=True))
            inv_items: tuple[Item, ...] = (
                (Item("Uninvested cash", "asset", "cash", "cash", value, currency=ccy),)
                if value >= 0
                else (Item("Margin debt", "liability", "cash", "margin_loan", value),)
            )
        else:
            value = _clean(_current(acc, allow_available=True))
            inv_items = (
                Item(
                    "Account balance",
                    "asset" if value >= 0 else "liability",
                    "other",
                    "investment_account",
                    value,
                ),
            )
        return [SubAccount(account_id, name, ccy, account_type, inv_items)]
    value = _clean(_current(acc, allow_available=True))
    item = Item("Balance", "asset" if value >= 0 else "liability", "other", "other", value)
    return [SubAccount(account_id, name, ccy, "other", (item,))]


def build_snapshot(
    balance: Mapping[str, Any],
    investments: Mapping[str, Any] | None = None,
    liabilities: Mapping[str, Any] | None = None,
) -> Snapshot:
    """Map Plaid answers (as plain dicts, already deserialised by the SDK) to a Snapshot."""
    answers = _Answers()
    answers.add_accounts("/accounts/balance/get", balance.get("accounts") or [])
    if investments is not None:
        answers.add_accounts("/investments/holdings/get", investments.get("accounts") or [])
        answers.securities = {
            str(s["security_id"]): dict(s) for s in investments.get("securities") or []
        }
        answers.holdings = {}
        for h in investments.get("holdings") or []:
            answers.holdings.setdefault(str(h["account_id"]), []).append(dict(h))
    if liabilities is not None:
        answers.add_accounts("/liabilities/get", liabilities.get("accounts") or [])
        groups = liabilities.get("liabilities") or {}
        for kind in ("credit", "student", "mortgage"):
            for entry in groups.get(kind) or []:
                if entry.get("account_id"):
                    answers.liability_kind[str(entry["account_id"])] = kind
    subs: list[SubAccount] = []
    for acc in answers.accounts.values():
        subs.extend(_sub_accounts(acc, answers))
    snapshot = Snapshot(tuple(subs))
    snapshot.validate()
    return snapshot


# --------------------------------------------------------------------------- provider


@dataclass(frozen=True)
class PlaidCredentials:
    client_id: str
    secret: str
    access_token: str
    environment: str

    @classmethod
    def parse(cls, credentials: Mapping[str, str]) -> PlaidCredentials:
        names = ("client_id", "secret", "access_token", "environment")
        missing = [
            n for n in names if not isinstance(credentials.get(n), str) or not credentials[n]
        ]
        if missing:
            raise CredentialsError(
                f"plaid credentials lack {', '.join(missing)} (expected a JSON object with "
                f"{', '.join(names)}); {RELINK_HINT}"
            )
        env = credentials["environment"].strip().lower()
        if env not in PLAID_HOSTS:
            raise CredentialsError(
                f"plaid credentials: environment must be one of {', '.join(ENVIRONMENTS)}"
            )
        return cls(
            credentials["client_id"], credentials["secret"], credentials["access_token"], env
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.client_id, self.secret, self.access_token)


class PlaidProvider:
    id: str = "plaid"
    description: str = (
        "Banks, cards, loans and brokerages through Plaid: balances, investment holdings "
        "and liabilities of one Plaid Item (link it with `finbot accounts link plaid`)."
    )
    credential_fields: tuple[CredentialField, ...] = (
        CredentialField("client_id", "Plaid API client_id (Plaid dashboard, Developers > Keys)"),
        CredentialField("secret", "Plaid API secret for the environment"),
        CredentialField("access_token", "access token of the linked Item (from linking)"),
        CredentialField(
            "environment", "Plaid environment: sandbox, development or production", secret=False
        ),
    )
    supports_historical: bool = False

    def validate_options(self, options: Mapping[str, Any]) -> None:
        check_options(options)

    def fetch(
        self, credentials: Mapping[str, str], options: Mapping[str, Any], as_of: datetime
    ) -> Snapshot:
        try:
            check_options(options)
        except ValueError as exc:
            raise ProviderError(f"plaid: {exc}") from None
        creds = PlaidCredentials.parse(credentials)
        api_url = resolve_api_url(creds.environment, options.get("api_url"))
        timeout_s = float(options.get("timeout_s", DEFAULT_TIMEOUT_S))
        products = options.get("products", list(OPTIONAL_PRODUCTS))
        client = make_client(api_url, creds.client_id, creds.secret)
        secrets = creds.secrets

        balance = call_plaid(
            "/accounts/balance/get",
            client.accounts_balance_get,
            AccountsBalanceGetRequest(access_token=creds.access_token),
            timeout_s,
            secrets,
        ).to_dict()
        if not balance.get("accounts"):
            # Plaid answers NO_ACCOUNTS for an Item without accounts: an empty list is a
            # broken answer, never a balance of 0.
            raise ProviderPayloadError(
                "Plaid /accounts/balance/get: the answer lists no account (an Item has at "
                "least one)"
            )
        investments: dict[str, Any] | None = None
        if "investments" in products:
            try:
                investments = call_plaid(
                    "/investments/holdings/get",
                    client.investments_holdings_get,
                    InvestmentsHoldingsGetRequest(access_token=creds.access_token),
                    timeout_s,
                    secrets,
                ).to_dict()
            except ProductUnavailable:
                investments = None
        liabilities: dict[str, Any] | None = None
        if "liabilities" in products:
            try:
                liabilities = call_plaid(
                    "/liabilities/get",
                    client.liabilities_get,
                    LiabilitiesGetRequest(access_token=creds.access_token),
                    timeout_s,
                    secrets,
                ).to_dict()
            except ProductUnavailable:
                liabilities = None
        return build_snapshot(balance, investments, liabilities)
