"""The deterministic dummy provider and the registry."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import FetchContext, Provider, fetch_snapshot
from finbot_pipelines.providers.contract import (
    ACCOUNT_TYPES,
    ASSET_CLASSES,
    AuthenticationFailure,
    FetchTimeout,
    Item,
    OptionsError,
    ProviderError,
    ProviderPayloadError,
    RateLimited,
    RetiredProvider,
    Snapshot,
    SubAccount,
    TransientError,
)
from finbot_pipelines.providers.dummy import provider as dummy
from finbot_pipelines.providers.dummy.options import SPEC, DummyOptions
from finbot_pipelines.providers.dummy.provider import DummyProvider, dummy_snapshot, hour_index

REPO = Path(__file__).resolve().parents[1]
HOUR = datetime(2025, 3, 14, 9)


@pytest.fixture(autouse=True)
def fresh_flaky_counters() -> Iterator[None]:
    dummy.reset_flaky_counters()
    yield
    dummy.reset_flaky_counters()


def fetch(options: dict[str, Any], as_of: datetime = HOUR, account: str = "acc") -> Snapshot:
    """One fetch through the path the ingest takes (options parsed, snapshot finalised)."""
    provider = registry.get_provider("dummy")
    return fetch_snapshot(SPEC, provider, FetchContext(account, as_of), options, {})


def by_id(snapshot: Snapshot) -> dict[str, SubAccount]:
    return {sa.id: sa for sa in snapshot.sub_accounts}


# --------------------------------------------------------------------------- determinism


def test_same_inputs_same_snapshot() -> None:
    assert dummy_snapshot("alice-bank", {}, HOUR) == dummy_snapshot("alice-bank", {}, HOUR)
    assert fetch({}) == dummy_snapshot("acc", {}, HOUR)


def test_determinism_across_processes() -> None:
    """Two interpreters with different hash seeds compute the same snapshot."""
    code = (
        "from datetime import datetime\n"
        "from dataclasses import asdict\n"
        "from finbot_pipelines.providers.dummy.provider import dummy_snapshot\n"
        "print(repr(asdict(dummy_snapshot('alice-bank', {'scale': 1.5}, "
        "datetime(2025, 3, 14, 9)))))\n"
    )
    outputs = []
    for seed in ("1", "12345"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(result.stdout)
    here = repr(asdict(dummy_snapshot("alice-bank", {"scale": 1.5}, HOUR))) + "\n"
    assert outputs[0] == outputs[1] == here


def test_values_move_with_the_hour_and_differ_per_account() -> None:
    a = dummy_snapshot("acc", {}, HOUR)
    b = dummy_snapshot("acc", {}, HOUR + timedelta(hours=1))
    assert a != b
    for sa_a, sa_b in zip(a.sub_accounts, b.sub_accounts, strict=True):
        assert sa_a.id == sa_b.id  # same structure
        assert [i.value for i in sa_a.items] != [i.value for i in sa_b.items], sa_a.id
    assert dummy_snapshot("other", {}, HOUR) != a


def test_as_of_within_the_hour_and_aware_datetimes() -> None:
    base = dummy_snapshot("acc", {}, HOUR)
    assert dummy_snapshot("acc", {}, HOUR + timedelta(minutes=59)) == base
    assert dummy_snapshot("acc", {}, HOUR.replace(tzinfo=UTC)) == base
    assert hour_index(datetime(1970, 1, 1, 5)) == 5


def test_a_year_of_hours_validates_and_stays_realistic() -> None:
    start = datetime(2024, 1, 1)
    for k in range(0, 24 * 366 * 2, 97):
        snap = dummy_snapshot("acc", {}, start + timedelta(hours=k))
        snap.validate()
        subs = by_id(snap)
        assert 100 < subs["current-gbp"].items[0].value < 20_000
        isa = sum(i.value for i in subs["isa"].items)
        assert 10_000 < isa < 150_000
        assert -400_000 < subs["mortgage"].items[0].value < -100_000


def test_mortgage_amortises() -> None:
    values = [
        by_id(dummy_snapshot("acc", {}, datetime(2024, 1, 1) + timedelta(days=30 * m)))["mortgage"]
        .items[0]
        .value
        for m in range(24)
    ]
    assert all(v < 0 for v in values)
    assert values == sorted(values)  # strictly less owed every month
    assert len(set(values)) == len(values)


# --------------------------------------------------------------------------- content


def test_all_content_kinds() -> None:
    snap = fetch({})
    snap.validate()
    subs = by_id(snap)
    assert list(subs) == [
        "current-gbp",
        "current-eur",
        "current-usd",
        "isa",
        "pension",
        "crypto",
        "mortgage",
        "credit-card",
    ]
    for sa in snap.sub_accounts:
        assert sa.account_type in ACCOUNT_TYPES
        for item in sa.items:
            assert item.asset_class in ASSET_CLASSES
            assert item.value is not None and item.value.is_finite()

    for ccy in ("GBP", "EUR", "USD"):
        cash = subs[f"current-{ccy.lower()}"]
        assert (cash.currency, cash.account_type) == (ccy, "depository")
        (item,) = cash.items
        assert (item.item_type, item.asset_class, item.asset_type) == ("asset", "cash", "cash")
        assert 300 <= item.value <= 20_000

    isa = subs["isa"]
    assert (isa.currency, isa.account_type) == ("GBP", "investment")
    holdings = [i for i in isa.items if i.asset_type in ("stock", "etf", "fund")]
    assert {i.asset_type for i in holdings} == {"stock", "etf", "fund"}
    for i in holdings:
        assert i.symbol and i.units and i.units > 0
        assert i.value > 0
    assert any(i.currency == "USD" for i in holdings)  # a USD fund in the GBP ISA
    assert 10_000 <= sum(i.value for i in isa.items) <= 100_000

    pension = subs["pension"]
    assert pension.account_type == "investment"
    assert {(i.asset_class, i.asset_type) for i in pension.items} == {("pension", "fund")}
    assert sum(i.value for i in pension.items) > 30_000

    crypto = subs["crypto"]
    assert crypto.currency == "USD"
    kinds = {i.symbol: (i.asset_class, i.asset_type) for i in crypto.items}
    assert kinds == {
        "BTC": ("crypto", "crypto_currency"),
        "ETH": ("crypto", "crypto_currency"),
        "USDC": ("crypto", "stable_coin"),
    }
    assert all(i.units and i.units > 0 for i in crypto.items)

    mortgage = subs["mortgage"]
    assert mortgage.account_type == "loan"
    (m,) = mortgage.items
    assert (m.item_type, m.asset_type) == ("liability", "mortgage")
    assert -400_000 < m.value < -100_000

    card = subs["credit-card"]
    assert card.account_type == "credit"
    (c,) = card.items
    assert (c.item_type, c.asset_type) == ("liability", "credit_card")
    assert -5_000 < c.value < 0


def test_value_is_units_times_price() -> None:
    # the price of a symbol is shared by every account; value = units x price
    a = {i.symbol: i for i in by_id(dummy_snapshot("a", {}, HOUR))["isa"].items if i.symbol}
    b = {i.symbol: i for i in by_id(dummy_snapshot("b", {}, HOUR))["isa"].items if i.symbol}
    for symbol in a:
        ua, ub = a[symbol].units, b[symbol].units
        assert ua and ub
        va, vb = a[symbol].value, b[symbol].value
        assert va is not None and vb is not None
        assert float(va / ua) == pytest.approx(float(vb / ub), rel=1e-3)


def test_sub_accounts_option_and_scale() -> None:
    snap = fetch({"sub_accounts": ["credit_card", "crypto"]})
    assert [sa.id for sa in snap.sub_accounts] == ["crypto", "credit-card"]
    one = fetch({"sub_accounts": ["stocks", "mortgage"]})
    two = fetch({"sub_accounts": ["stocks", "mortgage"], "scale": 2.0})
    for sa1, sa2 in zip(one.sub_accounts, two.sub_accounts, strict=True):
        for i1, i2 in zip(sa1.items, sa2.items, strict=True):
            assert i1.value is not None and i2.value is not None
            assert float(i2.value) == pytest.approx(2 * float(i1.value), rel=2e-3, abs=0.02)


# --------------------------------------------------------------------------- failures


def test_fail_hours() -> None:
    options = {"fail_hours": ["2025-03-14T09:00"]}
    with pytest.raises(TransientError) as info:
        fetch(options)
    assert info.value.code == "transient" and info.value.retryable
    assert "2025-03-14T09:00" in str(info.value)
    fetch(options, HOUR + timedelta(hours=1))  # the next hour is fine
    fetch(options, HOUR - timedelta(hours=1))


@pytest.mark.parametrize(
    ("kind", "cls", "code", "retryable"),
    [
        ("transient", TransientError, "transient", True),
        ("authentication_failure", AuthenticationFailure, "authentication_failure", False),
        ("provider_error", ProviderPayloadError, "provider_error", False),
        ("rate_limited", RateLimited, "rate_limited", True),
    ],
)
def test_fail_kinds(kind: str, cls: type[ProviderError], code: str, retryable: bool) -> None:
    with pytest.raises(cls) as info:
        fetch({"fail_hours": ["2025-03-14T09:00"], "fail_kind": kind})
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.retryable is retryable
    if kind == "rate_limited":
        assert isinstance(info.value, RateLimited) and info.value.retry_after is not None


def test_fail_kind_timeout_sleeps_then_answers() -> None:
    options = {"fail_hours": ["2025-03-14T09:00"], "fail_kind": "timeout", "sleep_s": 0.2}
    t0 = time.monotonic()
    snap = fetch(options)
    assert time.monotonic() - t0 >= 0.2
    assert snap == dummy_snapshot("acc", {}, HOUR)
    assert FetchTimeout.code == "timeout"


def test_fail_cycle() -> None:
    options = {"fail_cycle": {"every_hours": 24, "for_hours": 3, "offset_hours": 5}}
    day = datetime(2025, 3, 14)
    failed = []
    for h in range(48):
        try:
            fetch(options, day + timedelta(hours=h))
        except TransientError:
            failed.append(h)
    # hours since the epoch are whole days at midnight: fails at 05:00-07:59 each day
    assert failed == [5, 6, 7, 29, 30, 31]
    parsed = DummyOptions.model_validate(options)
    assert dummy.is_failing_hour(parsed, hour_index(day + timedelta(hours=6)))


def test_flaky_attempts() -> None:
    options = {"flaky_attempts": 2}
    for attempt in (1, 2):
        with pytest.raises(TransientError, match=f"call {attempt}"):
            fetch(options)
    assert fetch(options) == dummy_snapshot("acc", {}, HOUR)  # attempt N+1 succeeds
    assert fetch(options) == dummy_snapshot("acc", {}, HOUR)  # and keeps succeeding
    with pytest.raises(TransientError):  # counted per (account, hour)
        fetch(options, HOUR + timedelta(hours=1))
    with pytest.raises(TransientError):
        fetch(options, account="other")


def test_flaky_attempts_are_thread_safe() -> None:
    options = {"flaky_attempts": 5}
    failures: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            fetch(options)
        except TransientError:
            with lock:
                failures.append(1)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(failures) == 5


def test_latency() -> None:
    t0 = time.monotonic()
    fetch({"latency_s": 0.1})
    assert time.monotonic() - t0 >= 0.1


def test_the_linked_account_id_comes_from_the_context() -> None:
    """No reserved option: the account id is the context's, and it changes the values."""
    a = fetch({}, account="alice-bank")
    assert a == dummy_snapshot("alice-bank", {}, HOUR)
    assert a != fetch({}, account="bruno-bank")


