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

from perfkit.backends import artifact_batch, batches_for, runnable
from perfkit.context import NO_PROGRESS, Context, artifacts_dir
from perfkit.device import available_cores
from perfkit.errors import PerfkitError
from perfkit.profile import ProfilePlan, expected_keys
from perfkit.profile.offline import OfflineConfig
from perfkit.profile.timing import TimingConfig
from perfkit.results import Failure, Kind, Where
from perfkit.vocab import BatchRange, Precision
from perfkit.zoo.sources import resolve
from perfkit.zoo.sources.torchvision import SEED_MODELS


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
    model_code: str | None = None  # the user's own nn.Module (FILE.py:CALLABLE), measured after ``models``
    model_options: dict = field(default_factory=dict)  # the other ``resolve`` keywords (num_classes, input_size, ...)
    device: str = "cpu"  # resolved: cpu or cuda:N
    runtimes: list[str] | None = None  # None: every available backend marked for `perfkit run`
    precisions: list[Precision] = field(default_factory=lambda: [Precision.FP32])
    automatic: bool = False  # --precision auto: each runtime at the precisions of its Backend.run_precisions
    batches: list[int] = field(default_factory=lambda: [1, 8])
    parity_samples: int = 8
    parity_batches: list[int] = field(default_factory=lambda: [1, 4])
    data: Path | None = None  # ImageNet-val or an ImageFolder (perfkit.data.open_dataset); no accuracy without it
    labels: Path | None = None  # the class names of an ImageFolder, in the models' output order
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

    def profile_plan(self, spec, backends) -> ProfilePlan:
        from perfkit.backends import reference_for

        batches = batches_for(spec, self.batches)[0]  # a model with a fixed batch: that batch only
        return ProfilePlan(tuple(dict.fromkeys((reference_for(spec), *backends))), tuple(batches),
                           tuple(self.precisions), self.timing, self.memory, (max(batches),), device=self.device,
                           automatic=self.automatic, offline=self.offline)


@dataclass
class PipelineResult:
    run_id: str
    failures: list[str]  # "model kind runtime: error", one per current error record
    skipped: list[str]  # steps skipped on resume ("lenet5 export")
    seconds: float


def run_pipeline(cfg: RunConfig, store, progress=NO_PROGRESS, data=None) -> PipelineResult:
    """Run every step for every model (``progress`` shows which). ``data``: ``cfg.data`` opened by the
    caller already (``open_data``: a bad folder is refused before a run is started); None: opened here."""
    from perfkit.record import recording

    started = time.perf_counter()
    resume_id = store.resumable(cfg.resume) if cfg.resume else None  # unknown: an error, never a new run
    skipped: list[str] = []
    backends = cfg.backends()
    ctx = Context(device=cfg.device, artifacts=artifacts_dir(cfg.artifacts), threads=cfg.threads,
                  options=cfg.options, progress=progress)
    with recording(store, run_id=resume_id, device=cfg.device) as rec:
        if data is None and Step.ACCURACY in cfg.steps and cfg.data:
            data = open_data(cfg.data, cfg.labels, cfg.limit)
        for name, keywords in _requests(cfg):
            try:
                spec = resolve(**keywords)
            except PerfkitError as exc:
                if resume_id:
                    store.supersede(rec.run_id, name, (Kind.MODEL,))
                rec.add(Failure.of(Kind.MODEL, Where(name), exc))
                continue
            rec.model(spec)
            runs = runnable(spec, backends)[0]  # not a PyTorch runtime for an ONNX file
            for step in cfg.steps:
                if step is Step.ACCURACY and data is None:
                    continue
                plan = STEPS[step]
                if resume_id and store.finished(rec.run_id, spec.name, plan.kinds, plan.keys(cfg, spec, runs)):
                    skipped.append(f"{spec.name} {step}")
                    continue
                if resume_id:
                    store.supersede(rec.run_id, spec.name, plan.kinds)
                progress.update(f"{spec.label}: {step}")
                _run_step(rec, plan, cfg, spec, runs, ctx, data)
        current = store.records(rec.run_id)
        failed = [r for r in current if r.status == "error" or (r.kind == Kind.PARITY and not r.metrics.get("passed"))]
        unreadable = store.unreadable(rec.run_id)  # a resume re-measures those of its steps (and supersedes them)
        if failed or unreadable:  # the run's status and exit code follow its current records, resumed ones included
            rec.fail(f"{len(failed)} failed measurement(s), {len(unreadable)} unreadable record(s)")
    failures = [f"{r.model} {r.kind}{' ' + r.runtime if r.runtime else ''}{'' if r.batch is None else f' batch {r.batch}'}: "
                f"{r.error or '; '.join(r.metrics.get('failures') or ['parity FAILED'])}" for r in failed] + unreadable
    return PipelineResult(rec.run_id, failures, skipped, time.perf_counter() - started)


