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
                "Complexity of one model at its native input size.", "perfkit summary resnet18 --weights random")
    p.add_argument("model")
    _opt_weights(p)
    _opt_json(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_summary)


def _cmd_summary(args):
    raise PerfkitError("summary: not implemented yet")


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


def _ensure_recorded(store, run_id, spec, fmt, args, batch, options, device, progress, force=False):
    """Export (or find) one artifact and record it; returns (artifact, None) or (None, error text)."""
    from perfkit.export.artifact import ensure_artifact, export_record
    from perfkit.store.schema import Kind, Record

    task = progress.add_task(f"{spec.name}: {fmt} artifact (export if not cached)", total=None)
    try:
        artifact = ensure_artifact(spec, fmt, precision=args.precision, artifacts=args.artifacts, batch=batch,
                                   force=force, device=device, **options[fmt])
    except Exception as exc:  # one format's failure is recorded; the others go on
        store.add(Record.failure(Kind.EXPORT, spec.name, exc, runtime=str(fmt), precision=args.precision,
                                 batch=batch.max, weights=spec.weights.identity, device=device), run_id)
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        progress.remove_task(task)
    store.add(export_record(spec, artifact, device), run_id)
    return artifact, None


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

    from perfkit.report.console import Column, fmt_bytes, fmt_float, fmt_int, print_json, print_table

    spec = _spec(args)
    formats, batch, options = _artifact_request(args)
    device = _device(args)
    rows = []
    with _store(args) as store, store.run() as run_id, _progress() as progress:
        for fmt in formats:
            artifact, error = _ensure_recorded(store, run_id, spec, fmt, args, batch, options, device, progress,
                                               force=args.force)
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
    from perfkit.runtime import runner_class
    from perfkit.store.schema import Kind, Record

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
    inputs, source = parity.inputs_for(spec, args.samples, args.data, args.seed)
    rows = []
    with _store(args) as store, store.run() as run_id, _progress() as progress:
        task = progress.add_task(f"{spec.name}: eager reference on {inputs.shape[0]} {source} inputs", total=None)
        reference = parity.reference_logits(spec, inputs, batches, device)
        progress.remove_task(task)
        for fmt in formats:
            base = {"model": spec.name, "runtime": str(fmt), "precision": args.precision, "device": device}
            artifact, error = _ensure_recorded(store, run_id, spec, fmt, args, batch_range, options, device, progress)
            if error:
                rows += [{**base, "batch": b, "passed": False, "error": error} for b in batches]
                continue
            task = progress.add_task(f"{spec.name}: {fmt} on {inputs.shape[0]} inputs at batch {args.batch}", total=None)
            try:
                with runner_class(fmt)(spec, artifact, device=device) as runner:
                    for b in batches:
                        result = parity.compare(reference[b], parity.logits(runner, inputs, b), tol)
                        store.add(parity.parity_record(spec, fmt, args.precision, b, device, result, source), run_id)
                        rows.append({**base, "batch": b, **result.metrics(), "failures": result.failures, "error": None})
            except Exception as exc:  # a runtime that cannot load or run fails its rows; the others go on
                store.add(Record.failure(Kind.PARITY, spec.name, exc, runtime=str(fmt), precision=args.precision,
                                         weights=spec.weights.identity, device=device), run_id)
                done = {r["batch"] for r in rows if r["runtime"] == str(fmt)}
                rows += [{**base, "batch": b, "passed": False, "error": f"{type(exc).__name__}: {exc}"}
                         for b in batches if b not in done]
            finally:
                progress.remove_task(task)
    failed = [r for r in rows if not r["passed"]]
    if args.json:
        print_json(rows)
        return 1 if failed else 0
    print_table(f"perfkit check — {spec.label} vs eager fp32, {inputs.shape[0]} {source} inputs, {args.precision}", [
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
                "Accuracy harness.", "perfkit validate resnet18 --data ~/imagenet/val -f eager,onnx")
    p.add_argument("model")
    _opt_weights(p)
    _opt_artifacts(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_validate)


def _cmd_validate(args):
    raise PerfkitError("validate: not implemented yet")


# -- profile / build-native (perfkit/profile, perfkit/native) --------------------------------------

def _add_profile(sub):
    p = _parser(sub, "profile", "latency, throughput, memory and roofline per runtime and batch",
                "Profiler.", "perfkit profile resnet18 -f eager,onnx --batch 1,8 --weights random")
    p.add_argument("model")
    _opt_weights(p)
    _opt_artifacts(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_profile)


def _cmd_profile(args):
    raise PerfkitError("profile: not implemented yet")


# -- train (perfkit/train) --------------------------------------------------------------------------

def _add_train(sub):
    p = _parser(sub, "train", "train or fine-tune a model on CIFAR-10 or an ImageFolder",
                "Training comparison.", "perfkit train resnet18 --dataset cifar10 --data ~/cifar --epochs 2")
    p.add_argument("model")
    _opt_store(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args):
    raise PerfkitError("train: not implemented yet")


# -- run (perfkit/pipeline) -------------------------------------------------------------------------

def _add_run(sub):
    p = _parser(sub, "run", "the whole pipeline: complexity, export, parity, accuracy, profile, report",
                "The main job.", "perfkit run resnet18 googlenet")
    p.add_argument("models", nargs="*")
    _opt_store(p)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args):
    raise PerfkitError("run: not implemented yet")


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
                "Reports read the store only.", "perfkit report latest --html reports/latest.html")
    p.add_argument("run", nargs="?", default="latest")
    _opt_store(p)
    p.set_defaults(func=_cmd_report)


def _cmd_report(args):
    raise PerfkitError("report: not implemented yet")


def _add_select(sub):
    p = _parser(sub, "select", "rank model × runtime candidates that meet constraints",
                "Deployment decision.", "perfkit select --max-latency-ms 10 --min-top1 70")
    _opt_store(p)
    p.set_defaults(func=_cmd_select)


def _cmd_select(args):
    raise PerfkitError("select: not implemented yet")


def _add_regress(sub):
    p = _parser(sub, "regress", "compare a candidate run with a baseline; exit 1 on regression",
                "CI regression check.", "perfkit regress --baseline baseline.json")
    _opt_store(p)
    p.set_defaults(func=_cmd_regress)


def _cmd_regress(args):
    raise PerfkitError("regress: not implemented yet")


# -- entry point ------------------------------------------------------------------------------------

_COMMANDS = (
    _add_run, _add_zoo, _add_summary, _add_export, _add_check, _add_validate, _add_profile,
    _add_train, _add_runs, _add_report, _add_select, _add_regress,
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
