"""HTTP plumbing every provider shares: timeouts, Retry-After, secret masking, typed errors.

Providers never retry (:mod:`.fetching` does, honouring ``retry_after``); they
make each request with a timeout, turn each failure into a typed error with
:func:`error_for_status` / :func:`transport_error`, and pass every text that
may quote a request or an answer through a :class:`Masker` before it goes into
an error message.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, quote_plus

from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    FetchTimeout,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    TransientError,
)

#: seconds per request (connect and read) unless a provider's option says otherwise
DEFAULT_TIMEOUT_S = 30.0
#: the longest piece of an upstream answer quoted in an error message
MAX_QUOTED_CHARS = 200
#: credential values shorter than this are not masked (they would mask ordinary words)
MIN_SECRET_CHARS = 4
MASK = "***"

_QUERY_RE = re.compile(r"(https?://[^\s?#'\"]+)\?[^\s#'\"]*")


def retry_after_seconds(value: object, now: datetime | None = None) -> float | None:
    """Seconds asked by a ``Retry-After`` header (delta-seconds or an HTTP date), if usable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def header(headers: object, name: str) -> str | None:
    """A header's value from any mapping of headers, case-insensitively."""
    if not isinstance(headers, Mapping):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return str(value)
    return None


class Masker:
    """Replaces every credential value found in a text, in its plain and encoded forms
    (URL-encoded, JSON-escaped, base64), by ``***``; strips URL query strings."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for s in secrets:
            if not isinstance(s, str) or len(s) < MIN_SECRET_CHARS:
                continue
            forms.update(
                {
                    s,
                    quote(s, safe=""),
                    quote_plus(s, safe=""),
                    json.dumps(s)[1:-1],
                    base64.b64encode(s.encode()).decode().rstrip("="),
                    base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
                }
            )
        self._forms = sorted(
            (f for f in forms if len(f) >= MIN_SECRET_CHARS), key=len, reverse=True
        )

    def __call__(self, text: object) -> str:
        out = _QUERY_RE.sub(r"\1?…", str(text))
        for form in self._forms:
            out = out.replace(form, MASK)
        return out


def shorten(text: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """One line, at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def error_for_status(
    status: int,
    what: str,
    *,
    detail: str = "",
    headers: object = None,
    auth_hint: str = "",
) -> ProviderError:
    """The typed error for an HTTP error status of ``what`` (``"kraken /0/private/BalanceEx"``).

    429 -> :class:`RateLimited`, 5xx -> :class:`TransientError` (both with the
    server's Retry-After), 401/403 -> :class:`AuthenticationFailure` (with
    ``auth_hint``), any other -> :class:`ProviderPayloadError`. ``detail`` must be
    masked already."""
    extra = f": {detail}" if detail else ""
    retry_after = retry_after_seconds(header(headers, "Retry-After"))
    if status == 429:
        return RateLimited(f"{what} is rate limiting (HTTP 429){extra}", retry_after=retry_after)
    if status >= 500:
        return TransientError(f"{what} failed (HTTP {status}){extra}", retry_after=retry_after)
    if status in (401, 403):
        hint = f"; {auth_hint}" if auth_hint else ""
        return AuthenticationFailure(f"{what} refused the credentials (HTTP {status}){extra}{hint}")
    return ProviderPayloadError(f"{what} answered HTTP {status}{extra}")


def transport_error(exc: BaseException, what: str, timeout_s: float) -> ProviderError:
    """The typed error for a request that got no HTTP answer (requests or urllib3)."""
    name = type(exc).__name__
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return FetchTimeout(f"{what}: no answer within {timeout_s:g} s")
    return TransientError(f"{what} could not be reached ({name})")


def get_json(
    session: Any,
    url: str,
    what: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    masker: Masker | None = None,
    exact: bool = True,
) -> Any:
    """GET ``url`` with a ``requests`` session and return its JSON body; typed errors.

    With ``exact`` (the default), JSON numbers with a fraction come back as Decimals
    with the digits the server sent."""
    import requests

    mask = masker or Masker()
    try:
        response = session.get(url, params=params, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise transport_error(exc, what, timeout_s) from None
    if response.status_code != 200:
        raise error_for_status(
            response.status_code,
            what,
            detail=mask(shorten(response.text)),
            headers=response.headers,
        )
    try:
        return response.json(parse_float=Decimal) if exact else response.json()
    except ValueError:
        raise ProviderPayloadError(f"{what} answered with a body that is not JSON") from None
