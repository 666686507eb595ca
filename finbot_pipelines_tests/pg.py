"""A throwaway PostgreSQL server for tests, from the distribution's own binaries.

``postgres_server(tmp_dir)`` runs ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/<version>/bin`` (Debian's ``postgresql`` package, which
CI installs), listening only on 127.0.0.1 at a free port, creates one user and
one database owned by it, yields a ``PgInfo`` and always stops the server.

PostgreSQL refuses to run as root: under root the cluster is created in a
fresh directory of the system temp dir owned by the ``postgres`` OS user, and
every server command runs as that user.

``FINBOT_PG_BIN`` names another bin directory. Without any PostgreSQL binaries
the calling test is skipped, unless ``CI`` is set: CI installs PostgreSQL, so
there its absence is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

#: the OS user that owns the cluster when the tests run as root
PG_OS_USER = "postgres"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class PgInfo:
    host: str
    port: int
    user: str
    password: str
    db: str

    @property
    def url(self) -> str:
        return (
            f"postgresql://{quote(self.user)}:{quote(self.password)}"
            f"@{self.host}:{self.port}/{quote(self.db)}"
        )

    def env(self) -> dict[str, str]:
        """The FINBOT_PG_* variables deploy/dagster.yaml reads."""
        return {
            "FINBOT_PG_HOST": self.host,
            "FINBOT_PG_PORT": str(self.port),
            "FINBOT_PG_USER": self.user,
            "FINBOT_PG_PASSWORD": self.password,
            "FINBOT_PG_DB": self.db,
        }


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with initdb, else initdb on the PATH."""
    override = os.environ.get("FINBOT_PG_BIN")
    if override:
        return Path(override)
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.parent.name
        return tuple(int(p) for p in part.split(".") if p.isdigit())

    if found:
        return Path(max(found, key=version)).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Runner:
    """Runs server commands as ``postgres`` when we are root, else as ourselves."""

    def __init__(self) -> None:
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            try:
                pw = pwd.getpwnam(PG_OS_USER)
            except KeyError as exc:
                raise RuntimeError(
                    f"running as root, but there is no `{PG_OS_USER}` OS user to run "
                    "PostgreSQL as (the Debian package creates it)"
                ) from exc
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
        else:
            self.uid, self.gid = os.getuid(), os.getgid()

    def own(self, path: Path) -> None:
        if self.as_postgres:
            os.chown(path, self.uid, self.gid)

    def run(self, cmd: Sequence[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if not self.as_postgres:
            return subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        env["HOME"] = tempfile.gettempdir()
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd=tempfile.gettempdir(),
        )


def _check(result: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    if result.returncode == 0:
        return
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- server log ---\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-30:]
        )
    raise RuntimeError(
        f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}{tail}"
    )


def _stop(runner: _Runner, bin_dir: Path, data: Path) -> None:
    """pg_ctl stop -m fast; if that does not work, SIGKILL the postmaster by its PID."""
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        runner.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    if not pid_file.exists():
        return
    with contextlib.suppress(ValueError, OSError, IndexError):
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            os.kill(pid, 0)  # raises once the process is gone
            time.sleep(0.1)


def _create_user_and_db(port: int, superuser_password: str, info: PgInfo) -> None:
    import psycopg2
    from psycopg2 import sql

    con = psycopg2.connect(
        host="127.0.0.1",
        port=port,
        user=SUPERUSER,
        password=superuser_password,
        dbname="postgres",
        connect_timeout=10,
    )
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(info.user)),
                [info.password],
            )
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(info.db), sql.Identifier(info.user)
                )
            )
    finally:
        con.close()


@contextlib.contextmanager
def postgres_server(
    tmp_dir: Path,
    *,
    user: str = "finbot",
    password: str | None = None,
    db: str = "dagster",
) -> Iterator[PgInfo]:
    """Start a PostgreSQL server on 127.0.0.1 for the duration of the ``with`` block.

    Password authentication (scram-sha-256) is on for TCP, so a wrong password
    fails as it would in production.
    """
    bin_dir = find_pg_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        msg = (
            "no PostgreSQL binaries (/usr/lib/postgresql/*/bin/initdb); apt-get install postgresql"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)

    runner = _Runner()
    # The postgres user cannot reach pytest's 0700 tmp dirs: use a directory of its own.
    own_root = runner.as_postgres
    root = Path(tempfile.mkdtemp(prefix="finbot-pg-")) if own_root else Path(tmp_dir) / "pg"
    root.mkdir(parents=True, exist_ok=True)
    runner.own(root)
    data, log = root / "data", root / "server.log"
    superuser_password = secrets.token_hex(16)
    info = PgInfo("127.0.0.1", 0, user, password or secrets.token_hex(12), db)
    try:
        pwfile = root / "pwfile"
        pwfile.write_text(superuser_password + "\n")
        pwfile.chmod(0o600)
        runner.own(pwfile)
        _check(
            runner.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                timeout=120,
            ),
            "initdb",
        )
        pwfile.unlink()
        started = False
        for _ in range(3):  # the free port can be taken between choosing and binding it
            port = free_port()
            with (data / "postgresql.conf").open("a") as conf:
                conf.write(
                    "\n# finbot test server\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"port = {port}\n"
                    "unix_socket_directories = ''\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 50\n"
                )
            result = runner.run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
                timeout=90,
            )
            if result.returncode == 0:
                started = True
                break
            _stop(runner, bin_dir, data)
        if not started:
            _check(result, "pg_ctl start", log)
        info = PgInfo(info.host, port, info.user, info.password, info.db)
        _create_user_and_db(port, superuser_password, info)
        yield info
    finally:
        _stop(runner, bin_dir, data)
        if own_root:
            shutil.rmtree(root, ignore_errors=True)
