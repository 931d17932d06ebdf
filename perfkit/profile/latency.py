"""Batch sweeps: every runtime × batch size, with out-of-memory back-off.

Each runtime is opened once (exported first if needed, with a batch range that covers every
requested batch) and timed at each batch in increasing order. A batch that does not fit becomes a
failure and the larger batches of that runtime are skipped (they cannot fit either); any other
failure is reported for that batch and the sweep goes on.

Every runtime runs in its tuned configuration (its backend's own recommendation: see each module
in perfkit/backends/), and the configuration each runner actually used is recorded with its timing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from perfkit.profile import roofline
from perfkit.profile.offline import from_singlestream, measure_or_fail, offline_capable
from perfkit.profile.timing import NoisyTimingWarning, RunnerTiming, TimingConfig, time_runner
from perfkit.results import Failure, Kind, Where, describe
from perfkit.vocab import BatchRange, Precision


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


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OOM, or a runtime's allocation failure (ONNX Runtime and TensorRT raise plain errors)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("out of memory", "failed to allocate memory", "bad_alloc", "cudaerrormemoryallocation"))


def sweep(spec, backends: Iterable, batches: Iterable[int], ctx, *, precision: Precision | str = Precision.FP32,
          config: TimingConfig = TimingConfig(), flops: tuple[int, str] | None = None, offline=None) -> Iterator:
    """Time every runtime in ``backends`` at every batch in ``batches``: a ``LatencyResult`` or a
    ``Failure`` (kind latency) per runtime × batch, yielded as soon as it is measured.

    ``flops``: (FLOPs per sample, how counted) for the roofline fields; None leaves them out.
    ``offline``: an ``OfflineConfig``: then each runtime that keeps requests in flight also gets the
    Offline scenario at the largest batch (an ``OfflineResult`` or a ``Failure`` of kind throughput),
    measured with the runner its SingleStream timings used, whose timing there is its k = 1; not
    where the largest batch failed (its latency failure says why).
    """
    from perfkit.backends import get, open_runner

    batches = sorted(set(batches))
    precision = Precision(precision)
    brange = BatchRange.covering(batches)
    # TensorRT (and any backend declaring the option) builds one profile per swept batch size.
    ctx = ctx.replace(options={**ctx.options, "profile_batches": tuple(batches)})
    for backend in map(get, backends):
        where = Where.of(spec, backend.name, precision, device=ctx.device)
        ctx.progress.update(f"timing {spec.name} {backend.name} {precision} batch {batches[0]}")
        try:
            runner = open_runner(spec, backend, ctx, precision=precision, batch=brange)
            runner.__enter__()
        except Exception as exc:  # export or load failed: every batch of this runtime fails
            for b in batches:
                yield Failure.of(Kind.LATENCY, where.replace(batch=b), exc)
                ctx.progress.update(advance=1)
            if offline is not None and offline_capable(backend):
                yield Failure.of(Kind.THROUGHPUT, where.replace(batch=batches[-1]), exc)
                ctx.progress.update(advance=1)
            continue
        try:
            last = None
            for last in _sweep_runner(spec, runner, where, batches, ctx, config, flops):
                yield last
            if offline is not None and offline_capable(backend):
                if not isinstance(last, Failure):  # else its latency failure already says why
                    single = from_singlestream(last.timing, last.threads, last.runtime_config)
                    yield from measure_or_fail(spec, runner, where.replace(batch=batches[-1]), ctx, offline, single)
                ctx.progress.update(advance=1)
        finally:
            runner.__exit__(None, None, None)


def _sweep_runner(spec, runner, where: Where, batches: list[int], ctx, config: TimingConfig, flops) -> Iterator:
    for result in _time_batches(spec, runner, where, batches, ctx, config, flops):
        yield result
        ctx.progress.update(advance=1)


def _time_batches(spec, runner, where: Where, batches: list[int], ctx, config: TimingConfig, flops) -> Iterator:
    oom_at = None
    for b in batches:
        ctx.progress.update(f"timing {spec.name} {runner.name} {runner.precision} batch {b}")
        if oom_at is not None:
            yield Failure.of(Kind.LATENCY, where.replace(batch=b), f"MemoryError: skipped: batch {oom_at} already "
                                                                   "ran out of memory")
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NoisyTimingWarning)
                timing = time_runner(runner, spec.example_input(b), config, label=f"{spec.name} {runner.name} batch {b}")
        except Exception as exc:
            if is_out_of_memory(exc):
                oom_at = b
                if runner.device.type == "cuda":
                    torch.cuda.empty_cache()
            yield Failure.of(Kind.LATENCY, where.replace(batch=b), describe(exc))
            continue
        config_used = runner.config()
        threads = config_used.get("intra_op_threads") or config_used.get("intra_op_num_threads") or runner.threads
        position = {}
        if flops is not None:
            peak = roofline.device_peak(str(runner.device), runner.precision,
                                        threads if isinstance(threads, int) else None)
            position = roofline.roofline(flops[0], b, timing.compute.median_ms, peak)
        yield LatencyResult(where.replace(batch=b), timing, threads if isinstance(threads, int) else None,
                            config_used, runner.self_timed, position, flops[1] if flops else None,
                            tuple(str(w.message) for w in caught if issubclass(w.category, NoisyTimingWarning)),
                            runner.calibration)
