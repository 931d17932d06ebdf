"""perfkit validate MODEL... --data DIR: top-1/top-5 on ImageNet-val or your labelled folders, every runtime in one pass."""

from __future__ import annotations

from pathlib import Path

from perfkit.cli import common
from perfkit.cli import options as O


def add(sub) -> None:
    p = O.command(sub, "validate", "top-1/top-5 on ImageNet-val or your labelled folders, every runtime in one pass",
                  "Accuracy harness: each batch is decoded and preprocessed once (the model's own transform,\n"
                  "printed) and fed to every runtime; per runtime: integer top-1/top-5 counts, delta to eager\n"
                  "(and to the published accuracy on ImageNet-val), per-image top-1 flips and logit differences\n"
                  "vs eager. --data takes ImageNet-val — class folders (n01440764/...), flat ILSVRC2012_val_*.JPEG\n"
                  "with LOC_val_solution.csv or the devkit ground truth, or a torchvision.datasets.ImageNet root;\n"
                  "labels in the ImageNet-1k index — or an ImageFolder of your classes (cat/, espresso/, ...;\n"
                  "images anywhere under each): class index = the sorted folder names, or --labels FILE.\n"
                  "Scale out with: torchrun --nproc-per-node N -m perfkit validate ...",
                  "perfkit validate resnet18 --data ~/imagenet/val -f eager,onnx --cache ~/.cache/perfkit-val\n"
                  "  perfkit validate model.onnx --data photos/ --labels labels.txt --crop 224 -f onnx,openvino")
    O.model(p, positional="many", weights_default="default")
    O.data(p, required=True)
    O.runtimes(p, "eager", "runtimes (the reference is always run first: eager; for an ONNX file ONNX Runtime fp32 "
                           "on the CPU running it)")
    O.precision(p)
    O.device(p)
    O.batch(p, "32", "images per batch (one number)")
    p.add_argument("--workers", type=int, default=O.default_workers(), help="JPEG decoding worker processes (0: none)")
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
                   help="gate: exit 1 when a runtime's top-1 is below R × eager's (MLPerf style, e.g. 0.99)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for the flipped-ids JSON; default <store folder>/validate/<run id>")
    O.artifacts(p)
    O.threads(p)
    O.backend_options(p)
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=run)


def _batch_size(args) -> int:
    from perfkit.errors import UsageError
    from perfkit.vocab import parse_batches

    batches = parse_batches(args.batch)
    if len(batches) != 1:
        raise UsageError(f"validate takes one batch size (-b N), got '{args.batch}'")
    return batches[0]


def _options(args, spec, out_dir):
    from perfkit.accuracy.harness import EvalOptions
    from perfkit.data.imagenet import real_labels

    batch_size = _batch_size(args)
    O.positive(args.workers, "--workers", allow_zero=True)
    transform = spec.preprocess  # the preprocessing flags were applied when the model was resolved
    real = real_labels(None if args.real_labels == "timm" else args.real_labels) if args.real_labels else None
    return EvalOptions(transform=transform, crops=args.crops, batch_size=batch_size, workers=args.workers,
                       cache_dir=args.cache, skip_unreadable=args.skip_unreadable, per_class=args.per_class,
                       real=real, out_dir=out_dir)


def run(args) -> int:
    from rich.markup import escape

    from perfkit.data import open_dataset
    from perfkit.distributed import Distributed
    from perfkit.report.console import banner

    device = common.resolve_device(args)
    backends = O.chosen(args)
    precisions = O.precisions(args, backends, device)
    _batch_size(args)  # a bad -b is refused before the dataset is opened and a run started
    dist = Distributed.from_env(device)
    device = dist.device(device)
    try:
        data = open_dataset(args.data, args.labels).take(args.limit, args.limit_per_class)
        specs = _specs(args, data, announce=dist.is_main)
        if dist.is_main:
            banner(escape(f"data: {data.describe()}"), style="bold")
            if dist.enabled:
                banner(f"torchrun: {dist.world} processes, contiguous shards, counts gathered to rank 0", style="bold")
        if not dist.is_main:
            return _follow(args, data, specs, backends, precisions, device, dist)
        return _lead(args, data, specs, backends, precisions, device, dist)
    finally:
        dist.close()


def _specs(args, data, *, announce: bool) -> list:
    """Every model, checked against the data before a run is opened: outputs that do not match the
    class index, or ImageNet-only options on other data, are bad input (exit 2, nothing stored)."""
    specs = common.specs(args, announce=announce)  # MODEL... and --model-code
    for spec in specs:
        _options(args, spec, None).check(spec, data)
    return specs


def _follow(args, data, specs, backends, precisions, device, dist) -> int:
    """Ranks other than 0 evaluate their shard and write nothing."""
    from perfkit.accuracy.harness import validate_model
    from perfkit.cli.options import calibration_set

    ctx = common.context(args, device, calibration=calibration_set(args, precisions, args.data))
    for spec in specs:
        validate_model(spec, data, backends, ctx, precisions=precisions, options=_options(args, spec, None), dist=dist)
    return 0


def _lead(args, data, specs, backends, precisions, device, dist) -> int:
    from perfkit.accuracy.harness import validate_model
    from perfkit.errors import PerfkitError
    from perfkit.report.console import banner
    from perfkit.report.tables import gate_table
    from perfkit.results import Failure, Kind, Where

    failures, errors = [], []
    calibration = common.calibration(args, precisions, args.data)
    with common.progress(args, "img") as bar, common.session(args, device) as rec:
        out_dir = args.out or (rec.store.path.parent / "validate" / rec.run_id)
        ctx = common.context(args, device, bar, calibration)
        for spec in specs:
            rec.model(spec)
            common.runtimes_for(spec, backends, reference_runs=True)  # notes the runtimes that cannot run it
            options = _options(args, spec, out_dir)
            banner(f"{spec.label} preprocessing: {options.transform.describe()}  (from {options.transform.source})",
                   style="bold")
            if options.transform.overrides:
                banner(f"WARNING: preprocessing overridden ({', '.join(options.transform.overrides)}); "
                       "the published accuracy assumes the model's own", style="bold red")
            try:
                done = validate_model(spec, data, backends, ctx, precisions=precisions, options=options, dist=dist)
            except PerfkitError as exc:
                rec.add(Failure.of(Kind.ACCURACY, Where.of(spec, "eager", "fp32", options.batch_size, device), exc))
                errors.append(exc)
                continue
            rec.add(done.result)
            rec.add_all(done.open_failures)
            failures += done.gate_failures(args.max_top1_drop, args.min_relative)
            _print(args, rec, done.result)
        if failures:
            rec.fail(f"{len(failures)} accuracy gate(s) failed")
    if args.json:
        common.show(args, rec, [])
    elif failures:
        from perfkit.report.console import console

        console.print(gate_table(failures))
    if errors and len(errors) == len(specs):
        raise errors[0] if len(errors) == 1 else PerfkitError(f"{len(errors)} validations failed: "
                                                             + "; ".join(map(str, errors)))
    return common.exit_code(rec)


def _print(args, rec, result) -> None:
    from perfkit.report.console import console
    from perfkit.report.tables import accuracy_table, per_class_tables

    if args.json:
        return
    records = [r for r in rec.records if r.kind == "accuracy" and r.model == result.spec.name]
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
