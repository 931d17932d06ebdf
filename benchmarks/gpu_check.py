#!/usr/bin/env python3
"""One command for a GPU machine: every gpu/tensorrt-marked test, then ``perfkit run resnet50`` on
every GPU runtime available there, then TensorRT's layer profile of resnet18 (``perfkit profile -f
tensorrt --layers``: its coverage by module paths), and a table of what ran, what was skipped and why.

    python benchmarks/gpu_check.py                  # results in $OUT (if set) or ./gpu-check/
    python benchmarks/gpu_check.py --budget 420     # seconds for the whole check (default 480)

Made for a bare machine: the interpreter it is started with (no venv; perfkit is imported from
this checkout through PYTHONPATH, nothing is installed), no network, whatever is missing is a row
of the table rather than a crash. Every part runs in a process group of its own with a time limit
taken from what is left of the budget; a part that would start too late is listed as not started.
The table (gpu_check.md, gpu_check.json) is rewritten after every part, with each part's log beside
it, so a check cut short still leaves what it did.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "resnet50"
BATCHES = "1,32,256"
# fastest first: AOTInductor compiles for minutes, so it goes last
RUNTIMES = ("eager", "torchscript", "onnx", "tensorrt", "native", "aoti")

INVENTORY = r"""
import importlib.util, json, os, shutil, sys
out = {"python": sys.version.split()[0], "executable": sys.executable}
try:
    import torch
    out.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
               gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
               capability=[".".join(map(str, torch.cuda.get_device_capability(i))) for i in range(torch.cuda.device_count())],
               cudnn=torch.backends.cudnn.version() if torch.cuda.is_available() else None)
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
mods = ["pytest", "pytest_timeout", "torchvision", "onnx", "onnxscript", "onnxruntime", "tensorrt", "tensorrt_bindings",
        "pynvml", "rich", "jinja2", "plotly", "timm", "scipy", "numpy"]
