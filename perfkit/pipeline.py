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
from perfkit.errors import PerfkitError
from perfkit.plan import Plan, ScenarioRun
from perfkit.results import Failure, Kind, Where
from perfkit.vocab import Precision
from perfkit.zoo.sources import resolve
from perfkit.zoo.sources.torchvision import SEED_MODELS


class Step(StrEnum):
    COMPLEXITY = "complexity"
    EXPORT = "export"
    PARITY = "parity"
    ACCURACY = "accuracy"
    PROFILE = "profile"


# The pipeline measures every scenario with its quick defaults (``ScenarioOption.quick``): enough for a
# stable median, short enough that the four seed models (VGG16 included) finish in minutes on a
# 2-core CPU. SingleStream: three iterations after a warm-up (eight before int8, OpenVINO and the
# Offline scenario joined the default run; five cost 12 min cold): at batch 8 on two cores one VGG16
# call takes seconds, and one iteration of every point of the default run is 21 s. A survey's p50,
# not a p99: `perfkit profile`. Offline at the largest batch: a 0.5 s window per K, K up to the cores
# (at most 4). The pipeline also measures memory at the largest batch only (one process launch each).
QUICK_SCENARIOS = ("singlestream", "offline")
EVAL_BATCH = 32


@dataclass
class RunConfig:
    models: list = field(default_factory=lambda: list(SEED_MODELS))  # names, paths or nn.Module instances
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
    scenarios: tuple[ScenarioRun, ...] = field(
        default_factory=lambda: tuple(ScenarioRun.of(name, quick=True) for name in QUICK_SCENARIOS))
    memory: bool = True
    resume: str | None = None
    steps: tuple[Step, ...] = tuple(Step)
    command: str | None = None  # what the run is recorded as (None: the command line)

    def backends(self) -> list:
        """The exported runtimes measured beside eager (the reference is always measured)."""
        from perfkit.backends import default_backends, parse_backends

        chosen = parse_backends(self.runtimes) if self.runtimes is not None else default_backends(self.device)
        return [b for b in chosen if not b.reference]

    def plan(self, spec, backends) -> Plan:
        """What every step measures for ``spec`` in ``backends`` (those that run it) beside its reference;
        one artifact per runtime × precision covers parity's, evaluation's and the profile's batches
        (``perfkit.plan``). A model with a fixed batch is measured at that batch only."""
        from perfkit.backends import reference_of

        batches = batches_for(spec, self.batches)[0]
        found = reference_of(spec)
        itself = [found[1]] if found is not None and found[0] is spec else []  # an engine's reference is another model
        precisions = (Precision.FP32,) if spec.engine else tuple(self.precisions)  # an engine runs as it was built
        return Plan(tuple(dict.fromkeys((*itself, *backends))), tuple(batches), precisions,
                    self.scenarios, self.memory, (max(batches),), device=self.device, automatic=self.automatic,
                    covers=(*batches_for(spec, self.parity_batches)[0], EVAL_BATCH))


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
    base = Context(device=cfg.device, artifacts=artifacts_dir(cfg.artifacts), threads=cfg.threads,
                   options=cfg.options, progress=progress)
    with recording(store, command=cfg.command, run_id=resume_id, device=cfg.device) as rec:
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
            plan = cfg.plan(spec, runs)
            ctx = plan.context(base)  # one memo of resolved artifacts for the whole run (ctx.replace shares it)
            for step in cfg.steps:
                if step is Step.ACCURACY and data is None:
                    continue
                how = STEPS[step]
                kinds = how.kinds(plan)
                if resume_id and store.finished(rec.run_id, spec.name, kinds, how.keys(cfg, plan, spec, runs)):
                    skipped.append(f"{spec.name} {step}")
                    continue
                if resume_id:
                    store.supersede(rec.run_id, spec.name, kinds)
                progress.update(f"{spec.label}: {step}")
                _run_step(rec, how, kinds[0], cfg, plan, spec, runs, ctx, data)
        current = store.records(rec.run_id)
        failed = [r for r in current if r.status == "error" or (r.kind == Kind.PARITY and not r.metrics.get("passed"))]
        unreadable = store.unreadable(rec.run_id)  # a resume re-measures those of its steps (and supersedes them)
        if failed or unreadable:  # the run's status and exit code follow its current records, resumed ones included
            rec.fail(f"{len(failed)} failed measurement(s), {len(unreadable)} unreadable record(s)")
    failures = [f"{r.model} {r.kind}{' ' + r.runtime if r.runtime else ''}{'' if r.batch is None else f' batch {r.batch}'}: "
                f"{r.error or '; '.join(r.metrics.get('failures') or ['parity FAILED'])}" for r in failed] + unreadable
    return PipelineResult(rec.run_id, failures, skipped, time.perf_counter() - started)


def _requests(cfg: RunConfig) -> list[tuple[str, dict]]:
    """(name for a failure record, ``resolve`` keywords) of each model of the run (a name, a path, or an
    nn.Module given to the Python API: named by its class)."""
    common = {"weights": cfg.weights, **cfg.model_options}
    out = [(os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__,
            {"text": model, **common}) for model in cfg.models]
    if cfg.model_code:
        out.append((cfg.model_code, {"model_code": cfg.model_code, **common}))
    return out


def _run_step(rec, how: "StepPlan", kind, cfg: RunConfig, plan: Plan, spec, backends, ctx, data) -> None:
    try:
        rec.add_all(how.run(cfg, plan, spec, backends, ctx, data))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a step that fails as a whole is recorded; the others go on
        rec.add(Failure.of(kind, Where.of(spec, device=cfg.device), exc))


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
    """A step: the record kinds it writes under a plan, what it runs, and the keys it must produce."""

    kinds: Callable[[Plan], tuple]
    run: Callable[..., Iterable]
    keys: Callable[..., set[tuple]]


