"""HTTP plumbing every provider shares: timeouts, Retry-After, secret masking, typed errors.

Providers never retry (:mod:`.fetching` does, honouring ``retry_after``); they
make each request with a timeout, turn each failure into a typed error with
:func:`error_for_status` / :func:`transport_error`, and pass every text that
may quote a request or an answer through a :class:`Masker` before it goes into
an error message.
"""

from __future__ import annotations

import base64
import functools
import html
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


_QUERY_RE = re.compile(r"(https?://[^\s?#'\"]+)\?[^\s#'\"]*")
#: a query string after a path or a host, even without a scheme (``/api/v3/account?ts=1&sig=...``)
_REL_QUERY_RE = re.compile(r"(?<=[\w/])\?(?=[\w.%\[\]~-]+=)[^\s#'\"<>]*")
#: names whose value is a credential, wherever a text quotes one: ``name=value`` (a
#: query or a form), ``"name": "value"`` (JSON), ``Name: value`` (a header)
_SENSITIVE_CORE = (
    r"secret|passw(?:or)?d|passphrase|pwd|token|api[_-]?key|apikey|access[_-]?key|"
    r"private[_-]?key|signature|api[_-]?sign|authorization|cookie|credentials?|assertion|"
    r"client[_-]?assertion|sessionid|session[_-]?id"
)
_SENSITIVE_NAME = rf"[\w.-]*(?:{_SENSITIVE_CORE})[\w-]*"
_PAIR_VALUE = (
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|(?:Bearer|Basic|Digest)\s+[^\s,;&\"'<>]+|"
    r"[^\s,;&\"'<>}\]]+)"
)
_SENSITIVE_PAIR_RE = re.compile(
    # name=value; "name": value / 'name': value; Header-Name: value (a header's own form)
    rf"(?i)(?P<name>\b{_SENSITIVE_NAME}(?P<sep>\s*=\s*)"
    rf"|[\"']{_SENSITIVE_NAME}[\"'](?P<sep2>\s*:\s*)"
    rf"|\b(?:authorization|proxy-authorization|cookie|set-cookie|[\w-]*api-?(?:key|sign)|"
    rf"x-[\w-]*(?:key|token|secret|signature|auth)[\w-]*)(?P<sep3>:\s*))" + _PAIR_VALUE
)
#: the last 1-3 characters of a base64 text after a masked credential: they still encode
#: the bits of its last characters
_GLUED_RE = re.compile(r"\*\*\*[A-Za-z0-9+/_-]{1,3}={0,2}(?![A-Za-z0-9+/_=-])")
#: where a server's message starts quoting the request back: a request header, a form field
_ECHO_START_RE = re.compile(
    r"(?i)\b(?:host|user-agent|accept(?:-encoding|-language)?|connection|content-(?:length|type)|"
    r"cookie|authorization|origin|referer|x-[\w-]+|api-[\w-]+|plaid-[\w-]+|body|"
    r"grant_type|assertion|nonce|timestamp|signature|client_id|client_secret|username|"
    r"password)\s*[:=]"
)
_BEARER_RE = re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}")
#: a JSON Web Token (three base64url parts, the first one ``{"...``)
_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_PEM_RE = re.compile(r"-----BEGIN [A-Z ]+-----.*?(?:-----END [A-Z ]+-----|$)", re.DOTALL)
_URL_RE = re.compile(r"\b(https?|wss?)://[^\s/?#'\"<>]+(/[^\s?#'\"<>]*)?(?:\?[^\s#'\"<>]*)?")
_TAG_RE = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.DOTALL | re.IGNORECASE)
#: characters of a credential left as they are by every encoding a client uses
_PLAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
#: the shortest line of a multi-line secret (a PEM key) that is masked on its own
_MIN_LINE_CHARS = 16


def _html_names() -> dict[str, list[str]]:
    from html.entities import html5

    out: dict[str, list[str]] = {}
    for name, char in html5.items():
        if len(char) == 1 and name.endswith(";"):
            out.setdefault(char, []).append(name)
    return out


_HTML_NAMES = _html_names()


