"""One device resolver and the device-wide switches every runtime shares (TF32, synchronisation)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from perfkit.errors import UsageError


def resolve_device(text: str | torch.device | None = "auto") -> str:
    """``auto``/``cpu``/``cuda``/``cuda:N`` → ``"cpu"`` or ``"cuda:N"`` (always with its index).

    The index is made explicit so that every later step (runners, CUDA events, memory, the engine
    cache key) agrees on one GPU instead of each taking "the current device".
    """
    text = "auto" if text is None else str(text).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got '{text}'") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got '{text}'")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {text}: no CUDA GPU is visible here; use --device cpu")
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return f"cuda:{index}"


def available_cores() -> int:
    """CPU cores this process may run on (the container's or taskset's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def device_type(device: str | torch.device) -> str:
    """``cpu`` or ``cuda``: what records and cache keys name."""
    return torch.device(device).type


@contextlib.contextmanager
def on_device(device: str | torch.device) -> Iterator[None]:
    """Make ``device`` the current CUDA device for the block (streams, events and TensorRT follow it).

    A no-op for the CPU, and where torch sees no GPU (whatever runs inside then fails with its own
    error, instead of this one).
    """
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        yield
        return
    with torch.cuda.device(dev):
        yield


def synchronize(device: str | torch.device) -> None:
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def pin_tf32(enabled: bool = False) -> None:
    """Pin TF32 the same way for every runtime before comparing numbers (off = strict fp32).

    One API only, the ``allow_tf32`` switches: mixing them with the newer ``fp32_precision``
    settings is an error, and torch's own Inductor (2.11–2.14) still reads ``cudnn.allow_tf32``:
    on torch 2.14.1, setting cuDNN's precision through the new API made every AOTInductor compile
    fail with "a mix of the legacy and new APIs". The legacy setters write the new state too, so
    both read back consistently (tests/test_device.py). They emit no warning on 2.14.1, nor on any
    torch from 2.10: the deprecation warning 2.9 gave them was deleted (pytorch/pytorch#166956).
    """
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def nvml_handle(device: str | torch.device):
    """The NVML handle of the CUDA device torch calls ``device``.

    NVML numbers GPUs by PCI order and ignores ``CUDA_VISIBLE_DEVICES`` (which SLURM sets), so
    NVML index N is often not CUDA index N: the device is matched by its UUID instead (``GPU-…``,
    or ``MIG-…`` for a MIG instance), and by PCI bus id when NVML knows neither. NVML's index is
    never used.
    """
    from perfkit.deps import require

    pynvml = require("pynvml")
    pynvml.nvmlInit()
    props = torch.cuda.get_device_properties(torch.device(device))
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        text = str(uuid)  # torch prints the bare uuid; NVML wants it prefixed
        bare = text.split("-", 1)[1] if text.startswith(("GPU-", "MIG-")) else text
        for candidate in (f"GPU-{bare}", f"MIG-{bare}"):
            try:
                return pynvml.nvmlDeviceGetHandleByUUID(candidate)
            except pynvml.NVMLError:  # not found, or a MIG uuid asked for as GPU-
                continue
    bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    return pynvml.nvmlDeviceGetHandleByPciBusId(bus)

