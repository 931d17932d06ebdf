"""int8: real post-training quantization round trips on LeNet-5 (ONNX Runtime QDQ in both styles; AOTInductor
PT2E, slow), the calibration set in the cache key and the manifest, and what TensorRT is handed (GPU-free)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from perfkit.accuracy.parity import compare, tolerance
from perfkit.artifacts import ensure_artifact
from perfkit.backends import get, make_runner, open_runner
from perfkit.backends import tensorrt as T
from perfkit.context import Context
from perfkit.data.calibration import CalibrationSet, Source
from perfkit.data.synthetic import make_image
from perfkit.errors import ArtifactError
from perfkit.vocab import BatchRange, Precision


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return tmp_path_factory.mktemp("int8-artifacts")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    for i in range(12):
        make_image(100 + i, (48, 40)).save(root / f"c{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def cal(calib_dir):
    return CalibrationSet(Source.IMAGES, calib_dir, samples=8)


def _ctx(artifacts, cal, **options):
    return Context(artifacts=artifacts, options={"calibration": cal, **options})


def _initializers(path) -> dict:
    return {t.name: numpy_helper.to_array(t, base_dir=str(path.parent))
            for t in onnx.load(str(path), load_external_data=True).graph.initializer}


def _zero_points(path) -> list[np.ndarray]:
    graph = onnx.load(str(path), load_external_data=False).graph
    inits = _initializers(path)
    return [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]


def test_onnx_int8_round_trip_on_lenet(tiny_spec, artifacts, cal):
    ctx = _ctx(artifacts, cal)
    fp32 = ensure_artifact(tiny_spec, get("onnx"), ctx)
    int8 = ensure_artifact(tiny_spec, get("onnx"), ctx, precision="int8")
    assert int8.precision is Precision.INT8 and int8.dir != fp32.dir and not int8.cached
    m = int8.manifest
    # what it was calibrated on, and how, are in the manifest (and its key)
    assert m["calibration"]["description"] == f"calibrated on 8 images from {cal.root} (minmax)"
    assert len(m["calibration"]["files"]) == 8 and m["key"]["options"]["calibration"] == cal.identity()
    q = m["quantization"]
    assert (q["qdq_style"], q["activation_type"], q["weight_type"], q["per_channel"], q["reduce_range"]) == (
        "x86", "QUInt8", "QInt8", True, True)
    assert q["source_onnx"]["sha256"] == fp32.sha256  # quantized from the cached fp32 artifact
    assert q["ops"]["QuantizeLinear"] > 0 and q["calibration_batches"] == [1, 8]  # 8 images: one batch of 8
    assert all(z.dtype == np.uint8 for z in _zero_points(int8.path))  # uint8 activations: ORT's fused x86 kernels
    assert ensure_artifact(tiny_spec, get("onnx"), ctx, precision="int8").cached  # a second call is a cache hit
    x = tiny_spec.example_input(16, seed=5)
    with open_runner(tiny_spec, "eager", ctx) as eager, make_runner(tiny_spec, "onnx", ctx, int8) as runner:
        assert runner.precision is Precision.INT8 and runner.calibration == m["calibration"]["description"]
        reference, logits = eager.infer(x), runner.infer(x)
    result = compare(reference, logits, tolerance("int8"))
    assert result.passed, result.failures
    assert 0 < result.max_abs_diff and result.cosine_min > 0.95  # quantized (not fp32 copied), and close


def test_calibration_set_method_and_size_key_the_int8_artifact(tiny_spec, artifacts, cal, calib_dir):
    def folder(c, **options):
        return ensure_artifact(tiny_spec, get("onnx"), _ctx(artifacts, c, **options), precision="int8").dir

    base = folder(cal)
    assert folder(CalibrationSet(Source.IMAGES, calib_dir, samples=8)) == base
    assert folder(CalibrationSet(Source.IMAGES, calib_dir, samples=6)) != base
    assert folder(CalibrationSet(Source.IMAGES, calib_dir, samples=8, method="percentile")) != base
    assert folder(CalibrationSet.synthetic(8)) != base
    # the fp32 artifact never sees calibration options: one fp32 artifact whatever int8 was calibrated on
    fp32 = {ensure_artifact(tiny_spec, get("onnx"), _ctx(artifacts, c)).dir for c in (cal, CalibrationSet.synthetic(4))}
    assert len(fp32) == 1


def test_the_layers_left_float_key_every_int8_artifact_built_from_the_qdq_graph(tiny_spec, artifacts, cal):
    """validate's --min-relative search sets float_layers: a mixed artifact never answers for a full int8 one
    (onnx, and the OpenVINO IR and TensorRT engine built from that QDQ graph), and the node stays float."""
    from perfkit.artifacts.cache import cache_key

    full = ensure_artifact(tiny_spec, get("onnx"), _ctx(artifacts, cal), precision="int8")
    mixed = ensure_artifact(tiny_spec, get("onnx"), _ctx(artifacts, cal, float_layers=("node_linear_2",)),
                            precision="int8")
    assert mixed.dir != full.dir and not mixed.cached
    assert mixed.manifest["quantization"]["float_layers"] == ["node_linear_2"]
    assert full.manifest["quantization"]["float_layers"] == [] and mixed.manifest["key"]["options"]["float_layers"] == [
        "node_linear_2"]
    graph = onnx.load(str(mixed.path), load_external_data=False).graph
    made_by = {out: n.op_type for n in graph.node for out in n.output}
    last = next(n for n in graph.node if n.name == "node_linear_2")
    assert made_by.get(last.input[1]) != "DequantizeLinear"  # its weight is float, not dequantized int8
    assert ensure_artifact(tiny_spec, get("onnx"), _ctx(artifacts, cal, float_layers=["node_linear_2"]),
                           precision="int8").cached  # the set, not its spelling, is the key
    for name in ("openvino", "tensorrt"):
        backend = get(name)

        def key(precision, **options):
            given = {"calibration": cal, **options}
            return cache_key(tiny_spec, backend, precision, BatchRange(), "cpu",
                             backend.keyed(backend.export_options(given, precision)))

        assert key(Precision.INT8) != key(Precision.INT8, float_layers=("node_linear_2",)), name
        assert key(Precision.FP32) == key(Precision.FP32, float_layers=("node_linear_2",)), name
    with pytest.raises(ArtifactError, match="float_layers names nodes that .* does not have: no_such_node"):
        ensure_artifact(tiny_spec, get("onnx"), _ctx(artifacts, cal, float_layers=("no_such_node",)), precision="int8")


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_calibrate_in_equal_batches(tiny_spec, tmp_path, calib_dir, method):
    cal = CalibrationSet(Source.IMAGES, calib_dir, samples=10, method=method)  # 10 = 2 batches of 5
    art = ensure_artifact(tiny_spec, get("onnx"), _ctx(tmp_path, cal), precision="int8")
    q = art.manifest["quantization"]
    assert q["calibrate_method"] == {"entropy": "Entropy", "percentile": "Percentile"}[method]
    assert q["calibration_batches"] == [2, 5] and q["extra_options"] == {"CalibStridedMinMax": 2}


def test_tensorrt_qdq_style_is_symmetric_int8_and_runs(tiny_spec, artifacts, cal):
    """TensorRT's explicit quantization takes symmetric int8 only (zero point 0): that is the QDQ it is handed."""
    ctx = _ctx(artifacts, cal, qdq_style="tensorrt")
    art = ensure_artifact(tiny_spec, get("onnx"), ctx, precision="int8")
    assert art.manifest["quantization"]["qdq_style"] == "tensorrt"
    assert art.dir != ensure_artifact(tiny_spec, get("onnx"), _ctx(artifacts, cal), precision="int8").dir
    zero_points = _zero_points(art.path)
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    x = tiny_spec.example_input(4, seed=1)
    with open_runner(tiny_spec, "eager", ctx) as eager, make_runner(tiny_spec, "onnx", ctx, art) as runner:
        assert compare(eager.infer(x), runner.infer(x), tolerance("int8")).passed


