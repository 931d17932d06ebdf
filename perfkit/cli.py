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

def _add_export(sub):
    p = _parser(sub, "export", "export a model to TorchScript, ONNX, AOTInductor or TensorRT",
                "Export one model; artifacts are cached.", "perfkit export resnet18 -f torchscript,onnx,aoti --weights random")
    p.add_argument("model")
    _opt_weights(p)
    _opt_artifacts(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_export)


def _cmd_export(args):
    raise PerfkitError("export: not implemented yet")


def _add_check(sub):
    p = _parser(sub, "check", "parity of exported runtimes against eager PyTorch",
                "Compare each runtime with eager on the same inputs.", "perfkit check resnet18 -f onnx --weights random")
    p.add_argument("model")
    _opt_weights(p)
    _opt_artifacts(p)
    _opt_store(p)
    p.set_defaults(func=_cmd_check)


def _cmd_check(args):
    raise PerfkitError("check: not implemented yet")


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
    from rich.progress import Progress

    from perfkit.env import fingerprint
    from perfkit.errors import UsageError
    from perfkit.formats import Format, Precision, parse_list
    from perfkit.profile import latency, memory, roofline
    from perfkit.profile.timing import TimingConfig
    from perfkit.report.console import (
        Column, console, err_console, fmt_bytes, fmt_float, fmt_ms, fmt_pct, print_json, print_table,
    )
    from perfkit.store import Kind, Record

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
    brange = latency.batch_range_for(batches)
    flops, flops_source = roofline.model_flops(spec)
    cols = dict(model=spec.name, weights=spec.weights.identity, device=device)
    rows: list[dict] = []
    failed = 0
    steps = len(formats) * len(batches) * len(precisions) * (2 if args.memory else 1)
    with _store(args) as store, store.run() as run_id, \
            Progress(console=err_console, transient=True, disable=args.json and not err_console.is_terminal) as bar:
        task = bar.add_task(f"profiling {spec.name}", total=steps)

        def on_point(point):
            nonlocal failed
            bar.advance(task)
            common = dict(runtime=str(point.runtime), precision=str(point.precision), batch=point.batch, **cols)
            row = {**common, "status": "ok" if point.ok else "error", "latency": None, "memory": None,
                   "error": None if point.ok else f"{type(point.error).__name__}: {point.error}",
                   "warnings": point.warnings}
            if point.ok:
                metrics = {**point.timing.metrics(), "threads": point.threads, "flops_source": flops_source,
                           "channels_last": args.channels_last and point.runtime is Format.EAGER, **point.extra}
                peak = roofline.device_peak(device, point.precision, point.threads)
                metrics.update(roofline.roofline(flops, point.batch, point.timing.compute.median_ms, peak))
                store.add(Record(Kind.LATENCY, metrics=metrics, **common), run_id)
                row["latency"] = metrics
            else:
                failed += 1
                store.add(Record.failure(Kind.LATENCY, exc=point.error, **common), run_id)
            for text in point.warnings:
                err_console.print(f"[yellow]warning:[/] {text}")
            rows.append(row)

        for precision in precisions:
            bar.update(task, description=f"timing {spec.name} {precision}")
            latency.sweep(spec, formats, batches, precision=precision, device=device, artifacts=args.artifacts,
                          config=config, channels_last=args.channels_last, threads=args.threads, on_point=on_point)
        # Memory after every timing, so the spawned processes never disturb a measurement.
        for row in rows if args.memory else ():
            bar.update(task, description=f"memory {row['runtime']} batch {row['batch']}")
            bar.advance(task)
            if row["status"] != "ok":
                continue  # the latency error record already says why
            common = {k: row[k] for k in ("model", "runtime", "precision", "batch", "weights", "device")}
            fmt = Format(row["runtime"])
            try:
                metrics = memory.measure_memory(
                    spec, fmt, row["batch"], precision=row["precision"], device=device, artifacts=args.artifacts,
                    brange=brange, threads=args.threads,
                    options=latency.runner_options(fmt, channels_last=args.channels_last, threads=args.threads))
            except Exception as exc:
                failed += 1
                store.add(Record.failure(Kind.MEMORY, exc=exc, **common), run_id)
                row["memory"] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            metrics.pop("batch")
            store.add(Record(Kind.MEMORY, metrics=metrics, **common), run_id)
            row["memory"] = metrics

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