def _char_pattern(c: str) -> str:
    """A regex matching ``c`` in any form a client or a server writes it in: itself,
    percent-encoded (any case, encoded again and again), ``+`` for a space, a JSON
    or JavaScript escape (``\\/``, ``\\u002b``, ``\\n``, escaped again), an HTML
    character reference (``&#43;``, ``&#x2B;``, ``&plus;``, ``&amp;#43;``)."""
    if c in _PLAIN_CHARS:
        return re.escape(c)
    alts = [r"\\*" + re.escape(c)]
    utf8 = c.encode()
    alts.append("".join(f"%(?:25)*(?i:{b:02x})" for b in utf8))
    if c == " ":
        alts.append(r"\+")
    code = ord(c)
    if code <= 0xFFFF:
        alts.append(rf"\\+u(?i:{code:04x})")
    else:  # a surrogate pair in JSON
        hi, lo = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        alts.append(rf"\\+u(?i:{hi:04x})\\+u(?i:{lo:04x})")
    if code < 0x80:
        alts.append(rf"\\+x(?i:{code:02x})")
    short = {"\n": "n", "\r": "r", "\t": "t", "\b": "b", "\f": "f"}.get(c)
    if short:
        alts.append(rf"\\+{short}")
    amp = r"&(?:amp;)*"
    alts.append(rf"{amp}#0*{code};?")
    alts.append(rf"{amp}#[xX]0*(?i:{code:x});?")
    alts += [amp + re.escape(name) for name in _HTML_NAMES.get(c, [])]
    return "(?:" + "|".join(alts) + ")"


def _base64_cores(data: bytes) -> set[str]:
    """The parts of any base64 text (standard or URL-safe) holding ``data`` that depend
    on ``data`` alone: one per alignment of ``data`` in the encoded bytes (``user:secret``
    in a Basic auth header puts the secret anywhere)."""
    cores: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode().rstrip("=")
        skip = {0: 0, 1: 2, 2: 3}[offset]
        end = len(encoded) - (1 if (offset + len(data)) % 3 else 0)
        core = encoded[skip:end]
        cores.update({core, core.replace("+", "-").replace("/", "_")})
    return cores


