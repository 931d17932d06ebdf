"""Environment fingerprint: what a measurement ran on.

Stored with every run so that two numbers are compared only when their environments match. It
describes the run's own device (``cuda:1`` is described as cuda:1, not as GPU 0). Reading it never
fails: a field that cannot be read is ``None``, with the reason where there is one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
from importlib import metadata

CORE_LIBRARIES = ("torch", "torchvision", "timm", "perfkit")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


# The instruction-set features that decide what reduced precision buys on a CPU: int8 dot products
# (VNNI, AMX) and bf16 arithmetic (AVX512_BF16, AMX). Without them int8 gains ~2× at most (AVX2 u8×s8
# multiply-adds) and bf16 is emulated (slower than fp32).
# On ARM (Linux's "Features" line): int8 dot products (asimddp, i8mm: int8 matrix multiply), bf16
# arithmetic (bf16), fp16 arithmetic (asimdhp) and scalable vectors (sve, sve2).
CPU_FEATURES = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                "amx_int8", "amx_bf16", "avx512_fp16", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")


@functools.cache
def cpu_flags(path: str = "/proc/cpuinfo") -> list[str] | None:
    """The ``CPU_FEATURES`` this CPU has (x86's "flags" line or ARM's "Features" line of /proc/cpuinfo),
    or None where it cannot be read (macOS, Windows: not measured, never "none")."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in CPU_FEATURES if flag in have]
    except OSError:
        pass
    return None


# What the hardware accelerates, by the CPU features that do it (``cpu_flags``): int8 dot
# products (VNNI, AMX-INT8, ARM's dot-product and int8 matrix instructions; AVX2's u8×s8 multiply-add
# gains up to ~2×), bf16 arithmetic (AVX512-BF16, AMX-BF16, ARM's BF16) and fp16 arithmetic
# (AVX512-FP16, ARM's half-precision SIMD). On CUDA: fp16 and int8 (tensor cores).
ACCELERATING = {
    "int8": ("amx_int8", "avx512_vnni", "avx_vnni", "i8mm", "asimddp", "avx2"),
    "bf16": ("amx_bf16", "avx512_bf16", "bf16"),
    "fp16": ("avx512_fp16", "asimdhp"),
}


def accelerated(device: str, flags: list[str] | None = None) -> dict[str, str]:
    """Reduced precision → the feature that accelerates it on ``device`` (``flags``: the CPU's
    features, default this CPU's; None where they cannot be read: nothing is assumed)."""
    from perfkit.device import device_type

    if device_type(device) == "cuda":
        return {"fp16": "CUDA tensor cores", "int8": "CUDA tensor cores"}
    return _cpu_accelerated(cpu_flags() or [] if flags is None else flags)


def _cpu_accelerated(flags: list[str]) -> dict[str, str]:
    """``accelerated`` on a CPU with the features ``flags`` (no torch needed: reports call it too)."""
    have = set(flags)
    return {precision: next(f for f in features if f in have)
            for precision, features in ACCELERATING.items() if have & set(features)}


