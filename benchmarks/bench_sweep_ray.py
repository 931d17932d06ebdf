"""What running a sweep on Ray costs: the same sweep (default: lenet5,resnet18 × eager,onnx × batch 1,8,
no memory) sequential in this process against on a local Ray instance with one worker, alternating
A B over ``--rounds`` in one session; each sweep writes to a fresh SQLite store, the artifacts are
exported once before (both then find them in the cache, as every cell after the first does).

Ray's start-up is reported separately and not in the ratio: ``ray.init`` of a local instance plus a
first task that imports perfkit's measuring code in the worker (a new worker process imports torch
and ONNX Runtime once; a long sweep pays it once). The ratio is the sweep's wall time on Ray (task
dispatch, the worker resolving each model, results pickled back to the driver, which records them)
over the same sweep in process; the first Ray round also pays the worker's one-time setup (it asks a
fresh interpreter for torch's thread count: see ``perfkit.sweeps.ray``). The ratio including
start-up is printed too. The medians of the rounds are compared: on a shared machine one round can
be twice another.

Target (issue 23): ≤ 1.15.

    PYTHONPATH=. python benchmarks/bench_sweep_ray.py [--models lenet5,resnet18] [--rounds 3] [--seconds 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

TARGET = 1.15


def _warm() -> bool:
    """In a worker: import what a cell measures with (torch, ONNX Runtime, the profiler)."""
    import onnxruntime  # noqa: F401

    import perfkit.profiler  # noqa: F401

    return True


def start_ray() -> float:
    """Seconds to start a one-worker local Ray instance and warm its worker."""
    import ray

    from perfkit.sweeps import ray as on_ray

    t0 = time.perf_counter()
    on_ray.connect("local", 1)
    ray.get(ray.remote(_warm).options(num_cpus=1, resources={on_ray.NODE_RESOURCE: 1}).remote())
    return time.perf_counter() - t0


def timed_sweep(folder: Path, keywords: dict, ray: str | None) -> float:
    import perfkit

    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        t0 = time.perf_counter()
        done = perfkit.sweep(store=Path(scratch) / "store.db", ray=ray, **keywords)
        seconds = time.perf_counter() - t0
    if done.failed or len(done.measured) != len(done.cells):
        raise SystemExit(f"the sweep did not measure every cell ({len(done.measured)} of {len(done.cells)}, "
                         f"failed: {done.failed})")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lenet5,resnet18")
    parser.add_argument("--runtimes", default="eager,onnx")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="SingleStream --min-seconds per cell")
    args = parser.parse_args()

    import perfkit
    import ray

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        folder = Path(tmp)
        keywords = dict(models=args.models, runtimes=args.runtimes, batch=args.batch, memory=False,
                        weights="random", min_seconds=args.seconds, artifacts=folder / "artifacts")
        for model in args.models.split(","):
            perfkit.export(model, runtimes="onnx", artifacts=folder / "artifacts", weights="random")
        startup = start_ray()
        try:
            sequential, on_ray = [], []
            for _ in range(args.rounds):
                sequential.append(timed_sweep(folder, keywords, None))
                on_ray.append(timed_sweep(folder, keywords, "local"))
        finally:
            ray.shutdown()
    seq, remote = statistics.median(sequential), statistics.median(on_ray)
    print(f"sweep {args.models} × {args.runtimes} × batch {args.batch}, no memory, {args.seconds} s per cell; "
          f"{args.rounds} alternating rounds")
    print(f"  sequential in process: {', '.join(f'{s:.1f}' for s in sequential)} s (median {seq:.1f} s)")
    print(f"  local Ray, 1 worker:   {', '.join(f'{s:.1f}' for s in on_ray)} s (median {remote:.1f} s)")
    print(f"  Ray start-up (init + the worker's first imports), not in the ratio: {startup:.1f} s")
    verdict = "met" if remote / seq <= TARGET else "MISSED"
    print(f"  ratio Ray / sequential: {remote / seq:.3f} (target <= {TARGET}: {verdict}); "
          f"with start-up once: {(remote + startup) / seq:.3f}")


if __name__ == "__main__":
    main()
