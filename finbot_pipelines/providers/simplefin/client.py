"""The SimpleFIN protocol on the wire: claim a setup token, read ``GET /accounts``.

What this relies on, from the protocol (https://www.simplefin.org/protocol.html, its
source ``protocol.md`` in github.com/simplefin/simplefin.github.com, the v2 draft
``protocol-v2.md``) and the Bridge's developer guide
(https://beta-bridge.simplefin.org/info/developers):

- "The SimpleFIN Token you receive from users is a Base64-encoded URL. Make an HTTP
  POST to that URL to claim an Access URL" (App Quickstart, step 3); the guide posts
  with ``Content-Length: 0``. The answer body is the Access URL, "just a URL with
  included Basic Auth credentials" (``POST /claim/:token``).
- The claim works once: "You can only do the above step once ... the corresponding
  SETUP_TOKEN will no longer work" (guide); the server answers 403 when "the claim
  token either does not exist or has already been used claimed by someone else.
  Receiving this could mean that the user's transaction information has been
  compromised" (``POST /claim/:token``), and the checklist asks the application to
  tell the user so, so that they can disable the token.
- ``GET {access}/accounts`` with HTTP Basic auth, parameters ``start-date`` (on or
  after, Unix seconds), ``end-date`` (before, not on), ``pending=1`` (pending
  transactions are *not* included by default), ``account`` (repeatable),
  ``balances-only=1`` and, in the v2 draft, ``version=2``; answers 200 with an
  Account Set, 402 "Payment required", 403 "Authentication failed. This could be
  because access has been revoked or if the credentials are incorrect".
- The checklist: HTTPS only (finbot also allows http to 127.0.0.1, for its tests),
  verify certificates (``requests`` does), show the server's error messages to the
  user and sanitise them (they go through :func:`sanitise` and the :class:`Masker`).

No request is retried here (:mod:`..fetching` retries transient errors).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    CredentialsError,
    ProviderPayloadError,
)
from finbot_pipelines.providers.http import (
    Masker,
    body_text,
    error_for_status,
    safe_code,
    shorten,
    transport_error,
    upstream_detail,
    without_echo,
)
from finbot_pipelines.providers.simplefin.options import (
    RELINK_HINT,
    SimplefinCredentials,
    SimplefinOptions,
    SimplefinSetup,
    check_server_url,
    url_secrets,
)

#: the protocol version asked for (the v2 draft's ``version`` parameter; a server that
#: does not know it answers its own version: both forms are read)
PROTOCOL_VERSION = "2"
#: the longest setup token or access URL accepted (a real one is about 100-200 characters)
MAX_TOKEN_CHARS = 4096

CLAIM_REFUSED = (
    "the SimpleFIN server refused the setup token (HTTP 403): it was already claimed or "
    "does not exist. A setup token works only once: create a new one at your SimpleFIN "
    "Bridge. If you did not claim this one yourself, someone else may have: disable it "
    "there (its connection may have been used to read your data)"
)


def sanitise(text: object, mask: Masker, limit: int = 200) -> str:
    """A message of the server, as it may be shown: tags removed, one line, masked, short."""
    return shorten(mask(body_text(str(text))), limit)


def error_detail(text: str, mask: Masker) -> str:
    """What a message may quote of an error answer: a SimpleFIN body's ``errlist`` codes
    and messages (or its ``errors`` strings), else :func:`upstream_detail`."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errlist") or body.get("errors"), list):
        parts: list[str] = []
        for err in (body.get("errlist") or [])[:3]:
            if isinstance(err, dict):
                code = safe_code(err.get("code"))
                msg = err.get("msg", err.get("message"))
                text_msg = without_echo(body_text(str(msg))) if msg else ""
                parts.append(": ".join(p for p in (code, text_msg) if p))
        for err in (body.get("errors") or [])[:3]:
            parts.append(without_echo(body_text(str(err))))
        detail = "; ".join(p for p in parts if p)
        if detail:
            return shorten(mask(detail))
    return upstream_detail(text, mask)


def decode_setup_token(token: str) -> str:
    """The claim URL a setup token encodes (base64, standard or URL-safe, padding
    optional). :class:`CredentialsError` naming what is wrong, never quoting the token."""
    text = "".join(str(token).split())
    if not text or len(text) > MAX_TOKEN_CHARS:
        raise CredentialsError("the setup token is empty or too long")
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        url = raw.decode("utf-8").strip()
    except (binascii.Error, ValueError):
        raise CredentialsError(
            "the setup token is not a SimpleFIN setup token (base64 of a claim URL): copy the "
            "whole token from your SimpleFIN Bridge"
        ) from None
    try:
        check_server_url(url, "the setup token's claim URL")
    except ValueError as exc:
        raise CredentialsError(
            f"{exc}: the setup token is not a SimpleFIN setup token (base64 of a claim URL)"
        ) from None
    return url


