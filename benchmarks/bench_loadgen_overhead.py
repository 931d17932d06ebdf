"""The Server SUT's own cost: the largest VALID Server QPS of a no-op runner served through perfkit's
SUT (``perfkit.profiler.loadgen.DynamicBatcher``: a queue, a worker thread, batching, the runner's
call, ``QuerySamplesComplete``) against a bare no-op SUT (a worker thread completing each query as
it is issued), found by the same search in the same process, alternating A B over ``--rounds``.

Target (issue 20): perfkit's ≥ 0.6 × the bare SUT's largest VALID QPS.

    PYTHONPATH=. python benchmarks/bench_loadgen_overhead.py [--bound-ms 50] [--seconds 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import threading
import time
import types
from pathlib import Path

import torch

from perfkit.profiler import loadgen
from perfkit.profiler.scenarios.server import ServerConfig, search

TARGET = 0.6


class NoOpRunner:
    """What the SUT needs of a runner, doing nothing."""

    batch = types.SimpleNamespace(min=1, max=64)

    def infer(self, x):
        return x

    def synchronize(self):
        pass


def bare_test(settings, log_dir: Path, qps: float) -> loadgen.Outcome:
    """LoadGen with the leanest Python SUT: issue_queries hands the queries to one worker thread, which
    completes them (the issue's measurement: Server VALID at 50,000 samples/s)."""
    import mlperf_loadgen as lg

    todo: queue.SimpleQueue = queue.SimpleQueue()

    def work():
        while (qs := todo.get()) is not None:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in qs])

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    sut = lg.ConstructSUT(todo.put, lambda: None)
    qsl = lg.ConstructQSL(64, 64, lambda s: None, lambda s: None)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    t0 = time.perf_counter()
    lg.StartTestWithLogSettings(sut, qsl, settings, log)
    seconds = time.perf_counter() - t0
    todo.put(None)
    worker.join()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    return loadgen.Outcome("Server", qps, loadgen.read_detail_log(log_dir / "mlperf_log_detail.txt"), str(log_dir),
                           seconds)


def largest_valid(kind: str, args, root: Path) -> tuple[float, list]:
    samples = [torch.zeros(3, 8, 8) for _ in range(64)]
    batching = loadgen.Batching(args.max_batch, args.timeout_ms, 1)

    def run(qps: float) -> loadgen.Outcome:
        settings = loadgen.settings_for("Server", target_qps=qps, latency_bound_ms=args.bound_ms,
                                        seconds=args.seconds, samples=64)
        folder = root / kind / f"qps-{qps:.0f}"
        if kind == "bare":
            return bare_test(settings, folder, qps)
        return loadgen.run_test(NoOpRunner(), samples, batching, settings, folder, qps)

    tried = search(run, args.start, ServerConfig(points=args.points, precision=0.05), meets=lambda o: o.valid)
    valid = [t.target_qps for t in tried if t.valid]
    return (max(valid) if valid else 0.0), tried


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bound-ms", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--start", type=float, default=5000.0)
    p.add_argument("--points", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=4, help="perfkit's SUT: largest batch formed")
    p.add_argument("--timeout-ms", type=float, default=2.0, help="perfkit's SUT: batching window")
    args = p.parse_args()
    why = loadgen.unavailable()
    if why:
        raise SystemExit(why)
    best = {"bare": [], "perfkit": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for kind in ("bare", "perfkit"):
                qps, tried = largest_valid(kind, args, Path(tmp) / f"round{r}")
                best[kind].append(qps)
                trail = "  ".join(f"{t.target_qps:.0f}{'V' if t.valid else '✗'}(p99 {t.p99_ms:.2f} ms)" for t in tried)
                print(f"round {r + 1} {kind:8s} largest VALID {qps:10.0f} QPS   tried: {trail}", flush=True)
    bare, ours = max(best["bare"]), max(best["perfkit"])
    ratio = ours / bare if bare else float("nan")
    print(f"\nlargest VALID Server QPS (p99 ≤ {args.bound_ms:g} ms, {args.seconds:g} s per target, best of "
          f"{args.rounds}): bare no-op SUT {bare:.0f}, perfkit's SUT over a no-op runner {ours:.0f} "
          f"(batches ≤ {args.max_batch}, {args.timeout_ms:g} ms window): {ratio:.2f}× — target ≥ {TARGET}× "
          f"{'MET' if ratio >= TARGET else 'NOT MET'}")


if __name__ == "__main__":
    main()
