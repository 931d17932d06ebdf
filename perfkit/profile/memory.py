"""Memory per runtime, each measured in its own spawned process.

Allocators keep what they once held (torch's caching allocator, ONNX Runtime's arena, glibc's
heap), so a runtime measured after another in the same process would inherit its high-water mark.
Each measurement therefore runs in a fresh ``multiprocessing`` *spawn* child that loads one runtime,
runs it a few times at one batch, and reports:

- CPU: the host peak RSS delta: VmHWM (reset through ``/proc/self/clear_refs``) after load and
  runs, minus VmRSS before the load; ``ru_maxrss`` is the fallback where the reset is refused.
- CUDA, torch runtimes (eager, TorchScript, AOTI): the torch allocator's peak above what was
  allocated before the load (``torch.cuda.max_memory_allocated``).
- CUDA, ONNX Runtime and TensorRT (their own allocators): the NVML device-level used-memory delta
  around load and runs, with the CUDA context's own overhead measured separately.
- the artifact's size on disk and, for TensorRT, the engine's device memory.

Every number comes with the ``method`` that produced it.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
from pathlib import Path

import torch

from perfkit.errors import PerfkitError
from perfkit.formats import BatchRange, Format, Precision

_TORCH_RUNTIMES = (Format.EAGER, Format.TORCHSCRIPT, Format.AOTI)
_RUNS = 3  # enough for lazy allocations (ORT arenas, TorchScript profiling runs) to happen


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise PerfkitError(f"/proc/self/status has no {field}")


class HostPeak:
    """Peak resident memory of this process from now on, as a delta over the current RSS."""

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.resettable = True
            self.base = _status_bytes("VmRSS")
            self.method = "host peak RSS delta: VmHWM (reset via /proc/self/clear_refs) - VmRSS before load"
        except OSError:
            self.resettable = False
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.method = "host peak RSS delta: ru_maxrss after - ru_maxrss before (lower bound)"

    def delta(self) -> int:
        peak = _status_bytes("VmHWM") if self.resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return peak - self.base


class _Nvml:
    def __init__(self, index: int):
        from perfkit.deps import require

        self.pynvml = require("pynvml")
        self.pynvml.nvmlInit()
        self.handle = self.pynvml.nvmlDeviceGetHandleByIndex(index)

    def used(self) -> int:
        return int(self.pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)


def artifact_bytes(path: Path | str | None) -> int | None:
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _engine_device_bytes(runner) -> int | None:
    # TensorRTRunner keeps its ICudaEngine as `_engine` (export branch); `engine` if it becomes public.
    engine = getattr(runner, "engine", None) or getattr(runner, "_engine", None)
    if engine is None:
        return None
    for attr in ("device_memory_size_v2", "device_memory_size"):  # TensorRT 10 renamed it
        if hasattr(engine, attr):
            return int(getattr(engine, attr))
    return None


def _measure_here(spec, fmt: Format, batch: int, precision: Precision, device: str, artifacts: Path | None,
                  brange: BatchRange, options: dict, threads: int | None) -> dict:
    import torchvision  # noqa: F401  (library import is not the runtime's memory: load it before the baseline)

    from perfkit.runtime import open_runner

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    x = spec.example_input(batch)
    out: dict = {"batch": batch}
    if dev.type == "cuda":
        nvml = _Nvml(dev.index or 0)
        before_context = nvml.used()
        torch.zeros(1, device=dev)  # creates the CUDA context
        torch.cuda.synchronize(dev)
        after_context = nvml.used()
        out["gpu_context_bytes"] = after_context - before_context
        torch.cuda.reset_peak_memory_stats(dev)
        allocated_before = torch.cuda.memory_allocated(dev)
        x = x.to(dev)
    else:
        host = HostPeak()

    with open_runner(spec, fmt, precision=precision, device=device, artifacts=artifacts, batch=brange,
                     **options) as runner:
        for _ in range(_RUNS):
            runner.infer(x)
            runner.synchronize()
        art = getattr(runner, "artifact", None)
        out["artifact_bytes"] = artifact_bytes(getattr(art, "path", None))
        out["engine_device_bytes"] = _engine_device_bytes(runner)
        if dev.type == "cuda":
            out["nvml_delta_bytes"] = nvml.used() - after_context
            if fmt in _TORCH_RUNTIMES:
                out["peak_bytes"] = torch.cuda.max_memory_allocated(dev) - allocated_before
                out["method"] = f"torch allocator peak (max_memory_allocated) over load + {_RUNS} runs"
            else:
                out["peak_bytes"] = out["nvml_delta_bytes"]
                out["method"] = (f"NVML device used delta after load + {_RUNS} runs, CUDA context excluded "
                                 "(device-wide: other processes on the GPU count too)")
        else:
            out["rss_delta_bytes"] = host.delta()
            out["peak_bytes"] = out["rss_delta_bytes"]
            out["method"] = f"{host.method}, load + {_RUNS} runs"
    return out


def _child(conn, *args) -> None:
    try:
        conn.send(("ok", _measure_here(*args)))
    except BaseException as exc:  # sent to the parent, which raises it there
        conn.send(("error", f"{type(exc).__name__}: {exc}", isinstance(exc, torch.OutOfMemoryError)))
    finally:
        conn.close()


def measure_memory(spec, fmt: Format | str, batch: int, *, precision: Precision | str = Precision.FP32,
                   device: str = "cpu", artifacts: Path | None = None, brange: BatchRange = BatchRange(),
                   options: dict | None = None, threads: int | None = None, timeout: float = 1800) -> dict:
    """Memory metrics of one runtime at one batch (the shared ``memory`` vocabulary)."""
    fmt, precision = Format(fmt), Precision(precision)
    if fmt is Format.NATIVE:
        return _measure_native(spec, batch, precision, device, artifacts, brange, threads)
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(sender, spec, fmt, batch, precision, device, artifacts, brange,
                                            options or {}, threads), daemon=True)
    proc.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise PerfkitError(f"memory measurement of {spec.name} {fmt} batch {batch} took over {timeout:.0f} s")
        message = receiver.recv()
    except EOFError:
        proc.join()
        raise PerfkitError(f"the memory-measuring process for {spec.name} {fmt} batch {batch} died "
                           f"(exit code {proc.exitcode}; killed for memory?)") from None
    finally:
        if proc.is_alive():
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if message[0] == "error":
        if message[2]:
            raise torch.OutOfMemoryError(message[1])
        raise PerfkitError(f"memory measurement of {spec.name} {fmt} batch {batch} failed: {message[1]}")
    return message[1]


def _measure_native(spec, batch: int, precision: Precision, device: str, artifacts: Path | None,
                    brange: BatchRange, threads: int | None) -> dict:
    """The native runner is its own process: it reports its own peak RSS (VmHWM reset before the
    model is loaded) over its RSS with LibTorch loaded and no model, the same method as above."""
    from perfkit.runtime.native import build_native, default_build_dir, run_native, torchscript_artifact

    build = build_native(default_build_dir(artifacts))
    path = torchscript_artifact(spec, precision=precision, artifacts=artifacts, batch=brange)
    result = run_native(build.binary, path, input_size=spec.input_size, batch=batch, threads=threads, device=device,
                        warmup=_RUNS, warmup_seconds=0, iterations=1, min_seconds=0)
    if result["peak_rss_reset"]:
        delta = result["peak_rss_bytes"] - result["rss_before_load_bytes"]
        method = (f"host peak RSS delta in the native process: VmHWM (reset via /proc/self/clear_refs) "
                  f"- VmRSS before load, load + {_RUNS + 2} runs")
    else:
        delta = result["max_rss_bytes"] - result["rss_before_load_bytes"]
        method = "host peak RSS delta in the native process: ru_maxrss (wait4) - VmRSS before load (upper bound)"
    return {"batch": batch, "peak_bytes": delta, "rss_delta_bytes": delta,
            "process_peak_rss_bytes": result["max_rss_bytes"], "artifact_bytes": artifact_bytes(path),
            "method": method}
