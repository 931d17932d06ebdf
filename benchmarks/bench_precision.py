"""Precision trade on this CPU: latency per runtime × precision, and int8's agreement with fp32 on real weights.

Models: resnet18 and mobilenet_v2 (pretrained weights when cached, else random: latency only) and
EfficientNet-Lite1 with real ImageNet weights (``benchmarks/real_weights.py``, offline). Each model
is exported through perfkit (int8: ONNX Runtime QDQ and AOTInductor PT2E, calibrated on
augmented crops of scikit-image photos for Lite1, on perfkit's seeded synthetic set otherwise), then
every runtime × precision is timed at each batch *interleaved*: one call of each per round, so a
shared machine's load hits all of them alike, and each speed-up is the median of per-round ratios
against the same runtime's fp32 (more stable than a ratio of medians under load).

Targets (ratios in one run, resnet18, ONNX Runtime): int8 ≥ 2.0× fp32 at batch 1 and ≥ 1.8× at
batch 8. A missed target prints where ONNX Runtime spends its time (per-op profile of fp32 and int8).
For the real-weights model: top-1 agreement of each int8 runtime with eager fp32 on the bundled
photos (center crops) and on held-out augmented crops; and the expected classes of chelsea, coffee
and rocket.

    PYTHONPATH=. python benchmarks/bench_precision.py [--models resnet18,mobilenet_v2,lite1] [--batch 1,8]
        [-f eager,onnx,aoti] [--precision fp32,int8] [--threads 1] [--rounds 30] [--json] [--artifacts DIR]

Runs take minutes (exports, AOTInductor compiles); artifacts are cached between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_weights as RW  # noqa: E402  (a benchmark helper beside this script)

from perfkit.backends import at_precision, get, open_runner  # noqa: E402
from perfkit.context import Context  # noqa: E402
from perfkit.data.calibration import CalibrationSet, Source  # noqa: E402
from perfkit.env import cpu_flags, fingerprint  # noqa: E402
from perfkit.vocab import BatchRange, parse_batches, parse_precisions  # noqa: E402
from perfkit.zoo.sources import resolve  # noqa: E402

TARGETS = {("resnet18", 1): 2.0, ("resnet18", 8): 1.8}  # ORT int8 speed-up over ORT fp32
AGREEMENT_TARGET = 0.95
WORK = Path(".perfkit-bench")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,mobilenet_v2,lite1", help="resnet18, mobilenet_v2, lite1, any zoo name")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("-f", "--runtimes", default="eager,onnx,aoti")
    ap.add_argument("--precision", default="fp32,int8")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per runtime (1: stable on a shared machine)")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (one call of each per round)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calib-samples", type=int, default=32, help="synthetic calibration images for random weights")
    ap.add_argument("--artifacts", type=Path, default=WORK / "artifacts")
    ap.add_argument("--profile", action="store_true", help="always print ONNX Runtime's per-op profile")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    batches, precisions = parse_batches(a.batch), parse_precisions(a.precision)
    env = {"cpu_model": fingerprint()["cpu_model"], "cpu_flags": cpu_flags(), "threads": a.threads,
           "load_average": os.getloadavg(), "libraries": fingerprint()["libraries"]}
    say(a, f"CPU: {env['cpu_model']}; flags: {', '.join(env['cpu_flags'] or [])}; threads {a.threads}; "
           f"load average {', '.join(f'{x:.1f}' for x in env['load_average'])}")
    out = {"env": env, "latency": [], "agreement": [], "targets": [], "profiles": []}
    for name in a.models.split(","):
        spec, calibration = model(name.strip(), a)
        ctx = Context(artifacts=a.artifacts, threads=a.threads, options={"calibration": calibration})
        say(a, f"{spec.label}: {calibration.describe()}")
        runners = open_all(spec, a.runtimes, precisions, ctx, a)
        try:
            rows = time_interleaved(spec, runners, batches, a.rounds, a.warmup)
            out["latency"] += rows
            if not spec.random_weights:
                out["agreement"] += agreement(spec, runners)
        finally:
            for r in runners.values():
                r.__exit__(None, None, None)
        for (model_name, batch), target in TARGETS.items():
            row = next((r for r in rows if (r["model"], r["runtime"], r["precision"], r["batch"]) ==
                        (model_name, "onnx", "int8", batch) and spec.name == model_name), None)
            if row is None:
                continue
            met = row["speedup_vs_fp32"] >= target
            out["targets"].append({"what": f"{model_name} ORT int8 vs fp32, batch {batch}", "target": target,
                                   "measured": row["speedup_vs_fp32"], "met": met})
            if not met or a.profile:
                out["profiles"].append(ort_profile(spec, ctx, batch, a.threads))
    report(a, out)
    return 0


def say(a, text: str) -> None:
    print(text, file=sys.stderr if a.json else sys.stdout, flush=True)


def model(name: str, a):
    """The spec and the int8 calibration set of one benchmark model."""
    if name in ("lite1", RW.LITE1):
        weights = RW.convert_lite1(WORK / "efficientnet_lite1.pt")
        crops = WORK / "lite1-calibration"
        if not crops.is_dir():
            RW.write_calibration_crops(crops, per_photo=6, seed=0)
        return resolve(RW.LITE1, weights=str(weights)), CalibrationSet(Source.IMAGES, crops, samples=60)
    return resolve(name, weights="auto"), CalibrationSet.synthetic(a.calib_samples)


def open_all(spec, runtimes: str, precisions, ctx, a) -> dict:
    """Every runtime × precision it runs here, entered (exported first when not cached)."""
    runners = {}
    brange = BatchRange(1, 8, 64)
    for p in precisions:
        for backend in at_precision(runtimes.split(","), p, ctx.device):
            if backend.unavailable(ctx.device):
                say(a, f"  {backend.name} {p}: skipped ({backend.unavailable(ctx.device)})")
                continue
            start = time.perf_counter()
            try:
                runner = open_runner(spec, backend, ctx, precision=p, batch=brange)
                runner.__enter__()
            except Exception as exc:  # a benchmark reports what could not run and goes on
                say(a, f"  {backend.name} {p}: FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                continue
            runners[(backend.name, str(p))] = runner
            say(a, f"  {backend.name} {p}: ready in {time.perf_counter() - start:.1f} s")
    return runners


def time_interleaved(spec, runners: dict, batches, rounds: int, warmup: int) -> list[dict]:
    rows = []
    for b in batches:
        x = spec.example_input(b, seed=1)
        for r in runners.values():
            for _ in range(warmup):
                r.infer(x)
        samples = {k: [] for k in runners}
        for _ in range(rounds):
            for k, r in runners.items():
                start = time.perf_counter()
                r.infer(x)
                r.synchronize()
                samples[k].append((time.perf_counter() - start) * 1e3)
        for (runtime, precision), ts in samples.items():
            base = samples.get((runtime, "fp32"))
            ratio = statistics.median(p / q for p, q in zip(base, ts)) if base and precision != "fp32" else None
            rows.append({"model": spec.name, "weights": "real" if not spec.random_weights else "random",
                         "runtime": runtime, "precision": precision, "batch": b,
                         "median_ms": statistics.median(ts), "min_ms": min(ts), "speedup_vs_fp32": ratio})
    return rows


def agreement(spec, runners: dict) -> list[dict]:
    """Top-1 of every runtime × precision against eager fp32: photos' center crops, held-out augmented crops."""
    from perfkit.data.images import image_files, load_images

    held_out = WORK / "lite1-heldout"
    if not held_out.is_dir():
        RW.write_calibration_crops(held_out, per_photo=4, seed=1000)
    sets = {"photos": torch.stack([spec.preprocess(RW.photo(n)) for n in (*RW.RGB_PHOTOS, *RW.GRAY_PHOTOS)]),
            "held-out crops": load_images(image_files(held_out), spec.preprocess)}
    names = [*RW.RGB_PHOTOS, *RW.GRAY_PHOTOS]
    reference = runners[("eager", "fp32")]
    rows = []
    for what, x in sets.items():
        ref = torch.cat([reference.infer(c) for c in x.split(8)])
        for (runtime, precision), r in runners.items():
            if (runtime, precision) == ("eager", "fp32"):
                continue
            out = torch.cat([r.infer(c) for c in x.split(8)])
            agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
            row = {"model": spec.name, "runtime": runtime, "precision": precision, "set": what, "images": len(x),
                   "top1_agreement": agree, "fp32_top1_in_top5": (out.topk(5, 1).indices == ref.argmax(1, keepdim=True))
                   .any(1).float().mean().item(), "max_abs_logit_diff": (out - ref).abs().max().item()}
            if what == "photos":
                top1 = dict(zip(names, out.argmax(1).tolist()))
                row["expected_classes"] = {n: (top1[n], top1[n] in RW.EXPECTED[n]) for n in RW.EXPECTED}
            rows.append(row)
    return rows


