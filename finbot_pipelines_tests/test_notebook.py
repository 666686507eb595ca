"""notebooks/wealth_analysis.ipynb runs top to bottom against a built home and draws its
plots in finbot's colours; `./finbotctl notebook` starts JupyterLab on 127.0.0.1 there.

The kernel is this test's own interpreter (a kernelspec written to a temporary directory),
so it works from a fresh venv without `ipykernel install` and without the network.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
from babel.numbers import format_currency
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from PIL import Image

from finbot_pipelines import visual
from finbot_pipelines.config.loading import load_config
from finbot_pipelines.warehouse.queries import connect_published
from finbot_pipelines_tests.conftest import REPO, BuiltHome, wait_for

NOTEBOOK = REPO / "notebooks" / "wealth_analysis.ipynb"
KERNEL_NAME = "finbot-test-python3"


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_runs_against_published_marts(built_home: BuiltHome, tmp_path: Path) -> None:
    assert built_home.run_success
    kernels = tmp_path / "kernels"
    (kernels / KERNEL_NAME).mkdir(parents=True)
    (kernels / KERNEL_NAME / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "finbot test kernel",
                "language": "python",
                "env": {
                    "FINBOT_HOME": str(built_home.home),
                    "IPYTHONDIR": str(tmp_path / "ipython"),
                    "MPLCONFIGDIR": str(tmp_path / "mpl"),
                    "JUPYTER_PLATFORM_DIRS": "1",
                },
            }
        )
    )
    km = AsyncKernelManager(
        kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        km=km,
        timeout=180,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"reading {built_home.home / 'finbot.duckdb'}" in text
    assert "FX: static rates from finbot.yaml (demo), not market rates" in text
    # amounts in the profile's currency and locale (the e2e profiles: en_GB)
    con = connect_published(built_home.home / "finbot.duckdb")
    try:
        latest = con.execute(
            "select profile_id, valuation_ccy, net_worth from marts.fct_profile_valuation_hourly "
            "qualify row_number() over (partition by profile_id order by valuation_hour desc) = 1"
        ).fetchall()
    finally:
        con.close()
    assert {p for p, _, _ in latest} == {"alice", "bruno"}
    for profile_id, ccy, net_worth in latest:  # the e2e profiles have no locale: en_GB
        expected = format_currency(net_worth, ccy, locale="en_GB")
        assert f"{profile_id}: net worth {expected} on " in text, text
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 4  # net worth, by account, distribution, monthly change
    images = [
        Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))).convert("RGB")
        for o in pngs
    ]

    def has(img: Image.Image, colour: str, at_least: int = 20) -> bool:
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        return sum(1 for px in img.getdata() if px == rgb) >= at_least

    net_worth, by_account, distribution, monthly = images
    assert has(net_worth, visual.NET_WORTH)
    assert has(net_worth, visual.ASSETS) and has(net_worth, visual.LIABILITIES)
    colours = visual.account_colours(
        a.id for a in load_config(built_home.home / "finbot.yaml").linked_accounts
    )
    for colour in colours.values():  # every account, in the colour the web app gives it
        assert has(by_account, colour), colour
        assert has(distribution, colour), colour
    assert has(distribution, visual.asset_class_colour("cash"))
    assert has(distribution, visual.currency_colour("GBP"))
    assert has(monthly, visual.GAIN) or has(monthly, visual.LOSS)
    for img in images:  # matplotlib's own default colours never show
        assert not has(img, "#1f77b4", 1) and not has(img, "#ff7f0e", 1)
    tables = "".join(o["data"].get("text/html", "") for o in outputs if "data" in o)
    assert "alice" in tables and "bruno" in tables and "period_start" in tables
    # the performance table is shown; the fixture's one day has no window with a start
    assert "net_contributions" in tables and "market_gain" in tables
    assert "No profile has two days of history yet" in text


def test_finbotctl_notebook_prints_its_command(tmp_path: Path) -> None:
    env = {**os.environ, "FINBOT_HOME": str(tmp_path)}
    out = subprocess.run(
        [str(REPO / "finbotctl"), "notebook", "--port", "8899", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert out.startswith(f"FINBOT_HOME={tmp_path} ")
    assert "/.venv/bin/jupyter lab --ip=127.0.0.1 --port=8899 --no-browser" in out
    assert "--ServerApp.open_browser=False" in out
    assert f"--ServerApp.root_dir={REPO / 'notebooks'}" in out
    assert "token" not in out  # token auth stays on: nothing turns it off
    usage = subprocess.run(
        [str(REPO / "finbotctl"), "help"], capture_output=True, text=True, check=True
    ).stdout
    assert "notebook [--port N]" in usage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_finbotctl_notebook_serves_jupyterlab_on_localhost_with_a_token(
    built_home: BuiltHome, tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "FINBOT_HOME": str(built_home.home),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [str(REPO / "finbotctl"), "notebook", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return 0

    try:
        wait_for(lambda: status("/api") == 200 or proc.poll() is not None, "JupyterLab", 120)
        assert proc.poll() is None, (tmp_path / "lab.log").read_text()
        assert status("/api/contents") == 403  # a token is needed
        text = (tmp_path / "lab.log").read_text()
        assert "token=" in text and f"127.0.0.1:{port}" in text
        with socket.socket() as s:  # not on another address of the machine
            s.settimeout(2)
            assert s.connect_ex((socket.gethostbyname(socket.gethostname()), port)) != 0 or (
                socket.gethostbyname(socket.gethostname()).startswith("127.")
            )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        log.close()
