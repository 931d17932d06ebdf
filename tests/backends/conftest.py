"""Fixtures for backend tests: a fake TensorRT (checked against the real bindings by
test_tensorrt_bindings.py) that perfkit's TensorRT backend imports instead of the real one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FAKE_TENSORRT = Path(__file__).with_name("fake_tensorrt.py")


def load_fake_tensorrt():
    """A fresh copy of tests/backends/fake_tensorrt.py (its controls and call log start empty)."""
    spec = importlib.util.spec_from_file_location("perfkit_tests_fake_tensorrt", FAKE_TENSORRT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_trt(monkeypatch):
    """The fake TensorRT module, imported by perfkit's TensorRT backend in place of the real one,
    on a machine where torch has a GPU named "NVIDIA H100 80GB HBM3" (sm 9.0)."""
    from perfkit.backends import tensorrt as T

    trt = load_fake_tensorrt()
    monkeypatch.setattr(T, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(T, "current_gpu", lambda device: {"gpu_name": "NVIDIA H100 80GB HBM3",
                                                            "compute_capability": "9.0"})
    monkeypatch.setattr("perfkit.artifacts.device_identity", lambda device: "cuda-NVIDIA_H100_80GB_HBM3-sm90")
    monkeypatch.setattr("perfkit.artifacts.cache.device_identity", lambda device: "cuda-NVIDIA_H100_80GB_HBM3-sm90")
    return trt
