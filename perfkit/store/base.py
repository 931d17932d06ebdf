"""The run store: one interface over SQLite and PostgreSQL, chosen by the location's URL.

``Store(location)`` opens the store a location names: a file path or ``sqlite:///FILE`` (SQLite, the
embedded default; ``sqlite:////abs/path.db`` for an absolute path, as in SQLAlchemy), or
``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` (also ``postgres://``; needs ``perfkit[postgres]``).
Nothing else in perfkit knows which database it writes to: every query lives here, written once
(``?`` placeholders; each backend runs it in its own dialect), and the backends only connect,
run statements, open transactions and say what went wrong.

One transaction per record: an interrupted run keeps every finished record, and many writers at once
lose nothing. A run remembers the process that runs it (host and pid): a run still "running" whose
process is gone from this host was killed, and is shown (and, when the store is writable, stored) as
interrupted; one whose process is still alive, or that runs on another host (whose processes this host
cannot see), cannot be resumed. A record that cannot be read (metrics that are not a JSON object) is
skipped with a warning naming it, or refused by readers whose verdict it could change (``strict``).
Records re-measured by a resumed run are kept but marked ``superseded``; every reader sees only the
current ones.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from perfkit.env import fingerprint, fingerprint_id
from perfkit.errors import PerfkitError, UsageError
from perfkit.portable import pid_alive
from perfkit.registry import Registry
from perfkit.results import Kind
from perfkit.store import tables
from perfkit.store.schema import Record

DEFAULT_STORE = Path("reports") / "perfkit.db"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
FORMS = "a file path, sqlite:///FILE or postgresql://USER@HOST:PORT/DB"


def default_store() -> str | Path:
    """``$PERFKIT_STORE`` (a path or a URL), else reports/perfkit.db."""
    return os.environ.get("PERFKIT_STORE") or DEFAULT_STORE


def _check(new: type, others: list[type]) -> None:
    if not issubclass(new, Store):
        raise ValueError(f"a run store is a perfkit.store.Store subclass, got {new.__name__}")
    taken = sorted({s for other in others for s in other.schemes} & set(new.schemes))
    if taken:
        raise ValueError(f"the run store URL scheme(s) {taken} are already taken")


# Each store module defines its Store subclass as STORE; its ``schemes`` are the URL schemes it opens.
STORES: Registry[type] = Registry("run store", type, ("perfkit.store.sqlite", "perfkit.store.postgres"), "STORE",
                                  check=_check)


def backend_for(location: str | os.PathLike) -> type["Store"]:
    """The store class a location names by its URL scheme (a path without one is SQLite's)."""
    found = None if isinstance(location, os.PathLike) else _SCHEME.match(str(location))
    scheme = found.group(1).lower() if found else "sqlite"
    for backend in STORES:
        if scheme in backend.schemes:
            return backend
    raise UsageError(f"unknown run store scheme '{scheme}://' in {redact(str(location))}: use {FORMS}")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it hidden (URLs are printed in messages and tables,
    and a run keeps its command line)."""
    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@", r"\1:***@", text)


def new_run_id() -> str:
    """Sortable: UTC timestamp plus a random suffix (``start_run`` draws again on the rare collision)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def _refuse_if_running(run_id: str, status: str, host: str | None, pid: int | None) -> None:
    """Resuming a run whose process is still at work would record every key twice (both processes
    finish ok, and reports show one of each pair): refuse, naming that process."""
    if status != "running" or host is None:  # a run from before runs recorded their process: nothing to ask
        return
    if host == platform.node():
        if pid_alive(pid):
            raise UsageError(f"run {run_id} is still running (host {host}, pid {pid}): wait for it to finish or "
                             "stop it before --resume")
        return
    # Another host's process cannot be asked whether it lives. Refusing is the safe side: taking over a
    # run that is still measuring there corrupts it for good (duplicate records), while a run that died
    # there loses nothing by waiting — resumed on its own host, perfkit sees the pid gone and takes it over.
    raise UsageError(f"run {run_id} is still marked running on host {host} (pid {pid}), whose process this host "
                     f"cannot check: resume it on {host}, or start a new run")


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


def _record(row: dict) -> Record:
    """A ``records`` row as a Record; ValueError naming what is wrong with it."""
    row.pop("id")
    row.pop("superseded", None)
    for column in ("metrics", "env"):
        try:
            value = json.loads(row[column])
        except (TypeError, ValueError):
            raise ValueError(f"its {column} are not JSON ({str(row[column])[:40]!r})") from None
        if not isinstance(value, dict):
            raise ValueError(f"its {column} are {_JSON_TYPES.get(type(value), 'not an object')} "
                             f"({row[column][:40]!r}), not a JSON object")
        row[column] = value
    return Record.from_dict(row)


_RECORD_COLUMNS = ("run_id", "kind", "model", "runtime", "precision", "batch", "weights", "device", "status",
                   "error", "created", "schema_version", "metrics", "env")
_INSERT_RECORD = (f"INSERT INTO records ({', '.join(_RECORD_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(_RECORD_COLUMNS))})")


class Store:
    """A run-history database. Cheap to open; use one per process.

    ``Store(location, read_only=...)`` returns the backend the location names (``SQLiteStore``,
    ``PostgresStore``); its public methods are the interface. Readers (runs, report, select, regress)
    open it read-only: a mistyped location is an error instead of a new empty store.
    """

    # What a backend sets: its registry name, the URL schemes it opens, the database's own dialect, and
    # what locks a run row while it is being resumed.
    name: str
    schemes: tuple[str, ...]
    dialect: tables.Dialect
    lock_row = ""  # appended to the SELECT that reads a run about to be taken over
    path: Path | None = None  # the local file, for a file store

    def __new__(cls, location: str | os.PathLike | None = None, *, read_only: bool = False):
        if cls is Store:
            cls = backend_for(default_store() if location is None else location)
        return super().__new__(cls)

    def _open(self, read_only: bool) -> None:
        """What each backend's constructor ends with, once it knows where to connect: connect, then read (a
        writer: create or migrate) the tables, closing the connection again if that fails."""
        self.read_only = read_only
        self._warned: set[str] = set()  # unreadable records already named on stderr (each once)
        self._db = self._connect()
        try:
            self._open_tables()
        except BaseException:
            self._db.close()
            raise

    # -- what each backend implements ---------------------------------------------------------

    @property
    def location(self) -> Path | str:
        """Where the records are kept: the file, or the URL without its password."""
        raise NotImplementedError

    def _connect(self):
        """A connection whose rows are read by column name; one line naming the store when it cannot be had."""
        raise NotImplementedError

    def _execute(self, sql: str, args: tuple | list = ()):
        """Run one statement (``?`` placeholders); a cursor whose rows are read by column name."""
        raise NotImplementedError

    def _transaction(self):
        """A context manager (yielding the connection): the statements inside commit together or not at all."""
        raise NotImplementedError

    def _columns(self, table: str) -> set[str]:
        raise NotImplementedError

    def _lock_schema(self) -> None:
        """Inside the schema transaction: keep other processes from creating or migrating at once."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the versioned tables --------------------------------------------------------------

    def _stored_version(self) -> int | None:
        columns = {table: self._columns(table) for table in tables.TABLES}
        stamped = None
        if "value" in columns["meta"]:
            row = self._execute("SELECT value FROM meta WHERE key='store_version'").fetchone()
            stamped = row["value"] if row else None
        try:
            return tables.version_of(columns, stamped)
        except ValueError as exc:
            raise PerfkitError(f"{self.location} is not a run store perfkit can read: {exc}") from None

    def _open_tables(self) -> None:
        """Read the layout version: refuse a newer one, create or migrate (writers) in one transaction."""
        version = self._stored_version()
        if version is not None and version > tables.STORE_VERSION:
            raise UsageError(f"the run store {self.location} has table layout {version}, newer than this perfkit "
                             f"reads ({tables.STORE_VERSION}): upgrade perfkit (pip install -U perfkit)")
        if not self.read_only and version != tables.STORE_VERSION:
            doing = "creating its tables" if version is None else f"migrating it from layout {version}"
            try:
                with self._transaction():
                    self._lock_schema()
                    self._migrate(self._stored_version())  # again: another process may have done it meanwhile
            except PerfkitError as exc:
                raise type(exc)(f"{exc}; nothing was changed while {doing}") from None
        if not self._columns("records"):
            raise PerfkitError(f"{self.location} is not a perfkit run store (it has no records table)")
        # A store written before records could be superseded, opened read-only (so not migrated):
        # every record in it is current.
        self._current = "superseded=0" if "superseded" in self._columns("records") else "1=1"

    def _migrate(self, version: int | None) -> None:
        if version is not None and version >= tables.STORE_VERSION:  # another process got there first
            return
        if version is None:  # a new store
            for statement in self.dialect.create():
                self._execute(statement)
        else:
            for number in range(version + 1, tables.STORE_VERSION + 1):
                for table, column, declaration in tables.MIGRATIONS.get(number, ()):
                    if column not in self._columns(table):
                        self._execute(f"ALTER TABLE {table} ADD COLUMN {column} {self.dialect.column(declaration)}")
        self._execute("DELETE FROM meta WHERE key='store_version'")
        self._execute("INSERT INTO meta (key, value) VALUES ('store_version', ?)", (str(tables.STORE_VERSION),))

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, command: str | None = None, run_id: str | None = None, device: str = "cpu",
                  env: dict | None = None) -> str:
        """Register a run (or re-open ``run_id`` to resume it) and return its id; ``env`` is the
        measuring side's fingerprint (``perfkit.record.environment``), else the core one of ``device``."""
        env = env if env is not None else fingerprint(device)
        command = redact(command if command is not None else " ".join(["perfkit", *sys.argv[1:]]))
        me = (platform.node(), os.getpid())
        row = (command, time.time(), None, "running", fingerprint_id(env), json.dumps(env), *me)
        insert = ("INSERT INTO runs (id, command, started, finished, status, env_id, env, host, pid) "
                  "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING")
        while run_id is None:  # a fresh id: draw again in the (rare) case another writer took it
            candidate = new_run_id()
            with self._transaction():
                if self._execute(insert, (candidate, *row)).rowcount == 1:
                    return candidate
        # One transaction: of two processes resuming one run, the second sees the first's claim (the
        # row is locked where the database locks rows) and is refused.
        with self._transaction():
            if self._execute(insert, (run_id, *row)).rowcount == 1:
                return run_id
            found = self._execute(f"SELECT status, host, pid FROM runs WHERE id=?{self.lock_row}", (run_id,)).fetchone()
            _refuse_if_running(run_id, found["status"], found["host"], found["pid"])
            self._execute("UPDATE runs SET status='running', finished=NULL, host=?, pid=? WHERE id=?", (*me, run_id))
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        with self._transaction():
            self._execute("UPDATE runs SET finished=?, status=? WHERE id=?", (time.time(), status, run_id))

    @contextmanager
    def run(self, command: str | None = None, run_id: str | None = None, device: str = "cpu") -> Iterator[str]:
        """``with store.run() as run_id:`` marks the run ok, failed or interrupted at the end."""
        run_id = self.start_run(command, run_id, device)
        status = "failed"
        try:
            yield run_id
            status = "ok"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self.finish_run(run_id, status)

    def _run_dict(self, row) -> dict:
        d = dict(row)
        d["env"] = json.loads(d["env"])
        if d["status"] == "running" and d.get("host") == platform.node() and not pid_alive(d.get("pid")):
            d["status"] = "interrupted"  # killed without a chance to say so (SIGKILL, power loss)
            if not self.read_only:  # only if still that dead process's: another may have resumed it since
                with self._transaction():
                    self._execute("UPDATE runs SET status='interrupted' WHERE id=? AND status='running' AND host=? "
                                  "AND pid=?", (d["id"], d["host"], d["pid"]))
        return d

    def runs(self, limit: int | None = None) -> list[dict]:
        sql = (
            f"SELECT r.*, (SELECT COUNT(*) FROM records WHERE run_id=r.id AND {self._current}) AS records,"
            f" (SELECT COUNT(*) FROM records WHERE run_id=r.id AND status='error' AND {self._current}) AS errors"
            " FROM runs r ORDER BY started DESC"
        )
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._run_dict(row) for row in self._execute(sql).fetchall()]

    def get_run(self, run_id: str) -> dict:
        """The run with this id; ``latest`` names the newest; a unique prefix is enough."""
        if run_id == "latest":
            row = self._execute("SELECT * FROM runs ORDER BY started DESC LIMIT 1").fetchone()
            if row is None:
                raise UsageError(f"the store {self.location} holds no runs yet")
        else:
            rows = self._execute("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\'",
                                 (run_id.replace("%", "\\%").replace("_", "\\_") + "%",)).fetchall()
            if len(rows) != 1:
                what = "no run" if not rows else f"{len(rows)} runs"
                raise UsageError(f"{what} in {self.location} match '{run_id}' (see `perfkit runs`)")
            row = rows[0]
        return self._run_dict(row)

    def resumable(self, run_id: str) -> str:
        """The id of the run ``run_id`` names (as ``get_run``), refused while its process is still at work."""
        run = self.get_run(run_id)
        _refuse_if_running(run["id"], run["status"], run.get("host"), run.get("pid"))
        return run["id"]

    # -- records ----------------------------------------------------------------------------

    def add(self, record: Record, run_id: str | None = None) -> Record:
        """Validate and write one record in its own transaction."""
        record.run_id = run_id or record.run_id
        if record.run_id is None:
            raise ValueError("a record needs a run id")
        if not record.env:
            record.env = fingerprint(record.device or "cpu")
        record.validate()
        values = (record.run_id, str(record.kind), record.model, record.runtime, record.precision, record.batch,
                  record.weights, record.device, record.status, record.error, record.created,
                  record.schema_version, json.dumps(record.metrics), json.dumps(record.env))
        with self._transaction():
            self._execute(_INSERT_RECORD, values)
        return record

    def records(self, run_id: str | None = None, kind: Kind | str | None = None, model: str | None = None,
                *, include_superseded: bool = False, strict: bool = False) -> list[Record]:
        """The matching records, oldest first. One that cannot be read (its metrics are not a JSON
        object: edited by hand, or a bug) is skipped with one warning line on stderr naming it; with
        ``strict`` (a reader whose verdict a missing record would change) it is an error naming it."""
        out = []
        for record, problem in self._read(run_id, kind, model, include_superseded):
            if problem is None:
                out.append(record)
            elif strict:
                raise PerfkitError(f"{problem}: nothing is judged without it; fix or delete that row of {self.location}")
            elif problem not in self._warned:
                self._warned.add(problem)
                print(f"warning: {problem}; skipped", file=sys.stderr)
        return out

    def unreadable(self, run_id: str) -> list[str]:
        """What ``records(run_id)`` skips: one line for each current record of the run that cannot be read."""
        return [problem for _, problem in self._read(run_id, None, None, False) if problem is not None]

    def _read(self, run_id, kind, model, include_superseded: bool) -> Iterator[tuple[Record | None, str | None]]:
        sql, args = "SELECT * FROM records WHERE 1=1", []
        for column, value in (("run_id", run_id), ("kind", kind), ("model", model)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(str(value))
        if not include_superseded:
            sql += f" AND {self._current}"
        for row in self._execute(sql + " ORDER BY id", args).fetchall():
            try:
                yield _record(dict(row)), None
            except (TypeError, ValueError) as exc:
                where = " ".join(str(row[c]) for c in ("kind", "model", "runtime", "precision") if row[c] is not None)
                yield None, f"record #{row['id']} ({where}) of run {row['run_id']} cannot be read: {exc}"

    def supersede(self, run_id: str, model: str, kinds: Iterable[Kind | str]) -> int:
        """Mark the current records of these kinds for ``model`` in the run superseded (a re-run replaces them)."""
        kinds = [str(k) for k in kinds]
        with self._transaction():
            cur = self._execute(f"UPDATE records SET superseded=1 WHERE run_id=? AND model=? AND superseded=0 AND kind "
                                f"IN ({','.join('?' * len(kinds))})", (run_id, model, *kinds))
            return cur.rowcount

    def finished(self, run_id: str, model: str, kinds: Iterable[Kind | str], expected: set[tuple]) -> bool:
        """True when the run holds an ok current record for every expected key, and no error, of these kinds."""
        records = [r for k in kinds for r in self.records(run_id, kind=k, model=model)]
        ok = {r.key for r in records if r.status == "ok"}
        return bool(expected) and expected <= ok and all(r.status == "ok" for r in records)

    def integrity_ok(self) -> bool:
        """Whether every record belongs to a run that exists (the backends add their own checks)."""
        return self._execute("SELECT COUNT(*) AS n FROM records WHERE run_id NOT IN (SELECT id FROM runs)"
                             ).fetchone()["n"] == 0
