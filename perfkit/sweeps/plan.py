"""A sweep's plan: models × runtimes × precisions × batches × scenarios expanded to cells, in one
deterministic order, with the record keys each cell must produce.

A cell is one model × runtime × precision × batch. The sweep's scenarios are measured inside the cell
rather than as cells of their own: Offline and Server build on SingleStream's timing at the same batch
over the same entered runner (Offline's K = 1 is SingleStream's number), so splitting them would time
SingleStream twice. Which scenario runs at a cell's batch is decided over the model's whole batch list,
as ``perfkit profile`` decides it (Offline at the largest, Server at the smallest): a sweep's records
are, key for key, those of ``perfkit profile`` with the same flags, one model after the other.

One artifact per (model, runtime, precision, device): every cell of a model gets the same batch range
(covering all its batches) and the same TensorRT ``profile_batches``, so the artifact cache, keyed on
content, serves every cell the one export (``perfkit.plan`` explains the keys).

``Setup`` is what a worker needs to measure any cell (plain data: it crosses to Ray workers, which
resolve the models again from their requests rather than receive built modules).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from perfkit.errors import UsageError
from perfkit.results import Failure, Kind, Where


@dataclass(frozen=True)
class Cell:
    """One model × runtime × precision × batch of a sweep (``index``: its place in the plan)."""

    index: int
    model: str
    runtime: str
    precision: str
    batch: int

    @property
    def artifact(self) -> tuple[str, str, str]:
        """What its artifact depends on besides the sweep's settings: (model, runtime, precision)."""
        return self.model, self.runtime, self.precision

    def __str__(self) -> str:
        return f"{self.model} {self.runtime} {self.precision} batch {self.batch}"


@dataclass(frozen=True)
class Setup:
    """Everything a process needs to measure a cell besides the cell (plain, picklable data).

    Attributes:
        requests: model name → its ``perfkit.zoo.sources.resolve`` keywords (``text`` included).
        identities: model name → its identity where the plan was made (a worker checks its own).
        batches: model name → the sweep's batches for it (a fixed-batch model has its own).
        scenarios: scenario names (the base one first); scenario_options: their option values by name.
        memory: measure peak memory per cell (a child process each).
        device, artifacts, threads, options, force: the measuring context (``perfkit.context.Context``).
        omp_threads: the driver's ``$OMP_NUM_THREADS`` (a Ray worker's is Ray's: see ``perfkit.sweeps.ray``).
    """

    requests: dict
    identities: dict
    batches: dict
    scenarios: tuple[str, ...]
    scenario_options: dict = field(default_factory=dict)
    memory: bool = True
    device: str = "cpu"
    artifacts: str = ""
    threads: int | None = None
    options: dict = field(default_factory=dict)
    force: bool = False
    omp_threads: str | None = None

    def plan(self, cell: Cell):
        """The ``perfkit.plan.Plan`` of one cell: its runtime, precision and batch, the scenarios that
        measure that batch in the whole sweep, an artifact range covering every batch of the model."""
        from perfkit.plan import Plan, ScenarioRun
        from perfkit.profiler.scenarios import get

        every = self.batches[cell.model]
        runs = []
        for name in self.scenarios:
            scenario = get(name)
            if scenario.base or cell.batch in scenario.batches(every):
                runs.append(ScenarioRun.of(name, {o.name: self.scenario_options.get(o.name) for o in scenario.options}))
        return Plan((cell.runtime,), (cell.batch,), (cell.precision,), tuple(runs), self.memory, device=self.device,
                    covers=tuple(every))

    def context(self, model: str, resolved: dict, progress=None):
        """The measuring context of ``model``'s cells; ``resolved``: the process's memo of artifacts.
        ``profile_batches`` is the model's whole batch list (unless set), so each cell's TensorRT
        engine is the same one."""
        from perfkit.context import NO_PROGRESS, Context

        options = {"profile_batches": tuple(self.batches[model]), **self.options}
        return Context(device=self.device, artifacts=self.artifacts, threads=self.threads, options=options,
                       force=self.force, progress=progress or NO_PROGRESS, resolved=resolved)


