"""Roofline position: achieved GFLOP/s from the model's FLOPs and the measured latency, and the
fraction of the device's peak.

FLOPs follow perfkit's convention: one multiply-accumulate = 2 FLOPs (FLOPs = 2 × MACs of
conv + linear + matmul, counted at batch 1 and the model's native resolution). GPU peaks come from
a table of NVIDIA datasheet numbers (dense, no structured sparsity); CPU peaks are measured on this
machine with a large fp32 matmul at the thread count in use. The source of every peak is recorded.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

import torch

from perfkit.vocab import DTYPES, Precision


@dataclass(frozen=True)
class Peak:
    gflops: float
    source: str


# Dense peak TFLOP/s by (device-name words, precision), from NVIDIA datasheets at boost clock.
# fp32 is the CUDA-core FMA rate: perfkit pins TF32 off, so fp32 convolutions do not use tensor
# cores. fp16/bf16 are dense tensor-core rates with fp32 accumulation (half the "with sparsity"
# figure). A row matches when each of its words is a whole word of the device name (split at
# anything but letters and digits): "L4" is not "NVIDIA L40", "H200" is not "NVIDIA GH200". A
# word of the name that marks another SKU of the same chip (_VARIANTS: "H200 NVL", "RTX 3090 Ti")
# must be in the row too, so such a GPU gets its own row or no peak, never its sibling's. Rows with
# more words come first; a GPU matching no row has no peak (unknown rather than wrong).
_VARIANTS = frozenset({"NVL", "PCIE", "TI", "SUPER", "D"})
_GPU_PEAKS_TFLOPS: tuple[tuple[tuple[str, ...], dict[str, float], str], ...] = (
    (("H200", "NVL"), {"fp32": 60.0, "fp16": 835.5, "bf16": 835.5}, "NVIDIA H200 datasheet (NVL)"),
    (("H200",), {"fp32": 67.0, "fp16": 989.4, "bf16": 989.4}, "NVIDIA H200 datasheet (SXM)"),
    (("H100", "PCIE"), {"fp32": 51.2, "fp16": 756.0, "bf16": 756.0}, "NVIDIA H100 datasheet (PCIe)"),
    (("H100", "NVL"), {"fp32": 60.0, "fp16": 835.0, "bf16": 835.0}, "NVIDIA H100 datasheet (NVL)"),
    (("H100",), {"fp32": 67.0, "fp16": 989.4, "bf16": 989.4}, "NVIDIA H100 datasheet (SXM)"),
    (("A100", "PCIE"), {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0}, "NVIDIA A100 datasheet (PCIe)"),
    (("A100",), {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0}, "NVIDIA A100 datasheet"),
    (("L40S",), {"fp32": 91.6, "fp16": 362.1, "bf16": 362.1}, "NVIDIA L40S datasheet"),
    (("L4",), {"fp32": 30.3, "fp16": 121.0, "bf16": 121.0}, "NVIDIA L4 datasheet"),
    (("A10G",), {"fp32": 31.2, "fp16": 70.0, "bf16": 70.0}, "AWS/NVIDIA A10G specifications"),
    (("A10",), {"fp32": 31.2, "fp16": 125.0, "bf16": 125.0}, "NVIDIA A10 datasheet"),
    (("T4",), {"fp32": 8.1, "fp16": 65.0}, "NVIDIA T4 datasheet"),
    (("V100",), {"fp32": 15.7, "fp16": 125.0}, "NVIDIA V100 datasheet (SXM2)"),
    (("RTX", "4090"), {"fp32": 82.6, "fp16": 165.2, "bf16": 165.2}, "NVIDIA Ada whitepaper (RTX 4090, fp32 accumulate)"),
    (("RTX", "3090"), {"fp32": 35.6, "fp16": 71.0, "bf16": 71.0}, "NVIDIA Ampere GA102 whitepaper (RTX 3090, fp32 accumulate)"),
)


def name_words(device_name: str) -> frozenset[str]:
    """The whole words of a device name, upper case: "NVIDIA A100-SXM4-40GB" → {NVIDIA, A100, SXM4, 40GB}."""
    return frozenset(re.findall(r"[A-Z0-9]+", device_name.upper()))


def gpu_peak(device_name: str, precision: Precision | str) -> Peak | None:
    """The datasheet peak for a GPU name such as ``NVIDIA H100 80GB HBM3``; None when not in the table."""
    words = name_words(device_name)
    for row_words, peaks, source in _GPU_PEAKS_TFLOPS:
        if words.issuperset(row_words) and (words & _VARIANTS) <= set(row_words):
            tflops = peaks.get(str(Precision(precision)))
            if tflops is None:
                return None
            return Peak(tflops * 1000, f"{source}: {tflops} TFLOP/s dense {Precision(precision)}")
    return None


_PEAK_CALL_S = 0.25  # the matrix grows (up to n) while one product takes less than this
_PEAK_BUDGET_S = 3.0  # the timed repeats stop after this long (at least 3 are timed)


@functools.cache
def cpu_peak(threads: int, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10) -> Peak:
    """Measured matmul peak on this CPU at ``threads`` threads (cached per process).

    A square ``torch.mm`` is as close to the FMA roof as this machine's BLAS gets; the best of
    ``repeats`` runs is taken because a busy machine only ever makes it slower. At 1024 the
    measured peak came out below what ONNX Runtime reached on resnet18 (fraction > 1); 2048 is
    the size where this 2-core machine's BLAS peaked (175 vs 148 GFLOP/s at 1024).

    The matrix starts at 256 and doubles up to ``n`` while one product takes under 0.25 s, and the
    repeats stop after 3 s (at least 3): a dtype without fast kernels here (bf16 without
    AVX512-BF16 took ~75 s per 2048 product on the 2-core dev machine) is measured at a smaller
    size, where it is still compute-bound, instead of stalling a profile for minutes. The size
    used is in the source.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        size = min(256, n)
        while True:
            a = torch.randn(size, size).to(dtype)
            b = torch.randn(size, size).to(dtype)
            took = _timed_mm(a, b)  # warm-up: page in, let BLAS pick its kernel
            if size >= n or took >= _PEAK_CALL_S:
                break
            size = min(2 * size, n)
        times: list[float] = []
        while len(times) < repeats and (len(times) < 3 or sum(times) < _PEAK_BUDGET_S):
            times.append(_timed_mm(a, b))
    finally:
        torch.set_num_threads(previous)
    gflops = 2 * size**3 / min(times) / 1e9
    return Peak(gflops, f"measured: torch.mm {size}x{size} {str(dtype).removeprefix('torch.')}, "
                        f"best of {len(times)}, {threads} threads")


