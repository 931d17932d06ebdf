"""Timers and latency statistics: the only place in perfkit (besides the native runner) that times.

The loop is trtexec's: warm up by count *and* by time, then measure at least ``iterations`` calls
*and* at least ``min_seconds``, synchronising the device after every measured call so that a
call's time includes the work it queued. On CUDA the compute time comes from CUDA events (device
timestamps, not host timestamps around an asynchronous launch); the host-to-device copy of a
pinned input and the end-to-end time (pinned host input → logits on the host) are measured as
separate loops so each has its own distribution.

Around every measured loop (not the warm-up) a ``ContentionMeter`` measures the CPU that other
processes used (``perfkit.profiler.contention``): a contended timing is recorded and reported as
such, whatever its CV.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from perfkit.profiler.contention import Contention, ContentionMeter

CV_WARN = 0.10  # above this coefficient of variation the median is not trustworthy


class NoisyTimingWarning(UserWarning):
    """The samples vary by more than ``CV_WARN``: a busy machine, unlocked clocks, or thermal throttling."""


class ContendedTimingWarning(NoisyTimingWarning):
    """Other processes used enough of the CPU while timing that the number is not a clean one."""


@dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and measure; each bound is a minimum, both must be met."""

    warmup: int = 10
    warmup_seconds: float = 1.0
    iterations: int = 50
    min_seconds: float = 2.0

    def __post_init__(self):
        if self.iterations < 1 or self.warmup < 0 or self.warmup_seconds < 0 or self.min_seconds < 0:
            raise ValueError(f"timing bounds must be non-negative and iterations >= 1, got {self}")