def test_tensorrt_int8_is_built_from_the_tensorrt_qdq_style(tiny_spec, tmp_path, cal):
    class Req:  # what T.source_context reads of an ExportRequest
        ctx = Context(artifacts=tmp_path, options={"calibration": cal, "opset": 18}, force=True)
        precision = Precision.INT8

    ctx = T.source_context(Req)
    assert ctx.options == {"calibration": cal, "opset": 18, "qdq_style": "tensorrt"} and not ctx.force
    Req.precision = Precision.FP16
    assert T.source_context(Req).options == {"calibration": cal, "opset": 18}
    trt = get("tensorrt")
    assert trt.runs("int8", "cuda:0") and not trt.runs("int8", "cpu")
    assert "calibration" in trt.options_for({}, "export", "int8") and "calibration" not in trt.options_for({}, "export", "fp16")


def test_int8_without_calibration_is_an_error_saying_how(tiny_spec, tmp_path):
    with pytest.raises(ArtifactError, match="needs calibration data: pass --calib DIR"):
        ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=tmp_path), precision="int8")
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "int8" in str(p)]


def test_equal_calibration_batches_fit_the_artifact_range(tiny_spec, calib_dir):
    from perfkit.artifacts.cache import ExportRequest

    def sizes(samples, batch):
        req = ExportRequest(tiny_spec, Precision.INT8, batch, "cpu",
                            {"calibration": CalibrationSet(Source.IMAGES, calib_dir, samples=samples)}, None, None)
        return [b.shape[0] for b in req.calibration_batches()]

    assert sizes(8, BatchRange()) == [8]
    assert sizes(12, BatchRange()) == [6, 6]
    assert sizes(7, BatchRange()) == [7]
    assert sizes(11, BatchRange(1, 4, 4)) == [1] * 11
    assert sizes(11, BatchRange(2, 2, 2)) == [2] * 5  # a fixed batch: the remainder is left out


