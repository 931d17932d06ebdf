"""ONNX export: dynamic batch, external data covered by the hash, checker, opset option."""

from __future__ import annotations

import onnx
import pytest
import torch

from perfkit.artifacts import MANIFEST, ensure_artifact, load_artifact
from perfkit.artifacts.manifest import combined_sha256
from perfkit.backends import get
from perfkit.backends.onnxruntime import input_batch_dim
from perfkit.context import Context
from perfkit.errors import ArtifactError, PerfkitError
from perfkit.vocab import BatchRange


@pytest.fixture
def onnx_artifact(tiny_spec, shared_artifacts):
    return ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=shared_artifacts))


def test_batch_dimension_is_symbolic(onnx_artifact):
    graph = onnx.load(str(onnx_artifact.path), load_external_data=False)
    assert input_batch_dim(graph) == "batch"
    assert [i.name for i in graph.graph.input] == ["input"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    info = onnx_artifact.manifest["onnx"]
    assert info["input_batch_dim"] == "batch" and info["opset"] >= 17
    # exported with an example batch ≥ 2, so torch.export could not specialise it to 1
    assert onnx_artifact.manifest["example_batch"] >= 2


def test_external_data_is_part_of_the_artifact(onnx_artifact):
    files = onnx_artifact.files
    assert "model.onnx" in files and onnx_artifact.manifest["onnx"]["external_data"]
    for name in onnx_artifact.manifest["onnx"]["external_data"]:
        assert name in files and files[name]["bytes"] > 0
    weights = sum(f["bytes"] for n, f in files.items() if n != "model.onnx")
    assert weights > 200_000  # LeNet-5's ~62k float32 parameters live outside the graph file
    onnx.checker.check_model(str(onnx_artifact.path))


def test_tampered_external_data_is_refused_naming_the_file(onnx_artifact, tiny_spec, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(onnx_artifact.dir.parent.parent, copy)  # keep the shared cache intact
    data_name = onnx_artifact.manifest["onnx"]["external_data"][0]
    folder = copy / onnx_artifact.dir.relative_to(onnx_artifact.dir.parent.parent)
    blob = bytearray((folder / data_name).read_bytes())
    blob[100] ^= 0x01
    (folder / data_name).write_bytes(bytes(blob))
    with pytest.raises(ArtifactError) as err:
        ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=copy))
    assert str(folder / data_name) in str(err.value)


def _copy_of(artifact, tmp_path):
    """The artifact's folder in a copy of the shared cache (so that tests can damage it)."""
    import shutil

    root = artifact.dir.parent.parent
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    return copy / artifact.dir.relative_to(root)


def test_external_data_dropped_from_the_manifest_is_refused_naming_it(onnx_artifact, tmp_path):
    """Even with the digest recomputed, a weights file the manifest no longer lists is refused."""
    import json

    folder = _copy_of(onnx_artifact, tmp_path)
    data_name = onnx_artifact.manifest["onnx"]["external_data"][0]
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["files"][data_name]
    manifest["sha256"] = combined_sha256(manifest["files"])
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="not listed") as err:
        load_artifact(folder)
    assert str(folder / data_name) in str(err.value)


def test_static_batch_when_the_range_is_one_size(tiny_spec, tmp_path):
    art = ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=tmp_path, options={"opset": 18}),
                          batch=BatchRange(4, 4, 4))
    graph = onnx.load(str(art.path), load_external_data=False)
    assert input_batch_dim(graph) == ""
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert art.manifest["inputs"][0]["shape"][0] == 4
    assert art.manifest["onnx"]["opset"] == 18 and art.manifest["options"] == {"opset": 18}


@pytest.mark.slow
def test_fp16_graph_keeps_float32_io(tiny_spec, tmp_path):
    """The fp16 variant (what TensorRT builds from): fp16 weights inside, float32 at the edges."""
    art = ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=tmp_path), precision="fp16")
    graph = onnx.load(str(art.path))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert graph.graph.input[0].type.tensor_type.elem_type == f32
    assert graph.graph.output[0].type.tensor_type.elem_type == f32
    assert any(init.data_type == f16 for init in graph.graph.initializer)


# -- the CUDA provider, on a fake onnxruntime and fake CUDA streams (the real run: test_runners.py, gpu) --


class _FakeStream:
    def __init__(self, handle, log):
        self.cuda_stream, self.log = handle, log

    def wait_stream(self, other):
        self.log.append(("wait", self.cuda_stream, other.cuda_stream))

    def synchronize(self):
        self.log.append(("synchronize", self.cuda_stream))


