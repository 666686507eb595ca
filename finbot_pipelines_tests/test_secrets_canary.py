"""Canary credentials through the real pipeline: they must leak nowhere, in no form.

Two homes, each run through the real pipeline (a vault, the CLI, Dagster in-process):

- a test provider that fails with messages quoting its canary credentials (as a
  careless library would), over six past hours;
- one linked account per provider kind on an *echoing* upstream, a fake speaking
  the real wire protocol that answers every call with an error quoting the request
  back (headers, body, signed query) and the credentials it knows, URL-encoded,
  in lower-case percent escapes, encoded twice, base64, ``\\u`` escapes, an HTML page
  (see ``fakes/echo.py``): Plaid (a JSON error and a gateway's HTML page), Kraken
  and Binance through ccxt (API key in a header, signed body / query), Google
  Sheets (the token endpoint echoing the signed grant and the key; the API echoing
  the bearer token), the Aegon portal in Chromium (the login form echoed in the
  page), SimpleFIN (the access URL's user and password, in the Basic header and the
  URL, echoed by ``/accounts``), over the two newest hours, with a failure
  notification to a local sink.

Then every file under FINBOT_HOME but the vault (Dagster's SQLite storage, compute
logs, dbt logs, the warehouse, the published DuckDB and Parquet files, reports), every
table of the warehouse and of the published file, every Dagster event, the CLI's
output, the process's stdout/stderr, the notification payloads and the portal page
as it was when its failure screenshot was taken are scanned for every canary in every
encoded form. The scan (:func:`leaks`) is derived here, independently of the
masker, and is stronger than it: it decodes what it reads (URL escapes, HTML
references, JSON escapes, base64 at every offset, hex, nested) before it looks.

CoinGecko gets no echo: the pipeline calls it without an API key (there is no key
in the config), so there is no credential for it to echo.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, unquote, unquote_plus

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.config.home import ensure_dagster_home
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.vault import Vault, init_key_file
from finbot_pipelines.providers import registry
from finbot_pipelines.providers.base import (
    FetchContext,
    Provider,
    ProviderCredentials,
    ProviderOptions,
    ProviderSpec,
    public,
    secret,
)
from finbot_pipelines.providers.contract import (
    AuthenticationFailure,
    FetchWarning,
    Item,
    Snapshot,
    SubAccount,
    TransientError,
)
from finbot_pipelines.providers.http import Masker, upstream_detail
from finbot_pipelines_tests.conftest import SHARED_DATA, ensure_dbt_manifest, running_web
from finbot_pipelines_tests.fakes.webhook import WebhookReceiver

# --------------------------------------------------------------------------- the scan

#: the shortest run of hex characters the scan decodes (base64: 4 more); a canary is longer
_MIN_RUN = 8
#: the literal forms are looked for in texts up to this size (larger ones: their decodings)
_MAX_LITERAL_SCAN = 1_000_000
_B64_RUN = re.compile(rf"[A-Za-z0-9+/_-]{{{_MIN_RUN + 4},}}={{0,2}}")
_HEX_RUN = re.compile(rf"(?:[0-9a-fA-F]{{2}}){{{_MIN_RUN // 2},}}")
_UNICODE_ESCAPE = re.compile(r"\\+u([0-9a-fA-F]{4})")
_CHAR_ESCAPE = re.compile(r"\\+([\"/\\'])")
#: nested encodings the scan undoes (base64 of a URL-encoded form, ...), by the size of
#: the text (a large file is decoded less deep: its decodings are searched all the same)
_DEPTHS = ((256_000, 3), (4_000_000, 2))


_TEXT_BYTES = bytes(range(32, 127)) + b"\t\n\r"


def _printable(raw: bytes) -> str | None:
    """``raw`` as text if it mostly reads as text (what an encoded credential decodes to,
    maybe with the bytes around it), else None: random bytes are not decoded further."""
    if not raw or len(raw.translate(None, _TEXT_BYTES)) > 0.25 * len(raw):
        return None
    return raw.decode("utf-8", "replace")


def _b64_decodings(text: str) -> str:
    """Every base64-looking run of ``text`` decoded at each of the 4 offsets, standard
    and URL-safe alphabets, the decodings that read as text joined."""
    out: list[str] = []
    for m in _B64_RUN.finditer(text):
        run = m.group(0).rstrip("=")
        if run.islower() or run.isupper() or run.isdigit():
            continue  # a word, a constant, a number: base64 of a credential mixes cases
        run = run.replace("-", "+").replace("_", "/")
        for offset in range(4):
            part = run[offset:]
            part = part[: len(part) - len(part) % 4] if len(part) % 4 == 1 else part
            try:
                raw = base64.b64decode(part + "=" * (-len(part) % 4))
            except (binascii.Error, ValueError):
                continue
            decoded = _printable(raw)
            if decoded:
                out.append(decoded)
    return "\n".join(out)


def _hex_decodings(text: str) -> str:
    out = []
    for m in _HEX_RUN.finditer(text):
        for offset in (0, 1):
            run = m.group(0)[offset:]
            decoded = _printable(bytes.fromhex(run[: len(run) - len(run) % 2]))
            if decoded:
                out.append(decoded)
    return "\n".join(out)


def _json_unescaped(text: str) -> str:
    text = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = _CHAR_ESCAPE.sub(lambda m: m.group(1), text)
    return text.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t")


#: each decoder, and a character without which it changes nothing
_DECODERS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("%", unquote),
    ("+", unquote_plus),
    ("&", html.unescape),
    ("\\", _json_unescaped),
    ("", _b64_decodings),
    ("", _hex_decodings),
)


def _views(text: str) -> list[str]:
    """``text`` and what every nesting of the decoders makes of it."""
    depth = next((d for limit, d in _DEPTHS if len(text) <= limit), 1)
    seen = [text]
    frontier = [text]
    for _ in range(depth):
        nxt = []
        for t in frontier:
            for trigger, decode in _DECODERS:
                if trigger and trigger not in t:
                    continue
                d = decode(t)
                if d and d != t and d not in seen:
                    seen.append(d)
                    nxt.append(d)
        frontier = nxt
    return seen


def _base64_cores(data: bytes) -> set[str]:
    """What base64 of any text holding ``data`` contains whatever the alignment."""
    cores = set()
    for k in range(3):
        enc = base64.b64encode(bytes(k) + data).decode().rstrip("=")
        lead = (8 * k + 5) // 6
        tail = 1 if (k + len(data)) % 3 else 0
        core = enc[lead : len(enc) - tail]
        cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def forms(canary: str) -> set[str]:
    """The literal texts a client or a server writes ``canary`` as (the scan also
    decodes, so these are what a decoding could miss: alignments, partial escapes)."""
    out = {
        canary,
        quote(canary, safe=""),
        quote(canary),
        quote_plus(canary),
        quote(quote(canary, safe=""), safe=""),
        json.dumps(canary)[1:-1],
        json.dumps(canary)[1:-1].replace("/", "\\/"),
        "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in canary),
        html.escape(canary),
        "".join(c if c.isalnum() else f"&#{ord(c)};" for c in canary),
        "".join(c if c.isalnum() else f"&#x{ord(c):X};" for c in canary),
        canary.encode().hex(),
        canary.encode().hex().upper(),
        *_base64_cores(canary.encode()),
    }
    out |= {re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in set(out)}
    return {f for f in out if len(f) >= 6}


def leaks(data: str | bytes, canaries: Iterable[str]) -> list[str]:
    """The canaries ``data`` holds, in any form (plain, encoded, nested encodings)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    views = _views(text)
    literal = len(text) <= _MAX_LITERAL_SCAN
    found = []
    for canary in canaries:
        if any(canary in view for view in views) or (
            literal and any(f in text for f in forms(canary))
        ):
            found.append(canary)
    return found