def ort_profile(spec, ctx, batch: int, threads: int) -> dict:
    """Where ONNX Runtime spends its time, by op type, fp32 vs int8 (ms per run and share)."""
    import tempfile
    from collections import defaultdict

    import onnxruntime as ort

    out = {"model": spec.name, "batch": batch}
    x = spec.example_input(batch, seed=1).numpy()
    for p in ("fp32", "int8"):
        runner = open_runner(spec, get("onnx"), ctx, precision=p, batch=BatchRange(1, 8, 64))
        with tempfile.TemporaryDirectory() as tmp:
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.enable_profiling, options.profile_file_prefix = True, f"{tmp}/prof"
            session = ort.InferenceSession(str(runner.artifact.path), options, providers=["CPUExecutionProvider"])
            runs = 10
            for _ in range(runs):
                session.run(None, {"input": x})
            events = json.loads(Path(session.end_profiling()).read_text())
        per_op = defaultdict(float)
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / runs
        total = sum(per_op.values())
        out[p] = {"kernel_ms": total, "ops": {k: {"ms": v, "share": v / total}
                                              for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])[:6]}}
    return out


def report(a, out: dict) -> None:
    if a.json:
        print(json.dumps(out, indent=2, default=str))
        return
    from perfkit.report.console import Column, fmt_float, fmt_ms, print_table

    speed = lambda v: "—" if v is None else f"{v:.2f}×"  # noqa: E731
    print_table("latency per runtime × precision (interleaved rounds)", [
        Column("model", "model", justify="left"), Column("weights", "weights", justify="left"),
        Column("runtime", "runtime", justify="left"), Column("prec", "precision", justify="left"),
        Column("batch", "batch"), Column("median", "median_ms", fmt_ms), Column("min", "min_ms", fmt_ms),
        Column("× fp32", "speedup_vs_fp32", speed),
    ], out["latency"], caption="× fp32: median of per-round ratios against the same runtime's fp32")
    if out["agreement"]:
        print_table("real weights: int8 (and other precisions) against eager fp32", [
            Column("model", "model", justify="left"), Column("runtime", "runtime", justify="left"),
            Column("prec", "precision", justify="left"), Column("set", "set", justify="left"),
            Column("images", "images"), Column("top-1 agree", "top1_agreement", fmt_float(3)),
            Column("fp32 top-1 in top-5", "fp32_top1_in_top5", fmt_float(3)),
            Column("max |Δlogit|", "max_abs_logit_diff", fmt_float(3)),
            Column("chelsea/coffee/rocket", lambda r: " ".join(f"{c}{'' if ok else '✗'}" for c, ok in
                                                              (r.get("expected_classes") or {}).values()) or "—",
                   justify="left"),
        ], out["agreement"], caption=f"target: top-1 agreement ≥ {AGREEMENT_TARGET:.0%}")
    for t in out["targets"]:
        print(f"target {t['what']}: ≥ {t['target']}× — measured {t['measured']:.2f}× — "
              f"{'met' if t['met'] else 'MISSED'}")
    for prof in out["profiles"]:
        for p in ("fp32", "int8"):
            ops = ", ".join(f"{k} {v['ms']:.1f} ms ({100 * v['share']:.0f}%)" for k, v in prof[p]["ops"].items())
            print(f"ONNX Runtime profile {prof['model']} batch {prof['batch']} {p}: kernels {prof[p]['kernel_ms']:.1f} "
                  f"ms/run — {ops}")
    flags = out["env"]["cpu_flags"] or []
    if not any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8")):
        print("note: this CPU has no VNNI/AMX int8 instructions: MLAS's AVX2 u8×s8 kernels do about twice the "
              "multiply-adds per instruction of fp32 FMA, so ~2× is the ceiling of int8 convolutions here")


if __name__ == "__main__":
    sys.exit(main())