def _fake_ort(log, providers_active=("CUDAExecutionProvider", "CPUExecutionProvider"), built_for="13.0"):
    import types

    class Binding:
        def bind_input(self, name, device, index, dtype, shape, ptr):
            log.append(("bind_input", id(self), device, index, tuple(shape)))

        def bind_output(self, name, device, index, dtype, shape, ptr):
            log.append(("bind_output", id(self), device, index, tuple(shape)))

    class Session:
        def __init__(self, path, options, providers):
            log.append(("session", providers))

        def get_providers(self):
            return list(providers_active)

        def get_inputs(self):
            return [types.SimpleNamespace(name="input")]

        def get_outputs(self):
            return [types.SimpleNamespace(name="logits")]

        def io_binding(self):
            log.append(("io_binding",))
            return Binding()

        def run_with_iobinding(self, binding):
            log.append(("run", id(binding)))

    info = types.SimpleNamespace(cuda_version=built_for)
    return types.SimpleNamespace(
        __version__="1.31.1", capi=types.SimpleNamespace(build_and_package_info=info),
        get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"], InferenceSession=Session,
        SessionOptions=lambda: types.SimpleNamespace(),
        GraphOptimizationLevel=types.SimpleNamespace(ORT_ENABLE_ALL=99), ExecutionMode=types.SimpleNamespace(ORT_SEQUENTIAL=0))


@pytest.fixture
def cuda_ort(monkeypatch, tiny_spec):
    """An ONNX Runtime runner on cuda:0 over fakes; returns (runner, log)."""
    from pathlib import Path

    from perfkit.artifacts import Artifact
    from perfkit.backends import onnxruntime as O

    log, handles = [], iter([0x1111, 0x2222])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: _FakeStream(next(handles), log))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _FakeStream(0, log))  # torch's default stream
    monkeypatch.setattr(O, "require", lambda name: _fake_ort(log))
    manifest = {"backend": "onnx", "precision": "fp32", "device": "any", "batch": {"min": 1, "opt": 8, "max": 256},
                "model": {"name": "lenet5", "identity": tiny_spec.identity, "weights": {"identity": tiny_spec.weights.identity}},
                "inputs": [{"name": "input", "shape": ["batch", 3, 32, 32]}],
                "outputs": [{"name": "logits", "shape": ["batch", 10]}]}
    return O.OnnxRuntimeRunner(tiny_spec, artifact=Artifact(Path("model.onnx"), manifest), device="cuda:0"), log


def test_cuda_session_runs_on_a_stream_of_its_own_with_tf32_off(cuda_ort):
    runner, log = cuda_ort
    runner._load()
    [(_, providers)] = [e for e in log if e[0] == "session"]
    assert providers == [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0, "user_compute_stream": str(0x1111)})]
    assert runner._stream.cuda_stream == 0x1111 != 0  # "0" would mean: no user stream, ORT's own streams


def test_cuda_infer_waits_for_torchs_stream_and_reuses_one_binding(cuda_ort, monkeypatch):
    runner, log = cuda_ort
    runner._load()
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, device=None, **k: real_empty(*a, **k))  # no GPU here
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: log.append(("record", stream.cuda_stream)))
    x = torch.zeros(2, 3, 32, 32)
    for _ in range(2):
        assert runner._infer(x).shape == (2, 10)
    steps = [e[0] for e in log if e[0] != "session"]
    assert steps == ["io_binding"] + ["wait", "record", "bind_input", "bind_output", "run", "wait"] * 2  # one binding
    # ORT's stream waits for torch's before the run, torch's for ORT's after it
    assert [e for e in log if e[0] == "wait"] == [("wait", 0x1111, 0), ("wait", 0, 0x1111)] * 2
    assert len({e[1] for e in log if e[0] in ("bind_input", "run")}) == 1
    assert ("bind_input", id(runner._binding), "cuda", 0, (2, 3, 32, 32)) in log


def test_a_cpu_fallback_is_refused_naming_a_cuda_major_mismatch(cuda_ort, monkeypatch):
    from perfkit.backends import onnxruntime as O

    runner, log = cuda_ort
    other = "12.8" if str(torch.version.cuda).startswith("13") else "13.0"  # not torch's CUDA major
    monkeypatch.setattr(O, "require", lambda name: _fake_ort(log, ("CPUExecutionProvider",), built_for=other))
    with pytest.raises(PerfkitError, match="fell back to CPUExecutionProvider instead of CUDAExecutionProvider") as err:
        runner._load()
    if torch.version.cuda:
        assert f"built for CUDA {other}, torch uses CUDA {torch.version.cuda}" in str(err.value)


@pytest.mark.parametrize("built, torch_cuda, hint", [("13.0", "12.8", "pip install 'onnxruntime-gpu<1.27'"),
                                                     ("12.8", "13.0", "pip install -U onnxruntime-gpu"),
                                                     ("13.0", "13.0", None), ("", "13.0", None), ("12.8", None, None)])
