"""Export a run's records to JSON or CSV, and read an exported JSON back (a ``regress`` baseline).

The JSON file holds the run and every record exactly as stored, so a baseline kept in git compares
like a run in the store. The CSV has one line per record: the provenance columns, then one column
per metric (lists and dicts as JSON text).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from perfkit.errors import PerfkitError
from perfkit.report.rows import load_run
from perfkit.store import Record, Store

EXPORT_FORMAT = "perfkit-run-records"
EXPORT_VERSION = 1
CSV_COLUMNS = ("run_id", "kind", "model", "runtime", "precision", "batch", "weights", "device", "status", "error",
               "created", "schema_version")


def export_payload(store: Store, run_id: str) -> dict:
    """The run and all its records as one JSON-able dict (what ``write_json`` writes)."""
    run, records = load_run(store, run_id)
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "run": run, "records": [r.to_dict() for r in records]}


def write_json(store: Store, run_id: str, path: str | Path) -> Path:
    payload = export_payload(store, run_id)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def read_json(path: str | Path) -> tuple[dict, list[Record]]:
    """The run and records of a file written by ``write_json`` (``perfkit report RUN --json FILE``)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PerfkitError(f"{path} does not exist (export one with `perfkit report RUN --json {path}`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PerfkitError(f"{path} is not a perfkit JSON export: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise PerfkitError(f"{path} is not a perfkit JSON export (write one with `perfkit report RUN --json FILE`)")
    if payload.get("version") != EXPORT_VERSION:
        raise PerfkitError(f"{path} is export version {payload.get('version')}; this perfkit reads {EXPORT_VERSION}")
    try:
        records = [Record.from_dict(d) for d in payload["records"]]
        for r in records:
            r.validate()
    except (KeyError, TypeError, ValueError) as exc:
        raise PerfkitError(f"{path} holds a malformed record: {exc}") from None
    return payload["run"], records


def write_csv(store: Store, run_id: str, path: str | Path) -> Path:
    _, records = load_run(store, run_id)
    metrics = sorted({k for r in records for k in r.metrics})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*CSV_COLUMNS, *metrics])
        for r in records:
            row = r.to_dict()
            values = [r.metrics.get(k) for k in metrics]
            writer.writerow([*("" if row[c] is None else row[c] for c in CSV_COLUMNS),
                             *(_cell(v) for v in values)])
    return path


def _cell(value) -> str | int | float | bool:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value
