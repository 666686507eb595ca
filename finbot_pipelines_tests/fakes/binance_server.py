"""A fake Binance spot REST API on 127.0.0.1, speaking Binance's wire protocol.

Endpoints (what ccxt 4.5.90 calls for a spot balance reader):
``GET /api/v3/exchangeInfo`` (load_markets), ``GET /api/v3/account`` (fetch_balance,
signed: ``X-MBX-APIKEY`` header, ``timestamp``/``recvWindow`` in the query and
``signature`` = hex HMAC-SHA256(secret, query before it)), and
``GET /api/v3/ticker/24hr[?symbol=X|?symbols=["X","Y"]]`` (fetch_tickers).
History (signed like the account): ``GET /sapi/v1/capital/deposit/hisrec`` and
``GET /sapi/v1/capital/withdraw/history`` (``startTime``/``endTime`` less than 90 days
apart, else 400 ``-1127``; ``offset``, ``limit`` at most 1000; newest first) and
``GET /api/v3/myTrades`` (``symbol`` required; ``fromId``: trades from that id,
``startTime``: from that time, neither: the most recent; ascending; ``limit`` default
500, at most 1000; ``startTime`` and ``endTime`` at most 24 hours apart).
Errors are Binance's: HTTP 401 ``{"code":-2015,...}`` for an unknown key, 400
``{"code":-1022,...}`` for a bad signature, 400 ``-1121`` for an unknown symbol.

:meth:`BinanceFake.state_from_examples` loads ``shared/data/api-examples/
ccxt_binance_responses.json``: the account answer as is, and the tickers of
``/api/v3/ticker/24hr`` (BTCUSDT) and of the rolling ``/api/v3/ticker`` answer
for the symbols the 24hr example lacks (ETHUSDT); both share the 24hr fields
ccxt reads (``symbol``, ``lastPrice``, ...).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from finbot_pipelines_tests.fakes.echo import echo_message, echo_record

EXAMPLES_FILE = "ccxt_binance_responses.json"

#: Binance symbols -> (base asset, quote asset). exchangeInfo lists those with a ticker.
SYMBOLS: dict[str, tuple[str, str]] = {
    "BTCUSDT": ("BTC", "USDT"),
    "ETHUSDT": ("ETH", "USDT"),
    "ETHBTC": ("ETH", "BTC"),
    "LTCBTC": ("LTC", "BTC"),
    "LTCUSDT": ("LTC", "USDT"),
    "BNBUSDT": ("BNB", "USDT"),
    "EURUSDT": ("EUR", "USDT"),
    "BTCEUR": ("BTC", "EUR"),
    "USDCUSDT": ("USDC", "USDT"),
    "LDOUSDT": ("LDO", "USDT"),  # Lido DAO: a token whose code starts with LD
    "BNBBTC": ("BNB", "BTC"),
    "IOTAUSDT": ("IOTA", "USDT"),
}
#: the most a history page holds (Binance's ``limit`` maximum)
HISTORY_LIMIT = 1000
NINETY_DAYS_MS = 90 * 86_400_000

API_KEY = "binance-test-api-key-0001"
API_SECRET = "binance-fake-secret-0123456789abcdef0123456789abcdef"


def load_examples(shared_data: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_data / "api-examples" / EXAMPLES_FILE).read_text())
    return data


@dataclass
class Failure:
    status: int
    body: Any
    headers: dict[str, str]
    path_prefix: str


@dataclass
class BinanceState:
    api_key: str = API_KEY
    secret: str = API_SECRET
    account: dict[str, Any] = field(default_factory=dict)  # the /api/v3/account answer
    tickers: dict[str, dict[str, Any]] = field(default_factory=dict)  # 24hr tickers by symbol
    account_body: Any = None  # when set, /api/v3/account answers this (malformed payloads)
    failures: list[Failure] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: called with the path of every request as it arrives, before it is answered
    #: (fault tests switch the fake to a failure mode from here; it may block)
    on_request: Callable[[str], None] | None = None
    #: history: the deposit and withdrawal records, and each symbol's trades, as Binance
    #: sends them (amounts as strings)
    deposits: list[dict[str, Any]] = field(default_factory=list)
    withdrawals: list[dict[str, Any]] = field(default_factory=list)
    trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: (path, query parameters) of every history request, in order
    history_queries: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: when set, the signed endpoint answers an error echoing the request: its headers
    #: (X-MBX-APIKEY), its signed query, the secret key (a careless server)
    echo: bool = False


def ticker_24hr(template: dict[str, Any], symbol: str, last: str) -> dict[str, Any]:
    """A 24hr ticker shaped like ``template`` (a real one) for ``symbol`` at price ``last``."""
    t = copy.deepcopy(template)
    t["symbol"] = symbol
    for key in ("lastPrice", "openPrice", "highPrice", "lowPrice", "weightedAvgPrice"):
        t[key] = last
    for key in ("prevClosePrice", "bidPrice", "askPrice"):
        if key in t:
            t[key] = last
    t["priceChange"] = "0.00000000"
    t["priceChangePercent"] = "0.000"
    return t


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        st = self.server.state
        with st.lock:
            st.requests.append(f"GET {url.path}")
        if st.on_request is not None:
            st.on_request(url.path)
        with st.lock:
            injected = next((f for f in st.failures if url.path.startswith(f.path_prefix)), None)
            if injected is not None:
                st.failures.remove(injected)
        if injected is not None:
            self._send(injected.status, injected.body, injected.headers)
            return
        if url.path == "/api/v3/exchangeInfo":
            self._send(200, self._exchange_info())
        elif url.path == "/api/v3/ticker/24hr":
            self._tickers(parse_qs(url.query))
        elif url.path == "/api/v3/account" and st.echo:
            headers = dict(self.headers)
            record = echo_record("GET", self.path, headers, url.query, extra=[st.secret])
            message = echo_message("GET", self.path, headers, url.query)
            self._send(400, {"code": -1022, "msg": message, "echo": record})
        elif url.path in HISTORY_PATHS:
            error = self._auth_error(url.query)
            if error is not None:
                self._send(*error)
                return
            self._history(url.path, {k: v[0] for k, v in parse_qs(url.query).items()})
        elif url.path == "/api/v3/account":
            error = self._auth_error(url.query)
            if error is not None:
                self._send(*error)
                return
            with st.lock:
                body = st.account_body if st.account_body is not None else st.account
                self._send(200, copy.deepcopy(body))
        else:
            self._send(404, {"code": -1000, "msg": "Unknown endpoint."})

    def _history(self, path: str, q: dict[str, str]) -> None:
        st = self.server.state
        with st.lock:
            st.history_queries.append((path, dict(q)))
            try:
                limit = int(q.get("limit", "500" if path == MY_TRADES else "1000"))
                start = int(q["startTime"]) if "startTime" in q else None
                end = int(q["endTime"]) if "endTime" in q else None
            except ValueError:
                self._send(400, {"code": -1100, "msg": "Illegal characters found in parameter."})
                return
            if limit < 1 or limit > HISTORY_LIMIT:
                self._send(400, {"code": -1130, "msg": "Invalid data sent for a parameter."})
                return
            if path == MY_TRADES:
                self._my_trades(q, limit, start, end)
                return
            if start is not None and end is not None and end - start >= NINETY_DAYS_MS:
                msg = "More than 90 days between startTime and endTime."
                self._send(400, {"code": -1127, "msg": msg})
                return
            rows = st.deposits if path == DEPOSITS else st.withdrawals
            key = (lambda r: int(r["insertTime"])) if path == DEPOSITS else _apply_ms
            chosen = [
                copy.deepcopy(r)
                for r in rows
                if (start is None or key(r) >= start) and (end is None or key(r) <= end)
            ]
        chosen.sort(key=key, reverse=True)
        offset = int(q.get("offset", "0"))
        self._send(200, chosen[offset : offset + limit])

    def _my_trades(self, q: dict[str, str], limit: int, start: int | None, end: int | None) -> None:
        st = self.server.state
        symbol = q.get("symbol")
        if not symbol:
            self._send(400, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent."})
            return
        if symbol not in SYMBOLS:
            self._send(400, {"code": -1121, "msg": "Invalid symbol."})
            return
        if start is not None and end is not None and end - start > 86_400_000:
            msg = "More than 24 hours between startTime and endTime."
            self._send(400, {"code": -1127, "msg": msg})
            return
        trades = sorted(st.trades.get(symbol, []), key=lambda t: int(t["id"]))
        if "fromId" in q:
            chosen = [t for t in trades if int(t["id"]) >= int(q["fromId"])][:limit]
        elif start is not None or end is not None:
            lo, hi = start or 0, end if end is not None else 2**63
            chosen = [t for t in trades if lo <= int(t["time"]) <= hi][:limit]
        else:
            chosen = trades[-limit:]
        self._send(200, copy.deepcopy(chosen))

    def _exchange_info(self) -> dict[str, Any]:
        st = self.server.state
        with st.lock:
            listed = [s for s in SYMBOLS if s in st.tickers]
        symbols = []
        for sym in listed:
            base, quote = SYMBOLS[sym]
            symbols.append(
                {
                    "symbol": sym,
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.00000100",
                            "maxPrice": "1000000.00000000",
                            "tickSize": "0.00000100",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.00001000",
                            "maxQty": "9000.00000000",
                            "stepSize": "0.00001000",
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                }
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _tickers(self, query: dict[str, list[str]]) -> None:
        st = self.server.state
        if "symbol" in query:
            wanted: list[str] | None = [query["symbol"][0]]
        elif "symbols" in query:
            try:
                wanted = json.loads(query["symbols"][0])
            except ValueError:
                self._send(400, {"code": -1100, "msg": "Illegal characters found in parameter."})
                return
        else:
            wanted = None
        with st.lock:
            if wanted is None:
                self._send(200, [copy.deepcopy(t) for t in st.tickers.values()])
                return
            if any(s not in st.tickers for s in wanted):
                self._send(400, {"code": -1121, "msg": "Invalid symbol."})
                return
            answer = [copy.deepcopy(st.tickers[s]) for s in wanted]
        self._send(200, answer[0] if "symbol" in query else answer)

    def _auth_error(self, raw_query: str) -> tuple[int, dict[str, Any]] | None:
        st = self.server.state
        if self.headers.get("X-MBX-APIKEY") != st.api_key:
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        unsigned, sep, signature = raw_query.rpartition("&signature=")
        if not sep:
            return 400, {"code": -1102, "msg": "Mandatory parameter 'signature' was not sent."}
        expected = hmac.new(st.secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return 400, {"code": -1022, "msg": "Signature for this request is not valid."}
        params = parse_qs(unsigned)
        try:
            ts = int(params["timestamp"][0])
            window = int(params.get("recvWindow", ["5000"])[0])
        except (KeyError, ValueError):
            return 400, {"code": -1102, "msg": "Mandatory parameter 'timestamp' was not sent."}
        if abs(time.time() * 1000 - ts) > window:
            return 400, {
                "code": -1021,
                "msg": "Timestamp for this request is outside of the recvWindow.",
            }
        return None


DEPOSITS = "/sapi/v1/capital/deposit/hisrec"
WITHDRAWALS = "/sapi/v1/capital/withdraw/history"
MY_TRADES = "/api/v3/myTrades"
HISTORY_PATHS = (DEPOSITS, WITHDRAWALS, MY_TRADES)


def _apply_ms(row: dict[str, Any]) -> int:
    t = datetime.strptime(str(row["applyTime"]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: BinanceState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout under test) is not an error of the fake."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class BinanceFake:
    """A running fake (use :func:`binance_fake`); ``url`` is the ``api_url`` option."""

    def __init__(self, state: BinanceState) -> None:
        self.state = state
        self._server = _Server(state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> BinanceFake:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def refuse_connections(self) -> None:
        """Stop listening: later connections are refused; requests already accepted are answered.

        Safe to call from ``state.on_request`` (a request thread); ``stop`` still cleans up."""
        self._server.shutdown()
        self._server.socket.close()

    @classmethod
    def state_from_examples(cls, shared_data: Path) -> BinanceState:
        ex = load_examples(shared_data)
        account = copy.deepcopy(ex["GET /api/v3/account"])
        tickers: dict[str, dict[str, Any]] = {}
        for key, answer in ex.items():
            if key.startswith("GET /api/v3/ticker/24hr"):
                tickers[answer["symbol"]] = copy.deepcopy(answer)
        for key, answer in ex.items():
            if key.startswith("GET /api/v3/ticker?"):
                for t in answer:
                    tickers.setdefault(t["symbol"], copy.deepcopy(t))
        return BinanceState(account=account, tickers=tickers)

    def add_balance(self, asset: str, free: str, locked: str = "0.00000000") -> None:
        with self.state.lock:
            self.state.account["balances"].append({"asset": asset, "free": free, "locked": locked})

    def add_ticker(self, symbol: str, last: str) -> None:
        assert symbol in SYMBOLS, symbol
        with self.state.lock:
            template = next(iter(self.state.tickers.values()))
            self.state.tickers[symbol] = ticker_24hr(template, symbol, last)

    def fail_next(
        self,
        body: Any,
        status: int,
        headers: dict[str, str] | None = None,
        path_prefix: str = "/api/",
        times: int = 1,
    ) -> None:
        with self.state.lock:
            for _ in range(times):
                self.state.failures.append(Failure(status, body, headers or {}, path_prefix))


@contextmanager
def binance_fake(state: BinanceState) -> Iterator[BinanceFake]:
    fake = BinanceFake(state).start()
    try:
        yield fake
    finally:
        fake.stop()