def test_cuda_major_mismatch_is_named(built, torch_cuda, hint):
    import types

    from perfkit.backends.onnxruntime import cuda_mismatch

    ort = types.SimpleNamespace(__version__="1.31.1",
                                capi=types.SimpleNamespace(build_and_package_info=types.SimpleNamespace(cuda_version=built)))
    got = cuda_mismatch(ort, torch_cuda)
    assert got is None if hint is None else (hint in got and f"built for CUDA {built}" in got)


# -- an ONNX file the user gave ------------------------------------------------------------------------


def _module_logits(onnx_files, x):
    with torch.no_grad():
        return onnx_files.model(x)


def test_an_onnx_files_artifact_is_the_file_itself_keeping_its_names(onnx_files, tmp_path):
    from perfkit.backends import open_runner, prepare
    from perfkit.zoo.sources import resolve

    spec = resolve(str(onnx_files.dynamic))
    ctx = Context(artifacts=tmp_path / "artifacts")
    artifact = prepare(spec, "onnx", ctx, batch=BatchRange(1, 4, 16))
    assert artifact.path.read_bytes() == onnx_files.dynamic.read_bytes()
    assert "dynamic.onnx.data" in artifact.files  # its external data, hashed with it
    assert (artifact.manifest["inputs"][0]["name"], artifact.manifest["outputs"][0]["name"]) == ("pixel_values",
                                                                                                 "logits")
    assert artifact.batch == BatchRange(1, 4, 16)
    assert artifact.manifest["onnx"]["source_file"]["content"] == spec.content
    x = torch.randn(5, 3, 32, 32)
    with open_runner(spec, "onnx", ctx, batch=BatchRange(1, 4, 16)) as runner:
        assert torch.allclose(runner.infer(x), _module_logits(onnx_files, x), atol=1e-5)
    assert prepare(spec, "onnx", ctx.replace(resolved={}), batch=BatchRange(1, 4, 16)).cached  # a new context: the cache


def test_an_onnx_file_changed_after_it_was_resolved_is_refused(onnx_files, tmp_path):
    import shutil

    from perfkit.backends import prepare
    from perfkit.zoo.sources import resolve

    path = tmp_path / "model.onnx"
    shutil.copy(onnx_files.fixed, path)
    spec = resolve(str(path))
    onnx_files.export_legacy(onnx_files.tiny_net(seed=1), path, batch=2)  # other weights, after resolving
    with pytest.raises(ArtifactError, match=r"model.onnx changed since the model was resolved"):
        prepare(spec, "onnx", Context(artifacts=tmp_path / "artifacts"))
    with pytest.raises(PerfkitError, match=r"--opset 17 sets the exporter's opset; \S*model.onnx is an ONNX file"):
        prepare(resolve(str(path)), "onnx", Context(artifacts=tmp_path / "artifacts", options={"opset": 17}))


def test_a_fixed_batch_file_gets_that_batch_whatever_is_asked(onnx_files, tmp_path):
    from perfkit.backends import open_runner
    from perfkit.errors import InputError
    from perfkit.zoo.sources import resolve

    spec = resolve(str(onnx_files.fixed))
    x = torch.randn(5, 3, 32, 32)
    with open_runner(spec, "onnx", Context(artifacts=tmp_path), batch=BatchRange(1, 8, 256)) as runner:
        assert runner.batch == BatchRange(2, 2, 2) and runner.input_name == "image"
        with pytest.raises(InputError, match=r"batch 3 is outside the artifact's range 2..2"):
            runner.infer(x[:3])
        # any number of inputs, in pieces of 2, the last one padded: one logit row per input
        assert torch.allclose(runner.infer_all(x), _module_logits(onnx_files, x), atol=1e-5)


def test_int8_and_fp16_start_from_the_file(onnx_files, tmp_path):
    from perfkit.backends import open_runner, prepare
    from perfkit.data.calibration import CalibrationSet
    from perfkit.vocab import Precision
    from perfkit.zoo.sources import resolve

    spec = resolve(str(onnx_files.dynamic))
    ctx = Context(artifacts=tmp_path, options={"calibration": CalibrationSet.synthetic(16, "minmax")})
    fp32 = prepare(spec, "onnx", ctx)
    int8 = prepare(spec, "onnx", ctx, precision=Precision.INT8)
    assert int8.manifest["quantization"]["source_onnx"]["sha256"] == fp32.sha256  # quantized from the file's copy
    assert int8.manifest["inputs"][0]["name"] == "pixel_values"
    x = torch.randn(4, 3, 32, 32)
    expected = _module_logits(onnx_files, x)
    for precision, bound in ((Precision.INT8, 0.9), (Precision.FP16, 0.999)):
        with open_runner(spec, "onnx", ctx, precision=precision) as runner:
            got = runner.infer(x)
        assert torch.nn.functional.cosine_similarity(got, expected).min() > bound, precision
    half = onnx.load(str(prepare(spec, "onnx", ctx, precision=Precision.FP16).path), load_external_data=False)
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in half.graph.initializer}
