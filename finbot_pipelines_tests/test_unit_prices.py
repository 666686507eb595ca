"""Prices of non-ISO units: the CoinGecko client against a local fake, the static table, and
the valuation of units the providers did not price, through the real pipeline.

Expected figures are worked out here with Decimal arithmetic from the prices the fake
serves and the static FX rates of the config, never read back from the code under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import requests

from finbot_pipelines.config.loading import parse_config
from finbot_pipelines.defs.market.assets import needed_units, unit_price_rows
from finbot_pipelines.providers.coingecko import fetch_prices
from finbot_pipelines.providers.contract import (
    ProviderPayloadError,
    RateLimited,
    TransientError,
)
from finbot_pipelines.providers.dummy.provider import dummy_snapshot
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.e2e import HourRun, history_start_for_tests, run_live_hour
from finbot_pipelines_tests.fakes.coingecko_server import (
    EXAMPLE_BTC_USD,
    CoinGeckoState,
    FakeCoinGecko,
    coingecko,
    rate_limit_failure,
)

HOUR = datetime(2026, 3, 2, 9)
ETH_USD = "3456.789012345678"


@pytest.fixture
def fake() -> Iterator[FakeCoinGecko]:
    with coingecko({"bitcoin": {"usd": EXAMPLE_BTC_USD}, "ethereum": {"usd": ETH_USD}}) as f:
        yield f


def config(extra: str = "") -> str:
    return (
        'history_start: "2026-01-01T00:00"\n'
        "fx_source: static\n"
        "fx_static_rates: {GBP: 0.85, USD: 1.10}\n"
        "profiles:\n  - {id: alice, name: Alice, valuation_ccy: GBP}\n" + extra
    )


# --------------------------------------------------------------------------- the client


def test_prices_by_coin_id_with_the_digits_coingecko_sent(fake: FakeCoinGecko) -> None:
    with requests.Session() as s:
        prices = fetch_prices(s, ["BTC", "XBT", "ETH", "NOPE"], "USD", base_url=fake.base_url)
    assert set(prices) == {"BTC", "XBT", "ETH"}  # NOPE has no CoinGecko id
    assert prices["BTC"].price == Decimal(EXAMPLE_BTC_USD) == prices["XBT"].price
    assert prices["ETH"].price == Decimal(ETH_USD)  # every digit, not a float's
    assert prices["BTC"].quote_ccy == "USD"
    assert prices["BTC"].as_of == datetime(2024, 3, 25, 8, 45)  # last_updated_at 1711356300
    (query,) = fake.requests_of("/api/v3/simple/price")  # one call for every unit
    assert query["ids"] == ["bitcoin,ethereum"]
    assert query["vs_currencies"] == ["usd"]
    assert query["precision"] == ["full"]
    assert query["include_last_updated_at"] == ["true"]


def test_configured_ids_extend_the_table_and_unknown_ids_are_left_out(
    fake: FakeCoinGecko,
) -> None:
    fake.state.prices["xyz-token"] = {"usd": "0.000012345"}
    with requests.Session() as s:
        prices = fetch_prices(
            s,
            ["XYZ", "ABC"],
            "USD",
            base_url=fake.base_url,
            ids={"XYZ": "xyz-token", "ABC": "abc-unknown"},
        )
    assert {u: p.price for u, p in prices.items()} == {"XYZ": Decimal("0.000012345")}


def test_rate_limit_with_retry_after_and_server_errors() -> None:
    state = CoinGeckoState(failures=[rate_limit_failure(30)])
    with FakeCoinGecko(state) as f, requests.Session() as s:
        with pytest.raises(RateLimited) as info:
            fetch_prices(s, ["BTC"], "USD", base_url=f.base_url)
        assert info.value.retry_after == 30
        assert "HTTP 429" in str(info.value) and "Rate Limit" in str(info.value)
        f.state.failures.append((503, "<html>upstream down</html>", {}))
        with pytest.raises(TransientError, match="HTTP 503"):
            fetch_prices(s, ["BTC"], "USD", base_url=f.base_url)
        f.state.failures.append((200, "not json", {}))
        with pytest.raises(ProviderPayloadError, match="not JSON"):
            fetch_prices(s, ["BTC"], "USD", base_url=f.base_url)
        f.state.failures.append((200, '{"bitcoin": {"usd": -3}}', {}))
        with pytest.raises(ProviderPayloadError, match=r"bitcoin\.usd: expected a price > 0"):
            fetch_prices(s, ["BTC"], "USD", base_url=f.base_url)


def test_an_unreachable_api_is_transient() -> None:
    with FakeCoinGecko() as f:
        url = f.base_url
    with requests.Session() as s, pytest.raises(TransientError, match="could not be reached"):
        fetch_prices(s, ["BTC"], "USD", base_url=url, timeout_s=5)


def test_an_api_key_is_sent_as_a_header_and_never_quoted() -> None:
    key = "CG-demo-key-7f3a9c1d2e"
    state = CoinGeckoState(failures=[(401, json.dumps({"error": f"bad key {key}"}), {})])
    with FakeCoinGecko(state) as f, requests.Session() as s, pytest.raises(Exception) as info:
        fetch_prices(s, ["BTC"], "USD", base_url=f.base_url, api_key=key)
    assert key not in str(info.value)


# --------------------------------------------------------------------------- what is written


def test_static_prices_at_every_hour_and_live_prices_for_recent_hours(
    fake: FakeCoinGecko,
) -> None:
    cfg = parse_config(
        config(
            f"unit_price_source: coingecko\ncoingecko_base_url: {fake.base_url}\n"
            "unit_prices: {XYZ: {EUR: 0.5}}\n"
        ),
        Path("finbot.yaml"),
    )
    now = datetime(2026, 3, 2, 12, 10)
    hours = [datetime(2026, 3, 2, h) for h in (8, 11, 12)]
    units = needed_units(["GBP", "BTC", "ETH", "FOO", "USD"], cfg)
    assert units == ["BTC", "ETH", "FOO", "XYZ"]  # fiat currencies take their FX rate
    result = unit_price_rows(cfg, hours, units, now)
    static = [r for r in result.rows if r[4] == "static"]
    live = [r for r in result.rows if r[4] == "coingecko"]
    assert static == [(h, "XYZ", "EUR", Decimal("0.5"), "static") for h in hours]
    # 08:00 is older than two hours: a current price would be a wrong past price
    assert sorted((r[0].hour, r[1], r[3]) for r in live) == [
        (11, "BTC", Decimal(EXAMPLE_BTC_USD)),
        (11, "ETH", Decimal(ETH_USD)),
        (12, "BTC", Decimal(EXAMPLE_BTC_USD)),
        (12, "ETH", Decimal(ETH_USD)),
    ]
    assert result.unpriced == ["FOO"] and result.error is None


def test_a_failing_api_keeps_the_static_prices_and_says_why() -> None:
    state = CoinGeckoState(failures=[(500, "{}", {})])
    with FakeCoinGecko(state) as f:
        cfg = parse_config(
            config(f"coingecko_base_url: {f.base_url}\nunit_prices: {{XYZ: {{USD: 2}}}}\n"),
            Path("finbot.yaml"),
        )
        result = unit_price_rows(cfg, [HOUR], ["BTC", "XYZ"], HOUR + timedelta(minutes=5))
    assert [r[1] for r in result.rows] == ["XYZ"]
    assert result.unpriced == ["BTC"]
    assert result.error is not None and "HTTP 500" in result.error


def test_static_source_never_calls_out() -> None:
    cfg = parse_config(
        config(
            "unit_price_source: static\ncoingecko_base_url: http://127.0.0.1:9/api/v3\n"
            "unit_prices: {BTC: {USD: 65000}}\n"
        ),
        Path("finbot.yaml"),
    )
    result = unit_price_rows(cfg, [HOUR], ["BTC", "ETH"], HOUR)
    assert result.rows == [(HOUR, "BTC", "USD", Decimal("65000"), "static")]
    assert result.unpriced == ["ETH"] and result.error is None
    assert cfg.priced_units() == frozenset({"BTC"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("unit_prices: {GBP: {USD: 1.2}}", "unit_prices.GBP: expected a non-ISO unit code"),
        ("unit_prices: {BTC: {USD: 1, EUR: 2}}", "unit_prices.BTC: expected one {currency"),
        ("unit_prices: {BTC: {usd: 1}}", "unit_prices.BTC.usd: expected an ISO 4217"),
        ("unit_prices: {BTC: {USD: 0}}", "unit_prices.BTC.USD: expected a finite price > 0"),
        ("unit_prices: {btc: {USD: 1}}", "unit_prices.btc: expected a non-ISO unit code"),
        ("coingecko_ids: {XYZ: 'Not An Id'}", "coingecko_ids.XYZ: expected a CoinGecko coin id"),
        ("unit_price_source: kraken", "unit_price_source: expected 'coingecko' or 'static'"),
    ],
)
def test_bad_unit_price_config_names_the_field(text: str, message: str) -> None:
    from finbot_pipelines.config.loading import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(config(text + "\n"), Path("finbot.yaml"))
    assert message in str(info.value)


# --------------------------------------------------------------------------- through the pipeline


def wallet_config(extra: str) -> str:
    return (
        f'history_start: "{history_start_for_tests()}"\n'
        "fx_source: static\n"
        "fx_static_rates: {GBP: 0.85, USD: 1.10}\n"
        "profiles:\n  - {id: alice, name: Alice, valuation_ccy: GBP}\n"
        "linked_accounts:\n"
        "  - id: wallet\n    profile: alice\n    provider: dummy\n    name: Wallet\n"
        "    options: {sub_accounts: [cold_wallet, cash]}\n"
        "fetch: {timeout_s: 20, max_attempts: 1, backoff_s: 0}\n" + extra
    )


def items_at(run: HourRun) -> dict[str, dict[str, object]]:
    df = run.published(
        "select item_name, units, value_sub_account_ccy, value, unit, is_unit_priced, "
        "is_unvalued from marts.fct_item_valuation_hourly where sub_account_id = 'cold-wallet' "
        "and valuation_hour = ?",
        [run.hour],
    )
    return {r["item_name"]: r for r in df.to_dict("records")}


def decimal_of(run: HourRun, sql: str) -> Decimal:
    """One DECIMAL cell, read exactly (not through pandas' floats)."""

    with connect_published(run.home / "finbot.duckdb") as con:
        row = con.execute(sql, [run.hour]).fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, Decimal), type(value)
    return value