@pytest.mark.slow
def test_aoti_int8_round_trip_on_lenet(tiny_spec, artifacts):
    """PT2E (torchao's x86 Inductor quantizer) → AOTInductor with int8 kernels; ~1-2 minutes of compiling."""
    ctx = Context(artifacts=artifacts, options={"calibration": CalibrationSet.synthetic(16)})
    art = ensure_artifact(tiny_spec, get("aoti"), ctx, precision="int8", batch=BatchRange(1, 8, 64))
    q = art.manifest["quantization"]
    assert q["strict_export"] and q["reduce_range"] and q["int8_kernels"].get("qconv") and q["int8_kernels"].get("qlinear")
    assert art.manifest["aoti"]["inductor_configs"]["freezing"] is True
    assert "synthetic images" in art.manifest["calibration"]["description"]
    x = tiny_spec.example_input(8, seed=2)
    with open_runner(tiny_spec, "eager", ctx) as eager, make_runner(tiny_spec, "aoti", ctx, art) as runner:
        result = compare(eager.infer(x), runner.infer(x), tolerance("int8"))
    assert result.passed, result.failures


@pytest.mark.parametrize("machine, style", [("x86_64", "x86"), ("AMD64", "x86"), ("aarch64", "arm"), ("arm64", "arm")])
def test_the_default_qdq_style_follows_the_cpu(machine, style):
    from perfkit.backends.onnxruntime import machine_qdq_style

    assert machine_qdq_style(machine) == style


def test_arm_qdq_style_is_int8_activations_and_runs(tiny_spec, artifacts, cal):
    """ARM's form (ONNX Runtime's integer kernels there): signed int8 activations, full-range per-channel
    weights; on this x86 machine it still runs (slowly) and matches eager within the int8 tolerance."""
    ctx = _ctx(artifacts, cal, qdq_style="arm")
    art = ensure_artifact(tiny_spec, get("onnx"), ctx, precision="int8")
    q = art.manifest["quantization"]
    assert (q["qdq_style"], q["activation_type"], q["weight_type"], q["per_channel"], q["reduce_range"]) == (
        "arm", "QInt8", "QInt8", True, False)
    zero_points = _zero_points(art.path)
    assert zero_points and all(z.dtype == np.int8 for z in zero_points)
    x = tiny_spec.example_input(4, seed=1)
    with open_runner(tiny_spec, "eager", ctx) as eager, make_runner(tiny_spec, "onnx", ctx, art) as runner:
        assert compare(eager.infer(x), runner.infer(x), tolerance("int8")).passed
