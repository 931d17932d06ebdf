"""``perfkit.check``, ``export``, ``summary``, ``profile`` and ``run``: the work behind the commands of
those names (``perfkit.cli`` only turns flags into these keywords and prints what they return).

Each resolves everything it was given first — the device, runtimes, precisions, batches, the model
and the int8 calibration set — so that bad input is one ``UsageError`` before a run is written;
then it opens a run (``perfkit.api.result.session``), measures, records, and returns a typed
result. Keywords shared by every function (the model's, the measuring context's, runtime and
scenario options) are described in ``perfkit.api.keywords``.
"""

from __future__ import annotations

import os

from perfkit.api.keywords import Keywords, Note, Notify, quiet
from perfkit.api.result import CheckResult, ExportResult, ProfileResult, RunResult, SummaryResult, places, session
from perfkit.context import NO_PROGRESS
from perfkit.errors import UsageError


def check(model=None, *, runtimes="torchscript,onnx,aoti", precision="fp32", batch="1,8", data=None, samples=32,
          seed=0, atol=None, rtol=None, max_rel=None, min_batch=1, opt_batch=8, max_batch=256, weights="auto",
          store=None, notify: Notify = quiet, progress=None, **keywords) -> CheckResult:
    """Parity of each runtime against the reference (eager fp32; ONNX Runtime fp32 on the CPU for an
    ONNX file) on the same ``samples`` inputs (seeded synthetic ones, or images of ``data`` through the
    model's preprocessing), at each batch of ``batch``; ``result.passed`` is False when any runtime
    fails its tolerance (``atol``, ``rtol``, ``max_rel``: default per precision), as ``perfkit check``
    exits 1. ``min_batch``/``opt_batch``/``max_batch``: the batch range the artifacts accept."""
    from perfkit.accuracy import parity
    from perfkit.api import keywords as K
    from perfkit.backends import reference_for

    given = Keywords.of("check", keywords, weights=weights)
    device = given.device()
    backends = K.runtimes(runtimes)
    precisions = K.precisions(precision, backends, device)
    brange = K.batch_range(min_batch, opt_batch, max_batch)
    batches = K.batches(batch)
    K.positive(samples, "--samples")
    tols = {p: parity.tolerance(p, atol, rtol, max_rel) for p in precisions}
    spec = given.spec(model, notify, precision)
    backends, batches = _check_plan(spec, backends, precisions, batches, brange, batch, device, notify)
    inputs, source = parity.inputs_for(spec, samples, data, seed)
    calibration = given.calibration(precisions, data, notify)
    K.not_run_here(backends, notify)
    with session(given, store, device, [spec], progress=progress, calibration=calibration) as run:
        run.rec.model(spec)
        for p in precisions:
            run.rec.add_all(parity.check_parity(spec, backends, run.ctx, inputs=(inputs, source), batches=batches,
                                                precision=p, batch_range=brange, tol=tols[p]))
        failed = [r for r in run.rec.records
                  if r.kind == "parity" and (r.status == "error" or not r.metrics.get("passed"))]
        if failed:
            run.rec.fail(f"{len(failed)} parity check(s) failed")
    return run.result(CheckResult, [spec], tolerances=tols, reference=reference_for(spec).name,
                      samples=int(inputs.shape[0]), source=source)


def _check_plan(spec, backends, precisions, batches, brange, asked, device, notify) -> tuple[list, list]:
    """The runtimes and batches ``check`` compares ``spec`` in, with the notes said before it starts."""
    from perfkit.accuracy import parity
    from perfkit.api import keywords as K
    from perfkit.backends import artifact_batch, reference_text

    backends = K.runtimes_for(spec, backends, notify)
    if any(parity.is_reference_run(spec, b, p, device) and not b.reference for b in backends for p in precisions):
        notify(Note(f"note: {reference_text(spec)} is the reference: it is not compared with itself", "note",
                    "reference"))
    batches = K.batches_for(spec, batches, notify)
    if any(not artifact_batch(spec, brange).contains(b) for b in batches):
        raise UsageError(f"--batch {K.text(asked)}: every batch must lie in the artifact range "
                         f"{brange.min}..{brange.max} (see --min-batch/--max-batch)")
    return backends, batches