def assert_no_leak(where: str, data: str | bytes, canaries: Iterable[str]) -> None:
    found = leaks(data, canaries)
    assert not found, f"{found} found in {where}"


# --------------------------------------------------------------------------- unit checks

#: canaries with every character class an encoder treats apart
SAMPLES = (
    "CNRY+plaid/secret=7f3a",
    "Cnry P@ss/w0rd=9e&x<y>'\"",
    "cnry-tok_9b2e6c0f4a7d",
    "cnry€ünïcode-4d1f",
)


def _encoders(user: str = "user") -> dict[str, Callable[[str], str]]:
    """What clients and servers do to a credential, each derived here on its own."""
    return {
        "plain": lambda s: s,
        "quote": lambda s: quote(s, safe=""),
        "quote keeps /": lambda s: quote(s),
        "quote_plus": lambda s: quote_plus(s),
        "lower-case escapes": lambda s: re.sub(
            "%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(s, safe="")
        ),
        "encoded twice": lambda s: quote(quote(s, safe=""), safe=""),
        "json": lambda s: json.dumps(s),
        "json ascii": lambda s: json.dumps(s, ensure_ascii=True),
        "json escaped slashes": lambda s: json.dumps(s).replace("/", "\\/"),
        "unicode escapes": lambda s: "".join(
            c if c.isalnum() and c.isascii() else f"\\u{ord(c):04x}" for c in s
        ),
        "json in json": lambda s: json.dumps(json.dumps({"secret": s})),
        "html": lambda s: html.escape(s),
        "html decimal refs": lambda s: "".join(c if c.isalnum() else f"&#{ord(c)};" for c in s),
        "html hex refs": lambda s: "".join(c if c.isalnum() else f"&#x{ord(c):x};" for c in s),
        "basic auth": lambda s: base64.b64encode(f"{user}:{s}".encode()).decode(),
        "basic auth, 1 byte before": lambda s: base64.b64encode(f"u:{s}".encode()).decode(),
        "basic auth, 2 bytes before": lambda s: base64.b64encode(f"us:{s}".encode()).decode(),
        "base64 url-safe": lambda s: base64.urlsafe_b64encode(f"x{s}".encode()).decode(),
        "base64 then url-encoded": lambda s: quote(
            base64.b64encode(f"{user}:{s}".encode()).decode(), safe=""
        ),
        "hex": lambda s: s.encode().hex(),
    }


