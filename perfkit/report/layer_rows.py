"""Rows of the layer tables, from a run's layers records only (``perfkit summary --layers-from``, the HTML
report): modules side by side across runtimes, the time by op type, and the top layers with their achieved
GFLOP/s and int8 against fp32."""

from __future__ import annotations

from collections.abc import Iterable

from perfkit.report.rows import runtime_rank
from perfkit.store import Kind, Record

UNMAPPED = "(unmapped)"
MODEL_ITSELF = "(model)"  # the model's own top-level code (a flatten, a reshape)


def profiles(records: Iterable[Record], model: str | None = None) -> list[Record]:
    """The newest layers record per model × runtime × precision × batch (ok or error), in table order."""
    newest: dict[tuple, Record] = {}
    for r in sorted((r for r in records if r.kind == Kind.LAYERS and (model is None or r.model == model)),
                    key=lambda r: r.created):
        newest[r.key] = r
    return sorted(newest.values(), key=lambda r: (r.model, runtime_rank(r.runtime), r.runtime or "",
                                                  r.precision or "", r.batch or 0))


def label(r: Record) -> str:
    return f"{r.runtime} {r.precision} b{r.batch}"


def row_name(row: dict) -> str:
    """A row's module path, ``(model)`` for the model's own code, ``(unmapped) <op>`` for unmapped layers."""
    if row["module"] is None:
        return f"{UNMAPPED} {', '.join(row['op_types'])}"
    return row["module"] or MODEL_ITSELF


def side_by_side(measured: list[Record]) -> list[dict]:
    """One row per module (or unmapped op type) of one model: its type, MACs, params and ms in each profile
    (``ms`` keyed by ``label``), the largest time first."""
    rows: dict[str, dict] = {}
    for r in measured:
        if r.status != "ok" or r.metrics.get("unavailable"):
            continue
        for row in r.metrics["rows"]:
            name = row_name(row)
            out = rows.setdefault(name, {"name": name, "type": row.get("type"), "macs": row.get("macs"),
                                         "params": row.get("params"), "ms": {}})
            out["ms"][label(r)] = out["ms"].get(label(r), 0.0) + row["ms"]
    return sorted(rows.values(), key=lambda row: -max(row["ms"].values(), default=0.0))


def totals(measured: list[Record]) -> list[dict]:
    """Per profile: the sum of its layer times beside the end-to-end median, the share on module rows, where
    the times come from; or why there are none."""
    out = []
    for r in measured:
        m = r.metrics
        why = r.error if r.status != "ok" else m.get("unavailable")
        out.append({"label": label(r), "model": r.model, "runtime": r.runtime, "total_ms": m.get("total_ms"),
                    "e2e_median_ms": m.get("e2e_median_ms"), "coverage": m.get("coverage"), "runs": m.get("runs"),
                    "source": m.get("source"), "why_not": why})
    return out


def by_op_type(r: Record) -> list[dict]:
    """One profile's time by op type (the runtime's own op names), largest first, with its share."""
    ops = r.metrics.get("by_op_type") or {}
    total = sum(ops.values())
    return [{"op_type": op, "ms": ms, "share": ms / total if total else None} for op, ms in ops.items()]


def gflops_per_s(macs: int | None, batch: int | None, ms: float | None) -> float | None:
    """Achieved GFLOP/s of one layer: 2 × its MACs per sample × batch over its time."""
    if not macs or not ms or not batch:
        return None
    return 2 * macs * batch / (ms / 1000) / 1e9


def top_layers(measured: list[Record], limit: int = 15) -> list[dict]:
    """Per model × runtime × batch: its slowest module rows at fp32 (else the first precision profiled), each
    with MACs, ms and achieved GFLOP/s at every precision profiled, and int8's time over fp32's."""
    groups: dict[tuple, dict[str, dict]] = {}
    for r in measured:
        if r.status == "ok" and not r.metrics.get("unavailable"):
            groups.setdefault((r.model, r.runtime, r.batch), {})[r.precision] = r
    out = []
    for (model, runtime, batch), by_precision in groups.items():
        lead = by_precision.get("fp32") or next(iter(by_precision.values()))
        ms = {p: {row_name(row): row["ms"] for row in r.metrics["rows"]} for p, r in by_precision.items()}
        named = [row for row in lead.metrics["rows"] if row["module"]][:limit]
        for row in named:
            name = row_name(row)
            times = {p: ms[p].get(name) for p in by_precision}
            out.append({"model": model, "runtime": runtime, "batch": batch, "name": name, "type": row.get("type"),
                        "macs": row.get("macs"), "ms": times,
                        "gflops": {p: gflops_per_s(row.get("macs"), batch, t) for p, t in times.items()},
                        "int8_over_fp32": _ratio(times.get("int8"), times.get("fp32"))})
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
