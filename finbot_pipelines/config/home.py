"""Create and refresh a FINBOT_HOME: key file, Dagster instance dir, a first config.

Private by default: every entry point (the `finbot` CLI, the Dagster code location,
`finbotctl`) sets the umask to 077, so every file finbot, Dagster, DuckDB and dbt
create under the home is 0600 and every folder 0700; the home itself is made
0700 whenever finbot opens it. A file an older finbot wrote 0644 keeps its mode
(DuckDB rewrites files in place), but the 0700 home already hides it;
`finbot config check` lists such files and the `chmod` that tightens them.
"""

from __future__ import annotations

import contextlib
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from finbot_pipelines.config.loading import atomic_write_bytes
from finbot_pipelines.config.paths import DBT_PROJECT_DIR, REPO_ROOT, HomePaths
from finbot_pipelines.config.vault import init_key_file

#: Nobody but the owner reads or lists anything finbot writes.
PRIVATE_UMASK = 0o077
HOME_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> None:
    """Make every file this process (and its children: dbt, Dagster's run workers)
    creates from now on 0600, and every folder 0700."""
    os.umask(PRIVATE_UMASK)


def open_home(home: Path) -> None:
    """Make ``home`` 0700 if it exists and is looser (it is the owner's own folder)."""
    try:
        st = home.stat()
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
        with contextlib.suppress(OSError):  # not ours: `config check` says so
            os.chmod(home, stat.S_IMODE(st.st_mode) & ~0o077)


def private_dbt_target(paths: HomePaths) -> None:
    """Seed ``$FINBOT_HOME/dbt-target/partial_parse.msgpack`` as a 0600 copy of the
    prebuilt one. dagster-dbt seeds it itself when it is missing, but with
    ``shutil.copy``, which copies the checkout's mode (0644) whatever the umask, and
    dbt then rewrites it in place forever; a copy left loose is tightened here."""
    src = DBT_PROJECT_DIR / "target" / "partial_parse.msgpack"
    dst = paths.dbt_target / src.name
    with contextlib.suppress(OSError):
        if dst.exists():
            if stat.S_IMODE(dst.stat().st_mode) & 0o077:
                os.chmod(dst, FILE_MODE)
        elif src.exists() and paths.home.is_dir():
            paths.dbt_target.mkdir(mode=HOME_MODE, exist_ok=True)
            atomic_write_bytes(dst, src.read_bytes(), FILE_MODE)


def loose_modes(home: Path) -> list[tuple[Path, int]]:
    """Folders and files under ``home`` (itself included) that others may read,
    write or enter, with their modes; symbolic links are not followed."""
    found: list[tuple[Path, int]] = []
    try:
        mode = stat.S_IMODE(home.lstat().st_mode)
    except OSError:
        return found
    if mode & 0o077:
        found.append((home, mode))
    for root, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            p = Path(root) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                found.append((p, stat.S_IMODE(st.st_mode)))
    return found


def loose_modes_warning(home: Path, limit: int = 10) -> str | None:
    """The `config check` warning about :func:`loose_modes`, or ``None``."""
    found = loose_modes(home)
    if not found:
        return None
    shown = ", ".join(f"{p} ({m:04o})" for p, m in found[:limit])
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return (
        f"warning: {len(found)} path(s) under {home} can be read by other users of this "
        f"machine: {shown}{more}. Run `chmod -R go-rwx {home}` to make them private "
        "(finbot writes new files 0600 and folders 0700)"
    )


DEMO_DAYS = 30


#: The first line of the repository's dagster.yaml: marks a copy of the embedded default.
EMBEDDED_MARKER = "# The embedded default Dagster instance"


def ensure_dagster_home(paths: HomePaths) -> None:
    """$FINBOT_HOME/dagster holds the instance's SQLite storage and a copy of dagster.yaml.

    A copy of the embedded default is refreshed when the repository's changes; any
    other dagster.yaml there (a production one, say) is never touched.
    """
    paths.dagster_home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    dst = paths.dagster_home / "dagster.yaml"
    wanted = embedded_dagster_yaml(paths.dagster_home)
    stale_copy = (
        dst.exists() and dst.read_bytes() != wanted and dst.read_text().startswith(EMBEDDED_MARKER)
    )
    if not dst.exists() or stale_copy:
        atomic_write_bytes(dst, wanted, FILE_MODE)


