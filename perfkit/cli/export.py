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


def run(args) -> int:
    from perfkit.api import export
    from perfkit.report.tables import export_table

    with common.progress(args) as bar:
        done = export(args.model, **common.keywords(args, "model"), notify=common.notify(args), progress=bar)
    [spec] = done.models
    shown = done.batch_range
    title = f"perfkit export — {spec.label}, {', '.join(map(str, done.precisions))}, batch {shown.min}..{shown.max}"
    common.show(args, done.run_id, done.records(), [export_table(done.records(), title)])
    return common.exit_code(done)
