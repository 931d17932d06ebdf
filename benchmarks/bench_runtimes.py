"""Runtime comparison on the CPU: SingleStream latency and Offline throughput of every CPU runtime,
and the fidelity of perfkit's OpenVINO and ONNX Runtime numbers against those libraries' own tools.

1. For each model (default: the eight default models) and every runtime available on this CPU
   (eager, TorchScript, ONNX Runtime, AOTInductor, OpenVINO, native when built): SingleStream p50
   latency at batch 1, and the Offline scenario at ``--batch`` (the most samples/s with K requests in
   flight, K searched), each with its ratio to eager and to the best runtime of that model.
2. Fidelity (``--fidelity-models``, default resnet18): perfkit's numbers beside the same library's
   own benchmark run in the same session, alternating A B A B over ``--rounds`` rounds (medians):
   - OpenVINO: ``benchmark_app`` on perfkit's IR with the same settings (``-d CPU -ip f32
     -infer_precision f32 -shape [B,C,H,W]``, ``-hint latency`` at batch 1 for SingleStream, ``-hint
     throughput`` at ``--batch`` for Offline; streams, threads and requests left to the hint on both
     sides). benchmark_app's own code runs in a child process with its measuring loop wrapped to read
     the CPU time it used.
   - ONNX Runtime: its documented defaults (a plain ``InferenceSession``: ``intra_op_num_threads=0``
     = one per physical core, sequential, all graph optimisations) timed ``session.run`` by
     ``session.run`` for SingleStream; for Offline, one session called from one Python thread per core
     with one intra-op thread each and spinning off (``Run`` is thread-safe; its thread-management
     docs advise no spinning for concurrent sessions).
   Target: within 5 % (a comparison tool must not under-configure a runtime). On a shared machine
   the wall-clock figures move with the load; samples per CPU-second (``getrusage`` around each
   measuring loop) are steadier and are shown beside them.

    PYTHONPATH=. python benchmarks/bench_runtimes.py [--models resnet18,googlenet] [-f eager,onnx,openvino]
        [--batch 8] [--seconds 2] [--offline-seconds 2] [--fidelity-models resnet18|none] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from perfkit.backends import all_backends, open_runner, parse_backends, prepare
from perfkit.context import Context
from perfkit.device import available_cores
from perfkit.env import fingerprint
from perfkit.plan import Plan, ScenarioRun
from perfkit.profiler import profile_model
from perfkit.profiler.scenarios import Point
from perfkit.profiler.scenarios import get as scenario
from perfkit.profiler.scenarios.offline import OfflineConfig, OfflineResult, measure
from perfkit.profiler.scenarios.singlestream import LatencyResult
from perfkit.profiler.timing import NoisyTimingWarning, TimingConfig, time_runner
from perfkit.report.console import Column, console, fmt_float, print_table
from perfkit.zoo.sources import resolve
from perfkit.zoo.sources.torchvision import DEFAULT_MODELS

TARGET = 0.05  # fidelity: within 5 % of the library's own tool


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- 1. the comparison ----------------------------------------------------------------------------------

def compare_model(name: str, backends, batch: int, ctx: Context, timing: TimingConfig, offline: OfflineConfig):
    """SingleStream at batch 1 (and ``batch``, for the Offline gain) and Offline at ``batch``, per runtime."""
    spec = resolve(name, weights="random")  # speed does not depend on the weights' values
    out = {"model": name, "single": {}, "offline": {}, "errors": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoisyTimingWarning)  # the CV is recorded
        plan = Plan(tuple(backends), tuple(sorted({1, batch})), memory=False, device=ctx.device,
                    scenarios=(ScenarioRun(scenario("singlestream"), timing), ScenarioRun(scenario("offline"), offline)))
        for result in profile_model(spec, plan, ctx):
            rt = result.where.runtime
            if isinstance(result, LatencyResult):
                out["single"].setdefault(rt, {})[result.where.batch] = {
                    "median_ms": result.timing.compute.median_ms, "cv": result.timing.compute.cv,
                    "config": result.runtime_config}
            elif isinstance(result, OfflineResult):
                out["offline"][rt] = {**result.best.summary(), "mechanism": result.best.mechanism,
                                      "trials": [t.summary() for t in result.trials]}
            else:
                out["errors"].setdefault(rt, result.error.splitlines()[0][:200])
    for name, why in plan.not_measured().get("offline", {}).items():
        out["errors"].setdefault(name, f"Offline not measured: {why}")
    return out


def ratios(values: dict[str, float], lower_is_better: bool) -> dict[str, dict]:
    """Each runtime's value with its ratio to eager and to the best (>1 = better than that one)."""
    if not values:
        return {}
    best = min(values.values()) if lower_is_better else max(values.values())
    eager = values.get("eager")
    speed = (lambda a, b: b / a) if lower_is_better else (lambda a, b: a / b)
    return {rt: {"value": v, "vs_eager": speed(v, eager) if eager else None, "vs_best": speed(v, best)}
            for rt, v in values.items()}