def _key(kind: Kind, where: Where) -> tuple:
    return (str(kind), where.model, where.runtime, where.precision, where.batch, where.device)


def _complexity(cfg, plan, spec, backends, ctx, data) -> Iterator:
    from perfkit.analysis import analyze, uncountable

    if uncountable(spec) is None:  # compiled code (an AOTInductor package, a TensorRT engine): nothing to count
        yield analyze(spec)


def _complexity_keys(cfg, plan, spec, backends) -> set[tuple]:
    from perfkit.analysis import complexity_where, uncountable

    return set() if uncountable(spec) else {_key(Kind.COMPLEXITY, complexity_where(spec))}


def _pairs(plan: Plan, backends) -> Iterator[tuple]:
    """(backend, precision) for each of ``backends`` at each precision of the plan it runs here."""
    return ((b, p) for b, p in plan.pairs() if b in backends)


def _export(cfg, plan, spec, backends, ctx, data) -> Iterator:
    from perfkit.backends import export_each

    for b, p in _pairs(plan, [b for b in backends if b.needs_artifact]):
        yield from export_each(spec, [b], ctx, precision=p, batch=plan.batch_range)


def _export_keys(cfg, plan, spec, backends) -> set[tuple]:
    return {_key(Kind.EXPORT, Where.of(spec, b.name, p, artifact_batch(spec, plan.batch_range).max, cfg.device))
            for b, p in _pairs(plan, [b for b in backends if b.needs_artifact])}


def _parity(cfg, plan, spec, backends, ctx, data) -> Iterator:
    from perfkit.accuracy.parity import ParityCheck, check_parity, synthetic_inputs
    from perfkit.backends import reference_of

    if reference_of(spec) is None:  # an engine without --reference: nothing to compare with
        return
    inputs = synthetic_inputs(spec, cfg.parity_samples)
    batches = batches_for(spec, cfg.parity_batches)[0]
    for p in plan.precisions:
        chosen = [b for b in plan.at(p) if _parity_checked(b, p, backends)]
        for result in check_parity(spec, chosen, ctx, inputs=(inputs, "synthetic"),
                                   batches=batches, precision=p, batch_range=plan.batch_range):
            if isinstance(result, (ParityCheck, Failure)):  # exports belong to the export step
                yield result


def _parity_checked(backend, precision, backends) -> bool:
    """The exported runtimes, and the reference at a reduced float precision (eager bf16 against eager
    fp32: a candidate like any other)."""
    return backend in backends or (backend.reference and Precision(precision) is not Precision.FP32)


def _parity_keys(cfg, plan, spec, backends) -> set[tuple]:
    from perfkit.accuracy.parity import is_reference_run
    from perfkit.backends import reference_of

    if reference_of(spec) is None:
        return set()
    return {_key(Kind.PARITY, Where.of(spec, b.name, p, batch, cfg.device)) for b, p in plan.pairs()
            if _parity_checked(b, p, backends) and not is_reference_run(spec, b, p, cfg.device)
            for batch in batches_for(spec, cfg.parity_batches)[0]}


def _accuracy(cfg, plan, spec, backends, ctx, data) -> Iterator:
    from perfkit.accuracy.harness import EvalOptions, validate_model
    from perfkit.backends import reference_for

    options = EvalOptions(batch_size=EVAL_BATCH, workers=cfg.workers, cache_dir=cfg.cache)
    chosen = [b for b in (reference_for(spec), *backends) if b is not None]  # no reference: an engine without one
    done = validate_model(spec, data, chosen, ctx, precisions=list(plan.precisions), options=options,
                          automatic=cfg.automatic, batch_range=plan.batch_range)
    yield done.result
    yield from done.open_failures


def _accuracy_keys(cfg, plan, spec, backends) -> set[tuple]:
    from perfkit.backends import reference_for

    ref = [b for b in (reference_for(spec),) if b is not None]  # none for an engine without --reference
    return ({_key(Kind.ACCURACY, Where.of(spec, b.name, Precision.FP32, EVAL_BATCH, cfg.device)) for b in ref}
            | {_key(Kind.ACCURACY, Where.of(spec, b.name, p, EVAL_BATCH, cfg.device))
               for b, p in _pairs(plan, [*ref, *backends])})


def _profile(cfg, plan, spec, backends, ctx, data) -> Iterator:
    from perfkit.profiler import profile_model

    return profile_model(spec, plan, ctx)


def _profile_keys(cfg, plan, spec, backends) -> set[tuple]:
    return plan.keys(spec)


def _profile_kinds(plan: Plan) -> tuple:
    return (*dict.fromkeys(run.scenario.kind for run in plan.scenarios), Kind.MEMORY)


STEPS = {
    Step.COMPLEXITY: StepPlan(lambda plan: (Kind.COMPLEXITY,), _complexity, _complexity_keys),
    Step.EXPORT: StepPlan(lambda plan: (Kind.EXPORT,), _export, _export_keys),
    Step.PARITY: StepPlan(lambda plan: (Kind.PARITY,), _parity, _parity_keys),
    Step.ACCURACY: StepPlan(lambda plan: (Kind.ACCURACY,), _accuracy, _accuracy_keys),
    Step.PROFILE: StepPlan(_profile_kinds, _profile, _profile_keys),
}
