"""perfkit.device: one explicit cuda:N, the device made current, TF32 pinned through one API, and
the NVML handle of the run's GPU found by UUID (never by index) — on fakes where a GPU is needed."""

from __future__ import annotations

import types
import warnings

import pytest
import torch

from perfkit import device as D
from perfkit.errors import UsageError


@pytest.fixture
def two_gpus(monkeypatch):
    """torch sees two GPUs, cuda:1 current (as under CUDA_VISIBLE_DEVICES=3,1 with torch.cuda.set_device(1))."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)


@pytest.mark.parametrize("text, resolved", [("cuda", "cuda:1"), ("auto", "cuda:1"), ("cuda:0", "cuda:0"),
                                            (" CUDA:1 ", "cuda:1"), ("cpu", "cpu"), (None, "cuda:1")])
def test_resolve_device_names_one_gpu_explicitly(two_gpus, text, resolved):
    assert D.resolve_device(text) == resolved


@pytest.mark.parametrize("text, message", [("cuda:2", "only 2 CUDA device"), ("mps", "must be cpu, cuda"),
                                           ("gpu", "must be cpu, cuda")])
def test_resolve_device_refuses_what_does_not_exist(two_gpus, text, message):
    with pytest.raises(UsageError, match=message):
        D.resolve_device(text)


def test_resolve_device_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.resolve_device("auto") == "cpu"
    with pytest.raises(UsageError, match="no CUDA GPU is visible here; use --device cpu"):
        D.resolve_device("cuda")


def test_on_device_makes_the_gpu_current_and_is_a_no_op_elsewhere(monkeypatch):
    entered = []
    monkeypatch.setattr(torch.cuda, "device", lambda dev: entered.append(dev) or _Null())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with D.on_device("cuda:1"):
        pass
    with D.on_device("cpu"):
        pass
    assert entered == [torch.device("cuda:1")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with D.on_device("cuda:1"):  # no GPU: whatever runs inside fails with its own error
        pass
    assert len(entered) == 1


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_pin_tf32_uses_one_api_and_repairs_a_mixed_state():
    """The legacy switches only: Inductor reads `allow_tf32`, which raises once the new
    `fp32_precision` API has set a state the legacy one cannot express; setting the legacy
    switches sets both APIs consistently (and warns on no torch perfkit supports)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            D.pin_tf32(False)
            assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
            assert torch.get_float32_matmul_precision() == "highest"
            torch.backends.cudnn.conv.fp32_precision = "tf32"  # someone used the new API for convolutions only
            with pytest.raises(RuntimeError, match=r"mix of (the )?legacy"):
                _ = torch.backends.cudnn.allow_tf32
            D.pin_tf32(False)
            assert torch.backends.cudnn.allow_tf32 is False  # readable again
            assert torch.backends.cudnn.conv.fp32_precision != "tf32"
    finally:
        D.pin_tf32(False)


# -- NVML ---------------------------------------------------------------------------------------


class _NotFound(Exception):
    pass


def _fake_nvml(handles: dict[str, str]):
    """pynvml with GPUs by UUID / PCI bus id; asking by index fails the test."""
    calls = []

    def by_uuid(uuid):
        calls.append(("uuid", uuid))
        if uuid not in handles:
            raise _NotFound(uuid)
        return handles[uuid]

    def by_bus(bus):
        calls.append(("bus", bus))
        return handles[bus]

    def by_index(i):
        raise AssertionError("NVML's index is not CUDA's index")

    return types.SimpleNamespace(nvmlInit=lambda: None, NVMLError=_NotFound, nvmlDeviceGetHandleByUUID=by_uuid,
                                 nvmlDeviceGetHandleByPciBusId=by_bus, nvmlDeviceGetHandleByIndex=by_index,
                                 calls=calls)


def _props(uuid, bus=0x3B):
    return types.SimpleNamespace(uuid=uuid, pci_domain_id=0, pci_bus_id=bus, pci_device_id=0, name="NVIDIA H200")


@pytest.mark.parametrize("torch_uuid, nvml_uuid", [
    ("58d0c1b6-1111-2222-3333-444455556666", "GPU-58d0c1b6-1111-2222-3333-444455556666"),  # what torch prints
    ("GPU-58d0c1b6-1111-2222-3333-444455556666", "GPU-58d0c1b6-1111-2222-3333-444455556666"),
    ("7a1e0c11-aaaa-bbbb-cccc-ddddeeeeffff", "MIG-7a1e0c11-aaaa-bbbb-cccc-ddddeeeeffff"),  # a MIG instance
])
def test_nvml_handle_is_found_by_uuid(monkeypatch, torch_uuid, nvml_uuid):
    nvml = _fake_nvml({nvml_uuid: "the run's GPU", "GPU-00000000-0000-0000-0000-000000000000": "NVML index 0"})
    monkeypatch.setattr("perfkit.deps.require", lambda name: nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: _props(torch_uuid))
    assert D.nvml_handle("cuda:1") == "the run's GPU"


def test_nvml_handle_falls_back_to_the_pci_bus_id(monkeypatch):
    nvml = _fake_nvml({"00000000:3b:00.0": "by bus"})
    monkeypatch.setattr("perfkit.deps.require", lambda name: nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: _props("unknown-uuid", bus=0x3B))
    assert D.nvml_handle("cuda:0") == "by bus"
    assert nvml.calls[-1] == ("bus", "00000000:3b:00.0")