@pytest.mark.parametrize("encoding", list(_encoders()))
@pytest.mark.parametrize("canary", SAMPLES)
def test_the_scan_finds_and_the_masker_removes_every_encoding(canary: str, encoding: str) -> None:
    encoded = _encoders()[encoding](canary)
    quoted = f"GET /v1?a=1 failed: answer {{'echo': '{encoded}'}} end"
    assert leaks(quoted, [canary]) == [canary], (encoding, quoted)
    masked = Masker([canary])(quoted)
    assert leaks(masked, [canary]) == [], (encoding, masked)
    assert masked.endswith(" end")  # the rest of the text stays


def test_upstream_details_keep_the_error_and_drop_the_echo() -> None:
    mask = Masker(["CNRY+plaid/secret=7f3a"])
    echo = {"headers": {"Authorization": "Bearer ya29.unknown-token"}, "body": "x=1"}
    plaid = json.dumps(
        {
            "error_type": "INVALID_REQUEST",
            "error_code": "INVALID_FIELD",
            "error_message": "bad secret CNRY%2Bplaid%2Fsecret%3D7f3a",
            "echo": echo,
        }
    )
    assert upstream_detail(plaid, mask) == "INVALID_REQUEST/INVALID_FIELD: bad secret ***"
    google = json.dumps({"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED",
                                   "details": [echo]}})  # fmt: skip
    assert upstream_detail(google, mask) == "403/PERMISSION_DENIED: denied"
    ccxt_text = (
        "binance GET http://127.0.0.1:9/api/v3/account?timestamp=1&signature=ab12 400 "
        'Bad Request {"code":-1022,"msg":"Signature not valid","echo":{"X-MBX-APIKEY":"k"}}'
    )
    assert upstream_detail(ccxt_text, mask) == (
        "binance GET /api/v3/account 400 Bad Request -1022: Signature not valid"
    )
    kraken = 'kraken {"error":["EAPI:Invalid key"],"echo":{"API-Key":"k","API-Sign":"s"}}'
    assert upstream_detail(kraken, mask) == "kraken EAPI:Invalid key"
    # an HTML page: its title and first heading, never the rest (it may echo the request)
    page = (
        "<html><head><title>502 Bad Gateway</title></head><body><h1>Upstream error</h1>"
        "<p>Authorization: Bearer abcdefgh12345</p></body></html>"
    )
    assert upstream_detail(page, mask) == "502 Bad Gateway: Upstream error"
    # other text: a bounded excerpt, tags removed, up to where it quotes the request
    text = "<p>Service unavailable</p>" + "<p>retry later</p>" * 100
    detail = upstream_detail(text, mask)
    assert detail.startswith("Service unavailable retry later retry later")
    assert len(detail) <= 120
    echo = "Service unavailable for GET /v1 with Authorization: Bearer abcdefgh12345 Host: x"
    assert upstream_detail(echo, mask) == "Service unavailable for GET /v1 with …"
    # an unknown bearer token or Basic credentials are cut wherever they are quoted
    assert Masker()("the token Bearer abcdefgh12345 expired") == "the token Bearer *** expired"


# --------------------------------------------------------------------------- scanning a home


def _table_values(db: Path) -> list[str]:
    """Every value of every table and view of a DuckDB file, as text (DuckDB may
    compress strings on disk: read them back)."""
    out: list[str] = []
    with duckdb.connect(str(db), read_only=True) as con:
        # the published views name their files relative to the home
        con.execute("set file_search_path = ?", [str(db.resolve().parent)])
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where not internal "
            "union select schema_name, view_name from duckdb_views() where not internal"
        ).fetchall()
        for schema, table in tables:
            try:
                rows = con.execute(f'select * from "{schema}"."{table}"').fetchall()
            except duckdb.Error:
                continue  # a view over files a newer catalog replaced
            out += [str(v) for row in rows for v in row if v is not None]
    return out


def _parquet_values(path: Path) -> list[str]:
    with duckdb.connect() as con:
        rows = con.execute("select * from read_parquet(?)", [str(path)]).fetchall()
    return [str(v) for row in rows for v in row if v is not None]


def _dagster_events(paths: HomePaths) -> list[str]:
    out = []
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        for run in instance.get_runs():
            out.append(json.dumps(dg.serialize_value(run)))
            for event in instance.all_logs(run.run_id):
                out.append(json.dumps(dg.serialize_value(event)))
    return out


