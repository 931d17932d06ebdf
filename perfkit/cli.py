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
