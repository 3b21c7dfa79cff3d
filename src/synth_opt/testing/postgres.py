"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` in a temporary directory, ``pg_ctl`` on a
loopback port, one database, everything removed on exit.

    with throwaway_postgres() as server:
        queue = open_queue(server.url)
        ...
        server.restart()      # the same data, the same port: clients see their connections drop

The server binaries come from ``$SYNTH_OPT_PG_BIN``, the ``PATH``, or Debian's ``/usr/lib/postgresql/<n>/bin``;
none found is a :class:`PostgresUnavailableError` that says how to install them. ``initdb`` refuses to run as root,
so as root the cluster belongs to the ``postgres`` user (``runuser``) in a directory that user owns. Durability is
off (``fsync``, ``synchronous_commit``: a test's server dies with the test) unless ``durable=True`` (a benchmark
that compares it with SQLite's ``synchronous=FULL``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailableError", "find_pg_bin", "throwaway_postgres"]

DATABASE = "synth_opt"
USER = "synth_opt"
START_TIMEOUT_SECONDS = 30.0


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server binaries here (or they failed to start a cluster)."""


def find_pg_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates = [os.environ.get("SYNTH_OPT_PG_BIN", "")]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in filter(None, candidates):
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    raise PostgresUnavailableError(
        "no PostgreSQL server binaries (initdb, pg_ctl) found on PATH or in /usr/lib/postgresql/*/bin; install them "
        "(Debian: apt-get install postgresql) or set SYNTH_OPT_PG_BIN to their directory"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway cluster; ``url`` names its database (``postgresql://synth_opt@127.0.0.1:<port>/...``)."""

    bin_dir: Path
    data_dir: Path
    port: int
    run_as: str | None
    durable: bool = False

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / tool), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if check and done.returncode != 0:
            raise PostgresUnavailableError(f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = str(self.data_dir / "server.log")
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", log, "-w", "-t", "30", "start")
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    message = f"PostgreSQL did not listen on port {self.port}; see {log}"
                    raise PostgresUnavailableError(message) from None
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect clients and shut down cleanly; ``immediate``: as a crash would."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def database_url(self, name: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def create_database(self) -> str:
        """A new empty database (a test's own store); its URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database :meth:`create_database` made, closing whatever connections are still open on it."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def restart(self, mode: str = "fast") -> None:
        """Stop (every client connection drops) and start again on the same port with the same data."""
        self.stop(mode)
        self.start()


@contextmanager
def throwaway_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    """Start a cluster with one database (:data:`DATABASE`, owned by :data:`USER`, trust authentication on
    loopback); stop it and delete its files on exit."""
    bin_dir = find_pg_bin()
    run_as = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="synth-opt-pg-"))
    data_dir = root / "data"
    if run_as is not None:
        shutil.chown(root, user=run_as)
        os.chmod(root, 0o700)
    server = PostgresServer(bin_dir, data_dir, _free_port(), run_as, durable)
    try:
        server._run("initdb", "-D", str(data_dir), "-U", USER, "-A", "trust", "--no-sync", "-E", "UTF8")
        server.start()
        try:
            server._run("createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", USER, DATABASE)
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