def export(model=None, *, runtimes="torchscript,onnx,aoti", precision="fp32", min_batch=1, opt_batch=8,
           max_batch=256, weights="auto", store=None, notify: Notify = quiet, progress=None,
           **keywords) -> ExportResult:
    """Export ``model`` for each runtime that has an artifact, at each precision, for the batch range
    ``min_batch``..``max_batch`` (TensorRT tuned for ``opt_batch``). Artifacts are cached: the same
    export again is served from the cache (hash-checked); ``force=True`` rebuilds. They are written to
    ``artifacts`` ($PERFKIT_ARTIFACTS, default the user cache folder's ``artifacts/``): exporting is asking for them.
    A runtime that fails is recorded (``result.failed``) and the others go on."""
    from perfkit.api import keywords as K
    from perfkit.backends import artifact_batch, at_precision, export_each

    given = Keywords.of("export", keywords, weights=weights)
    device = given.device()
    backends = K.runtimes(runtimes, exported_only=True)
    precisions = K.precisions(precision, backends, device)
    brange = K.batch_range(min_batch, opt_batch, max_batch)
    spec = given.spec(model, notify, precision)
    if spec.engine:
        notify(Note(f"note: nothing to export: {spec.name} was built already; its artifact is the file itself, "
                    "copied into the artifact cache and hashed", "note", "engine"))
    backends = K.runtimes_for(spec, backends, notify)
    calibration = given.calibration(precisions, None, notify)
    K.not_run_here(backends, notify)
    with session(given, store, device, [spec], progress=progress, calibration=calibration,
                 keep_artifacts=True) as run:
        run.rec.model(spec)
        for p in precisions:
            run.rec.add_all(export_each(spec, at_precision(backends, p, device), run.ctx, precision=p, batch=brange))
    return run.result(ExportResult, [spec], precisions=precisions, batch_range=artifact_batch(spec, brange))


def summary(model=None, *, check_onnx=False, weights="auto", store=None, notify: Notify = quiet, progress=None,
            **keywords) -> SummaryResult:
    """Complexity of ``model`` at its input size (batch 1, eval mode): the per-layer table, params, MACs
    and FLOPs, memory estimates — one complexity record. ``check_onnx``: also count the MACs of
    perfkit's exported ONNX graph; ``result.failed`` when the two counts disagree."""
    from perfkit.analysis import analyze, uncountable
    from perfkit.results import Failure, Kind, Where, describe

    given = Keywords.of("summary", keywords, weights=weights)
    spec = given.spec(model, notify)
    if uncountable(spec):  # compiled code: said before a run is opened (exit 2, nothing stored)
        raise UsageError(uncountable(spec))
    if check_onnx and spec.form != "pytorch":
        raise UsageError(f"--check-onnx compares the PyTorch count with perfkit's exported graph; {spec.name} is "
                         f"{'an ONNX file' if spec.form == 'onnx' else 'an engine'}: its MACs are counted from that "
                         "graph already")
    # published numbers are at the native size: a zoo model's, resolved without input_size
    zoo = spec.source not in ("code", "module") and spec.form == "pytorch"
    native = given.spec(model, quiet, input_size=None) if given.model["input_size"] and zoo else spec
    with session(given, store, "cpu", [native], progress=progress) as run:
        run.rec.model(native)
        also = " and exporting it to ONNX" if check_onnx else ""
        run.ctx.progress.update(f"counting params and MACs of {spec.label}{also} ...")
        try:
            result = analyze(spec, onnx_ctx=run.ctx if check_onnx else None)
        except Exception as exc:  # recorded as the step's failure, then raised as the call's error
            run.rec.add(Failure.of(Kind.COMPLEXITY, Where.of(spec, spec.reference_runtime, "fp32", 1, "cpu"), exc))
            if spec.input_size != native.input_size and isinstance(exc, (RuntimeError, AssertionError, ValueError)):
                raise UsageError(f"{spec.name} does not run at --input-size {'×'.join(map(str, spec.input_size))}: "
                                 f"{describe(exc)}") from None
            raise
        run.rec.add(result)
        if result.onnx_agrees is False:
            run.rec.fail("the PyTorch and ONNX MAC counts disagree")
    return run.result(SummaryResult, [spec], native=native)


def profile(model=None, *, runtimes="eager", batch="1,8,32", precision="fp32", scenario="singlestream",
            memory=True, layers=False, weights="auto", store=None, notify: Notify = quiet, progress=None,
            **keywords) -> ProfileResult:
    """Latency, throughput, memory and roofline of ``model`` in each runtime at each batch, in each
    scenario of ``scenario`` (SingleStream always; ``offline`` adds the Offline scenario), at each
    precision. Scenario options are keywords too (``iterations``, ``warmup``, ``min_seconds``,
    ``offline_seconds``, ...). ``memory``: peak memory, each runtime in its own process. ``layers``: also
    a per-layer profile from each runtime's own profiler (``perfkit.profiler.layers``), a layers record per
    runtime × precision × batch."""
    from perfkit.api import keywords as K
    from perfkit.plan import Plan
    from perfkit.profiler import profile_model

    given = Keywords.of("profile", keywords, weights=weights, scenarios=True)
    device = given.device()
    backends = K.runtimes(runtimes)
    precisions = K.precisions(precision, backends, device)
    batches, runs = K.batches(batch), given.scenario_runs(scenario)
    spec = given.spec(model, notify, precision)
    backends = K.runtimes_for(spec, backends, notify)
    plan = Plan(tuple(backends), tuple(K.batches_for(spec, batches, notify)), tuple(precisions), runs, bool(memory),
                device=device, layers=bool(layers))
    calibration = given.calibration(precisions, None, notify)
    with session(given, store, device, [spec], progress=progress, calibration=calibration) as run:
        run.rec.model(spec)
        run.ctx.progress.start(f"profiling {spec.name}", total=plan.steps)
        run.rec.add_all(profile_model(spec, plan, run.ctx))
    return run.result(ProfileResult, [spec], not_measured=plan.not_measured())


