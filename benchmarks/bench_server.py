"""resnet18 served under a latency bound on this CPU: the Server scenario beside SingleStream and Offline,
the SUT configuration that serves most, and LoadGen's SingleStream/Offline against perfkit's own loops.

1. Ranking (``--runtimes``, default onnx,openvino, at fp32 and int8): SingleStream p50 at batch 1, the
   Offline scenario at batch 8 (K searched), and the largest Server QPS with p99 ≤ ``--bound-ms``
   (perfkit's default SUT), each runtime's rank by each figure.
2. Configurations (ONNX Runtime fp32): workers × intra-op threads × largest batch × batching window,
   the largest Server QPS each serves within the bound.
3. Agreement (ONNX Runtime fp32, one entered runner): LoadGen's SingleStream p50 (a SUT of one worker,
   no batching) against perfkit's SingleStream median at batch 1, and LoadGen's Offline samples/s (one
   worker calling the runner at batch 8 back to back) against perfkit's SingleStream throughput at
   batch 8 (its Offline K = 1): the issue asks for 5 %.

Weights are random (speed does not depend on their values; int8 is calibrated on synthetic images).

    PYTHONPATH=. python benchmarks/bench_server.py [--bound-ms 50] [--runtimes onnx,openvino] [--skip 2,3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import perfkit
from perfkit.backends import open_runner
from perfkit.context import Context
from perfkit.profiler import loadgen
from perfkit.profiler.timing import TimingConfig, time_runner
from perfkit.vocab import BatchRange
from perfkit.zoo.sources import resolve

MODEL = "resnet18"


def _server(records) -> dict:
    return {(r.runtime, r.precision): r for r in records if r.kind == "server"}


def ranking(args, logs: Path) -> None:
    result = perfkit.profile(MODEL, runtimes=args.runtimes, precision="fp32,int8", batch="1,8",
                             scenario="offline,server", weights="random", memory=False,
                             latency_bound_ms=args.bound_ms, server_seconds=args.seconds, loadgen_logs=str(logs),
                             offline_seconds=2.0)
    recs = result.records()
    single = {(r.runtime, r.precision): r for r in recs if r.kind == "latency" and r.batch == 1 and r.status == "ok"}
    offline = {(r.runtime, r.precision): r for r in recs if r.kind == "throughput" and r.status == "ok"}
    server = _server(recs)
    keys = sorted(set(single) | set(server))
    figures = {k: (single[k].metrics["latency_median_ms"] if k in single else None,
                   offline[k].metrics["samples_per_s"] if k in offline else None,
                   server[k].metrics.get("qps") if k in server and server[k].status == "ok" else None) for k in keys}

    def rank(i: int, smaller_better: bool) -> dict:
        have = sorted((k for k in keys if figures[k][i] is not None), key=lambda k: figures[k][i],
                      reverse=not smaller_better)
        return {k: n + 1 for n, k in enumerate(have)}

    ranks = [rank(0, True), rank(1, False), rank(2, False)]
    print(f"\n1. {MODEL} on this CPU — SingleStream (batch 1), Offline (batch 8), Server (p99 ≤ {args.bound_ms:g} ms, "
          f"{args.seconds:g} s per target, default SUT)")
    print(f"{'runtime':10s} {'prec':5s} {'SS p50 ms':>10s} {'SS img/s':>9s} {'Offline/s':>10s} {'Server QPS':>11s} "
          f"{'p99 ms':>7s}  ranks SS/Off/Srv  LoadGen verdict")
    for k in keys:
        p50, off, qps = figures[k]
        m = server[k].metrics if k in server else {}
        cell = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
        print(f"{k[0]:10s} {k[1]:5s} {cell(p50, '10.2f')} {cell(p50 and 1000 / p50, '9.1f')} {cell(off, '10.1f')} "
              f"{cell(qps, '11.1f')} {cell(m.get('p99_ms'), '7.1f')}  "
              f"{'/'.join(str(r.get(k, '—')) for r in ranks):>16s}  "
              f"{m.get('verdict') or (server[k].error if k in server else '—')}")


CONFIGS = (  # workers, intra-op threads (None: the runtime's tuned default), largest batch, window ms
    (1, None, 1, 0.0), (1, None, 4, 0.0), (1, None, 8, 0.0), (1, None, 4, 2.0), (1, None, 8, 5.0), (1, 1, 1, 0.0),
    (2, 1, 1, 0.0), (2, 1, 4, 2.0),
)


def configurations(args, logs: Path) -> None:
    print(f"\n2. ONNX Runtime fp32: the Server SUT's configuration (p99 ≤ {args.bound_ms:g} ms)")
    print(f"{'workers':>7s} {'threads':>7s} {'max batch':>9s} {'window ms':>9s} {'QPS':>8s} {'p99 ms':>7s} "
          f"{'mean batch':>10s}  targets tried")
    for workers, threads, max_batch, window in CONFIGS:
        result = perfkit.profile(MODEL, runtimes="onnx", batch="1", scenario="server", weights="random", memory=False,
                                 latency_bound_ms=args.bound_ms, server_seconds=args.seconds, server_workers=workers,
                                 server_max_batch=max_batch, batch_timeout_ms=window, threads=threads,
                                 loadgen_logs=str(logs), iterations=20, min_seconds=1.0)
        (r,) = _server(result.records()).values()
        m = r.metrics
        tried = "  ".join(f"{t['target_qps']:.0f}{'✓' if t['met'] else '✗'}" for t in m.get("trials") or [])
        qps = "—" if r.status != "ok" else f"{m['qps']:8.1f}"
        print(f"{workers:7d} {threads or 'default':>7} {max_batch:9d} {window:9.1f} {qps:>8s} "
              f"{m.get('p99_ms') or 0:7.1f} {m.get('mean_batch') or 0:10.2f}  {tried or r.error}")


def agreement(args, logs: Path) -> None:
    spec = resolve(MODEL, weights="random")
    ctx = Context(device="cpu", artifacts=Path(tempfile.gettempdir()) / "perfkit-bench-artifacts")
    samples = list(spec.example_input(32).unbind(0))
    print("\n3. LoadGen's SingleStream and Offline against perfkit's own loops (ONNX Runtime fp32, one runner)")
    with open_runner(spec, "onnx", ctx, batch=BatchRange(1, 8)) as runner:
        for round_ in range(args.rounds):
            own1 = time_runner(runner, spec.example_input(1), TimingConfig(10, 1.0, 200, args.seconds)).compute
            s = loadgen.settings_for("SingleStream", seconds=args.seconds, min_queries=200, samples=32)
            s.single_stream_expected_latency_ns = int(own1.median_ms * 1e6)
            lg1 = loadgen.run_test(runner, samples, loadgen.Batching(1), s, logs / f"ss-{round_}")
            own8 = time_runner(runner, spec.example_input(8), TimingConfig(3, 1.0, 30, args.seconds)).compute
            o = loadgen.settings_for("Offline", target_qps=2 * 8000 / own8.median_ms, seconds=args.seconds, samples=32)
            lg8 = loadgen.run_test(runner, samples, loadgen.Batching(8, 0.0, 1), o, logs / f"off-{round_}")
            own_rate = 8 * 1000 / (sum(own8.samples_ms) / len(own8.samples_ms))
            print(f"round {round_ + 1}: SingleStream p50 perfkit {own1.median_ms:.3f} ms, LoadGen "
                  f"{lg1.p50_ms:.3f} ms ({lg1.p50_ms / own1.median_ms - 1:+.1%}); batch 8 back to back: perfkit "
                  f"{own_rate:.1f}/s, LoadGen Offline {lg8.completed_qps:.1f}/s ({lg8.completed_qps / own_rate - 1:+.1%}, "
                  f"mean batch {lg8.mean_batch:.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bound-ms", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=2.0, help="LoadGen's minimum duration per test")
    p.add_argument("--runtimes", default="onnx,openvino")
    p.add_argument("--rounds", type=int, default=2, help="rounds of part 3")
    p.add_argument("--skip", default="", help="comma-separated parts to skip (1, 2, 3)")
    args = p.parse_args()
    why = loadgen.unavailable()
    if why:
        raise SystemExit(why)
    skip = set(args.skip.split(","))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for part, fn in (("1", ranking), ("2", configurations), ("3", agreement)):
            if part not in skip:
                fn(args, Path(tmp) / part)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