def test_units_the_provider_did_not_price_are_valued_by_coingecko(
    tmp_path: Path, fake: FakeCoinGecko
) -> None:
    """A wallet kept in BTC holds 'Bitcoin' (worth itself in BTC) and 'ETH2.S' (staked
    ether, unpriced by its provider, unit ETH). CoinGecko prices BTC and ETH in USD; the
    static FX table converts USD to GBP (0.85 / 1.10 per USD)."""
    run = run_live_hour(tmp_path / "home", wallet_config(f"coingecko_base_url: {fake.base_url}\n"))
    assert run.success
    snap = dummy_snapshot("wallet", {"sub_accounts": ["cold_wallet"]}, run.hour)
    held = {it.name: it.units for it in snap.sub_accounts[0].items}
    btc_units, eth_units = held["Bitcoin"], held["ETH2.S"]
    assert btc_units is not None and eth_units is not None
    usd_to_gbp = Decimal("0.85") / Decimal("1.10")
    btc_usd, eth_usd = Decimal(EXAMPLE_BTC_USD), Decimal(ETH_USD)
    items = items_at(run)
    # value_sub_account_ccy: in the wallet's own unit, BTC
    assert items["Bitcoin"]["is_unit_priced"] is False
    assert items["ETH2.S"]["is_unit_priced"] is True and items["ETH2.S"]["unit"] == "ETH"
    tolerance = Decimal("1e-8")
    eth_in_btc = decimal_of(
        run,
        "select value_sub_account_ccy from marts.fct_item_valuation_hourly "
        "where item_name = 'ETH2.S' and valuation_hour = ?",
    )
    assert abs(eth_in_btc - eth_units * eth_usd / btc_usd) < tolerance
    btc_gbp = decimal_of(
        run,
        "select value from marts.fct_item_valuation_hourly "
        "where item_name = 'Bitcoin' and valuation_hour = ?",
    )
    assert abs(btc_gbp - btc_units * btc_usd * usd_to_gbp) < tolerance
    eth_gbp = decimal_of(
        run,
        "select value from marts.fct_item_valuation_hourly "
        "where item_name = 'ETH2.S' and valuation_hour = ?",
    )
    assert abs(eth_gbp - eth_units * eth_usd * usd_to_gbp) < tolerance
    # the sub-account sums its items; nothing is unvalued
    wallet = run.published(
        "select unvalued_items from marts.fct_sub_account_valuation_hourly "
        "where sub_account_id = 'cold-wallet' and valuation_hour = ?",
        [run.hour],
    )
    assert wallet["unvalued_items"].tolist() == [0]
    profile = run.published(
        "select unvalued_items from marts.fct_profile_valuation_hourly where valuation_hour = ?",
        [run.hour],
    )
    assert profile["unvalued_items"].tolist() == [0]
    prices = run.raw("select unit, quote_ccy, price, source from raw.unit_prices order by unit")
    assert prices["unit"].tolist() == ["BTC", "ETH"]
    assert set(prices["source"]) == {"coingecko"}