def scan_home(home: Path, canaries: list[str]) -> int:
    """Assert no canary, in any form, in any file of ``home`` but the vault, nor in
    any table, Parquet file or Dagster event; return how many files were read."""
    paths = HomePaths(home)
    checked = 0
    clean: set[str] = set()  # the digests of the contents already scanned (report copies)
    for f in sorted(home.rglob("*")):
        if not f.is_file() or f in (paths.vault, paths.key_file):
            continue
        data = f.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest not in clean:
            assert_no_leak(str(f), data, canaries)
            clean.add(digest)
        checked += 1
        if f.suffix == ".parquet":
            assert_no_leak(f"the rows of {f}", "\n".join(_parquet_values(f)), canaries)
    for db in (paths.warehouse, paths.published):
        assert_no_leak(f"a table of {db.name}", "\n".join(_table_values(db)), canaries)
    assert_no_leak("Dagster's runs and events", "\n".join(_dagster_events(paths)), canaries)
    return checked


@contextmanager
def captured_fds(folder: Path) -> Iterator[dict[str, Path]]:
    """The process's own stdout and stderr into files: file descriptors 1 and 2 (what
    subprocesses and C code write) and ``sys.stdout`` / ``sys.stderr``."""
    files = {name: folder / f"{name}.txt" for name in ("fd1", "fd2", "sys_stdout", "sys_stderr")}
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        for fd, name in ((1, "fd1"), (2, "fd2")):
            with open(files[name], "wb") as sink:
                os.dup2(sink.fileno(), fd)
        with (
            open(files["sys_stdout"], "w") as out,
            open(files["sys_stderr"], "w") as err,
            redirect_stdout(out),
            redirect_stderr(err),
        ):
            yield files
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def _cli(home: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--home", str(home), *args])


def _cli_texts(result: Any) -> str:
    return f"{result.output}\n{result.stderr}\n{result.exception!r}"


# --------------------------------------------------------------------------- a careless provider

CANARIES = {
    "username": "canary-user-7f3a91",
    "password": "Canary-Pa55-d41d8cd9",
    "api_token": "cnry_tok_9b2e6c0f4a7d",
}
FIRST = datetime(2026, 2, 2, 0)
HOURS = 6


class CanaryCredentials(ProviderCredentials):
    username: str = public("login", masked=True)
    password: str = secret("password")
    api_token: str = secret("token")


class CanaryProvider(Provider[ProviderOptions, CanaryCredentials]):
    spec = ProviderSpec(
        id="canary_test",
        description="test provider that quotes its credentials when it fails",
        options=ProviderOptions,
        credentials=CanaryCredentials,
        supports_historical=True,  # a test double: lets the test use fixed past hours
    )

    def fetch(
        self, ctx: FetchContext, options: ProviderOptions, credentials: CanaryCredentials
    ) -> Snapshot:
        assert credentials.model_dump() == CANARIES
        hour = ctx.hour.hour
        if hour == 2:
            raise AuthenticationFailure(
                f"login {credentials.username} / {credentials.password} refused"
            )
        if hour == 3:
            raise TransientError(
                f"GET https://api.example/v1?token={credentials.api_token}: HTTP 503"
            )
        if hour == 4:
            raise RuntimeError(f"library crashed with {credentials.model_dump()}")
        item = Item("Savings", "asset", "cash", "cash", Decimal(5000 + hour))
        # a careless provider may quote a credential in a warning too: masked as well
        warning = FetchWarning("reconciliation", f"balance of {credentials.username} differs")
        return Snapshot(
            (SubAccount("main", "Main account", "EUR", "depository", (item,)),),
            (warning,) if hour == 5 else (),
        )


CONFIG = """\
history_start: "2026-02-01T00:00"
fx_source: static
fx_static_rates: {GBP: 0.85, USD: 1.1}
profiles: [{id: me, name: Me, valuation_ccy: EUR}]
linked_accounts:
  - {id: canary, profile: me, provider: canary_test, name: Canary bank, credentials: canary-creds}
  - id: demo
    profile: me
    provider: dummy
    name: Demo
    options: {sub_accounts: [cash], fail_hours: ["2026-02-02T01:00"]}
fetch: {timeout_s: 20, max_attempts: 2, backoff_s: 0}
"""


def test_canary_credentials_leak_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    ensure_dbt_manifest()
    monkeypatch.setitem(registry._SPECS, "canary_test", "unused:SPEC")
    monkeypatch.setitem(registry._specs, "canary_test", CanaryProvider.spec)
    monkeypatch.setitem(registry._instances, "canary_test", CanaryProvider())
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import FX_JOB, HOURLY_JOB
    from finbot_pipelines.defs.automation.runs import run_job, run_published

    home = tmp_path / "home"
    home.mkdir()
    paths = HomePaths(home)
    paths.config.write_text(CONFIG)
    init_key_file(home)
    Vault.open(home).set("canary-creds", json.dumps(CANARIES))
    ensure_dagster_home(paths)
    defs = build_definitions(str(home))
    last = FIRST + timedelta(hours=HOURS - 1)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        assert run_job(defs, FX_JOB, FIRST, FIRST, instance=instance, fmt="%Y-%m-%d").success
        # the echoing accounts fail some hours: the run publishes, then fails at its gate
        assert run_published(run_job(defs, HOURLY_JOB, FIRST, last, instance=instance))
    outputs = []
    for args in (["accounts", "list"], ["sql", "select * from marts.mart_linked_account_health"]):
        res = _cli(home, *args)
        assert res.exit_code == 0, res.output
        outputs.append(_cli_texts(res))

    # the failures were recorded, with their codes, and masked
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        failures = con.execute(
            "select hour(fetch_hour), error_code, error_message from raw.fetches "
            "where linked_account_id = 'canary' and status = 'failure' order by 1"
        ).fetchall()
    assert [(h, c) for h, c, _ in failures] == [
        (2, "authentication_failure"),
        (3, "transient"),
        (4, "provider_error"),
    ]
    messages = [m for _, _, m in failures]
    assert messages[0] == "login *** / *** refused"
    assert messages[1] == "GET https://api.example/v1?… HTTP 503"  # the query string is cut
    assert messages[2].startswith("RuntimeError: library crashed with {'username': '***'")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        (warnings,) = con.execute(
            "select warnings from raw.fetches where linked_account_id = 'canary' "
            "and hour(fetch_hour) = 5"
        ).fetchone() or ("",)
    assert json.loads(warnings) == [{"code": "reconciliation", "message": "balance of *** differs"}]

    canaries = list(CANARIES.values())
    assert scan_home(home, canaries) > 10
    for text in outputs:
        assert_no_leak("the CLI's output", text, canaries)
    out, err = capfd.readouterr()
    assert_no_leak("stdout / stderr", out + err, canaries)
    # the vault does hold them, encrypted
    assert Vault.open(home).get_json("canary-creds") == CANARIES


# --------------------------------------------------------------------------- echoing upstreams

PLAID_JSON = {
    "client_id": "cnry-plaid-id/4e1b+77",
    "secret": "CNRY+plaid/secret=7f3a",
    "access_token": "access-cnry/tok+9d1e=0c",
    "environment": "sandbox",
}
PLAID_HTML = {
    "client_id": "cnry-plaid-id2/8a3c+",
    "secret": "CNRY+html/secret=2b9d",
    "access_token": "access-cnry2/tok+5e7f=",
    "environment": "sandbox",
}
#: Kraken's private key is base64 (of bytes that make its text hold '+' and '/')
KRAKEN = {
    "api_key": "CNRY-kraken-key/3c8e+Qw==",
    "api_secret": base64.b64encode(b"CNRY kraken \xfb\xef\xbe\xff\xff\xff key 6d1a").decode(),
}
BINANCE = {"api_key": "CNRY-binance-key/5f2a+", "api_secret": "CNRY-binance-secret=8c4d&x"}
AEGON = {"username": "cnry.user+7c@example.org", "password": "Cnry P@ss/w0rd=9e&x<y>"}
#: the SimpleFIN access URL's user and password (percent-encoded in the URL)
SIMPLEFIN = {"username": "cnry-sf-user+4e", "password": "Cnry-sf/pass=7b&Q:x"}
SHEET_KEY = "1cnrySheetKey0000000000000000000000000000"
PUBLIC = {"environment", "username"}  # shown when typed; username is still masked


def _plaid_canaries(creds: Mapping[str, str]) -> list[str]:
    return [v for k, v in creds.items() if k != "environment"]


@dataclass
class EchoWorld:
    home: Path
    hours: tuple[datetime, ...]
    canaries: list[str]
    run: Any  # the CliRunner result of `finbot run`
    outputs: dict[str, str]  # what the CLI printed, by command
    fds: str  # the process's own stdout and stderr while the pipeline ran
    notifications: list[str]
    pages: list[str]  # each portal page (HTML, text, input values) at its screenshot
    echo_samples: dict[str, str] = field(default_factory=dict)

    def fetches(self) -> dict[str, list[tuple[str, str | None, str | None, int]]]:
        with duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True) as con:
            rows = con.execute(
                "select linked_account_id, status, error_code, error_message, attempt "
                "from raw.fetches order by fetch_hour"
            ).fetchall()
        out: dict[str, list[tuple[str, str | None, str | None, int]]] = {}
        for acc, status, code, message, attempt in rows:
            out.setdefault(acc, []).append((status, code, message, attempt))
        return out


