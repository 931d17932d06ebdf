"""The native runtime: the C++ LibTorch runner (perfkit/native/runner.cpp) run as a subprocess.

This runtime is the one exception to "runners never time themselves": its inference happens in
another process, where Python cannot see individual calls, so the C++ program is the profiler of
this runtime. Its timing loop mirrors ``perfkit.profile.timing`` (warm-up by count and time, at
least N iterations and T seconds, synchronise after every call, the same percentiles) and it
returns every raw sample, from which ``perfkit.profile`` recomputes the statistics in Python.

The binary is built with CMake from the top-level CMakeLists.txt against the LibTorch inside the
installed torch wheel, into a cache folder, and rebuilt only when the source, the CMake file or
torch change.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from perfkit.errors import PerfkitError
from perfkit.formats import BatchRange, Precision

BINARY_NAME = "perfkit-native-runner"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_SOURCES = (_REPO_ROOT / "CMakeLists.txt", _REPO_ROOT / "perfkit" / "native" / "runner.cpp")


class NativeBuildError(PerfkitError):
    """CMake or the compiler failed, or they are not installed."""


@dataclass(frozen=True)
class NativeBuild:
    binary: Path
    build_dir: Path
    seconds: float  # time spent configuring and compiling now (0 when reused)
    rebuilt: bool
    aoti: bool  # the AOTInductor .pt2 loader was compiled in


def torch_dir() -> Path:
    return Path(torch.__file__).resolve().parent


def aoti_loader_available() -> bool:
    """The installed torch ships the AOTInductor package loader header (CMake checks the same)."""
    return (torch_dir() / "include/torch/csrc/inductor/aoti_package/model_package_loader.h").is_file()


def default_build_dir(artifacts: Path | None = None) -> Path:
    """$PERFKIT_NATIVE_BUILD, else ``<artifacts>/native-build``."""
    env = os.environ.get("PERFKIT_NATIVE_BUILD")
    from perfkit.export.artifact import artifacts_dir

    return Path(env) if env else artifacts_dir(artifacts) / "native-build"


def _stamp() -> dict:
    digest = hashlib.sha256()
    for path in _SOURCES:
        digest.update(path.read_bytes())
    return {"sources_sha256": digest.hexdigest(), "torch_dir": str(torch_dir()), "torch": torch.__version__,
            "cxx11_abi": int(torch.compiled_with_cxx11_abi())}


def build_native(build_dir: Path | None = None, *, force: bool = False) -> NativeBuild:
    """Build the runner (or reuse an up-to-date build) and return where the binary is."""
    missing = [str(p) for p in _SOURCES if not p.is_file()]
    if missing:
        raise NativeBuildError(f"the native runner's sources are not here ({', '.join(missing)}); "
                               "build-native needs a source checkout of perfkit")
    cmake = shutil.which("cmake")
    if cmake is None:
        raise NativeBuildError("cmake is not installed; install cmake (>= 3.18) and a C++20 compiler (g++ >= 10)")
    build_dir = Path(build_dir or default_build_dir()).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / BINARY_NAME
    stamp_file = build_dir / "perfkit-build.json"
    stamp = _stamp()
    aoti = aoti_loader_available()
    # Two processes profiling at once must not compile into the same folder at the same time.
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and binary.is_file() and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
            return NativeBuild(binary, build_dir, 0.0, False, aoti)
        t0 = time.perf_counter()
        configure = [cmake, "-S", str(_REPO_ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                     f"-DTORCH_DIR={stamp['torch_dir']}", f"-DTORCH_CXX11_ABI={stamp['cxx11_abi']}"]
        if shutil.which("ninja") and not (build_dir / "CMakeCache.txt").is_file():
            configure += ["-G", "Ninja"]
        _check_call(configure, build_dir / "configure.log")
        _check_call([cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 1)],
                    build_dir / "build.log")
        if not binary.is_file():
            raise NativeBuildError(f"the build finished but {binary} is missing (see {build_dir / 'build.log'})")
        stamp_file.write_text(json.dumps(stamp))
        return NativeBuild(binary, build_dir, time.perf_counter() - t0, True, aoti)


def _check_call(cmd: list[str], log: Path) -> None:
    with open(log, "w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:])
        raise NativeBuildError(f"`{' '.join(cmd[:2])} ...` failed (exit {rc}); full log in {log}:\n{tail}")


def run_native(binary: Path, model_path: Path, *, input_size: tuple[int, int, int], batch: int,
               fmt: str = "torchscript", threads: int | None = None, device: str = "cpu",
               warmup: int = 10, warmup_seconds: float = 1.0, iterations: int = 50, min_seconds: float = 2.0,
               input_file: Path | None = None, output_file: Path | None = None,
               timeout: float = 3600) -> dict:
    """Run the binary once and return its JSON, plus ``max_rss_bytes`` of the native process."""
    cmd = [str(binary), "--model", str(model_path), "--format", fmt, "--device", device,
           "--shape", ",".join(map(str, input_size)), "--batch", str(batch),
           "--warmup", str(warmup), "--warmup-seconds", str(warmup_seconds),
           "--iterations", str(iterations), "--min-seconds", str(min_seconds)]
    if threads:
        cmd += ["--threads", str(threads)]
    if input_file is not None:
        cmd += ["--input", str(input_file)]
    if output_file is not None:
        cmd += ["--output", str(output_file)]
    stdout, _, max_rss = _run(cmd, timeout, what=f"native runner on {model_path}")
    try:
        result = json.loads(stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise PerfkitError(f"native runner printed no JSON: {stdout[-500:]!r}") from exc
    result["max_rss_bytes"] = max_rss
    return result


def _run(cmd: list[str], timeout: float, what: str) -> tuple[str, str, int]:
    """Run ``cmd``; return (stdout, stderr, peak RSS in bytes of that process)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        # wait4 (not Popen.wait) so that the child's own peak RSS comes back with its exit status.
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise PerfkitError(f"{what} failed (exit {proc.returncode}): {stderr.strip()[-2000:]}")
    return stdout, stderr, usage.ru_maxrss * 1024  # Linux reports KiB


def native_logits(binary: Path, model_path: Path, x: torch.Tensor, *, fmt: str = "torchscript",
                  threads: int | None = None) -> torch.Tensor:
    """Logits the native runner computes for ``x`` (float32 NCHW): one call, no timing loop."""
    x = x.detach().to("cpu", torch.float32).contiguous()
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = Path(tmp) / "x.f32", Path(tmp) / "y.f32"
        inp.write_bytes(x.numpy().tobytes())
        result = run_native(binary, model_path, input_size=tuple(x.shape[1:]), batch=x.shape[0], fmt=fmt,
                            threads=threads, warmup=0, warmup_seconds=0, iterations=1, min_seconds=0,
                            input_file=inp, output_file=outp)
        data = bytearray(outp.read_bytes())
    return torch.frombuffer(data, dtype=torch.float32).reshape(result["output_shape"])


def torchscript_artifact(spec, *, precision: Precision | str = Precision.FP32, artifacts: Path | None = None,
                         batch: BatchRange = BatchRange()) -> Path:
    """The TorchScript file the native runner loads (exported and cached by perfkit.export)."""
    from perfkit.export.artifact import ensure_artifact

    return Path(ensure_artifact(spec, "torchscript", precision=precision, artifacts=artifacts, batch=batch).path)
