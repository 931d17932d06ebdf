"""The native runtime: perfkit/native/runner.cpp, a C++ LibTorch program, run as a subprocess.

It runs the TorchScript artifact the way a C++ server would: ``torch::jit::optimize_for_inference``
(freeze, fold, fuse) at load, ``c10::InferenceMode``, LibTorch's intra-op threads. As a ``Runner`` it
keeps one process serving requests over a pipe (``--serve``), so ``check`` and ``validate`` use it
like any other runtime. It is the one runner that times itself (``self_timed``): Python cannot see
individual calls inside another process, so its C++ loop is this runtime's profiler; it mirrors
``perfkit.profiler.timing`` (warm-up by count and time, at least N iterations and T seconds,
synchronise after every call, the same percentiles) and returns every raw sample, from which the
profiler recomputes the statistics in Python.

The binary is built with CMake from perfkit/native/ (CMakeLists.txt and runner.cpp, package data, so a
wheel ships them) against the LibTorch inside the installed torch wheel, into a cache folder outside the
package, and rebuilt only when the source, the CMake file or torch change (needs cmake >= 3.18 and a
C++20 compiler).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from perfkit.backends.base import PYTORCH, RUN, TORCHSCRIPT_FILE, ArtifactRunner, Backend, Option
from perfkit.context import artifacts_dir
from perfkit.errors import MeasurementError, PerfkitError
from perfkit.portable import exclusive_lock, maxrss_bytes
from perfkit.vocab import Precision

BINARY_NAME = "perfkit-native-runner"
# Beside the package's modules in a checkout and in an installed wheel alike (CMake only reads them).
SOURCE_DIR = Path(__file__).resolve().parents[1] / "native"
_SOURCES = (SOURCE_DIR / "CMakeLists.txt", SOURCE_DIR / "runner.cpp")


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
        raise NativeBuildError(f"the native runner's sources are missing from this perfkit ({', '.join(missing)}); "
                               "reinstall perfkit")
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
    with exclusive_lock(build_dir / ".lock"):
        if not force and binary.is_file() and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
            return NativeBuild(binary, build_dir, 0.0, False, aoti)
        t0 = time.perf_counter()
        _forget_other_source(build_dir)
        configure = [cmake, "-S", str(SOURCE_DIR), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
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


def _forget_other_source(build_dir: Path) -> None:
    """Drop CMake's state in a build folder configured from another source folder (the top-level
    CMakeLists.txt of older checkouts, another install of perfkit sharing the artifacts folder): CMake
    refuses to configure it from this one, and its cache would keep the other runner.cpp."""
    cache = build_dir / "CMakeCache.txt"
    if not cache.is_file():
        return
    home = [line.split("=", 1)[1] for line in cache.read_text(errors="replace").splitlines()
            if line.startswith("CMAKE_HOME_DIRECTORY:")]
    if home and Path(home[0]).resolve() == SOURCE_DIR:
        return
    cache.unlink()
    shutil.rmtree(build_dir / "CMakeFiles", ignore_errors=True)


def _check_call(cmd: list[str], log: Path) -> None:
    with open(log, "w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:])
        raise NativeBuildError(f"`{' '.join(cmd[:2])} ...` failed (exit {rc}); full log in {log}:\n{tail}")


def run_binary(cmd: list[str], *, what: str, timeout: float = 3600) -> dict:
    """Run the binary once (timing mode) and return its JSON, plus ``max_rss_bytes`` of its process."""
    stdout, _, max_rss = _run(cmd, timeout, what=what)
    try:
        result = json.loads(stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise MeasurementError(f"native runner printed no JSON: {stdout[-500:]!r}") from exc
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
        raise MeasurementError(f"{what} failed (exit {proc.returncode}): {stderr.strip()[-2000:]}")
    return stdout, stderr, maxrss_bytes(usage.ru_maxrss)


# -- the Runner -------------------------------------------------------------------------------------


class NativeRunner(ArtifactRunner):
    """One ``--serve`` process per runner: loads the model once, answers each ``infer`` over a pipe."""

    name = "native"
    self_timed = True
    out_of_process = True
    offline_mechanism = None
    offline_note = "the C++ runner times itself, and its loop keeps one request in flight"

    def _binary(self) -> Path:
        # The build folder sits in the artifacts root: two levels above an artifact's own folder.
        return build_native(default_build_dir(self.artifact.dir.parents[1])).binary

    def _command(self, binary: Path) -> list[str]:
        cmd = [str(binary), "--model", str(self.artifact.path), "--format", "torchscript", "--device", str(self.device),
               "--shape", ",".join(map(str, self.spec.input_size))]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if not self.options["optimize"]:
            cmd.append("--no-freeze")
        return cmd

    def _load(self) -> None:
        self.binary = self._binary()
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([*self._command(self.binary), "--serve"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr)

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        data = x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        try:
            self._proc.stdin.write(struct.pack("<q", x.shape[0]) + data)
            self._proc.stdin.flush()
            n, k = struct.unpack("<qq", self._read(16))
        except (BrokenPipeError, EOFError) as exc:
            raise MeasurementError(f"the native runner died: {self._error_text() or exc}") from None
        if n < 0:
            raise MeasurementError(f"native runner: {self._read(k).decode(errors='replace')}")
        out = torch.frombuffer(bytearray(self._read(n * k * 4)), dtype=torch.float32).reshape(n, k)
        return out.to(self.device)

    def _read(self, size: int) -> bytes:
        data = self._proc.stdout.read(size)
        if len(data) != size:
            raise EOFError("the native runner closed its output")
        return data

    def _error_text(self) -> str:
        self._proc.wait(timeout=10)
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:]

    def _release(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None:
            proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._stderr.close()
            self._proc = None

    def time_self(self, batch: int, config) -> dict:
        """The C++ timing loop at ``batch`` (a fresh process: nothing else shares its clock)."""
        cmd = [*self._command(self.binary), "--batch", str(batch), "--warmup", str(config.warmup),
               "--warmup-seconds", str(config.warmup_seconds), "--iterations", str(config.iterations),
               "--min-seconds", str(config.min_seconds)]
        result = run_binary(cmd, what=f"native runner on {self.artifact.path}")
        self.threads_used = result.get("threads")  # LibTorch's own count when --threads was not given
        return result

    def own_memory(self, batch: int, runs: int) -> dict:
        """Peak host memory of the native process: its VmHWM (reset before the model is loaded) over
        its RSS with LibTorch loaded and no model, the method perfkit.profiler.memory uses in Python."""
        from perfkit.profiler.timing import TimingConfig

        self.binary = self._binary()
        result = self.time_self(batch, TimingConfig(warmup=runs, warmup_seconds=0, iterations=1, min_seconds=0))
        if result["peak_rss_reset"]:
            peak, how = result["peak_rss_bytes"], "VmHWM (reset via /proc/self/clear_refs)"
        else:
            peak, how = result["max_rss_bytes"], "ru_maxrss (wait4; an upper bound)"
        if result["rss_before_load_bytes"] < 0:  # the binary read no /proc/self/status (macOS): no baseline
            raise MeasurementError("the native process's host memory is not measured on this platform: its "
                                   "RSS before the load cannot be read (no /proc/self/status)")
        delta = peak - result["rss_before_load_bytes"]
        return {"peak_bytes": delta, "rss_delta_bytes": delta, "process_peak_rss_bytes": result["max_rss_bytes"],
                "method": f"host peak RSS delta in the native process: {how} - VmRSS before load, "
                          f"load + {runs + 2} runs"}

    def config(self) -> dict:
        return {"optimize_for_inference": self.options["optimize"], "inference_mode": True,
                "intra_op_threads": self.threads or getattr(self, "threads_used", None) or "libtorch default",
                "process": "separate (C++ LibTorch)"}


def _probe(device: str, platform: str | None = None) -> str | None:
    if (platform or sys.platform) == "win32":  # the runner's process is reaped with os.wait4 (its peak memory)
        return "the native runner runs on Linux and macOS only"
    if shutil.which("cmake") is None:
        return "the native runner needs cmake (>= 3.18) and a C++20 compiler"
    if any(not p.is_file() for p in _SOURCES):
        return f"this perfkit lacks the native runner's sources ({SOURCE_DIR}); reinstall perfkit"
    return None


BACKEND = Backend(
    name="native",
    summary="the TorchScript artifact in a C++ LibTorch program (optimize_for_inference; times itself)",
    runner=NativeRunner,
    artifact_from="torchscript",
    options=(Option("optimize", True, "torchscript: torch.jit.optimize_for_inference (freeze + fusions) when loaded; "
                                      "--no-optimize runs the module as saved", stage=RUN),),
    precisions={"cpu": frozenset({Precision.FP32}), "cuda": frozenset({Precision.FP32})},
    probe=_probe,
    default_in_run=False,
    starts_from=frozenset({PYTORCH, TORCHSCRIPT_FILE}),  # a TorchScript file someone saved: torchscript's copy of it
    no_layer_profiler="the native C++ runner times itself in another process; it has no layer profiler (profile "
                      "torchscript for the same module's ops)",
)
