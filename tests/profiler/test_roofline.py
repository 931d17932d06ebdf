import pytest
import torch

from perfkit.profiler.roofline import Peak, cpu_peak, device_peak, gpu_peak, model_flops, roofline


def test_roofline_arithmetic():
    out = roofline(flops_per_sample=10**9, batch=4, median_ms=2.0, peak=Peak(4000.0, "test"))
    assert out["achieved_gflops"] == pytest.approx(2000.0)  # 4 GFLOP in 2 ms
    assert out["peak_fraction"] == pytest.approx(0.5)
    assert out["peak_source"] == "test"
    none = roofline(10**9, 1, 1.0, None)
    assert none["peak_fraction"] is None and none["achieved_gflops"] == pytest.approx(1000.0)


@pytest.mark.parametrize("name, precision, tflops", [
    ("NVIDIA H100 80GB HBM3", "fp16", 989.4),
    ("NVIDIA H100 PCIe", "fp32", 51.2),
    ("NVIDIA H200", "bf16", 989.4),
    ("NVIDIA A100-SXM4-40GB", "fp32", 19.5),
    ("NVIDIA A10G", "fp16", 70.0),
    ("NVIDIA A10", "fp16", 125.0),
    ("NVIDIA L4", "fp16", 121.0),
    ("Tesla T4", "fp32", 8.1),
    ("NVIDIA GeForce RTX 4090", "fp16", 165.2),
])
def test_gpu_peak_table(name, precision, tflops):
    peak = gpu_peak(name, precision)
    assert peak.gflops == pytest.approx(tflops * 1000)
    assert "datasheet" in peak.source or "whitepaper" in peak.source or "specifications" in peak.source


def test_unknown_gpu_or_precision_has_no_peak():
    assert gpu_peak("Some Future GPU", "fp32") is None
    assert gpu_peak("Tesla T4", "bf16") is None  # Turing has no bf16


# What torch.cuda.get_device_name says -> the table row it must match (None: no peak rather than another GPU's).
@pytest.mark.parametrize("name, source", [
    ("NVIDIA L4", "NVIDIA L4 datasheet"),
    ("NVIDIA L40", None),  # not the L4 (a substring match took it for one)
    ("NVIDIA L40S", "NVIDIA L40S datasheet"),
    ("NVIDIA H200", "NVIDIA H200 datasheet (SXM)"),
    ("NVIDIA H200 NVL", "NVIDIA H200 datasheet (NVL)"),  # not the SXM part
    ("NVIDIA GH200 480GB", None),  # not an H200
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 datasheet (SXM)"),
    ("NVIDIA H100 PCIe", "NVIDIA H100 datasheet (PCIe)"),
    ("NVIDIA H100 NVL", "NVIDIA H100 datasheet (NVL)"),
    ("NVIDIA H800", None),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 datasheet"),
    ("NVIDIA A100 80GB PCIe", "NVIDIA A100 datasheet (PCIe)"),
    ("Tesla V100-PCIE-16GB", None),  # another SKU than the SXM2 row: no peak rather than the wrong one
    ("NVIDIA A10G", "AWS/NVIDIA A10G specifications"),
    ("NVIDIA A10", "NVIDIA A10 datasheet"),
    ("NVIDIA A16", None),
    ("Tesla V100-SXM2-16GB", "NVIDIA V100 datasheet (SXM2)"),
    ("Tesla T4", "NVIDIA T4 datasheet"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA Ada whitepaper (RTX 4090, fp32 accumulate)"),
    ("NVIDIA GeForce RTX 4090 D", None),  # fewer SMs than the 4090
    ("NVIDIA GeForce RTX 3090 Ti", None),
    ("NVIDIA GeForce RTX 4070", None),
])
def test_gpu_names_match_whole_words_only(name, source):
    peak = gpu_peak(name, "fp32")
    assert (peak.source.split(":")[0] if peak else None) == source


def test_no_table_row_is_shadowed_by_an_earlier_one():
    """A row listed after a row whose words are a subset of its own could never match."""
    from perfkit.profiler.roofline import _GPU_PEAKS_TFLOPS

    rows = [frozenset(words) for words, _, _ in _GPU_PEAKS_TFLOPS]
    for i, later in enumerate(rows):
        assert not any(earlier <= later for earlier in rows[:i]), f"row {sorted(later)} is shadowed"


def test_cpu_peak_is_measured_and_cached():
    peak = cpu_peak(1, torch.float32, n=256, repeats=2)
    assert peak.gflops > 0.1
    assert peak.source.startswith("measured") and "1 threads" in peak.source
    assert cpu_peak(1, torch.float32, n=256, repeats=2) is peak
    assert device_peak("cpu", "int8") is None


def test_model_flops_match_a_hand_count(tiny_spec):
    # LeNet-5 at 3x32x32, MACs by hand: conv1 6*28*28*(3*25) + conv2 16*10*10*(6*25) + fc 400*120 + 120*84 + 84*10
    macs = 6 * 28 * 28 * 75 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    flops, source = model_flops(tiny_spec)
    assert flops == 2 * macs
    assert "2 x MACs" in source


def _fake_mm(monkeypatch, seconds_at_512: float):
    """``torch.mm`` timings of a CPU on which a 512×512 product takes ``seconds_at_512`` (cubic in size)."""
    from perfkit.profiler import roofline as R

    sizes = []

    def timed(a, b):
        sizes.append(a.shape[0])
        return seconds_at_512 * (a.shape[0] / 512) ** 3

    monkeypatch.setattr(R, "_timed_mm", timed)
    return sizes


def test_cpu_peak_of_a_slow_dtype_is_measured_at_a_smaller_size(monkeypatch):
    # bf16 on a CPU without bf16 kernels: 1.2 s at 512, so about 77 s at 2048 (measured on the dev machine)
    sizes = _fake_mm(monkeypatch, 1.2)
    peak = cpu_peak.__wrapped__(1, torch.bfloat16)  # uncached
    assert max(sizes) == 512  # grown while a product took < 0.25 s, never to 2048
    timed = sizes[sizes.index(512) + 1:]
    assert len(timed) == 3  # the 3 s budget stops the repeats after the minimum of three
    assert sum(1.2 * (s / 512) ** 3 for s in sizes) < 10  # seconds spent: not minutes
    assert peak.gflops == pytest.approx(2 * 512**3 / 1.2 / 1e9)
    assert "512x512 bfloat16, best of 3" in peak.source


def test_cpu_peak_of_a_fast_dtype_uses_the_full_size(monkeypatch):
    sizes = _fake_mm(monkeypatch, 0.1 / 64)  # 0.1 s at 2048
    peak = cpu_peak.__wrapped__(2, torch.float32)
    assert sizes[-10:] == [2048] * 10 and sizes.count(2048) == 11  # warm-up + best of 10 at 2048, as before
    assert peak.gflops == pytest.approx(2 * 2048**3 / 0.1 / 1e9)
    assert "2048x2048 float32, best of 10, 2 threads" in peak.source
