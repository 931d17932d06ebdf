"""Run history in SQLite.

WAL mode and one transaction per record: an interrupted run keeps every finished record, and two
processes writing to one store at once lose nothing (SQLite serialises writers; we wait on the lock).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from perfkit.env import fingerprint, fingerprint_id
from perfkit.errors import PerfkitError
from perfkit.store.schema import SCHEMA_VERSION, Kind, Record

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


def default_store_path() -> Path:
    return Path(os.environ.get("PERFKIT_STORE", DEFAULT_STORE))


def new_run_id() -> str:
    """Sortable and unique: UTC timestamp plus random suffix."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


class Store:
    """A run-history database. Cheap to open; use one per process."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per write.
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_DDL)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise PerfkitError(f"cannot open the run store {self.path}: {exc}") from exc
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, command: str | None = None, run_id: str | None = None) -> str:
        """Register a run (or re-open ``run_id`` to resume it) and return its id."""
        env = fingerprint()
        command = command if command is not None else " ".join(["perfkit", *sys.argv[1:]])
        with self._transaction() as db:
            if run_id is not None and db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone():
                db.execute("UPDATE runs SET status='running', finished=NULL WHERE id=?", (run_id,))
                return run_id
            run_id = run_id or new_run_id()
            db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?)",
                (run_id, command, time.time(), None, "running", fingerprint_id(env), json.dumps(env)),
            )
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET finished=?, status=? WHERE id=?", (time.time(), status, run_id))

    @contextmanager
    def run(self, command: str | None = None, run_id: str | None = None) -> Iterator[str]:
        """``with store.run() as run_id:`` marks the run ok, failed or interrupted at the end."""
        run_id = self.start_run(command, run_id)
        status = "failed"
        try:
            yield run_id
            status = "ok"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self.finish_run(run_id, status)

    def runs(self, limit: int | None = None) -> list[dict]:
        sql = (
            "SELECT r.*, (SELECT COUNT(*) FROM records WHERE run_id=r.id) AS records,"
            " (SELECT COUNT(*) FROM records WHERE run_id=r.id AND status='error') AS errors"
            " FROM runs r ORDER BY started DESC"
        )
        if limit:
            sql += f" LIMIT {int(limit)}"
        out = []
        for row in self._db.execute(sql):
            d = dict(row)
            d["env"] = json.loads(d["env"])
            out.append(d)
        return out

    def get_run(self, run_id: str) -> dict:
        """The run with this id; ``latest`` names the newest; a unique prefix is enough."""
        if run_id == "latest":
            row = self._db.execute("SELECT * FROM runs ORDER BY started DESC LIMIT 1").fetchone()
            if row is None:
                raise PerfkitError(f"the store {self.path} holds no runs yet")
        else:
            rows = self._db.execute("SELECT * FROM runs WHERE id LIKE ?", (run_id + "%",)).fetchall()
            if len(rows) != 1:
                what = "no run" if not rows else f"{len(rows)} runs"
                raise PerfkitError(f"{what} in {self.path} match '{run_id}' (see `perfkit runs`)")
            row = rows[0]
        d = dict(row)
        d["env"] = json.loads(d["env"])
        return d

    # -- records ----------------------------------------------------------------------------

    def add(self, record: Record, run_id: str | None = None) -> Record:
        """Validate and write one record in its own transaction."""
        record.run_id = run_id or record.run_id
        if record.run_id is None:
            raise ValueError("a record needs a run id")
        if not record.env:
            record.env = fingerprint()
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

    def records(self, run_id: str | None = None, kind: Kind | str | None = None, model: str | None = None) -> list[Record]:
        sql, args = "SELECT * FROM records WHERE 1=1", []
        for column, value in (("run_id", run_id), ("kind", kind), ("model", model)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(str(value))
        out = []
        for row in self._db.execute(sql + " ORDER BY id", args):
            d = dict(row)
            d.pop("id")
            d["metrics"] = json.loads(d["metrics"])
            d["env"] = json.loads(d["env"])
            out.append(Record.from_dict(d))
        return out

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
