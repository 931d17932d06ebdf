"""One flat row per candidate and batch: what ``perfkit report RUN --csv FILE`` writes and MLflow logs.

A candidate is a summary row (``perfkit.report.rows.summary_rows``: model × weights × runtime ×
precision × device); it gets one row per batch size it was timed at, like timm's benchmark CSVs
(one row per model and batch). Numbers are plain (no unit text, no thousands separators) with the
unit in the column name; a number that was not measured is an empty cell, never 0. The CSV writes
floats to 6 significant digits (the JSON export keeps every digit). Percentiles the tables hide
(from too few calls: ``perfkit.profiler.samples.shown``) are empty here too. Accuracy, parity and
the int8 calibration do not depend on the timing batch and repeat on each of a candidate's rows.
The raw records are in the JSON export (``--json-out``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from perfkit.report.hardware import hardware_of
from perfkit.report.output import check_writable, write_text
from perfkit.report.rows import summary_rows
from perfkit.store import Record

IDENTITY = ("model", "weights", "runtime", "precision", "batch", "device", "hardware")
_ACCURACY = ("top1_pct", "top5_pct", "top1_relative_to_eager_fp32", "published_top1_pct", "published_top5_pct",
             "accuracy_images")
_LATENCY = ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "throughput_img_per_s")
_REST = ("peak_memory_bytes", "params", "macs", "parity_passed", "int8_calibration", "contended", "failed_steps")


def _scenario_columns() -> dict[str, str]:
    """Scenario name → the column of its headline figure (``offline_samples_per_s``, ``server_qps``), for
    every registered scenario but the base one (SingleStream: the latency columns), in registry order."""
    from perfkit.profiler.scenarios import all_scenarios

    return {s.name: f"{s.name}_{s.headline.unit.lower().replace('/', '_per_').replace(' ', '_')}"
            for s in all_scenarios() if not s.base}


def columns() -> tuple[str, ...]:
    """The CSV's columns, in order: the same for every run (a scenario not run is an empty column)."""
    return (*IDENTITY, *_ACCURACY, *_LATENCY, *_scenario_columns().values(), *_REST)


def _hardware(records: list[Record], run_env: dict) -> dict[tuple, str]:
    """(model, runtime, precision, device) → the hardware label of its newest record (``perfkit.report.hardware``;
    a sharded run's cells may run on different hosts, so each candidate's own records say, not the run's)."""
    return {(r.model, r.runtime, r.precision, r.device): hardware_of(r.env or run_env, r.device)["label"]
            for r in sorted(records, key=lambda r: r.created)}


def candidate_rows(records: list[Record], run_env: dict | None = None) -> list[dict]:
    """The rows of ``columns()`` (None where not measured), in the summary's order."""
    hardware = _hardware(records, run_env or {})
    named = _scenario_columns()
    out = []
    for row in summary_rows(records):
        common = {
            "model": row["model"], "weights": row["weights"], "runtime": row["runtime"],
            "precision": row["precision"], "device": row["device"],
            "hardware": hardware.get((row["model"], row["runtime"], row["precision"], row["device"])),
            "top1_pct": row["top1_pct"], "top5_pct": row["top5_pct"],
            "top1_relative_to_eager_fp32": row["relative_top1"],
            "published_top1_pct": row["ref_top1_pct"], "published_top5_pct": row["ref_top5_pct"],
            "accuracy_images": row["images"], "params": row["params"], "macs": row["macs"],
            "parity_passed": row["parity_passed"], "int8_calibration": row["calibration"],
            "failed_steps": "; ".join(row["errors"]) or None,
        }
        timed = {b["batch"]: b for b in row["batches"]}
        headlines = {name: f for name, f in row["scenarios"].items() if name in named}
        batches = sorted(set(timed) | {f["batch"] for f in headlines.values()}, key=lambda b: (b is None, b or 0))
        for batch in batches or [None]:
            at = {named[name]: f for name, f in headlines.items() if f["batch"] == batch}
            out.append({**common, "batch": batch, **_timing_cells(timed.get(batch), at)})
    return out


def _timing_cells(latency: dict | None, headlines: dict[str, dict]) -> dict:
    """The timing columns of one batch: SingleStream's latency, throughput and peak memory, the headline
    figure of every other scenario timed at that batch, and whether any of them was contended (empty
    when none had its contention measured)."""
    lat = latency or {}
    timings = [t for t in (latency, *headlines.values()) if t is not None]
    measured = [t for t in timings if t["other_cpu_pct"] is not None]
    return {"latency_p50_ms": lat.get("latency_median_ms"), "latency_p90_ms": lat.get("latency_p90_ms"),
            "latency_p99_ms": lat.get("latency_p99_ms"), "throughput_img_per_s": lat.get("throughput_per_s"),
            "peak_memory_bytes": lat.get("peak_bytes"), **{col: f["value"] for col, f in headlines.items()},
            "contended": any(t["contended"] for t in timings) if measured else None}


def write_csv(run: dict, records: list[Record], path: str | Path, flag: str = "--csv") -> Path:
    """``candidate_rows`` as CSV (``columns()`` as the header; empty cells where not measured)."""
    check_writable(path, flag)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns())
    writer.writeheader()
    for row in candidate_rows(records, run.get("env")):
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return write_text(path, text.getvalue(), flag)


def _cell(value):
    """A float to 6 significant digits (23.200000000000003 → 23.2: far finer than any timing or accuracy
    is measured; the JSON export keeps every digit); None as an empty cell."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return "" if value is None else value
