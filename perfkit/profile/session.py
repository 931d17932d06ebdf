"""One model profiled end to end: every runtime × precision × batch timed, then its memory measured.

This is the work behind `perfkit profile` and the profile stage of `perfkit run`: it yields one
typed result per measurement (a ``Failure`` for each one that failed; the rest go on) and leaves
recording and printing to its caller.
"""

from __future__ import annotations

import collections
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
    device: str = "cpu"  # what the runtimes run on (which precisions each one runs)
    automatic: bool = False  # perfkit run's automatic plan: each runtime at its Backend.run_precisions
    offline: OfflineConfig | None = None  # the Offline scenario at the largest batch; None: SingleStream only

    def __post_init__(self):
        if not self.backends or not self.batches or not self.precisions:
            raise UsageError("profiling needs at least one runtime, one batch size and one precision")
        if min(self.batches) < 1:
            raise UsageError(f"batch sizes must be positive, got {min(self.batches)}")

    def at(self, precision: Precision, device: str) -> list:
        """The backends of the plan measured at ``precision`` on ``device``."""
        from perfkit.backends import at_precision

        return at_precision(self.backends, precision, device, automatic=self.automatic)

    @property
    def steps(self) -> int:
        """Latency points plus memory points (a progress bar's total)."""
        pairs = sum(len(self.at(p, self.device)) for p in self.precisions)
        mem = pairs * len(set(self.memory_batches or self.batches))
        offline = sum(len(self.offline_at(p, self.device)) for p in self.precisions)
        return pairs * len(set(self.batches)) + (mem if self.memory else 0) + offline

    @property
    def offline_backends(self) -> tuple:
        """The backends the Offline scenario measures at some precision (none without ``offline``)."""
        return tuple(dict.fromkeys(b for p in self.precisions for b in self.offline_at(p, self.device)))

    def offline_at(self, precision: Precision, device: str) -> list:
        """The backends the Offline scenario measures at ``precision`` on ``device``."""
        return [b for b in self.at(precision, device) if offline_capable(b)] if self.offline is not None else []


def profile_model(spec, plan: ProfilePlan, ctx) -> Iterator:
    """Time ``spec`` in every runtime at every precision it runs and every batch, then measure its peak
    memory (the reference is timed at its float precisions, not at int8).

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
        backends = plan.at(precision, ctx.device)
        for result in latency.sweep(spec, backends, plan.batches, ctx, precision=precision, config=plan.timing,
                                    flops=flops, offline=plan.offline):
            if isinstance(result, latency.LatencyResult) or (isinstance(result, Failure) and result.kind == Kind.LATENCY):
                timed.append(result)
            yield result
    if not plan.memory:
        return
    wanted = set(plan.memory_batches or plan.batches)
    brange = BatchRange.covering(plan.batches)
    todo = [r for r in timed if r.where.batch in wanted]
    yield from _memory_results(spec, todo, brange, ctx)


def _memory_results(spec, timed: list, brange: BatchRange, ctx) -> Iterator:
    """A memory measurement per timed point (a failed timing gets none), in order, with up to
    ``memory.concurrent_children`` child processes measuring at once; any left running when this
    stops (Ctrl-C, an error) are killed."""
    pending: collections.deque = collections.deque()
    workers = memory.concurrent_children(ctx.device)

    def finish() -> Iterator:
        job = pending.popleft()
        try:
            yield job.result()
        except Exception as exc:
            yield Failure.of(Kind.MEMORY, job.where, describe(exc))
        ctx.progress.update(advance=1)

    try:
        for result in timed:
            where = result.where
            if isinstance(result, Failure):  # its latency failure already says why
                ctx.progress.update(advance=1)
                continue
            ctx.progress.update(f"memory {spec.name} {where.runtime} {where.precision} batch {where.batch}")
            try:
                pending.append(memory.start_memory(spec, where.runtime, where.batch, ctx, precision=where.precision,
                                                   brange=brange))
            except Exception as exc:
                while pending:  # the results started before it come first
                    yield from finish()
                yield Failure.of(Kind.MEMORY, where, describe(exc))
                ctx.progress.update(advance=1)
            while len(pending) >= workers:
                yield from finish()
        while pending:
            yield from finish()
    finally:
        for job in pending:
            job.cancel()


def expected_keys(spec, plan: ProfilePlan, device: str) -> set[tuple]:
    """The record keys a complete profile of ``spec`` under ``plan`` produces (for resume)."""
    keys = set()
    for p in plan.precisions:
        for b in plan.offline_at(p, device):
            w = Where.of(spec, b.name, p, max(plan.batches), device)
            keys.add((str(Kind.THROUGHPUT), w.model, w.runtime, w.precision, w.batch, w.device))
        for b in plan.at(p, device):
            name = b.name
            for batch in plan.batches:
                w = Where.of(spec, name, p, batch, device)
                keys.add((str(Kind.LATENCY), w.model, w.runtime, w.precision, w.batch, w.device))
                if plan.memory and batch in set(plan.memory_batches or plan.batches):
                    keys.add((str(Kind.MEMORY), w.model, w.runtime, w.precision, w.batch, w.device))
    return keys
