"""The backend registry: one module per runtime, one line each in ``BACKEND_MODULES``.

Each module listed defines ``BACKEND``, a ``perfkit.backends.base.Backend``. Modules import their
heavy libraries lazily (inside functions), so loading the registry costs no optional import.
A runtime kept outside perfkit is one module too: an installed package names it as an entry point of
the ``perfkit.backends`` group, or ``$PERFKIT_BACKENDS`` does (comma list of importable modules
defining ``BACKEND``); spawned measuring processes inherit both.
``register`` refuses a second backend of the same name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from perfkit.backends.base import EXPORT, RUN, ArtifactRunner, Backend, OfflineSession, Option, Runner
from perfkit.errors import UsageError
from perfkit.registry import Registry
from perfkit.vocab import BatchRange, Precision

__all__ = [
    "EXPORT", "RUN", "ArtifactRunner", "Backend", "OfflineSession", "Option", "Runner", "all_backends",
    "artifact_batch", "at_precision", "batches_for", "default_backends", "get",
    "export_each", "make_runner", "names", "open_runner", "parse_backends", "prepare", "reference_device",
    "reference_for", "reference_of", "reference_text", "register", "runnable", "unregister",
]

# Adding a runtime: write perfkit/backends/<name>.py defining BACKEND, and add its line here.
BACKEND_MODULES = (
    "perfkit.backends.eager",
    "perfkit.backends.torchscript",
    "perfkit.backends.onnxruntime",
    "perfkit.backends.aoti",
    "perfkit.backends.tensorrt",
    "perfkit.backends.native",
    "perfkit.backends.openvino",
)

def _check_options(new: Backend, others: Iterable[Backend]) -> None:
    """A shared option name must mean one thing: same default, type and stage everywhere."""
    for other in others:
        for a in new.options:
            for b in other.options:
                if a.name == b.name and _meaning(a) != _meaning(b):
                    raise ValueError(f"option '{a.name}' of backend {new.name} contradicts backend {other.name}'s")


def _meaning(option: Option) -> tuple:
    return (option.default, option.type, option.stage, option.precisions, option.cli, option.key)


ENTRY_POINTS = "perfkit.backends"  # a distribution's entry points in this group name backend modules


def _from_environment() -> list[str]:
    """Backend modules outside perfkit: installed packages' ``perfkit.backends`` entry points (Python's
    plug-in convention: ``[project.entry-points."perfkit.backends"] mine = "pkg.module"``, the module
    defining ``BACKEND``), then ``$PERFKIT_BACKENDS`` (a comma list of modules)."""
    from importlib.metadata import entry_points

    installed = [ep.module for ep in entry_points(group=ENTRY_POINTS)]
    named = [m.strip() for m in os.environ.get("PERFKIT_BACKENDS", "").split(",") if m.strip()]
    return list(dict.fromkeys([*installed, *named]))


REGISTRY: Registry[Backend] = Registry("backend", Backend, BACKEND_MODULES, "BACKEND", called="runtime",
                                       check=_check_options, extra=_from_environment,
                                       extra_from=f"$PERFKIT_BACKENDS or the '{ENTRY_POINTS}' entry points")
register, unregister, reload, get = REGISTRY.register, REGISTRY.unregister, REGISTRY.reload, REGISTRY.get
all_backends, names = REGISTRY.all, REGISTRY.names


def reference() -> Backend:
    """The runtime every other one is compared with (eager PyTorch)."""
    return next(b for b in all_backends() if b.reference)


def reference_of(spec) -> tuple | None:
    """``(model, runtime)`` whose fp32 logits ``spec``'s are held to: ``spec`` itself in its reference
    runtime (eager; ONNX Runtime for an ONNX file); for an engine, the model ``--reference`` named, in
    that model's own reference runtime; None for an engine without one (nothing to compare with)."""
    if not spec.engine:
        return spec, get(spec.reference_runtime)
    ref = spec.reference_model
    return None if ref is None else (ref, get(ref.reference_runtime))


def reference_for(spec) -> Backend | None:
    """The runtime ``spec``'s parity and accuracy are judged against (see ``reference_of``): eager for a
    PyTorch model, ONNX Runtime for an ONNX file, the reference model's for an engine, None for an engine
    without one."""
    found = reference_of(spec)
    return None if found is None else found[1]


def reference_device(spec, device: str) -> str:
    """Where ``spec``'s reference runs: eager on the command's device, as always; another reference
    runtime (ONNX Runtime running an ONNX file) on the CPU, the provider every machine has."""
    ref = reference_for(spec)
    return device if ref is None or ref.reference else "cpu"


