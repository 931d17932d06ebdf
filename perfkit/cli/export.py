"""perfkit export MODEL -f ...: artifacts with manifests, cached and hash-checked."""

from __future__ import annotations

from perfkit.cli import common
from perfkit.cli import options as O


def add(sub) -> None:
    p = O.command(sub, "export", "export a model for each runtime (TorchScript, ONNX, AOTInductor, TensorRT, ...)",
                  "Export one model for each runtime that has an artifact. Artifacts are cached by model,\n"
                  "weights, runtime, precision, batch range, options, device and library versions: exporting\n"
                  "the same thing again is served from the cache (hash-checked); --force rebuilds (the cached\n"
                  "copy is replaced only once the new one is complete). A runtime that fails is recorded and\n"
                  "the others go on; the exit code is then 1.",
                  "perfkit export resnet18 -f torchscript,onnx,aoti --weights random\n"
                  "  perfkit export timm:efficientnet_lite0 --num-classes 7 --weights finetuned.pth -f onnx\n"
                  "  perfkit export --model-code net.py:build --input-size 3,224,224 -f onnx\n"
                  "  perfkit export model.onnx -f onnx,openvino   # an ONNX file: copied, and converted from")
    add_artifact_options(p, "torchscript,onnx,aoti")
    p.add_argument("--force", action="store_true", help="export again even when the artifact is cached")
    p.set_defaults(func=run)


def add_artifact_options(p, runtimes_default: str) -> None:
    """What chooses an artifact (export and check share them: both export what is missing)."""
    O.runtimes(p, runtimes_default)
    O.precision(p)
    O.batch_range(p)
    O.model(p)
    O.device(p)
    O.artifacts(p)
    O.backend_options(p)
    O.json_flag(p)
    O.store(p)


def batch_range(args):
    from perfkit.errors import UsageError
    from perfkit.vocab import BatchRange

    try:
        return BatchRange(args.min_batch, min(max(args.opt_batch, args.min_batch), args.max_batch), args.max_batch)
    except UsageError:
        raise UsageError(f"the batch range must satisfy 1 <= --min-batch <= --max-batch, got "
                         f"{args.min_batch}..{args.max_batch}") from None


def not_run_banner(backends) -> None:
    from perfkit.backends.tensorrt import NOT_RUN_HERE
    from perfkit.report.console import banner

    if any(b.name == "tensorrt" for b in backends):
        banner(f"note: {NOT_RUN_HERE}.")


def run(args) -> int:
    from perfkit.backends import artifact_batch, at_precision, export_each
    from perfkit.report.console import banner
    from perfkit.report.tables import export_table

    device = common.resolve_device(args)
    backends = O.chosen(args, exported_only=True)
    precisions = O.precisions(args, backends, device)
    brange = batch_range(args)
    spec = common.spec(args)
    if spec.engine:
        banner(f"note: nothing to export: {spec.name} was built already; its artifact is the file itself, copied into "
               "the artifact cache and hashed")
    backends = common.runtimes_for(spec, backends)
    calibration = common.calibration(args, precisions)
    not_run_banner(backends)
    with common.progress(args) as bar, common.session(args, device) as rec:
        rec.model(spec)
        ctx = common.context(args, device, bar, calibration)
        for precision in precisions:
            rec.add_all(export_each(spec, at_precision(backends, precision, device), ctx, precision=precision,
                                    batch=brange))
    shown = artifact_batch(spec, brange)
    title = f"perfkit export — {spec.label}, {', '.join(map(str, precisions))}, batch {shown.min}..{shown.max}"
    common.show(args, rec, [export_table(rec.records, title)])
    return common.exit_code(rec)
