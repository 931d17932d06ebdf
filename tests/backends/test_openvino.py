"""OpenVINO on LeNet-5: the IR artifact (both files hashed, f32 weights), cache hits and tampering,
parity, the pinned precision and hint, static batches, the Offline queue, telemetry, availability,
one-line errors, and int8: ONNX Runtime's QDQ artifact converted, run in int8 kernels."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

pytest.importorskip("openvino")

from perfkit.artifacts import ensure_artifact  # noqa: E402
from perfkit.backends import get, open_runner, prepare  # noqa: E402
from perfkit.backends import openvino as ovb  # noqa: E402
from perfkit.context import Context  # noqa: E402
from perfkit.errors import ArtifactError, PerfkitError, UsageError  # noqa: E402
from perfkit.profiler.scenarios.offline import OfflineConfig, drive  # noqa: E402


@pytest.fixture
def ctx(shared_artifacts):
    return Context(artifacts=shared_artifacts)


@pytest.fixture
def ir(tiny_spec, ctx):
    return prepare(tiny_spec, "openvino", ctx)


def test_the_ir_is_converted_from_the_onnx_artifact_and_both_files_are_hashed(ir, tiny_spec, ctx):
    assert ir.path.name == "model.xml" and set(ir.files) == {"model.xml", "model.bin"}
    onnx = prepare(tiny_spec, "onnx", ctx)
    info = ir.manifest["openvino"]
    assert info["source_onnx"] == {"path": str(onnx.path), "sha256": onnx.sha256, "precision": "fp32"}
    assert info["openvino_version"] and info["quantized_ops"] == 0
    assert ir.manifest["key"]["libraries"].keys() >= {"torch", "onnx", "onnxscript", "openvino"}
    assert ir.manifest["options"] == {"opset": None}  # the ONNX artifact's options key the IR too


def test_the_ir_keeps_f32_weights(ir, tiny_spec):
    """ov.save_model would compress the weights to fp16 by default: perfkit turns that off."""
    info = ir.manifest["openvino"]
    assert info["compress_to_fp16"] is False
    assert set(info["constant_types"]) <= {"f32", "i64", "i32"} and info["constant_types"]["f32"] >= 10
    assert ovb.ir_summary(ir.path)["constant_types"] == info["constant_types"]
    params = sum(p.numel() for p in tiny_spec.build().parameters())
    assert ir.files["model.bin"]["bytes"] >= 4 * params  # four bytes per weight, not two


def test_a_second_prepare_is_a_hash_checked_cache_hit(ir, tiny_spec, ctx):
    again = prepare(tiny_spec, "openvino", ctx)
    assert again.cached and again.path == ir.path and again.sha256 == ir.sha256


def test_a_tampered_bin_is_refused_naming_it(ir, tiny_spec, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ir.dir.parent.parent, copy)  # keep the shared cache intact
    folder = copy / ir.dir.relative_to(ir.dir.parent.parent)
    blob = bytearray((folder / "model.bin").read_bytes())
    blob[64] ^= 0x01
    (folder / "model.bin").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="has been modified") as err:
        ensure_artifact(tiny_spec, get("openvino"), Context(artifacts=copy))
    assert str(folder / "model.bin") in str(err.value)


def test_parity_with_eager(tiny_spec, ctx):
    from perfkit.accuracy.parity import ParityCheck, check_parity, synthetic_inputs

    inputs = (synthetic_inputs(tiny_spec, 6), "synthetic")
    checks = [r for r in check_parity(tiny_spec, [get("openvino")], ctx, inputs=inputs, batches=[1, 3])
              if isinstance(r, ParityCheck)]
    assert [(c.where.batch, c.result.passed) for c in checks] == [(1, True), (3, True)]
    assert max(c.result.max_abs_diff for c in checks) < 1e-4


def test_latency_hint_and_f32_are_pinned_and_read_back(tiny_spec, ctx, monkeypatch):
    seen = []
    with open_runner(tiny_spec, "openvino", ctx) as runner:
        real = runner.core.compile_model
        monkeypatch.setattr(runner, "core", _Spy(runner.core, seen))
        assert runner.config()["inference_precision"] == "f32"  # what it will ask for, before any compile
        runner.infer(tiny_spec.example_input(2))
        config = runner.config()
    assert seen == [{"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}]
    # and what the compiled model reports is recorded (not only what was asked for)
    assert config["performance_hint"] == "LATENCY" and config["inference_precision"] == "f32"
    assert config["static_batch"] == 2 and config["ov_device"] == "CPU"
    assert isinstance(config["num_streams"], int) and isinstance(config["inference_num_threads"], int)
    assert callable(real)


class _Spy:
    """A Core whose compile_model records the properties it is given."""

    def __init__(self, core, seen):
        self._core, self._seen = core, seen

    def compile_model(self, model, device, properties):
        self._seen.append(dict(properties))
        return self._core.compile_model(model, device, properties)


def test_one_static_compiled_model_per_batch(tiny_spec, ctx):
    with open_runner(tiny_spec, "openvino", ctx) as runner:
        a = runner.infer(tiny_spec.example_input(1))
        b = runner.infer(tiny_spec.example_input(3))
        runner.infer(tiny_spec.example_input(1))
        shapes = {batch: list(compiled.inputs[0].get_shape()) for batch, (compiled, _) in runner._compiled.items()}
    assert shapes == {1: [1, *tiny_spec.input_size], 3: [3, *tiny_spec.input_size]}
    assert a.shape == (1, 10) and b.shape == (3, 10) and a.dtype == torch.float32


def test_memory_is_measured_in_a_process_of_its_own_and_counts_the_bin(tiny_spec, ctx):
    from perfkit.profiler.memory import measure_memory

    result = measure_memory(tiny_spec, "openvino", 2, ctx)
    assert result.peak_bytes > 0 and "RSS" in result.method
    params = sum(p.numel() for p in tiny_spec.build().parameters())
    assert result.details["artifact_bytes"] > 4 * params  # model.bin counted, not only model.xml


def test_threads_cap_the_plugin(tiny_spec, ctx):
    with open_runner(tiny_spec, "openvino", ctx.replace(threads=1)) as runner:
        runner.infer(tiny_spec.example_input(1))
        assert runner.config()["inference_num_threads"] == 1


def test_offline_is_an_async_queue_with_the_throughput_hint(tiny_spec, ctx):
    with open_runner(tiny_spec, "openvino", ctx) as runner:
        with runner.offline_session(2, tiny_spec.example_input(4), cores=2) as session:
            assert not session.threaded and session.requests == 2
            config = session.config
            trial = drive(session, 4, OfflineConfig(seconds=0.1))
    assert config["performance_hint"] == "THROUGHPUT" and config["hint_num_requests"] == 2
    assert config["inference_precision"] == "f32" and config["static_batch"] == 4
    assert "AsyncInferQueue of 2" in session.mechanism and trial.samples >= 8 and trial.samples % 8 == 0


def test_an_absent_device_plugin_is_a_one_line_error(tiny_spec, ctx):
    with pytest.raises(PerfkitError, match="device GPU is not available here .* use --ov-device CPU") as err:
        with open_runner(tiny_spec, "openvino", ctx.replace(options={"ov_device": "gpu"})):
            pass
    assert "\n" not in str(err.value)


def test_precisions_it_does_not_run_are_refused_naming_what_it_runs(tiny_spec, ctx):
    with pytest.raises(UsageError, match="openvino on cpu supports fp32, bf16, int8, not fp16"):
        prepare(tiny_spec, "openvino", ctx, precision="fp16")
    with pytest.raises(UsageError, match="openvino does not run on cuda"):
        get("openvino").check("fp32", "cuda")


def test_convert_model_runs_with_telemetry_declined_and_the_environment_restored(tiny_spec, shared_artifacts,
                                                                                monkeypatch):
    import openvino as ov

    seen = []
    real = ov.convert_model
    monkeypatch.setattr(ov, "convert_model", lambda *a, **k: (seen.append(os.environ.get("CI")), real(*a, **k))[1])
    monkeypatch.setenv("CI", "false")
    ctx = Context(artifacts=shared_artifacts, force=True)  # re-convert (the ONNX artifact stays cached)
    art = prepare(tiny_spec, "openvino", ctx)
    assert seen == ["true"] and os.environ["CI"] == "false"
    assert art.manifest["openvino"]["telemetry"].startswith("declined")
    monkeypatch.setenv(ovb.TELEMETRY_ENV, "1")
    prepare(tiny_spec, "openvino", Context(artifacts=shared_artifacts, force=True))  # a new context: converts again
    assert seen == ["true", "false"]  # left to OpenVINO's own settings


def test_unavailable_without_the_package_or_its_cpu_plugin(monkeypatch):
    import importlib.util

    backend = get("openvino")
    assert backend.unavailable("cpu") is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert backend.unavailable("cpu") == "openvino needs 'openvino' (pip install 'perfkit[openvino]')"
    monkeypatch.undo()
    ovb._plugin_problem.cache_clear()
    try:
        monkeypatch.setattr(ovb, "import_module", _broken_import)
        assert backend.unavailable("cpu").startswith("openvino is installed but cannot start: OSError")
    finally:
        monkeypatch.undo()
        ovb._plugin_problem.cache_clear()
    assert backend.unavailable("cpu") is None


def _broken_import(name):
    raise OSError("libopenvino.so: cannot open shared object file")


def test_an_int8_ir_without_quantized_ops_is_refused(tiny_spec, ctx, tmp_path, monkeypatch):
    """An int8 request must never yield an fp32 IR, whatever its ONNX source turns out to be."""
    from perfkit.artifacts import ExportRequest
    from perfkit.vocab import BatchRange, Precision

    fp32_onnx = prepare(tiny_spec, "onnx", ctx)
    monkeypatch.setattr(ovb, "ensure_artifact", lambda *a, **k: fp32_onnx)
    req = ExportRequest(tiny_spec, Precision.INT8, BatchRange(), "cpu", {"opset": None}, tmp_path, ctx)
    with pytest.raises(ArtifactError, match="has no quantized operations: its ONNX source is not a QDQ graph"):
        ovb.export(req)


def test_int8_is_the_onnx_backends_qdq_artifact_converted_and_runs_int8_kernels(tiny_spec, shared_artifacts):
    """openvino int8 = ONNX Runtime's x86 QDQ artifact (perfkit's calibration, cached once for both),
    converted with real quantized operations that the CPU plugin runs in u8/i8, close to eager fp32."""
    import numpy as np

    from perfkit.data.calibration import CalibrationSet

    ctx = Context(artifacts=shared_artifacts, options={"calibration": CalibrationSet.synthetic(8)})
    ir = prepare(tiny_spec, "openvino", ctx, precision="int8")
    qdq = prepare(tiny_spec, "onnx", ctx, precision="int8")
    info = ir.manifest["openvino"]
    assert info["source_onnx"] == {"path": str(qdq.path), "sha256": qdq.sha256, "precision": "int8"}
    assert info["quantized_ops"] > 0 and ir.manifest["calibration"] == qdq.manifest["calibration"]
    # another calibration set is another artifact (the set keys the IR's cache, as it keys the QDQ ONNX's)
    other = Context(artifacts=shared_artifacts, options={"calibration": CalibrationSet.synthetic(8, seed=1)})
    assert prepare(tiny_spec, "openvino", other, precision="int8").dir != ir.dir
    x = tiny_spec.example_input(2)
    with open_runner(tiny_spec, "openvino", ctx, precision="int8") as runner:
        got = runner.infer(x).numpy()
        compiled = runner._compiled[2][0]
        runtime = {op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ops()
                   if op.get_rt_info()["layerType"].astype(str) in ("Convolution", "FullyConnected")}
    assert runtime & {"u8", "i8"}  # int8 kernels, not fake quantization in f32
    with torch.inference_mode():
        want = tiny_spec.build()(x).numpy()
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max() + 1e-3


@pytest.mark.parametrize("which, name, batch", [("dynamic", "pixel_values", 3), ("fixed", "image", 2)])
def test_an_onnx_files_ir_is_converted_from_the_file_and_keeps_its_names(onnx_files, tmp_path, which, name, batch):
    from perfkit.zoo.sources import resolve

    spec = resolve(str(getattr(onnx_files, which)))
    ctx = Context(artifacts=tmp_path)
    ir = prepare(spec, "openvino", ctx)
    source = prepare(spec, "onnx", ctx)
    assert ir.manifest["openvino"]["source_onnx"]["sha256"] == source.sha256  # the file's copy, converted
    assert ir.manifest["inputs"][0]["name"] == name and ir.batch == source.batch
    x = torch.randn(batch, 3, 32, 32)
    with open_runner(spec, "openvino", ctx) as runner, open_runner(spec, "onnx", ctx) as reference:
        assert torch.allclose(runner.infer(x), reference.infer(x), atol=1e-5)


needs_bf16 = pytest.mark.skipif(not ({"avx512_bf16", "amx_bf16"} & set(__import__("perfkit.env").env.cpu_flags() or [])),
                                reason="this CPU has no bf16 arithmetic (AVX512-BF16 or AMX)")


@needs_bf16
def test_bf16_is_the_f32_ir_at_openvinos_bf16_inference_precision(tiny_spec, ctx):
    from perfkit.accuracy.parity import ParityCheck, check_parity, synthetic_inputs

    art = prepare(tiny_spec, "openvino", ctx, precision="bf16")
    assert art.precision == "bf16" and "f32" in art.manifest["openvino"]["constant_types"]
    assert not set(art.manifest["openvino"]["constant_types"]) & {"f16", "bf16"}  # f32 weights: bf16 is a hint
    assert art.manifest["openvino"]["source_onnx"]["precision"] == "fp32"
    with open_runner(tiny_spec, "openvino", ctx, precision="bf16") as runner:
        runner.infer(tiny_spec.example_input(2))
        assert runner.config()["inference_precision"] == "bf16"  # what the compiled model reports
    inputs = (synthetic_inputs(tiny_spec, 6), "synthetic")
    checks = [r for r in check_parity(tiny_spec, [get("openvino")], ctx, inputs=inputs, batches=[1, 3],
                                      precision="bf16") if isinstance(r, ParityCheck)]
    assert [c.result.passed for c in checks] == [True, True]


def test_a_pinned_precision_the_plugin_does_not_take_is_refused(tiny_spec, ctx, monkeypatch):
    """OpenVINO keeps f32 without a word where a CPU has no bf16 arithmetic: that would be an fp32
    timing recorded as bf16."""

    class Keeps32:
        def __init__(self, compiled):
            self.compiled = compiled

        def get_property(self, name):
            return "f32" if name == "INFERENCE_PRECISION_HINT" else self.compiled.get_property(name)

    with open_runner(tiny_spec, "openvino", ctx) as runner:
        real = runner.core.compile_model
        monkeypatch.setattr(runner.core, "compile_model", lambda *a, **k: Keeps32(real(*a, **k)), raising=False)
        with pytest.raises(PerfkitError, match="runs f32, not the bf16 asked for"):
            runner.compile(2, {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16"})
