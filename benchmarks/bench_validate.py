"""Harness speed: one `perfkit validate` pass over two runtimes vs two plain torchvision loops.

The baseline is what one would write by hand: for each runtime, a torchvision ``ImageFolder`` with
the weights' ``transforms()`` and a ``DataLoader``, decoding every JPEG again. perfkit decodes and
preprocesses each batch once and feeds both runtimes. Both sides use the same runners (so the
inference cost is the same), the same batch size and the same number of workers, on the same
generated dataset (class folders, ImageNet-sized JPEGs); the counts must be identical.

    python benchmarks/bench_validate.py                       # eager + eager channels_last
    python benchmarks/bench_validate.py --second onnx         # once the ONNX runner is wired
    python benchmarks/bench_validate.py --cache               # + a second perfkit pass from the tensor cache

Target: perfkit time ≤ 0.6 × baseline time. Prints both times and the ratio (JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfkit.accuracy.harness import evaluate, runner_batch  # noqa: E402
from perfkit.data.imagenet import open_imagenet, synset_index  # noqa: E402
from perfkit.data.synthetic import make_imagenet_folder  # noqa: E402
from perfkit.runtime import open_runner  # noqa: E402
from perfkit.zoo.sources import resolve  # noqa: E402


def make_runners(spec, second: str, device: str, batch: int) -> dict:
    kw = dict(device=device, batch=runner_batch(batch, 1))
    if second == "eager-cl":
        return {"eager": open_runner(spec, "eager", **kw), "eager-cl": open_runner(spec, "eager", channels_last=True, **kw)}
    return {"eager": open_runner(spec, "eager", **kw), second: open_runner(spec, second, **kw)}


def baseline(spec, root: Path, runners: dict, batch: int, workers: int) -> tuple[float, dict]:
    """Two hand-written loops, one per runtime: ImageFolder + weights.transforms() + DataLoader."""
    import torchvision

    transform = torchvision.models.get_weight(spec.reference["weights"]).transforms()
    index = synset_index()
    out = {}
    started = time.perf_counter()
    for label, runner in runners.items():
        ds = torchvision.datasets.ImageFolder(root, transform=transform)
        to_imagenet = torch.tensor([index[c] for c in ds.classes])
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers,
                                             pin_memory=runner.device.type == "cuda")
        top1 = top5 = n = 0
        with runner:
            for x, y in loader:
                y = to_imagenet[y].to(runner.device)
                pred = runner.infer(x).topk(5, dim=1).indices
                top1 += int((pred[:, 0] == y).sum())
                top5 += int((pred == y[:, None]).any(dim=1).sum())
                n += len(y)
        out[label] = (n, top1, top5)
    return time.perf_counter() - started, out


def perfkit_pass(spec, root: Path, runners: dict, batch: int, workers: int, cache: Path | None) -> tuple[float, dict, int]:
    started = time.perf_counter()
    data = open_imagenet(root)
    result = evaluate(spec, data, runners, batch_size=batch, workers=workers, cache_dir=cache, progress=False)
    seconds = time.perf_counter() - started
    got = {label: (r.counts.images, r.counts.top1_correct, r.counts.top5_correct) for label, r in result.runtimes.items()}
    return seconds, got, result.decoded


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilenet_v3_small")
    p.add_argument("--weights", default="random")
    p.add_argument("--second", default="eager-cl", help="second runtime: eager-cl (eager, channels_last), torchscript, onnx, aoti")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--size", default="500x375", help="JPEG width x height (ImageNet-val averages about 500x400)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", action="store_true", help="also time a perfkit pass that reads the tensor cache")
    p.add_argument("--data", type=Path, default=None, help="reuse/create the dataset here (default: a temp folder)")
    p.add_argument("--repeat", type=int, default=2, help="timed rounds (best of each side is reported)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    spec = resolve(args.model, weights=args.weights)
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "val"
        if not root.exists():
            classes = [int(c) for c in torch.linspace(0, 999, args.classes).round().tolist()]
            make_imagenet_folder(root, classes, args.per_class, size=(w, h))
        runners = make_runners(spec, args.second, args.device, args.batch)
        # Warm-up outside the timings: page cache, model build code paths, worker start-up.
        perfkit_pass(spec, root, make_runners(spec, args.second, args.device, args.batch), args.batch, args.workers, None)
        # Alternate the two and keep each one's best time: other load on the machine hits both alike.
        t_base = t_kit = float("inf")
        for _ in range(args.repeat):
            t, base = baseline(spec, root, runners, args.batch, args.workers)
            t_base = min(t_base, t)
            t, kit, decoded = perfkit_pass(spec, root, runners, args.batch, args.workers, None)
            t_kit = min(t_kit, t)
        report = {
            "model": spec.label, "runtimes": list(runners), "images": kit["eager"][0], "size": args.size,
            "batch": args.batch, "workers": args.workers, "repeat": args.repeat, "device": args.device, "torch_threads": torch.get_num_threads(),
            "baseline_seconds": t_base, "perfkit_seconds": t_kit, "ratio": t_kit / t_base,
            "counts_identical": kit == base, "counts": kit, "decoded_images": decoded,
        }
        if args.cache:
            cache = Path(tmp) / "cache"
            perfkit_pass(spec, root, runners, args.batch, args.workers, cache)  # fills the cache
            t_cached = float("inf")
            for _ in range(args.repeat):
                t, cached, decoded_cached = perfkit_pass(spec, root, runners, args.batch, args.workers, cache)
                t_cached = min(t_cached, t)
            report.update(perfkit_cached_seconds=t_cached, ratio_cached=t_cached / t_base,
                          counts_identical_cached=cached == base, decoded_images_cached=decoded_cached)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['images']} images of {args.size}, {spec.label}, runtimes {', '.join(runners)}, "
              f"batch {args.batch}, {args.workers} workers, {args.device}")
        print(f"  baseline (2 × ImageFolder + DataLoader): {t_base:8.2f} s")
        print(f"  perfkit validate (one pass):             {t_kit:8.2f} s   ratio {report['ratio']:.3f}  (target ≤ 0.6)")
        if args.cache:
            print(f"  perfkit validate (from tensor cache):    {report['perfkit_cached_seconds']:8.2f} s   "
                  f"ratio {report['ratio_cached']:.3f}")
        print(f"  counts identical: {report['counts_identical']}  {kit}")
    return 0 if report["counts_identical"] and report.get("counts_identical_cached", True) else 1


if __name__ == "__main__":
    sys.exit(main())
