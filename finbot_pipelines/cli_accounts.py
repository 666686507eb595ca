"""`finbot accounts`: add, list, test, freeze, unfreeze, remove and link linked accounts.

Every change goes through the same path as a hand edit: the new config is
validated in full before it is written (atomically), and credentials go to the
vault only after one real fetch succeeded with them. Changes are locked
read-modify-writes of the file as it is at that moment (comments and layout
kept, see config/editing.py); no lock is held while a prompt waits for you.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import click
import yaml
from pydantic import ValidationError

from finbot_pipelines import numbers
from finbot_pipelines.config import editing
from finbot_pipelines.config.loading import ConfigError, load_config, parse_config
from finbot_pipelines.config.locking import LockTimeout
from finbot_pipelines.config.paths import HomePaths, browser_executable
from finbot_pipelines.config.schema import FinbotConfig, LinkedAccount, account_state
from finbot_pipelines.config.vault import Vault, VaultError
from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import (
    CredentialField,
    ProviderSpec,
    describe_errors,
    format_path,
)
from finbot_pipelines.providers.contract import CredentialsError, ProviderError, Snapshot
from finbot_pipelines.providers.fetching import FetchOutcome, FetchTask, RetryPolicy, run_one
from finbot_pipelines.providers.fixes import fix_for
from finbot_pipelines.warehouse.queries import parse_warnings


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"finbot: {message}", err=True)
    sys.exit(code)


def _load(paths: HomePaths) -> FinbotConfig:
    try:
        return load_config(paths.config)
    except ConfigError as exc:
        _fail(str(exc))
        raise  # unreachable


def _vault(paths: HomePaths) -> Vault:
    try:
        return Vault.open(paths.home)
    except VaultError as exc:
        _fail(str(exc))
        raise  # unreachable


def _edit(
    paths: HomePaths,
    change: Callable[[Any], None],
    undo: Callable[[], None] | None = None,
) -> FinbotConfig:
    """Apply ``change`` to finbot.yaml as it is now (locked, atomic, comments kept);
    on failure run ``undo`` and exit with the reason."""
    try:
        return editing.edit_config(paths.config, change)
    except (ConfigError, editing.EditRefused, LockTimeout) as exc:
        if undo is not None:
            undo()
        _fail(f"the change was not saved: {exc}")
        raise  # unreachable


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            _fail(f"--option expects key=value, got {pair!r}")
        options[key.strip()] = yaml.safe_load(raw) if raw else ""
    return options


def _now_hour() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)


def test_fetch(
    paths: HomePaths,
    cfg: FinbotConfig,
    provider_id: str,
    account_id: str,
    profile_id: str,
    options: Mapping[str, Any],
    credentials: Mapping[str, Any],
) -> FetchOutcome:
    """One real fetch, with the config's timeout and retries, as the ingest would do it."""
    f = cfg.fetch
    policy = RetryPolicy(timeout_s=f.timeout_s, max_attempts=f.max_attempts, backoff_s=f.backoff_s)
    task = FetchTask(
        _now_hour(),
        account_id,
        registry.get_provider(provider_id),
        dict(options),
        lambda: credentials,
        valuation_ccy=cfg.profile(profile_id).valuation_ccy,
        priced_units=cfg.priced_units(),
        debug_dir=paths.debug,
        browser=browser_executable(),
        state_root=paths.state,
    )
    return run_one(task, policy)


def _amount(d: Decimal | None) -> str:
    return "unpriced" if d is None else numbers.grouped(numbers.decimal_text(d, 2))


def summarise(snapshot: Snapshot) -> list[str]:
    lines = []
    for sub in snapshot.sub_accounts:
        values = [i.value for i in sub.items if i.value is not None]
        unpriced = sum(1 for i in sub.items if i.value is None)
        total = sum(values, Decimal(0))
        extra = f", {unpriced} unpriced" if unpriced else ""
        lines.append(
            f"  {sub.id:<24} {sub.name[:30]:<30} {sub.account_type:<11} "
            f"{_amount(total):>16} {sub.currency}  ({len(sub.items)} item(s){extra})"
        )
    for w in snapshot.warnings:
        lines.append(f"  warning ({w.code}): {w.message}")
    return lines


