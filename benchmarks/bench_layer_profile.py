"""Profiler overhead: the sum of the per-layer times each runtime's own profiler reports (``perfkit profile
--layers``) against the end-to-end median SingleStream measured just before it, per runtime, for resnet18
and mobilenet_v2 at fp32 and int8 (random weights; int8 calibrated on perfkit's synthetic images), with the
share of the profiled time on rows named by a module path.

A ratio above 1 is the profiler's own cost (torch.profiler's per-op records, ONNX Runtime's trace events)
or, where the layer pass ran while other processes used the CPU, contention; below 1, time the profiler
does not see (between nodes, the runtime's own work around them), or a median taken under contention. The
CPU other processes used while the median was timed is printed beside each line: only uncontended lines
measure the profiler.

    PYTHONPATH=. python benchmarks/bench_layer_profile.py [--models resnet18,mobilenet_v2] [--batch 1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import perfkit


def measure(model: str, runtimes: str, precisions: str, batch: int, store: Path) -> list[tuple]:
    """(layers record, the latency record of the same point) per runtime × precision."""
    done = perfkit.profile(model, runtimes=runtimes, precision=precisions, batch=str(batch), layers=True,
                           memory=False, weights="random", store=store, iterations=30, min_seconds=1.0)
    latency = {r.key[1:]: r for r in done.records() if r.kind == "latency"}
    return [(r, latency.get(r.key[1:])) for r in done.records() if r.kind == "layers"]


def line(r, latency) -> str:
    m = r.metrics
    what = f"{r.model:<13} {r.runtime:<9} {r.precision:<5} b{r.batch}"
    if r.status != "ok" or m.get("unavailable"):
        return f"{what}  no layer profile: {r.error or m['unavailable']}"
    ratio = m["total_ms"] / m["e2e_median_ms"] if m.get("e2e_median_ms") else float("nan")
    other = (latency.metrics.get("other_cpu_pct") if latency is not None else None)
    busy = "—" if other is None else f"{other:.0f} %"
    return (f"{what}  layers sum {m['total_ms']:8.3f} ms  end-to-end median {m['e2e_median_ms']:8.3f} ms  "
            f"sum/median {ratio:5.2f}  on module rows {100 * m['coverage']:5.1f} %  "
            f"other processes' CPU while timed {busy}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--runtimes", default="eager,onnx,openvino")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        lines = []
        for model in args.models.split(","):
            records = measure(model, args.runtimes, args.precisions, args.batch, Path(folder) / "store.db")
            lines += [line(r, latency) for r, latency in records]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