def encoded_forms(secret: str) -> set[str]:
    """The literal texts standing for ``secret`` in a message, a URL, a header or a page:
    plain, URL-encoded (``quote``, ``quote_plus``, lower-case escapes, twice), JSON
    (escaped slashes, ``\\u`` escapes), HTML-escaped, hex and base64 (every alignment).
    :class:`Masker` matches more (any mix of these per character); this list is what a
    page scrub needs."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        quote(quote(secret, safe=""), safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=True)[1:-1],
        html.escape(secret),
        secret.encode().hex(),
        secret.encode().hex().upper(),
    }
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in set(forms)}
    forms |= _base64_cores(secret.encode())
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


def _expanded(secrets: Iterable[str]) -> set[str]:
    """The values to mask: each secret, each long line of a multi-line one (a PEM key)."""
    out: set[str] = set()
    for s in secrets:
        if not isinstance(s, str) or len(s) < MIN_SECRET_CHARS:
            continue
        out.add(s)
        if "\n" in s or "\\n" in s:
            for line in re.split(r"\\n|\r?\n", s):
                if len(line.strip()) >= _MIN_LINE_CHARS:
                    out.add(line.strip())
    return out


#: a secret longer than this (a whole key file) is matched in its plain, URL-encoded and
#: JSON forms only; its lines (a PEM key's) are secrets of their own
_MAX_PATTERN_CHARS = 256


def _whole_forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret, safe=""), json.dumps(secret)[1:-1]}


@functools.lru_cache(maxsize=4096)
def _secret_regex(secret: str) -> re.Pattern[str]:
    """The regex of every form of ``secret`` (built once per secret: a fetch makes a masker
    for its credentials each time)."""
    if len(secret) > _MAX_PATTERN_CHARS:
        patterns = {re.escape(f) for f in _whole_forms(secret)}
    else:
        patterns = {"".join(_char_pattern(c) for c in secret)}
        for core in _base64_cores(secret.encode()):
            if len(core) >= MIN_SECRET_CHARS:
                patterns.add("".join(_char_pattern(c) for c in core))
        patterns |= {re.escape(secret.encode().hex()), re.escape(secret.encode().hex().upper())}
    return re.compile("|".join(sorted(patterns, key=len, reverse=True)))


@functools.lru_cache(maxsize=4096)
def _literal_forms(secret: str) -> frozenset[str]:
    if len(secret) > _MAX_PATTERN_CHARS:
        return frozenset(_whole_forms(secret))
    return frozenset(encoded_forms(secret))


class Masker:
    """Replaces every credential value found in a text by ``***``, in its plain and
    encoded forms (any mix, per character, of URL escapes in either case and encoded
    again, JSON/JavaScript escapes, HTML character references; base64 at every
    alignment, hex); strips URL query strings and the values of credential-like
    ``name=value`` pairs, bearer tokens, JWTs and PEM blocks."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = frozenset(_expanded(secrets))
        ordered = sorted(self._secrets, key=len, reverse=True)  # a longer one first
        self._regexes = [_secret_regex(s) for s in ordered]
        self.forms: tuple[str, ...] = tuple(
            sorted({f for s in ordered for f in _literal_forms(s)}, key=len, reverse=True)
        )

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def extended(self, more: Iterable[str]) -> Masker:
        """A masker for these secrets and ``more`` (e.g. an access token just obtained)."""
        return Masker([*self._secrets, *more])

    def __call__(self, text: object) -> str:
        out = str(text)
        for regex in self._regexes:
            out = regex.sub(MASK, out)
        out = _PEM_RE.sub("-----" + MASK + "-----", out)
        out = _QUERY_RE.sub(r"\1?…", out)
        out = _REL_QUERY_RE.sub("?…", out)
        out = _BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", out)
        out = _JWT_RE.sub(MASK, out)
        out = _SENSITIVE_PAIR_RE.sub(_mask_pair, out)
        # what is left of a base64 text after a masked part goes too
        return _GLUED_RE.sub(MASK, out)


def _mask_pair(m: re.Match[str]) -> str:
    value = m.group("value")
    if MASK in value or value.lower() in ("null", "true", "false"):
        return m.group(0)
    quoted = value[:1] if value[:1] in "\"'" else ""
    return f"{m.group('name')}{quoted}{MASK}{quoted}"


