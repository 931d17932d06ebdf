"""perfkit.env: the fingerprint describes the run's own GPU (cuda:1 as cuda:1, its NVML data
through its UUID), and reading it never fails."""

from __future__ import annotations

import types

import pytest

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


def _nvml(**calls):
    """A fake pynvml holding the calls ``env._gpu`` makes on ``_gpus``' GPUs, and ``calls``."""
    clocks = {"GPU-00000000-0000-0000-0000-000000000000": 1410, "GPU-00000001-0000-0000-0000-000000000000": 1980}
    names = {"GPU-00000000-0000-0000-0000-000000000000": "NVIDIA A100-SXM4-80GB",
             "GPU-00000001-0000-0000-0000-000000000000": "NVIDIA H200"}
    return types.SimpleNamespace(**{
        "nvmlInit": lambda: None, "NVMLError": LookupError, "NVML_CLOCK_SM": 0, "NVML_CLOCK_MEM": 1,
        "nvmlDeviceGetHandleByUUID": lambda uuid: uuid, "nvmlSystemGetDriverVersion": lambda: "580.00",
        "nvmlDeviceGetClockInfo": lambda h, kind: clocks[h], "nvmlDeviceGetMaxClockInfo": lambda h, kind: clocks[h],
        "nvmlDeviceGetUUID": lambda h: h, "nvmlDeviceGetName": lambda h: names[h],
        "nvmlDeviceGetMemoryInfo": lambda h: types.SimpleNamespace(total=(2 << 30) + (300 << 20), free=0, used=0),
        **calls})



def test_fingerprint_describes_the_runs_own_gpu(monkeypatch):
    _gpus(monkeypatch, _nvml())
    info = env._gpu("cuda:1")
    assert (info["gpu_name"], info["gpu_index"], info["compute_capability"]) == ("NVIDIA H200", 1, "9.0")
    assert info["nvml_uuid"] == "GPU-00000001-0000-0000-0000-000000000000" and info["sm_clock_mhz"] == 1980
    assert info["nvml_name"] == "NVIDIA H200" and "nvml_error" not in info


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


def test_the_fake_nvml_uses_the_real_pynvml_api():
    pynvml = pytest.importorskip("pynvml")
    fake = _nvml()
    assert [name for name in vars(fake) if not hasattr(pynvml, name)] == []
    assert {"total", "free", "used"} <= set(dir(pynvml.c_nvmlMemory_t)) | {f[0] for f in pynvml.c_nvmlMemory_t._fields_}


def test_a_gpus_hardware_is_its_model_and_memory_with_the_driver_recorded(monkeypatch):
    _gpus(monkeypatch, _nvml())
    h200 = env.hardware({**env._gpu("cuda:1"), "device": "cuda:1", "cpu_model": "AMD EPYC"})
    # torch's 2 GiB make the key, not NVML's 2.3: old records (torch's figure only) group with new ones
    assert h200["label"] == "NVIDIA H200 2GiB" and h200["driver"] == "580.00" and h200["kind"] == "gpu"
    assert h200["nvml_memory_bytes"] == (2 << 30) + (300 << 20) and h200["gpu_memory_bytes"] == 2 << 30
    old = env.hardware({"device": "cuda:1", "gpu_name": "NVIDIA H200", "gpu_memory_bytes": 2 << 30})
    assert old["key"] == h200["key"]
    a100 = env.hardware({**env._gpu("cuda:0"), "device": "cuda:0"})
    assert a100["label"] == "NVIDIA A100-SXM4-80GB" and a100["key"] != h200["key"]  # the name says its memory
    newer_driver = env.hardware({**env._gpu("cuda:1"), "device": "cuda:1", "driver": "590.10"})
    assert newer_driver["key"] == h200["key"]  # a driver update is compared, not a new machine


def test_without_nvml_the_gpu_is_named_from_torch(monkeypatch):
    def broken():
        raise RuntimeError("NVML Shared Library Not Found")

    _gpus(monkeypatch, _nvml(nvmlInit=broken))
    h200 = env.hardware({**env._gpu("cuda:1"), "device": "cuda:1"})
    assert h200["label"] == "NVIDIA H200 2GiB" and h200["driver"] is None


EPYC = {"cpu_model": "AMD EPYC 7B13 64-Core Processor", "cpu_count": 2, "cpu_flags": ["avx2", "fma", "f16c"]}


@pytest.mark.parametrize("changed, same", [
    ({"hostname": "another-box", "torch_threads": 1, "os": "Linux-6"}, True),  # another identical machine
    ({"cpu_flags": ["avx2", "fma", "f16c", "sve"]}, True),  # a flag that accelerates nothing perfkit runs
    ({"cpu_flags": ["avx2", "avx512f", "avx512_vnni"]}, False),
    ({"cpu_count": 4}, False),
    ({"cpu_model": "AMD EPYC 9654 96-Core Processor"}, False),
])
def test_a_cpus_key_changes_with_what_decides_its_speed_only(changed, same):
    base = env.hardware({"hostname": "ci-1", **EPYC})
    assert (env.hardware({"hostname": "ci-1", **EPYC, **changed})["key"] == base["key"]) == same


def test_a_cpus_label_is_short_and_names_what_it_accelerates():
    assert env.hardware(EPYC)["label"] == "AMD EPYC 7B13 ×2 avx2"
    xeon = {"cpu_model": "Intel(R) Xeon(R) Platinum 8480+", "cpu_count": 224,
            "cpu_flags": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx512_fp16"]}
    assert env.hardware(xeon)["label"] == "Intel Xeon Platinum 8480+ ×224 amx_int8+amx_bf16+avx512_fp16"
    skylake = {"cpu_model": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cpu_count": 8, "cpu_flags": ["avx2", "avx512f"]}
    assert env.hardware(skylake)["label"] == "Intel Xeon ×8 avx2+avx512f"  # AVX-512 without VNNI still named
    arm = {"cpu_model": "aarch64", "cpu_count": 64, "cpu_flags": ["asimd", "asimdhp", "asimddp", "i8mm", "bf16"]}
    assert env.hardware(arm)["label"] == "aarch64 ×64 i8mm+bf16+asimdhp"
    unreadable = env.hardware({"cpu_model": None, "cpu_count": None, "cpu_flags": None})
    assert unreadable["label"] == "unknown CPU" and unreadable["known"] is False and unreadable["cpu_flags"] is None


def test_the_fingerprint_carries_the_identity_of_its_own_fields():
    fp = env.fingerprint("cpu")
    assert fp["hardware"] == env.hardware({k: v for k, v in fp.items() if k != "hardware"})
    assert fp["hardware"]["cpu_count"] == fp["cpu_count"] and fp["hardware"]["known"] is (fp["cpu_model"] is not None)
