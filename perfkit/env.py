"""Environment fingerprint: what a measurement ran on.

Stored with every record so that two numbers can be compared only when their environments match.
Reading it must never fail: a field that cannot be read is ``None``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from importlib import metadata

_LIBRARIES = ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "timm", "perfkit")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def library_versions() -> dict[str, str]:
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _gpu() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"gpu_name": None}
    props = torch.cuda.get_device_properties(0)
    info = {
        "gpu_name": props.name,
        "gpu_count": torch.cuda.device_count(),
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_bytes": props.total_memory,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        info["sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
        info["sm_clock_max_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        info["mem_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        pynvml.nvmlShutdown()
    except Exception as exc:  # NVML is optional: record why it was not read
        info["nvml_error"] = f"{type(exc).__name__}: {exc}"
    return info


@functools.cache
def fingerprint() -> dict:
    """The environment as a flat JSON-able dict (cached: it does not change within a process)."""
    import torch

    env = {
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "libraries": library_versions(),
    }
    env.update(_gpu())
    return env


def fingerprint_id(env: dict | None = None) -> str:
    """Short stable hash of the fingerprint, for grouping comparable records."""
    env = fingerprint() if env is None else env
    stable = {k: v for k, v in env.items() if k not in ("sm_clock_mhz", "mem_clock_mhz", "torch_threads")}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:12]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
