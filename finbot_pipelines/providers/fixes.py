"""What to do about a failing linked account: one fix per error code, in one place.

The report, `finbot accounts list`, the ingest's `latest_fetch_succeeded` check and
the notifications all say the same thing about a failure: its error code (the
stable ``code`` of a :mod:`.contract` error, stored in ``raw.fetches.error_code``),
the masked message, and the fix :func:`fix_for` derives from the code. Plain
Python, no Dagster, no configuration: callers pass what they know of the account.
"""

from __future__ import annotations

from dataclasses import dataclass

from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    CredentialsError,
    FetchTimeout,
    OptionsError,
    ProviderError,
    RateLimited,
    RetiredProvider,
    TransientError,
    UnpricedError,
)

#: Pseudo code of an enabled account that has no fetch at all yet.
NEVER_FETCHED = "never_fetched"
#: ``registry.UnknownProvider.code`` (finbot.yaml names a provider that does not exist).
UNKNOWN_PROVIDER = "unknown_provider"


@dataclass(frozen=True)
class Fix:
    """What an error code means for the user, and whether only the user can end it."""

    code: str
    #: the fix, with ``{id}``, ``{provider}``, ``{credentials}`` and ``{profile}`` to fill
    template: str
    #: True when the failure will not pass by itself (retrying cannot help)
    needs_action: bool


_RELINK = (
    "re-link this account: store new credentials with `finbot secrets set {credentials}` "
    "(a JSON object of the provider's fields), or `finbot accounts remove {id}` then "
    "`finbot accounts add {provider} --id {id} --profile {profile}`; then "
    "`finbot accounts test {id}`"
)

_FIXES: dict[str, Fix] = {
    f.code: f
    for f in (
        Fix(AuthenticationFailure.code, _RELINK, True),
        Fix(
            CredentialsError.code,
            "the credentials are missing from the vault or unreadable: "
            "`finbot secrets set {credentials}` (a JSON object of the provider's fields), "
            "then `finbot accounts test {id}`",
            True,
        ),
        Fix(
            OptionsError.code,
            "fix this account's options in finbot.yaml (`finbot config check` names the "
            "field; `finbot accounts providers` lists the options), then "
            "`finbot accounts test {id}`",
            True,
        ),
        Fix(
            RetiredProvider.code,
            "the provider no longer exists: `finbot accounts freeze {id}` keeps its last "
            "value, `finbot accounts remove {id}` stops counting it",
            True,
        ),
        Fix(
            UnpricedError.code,
            "nothing it holds could be priced: add its units to `unit_prices` (or "
            "`coingecko_ids`) in finbot.yaml",
            True,
        ),
        Fix(
            UNKNOWN_PROVIDER,
            "finbot.yaml names a provider this version does not have: fix `provider` "
            "(`finbot accounts providers` lists them) or `finbot accounts remove {id}`",
            True,
        ),
        Fix(
            TransientError.code,
            "usually passes by itself (every run retries with backoff); if it persists, "
            "`finbot accounts test {id}` shows the error now",
            False,
        ),
        Fix(
            FetchTimeout.code,
            "the provider did not answer in time (every run retries); if it persists, "
            "raise `fetch.timeout_s` in finbot.yaml or `finbot accounts test {id}`",
            False,
        ),
        Fix(
            RateLimited.code,
            "the provider limits how often it may be asked (every run retries later); if "
            "it persists, fetch less often or `finbot accounts test {id}`",
            False,
        ),
        Fix(
            ProviderError.code,
            "the provider answered with something finbot cannot use: "
            "`finbot accounts test {id}` shows it now; if it persists, the provider "
            "changed (report it)",
            False,
        ),
        Fix(
            NEVER_FETCHED,
            "not fetched yet: the next run fetches it (`finbot run`)",
            False,
        ),
    )
}

_UNKNOWN = Fix("", "`finbot accounts test {id}` shows the error now", False)


def fix_of(error_code: str | None) -> Fix:
    """The :class:`Fix` of ``error_code`` (a generic one for an unknown code)."""
    return _FIXES.get(error_code or "", _UNKNOWN)


def known_codes() -> list[str]:
    """Every error code with a fix of its own."""
    return sorted(_FIXES)


def needs_action(error_code: str | None) -> bool:
    """True when the failure will not pass by itself: the user must act."""
    return fix_of(error_code).needs_action


def fix_for(
    error_code: str | None,
    linked_account_id: str,
    *,
    provider_id: str | None = None,
    credentials: str | None = None,
    profile_id: str | None = None,
) -> str:
    """The fix of a failure of ``linked_account_id`` with ``error_code``, as one sentence.

    What is unknown (no config at hand) shows as a placeholder such as ``PROVIDER``.
    """
    return fix_of(error_code).template.format(
        id=linked_account_id,
        provider=provider_id or "PROVIDER",
        credentials=credentials or linked_account_id,
        profile=profile_id or "PROFILE",
    )