def _report(outcome: FetchOutcome, account: LinkedAccount | None = None) -> None:
    """Print a successful test fetch; exit 1 naming the error (and, for a saved
    ``account``, its fix) when it failed."""
    if outcome.snapshot is None:
        fix = "" if account is None else f"\nfix: {_fix(account, outcome.error_code)}"
        _fail(
            f"the test fetch failed after {outcome.attempts} attempt(s): "
            f"{outcome.error_code}: {outcome.error_message}{fix}",
            1,
        )
    assert outcome.snapshot is not None
    click.echo(f"fetched {len(outcome.snapshot.sub_accounts)} sub-account(s):")
    for line in summarise(outcome.snapshot):
        click.echo(line)


def _fix(a: LinkedAccount, code: str | None) -> str:
    return fix_for(
        code, a.id, provider_id=a.provider, credentials=a.credentials, profile_id=a.profile
    )


def outcome_json(
    linked_account_id: str, provider_id: str, outcome: FetchOutcome, fix: str | None = None
) -> str:
    """The documented `accounts test --format json` object; amounts are exact JSON numbers;
    ``fix``: what to do about a failure (null on success)."""
    snap = outcome.snapshot
    doc = {
        "linked_account_id": linked_account_id,
        "provider": provider_id,
        "status": "success" if snap is not None else "failure",
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "fix": fix if snap is None else None,
        "attempts": outcome.attempts,
        "sub_accounts": [
            {
                "id": sa.id,
                "name": sa.name,
                "currency": sa.currency,
                "type": sa.account_type,
                "items": [
                    {
                        "name": it.name,
                        "item_type": it.item_type,
                        "asset_class": it.asset_class,
                        "asset_type": it.asset_type,
                        "units": it.units,
                        "value": it.value,
                        "currency": it.currency,
                        "symbol": it.symbol,
                        "unit": it.unit,
                    }
                    for it in sa.items
                ],
            }
            for sa in (snap.sub_accounts if snap is not None else ())
        ],
        "warnings": [
            {"code": w.code, "message": w.message} for w in (snap.warnings if snap else ())
        ],
    }
    return numbers.dumps(doc, indent=2, ensure_ascii=False)


def _prompt_credentials(fields: tuple[CredentialField, ...]) -> dict[str, str]:
    creds: dict[str, str] = {}
    for f in fields:
        value = click.prompt(
            f"{f.name} ({f.description})",
            hide_input=f.secret,
            default="" if not f.required else None,
            show_default=False,
        )
        if value:
            creds[f.name] = str(value)
    return creds


@click.group()
def accounts() -> None:
    """Manage linked accounts (the config's `linked_accounts`)."""


@accounts.command("add")
@click.argument("provider_id", metavar="PROVIDER")
@click.option("--id", "account_id", required=True, help="Slug of the new linked account.")
@click.option("--profile", "profile_id", help="Owning profile (default: the only profile).")
@click.option("--name", help="Display name (default: the id).")
@click.option(
    "--option",
    "option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A provider option (YAML value), repeatable; e.g. --option api_url=http://...",
)
@click.option("--credentials-name", help="Vault entry for the credentials (default: the id).")
@click.option(
    "--credentials-stdin",
    is_flag=True,
    help="Read the credentials as one JSON object from stdin instead of prompting "
    "(a provider asking for one field, such as simplefin's setup token, also takes it "
    "as plain text).",
)
@click.option(
    "--stored-credentials",
    is_flag=True,
    help="Use the vault entry named by --credentials-name (default: the id) as it is: "
    "nothing is asked (e.g. after a SimpleFIN claim whose test fetch failed).",
)
@click.pass_obj
def accounts_add(
    paths: HomePaths,
    provider_id: str,
    account_id: str,
    profile_id: str | None,
    name: str | None,
    option_pairs: tuple[str, ...],
    credentials_name: str | None,
    credentials_stdin: bool,
    stored_credentials: bool,
) -> None:
    """Add a linked account: ask for its credentials, test them with one real fetch, save.

    Nothing is written unless the fetch succeeds. For a provider whose credentials are
    obtained from something else (simplefin: a one-time setup token, claimed for an
    access URL), that is what is asked; a claimed access URL is kept in the vault even
    when the test fetch then fails (the token cannot be claimed again).
    """

    def ask(fields: tuple[CredentialField, ...]) -> dict[str, str]:
        if not credentials_stdin:
            return _prompt_credentials(fields)
        text = sys.stdin.read()
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            if len(fields) == 1 and text.strip() and "\n" not in text.strip():
                return {fields[0].name: text.strip()}
            _fail(f"--credentials-stdin: not a JSON object ({exc.msg}, line {exc.lineno})")
        if not isinstance(loaded, dict):
            _fail("--credentials-stdin: expected a JSON object of credential fields")
        return {str(k): str(v) for k, v in loaded.items()}

    add_linked_account(
        paths,
        provider_id,
        account_id,
        profile_id,
        name,
        _parse_options(option_pairs),
        credentials_name,
        ask,
        stored=stored_credentials,
    )


