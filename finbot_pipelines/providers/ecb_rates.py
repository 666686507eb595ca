"""European Central Bank euro reference rates: download and parse (no Dagster, no DuckDB).

The ECB publishes one rate per currency per TARGET business day, quoted as units
of the currency per 1 EUR, in three files under one base address:
- ``eurofxref-daily.xml``: the latest business day;
- ``eurofxref-hist-90d.xml``: the last 90 days;
- ``eurofxref-hist.zip``: every day since 1999 (one CSV, newest first).
`rates_for_range` picks the smallest file that covers the dates asked for.
"""

from __future__ import annotations

import csv
import io
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from datetime import date, timedelta

from finbot_pipelines.providers.contract import ProviderPayloadError, TransientError

_NS = {"e": "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"}
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Rate:
    rate_date: date
    quote_ccy: str
    rate: float


def parse_xml(payload: bytes, source: str) -> list[Rate]:
    try:
        root = ET.fromstring(payload)
    except ET.ParseError as exc:
        raise ProviderPayloadError(f"{source}: not valid XML ({exc})") from exc
    rates: list[Rate] = []
    days = root.findall("e:Cube/e:Cube[@time]", _NS)
    if not days:
        raise ProviderPayloadError(f"{source}: no <Cube time=...> day found")
    for day in days:
        d = date.fromisoformat(day.attrib["time"])
        for cube in day.findall("e:Cube", _NS):
            try:
                value = float(cube.attrib["rate"])
                ccy = cube.attrib["currency"]
            except (KeyError, ValueError) as exc:
                raise ProviderPayloadError(f"{source}: bad rate on {d}: {exc}") from exc
            rates.append(Rate(d, ccy, value))
    return rates


def parse_hist_csv(text: str, source: str) -> list[Rate]:
    """The ECB history CSV: header ``Date,USD,...,`` (trailing comma), ``N/A`` for no value."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration as exc:
        raise ProviderPayloadError(f"{source}: empty file") from exc
    if not header or header[0] != "Date":
        raise ProviderPayloadError(f"{source}: expected a 'Date' first column")
    rates: list[Rate] = []
    for line_no, row in enumerate(reader, start=2):
        if not row or not row[0]:
            continue
        try:
            d = date.fromisoformat(row[0])
        except ValueError as exc:
            raise ProviderPayloadError(f"{source}, line {line_no}: bad date {row[0]!r}") from exc
        for ccy, raw in zip(header[1:], row[1:], strict=False):
            if not ccy or not raw or raw == "N/A":
                continue
            try:
                rates.append(Rate(d, ccy, float(raw)))
            except ValueError as exc:
                raise ProviderPayloadError(
                    f"{source}, line {line_no}, column {ccy}: bad rate {raw!r}"
                ) from exc
    return rates


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            data: bytes = resp.read()
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise TransientError(f"{url}: HTTP {exc.code}") from exc
        raise ProviderPayloadError(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise TransientError(f"{url}: {exc}") from exc


def choose_file(first: date, today: date) -> str:
    age = (today - first).days
    if age <= 3:
        return "eurofxref-daily.xml"
    if age <= 85:
        return "eurofxref-hist-90d.xml"
    return "eurofxref-hist.zip"


def fetch_rates(base_url: str, name: str) -> list[Rate]:
    url = f"{base_url.rstrip('/')}/{name}"
    payload = _get(url)
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as zf:
                member = next(n for n in zf.namelist() if n.endswith(".csv"))
                text = zf.read(member).decode("utf-8")
        except (zipfile.BadZipFile, StopIteration) as exc:
            raise ProviderPayloadError(f"{url}: not a zip holding a CSV") from exc
        return parse_hist_csv(text, url)
    if name.endswith(".csv"):
        return parse_hist_csv(payload.decode("utf-8"), url)
    return parse_xml(payload, url)


def rates_for_range(base_url: str, first: date, last: date, today: date) -> list[Rate]:
    """Every published rate dated within [first - 7 days, last].

    The week before ``first`` is included so that a range starting on a weekend
    or holiday still carries the last business day's rate.
    """
    rates = fetch_rates(base_url, choose_file(first - timedelta(days=7), today))
    lo = first - timedelta(days=7)
    return [r for r in rates if lo <= r.rate_date <= last]
