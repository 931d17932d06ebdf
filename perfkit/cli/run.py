"""perfkit run: the whole pipeline (the main job)."""

from __future__ import annotations

from pathlib import Path

from perfkit.cli import common
from perfkit.cli import options as O


def add(sub) -> None:
    from perfkit import pipeline

    p = O.command(sub, "run", "the whole pipeline: complexity, export, parity, accuracy, profile, report",
                  "The main job. For each model: complexity → export for every runtime this machine can\n"
                  "run → parity of each runtime vs eager → accuracy on ImageNet-val or your labelled folders\n"
                  "(with --data or $PERFKIT_IMAGENET_VAL) → latency/throughput/memory profile, with the Offline scenario (K requests\n"
                  "in flight, best samples/s) at the largest batch; then the Rich summary and a\n"
                  "single-file HTML report (reports/<run-id>.html). Precisions (auto): fp32, plus each precision\n"
                  "this hardware accelerates, in the runtimes that build it (bf16 with avx512_bf16/AMX: eager\n"
                  "autocast and OpenVINO; int8 with VNNI/AMX/ARM dot products: ONNX Runtime and OpenVINO; fp16\n"
                  "on CUDA); the run prints what it left out and why, and --precision names any other. int8 is\n"
                  "calibrated on a seeded subset of --data, else on 32 seeded synthetic images\n"
                  "(marked: accuracy not meaningful). Weights come from the cache; a model\n"
                  "without cached weights runs with random weights and every output says so. A failing\n"
                  "step is recorded and the rest go on; the exit code is 1 if anything failed.",
                  "perfkit run                      # alexnet vgg16 resnet18 googlenet\n"
                  "  perfkit run --model model.onnx --model timm:efficientnet_lite0 --data my_photos/ --labels labels.txt")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"models (default: the classic four: alexnet vgg16 resnet18 googlenet; none with --model-code): "
                        f"{O.MODEL_HELP}")
    p.add_argument("--model", dest="more_models", action="append", default=[], metavar="MODEL",
                   help="a model to run, repeated for several (the same as MODEL arguments; both may be given: "
                        "MODELs first)")
    O.model(p, positional=None)
    O.device(p)
    O.runtimes(p, "auto", "runtimes, or auto: every runtime available here that `perfkit run` measures by default")
    O.precision(p, "auto")
    O.batch(p, "1,8", "batch sizes to profile")
    O.data(p, default=" for measured accuracy (default $PERFKIT_IMAGENET_VAL; skipped if unset)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (the output says SUBSET)")
    p.add_argument("--cache", type=Path, default=None, help="preprocessed-tensor cache for the accuracy step")
    p.add_argument("--parity-samples", type=int, default=8, help="synthetic inputs compared with eager per batch size")
    O.scenario(p, ",".join(pipeline.QUICK_SCENARIOS), quick=True)
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the spawned-process memory step")
    O.resume(p, "the latest run")
    p.add_argument("--html", type=Path, default=None, help="report path (default reports/<run-id>.html)")
    O.json_flag(p)
    O.threads(p)
    O.artifacts(p)
    O.backend_options(p)
    O.store(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.markup import escape

    from perfkit.api import run as run_all
    from perfkit.report.console import console, err_console
    from perfkit.report.html import render_html
    from perfkit.report.output import check_writable
    from perfkit.report.rows import load_run
    from perfkit.report.tables import summary_table

    if args.html is not None:
        check_writable(args.html, "--html")  # before the run, not after it
    with common.progress(args) as bar:
        done = run_all([*args.models, *args.more_models], **common.keywords(args, "models", "more_models"),
                       notify=common.notify(args), progress=bar)
    with common.open_store(args) as store:
        run_row, records = load_run(store, done.run_id)
        if args.json:
            from perfkit.report.console import print_json

            print_json({"run_id": done.run_id, "records": [common.record_json(r) for r in records]})
        else:
            for item in summary_table(run_row, records):
                console.print(item)
        html = render_html(store, done.run_id, args.html or Path("reports") / f"{done.run_id}.html")
    out = err_console if args.json else console
    for line in done.skipped:
        out.print(f"[dim]resumed: skipped {escape(line)} (finished earlier)[/]")
    out.print(f"run {done.run_id} finished in {done.seconds:.0f} s; HTML report: [bold]{escape(str(html))}[/]")
    for line in done.failures:
        err_console.print(f"[red]failed:[/] {escape(line)}")
    return 1 if done.failures else 0