def test_amounts_are_exact_decimals() -> None:
    """Values and units are Decimals with the digits of the rounded amounts (no float noise)."""
    for sa in fetch({}).sub_accounts:
        for it in sa.items:
            assert isinstance(it.value, Decimal), (sa.id, it.name)
            assert it.value == it.value.quantize(Decimal("0.01")), (sa.id, it.name, it.value)
            assert it.units is None or isinstance(it.units, Decimal)


def test_empty_and_malformed_answers_are_refused_on_the_fetch_path() -> None:
    for kind, message in (("empty", "no sub-account"), ("malformed", "not finite")):
        with pytest.raises(ProviderPayloadError, match=message):
            fetch({"fail_hours": ["2025-03-14T09:00"], "fail_kind": kind})


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "red"}, "options.colour: unknown option (expected one of sub_accounts,"),
        ({"_linked_account_id": "x"}, "options._linked_account_id: unknown option"),
        ({"sub_accounts": "cash"}, "options.sub_accounts: expected a list, got 'cash'"),
        ({"sub_accounts": []}, "options.sub_accounts: expected at least 1 item"),
        (
            {"sub_accounts": ["cash", "bonds"]},
            "options.sub_accounts[1]: expected one of cash, stocks, pension, crypto, cold_wallet,"
            " property, mortgage, credit_card, got 'bonds'",
        ),
        ({"sub_accounts": ["cash", "cash"]}, "options.sub_accounts: 'cash' is listed twice"),
        ({"scale": 0}, "options.scale: expected a number greater than 0, got 0"),
        ({"scale": "2"}, "options.scale: expected a number, got '2'"),
        ({"scale": True}, "options.scale: expected a number, got True"),
        ({"scale": float("nan")}, "options.scale: expected a finite number"),
        ({"scale": float("inf")}, "options.scale: expected a finite number"),
        ({"fail_hours": "2025-03-14T09:00"}, "options.fail_hours: expected a list"),
        ({"fail_hours": ["2025-03-14T09:30"]}, 'options.fail_hours[0]: expected an hour "YYYY'),
        ({"fail_hours": ["2025-02-30T09:00"]}, "options.fail_hours[0]: expected an hour"),
        ({"fail_cycle": 3}, "options.fail_cycle: expected a mapping"),
        (
            {"fail_cycle": {"every_hours": 4}},
            "options.fail_cycle.for_hours: required: failing hours at the start of each cycle",
        ),
        (
            {"fail_cycle": {"every_hours": 0, "for_hours": 0}},
            "options.fail_cycle.every_hours: expected a whole number >= 1, got 0",
        ),
        (
            {"fail_cycle": {"every_hours": 4, "for_hours": 5}},
            "options.fail_cycle: for_hours: expected at most every_hours (4)",
        ),
        (
            {"fail_cycle": {"every_hours": 4, "for_hours": 1, "offset": 1}},
            "options.fail_cycle.offset: unknown option (expected one of every_hours, for_hours, "
            "offset_hours); did you mean 'offset_hours'?",
        ),
        (
            {"fail_kind": "explode"},
            "options.fail_kind: expected one of transient, authentication_failure, provider_error,"
            " timeout, rate_limited, empty, malformed, got 'explode'",
        ),
        ({"flaky_attempts": -1}, "options.flaky_attempts: expected a whole number >= 0, got -1"),
        ({"flaky_attempts": 1.5}, "options.flaky_attempts: expected a whole number, got 1.5"),
        ({"latency_s": -1}, "options.latency_s: expected a number >= 0, got -1"),
        ({"sleep_s": "5"}, "options.sleep_s: expected a number, got '5'"),
        ({"sleep_s": float("inf")}, "options.sleep_s: expected a finite number"),
    ],
)
def test_option_validation(options: dict[str, Any], message: str) -> None:
    """The model's errors, as the config loader and the fetch path report them."""
    with pytest.raises(OptionsError) as info:
        SPEC.parse_options(options)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.code == "invalid_options"
    issues = registry.option_issues("dummy", options)
    assert issues and f"options.{'.'.join(map(str, issues[0].path))}" in str(info.value).replace(
        "[", "."
    ).replace("]", "")