def summarise(result: dict, batch: int) -> dict:
    single = {rt: b[1]["median_ms"] for rt, b in result["single"].items() if 1 in b}
    offline = {rt: o["samples_per_s"] for rt, o in result["offline"].items()}
    return {"model": result["model"], "singlestream_b1": ratios(single, lower_is_better=True),
            "offline": ratios(offline, lower_is_better=False),
            "offline_k": {rt: o["requests"] for rt, o in result["offline"].items()},
            "singlestream_at_batch": {rt: batch / (b[batch]["median_ms"] / 1000) for rt, b in result["single"].items()
                                      if batch in b}}


# -- 2. fidelity ------------------------------------------------------------------------------------------

def benchmark_app(xml: Path, hint: str, batch: int, input_size, seconds: float) -> dict:
    """OpenVINO's benchmark_app on ``xml`` in a child process: its FPS and median latency, and the
    wall and CPU time of its measuring loop."""
    shape = f"[{batch},{','.join(map(str, input_size))}]"
    args = ["-m", str(xml), "-d", "CPU", "-hint", hint, "-shape", shape, "-ip", "f32", "-infer_precision", "f32",
            "-t", str(max(1, round(seconds)))]
    out = subprocess.run([sys.executable, __file__, "--benchmark-app-child", *args], capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCHMARK_APP ")), None)
    if line is None:
        raise RuntimeError(f"benchmark_app failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return json.loads(line.split(" ", 1)[1])


def _benchmark_app_child(argv: list[str]) -> None:
    """Run benchmark_app's own main() with its measuring loop wrapped to report CPU time as well."""
    from openvino.tools.benchmark import main as ba_main
    from openvino.tools.benchmark.benchmark import Benchmark

    original = Benchmark.main_loop

    def main_loop(self, *args, **kwargs):
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        out = original(self, *args, **kwargs)
        fps, median_ms, _, _, _, duration, iterations = out
        print("BENCHMARK_APP " + json.dumps({"fps": fps, "median_ms": median_ms, "iterations": iterations,
                                             "seconds": duration, "cpu_seconds": cpu_seconds() - cpu0,
                                             "loop_wall_seconds": time.perf_counter() - t0}), flush=True)
        return out

    Benchmark.main_loop = main_loop
    sys.argv = ["benchmark_app", *argv]
    ba_main.main()


def ort_reference_single(path: Path, x, seconds: float) -> dict:
    """ONNX Runtime as its docs configure it by default, session.run timed call by call."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    for _ in range(5):
        session.run(None, feed)
    samples, cpu0, t0 = [], cpu_seconds(), time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(samples) < 10:
        t = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - t) * 1000)
    return {"median_ms": statistics.median(samples), "per_cpu_s": len(samples) * x.shape[0] / (cpu_seconds() - cpu0)}


def ort_reference_offline(path: Path, x, seconds: float) -> dict:
    """One session, ``Run`` from one thread per core, one intra-op thread each, spinning off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    k = available_cores()
    counts = [0] * k
    session.run(None, feed)
    deadline = [0.0]
    barrier = threading.Barrier(k + 1, action=lambda: deadline.__setitem__(0, time.perf_counter() + seconds))

    def worker(i):
        session.run(None, feed)
        barrier.wait()
        while True:
            session.run(None, feed)
            counts[i] += 1
            if time.perf_counter() >= deadline[0]:
                break

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    barrier.wait()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {"samples_per_s": sum(counts) * x.shape[0] / wall, "per_cpu_s": sum(counts) * x.shape[0] / cpu,
            "requests": k}


def fidelity(name: str, batch: int, ctx: Context, seconds: float, rounds: int, backends: set[str]) -> list[dict]:
    """perfkit beside benchmark_app (OpenVINO) and ORT's documented settings, alternating, medians."""
    spec = resolve(name, weights="random")
    x1, xb = spec.example_input(1), spec.example_input(batch)
    timing = TimingConfig(warmup=5, warmup_seconds=1.0, iterations=10, min_seconds=seconds)
    offline = OfflineConfig(seconds=seconds, max_requests=4)
    pairs: dict[tuple, dict[str, list]] = {}

    def add(key, side, value, per_cpu):
        entry = pairs.setdefault(key, {"perfkit": [], "reference": [], "perfkit_cpu": [], "reference_cpu": []})
        entry[side].append(value)
        entry[side + "_cpu"].append(per_cpu)

    for r in range(rounds):
        console.print(f"[dim]fidelity {name}: round {r + 1}/{rounds}[/]")
        if "openvino" in backends:
            xml = prepare(spec, "openvino", ctx).path
            ba = benchmark_app(xml, "latency", 1, spec.input_size, seconds)
            add(("openvino", "SingleStream b1 p50 ms"), "reference", ba["median_ms"], ba["iterations"] / ba["cpu_seconds"])
            _perfkit_pair(spec, "openvino", ctx, x1, xb, timing, offline, add)
            ba = benchmark_app(xml, "throughput", batch, spec.input_size, seconds)
            add(("openvino", f"Offline b{batch} samples/s"), "reference", ba["fps"],
                ba["iterations"] * batch / ba["cpu_seconds"])
        if "onnx" in backends:
            path = prepare(spec, "onnx", ctx).path
            ref = ort_reference_single(path, x1, seconds)
            add(("onnx", "SingleStream b1 p50 ms"), "reference", ref["median_ms"], ref["per_cpu_s"])
            _perfkit_pair(spec, "onnx", ctx, x1, xb, timing, offline, add)
            ref = ort_reference_offline(path, xb, seconds)
            add(("onnx", f"Offline b{batch} samples/s"), "reference", ref["samples_per_s"], ref["per_cpu_s"])
    return [_fidelity_row(name, rt, metric, v) for (rt, metric), v in pairs.items()]


def _perfkit_pair(spec, runtime, ctx, x1, xb, timing, offline, add) -> None:
    """perfkit's SingleStream b1 median and Offline best, as `perfkit profile` measures them."""
    with warnings.catch_warnings(), open_runner(spec, runtime, ctx) as runner:
        warnings.simplefilter("ignore", NoisyTimingWarning)
        cpu0 = cpu_seconds()
        t = time_runner(runner, x1, timing)
        per_cpu = (t.compute.iterations + t.compute.warmup_iterations) / (cpu_seconds() - cpu0)  # warm-up calls too
        add((runtime, "SingleStream b1 p50 ms"), "perfkit", t.compute.median_ms, per_cpu)
        from perfkit.results import Where

        result = measure(Point(spec, runner, Where.of(spec, runtime, "fp32", xb.shape[0], "cpu"), ctx, offline))
        add((runtime, f"Offline b{xb.shape[0]} samples/s"), "perfkit", result.best.samples_per_s,
            result.best.samples_per_cpu_s)


def _fidelity_row(model: str, runtime: str, metric: str, v: dict) -> dict:
    p, ref = statistics.median(v["perfkit"]), statistics.median(v["reference"])
    pc, rc = statistics.median(v["perfkit_cpu"]), statistics.median(v["reference_cpu"])
    lower_better = metric.endswith("ms")
    ratio = ref / p if lower_better else p / ref  # > 1: perfkit's number is the better one
    return {"model": model, "runtime": runtime, "metric": metric, "perfkit": p, "reference": ref,
            "perfkit_runs": v["perfkit"], "reference_runs": v["reference"], "ratio": ratio,
            "per_cpu_ratio": pc / rc if rc else None, "within_target": abs(ratio - 1) <= TARGET,
            "reference_tool": "benchmark_app" if runtime == "openvino" else "ONNX Runtime documented settings"}


# -- output -----------------------------------------------------------------------------------------------

def print_tables(rows: list[dict], fid: list[dict], names: list[str], batch: int, errors: dict) -> None:
    def cell(scenario, fmt):
        return lambda rt: (lambda r: "—" if rt not in r[scenario] else
                           f"{fmt(r[scenario][rt]['value'])} ({r[scenario][rt]['vs_eager'] or 0:.2f}× e, "
                           f"{r[scenario][rt]['vs_best']:.2f}× best)")

    single = cell("singlestream_b1", lambda v: f"{v:.2f} ms")
    print_table("SingleStream: p50 latency at batch 1 (× eager, × best: > 1 is faster)",
                [Column("model", "model", justify="left"), *[Column(n, single(n), str) for n in names]], rows)
    offline = cell("offline", lambda v: f"{v:.1f}/s")
    print_table(f"Offline: best samples/s at batch {batch} with K requests in flight (× eager, × best)",
                [Column("model", "model", justify="left"), *[Column(n, offline(n), str) for n in names],
                 Column("K", lambda r: " ".join(f"{rt}:{k}" for rt, k in r["offline_k"].items()), str)], rows)
    if fid:
        print_table(f"Fidelity: perfkit vs the library's own tool, alternating (target within {TARGET:.0%})", [
            Column("model", "model", justify="left"), Column("runtime", "runtime", justify="left"),
            Column("metric", "metric", justify="left"), Column("perfkit", "perfkit", fmt_float(2)),
            Column("reference", "reference", fmt_float(2)), Column("reference tool", "reference_tool", justify="left"),
            Column("perfkit ÷ ref (better = >1)", "ratio", fmt_float(3)),
            Column("per CPU-s ratio", "per_cpu_ratio", fmt_float(3)),
            Column("within 5%", lambda r: "yes" if r["within_target"] else "NO", str),
        ], fid)
    for rt, why in errors.items():
        console.print(f"[yellow]skipped or failed: {rt}: {why}[/]")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--benchmark-app-child"]:
        _benchmark_app_child(argv[1:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("-f", "--runtimes", default=None, help="default: every runtime available on this CPU")
    ap.add_argument("--batch", type=int, default=8, help="the Offline scenario's batch")
    ap.add_argument("--seconds", type=float, default=2.0, help="SingleStream measuring time per point")
    ap.add_argument("--offline-seconds", type=float, default=2.0, help="Offline window per K")
    ap.add_argument("--offline-max-requests", type=int, default=4)
    ap.add_argument("--fidelity-models", default="resnet18", help="comma list, or none")
    ap.add_argument("--rounds", type=int, default=3, help="alternating fidelity rounds")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--artifacts", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    backends = (parse_backends(args.runtimes) if args.runtimes else
                [b for b in all_backends() if b.unavailable("cpu") is None])
    names = [b.name for b in backends]
    ctx = Context(device="cpu", artifacts=args.artifacts or Path(tempfile.gettempdir()) / "perfkit-bench-artifacts",
                  threads=args.threads)
    timing = TimingConfig(warmup=5, warmup_seconds=1.0, iterations=20, min_seconds=args.seconds)
    offline = OfflineConfig(seconds=args.offline_seconds, max_requests=args.offline_max_requests)
    rows, raw, errors, started = [], [], {}, time.perf_counter()
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        console.print(f"[dim]{name} ...[/]")
        result = compare_model(name, backends, args.batch, ctx, timing, offline)
        raw.append(result)
        rows.append(summarise(result, args.batch))
        errors.update(result["errors"])
    fid = []
    for name in [m.strip() for m in args.fidelity_models.split(",") if m.strip() and m.strip() != "none"]:
        fid += fidelity(name, args.batch, ctx, args.offline_seconds, args.rounds, set(names))
    env = fingerprint()
    if args.json:
        print(json.dumps({"rows": rows, "raw": raw, "fidelity": fid, "errors": errors, "env": env,
                          "seconds": time.perf_counter() - started, "load_average": os.getloadavg()}, indent=2))
        return 0
    print_tables(rows, fid, names, args.batch, errors)
    console.print(f"{env['cpu_model']} · {available_cores()} cores · torch {env['libraries'].get('torch')} · "
                  f"load average now {os.getloadavg()[0]:.1f} · {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
