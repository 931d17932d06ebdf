"""The embedded run store: one SQLite file (``--store FILE`` or ``sqlite:///FILE``).

WAL mode and one transaction per record (``Store``): two processes writing to one file at once lose
nothing (SQLite serialises writers; we wait on the lock). A store opened read-only is opened with
``mode=ro``: a store on a read-only mount can be listed, and a mistyped --store is an error instead of
a new empty database.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from perfkit.errors import PerfkitError, UsageError
from perfkit.store import tables
from perfkit.store.base import Store


def store_file(location: str | os.PathLike) -> Path:
    """The file a path or a ``sqlite:///FILE`` URL names (``sqlite:////abs.db``: an absolute path)."""
    text = os.fspath(location)
    if isinstance(location, os.PathLike) or not text.lower().startswith("sqlite:"):
        return Path(text).expanduser()
    rest = text[len("sqlite:"):]
    if not rest.startswith("///") or len(rest) == 3:
        raise UsageError(f"a SQLite run store URL names a local file: sqlite:///relative/path.db or "
                         f"sqlite:////absolute/path.db, not {text}")
    return Path(rest[3:]).expanduser()


class SQLiteStore(Store):
    """A run history in one SQLite file."""

    name = "sqlite"
    schemes = ("sqlite",)
    dialect = tables.SQLITE

    def __init__(self, location: str | os.PathLike | None = None, *, read_only: bool = False):
        from perfkit.store.base import default_store

        self.path = store_file(location if location is not None else default_store())
        self._open(read_only)

    @property
    def location(self) -> Path:
        return self.path

    def _connect(self) -> sqlite3.Connection:
        db = self._connect_file()
        db.row_factory = sqlite3.Row
        return db

    def _connect_file(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise UsageError(f"the run store {self.path} is a folder; pass --store FILE (e.g. reports/perfkit.db)")
        if self.read_only:
            if not self.path.is_file():
                raise UsageError(f"no run store at {self.path} (check --store / $PERFKIT_STORE; `perfkit run` creates one)")
            return self._connect_read_only()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the folder of the run store {self.path}: {exc.strerror or exc}") from None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per write.
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise PerfkitError(f"cannot open the run store {self.path}: {exc}") from None
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        """``mode=ro``; a WAL store in a folder this process cannot write (a read-only mount, a
        baseline checked out read-only) cannot get its ``-shm`` index created, so it is read as
        immutable instead — safe only when no ``-wal`` file holds commits the main file lacks."""
        uri = self.path.resolve().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # connect() is lazy: open it now
            return db
        except sqlite3.OperationalError as exc:
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.is_file() and wal.stat().st_size:
                raise PerfkitError(f"cannot read the run store {self.path}: {exc} (its -wal file holds commits "
                                   "that only a process allowed to write in its folder can read)") from None
        except sqlite3.DatabaseError as exc:  # not a database at all
            raise PerfkitError(f"cannot open the run store {self.path}: {exc}") from None
        try:
            db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            raise PerfkitError(f"cannot open the run store {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def _execute(self, sql: str, args: tuple | list = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, args)  # a failed write is named by _transaction

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise PerfkitError(f"the run store {self.path} was opened read-only")
        try:
            self._db.execute("BEGIN IMMEDIATE")  # takes the write lock now: no other writer in between
        except sqlite3.OperationalError as exc:
            raise PerfkitError(self._write_failed(exc)) from None
        try:
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # e.g. disk full: one line naming the store
            self._rollback()
            raise PerfkitError(self._write_failed(exc)) from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        # SQLite has already rolled back after some errors (a full disk): ROLLBACK would then fail
        # with "no transaction is active" and hide the real error.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _write_failed(self, exc: sqlite3.Error) -> str:
        full = "full" in str(exc).lower()
        hint = f"; free some space in {self.path.parent} or pass --store elsewhere" if full else ""
        return f"cannot write to the run store {self.path}: {exc}{hint}"

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok" and super().integrity_ok()


STORE = SQLiteStore
