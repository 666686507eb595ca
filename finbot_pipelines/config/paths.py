"""Where everything lives under FINBOT_HOME (the embedded default)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


#: The Chromium binary the scraped portals drive (Debian's by default).
BROWSER_ENV = "FINBOT_CHROMIUM"
DEFAULT_BROWSER = "/usr/bin/chromium"


def browser_executable() -> str:
    """``$FINBOT_CHROMIUM`` or Debian's Chromium: handed to providers in their fetch context."""
    return os.environ.get(BROWSER_ENV) or DEFAULT_BROWSER


def default_home() -> Path:
    env = os.environ.get("FINBOT_HOME")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".finbot"


@dataclass(frozen=True)
class HomePaths:
    home: Path

    @classmethod
    def resolve(cls, home: str | Path | None = None) -> HomePaths:
        return cls(Path(home).expanduser().resolve() if home else default_home())

    @property
    def config(self) -> Path:
        return self.home / "finbot.yaml"

    @property
    def vault(self) -> Path:
        return self.home / "vault.enc"

    @property
    def key_file(self) -> Path:
        return self.home / "secret.key"

    @property
    def warehouse(self) -> Path:
        """The pipeline's own DuckDB file: only runs open it."""
        return self.home / "warehouse.duckdb"

    @property
    def published(self) -> Path:
        """The marts for readers: replaced atomically after each build."""
        return self.home / "finbot.duckdb"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def debug(self) -> Path:
        return self.home / "debug"

    @property
    def state(self) -> Path:
        """Providers' state between fetches, one folder per linked account (e.g. the last
        answer of a bridge that refreshes once a day)."""
        return self.home / "state"

    @property
    def inbox(self) -> Path:
        """Statement files waiting to land: ``inbox/<linked-account-id>/``; landed ones move
        to ``inbox/done/<id>/``, refused ones to ``inbox/rejected/<id>/`` with a note."""
        return self.home / "inbox"

    @property
    def web(self) -> Path:
        """The web app's own state: ``users.sqlite3`` (people, their password hashes, hashed
        sessions and API tokens, what each may see); never the marts."""
        return self.home / "web"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def dbt_target(self) -> Path:
        return self.home / "dbt-target"