def _session() -> Any:
    import requests

    return requests.Session()


def claim_access_url(claim_url: str, *, timeout_s: float, mask: Masker) -> str:
    """POST the claim URL (empty body) and return the access URL it answers, checked."""
    import requests

    what = "simplefin POST /claim"
    try:
        with _session() as session:
            response = session.post(
                claim_url, data=b"", headers={"Content-Length": "0"}, timeout=timeout_s
            )
    except requests.RequestException as exc:
        raise transport_error(exc, what, timeout_s) from None
    if response.status_code == 403:
        raise AuthenticationFailure(CLAIM_REFUSED)
    if response.status_code != 200:
        raise error_for_status(
            response.status_code,
            what,
            detail=upstream_detail(response.text, mask),
            headers=response.headers,
        )
    access_url = response.text.strip()
    try:
        SimplefinCredentials.model_validate({"access_url": access_url})
    except Exception:
        raise ProviderPayloadError(
            f"{what} answered something that is not an access URL (https://user:password@host/path)"
        ) from None
    return access_url


def claim_credentials(inputs: SimplefinSetup, options: SimplefinOptions) -> dict[str, str]:
    """The credentials hook of ``finbot accounts add simplefin``: claim the setup token
    once and return ``{"access_url": ...}``. Errors never quote the token, the claim
    URL or the access URL."""
    claim_url = decode_setup_token(inputs.setup_token)
    path = urlsplit(claim_url).path
    mask = Masker([inputs.setup_token, claim_url, path, *path.split("/")[-1:]])
    return {"access_url": claim_access_url(claim_url, timeout_s=options.timeout_s, mask=mask)}


@dataclass(frozen=True)
class AccessPoint:
    """An access URL split into the server's root (no credentials) and its Basic auth."""

    root: str
    username: str
    password: str

    @classmethod
    def parse(cls, access_url: str) -> AccessPoint:
        parts = urlsplit(access_url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        root = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return cls(root, unquote(parts.username or ""), unquote(parts.password or ""))


class SimplefinClient:
    """``GET /accounts`` of one access URL, with typed errors and masked messages."""

    def __init__(self, access_url: str, *, timeout_s: float, masker: Masker | None = None):
        self._access = AccessPoint.parse(access_url)
        self.timeout_s = timeout_s
        self.mask = masker or Masker([access_url, *url_secrets(access_url)])

    def accounts(
        self,
        *,
        start_date: int | None = None,
        end_date: int | None = None,
        pending: bool = True,
        balances_only: bool = False,
        account_ids: Sequence[str] = (),
    ) -> dict[str, Any]:
        """The Account Set (a JSON object, numbers with a fraction as Decimals)."""
        import requests

        params: list[tuple[str, str]] = [("version", PROTOCOL_VERSION)]
        if start_date is not None:
            params.append(("start-date", str(int(start_date))))
        if end_date is not None:
            params.append(("end-date", str(int(end_date))))
        if pending:
            params.append(("pending", "1"))
        if balances_only:
            params.append(("balances-only", "1"))
        params += [("account", a) for a in account_ids]
        what = "simplefin GET /accounts"
        url = self._access.root + "/accounts"
        try:
            with _session() as session:
                response = session.get(
                    url,
                    params=params,
                    auth=(self._access.username, self._access.password),
                    timeout=self.timeout_s,
                )
        except requests.RequestException as exc:
            raise transport_error(exc, what, self.timeout_s) from None
        status = response.status_code
        if status in (402, 403):
            detail = error_detail(response.text, self.mask)
            reason = "payment required" if status == 402 else "access refused"
            hint = (
                "the SimpleFIN Bridge subscription needs paying (renew it at the Bridge), "
                "then `finbot accounts test ID`"
                if status == 402
                else RELINK_HINT
            )
            extra = f": {detail}" if detail else ""
            raise AuthenticationFailure(f"{what}: {reason} (HTTP {status}){extra}; {hint}")
        if status != 200:
            raise error_for_status(
                status,
                what,
                detail=error_detail(response.text, self.mask),
                headers=response.headers,
            )
        try:
            body = response.json(parse_float=Decimal)
        except ValueError:
            raise ProviderPayloadError(f"{what} answered with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise ProviderPayloadError(
                f"{what} answered JSON that is not an Account Set object (a {type(body).__name__})"
            )
        return body
