"""A real PostgreSQL server for the store tests, started from the installed binaries.

``initdb`` + ``pg_ctl`` in a temporary folder, listening on a free loopback port; stopped at the end of
the session. initdb refuses to run as root: as root (the test machines), the server runs as the
``postgres`` OS user (``runuser``). Tests skip, saying why, where psycopg, the server binaries or that
user are missing. Each test gets its own database (``pg_url``). Authentication: trust on 127.0.0.1,
except for the role ``pw_user`` (password ``right``), which must give its password.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from itertools import count
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("PERFKIT_PG_BIN", "/usr/lib/postgresql/15/bin"))
_HBA = """\
local all all trust
host all pw_user 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in its own folder: ``start``, ``stop`` (``immediate``: a crash), ``url``."""

    def __init__(self):
        self.bin = PG_BIN if (PG_BIN / "initdb").is_file() else None
        if self.bin is None and shutil.which("initdb"):
            self.bin = Path(shutil.which("initdb")).parent
        if self.bin is None:
            pytest.skip(f"no PostgreSQL server binaries (initdb in {PG_BIN} or on PATH; set PERFKIT_PG_BIN)")
        self.prefix: list[str] = []
        owner = None
        if os.geteuid() == 0:  # initdb refuses root
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' OS user to run the server as")
            if shutil.which("runuser") is None:
                pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.folder = Path(tempfile.mkdtemp(prefix="perfkit-pg-"))
        if owner is not None:
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self.data = self.folder / "data"
        self.port = _free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        (self.data / "pg_hba.conf").write_text(_HBA)

    def _run(self, tool: str, *args: str) -> None:
        out = subprocess.run([*self.prefix, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            if "runuser" in (out.stderr or "") and self.prefix:
                pytest.skip(f"cannot switch to the postgres user: {out.stderr.strip()}")
            raise RuntimeError(f"{tool} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
                   "-c max_connections=60")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-t", "60", "-o", options,
                  "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def url(self, db: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def sql(self, *statements: str, db: str = "postgres") -> list:
        """Run statements as the superuser (autocommit); the rows of the last one that returns any."""
        import psycopg

        rows = []
        with psycopg.connect(self.url(db), autocommit=True) as conn:
            for statement in statements:
                cur = conn.execute(statement)
                if cur.description:
                    rows = cur.fetchall()
        return rows

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _started() -> PostgresServer:
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'perfkit[postgres]')")
    server = PostgresServer()
    for attempt in range(3):  # the free port may be taken between choosing and binding it
        try:
            server.start()
            return server
        except RuntimeError:
            server.port = _free_port()
    raise RuntimeError(f"PostgreSQL did not start in 3 tries; its log (kept): {server.folder / 'log'}")


@pytest.fixture(scope="session")
def postgres():
    """The session's running server (skips where none can be started)."""
    server = _started()
    server.sql("CREATE ROLE pw_user LOGIN PASSWORD 'right'", "CREATE ROLE noperm LOGIN")
    yield server
    server.stop("immediate")  # a throwaway cluster: nothing to checkpoint
    server.remove()


@pytest.fixture
def own_postgres():
    """A server of the test's own, to kill (``stop("immediate")``) and start again."""
    server = _started()
    yield server
    try:
        server.stop("immediate")
    except RuntimeError:
        pass  # already stopped by the test
    server.remove()


_databases = count()


@pytest.fixture
def pg_url(postgres) -> str:
    """A fresh, empty database of the session's server (trust auth, superuser)."""
    name = f"t{os.getpid()}_{next(_databases)}_{int(time.time() * 1000) % 100000}"
    postgres.sql(f"CREATE DATABASE {name}")
    return postgres.url(name)


@pytest.fixture
def first_release_tables():
    """``first_release_tables(dialect)``: the statements that made a store of the first release (layout 1:
    the current tables without the columns later versions added)."""
    from perfkit.store import tables

    def statements(dialect) -> list[str]:
        added = {(table, column) for columns in tables.MIGRATIONS.values() for table, column, _ in columns}
        return [f"CREATE TABLE {table} ("
                + ", ".join(f"{name} {dialect.column(decl)}" for name, decl in columns if (table, name) not in added)
                + ")" for table, columns in tables.TABLES.items()]

    return statements
