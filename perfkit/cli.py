"""The command line: thin commands, each mapping to one library call.

Each command has an ``_add_<name>`` (arguments, help with an example) and a ``_cmd_<name>``
(call the library, write records, print a table or ``--json``). Errors a user can act on are
``PerfkitError``: printed without a traceback, with the error's exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from perfkit.errors import PerfkitError

EPILOG_COMMON = "Records go to the run store (--store, PERFKIT_STORE, default reports/perfkit.db)."


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def _parser(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, help=help, description=description, formatter_class=_Formatter,
        epilog=f"example:\n  {example}\n\n{EPILOG_COMMON}",
    )


# -- shared options -------------------------------------------------------------------------------

def _opt_store(p):
    p.add_argument("--store", type=Path, default=None, help="run store (SQLite); default $PERFKIT_STORE or reports/perfkit.db")


def _opt_json(p):
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")


def _opt_weights(p, default="default"):
    p.add_argument("--weights", default=default,
                   help="default (pretrained, from the cache), auto (pretrained if cached, else random), "
                        "random, a weights enum name (IMAGENET1K_V2), or a path to a state dict")


def _opt_artifacts(p):
    p.add_argument("--artifacts", type=Path, default=None,
                   help="artifact cache folder; default $PERFKIT_ARTIFACTS or .perfkit-artifacts/")


def _opt_device(p):
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when present)")


def _device(args) -> str:
    from perfkit.env import default_device

    return default_device() if args.device == "auto" else args.device


def _store(args):
    from perfkit.store import Store

    return Store(args.store)


def _spec(args, name: str | None = None):
    from perfkit.report.console import banner
    from perfkit.zoo.registry import resolve

    spec = resolve(name or args.model, args.weights)
    if spec.random_weights:
        banner(f"{spec.name}: RANDOM WEIGHTS — accuracy numbers are not meaningful (latency and parity are).")
    return spec


# -- zoo ------------------------------------------------------------------------------------------

def _add_zoo(sub):
    p = _parser(sub, "zoo", "list models with published accuracy, params and MACs",
                "List the model zoo: the default models (or every torchvision classifier with --all) with\n"
                "the published ImageNet-val accuracy, parameters and MACs of their default weights, and\n"
                "whether the pretrained file is in the local cache.", "perfkit zoo --json")
    p.add_argument("--all", action="store_true", help="every torchvision classification model, not just the defaults")
    _opt_json(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_zoo)


def _cmd_zoo(args):
    from perfkit.report.console import Column, fmt_float, fmt_int, fmt_pct, print_json, print_table
    from perfkit.zoo.registry import DEFAULT_MODELS, list_torchvision, resolve
    from perfkit.zoo.weights import hub_cache_path

    import torchvision

    names = list_torchvision() + ["lenet5"] if args.all else [*DEFAULT_MODELS, "lenet5"]
    rows = []
    for name in names:
        spec = resolve(name, "random")  # no file access: the listing is about the published numbers
        ref = spec.reference
        cached = None
        if spec.source == "torchvision":
            cached = hub_cache_path(torchvision.models.get_weight(ref["weights"])).is_file()
        rows.append({
            "model": name, "default_weights": ref.get("weights"), "acc1_pct": ref.get("acc1_pct"),
            "acc5_pct": ref.get("acc5_pct"), "params": ref.get("params"), "gmacs": ref.get("gmacs"),
            "input_size": list(spec.input_size), "weights_cached": cached,
            "preprocess": spec.preprocess.describe(),
        })
    if args.json:
        return print_json(rows)
    print_table("perfkit zoo — published ImageNet-val metrics of the default weights", [
        Column("model", "model", justify="left"),
        Column("weights", lambda r: (r["default_weights"] or "—").split(".")[-1], justify="left"),
        Column("acc@1", "acc1_pct", fmt_pct), Column("acc@5", "acc5_pct", fmt_pct),
        Column("params", "params", fmt_int), Column("GMACs", "gmacs", fmt_float(3)),
        Column("input", lambda r: "×".join(map(str, r["input_size"][1:]))),
        Column("cached", lambda r: {True: "yes", False: "no", None: "—"}[r["weights_cached"]]),
    ], rows, caption="GMACs: multiply-accumulates of conv+linear (torchvision labels these GFLOPS); FLOPs = 2 × MACs")


# -- summary (perfkit/analysis) ---------------------------------------------------------------------

def _add_summary(sub):
    p = _parser(sub, "summary", "per-layer table, params, MACs/FLOPs and memory estimates",
                "Complexity of one model at its native input size (batch 1, eval mode): a per-layer table\n"
                "(output shape, params) like torchsummary's, total/trainable params, MACs and FLOPs with\n"
                "their convention, the published params/GMACs beside them, and the memory estimates (MB).\n"
                "Weights change none of these numbers; with the default 'auto' a model without a cached\n"
                "pretrained file is built with random weights (and labelled so). Writes one complexity record.",
                "perfkit summary resnet18 --weights random --json")
    p.add_argument("model", help="a zoo name: resnet18, inception_v3, lenet5, timm:<name>, ...")
    _opt_weights(p, default="auto")
    _opt_json(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_summary)


def _cmd_summary(args):
    from perfkit.analysis import complexity_record
    from perfkit.report.console import err_console, print_json
    from perfkit.store import Kind, Record

    spec = _spec(args)
    with _store(args) as store, store.run() as run_id:
        try:
            with err_console.status(f"counting params and MACs of {spec.label} ..."):
                record = complexity_record(spec)
        except Exception as exc:
            store.add(Record.failure(Kind.COMPLEXITY, spec.name, exc, runtime="eager", precision="fp32", batch=1,
                                     weights=spec.weights.identity, device="cpu"), run_id)
            raise
        store.add(record, run_id)
    m = record.metrics
    published = {
        "params_diff": None if m["ref_params"] is None else m["params"] - m["ref_params"],
        "macs_diff_pct": None if not m["ref_gmacs"] else 100 * (m["macs"] / (m["ref_gmacs"] * 1e9) - 1),
    }
    if args.json:
        return print_json({"run_id": run_id, "model": spec.name, "label": spec.label, "weights": record.weights,
                           "random_weights": spec.random_weights, "runtime": record.runtime,
                           "precision": record.precision, "batch": record.batch, "device": record.device,
                           **m, **published})
    _print_summary(spec, m, published)


def _print_summary(spec, m: dict, published: dict) -> None:
    from perfkit.report.console import Column, console, fmt_float, fmt_int, fmt_si, print_table

    c, h, w = m["input_size"]
    print_table(f"{spec.label} — {len(m['layers'])} layer calls at batch 1, input {c}×{h}×{w}", [
        Column("layer (type-n)", "layer", justify="left"), Column("module", "module", justify="left"),
        Column("output shape", "output_shape"),
        Column("params", lambda r: f"shared with {r['repeat_of']}" if r["repeat_of"] else r["params"],
               lambda v: v if isinstance(v, str) else fmt_int(v)),
    ], m["layers"])

    diff_pct = published["macs_diff_pct"]
    ref_macs = None if m["ref_gmacs"] is None else m["ref_gmacs"] * 1e9
    mb = fmt_float(2)

    def row(name, measured, published="", difference=""):
        return {"name": name, "measured": measured, "published": published, "difference": difference}

    rows = [
        row("total params", fmt_int(m["params"]), fmt_int(m["ref_params"]),
            "—" if published["params_diff"] is None else f"{published['params_diff']:+,}"),
        row("trainable params", fmt_int(m["trainable_params"])),
        row("non-trainable params", fmt_int(m["non_trainable_params"])),
        row("MACs", fmt_si(m["macs"]), fmt_si(ref_macs), "—" if diff_pct is None else f"{diff_pct:+.3f}%"),
        row("FLOPs (2 × MACs)", fmt_si(m["flops"])),
        row("input size (MB)", mb(m["input_mb"])),
        row("forward/backward pass size (MB)", mb(m["forward_backward_mb"])),
        row("params size (MB)", mb(m["params_mb"])),
        row("estimated total size (MB)", mb(m["total_mb"])),
    ]
    print_table(f"{spec.label} — totals", [
        Column("", "name", justify="left"), Column("measured", "measured"), Column("published", "published"),
        Column("difference", "difference"),
    ], rows,
        caption=f"MACs: {m['macs_convention']}. MB = 2**20 bytes, float32, per sample (torchsummary's estimates).")
    console.print(f"[dim]params: {m['params_convention']}.[/]")
    console.print(f"[dim]not counted in MACs: {m['not_counted']}.[/]")
    if m["params_outside_rows"]:
        console.print(f"[dim]{m['params_outside_rows']:,} params are in no layer row: modules not called at "
                      f"inference (e.g. inception_v3's AuxLogits), parameters of non-leaf modules, or shared weights.[/]")


# -- export / check (perfkit/export, perfkit/runtime, perfkit/accuracy/parity) ---------------------

_EXPORTED = "torchscript,onnx,aoti"


def _opt_artifact_build(p, formats_default: str) -> None:
    """Options that choose an artifact (shared by export and check: both export what is missing)."""
    p.add_argument("-f", "--formats", default=formats_default,
                   help="comma-separated formats: torchscript, onnx, aoti, tensorrt")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="compute precision inside the artifact (input and output stay float32)")
    p.add_argument("--min-batch", type=int, default=1, help="smallest batch the artifact accepts")
    p.add_argument("--opt-batch", type=int, default=8, help="batch TensorRT tunes for (also the example batch)")
    p.add_argument("--max-batch", type=int, default=256, help="largest batch the artifact accepts")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset; unset: the exporter's default, recorded in the manifest")
    p.add_argument("--script", action="store_true", help="TorchScript: torch.jit.script instead of trace")
    p.add_argument("--freeze", action="store_true",
                   help="TorchScript: torch.jit.freeze (optimize_for_inference is applied when loaded)")
    _opt_weights(p)
    _opt_device(p)
    _opt_artifacts(p)
    _opt_json(p)
    _opt_store(p)


def _artifact_request(args):
    """(formats, BatchRange, per-format exporter options) from the shared options."""
    from perfkit.errors import UsageError
    from perfkit.formats import BatchRange, Format, parse_list

    formats = parse_list(args.formats, Format)
    bad = [str(f) for f in formats if f in (Format.EAGER, Format.NATIVE)]
    if bad or not formats:
        raise UsageError(f"-f takes exported formats (torchscript, onnx, aoti, tensorrt), not {', '.join(bad) or 'nothing'}")
    try:
        batch = BatchRange(args.min_batch, min(max(args.opt_batch, args.min_batch), args.max_batch), args.max_batch)
    except ValueError:
        raise UsageError(f"batch range must satisfy 1 <= --min-batch <= --max-batch, got {args.min_batch}..{args.max_batch}") from None
    options = {
        Format.TORCHSCRIPT: {"script": args.script, "freeze": args.freeze},
        Format.ONNX: {"opset": args.opset},
        Format.AOTI: {},
        Format.TENSORRT: {"opset": args.opset},
    }
    if Format.TENSORRT in formats:
        from perfkit.export.tensorrt import NOT_RUN_HERE
        from perfkit.report.console import banner

        banner(f"note: {NOT_RUN_HERE}.")
    return list(dict.fromkeys(formats)), batch, options


def _progress():
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from perfkit.report.console import err_console

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=err_console, transient=True)


def _add_export(sub):
    p = _parser(sub, "export", "export a model to TorchScript, ONNX, AOTInductor or TensorRT",
                "Export one model to each format. Artifacts are cached by model, weights, format, precision,\n"
                "options and library versions: exporting the same thing again is served from the cache\n"
                "(hash-checked); --force rebuilds. A format that fails is recorded and the others go on.\n"
                "TensorRT has not been run on the development machine (see README).",
                "perfkit export resnet18 -f torchscript,onnx,aoti --weights random")
    p.add_argument("model")
    _opt_artifact_build(p, _EXPORTED)
    p.add_argument("--force", action="store_true", help="export again even when the artifact is cached")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args):
    from rich.markup import escape

    from perfkit.export.artifact import export_and_record
    from perfkit.report.console import Column, fmt_bytes, fmt_float, fmt_int, print_json, print_table

    spec = _spec(args)
    formats, batch, options = _artifact_request(args)
    device = _device(args)
    rows = []
    with _store(args) as store, store.run() as run_id, _progress() as progress:
        task = progress.add_task("export", total=None)
        for fmt in formats:
            progress.update(task, description=f"{spec.name}: {fmt} artifact (export if not cached)")
            artifact, error = export_and_record(store, run_id, spec, fmt, precision=args.precision,
                                                artifacts=args.artifacts, batch=batch, device=device,
                                                force=args.force, **options[fmt])
            row = {"model": spec.name, "weights": spec.weights.identity, "format": str(fmt),
                   "precision": args.precision, "device": device, "status": "error" if error else "ok", "error": error}
            if artifact is not None:
                row.update(cached=artifact.cached, seconds=artifact.seconds, export_seconds=artifact.export_seconds,
                           artifact_bytes=artifact.bytes, sha256=artifact.sha256, artifact_path=str(artifact.path),
                           warnings=artifact.warnings, batch=artifact.manifest["batch"])
            rows.append(row)
    failed = [r for r in rows if r["status"] == "error"]
    if args.json:
        print_json(rows)
        return 1 if failed else 0
    print_table(f"perfkit export — {spec.label}, {args.precision}, batch {batch.min}..{batch.max}", [
        Column("format", "format", justify="left"),
        Column("status", lambda r: "FAILED" if r["error"] else ("cached" if r["cached"] else "exported"), justify="left"),
        Column("this run", "seconds", fmt_float(2)), Column("export s", "export_seconds", fmt_float(1)),
        Column("size", "artifact_bytes", fmt_bytes),
        Column("warnings", lambda r: None if r["error"] else len(r["warnings"]), fmt_int),
        Column("sha256", lambda r: (r.get("sha256") or "—")[:12]),
        Column("path", lambda r: escape(r.get("artifact_path") or r["error"]), justify="left"),
    ], rows, row_style=lambda r: "red" if r["error"] else None,
        caption="cached: served from the artifact cache after checking every file's sha256; --force rebuilds")
    return 1 if failed else 0


def _add_check(sub):
    p = _parser(sub, "check", "parity of exported runtimes against eager PyTorch",
                "Run each runtime and eager PyTorch on the same inputs and compare the logits: max/mean\n"
                "absolute and max relative difference, cosine similarity, top-1 agreement, top-5 overlap,\n"
                "NaN/Inf. Inputs are seeded synthetic tensors, or real images through the model's\n"
                "preprocessing with --data. Each batch size goes through the same artifact (dynamic batch).\n"
                "Exit code 1 when any runtime fails its tolerance (fp32: atol 1e-3, rtol 1e-4, max rel 1e-3,\n"
                "top-1 100%).",
                "perfkit check resnet18 -f torchscript,onnx,aoti --weights random --batch 1,8")
    p.add_argument("model")
    _opt_artifact_build(p, _EXPORTED)
    p.add_argument("--data", type=Path, default=None,
                   help="folder of images (ImageFolder-like or flat); default: seeded synthetic inputs")
    p.add_argument("--samples", type=int, default=32, help="number of inputs compared at each batch size")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes to feed the inputs at")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    p.add_argument("--atol", type=float, default=None, help="absolute logit tolerance (default per precision)")
    p.add_argument("--rtol", type=float, default=None, help="relative logit tolerance (default per precision)")
    p.add_argument("--max-rel", type=float, default=None,
                   help="largest |Δ| allowed as a fraction of each sample's largest logit (default per precision)")
    p.set_defaults(func=_cmd_check)


def _cmd_check(args):
    from rich.markup import escape

    from perfkit.accuracy import parity
    from perfkit.errors import UsageError
    from perfkit.report.console import Column, banner, fmt_bool, fmt_int, fmt_sci, print_json, print_table
    spec = _spec(args)
    formats, batch_range, options = _artifact_request(args)
    device = _device(args)
    try:
        batches = sorted({int(b) for b in args.batch.split(",") if b.strip()})
    except ValueError:
        raise UsageError(f"--batch takes comma-separated integers, got '{args.batch}'") from None
    outside = [b for b in batches if not batch_range.contains(b)]
    if not batches or outside:
        raise UsageError(f"--batch {args.batch}: every batch must lie in the artifact range "
                         f"{batch_range.min}..{batch_range.max} (see --min-batch/--max-batch)")
    tol = parity.tolerance(args.precision, args.atol, args.rtol, args.max_rel)
    with _store(args) as store, store.run() as run_id, _progress() as progress:
        task = progress.add_task("check", total=None)
        check = parity.check_model(spec, formats, store=store, run_id=run_id, batches=batches, samples=args.samples,
                                   data=args.data, seed=args.seed, precision=args.precision, device=device,
                                   artifacts=args.artifacts, batch_range=batch_range, options=options, tol=tol,
                                   on_step=lambda text: progress.update(task, description=text))
    rows, inputs, source = check.rows, check.inputs, check.source
    failed = [r for r in rows if not r["passed"]]
    if args.json:
        print_json(rows)
        return 1 if failed else 0
    print_table(f"perfkit check — {spec.label} vs eager fp32, {inputs} {source} inputs, {args.precision}", [
        Column("runtime", "runtime", justify="left"), Column("batch", "batch", fmt_int),
        Column("max |Δ|", "max_abs_diff", fmt_sci), Column("mean |Δ|", "mean_abs_diff", fmt_sci),
        Column("max rel", "max_rel_diff", fmt_sci),
        Column("cos min", "cosine_min", lambda v: "—" if v is None else f"{v:.6f}"),
        Column("top-1 agree", "top1_agreement", lambda v: "—" if v is None else f"{v:.1%}"),
        Column("top-5 overlap", "top5_overlap", lambda v: "—" if v is None else f"{v:.1%}"),
        Column("NaN/Inf", "nonfinite", fmt_int), Column("result", "passed", fmt_bool),
    ], rows, row_style=lambda r: None if r["passed"] else "red",
        caption=f"tolerance: |Δ| ≤ {tol.atol:g} + {tol.rtol:g}·|eager|, max rel ≤ {tol.max_rel:g}, "
                f"top-1 agreement ≥ {tol.min_top1_agreement:.0%}, no NaN/Inf; max rel = max|Δ| / max|eager| per sample")
    if any(r.get("constant_reference") for r in rows):
        banner("warning: eager gives the same logits for every input with these weights, so agreement is "
               "guaranteed and proves nothing about the runtimes; use other weights or --data")
    for r in failed:
        why = r["error"] or "; ".join(r["failures"])
        banner(escape(f"FAIL {r['runtime']} batch {r['batch']}: {why}"), style="bold red")
    return 1 if failed else 0


# -- validate (perfkit/data, perfkit/accuracy) ------------------------------------------------------

def _add_validate(sub):
    p = _parser(sub, "validate", "ImageNet-val top-1/top-5 for every runtime in one pass",
                "Accuracy harness: each batch is decoded and preprocessed once (the model's own transform,\n"
                "printed) and fed to every runtime; per runtime: integer top-1/top-5 counts, delta to eager\n"
                "and to the published accuracy, per-image top-1 flips and logit differences vs eager.\n"
                "--data takes class folders (n01440764/...), flat ILSVRC2012_val_*.JPEG with LOC_val_solution.csv\n"
                "or the devkit ground truth, or a torchvision.datasets.ImageNet root. Labels are always the\n"
                "ImageNet-1k index. Scale out with: torchrun --nproc-per-node N -m perfkit validate ...",
                "perfkit validate resnet18 --data ~/imagenet/val -f eager,onnx --cache ~/.cache/perfkit-val")
    p.add_argument("models", nargs="+", metavar="MODEL", help="one or more models (evaluated one after the other)")
    p.add_argument("--data", type=Path, required=True, help="ImageNet-val folder (any of the three layouts)")
    p.add_argument("-f", "--formats", default="eager",
                   help="runtimes, comma-separated; eager is always run first as the reference")
    p.add_argument("--precision", default="fp32", help="fp32, fp16 or bf16 (all runtimes)")
    _opt_device(p)
    p.add_argument("-b", "--batch-size", type=int, default=32, help="images per batch")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="JPEG decoding worker processes (0: none)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="uint8 preprocessed-tensor cache: later runs with the same resize/crop skip decoding")
    p.add_argument("--crops", type=int, default=1, choices=(1, 10),
                   help="1: center crop; 10: four corners + center, mirrored, softmax averaged")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images (by file name)")
    p.add_argument("--limit-per-class", type=int, default=None, metavar="N", help="only the first N images of each class")
    p.add_argument("--real-labels", nargs="?", const="timm", default=None, metavar="FILE",
                   help="also score against the ReaL labels (timm's copy, or a real.json FILE); needs ILSVRC2012_val_N names")
    p.add_argument("--per-class", action="store_true", help="also report accuracy per class (worst 10 shown, all in --json)")
    p.add_argument("--mean", default=None, metavar="R,G,B", help="OVERRIDE the model's normalisation mean (recorded)")
    p.add_argument("--std", default=None, metavar="R,G,B", help="OVERRIDE the model's normalisation std (recorded)")
    p.add_argument("--resize", type=int, default=None, help="OVERRIDE the resize size (recorded)")
    p.add_argument("--crop", type=int, default=None, help="OVERRIDE the crop size and model input size (recorded)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave unreadable images out instead of stopping; they are recorded and the result marked")
    p.add_argument("--max-top1-drop", type=float, default=None, metavar="PP",
                   help="gate: exit 1 when a runtime's top-1 is more than PP points below eager's")
    p.add_argument("--min-relative", type=float, default=None, metavar="R",
                   help="gate: exit 1 when a runtime's top-1 is below R × eager's (MLPerf style, e.g. 0.99)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for the flipped-ids JSON; default <store folder>/validate/<run id>")
    _opt_weights(p)
    _opt_artifacts(p)
    _opt_json(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_validate)


def _floats3(text: str | None, name: str) -> tuple[float, float, float] | None:
    from perfkit.errors import UsageError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise UsageError(f"--{name} takes three comma-separated numbers (R,G,B), got '{text}'")
    return values


def _cmd_validate(args):
    from contextlib import nullcontext

    from perfkit.accuracy.harness import Distributed, validate_model
    from perfkit.data.imagenet import open_imagenet, real_labels
    from perfkit.errors import GateFailed, UsageError
    from perfkit.formats import Format, Precision, parse_list
    from perfkit.report.console import banner, print_json
    from perfkit.store import Kind, Record
    from perfkit.zoo.registry import resolve

    if args.batch_size < 1 or args.workers < 0:
        raise UsageError("--batch-size must be ≥ 1 and --workers ≥ 0")
    formats = parse_list(args.formats, Format)
    precision = Precision(args.precision)
    overrides = dict(mean=_floats3(args.mean, "mean"), std=_floats3(args.std, "std"), resize_size=args.resize,
                     crop_size=args.crop)
    device = _device(args)
    dist = Distributed.from_env(device)
    if dist is not None and device.startswith("cuda"):
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    lead = dist is None or dist.rank == 0  # only rank 0 prints and writes records
    try:
        data = open_imagenet(args.data).take(args.limit, args.limit_per_class)
        real = real_labels(None if args.real_labels == "timm" else args.real_labels) if args.real_labels else None
        if lead:
            banner(f"data: {data.describe()}", style="bold")
            if dist is not None:
                banner(f"torchrun: {dist.world} processes, contiguous shards, counts gathered to rank 0", style="bold")
        store = _store(args) if lead else None
        results, failures, errors = [], [], []
        with store or nullcontext(), (store.run() if store else nullcontext()) as run_id:
            out_dir = args.out or ((store.path.parent / "validate" / run_id) if store else None)
            for name in args.models:
                spec = _spec(args, name) if lead else resolve(name, args.weights)
                try:
                    done = validate_model(
                        spec, data, store=store, run_id=run_id, formats=formats, precision=precision, device=device,
                        artifacts=args.artifacts, overrides=overrides, batch_size=args.batch_size,
                        workers=args.workers, cache_dir=args.cache, crops=args.crops,
                        skip_unreadable=args.skip_unreadable, per_class=args.per_class, real=real, dist=dist,
                        progress=lead, out_dir=out_dir)
                except PerfkitError as exc:
                    if lead:
                        store.add(Record.failure(Kind.ACCURACY, spec.name, exc, runtime=str(Format.EAGER),
                                                 device=device.split(":")[0], weights=spec.weights.identity), run_id)
                    errors.append(exc)
                    continue
                if not lead:
                    continue
                results.append((done.result, done.open_errors))
                failures += done.gate_failures(args.max_top1_drop, args.min_relative)
                if not args.json:
                    _print_validate(done.result, done.open_errors)
    finally:
        if dist is not None:
            Distributed.close()
    if not lead:
        return 1 if errors else 0
    if args.json:
        print_json({"results": [_validate_json(r, o) for r, o in results], "gate_failures": failures,
                    "errors": [str(e) for e in errors]})
    if failures:
        if not args.json:
            _print_gate_failures(failures)
        raise GateFailed(f"{len(failures)} accuracy gate(s) failed")
    if errors:
        raise errors[0] if len(errors) == 1 else PerfkitError(f"{len(errors)} models failed: " + "; ".join(map(str, errors)))
    broken = [f"{r.spec.name}/{label}" for r, opened in results
              for label in [*(k for k, v in r.runtimes.items() if not v.ok), *opened]]
    if broken:
        raise PerfkitError(f"runtime(s) that did not run (see the error records): {', '.join(broken)}")
    return 0


def _validate_json(result, open_errors) -> dict:
    out = {"model": result.spec.name, "random_weights": result.spec.random_weights, "runtimes": []}
    for label, r in result.runtimes.items():
        out["runtimes"].append({"runtime": label, **(result.row(label) if r.ok else {"error": r.error})})
    for fmt, exc in open_errors.items():
        out["runtimes"].append({"runtime": fmt, "error": f"{type(exc).__name__}: {exc}"})
    return out


def _print_validate(result, open_errors) -> None:
    from perfkit.report.console import Column, fmt_int, fmt_pct, fmt_sci, print_table

    def signed(v):
        return "—" if v is None else f"{float(v):+.3f}"

    rows = []
    for label, r in result.runtimes.items():
        rows.append({"runtime": label, **result.row(label)} if r.ok else {"runtime": label, "error": r.error})
    rows += [{"runtime": fmt, "error": f"{type(exc).__name__}: {exc}"} for fmt, exc in open_errors.items()]
    columns = [
        Column("runtime", "runtime", justify="left"), Column("images", "images", fmt_int),
        Column("top-1", "top1_correct", fmt_int), Column("top-1 %", "top1_pct", fmt_pct),
        Column("top-5", "top5_correct", fmt_int), Column("top-5 %", "top5_pct", fmt_pct),
        Column("Δ eager pp", "delta_top1_vs_eager_pp", signed), Column("Δ pub. pp", "delta_top1_vs_ref_pp", signed),
        Column("flips", "flips_vs_eager", fmt_int), Column("max |Δlogit|", "max_abs_diff_vs_eager", fmt_sci),
        Column("mean |Δlogit|", "mean_abs_diff_vs_eager", fmt_sci),
    ]
    if result.real_source:
        columns += [Column("ReaL top-1 %", "real_top1_pct", fmt_pct), Column("ReaL images", "real_images", fmt_int)]
    ref = result.spec.reference
    notes = [f"{result.data.describe()}", f"preprocessing: {result.transform.describe()}",
             f"crops: {result.crops}" + (" (4 corners + center, mirrored; softmax averaged)" if result.crops > 1 else " (center)"),
             f"{result.seconds:.1f}s, {result.images / result.seconds if result.seconds else 0:,.0f} img/s; "
             f"decoded {result.decoded}, from cache {result.cache_hits}"]
    if result.spec.random_weights:
        notes.append("RANDOM WEIGHTS: accuracy is not meaningful (parity with eager is)")
    elif ref.get("acc1_pct") is not None:
        notes.append(f"published ({ref.get('weights')}): top-1 {ref['acc1_pct']}%, top-5 {ref['acc5_pct']}% on 50,000 images")
    if result.unreadable_files:
        notes.append(f"INCOMPLETE: {len(result.unreadable_files)} unreadable image(s) skipped: "
                     + ", ".join(result.unreadable_files[:5]) + (" …" if len(result.unreadable_files) > 5 else ""))
    if result.flips_file:
        notes.append(f"flipped image ids: {result.flips_file}")
    if result.real_source:
        notes.append(f"ReaL labels ({result.real_source}): images without an ILSVRC2012_val_N name or without a "
                     "ReaL label are left out of the ReaL columns")
    notes += [f"[red]{r['runtime']} FAILED: {r['error']}[/]" for r in rows if "error" in r]
    print_table(f"perfkit validate — {result.spec.label}", columns, rows, caption="\n".join(notes),
                row_style=lambda r: "red" if "error" in r else None)
    for label, r in result.runtimes.items():
        if r.per_class:
            worst = sorted(r.per_class, key=lambda c: (c["top1_pct"], c["class_index"]))[:10]
            print_table(f"{label}: per-class top-1, worst {len(worst)} of {len(r.per_class)} classes", [
                Column("class", "class_index", fmt_int), Column("wnid", "wnid", justify="left"),
                Column("images", "images", fmt_int), Column("top-1", "top1_correct", fmt_int),
                Column("top-1 %", "top1_pct", fmt_pct), Column("top-5", "top5_correct", fmt_int),
            ], worst)


def _print_gate_failures(failures) -> None:
    from perfkit.report.console import Column, fmt_float, print_table

    print_table("accuracy gates FAILED", [
        Column("model", "model", justify="left"), Column("runtime", "runtime", justify="left"),
        Column("gate", "gate", justify="left"), Column("value", "value", fmt_float(4)),
        Column("limit", "limit", fmt_float(4)), Column("why", "why", justify="left"),
    ], failures, row_style=lambda r: "red")


# -- profile / build-native (perfkit/profile, perfkit/native) --------------------------------------

def _add_profile(sub):
    p = _parser(sub, "profile", "latency, throughput, memory and roofline per runtime and batch",
                "Profile one model in each runtime at each batch size: warm-up by count and time, then at\n"
                "least --iterations calls and --min-seconds, synchronised after every call (CUDA events on\n"
                "GPU, plus host-to-device and end-to-end times). Reports median/p90/p99 latency, CV (warns\n"
                "above 10%), throughput, peak memory (each runtime in its own process) and achieved GFLOP/s\n"
                "against the device peak. `-f native` builds and runs the C++ LibTorch runner.",
                "perfkit profile resnet18 -f eager,torchscript,onnx,aoti,native --batch 1,8 --weights random")
    p.add_argument("model")
    p.add_argument("-f", "--formats", default="eager",
                   help="comma-separated runtimes: eager, torchscript, onnx, aoti, tensorrt, native")
    p.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes")
    _opt_device(p)
    p.add_argument("--precision", default="fp32", help="comma-separated precisions: fp32, fp16, bf16")
    p.add_argument("--warmup", type=int, default=10, help="warm-up calls (at least)")
    p.add_argument("--warmup-seconds", type=float, default=1.0, help="warm-up time in seconds (at least)")
    p.add_argument("--iterations", type=int, default=50, help="measured calls (at least)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="measured time in seconds (at least)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="measure peak memory (one spawned process per runtime and batch)")
    p.add_argument("--channels-last", action="store_true", help="eager: channels-last memory format")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch, ONNX Runtime, native); default: torch's")
    _opt_weights(p, default="auto")
    _opt_artifacts(p)
    _opt_json(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_profile)


def _positive_ints(text: str, what: str) -> list[int]:
    from perfkit.errors import UsageError

    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, got '{text}'") from None
    if not values or values[0] < 1:
        raise UsageError(f"{what} must be positive integers, got '{text}'")
    return values


def _cmd_profile(args):
    from itertools import count

    from rich.progress import Progress

    from perfkit.env import fingerprint
    from perfkit.errors import UsageError
    from perfkit.formats import Format, Precision, parse_list
    from perfkit.profile import profile_model, profile_steps
    from perfkit.profile.timing import TimingConfig
    from perfkit.report.console import (
        Column, console, err_console, fmt_bytes, fmt_float, fmt_ms, fmt_pct, print_json, print_table,
    )

    formats = parse_list(args.formats, Format)
    precisions = parse_list(args.precision, Precision)
    batches = _positive_ints(args.batch, "--batch")
    if not formats or not precisions:
        raise UsageError("give at least one runtime (-f) and one precision (--precision)")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be >= 1")
    try:
        config = TimingConfig(args.warmup, args.warmup_seconds, args.iterations, args.min_seconds)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    device = _device(args)
    spec = _spec(args)
    with _store(args) as store, store.run() as run_id, \
            Progress(console=err_console, transient=True, disable=args.json and not err_console.is_terminal) as bar:
        task = bar.add_task(f"profiling {spec.name}",
                            total=profile_steps(formats, batches, precisions, memory=args.memory))
        done = count()  # on_step comes before each step: the steps before it are complete
        result = profile_model(
            spec, store=store, run_id=run_id, formats=formats, batches=batches, precisions=precisions,
            device=device, artifacts=args.artifacts, config=config, memory=args.memory,
            channels_last=args.channels_last, threads=args.threads,
            on_step=lambda description: bar.update(task, description=description, completed=next(done)))
    rows, failed, flops, flops_source = result.rows, result.failed, result.flops, result.flops_source
    for row in rows:
        for text in row["warnings"]:
            err_console.print(f"[yellow]warning:[/] {text}")

    env = {**fingerprint(), "threads_used": args.threads or _torch_threads()}
    if args.json:
        print_json({"run_id": run_id, "model": spec.name, "label": spec.label, "weights": spec.weights.identity,
                    "random_weights": spec.random_weights, "device": device, "flops_per_sample": flops,
                    "flops_source": flops_source, "timing": vars(config), "env": env, "results": rows})
        return 1 if failed else 0

    def lat(key):
        return lambda r: (r["latency"] or {}).get(key)

    print_table(f"perfkit profile — {spec.label} on {device}", [
        Column("runtime", "runtime", justify="left"), Column("prec", "precision", justify="left"),
        Column("batch", "batch"), Column("median", lat("latency_median_ms"), fmt_ms),
        Column("p90", lat("latency_p90_ms"), fmt_ms), Column("p99", lat("latency_p99_ms"), fmt_ms),
        Column("CV", lambda r: _pct(lat("latency_cv")(r)), fmt_pct),
        Column("img/s", lat("throughput_per_s"), fmt_float(1)),
        Column("peak mem", lambda r: (r["memory"] or {}).get("peak_bytes"), fmt_bytes),
        Column("GFLOP/s", lat("achieved_gflops"), fmt_float(1)),
        Column("% peak", lambda r: _pct(lat("peak_fraction")(r)), fmt_pct),
        Column("threads", lat("threads")),
        Column("error", lambda r: r["error"] or (r["memory"] or {}).get("error"), lambda v: v or "", justify="left"),
    ], rows, row_style=lambda r: "red" if r["status"] != "ok" else None,
        caption=f"FLOPs = 2 × MACs ({flops / 1e9:.3f} GFLOP/sample, {flops_source}); % peak against "
                f"{_peak_sources(rows)}; memory: {_memory_methods(rows)}; run {run_id}")
    console.print(f"[dim]env: {env.get('cpu_model')} · {env.get('cpu_count')} CPUs · threads {env['threads_used']} · "
                  f"GPU {env.get('gpu_name') or 'none'} · torch {env['libraries'].get('torch')}[/]")
    if failed:
        err_console.print(f"[red]{failed} measurement(s) failed; see the error column and `perfkit report {run_id}`[/]")
    return 1 if failed else 0


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _pct(fraction):
    return None if fraction is None else fraction * 100


def _peak_sources(rows: list[dict]) -> str:
    return "; ".join(sorted({r["latency"]["peak_source"] for r in rows if r["latency"]})) or "—"


def _memory_methods(rows: list[dict]) -> str:
    return "; ".join(sorted({f"{r['runtime']}: {r['memory']['method']}" for r in rows
                             if r["memory"] and "method" in r["memory"]})) or "—"


def _add_build_native(sub):
    p = _parser(sub, "build-native", "build the C++ LibTorch latency runner (used by `profile -f native`)",
                "Configure and compile perfkit/native/runner.cpp with CMake against the LibTorch inside the\n"
                "installed torch wheel (needs cmake >= 3.18 and a C++20 compiler). The build is cached and\n"
                "reused while the sources and torch are unchanged.", "perfkit build-native --force")
    p.add_argument("--build-dir", type=Path, default=None,
                   help="build folder; default $PERFKIT_NATIVE_BUILD or <artifacts>/native-build")
    p.add_argument("--force", action="store_true", help="rebuild even when the cached build is up to date")
    _opt_artifacts(p)
    _opt_json(p)
    p.set_defaults(func=_cmd_build_native)


def _cmd_build_native(args):
    from perfkit.report.console import banner, console, print_json
    from perfkit.runtime.native import build_native, default_build_dir

    if not args.json:
        banner("building the native runner (about 30 s on 2 cores) ...", style="dim")
    build = build_native(args.build_dir or default_build_dir(args.artifacts), force=args.force)
    out = {"binary": str(build.binary), "build_dir": str(build.build_dir), "rebuilt": build.rebuilt,
           "build_seconds": build.seconds, "aoti_loader": build.aoti}
    if args.json:
        return print_json(out)
    what = f"built in {build.seconds:.1f} s" if build.rebuilt else "up to date (reused)"
    console.print(f"native runner {what}: {build.binary}\n"
                  f"AOTInductor .pt2 loader: {'yes' if build.aoti else 'no (TorchScript only)'}")


# -- train (perfkit/train) --------------------------------------------------------------------------

def _add_train(sub):
    p = _parser(sub, "train", "train or fine-tune models on CIFAR-10 or an ImageFolder (time per epoch, best acc)",
                "Train or fine-tune zoo models with their classifier replaced for the dataset's classes, the\n"
                "classic training comparison: per epoch train/val loss and accuracy, seconds and images/s,\n"
                "the best val accuracy and its epoch. Logs go to stderr and reports/train-<run>-<model>.log;\n"
                "checkpoints to <checkpoint-dir>/<model>/last.pt (every epoch) and best.pt (on improvement).\n"
                "Data-parallel: torchrun --nproc_per_node N -m perfkit train ... (rank 0 logs and writes).\n"
                "A best.pt holds {'model': state_dict, ...} with the NEW head: `--weights best.pt` loads it\n"
                "wherever the class count matches and fails with a clear error where it does not.",
                "perfkit train resnet18 googlenet --dataset cifar10 --data ~/data --epochs 2 --input-size 64")
    p.add_argument("models", nargs="+", metavar="MODEL", help="zoo models (resnet18, timm:<name>, lenet5, ...)")
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "imagefolder"),
                   help="cifar10: the python batches (DIR or DIR/cifar-10-batches-py); imagefolder: DIR/train/<class>/*, DIR/val/<class>/*")
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 through torchvision if absent (needs a network)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--lr", type=float, default=None,
                   help="SGD learning rate (momentum 0.9); default 0.001 fine-tuning pretrained weights, 0.01 from scratch")
    p.add_argument("--schedule", default="cosine", choices=("cosine", "step"), help="cosine to 0, or step: ÷10 every 7 epochs")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    _opt_weights(p, default="auto")
    p.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="train and validate at N×N (default: the model's input size, e.g. 224; 32 is CIFAR's own)")
    p.add_argument("--amp", action="store_true", help="mixed precision: fp16 + GradScaler on CUDA, bf16 autocast on CPU")
    _opt_device(p)
    p.add_argument("--workers", type=int, default=None, help="data-loader processes (default: 0 on CPU, up to 8 on CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", type=Path, default=Path(".perfkit-checkpoints"), metavar="DIR",
                   help="checkpoints go to DIR/<model>/last.pt and best.pt")
    p.add_argument("--resume", action="store_true", help="continue from DIR/<model>/last.pt (same run in the store)")
    p.add_argument("--log-dir", type=Path, default=Path("reports"), help="folder of the training logs")
    _opt_json(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args):
    from perfkit.report.console import Column, console, fmt_float, fmt_int, fmt_seconds, print_json, print_table
    from perfkit.train.loop import TrainConfig, train_models

    configs = [TrainConfig(
        model=name, data=args.data, dataset=args.dataset, weights=args.weights, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
        input_size=args.input_size, amp=args.amp, device=args.device, workers=args.workers, seed=args.seed,
        checkpoint_root=args.checkpoint_dir, resume=args.resume, download=args.download, log_dir=args.log_dir,
    ) for name in args.models]
    results = train_models(configs, store_path=args.store)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # torchrun: rank 0 prints
    rows = [{"run_id": r.run_id, "model": r.model, "weights": r.weights, "device": r.device, "precision": r.precision,
             "batch": r.batch, **r.metrics} for res in results for r in res.records]
    if args.json:
        return print_json(rows)
    pct = fmt_float(4)
    print_table("perfkit train — one row per epoch", [
        Column("model", "model", justify="left"), Column("weights", "weights", justify="left"),
        Column("epoch", lambda r: f"{r['epoch']}/{r['epochs'] - 1}"),
        Column("train loss", "train_loss", pct), Column("train acc", "train_acc", pct),
        Column("val loss", "val_loss", pct), Column("val acc", "val_acc", pct),
        Column("time", "epoch_seconds", fmt_seconds), Column("img/s", "images_per_s", fmt_float(1)),
        Column("lr", "lr", lambda v: f"{v:.3g}"), Column("input", lambda r: r["input_size"][-1], fmt_int),
    ], rows, row_style=lambda r: "bold" if r["epoch"] == r["best_epoch"] else None)
    for res in results:
        console.print(f"{res.model}: best val acc {res.best_val_acc:.4f} at epoch {res.best_epoch}; "
              f"{fmt_seconds(res.total_seconds)} in all; best checkpoint {res.best_path}; log {res.log_path}",
                      markup=False)


# -- run (perfkit/pipeline) -------------------------------------------------------------------------

def _add_run(sub):
    p = _parser(sub, "run", "the whole pipeline: complexity, export, parity, accuracy, profile, report",
                "The main job. For each model: complexity → export to every format this machine can\n"
                "build → parity of each runtime vs eager → ImageNet-val accuracy (with --data or\n"
                "$PERFKIT_IMAGENET_VAL) → latency/throughput/memory profile; then the Rich summary and a\n"
                "single-file HTML report (reports/<run-id>.html). Weights come from the cache; a model\n"
                "without cached weights runs with random weights and every output says so. A failing\n"
                "step is recorded and the rest go on; the exit code is 1 if anything failed.",
                "perfkit run                      # alexnet vgg16 resnet18 googlenet")
    p.add_argument("models", nargs="*", help="models (default: the classic four: alexnet vgg16 resnet18 googlenet)")
    _opt_weights(p, default="auto")
    _opt_device(p)
    p.add_argument("-f", "--formats", default="auto",
                   help="exported formats, or auto: torchscript,onnx,aoti (+tensorrt on a GPU with the extra)")
    p.add_argument("--batch", default="1,8", help="batch sizes to profile")
    p.add_argument("--data", type=Path, default=None,
                   help="ImageNet-val folder for measured accuracy (default $PERFKIT_IMAGENET_VAL; skipped if unset)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (the output says SUBSET)")
    p.add_argument("--cache", type=Path, default=None, help="preprocessed-tensor cache for the accuracy step")
    p.add_argument("--parity-samples", type=int, default=8, help="synthetic inputs compared with eager per batch size")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the spawned-process memory step")
    p.add_argument("--resume", metavar="RUN", default=None, help="continue RUN, skipping the steps it finished")
    p.add_argument("--html", type=Path, default=None, help="report path (default reports/<run-id>.html)")
    _opt_artifacts(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args):
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from perfkit import pipeline
    from perfkit.formats import Format, parse_list
    from perfkit.report.console import banner, console, err_console
    from perfkit.report.html import render_html
    from perfkit.report.summary import print_run_summary

    cfg = pipeline.RunConfig(
        models=args.models or list(pipeline.SEED_MODELS), weights=args.weights, device=_device(args),
        formats=None if args.formats == "auto" else parse_list(args.formats, Format),
        batches=_positive_ints(args.batch, "--batch"), data=args.data or pipeline.default_data(),
        limit=args.limit, cache=args.cache, parity_samples=args.parity_samples, memory=args.memory,
        resume=args.resume, artifacts=args.artifacts,
    )
    if cfg.data is None:
        banner("no ImageNet-val (--data or $PERFKIT_IMAGENET_VAL): measured accuracy is skipped; "
               "reports show published accuracy, labelled as such", style="bold")
    with _store(args) as store:
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[model]}[/]"), TextColumn("{task.description}"),
                      TimeElapsedColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task("starting", model="", total=None)
            result = pipeline.run_pipeline(cfg, store, lambda model, step: bar.update(task, model=model, description=step))
        print_run_summary(store, result.run_id)
        html = render_html(store, result.run_id, args.html or Path("reports") / f"{result.run_id}.html")
    for line in result.skipped:
        console.print(f"[dim]resumed: skipped {line} (finished earlier)[/]")
    console.print(f"run {result.run_id} finished in {result.seconds:.0f} s; HTML report: [bold]{html}[/]")
    if result.failures:
        for line in result.failures:
            err_console.print(f"[red]failed:[/] {escape(line)}")
        return 1
    return 0


# -- runs / report / select / regress (perfkit/store, perfkit/report) ------------------------------

def _add_runs(sub):
    p = _parser(sub, "runs", "list the run history", "List runs in the store, newest first.", "perfkit runs --limit 5")
    p.add_argument("--limit", type=int, default=20, help="show at most this many runs (0: all)")
    _opt_json(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_runs)


def _cmd_runs(args):
    from perfkit.report.console import Column, fmt_int, fmt_seconds, fmt_time, print_json, print_table

    with _store(args) as store:
        runs = store.runs(args.limit or None)
        path = store.path
    for r in runs:
        r["seconds"] = (r["finished"] - r["started"]) if r["finished"] else None
    if args.json:
        return print_json(runs)
    style = {"ok": None, "running": "yellow", "interrupted": "yellow", "failed": "red"}
    print_table(f"runs in {path}", [
        Column("run", "id", justify="left"), Column("started", "started", fmt_time),
        Column("took", "seconds", fmt_seconds), Column("status", "status", justify="left"),
        Column("records", "records", fmt_int), Column("errors", "errors", fmt_int),
        Column("command", "command", justify="left"),
    ], runs, row_style=lambda r: "red" if r["errors"] else style.get(r["status"]))


def _add_report(sub):
    p = _parser(sub, "report", "render a run as a Rich summary, HTML, CSV or JSON",
                "Summarise one run of the store: a Rich table per model × runtime × precision (measured and\n"
                "published accuracy, parity, latency/throughput/memory per batch, params, MACs), the training\n"
                "comparison, and what could not run. --html writes one self-contained file (charts included,\n"
                "no network needed to view it); --csv/--json export the run's records (a --json file is a\n"
                "`perfkit regress` baseline).",
                "perfkit report latest --html reports/latest.html --json baseline.json")
    p.add_argument("run", nargs="?", default="latest", help="run id, a unique prefix of one, or latest")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the HTML report here")
    p.add_argument("--csv", type=Path, metavar="FILE", help="export the run's records as CSV (one line per record)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="export the run's records as JSON ('-': to stdout, instead of the summary)")
    _opt_store(p)
    p.set_defaults(func=_cmd_report)


def _cmd_report(args):
    from perfkit.report.console import banner, print_json
    from perfkit.report.records_io import export_payload, write_csv, write_json

    with _store(args) as store:
        run_id = store.get_run(args.run)["id"]
        if str(args.json) == "-":
            print_json(export_payload(store, run_id))
        else:
            from perfkit.report.summary import print_run_summary

            print_run_summary(store, run_id)
        if args.json is not None and str(args.json) != "-":
            banner(f"records of run {run_id} written to {write_json(store, run_id, args.json)}", "bold green")
        if args.csv is not None:
            banner(f"records of run {run_id} written to {write_csv(store, run_id, args.csv)}", "bold green")
        if args.html is not None:
            from perfkit.report.html import render_html

            banner(f"HTML report written to {render_html(store, run_id, args.html)}", "bold green")


def _add_select(sub):
    p = _parser(sub, "select", "rank model × runtime candidates that meet constraints",
                "Pick what to deploy: the model × runtime × precision candidates in the store (newest numbers\n"
                "of each, or those of one --run) that meet every constraint, Pareto-optimal first (higher\n"
                "top-1, lower p50 latency at --batch); every excluded candidate is listed with the\n"
                "constraints it failed or the number it lacks. Exit code 1 when no candidate qualifies.",
                "perfkit select --max-latency-ms 10 --min-top1 70 --batch 1 --device cpu")
    p.add_argument("--max-latency-ms", type=float, metavar="X", help="p50 latency at --batch must be at most X ms")
    p.add_argument("--min-top1", type=float, metavar="Y", help="top-1 (percent) must be at least Y")
    p.add_argument("--max-memory-mb", type=float, metavar="Z",
                   help="peak memory at --batch must be at most Z megabytes (10^6 bytes)")
    p.add_argument("--batch", type=int, default=1, metavar="B", help="the batch size the latency and memory are taken at")
    p.add_argument("--device", default=None, metavar="D", help="only candidates measured on this device (cpu, cuda)")
    p.add_argument("--run", default=None, metavar="RUN", help="take the numbers of this run only (default: newest per candidate)")
    p.add_argument("--use-published", action="store_true",
                   help="where no top-1 was measured, use the published top-1 of the weights (labelled 'published')")
    _opt_json(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_select)


def _cmd_select(args):
    from rich.markup import escape

    from perfkit.errors import GateFailed, UsageError
    from perfkit.report.console import Column, fmt_float, fmt_ms, print_json, print_table
    from perfkit.report.select import MB, Constraints, select

    if args.batch < 1:
        raise UsageError(f"--batch must be a positive integer, got {args.batch}")
    constraints = Constraints(args.max_latency_ms, args.min_top1, args.max_memory_mb, args.batch, args.device,
                              args.use_published)
    with _store(args) as store:
        result = select(store, constraints, args.run)
        path = store.path
    if not result["selected"] and not result["excluded"]:
        raise PerfkitError(f"no measured candidates in {path}{' for run ' + args.run if args.run else ''}: "
                           f"run `perfkit run` (or `perfkit profile`) first")
    if args.json:
        print_json(result)
    else:
        name = lambda c: escape(c["model"]) + (" [magenta](random weights)[/]" if c["random"] else "")  # noqa: E731
        top1 = lambda c: "—" if c["top1"] is None else f"{c['top1']:.2f}" + (  # noqa: E731
            " [yellow](published)[/]" if c["top1_source"] == "published" else "")
        print_table(f"candidates meeting the constraints (batch {args.batch})", [
            Column("#", "rank"), Column("Pareto", lambda c: "★" if c["pareto"] else "", str),
            Column("model", name, str, justify="left"), Column("runtime", "runtime", justify="left"),
            Column("prec", "precision", justify="left"), Column("device", "device", justify="left"),
            Column("top-1 %", top1, str), Column("p50", "latency_median_ms", fmt_ms),
            Column("p99", "latency_p99_ms", fmt_ms), Column("img/s", "throughput_per_s", fmt_float(1)),
            Column("peak MB", "peak_bytes", lambda v: "—" if v is None else f"{v / MB:.1f}"),
        ], result["selected"], caption="★ = Pareto-optimal: no other candidate is both more accurate and faster")
        if result["excluded"]:
            print_table("excluded", [
                Column("model", name, str, justify="left"), Column("runtime", "runtime", justify="left"),
                Column("prec", "precision", justify="left"), Column("device", "device", justify="left"),
                Column("why", lambda c: escape("; ".join(c["reasons"])), str, justify="left", style="yellow"),
            ], result["excluded"])
    if not result["selected"]:
        raise GateFailed(f"no candidate meets the constraints ({len(result['excluded'])} excluded, see why above)")


def _add_regress(sub):
    p = _parser(sub, "regress", "compare a candidate run with a baseline; exit 1 on regression",
                "CI regression check: compare two runs record by record (same model, runtime, precision,\n"
                "batch and device) and print what changed. Exit code 1 when top-1 dropped by more than\n"
                "--max-top1-drop points, p50 latency rose by more than --max-latency-increase percent, a parity\n"
                "check now fails, or a step that ran now errors. A side is a run id (or prefix, or latest) or a\n"
                "JSON file written by `perfkit report RUN --json FILE` (keep the baseline in git).",
                "perfkit regress --baseline ci/baseline.json --candidate latest --max-latency-increase 15")
    from perfkit.report.regress import DEFAULT_MAX_LATENCY_INCREASE_PCT, DEFAULT_MAX_TOP1_DROP_PP

    p.add_argument("--baseline", required=True, metavar="RUN|FILE", help="the reference run, or its JSON export")
    p.add_argument("--candidate", default="latest", metavar="RUN|FILE", help="the run to judge, or its JSON export")
    p.add_argument("--max-top1-drop", type=float, default=DEFAULT_MAX_TOP1_DROP_PP, metavar="PP",
                   help="largest allowed top-1 drop, in percentage points")
    p.add_argument("--max-latency-increase", type=float, default=DEFAULT_MAX_LATENCY_INCREASE_PCT, metavar="PCT",
                   help="largest allowed p50 latency increase, in percent")
    _opt_json(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_regress)


def _cmd_regress(args):
    from rich.markup import escape

    from perfkit.errors import GateFailed
    from perfkit.report.console import Column, banner, console, print_json, print_table
    from perfkit.report.regress import compare, load_side

    with _store(args) as store:
        baseline, candidate = load_side(store, args.baseline), load_side(store, args.candidate)
    result = compare(baseline, candidate, max_top1_drop_pp=args.max_top1_drop,
                     max_latency_increase_pct=args.max_latency_increase)
    if args.json:
        print_json(result)
    else:
        if result["env_differences"]:
            banner("environments differ (latency is only comparable on the same machine): "
                   + "; ".join(result["env_differences"]))
        shown = [c for c in result["changes"] if c["verdict"] != "same"]
        value = lambda v: "—" if v is None else (f"{v:.6g}" if isinstance(v, float) else escape(str(v)))  # noqa: E731
        change = lambda c: "—" if c["change"] is None else f"{c['change']:+.3g} {c['unit']}"  # noqa: E731
        style = {"regression": "red", "now fails": "red", "improved": "green", "fixed": "green", "missing": "yellow"}
        title = f"{escape(candidate.label)} vs baseline {escape(baseline.label)}"
        if not shown:
            console.print(f"{title}: no metric changed")
        else:
            print_table(title, [
                Column("model", "model", justify="left"), Column("runtime", "runtime", justify="left"),
                Column("prec", "precision", justify="left"), Column("batch", "batch"),
                Column("step", "kind", justify="left"), Column("metric", "metric", justify="left"),
                Column("baseline", "baseline", value), Column("candidate", "candidate", value),
                Column("change", change, str), Column("verdict", "verdict", justify="left"),
            ], sorted(shown, key=lambda c: c["verdict"] not in ("regression", "now fails")),
                row_style=lambda c: style.get(c["verdict"]),
                caption=f"gates: top-1 drop > {args.max_top1_drop:g} pp, p50 latency increase > "
                        f"{args.max_latency_increase:g}%, parity pass → fail, ok → error")
        console.print(f"{result['compared']} records compared, {len(shown)} changes, "
                      f"{result['regressions']} regressions, {result['missing']} missing, {result['new']} new")
    if result["regressions"]:
        raise GateFailed(f"{result['regressions']} regression(s) against {baseline.label}")


# -- entry point ------------------------------------------------------------------------------------

_COMMANDS = (
    _add_run, _add_zoo, _add_summary, _add_export, _add_check, _add_validate, _add_profile,
    _add_build_native, _add_train, _add_runs, _add_report, _add_select, _add_regress,
)


def build_parser() -> argparse.ArgumentParser:
    from perfkit import __version__

    parser = argparse.ArgumentParser(
        prog="perfkit", formatter_class=_Formatter,
        description="Pick an image classifier and ship it: export to TorchScript/ONNX/AOTInductor/TensorRT,\n"
                    "prove every runtime matches eager PyTorch and the published ImageNet accuracy,\n"
                    "profile latency/throughput/memory, and compare it all in tables and an HTML report.",
        epilog="start with:\n  perfkit run            # the whole pipeline on the classic four models\n"
               "  perfkit <command> --help",
    )
    parser.add_argument("--version", action="version", version=f"perfkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from perfkit.report.console import err_console

    try:
        result = args.func(args)
    except PerfkitError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: finished records are kept in the store[/]")
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
