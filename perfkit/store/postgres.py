"""A run store shared by many machines: PostgreSQL (``--store postgresql://USER[:PW]@HOST:PORT/DB``).

psycopg 3 (``pip install 'perfkit[postgres]'``), imported only when a postgresql:// store is opened.
The tables, queries and version checks are ``Store``'s, the same as SQLite's; this module connects,
runs statements in PostgreSQL's dialect and says what went wrong in one line: an unreachable server,
a wrong password or a database without permission to create the tables are bad input (exit 2); a
server lost in the middle of a run ends it (exit 1), keeping every record committed before.

Many writers at once: each record is one transaction; a new run id is inserted or drawn again, never
overwritten; a run being resumed is read ``FOR UPDATE``, so two processes cannot both take it over;
creating or migrating the tables holds an advisory lock, so concurrent first opens do not race.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager

from perfkit.deps import require
from perfkit.errors import PerfkitError, StoreError, UsageError
from perfkit.store import tables
from perfkit.store.base import Store, redact

_SCHEMA_LOCK = 0x7065726B  # pg_advisory_xact_lock key of perfkit's table creation and migrations
# Unless the URL says otherwise: give up connecting after 10 s, and notice a dead network in about a
# minute (TCP keepalives) instead of waiting on a write forever.
_CONNECT_DEFAULTS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                     "keepalives_count": 3}


@functools.lru_cache(maxsize=256)
def _dialect(sql: str) -> str:
    """``Store``'s ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _one_line(exc: BaseException) -> str:
    """The server's own message (without the statement it quotes), else psycopg's, on one line."""
    diag = getattr(exc, "diag", None)
    return re.sub(r"\s+", " ", (diag and diag.message_primary) or str(exc)).strip()


class PostgresStore(Store):
    """A run history in a PostgreSQL database (the tables are created on first write)."""

    name = "postgresql"
    schemes = ("postgresql", "postgres")
    dialect = tables.POSTGRES
    lock_row = " FOR UPDATE"

    def __init__(self, location: str, *, read_only: bool = False):
        self._psycopg = require("psycopg", extra="postgres", why="a postgresql:// run store")
        self.url = str(location)
        self._open(read_only)

    @property
    def location(self) -> str:
        return redact(self.url)

    def _connect(self):
        psycopg = self._psycopg
        from psycopg.rows import dict_row

        try:
            given = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.Error as exc:
            raise UsageError(f"cannot read the run store URL {self.location}: {_one_line(exc)}") from None
        options = {k: v for k, v in _CONNECT_DEFAULTS.items() if k not in given}
        if self.read_only:  # a reader cannot change the history, whatever its grants
            options["options"] = f"{given.get('options', '')} -c default_transaction_read_only=on".strip()
        try:
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, application_name="perfkit",
                                   **options)
        except psycopg.Error as exc:
            raise UsageError(f"cannot connect to the run store {self.location}: {_one_line(exc)}") from None

    def close(self) -> None:
        self._db.close()

    def _failed(self, exc: Exception) -> PerfkitError:
        """One line for a failure of the database: input (permission) or the store lost mid-run."""
        errors = self._psycopg.errors
        if isinstance(exc, errors.InsufficientPrivilege):
            return UsageError(f"no permission in the run store {self.location}: {_one_line(exc)} (grant it, or "
                              "have the database's owner create the tables: one command that records, run once)")
        if isinstance(exc, (self._psycopg.OperationalError, self._psycopg.InterfaceError)) or self._db.broken:
            return StoreError(f"lost the run store {self.location}: {_one_line(exc)}; the records committed before "
                              "are kept (resume the run with --resume when the server is back)")
        return StoreError(f"the run store {self.location} failed: {_one_line(exc)}")

    def _execute(self, sql: str, args: tuple | list = ()):
        try:
            return self._db.execute(_dialect(sql), args)
        except self._psycopg.Error as exc:
            raise self._failed(exc) from None

    def _columns(self, table: str) -> set[str]:
        rows = self._execute("SELECT column_name FROM information_schema.columns "
                             "WHERE table_schema = current_schema() AND table_name = ?", (table,)).fetchall()
        return {row["column_name"] for row in rows}

    def _lock_schema(self) -> None:
        self._execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))

    @contextmanager
    def _transaction(self) -> Iterator:
        if self.read_only:
            raise PerfkitError(f"the run store {self.location} was opened read-only")
        try:
            with self._db.transaction():
                yield self._db
        except self._psycopg.Error as exc:
            raise self._failed(exc) from None


STORE = PostgresStore
