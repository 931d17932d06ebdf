"""``torch.profiler`` for the PyTorch runtimes.

Eager: every module call runs inside a ``record_function`` range named after its path (forward pre- and
post-hooks), so each module's time is its range less the ranges of the modules it called (a block's own
code, such as a residual add, stays the block's). TorchScript and AOTInductor run compiled graphs that
keep no module boundaries (frozen TorchScript inlines every submodule; AOTInductor's kernels are
generated code): their top-level ops are listed by op, unmapped. On a GPU the times are the device time of
the kernels each range or op launched.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from perfkit.profiler.layers import WARMUP_RUNS, LayerTime, RuntimeLayers

SOURCE = "torch.profiler"
PREFIX = "perfkit.module:"  # the record_function ranges of module calls
EAGER_MAPPING = "a record_function range per module call (forward hooks): the module's range less its submodules'"
OUTSIDE = "(outside the profiled ops)"
OPS_MAPPING = "by op only: the compiled graph keeps no module boundaries (unmapped)"
# What Kineto writes to the process's stderr at every profiler start and stop (and, on a machine without a
# GPU, a gpuGetDeviceCount "ERROR"): noise under perfkit's own output, not a problem with the profile.
_KINETO_NOISE = re.compile(r"SyncActivityProfilerHandler|profiler_st(art|op)|gpuGetDeviceCount")


def profile(runner, x, runs: int, counts) -> RuntimeLayers:
    x = x.to(runner.device)
    for _ in range(WARMUP_RUNS):
        runner.infer(x)
    runner.synchronize()
    handles = _module_ranges(runner.module) if runner.name == "eager" else []
    activities = [torch.profiler.ProfilerActivity.CPU]
    if runner.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    prof = torch.profiler.profile(activities=activities)
    try:
        with _kineto_quiet():
            prof.start()
        try:
            start = time.perf_counter()
            for _ in range(runs):
                runner.infer(x)
            runner.synchronize()
            wall_ms = (time.perf_counter() - start) * 1000 / runs
        finally:
            with _kineto_quiet():
                prof.stop()
    finally:
        for h in handles:
            h.remove()
    cuda = runner.device.type == "cuda"
    events = list(prof.events())
    if runner.name == "eager":
        return RuntimeLayers(module_layers(events, counts, runs, cuda), runs, f"{SOURCE} (record_function per module)",
                             EAGER_MAPPING)
    return RuntimeLayers(op_layers(events, runs, cuda, wall_ms), runs, f"{SOURCE} (top-level ops)", OPS_MAPPING)


@contextmanager
def _kineto_quiet():
    """Kineto's C++ writes straight to file descriptor 2 while the profiler starts and stops: hold those
    lines back and pass on only what is not its known start/stop noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines():
                if line.strip() and not _KINETO_NOISE.search(line):
                    print(line, file=sys.stderr)


def _module_ranges(model: torch.nn.Module) -> list:
    """Hooks opening a ``record_function`` range named after each module's path around its forward."""
    open_ranges: list = []

    def enter(path):
        def hook(module, args):
            scope = torch.autograd.profiler.record_function(PREFIX + path)
            scope.__enter__()
            open_ranges.append(scope)
        return hook

    def leave(module, args, output):
        open_ranges.pop().__exit__(None, None, None)

    handles = []
    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(path)))
        handles.append(module.register_forward_hook(leave))
    return handles


def _us(event, cuda: bool) -> float:
    return float(event.device_time_total if cuda else event.cpu_time_total)


def _nested_ranges(event):
    """The module ranges directly inside ``event`` (through the ops between them)."""
    for child in event.cpu_children:
        if child.name.startswith(PREFIX):
            yield child
        else:
            yield from _nested_ranges(child)


def module_layers(events: list, counts, runs: int, cuda: bool) -> list[LayerTime]:
    """Each module's own time per run (its range less its submodules' ranges), in order of first call."""
    own: dict[str, float] = defaultdict(float)
    for e in events:
        if e.name.startswith(PREFIX):
            path = e.name[len(PREFIX):]
            own[path] += _us(e, cuda) - sum(_us(c, cuda) for c in _nested_ranges(e))
    return [LayerTime(path or "(model)", counts.types.get(path) or "module", us / 1000 / runs, (path,))
            for path, us in own.items()]


def op_layers(events: list, runs: int, cuda: bool, wall_ms: float) -> list[LayerTime]:
    """Each top-level op's time per run (an op no other op called: ``aten::conv2d``, not the
    ``aten::mkldnn_convolution`` inside it), summed over its calls, unmapped; and the rest of the profiled
    runs' wall time as one row, ``OUTSIDE``: the interpreter's own work, or compiled kernels the profiler does
    not see (AOTInductor's generated C++ on a CPU), so that the sum is the profiled time, not only what the
    profiler saw."""
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if _is_op(e) and not _called_by_op(e):
            per_op[e.name] += _us(e, cuda)
    out = [LayerTime(name, name, us / 1000 / runs) for name, us in per_op.items()]
    rest = wall_ms - sum(layer.ms for layer in out)
    if rest > 0:
        out.append(LayerTime(OUTSIDE, "unprofiled", rest))
    return out


def _is_op(event) -> bool:
    return "::" in event.name


def _called_by_op(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if _is_op(parent):
            return True
        parent = parent.cpu_parent
    return False
