"""The plan: what a command or ``perfkit run`` measures, and the artifacts it needs, each resolved once.

A ``Plan`` expands runtimes × precisions × batches × scenarios into the points a profile measures
(and, for ``perfkit run``, the record keys each step must produce, for resume). Its artifacts are
those of (model, backend, precision, batch range, export options): the range covers every batch
any step runs (``covers``: parity's and evaluation's too), and the export options include
``profile_batches`` (TensorRT builds an optimization profile per timed batch) for every step, so the
engine that is timed is the one that passed parity.

Resolved once: ``perfkit.backends.prepare`` keeps each artifact it resolved (exported, or found in
the cache and hash-checked) in the context's ``resolved`` memo, and a failure too, so parity,
accuracy, every scenario and memory get the same ``Artifact`` object (an export that failed is not
tried again by the next step: the next step reports the same failure). Memory children are handed
the resolved artifact; they do not look it up again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from perfkit.errors import UsageError
from perfkit.results import Kind, Where
from perfkit.vocab import BatchRange, Precision


@dataclass(frozen=True)
class ScenarioRun:
    """A scenario with the configuration it runs with."""

    scenario: Any  # perfkit.profiler.scenarios.Scenario
    config: Any

    @classmethod
    def of(cls, name: str, values: dict | None = None, *, quick: bool = False) -> "ScenarioRun":
        from perfkit.profiler.scenarios import get

        scenario = get(name)
        try:
            return cls(scenario, scenario.config(values, quick=quick))
        except ValueError as exc:
            raise UsageError(f"--scenario {scenario.name}: {exc}") from None


def default_scenarios(quick: bool = False) -> tuple[ScenarioRun, ...]:
    from perfkit.profiler.scenarios import base

    return (ScenarioRun.of(base().name, quick=quick),)


@dataclass(frozen=True)
class Plan:
    """What to measure: runtimes × precisions × batches × scenarios, and where memory is measured.

    Attributes:
        backends: the runtimes measured (the reference too, where it is measured).
        batches: the batch sizes the base scenario times; other scenarios pick theirs from them.
        precisions: each runtime is measured at those of them it runs on ``device``.
        scenarios: the scenarios with their configurations, the base one (SingleStream) first.
        memory, memory_batches: peak memory per runtime × precision at these batches (None: every one).
        automatic: ``perfkit run``'s automatic plan: each runtime at its ``Backend.run_precisions``.
        covers: other batch sizes the artifacts must accept (parity's, evaluation's).
        layers: a per-layer profile of each runtime × precision at every batch (``perfkit.profiler.layers``).
    """

    backends: tuple
    batches: tuple[int, ...]
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    scenarios: tuple[ScenarioRun, ...] = field(default_factory=default_scenarios)
    memory: bool = True
    memory_batches: tuple[int, ...] | None = None
    device: str = "cpu"
    automatic: bool = False
    covers: tuple[int, ...] = ()
    layers: bool = False

    def __post_init__(self):
        from perfkit.backends import get

        object.__setattr__(self, "backends", tuple(map(get, self.backends)))
        object.__setattr__(self, "precisions", tuple(map(Precision, self.precisions)))
        if not self.backends or not self.batches or not self.precisions:
            raise UsageError("profiling needs at least one runtime, one batch size and one precision")
        if min(self.batches) < 1:
            raise UsageError(f"batch sizes must be positive, got {min(self.batches)}")
        if not self.scenarios or not self.scenarios[0].scenario.base:
            raise ValueError("a plan's first scenario is the base one (SingleStream)")
        object.__setattr__(self, "batches", tuple(sorted(set(self.batches))))

    # -- what is measured ------------------------------------------------------------------------

    def at(self, precision: Precision) -> list:
        """The backends of the plan measured at ``precision`` on the plan's device."""
        from perfkit.backends import at_precision

        return at_precision(self.backends, precision, self.device, automatic=self.automatic)

    def pairs(self) -> Iterator[tuple]:
        """(backend, precision) for every precision and each backend measured at it."""
        for p in self.precisions:
            for b in self.at(p):
                yield b, p

    def runs_for(self, backend) -> list[ScenarioRun]:
        """The plan's scenarios that can measure ``backend``, in order."""
        return [s for s in self.scenarios if s.scenario.unavailable(backend) is None]

    def not_measured(self) -> dict[str, dict[str, str]]:
        """scenario name → {runtime: why it cannot measure it}, for the plan's runtimes."""
        out: dict[str, dict[str, str]] = {}
        for run in self.scenarios:
            for backend in dict.fromkeys(b for b, _ in self.pairs()):
                why = run.scenario.unavailable(backend)
                if why:
                    out.setdefault(run.scenario.name, {})[backend.name] = why
        return out

    def scenario_batches(self, run: ScenarioRun) -> tuple[int, ...]:
        return tuple(sorted(set(run.scenario.batches(self.batches))))

    @property
    def base_config(self):
        """The base scenario's configuration (SingleStream's ``TimingConfig``)."""
        return self.scenarios[0].config

    # -- the artifacts ---------------------------------------------------------------------------

    @property
    def batch_range(self) -> BatchRange:
        """One artifact per runtime × precision serves every step: the default range, widened to cover
        every batch any of them runs."""
        return BatchRange.covering([*self.batches, *self.covers])

    def export_options(self, options: dict) -> dict:
        """The context's options plus ``profile_batches`` (one TensorRT optimization profile per timed
        batch), unless the user set it: the same options for every step, hence one artifact."""
        return {"profile_batches": self.batches, **{k: v for k, v in options.items() if v is not None}}

    def context(self, ctx):
        """``ctx`` with this plan's export options: every step's artifacts are then the same ones."""
        return ctx.replace(options=self.export_options(dict(ctx.options)))

    # -- counting and resume -----------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """Points the profile measures (every scenario's, and memory's): a progress bar's total."""
        return sum(1 for _ in self._points(None))

    def keys(self, spec) -> set[tuple]:
        """The record keys a complete profile of ``spec`` under this plan produces (for resume)."""
        return {(str(kind), *_where_key(where)) for kind, where in self._points(spec)}

    def _points(self, spec) -> Iterable[tuple]:
        memory_batches = set(self.memory_batches or self.batches)
        for backend, p in self.pairs():
            for run in self.runs_for(backend):
                for b in self.scenario_batches(run):
                    yield run.scenario.kind, _where(spec, backend, p, b, self.device)
            for b in self.batches if self.layers else ():
                yield Kind.LAYERS, _where(spec, backend, p, b, self.device)
            if self.memory:
                for b in self.batches:
                    if b in memory_batches:
                        yield Kind.MEMORY, _where(spec, backend, p, b, self.device)


def _where(spec, backend, precision, batch: int, device: str):
    return None if spec is None else Where.of(spec, backend.name, precision, batch, device)


def _where_key(w: Where) -> tuple:
    return (w.model, w.runtime, w.precision, w.batch, w.device)