def test_an_unpriced_unit_is_null_counted_and_never_blocks_the_rest(tmp_path: Path) -> None:
    """Static prices know BTC only: ETH2.S stays NULL, counted in unvalued_items, its
    fetch carries an 'unpriced' warning up to the health mart, and everything else
    (the wallet's bitcoin, the cash accounts) is valued and published."""
    run = run_live_hour(
        tmp_path / "home",
        wallet_config("unit_price_source: static\nunit_prices: {BTC: {USD: 65000}}\n"),
    )
    assert run.success
    items = items_at(run)
    assert items["ETH2.S"]["is_unvalued"] is True
    assert pd.isna(items["ETH2.S"]["value"])  # NULL, never 0
    snap = dummy_snapshot("wallet", {"sub_accounts": ["cold_wallet", "cash"]}, run.hour)
    subs = {sa.id: sa for sa in snap.sub_accounts}
    btc_units = subs.pop("cold-wallet").items[0].units
    assert btc_units is not None and len(subs) == 3  # the GBP, EUR and USD cash accounts
    usd_to_gbp = Decimal("0.85") / Decimal("1.10")
    btc_gbp = decimal_of(
        run,
        "select value from marts.fct_item_valuation_hourly "
        "where item_name = 'Bitcoin' and valuation_hour = ?",
    )
    assert abs(btc_gbp - btc_units * 65000 * usd_to_gbp) < Decimal("1e-8")
    # the profile's total: everything valued (cash accounts in GBP, EUR, USD + bitcoin)
    eur_to = {"GBP": Decimal("0.85"), "EUR": Decimal(1), "USD": Decimal("1.10")}
    expected = btc_gbp
    for sa in subs.values():
        (cash,) = sa.items
        assert cash.value is not None
        expected += cash.value * Decimal("0.85") / eur_to[sa.currency]
    total = decimal_of(
        run,
        "select total_assets from marts.fct_profile_valuation_hourly where valuation_hour = ?",
    )
    assert abs(total - expected) < Decimal("1e-8")
    unvalued = run.published(
        "select unvalued_items from marts.fct_profile_valuation_hourly where valuation_hour = ?",
        [run.hour],
    )
    assert unvalued["unvalued_items"].tolist() == [1]
    # the fetch warned about it, and the warning reached the health mart
    fetch = run.raw("select status, warnings from raw.fetches")
    assert fetch["status"].tolist() == ["success"]
    (warning,) = json.loads(fetch["warnings"][0])
    assert warning["code"] == "unpriced" and "'ETH2.S'" in warning["message"]
    health = run.published("select warning_count, warnings from marts.mart_linked_account_health")
    assert health["warning_count"].tolist() == [1]
    assert json.loads(health["warnings"][0]) == [warning]
    # ... and the CLI's account list and the report show it
    from click.testing import CliRunner

    from finbot_pipelines.cli import main

    listing = CliRunner().invoke(main, ["--home", str(run.home), "accounts", "list"])
    assert listing.exit_code == 0, listing.output
    assert f"wallet: warning (unpriced): {warning['message']}" in listing.output
    report = (run.home / "reports" / "alice.html").read_text()
    assert 'data-testid="account-warning" data-code="unpriced"' in report
    assert 'data-testid="unvalued" data-value="1"' in report
