"""TensorRT: the GPU-free parts (missing extra, profile, timing cache, parser errors, compatibility).

The engine build and the runner need a GPU and TensorRT: tests/backends/test_runners.py marks
them `tensorrt`. On the development machine they have never run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from perfkit.artifacts import Artifact, ensure_artifact
from perfkit.artifacts import cache as C
from perfkit.backends import get
from perfkit.backends import tensorrt as T
from perfkit.backends.tensorrt import TensorRTRunner
from perfkit.context import Context
from perfkit.errors import ArtifactError, MissingDependency, UsageError
from perfkit.vocab import BatchRange

GPU = "cuda-NVIDIA_H100_80GB_HBM3-sm90"


def test_missing_extra_names_the_pip_extra(tiny_spec, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` now fails
    monkeypatch.setattr(C, "device_identity", lambda device: GPU)  # no GPU needed to key the cache
    with pytest.raises(MissingDependency, match=r"pip install 'perfkit\[tensorrt\]'"):
        ensure_artifact(tiny_spec, get("tensorrt"), Context(device="cuda:0", artifacts=tmp_path))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_backend_declares_the_extra_and_gpu_only(monkeypatch):
    trt = get("tensorrt")
    assert trt.extra == "tensorrt" and trt.device_specific and trt.devices == ("cuda",)
    with pytest.raises(UsageError, match="tensorrt does not run on cpu; it runs on cuda"):
        trt.check("fp32", "cpu")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else object())
    assert trt.unavailable("cuda:0") == "tensorrt needs 'tensorrt' (pip install 'perfkit[tensorrt]')"


def _manifest(tiny_spec, **extra):
    return {"backend": "tensorrt", "precision": "fp32", "device": "cuda", "batch": {"min": 1, "opt": 8, "max": 256},
            "model": {"name": "lenet5", "weights": {"identity": tiny_spec.weights.identity}},
            "inputs": [{"shape": ["batch", 3, 32, 32]}], **extra}


def test_runner_without_extra_names_the_pip_extra(tiny_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr("perfkit.artifacts.device_identity", lambda device: GPU)
    runner = TensorRTRunner(tiny_spec, artifact=Artifact(Path("model.engine"), _manifest(tiny_spec, compiled_for=GPU)),
                            device="cuda:0")
    with pytest.raises(MissingDependency, match=r"perfkit\[tensorrt\]"):
        runner.__enter__()


def test_runner_refuses_an_engine_of_another_gpu_before_loading(tiny_spec, monkeypatch):
    monkeypatch.setattr("perfkit.artifacts.device_identity", lambda device: "cuda-NVIDIA_L4-sm89")
    with pytest.raises(ArtifactError, match=f"compiled for {GPU}, not for this cuda-NVIDIA_L4-sm89"):
        TensorRTRunner(tiny_spec, artifact=Artifact(Path("model.engine"), _manifest(tiny_spec, compiled_for=GPU)),
                       device="cuda:0")


def test_profile_covers_the_batch_range():
    assert T.profile_shapes(BatchRange(1, 8, 64), (3, 224, 224)) == (
        (1, 3, 224, 224), (8, 3, 224, 224), (64, 3, 224, 224))


def test_one_profile_per_tuned_batch_inside_the_range():
    whole = BatchRange(1, 8, 64)
    assert T.profile_batches(whole, None) == [whole]
    assert T.profile_batches(whole, (32, 1, 1, 128)) == [whole, BatchRange(1, 1, 1), BatchRange(32, 32, 32)]


def test_timing_cache_is_per_gpu_and_version(tmp_path):
    a = T.timing_cache_path(tmp_path, "NVIDIA H100 80GB HBM3", "10.9.0.34")
    assert a == tmp_path / "tensorrt" / "timing-NVIDIA-H100-80GB-HBM3-trt10.9.0.34.cache"
    assert T.timing_cache_path(tmp_path, "NVIDIA H100 80GB HBM3", "11.0.0") != a
    assert T.timing_cache_path(tmp_path, "NVIDIA A100-SXM4-40GB", "10.9.0.34") != a


class _Err:
    def __init__(self, code, desc, node=-1, name="", op=""):
        self._v = (code, desc, node, name, op)

    def code(self): return self._v[0]
    def desc(self): return self._v[1]
    def node(self): return self._v[2]
    def node_name(self): return self._v[3]
    def node_operator(self): return self._v[4]


class _Parser:
    def __init__(self, errors):
        self.errors = errors

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]


def test_parser_errors_are_verbatim():
    parser = _Parser([_Err("ErrorCode.UNSUPPORTED_NODE", "No importer registered for op: Foo", 7, "/m/Foo", "Foo"),
                      _Err("ErrorCode.INVALID_GRAPH", "graph has no outputs")])
    assert T.parser_errors(parser) == [
        "  ErrorCode.UNSUPPORTED_NODE: No importer registered for op: Foo (node 7 '/m/Foo' Foo)",
        "  ErrorCode.INVALID_GRAPH: graph has no outputs",
    ]


def test_engine_from_another_gpu_or_version_is_refused():
    manifest = {"tensorrt": {"tensorrt_version": "10.9.0", "gpu_name": "NVIDIA H100", "compute_capability": "9.0"}}
    T.check_compatible(manifest, "10.9.0", "NVIDIA H100", "9.0")
    with pytest.raises(ArtifactError, match="gpu_name: built with 'NVIDIA H100', this machine has 'NVIDIA L4'"):
        T.check_compatible(manifest, "10.9.0", "NVIDIA L4", "8.9")
    with pytest.raises(ArtifactError, match="tensorrt_version: built with '10.9.0'"):
        T.check_compatible(manifest, "11.0.0", "NVIDIA H100", "9.0")


def test_cpu_device_is_refused_before_building(monkeypatch):
    with pytest.raises(ArtifactError, match="CUDA GPU"):
        T.current_gpu("cpu")
