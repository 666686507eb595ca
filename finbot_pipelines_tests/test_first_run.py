"""A new user's first run: `finbot init`, a config of one's own, `accounts add`, `finbot run`.

The hourly job lands the FX rates its hours need before it transforms, so a fresh
home publishes from its very first run, with static rates and with the ECB (a local
copy of the ECB's files on 127.0.0.1), and again after its warehouse was deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from click.testing import CliRunner

from finbot_pipelines.cli import main
from finbot_pipelines.providers.dummy.provider import dummy_snapshot
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import SHARED_DATA, ensure_dbt_manifest


def last_complete_hour() -> datetime:
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def invoke(home: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ensure_dbt_manifest()
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    res = invoke(home, "init")
    assert res.exit_code == 0, res.output
    assert "wrote a starter config" in res.output
    return home


def set_up(home: Path, fx: dict[str, Any]) -> None:
    """Edit the starter config as a user would, then add an account from the CLI."""
    cfg = yaml.safe_load((home / "finbot.yaml").read_text())
    cfg["history_start"] = (last_complete_hour() - timedelta(days=2)).strftime("%Y-%m-%dT00:00")
    cfg.update(fx)
    (home / "finbot.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = invoke(
        home, "accounts", "add", "dummy", "--id", "my-cash", "--option", "sub_accounts=[cash]"
    )
    assert res.exit_code == 0, res.output


def expected_net_worth(at: datetime, eur_to: dict[str, Decimal]) -> Decimal:
    """The starter profile values in EUR: each cash account / its currency's rate."""
    total = Decimal(0)
    for sa in dummy_snapshot("my-cash", {"sub_accounts": ["cash"]}, at).sub_accounts:
        (item,) = sa.items
        assert item.value is not None
        total += item.value / eur_to[sa.currency]
    return total


def published_net_worth(home: Path) -> tuple[datetime, Decimal, int]:
    with connect_published(home / "finbot.duckdb") as con:
        row = con.execute(
            "select valuation_hour, net_worth, unvalued_items from fct_profile_valuation_hourly "
            "order by valuation_hour desc limit 1"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_first_run_with_static_rates_and_after_losing_the_warehouse(home: Path) -> None:
    set_up(home, {"fx_source": "static", "fx_static_rates": {"GBP": 0.86, "USD": 1.12}})
    res = invoke(home, "run", "--hours", "1")
    assert res.exit_code == 0, res.output
    hour, net_worth, unvalued = published_net_worth(home)
    assert hour == last_complete_hour() or hour == last_complete_hour() - timedelta(hours=1)
    rates = {"EUR": Decimal(1), "GBP": Decimal("0.86"), "USD": Decimal("1.12")}
    assert unvalued == 0
    assert abs(net_worth - expected_net_worth(hour, rates)) < Decimal("1e-6")
    assert "Missing FX rates" not in res.output
    # the warehouse is lost: the next run stops (raw history cannot be fetched again) ...
    (home / "warehouse.duckdb").unlink()
    res = invoke(home, "run", "--hours", "1")
    assert res.exit_code != 0 and "finbot restore" in res.output, res.output
    assert not (home / "warehouse.duckdb").exists()
    # ... until the user starts over on purpose: then the run lands the rates again
    res = invoke(home, "restore", "--empty", "--yes")
    assert res.exit_code == 0, res.output
    res = invoke(home, "run", "--hours", "1")
    assert res.exit_code == 0, res.output
    hour, net_worth, unvalued = published_net_worth(home)
    assert unvalued == 0
    assert abs(net_worth - expected_net_worth(hour, rates)) < Decimal("1e-6")


class RecentEcb:
    """The ECB's files on 127.0.0.1: the real daily file, dated the day before yesterday
    (the newest a run can have seen), served as the 90-day file a recent range asks for."""

    def __init__(self, day: date) -> None:
        text = (SHARED_DATA / "ecb" / "eurofxref-daily.xml").read_text()
        self.original_day = text.split("time='", 1)[1].split("'", 1)[0]
        body = text.replace(f"time='{self.original_day}'", f"time='{day.isoformat()}'").encode()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                found = self.path in ("/eurofxref-hist-90d.xml", "/eurofxref-daily.xml")
                self.send_response(200 if found else 404)
                self.end_headers()
                if found:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def rate(self, ccy: str) -> Decimal:
        text = (SHARED_DATA / "ecb" / "eurofxref-daily.xml").read_text()
        return Decimal(text.split(f"currency='{ccy}' rate='", 1)[1].split("'", 1)[0])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recent_ecb() -> Iterator[RecentEcb]:
    server = RecentEcb(last_complete_hour().date() - timedelta(days=2))
    yield server
    server.close()


def test_first_run_with_the_ecb(home: Path, recent_ecb: RecentEcb) -> None:
    set_up(home, {"fx_source": "ecb", "fx_ecb_base_url": recent_ecb.url})
    res = invoke(home, "run", "--hours", "1")
    assert res.exit_code == 0, res.output
    assert "/eurofxref-hist-90d.xml" in recent_ecb.requests
    hour, net_worth, unvalued = published_net_worth(home)
    rates = {"EUR": Decimal(1), "GBP": recent_ecb.rate("GBP"), "USD": recent_ecb.rate("USD")}
    assert unvalued == 0
    assert abs(net_worth - expected_net_worth(hour, rates)) < Decimal("1e-6")
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        sources = con.execute("select distinct source from raw.fx_rates").fetchall()
    assert sources == [("ecb",)]