def _account_yaml(account_id: str, provider: str, options: Mapping[str, Any]) -> str:
    return (
        f"  - id: {account_id}\n    profile: me\n    provider: {provider}\n"
        f"    name: {account_id}\n    options: {json.dumps(dict(options))}\n"
        f"    credentials: {account_id}\n"
    )


def _echo_sample(url: str, creds: Mapping[str, str]) -> str:
    """One answer of an echoing fake Plaid to a call made with ``creds`` (raw)."""
    import urllib.error
    import urllib.request

    body = json.dumps({"access_token": creds["access_token"]}).encode()
    request = urllib.request.Request(
        url + "/accounts/balance/get",
        data=body,
        headers={
            "Content-Type": "application/json",
            "PLAID-CLIENT-ID": creds["client_id"],
            "PLAID-SECRET": creds["secret"],
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


@pytest.fixture(scope="module")
def echo_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoWorld]:
    from finbot_pipelines.config.loading import load_config
    from finbot_pipelines.defs.automation.notifications import after_successful_run
    from finbot_pipelines.providers import browser
    from finbot_pipelines_tests.e2e import history_start_for_tests
    from finbot_pipelines_tests.fakes import binance_server as bn
    from finbot_pipelines_tests.fakes import kraken_server as kr
    from finbot_pipelines_tests.fakes.plaid_server import FakePlaid
    from finbot_pipelines_tests.fakes.portals import AegonProduct, AegonUser, FakePortals
    from finbot_pipelines_tests.fakes.sheets_server import (
        FakeSheetsServer,
        SheetsFixture,
        make_service_account,
    )
    from finbot_pipelines_tests.faults import fault_hours

    tmp = tmp_path_factory.mktemp("canary-echo")
    home = tmp / "home"
    stops: list[Callable[[], None]] = []
    pages: list[str] = []
    try:
        sink = WebhookReceiver()
        stops.append(sink.stop)
        config = (
            f'history_start: "{history_start_for_tests()}"\n'
            "fx_source: static\nfx_static_rates: {GBP: 0.85, USD: 1.1}\n"
            "profiles: [{id: me, name: Me, valuation_ccy: EUR}]\n"
            "fetch: {timeout_s: 90, max_attempts: 2, backoff_s: 0}\n"
            "notifications:\n"
            f"  urls: ['json://127.0.0.1:{sink.port}/hook']\n"
            "  failure_threshold_hours: 1\n"
            "linked_accounts:\n"
            "  - {id: cash, profile: me, provider: dummy, name: Cash, "
            "options: {sub_accounts: [cash]}}\n"
        )
        vault: dict[str, Mapping[str, str]] = {}
        samples: dict[str, str] = {}

        for name, creds, mode in (("plaid-json", PLAID_JSON, "json"),
                                  ("plaid-html", PLAID_HTML, "html")):  # fmt: skip
            plaid = FakePlaid(creds["client_id"], creds["secret"], creds["access_token"])
            plaid.start()
            stops.append(plaid.stop)
            plaid.echo = mode
            samples[name] = _echo_sample(plaid.url, creds)
            config += _account_yaml(name, "plaid", {"api_url": plaid.url, "timeout_s": 30})
            vault[name] = creds

        kstate = kr.KrakenFake.state_from_examples(SHARED_DATA)
        kstate.api_key, kstate.secret_b64, kstate.echo = (
            KRAKEN["api_key"],
            KRAKEN["api_secret"],
            True,
        )
        kraken = kr.KrakenFake(kstate).start()
        stops.append(kraken.stop)
        config += _account_yaml(
            "kraken", "kraken", {"api_url": kraken.url, "enable_rate_limit": False}
        )
        vault["kraken"] = KRAKEN

        bstate = bn.BinanceFake.state_from_examples(SHARED_DATA)
        bstate.api_key, bstate.secret = BINANCE["api_key"], BINANCE["api_secret"]
        bstate.echo = True
        binance = bn.BinanceFake(bstate).start()
        stops.append(binance.stop)
        options = {"api_url": binance.url, "enable_rate_limit": False, "quote_ccy": "EUR"}
        config += _account_yaml("binance", "binance", options)
        vault["binance"] = BINANCE

        info, public_key = make_service_account()
        info["private_key_id"] = "cnry5a0key0id1d2e3f" + info["private_key_id"][:12]
        key_lines = [
            line for line in info["private_key"].splitlines() if line and "-----" not in line
        ]
        sheet_fakes: list[FakeSheetsServer] = []
        for name, mode in (("sheet-token", "token"), ("sheet-api", "api")):
            sheets = FakeSheetsServer().start()
            stops.append(sheets.stop)
            sheet_fakes.append(sheets)
            sheets.register_service_account(info["client_email"], public_key)
            sheets.echo = mode
            sheets.echo_extra = [info["private_key_id"], key_lines[3], info["private_key"]]
            fixture = SheetsFixture(sheets, info)
            config += _account_yaml(name, "google_sheets", fixture.options(SHEET_KEY))
            vault[name] = fixture.credentials()

        portal = FakePortals(seed=3).start()
        stops.append(portal.stop)
        portal.add_aegon_user(
            AegonUser(AEGON["username"], AEGON["password"],
                      products=[AegonProduct("Aegon Workplace Pension", "TP12345678", "£1")])
        )  # fmt: skip
        portal.echo_login = True
        config += _account_yaml(
            "aegon", "aegon_targetplan", {"base_url": portal.url, "timeout_s": 30}
        )
        vault["aegon"] = AEGON

        from finbot_pipelines_tests.fakes.simplefin_server import FakeSimplefin, SimplefinState

        simplefin = FakeSimplefin(
            SimplefinState(SIMPLEFIN["username"], SIMPLEFIN["password"], echo=True)
        ).start()
        stops.append(simplefin.stop)
        config += _account_yaml("simplefin", "simplefin", {})
        vault["simplefin"] = {"access_url": simplefin.access_url}

        canaries = [
            *_plaid_canaries(PLAID_JSON),
            *SIMPLEFIN.values(),
            simplefin.access_url,
            *_plaid_canaries(PLAID_HTML),
            *KRAKEN.values(),
            *BINANCE.values(),
            info["private_key_id"],
            *key_lines,
            *AEGON.values(),
        ]

        ensure_dbt_manifest()
        home.mkdir()
        paths = HomePaths(home)
        paths.config.write_text(config)
        init_key_file(home)
        opened = Vault.open(home)
        for name, value in vault.items():
            opened.set(name, json.dumps(dict(value)))

        original = browser._take_screenshot

        def observed(page: Any, path: Path, secrets: Any = ()) -> None:
            values = page.eval_on_selector_all("input, textarea", "els => els.map(e => e.value)")
            pages.append("\n".join([page.content(), page.inner_text("body"), *values]))
            original(page, path, secrets)

        outputs: dict[str, str] = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAGSTER_HOME", str(paths.dagster_home))
            mp.setattr(browser, "_take_screenshot", observed)
            hours = fault_hours(2)
            with captured_fds(tmp) as fds:
                run = _cli(home, "run", "--hours", "2", "--last", f"{hours[-1]:%Y-%m-%d %H:00}")
                outputs["run"] = _cli_texts(run)
                after_successful_run(paths, load_config(paths.config))
                for account in ("plaid-json", "kraken", "binance", "sheet-api", "aegon",
                                "simplefin"):  # fmt: skip
                    outputs[f"accounts test {account}"] = _cli_texts(
                        _cli(home, "accounts", "test", account)
                    )
                for args in (
                    ["accounts", "list"],
                    ["sql", "select * from marts.mart_linked_account_health"],
                ):
                    outputs[" ".join(args)] = _cli_texts(_cli(home, *args))
        fd_text = "\n".join(p.read_text(errors="replace") for p in fds.values())
        # what the Sheets fakes handed out or were sent: the access tokens, the signed grants
        for sheets in sheet_fakes:
            canaries += list(sheets.tokens)
            for raw, authorization in sheets.echoed:
                canaries += parse_qs(raw).get("assertion", [])
                if authorization.startswith("Bearer "):
                    canaries.append(authorization.removeprefix("Bearer "))
        yield EchoWorld(
            home,
            hours,
            sorted(set(canaries)),
            run,
            outputs,
            fd_text,
            list(sink.bodies),
            pages,
            samples,
        )
    finally:
        for stop in reversed(stops):
            stop()


#: each echoing account: (error code, what its message must still say, attempts)
EXPECTED_FAILURES = {
    "plaid-json": ("provider_error", "HTTP 400 INVALID_REQUEST/INVALID_FIELD", 1),
    "plaid-html": ("transient", "(HTTP 502): 502 Bad Gateway", 2),
    "kraken": ("authentication_failure", "EAPI:Invalid key", 1),
    "binance": ("authentication_failure", "-1022", 1),
    "sheet-token": ("authentication_failure", "invalid_grant", 1),
    "sheet-api": ("authentication_failure", "HTTP 403", 1),
    "aegon": ("authentication_failure", "login refused: Login failed for ***", 1),
    "simplefin": ("provider_error", "HTTP 400: gen.api: bad request", 1),
}


def test_every_echoing_upstream_was_met_and_its_failure_recorded(echo_world: EchoWorld) -> None:
    assert echo_world.run.exit_code == 0, echo_world.outputs["run"]
    fetches = echo_world.fetches()
    assert [status for status, *_ in fetches["cash"]] == ["success", "success"]
    for account, (code, fragment, attempts) in EXPECTED_FAILURES.items():
        rows = fetches[account]
        assert len(rows) == 2, (account, rows)
        for status, error_code, message, attempt in rows:
            assert (status, error_code, attempt) == ("failure", code, attempts), (account, rows)
            assert fragment in str(message), (account, message)
            # the rest of an echoing answer is left out, and the request it quotes
            for echoed in ("double_encoded", "unicode_escaped", "User-Agent", "Content-Length"):
                assert echoed not in str(message), (account, message)
    # the echoes did hold the credentials (the scan would see them): not a vacuous test
    assert set(leaks(echo_world.echo_samples["plaid-json"], PLAID_JSON.values())) == set(
        _plaid_canaries(PLAID_JSON)
    )
    assert PLAID_HTML["secret"] in leaks(
        echo_world.echo_samples["plaid-html"], [PLAID_HTML["secret"]]
    )
    # the portal failed with a page shown: its screenshot was taken, the page observed
    assert echo_world.pages, "no portal screenshot was taken"
    assert any("Login failed for" in p for p in echo_world.pages)


def test_no_canary_in_any_form_anywhere_in_the_home(echo_world: EchoWorld) -> None:
    assert scan_home(echo_world.home, echo_world.canaries) > 10
    screenshots = list((echo_world.home / "debug").glob("aegon_targetplan-aegon-*.png"))
    assert screenshots, "the portal's failure screenshot is under FINBOT_HOME/debug"


def test_no_canary_in_the_output_the_notifications_or_the_screenshot_pages(
    echo_world: EchoWorld,
) -> None:
    for command, text in echo_world.outputs.items():
        assert_no_leak(f"the output of finbot {command}", text, echo_world.canaries)
    assert_no_leak("the process's stdout/stderr", echo_world.fds, echo_world.canaries)
    # one failure notification per echoing account, with its masked error, and the digest
    failing = [p for p in echo_world.notifications if "is failing" in p]
    assert len(failing) == len(EXPECTED_FAILURES), echo_world.notifications
    for account in EXPECTED_FAILURES:
        assert any(f"me/{account} is failing" in p for p in failing), account
    for payload in echo_world.notifications:
        assert_no_leak("a notification", payload, echo_world.canaries)
    for page in echo_world.pages:
        assert_no_leak("the portal page at its screenshot", page, echo_world.canaries)
    # `accounts test` showed each account's error (masked)
    for account in ("plaid-json", "kraken", "binance", "sheet-api", "aegon", "simplefin"):
        assert EXPECTED_FAILURES[account][1] in echo_world.outputs[f"accounts test {account}"]


def test_no_canary_in_the_web_app_pages_api_or_logs(echo_world: EchoWorld, tmp_path: Path) -> None:
    """`finbot web` on the echo home, as its owner: every API route and page (the account
    tests re-fetch from the echoing upstreams, so their errors are fresh), then the
    answers, the server's own log and the users file are scanned for every canary, and
    for the user's password and API token, which no answer or log may repeat either."""

    import httpx
    from fastapi.routing import APIRoute

    from finbot_pipelines.web import api, linking, pages
    from finbot_pipelines.web.users import UserStore
    from finbot_pipelines_tests.pg import free_port

    home = echo_world.home
    store = UserStore.open(HomePaths(home))
    password = "web-canary-password-7f3a"
    if store.get_user("owner") is None:
        store.add_user("owner", password, profiles={"me": "owner"})
    token = store.create_token("owner", scope="write")
    secrets_too = [*echo_world.canaries, password, token.split("_", 2)[2]]
    port = free_port()
    log = tmp_path / "web.log"
    answers: dict[str, str] = {}
    with (
        running_web(home, log, port) as base,
        httpx.Client(base_url=base, timeout=180) as client,
    ):
        page = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        signed = client.post(
            "/login", data={"name": "owner", "password": password, "csrf": csrf.group(1)}
        )
        assert signed.status_code in (200, 303), signed.text
        headers = {"Authorization": f"Bearer {token}"}
        accounts = [a for a in EXPECTED_FAILURES] + ["cash"]
        for route in [*api.router.routes, *linking.router.routes, *pages.router.routes]:
            if not isinstance(route, APIRoute) or "GET" not in route.methods:
                continue
            for account in accounts if "{account_id}" in route.path else [None]:
                path = route.path.replace("{profile_id}", "me").replace("{transaction_id}", "x")
                if account:
                    path = path.replace("{account_id}", account)
                for how in ("page", "api"):
                    r = client.get(
                        path, params={"profile": "me"}, headers=headers if how == "api" else {}
                    )
                    answers[f"{how} GET {path}"] = r.text
        for account in EXPECTED_FAILURES:
            r = client.post(f"/api/v1/accounts/{account}/test", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["ok"] is False, (account, r.text)
            answers[f"POST test {account}"] = r.text
    assert any("is failing" in t or "last_error_message" in t for t in answers.values())
    for where, text in answers.items():
        assert_no_leak(f"the web app's answer to {where}", text, secrets_too)
    assert_no_leak("finbot web's log", log.read_bytes(), secrets_too)
    users_file = (home / "web" / "users.sqlite3").read_bytes()
    assert_no_leak("the users file", users_file, [password, token.split("_", 2)[2]])