def run(models=None, *, runtimes="auto", precision="auto", batch="1,8", data=None, labels=None, limit=None,
        cache=None, parity_samples=8, scenario="singlestream,offline", memory=True, resume=None, weights="auto",
        store=None, notify: Notify = quiet, progress=None, **keywords) -> RunResult:
    """The whole pipeline for each of ``models`` (one or a list; default: the classic four, none with
    ``model_code``): complexity, export, parity, accuracy on ``data`` (ImageNet-val or your labelled
    folders; default $PERFKIT_IMAGENET_VAL, else skipped), profile (the scenarios at their quick
    settings) and memory, in one run. ``runtimes="auto"``: every runtime available here that the
    pipeline measures by default; ``precision="auto"``: fp32, plus each precision this hardware
    accelerates in the runtimes that build it (``perfkit.env.accelerated``; ``notify`` says what was
    left out and why). ``resume``: a run of ``store`` to continue (its id, a prefix or ``latest``)."""
    from perfkit import pipeline

    given = Keywords.of("run", keywords, weights=weights, scenarios=True)
    device = given.device()
    if resume is not None:  # before anything is resolved or announced: an unknown or live run is the one line
        resume = _resumable(store, resume)
    cfg, data = _run_config(given, models, runtimes, precision, batch, data, labels, limit, cache, parity_samples,
                            scenario, memory, resume, device, notify)
    with places(store, given.measuring["artifacts"]) as (opened, kept, cfg.artifacts):
        if cfg.data is None:
            notify(Note("no ImageNet-val (--data or $PERFKIT_IMAGENET_VAL): measured accuracy is skipped; reports "
                        "show published accuracy, labelled as such", "info", "data"))
        done = pipeline.run_pipeline(cfg, opened, progress or NO_PROGRESS, data)
        records = opened.records(done.run_id)
    return RunResult(run_id=done.run_id, device=device, store=kept, failures=done.failures, recorded=records,
                     skipped=done.skipped, seconds=done.seconds)


def _resumable(store, resume: str) -> str:
    """The id of the run of ``store`` that ``resume`` names, refused when it cannot be resumed."""
    from perfkit.store import Store

    if store is None:
        raise UsageError("perfkit.run(resume=...) continues a run of a store: pass store= too")
    if not isinstance(store, (str, os.PathLike)):
        return store.resumable(resume)
    with Store(store, read_only=True) as opened:
        return opened.resumable(resume)


def _run_config(given, models, runtimes, precision, batch, data, labels, limit, cache, parity_samples, scenario,
                memory, resume, device, notify) -> tuple:
    """The pipeline's configuration and its opened ``data`` (None without): a folder or labels file that
    cannot be read is refused here, before anything is stored."""
    from perfkit import pipeline
    from perfkit.api import keywords as K
    from perfkit.backends import default_backends

    automatic = K.text(runtimes).strip() == "auto"
    backends = default_backends(device) if automatic else K.runtimes(runtimes)
    precisions = K.precisions(precision, backends, device, lenient=automatic)
    K.positive(parity_samples, "--parity-samples")
    K.positive(limit, "--limit")
    data = data or pipeline.default_data()
    opened = pipeline.open_data(data, labels, limit)  # bad input is refused before anything is said
    if K.text(precision).strip().lower() == "auto":
        for line in K.automatic_plan_notes(backends, device):
            notify(Note(line, "info", "precision"))
    calibration = given.calibration(precisions, data, notify)
    if opened is not None:
        notify(Note(f"data: {opened.describe()}", "info", "data"))
    options = {**given.options, **({"calibration": calibration} if calibration else {})}
    model = dict(given.model)
    code = model.pop("model_code")
    named = K.listed(models)
    return pipeline.RunConfig(
        models=named or ([] if code else list(pipeline.SEED_MODELS)), weights=model.pop("weights"), model_code=code,
        model_options=model, device=device, runtimes=None if automatic else [b.name for b in backends],
        precisions=precisions, automatic=K.text(precision).strip().lower() == "auto", batches=K.batches(batch),
        data=data, labels=labels, limit=limit, cache=cache, parity_samples=parity_samples, memory=bool(memory),
        scenarios=given.scenario_runs(scenario, quick=True), resume=resume, threads=given.measuring["threads"],
        options=options, command=given.command(named + ([code] if code else []) or list(pipeline.SEED_MODELS)),
    ), opened
