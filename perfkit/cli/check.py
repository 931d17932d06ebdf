"""perfkit check MODEL -f ...: parity of each runtime against eager PyTorch."""

from __future__ import annotations

from pathlib import Path

from perfkit.cli import common
from perfkit.cli import options as O
from perfkit.cli.export import add_artifact_options


def add(sub) -> None:
    p = O.command(sub, "check", "parity of each runtime against eager PyTorch (an ONNX file: ONNX Runtime on the CPU)",
                  "Run each runtime and eager PyTorch on the same inputs and compare the logits: max/mean\n"
                  "absolute and max relative difference, cosine similarity, top-1 agreement, top-5 overlap,\n"
                  "NaN/Inf. Inputs are seeded synthetic tensors, or real images through the model's\n"
                  "preprocessing with --data. Each batch size goes through the same artifact (dynamic batch).\n"
                  "Exit code 1 when any runtime fails its tolerance (fp32: atol 1e-3, rtol 1e-4, max rel 1e-3,\n"
                  "top-1 100%; looser for fp16/bf16). int8 is compared with eager fp32 and judged on what a\n"
                  "broken quantisation cannot keep: each sample's cosine with eager ≥ 0.9 and max |Δ| ≤ 0.6 of its\n"
                  "largest logit; its top-1 agreement and logit error are reported, not gated (near-ties flip;\n"
                  "judge int8 accuracy with `perfkit validate` on real images). An ONNX file (MODEL = model.onnx)\n"
                  "has no PyTorch module: its reference is ONNX Runtime fp32 on the CPU running the file itself.",
                  "perfkit check resnet18 -f torchscript,onnx,aoti --weights random -b 1,8\n"
                  "  perfkit check resnet18 --num-classes 3 --weights checkpoint.pth -f onnx\n"
                  "  perfkit check --model-code net.py:build --input-size 3,32,32 -f onnx\n"
                  "  perfkit check model.onnx -f onnx,openvino")
    add_artifact_options(p, "torchscript,onnx,aoti")
    O.batch(p, "1,8", "comma-separated batch sizes to feed the inputs at")
    p.add_argument("--data", type=Path, default=None,
                   help="folder of images (ImageFolder-like or flat); default: seeded synthetic inputs")
    p.add_argument("--samples", type=int, default=32, help="number of inputs compared at each batch size")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    p.add_argument("--atol", type=float, default=None, help="absolute logit tolerance (default per precision)")
    p.add_argument("--rtol", type=float, default=None, help="relative logit tolerance (default per precision)")
    p.add_argument("--max-rel", type=float, default=None,
                   help="largest |Δ| allowed as a fraction of each sample's largest logit (default per precision)")
    p.set_defaults(func=run)


def run(args) -> int:
    from perfkit.api import check
    from perfkit.backends import reference_text
    from perfkit.report.console import banner
    from perfkit.report.tables import parity_table

    with common.progress(args) as bar:
        done = check(args.model, **common.keywords(args, "model"), notify=common.notify(args), progress=bar)
    [spec] = done.models
    out = [parity_table(done.records(), f"perfkit check — {spec.label} vs {reference_text(spec)}, {done.samples} "
                                        f"{done.source} inputs", caption=_caption(done.tolerances, done.reference))]
    if any(r.metrics.get("constant_reference") for r in done.records()):
        banner(f"warning: {done.reference} (the reference) gives the same logits for every input with these weights, "
               "so agreement is guaranteed and proves nothing about the runtimes; use other weights or --data")
    common.show(args, done.run_id, done.records(), out)
    return common.exit_code(done)


def _caption(tols: dict, ref: str = "eager") -> str:
    """The tolerances, written against ``ref``: the reference runtime (eager; onnx for an ONNX file)."""
    from perfkit.accuracy.parity import BF16_CRITERIA, INT8_CRITERIA
    from perfkit.vocab import Precision

    lines = [f"{p}: |Δ| ≤ {t.atol:g} + {t.rtol:g}·|{ref}|, max rel ≤ {t.max_rel:g}, top-1 agreement ≥ "
             f"{t.min_top1_agreement:.0%}, no NaN/Inf" for p, t in tols.items() if p not in (Precision.BF16, Precision.INT8)]
    text = ("tolerance " + "; ".join(lines) + "; " if lines else "") + f"max rel = max|Δ| / max|{ref}| per sample"
    criteria = [c for p, c in ((Precision.BF16, BF16_CRITERIA), (Precision.INT8, INT8_CRITERIA)) if p in tols]
    return text + "".join(f"\n{c.replace('eager fp32', f'{ref} fp32')}" for c in criteria)
