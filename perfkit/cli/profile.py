"""perfkit profile MODEL -f ... -b ...: latency, throughput, memory and roofline per runtime and batch."""

from __future__ import annotations

import argparse

from perfkit.cli import common
from perfkit.cli import options as O


def add(sub) -> None:
    p = O.command(sub, "profile", "latency, throughput, memory and roofline per runtime and batch",
                  "Profile one model in each runtime at each batch size in each scenario (SingleStream always;\n"
                  "--scenario adds others). SingleStream: warm-up by count and time, then at\n"
                  "least --iterations calls and --min-seconds, synchronised after every call (CUDA events on\n"
                  "GPU, plus host-to-device and end-to-end times). Reports median/p90/p99 latency, CV (warns\n"
                  "above 10%), the CPU other processes used while timing (a number taken while they used 10% or\n"
                  "more is marked contended, with a warning), throughput, peak memory (each runtime in its own\n"
                  "process) and achieved GFLOP/s\n"
                  "against the device peak. Each runtime runs in its tuned configuration, recorded with the\n"
                  "numbers. `-f native` builds and runs the C++ LibTorch runner. `--scenario offline` adds the\n"
                  "Offline scenario at the largest batch: for a fixed time per K, K requests in flight through\n"
                  "each runtime's own concurrency (OpenVINO AsyncInferQueue, K ONNX Runtime sessions, K threads),\n"
                  "K = 1, 2, 4, ... searched; the best samples/s is recorded with its K and configuration.",
                  "perfkit profile resnet18 -f eager,onnx,openvino -b 1,8 --scenario offline --weights random\n"
                  "  perfkit profile --model-code net.py:build --input-size 3,224,224 -f eager,onnx -b 1,8\n"
                  "  perfkit profile model.onnx -f onnx,openvino -b 1,4   # an ONNX file: the ONNX runtimes")
    O.model(p)
    O.runtimes(p, "eager")
    O.batch(p, "1,8,32")
    O.device(p)
    O.precision(p)
    O.scenario(p, "singlestream")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="measure peak memory (one spawned process per runtime and batch)")
    p.add_argument("--layers", action="store_true",
                   help="also profile each runtime per layer with its own profiler (ONNX Runtime's trace, OpenVINO's "
                        "PERF_COUNT, torch.profiler), in a pass after the timings; rows named by the model's module "
                        "paths with MACs and ms, the sum of layer times beside the end-to-end median; one layers "
                        "record per runtime, precision and batch (`perfkit summary --layers-from RUN` shows them)")
    O.threads(p)
    O.artifacts(p)
    O.backend_options(p)
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from perfkit.api import profile
    from perfkit.report.console import console, err_console
    from perfkit.report.tables import layer_tables, scenario_tables

    with common.progress(args) as bar:
        done = profile(args.model, **common.keywords(args, "model"), notify=common.notify(args), progress=bar)
    [spec] = done.models
    for r in done.records():
        for text in r.metrics.get("warnings") or []:
            err_console.print(f"[yellow]warning:[/] {text}")
    tables = scenario_tables(done.records(), f"perfkit profile — {spec.label} on {done.device}", done.not_measured,
                             footer=f"run {done.run_id}")
    if args.layers:
        tables += layer_tables(done.records(), "perfkit profile --layers")
    common.show(args, done.run_id, done.records(), tables)
    if done.failed and not args.json:
        console.print(f"[red]{len(done.errors)} measurement(s) failed; see the error column and "
                      f"`perfkit report {done.run_id}`[/]")
    return common.exit_code(done)