out["modules"] = {m: importlib.util.find_spec(m) is not None for m in mods}
out["cmake"] = shutil.which("cmake")
out["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
try:
    import onnxruntime
    out["onnxruntime"] = [onnxruntime.__version__, onnxruntime.get_available_providers()]
except Exception as exc:
    out["onnxruntime"] = f"{type(exc).__name__}: {exc}"
try:
    from perfkit.backends import get
    out["backends"] = {}
    for name in %(runtimes)r:
        try:
            out["backends"][name] = get(name).unavailable(sys.argv[1])
        except Exception as exc:
            out["backends"][name] = f"{type(exc).__name__}: {exc}"
except Exception as exc:
    out["perfkit_error"] = f"{type(exc).__name__}: {exc}"
print("INVENTORY " + json.dumps(out))
""" % {"runtimes": RUNTIMES}


class Check:
    """The rows of the table, written out after every change."""

    def __init__(self, out: Path, budget: float):
        self.out, self.budget, self.start = out, budget, time.monotonic()
        self.rows: list[dict] = []
        self.inventory: dict = {}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def add(self, part: str, name: str, status: str, seconds: float | None = None, detail: str = "") -> None:
        self.rows.append({"part": part, "name": name, "status": status, "seconds": seconds, "detail": detail})
        self.write()

    def write(self) -> None:
        elapsed = time.monotonic() - self.start
        (self.out / "gpu_check.json").write_text(json.dumps(
            {"elapsed_s": round(elapsed, 1), "budget_s": self.budget, "inventory": self.inventory, "rows": self.rows},
            indent=1))
        lines = [f"# perfkit GPU check ({elapsed:.0f} s of {self.budget:.0f} s)", ""]
        inv = self.inventory
        if inv:
            lines += [f"- GPU: {', '.join(inv.get('gpus') or []) or 'none'} (sm {', '.join(inv.get('capability') or [])}); "
                      f"torch {inv.get('torch')} (CUDA {inv.get('torch_cuda')}, cuDNN {inv.get('cudnn')}); "
                      f"Python {inv.get('python')}",
                      f"- onnxruntime: {inv.get('onnxruntime')}; cmake: {inv.get('cmake') or 'none'}",
                      "- missing modules: " + (", ".join(m for m, ok in inv.get("modules", {}).items() if not ok) or "none"),
                      ""]
        lines += ["| part | what | status | s | detail |", "|---|---|---|---|---|"]
        for r in self.rows:
            secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
            detail = r["detail"].replace("|", "\\|").replace("\n", " ")[:300]
            lines.append(f"| {r['part']} | {r['name']} | {r['status']} | {secs} | {detail} |")
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        lines += ["", "totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
        (self.out / "gpu_check.md").write_text("\n".join(lines) + "\n")


def run(cmd: list[str], timeout: float, log: Path, env: dict, stdout: Path | None = None) -> tuple[int, float, str]:
    """Run ``cmd`` in a process group of its own, its output in ``log`` (stdout apart when given);
    on timeout the whole group (spawned measuring processes too) is killed and rc is 124."""
    t0 = time.monotonic()
    with open(log, "w") as err, open(stdout or os.devnull, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out if stdout else err, stderr=err,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = 124
    return rc, time.monotonic() - t0, log.read_text(errors="replace")


def tail(text: str, lines: int = 3) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def inventory(check: Check, env: dict, device: str) -> bool:
    rc, secs, text = run([sys.executable, "-c", INVENTORY, device], min(120, check.left()), check.out / "inventory.log", env)
    line = next((ln for ln in text.splitlines() if ln.startswith("INVENTORY ")), None)
    if line is None:
        check.add("setup", "inventory", "error", secs, tail(text))
        return False
    check.inventory = json.loads(line.removeprefix("INVENTORY "))
    inv = check.inventory
    ok = bool(inv.get("cuda_available")) or device == "cpu"
    check.add("setup", "inventory", "ok" if ok else "no GPU", secs,
              f"{', '.join(inv.get('gpus') or [])}" if ok else inv.get("torch_error", "torch sees no CUDA GPU"))
    return ok


def tests(check: Check, env: dict, limit: float) -> None:
    modules = check.inventory.get("modules", {})
    if not modules.get("pytest"):
        check.add("tests", "gpu/tensorrt-marked", "not run", None, "pytest is not installed in this Python")
        return
    xml = check.out / "gpu-tests.xml"
    # only the files holding marked tests: collecting the rest costs time, and a module that cannot
    # import here (a missing library) must not stop the others
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                   if re.search(r"mark\.(gpu|tensorrt)\b", p.read_text()))
    # -v: one line per finished test in the log, read back if the whole part is killed;
    # with pytest-timeout a hung test fails alone instead
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu or tensorrt", "-rA", "-v", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", f"--junitxml={xml}",
           *(["--timeout", str(int(limit / 2))] if modules.get("pytest_timeout") else []), *files]
    rc, secs, text = run(cmd, min(limit, check.left()), check.out / "gpu-tests.log", env)
    if rc == 124:
        check.add("tests", "pytest", "timed out", secs, f"killed after {secs:.0f} s; see gpu-tests.log")
    if not xml.is_file():
        finished = re.findall(r"^(tests/\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", text, re.M)
        for name, status in finished:
            check.add("tests", name.split("/")[-1].replace(".py", ""), status.lower() if status == "PASSED" else status,
                      None, "(from the log: the run was cut short)")
        if not finished:
            check.add("tests", "pytest", "error", secs, f"rc {rc}, no result: {tail(text)}")
        return
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        status, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[child.tag]
                detail = (child.get("message") or child.text or "").strip().splitlines()[0:1]
                detail = detail[0] if detail else ""
        check.add("tests", name, status, float(case.get("time") or 0), detail)


def summarise(records: list[dict], runtime: str) -> tuple[str, str]:
    """(status, detail) of one runtime's `perfkit run` records."""
    mine = [r for r in records if r.get("runtime") == runtime and r["kind"] != "complexity"]
    errors = [f"{r['kind']} b{r.get('batch')}: {(r.get('error') or '')[:120]}" for r in mine if r["status"] != "ok"]
    lat = {r["batch"]: r["metrics"].get("latency_median_ms") for r in mine if r["kind"] == "latency" and r["status"] == "ok"}
    parity = [r["metrics"].get("passed") for r in mine if r["kind"] == "parity" and r["status"] == "ok"]
    memory = [r["metrics"].get("peak_bytes") for r in mine if r["kind"] == "memory" and r["status"] == "ok"]
    parts = []
    if lat:
        parts.append("median ms " + ", ".join(f"b{b} {v:.3g}" for b, v in sorted(lat.items()) if v is not None))
    if parity:
        parts.append(f"parity {sum(map(bool, parity))}/{len(parity)} pass")
    if memory:
        parts.append(f"peak {max(memory) / 2**20:.0f} MiB")
    parts += errors
    status = "ok" if mine and not errors and all(parity) else ("FAILED" if mine else "no records")
    return status, "; ".join(parts)


def perfkit_runs(check: Check, env: dict, args, scratch: Path) -> None:
    """One `perfkit run` per runtime (eager comes along as the reference), so that one slow or
    broken runtime costs only its own row."""
    backends = check.inventory.get("backends")
    if backends is None:
        check.add("run", args.model, "not run", None, check.inventory.get("perfkit_error", "perfkit does not import"))
        return
    for runtime in RUNTIMES:
        what = f"{args.model} {runtime} b{args.batches}"
        if backends.get(runtime):
            check.add("run", what, "skipped", None, backends[runtime])
            continue
        if check.left() < 60:
            check.add("run", what, "not started", None, f"{check.left():.0f} s of the budget left")
            continue
        cmd = [sys.executable, "-m", "perfkit", "run", args.model, "--weights", "random", "--device", args.device,
               "-f", runtime, "-b", args.batches, "--json", "--store", str(check.out / "perfkit.db"),
               "--artifacts", str(scratch / "artifacts"), "--html", str(scratch / f"report-{runtime}.html")]
        stdout = check.out / f"run-{runtime}.json"
        rc, secs, text = run(cmd, min(args.run_limit, check.left()), check.out / f"run-{runtime}.log", env, stdout)
        if rc == 124:
            check.add("run", what, "timed out", secs, f"killed after {secs:.0f} s; see run-{runtime}.log")
            continue
        try:
            records = json.loads(stdout.read_text())["records"]
        except (ValueError, KeyError) as exc:
            check.add("run", what, "error", secs, f"rc {rc}, no JSON ({exc}): {tail(text)}")
            continue
        status, detail = summarise(records, runtime)
        check.add("run", what, status, secs, detail)


LAYERS_MODEL = "resnet18"


def tensorrt_layers(check: Check, env: dict, args, scratch: Path) -> None:
    """TensorRT's per-layer profile (IProfiler + engine inspector), fp32 and fp16 at batch 1: per precision, the
    share of the profiled time on rows named by a module path, the sum of layer times and the end-to-end median."""
    what = f"{LAYERS_MODEL} tensorrt --layers"
    why_not = (check.inventory.get("backends") or {}).get("tensorrt", "perfkit does not import")
    if why_not:
        check.add("layers", what, "skipped", None, why_not)
        return
    if check.left() < 60:
        check.add("layers", what, "not started", None, f"{check.left():.0f} s of the budget left")
        return
    cmd = [sys.executable, "-m", "perfkit", "profile", LAYERS_MODEL, "--weights", "random", "--device", args.device,
           "-f", "tensorrt", "--precision", "fp32,fp16", "-b", "1", "--layers", "--no-memory", "--iterations", "20",
           "--json", "--store", str(check.out / "perfkit.db"), "--artifacts", str(scratch / "artifacts")]
    stdout = check.out / "layers-tensorrt.json"
    rc, secs, text = run(cmd, min(args.run_limit, check.left()), check.out / "layers-tensorrt.log", env, stdout)
    if rc == 124:
        check.add("layers", what, "timed out", secs, f"killed after {secs:.0f} s; see layers-tensorrt.log")
        return
    try:
        records = [r for r in json.loads(stdout.read_text())["records"] if r["kind"] == "layers"]
    except (ValueError, KeyError) as exc:
        check.add("layers", what, "error", secs, f"rc {rc}, no JSON ({exc}): {tail(text)}")
        return
    for r in records:
        m = r.get("metrics") or {}
        if r["status"] != "ok" or m.get("unavailable"):
            check.add("layers", f"{what} {r.get('precision')}", "FAILED" if r["status"] != "ok" else "unavailable",
                      secs, (r.get("error") or m.get("unavailable") or "")[:200])
            continue
        coverage = m.get("coverage")
        check.add("layers", f"{what} {r.get('precision')}", "ok" if coverage and coverage >= 0.9 else "low coverage",
                  secs, f"coverage {coverage if coverage is None else f'{coverage:.1%}'}, layers sum "
                        f"{m.get('total_ms', 0):.3g} ms vs e2e median {m.get('e2e_median_ms')} ms, "
                        f"{len(m.get('layers') or [])} TensorRT layers")
    if not records:
        check.add("layers", what, "no records", secs, f"rc {rc}: {tail(text)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole check (default 480)")
    parser.add_argument("--tests-limit", type=float, default=270, help="seconds for the tests (default 270)")
    parser.add_argument("--run-limit", type=float, default=240, help="seconds per `perfkit run` (default 240)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "reports" / "gpu-check"),
                        help="results folder (default $OUT, else reports/gpu-check)")
    parser.add_argument("--model", default=MODEL, help=f"model of the `perfkit run` part (default {MODEL})")
    parser.add_argument("--batches", default=BATCHES, help=f"its batch sizes (default {BATCHES})")
    parser.add_argument("--device", default="cuda:0", help="its device (cpu: a dry run of this script)")
    args = parser.parse_args()
    check = Check(Path(args.out), args.budget)
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"perfkit-gpu-check-{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PERFKIT_STORE": str(check.out / "perfkit.db"), "PERFKIT_ARTIFACTS": str(scratch / "artifacts"),
           "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    if not inventory(check, env, args.device):
        print((check.out / "gpu_check.md").read_text())
        return 2
    tests(check, env, args.tests_limit)
    perfkit_runs(check, env, args, scratch)
    tensorrt_layers(check, env, args, scratch)
    print((check.out / "gpu_check.md").read_text())
    return 1 if any(r["status"] in ("FAILED", "ERROR", "error", "timed out") for r in check.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
