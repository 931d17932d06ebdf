"""perfkit validate MODEL... --data DIR: top-1/top-5 on ImageNet-val or your labelled folders, every runtime in one pass."""

from __future__ import annotations

from pathlib import Path

from perfkit.cli import common
from perfkit.cli import options as O


def add(sub) -> None:
    from perfkit.api.keywords import default_workers

    p = O.command(sub, "validate", "top-1/top-5 on ImageNet-val or your labelled folders, every runtime in one pass",
                  "Accuracy harness: each batch is decoded and preprocessed once (the model's own transform,\n"
                  "printed) and fed to every runtime; per runtime: integer top-1/top-5 counts, delta to eager\n"
                  "(and to the published accuracy on ImageNet-val), per-image top-1 flips and logit differences\n"
                  "vs eager. --data takes ImageNet-val — class folders (n01440764/...), flat ILSVRC2012_val_*.JPEG\n"
                  "with LOC_val_solution.csv or the devkit ground truth, or a torchvision.datasets.ImageNet root;\n"
                  "labels in the ImageNet-1k index — or an ImageFolder of your classes (cat/, espresso/, ...;\n"
                  "images anywhere under each): class index = the sorted folder names, or --labels FILE.\n"
                  "Scale out with: torchrun --nproc-per-node N -m perfkit validate ...\n\n"
                  "int8 that meets the gate: with --precision int8 and --min-relative R, when full int8 misses the\n"
                  "gate, perfkit leaves the fewest most sensitive layers in float until it holds. Each weighted\n"
                  "layer (with the activation and residual Add after it) is quantized alone and its logit error\n"
                  "vs fp32 measured on 32 calibration images; then\n"
                  "the 1, 2, 4, ... most sensitive layers are left float (doubling, then bisecting), each trial an\n"
                  "int8 artifact judged on up to 500 --data images. Cost when full int8 misses: one\n"
                  "quantization and 32 inferences per layer, about 2*log2(layers) int8 exports and passes over\n"
                  "those images, a quick latency of full int8 vs the mix. The layers left float drive the\n"
                  "onnx, openvino and tensorrt int8 artifacts (keyed by the set; aoti stays full int8) and are\n"
                  "recorded; a gate missed even with half the layers float exits 1 with the table of trials\n"
                  "and validates the best set found.",
                  "perfkit validate resnet18 --data ~/imagenet/val -f eager,onnx --cache ~/.cache/perfkit-val\n"
                  "  perfkit validate model.onnx --data photos/ --labels labels.txt --crop 224 -f onnx,openvino")
    O.model(p, positional="many", weights_default="default")
    O.data(p, required=True)
    O.runtimes(p, "eager", "runtimes (the reference is always run first: eager; for an ONNX file ONNX Runtime fp32 "
                           "on the CPU running it)")
    O.precision(p)
    O.device(p)
    O.batch(p, "32", "images per batch (one number)")
    p.add_argument("--workers", type=int, default=default_workers(), help="JPEG decoding worker processes (0: none)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="uint8 preprocessed-tensor cache: later runs with the same resize/crop skip decoding")
    p.add_argument("--crops", type=int, default=1, choices=(1, 10),
                   help="1: center crop; 10: four corners + center, mirrored, softmax averaged")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N images (by file name on ImageNet-val, by path under --data otherwise)")
    p.add_argument("--limit-per-class", type=int, default=None, metavar="N", help="only the first N images of each class")
    p.add_argument("--real-labels", nargs="?", const="timm", default=None, metavar="FILE",
                   help="also score against the ReaL labels (timm's copy, or a real.json FILE); ImageNet-val with "
                        "ILSVRC2012_val_N names only")
    p.add_argument("--per-class", action="store_true", help="also report accuracy per class (worst 10 shown, all in --json)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave unreadable images out instead of stopping; they are recorded and the result marked")
    p.add_argument("--max-top1-drop", type=float, default=None, metavar="PP",
                   help="gate: exit 1 when a runtime's top-1 is more than PP points below eager's")
    p.add_argument("--min-relative", type=float, default=None, metavar="R",
                   help="gate: exit 1 when a runtime's top-1 is below R × eager's (MLPerf style, e.g. 0.99); with "
                        "int8, the fewest layers are first left float to meet it (see above)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for the flipped-ids JSON; default <store folder>/validate/<run id>")
    O.artifacts(p)
    O.threads(p)
    O.backend_options(p)
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from perfkit.api import validate
    from perfkit.report.console import console
    from perfkit.report.tables import gate_table, mixed_int8_table

    with common.progress(args, "img") as bar:
        done = validate(args.models, args.data, **common.keywords(args, "models", "data"), notify=common.notify(args),
                        progress=bar)
    if done.run_id is None:
        return 0  # torchrun: rank 0 prints
    if args.json:
        common.show(args, done.run_id, done.records(), [])
        return common.exit_code(done)
    for result in done.evaluations:
        _print(done, result)
    for record in _searches(done.records("accuracy")):
        console.print(mixed_int8_table(record))
    if done.gate_failures:
        console.print(gate_table(done.gate_failures))
    return common.exit_code(done)


def _searches(records) -> list:
    """One record per model whose int8 ran the --min-relative search (its int8 runtimes share one search)."""
    first = {}
    for r in records:
        if "mixed_int8" in r.metrics:
            first.setdefault(r.model, r)
    return list(first.values())


def _print(done, result) -> None:
    from perfkit.report.console import console
    from perfkit.report.tables import accuracy_table, per_class_tables

    records = [r for r in done.records("accuracy") if r.model == result.spec.name]
    console.print(accuracy_table(records, f"perfkit validate — {result.spec.label}", _notes(result)))
    for table in per_class_tables(records):
        console.print(table)


def _notes(result) -> list[str]:
    from perfkit.backends import reference_for, reference_text

    ref = result.published
    notes = [result.data.describe(), f"preprocessing: {result.transform.describe()}",
             f"crops: {result.crops}" + (" (4 corners + center, mirrored; softmax averaged)" if result.crops > 1
                                         else " (center)"),
             f"{result.seconds:.1f}s, {result.images / result.seconds if result.seconds else 0:,.0f} img/s; "
             f"decoded {result.decoded}, from cache {result.cache_hits}"]
    judge = reference_for(result.spec)
    if judge is None:  # an engine without --reference: its first runtime leads the pass
        notes.append(f"no --reference: top-1/top-5 against the labels; Δ, rel. and flips are against "
                     f"{result.reference}")
    elif result.spec.engine or not judge.reference:
        notes.append(f"reference: {reference_text(result.spec)}: Δ, rel. and flips are against it ({result.spec.name} "
                     "has no PyTorch module)")
    if result.data.num_classes < 5:
        notes.append(f"top-5 n/a: {result.data.num_classes} classes (with fewer than five, every image is in the top 5)")
    if result.spec.random_weights:
        notes.append("RANDOM WEIGHTS: accuracy is not meaningful (parity with eager is)")
    elif ref.get("acc1_pct") is not None:
        notes.append(f"published ({ref.get('weights')}): top-1 {ref['acc1_pct']}%, top-5 {ref['acc5_pct']}% on "
                     "50,000 images")
    if result.unreadable_files:
        notes.append(f"INCOMPLETE: {len(result.unreadable_files)} unreadable image(s) skipped: "
                     + ", ".join(result.unreadable_files[:5]) + (" …" if len(result.unreadable_files) > 5 else ""))
    if result.flips_file:
        notes.append(f"flipped image ids: {result.flips_file}")
    if result.real_source:
        notes.append(f"ReaL labels ({result.real_source}): images without an ILSVRC2012_val_N name or without a "
                     "ReaL label are left out of the ReaL columns")
    return notes
