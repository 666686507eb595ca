"""ECB euro reference rates: the real files, served from 127.0.0.1, into raw.fx_rates."""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from finbot_pipelines.defs.market.assets import build_fx_asset
from finbot_pipelines.defs.partitions import daily_partitions
from finbot_pipelines.defs.resources import FinbotHome
from finbot_pipelines.providers.contract import ProviderPayloadError, TransientError
from finbot_pipelines.providers.ecb_rates import (
    choose_file,
    fetch_rates,
    parse_hist_csv,
    parse_xml,
    rates_for_range,
)
from finbot_pipelines_tests.conftest import SHARED_DATA

ECB = SHARED_DATA / "ecb"


def csv_rates() -> dict[tuple[date, str], float]:
    """The history CSV read with the csv module only (independent of the parser under test)."""
    out: dict[tuple[date, str], float] = {}
    with open(ECB / "eurofxref-hist.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            for ccy, raw in row.items():
                if ccy and ccy != "Date" and raw not in ("N/A", "", None):
                    out[(date.fromisoformat(row["Date"]), ccy)] = float(raw)
    return out


class EcbServer:
    """Serves the three ECB files; `fail_with` makes every request answer that status."""

    def __init__(self, zip_bytes: bytes) -> None:
        self.files = {
            "/eurofxref-daily.xml": (ECB / "eurofxref-daily.xml").read_bytes(),
            "/eurofxref-hist-90d.xml": (ECB / "eurofxref-hist-sample.xml").read_bytes(),
            "/eurofxref-hist.zip": zip_bytes,
        }
        self.fail_with: int | None = None
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                status = server.fail_with or (200 if body is not None else 404)
                self.send_response(status)
                self.end_headers()
                if status == 200 and body is not None:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def ecb() -> Iterator[EcbServer]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(ECB / "eurofxref-hist.csv", "eurofxref-hist.csv")
    server = EcbServer(buf.getvalue())
    yield server
    server.close()


def test_csv_parser_reads_every_value_of_the_real_file() -> None:
    rates = parse_hist_csv((ECB / "eurofxref-hist.csv").read_text(), "hist.csv")
    parsed = {(r.rate_date, r.quote_ccy): r.rate for r in rates}
    assert parsed == csv_rates()
    assert parsed[(date(2026, 4, 13), "GBP")] == 0.87058
    # legacy currencies are N/A throughout, RUB stops after 2022-03-01
    assert not any(c == "CYP" for _, c in parsed)
    assert max(d for d, c in parsed if c == "RUB") == date(2022, 3, 1)


def test_xml_files_agree_with_the_csv() -> None:
    expected = csv_rates()
    for name in ("eurofxref-daily.xml", "eurofxref-hist-sample.xml"):
        rates = parse_xml((ECB / name).read_bytes(), name)
        assert rates
        for r in rates:
            assert expected[(r.rate_date, r.quote_ccy)] == pytest.approx(r.rate, rel=1e-12)
    daily = parse_xml((ECB / "eurofxref-daily.xml").read_bytes(), "daily")
    assert {r.rate_date for r in daily} == {date(2025, 5, 9)} and len(daily) == 30


def test_the_smallest_covering_file_is_chosen() -> None:
    today = date(2026, 4, 14)
    assert choose_file(date(2026, 4, 13), today) == "eurofxref-daily.xml"
    assert choose_file(date(2026, 3, 1), today) == "eurofxref-hist-90d.xml"
    assert choose_file(date(2025, 1, 1), today) == "eurofxref-hist.zip"


def test_rates_for_range_from_the_zip_carry_the_week_before(ecb: EcbServer) -> None:
    # Saturday 2024-01-06 .. Monday 2024-01-08: the Friday before comes along
    rates = rates_for_range(ecb.url, date(2024, 1, 6), date(2024, 1, 8), date(2026, 4, 14))
    dates = {r.rate_date for r in rates}
    assert date(2024, 1, 5) in dates and date(2024, 1, 8) in dates
    assert date(2024, 1, 6) not in dates  # no rates on weekends
    assert max(dates) == date(2024, 1, 8) and min(dates) >= date(2023, 12, 30)
    assert ecb.requests[-1] == "/eurofxref-hist.zip"


def test_server_errors_are_transient_and_bad_payloads_are_provider_errors(
    ecb: EcbServer,
) -> None:
    ecb.fail_with = 503
    try:
        with pytest.raises(TransientError):
            fetch_rates(ecb.url, "eurofxref-daily.xml")
    finally:
        ecb.fail_with = None
    with pytest.raises(ProviderPayloadError):
        fetch_rates(ecb.url, "no-such-file.xml")
    with pytest.raises(ProviderPayloadError, match="not valid XML"):
        parse_xml(b"<html>maintenance</html", "daily")
    with pytest.raises(ProviderPayloadError, match="line 2, column USD"):
        parse_hist_csv("Date,USD,\n2024-01-02,abc,\n", "hist.csv")
    with pytest.raises(TransientError):
        fetch_rates("http://127.0.0.1:9", "eurofxref-daily.xml")  # nothing listens there


def test_fx_asset_lands_the_ecb_rates(ecb: EcbServer, tmp_path: Path) -> None:
    (tmp_path / "finbot.yaml").write_text(
        f"""\
history_start: "2024-01-01T00:00"
fx_source: ecb
fx_ecb_base_url: "{ecb.url}"
profiles: [{{id: me, name: Me, valuation_ccy: GBP}}]
"""
    )
    asset = build_fx_asset(daily_partitions(datetime(2024, 1, 1)))
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [asset],
            resources={"finbot": FinbotHome(home=str(tmp_path))},
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2024-01-06",
                "dagster/asset_partition_range_end": "2024-01-08",
            },
        )
        assert result.success
        # re-running the same days replaces, never duplicates
        assert dg.materialize(
            [asset],
            resources={"finbot": FinbotHome(home=str(tmp_path))},
            instance=instance,
            partition_key="2024-01-08",
        ).success
    expected = csv_rates()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select rate_date, quote_ccy, rate, base_ccy, source from raw.fx_rates"
        ).fetchall()
        dupes = con.execute(
            "select count(*) from (select rate_date, quote_ccy from raw.fx_rates "
            "group by all having count(*) > 1)"
        ).fetchone()
    assert dupes == (0,)
    assert {(r[3], r[4]) for r in rows} == {("EUR", "ecb")}
    got = {(r[0], r[1]): r[2] for r in rows}
    assert got[(date(2024, 1, 5), "GBP")] == expected[(date(2024, 1, 5), "GBP")]
    assert got[(date(2024, 1, 8), "USD")] == expected[(date(2024, 1, 8), "USD")]
    assert all(got[k] == expected[k] for k in got)


