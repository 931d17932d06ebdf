"""Memory per runtime, each measured in its own spawned process.

Allocators keep what they once held (torch's caching allocator, ONNX Runtime's arena, glibc's
heap), so a runtime measured after another in the same process would inherit its high-water mark.
Each measurement therefore runs in a fresh child process that loads one runtime, runs it a few
times at one batch, and reports the figures below. Children come from a ``forkserver`` that has
imported torch and torchvision once (5 s per child on the development machine, 28 children in a
default ``perfkit run``): a forked child starts with those libraries mapped, which its baseline
(taken after the fork, before the load) already holds, and nothing of any runtime. Where there is
no forkserver (Windows) they are spawned.

- CPU: the host peak RSS delta: VmHWM (reset through ``/proc/self/clear_refs``) after load and
  runs, minus VmRSS before the load; ``ru_maxrss`` is the fallback where the reset is refused or
  there is no /proc (macOS). Where there is neither (Windows) host memory is not measured: the
  measurement fails and says why.
- CUDA, runtimes on torch's caching allocator (eager, TorchScript, AOTI — whose weights go through
  it too): the allocator's peak above what was allocated before the load.
- CUDA, runtimes with their own allocators (ONNX Runtime, TensorRT): the NVML used-memory delta of
  the run's own GPU (matched by UUID, not by index) around load and runs, with the CUDA context's
  own overhead measured separately.
- the artifact's size on disk and, for TensorRT, the engine's device memory.
- a runtime in a process of its own (native) reports that process's host peak itself; on CUDA that
  is host memory, and the record says so rather than putting it in the GPU column.

Every number comes with the ``method`` that produced it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from perfkit.errors import MeasurementError, PerfkitError
from perfkit.portable import own_peak_rss_bytes
from perfkit.results import Where, describe
from perfkit.vocab import BatchRange, Precision

RUNS = 3  # enough for lazy allocations (ORT arenas, TorchScript profiling runs) to happen


@dataclass(frozen=True)
class MemoryResult:
    """Peak memory of one runtime at one batch (kind memory)."""

    where: Where
    peak_bytes: int
    method: str
    details: dict = field(default_factory=dict)  # other byte counts: artifact, engine, context, NVML delta


def _status_bytes(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise PerfkitError(f"/proc/self/status has no {name}")


class HostPeak:
    """Peak resident memory of this process from now on, as a delta over the current RSS."""

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.resettable = True
            self.base = _status_bytes("VmRSS")
            self.method = "host peak RSS delta: VmHWM (reset via /proc/self/clear_refs) - VmRSS before load"
        except OSError:  # no /proc (macOS, Windows) or the reset refused
            self.resettable = False
            self.base = _own_peak()
            self.method = "host peak RSS delta: ru_maxrss after - ru_maxrss before (lower bound)"

    def delta(self) -> int:
        peak = _status_bytes("VmHWM") if self.resettable else _own_peak()
        return peak - self.base


def _own_peak() -> int:
    peak = own_peak_rss_bytes()
    if peak is None:
        raise MeasurementError("host memory is not measured on this platform: it has neither "
                               "/proc/self/clear_refs (to reset the peak) nor getrusage (ru_maxrss)")
    return peak


class _Nvml:
    def __init__(self, device: torch.device):
        from perfkit.device import nvml_handle

        import pynvml

        self.pynvml = pynvml
        self.handle = nvml_handle(device)

    def used(self) -> int:
        return int(self.pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)


def artifact_size(artifact) -> int | None:
    """Every file of the artifact (ONNX external data, the IR's .bin), as its manifest lists them."""
    return None if artifact is None else artifact.bytes


def _measure_here(spec, backend: str, batch: int, precision: Precision, ctx, brange: BatchRange, artifact) -> dict:
    import torchvision  # noqa: F401  (library import is not the runtime's memory: load it before the baseline)

    from perfkit.backends import make_runner

    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    dev = torch.device(ctx.device)
    x = spec.example_input(batch)
    out: dict = {}
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        nvml = _Nvml(dev)
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
    with make_runner(spec, backend, ctx, artifact, precision=precision, batch=brange) as runner:
        for _ in range(RUNS):
            runner.infer(x)
            runner.synchronize()
        out["artifact_bytes"] = artifact_size(runner.artifact)
        out["engine_device_bytes"] = runner.engine_device_bytes()
        if dev.type == "cuda":
            out["nvml_delta_bytes"] = nvml.used() - after_context
            if runner.torch_runtime:
                out["peak_bytes"] = torch.cuda.max_memory_allocated(dev) - allocated_before
                out["method"] = f"torch allocator peak (max_memory_allocated) over load + {RUNS} runs"
            else:
                out["peak_bytes"] = out["nvml_delta_bytes"]
                out["method"] = (f"NVML used delta of this GPU after load + {RUNS} runs, CUDA context excluded "
                                 "(device-wide: other processes on the GPU count too)")
        else:
            out["rss_delta_bytes"] = host.delta()
            out["peak_bytes"] = out["rss_delta_bytes"]
            out["method"] = f"{host.method}, load + {RUNS} runs"
    return out


def _child(conn, environ: dict, path: list, *args) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it kills this child)
    try:
        # a forkserver child starts with the environment and sys.path of the moment the server
        # started: take the parent's current ones (and the backends $PERFKIT_BACKENDS names now)
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
        from perfkit.backends import reload

        reload()
        message = ("ok", _measure_here(*args))
    except BaseException as exc:  # sent to the parent, which raises it there
        message = ("error", describe(exc), isinstance(exc, torch.OutOfMemoryError))
    try:
        conn.send(message)
    except BrokenPipeError:  # the parent died (killed): nobody waits for the result, nothing to say
        pass
    finally:
        conn.close()