def test_valid_options() -> None:
    assert (
        registry.option_issues(
            "dummy",
            {
                "sub_accounts": ["cash", "crypto"],
                "scale": 2,
                "fail_hours": ["2025-03-14T09:00", datetime(2025, 3, 14, 10)],
                "fail_cycle": {"every_hours": 24, "for_hours": 2},
                "fail_kind": "rate_limited",
                "sleep_s": 1,
                "flaky_attempts": 1,
                "latency_s": 0.5,
            },
        )
        == []
    )


# --------------------------------------------------------------------------- snapshot checks


def item(**kw: Any) -> Item:
    base: dict[str, Any] = {
        "name": "x",
        "item_type": "asset",
        "asset_class": "cash",
        "asset_type": "cash",
        "value": Decimal(1),
    }
    base.update(kw)
    return Item(**base)


def snap(*items: Item, currency: str = "GBP", account_type: str = "depository") -> Snapshot:
    return Snapshot((SubAccount("s", "S", currency, account_type, tuple(items)),))


@pytest.mark.parametrize(
    ("snapshot", "message"),
    [
        (snap(item(item_type="debt")), "item_type"),
        (snap(item(asset_class="stocks")), "asset_class"),
        (snap(item(name=" ")), "empty name"),
        (snap(item(value=Decimal("NaN"))), "not finite"),
        (snap(item(value=Decimal("Infinity"))), "not finite"),
        (snap(item(value=1.0)), "not an exact decimal number"),
        (snap(item(value=Decimal("0.1234567890123456789"))), "more than 18 decimal places"),
        (snap(item(value=Decimal("1e20"))), "too large"),
        (snap(item(value=None)), "unpriced item .value None. must carry its units"),
        (snap(item(item_type="liability", value=Decimal(5))), "liability must have a value <= 0"),
        (snap(item(value=Decimal(-5))), "asset must have a value >= 0"),
        (snap(item(), item()), "duplicate item name"),
        (snap(item(), currency="gbp"), "currency"),
        (snap(item(currency="us$")), "currency"),
        (snap(item(unit="b t c")), "unit"),
        (snap(item(), account_type="savings"), "account_type"),
        (
            Snapshot((SubAccount("s", "S", "GBP", "other", ()),) * 2),
            "duplicate sub-account id",
        ),
        (Snapshot((SubAccount("s", "", "GBP", "other", ()),)), "empty name"),
    ],
)
def test_snapshot_validate_rejects(snapshot: Snapshot, message: str) -> None:
    with pytest.raises(ProviderPayloadError, match=message):
        snapshot.validate()