def library_versions(names) -> dict[str, str]:
    """Installed versions of the distributions ``names`` (those not installed are left out)."""
    out = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _gpu(device: str) -> dict:
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return {"gpu_name": None}
    dev = torch.device(device)
    props = torch.cuda.get_device_properties(dev)
    info = {
        "gpu_name": props.name,
        "gpu_index": dev.index,
        "gpu_count": torch.cuda.device_count(),
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_bytes": props.total_memory,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        from perfkit.device import nvml_handle

        handle = nvml_handle(dev)
        import pynvml

        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        info["sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
        info["sm_clock_max_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        info["mem_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        info["nvml_uuid"] = pynvml.nvmlDeviceGetUUID(handle)
        info["nvml_name"] = pynvml.nvmlDeviceGetName(handle)
        info["nvml_memory_bytes"] = pynvml.nvmlDeviceGetMemoryInfo(handle).total
    except Exception as exc:  # NVML is optional: record why it was not read
        info["nvml_error"] = f"{type(exc).__name__}: {exc}"
    return info


@functools.cache
def fingerprint(device: str = "cpu", libraries: tuple[str, ...] = ()) -> dict:
    """The environment of a run on ``device`` as a flat JSON-able dict (cached per device), with the
    versions of the core libraries and of ``libraries`` (the caller's: the backend registry's, which
    this module sits below and never imports)."""
    import torch

    env = {
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "libraries": library_versions((*CORE_LIBRARIES, *libraries)),
    }
    env.update(_gpu(device))
    env["hardware"] = hardware(env)
    return env


def fingerprint_id(env: dict | None = None) -> str:
    """Short stable hash of the fingerprint, for grouping comparable records."""
    env = fingerprint() if env is None else env
    volatile = ("sm_clock_mhz", "mem_clock_mhz", "torch_threads", "cuda_visible_devices")
    stable = {k: v for k, v in env.items() if k not in volatile}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:12]


# AVX-512 itself and every feature that accelerates a reduced precision (``ACCELERATING``): the flags
# that decide how fast a CPU runs a model. The rest of ``CPU_FEATURES`` (fma, f16c, sve, ...) does not
# split machines.
HARDWARE_FLAGS = ("avx512f", *dict.fromkeys(f for features in ACCELERATING.values() for f in features))
_MARKETING = re.compile(r"\((?:R|TM|C)\)|\bCPU\b|\bProcessor\b|\d+-Core|@.*$", re.IGNORECASE)


def short_cpu_model(model: str | None) -> str:
    """``Intel(R) Xeon(R) Platinum 8480+`` → ``Intel Xeon Platinum 8480+``; ``AMD EPYC 7B13 64-Core
    Processor`` → ``AMD EPYC 7B13`` (the clock and the trademarks name no other chip)."""
    return " ".join(_MARKETING.sub(" ", model or "").split()) or "unknown CPU"


def _label_flags(flags: list[str]) -> list[str]:
    """The flags a label shows: the one that accelerates each reduced precision (``accelerated``), and
    AVX-512 where none of those already implies it."""
    shown = list(dict.fromkeys(_cpu_accelerated(flags).values()))
    if "avx512f" in flags and not any(f.startswith(("avx512", "amx")) for f in shown):
        shown.append("avx512f")
    return shown


def _digest(parts) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def hardware(env: dict, device: str | None = None) -> dict:
    """The hardware identity of a fingerprint (``fingerprint``) for work on ``device`` (default: the
    fingerprint's own): what did the work, a short ``label`` and a ``key`` (12 hex digits) for grouping;
    ``known`` is false where the fingerprint does not name the CPU or GPU (an empty one).

    On CUDA the GPU did the work: its model and memory make the key (torch's figures, which every CUDA
    fingerprint has; NVML's, read where nvidia-ml-py is installed, only where torch's are missing: NVML
    counts a few hundred MiB more and would split one GPU in two); the driver is recorded but is not part
    of the key (a driver update is compared, not a new machine). On the CPU: the model, the logical CPU
    count and the ``HARDWARE_FLAGS`` it has. The host name is never part of it: two identical machines are
    one hardware. Works on fingerprints recorded before this existed (it reads only their cpu_model,
    cpu_flags, cpu_count and gpu_* fields); the key is what groups records, so changing what goes into
    it splits old records from new ones.
    """
    if str(device or env.get("device") or "cpu").startswith("cuda"):  # torch.device(...).type, without torch
        name = env.get("gpu_name") or env.get("nvml_name")
        memory = env.get("gpu_memory_bytes") or env.get("nvml_memory_bytes")
        gib = round(memory / 2**30) if isinstance(memory, (int, float)) and memory > 0 else None
        label = (name or "unknown GPU") + ("" if gib is None or "GB" in (name or "") else f" {gib}GiB")
        return {"kind": "gpu", "key": _digest(["gpu", name, gib]), "label": label, "known": name is not None,
                "gpu_name": name, "gpu_memory_bytes": memory, "nvml_memory_bytes": env.get("nvml_memory_bytes"),
                "driver": env.get("driver")}
    read = env.get("cpu_flags")
    flags = None if read is None else [f for f in HARDWARE_FLAGS if f in read]
    model, count = short_cpu_model(env.get("cpu_model")), env.get("cpu_count")
    label = " ".join(filter(None, (model, f"×{count}" if count else None, "+".join(_label_flags(flags or [])))))
    return {"kind": "cpu", "key": _digest(["cpu", model, count, flags]), "label": label,
            "known": env.get("cpu_model") is not None, "cpu_model": env.get("cpu_model"), "cpu_flags": flags,
            "cpu_count": count}
