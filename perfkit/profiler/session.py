"""One model profiled end to end: every runtime × precision measured in every scenario of the plan, at
the scenario's batches, then its memory measured.

This is the work behind `perfkit profile` and the profile stage of `perfkit run`: it yields one
typed result per measurement (a ``Failure`` for each one that failed; the rest go on) and leaves
recording and printing to its caller.

Each runtime × precision is opened once, over the artifact the plan resolved for it (the one parity
checked), and every scenario drives that same entered runner: SingleStream at each batch in
increasing order, then the others at theirs (the Offline scenario's K = 1 is SingleStream's timing
at its batch). A batch that runs out of memory fails, and every larger batch of that runner is
skipped (it cannot fit either); any other failure is that point's, and the sweep goes on. Every
runtime runs in its tuned configuration (its backend's own: see perfkit/backends/), recorded with
each timing.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import torch

from perfkit.profiler import layers, memory, roofline
from perfkit.profiler.scenarios import Point
from perfkit.results import Failure, Kind, Where, describe


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OOM, or a runtime's allocation failure (ONNX Runtime and TensorRT raise plain errors)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("out of memory", "failed to allocate memory", "bad_alloc", "cudaerrormemoryallocation"))


def profile_model(spec, plan, ctx) -> Iterator:
    """Measure ``spec`` under ``plan`` (a ``perfkit.plan.Plan``): every scenario's results in measuring
    order, then a ``MemoryResult`` per runtime × precision at the memory batches (one child process
    each, after every timing, so those processes never disturb a measurement), and a ``Failure`` for
    each measurement that failed. A runtime whose timing failed at a batch gets no memory measurement
    there (its failure already says why). The reference is measured at its float precisions, not at int8.
    """
    ctx = plan.context(ctx)
    counts = layers.module_counts(spec) if plan.layers else None
    counted = counts.complexity if counts else None  # a module's count serves both (a graph has no modules)
    flops = roofline.flops_of(counted) if counted else roofline.model_flops(spec)
    base = plan.scenarios[0].scenario
    timed: list = []  # the base scenario's points: memory is measured where they were timed
    for backend, precision in plan.pairs():
        for result in _runtime(spec, plan, backend, precision, ctx, flops, counts):
            if isinstance(result, base.result) or (isinstance(result, Failure) and result.kind == base.kind):
                timed.append(result)
            yield result
    if plan.memory:
        wanted = set(plan.memory_batches or plan.batches)
        yield from _memory_results(spec, [r for r in timed if r.where.batch in wanted], plan.batch_range, ctx)


def _runtime(spec, plan, backend, precision, ctx, flops, counts) -> Iterator:
    """Every scenario of one runtime × precision, over one entered runner, then its layer profile at each
    batch (``counts``: the model's modules; None: no layer profile)."""
    from perfkit.backends import open_runner

    runs = plan.runs_for(backend)
    where = Where.of(spec, backend.name, precision, device=ctx.device)
    points = [(run, b) for run in runs for b in plan.scenario_batches(run)]
    ctx.progress.update(f"timing {spec.name} {backend.name} {precision}")
    try:
        runner = open_runner(spec, backend, ctx, precision=precision, batch=plan.batch_range)
        runner.__enter__()
    except Exception as exc:  # export or load failed: every point of this runtime fails
        failed = [(run.scenario.kind, b) for run, b in points] + [(Kind.LAYERS, b) for b in _layer_batches(plan)]
        for kind, b in failed:
            yield Failure.of(kind, where.replace(batch=b), exc)
            ctx.progress.update(advance=1)
        return
    try:
        earlier: dict[int, dict] = collections.defaultdict(dict)  # batch → scenario name → its result
        yield from _drive(spec, runner, where, points, ctx, flops, earlier)
        if counts is not None:
            yield from _layer_profiles(spec, runner, where, plan, ctx, counts, earlier)
    finally:
        runner.__exit__(None, None, None)


def _layer_batches(plan) -> tuple[int, ...]:
    return plan.batches if plan.layers else ()


def _layer_profiles(spec, runner, where: Where, plan, ctx, counts, earlier: dict) -> Iterator:
    """The layer profile of an entered runner at each batch (after its timings: profilers add overhead), with
    the base scenario's median at that batch beside it; a failure is that batch's."""
    base = plan.scenarios[0].scenario
    for b in _layer_batches(plan):
        ctx.progress.update(f"layers {spec.name} {runner.name} {runner.precision} batch {b}")
        timed = earlier[b].get(base.name)
        median = base.metrics(timed).get("latency_median_ms") if timed is not None else None
        try:
            yield layers.profile_layers(spec, runner, where.replace(batch=b), counts, median)
        except Exception as exc:
            yield Failure.of(Kind.LAYERS, where.replace(batch=b), describe(exc))
        ctx.progress.update(advance=1)


def _drive(spec, runner, where: Where, points: list, ctx, flops, earlier: dict) -> Iterator:
    oom_at = None
    for run, b in points:
        scenario, at = run.scenario, where.replace(batch=b)
        ctx.progress.update(f"{scenario.name} {spec.name} {runner.name} {runner.precision} batch {b}")
        if oom_at is not None and b >= oom_at:
            yield Failure.of(scenario.kind, at, f"MemoryError: skipped: batch {oom_at} already ran out of memory")
        else:
            try:
                result = scenario.measure(Point(spec, runner, at, ctx, run.config, flops, earlier[b]))
                earlier[b][scenario.name] = result
                yield result
            except Exception as exc:
                if is_out_of_memory(exc):
                    oom_at = b if oom_at is None else min(oom_at, b)
                    if runner.device.type == "cuda":
                        torch.cuda.empty_cache()
                yield Failure.of(scenario.kind, at, describe(exc))
        ctx.progress.update(advance=1)


def _memory_results(spec, timed: list, brange, ctx) -> Iterator:
    """A memory measurement per timed point (a failed timing gets none), in order, with up to
    ``memory.concurrent_children`` child processes measuring at once; any left running when this
    stops (Ctrl-C, an error) are killed. Each child gets the artifact the timing used."""
    from perfkit.backends import prepare

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
            if isinstance(result, Failure):  # its timing failure already says why
                ctx.progress.update(advance=1)
                continue
            ctx.progress.update(f"memory {spec.name} {where.runtime} {where.precision} batch {where.batch}")
            try:
                artifact = prepare(spec, where.runtime, ctx, precision=where.precision, batch=brange)
                pending.append(memory.start_memory(spec, where.runtime, where.batch, ctx, precision=where.precision,
                                                   brange=brange, artifact=artifact))
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