def _requests(cfg: RunConfig) -> list[tuple[str, dict]]:
    """(name for a failure record, ``resolve`` keywords) of each model of the run."""
    common = {"weights": cfg.weights, **cfg.model_options}
    out = [(name, {"text": name, **common}) for name in cfg.models]
    if cfg.model_code:
        out.append((cfg.model_code, {"model_code": cfg.model_code, **common}))
    return out


def _run_step(rec, plan: "StepPlan", cfg: RunConfig, spec, backends, ctx, data) -> None:
    try:
        rec.add_all(plan.run(cfg, spec, backends, ctx, data))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a step that fails as a whole is recorded; the others go on
        rec.add(Failure.of(plan.kinds[0], Where.of(spec, device=cfg.device), exc))


def open_data(data: Path | None, labels: Path | None = None, limit: int | None = None):
    """The labelled set of ``data`` (ImageNet-val, or an ImageFolder with ``labels``), its first ``limit``
    images; None without ``data``."""
    from perfkit.data import open_dataset
    from perfkit.errors import UsageError

    if data is None:
        if labels is not None:
            raise UsageError("--labels names the classes of --data; give --data too")
        return None
    return open_dataset(data, labels).take(limit, None)


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
    return {_key(Kind.COMPLEXITY, Where.of(spec, spec.reference_runtime, Precision.FP32, 1, "cpu"))}


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
    return {_key(Kind.EXPORT, Where.of(spec, b.name, p, artifact_batch(spec, cfg.batch_range).max, cfg.device))
            for b, p in _pairs(cfg, [b for b in backends if b.needs_artifact])}


def _parity(cfg, spec, backends, ctx, data) -> Iterator:
    from perfkit.accuracy.parity import ParityCheck, check_parity, synthetic_inputs
    from perfkit.results import Failure as F

    from perfkit.backends import at_precision

    inputs = synthetic_inputs(spec, cfg.parity_samples)
    batches = batches_for(spec, cfg.parity_batches)[0]
    for p in cfg.precisions:
        chosen = at_precision(backends, p, cfg.device, automatic=cfg.automatic)
        for result in check_parity(spec, chosen, ctx, inputs=(inputs, "synthetic"),
                                   batches=batches, precision=p, batch_range=cfg.batch_range):
            if isinstance(result, (ParityCheck, F)):  # exports belong to the export step
                yield result


def _parity_keys(cfg, spec, backends) -> set[tuple]:
    from perfkit.accuracy.parity import is_reference_run

    return {_key(Kind.PARITY, Where.of(spec, b.name, p, batch, cfg.device)) for b, p in _pairs(cfg, backends)
            if not is_reference_run(spec, b, p, cfg.device) for batch in batches_for(spec, cfg.parity_batches)[0]}


def _accuracy(cfg, spec, backends, ctx, data) -> Iterator:
    from perfkit.accuracy.harness import EvalOptions, validate_model

    options = EvalOptions(batch_size=EVAL_BATCH, workers=cfg.workers, cache_dir=cfg.cache)
    from perfkit.backends import reference_for

    done = validate_model(spec, data, [reference_for(spec), *backends], ctx, precisions=cfg.precisions, options=options,
                          automatic=cfg.automatic)
    yield done.result
    yield from done.open_failures


def _accuracy_keys(cfg, spec, backends) -> set[tuple]:
    from perfkit.backends import reference_for

    ref = {_key(Kind.ACCURACY, Where.of(spec, reference_for(spec).name, Precision.FP32, EVAL_BATCH, cfg.device))}
    return ref | {_key(Kind.ACCURACY, Where.of(spec, b.name, p, EVAL_BATCH, cfg.device))
                  for b, p in _pairs(cfg, [reference_for(spec), *backends])}


def _profile(cfg, spec, backends, ctx, data) -> Iterator:
    from perfkit.profile import profile_model

    return profile_model(spec, cfg.profile_plan(spec, backends), ctx)


def _profile_keys(cfg, spec, backends) -> set[tuple]:
    return expected_keys(spec, cfg.profile_plan(spec, backends), cfg.device)


STEPS = {
    Step.COMPLEXITY: StepPlan((Kind.COMPLEXITY,), _complexity, _complexity_keys),
    Step.EXPORT: StepPlan((Kind.EXPORT,), _export, _export_keys),
    Step.PARITY: StepPlan((Kind.PARITY,), _parity, _parity_keys),
    Step.ACCURACY: StepPlan((Kind.ACCURACY,), _accuracy, _accuracy_keys),
    Step.PROFILE: StepPlan((Kind.LATENCY, Kind.THROUGHPUT, Kind.MEMORY), _profile, _profile_keys),
}
