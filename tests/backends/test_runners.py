"""Runners over exported artifacts: load, dynamic batch, input validation, parity with eager.

LeNet-5 keeps the default tests fast (AOTInductor compiles are slow on 2 cores); resnet18 runs
with --runslow. The artifact cache is shared by every test in the session that asks for the same
export, so each format is exported once.
"""

from __future__ import annotations

import pytest
import torch

from perfkit.accuracy.parity import compare, tolerance
from perfkit.artifacts import Artifact
from perfkit.backends import get, make_runner, open_runner, prepare
from perfkit.context import Context
from perfkit.errors import ArtifactError, InputError, PerfkitError
from perfkit.vocab import BatchRange
from perfkit.zoo.sources import resolve

CPU_FORMATS = ("torchscript", "onnx", "aoti")


@pytest.fixture(scope="session")
def shared_artifacts(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "shared-artifacts"


@pytest.fixture
def shared(shared_artifacts):
    """A CPU context over the session's shared artifact cache."""
    return Context(artifacts=shared_artifacts)


def _eager(spec, x, device="cpu"):
    with open_runner(spec, "eager", Context(device=device)) as r:
        return r.infer(x).cpu()


@pytest.mark.parametrize("fmt", CPU_FORMATS)
def test_export_reload_parity_and_dynamic_batch(fmt, tiny_spec, shared):
    x = tiny_spec.example_input(5, seed=1)
    ref = _eager(tiny_spec, x)
    with open_runner(tiny_spec, fmt, shared) as r:
        assert r.artifact.manifest["backend"] == fmt and r.name == fmt
        whole = r.infer(x)  # batch 5 ...
        singles = torch.cat([r.infer(x[i:i + 1]) for i in range(5)])  # ... and batch 1, same artifact
    assert whole.dtype == torch.float32 and whole.shape == (5, 10)
    for got in (whole, singles):
        result = compare(ref, got, tolerance("fp32"))
        assert result.passed, result.failures
        assert result.max_abs_diff < 1e-4


@pytest.mark.parametrize("fmt", CPU_FORMATS)
def test_batch_outside_the_artifact_range_is_an_input_error(fmt, tiny_spec, shared):
    artifact = prepare(tiny_spec, fmt, shared)
    with make_runner(tiny_spec, fmt, shared, artifact) as r:
        with pytest.raises(InputError, match=r"batch 257 is outside the artifact's range 1\.\.256"):
            r.infer(torch.zeros(257, 3, 32, 32))
        with pytest.raises(InputError, match="float32"):
            r.infer(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
        with pytest.raises(InputError, match=r"expected input \(N, 3, 32, 32\)"):
            r.infer(torch.zeros(1, 3, 28, 28))


def test_narrow_batch_range_is_enforced(tiny_spec, tmp_path):
    with open_runner(tiny_spec, "torchscript", Context(artifacts=tmp_path), batch=BatchRange(2, 2, 4)) as r:
        assert r.batch == BatchRange(2, 2, 4) == r.artifact.batch
        assert r.infer(torch.zeros(4, 3, 32, 32)).shape == (4, 10)
        with pytest.raises(InputError, match=r"range 2\.\.4"):
            r.infer(torch.zeros(1, 3, 32, 32))


def test_runner_outside_its_with_block(tiny_spec, shared):
    r = open_runner(tiny_spec, "onnx", shared)
    with pytest.raises(PerfkitError, match="outside its `with` block"):
        r.infer(tiny_spec.example_input(1))
    with r:
        with pytest.raises(PerfkitError, match="already active"):
            r.__enter__()
    with pytest.raises(PerfkitError, match="outside its `with` block"):
        r.infer(tiny_spec.example_input(1))


def test_artifact_of_another_model_is_refused(tiny_spec, shared, tmp_path):
    artifact = prepare(tiny_spec, "torchscript", shared)
    weights = tmp_path / "other.pt"
    model = tiny_spec.build()
    torch.nn.init.zeros_(model.classifier[-1].bias)
    torch.save(model.state_dict(), weights)
    other = resolve("lenet5", weights=str(weights))
    with pytest.raises(ArtifactError, match="holds lenet5 \\(identity [0-9a-f]{16}, random:seed0"):
        get("torchscript").runner(other, artifact=artifact)


def test_aoti_cpu_artifact_refuses_cuda(tiny_spec, shared):
    artifact = prepare(tiny_spec, "aoti", shared)
    assert artifact.manifest["device"] == "cpu" and artifact.manifest["compiled_for"] == "cpu"
    with pytest.raises(ArtifactError, match="compiled for cpu"):
        get("aoti").runner(tiny_spec, artifact=artifact, device="cuda")


H100, L4 = "cuda-NVIDIA_H100_80GB_HBM3-sm90", "cuda-NVIDIA_L4-sm89"


def _compiled_for(artifact, identity, device="cuda"):
    return Artifact(artifact.path, {**artifact.manifest, "device": device, "compiled_for": identity})


@pytest.mark.parametrize("backend", ["aoti", "torchscript"])
def test_artifact_compiled_for_another_gpu_is_refused(backend, tiny_spec, shared, monkeypatch):
    """Same device type, another GPU model: a device-specific artifact must not be handed to it."""
    artifact = _compiled_for(prepare(tiny_spec, "torchscript", shared), H100)  # the manifest is all that is read
    here = {"cuda:0": L4, "cuda:1": H100}
    monkeypatch.setattr("perfkit.artifacts.device_identity", lambda device: here[device])
    with pytest.raises(ArtifactError, match=f"compiled for {H100}, not for this {L4}") as err:
        get(backend).runner(tiny_spec, artifact=artifact, device="cuda:0")
    assert str(artifact.path) in str(err.value) and "--force" in str(err.value)
    runner = get(backend).runner(tiny_spec, artifact=artifact, device="cuda:1")  # the GPU it was built for
    assert runner.device == torch.device("cuda:1")


def test_cpu_runner_refuses_an_artifact_compiled_for_a_gpu(tiny_spec, shared):
    artifact = _compiled_for(prepare(tiny_spec, "torchscript", shared), H100, device="any")
    with pytest.raises(ArtifactError, match=f"compiled for {H100}, not for this cpu"):
        get("aoti").runner(tiny_spec, artifact=artifact, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback refusal on a CPU-only machine")
def test_onnxruntime_refuses_a_provider_it_cannot_start(tiny_spec, shared):
    with pytest.raises(PerfkitError, match="CUDAExecutionProvider"):
        with open_runner(tiny_spec, "onnx", shared.replace(device="cuda:0")):
            pass


def test_onnxruntime_session_settings(tiny_spec, shared):
    import onnxruntime as ort

    from perfkit.backends.onnxruntime import machine_cores

    with open_runner(tiny_spec, "onnx", shared) as r:
        assert r.session.get_providers()[0] == "CPUExecutionProvider"
        assert r.threads == machine_cores()
        opts = r.session.get_session_options()
        assert opts.intra_op_num_threads == machine_cores()
        assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_onnxruntime_threads_from_the_context(tiny_spec, shared):
    with open_runner(tiny_spec, "onnx", shared.replace(threads=1)) as r:
        assert r.threads == 1 and r.session.get_session_options().intra_op_num_threads == 1
        assert r.config()["intra_op_num_threads"] == 1


def test_torch_runner_restores_the_callers_thread_count(tiny_spec, shared):
    before = torch.get_num_threads()
    with open_runner(tiny_spec, "torchscript", shared.replace(threads=1)) as r:
        assert torch.get_num_threads() == 1
        r.infer(tiny_spec.example_input(1))
    assert torch.get_num_threads() == before


def test_torchscript_script(tiny_spec, shared):
    x = tiny_spec.example_input(3, seed=2)
    with open_runner(tiny_spec, "torchscript", shared.replace(options={"script": True})) as r:
        assert r.artifact.manifest["options"] == {"script": True}
        assert r.config()["method"] == "script"
        got = r.infer(x)
    result = compare(_eager(tiny_spec, x), got, tolerance("fp32"))
    assert result.passed, result.failures


@pytest.mark.parametrize("options, optimized", [({}, True), ({"optimize": True}, True), ({"optimize": False}, False)])
def test_torchscript_optimize_for_inference_at_load(options, optimized, tiny_spec, shared, monkeypatch):
    """optimize_for_inference is applied when the runner loads (by default), not at export: the
    option is a run option, so both runners load the same cached artifact."""
    calls = []
    real = torch.jit.optimize_for_inference
    monkeypatch.setattr(torch.jit, "optimize_for_inference", lambda m, *a, **k: calls.append(m) or real(m, *a, **k))
    x = tiny_spec.example_input(3, seed=2)
    with open_runner(tiny_spec, "torchscript", shared.replace(options=options)) as r:
        assert r.options == {"optimize": optimized}
        assert r.artifact.manifest["options"] == {"script": False}
        config = r.config()
        assert config["optimize_for_inference"] is optimized and config["frozen"] is optimized
        # frozen: the weights are folded into the graph as constants, none is left as a parameter
        assert (len(list(r.module.parameters())) == 0) is optimized
        assert len(calls) == int(optimized)
        got = r.infer(x)
    result = compare(_eager(tiny_spec, x), got, tolerance("fp32"))
    assert result.passed, result.failures
    assert result.max_abs_diff < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("fmt", CPU_FORMATS)
def test_resnet18_parity(fmt, shared):
    spec = resolve("resnet18", weights="random")
    x = spec.example_input(4, seed=5)
    with open_runner(spec, fmt, shared) as r:
        got = torch.cat([r.infer(x[:1]), r.infer(x[1:])])
    result = compare(_eager(spec, x), got, tolerance("fp32"))
    assert result.passed, result.failures


@pytest.mark.slow
def test_inception_v3_script_returns_logits(shared):
    """Scripted Inception returns (logits, aux); the runner hands back the logits."""
    spec = resolve("inception_v3", weights="random")
    x = spec.example_input(2, seed=0)
    with open_runner(spec, "torchscript", shared.replace(options={"script": True})) as r:
        got = r.infer(x)
    assert compare(_eager(spec, x), got, tolerance("fp32")).passed


def test_a_cuda_runner_loads_and_infers_with_its_gpu_current(tiny_spec, monkeypatch):
    """Runtimes that act on "the current device" (TensorRT, ONNX Runtime's streams) must see the
    runner's cuda:N whatever the caller had current (check and validate do not set it)."""
    import contextlib

    from perfkit.backends import base
    from perfkit.backends.base import Runner

    current, seen = ["cuda:0"], []

    @contextlib.contextmanager
    def on_device(device):  # as perfkit.device.on_device on a GPU machine: the CPU changes nothing
        before = current[0]
        current[0] = str(device) if torch.device(device).type == "cuda" else before
        try:
            yield
        finally:
            current[0] = before

    class Probe(Runner):
        name = "probe"

        def _load(self):
            seen.append(("load", current[0]))

        def _infer(self, x):
            seen.append(("infer", current[0], x.device.type))
            return x

    monkeypatch.setattr(base, "on_device", on_device)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self)  # no GPU here: the copy is a no-op
    with Probe(tiny_spec, device="cuda:1") as r:
        r.infer(tiny_spec.example_input(1))
    with Probe(tiny_spec, device="cpu") as r:
        r.infer(tiny_spec.example_input(1))
    assert seen == [("load", "cuda:1"), ("infer", "cuda:1", "cpu"), ("load", "cuda:0"), ("infer", "cuda:0", "cpu")]


# -- GPU (skipped without CUDA) ------------------------------------------------------------------
#
# These need a CUDA GPU (and TensorRT for `tensorrt`); a runtime this machine cannot run on CUDA
# (the CPU onnxruntime wheel, AOTI without a CUDA toolkit) is skipped with the reason. They run on
# the last visible GPU while cuda:0 stays current, so a machine with two GPUs also checks that every
# runner works on the device it was given rather than the current one.

CUDA_RUNTIMES = ["eager", "torchscript", "onnx", "aoti", pytest.param("tensorrt", marks=pytest.mark.tensorrt)]


def _gpu():
    return f"cuda:{torch.cuda.device_count() - 1}"


def _runnable(fmt, device):
    why = get(fmt).unavailable(device)
    if why:
        pytest.skip(why)


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", CUDA_RUNTIMES)
def test_cuda_runners_match_cpu_eager(fmt, shared):
    device = _gpu()
    _runnable(fmt, device)
    spec = resolve("resnet18", weights="random")
    x = spec.example_input(8, seed=7)
    with open_runner(spec, fmt, shared.replace(device=device), batch=BatchRange(1, 8, 16)) as r:
        got = torch.cat([r.infer(x[:1]), r.infer(x[1:])])
        r.synchronize()
        assert got.device == torch.device(device)
    if fmt == "onnx":
        assert r.session is None  # released on exit
    result = compare(_eager(spec, x), got.cpu(), tolerance("fp32"))
    assert result.passed, result.failures


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", CUDA_RUNTIMES)
def test_cuda_runner_reads_the_input_torch_has_just_written(fmt, shared):
    """The input is written on torch's current stream by a copy queued behind a ~0.1 s GPU sleep;
    a runtime on a stream of its own (ONNX Runtime's, TensorRT's) that does not wait for torch's
    stream reads it before it is written (zeros here) and returns another image's logits."""
    device = _gpu()
    _runnable(fmt, device)
    spec = resolve("resnet18", weights="random")
    src = spec.example_input(8, seed=3).to(device)
    with torch.cuda.device(device), open_runner(spec, fmt, shared.replace(device=device),
                                                batch=BatchRange(1, 8, 16)) as r:
        expected = r.infer(src).clone()
        torch.cuda.synchronize(device)
        for _ in range(3):
            x = torch.zeros_like(src)
            torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time on torch's current stream
            x.copy_(src)  # queued behind it
            got = r.infer(x).clone()
            torch.cuda.synchronize(device)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_parity(precision, shared):
    """64 inputs at batch 1 and 16. fp16 may flip a near-tie: a top-1 change is allowed only where
    eager's two best logits are closer than the logit tolerance itself (the logits must be within it)."""
    spec = resolve("resnet18", weights="random")
    x = spec.example_input(64, seed=7)
    with open_runner(spec, "tensorrt", shared.replace(device="cuda:0"), precision=precision,
                     batch=BatchRange(1, 16, 64)) as r:
        got = torch.cat([r.infer(x[:1]), *[r.infer(c) for c in x[1:].split(16)]]).cpu()
        assert r.artifact.manifest["tensorrt"]["gpu_name"] == torch.cuda.get_device_name(0)
        with pytest.raises(InputError):
            r.infer(torch.zeros(65, *spec.input_size))
    reference = _eager(spec, x)
    tol = tolerance(precision)
    result = compare(reference, got, tol)
    assert result.nonfinite == 0 and result.within_tolerance and result.max_rel_diff <= tol.max_rel, result.failures
    top2 = reference.topk(2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]) < 2 * (tol.atol + tol.rtol * reference.abs().amax(1))
    assert all(near_tie[i] for i in result.flipped_ids), (result.flipped_ids, near_tie.nonzero().flatten().tolist())
    if precision == "fp32":
        assert result.passed, result.failures


@pytest.mark.tensorrt
def test_tensorrt_runs_one_profile_per_swept_batch(shared):
    spec = resolve("resnet18", weights="random")
    ctx = shared.replace(device="cuda:0", options={"profile_batches": (1, 32)})
    with open_runner(spec, "tensorrt", ctx, batch=BatchRange(1, 8, 64)) as r:
        assert r.engine.num_optimization_profiles == 3
        for batch, profile in ((32, 2), (5, 0), (1, 1)):
            r.infer(spec.example_input(batch))
            assert r._context.active_optimization_profile == profile
        assert r._stream.cuda_stream not in (0, torch.cuda.current_stream(0).cuda_stream)
        assert r.engine_device_bytes() > 0