# --------------------------------------------------------------------------- registry


def test_registry() -> None:
    assert {"bittrex", "dummy", "plaid", "kraken", "google_sheets"} <= set(registry.provider_ids())
    assert registry.provider_ids() == sorted(registry.provider_ids())
    provider = registry.get_provider("dummy")
    assert isinstance(provider, Provider)
    assert registry.get_provider("dummy") is provider
    described = registry.describe("dummy")
    assert {k: v for k, v in described.items() if k != "options"} == {
        "id": "dummy",
        "description": DummyProvider.spec.description,
        "credential_fields": [],
        "setup_fields": [],  # (what `accounts add` asks instead of credentials: nothing)
        "supports_historical": True,
        "retired": False,
    }
    # the options documentation comes from the model: every field, described
    assert [o["name"] for o in described["options"]] == list(DummyOptions.model_fields)
    assert all(o["description"] for o in described["options"])
    scale = next(o for o in described["options"] if o["name"] == "scale")
    assert (scale["required"], scale["default"]) == (False, 1.0)
    with pytest.raises(registry.UnknownProvider) as info:
        registry.get_provider("dumy")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == (
        f"unknown provider 'dumy' (known: {', '.join(registry.provider_ids())}); "
        "did you mean 'dummy'?"
    )
    assert info.value.code == "unknown_provider"