def test_fx_rebuild_window() -> None:
    from finbot_pipelines.defs.automation.sensors import fx_rebuild_window

    now = datetime(2026, 3, 4, 17, 40)
    start = datetime(2024, 1, 1)
    assert fx_rebuild_window("2026-03-03", now, start) == (
        datetime(2026, 3, 3, 0),
        datetime(2026, 3, 4, 16),
    )
    # capped at a week back, and never before the history start
    assert fx_rebuild_window("2025-01-01", now, start) == (
        datetime(2026, 2, 25, 16),
        datetime(2026, 3, 4, 16),
    )
    assert fx_rebuild_window("2026-03-03", now, datetime(2026, 3, 4)) == (
        datetime(2026, 3, 4, 0),
        datetime(2026, 3, 4, 16),
    )
    assert fx_rebuild_window("2026-03-05", now, start) is None


def test_fx_landing_requests_a_transform_run_of_the_day(tmp_path: Path) -> None:
    from finbot_pipelines.definitions import build_definitions
    from finbot_pipelines.defs.automation.jobs import TRANSFORM_JOB
    from finbot_pipelines_tests.conftest import E2E_CONFIG

    # the sensor acts on ECB rates (static ones are known in advance)
    (tmp_path / "finbot.yaml").write_text(E2E_CONFIG.replace("fx_source: static", "fx_source: ecb"))
    defs = build_definitions(str(tmp_path))
    yesterday = (datetime.now() - timedelta(days=1)).strftime("%Y-%m-%d")
    with dg.instance_for_test() as instance:
        # the rates landed (as the ECB asset would write them) for yesterday's partition
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=["market", "fx_rates"], partition=yesterday)
        )
        sensor = defs.resolve_sensor_def("fx_rates_rebuild_sensor")
        ctx = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
        result = sensor.evaluate_tick(ctx)
    assert len(result.run_requests) == 1
    tags = result.run_requests[0].tags
    # the transform job is unpartitioned: its hours are in finbot's window tags
    assert tags["finbot/first_hour"] == f"{yesterday}-00:00"
    last = datetime.strptime(tags["finbot/last_hour"], "%Y-%m-%d-%H:%M")
    assert last > datetime.strptime(f"{yesterday}-00:00", "%Y-%m-%d-%H:%M")
    assert sensor.job_name == TRANSFORM_JOB
