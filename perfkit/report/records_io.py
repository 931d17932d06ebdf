"""Export a run's records to JSON, and read an exported JSON back (a ``regress`` baseline).

The JSON file holds the run and every record exactly as stored, so a baseline kept in git compares
like a run in the store. (The CSV, one row per candidate, is ``perfkit.report.candidates``.)
"""

from __future__ import annotations

import json
from pathlib import Path

from perfkit.errors import PerfkitError
from perfkit.report.output import check_writable, write_text
from perfkit.report.rows import load_run
from perfkit.store import Record, Store

EXPORT_FORMAT = "perfkit-run-records"
EXPORT_VERSION = 1


def export_payload(store: Store, run_id: str) -> dict:
    """The run and all its records as one JSON-able dict (what ``write_json`` writes)."""
    run, records = load_run(store, run_id)
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "run": run, "records": [r.to_dict() for r in records]}


def write_json(store: Store, run_id: str, path: str | Path, flag: str = "--json-out") -> Path:
    check_writable(path, flag)
    payload = export_payload(store, run_id)
    return write_text(path, json.dumps(payload, indent=1, default=str) + "\n", flag)


def describe(index: int, record: Record) -> str:
    """``#index, kind model runtime precision batch N``: which record of a file or run is meant."""
    batch = None if record.batch is None else f"batch {record.batch}"
    named = (record.kind, record.model, record.runtime, record.precision, batch)
    return ", ".join([f"#{index}", " ".join(str(v) for v in named if v is not None)])


def read_json(path: str | Path) -> tuple[dict, list[Record]]:
    """The run and records of a file written by ``write_json`` (``perfkit report RUN --json-out FILE``)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PerfkitError(f"{path} does not exist (export one with `perfkit report RUN --json-out {path}`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PerfkitError(f"{path} is not a perfkit JSON export: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise PerfkitError(f"{path} is not a perfkit JSON export (write one with `perfkit report RUN --json-out FILE`)")
    if payload.get("version") != EXPORT_VERSION:
        raise PerfkitError(f"{path} is export version {payload.get('version')}; this perfkit reads {EXPORT_VERSION}")
    run, items = payload.get("run"), payload.get("records")
    if not isinstance(run, dict) or not isinstance(items, list):
        raise PerfkitError(f"{path} is not a perfkit JSON export: 'run' must be an object and 'records' a list")
    records = []
    for i, item in enumerate(items):
        record = None
        try:
            record = Record.from_dict(item)
            record.validate()
            if not isinstance(record.created, (int, float)) or isinstance(record.created, bool):
                raise ValueError(f"'created' is {record.created!r}, not a timestamp")
        except (KeyError, TypeError, ValueError) as exc:
            named = f"#{i}" if record is None else describe(i, record)
            raise PerfkitError(f"{path} holds a malformed record ({named}): {exc}") from None
        records.append(record)
    return run, records
