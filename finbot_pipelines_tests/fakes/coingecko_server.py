"""A fake CoinGecko API on 127.0.0.1: ``GET /api/v3/simple/price``, as CoinGecko answers it.

The wire shape follows CoinGecko's API reference (``/simple/price``, "Coin Price by
IDs"): the query names coin ``ids`` and ``vs_currencies`` (comma-separated, lower
case); the answer is an object keyed by coin id, each an object of prices keyed by
vs currency, plus ``last_updated_at`` (UNIX seconds) when
``include_last_updated_at=true``. Ids CoinGecko does not know are left out of the
answer (no error). The reference's example answer::

    {"bitcoin": {"usd": 67187.3358936566, "usd_market_cap": 1317802988326.25,
                 "usd_24h_vol": 31260929299.5248, "usd_24h_change": 3.63727894677354,
                 "last_updated_at": 1711356300}}

Prices are written into the body as the literal JSON numbers given (strings of
digits), so a test controls every digit the client reads. A rate limit answers HTTP
429 with a ``Retry-After`` header and CoinGecko's error object
``{"status": {"error_code": 429, "error_message": "..."}}``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: The reference's example price of bitcoin in usd (and its timestamp).
EXAMPLE_BTC_USD = "67187.3358936566"
EXAMPLE_UPDATED_AT = 1711356300


@dataclass
class CoinGeckoState:
    #: coin id -> vs currency (lower case) -> price as a JSON number literal
    prices: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"bitcoin": {"usd": EXAMPLE_BTC_USD}}
    )
    updated_at: int = EXAMPLE_UPDATED_AT
    #: (status, body, headers) answered instead, once each, in order
    failures: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    #: every request's path and query
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeCoinGecko:
    """``with FakeCoinGecko() as fake: fake.base_url`` -> ``http://127.0.0.1:PORT/api/v3``."""

    def __init__(self, state: CoinGeckoState | None = None) -> None:
        self.state = state or CoinGeckoState()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/v3"

    def __enter__(self) -> FakeCoinGecko:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests_of(self, path: str) -> list[dict[str, list[str]]]:
        with self.state.lock:
            return [q for p, q in self.state.requests if p == path]


def _price_body(state: CoinGeckoState, query: dict[str, list[str]]) -> str:
    ids = [i for i in ",".join(query.get("ids", [])).split(",") if i]
    vs = [v for v in ",".join(query.get("vs_currencies", [])).split(",") if v]
    with_time = query.get("include_last_updated_at", ["false"])[0] == "true"
    parts = []
    for coin in ids:
        known = state.prices.get(coin)
        if known is None:
            continue  # CoinGecko leaves unknown ids out
        fields = [f"{json.dumps(v)}: {known[v]}" for v in vs if v in known]
        if with_time:
            fields.append(f'"last_updated_at": {state.updated_at}')
        parts.append(f"{json.dumps(coin)}: {{{', '.join(fields)}}}")
    return "{" + ", ".join(parts) + "}"


def _handler(state: CoinGeckoState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with state.lock:
                state.requests.append((parts.path, query))
                failure = state.failures.pop(0) if state.failures else None
            if failure is not None:
                self._send(*failure)
                return
            if parts.path != "/api/v3/simple/price":
                self._send(404, json.dumps({"error": "Incorrect path. Please check /api/v3/"}))
                return
            if not query.get("vs_currencies"):
                self._send(
                    400,
                    json.dumps({"error": "Missing parameter vs_currencies"}),
                )
                return
            self._send(200, _price_body(state, query))

    return Handler


def rate_limit_failure(retry_after_s: int) -> tuple[int, str, dict[str, str]]:
    body = json.dumps(
        {
            "status": {
                "error_code": 429,
                "error_message": "You've exceeded the Rate Limit. Please visit "
                "https://www.coingecko.com/en/api/pricing to subscribe to our API plans "
                "for higher rate limits.",
            }
        }
    )
    return 429, body, {"Retry-After": str(retry_after_s)}


@contextmanager
def coingecko(prices: dict[str, dict[str, str]] | None = None) -> Iterator[FakeCoinGecko]:
    state = CoinGeckoState() if prices is None else CoinGeckoState(prices=prices)
    with FakeCoinGecko(state) as fake:
        yield fake
