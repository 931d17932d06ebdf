"""Run history in SQLite.

WAL mode and one transaction per record: an interrupted run keeps every finished record, and two
processes writing to one store at once lose nothing (SQLite serialises writers; we wait on the lock).
Commands that only read (runs, report, select, regress) open the store read-only: a store on a
read-only mount can be listed, and a mistyped --store is an error instead of a new empty database.

A run remembers the process that runs it (host and pid): a run still "running" whose process is
gone from this host was killed, and is shown (and, when the store is writable, stored) as interrupted;
one whose process is still alive (or that runs on another host) cannot be resumed.
A record that cannot be read (metrics that are not a JSON object) is skipped with a warning naming
it, or refused by readers whose verdict it could change (``strict``).
Records re-measured by a resumed run are kept but marked ``superseded``; every reader sees only the
current ones.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from perfkit.env import fingerprint, fingerprint_id
from perfkit.errors import PerfkitError, UsageError
from perfkit.portable import pid_alive
from perfkit.results import Kind
from perfkit.store.schema import SCHEMA_VERSION, Record

DEFAULT_STORE = Path("reports") / "perfkit.db"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,          -- running, ok, failed, interrupted
    env_id TEXT NOT NULL,
    env TEXT NOT NULL              -- JSON fingerprint
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    runtime TEXT,
    precision TEXT,
    batch INTEGER,
    weights TEXT,
    device TEXT,
    status TEXT NOT NULL,
    error TEXT,
    created REAL NOT NULL,
    schema_version INTEGER NOT NULL,
    metrics TEXT NOT NULL,         -- JSON object of raw numbers
    env TEXT NOT NULL              -- JSON fingerprint
);
CREATE INDEX IF NOT EXISTS records_run ON records(run_id);
"""
# Columns added after the first release (stores created before them are migrated on open).
_ADDED = (("runs", "host", "TEXT"), ("runs", "pid", "INTEGER"), ("records", "superseded", "INTEGER NOT NULL DEFAULT 0"))


def default_store_path() -> Path:
    return Path(os.environ.get("PERFKIT_STORE", DEFAULT_STORE))


def new_run_id() -> str:
    """Sortable and unique: UTC timestamp plus random suffix."""
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


class Store:
    """A run-history database. Cheap to open; use one per process."""

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False):
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.read_only = read_only
        self._warned: set[str] = set()  # unreadable records already named on stderr (each once)
        self._db = self._connect()
        self._db.row_factory = sqlite3.Row
        # A store written before records could be superseded, opened read-only (so not migrated):
        # every record in it is current.
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(records)")}
        if not columns:
            self._db.close()
            raise PerfkitError(f"{self.path} is not a perfkit run store (it has no records table)")
        self._current = "superseded=0" if "superseded" in columns else "1=1"

    def _connect(self) -> sqlite3.Connection:
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
            db.executescript(_DDL)
            for table, column, decl in _ADDED:
                if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
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

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise PerfkitError(f"the run store {self.path} was opened read-only")
        try:
            self._db.execute("BEGIN IMMEDIATE")
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

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, command: str | None = None, run_id: str | None = None, device: str = "cpu",
                  env: dict | None = None) -> str:
        """Register a run (or re-open ``run_id`` to resume it) and return its id; ``env`` is the
        measuring side's fingerprint (``perfkit.record.environment``), else the core one of ``device``."""
        env = env if env is not None else fingerprint(device)
        command = command if command is not None else " ".join(["perfkit", *sys.argv[1:]])
        me = (platform.node(), os.getpid())
        with self._transaction() as db:  # one transaction: two resumes of one run cannot both take it over
            row = db.execute("SELECT status, host, pid FROM runs WHERE id=?", (run_id,)).fetchone() if run_id else None
            if row is not None:
                _refuse_if_running(run_id, *row)
                db.execute("UPDATE runs SET status='running', finished=NULL, host=?, pid=? WHERE id=?", (*me, run_id))
                return run_id
            run_id = run_id or new_run_id()
            db.execute("INSERT INTO runs (id, command, started, finished, status, env_id, env, host, pid) "
                       "VALUES (?,?,?,?,?,?,?,?,?)",
                       (run_id, command, time.time(), None, "running", fingerprint_id(env), json.dumps(env), *me))
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET finished=?, status=? WHERE id=?", (time.time(), status, run_id))

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
            if not self.read_only:
                with self._transaction() as db:
                    db.execute("UPDATE runs SET status='interrupted' WHERE id=? AND status='running'", (d["id"],))
        return d

    def runs(self, limit: int | None = None) -> list[dict]:
        sql = (
            f"SELECT r.*, (SELECT COUNT(*) FROM records WHERE run_id=r.id AND {self._current}) AS records,"
            f" (SELECT COUNT(*) FROM records WHERE run_id=r.id AND status='error' AND {self._current}) AS errors"
            " FROM runs r ORDER BY started DESC"
        )
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._run_dict(row) for row in self._db.execute(sql).fetchall()]

    def get_run(self, run_id: str) -> dict:
        """The run with this id; ``latest`` names the newest; a unique prefix is enough."""
        if run_id == "latest":
            row = self._db.execute("SELECT * FROM runs ORDER BY started DESC LIMIT 1").fetchone()
            if row is None:
                raise UsageError(f"the store {self.path} holds no runs yet")
        else:
            rows = self._db.execute("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\'",
                                    (run_id.replace("%", "\\%").replace("_", "\\_") + "%",)).fetchall()
            if len(rows) != 1:
                what = "no run" if not rows else f"{len(rows)} runs"
                raise UsageError(f"{what} in {self.path} match '{run_id}' (see `perfkit runs`)")
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
        with self._transaction() as db:
            db.execute(
                "INSERT INTO records (run_id, kind, model, runtime, precision, batch, weights, device,"
                " status, error, created, schema_version, metrics, env) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.run_id, str(record.kind), record.model, record.runtime, record.precision,
                    record.batch, record.weights, record.device, record.status, record.error,
                    record.created, record.schema_version, json.dumps(record.metrics), json.dumps(record.env),
                ),
            )
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
                raise PerfkitError(f"{problem}: nothing is judged without it; fix or delete that row of {self.path}")
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
        for row in self._db.execute(sql + " ORDER BY id", args).fetchall():
            try:
                yield _record(dict(row)), None
            except (TypeError, ValueError) as exc:
                where = " ".join(str(row[c]) for c in ("kind", "model", "runtime", "precision") if row[c] is not None)
                yield None, f"record #{row['id']} ({where}) of run {row['run_id']} cannot be read: {exc}"

    def supersede(self, run_id: str, model: str, kinds: Iterable[Kind | str]) -> int:
        """Mark the current records of these kinds for ``model`` in the run superseded (a re-run replaces them)."""
        kinds = [str(k) for k in kinds]
        with self._transaction() as db:
            cur = db.execute(f"UPDATE records SET superseded=1 WHERE run_id=? AND model=? AND superseded=0 AND kind IN "
                             f"({','.join('?' * len(kinds))})", (run_id, model, *kinds))
            return cur.rowcount

    def finished(self, run_id: str, model: str, kinds: Iterable[Kind | str], expected: set[tuple]) -> bool:
        """True when the run holds an ok current record for every expected key, and no error, of these kinds."""
        records = [r for k in kinds for r in self.records(run_id, kind=k, model=model)]
        ok = {r.key for r in records if r.status == "ok"}
        return bool(expected) and expected <= ok and all(r.status == "ok" for r in records)

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
