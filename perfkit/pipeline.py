"""``perfkit run``: the whole job for each model, one run id in the store.

    model → complexity → export (every runtime this machine can build) → parity vs eager
    → ImageNet-val accuracy (when data is given) → profile (SingleStream latency per batch, the
    Offline scenario at the largest batch, memory) → Rich summary → HTML report

Each step calls the same library function as its own command (``summary``, ``export``, ``check``,
``validate``, ``profile``), so the pipeline adds only the plan, resume and failure handling. A step
that fails is recorded and the pipeline goes on with the rest.

Resume: the pipeline knows the plan (models × runtimes × precisions × batches), so it knows every
record each step must produce. A step counts as finished only when each of those records exists
and is ok; otherwise its earlier records are marked superseded and the step runs again, so a
resumed run ends with exactly one current record per planned key, and its status and exit code
agree with those records.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from perfkit.context import NO_PROGRESS, Context, artifacts_dir
from perfkit.device import available_cores
from perfkit.errors import PerfkitError
from perfkit.profile import ProfilePlan, expected_keys
from perfkit.profile.offline import OfflineConfig
from perfkit.profile.timing import TimingConfig
from perfkit.results import Failure, Kind, Where
from perfkit.vocab import BatchRange, Precision
from perfkit.zoo.registry import SEED_MODELS, resolve


class Step(StrEnum):
    COMPLEXITY = "complexity"
    EXPORT = "export"
    PARITY = "parity"
    ACCURACY = "accuracy"
    PROFILE = "profile"


# Timing for the pipeline: enough iterations for a stable median, short enough that the four
# seed models (VGG16 included) finish in minutes on a 2-core CPU. `perfkit profile` measures longer;
# the pipeline also measures memory at the largest batch only (one process launch each). Three
# iterations after a warm-up (eight before int8, OpenVINO and the Offline scenario joined the default
# run; five cost 12 min cold): at batch 8 on two cores one VGG16 call takes seconds, and one
# iteration of every point of the default run is 21 s. A survey's p50, not a p99: `perfkit profile`.
PIPELINE_TIMING = TimingConfig(warmup=1, warmup_seconds=0.2, iterations=3, min_seconds=0.5)
# The Offline scenario at the largest batch: a short window per K, K up to the cores (at most 4),
# stopping at the first K that is not faster. More requests in flight than cores cannot run side by
# side on a CPU runtime that gives each at least one thread. `perfkit profile` measures longer.
PIPELINE_OFFLINE = OfflineConfig(seconds=0.5, max_requests=min(4, available_cores()))
EVAL_BATCH = 32


@dataclass
class RunConfig:
    models: list[str] = field(default_factory=lambda: list(SEED_MODELS))
    weights: str = "auto"
    device: str = "cpu"  # resolved: cpu or cuda:N
    runtimes: list[str] | None = None  # None: every available backend marked for `perfkit run`
    precisions: list[Precision] = field(default_factory=lambda: [Precision.FP32])
    automatic: bool = False  # --precision auto: each runtime at the precisions of its Backend.run_precisions
    batches: list[int] = field(default_factory=lambda: [1, 8])
    parity_samples: int = 8
    parity_batches: list[int] = field(default_factory=lambda: [1, 4])
    data: Path | None = None  # ImageNet-val; accuracy is skipped without it
    limit: int | None = None
    workers: int = 2
    cache: Path | None = None
    artifacts: Path | None = None
    threads: int | None = None
    options: dict = field(default_factory=dict)
    timing: TimingConfig = PIPELINE_TIMING
    offline: OfflineConfig | None = PIPELINE_OFFLINE  # None: SingleStream only (--scenario singlestream)
    memory: bool = True
    resume: str | None = None
    steps: tuple[Step, ...] = tuple(Step)

    def backends(self) -> list:
        """The exported runtimes measured beside eager (the reference is always measured)."""
        from perfkit.backends import default_backends, parse_backends

        chosen = parse_backends(self.runtimes) if self.runtimes is not None else default_backends(self.device)
        return [b for b in chosen if not b.reference]

    @property
    def batch_range(self) -> BatchRange:
        """One artifact serves parity, accuracy and profiling: the default range, widened if needed."""
        return BatchRange.covering([*self.batches, *self.parity_batches, EVAL_BATCH])

    def profile_plan(self) -> ProfilePlan:
        from perfkit.backends import reference

        return ProfilePlan((reference(), *self.backends()), tuple(self.batches), tuple(self.precisions), self.timing,
                           self.memory, (max(self.batches),), device=self.device, automatic=self.automatic,
                           offline=self.offline)


@dataclass
class PipelineResult:
    run_id: str
    failures: list[str]  # "model kind runtime: error", one per current error record
    skipped: list[str]  # steps skipped on resume ("lenet5 export")
    seconds: float


def run_pipeline(cfg: RunConfig, store, progress=NO_PROGRESS) -> PipelineResult:
    """Run every step for every model (``progress`` shows which)."""
    from perfkit.record import recording

    started = time.perf_counter()
    resume_id = store.resumable(cfg.resume) if cfg.resume else None  # unknown: an error, never a new run
    skipped: list[str] = []
    backends = cfg.backends()
    ctx = Context(device=cfg.device, artifacts=artifacts_dir(cfg.artifacts), threads=cfg.threads,
                  options=cfg.options, progress=progress)
    with recording(store, run_id=resume_id, device=cfg.device) as rec:
        data = _open_data(cfg) if Step.ACCURACY in cfg.steps and cfg.data else None
        for name in cfg.models:
            try:
                spec = resolve(name, cfg.weights)
            except PerfkitError as exc:
                if resume_id:
                    store.supersede(rec.run_id, name, (Kind.MODEL,))
                rec.add(Failure.of(Kind.MODEL, Where(name), exc))
                continue
            rec.model(spec)
            for step in cfg.steps:
                if step is Step.ACCURACY and data is None:
                    continue
                plan = STEPS[step]
                if resume_id and store.finished(rec.run_id, spec.name, plan.kinds, plan.keys(cfg, spec, backends)):
                    skipped.append(f"{spec.name} {step}")
                    continue
                if resume_id:
                    store.supersede(rec.run_id, spec.name, plan.kinds)
                progress.update(f"{spec.label}: {step}")
                _run_step(rec, plan, cfg, spec, backends, ctx, data)
        current = store.records(rec.run_id)
        failed = [r for r in current if r.status == "error" or (r.kind == Kind.PARITY and not r.metrics.get("passed"))]
        unreadable = store.unreadable(rec.run_id)  # a resume re-measures those of its steps (and supersedes them)
        if failed or unreadable:  # the run's status and exit code follow its current records, resumed ones included
            rec.fail(f"{len(failed)} failed measurement(s), {len(unreadable)} unreadable record(s)")
    failures = [f"{r.model} {r.kind}{' ' + r.runtime if r.runtime else ''}{'' if r.batch is None else f' batch {r.batch}'}: "
                f"{r.error or '; '.join(r.metrics.get('failures') or ['parity FAILED'])}" for r in failed] + unreadable
    return PipelineResult(rec.run_id, failures, skipped, time.perf_counter() - started)


def _run_step(rec, plan: "StepPlan", cfg: RunConfig, spec, backends, ctx, data) -> None:
    try:
        rec.add_all(plan.run(cfg, spec, backends, ctx, data))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a step that fails as a whole is recorded; the others go on
        rec.add(Failure.of(plan.kinds[0], Where.of(spec, device=cfg.device), exc))


def _open_data(cfg: RunConfig):
    from perfkit.data.imagenet import open_imagenet

    return open_imagenet(cfg.data).take(cfg.limit, None)


def default_data() -> Path | None:
    value = os.environ.get("PERFKIT_IMAGENET_VAL")
    return Path(value) if value else None


# -- the steps: what each runs, and the record keys it must produce -----------------------------------


@dataclass(frozen=True)
class StepPlan:
    kinds: tuple[Kind, ...]
    run: Callable[..., Iterable]
    keys: Callable[..., set[tuple]]


def _key(kind: Kind, where: Where) -> tuple:
    return (str(kind), where.model, where.runtime, where.precision, where.batch, where.device)


def _complexity(cfg, spec, backends, ctx, data) -> Iterator:
    from perfkit.analysis import analyze

    yield analyze(spec)


def _complexity_keys(cfg, spec, backends) -> set[tuple]:
    return {_key(Kind.COMPLEXITY, Where.of(spec, "eager", Precision.FP32, 1, "cpu"))}


def _pairs(cfg, backends) -> Iterator[tuple]:
    """(backend, precision) for each precision of the run and each backend that runs it here."""
    from perfkit.backends import at_precision

    for p in cfg.precisions:
        for b in at_precision(backends, p, cfg.device, automatic=cfg.automatic):
            yield b, p


def _export(cfg, spec, backends, ctx, data) -> Iterator:
    from perfkit.backends import export_each

    for b, p in _pairs(cfg, [b for b in backends if b.needs_artifact]):
        yield from export_each(spec, [b], ctx, precision=p, batch=cfg.batch_range)


def _export_keys(cfg, spec, backends) -> set[tuple]:
    return {_key(Kind.EXPORT, Where.of(spec, b.name, p, cfg.batch_range.max, cfg.device))
            for b, p in _pairs(cfg, [b for b in backends if b.needs_artifact])}


def _parity(cfg, spec, backends, ctx, data) -> Iterator:
    from perfkit.accuracy.parity import ParityCheck, check_parity, synthetic_inputs
    from perfkit.results import Failure as F

    from perfkit.backends import at_precision

    inputs = synthetic_inputs(spec, cfg.parity_samples)
    for p in cfg.precisions:
        chosen = at_precision(backends, p, cfg.device, automatic=cfg.automatic)
        for result in check_parity(spec, chosen, ctx, inputs=(inputs, "synthetic"),
                                   batches=cfg.parity_batches, precision=p, batch_range=cfg.batch_range):
            if isinstance(result, (ParityCheck, F)):  # exports belong to the export step
                yield result


def _parity_keys(cfg, spec, backends) -> set[tuple]:
    return {_key(Kind.PARITY, Where.of(spec, b.name, p, batch, cfg.device))
            for b, p in _pairs(cfg, backends) for batch in cfg.parity_batches}


def _accuracy(cfg, spec, backends, ctx, data) -> Iterator:
    from perfkit.accuracy.harness import EvalOptions, validate_model

    options = EvalOptions(batch_size=EVAL_BATCH, workers=cfg.workers, cache_dir=cfg.cache)
    from perfkit.backends import reference

    done = validate_model(spec, data, [reference(), *backends], ctx, precisions=cfg.precisions, options=options,
                          automatic=cfg.automatic)
    yield done.result
    yield from done.open_failures


def _accuracy_keys(cfg, spec, backends) -> set[tuple]:
    from perfkit.backends import reference

    ref = {_key(Kind.ACCURACY, Where.of(spec, reference().name, Precision.FP32, EVAL_BATCH, cfg.device))}
    return ref | {_key(Kind.ACCURACY, Where.of(spec, b.name, p, EVAL_BATCH, cfg.device))
                  for b, p in _pairs(cfg, [reference(), *backends])}


def _profile(cfg, spec, backends, ctx, data) -> Iterator:
    from perfkit.profile import profile_model

    return profile_model(spec, cfg.profile_plan(), ctx)


def _profile_keys(cfg, spec, backends) -> set[tuple]:
    return expected_keys(spec, cfg.profile_plan(), cfg.device)


STEPS = {
    Step.COMPLEXITY: StepPlan((Kind.COMPLEXITY,), _complexity, _complexity_keys),
    Step.EXPORT: StepPlan((Kind.EXPORT,), _export, _export_keys),
    Step.PARITY: StepPlan((Kind.PARITY,), _parity, _parity_keys),
    Step.ACCURACY: StepPlan((Kind.ACCURACY,), _accuracy, _accuracy_keys),
    Step.PROFILE: StepPlan((Kind.LATENCY, Kind.THROUGHPUT, Kind.MEMORY), _profile, _profile_keys),
}