def percentile(sorted_samples: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default; the native runner does the same)."""
    if not sorted_samples:
        raise ValueError("no samples")
    rank = q / 100 * (len(sorted_samples) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (rank - lo)


@dataclass
class LatencyStats:
    """Statistics of one latency distribution, raw numbers in milliseconds."""

    samples_ms: list[float] = field(repr=False)
    batch: int
    warmup_iterations: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float  # sample standard deviation (n - 1)
    cv: float  # std / mean
    throughput_per_s: float  # batch / median latency

    @classmethod
    def from_samples(cls, samples_ms: list[float], batch: int, warmup_iterations: int = 0) -> "LatencyStats":
        if not samples_ms:
            raise ValueError("no latency samples")
        s = sorted(samples_ms)
        mean = statistics.fmean(s)
        std = statistics.stdev(s) if len(s) > 1 else 0.0
        median = percentile(s, 50)
        return cls(
            samples_ms=list(samples_ms), batch=batch, warmup_iterations=warmup_iterations,
            mean_ms=mean, median_ms=median, p90_ms=percentile(s, 90), p95_ms=percentile(s, 95),
            p99_ms=percentile(s, 99), min_ms=s[0], max_ms=s[-1], std_ms=std,
            cv=std / mean if mean > 0 else 0.0, throughput_per_s=batch / (median / 1000),
        )

    @property
    def iterations(self) -> int:
        return len(self.samples_ms)

    @property
    def noisy(self) -> bool:
        return self.cv > CV_WARN

    def metrics(self) -> dict:
        """Record metrics (the shared ``latency`` vocabulary)."""
        return {
            "iterations": self.iterations, "warmup_iterations": self.warmup_iterations,
            "latency_mean_ms": self.mean_ms, "latency_median_ms": self.median_ms,
            "latency_p90_ms": self.p90_ms, "latency_p95_ms": self.p95_ms, "latency_p99_ms": self.p99_ms,
            "latency_min_ms": self.min_ms, "latency_max_ms": self.max_ms, "latency_std_ms": self.std_ms,
            "latency_cv": self.cv, "throughput_per_s": self.throughput_per_s,
        }


@dataclass
class RunnerTiming:
    """What the profiler measured for one runner at one batch."""

    compute: LatencyStats
    timer: str  # "cuda-events" or "perf_counter"
    h2d: LatencyStats | None = None  # pinned host → device copy of the input (GPU only)
    e2e: LatencyStats | None = None  # pinned host input → logits on the host (GPU only)
    load_seconds: float | None = None  # a self-timed runner's own model load
    contention: Contention | None = None  # what other processes used of the CPU while timing

    def metrics(self) -> dict:
        from perfkit.profiler.samples import pack

        out = self.compute.metrics()
        out["samples"] = pack(self.compute.samples_ms)  # every timed call, kept (perfkit.profiler.samples)
        out["timer"] = self.timer
        out["cv_warning"] = self.compute.noisy
        if self.h2d is not None:
            out["h2d_median_ms"] = self.h2d.median_ms
        if self.e2e is not None:
            out["e2e_median_ms"] = self.e2e.median_ms
            out["e2e_p99_ms"] = self.e2e.p99_ms
        if self.load_seconds is not None:
            out["load_seconds"] = self.load_seconds
        return out


def measure(fn: Callable[[], object], sync: Callable[[], None], config: TimingConfig, *,
            cuda_device: torch.device | None = None, meter: ContentionMeter | None = None) -> tuple[list[float], int]:
    """Warm up, then time ``fn`` per call; returns (samples in ms, warm-up calls made).

    ``sync`` runs after every call, warm-up included, so no queued work leaks into the next sample.
    With ``cuda_device`` each sample is the CUDA-event time between the call's start and the end
    of the work it queued; otherwise it is ``time.perf_counter`` around the call plus ``sync``.
    ``meter``: its window spans the measured loop (not the warm-up).
    """
    warmup_done = 0
    start = time.perf_counter()
    while warmup_done < config.warmup or time.perf_counter() - start < config.warmup_seconds:
        fn()
        sync()
        warmup_done += 1

    samples: list[float] = []
    # The garbage collector would charge its pauses to whichever sample it lands in (timeit does
    # the same); allocations still cost what they cost.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    if meter is not None:
        meter.start()
    try:
        if cuda_device is not None:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start = time.perf_counter()
        while len(samples) < config.iterations or time.perf_counter() - start < config.min_seconds:
            if cuda_device is not None:
                begin.record()
                fn()
                end.record()
                sync()
                samples.append(begin.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                sync()
                samples.append((time.perf_counter() - t0) * 1000)
    finally:
        if meter is not None:
            meter.stop()
        if gc_was_enabled:
            gc.enable()
    return samples, warmup_done


def _warn_if_unclean(timing: RunnerTiming, what: str) -> None:
    stats = timing.compute
    if stats.noisy:
        warnings.warn(
            f"{what}: latency CV {stats.cv:.1%} > {CV_WARN:.0%} (median {stats.median_ms:.3f} ms, "
            f"p99 {stats.p99_ms:.3f} ms): the machine is busy or clocks are not locked; "
            "trust the median, not the mean, and re-run on a quiet machine",
            NoisyTimingWarning, stacklevel=3,
        )
    if timing.contention is not None and timing.contention.contended:
        warnings.warn(f"{what}: {timing.contention.message()} while it was timed (median {stats.median_ms:.3f} ms "
                      "is not a clean number) — re-run on a quiet machine", ContendedTimingWarning, stacklevel=3)


def time_runner(runner, x: torch.Tensor, config: TimingConfig = TimingConfig(), *, label: str = "") -> RunnerTiming:
    """Time ``runner.infer`` on the host tensor ``x`` (an entered ``Runner``).

    On a CUDA runner three loops run, on the runner's own device (``cuda:N`` made current, so the
    events and streams are that GPU's): compute on an input already on the device (CUDA events),
    the pinned host-to-device copy alone, and end-to-end from a pinned host input to logits copied
    back to the host (host clock, synchronised). cuDNN's algorithm search is on while timing, as
    ONNX Runtime's and TensorRT's own tuning are: every runtime at its best.

    A ``self_timed`` runner (the native C++ runner) is timed by its own loop, which mirrors this one;
    contention is then measured over its whole process run (load and warm-up included).
    """
    batch = int(x.shape[0])
    label = label or getattr(runner, "label", "runner")
    device = getattr(runner, "device", torch.device("cpu"))
    meter = ContentionMeter()
    if getattr(runner, "self_timed", False):
        with meter.window():
            result = runner.time_self(batch, config)
        stats = LatencyStats.from_samples(result["samples_ms"], batch, result["warmup_iterations"])
        timing = RunnerTiming(stats, timer="native steady_clock" + (" + device sync" if device.type == "cuda" else ""),
                              load_seconds=result.get("load_seconds"), contention=meter.reading())
        _warn_if_unclean(timing, label)
        return timing
    if device.type == "cuda":
        from perfkit.device import on_device

        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            with on_device(device):
                return _time_cuda(runner, x, config, label, device, meter)
        finally:
            torch.backends.cudnn.benchmark = benchmark
    samples, warm = measure(lambda: runner.infer(x), runner.synchronize, config, meter=meter)
    timing = RunnerTiming(LatencyStats.from_samples(samples, batch, warm), timer="perf_counter",
                          contention=meter.reading())
    _warn_if_unclean(timing, label)
    return timing


def _time_cuda(runner, x: torch.Tensor, config: TimingConfig, label: str, device: torch.device,
               meter: ContentionMeter) -> RunnerTiming:
    batch = int(x.shape[0])
    host = x.pin_memory()
    on_device = host.to(device)
    runner.synchronize()
    samples, warm = measure(lambda: runner.infer(on_device), runner.synchronize, config, cuda_device=device,
                            meter=meter)
    compute = LatencyStats.from_samples(samples, batch, warm)
    h2d_samples, h2d_warm = measure(lambda: host.to(device, non_blocking=True), runner.synchronize, config,
                                    cuda_device=device, meter=meter)
    e2e_samples, e2e_warm = measure(lambda: runner.infer(host.to(device, non_blocking=True)).cpu(),
                                    runner.synchronize, config, meter=meter)
    timing = RunnerTiming(compute, timer="cuda-events (cudnn.benchmark on)",
                          h2d=LatencyStats.from_samples(h2d_samples, batch, h2d_warm),
                          e2e=LatencyStats.from_samples(e2e_samples, batch, e2e_warm), contention=meter.reading())
    _warn_if_unclean(timing, label)
    return timing
