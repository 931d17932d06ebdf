"""TensorRT without a GPU: the missing extra, the export and the runner's load and profile
selection on a fake TensorRT (tests/backends/fake_tensorrt.py, checked against NVIDIA's real
bindings by test_tensorrt_bindings.py), and the pure helpers.

The real engine build and run need a GPU and TensorRT: tests/backends/test_runners.py marks them
`tensorrt`.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from perfkit.artifacts import Artifact, ensure_artifact
from perfkit.artifacts import cache as C
from perfkit.backends import get
from perfkit.backends import tensorrt as T
from perfkit.backends.tensorrt import TensorRTRunner
from perfkit.context import Context
from perfkit.errors import ArtifactError, InputError, MissingDependency, PerfkitError, UsageError
from perfkit.vocab import BatchRange

GPU = "cuda-NVIDIA_H100_80GB_HBM3-sm90"
ROOT = Path(__file__).resolve().parents[2]


def _no_tensorrt(monkeypatch):
    for name in T.IMPORT_NAMES:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now fails, find_spec says None


def test_missing_tensorrt_names_the_extra_for_torchs_cuda(tiny_spec, tmp_path, monkeypatch):
    _no_tensorrt(monkeypatch)
    monkeypatch.setattr(C, "device_identity", lambda device: GPU)  # no GPU needed to key the cache
    how = rf"pip install --extra-index-url https://pypi.nvidia.com 'perfkit\[{T.tensorrt_extra()}\]'"
    with pytest.raises(MissingDependency, match=how):  # the libraries' wheels are on NVIDIA's index
        ensure_artifact(tiny_spec, get("tensorrt"), Context(device="cuda:0", artifacts=tmp_path))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("cuda, extra", [("12.8", "tensorrt-cu12"), ("13.0", "tensorrt-cu13"), ("12.4", "tensorrt-cu12"),
                                         (None, "tensorrt-cu13")])
def test_extra_follows_torchs_cuda_major(cuda, extra):
    assert T.tensorrt_extra(cuda) == extra


def test_extras_pin_the_wheels_of_one_cuda_major_below_the_next_tensorrt_major():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "tensorrt" not in extras  # the metapackage's sdist pulls the CUDA 13 build whatever torch's CUDA is
    for major in ("12", "13"):
        wanted = [f"tensorrt-cu{major}-bindings", f"tensorrt-cu{major}-libs"]
        assert [r.split(">=")[0] for r in extras[f"tensorrt-cu{major}"]] == wanted
        assert all(r.endswith(",<12") for r in extras[f"tensorrt-cu{major}"])


def test_bindings_without_their_libraries_is_one_clear_line(monkeypatch):
    import importlib

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorrt_bindings" else None)

    def fail(name):
        raise ImportError("libnvinfer.so.11: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(importlib, "import_module", fail)
    with pytest.raises(PerfkitError) as err:
        T.import_tensorrt()
    [line] = str(err.value).splitlines()
    assert "'tensorrt_bindings' is installed but does not load (libnvinfer.so.11" in line
    assert "--extra-index-url https://pypi.nvidia.com" in line and f"perfkit[{T.tensorrt_extra()}]" in line


def test_bindings_are_used_where_nvidias_tensorrt_package_is_absent(monkeypatch):
    import importlib.machinery
    import types

    bindings = types.ModuleType("tensorrt_bindings")  # what perfkit's extras install (no `tensorrt` re-export)
    bindings.__spec__ = importlib.machinery.ModuleSpec("tensorrt_bindings", None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_bindings", bindings)
    assert T.import_tensorrt() is bindings


def test_backend_declares_the_extra_and_gpu_only(monkeypatch):
    trt = get("tensorrt")
    assert trt.extra == T.tensorrt_extra() and trt.device_specific and trt.devices == ("cuda",)
    with pytest.raises(UsageError, match="tensorrt does not run on cpu; it runs on cuda"):
        trt.check("fp32", "cpu")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in T.IMPORT_NAMES else object())
    assert trt.unavailable("cuda:0") == ("tensorrt needs 'tensorrt' (pip install --extra-index-url "
                                         f"https://pypi.nvidia.com 'perfkit[{T.tensorrt_extra()}]')")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else object())
    assert trt.unavailable("cuda:0") is None  # tensorrt_bindings alone (perfkit's extras) is enough


def _manifest(tiny_spec, **extra):
    return {"backend": "tensorrt", "precision": "fp32", "device": "cuda", "batch": {"min": 1, "opt": 8, "max": 256},
            "model": {"name": "lenet5", "identity": tiny_spec.identity, "weights": {"identity": tiny_spec.weights.identity}},
            "inputs": [{"name": "input", "shape": ["batch", 3, 32, 32]}],
            "outputs": [{"name": "logits", "shape": ["batch", 10]}], **extra}


def test_runner_without_tensorrt_names_the_extra(tiny_spec, monkeypatch):
    _no_tensorrt(monkeypatch)
    monkeypatch.setattr("perfkit.artifacts.device_identity", lambda device: GPU)
    runner = TensorRTRunner(tiny_spec, artifact=Artifact(Path("model.engine"), _manifest(tiny_spec, compiled_for=GPU)),
                            device="cuda:0")
    with pytest.raises(MissingDependency, match=rf"perfkit\[{T.tensorrt_extra()}\]"):
        runner.__enter__()


def test_runner_refuses_an_engine_of_another_gpu_before_loading(tiny_spec, monkeypatch):
    monkeypatch.setattr("perfkit.artifacts.device_identity", lambda device: "cuda-NVIDIA_L4-sm89")
    with pytest.raises(ArtifactError, match=f"compiled for {GPU}, not for this cuda-NVIDIA_L4-sm89"):
        TensorRTRunner(tiny_spec, artifact=Artifact(Path("model.engine"), _manifest(tiny_spec, compiled_for=GPU)),
                       device="cuda:0")


# -- export on the fake TensorRT ------------------------------------------------------------------


@pytest.fixture(scope="session")
def onnx_cache(tiny_spec, tmp_path_factory):
    """The ONNX artifact TensorRT builds from, exported once; tests copy it (each builds its own engine)."""
    root = tmp_path_factory.mktemp("trt-onnx")
    ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=root))
    return root


@pytest.fixture
def artifacts(onnx_cache, tmp_path):
    shutil.copytree(onnx_cache, tmp_path / "artifacts")
    return tmp_path / "artifacts"


def _export(tiny_spec, artifacts, **options):
    return ensure_artifact(tiny_spec, get("tensorrt"), Context(device="cuda:0", artifacts=artifacts, options=options),
                           batch=BatchRange(1, 8, 64))


def test_export_builds_a_strongly_typed_tf32_free_engine_with_a_profile_per_tuned_batch(fake_trt, tiny_spec, artifacts):
    art = _export(tiny_spec, artifacts, profile_batches=(32, 1, 128), workspace_mb=64)
    calls = fake_trt._calls
    assert ("create_network", 1 << 1) in calls  # 1 << STRONGLY_TYPED, the value looked up (it is 0 in TensorRT 11)
    assert ("clear_flag", fake_trt.BuilderFlag.TF32) in calls
    assert ("set_memory_pool_limit", fake_trt.MemoryPoolType.WORKSPACE, 64 << 20) in calls
    shapes = [c[1:] for c in calls if c[0] == "set_shape"]
    one = (3, 32, 32)
    assert shapes == [("input", (1, *one), (8, *one), (64, *one)),  # the whole range first (profile 0) ...
                      ("input", (1, *one), (1, *one), (1, *one)),  # ... then each tuned batch inside it
                      ("input", (32, *one), (32, *one), (32, *one))]
    assert [c for c in calls if c[0] == "set_timing_cache"] == [("set_timing_cache", b"", False)]
    assert art.path.read_bytes() == b"fake-engine"
    info = art.manifest["tensorrt"]
    assert info["tensorrt_version"] == fake_trt.__version__ and info["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert info["profiles"] == [{"min": 1, "opt": 8, "max": 64}, {"min": 1, "opt": 1, "max": 1},
                                {"min": 32, "opt": 32, "max": 32}]
    assert info["strongly_typed"] and info["tf32"] is False and info["timing_cache_note"] == "new"
    assert Path(info["timing_cache"]).read_bytes() == b"+tuned"


def test_a_stored_timing_cache_is_reused(fake_trt, tiny_spec, artifacts):
    cache = T.timing_cache_path(artifacts, "NVIDIA H100 80GB HBM3", fake_trt.__version__)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"stored")
    art = _export(tiny_spec, artifacts)
    assert [c for c in fake_trt._calls if c[0] == "set_timing_cache"] == [("set_timing_cache", b"stored", False)]
    assert art.manifest["tensorrt"]["timing_cache_note"] == f"reused {cache}"
    assert cache.read_bytes() == b"stored+tuned"


@pytest.mark.parametrize("control", ["_refuse_caches", "_unreadable_caches"])
def test_a_timing_cache_tensorrt_refuses_is_replaced_by_a_fresh_one(control, fake_trt, tiny_spec, artifacts):
    cache = T.timing_cache_path(artifacts, "NVIDIA H100 80GB HBM3", fake_trt.__version__)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"from another driver")
    setattr(fake_trt.IBuilderConfig, control, (b"from another driver",))
    art = _export(tiny_spec, artifacts)
    assert "TensorRT refused" in art.manifest["tensorrt"]["timing_cache_note"]
    assert cache.read_bytes() == b"+tuned"  # the fresh cache replaced it


def test_parser_errors_are_reported_verbatim(fake_trt, tiny_spec, artifacts):
    fake_trt.OnnxParser._errors = [
        fake_trt.ParserError(fake_trt.ErrorCode.UNSUPPORTED_NODE, "No importer registered for op: Foo", 7, "/m/Foo", "Foo"),
        fake_trt.ParserError(fake_trt.ErrorCode.INVALID_GRAPH, "graph has no outputs")]
    with pytest.raises(ArtifactError) as err:
        _export(tiny_spec, artifacts)
    assert str(err.value).splitlines()[1:] == [
        "  ErrorCode.UNSUPPORTED_NODE: No importer registered for op: Foo (node 7 '/m/Foo' Foo)",
        "  ErrorCode.INVALID_GRAPH: graph has no outputs"]


def test_a_rejected_profile_and_a_failed_build_are_errors(fake_trt, tiny_spec, artifacts):
    fake_trt.IBuilderConfig._profile_index = -1
    with pytest.raises(ArtifactError, match=r"rejected the optimization profile \(\(1, 3, 32, 32\)"):
        _export(tiny_spec, artifacts)
    fake_trt.IBuilderConfig._profile_index = 0
    fake_trt.Builder._engine = None
    with pytest.raises(ArtifactError, match="could not build an engine") as err:
        _export(tiny_spec, artifacts)
    assert "fake build error" in str(err.value)  # what TensorRT logged, through perfkit's logger


# -- the runner on the fake TensorRT --------------------------------------------------------------


class _Stream:
    cuda_stream = 0x5EED


def _runner(tiny_spec, monkeypatch, tmp_path, profiles=({"min": 1, "opt": 8, "max": 256},)):
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: _Stream())
    manifest = _manifest(tiny_spec, compiled_for=GPU, tensorrt={"tensorrt_version": "10.16.1.11",
                                                                  "gpu_name": "NVIDIA H100 80GB HBM3",
                                                                  "compute_capability": "9.0",
                                                                  "profiles": list(profiles)})
    (tmp_path / "model.engine").write_bytes(b"engine")
    return TensorRTRunner(tiny_spec, artifact=Artifact(tmp_path / "model.engine", manifest), device="cuda:0")


def test_runner_loads_the_engine_on_a_stream_of_its_own(fake_trt, tiny_spec, monkeypatch, tmp_path):
    runner = _runner(tiny_spec, monkeypatch, tmp_path)
    with runner:
        assert ("deserialize_cuda_engine", b"engine") in fake_trt._calls
        assert runner._stream.cuda_stream == 0x5EED  # not 0, the legacy default stream
        assert runner.engine_device_bytes() == 1 << 20
    assert runner.engine is None  # released


def test_runner_refuses_an_engine_whose_io_is_not_float32(fake_trt, tiny_spec, monkeypatch, tmp_path):
    fake_trt.ICudaEngine._dtypes = {"input": fake_trt.DataType.FLOAT, "logits": fake_trt.DataType.HALF}
    with pytest.raises(ArtifactError, match="engine tensor logits is DataType.HALF, perfkit feeds and reads FLOAT"):
        _runner(tiny_spec, monkeypatch, tmp_path).__enter__()


@pytest.mark.parametrize("control, message", [(("Runtime", "_engine"), "could not deserialize"),
                                              (("ICudaEngine", "_context"), "could not create an execution context")])
def test_runner_load_failures_are_errors(control, message, fake_trt, tiny_spec, monkeypatch, tmp_path):
    setattr(getattr(fake_trt, control[0]), control[1], False)
    with pytest.raises(PerfkitError, match=message):
        _runner(tiny_spec, monkeypatch, tmp_path).__enter__()


def test_runner_switches_to_the_profile_tuned_for_the_batch(fake_trt, tiny_spec, monkeypatch, tmp_path):
    profiles = [{"min": 1, "opt": 8, "max": 256}, {"min": 1, "opt": 1, "max": 1}, {"min": 32, "opt": 32, "max": 32}]
    with _runner(tiny_spec, monkeypatch, tmp_path, profiles) as runner:
        for batch in (32, 32, 5, 1, 1):
            runner._select_profile(batch)
    switches = [c[1:] for c in fake_trt._calls if c[0] == "set_optimization_profile_async"]
    assert switches == [(2, 0x5EED), (0, 0x5EED), (1, 0x5EED)]  # only on a change, on the runner's stream


class _LoggedStream(_Stream):
    def __init__(self, handle, log):
        self.cuda_stream, self.log = handle, log

    def wait_stream(self, other):
        self.log.append(("wait", self.cuda_stream, other.cuda_stream))


@pytest.fixture
def cuda_infer(fake_trt, tiny_spec, monkeypatch, tmp_path):
    """A loaded runner whose _infer runs on the CPU: streams and the CUDA output buffer are faked."""
    runner = _runner(tiny_spec, monkeypatch, tmp_path)
    runner.__enter__()
    log = fake_trt._calls
    runner._stream = _LoggedStream(0x5EED, log)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _LoggedStream(0, log))
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: log.append(("record", stream.cuda_stream)))
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, device=None, **k: real_empty(*a, **k))
    return runner


def test_infer_runs_on_its_stream_ordered_after_and_before_torchs(cuda_infer, fake_trt):
    out = cuda_infer._infer(torch.zeros(4, 3, 32, 32))
    assert out.shape == (4, 10) and out.dtype == torch.float32
    steps = [c[:2] if c[0] != "wait" else c for c in fake_trt._calls if c[0] in (
        "wait", "set_tensor_address", "record", "execute_async_v3")]
    assert steps == [("wait", 0x5EED, 0),  # TensorRT's stream waits for the torch work that made x
                     ("set_tensor_address", "input"), ("set_tensor_address", "logits"),
                     ("record", 0x5EED), ("record", 0x5EED),  # x and out stay alive for that stream
                     ("execute_async_v3", 0x5EED),
                     ("wait", 0, 0x5EED)]  # whoever reads `out` on torch's stream waits for TensorRT


@pytest.mark.parametrize("refused, message", [("set_input_shape", "rejected input shape"),
                                              ("set_tensor_address", "refused a tensor address"),
                                              ("execute_async_v3", "execution failed"),
                                              ("set_optimization_profile_async", "could not switch")])
def test_infer_checks_what_tensorrt_returns(refused, message, cuda_infer, fake_trt):
    cuda_infer._profiles.append(BatchRange(4, 4, 4))  # batch 4 switches profiles
    fake_trt.IExecutionContext._refuse = (refused,)
    with pytest.raises(PerfkitError, match=message):
        cuda_infer._infer(torch.zeros(4, 3, 32, 32))


def test_engine_device_bytes_of_tensorrt_10_before_the_v2_property(tiny_spec, monkeypatch, fake_trt, tmp_path):
    runner = _runner(tiny_spec, monkeypatch, tmp_path)
    runner._engine = type("OldEngine", (), {"device_memory_size": 4096})()
    assert runner.engine_device_bytes() == 4096
    runner._engine = object()
    assert runner.engine_device_bytes() is None  # not 0: unknown


def test_logger_keeps_a_bounded_number_of_messages(fake_trt):
    logger = T.make_logger(fake_trt, keep=5)
    severity = fake_trt.ILogger.Severity
    for i in range(1000):  # a warning per timed call must not grow a list without end
        logger.log(severity.WARNING, f"w{i}")
        logger.log(severity.ERROR, f"e{i}")
        logger.log(severity.INFO, f"i{i}")
    assert list(logger.messages) == ["WARNING: w0", "ERROR: e0", "WARNING: w1", "ERROR: e1", "WARNING: w2"]
    assert list(logger.errors) == [f"  e{i}" for i in range(995, 1000)]


# -- pure helpers ---------------------------------------------------------------------------------


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


def test_engines_are_built_with_detailed_profiling_verbosity_which_keys_the_cache(fake_trt, tiny_spec, artifacts):
    detailed = _export(tiny_spec, artifacts)
    assert ("profiling_verbosity", fake_trt.ProfilingVerbosity.DETAILED) in fake_trt._calls  # the layer profile's names
    assert detailed.manifest["tensorrt"]["profiling_verbosity"] == "detailed"
    fake_trt._calls.clear()
    names_only = _export(tiny_spec, artifacts, profiling_verbosity="layer_names_only")
    assert ("profiling_verbosity", fake_trt.ProfilingVerbosity.LAYER_NAMES_ONLY) in fake_trt._calls
    assert names_only.path.parent != detailed.path.parent  # another engine, not the cached detailed one
    with pytest.raises(InputError, match="--profiling-verbosity 'loud': one of detailed, layer_names_only, none"):
        _export(tiny_spec, artifacts, profiling_verbosity="loud")
