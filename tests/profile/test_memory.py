import pytest
import torch

from perfkit.profile.memory import HostPeak, artifact_bytes, measure_memory
from perfkit.store.schema import REQUIRED_METRICS, Kind
from perfkit.zoo.registry import resolve


def test_host_peak_sees_an_allocation():
    peak = HostPeak()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert block.sum() > 0
    del block
    assert peak.delta() >= 60 * 2**20  # a peak: still seen after the memory is freed
    assert "RSS" in peak.method


def test_artifact_bytes(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b").write_bytes(b"y" * 30)
    (tmp_path / "dir" / "c").write_bytes(b"z" * 12)
    assert artifact_bytes(tmp_path / "a.bin") == 100
    assert artifact_bytes(tmp_path / "dir") == 42
    assert artifact_bytes(None) is None


def test_spawned_process_reports_the_model_memory():
    spec = resolve("resnet18", "random")
    params_bytes = 11_689_512 * 4  # resnet18's fp32 weights must be resident at the peak
    out = measure_memory(spec, "eager", 1)
    assert out["rss_delta_bytes"] == out["peak_bytes"] >= params_bytes
    assert out["peak_bytes"] < 2 * 2**30
    assert "RSS" in out["method"]
    assert REQUIRED_METRICS[Kind.MEMORY] <= out.keys()


def test_spawned_failure_becomes_an_error(tiny_spec):
    from perfkit.errors import PerfkitError

    with pytest.raises(PerfkitError, match="memory measurement"):
        measure_memory(tiny_spec, "eager", 1, precision="int8")  # eager has no int8


@pytest.mark.gpu
def test_cuda_torch_runtime_uses_the_allocator():
    spec = resolve("resnet18", "random")
    out = measure_memory(spec, "eager", 8, device="cuda")
    assert out["peak_bytes"] >= 11_689_512 * 4
    assert "torch allocator" in out["method"]
    assert out["gpu_context_bytes"] > 0  # NVML sees the CUDA context


@pytest.mark.gpu
def test_cuda_onnxruntime_uses_nvml():
    spec = resolve("resnet18", "random")
    out = measure_memory(spec, "onnx", 8, device="cuda")
    assert "NVML" in out["method"] and out["peak_bytes"] > 0 and out["gpu_context_bytes"] > 0
