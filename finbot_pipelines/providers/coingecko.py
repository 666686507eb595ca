"""Unit prices from CoinGecko's simple-price endpoint (``market/unit_prices``).

``GET {base_url}/simple/price?ids=bitcoin,ethereum&vs_currencies=usd&precision=full
&include_last_updated_at=true`` answers ``{"bitcoin": {"usd": 67187.3, "last_updated_at":
1711356300}, ...}``: the current price of each coin id in each ``vs_currency``
(lower-case ISO codes). Coins are named by CoinGecko ids, not symbols (many
tokens share a symbol), so finbot maps a unit to an id with
:data:`DEFAULT_COINGECKO_IDS`, which ``coingecko_ids`` in ``finbot.yaml`` extends
or overrides. A unit without an id, or absent from the answer, is not priced
(the valuation then leaves its items NULL and counts them, never 0).

Plain Python (requests), no Dagster: the market asset calls :func:`fetch_prices`.
Errors are the providers' typed errors; the API key, when given, is masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from finbot_pipelines.providers.contract import ProviderPayloadError, to_decimal
from finbot_pipelines.providers.http import DEFAULT_TIMEOUT_S, Masker, get_json

DEFAULT_BASE_URL = "https://api.coingecko.com/api/v3"
#: ids are sent in chunks of this many (the URL stays short)
MAX_IDS_PER_CALL = 100

#: Unit -> CoinGecko id, for the coins households hold most; extend with `coingecko_ids`.
DEFAULT_COINGECKO_IDS: dict[str, str] = {
    "BTC": "bitcoin",
    "XBT": "bitcoin",
    "ETH": "ethereum",
    "USDT": "tether",
    "USDC": "usd-coin",
    "BNB": "binancecoin",
    "SOL": "solana",
    "XRP": "ripple",
    "DOGE": "dogecoin",
    "XDG": "dogecoin",
    "ADA": "cardano",
    "TRX": "tron",
    "DOT": "polkadot",
    "MATIC": "matic-network",
    "POL": "polygon-ecosystem-token",
    "LTC": "litecoin",
    "BCH": "bitcoin-cash",
    "LINK": "chainlink",
    "AVAX": "avalanche-2",
    "XLM": "stellar",
    "ATOM": "cosmos",
    "XMR": "monero",
    "ETC": "ethereum-classic",
    "XTZ": "tezos",
    "ALGO": "algorand",
    "UNI": "uniswap",
    "AAVE": "aave",
    "DAI": "dai",
    "EURC": "euro-coin",
    "PYUSD": "paypal-usd",
    "FIL": "filecoin",
    "NEAR": "near",
    "KSM": "kusama",
    "FLOW": "flow",
    "SHIB": "shiba-inu",
    "TON": "the-open-network",
    "SUI": "sui",
    "APT": "aptos",
    "ARB": "arbitrum",
    "OP": "optimism",
    "LDO": "lido-dao",
    "MKR": "maker",
    "GRT": "the-graph",
}


@dataclass(frozen=True)
class UnitPrice:
    """1 ``unit`` = ``price`` ``quote_ccy`` (an ISO code), as of ``as_of`` (naive UTC)."""

    unit: str
    quote_ccy: str
    price: Decimal
    as_of: datetime | None


def coin_ids(units: Iterable[str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Unit -> CoinGecko id for the ``units`` that have one."""
    table = {**DEFAULT_COINGECKO_IDS, **overrides}
    return {u: table[u] for u in units if u in table}


def fetch_prices(
    session: Any,
    units: Iterable[str],
    quote_ccy: str,
    *,
    base_url: str = DEFAULT_BASE_URL,
    ids: Mapping[str, str] | None = None,
    api_key: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, UnitPrice]:
    """The price in ``quote_ccy`` of every unit of ``units`` CoinGecko knows.

    Units without an id, or that the answer leaves out, are absent from the result."""
    wanted = coin_ids(sorted(set(units)), ids or {})
    if not wanted:
        return {}
    vs = quote_ccy.lower()
    headers = {"Accept": "application/json"}
    if api_key:
        headers["x-cg-demo-api-key"] = api_key
    masker = Masker([api_key] if api_key else [])
    by_id: dict[str, list[str]] = {}
    for unit, coin in wanted.items():
        by_id.setdefault(coin, []).append(unit)
    coins = sorted(by_id)
    out: dict[str, UnitPrice] = {}
    for start in range(0, len(coins), MAX_IDS_PER_CALL):
        chunk = coins[start : start + MAX_IDS_PER_CALL]
        body = get_json(
            session,
            f"{base_url.rstrip('/')}/simple/price",
            "CoinGecko /simple/price",
            params={
                "ids": ",".join(chunk),
                "vs_currencies": vs,
                "precision": "full",
                "include_last_updated_at": "true",
            },
            headers=headers,
            timeout_s=timeout_s,
            masker=masker,
        )
        if not isinstance(body, Mapping):
            raise ProviderPayloadError("CoinGecko /simple/price: the answer is not a JSON object")
        for coin in chunk:
            entry = body.get(coin)
            if entry is None:
                continue  # CoinGecko leaves out ids it does not know
            if not isinstance(entry, Mapping):
                raise ProviderPayloadError(
                    f"CoinGecko /simple/price: {coin}: expected an object of prices"
                )
            raw = entry.get(vs)
            if raw is None:
                continue
            try:
                price = to_decimal(raw, f"{coin}.{vs}")
            except ValueError as exc:
                raise ProviderPayloadError(f"CoinGecko /simple/price: {exc}") from None
            if price <= 0:
                raise ProviderPayloadError(
                    f"CoinGecko /simple/price: {coin}.{vs}: expected a price > 0, got {raw!r}"
                )
            stamp = entry.get("last_updated_at")
            as_of = (
                datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None)
                if isinstance(stamp, int | float) and not isinstance(stamp, bool)
                else None
            )
            for unit in by_id[coin]:
                out[unit] = UnitPrice(unit, quote_ccy, price, as_of)
    return out
