"""SingleStream: one request at a time, back to back, latency per batch size (MLPerf's SingleStream,
trtexec's and benchmark_app's latency mode).

The base scenario: every profile measures it, at every batch of the plan. The loop is
``perfkit.profiler.timing.time_runner`` (warm-up by count and time, then at least ``iterations``
calls and ``min_seconds``, synchronised after every call; CUDA events on a GPU); each timing comes
with the configuration the runner actually ran with, its roofline position against the device peak,
and what other processes used of the CPU meanwhile.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from perfkit.profiler import roofline
from perfkit.profiler.contention import contention_metrics
from perfkit.profiler.samples import min_samples, shown
from perfkit.profiler.scenarios import Column, Compared, Headline, Point, Scenario, ScenarioOption, newest
from perfkit.profiler.timing import NoisyTimingWarning, RunnerTiming, TimingConfig, time_runner
from perfkit.results import Kind, KindSchema, Where

TIMING_METRICS = ("iterations warmup_iterations latency_mean_ms latency_median_ms latency_p90_ms latency_p95_ms "
                  "latency_p99_ms latency_min_ms latency_max_ms latency_std_ms latency_cv throughput_per_s")


@dataclass(frozen=True)
class LatencyResult:
    """One runtime at one batch: its timing, the roofline position and the configuration it ran with."""

    where: Where
    timing: RunnerTiming
    threads: int | None
    runtime_config: dict
    self_timed: bool
    roofline: dict = field(default_factory=dict)
    flops_source: str | None = None
    warnings: tuple[str, ...] = ()
    calibration: str | None = None  # what an int8 artifact was calibrated on


def measure(point: Point) -> LatencyResult:
    runner, b = point.runner, point.batch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoisyTimingWarning)
        timing = time_runner(runner, point.spec.example_input(b), point.config,
                             label=f"{point.spec.name} {runner.name} batch {b}")
    config_used = runner.config()
    threads = config_used.get("intra_op_threads") or config_used.get("intra_op_num_threads") or runner.threads
    threads = threads if isinstance(threads, int) else None
    position = {}
    if point.flops is not None:
        peak = roofline.device_peak(str(runner.device), runner.precision, threads)
        position = roofline.roofline(point.flops[0], b, timing.compute.median_ms, peak)
    return LatencyResult(point.where, timing, threads, config_used, runner.self_timed, position,
                         point.flops[1] if point.flops else None,
                         tuple(str(w.message) for w in caught if issubclass(w.category, NoisyTimingWarning)),
                         runner.calibration)


def metrics(result: LatencyResult) -> dict:
    out = {**result.timing.metrics(), "threads": result.threads, "runtime_config": result.runtime_config,
           "self_timed": result.self_timed, **result.roofline, "warnings": list(result.warnings),
           **({"calibration": result.calibration} if result.calibration else {}),
           **contention_metrics(result.timing.contention)}
    if result.flops_source:
        out["flops_source"] = result.flops_source
    return out


def configure(values: dict) -> TimingConfig:
    return TimingConfig(values["warmup"], values["warmup_seconds"], values["iterations"], values["min_seconds"])


# -- its table: latency per batch, beside the memory of the same runtime × precision × batch ----------

def _flat(r) -> dict:
    return {"model": r.model, "runtime": r.runtime, "precision": r.precision, "batch": r.batch, "weights": r.weights,
            "device": r.device, "status": r.status, "error": r.error, **r.metrics}


def rows(records: list) -> list[dict]:
    """Latency joined with the memory of the same runtime × precision × batch, in measuring order, with
    the speed-up over the same runtime's fp32 at that batch."""
    latest = newest(records, Kind.LATENCY)
    memory = newest(records, Kind.MEMORY, lambda r: (r.model, r.runtime, r.precision, r.batch, r.device))
    fp32 = {(r.model, r.runtime, r.batch): r.metrics.get("latency_median_ms") for r in latest.values()
            if r.status == "ok" and r.precision == "fp32"}
    out = []
    for r in sorted(latest.values(), key=lambda r: r.created):
        mem = memory.get((r.model, r.runtime, r.precision, r.batch, r.device))
        base, median = fp32.get((r.model, r.runtime, r.batch)), r.metrics.get("latency_median_ms")
        error = r.error or (mem.error if mem is not None else None)
        n = r.metrics.get("iterations")
        out.append({**_flat(r), "error": error, "peak_bytes": mem.metrics.get("peak_bytes") if mem else None,
                    **{f"latency_p{q}_ms": shown(q, r.metrics.get(f"latency_p{q}_ms"), n) for q in (90, 95, 99)},
                    "speedup_vs_fp32": base / median if base and median and r.precision != "fp32" else None,
                    "cv_pct": None if r.metrics.get("latency_cv") is None else 100 * r.metrics["latency_cv"],
                    "peak_pct": None if r.metrics.get("peak_fraction") is None else 100 * r.metrics["peak_fraction"]})
    return out


