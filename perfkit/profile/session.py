"""One model profiled end to end: every runtime × precision × batch timed, then its memory measured.

This is the work behind `perfkit profile` and the profile stage of `perfkit run`: it yields one
typed result per measurement (a ``Failure`` for each one that failed; the rest go on) and leaves
recording and printing to its caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from perfkit.errors import UsageError
from perfkit.profile import latency, memory, roofline
from perfkit.profile.offline import OfflineConfig, offline_capable
from perfkit.profile.timing import TimingConfig
from perfkit.results import Failure, Kind, Where, describe
from perfkit.vocab import BatchRange, Precision


@dataclass(frozen=True)
class ProfilePlan:
    """What to measure: runtimes × precisions × batches, how long, and where memory is measured."""

    backends: tuple
    batches: tuple[int, ...]
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    timing: TimingConfig = TimingConfig()
    memory: bool = True
    memory_batches: tuple[int, ...] | None = None  # None: every batch
    offline: OfflineConfig | None = None  # the Offline scenario at the largest batch; None: SingleStream only

    def __post_init__(self):
        if not self.backends or not self.batches or not self.precisions:
            raise UsageError("profiling needs at least one runtime, one batch size and one precision")
        if min(self.batches) < 1:
            raise UsageError(f"batch sizes must be positive, got {min(self.batches)}")

    @property
    def steps(self) -> int:
        """Latency points plus memory points (a progress bar's total)."""
        points = len(self.backends) * len(set(self.batches)) * len(self.precisions)
        mem = len(self.backends) * len(self.precisions) * len(set(self.memory_batches or self.batches))
        return points + (mem if self.memory else 0) + len(self.offline_backends) * len(self.precisions)

    @property
    def offline_backends(self) -> tuple:
        """The backends the Offline scenario measures (none without ``offline``)."""
        if self.offline is None:
            return ()
        from perfkit.backends import get

        return tuple(b for b in self.backends if offline_capable(get(b)))


def profile_model(spec, plan: ProfilePlan, ctx) -> Iterator:
    """Time ``spec`` in every runtime at every precision and batch, then measure its peak memory.

    Yields ``LatencyResult`` (with the roofline position against the device peak), with
    ``plan.offline`` an ``OfflineResult`` per runtime at the largest batch, then ``MemoryResult``
    (one spawned process per runtime and batch, after every timing, so those processes never
    disturb a measurement), and a ``Failure`` for each measurement that failed.
    A runtime whose timing failed at a batch gets no memory measurement there (its latency
    failure already says why).
    """
    flops = roofline.model_flops(spec)
    timed: list = []
    for precision in plan.precisions:
        for result in latency.sweep(spec, plan.backends, plan.batches, ctx, precision=precision, config=plan.timing,
                                    flops=flops, offline=plan.offline):
            if isinstance(result, latency.LatencyResult) or (isinstance(result, Failure) and result.kind == Kind.LATENCY):
                timed.append(result)
            yield result
    if not plan.memory:
        return
    wanted = set(plan.memory_batches or plan.batches)
    brange = BatchRange.covering(plan.batches)
    for result in timed:
        where = result.where
        if where.batch not in wanted:
            continue
        if isinstance(result, Failure):  # its latency failure already says why
            ctx.progress.update(advance=1)
            continue
        ctx.progress.update(f"memory {spec.name} {where.runtime} {where.precision} batch {where.batch}")
        try:
            yield memory.measure_memory(spec, where.runtime, where.batch, ctx, precision=where.precision,
                                        brange=brange)
        except Exception as exc:
            yield Failure.of(Kind.MEMORY, where, describe(exc))
        ctx.progress.update(advance=1)


def expected_keys(spec, plan: ProfilePlan, device: str) -> set[tuple]:
    """The record keys a complete profile of ``spec`` under ``plan`` produces (for resume)."""
    keys = set()
    for p in plan.precisions:
        for b in plan.offline_backends:
            w = Where.of(spec, getattr(b, "name", b), p, max(plan.batches), device)
            keys.add((str(Kind.THROUGHPUT), w.model, w.runtime, w.precision, w.batch, w.device))
        for b in plan.backends:
            name = getattr(b, "name", b)
            for batch in plan.batches:
                w = Where.of(spec, name, p, batch, device)
                keys.add((str(Kind.LATENCY), w.model, w.runtime, w.precision, w.batch, w.device))
                if plan.memory and batch in set(plan.memory_batches or plan.batches):
                    keys.add((str(Kind.MEMORY), w.model, w.runtime, w.precision, w.batch, w.device))
    return keys
