"""Options and credentials of the ``simplefin`` provider (pydantic and the standard library only).

SimpleFIN (https://www.simplefin.org/protocol.html) gives read-only access to the
accounts a user connected at a SimpleFIN server, usually the SimpleFIN Bridge. The
user creates a *setup token* there (base64 of a one-time claim URL); finbot claims
it once, with ``finbot accounts add simplefin``, and keeps the *access URL* it
returns (``https://user:password@host/path``: the server's address and its Basic
auth credentials in one) in the vault.

Credentials (one vault entry, a JSON object, written by ``finbot accounts add simplefin``)
------------------------------------------------------------------------------------------
``access_url`` (secret)
    the access URL claimed from the setup token. It is both the server's address
    and the credentials, so this provider has no ``api_url`` option: tests claim
    an access URL from a local fake.

Options (all optional)
----------------------
``refresh_hours``
    how long an answer of the server is used again before finbot asks again (default
    6, 1 to 168). The Bridge refreshes its data about once a day and expects at most
    24 requests a day per access URL; between two requests the hourly snapshot
    repeats the last answer (its balances and their ``balance-date``).
``history_days``
    how far back the first fetch asks for transactions (default 60, 1 to 365);
    later fetches ask from the previous request minus a few days of overlap.
``pending``
    include pending transactions (``pending=1``; default true).
``timeout_s``
    network timeout of each request, seconds (default 60: the Bridge can be slow).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, Field, StringConstraints

from finbot_pipelines.providers.base import (
    CredentialsSetup,
    ProviderCredentials,
    ProviderOptions,
    ProviderSpec,
    Seconds,
)
from finbot_pipelines.providers.base import secret as secret_field

PROVIDER_ID = "simplefin"
DEFAULT_REFRESH_HOURS = 6
MAX_REFRESH_HOURS = 168
DEFAULT_HISTORY_DAYS = 60
MAX_HISTORY_DAYS = 365
DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 300.0
#: hosts an http:// (not https://) URL may name: this machine only (a local fake); the
#: protocol's checklist asks for TLS everywhere else
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
RELINK_HINT = (
    "the SimpleFIN server refused the access URL (revoked, or the subscription lapsed): "
    "create a new setup token at your SimpleFIN Bridge (a new application connection), then "
    "`finbot accounts remove ID` and `finbot accounts add simplefin`"
)


def check_server_url(url: str, what: str) -> str:
    """``url`` if it is https (or http to this machine); ``ValueError`` otherwise. Never
    quotes ``url`` (an access URL holds credentials)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ValueError(f"{what} is not a URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{what} is not an http(s) URL")
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ValueError(f"{what} must be https (SimpleFIN requires TLS), got http://{host}")
    return url


def _access_url(v: str) -> str:
    v = v.strip()
    check_server_url(v, "access_url")
    parts = urlsplit(v)
    if not parts.username or parts.password is None:
        raise ValueError(
            "access_url carries no user:password (expected https://user:password@host/path, "
            "as claimed from a setup token)"
        )
    if parts.query or parts.fragment:
        raise ValueError("access_url must not have a query or a fragment")
    return v.rstrip("/")


AccessUrl = Annotated[str, StringConstraints(min_length=1), AfterValidator(_access_url)]


def url_secrets(url: str) -> list[str]:
    """The credential parts of a URL: ``user``, ``password``, ``user:password``, as written
    and percent-decoded (a Basic header is the base64 of the decoded pair)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    out: list[str] = []
    netloc = parts.netloc
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        user, _, password = userinfo.partition(":")
        for text in (userinfo, user, password):
            out += [text, unquote(text)]
        out.append(f"{unquote(user)}:{unquote(password)}")
    return [s for s in dict.fromkeys(out) if s]


class SimplefinOptions(ProviderOptions):
    refresh_hours: Annotated[int, Field(ge=1, le=MAX_REFRESH_HOURS)] = Field(
        default=DEFAULT_REFRESH_HOURS,
        description=(
            "hours an answer of the SimpleFIN server is used again before asking again "
            f"(1 to {MAX_REFRESH_HOURS}; the Bridge refreshes about daily and allows about "
            "24 requests a day)"
        ),
    )
    history_days: Annotated[int, Field(ge=1, le=MAX_HISTORY_DAYS)] = Field(
        default=DEFAULT_HISTORY_DAYS,
        description=(
            f"days of transactions the first fetch asks for (1 to {MAX_HISTORY_DAYS}); later "
            "fetches ask from the previous request minus a few days"
        ),
    )
    pending: bool = Field(default=True, description="include pending transactions")
    timeout_s: Annotated[Seconds, Field(le=MAX_TIMEOUT_S)] = Field(
        default=DEFAULT_TIMEOUT_S,
        description=f"network timeout of each request in seconds, at most {MAX_TIMEOUT_S:g}",
    )


class SimplefinCredentials(ProviderCredentials):
    access_url: AccessUrl = secret_field(
        "SimpleFIN access URL (https://user:password@host/path), claimed from a setup token "
        "by `finbot accounts add simplefin`"
    )

    def secret_values(self) -> list[str]:
        """The access URL, and its user, password and ``user:password`` on their own."""
        return [*super().secret_values(), *url_secrets(self.access_url)]


class SimplefinSetup(ProviderCredentials):
    """What `finbot accounts add simplefin` asks for: the one-time setup token."""

    setup_token: Annotated[str, StringConstraints(min_length=1)] = secret_field(
        "SimpleFIN setup token from your SimpleFIN Bridge; it works once"
    )


SPEC = ProviderSpec(
    id=PROVIDER_ID,
    description=(
        "Banks, cards and brokerages through a SimpleFIN server (the SimpleFIN Bridge): "
        "balances, holdings and transactions of every account of one access URL (claimed "
        "from a setup token by `finbot accounts add simplefin`)."
    ),
    options=SimplefinOptions,
    credentials=SimplefinCredentials,
    supports_historical=False,
    implementation="finbot_pipelines.providers.simplefin.provider:SimplefinProvider",
    setup=CredentialsSetup(
        inputs=SimplefinSetup,
        implementation="finbot_pipelines.providers.simplefin.client:claim_credentials",
        note=(
            "a setup token works once: if the claim fails, nothing is saved; create a new "
            "token at your SimpleFIN Bridge"
        ),
    ),
)
