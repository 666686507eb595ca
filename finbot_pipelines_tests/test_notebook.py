"""notebooks/wealth_analysis.ipynb runs top to bottom against a built home and draws its plots.

The kernel is this test's own interpreter (a kernelspec written to a temporary directory),
so it works from a fresh venv without `ipykernel install` and without the network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from finbot_pipelines_tests.conftest import REPO, BuiltHome

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
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 3  # net worth, distribution, monthly change
    tables = "".join(o["data"].get("text/html", "") for o in outputs if "data" in o)
    assert "alice" in tables and "bruno" in tables and "period_start" in tables
    # the performance table is shown; the fixture's one day has no window with a start
    assert "net_contributions" in tables and "market_gain" in tables
    assert "No profile has two days of history yet" in text
