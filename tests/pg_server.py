"""A throwaway PostgreSQL server for tests: initdb in a temporary folder, the postmaster on a loopback port (and a
unix socket in the same folder), one database per test module, ended by its PID. Skipped, saying why, where the
server binaries are missing (``.ci/run`` installs Debian's ``postgresql``; the driver is ``psycopg``, a dependency).

initdb and postgres refuse to run as root: as root they run as the ``postgres`` user through ``setpriv``, which execs
(so the PID that Popen returns is the postmaster's own). (Not a conftest.py: a second conftest module would shadow
``from conftest import ...`` in tests/.)"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port

PG_ROOT = Path("/usr/lib/postgresql")
READY_S = 60


@dataclass(frozen=True)
class PostgresServer:
    port: int
    user: str
    password: str
    pid: int

    def uri(self, database: str = "mlflow", password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql+psycopg://{self.user}:{secret}@127.0.0.1:{self.port}/{database}"


def server_binaries() -> Path | None:
    """The folder with initdb and postgres: Debian's newest version, else whatever PATH finds."""
    for folder in sorted(PG_ROOT.glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True):
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found and (Path(found).resolve().parent / "postgres").is_file() else None


def _as_server_user(root: Path) -> list[str]:
    """The command prefix that runs the server as a non-root user when this process is root, and that ends it
    (SIGINT: a fast shutdown) if the test process dies without ending it."""
    if os.getuid() != 0:
        return ["setpriv", "--pdeathsig", "INT"]
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user for initdb (it refuses root)")
    shutil.chown(root, account.pw_uid, account.pw_gid)
    return ["setpriv", "--pdeathsig", "INT", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
            "--init-groups"]


def start_server(root: Path) -> tuple[PostgresServer, subprocess.Popen]:
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, postgres); .ci/run installs Debian's postgresql")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed")
    prefix = _as_server_user(root)
    password = secrets.token_hex(8)
    (root / "pwfile").write_text(password + "\n")
    if os.getuid() == 0:
        shutil.chown(root / "pwfile", "postgres")
    subprocess.run([*prefix, str(binaries / "initdb"), "-D", str(root / "data"), "-U", "admin", "--pwfile",
                    str(root / "pwfile"), "--auth", "scram-sha-256", "--no-sync", "--encoding", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    with open(root / "server.log", "w") as log:  # the server keeps its own copy of the descriptor
        process = subprocess.Popen([*prefix, str(binaries / "postgres"), "-D", str(root / "data"), "-p", str(port),
                                    "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                   stdout=log, stderr=subprocess.STDOUT)
    server = PostgresServer(port, "admin", password, process.pid)
    _wait_ready(server, process, root)
    return server, process


def _wait_ready(server: PostgresServer, process: subprocess.Popen, root: Path) -> None:
    import psycopg

    deadline = time.monotonic() + READY_S
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                                 dbname="postgres", connect_timeout=5):
                return
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_server(process)
                raise RuntimeError(f"PostgreSQL did not start: {(root / 'server.log').read_text()[-2000:]}") from None
            time.sleep(0.3)


def create_database(server: PostgresServer, name: str) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                         dbname="postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')


def stop_server(process: subprocess.Popen) -> None:
    """Fast shutdown of the postmaster this module started (SIGINT to its PID), then wait for it."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="module", name="postgres")
def postgres_server():
    """A running server with an empty ``mlflow`` database; ended by PID after the module, its folder removed. The
    folder is a new one in the system's temporary directory, not pytest's: pytest's is private to this user, and
    as root the server runs as ``postgres``."""
    root = Path(tempfile.mkdtemp(prefix="contralord-postgres-"))
    process = None
    try:
        server, process = start_server(root)
        create_database(server, "mlflow")
        yield server
    finally:
        if process is not None:
            stop_server(process)
        shutil.rmtree(root, ignore_errors=True)
