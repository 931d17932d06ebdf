"""Runtime comparison on the CPU: the default models at batch 1 and 8 in every CPU runtime.

Eager (torch.inference_mode), TorchScript (frozen), ONNX Runtime (all graph optimisations, one
intra-op thread per core), AOTInductor and the native C++ runner. A runtime that is not available
(not wired, export failed) is skipped with its reason. The headline: the best exported runtime
against eager for resnet18 at batch 1 (target ≥ 1.3×).

    PYTHONPATH=. python benchmarks/bench_runtimes.py [--models resnet18,googlenet] [--batch 1,8]
        [-f eager,torchscript,onnx,aoti,native] [--min-seconds 2] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

from perfkit.env import fingerprint
from perfkit.formats import Format, parse_list
from perfkit.profile.latency import sweep
from perfkit.profile.timing import NoisyTimingWarning, TimingConfig
from perfkit.report.console import Column, console, fmt_float, fmt_ms, print_table
from perfkit.zoo.registry import DEFAULT_MODELS, resolve

HEADLINE = ("resnet18", 1)
TARGET = 1.3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("-f", "--formats", default="eager,torchscript,onnx,aoti,native")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--warmup-seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--artifacts", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    formats = parse_list(args.formats, Format)
    batches = sorted({int(b) for b in args.batch.split(",")})
    config = TimingConfig(warmup=5, warmup_seconds=args.warmup_seconds, iterations=args.iterations,
                          min_seconds=args.min_seconds)
    results, skipped = [], {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        spec = resolve(name, "random")  # latency does not depend on the weights' values
        console.print(f"[dim]{name} ...[/]")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoisyTimingWarning)  # the CV column shows it
            points = sweep(spec, formats, batches, device="cpu", artifacts=args.artifacts, config=config,
                           threads=args.threads)
        for p in points:
            if p.ok:
                results.append({"model": name, "runtime": str(p.runtime), "batch": p.batch, "threads": p.threads,
                                "median_ms": p.timing.compute.median_ms, "p99_ms": p.timing.compute.p99_ms,
                                "cv": p.timing.compute.cv})
            else:
                skipped.setdefault(str(p.runtime), f"{type(p.error).__name__}: {p.error}".splitlines()[0][:160])

    table = {}
    for r in results:
        table.setdefault((r["model"], r["batch"]), {})[r["runtime"]] = r
    rows = []
    for (model, batch), by_rt in table.items():
        eager = by_rt.get("eager")
        exported = {rt: v for rt, v in by_rt.items() if rt != "eager"}
        best = min(exported.values(), key=lambda v: v["median_ms"]) if exported else None
        rows.append({"model": model, "batch": batch, **{rt: v["median_ms"] for rt, v in by_rt.items()},
                     "max_cv": max(v["cv"] for v in by_rt.values()),
                     "best": best["runtime"] if best else None,
                     "speedup": eager["median_ms"] / best["median_ms"] if eager and best else None})
    headline = next((r for r in rows if (r["model"], r["batch"]) == HEADLINE), None)
    env = fingerprint()
    if args.json:
        print(json.dumps({"results": results, "rows": rows, "skipped": skipped, "headline": headline,
                          "target_speedup": TARGET, "env": env, "threads": torch.get_num_threads()}, indent=2))
        return 0
    print_table("CPU latency by runtime (median per call; random weights)", [
        Column("model", "model", justify="left"), Column("batch", "batch"),
        *[Column(str(f), str(f), fmt_ms) for f in formats],
        Column("max CV", lambda r: r["max_cv"] * 100, lambda v: f"{v:.0f}%"),
        Column("best exported", "best", justify="left"), Column("× eager", "speedup", fmt_float(2)),
    ], rows, caption=f"{env['cpu_model']} · {env['cpu_count']} CPUs · {torch.get_num_threads()} threads · "
                     f"torch {env['libraries'].get('torch')}")
    for rt, why in skipped.items():
        console.print(f"[yellow]skipped or failed: {rt}: {why}[/]")
    if headline and headline["speedup"]:
        verdict = "meets" if headline["speedup"] >= TARGET else "misses"
        console.print(f"resnet18 batch 1: best exported runtime {headline['best']} is {headline['speedup']:.2f}× eager "
                      f"({verdict} the {TARGET}× target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