class AddAccountError(Exception):
    """Adding a linked account was refused or failed. ``message`` says why and never quotes
    a credential; ``code`` is the CLI's exit status (2: bad input, 1: the provider refused or
    the test fetch failed); ``field``: the input it names, when one; ``kept_as``: the vault
    entry holding claimed credentials kept after a failed test fetch (the account was not
    added; add it again with ``stored=True``)."""

    def __init__(
        self,
        message: str,
        code: int = 2,
        *,
        field: str | None = None,
        kind: str | None = None,
        kept_as: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        #: a stable name of the refusal the web words its own way (e.g. ``exists``)
        self.kind = kind
        self.kept_as = kept_as


class Say(Protocol):
    """Where progress lines go (``click.echo`` in the CLI): ``err`` for warnings."""

    def __call__(self, message: str, *, err: bool = False) -> Any: ...


@dataclass(frozen=True)
class AddedAccount:
    """A linked account added to the config: what the test fetch found (None for a
    provider that is never fetched) and its vault entry (None without credentials)."""

    account: LinkedAccount
    snapshot: Snapshot | None
    credentials_name: str | None
    stored: bool
    attempts: int = 0


def _setup_credentials(
    spec: ProviderSpec,
    options: Mapping[str, Any],
    get_inputs: Callable[[tuple[CredentialField, ...]], dict[str, str]],
) -> dict[str, str]:
    """Credentials from what the provider's setup asks for (a setup token, claimed once)."""
    setup = spec.setup
    assert setup is not None
    fields = setup.input_fields
    inputs = get_inputs(fields)
    missing = [f.name for f in fields if f.required and f.name not in inputs]
    if missing:
        raise AddAccountError(f"missing field(s): {', '.join(missing)}", field=missing[0])
    try:
        parsed = setup.inputs.model_validate(inputs)
    except ValidationError as exc:
        issues = describe_errors(exc, setup.inputs, show_input=False)
        text = "; ".join(f"{format_path('', i.path)}: {i.message}" for i in issues)
        first = format_path("", issues[0].path) if issues else None
        raise AddAccountError(f"invalid input: {text}", field=first or None) from None
    try:
        parsed_options = spec.parse_options(options)
        return setup.load()(parsed, parsed_options)
    except ProviderError as exc:
        note = f" ({setup.note})" if setup.note else ""
        raise AddAccountError(
            f"nothing was saved: {exc}{note}", 1, field=fields[0].name if fields else None
        ) from None


def add_account(
    paths: HomePaths,
    provider_id: str,
    account_id: str,
    profile_id: str | None,
    name: str | None,
    options: dict[str, Any],
    credentials_name: str | None,
    get_credentials: Callable[[tuple[CredentialField, ...]], dict[str, str]],
    *,
    stored: bool = False,
    say: Say,
) -> AddedAccount:
    """Validate the new account, get its credentials, fetch once, then save vault and config.

    With the provider's ``setup`` (simplefin), ``get_credentials`` is asked for its inputs
    and the setup turns them into credentials; ``stored``: the vault entry exists already
    and is used as it is. Progress lines go to ``say``; a refusal or failure raises
    :class:`AddAccountError` (nothing saved, except claimed credentials: ``kept_as``)."""
    try:
        cfg = load_config(paths.config)
    except ConfigError as exc:
        raise AddAccountError(str(exc)) from None
    try:
        spec = registry.get_spec(provider_id)
    except ProviderError as exc:
        raise AddAccountError(str(exc), field="provider") from None
    if registry.is_retired(provider_id):
        raise AddAccountError(
            f"provider '{provider_id}' is retired: {spec.description}", field="provider"
        )
    if any(a.id == account_id for a in cfg.linked_accounts):
        raise AddAccountError(
            f"a linked account '{account_id}' already exists in {paths.config}",
            field="id",
            kind="exists",
        )
    if profile_id is None:
        if len(cfg.profiles) != 1:
            raise AddAccountError(
                f"--profile is required (profiles: {', '.join(cfg.profile_ids())})",
                field="profile",
            )
        profile_id = cfg.profiles[0].id
    fields = spec.credential_fields
    secret_name = (credentials_name or account_id) if fields else None
    account = {
        "id": account_id,
        "profile": profile_id,
        "provider": provider_id,
        "name": name or account_id,
        "options": options,
        **({"credentials": secret_name} if secret_name else {}),
    }
    data = cfg.model_dump(mode="json")
    data["linked_accounts"].append(account)
    try:
        new_cfg = parse_config(yaml.safe_dump(data, sort_keys=False), paths.config)
    except ConfigError as exc:
        raise AddAccountError(
            "invalid linked account: " + "; ".join(f"{i.field}: {i.message}" for i in exc.issues),
            field=_account_field(exc.issues[0].field) if exc.issues else None,
        ) from None
    vault: Vault | None = None
    if secret_name:
        try:
            vault = Vault.open(paths.home)
        except VaultError as exc:
            raise AddAccountError(str(exc)) from None
    if stored and (vault is None or secret_name not in vault):
        raise AddAccountError(
            f"--stored-credentials: the vault has no entry named '{secret_name}'",
            field="credentials_name",
            kind="no_stored_entry",
        )
    if not stored and vault is not None and secret_name in vault:
        raise AddAccountError(
            f"the vault already has a secret named '{secret_name}' (use --credentials-name, "
            "or --stored-credentials to use it)",
            field="credentials_name",
            kind="vault_entry_exists",
        )
    creds: dict[str, str] = {}
    claimed = False
    if stored and vault is not None and secret_name:
        try:
            creds = {str(k): str(v) for k, v in vault.get_json(secret_name).items()}
        except VaultError as exc:
            raise AddAccountError(str(exc)) from None
    elif fields and spec.setup is not None:
        creds = _setup_credentials(spec, options, get_credentials)
        claimed = True
    elif fields:
        creds = get_credentials(fields)
    if fields:
        missing = [f.name for f in fields if f.required and f.name not in creds]
        if missing:
            raise AddAccountError(
                f"missing credential field(s): {', '.join(missing)}", field=missing[0]
            )
        try:
            spec.parse_credentials(creds)
        except CredentialsError as exc:
            raise AddAccountError(f"invalid credentials: {exc}") from None
    snapshot: Snapshot | None = None
    attempts = 0
    if spec.fetched:
        say(f"testing '{account_id}' with one real fetch ...")
        outcome = test_fetch(paths, new_cfg, provider_id, account_id, profile_id, options, creds)
        kept: str | None = None
        if outcome.snapshot is None and claimed and vault is not None and secret_name:
            # the setup cannot be done again (a SimpleFIN setup token works once): keep what
            # it gave, so that fixing the cause does not need a new token
            try:
                vault.set(secret_name, json.dumps(creds), replace=False)
                kept = secret_name
                say(
                    f"finbot: the claimed credentials are kept in the vault as '{secret_name}' "
                    "(the account was not added); once the cause below is fixed: "
                    f"`finbot accounts add {provider_id} --id {account_id} "
                    f"--credentials-name {secret_name} --stored-credentials`",
                    err=True,
                )
            except VaultError as exc:
                say(f"finbot: the claimed credentials could not be kept: {exc}", err=True)
        if outcome.snapshot is None:
            raise AddAccountError(
                f"the test fetch failed after {outcome.attempts} attempt(s): "
                f"{outcome.error_code}: {outcome.error_message}",
                1,
                kind="test_fetch_failed",
                kept_as=kept,
            )
        snapshot = outcome.snapshot
        attempts = outcome.attempts
        say(f"fetched {len(snapshot.sub_accounts)} sub-account(s):")
        for line in summarise(snapshot):
            say(line)
    else:
        say(
            f"'{account_id}' ({provider_id}) is never fetched: drop its statement files into "
            f"{paths.inbox / account_id}/ (the inbox sensor lands them) or run "
            f"`finbot import FILE... --account {account_id}`"
        )
    saved_in: Vault | None = None
    if vault is not None and secret_name and not stored:
        try:
            vault.set(secret_name, json.dumps(creds), replace=False)
        except VaultError as exc:
            raise AddAccountError(f"nothing was saved: {exc}") from None
        saved_in = vault
    try:
        edited = editing.edit_config(paths.config, editing.add_account(account))
    except (ConfigError, editing.EditRefused, LockTimeout) as exc:
        if saved_in is not None and secret_name:
            try:
                saved_in.remove(secret_name)
            except VaultError as undo_exc:
                say(f"finbot: could not take '{secret_name}' back out of the vault: {undo_exc}")
        raise AddAccountError(f"the change was not saved: {exc}") from None
    say(
        f"added linked account '{account_id}' ({provider_id}) to {paths.config}"
        + (
            f"; credentials {'read from' if stored else 'stored in'} the vault as '{secret_name}'"
            if secret_name
            else ""
        )
        + ". Reload the code location in the Dagster UI to see its asset."
    )
    added = next(a for a in edited.linked_accounts if a.id == account_id)
    return AddedAccount(added, snapshot, secret_name, stored, attempts)


def _account_field(path: str) -> str | None:
    """``linked_accounts[4].options.scale`` -> ``options.scale`` (the form's name of it)."""
    head, sep, rest = path.partition("].")
    if not sep or not head.startswith("linked_accounts["):
        return None
    return rest or None


def add_linked_account(
    paths: HomePaths,
    provider_id: str,
    account_id: str,
    profile_id: str | None,
    name: str | None,
    options: dict[str, Any],
    credentials_name: str | None,
    get_credentials: Callable[[tuple[CredentialField, ...]], dict[str, str]],
    *,
    stored: bool = False,
) -> None:
    """:func:`add_account` for the CLI: progress on stdout, a refusal exits with its code."""
    try:
        add_account(
            paths,
            provider_id,
            account_id,
            profile_id,
            name,
            options,
            credentials_name,
            get_credentials,
            stored=stored,
            say=click.echo,
        )
    except AddAccountError as exc:
        _fail(exc.message, exc.code)


@accounts.group("link")
def accounts_link() -> None:
    """Link an account through a provider's own flow (Plaid Link)."""


@accounts_link.command("plaid")
@click.option("--id", "account_id", required=True, help="Slug of the new linked account.")
@click.option("--profile", "profile_id", help="Owning profile (default: the only profile).")
@click.option("--name", help="Display name (default: the id).")
@click.option(
    "--environment",
    type=click.Choice(["production", "development", "sandbox"]),
    default="production",
    show_default=True,
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Obtain the public token from Plaid's sandbox endpoint: no browser.",
)
@click.option(
    "--institution-id",
    default="ins_109508",
    show_default=True,
    help="Sandbox institution to link (with --sandbox).",
)
@click.option("--api-url", help="Override Plaid's address (e.g. a local fake).")
@click.option("--no-browser", is_flag=True, help="Print the Link page address, do not open it.")
@click.option("--credentials-name", help="Vault entry for the credentials (default: the id).")
@click.pass_obj
def accounts_link_plaid(
    paths: HomePaths,
    account_id: str,
    profile_id: str | None,
    name: str | None,
    environment: str,
    sandbox: bool,
    institution_id: str,
    api_url: str | None,
    no_browser: bool,
    credentials_name: str | None,
) -> None:
    """Link a bank through Plaid Link, store the access token, add the account.

    Asks for your Plaid client id and secret, creates a link token and serves a
    local page (127.0.0.1) that runs Plaid Link; when you finish there, the public
    token is exchanged for an access token, tested with one real fetch, and saved
    in the vault. --sandbox skips the browser (Plaid's sandbox endpoint).
    """
    from finbot_pipelines.providers.plaid.link import link_account

    def link(fields: tuple[CredentialField, ...]) -> dict[str, str]:
        client_id = click.prompt("Plaid client_id", hide_input=True)
        secret = click.prompt("Plaid secret", hide_input=True)
        try:
            return link_account(
                api_url=api_url,
                client_id=client_id,
                secret=secret,
                environment=environment,
                sandbox=sandbox,
                institution_id=institution_id,
                open_browser=not no_browser,
                announce=click.echo,
            )
        except (ProviderError, ValueError) as exc:
            _fail(f"Plaid linking failed: {exc}", 1)
            raise  # unreachable

    options = {"api_url": api_url} if api_url else {}
    add_linked_account(
        paths, "plaid", account_id, profile_id, name, options, credentials_name, link
    )


def _health(paths: HomePaths) -> dict[str, dict[str, Any]]:
    if not paths.published.exists():
        return {}
    from finbot_pipelines.warehouse.queries import open_published

    try:
        with open_published(paths.published) as con:
            cur = con.execute("select * from marts.mart_linked_account_health")
            cols = [d[0] for d in cur.description or []]
            return {
                r[cols.index("linked_account_id")]: dict(zip(cols, r, strict=True))
                for r in cur.fetchall()
            }
    except Exception:  # an old or partial published file: list without health
        return {}


@accounts.command("list")
@click.pass_obj
def accounts_list(paths: HomePaths) -> None:
    """List linked accounts with their state and health (from the published marts)."""
    from tabulate import tabulate

    cfg = _load(paths)
    health = _health(paths)
    rows = []
    notes: list[str] = []
    failures: list[str] = []
    for a in cfg.linked_accounts:
        state = "disabled" if not a.enabled else account_state(a)
        h = health.get(a.id, {})
        last_ok = h.get("last_success_hour")
        warnings = parse_warnings(h.get("warnings"))
        if last_ok:
            last_ok_text = f"{last_ok:%Y-%m-%d %H:00}"
        elif h.get("last_attempt_hour"):
            last_ok_text = "never"
        else:
            last_ok_text = "never fetched" if a.enabled and not a.frozen and health else "-"
        if state == "statement":
            last_ok_text = f"statement of {last_ok:%Y-%m-%d}" if last_ok else "no statement yet"
        rows.append(
            [
                a.id,
                a.profile,
                a.provider,
                a.name,
                state,
                last_ok_text,
                h.get("consecutive_failures", "-"),
                h.get("last_error_code") or "",
                len(warnings) if h else "-",
            ]
        )
        notes.extend(f"{a.id}: warning ({w['code']}): {w['message']}" for w in warnings)
        failures.extend(_failure_lines(a, h))
    click.echo(
        tabulate(
            rows,
            headers=[
                "id",
                "profile",
                "provider",
                "name",
                "state",
                "last success (UTC)",
                "failing hours",
                "last error",
                "warnings",
            ],
        )
    )
    if failures:
        click.echo("")
        click.echo("failing accounts (last error, and its fix):")
        for line in failures:
            click.echo(f"  {line}")
    if notes:
        click.echo("")
        click.echo("warnings of the last successful fetch:")
        for line in notes:
            click.echo(f"  {line}")


def _failure_lines(a: LinkedAccount, h: Mapping[str, Any]) -> list[str]:
    """The last error of a failing account (masked at fetch time) and its fix."""
    code = h.get("last_error_code")
    if not a.enabled or not code:
        return []
    never = " (never succeeded)" if not h.get("last_success_hour") else ""
    return [
        f"{a.id}{never}: {code}: {h.get('last_error_message') or ''}",
        f"  fix: {_fix(a, code)}",
    ]


def _account(cfg: FinbotConfig, account_id: str) -> LinkedAccount:
    by_id = {a.id: a for a in cfg.linked_accounts}
    if account_id not in by_id:
        _fail(f"no linked account '{account_id}' (known: {', '.join(sorted(by_id)) or 'none'})")
    return by_id[account_id]


@accounts.command("test")
@click.argument("account_id", metavar="ID")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object {linked_account_id, provider, status, error_code, error_message, "
    "fix, attempts, sub_accounts: [{id, name, currency, type, items: [...]}], "
    "warnings: [{code, message}]}.",
)
@click.pass_obj
def accounts_test(paths: HomePaths, account_id: str, fmt: str) -> None:
    """Fetch linked account ID once, now, with its stored credentials (nothing is written).

    Exits 0 when the fetch succeeds, 1 when it fails.
    """
    cfg = _load(paths)
    a = _account(cfg, account_id)
    creds: Mapping[str, Any] = {}
    if a.credentials:
        try:
            creds = _vault(paths).get_json(a.credentials)
        except VaultError as exc:
            _fail(str(exc))
    if not registry.get_spec(a.provider).fetched:
        _preview_statements(paths, a, fmt)
        return
    outcome = test_fetch(paths, cfg, a.provider, a.id, a.profile, a.options, creds)
    if fmt == "json":
        click.echo(outcome_json(a.id, a.provider, outcome, _fix(a, outcome.error_code)))
        sys.exit(0 if outcome.ok else 1)
    _report(outcome, a)


def _preview_statements(paths: HomePaths, account: LinkedAccount, fmt: str) -> None:
    """`accounts test` of a statements account: read every file waiting in its inbox, as
    the landing would, and tell what each holds; nothing is written or moved. Exits 1
    when a file cannot be read."""
    from finbot_pipelines.providers.statements.mapping import (
        statement_date,
        sub_account_at_statement_date,
    )
    from finbot_pipelines.providers.statements.model import StatementError
    from finbot_pipelines.providers.statements.parse import parse_statement
    from finbot_pipelines.warehouse.statement_import import statements_options, waiting_files

    files = waiting_files(paths.inbox, account.id)
    report: list[dict[str, Any]] = []
    for path in files:
        try:
            st = parse_statement(path, statements_options(account))
        except StatementError as exc:
            report.append({"file": path.name, "ok": False, "error": str(exc)})
            continue
        report.append(
            {
                "file": path.name,
                "ok": True,
                "format": st.format,
                "accounts": [
                    {
                        "sub_account_id": acc.sub_account.id,
                        "currency": acc.sub_account.currency,
                        "statement_date": str(statement_date(acc) or "") or None,
                        "balance": str(
                            sum(
                                (
                                    i.value
                                    for i in sub_account_at_statement_date(acc).items
                                    if i.value is not None
                                ),
                                Decimal(0),
                            )
                        )
                        if statement_date(acc)
                        else None,
                        "transactions": len(acc.transactions),
                    }
                    for acc in st.accounts
                ],
            }
        )
    bad = any(not r["ok"] for r in report)
    if fmt == "json":
        click.echo(json.dumps({"linked_account_id": account.id, "files": report}, indent=2))
        sys.exit(1 if bad else 0)
    if not files:
        click.echo(
            f"'{account.id}' is never fetched, and no statement file waits in "
            f"{paths.inbox / account.id}/: nothing to read"
        )
        return
    for r in report:
        if not r["ok"]:
            click.echo(f"cannot be landed: {r['error']}")
            continue
        click.echo(f"{r['file']} ({r['format']}): would land")
        for acc in r["accounts"]:
            what = (
                f"balance {_amount(Decimal(acc['balance']))} {acc['currency']} at "
                f"{acc['statement_date']}"
                if acc["balance"] is not None
                else "no balance (transactions only)"
            )
            click.echo(f"  {acc['sub_account_id']}: {what}; {acc['transactions']} transaction(s)")
    if bad:
        sys.exit(1)


def _set_flag(paths: HomePaths, account_id: str, **changes: Any) -> None:
    _account(_load(paths), account_id)
    _edit(paths, editing.set_account_fields(account_id, **changes))


@accounts.command("freeze")
@click.argument("account_id", metavar="ID")
@click.pass_obj
def accounts_freeze(paths: HomePaths, account_id: str) -> None:
    """Stop fetching ID; it keeps counting at its last value."""
    _set_flag(paths, account_id, frozen=True)
    click.echo(f"'{account_id}' is frozen: it keeps its last value and is no longer fetched")


@accounts.command("unfreeze")
@click.argument("account_id", metavar="ID")
@click.pass_obj
def accounts_unfreeze(paths: HomePaths, account_id: str) -> None:
    """Fetch ID again from the next run."""
    _set_flag(paths, account_id, frozen=False)
    click.echo(f"'{account_id}' is no longer frozen: the next run fetches it")


@accounts.command("remove")
@click.argument("account_id", metavar="ID")
@click.pass_obj
def accounts_remove(paths: HomePaths, account_id: str) -> None:
    """Remove ID from the config; its history stays in the warehouse and the marts.

    From the next run it no longer counts. Its credentials leave the vault unless
    another linked account uses the same vault entry.
    """
    cfg = _load(paths)
    a = _account(cfg, account_id)
    rest = _edit(paths, editing.remove_account(account_id)).linked_accounts
    msg = f"removed '{account_id}' from {paths.config}; its history stays"
    if a.credentials and not any(x.credentials == a.credentials for x in rest):
        vault = _vault(paths)
        if a.credentials in vault:
            try:
                vault.remove(a.credentials)
                msg += f"; vault entry '{a.credentials}' removed"
            except VaultError as exc:
                msg += f"; vault entry '{a.credentials}' left in place ({exc})"
    click.echo(msg)


@accounts.command("providers")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="markdown: the README's providers table.",
)
def accounts_providers(fmt: str) -> None:
    """List the providers, the credentials each one asks for and its options."""
    docs = [registry.describe(pid) for pid in registry.provider_ids()]
    if fmt == "json":
        click.echo(json.dumps(docs, indent=2, default=str))
        return
    if fmt == "markdown":
        click.echo(providers_markdown(docs))
        return
    for d in docs:
        fields = ", ".join(
            f["name"]
            + (" (secret)" if f["secret"] else "")
            + ("" if f["required"] else " (optional)")
            for f in d["credential_fields"]
        )
        click.echo(d["id"])
        click.echo(f"  {d['description']}")
        click.echo(f"  credentials: {fields or 'none'}")
        for f in d.get("setup_fields", []):
            click.echo(f"  `accounts add` asks for: {f['name']} ({f['description']})")
        if d["retired"]:
            continue
        click.echo("  options:")
        for o in d["options"]:
            click.echo(f"    {o['name']}{_option_default(o)}: {o['description']}")


def _option_default(option: Mapping[str, Any]) -> str:
    if option["required"]:
        return " (required)"
    default = option["default"]
    if default is None or default in ([], {}, ""):
        return ""
    return f" (default {json.dumps(default, default=str)})"


def providers_markdown(docs: list[dict[str, Any]]) -> str:
    """The README's providers table (credentials and options come from the models)."""
    lines = ["| provider | credentials | options |", "|---|---|---|"]
    for d in docs:
        if d["retired"]:
            continue
        creds = ", ".join(
            f"{f['name']}{'' if f['required'] else ' (optional)'}" for f in d["credential_fields"]
        )
        opts = ", ".join(
            f"`{o['name']}`{' (required)' if o['required'] else _option_default(o)}"
            for o in d["options"]
        )
        lines.append(f"| `{d['id']}` | {creds or 'none'} | {opts or 'none'} |")
    return "\n".join(lines)
