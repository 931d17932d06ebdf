"""``perfkit.validate``: top-1/top-5 of each model on labelled images in every runtime, in one pass
(the work behind ``perfkit validate``). Under torchrun every rank evaluates its shard; rank 0 gathers
the counts and records them, the others write nothing."""

from __future__ import annotations

from pathlib import Path

from perfkit.api.keywords import Keywords, Note, Notify, default_workers, quiet
from perfkit.api.result import ValidateResult, session
from perfkit.errors import UsageError


def validate(model=None, data=None, *, labels=None, runtimes="eager", precision="fp32", batch="32", workers=None,
             cache=None, crops=1, limit=None, limit_per_class=None, real_labels=None, per_class=False,
             skip_unreadable=False, max_top1_drop=None, min_relative=None, out=None, weights="default", store=None,
             notify: Notify = quiet, progress=None, **keywords) -> ValidateResult:
    """Accuracy of ``model`` (one, or a list) on ``data``: ImageNet-val (any of its layouts) or an
    ImageFolder of your classes (class index: the sorted folder names, or ``labels``, a file of class
    names in the model's output order). Each batch is decoded and preprocessed once (the model's own
    transform, or the preprocessing keywords) and fed to the reference (eager; ONNX Runtime fp32 on the
    CPU for an ONNX file) and every runtime. ``batch``: images per batch (one number); ``workers``:
    decoding processes (default: the cores, at most 8); ``cache``: a folder of preprocessed tensors;
    ``crops`` 1 or 10; ``limit``/``limit_per_class``: a subset; ``real_labels``: ``"timm"`` or a real.json
    (ImageNet-val); ``per_class``; ``skip_unreadable``; gates ``max_top1_drop`` (points below the
    reference's top-1) and ``min_relative`` (a fraction of it): ``result.gate_failures``. ``out``: the
    folder of the flipped-ids JSON (default: beside ``store``; none without one). Weights default to
    ``default`` (pretrained: accuracy of random weights means nothing)."""
    from perfkit.api import keywords as K
    from perfkit.data import open_dataset
    from perfkit.distributed import Distributed

    given = Keywords.of("validate", keywords, weights=weights)
    if data is None:
        raise UsageError("perfkit.validate(model, data): data is required: a folder of labelled images (ImageNet-val, "
                         "or one sub-folder per class)")
    device = given.device()
    backends = K.runtimes(runtimes)
    precisions = K.precisions(precision, backends, device)
    batch_size = _batch_size(batch)  # a bad batch is refused before the dataset is opened and a run started
    workers = default_workers() if workers is None else workers
    asked = dict(batch_size=batch_size, workers=workers, cache=cache, crops=crops, real_labels=real_labels,
                 per_class=per_class, skip_unreadable=skip_unreadable)
    dist = Distributed.from_env(device)
    device = dist.device(device)
    finished = False
    try:
        dataset = open_dataset(data, labels).take(limit, limit_per_class)
        shown = notify if dist.is_main else quiet
        specs = given.specs(model, shown, precision)
        for spec in specs:  # outputs that do not match the class index, ImageNet-only options: refused now
            _options(spec, None, **asked).check(spec, dataset)
        shown(Note(f"data: {dataset.describe()}", "info", "data"))
        if dist.enabled:
            shown(Note(f"torchrun: {dist.world} processes, contiguous shards, counts gathered to rank 0", "info",
                       "distributed"))
        calibration = given.calibration(precisions, data, shown)
        job = (given, dataset, specs, backends, precisions, device, dist, calibration, asked)
        done = _follow(*job) if not dist.is_main else _lead(*job, store, out, (max_top1_drop, min_relative), notify,
                                                               progress)
        finished = True
        return done
    finally:
        dist.close(finished=finished)


def _batch_size(batch) -> int:
    from perfkit.api import keywords as K

    batches = K.batches(batch)
    if len(batches) != 1:
        raise UsageError(f"validate takes one batch size (-b N), got '{K.text(batch)}'")
    return batches[0]


def _options(spec, out_dir, *, batch_size, workers, cache, crops, real_labels, per_class, skip_unreadable):
    from perfkit.accuracy.harness import EvalOptions
    from perfkit.api import keywords as K
    from perfkit.data.imagenet import real_labels as read_real

    K.positive(workers, "--workers", allow_zero=True)
    if real_labels is True:
        real_labels = "timm"
    real = read_real(None if real_labels == "timm" else real_labels) if real_labels else None
    # the preprocessing keywords were applied when the model was resolved
    return EvalOptions(transform=spec.preprocess, crops=crops, batch_size=batch_size, workers=workers, cache_dir=cache,
                       skip_unreadable=skip_unreadable, per_class=per_class, real=real, out_dir=out_dir)


def _follow(given, dataset, specs, backends, precisions, device, dist, calibration, asked) -> ValidateResult:
    """Ranks other than 0 evaluate their shard and write nothing."""
    from perfkit.accuracy.harness import validate_model
    from perfkit.api.result import places

    with places(None, given.measuring["artifacts"], records=False) as (_, _, artifacts):
        ctx = given.context(device, artifacts, calibration=calibration)
        for spec in specs:
            validate_model(spec, dataset, backends, ctx, precisions=precisions, options=_options(spec, None, **asked),
                           dist=dist)
    return ValidateResult(run_id=None, device=device, models=specs)


