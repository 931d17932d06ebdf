"""Runners over exported artifacts: load, dynamic batch, input validation, parity with eager.

LeNet-5 keeps the default tests fast (AOTInductor compiles are slow on 2 cores); resnet18 runs
with --runslow. The artifact cache is shared by every test in the session that asks for the same
export, so each format is exported once.
"""

from __future__ import annotations

import pytest
import torch

from perfkit.accuracy.parity import compare, tolerance
from perfkit.errors import ArtifactError, InputError, PerfkitError
from perfkit.export.artifact import ensure_artifact
from perfkit.formats import BatchRange
from perfkit.runtime import open_runner, runner_class
from perfkit.zoo.registry import resolve

CPU_FORMATS = ("torchscript", "onnx", "aoti")


@pytest.fixture(scope="session")
def shared_artifacts(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "shared-artifacts"


def _eager(spec, x, device="cpu"):
    with open_runner(spec, "eager", device=device) as r:
        return r.infer(x).cpu()


@pytest.mark.parametrize("fmt", CPU_FORMATS)
def test_export_reload_parity_and_dynamic_batch(fmt, tiny_spec, shared_artifacts):
    x = tiny_spec.example_input(5, seed=1)
    ref = _eager(tiny_spec, x)
    with open_runner(tiny_spec, fmt, artifacts=shared_artifacts) as r:
        assert r.artifact.manifest["format"] == fmt
        whole = r.infer(x)  # batch 5 ...
        singles = torch.cat([r.infer(x[i:i + 1]) for i in range(5)])  # ... and batch 1, same artifact
    assert whole.dtype == torch.float32 and whole.shape == (5, 10)
    for got in (whole, singles):
        result = compare(ref, got, tolerance("fp32"))
        assert result.passed, result.failures
        assert result.max_abs_diff < 1e-4


@pytest.mark.parametrize("fmt", CPU_FORMATS)
def test_batch_outside_the_artifact_range_is_an_input_error(fmt, tiny_spec, shared_artifacts):
    artifact = ensure_artifact(tiny_spec, fmt, artifacts=shared_artifacts)
    with runner_class(fmt)(tiny_spec, artifact) as r:
        with pytest.raises(InputError, match=r"batch 257 is outside the artifact's range 1\.\.256"):
            r.infer(torch.zeros(257, 3, 32, 32))
        with pytest.raises(InputError, match="float32"):
            r.infer(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
        with pytest.raises(InputError, match=r"expected input \(N, 3, 32, 32\)"):
            r.infer(torch.zeros(1, 3, 28, 28))


def test_narrow_batch_range_is_enforced(tiny_spec, tmp_path):
    with open_runner(tiny_spec, "torchscript", artifacts=tmp_path, batch=BatchRange(2, 2, 4)) as r:
        assert r.infer(torch.zeros(4, 3, 32, 32)).shape == (4, 10)
        with pytest.raises(InputError, match=r"range 2\.\.4"):
            r.infer(torch.zeros(1, 3, 32, 32))


def test_runner_outside_its_with_block(tiny_spec, shared_artifacts):
    r = open_runner(tiny_spec, "onnx", artifacts=shared_artifacts)
    with pytest.raises(PerfkitError, match="outside its `with` block"):
        r.infer(tiny_spec.example_input(1))


def test_artifact_of_another_model_is_refused(tiny_spec, shared_artifacts, tmp_path):
    artifact = ensure_artifact(tiny_spec, "torchscript", artifacts=shared_artifacts)
    weights = tmp_path / "other.pt"
    model = tiny_spec.build()
    torch.nn.init.zeros_(model.classifier[-1].bias)
    torch.save(model.state_dict(), weights)
    other = resolve("lenet5", str(weights))
    with pytest.raises(ArtifactError, match="holds lenet5 \\(random:seed0"):
        runner_class("torchscript")(other, artifact)


def test_aoti_cpu_artifact_refuses_cuda(tiny_spec, shared_artifacts):
    artifact = ensure_artifact(tiny_spec, "aoti", artifacts=shared_artifacts)
    with pytest.raises(ArtifactError, match="compiled for cpu"):
        runner_class("aoti")(tiny_spec, artifact, device="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback refusal on a CPU-only machine")
def test_onnxruntime_refuses_a_provider_it_cannot_start(tiny_spec, shared_artifacts):
    with pytest.raises(PerfkitError, match="CUDAExecutionProvider"):
        with open_runner(tiny_spec, "onnx", artifacts=shared_artifacts, device="cuda"):
            pass


def test_onnxruntime_session_settings(tiny_spec, shared_artifacts):
    import onnxruntime as ort

    from perfkit.runtime.onnxruntime import machine_cores

    with open_runner(tiny_spec, "onnx", artifacts=shared_artifacts) as r:
        assert r.session.get_providers()[0] == "CPUExecutionProvider"
        assert r.threads == machine_cores()
        opts = r.session.get_session_options()
        assert opts.intra_op_num_threads == machine_cores()
        assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize("options", [{"script": True}, {"freeze": True}])
def test_torchscript_script_and_freeze(options, tiny_spec, shared_artifacts):
    x = tiny_spec.example_input(3, seed=2)
    with open_runner(tiny_spec, "torchscript", artifacts=shared_artifacts, **options) as r:
        assert r.artifact.manifest["options"] == {"script": False, "freeze": False, **options}
        got = r.infer(x)
    assert compare(_eager(tiny_spec, x), got, tolerance("fp32")).passed


@pytest.mark.slow
@pytest.mark.parametrize("fmt", CPU_FORMATS)
def test_resnet18_parity(fmt, shared_artifacts):
    spec = resolve("resnet18", "random")
    x = spec.example_input(4, seed=5)
    with open_runner(spec, fmt, artifacts=shared_artifacts) as r:
        got = torch.cat([r.infer(x[:1]), r.infer(x[1:])])
    result = compare(_eager(spec, x), got, tolerance("fp32"))
    assert result.passed, result.failures


@pytest.mark.slow
def test_inception_v3_script_returns_logits(shared_artifacts):
    """Scripted Inception returns (logits, aux); the runner hands back the logits."""
    spec = resolve("inception_v3", "random")
    x = spec.example_input(2, seed=0)
    with open_runner(spec, "torchscript", artifacts=shared_artifacts, script=True) as r:
        got = r.infer(x)
    assert compare(_eager(spec, x), got, tolerance("fp32")).passed


# -- GPU (skipped without CUDA) ------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", ["eager", "torchscript", "onnx", "aoti"])
def test_cuda_runners_match_cpu_eager(fmt, shared_artifacts):
    spec = resolve("resnet18", "random")
    x = spec.example_input(4, seed=7)
    with open_runner(spec, fmt, device="cuda", artifacts=shared_artifacts) as r:
        got = torch.cat([r.infer(x[:1]), r.infer(x[1:])])
        r.synchronize()
        assert got.device.type == "cuda"
    if fmt == "onnx":
        assert r.session is None  # released on exit
    result = compare(_eager(spec, x), got.cpu(), tolerance("fp32"))
    assert result.passed, result.failures


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_parity(precision, shared_artifacts):
    spec = resolve("resnet18", "random")
    x = spec.example_input(4, seed=7)
    with open_runner(spec, "tensorrt", precision=precision, device="cuda", artifacts=shared_artifacts,
                     batch=BatchRange(1, 4, 16)) as r:
        got = torch.cat([r.infer(x[:1]), r.infer(x[1:])]).cpu()
        assert r.artifact.manifest["tensorrt"]["gpu_name"] == torch.cuda.get_device_name()
        with pytest.raises(InputError):
            r.infer(torch.zeros(17, *spec.input_size))
    result = compare(_eager(spec, x), got, tolerance(precision))
    assert result.passed, result.failures
