"""Batch sweeps: every runtime × batch size, with out-of-memory back-off.

Each runtime is opened once (exported first if needed, with a batch range that covers every
requested batch) and timed at each batch in increasing order. A batch that does not fit becomes an
error record and the larger batches of that runtime are skipped (they cannot fit either); any other
failure becomes an error record for that batch and the sweep goes on.

Runtime settings are the ones a deployment would use, so that no runtime looks slow through bad
settings: eager runs under ``torch.inference_mode`` (optionally channels-last), TorchScript is
frozen by its exporter, ONNX Runtime gets the thread count and full graph optimisation from its
runner, and the native runner freezes the module it loads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from perfkit.formats import BatchRange, Format, Precision
from perfkit.profile.timing import LatencyStats, NoisyTimingWarning, RunnerTiming, TimingConfig, time_runner


@dataclass
class SweepPoint:
    """One runtime at one batch: its timing, or why there is none."""

    runtime: Format
    batch: int
    precision: Precision
    device: str
    timing: RunnerTiming | None = None
    error: BaseException | None = None
    threads: int | None = None
    extra: dict = field(default_factory=dict)  # runtime-specific facts (native: load time, frozen)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.timing is not None


def batch_range_for(batches: Iterable[int]) -> BatchRange:
    """The batch range to ask the exporter for (see ``BatchRange.covering``)."""
    return BatchRange.covering(batches)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OOM, or a runtime's allocation failure (ONNX Runtime and TensorRT raise plain errors)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("out of memory", "failed to allocate memory", "bad_alloc", "cudaerrormemoryallocation"))


def runner_options(fmt: Format, *, channels_last: bool = False, threads: int | None = None) -> dict:
    """Options each runner gets from the profiler (deployment settings)."""
    if fmt is Format.EAGER:
        return {"channels_last": channels_last}
    if fmt is Format.ONNX and threads:
        return {"threads": threads}
    return {}


def sweep(spec, formats: Iterable[Format | str], batches: Iterable[int], *, precision: Precision | str = "fp32",
          device: str = "cpu", artifacts: Path | None = None, config: TimingConfig = TimingConfig(),
          channels_last: bool = False, threads: int | None = None,
          on_point: Callable[[SweepPoint], None] | None = None, opener: Callable | None = None) -> list[SweepPoint]:
    """Time every runtime in ``formats`` at every batch in ``batches``.

    Args:
        on_point: called with each point as soon as it is measured (to store it, advance a bar).
        opener: ``open_runner`` (tests pass a fake).
    """
    if opener is None:
        from perfkit.runtime import open_runner as opener
    batches = sorted(set(batches))
    precision = Precision(precision)
    brange = batch_range_for(batches)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _sweep(spec, formats, batches, precision, device, artifacts, config, channels_last, threads,
                      on_point, opener, brange)
    finally:  # the thread count is this sweep's setting, not the caller's
        torch.set_num_threads(previous_threads)


def _sweep(spec, formats, batches, precision, device, artifacts, config, channels_last, threads, on_point, opener,
           brange) -> list[SweepPoint]:
    points: list[SweepPoint] = []

    def emit(point: SweepPoint) -> None:
        points.append(point)
        if on_point is not None:
            on_point(point)

    for fmt in map(Format, formats):
        if fmt is Format.NATIVE:
            for point in _sweep_native(spec, batches, precision, device, artifacts, config, threads, brange):
                emit(point)
            continue
        try:
            runner = opener(spec, fmt, precision=precision, device=device, artifacts=artifacts, batch=brange,
                            **runner_options(fmt, channels_last=channels_last, threads=threads))
            runner.__enter__()
        except Exception as exc:  # export or load failed: every batch of this runtime is an error
            for b in batches:
                emit(SweepPoint(fmt, b, precision, device, error=exc))
            continue
        try:
            oom_at = None
            for b in batches:
                if oom_at is not None:
                    emit(SweepPoint(fmt, b, precision, device, error=MemoryError(
                        f"skipped: batch {oom_at} already ran out of memory")))
                    continue
                point = _time_point(runner, spec, fmt, b, precision, device, config)
                if point.error is not None and is_out_of_memory(point.error):
                    oom_at = b
                    _free_device_memory(device)
                emit(point)
        finally:
            runner.__exit__(None, None, None)
    return points


def _time_point(runner, spec, fmt: Format, batch: int, precision: Precision, device: str,
                config: TimingConfig) -> SweepPoint:
    point = SweepPoint(fmt, batch, precision, device,
                       threads=getattr(runner, "threads", None) or torch.get_num_threads())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NoisyTimingWarning)
            point.timing = time_runner(runner, spec.example_input(batch), config,
                                       label=f"{spec.name} {fmt} batch {batch}")
        point.warnings = [str(w.message) for w in caught if issubclass(w.category, NoisyTimingWarning)]
    except Exception as exc:
        point.error = exc
    return point


def _free_device_memory(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _sweep_native(spec, batches: list[int], precision: Precision, device: str, artifacts: Path | None,
                  config: TimingConfig, threads: int | None, brange: BatchRange) -> list[SweepPoint]:
    """The C++ runner times itself (it is this runtime's profiler); its raw samples come back."""
    from perfkit.errors import UsageError
    from perfkit.runtime.native import build_native, default_build_dir, run_native, torchscript_artifact

    try:
        if precision is not Precision.FP32:
            raise UsageError(f"the native runner feeds float32 inputs to an fp32 TorchScript module, not {precision}")
        build = build_native(default_build_dir(artifacts))
        model_path = torchscript_artifact(spec, precision=precision, artifacts=artifacts, batch=brange)
    except Exception as exc:
        return [SweepPoint(Format.NATIVE, b, precision, device, error=exc) for b in batches]
    out = []
    for b in batches:
        point = SweepPoint(Format.NATIVE, b, precision, device)
        try:
            result = run_native(build.binary, model_path, input_size=spec.input_size, batch=b, threads=threads,
                                device=device, warmup=config.warmup, warmup_seconds=config.warmup_seconds,
                                iterations=config.iterations, min_seconds=config.min_seconds)
            stats = LatencyStats.from_samples(result["samples_ms"], b, result["warmup_iterations"])
            point.timing = RunnerTiming(stats, timer="native steady_clock" + (" + cuda sync" if "cuda" in device else ""))
            point.threads = result["threads"]
            point.extra = {"native_load_seconds": result["load_seconds"], "frozen": result["frozen"],
                           "native_build_seconds": build.seconds, "artifact_path": str(model_path)}
            if stats.noisy:
                point.warnings.append(f"{spec.name} native batch {b}: latency CV {stats.cv:.1%} > 10%")
        except Exception as exc:
            point.error = exc
        out.append(point)
    return out