def reference_text(spec) -> str:
    """The reference in words, for table titles: ``eager fp32``, ``onnx fp32 on the CPU (model.onnx itself)``,
    for an engine ``onnx fp32 on the CPU (model.onnx)`` or ``eager fp32 (resnet18 (ckpt.pth, 3 classes))``."""
    found = reference_of(spec)
    if found is None:
        return "no reference (--reference not given)"
    model, ref = found
    where = "" if ref.reference else " on the CPU"
    if model is not spec:
        return f"{ref.name} fp32{where} ({model.name})"
    return f"{ref.name} fp32" if ref.reference else f"{ref.name} fp32{where} ({Path(spec.arch).name} itself)"


def runnable(spec, backends: Iterable) -> tuple[list[Backend], dict[str, str]]:
    """The backends among ``backends`` that can run ``spec``, and why each other one cannot (a PyTorch
    runtime for an ONNX file): runtimes that are not run, never failures. An engine someone built that
    none of them runs runs in its own runtime (those that start from its format and that ``perfkit run``
    measures by default: TorchScript in torchscript, not the native runner)."""
    kept, skipped = [], {}
    for backend in map(get, backends):
        why = backend.accepts(spec)
        if why is None:
            kept.append(backend)
        else:
            skipped[backend.name] = why
    if not kept and spec.engine:
        kept = [b for b in all_backends() if b.accepts(spec) is None and b.default_in_run]
    return kept, skipped


def artifact_batch(spec, batch: BatchRange) -> BatchRange:
    """The batch range of ``spec``'s artifacts: what was asked for, or N..N for a model with a fixed batch
    N, or an engine's own range (``ModelSpec.batch_bounds``)."""
    bounds = spec.batch_bounds
    if bounds is None:
        return batch
    low, high = bounds
    return BatchRange(low, min(max(batch.opt, low), high), high)


def batches_for(spec, batches: Iterable[int]) -> tuple[list[int], str | None]:
    """The batches of a sweep ``spec`` takes, and a note when some were left out: a model with a fixed
    batch N (an ONNX file whose batch dimension is a number) is measured at N only, an engine within the
    range it was built for (the nearest batch it takes when none of those asked for lies in it)."""
    batches = sorted(set(batches))
    bounds = spec.batch_bounds
    if bounds is None:
        return batches, None
    low, high = bounds
    kept = [b for b in batches if low <= b <= high]
    left = [b for b in batches if b not in kept]
    if not left:
        return batches, None
    takes = f"batch {low}" if low == high else f"batches {low}..{high}"
    why = "fixed when it was built" if spec.engine else "fixed in its graph"
    instead = [] if kept else [min(max(batches[-1], low), high)]
    measured = ",".join(map(str, kept or instead))
    return kept or instead, (f"{spec.name} takes {takes} only ({why}): batch {','.join(map(str, left))} left out, "
                             f"batch {measured} {'measured instead' if instead else 'measured'}")


