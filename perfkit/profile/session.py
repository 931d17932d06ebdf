"""One model profiled end to end: every runtime × precision × batch timed, then its memory measured.

This is the work behind `perfkit profile` and the profile stage of `perfkit run`. Callers resolve
the model, open the store run and show progress; this module measures and writes one record per
measurement (an error record for each failure, and the rest goes on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from perfkit.errors import UsageError
from perfkit.formats import Format, Precision
from perfkit.profile import latency, memory as memory_mod, roofline
from perfkit.profile.latency import SweepPoint
from perfkit.profile.timing import TimingConfig
from perfkit.store import Kind, Record

_COMMON = ("model", "runtime", "precision", "batch", "weights", "device")


@dataclass
class ProfileResult:
    """What `profile_model` measured.

    Attributes:
        rows: one dict per runtime × precision × batch, in measuring order, with the record columns
            (model, runtime, precision, batch, weights, device), ``status`` ("ok" or "error"),
            ``latency`` (the latency record's metrics, or None), ``memory`` (the memory record's
            metrics, ``{"error": text}``, or None when not measured), ``error`` (the latency error
            text, or None) and ``warnings`` (noisy-timing warnings, list of str).
        failed: failed latency and memory measurements (each one has an error record).
        flops: FLOPs of one sample at the model's input size.
        flops_source: how ``flops`` were counted.
        config: the timing bounds used.
    """

    rows: list[dict]
    failed: int
    flops: int
    flops_source: str
    config: TimingConfig


def profile_steps(formats: Iterable, batches: Iterable[int], precisions: Iterable, memory: bool = True) -> int:
    """How many times `profile_model` calls ``on_step`` with these arguments (a progress bar's total)."""
    n = len(list(formats)) * len(set(batches)) * len(list(precisions))
    return n * 2 if memory else n


def profile_model(spec, *, store, run_id: str, formats: Iterable[Format | str], batches: Iterable[int],
                  precisions: Iterable[Precision | str] = (Precision.FP32,), device: str = "cpu",
                  artifacts: Path | None = None, config: TimingConfig = TimingConfig(), memory: bool = True,
                  memory_batches: Iterable[int] | None = None, channels_last: bool = False,
                  threads: int | None = None, on_step: Callable[[str], None] | None = None) -> ProfileResult:
    """Time ``spec`` in every runtime at every precision and batch, then measure its peak memory.

    Latency records carry the roofline fields (achieved GFLOP/s against the device peak). Memory is
    measured after every timing, one spawned process per runtime and batch, so that those processes
    never disturb a measurement; a runtime whose timing failed gets no memory measurement (its
    latency error record already says why).

    Args:
        spec: the model (`perfkit.zoo.resolve`).
        store: an open `perfkit.store.Store`; records go to ``run_id`` (from ``store.run()``).
        batches: batch sizes, measured in increasing order.
        memory: also measure peak memory.
        memory_batches: measure memory only at these batch sizes (default: every batch); each
            measurement is a fresh process that loads the model, the slowest part of a sweep.
        channels_last: eager only: channels-last memory format.
        threads: CPU threads for torch, ONNX Runtime and the native runner; None keeps torch's.
        on_step: called with a description before each timing and each memory measurement
            (`profile_steps` gives the number of calls), to show progress.

    Raises:
        UsageError: no runtime, batch or precision, a batch below 1, or ``threads`` below 1.
    """
    formats = [Format(f) for f in formats]
    precisions = [Precision(p) for p in precisions]
    batches = sorted(set(batches))
    if not formats or not batches or not precisions:
        raise UsageError("profiling needs at least one runtime, one batch size and one precision")
    if batches[0] < 1:
        raise UsageError(f"batch sizes must be positive, got {batches[0]}")
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    step = on_step or (lambda description: None)
    flops, flops_source = roofline.model_flops(spec)
    result = ProfileResult([], 0, flops, flops_source, config)
    cols = dict(model=spec.name, weights=spec.weights.identity, device=device)
    # `latency.sweep` measures one point per runtime × batch, runtimes in order and batches ascending,
    # so the step that follows each point is known: announce it before its export/timing begins.
    upcoming: list[tuple[Format, Precision, int]] = []

    def on_point(point: SweepPoint) -> None:
        row = _latency_row(point, cols, flops, flops_source, device, channels_last, store, run_id)
        result.failed += row["status"] != "ok"
        result.rows.append(row)
        if upcoming:
            step(_timing_step(spec, *upcoming.pop(0)))

    for precision in precisions:
        upcoming[:] = [(fmt, precision, b) for fmt in formats for b in batches]
        step(_timing_step(spec, *upcoming.pop(0)))
        latency.sweep(spec, formats, batches, precision=precision, device=device, artifacts=artifacts,
                      config=config, channels_last=channels_last, threads=threads, on_point=on_point)

    brange = latency.batch_range_for(batches)
    wanted = set(batches if memory_batches is None else memory_batches)
    for row in [r for r in result.rows if r["batch"] in wanted] if memory else ():
        step(f"memory {spec.name} {row['runtime']} {row['precision']} batch {row['batch']}")
        if row["status"] != "ok":
            continue
        common = {k: row[k] for k in _COMMON}
        fmt = Format(row["runtime"])
        try:
            metrics = memory_mod.measure_memory(
                spec, fmt, row["batch"], precision=row["precision"], device=device, artifacts=artifacts,
                brange=brange, threads=threads,
                options=latency.runner_options(fmt, channels_last=channels_last, threads=threads))
        except Exception as exc:
            result.failed += 1
            store.add(Record.failure(Kind.MEMORY, exc=exc, **common), run_id)
            row["memory"] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        metrics.pop("batch")  # a record column, not a metric
        store.add(Record(Kind.MEMORY, metrics=metrics, **common), run_id)
        row["memory"] = metrics
    return result


def _timing_step(spec, fmt: Format, precision: Precision, batch: int) -> str:
    return f"timing {spec.name} {fmt} {precision} batch {batch}"


def _latency_row(point: SweepPoint, cols: dict, flops: int, flops_source: str, device: str,
                 channels_last: bool, store, run_id: str) -> dict:
    """Store the latency record (or error record) of one sweep point and return its result row."""
    common = dict(runtime=str(point.runtime), precision=str(point.precision), batch=point.batch, **cols)
    row = {**common, "status": "ok" if point.ok else "error", "latency": None, "memory": None,
           "error": None if point.ok else f"{type(point.error).__name__}: {point.error}",
           "warnings": point.warnings}
    if not point.ok:
        store.add(Record.failure(Kind.LATENCY, exc=point.error, **common), run_id)
        return row
    metrics = {**point.timing.metrics(), "threads": point.threads, "flops_source": flops_source,
               "channels_last": channels_last and point.runtime is Format.EAGER, **point.extra}
    peak = roofline.device_peak(device, point.precision, point.threads)
    metrics.update(roofline.roofline(flops, point.batch, point.timing.compute.median_ms, peak))
    store.add(Record(Kind.LATENCY, metrics=metrics, **common), run_id)
    row["latency"] = metrics
    return row
