"""``perfkit run``: the whole job for each model, one run id in the store.

    complexity → export (every format this machine can build) → parity vs eager
    → ImageNet-val accuracy (when data is given) → profile → Rich summary → HTML report

Each step calls the same library function as its own command (``summary``, ``export``, ``check``,
``validate``, ``profile``), so the pipeline adds only order, resume and failure handling. A step
that fails is recorded as an error and the pipeline goes on with the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from perfkit import deps
from perfkit.errors import PerfkitError
from perfkit.formats import BatchRange, Format, Precision
from perfkit.profile.timing import TimingConfig
from perfkit.store import Kind, Record, Store
from perfkit.zoo.registry import SEED_MODELS, ModelSpec, resolve


class Step(StrEnum):
    COMPLEXITY = "complexity"
    EXPORT = "export"
    PARITY = "parity"
    ACCURACY = "accuracy"
    PROFILE = "profile"


# The record kinds whose presence (all ok) marks a step as finished, for --resume.
_STEP_KINDS = {
    Step.COMPLEXITY: (Kind.COMPLEXITY,),
    Step.EXPORT: (Kind.EXPORT,),
    Step.PARITY: (Kind.PARITY,),
    Step.ACCURACY: (Kind.ACCURACY,),
    Step.PROFILE: (Kind.LATENCY, Kind.MEMORY),
}

# Timing for the pipeline: enough iterations for a stable median, short enough that the four
# seed models (VGG16 included) finish in minutes on a 2-core CPU. `perfkit profile` measures longer;
# the pipeline also measures memory at the largest batch only (one process launch each).
PIPELINE_TIMING = TimingConfig(warmup=1, warmup_seconds=0.2, iterations=8, min_seconds=0.5)


def available_formats(device: str) -> list[Format]:
    """Exported formats this machine can build and run."""
    formats = [Format.TORCHSCRIPT, Format.ONNX, Format.AOTI]
    if device.startswith("cuda") and deps.available("tensorrt"):
        formats.append(Format.TENSORRT)
    return formats


@dataclass
class RunConfig:
    models: list[str] = field(default_factory=lambda: list(SEED_MODELS))
    weights: str = "auto"
    device: str = "cpu"
    formats: list[Format] | None = None  # None: available_formats(device)
    precision: Precision = Precision.FP32
    batches: list[int] = field(default_factory=lambda: [1, 8])
    parity_samples: int = 8
    parity_batches: list[int] = field(default_factory=lambda: [1, 4])
    data: Path | None = None  # ImageNet-val; accuracy is skipped without it
    limit: int | None = None
    workers: int = 2
    cache: Path | None = None
    artifacts: Path | None = None
    timing: TimingConfig = PIPELINE_TIMING
    memory: bool = True
    resume: str | None = None
    steps: tuple[Step, ...] = tuple(Step)

    def resolved_formats(self) -> list[Format]:
        return list(self.formats) if self.formats is not None else available_formats(self.device)


@dataclass
class PipelineResult:
    run_id: str
    failures: list[str]  # "model step: error", one per failed step
    skipped: list[str]  # steps skipped on resume
    seconds: float


def _finished(store: Store, run_id: str, model: str, step: Step) -> bool:
    """A step is finished when the run holds records of its kinds for the model, none of them errors."""
    records = [r for kind in _STEP_KINDS[step] for r in store.records(run_id, kind=kind, model=model)]
    return bool(records) and all(r.status == "ok" for r in records)


def run_pipeline(cfg: RunConfig, store: Store, on_step: Callable[[str, str], None] | None = None) -> PipelineResult:
    """Run every step for every model; ``on_step(model, step)`` lets the caller show progress."""
    started = time.perf_counter()
    notify = on_step or (lambda model, step: None)
    failures: list[str] = []
    skipped: list[str] = []
    formats = cfg.resolved_formats()
    # --resume takes an id, a unique prefix or "latest"; an unknown one is an error, never a new run.
    resume_id = store.get_run(cfg.resume)["id"] if cfg.resume else None
    with store.run(run_id=resume_id) as run_id:
        data = _open_data(cfg) if Step.ACCURACY in cfg.steps and cfg.data else None
        for name in cfg.models:
            try:
                spec = resolve(name, cfg.weights)
            except PerfkitError as exc:
                store.add(Record.failure(Kind.COMPLEXITY, name, exc), run_id)
                failures.append(f"{name}: {exc}")
                continue
            for step in cfg.steps:
                if step is Step.ACCURACY and data is None:
                    continue
                if cfg.resume and _finished(store, run_id, spec.name, step):
                    skipped.append(f"{spec.name} {step}")
                    continue
                notify(spec.label, str(step))
                try:
                    errors = _STEPS[step](cfg, spec, store, run_id, formats, data, notify)
                except PerfkitError as exc:
                    store.add(Record.failure(_STEP_KINDS[step][0], spec.name, exc,
                                             weights=spec.weights.identity, device=cfg.device), run_id)
                    errors = [str(exc)]
                failures += [f"{spec.name} {step}: {e}" for e in errors]
    return PipelineResult(run_id, failures, skipped, time.perf_counter() - started)


def _open_data(cfg: RunConfig):
    from perfkit.data.imagenet import open_imagenet

    return open_imagenet(cfg.data).take(cfg.limit, None)


# -- steps: each returns the list of error texts it recorded ---------------------------------------


def _complexity(cfg, spec: ModelSpec, store, run_id, formats, data, notify) -> list[str]:
    from perfkit.analysis.complexity import complexity_record

    store.add(complexity_record(spec), run_id)
    return []


def _export(cfg, spec, store, run_id, formats, data, notify) -> list[str]:
    from perfkit.export.artifact import export_and_record

    errors = []
    for fmt in formats:
        notify(spec.label, f"export {fmt}")
        _, error = export_and_record(store, run_id, spec, fmt, precision=cfg.precision, artifacts=cfg.artifacts,
                                     batch=_batch_range(cfg), device=cfg.device)
        if error:
            errors.append(f"{fmt}: {error}")
    return errors


def _parity(cfg, spec, store, run_id, formats, data, notify) -> list[str]:
    from perfkit.accuracy.parity import check_model

    check = check_model(spec, formats, store=store, run_id=run_id, batches=cfg.parity_batches,
                        samples=cfg.parity_samples, precision=cfg.precision, device=cfg.device,
                        artifacts=cfg.artifacts, batch_range=_batch_range(cfg),
                        on_step=lambda text: notify(spec.label, text))
    return [f"{r['runtime']} batch {r['batch']}: {r.get('error') or '; '.join(r.get('failures') or [])}"
            for r in check.failed]


def _accuracy(cfg, spec, store, run_id, formats, data, notify) -> list[str]:
    from perfkit.accuracy.harness import validate_model

    outcome = validate_model(spec, data, store=store, run_id=run_id, formats=[Format.EAGER, *formats],
                             precision=cfg.precision, device=cfg.device, artifacts=cfg.artifacts,
                             workers=cfg.workers, cache_dir=cfg.cache, progress=True,
                             out_dir=store.path.parent / "validate" / run_id)
    errors = [f"{fmt}: {type(exc).__name__}: {exc}" for fmt, exc in outcome.open_errors.items()]
    errors += [f"{name}: {acc.error}" for name, acc in outcome.result.runtimes.items() if not acc.ok]
    return errors


def _profile(cfg, spec, store, run_id, formats, data, notify) -> list[str]:
    from perfkit.profile import profile_model

    result = profile_model(spec, store=store, run_id=run_id, formats=[Format.EAGER, *formats], batches=cfg.batches,
                           precisions=(cfg.precision,), device=cfg.device, artifacts=cfg.artifacts,
                           config=cfg.timing, memory=cfg.memory, memory_batches=[max(cfg.batches)],
                           on_step=lambda text: notify(spec.label, text))
    return [f"{r['runtime']} batch {r['batch']}: {r['error']}" for r in result.rows if r.get("error")]


_STEPS = {
    Step.COMPLEXITY: _complexity,
    Step.EXPORT: _export,
    Step.PARITY: _parity,
    Step.ACCURACY: _accuracy,
    Step.PROFILE: _profile,
}


def _batch_range(cfg: RunConfig) -> BatchRange:
    """One artifact serves parity, accuracy and profiling: the default range, widened if needed."""
    return BatchRange.covering([*cfg.batches, *cfg.parity_batches])


def default_data() -> Path | None:
    value = os.environ.get("PERFKIT_IMAGENET_VAL")
    return Path(value) if value else None
