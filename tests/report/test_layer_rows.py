"""The layer tables from layers records: side by side per runtime, totals beside the end-to-end median, time by
op type, and the top layers with achieved GFLOP/s and int8 against fp32 (console and HTML).

The records are TEST INPUTS made the way a real run makes them: ``LayerProfile`` results through
perfkit.record, inside ``recording``."""

import pytest

from perfkit.profiler.layers import LayerProfile, LayerTime, ModuleCounts, module_rows
from perfkit.record import recording
from perfkit.report import layer_rows as L
from perfkit.report.html import render_html, report_context
from perfkit.results import Failure, Kind, Where

COUNTS = ModuleCounts(macs={"": 300, "conv": 200, "fc": 100}, params={"conv": 10, "fc": 5},
                      types={"": "Net", "conv": "Conv2d", "relu": "ReLU", "fc": "Linear"})


def _profile(runtime, precision, conv_ms, fc_ms, reorder_ms=0.0, median=None):
    layers = [LayerTime("conv_relu", "Conv", conv_ms, ("conv", "relu")), LayerTime("fc", "Gemm", fc_ms, ("fc",))]
    if reorder_ms:
        layers.append(LayerTime("Reorder", "Reorder", reorder_ms))
    return LayerProfile(Where("net", runtime, precision, 4, "random:seed0", "cpu"), f"{runtime} profiler", layers,
                        module_rows(layers, COUNTS), 10, "mapping", median)


@pytest.fixture
def run(store):
    with recording(store, command="test") as rec:
        rec.add(_profile("onnx", "fp32", 2.0, 0.5, reorder_ms=0.5, median=2.8))
        rec.add(_profile("onnx", "int8", 0.5, 0.25, median=0.9))
        rec.add(_profile("eager", "fp32", 4.0, 1.0, median=4.5))
        rec.add(LayerProfile(Where("net", "tensorrt", "fp16", 4, "random:seed0", "cuda"), "none",
                             unavailable="TensorRT layer profile needs a GPU and TensorRT"))
        rec.add(Failure.of(Kind.LAYERS, Where("net", "openvino", "fp32", 4, "random:seed0", "cpu"), "RuntimeError: boom"))
        return rec.run_id, list(rec.records)


def test_modules_side_by_side_with_their_macs(run):
    _, records = run
    measured = L.profiles(records)
    labels = [L.label(r) for r in measured]  # in the backend registry's order, eager first
    assert labels[:3] == ["eager fp32 b4", "onnx fp32 b4", "onnx int8 b4"]
    assert set(labels[3:]) == {"openvino fp32 b4", "tensorrt fp16 b4"}
    rows = {r["name"]: r for r in L.side_by_side(measured)}
    assert rows["conv"]["ms"] == {"eager fp32 b4": 4.0, "onnx fp32 b4": 2.0, "onnx int8 b4": 0.5}
    assert (rows["conv"]["macs"], rows["conv"]["params"], rows["conv"]["type"]) == (200, 10, "Conv2d")
    assert rows["relu"]["ms"]["onnx fp32 b4"] == 0  # fused into the convolution: shown, no time of its own
    assert rows["(unmapped) Reorder"]["ms"] == {"onnx fp32 b4": 0.5}
    assert list(rows)[0] == "conv"  # the largest time first


def test_totals_put_the_layer_sum_beside_the_median_or_say_why_there_is_none(run):
    totals = {t["label"]: t for t in L.totals(L.profiles(run[1]))}
    onnx = totals["onnx fp32 b4"]
    assert (onnx["total_ms"], onnx["e2e_median_ms"], onnx["coverage"]) == (3.0, 2.8, pytest.approx(2.5 / 3.0))
    assert totals["tensorrt fp16 b4"]["why_not"] == "TensorRT layer profile needs a GPU and TensorRT"
    assert totals["openvino fp32 b4"]["why_not"] == "RuntimeError: boom"


def test_top_layers_have_achieved_gflops_and_int8_against_fp32(run):
    top = [t for t in L.top_layers(L.profiles(run[1])) if t["runtime"] == "onnx"]
    conv = next(t for t in top if t["name"] == "conv")
    assert conv["ms"] == {"fp32": 2.0, "int8": 0.5}
    assert conv["gflops"]["fp32"] == pytest.approx(2 * 200 * 4 / 2e-3 / 1e9)  # 2 × MACs × batch / time
    assert conv["int8_over_fp32"] == pytest.approx(0.25)
    assert all(t["name"] != "(unmapped) Reorder" for t in top)  # layers of the model only


def test_time_by_op_type(run):
    onnx = next(r for r in L.profiles(run[1]) if L.label(r) == "onnx fp32 b4")
    assert L.by_op_type(onnx) == [{"op_type": "Conv", "ms": 2.0, "share": pytest.approx(2 / 3)},
                                  {"op_type": "Gemm", "ms": 0.5, "share": pytest.approx(0.5 / 3)},
                                  {"op_type": "Reorder", "ms": 0.5, "share": pytest.approx(0.5 / 3)}]


def test_the_html_report_has_a_per_layer_section(run, store, tmp_path):
    run_id, _ = run
    ctx = report_context(store, run_id)["layer_time"]
    assert ctx["precisions"] == ["fp32", "int8"]
    html = render_html(store, run_id, tmp_path / "r.html").read_text(encoding="utf-8")
    section = html[html.index('id="layer-time"'):html.index('id="layers"')]
    assert "TensorRT layer profile needs a GPU and TensorRT" in section and "RuntimeError: boom" in section
    assert "int8 / fp32 time" in section and ">0.25<" in section  # conv: int8 a quarter of fp32's time
    assert "onnx fp32 b4: time by op type" in section


def test_a_run_without_layer_profiles_has_no_per_layer_section(store, tmp_path):
    with recording(store, command="test") as rec:
        rec.add(Failure.of(Kind.MEMORY, Where("net", "eager", "fp32", 1), "x"))
    assert report_context(store, rec.run_id)["layer_time"] is None
    assert 'id="layer-time"' not in render_html(store, rec.run_id, tmp_path / "r.html").read_text(encoding="utf-8")
