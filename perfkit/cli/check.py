"""perfkit check MODEL -f ...: parity of each runtime against eager PyTorch."""

from __future__ import annotations

from pathlib import Path

from perfkit.cli import common
from perfkit.cli import options as O
from perfkit.cli.export import add_artifact_options, batch_range, not_run_banner


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
    from rich.markup import escape

    from perfkit.accuracy import parity
    from perfkit.backends import artifact_batch, reference_for, reference_text
    from perfkit.errors import UsageError
    from perfkit.report.console import banner
    from perfkit.report.tables import parity_table
    from perfkit.vocab import parse_batches

    device = common.resolve_device(args)
    backends = O.chosen(args)
    precisions = O.precisions(args, backends, device)
    brange = batch_range(args)
    batches = parse_batches(args.batch)
    O.positive(args.samples, "--samples")
    tols = {p: parity.tolerance(p, args.atol, args.rtol, args.max_rel) for p in precisions}
    spec = common.spec(args)
    backends = common.runtimes_for(spec, backends)
    if any(parity.is_reference_run(spec, b, p, device) and not b.reference for b in backends for p in precisions):
        banner(escape(f"note: {reference_text(spec)} is the reference: it is not compared with itself"))
    batches = common.batches_for(spec, batches)
    outside = [b for b in batches if not artifact_batch(spec, brange).contains(b)]
    if outside:
        raise UsageError(f"--batch {args.batch}: every batch must lie in the artifact range {brange.min}..{brange.max} "
                         "(see --min-batch/--max-batch)")
    inputs, source = parity.inputs_for(spec, args.samples, args.data, args.seed)
    calibration = common.calibration(args, precisions, args.data)
    not_run_banner(backends)
    with common.progress(args) as bar, common.session(args, device) as rec:
        rec.model(spec)
        ctx = common.context(args, device, bar, calibration)
        for p in precisions:
            rec.add_all(parity.check_parity(spec, backends, ctx, inputs=(inputs, source), batches=batches,
                                            precision=p, batch_range=brange, tol=tols[p]))
        failed = [r for r in rec.records if r.kind == "parity" and (r.status == "error" or not r.metrics.get("passed"))]
        if failed:
            rec.fail(f"{len(failed)} parity check(s) failed")
    ref = reference_for(spec).name
    out = [parity_table(rec.records, f"perfkit check — {spec.label} vs {reference_text(spec)}, {inputs.shape[0]} "
                                     f"{source} inputs", caption=_caption(tols, ref))]
    if any(r.metrics.get("constant_reference") for r in rec.records):
        banner(f"warning: {ref} (the reference) gives the same logits for every input with these weights, so agreement "
               "is guaranteed and proves nothing about the runtimes; use other weights or --data")
    common.show(args, rec, out)
    return common.exit_code(rec)


def _caption(tols: dict, ref: str = "eager") -> str:
    """The tolerances, written against ``ref``: the reference runtime (eager; onnx for an ONNX file)."""
    from perfkit.accuracy.parity import INT8_CRITERIA
    from perfkit.vocab import Precision

    lines = [f"{p}: |Δ| ≤ {t.atol:g} + {t.rtol:g}·|{ref}|, max rel ≤ {t.max_rel:g}, top-1 agreement ≥ "
             f"{t.min_top1_agreement:.0%}, no NaN/Inf" for p, t in tols.items() if p is not Precision.INT8]
    text = ("tolerance " + "; ".join(lines) + "; " if lines else "") + f"max rel = max|Δ| / max|{ref}| per sample"
    return text + (f"\n{INT8_CRITERIA.replace('eager fp32', f'{ref} fp32')}" if Precision.INT8 in tols else "")
