"""What the web app changes: a linked account frozen, unfrozen, removed or test-fetched.

The same edits as `finbot accounts freeze|unfreeze|remove|test` (finbot.yaml edited under
its lock, atomically, comments kept; the vault entry leaves with the last account using
it). The caller has authorised the change (auth.require_profile with write=True).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finbot_pipelines.cli_accounts import test_fetch
from finbot_pipelines.config import editing
from finbot_pipelines.config.loading import ConfigError, load_config
from finbot_pipelines.config.locking import LockTimeout
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.schema import LinkedAccount
from finbot_pipelines.config.vault import Vault, VaultError
from finbot_pipelines.providers import registry
from finbot_pipelines.providers.fixes import fix_for


class ActionError(RuntimeError):
    """The change was refused or failed; nothing was saved. The message says why."""


def _account(paths: HomePaths, account_id: str) -> LinkedAccount:
    cfg = load_config(paths.config)
    for a in cfg.linked_accounts:
        if a.id == account_id:
            return a
    raise ActionError(f"no linked account {account_id!r} in the config")


def _edit(paths: HomePaths, change: Any) -> None:
    try:
        editing.edit_config(paths.config, change)
    except (ConfigError, editing.EditRefused, LockTimeout) as exc:
        raise ActionError(f"the change was not saved: {exc}") from exc


def set_frozen(paths: HomePaths, account_id: str, frozen: bool) -> str:
    _account(paths, account_id)
    _edit(paths, editing.set_account_fields(account_id, frozen=frozen))
    if frozen:
        return f"{account_id} is frozen: it keeps its last value and is no longer fetched"
    return f"{account_id} is no longer frozen: the next run fetches it"


def remove(paths: HomePaths, account_id: str) -> str:
    a = _account(paths, account_id)
    _edit(paths, editing.remove_account(account_id))
    rest = load_config(paths.config).linked_accounts
    msg = f"{account_id} was removed; its history stays"
    if a.credentials and not any(x.credentials == a.credentials for x in rest):
        try:
            vault = Vault.open(paths.home)
            if a.credentials in vault:
                vault.remove(a.credentials)
                msg += "; its stored credentials were deleted"
        except VaultError as exc:
            msg += f"; its stored credentials were left in place ({exc})"
    return msg


def test(paths: HomePaths, account_id: str) -> dict[str, Any]:
    """One fetch now with the stored credentials; nothing is written. A summary:
    {ok, error_code, error_message, fix, attempts, sub_accounts, items, warnings}."""
    a = _account(paths, account_id)
    if not registry.get_spec(a.provider).fetched:
        return {
            "ok": True,
            "error_code": None,
            "error_message": None,
            "fix": None,
            "attempts": 0,
            "sub_accounts": 0,
            "items": 0,
            "warnings": [],
            "note": "a statements account is not fetched: import its files instead",
        }
    creds: Mapping[str, Any] = {}
    if a.credentials:
        try:
            creds = Vault.open(paths.home).get_json(a.credentials)
        except VaultError as exc:
            raise ActionError(str(exc)) from exc
    cfg = load_config(paths.config)
    outcome = test_fetch(paths, cfg, a.provider, a.id, a.profile, a.options, creds)
    snap = outcome.snapshot
    fix = (
        None
        if snap is not None
        else fix_for(
            outcome.error_code,
            a.id,
            provider_id=a.provider,
            credentials=a.credentials,
            profile_id=a.profile,
        )
    )
    return {
        "ok": snap is not None,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "fix": fix,
        "attempts": outcome.attempts,
        "sub_accounts": len(snap.sub_accounts) if snap else 0,
        "items": sum(len(sa.items) for sa in snap.sub_accounts) if snap else 0,
        "warnings": [
            {"code": w.code, "message": w.message} for w in (snap.warnings if snap else ())
        ],
        "note": None,
    }