def parse_backends(text: str | Iterable[str], *, exported_only: bool = False) -> list[Backend]:
    """``"onnx,aoti"`` → backends in order, without duplicates; unknown names are a UsageError."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    out = [get(p) for p in (str(p).strip() for p in parts) if p]
    if not out:
        raise UsageError(f"give at least one runtime; choose from: {', '.join(names())}")
    if exported_only:
        bad = [b.name for b in out if not b.exports]
        if bad:
            choices = ", ".join(b.name for b in all_backends() if b.exports)
            raise UsageError(f"{', '.join(bad)} has no artifact to export; choose from: {choices}")
    return list(dict.fromkeys(out))


def default_backends(device: str) -> list[Backend]:
    """What ``perfkit run`` measures by default on ``device``: every available backend so marked."""
    return [b for b in all_backends() if b.default_in_run and b.unavailable(device) is None]


def at_precision(backends: Iterable, precision: Precision | str, device: str, *,
                 automatic: bool = False) -> list[Backend]:
    """The backends among ``backends`` that run ``precision`` on ``device``, in order (``automatic``:
    those ``perfkit run``'s automatic plan measures there, see ``Backend.run_precisions``).

    Measuring code measures each runtime at the precisions it runs: the command line has already
    refused a combination the user asked for that a runtime cannot run (``cli/options.py``), so what
    is left out here is the reference at int8 (int8 is compared with eager fp32) and, in
    ``perfkit run``'s automatic plan, each runtime's unsupported (or not automatic) precisions.
    """
    return [b for b in map(get, backends) if b.runs(precision, device, automatic=automatic)]


def library_names() -> tuple[str, ...]:
    """Every backend's distributions (exporters, quantizers, runtimes), for the environment fingerprint."""
    return tuple(dict.fromkeys(lib for b in all_backends() for lib in b.libraries))


def options() -> Iterator:
    """Every option of every backend, once per name (for the CLI), with the backends declaring it."""
    seen: dict[str, tuple[Option, list[str]]] = {}
    for b in all_backends():
        for o in b.options:
            seen.setdefault(o.name, (o, []))[1].append(b.name)
    yield from seen.values()


def artifact_backend(backend: Backend) -> Backend:
    """The backend whose artifact ``backend`` runs (itself, or its ``artifact_from``)."""
    return get(backend.artifact_from) if backend.artifact_from else backend


def prepare(spec, backend: Backend | str, ctx, *, precision: Precision | str = Precision.FP32,
            batch: BatchRange = BatchRange()):
    """The artifact ``backend`` runs (exported now if not cached), or None for a backend without one.

    Resolved once per context: the artifact (or the failure) is kept in ``ctx.resolved`` under
    everything that makes it (model identity, the artifact's backend, precision, batch range, export
    options, artifacts folder), so every step of a plan gets the same object (``perfkit.plan``). A
    model with a fixed batch gets an artifact of that batch whatever ``batch`` says (``artifact_batch``).

    Raises:
        UsageError: the backend does not run ``precision`` on ``ctx.device``, or not ``spec``'s form.
        MissingDependency, ArtifactError: the exporter is not installed, or the artifact is broken.
    """
    from perfkit.artifacts import ensure_artifact

    backend = get(backend)
    why = backend.accepts(spec)
    if why is not None:
        raise UsageError(f"{backend.name} cannot run {spec.name}: {why}")
    precision = backend.check(precision, ctx.device)
    if not backend.needs_artifact:
        return None
    source = artifact_backend(backend)
    batch = artifact_batch(spec, batch)
    key = _resolved_key(spec, source, ctx, precision, batch)
    if key not in ctx.resolved:
        try:
            ctx.resolved[key] = ensure_artifact(spec, source, ctx, precision=precision, batch=batch)
        except Exception as exc:  # kept: the next step reports the same failure instead of exporting again
            ctx.resolved[key] = exc
    found = ctx.resolved[key]
    if isinstance(found, Exception):
        raise found
    return found


def _resolved_key(spec, backend: Backend, ctx, precision: Precision, batch: BatchRange) -> tuple:
    import json

    options = backend.keyed(backend.export_options(ctx.options, precision))
    device = ctx.device if backend.device_specific else "any"
    return (spec.identity, backend.name, str(precision), json.dumps(batch.to_dict(), sort_keys=True),
            json.dumps(options, sort_keys=True, default=str), str(ctx.artifacts), device, ctx.force)


def make_runner(spec, backend: Backend | str, ctx, artifact=None, *, precision: Precision | str = Precision.FP32,
                batch: BatchRange = BatchRange()) -> Runner:
    """An un-entered runner of ``backend`` over ``artifact`` (from ``prepare``)."""
    backend = get(backend)
    at = artifact.precision if artifact is not None else precision
    kwargs = dict(options=backend.options_for(ctx.options, RUN, at), threads=ctx.threads, device=ctx.device)
    if backend.needs_artifact:
        return backend.runner(spec, artifact=artifact, **kwargs)
    return backend.runner(spec, precision=backend.check(precision, ctx.device), batch=batch, **kwargs)


def open_runner(spec, backend: Backend | str, ctx, *, precision: Precision | str = Precision.FP32,
                batch: BatchRange = BatchRange()) -> Runner:
    """An un-entered runner for ``spec`` in ``backend``; its artifact is exported first if not cached.

    Use as ``with open_runner(spec, "onnx", ctx) as r: r.infer(x)``.
    """
    artifact = prepare(spec, backend, ctx, precision=precision, batch=batch)
    return make_runner(spec, backend, ctx, artifact, precision=precision, batch=batch)


def export_each(spec, backends, ctx, *, precision: Precision | str = Precision.FP32, batch: BatchRange = BatchRange(),
                include_cached: bool = True):
    """Export (or find in the cache) the artifact of each backend: an ``ExportResult`` per artifact
    (cache hits only with ``include_cached``) or a ``Failure``; one backend's failure never stops the others."""
    from perfkit.artifacts import ExportResult
    from perfkit.results import Failure, Kind, Where

    for backend in map(get, backends):
        ctx.progress.update(f"{spec.name}: {backend.name} artifact (export if not cached)")
        where = Where.of(spec, backend.name, precision, artifact_batch(spec, batch).max, ctx.device)
        try:
            artifact = prepare(spec, backend, ctx, precision=precision, batch=batch)
        except Exception as exc:  # recorded; the other backends go on
            yield Failure.of(Kind.EXPORT, where, exc)
            continue
        if artifact is not None and (include_cached or not artifact.cached):
            yield ExportResult(where, artifact)