@dataclass(frozen=True)
class SweepPlan:
    """The cells of a sweep, in order, over its ``Setup``; ``specs``: model name → ``ModelSpec``."""

    setup: Setup
    specs: dict
    cells: tuple[Cell, ...]

    def keys(self, cell: Cell) -> set[tuple]:
        """The record keys (``Record.key``) that measuring ``cell`` produces."""
        return self.setup.plan(cell).keys(self.specs[cell.model])

    def failures(self, cell: Cell, error: str) -> list[Failure]:
        """What ``cell`` records when it cannot be measured (its worker was lost, its export failed): a
        failure for each scenario's point, and no memory record, as ``perfkit profile`` records a
        runtime that cannot be opened."""
        spec = self.specs[cell.model]
        return [Failure.of(kind, Where.of(spec, runtime, precision, batch, self.setup.device), error)
                for kind, _, runtime, precision, batch, _ in sorted(self.keys(cell), key=str) if kind != Kind.MEMORY]

    def shard(self, index: int, count: int) -> tuple[Cell, ...]:
        """Shard ``index`` of ``count``: a contiguous slice of the plan (so a shard's cells share their
        artifacts), sizes differing by one at most; the shards are disjoint and together the plan."""
        if not 0 <= index < count:
            raise UsageError(f"--shard {index}/{count}: the index must lie in 0..{count - 1}")
        n = len(self.cells)
        return self.cells[index * n // count:(index + 1) * n // count]

    @property
    def identity(self) -> str:
        """A hash of the cells and of everything that changes a number: the same sweep has the same one
        wherever and however often it is run (its runs are found by it; see ``perfkit.sweeps.state``)."""
        s = self.setup
        payload = {
            "cells": [(c.model, self.specs[c.model].identity, c.runtime, c.precision, c.batch) for c in self.cells],
            "scenarios": s.scenarios, "scenario_options": s.scenario_options, "memory": s.memory,
            "device": s.device.split(":")[0], "threads": s.threads, "options": s.options,
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def expand(specs: dict, backends: dict, precisions, batches: dict, device: str) -> tuple[Cell, ...]:
    """The cells of models × precisions × runtimes × batches in that order (``perfkit profile``'s), each
    runtime at the precisions it runs on ``device`` (the reference, eager, not at int8).

    Args:
        specs: model name → ModelSpec; backends: model name → the runtimes that run it;
        precisions: the precisions asked for; batches: model name → its batches.
    """
    from perfkit.backends import at_precision

    cells: list[Cell] = []
    for name in specs:
        for p in precisions:
            for backend in at_precision(backends[name], p, device):
                for b in batches[name]:
                    cells.append(Cell(len(cells), name, backend.name, str(p), b))
    return tuple(cells)


def parse_shard(text: str | None, environ: dict) -> tuple[int, int]:
    """``--shard I/N`` → (I, N); None → (0, 1). ``auto`` takes I from the scheduler: Slurm's
    ``$SLURM_ARRAY_TASK_ID`` (less ``$SLURM_ARRAY_TASK_MIN``; N from ``$SLURM_ARRAY_TASK_COUNT`` when not
    given) or a Kubernetes Indexed Job's ``$JOB_COMPLETION_INDEX`` (``auto/N``: N is the Job's completions)."""
    if text is None:
        return 0, 1
    index, _, count = str(text).strip().partition("/")
    try:
        if index == "auto":
            index, count = _scheduler_shard(count, environ)
        index, count = int(index), int(count)
    except ValueError:
        raise UsageError(f"--shard takes I/N (0 <= I < N), auto or auto/N; got '{text}'") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: the index must lie in 0..N-1 and N be positive")
    return index, count


def _scheduler_shard(count: str, environ: dict) -> tuple[str, str]:
    if "SLURM_ARRAY_TASK_ID" in environ:
        index = int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
        return str(index), count or environ.get("SLURM_ARRAY_TASK_COUNT", "")
    if "JOB_COMPLETION_INDEX" in environ:
        if not count:
            raise UsageError("--shard auto in a Kubernetes Indexed Job needs the shard count: --shard auto/N "
                             "(N = the Job's completions)")
        return environ["JOB_COMPLETION_INDEX"], count
    raise UsageError("--shard auto reads $SLURM_ARRAY_TASK_ID (a Slurm job array) or $JOB_COMPLETION_INDEX (a "
                     "Kubernetes Indexed Job); neither is set: pass --shard I/N")