def _timed_mm(a: torch.Tensor, b: torch.Tensor) -> float:
    t0 = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - t0


def device_peak(device: str, precision: Precision | str, threads: int | None = None) -> Peak | None:
    """The peak for ``device`` ("cpu", "cuda", "cuda:1") at ``precision``; None when unknown."""
    dev = torch.device(device)
    precision = Precision(precision)
    if dev.type == "cuda":
        return gpu_peak(torch.cuda.get_device_name(dev), precision)
    if precision not in DTYPES:
        return None
    return cpu_peak(threads or torch.get_num_threads(), DTYPES[precision])


@functools.cache
def model_flops(spec) -> tuple[int, str] | None:
    """FLOPs of one sample at the model's native input size, and how they were counted; None where nothing
    can be counted (an engine that is compiled code)."""
    from perfkit.analysis.complexity import measure_complexity

    return flops_of(measure_complexity(spec))


def flops_of(counted) -> tuple[int, str] | None:
    """``model_flops`` from a model's Complexity already taken (None: nothing counted)."""
    return None if counted is None else (int(counted.flops), "perfkit.analysis.complexity (2 x MACs, batch 1)")


def roofline(flops_per_sample: int, batch: int, median_ms: float, peak: Peak | None) -> dict:
    """Record metrics: achieved GFLOP/s at the median latency and the fraction of ``peak``."""
    achieved = flops_per_sample * batch / (median_ms / 1000) / 1e9
    return {
        "flops_per_sample": flops_per_sample,
        "achieved_gflops": achieved,
        "peak_gflops": peak.gflops if peak else None,
        "peak_fraction": achieved / peak.gflops if peak else None,
        "peak_source": peak.source if peak else "no peak known for this device",
    }