def shorten(text: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """One line, at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


#: the fields of a JSON error body that name the error (Plaid, Google, Binance, OAuth, ...)
_CODE_FIELDS = ("error_type", "error_code", "code", "status", "errorCode", "type", "reason")
#: the fields holding its human message
_MESSAGE_FIELDS = (
    "error_message",
    "display_message",
    "message",
    "msg",
    "error_description",
    "errorMessage",
    "description",
    "detail",
)
#: what an error code may look like when quoted (anything else is left out)
_CODE_RE = re.compile(r"^-?[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
#: the longest excerpt of a body that is not a JSON error
MAX_EXCERPT_CHARS = 120


def safe_code(value: object) -> str:
    """``value`` if it reads as an error code (``ITEM_LOGIN_REQUIRED``, ``-2015``,
    ``EAPI:Invalid key`` is not one), else ``""``."""
    if isinstance(value, bool) or value is None:
        return ""
    text = str(value).strip()
    return text if _CODE_RE.match(text) else ""


def _json_in(text: str) -> tuple[str, Any]:
    """(what comes before it, the JSON object or list) ``text`` is or holds
    (``kraken POST https://... 500 {"error": [...]}``); ``("", None)`` without one."""
    stripped = text.strip()
    candidates = [(0, len(stripped))]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = stripped.find(opener), stripped.rfind(closer)
        if 0 <= start < end:
            candidates.append((start, end + 1))
    for start, end in candidates:
        try:
            value = json.loads(stripped[start:end])
        except ValueError:
            continue
        if isinstance(value, dict | list):
            return stripped[:start], value
    return "", None


def _lead(text: str) -> str:
    """What a library wrote before the answer it quotes (``binance GET /api/v3/account
    401 Unauthorized``): URLs cut to their path."""
    return _URL_RE.sub(lambda m: m.group(2) or "/", " ".join(text.split()))[:80]


def _error_parts(body: Any) -> tuple[list[str], list[str]]:
    """(codes, messages) of a JSON error body: its top-level fields, those of its
    ``error`` object (or first ``errors`` entry), Kraken's list of ``error`` strings."""
    codes: list[str] = []
    messages: list[str] = []
    objects: list[Mapping[str, Any]] = []
    if isinstance(body, Mapping):
        objects.append(body)
        err = body.get("error")
        # the error objects of the formats known: Google's {"error": {...}}, CoinGecko's
        # {"status": {...}}, Apigee's {"fault": {...}}
        objects += [
            body[k] for k in ("error", "status", "fault") if isinstance(body.get(k), Mapping)
        ]
        if isinstance(err, Mapping):
            pass
        elif isinstance(err, str) and err:
            (codes if safe_code(err) else messages).append(err)
        elif isinstance(err, list):
            messages += [e for e in err[:3] if isinstance(e, str) and e]
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            objects.append(errors[0])
    for obj in objects:
        for name in _CODE_FIELDS:
            code = safe_code(obj.get(name)) if not isinstance(obj.get(name), Mapping) else ""
            if code and code not in codes:
                codes.append(code)
        for name in _MESSAGE_FIELDS:
            msg = obj.get(name)
            if isinstance(msg, str) and msg.strip() and msg not in messages:
                messages.append(msg)
    return codes, messages


def without_echo(text: str) -> str:
    """``text`` up to where it starts quoting the request back (its headers, its form)."""
    m = _ECHO_START_RE.search(text)
    return text if m is None else text[: m.start()].rstrip() + " …"


def body_text(text: str) -> str:
    """The readable text of an answer: tags, scripts and styles of an HTML page removed,
    character references decoded, whitespace collapsed."""
    if "<" in text and ">" in text:
        text = html.unescape(_TAG_RE.sub(" ", text))
    return " ".join(text.split())


def upstream_detail(text: object, mask: Masker, limit: int = MAX_QUOTED_CHARS) -> str:
    """What an error message may quote of an upstream answer (or of a library's message
    quoting one): from a JSON error body, its error codes and its human message only
    (never the rest: a server may echo the request, its headers or its credentials);
    from an HTML page, its title and first heading; otherwise a bounded excerpt of its
    readable text. Masked (:class:`Masker`) before
    it is cut, so a cut never leaves part of a secret."""
    raw = str(text or "")
    lead, parsed = _json_in(raw) if ("{" in raw or "[" in raw) else ("", None)
    if parsed is not None:
        codes, messages = _error_parts(parsed)
        parts = ["/".join(codes)] if codes else []
        parts += [without_echo(body_text(m)) for m in messages[:2]]
        detail = ": ".join(p for p in parts if p) or "no error code or message"
        lead = mask(_lead(lead))
        return shorten(f"{lead} {mask(detail)}" if lead else mask(detail), limit)
    heading = _page_heading(raw)
    excerpt = heading or without_echo(body_text(raw))
    return shorten(mask(excerpt), min(limit, MAX_EXCERPT_CHARS))


_HEADING_RE = re.compile(r"<(title|h1)\b[^>]*>(.*?)</\1\s*>", re.DOTALL | re.IGNORECASE)


def _page_heading(text: str) -> str:
    """The title and first heading of an HTML page (an error page says what failed there;
    the rest of it may echo the request)."""
    parts: list[str] = []
    for m in _HEADING_RE.finditer(text):
        part = body_text(m.group(2))
        if part and not any(part in p for p in parts):
            parts.append(part)
        if len(parts) == 2:
            break
    return ": ".join(parts)


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
            detail=upstream_detail(response.text, mask),
            headers=response.headers,
        )
    try:
        return response.json(parse_float=Decimal) if exact else response.json()
    except ValueError:
        raise ProviderPayloadError(f"{what} answered with a body that is not JSON") from None