def test_retired_provider() -> None:
    assert registry.describe("bittrex")["retired"] is True
    with pytest.raises(RetiredProvider) as info:
        fetch_snapshot(
            registry.get_spec("bittrex"),
            registry.get_provider("bittrex"),
            FetchContext("x", HOUR),
            {"anything": 1},
            {},
        )
    assert str(info.value) == "bittrex closed in 2023; remove or freeze this linked account"
    assert info.value.code == "retired_provider"
    assert not info.value.retryable


def test_the_home_is_opt_in_and_appreciates() -> None:
    assert "home" not in by_id(dummy_snapshot("acc", {}, datetime(2026, 1, 1)))
    snaps = [
        by_id(dummy_snapshot("acc", {"sub_accounts": ["property", "mortgage"]}, when))
        for when in (datetime(2026, 1, 1), datetime(2028, 1, 1))
    ]
    (home,) = snaps[0]["home"].items
    assert (home.item_type, home.asset_class, home.asset_type) == (
        "asset",
        "real_estate",
        "property",
    )
    assert 250_000 < home.value < 600_000
    # about 3 % a year over two years, give or take the monthly swing
    ratio = snaps[1]["home"].items[0].value / home.value
    assert 1.03**2 * 0.97 < ratio < 1.03**2 * 1.03
    assert list(snaps[0]) == ["home", "mortgage"]
