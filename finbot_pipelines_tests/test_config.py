"""finbot.yaml: schema, loading with precise errors, atomic saving."""

from __future__ import annotations

import os
import stat
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from finbot_pipelines.config.loading import (
    ConfigError,
    config_path,
    finbot_home,
    load_config,
    save_config,
)
from finbot_pipelines.config.schema import (
    FetchSettings,
    FinbotConfig,
    LinkedAccount,
    Profile,
)
from finbot_pipelines.providers import registry

VALID = """\
# a household
history_start: "2024-03-01T00:00"
fx_source: static
fx_static_rates:
  GBP: 0.85
  USD: 1.08
fetch:
  timeout_s: 30
  max_attempts: 2
profiles:
  - id: alice
    name: Alice
    valuation_ccy: GBP
  - id: bruno
    name: Bruno
    valuation_ccy: EUR
linked_accounts:
  - id: alice-bank
    profile: alice
    provider: dummy
    name: Alice's bank
    options:
      sub_accounts: [cash, credit_card]
      fail_cycle: {every_hours: 96, for_hours: 3, offset_hours: 7}
  - id: bruno-old
    profile: bruno
    provider: bittrex
    name: Old exchange
    credentials: bruno-bittrex
    frozen: true
  - id: bruno-bank
    profile: bruno
    provider: dummy
    name: Bruno's bank
    enabled: false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "finbot.yaml"
    path.write_text(text)
    return path


def test_valid_config_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VALID))
    assert cfg.history_start == datetime(2024, 3, 1)
    assert cfg.fx_source == "static"
    assert cfg.fx_static_rates == {"GBP": 0.85, "USD": 1.08}
    assert cfg.fetch == FetchSettings(timeout_s=30, max_attempts=2)
    assert cfg.profile("alice").valuation_ccy == "GBP"
    assert [la.id for la in cfg.linked_accounts_of("bruno")] == ["bruno-old", "bruno-bank"]
    assert [la.id for la in cfg.enabled_linked_accounts()] == ["alice-bank", "bruno-old"]
    assert [la.id for la in cfg.fetchable_linked_accounts()] == ["alice-bank"]
    assert cfg.linked_account("bruno-old").credentials == "bruno-bittrex"
    assert cfg.linked_accounts[0].options["fail_cycle"]["every_hours"] == 96
    with pytest.raises(KeyError, match="carol"):
        cfg.profile("carol")


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "profiles:\n  - {id: me, name: Me, valuation_ccy: EUR}\n"))
    assert cfg.history_start == datetime(2024, 1, 1)
    assert cfg.fx_source == "ecb"
    assert cfg.fx_static_rates == {}
    assert cfg.fetch == FetchSettings(timeout_s=60, max_attempts=3, backoff_s=2.0, max_workers=8)
    assert cfg.linked_accounts == []


@pytest.mark.parametrize(
    "value",
    ["2024-05-01T13:00", "2024-05-01 13:00", "2024-05-01T13:00:00", "2024-05-01T14:00+01:00"],
)
def test_history_start_formats(tmp_path: Path, value: str) -> None:
    text = f"history_start: {value}\nprofiles:\n  - {{id: me, name: Me, valuation_ccy: EUR}}\n"
    assert load_config(write(tmp_path, text)).history_start == datetime(2024, 5, 1, 13)


def test_round_trip(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VALID))
    out = tmp_path / "sub" / "saved.yaml"
    save_config(cfg, out)
    again = load_config(out)
    assert again == cfg
    # stable: saving the reloaded config gives the same bytes, no temp files left
    first = out.read_bytes()
    save_config(again, out)
    assert out.read_bytes() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["saved.yaml"]


def test_round_trip_of_a_built_config(tmp_path: Path) -> None:
    cfg = FinbotConfig(
        history_start=datetime(2025, 1, 1, 6),
        profiles=[Profile(id="me", name="Me", valuation_ccy="CHF")],
        linked_accounts=[
            LinkedAccount(
                id="me-demo",
                profile="me",
                provider="dummy",
                name="Demo",
                options={"scale": 2.5, "fail_hours": ["2025-01-02T03:00"]},
            )
        ],
    )
    path = tmp_path / "finbot.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg


def test_save_makes_the_file_private(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    os.chmod(path, 0o644)
    save_config(load_config(path), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_writes_nothing(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    before = sorted(tmp_path.iterdir())
    load_config(tmp_path / "finbot.yaml")
    assert sorted(tmp_path.iterdir()) == before


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "finbot.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "finbot init" in str(info.value)
    assert "finbotctl demo" in str(info.value)


def test_finbot_home_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FINBOT_HOME", str(tmp_path / "x" / ".." / "home"))
    assert finbot_home() == (tmp_path / "home").resolve()
    assert finbot_home().is_absolute()
    assert config_path() == (tmp_path / "home" / "finbot.yaml").resolve()
    assert config_path(tmp_path) == tmp_path / "finbot.yaml"


def test_finbot_home_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINBOT_HOME", raising=False)
    checkout = Path(__file__).resolve().parents[1]
    assert finbot_home() == checkout / ".finbot"


PROFILES = "profiles:\n  - {id: alice, name: Alice, valuation_ccy: GBP}\n"


def account(**fields: str) -> str:
    base = {"id": "acc", "profile": "alice", "provider": "dummy", "name": "Acc"}
    base.update(fields)
    body = "".join(f"    {k}: {v}\n" for k, v in base.items())
    return "linked_accounts:\n  - " + body[4:]


# (id, yaml text, expected line, expected field path, expected words in the message)
BAD_CONFIGS = [
    (
        "yaml-syntax",
        "profiles:\n  - id: alice\n    name: [Alice\n",
        4,
        "",
        ["invalid YAML", "column", "started at line 3"],
    ),
    (
        "missing-profiles",
        "# comment\nfx_source: ecb\n",
        2,
        "profiles",
        ["required field is missing", "at least one profile"],
    ),
    (
        "empty-profiles",
        "profiles: []\n",
        1,
        "profiles",
        ["expected at least 1 item"],
    ),
    (
        "duplicate-profile-id",
        PROFILES + "  - {id: bruno, name: B, valuation_ccy: EUR}\n"
        "  - {id: alice, name: A2, valuation_ccy: EUR}\n",
        4,
        "profiles[2].id",
        ["duplicate profile id 'alice'", "profiles[0]"],
    ),
    (
        "bad-currency",
        "profiles:\n  - id: alice\n    name: Alice\n    valuation_ccy: GBX\n",
        4,
        "profiles[0].valuation_ccy",
        ["expected an ISO 4217 currency code such as GBP, EUR, USD", "'GBX'"],
    ),
    (
        "lowercase-currency",
        "profiles:\n  - id: alice\n    name: Alice\n    valuation_ccy: gbp\n",
        4,
        "profiles[0].valuation_ccy",
        ["ISO 4217", "upper case"],
    ),
    (
        "unknown-top-level-key",
        PROFILES + "fx_sauce: ecb\n",
        3,
        "fx_sauce",
        ["unknown key 'fx_sauce'", "allowed:", "did you mean 'fx_source'"],
    ),
    (
        "unknown-nested-key",
        PROFILES + account(passwd="x"),
        8,
        "linked_accounts[0].passwd",
        ["unknown key 'passwd'", "credentials"],
    ),
    (
        "unknown-provider",
        PROFILES + account(provider="plaidd"),
        6,
        "linked_accounts[0].provider",
        ["unknown provider 'plaidd'", "bittrex, ccxt", "did you mean 'plaid'"],
    ),
    (
        "unknown-profile",
        PROFILES
        + "  - {id: bruno, name: Bruno, valuation_ccy: EUR}\n"
        + account()
        + "  - id: other\n    profile: carol\n    provider: dummy\n    name: Other\n",
        10,
        "linked_accounts[1].profile",
        ["unknown profile 'carol'", "(known: alice, bruno)"],
    ),
    (
        "duplicate-linked-account",
        PROFILES + account() + "  - {id: acc, profile: alice, provider: dummy, name: B}\n",
        8,
        "linked_accounts[1].id",
        ["duplicate linked account id 'acc'"],
    ),
    (
        "bad-slug",
        "profiles:\n  - id: Alice Smith\n    name: Alice\n    valuation_ccy: GBP\n",
        2,
        "profiles[0].id",
        ["expected a slug", "lowercase"],
    ),
    (
        "non-bool-frozen",
        PROFILES + account(frozen="maybe"),
        8,
        "linked_accounts[0].frozen",
        ["expected true or false", "'maybe'"],
    ),
    (
        "bad-dummy-option-type",
        PROFILES + account(options="\n      scale: lots"),
        9,
        "linked_accounts[0].options.scale",
        ["expected a number", "'lots'"],
    ),
    (
        "unknown-dummy-option",
        PROFILES + account(options="\n      sub_acounts: [cash]"),
        9,
        "linked_accounts[0].options.sub_acounts",
        ["unknown option", "sub_accounts"],
    ),
    (
        "bad-dummy-nested-option",
        PROFILES
        + account(options="\n      fail_cycle:\n        every_hours: 0\n        for_hours: 1"),
        10,
        "linked_accounts[0].options.fail_cycle.every_hours",
        ["expected a whole number >= 1", "got 0"],
    ),
    (
        "bad-dummy-list-option",
        PROFILES + account(options="\n      sub_accounts:\n        - cash\n        - stonks"),
        11,
        "linked_accounts[0].options.sub_accounts[1]",
        ["expected one of cash, stocks", "'stonks'"],
    ),
    (
        "no-reserved-option",
        PROFILES + account(options="\n      _linked_account_id: other"),
        9,
        "linked_accounts[0].options._linked_account_id",
        ["_linked_account_id: unknown option (expected one of sub_accounts"],
    ),
    (
        "static-fx-without-rates",
        "fx_source: static\n" + PROFILES,
        1,
        "fx_static_rates",
        ["required when fx_source is 'static'", "GBP"],
    ),
    (
        "static-fx-missing-profile-currency",
        "fx_source: static\nfx_static_rates:\n  USD: 1.1\n" + PROFILES,
        3,
        "fx_static_rates",
        ["missing a rate for GBP"],
    ),
    (
        "static-fx-bad-rate",
        "fx_static_rates:\n  GBP: 0.85\n  USD: -1\n" + PROFILES,
        3,
        "fx_static_rates.USD",
        ["expected a finite rate > 0"],
    ),
    (
        "static-fx-bad-code",
        "fx_static_rates:\n  GBP: 0.85\n  XYZ: 2\n" + PROFILES,
        3,
        "fx_static_rates.XYZ",
        ["ISO 4217"],
    ),
    (
        "history-start-not-on-hour",
        "# start\n\nhistory_start: 2024-01-01T00:30\n" + PROFILES,
        3,
        "history_start",
        ["on the hour"],
    ),
    (
        "history-start-garbage",
        PROFILES + "history_start: last tuesday\n",
        3,
        "history_start",
        ["expected a date-time such as 2024-01-01T00:00", "'last tuesday'"],
    ),
    (
        "empty-file",
        "",
        1,
        "",
        ["the file is empty", "finbot init"],
    ),
    (
        "comments-only-file",
        "# nothing here\n",
        1,
        "",
        ["the file is empty"],
    ),
    (
        "top-level-list",
        "- alice\n- bruno\n",
        1,
        "",
        ["expected a mapping", "got a list"],
    ),
    (
        "fetch-out-of-range",
        PROFILES + "fetch:\n  max_attempts: 11\n",
        4,
        "fetch.max_attempts",
        ["expected a number <= 10", "got 11"],
    ),
    (
        "fetch-zero-timeout",
        PROFILES + "fetch:\n  timeout_s: 0\n",
        4,
        "fetch.timeout_s",
        ["expected a number greater than 0"],
    ),
    (
        "missing-account-field",
        PROFILES + "linked_accounts:\n  - id: acc\n    profile: alice\n    provider: dummy\n",
        4,
        "linked_accounts[0].name",
        ["required field is missing", "display name"],
    ),
    (
        "bad-fx-source",
        PROFILES + "fx_source: bloomberg\n",
        3,
        "fx_source",
        ["expected 'ecb' or 'static'", "'bloomberg'"],
    ),
    (
        "duplicate-yaml-key",
        PROFILES + "fx_source: ecb\nfx_source: static\n",
        4,
        "fx_source",
        ["duplicate key 'fx_source'", "line 3"],
    ),
    (
        "bad-credentials-name",
        PROFILES + account(credentials='"my secret!"'),
        8,
        "linked_accounts[0].credentials",
        ["expected the name of a vault entry"],
    ),
    (
        "empty-name",
        "profiles:\n  - id: alice\n    name: '  '\n    valuation_ccy: GBP\n",
        3,
        "profiles[0].name",
        ["non-empty"],
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_CONFIGS],
)
def test_bad_config(tmp_path: Path, text: str, line: int, field: str, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    message = str(err)
    first = message.splitlines()[0]
    assert first.startswith(f"{path}, line {line}"), message
    assert err.line == line
    assert err.field == field
    if field:
        assert f", {field}: " in first, message
    for word in words:
        assert word in first, f"{word!r} not in {message!r}"


def test_several_errors_one_per_line(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        fetch:
          timeout_s: -1
          max_workers: 0
        profiles:
          - {id: alice, name: Alice, valuation_ccy: GBP}
        """
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert lines == [
        f"{path}, line 2, fetch.timeout_s: expected a number greater than 0, got -1",
        f"{path}, line 3, fetch.max_workers: expected a number >= 1, got 0",
    ]


def test_provider_needing_credentials_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finbot_pipelines.providers.base import (
        ProviderCredentials,
        ProviderOptions,
        ProviderSpec,
        secret,
    )

    class NeedsKeyCredentials(ProviderCredentials):
        api_key: str = secret("the API key")

    spec = ProviderSpec(
        id="needs-key",
        description="test provider",
        options=ProviderOptions,
        credentials=NeedsKeyCredentials,
    )
    monkeypatch.setitem(registry._SPECS, "needs-key", "unused:SPEC")
    monkeypatch.setitem(registry._specs, "needs-key", spec)
    path = write(tmp_path, PROFILES + account(provider="needs-key"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "linked_accounts[0].credentials: provider 'needs-key' needs credentials" in str(
        info.value
    )
    assert "api_key" in str(info.value)
    # a frozen account is never fetched: no credentials needed
    load_config(write(tmp_path, PROFILES + account(provider="needs-key", frozen="true")))
