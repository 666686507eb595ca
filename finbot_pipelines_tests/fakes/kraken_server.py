"""A fake Kraken REST API on 127.0.0.1, speaking Kraken's wire protocol.

Endpoints: ``GET /0/public/Assets``, ``GET /0/public/AssetPairs``,
``GET /0/public/Ticker[?pair=A,B]``, ``POST /0/private/BalanceEx`` and
``POST /0/private/Ledgers`` ("Get Ledgers Info": the entries after ``start``, Unix
seconds, exclusive, newest first, 50 a page from offset ``ofs``, with ``count``), signed as
Kraken signs: ``API-Key`` header and ``API-Sign`` = base64(HMAC-SHA512(
base64decode(secret), path + SHA256(nonce + postdata))), with a strictly
increasing nonce per key. Errors come back as Kraken sends them: HTTP 200 with
``{"error": ["EAPI:Invalid key"], ...}``.

:meth:`KrakenFake.from_examples` loads the balances and the ticker of
``shared/data/api-examples/ccxt_kraken_responses.json``; tests add what their
scenario needs with :meth:`KrakenFake.add_balance` / :meth:`KrakenFake.add_ticker`,
and inject failures with :meth:`KrakenFake.fail_next`.

The asset list holds, like Kraken's ``/0/public/Assets``, staking and earn
variants as assets of their own (``ETH2``, ``ETH2.S``, ``DOT.S``, ``DOT28.S``,
``XBT.M``, ``ETH.F``, ``SOL.B``, ``KSM.P``, ``USD.HOLD``: altname = id, no market
except ``ETH2.S/ETH``). Balances are sent as JSON numbers, as in the published
BalanceEx example; a :class:`~decimal.Decimal` balance is written digit for digit,
a ``str`` one as a JSON string (Kraken's documented form).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from finbot_pipelines_tests.fakes.echo import echo_message, echo_record

EXAMPLES_FILE = "ccxt_kraken_responses.json"

#: Kraken asset ids -> altname (ccxt maps altnames to unified codes: XBT -> BTC).
ASSETS: dict[str, str] = {
    "XXBT": "XBT",
    "XETH": "ETH",
    "XLTC": "LTC",
    "ZUSD": "USD",
    "ZEUR": "EUR",
    "ZGBP": "GBP",
    "USDT": "USDT",
    "USDC": "USDC",
    "DOT": "DOT",
    "SOL": "SOL",
    "KSM": "KSM",
    "KFEE": "FEE",
    # staking / earn variants: assets of their own (altname = id)
    "ETH2": "ETH2",
    "ETH2.S": "ETH2.S",
    "DOT.S": "DOT.S",
    "DOT28.S": "DOT28.S",
    "XBT.M": "XBT.M",
    "ETH.F": "ETH.F",
    "SOL.B": "SOL.B",
    "KSM.P": "KSM.P",
    "USD.HOLD": "USD.HOLD",
}
#: Kraken pair ids -> (base asset id, quote asset id). AssetPairs lists those with a ticker.
PAIRS: dict[str, tuple[str, str]] = {
    "XBTUSDT": ("XXBT", "USDT"),
    "XXBTZUSD": ("XXBT", "ZUSD"),
    "XXBTZEUR": ("XXBT", "ZEUR"),
    "XETHZUSD": ("XETH", "ZUSD"),
    "XETHXXBT": ("XETH", "XXBT"),
    "USDTZUSD": ("USDT", "ZUSD"),
    "USDTZEUR": ("USDT", "ZEUR"),
    "ZEURZUSD": ("ZEUR", "ZUSD"),
    "ZGBPZUSD": ("ZGBP", "ZUSD"),
    "DOTUSD": ("DOT", "ZUSD"),
    "SOLUSD": ("SOL", "ZUSD"),
    "ETH2.SETH": ("ETH2.S", "XETH"),
}

#: Ledger entries a Ledgers page holds ("50 results are returned at a time").
LEDGER_PAGE = 50

API_KEY = "kraken-test-api-key-0001"
API_SECRET = base64.b64encode(b"kraken-fake-private-key-0123456789abcdef" * 2).decode()


def load_examples(shared_data: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_data / "api-examples" / EXAMPLES_FILE).read_text())
    return data


def dumps(body: Any) -> str:
    """JSON text of ``body``; a :class:`~decimal.Decimal` becomes a number, digit for digit."""
    numbers: dict[str, str] = {}

    def number(value: object) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(f"not JSON: {value!r}")
        mark = f"@@number{len(numbers)}@@"
        numbers[f'"{mark}"'] = format(value, "f")
        return mark

    text = json.dumps(body, default=number)
    for mark, digits in numbers.items():
        text = text.replace(mark, digits)
    return text


def kraken_ticker(template: dict[str, Any], last: str) -> dict[str, Any]:
    """A Ticker entry shaped like ``template`` (a real one) with every price set to ``last``."""
    t = copy.deepcopy(template)
    t["a"][0] = t["b"][0] = t["c"][0] = last
    t["o"] = last
    t["p"] = [last, last]
    t["h"] = [last, last]
    t["l"] = [last, last]
    return t


@dataclass
class Failure:
    status: int
    body: Any  # a JSON-able object, or a str sent as is
    headers: dict[str, str]
    path_prefix: str


@dataclass
class KrakenState:
    api_key: str = API_KEY
    secret_b64: str = API_SECRET
    balances: dict[str, dict[str, Any]] = field(default_factory=dict)  # BalanceEx result
    tickers: dict[str, dict[str, Any]] = field(default_factory=dict)  # Ticker result, by pair
    balance_body: Any = None  # when set, BalanceEx answers this instead (malformed payloads)
    #: the account's ledger: entry id -> entry (``refid``, ``time``, ``type``, ``subtype``,
    #: ``aclass``, ``asset``, ``amount``, ``fee``, ``balance``), as Ledgers sends them
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the form of every Ledgers request (``start``, ``ofs``, ...), nonce and all
    ledger_queries: list[dict[str, str]] = field(default_factory=list)
    #: when set, Ledgers answers this error (e.g. ``EGeneral:Permission denied``)
    ledger_error: str | None = None
    failures: list[Failure] = field(default_factory=list)
    last_nonce: int = 0
    delay_s: float = 0.0  # every answer waits this long (timeouts)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: when set, the private endpoint answers an error echoing the request: its headers
    #: (API-Key, API-Sign), its signed body, the private key (a careless server)
    echo: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        return None

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body.encode() if isinstance(body, str) else dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _injected(self, path: str) -> bool:
        st = self.server.state
        if st.delay_s > 0:
            time.sleep(st.delay_s)
        with st.lock:
            st.requests.append(f"{self.command} {path}")
            for i, f in enumerate(st.failures):
                if path.startswith(f.path_prefix):
                    del st.failures[i]
                    break
            else:
                return False
        self._send(f.status, f.body, f.headers)
        return True

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if self._injected(url.path):
            return
        st = self.server.state
        if url.path == "/0/public/Assets":
            result: dict[str, Any] = {
                asset_id: {
                    "aclass": "currency",
                    "altname": altname,
                    "decimals": 10,
                    "display_decimals": 5,
                    "status": "enabled",
                }
                for asset_id, altname in ASSETS.items()
            }
            self._send(200, {"error": [], "result": result})
        elif url.path == "/0/public/AssetPairs":
            pairs: dict[str, Any] = {}
            with st.lock:
                listed = [p for p in PAIRS if p in st.tickers]  # the fake's world: priced pairs
            for pair_id in listed:
                base, quote = PAIRS[pair_id]
                pairs[pair_id] = {
                    "altname": ASSETS[base] + ASSETS[quote],
                    "wsname": f"{ASSETS[base]}/{ASSETS[quote]}",
                    "aclass_base": "currency",
                    "base": base,
                    "aclass_quote": "currency",
                    "quote": quote,
                    "lot": "unit",
                    "cost_decimals": 5,
                    "pair_decimals": 5,
                    "lot_decimals": 8,
                    "lot_multiplier": 1,
                    "leverage_buy": [],
                    "leverage_sell": [],
                    "fees": [[0, 0.26]],
                    "fees_maker": [[0, 0.16]],
                    "fee_volume_currency": "ZUSD",
                    "margin_call": 80,
                    "margin_stop": 40,
                    "ordermin": "0.0001",
                    "costmin": "0.5",
                    "tick_size": "0.1",
                    "status": "online",
                }
            self._send(200, {"error": [], "result": pairs})
        elif url.path == "/0/public/Ticker":
            query = parse_qs(url.query)
            wanted = query["pair"][0].split(",") if "pair" in query else list(st.tickers)
            unknown = [p for p in wanted if p not in st.tickers]
            if unknown:
                self._send(200, {"error": ["EQuery:Unknown asset pair"]})
                return
            with st.lock:
                result = {p: copy.deepcopy(st.tickers[p]) for p in wanted if p in st.tickers}
            self._send(200, {"error": [], "result": result})
        else:
            self._send(404, {"error": ["EGeneral:Unknown method"]})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        if self._injected(url.path):
            return
        st = self.server.state
        if url.path not in ("/0/private/BalanceEx", "/0/private/Ledgers"):
            self._send(404, {"error": ["EGeneral:Unknown method"]})
            return
        if st.echo:
            headers = dict(self.headers)
            record = echo_record("POST", self.path, headers, body, extra=[st.secret_b64])
            message = echo_message("POST", self.path, headers, body)
            self._send(200, {"error": [f"EAPI:Invalid key ({message})"], "echo": record})
            return
        error = self._auth_error(url.path, body)
        if error:
            self._send(200, {"error": [error]})
            return
        if url.path == "/0/private/Ledgers":
            self._ledgers({k: v[0] for k, v in parse_qs(body).items()})
            return
        with st.lock:
            answer = (
                st.balance_body
                if st.balance_body is not None
                else {"error": [], "result": copy.deepcopy(st.balances)}
            )
        self._send(200, answer)

    def _ledgers(self, form: dict[str, str]) -> None:
        st = self.server.state
        with st.lock:
            st.ledger_queries.append(form)
            if st.ledger_error is not None:
                self._send(200, {"error": [st.ledger_error]})
                return
            start = Decimal(form.get("start", "0"))
            end = Decimal(form["end"]) if "end" in form else Decimal("1e12")
            entries = [
                (lid, copy.deepcopy(e))
                for lid, e in st.ledger.items()
                if start < Decimal(str(e["time"])) <= end
            ]
        entries.sort(key=lambda kv: Decimal(str(kv[1]["time"])), reverse=True)  # newest first
        ofs = int(form.get("ofs", "0"))
        page = dict(entries[ofs : ofs + LEDGER_PAGE])
        self._send(200, {"error": [], "result": {"ledger": page, "count": len(entries)}})

    def _auth_error(self, path: str, body: str) -> str | None:
        st = self.server.state
        if self.headers.get("API-Key") != st.api_key:
            return "EAPI:Invalid key"
        form = parse_qs(body)
        nonce = form.get("nonce", [""])[0]
        if not nonce.isdigit():
            return "EAPI:Invalid nonce"
        digest = hashlib.sha256((nonce + body).encode()).digest()
        expected = base64.b64encode(
            hmac.new(
                base64.b64decode(st.secret_b64), path.encode() + digest, hashlib.sha512
            ).digest()
        ).decode()
        if not hmac.compare_digest(expected, self.headers.get("API-Sign", "")):
            return "EAPI:Invalid signature"
        with st.lock:
            if int(nonce) <= st.last_nonce:
                return "EAPI:Invalid nonce"
            st.last_nonce = int(nonce)
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: KrakenState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout under test) is not an error of the fake."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class KrakenFake:
    """A running fake (use :func:`kraken_fake`); ``url`` is the ``api_url`` option."""

    def __init__(self, state: KrakenState) -> None:
        self.state = state
        self._server = _Server(state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KrakenFake:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --------------------------------------------------------------- scenario

    @classmethod
    def state_from_examples(cls, shared_data: Path) -> KrakenState:
        """Balances and ticker exactly as in the published examples."""
        ex = load_examples(shared_data)
        balances = ex["POST /0/private/BalanceEx"]["result"]
        tickers = ex["GET /0/public/Ticker?pair=XBTUSDT"]["result"]
        return KrakenState(balances=copy.deepcopy(balances), tickers=copy.deepcopy(tickers))

    def add_balance(
        self,
        asset_id: str,
        balance: float | Decimal | str,
        hold_trade: float | Decimal | str = 0.0,
    ) -> None:
        assert asset_id in ASSETS, asset_id
        with self.state.lock:
            self.state.balances[asset_id] = {"balance": balance, "hold_trade": hold_trade}

    def add_ledger_entry(self, ledger_id: str, **entry: Any) -> None:
        """One more ledger entry (``time`` a number; amounts strings, as Kraken sends them)."""
        base = {"refid": "", "subtype": "", "aclass": "currency", "fee": "0.0000000000"}
        with self.state.lock:
            self.state.ledger[ledger_id] = {**base, **entry}

    def add_ticker(self, pair_id: str, last: str) -> None:
        assert pair_id in PAIRS, pair_id
        with self.state.lock:
            template = next(iter(self.state.tickers.values()))
            self.state.tickers[pair_id] = kraken_ticker(template, last)

    def fail_next(
        self,
        body: Any,
        status: int = 200,
        headers: dict[str, str] | None = None,
        path_prefix: str = "/0/",
        times: int = 1,
    ) -> None:
        """The next ``times`` requests under ``path_prefix`` get this answer instead."""
        with self.state.lock:
            for _ in range(times):
                self.state.failures.append(Failure(status, body, headers or {}, path_prefix))


@contextmanager
def kraken_fake(state: KrakenState) -> Iterator[KrakenFake]:
    fake = KrakenFake(state).start()
    try:
        yield fake
    finally:
        fake.stop()