COLUMNS = (
    Column("median", "latency_median_ms", "ms"), Column("× fp32", "speedup_vs_fp32", "speedup"),
    Column("p90", "latency_p90_ms", "ms"), Column("p99", "latency_p99_ms", "ms"), Column("CV", "cv_pct", "pct"),
    Column("img/s", "throughput_per_s", "rate"), Column("peak mem", "peak_bytes", "bytes"),
    Column("GFLOP/s", "achieved_gflops", "rate"), Column("% peak", "peak_pct", "pct"), Column("threads", "threads"),
)


def caption(records: list) -> list[str]:
    lat = [r for r in newest(records, Kind.LATENCY).values() if r.status == "ok"]
    memory = [r for r in records if r.kind == Kind.MEMORY and r.status == "ok"]
    flops = next((r.metrics.get("flops_per_sample") for r in lat if r.metrics.get("flops_per_sample")), None)
    source = next((r.metrics.get("flops_source") for r in lat if r.metrics.get("flops_source")), "—")
    peaks = "; ".join(sorted({r.metrics.get("peak_source") or "—" for r in lat})) or "—"
    methods = "; ".join(sorted({f"{r.runtime}: {r.metrics['method']}" for r in memory})) or "—"
    configs = "; ".join(f"{r.runtime}: " + ", ".join(f"{k}={v}" for k, v in (r.metrics.get("runtime_config") or {}).items())
                        for r in {r.runtime: r for r in lat}.values())
    gflop = "—" if flops is None else f"{flops / 1e9:.3f} GFLOP/sample"
    lines = [f"FLOPs = 2 × MACs ({gflop}, {source}); % peak against {peaks}; memory: {methods}",
             f"configuration: {configs or '—'}"]
    if any(r.precision != "fp32" for r in lat):
        lines.append("× fp32 = the same runtime's fp32 median ÷ this median, at the same batch")
    return lines + percentile_notes(lat)


def percentile_notes(records: list) -> list[str]:
    """What the tables leave out (—): a percentile from fewer timed calls than it takes (the p99 of 3 calls
    is their maximum)."""
    counts = [r.metrics["iterations"] for r in records if r.metrics.get("iterations") is not None]
    hidden = [q for q in (90, 99) if counts and min(counts) < min_samples(q)]
    if not hidden:
        return []
    rule = " and ".join(f"p{q} from {min_samples(q)}" for q in reversed(hidden))
    return [f"percentiles are shown only from enough timed calls: {rule} (the fewest here: {min(counts)})"]


SCHEMA = KindSchema.of(
    "iterations latency_median_ms latency_p99_ms throughput_per_s",
    f"{TIMING_METRICS} timer cv_warning h2d_median_ms e2e_median_ms e2e_p99_ms threads flops_source "
    "flops_per_sample achieved_gflops peak_gflops peak_fraction peak_source runtime_config self_timed "
    "load_seconds warnings calibration other_cpu_pct contended samples")

SCENARIO = Scenario(
    name="singlestream",
    title="SingleStream",
    summary="one request at a time, back to back: latency per batch size (p50/p90/p99, CV), throughput, roofline",
    kind=Kind.LATENCY,
    schema=SCHEMA,
    result=LatencyResult,
    measure=measure,
    metrics=metrics,
    headline=Headline("latency_median_ms", "ms", "min", "float3", smallest_batch=True),
    options=(
        ScenarioOption("warmup", 10, "SingleStream: warm-up calls (at least)", int, quick=1),
        ScenarioOption("warmup_seconds", 1.0, "SingleStream: warm-up time in seconds (at least)", quick=0.2),
        ScenarioOption("iterations", 50, "SingleStream: measured calls (at least)", int, quick=3),
        ScenarioOption("min_seconds", 2.0, "SingleStream: measured time in seconds (at least)", quick=0.5),
    ),
    configure=configure,
    batches=tuple,
    rows=rows,
    columns=COLUMNS,
    caption=caption,
    compared=(Compared("latency_median_ms", limit="max_latency_increase_pct", worse=+1), Compared("latency_p99_ms"),
              Compared("throughput_per_s"), Compared("calibration", "description")),
    base=True,
)