#: where the repository's dagster.yaml names the instance folder (its copy names it)
DAGSTER_HOME_PLACEHOLDER = "@DAGSTER_HOME@"


def embedded_dagster_yaml(dagster_home: Path) -> bytes:
    """The repository's dagster.yaml for the instance in ``dagster_home`` (a moved home's
    copy is rewritten by the next command, as a changed repository's is)."""
    text = (REPO_ROOT / "dagster.yaml").read_text()
    return text.replace(DAGSTER_HOME_PLACEHOLDER, str(dagster_home.resolve())).encode()


def demo_config_text(now: datetime | None = None, days: int = DEMO_DAYS) -> str:
    """The dummy household: two profiles (GBP and EUR), static FX, some failures to show."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    start = (now - timedelta(days=days + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return f"""\
# finbot demo household: synthetic data from the `dummy` provider, no credentials.
# Edit freely; `./finbotctl finbot config check` validates this file.
history_start: "{start:%Y-%m-%dT%H:%M}"

# The demo cannot reach the European Central Bank: it values with this static
# table (units of each currency per 1 EUR). Real setups use `fx_source: ecb`.
fx_source: static
fx_static_rates:
  GBP: 0.85
  USD: 1.08

profiles:
  - id: alice
    name: Alice
    valuation_ccy: GBP
    locale: en_GB
  - id: bruno
    name: Bruno
    valuation_ccy: EUR
    locale: fr_FR

linked_accounts:
  - id: alice-bank
    profile: alice
    provider: dummy
    name: Alice's bank
    options:
      sub_accounts: [cash, credit_card]
  - id: alice-invest
    profile: alice
    provider: dummy
    name: Alice's ISA and pension
    options:
      sub_accounts: [stocks, pension]
      # fails for 3 hours every 4 days: its last good holdings are carried, marked stale
      fail_cycle: {{every_hours: 96, for_hours: 3, offset_hours: 7}}
      fail_kind: transient
  - id: alice-crypto
    profile: alice
    provider: dummy
    name: Alice's crypto exchange
    options:
      sub_accounts: [crypto]
      scale: 0.5
  - id: alice-home
    profile: alice
    provider: dummy
    name: Alice's home and mortgage
    options:
      sub_accounts: [property, mortgage]
  - id: bruno-bank
    profile: bruno
    provider: dummy
    name: Bruno's bank
    options:
      sub_accounts: [cash, credit_card]
      scale: 0.6
      # the first attempt of every hour fails transiently and is retried
      flaky_attempts: 1
  - id: bruno-invest
    profile: bruno
    provider: dummy
    name: Bruno's brokerage
    options:
      sub_accounts: [stocks, crypto]
      scale: 1.4

fetch:
  timeout_s: 30
  max_attempts: 3
  backoff_s: 0
"""


STARTER_CONFIG = """\
# finbot configuration. Add profiles and linked accounts, then validate with
# `./finbotctl config check`. See README.md for every field.
fx_source: ecb

profiles:
  - id: me
    name: Me
    valuation_ccy: EUR

linked_accounts: []
"""


def init_home(paths: HomePaths, *, demo: bool) -> list[str]:
    """Create what is missing; never overwrite a config or a key. Returns what was done."""
    done: list[str] = []
    paths.home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    open_home(paths.home)
    if not paths.key_file.exists():
        init_key_file(paths.home)
        done.append(f"created the vault key {paths.key_file} (mode 0600)")
    ensure_dagster_home(paths)
    if not paths.config.exists():
        text = demo_config_text() if demo else STARTER_CONFIG
        atomic_write_bytes(paths.config, text.encode("utf-8"), FILE_MODE)
        done.append(f"wrote {'the demo' if demo else 'a starter'} config {paths.config}")
    return done
