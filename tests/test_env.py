"""perfkit.env: the fingerprint describes the run's own GPU (cuda:1 as cuda:1, its NVML data
through its UUID), and reading it never fails."""

from __future__ import annotations

import types

import torch

from perfkit import env


def _gpus(monkeypatch, nvml):
    names = {0: "NVIDIA A100-SXM4-80GB", 1: "NVIDIA H200"}
    props = {i: types.SimpleNamespace(name=n, major=9 if i else 8, minor=0, total_memory=(i + 1) << 30,
                                      uuid=f"0000000{i}-0000-0000-0000-000000000000", pci_domain_id=0,
                                      pci_bus_id=i, pci_device_id=0) for i, n in names.items()}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: props[torch.device(dev).index])
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    monkeypatch.setattr("perfkit.deps.require", lambda name: nvml)
    monkeypatch.setitem(__import__("sys").modules, "pynvml", nvml)


def test_fingerprint_describes_the_runs_own_gpu(monkeypatch):
    clocks = {"GPU-00000000-0000-0000-0000-000000000000": 1410, "GPU-00000001-0000-0000-0000-000000000000": 1980}
    nvml = types.SimpleNamespace(
        nvmlInit=lambda: None, NVMLError=LookupError, NVML_CLOCK_SM=0, NVML_CLOCK_MEM=1,
        nvmlDeviceGetHandleByUUID=lambda uuid: uuid, nvmlSystemGetDriverVersion=lambda: "580.00",
        nvmlDeviceGetClockInfo=lambda h, kind: clocks[h], nvmlDeviceGetMaxClockInfo=lambda h, kind: clocks[h],
        nvmlDeviceGetUUID=lambda h: h)
    _gpus(monkeypatch, nvml)
    info = env._gpu("cuda:1")
    assert (info["gpu_name"], info["gpu_index"], info["compute_capability"]) == ("NVIDIA H200", 1, "9.0")
    assert info["nvml_uuid"] == "GPU-00000001-0000-0000-0000-000000000000" and info["sm_clock_mhz"] == 1980


def test_an_nvml_failure_is_recorded_not_raised(monkeypatch):
    def broken():
        raise RuntimeError("NVML Shared Library Not Found")

    nvml = types.SimpleNamespace(nvmlInit=broken, NVMLError=LookupError)
    _gpus(monkeypatch, nvml)
    info = env._gpu("cuda:0")
    assert info["gpu_name"] == "NVIDIA A100-SXM4-80GB" and "NVML Shared Library Not Found" in info["nvml_error"]


def test_cpu_features_are_read_on_x86_and_on_arm(tmp_path):
    from perfkit.env import cpu_flags

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_int8 amx_tile\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm asimdhp asimddp i8mm bf16 sve sve2\n")
    assert cpu_flags(str(x86)) == ["avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"]
    assert cpu_flags(str(arm)) == ["asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2"]
    assert cpu_flags(str(tmp_path / "missing")) is None  # not readable: not measured, never "no features"
