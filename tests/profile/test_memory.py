import pytest
import torch

from perfkit.context import Context
from perfkit.profile.memory import HostPeak, MemoryResult, artifact_size, measure_memory
from perfkit.record import to_records
from perfkit.store import SCHEMAS, Kind
from perfkit.zoo.registry import resolve


def test_host_peak_sees_an_allocation():
    peak = HostPeak()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert block.sum() > 0
    del block
    assert peak.delta() >= 60 * 2**20  # a peak: still seen after the memory is freed
    assert "RSS" in peak.method


def test_artifact_size_counts_every_file_of_the_artifact(tiny_spec, tmp_path):
    """The ONNX graph's external data counts, not only the main file (the IR's .bin likewise)."""
    from perfkit.backends import prepare
    from perfkit.context import Context

    art = prepare(tiny_spec, "onnx", Context(artifacts=tmp_path))
    assert artifact_size(art) == sum(p.stat().st_size for p in art.dir.iterdir() if p.name != "manifest.json")
    assert artifact_size(art) > art.path.stat().st_size
    assert artifact_size(None) is None


def test_spawned_process_reports_the_model_memory(tmp_path):
    spec = resolve("resnet18", "random")
    params_bytes = 11_689_512 * 4  # resnet18's fp32 weights must be resident at the peak
    result = measure_memory(spec, "eager", 1, Context(device="cpu", artifacts=tmp_path))
    assert isinstance(result, MemoryResult)
    assert result.details["rss_delta_bytes"] == result.peak_bytes >= params_bytes
    assert result.peak_bytes < 2 * 2**30
    assert "RSS" in result.method
    w = result.where
    assert (w.model, w.runtime, w.precision, w.batch, w.device, w.weights) == (
        "resnet18", "eager", "fp32", 1, "cpu", "random:seed0")
    assert all(v is not None for v in result.details.values())  # unknown numbers are left out, not None
    [record] = to_records(result)
    record.validate()  # the record fits the memory schema
    assert SCHEMAS[Kind.MEMORY].required <= record.metrics.keys()


def test_spawned_failure_becomes_an_error(tiny_spec, tmp_path):
    from perfkit.errors import PerfkitError

    with pytest.raises(PerfkitError, match="memory measurement of lenet5 eager batch 1 failed.*int8"):
        measure_memory(tiny_spec, "eager", 1, Context(artifacts=tmp_path), precision="int8")  # eager has no int8


@pytest.mark.gpu
def test_cuda_torch_runtime_uses_the_allocator(tmp_path):
    spec = resolve("resnet18", "random")
    result = measure_memory(spec, "eager", 8, Context(device="cuda:0", artifacts=tmp_path))
    assert result.peak_bytes >= 11_689_512 * 4
    assert "torch allocator" in result.method
    assert result.details["gpu_context_bytes"] > 0  # NVML sees the CUDA context
    assert result.where.device == "cuda"
    to_records(result)[0].validate()


@pytest.mark.gpu
def test_cuda_onnxruntime_uses_nvml(tmp_path):
    spec = resolve("resnet18", "random")
    result = measure_memory(spec, "onnx", 8, Context(device="cuda:0", artifacts=tmp_path))
    assert "NVML" in result.method and result.peak_bytes > 0 and result.details["gpu_context_bytes"] > 0
    assert result.details["artifact_bytes"] > 11_689_512 * 4 * 0.9  # the ONNX file holds the fp32 weights
    to_records(result)[0].validate()