def measure_memory(spec, backend, batch: int, ctx, *, precision: Precision | str = Precision.FP32,
                   brange: BatchRange = BatchRange(), artifact=None, timeout: float = 1800) -> MemoryResult:
    """Peak memory of ``backend`` at ``batch``, measured in a fresh process."""
    return start_memory(spec, backend, batch, ctx, precision=precision, brange=brange, artifact=artifact,
                        timeout=timeout).result()


def start_memory(spec, backend, batch: int, ctx, *, precision: Precision | str = Precision.FP32,
                 brange: BatchRange = BatchRange(), artifact=None, timeout: float = 1800) -> "PendingMemory":
    """``measure_memory`` started: its child process runs while the caller starts others.

    ``artifact``: the one the plan resolved (the child runs it as it is, without looking it up
    again); None: resolved here first.
    """
    from perfkit.backends import get, prepare
    from perfkit.context import NO_PROGRESS

    backend, precision = get(backend), Precision(precision)
    where = Where.of(spec, backend.name, precision, batch, ctx.device)
    if artifact is None:
        artifact = prepare(spec, backend, ctx, precision=precision, batch=brange)
    if backend.runner.out_of_process:  # measures itself, when asked for its result
        return PendingMemory(where, None, lambda: _own_memory(spec, backend, batch, ctx, precision, brange, artifact))
    args = (dict(os.environ), list(sys.path), spec, backend.name, batch, precision,
            ctx.replace(progress=NO_PROGRESS, resolved={}), brange, artifact)
    child = _Child(_child, args, f"{spec.name} {backend.name} batch {batch}", timeout)
    return PendingMemory(where, child, None)


@dataclass
class PendingMemory:
    """A memory measurement under way: ``result()`` waits for it, ``cancel()`` kills its process."""

    where: Where
    child: "_Child | None"
    measure: Callable[[], dict] | None = None  # an out-of-process runner's own measurement, run by result()

    def result(self) -> MemoryResult:
        if self.child is None:
            return _result(self.where, self.measure())
        message = self.child.result()
        if message[0] == "error":
            if message[2]:
                raise torch.OutOfMemoryError(message[1])
            raise MeasurementError(f"memory measurement of {self.child.what} failed: {message[1]}")
        return _result(self.where, message[1])

    def cancel(self) -> None:
        if self.child is not None:
            self.child.close(kill=True)


def _own_memory(spec, backend, batch, ctx, precision, brange, artifact) -> dict:
    from perfkit.backends import make_runner

    runner = make_runner(spec, backend, ctx, artifact, precision=precision, batch=brange)
    out = runner.own_memory(batch, RUNS)
    out["artifact_bytes"] = artifact_size(artifact)
    if ctx.device_type == "cuda":
        out["method"] += " (host memory: the GPU memory of a separate process is not measured)"
    return out


def concurrent_children(device: str) -> int:
    """How many memory children may run at once: on a CPU each measures its own process's RSS, so
    they run side by side (two at most: each loads a whole model); on CUDA one, since NVML's
    used-memory figure is device-wide."""
    from perfkit.device import available_cores, device_type

    return 1 if device_type(device) == "cuda" else max(1, min(2, available_cores()))


def _result(where: Where, out: dict) -> MemoryResult:
    details = {k: v for k, v in out.items() if k not in ("peak_bytes", "method") and v is not None}
    return MemoryResult(where, int(out["peak_bytes"]), out["method"], details)


def _context():
    """forkserver with torch and torchvision preloaded (see the module docstring), else spawn."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torchvision", "perfkit.profiler.memory"])
    return ctx


class _Child:
    """One measuring process and the pipe its one message comes back on."""

    def __init__(self, target, args: tuple, what: str, timeout: float):
        ctx = _context()
        self.what, self.timeout = what, timeout
        self.receiver, sender = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=target, args=(sender, *args), daemon=True)
        self.proc.start()
        sender.close()

    def result(self):
        try:
            if not self.receiver.poll(self.timeout):
                raise MeasurementError(f"memory measurement of {self.what} took over {self.timeout:.0f} s")
            return self.receiver.recv()
        except EOFError:
            self.proc.join()
            raise MeasurementError(f"the memory-measuring process for {self.what} died "
                                   f"(exit code {self.proc.exitcode}; killed for memory?)") from None
        except KeyboardInterrupt:
            self.close(kill=True)
            raise
        finally:
            self.close()

    def close(self, kill: bool = False) -> None:
        if kill and self.proc.is_alive():
            self.proc.kill()
        if self.proc.is_alive():
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
