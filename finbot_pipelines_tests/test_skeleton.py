"""The provider skeleton's boundaries: providers know nothing of finbot's config or the
environment, and validating a config imports no provider client library."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from finbot_pipelines.providers import registry

REPO = Path(__file__).resolve().parents[1]
PROVIDERS = REPO / "finbot_pipelines" / "providers"
CLIENT_LIBRARIES = ("ccxt", "plaid", "gspread", "playwright", "google.auth", "urllib3")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_providers_never_import_the_config_nor_read_the_environment() -> None:
    modules = sorted(PROVIDERS.rglob("*.py"))
    assert len(modules) > 20
    for path in modules:
        imported = _imports(path)
        assert not any(m.startswith("finbot_pipelines.config") for m in imported), path
        assert not any(m.startswith("finbot_pipelines.defs") for m in imported), path
        text = path.read_text()
        assert "os.environ" not in text and "getenv" not in text, path


def test_options_modules_import_no_client_library() -> None:
    for pid in registry.provider_ids():
        if registry.is_retired(pid):
            continue
        module = registry._SPECS[pid].partition(":")[0]
        path = REPO / (module.replace(".", "/") + ".py")
        for imported in _imports(path):
            assert not imported.startswith(CLIENT_LIBRARIES), (path, imported)


def test_loading_a_config_with_every_provider_imports_no_client_library(tmp_path: Path) -> None:
    config = tmp_path / "finbot.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            fx_source: static
            fx_static_rates: {GBP: 0.85, USD: 1.1}
            profiles: [{id: me, name: Me, valuation_ccy: GBP}]
            linked_accounts:
              - {id: a, profile: me, provider: dummy, name: A}
              - {id: b, profile: me, provider: plaid, name: B, credentials: b}
              - {id: c, profile: me, provider: kraken, name: C, credentials: c}
              - {id: d, profile: me, provider: binance, name: D, credentials: d}
              - id: e
                profile: me
                provider: ccxt
                name: E
                credentials: e
                options: {exchange: coinbase}
              - id: f
                profile: me
                provider: google_sheets
                name: F
                credentials: f
                options: {sheet_key: 1AbCdEfGhIjKlMnOpQrStUvWxYz}
              - id: g
                profile: me
                provider: credit_agricole
                name: G
                credentials: g
                options: {region: paris}
              - {id: h, profile: me, provider: aegon_targetplan, name: H, credentials: h}
              - {id: i, profile: me, provider: bittrex, name: I, frozen: true}
            """
        )
    )
    code = textwrap.dedent(
        f"""\
        import sys
        from pathlib import Path
        from finbot_pipelines.config.loading import load_config
        from finbot_pipelines.providers import registry
        cfg = load_config(Path({str(config)!r}))
        assert len(cfg.linked_accounts) == 9
        for pid in registry.provider_ids():
            registry.describe(pid)
        loaded = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("ccxt", "plaid", "gspread", "playwright", "urllib3")
            or m.startswith("google.auth")
        )
        print(",".join(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", result.stdout