def _lead(given, dataset, specs, backends, precisions, device, dist, calibration, asked, store, out, gates, notify,
          progress) -> ValidateResult:
    from perfkit.accuracy.harness import validate_model
    from perfkit.api import keywords as K
    from perfkit.errors import PerfkitError
    from perfkit.results import Failure, Kind, Where

    failures, errors, evaluations = [], [], []
    with session(given, store, device, specs, progress=progress, calibration=calibration) as run:
        beside_store = isinstance(run.kept, Path)  # a SQLite file's folder (a PostgreSQL store has none)
        out_dir = Path(out) if out else run.kept.parent / "validate" / run.rec.run_id if beside_store else None
        for spec in specs:
            run.rec.model(spec)
            K.runtimes_for(spec, backends, notify, reference_runs=True)  # notes the runtimes that cannot run it
            options = _options(spec, out_dir, **asked)
            _preprocessing_notes(spec, options.transform, notify)
            try:
                ctx, mixed = _mixed_int8(spec, dataset, backends, precisions, run.ctx, gates[1], options, notify, dist)
                done = validate_model(spec, dataset, backends, ctx, precisions=precisions, options=options, dist=dist)
            except PerfkitError as exc:
                run.rec.add(Failure.of(Kind.ACCURACY, Where.of(spec, "eager", "fp32", options.batch_size, device), exc))
                errors.append(exc)
                continue
            _attach(done.result, mixed)
            run.rec.add(done.result)
            run.rec.add_all(done.open_failures)
            evaluations.append(done.result)
            failures += done.gate_failures(*gates)
        if failures:
            run.rec.fail(f"{len(failures)} accuracy gate(s) failed")
    if errors and len(errors) == len(specs):
        raise errors[0] if len(errors) == 1 else PerfkitError(f"{len(errors)} validations failed: "
                                                             + "; ".join(map(str, errors)))
    return run.result(ValidateResult, specs, evaluations=evaluations, gate_failures=failures)


def _mixed_int8(spec, dataset, backends, precisions, ctx, min_relative, options, notify: Notify, dist):
    """With ``min_relative`` and int8 in a runtime built from the QDQ ONNX graph: the context whose int8
    artifacts leave in float the fewest layers that meet the gate (``perfkit.accuracy.mixed``), and the
    search; else ``ctx`` as it was and None."""
    import torch

    from perfkit.accuracy import mixed
    from perfkit.accuracy.harness import runner_batch
    from perfkit.backends import get
    from perfkit.data.images import load_images
    from perfkit.vocab import Precision

    runtimes = {b.name for b in backends} & mixed.SEARCH_RUNTIMES
    if min_relative is None or Precision.INT8 not in precisions or not runtimes or get("onnx").accepts(spec):
        return ctx, None
    if dist.enabled:  # every rank must run the same artifact: the search is a single-process step
        notify(Note("int8 gate: no search for the layers to leave float under torchrun (run it in one process "
                    "first: the chosen artifact is cached)", "note", "precision"))
        return ctx, None
    stride = -(-len(dataset) // mixed.SEARCH_IMAGES)  # spread over the classes, at most SEARCH_IMAGES
    samples = dataset.samples[::stride]
    images = load_images([s.path for s in samples], spec.preprocess)
    labels = torch.tensor([s.label for s in samples], dtype=torch.long)
    found = mixed.search(spec, ctx, images, labels, min_relative, runner_batch(options.batch_size, options.crops),
                         ctx.progress)
    if found.chosen.float_layers:
        notify(Note(f"int8 gate {min_relative}: {found.note}: {', '.join(found.float_modules)} "
                    f"({found.chosen.top1_correct}/{found.images} top-1 on the search images, reference "
                    f"{found.reference_correct}); searched in {found.seconds:.0f}s", "info", "precision"))
    elif found.note:
        notify(Note(f"int8 gate {min_relative}: {found.note}", "warning", "precision"))
    if "aoti" in {b.name for b in backends}:
        notify(Note("aoti int8 (torchao PT2E) stays full int8: the layers left float apply to onnx, openvino and "
                    "tensorrt", "note", "precision"))
    return ctx.replace(options={**ctx.options, "float_layers": found.float_layers}), found


def _attach(result, found) -> None:
    """The search's outcome on the int8 runtimes it applies to (their records say which layers stayed float)."""
    from perfkit.accuracy.mixed import SEARCH_RUNTIMES

    for r in result.runtimes.values() if found is not None else ():
        if r.runtime in SEARCH_RUNTIMES and str(r.precision) == "int8":
            r.mixed = found


def _preprocessing_notes(spec, transform, notify: Notify) -> None:
    notify(Note(f"{spec.label} preprocessing: {transform.describe()}  (from {transform.source})", "info",
                "preprocessing"))
    if transform.overrides:
        notify(Note(f"WARNING: preprocessing overridden ({', '.join(transform.overrides)}); the published "
                    "accuracy assumes the model's own", "warning", "preprocessing"))
