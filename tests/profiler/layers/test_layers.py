"""Per-layer profiles: the layer table, each runtime's profiler on LeNet-5, and a runtime whose profiler is
unavailable."""

import types

import pytest

from perfkit.backends import get
from perfkit.profiler import layers as L
from perfkit.profiler import profile_model
from perfkit.profiler.layers import LayerTime, ModuleCounts, module_rows, profile_layers
from perfkit.record import to_records
from perfkit.results import Failure, Kind, Where

COUNTS = ModuleCounts(macs={"": 130, "block": 130, "block.conv": 100, "block.fc": 30},
                      params={"block.conv": 9, "block.fc": 4, "block.bn": 2},
                      types={"": "Net", "block": "Block", "block.conv": "Conv2d", "block.fc": "Linear",
                             "block.bn": "BatchNorm2d", "block.relu": "ReLU"})


def test_own_macs_leave_out_the_submodules():
    assert COUNTS.own_macs("block.conv") == 100
    assert COUNTS.own_macs("block") == 0 and COUNTS.own_macs("") == 0  # all of it in its children
    assert COUNTS.own_macs("block.relu") == 0


def test_a_fused_layer_splits_its_time_by_macs_and_unmapped_layers_stay_by_op_type():
    rows = module_rows([
        LayerTime("conv_relu_bn_fc", "Conv", 2.6, ("block.bn", "block.conv", "block.fc")),  # MACs 100 : 30
        LayerTime("relu_add", "Add", 0.4, ("block.relu", "block")),  # no MACs: evenly
        LayerTime("Reorder", "Reorder", 0.25), LayerTime("Reorder_2", "Reorder", 0.25),
        LayerTime("flatten", "Reshape", 0.1, ("",)),
    ], COUNTS)
    by = {(r["module"], tuple(r["op_types"])): r for r in rows}
    assert by[("block.conv", ("Conv",))]["ms"] == pytest.approx(2.0)
    assert by[("block.fc", ("Conv",))]["ms"] == pytest.approx(0.6)
    assert by[("block.bn", ("Conv",))]["ms"] == 0  # absorbed, shown with no time of its own
    assert by[("block.relu", ("Add",))]["ms"] == by[("block", ("Add",))]["ms"] == pytest.approx(0.2)
    unmapped = by[(None, ("Reorder",))]
    assert unmapped["ms"] == pytest.approx(0.5) and unmapped["layers"] == 2
    assert by[("block.conv", ("Conv",))]["macs"] == 100 and by[("block.conv", ("Conv",))]["params"] == 9
    assert sum(r["ms"] for r in rows) == pytest.approx(3.6)  # nothing dropped, nothing counted twice
    assert [r["ms"] for r in rows] == sorted((r["ms"] for r in rows), reverse=True)


def test_coverage_is_the_time_on_rows_named_by_a_module_path():
    layers = [LayerTime("a", "Conv", 3.0, ("block.conv",)), LayerTime("b", "Reshape", 0.5, ("",)),
              LayerTime("c", "Reorder", 0.5)]
    profile = L.LayerProfile(Where("m", "onnx", "fp32", 1), "src", layers, module_rows(layers, COUNTS), 10, "map", 3.1)
    assert profile.total_ms == pytest.approx(4.0)
    assert profile.coverage == pytest.approx(0.75)  # the model's own code and the reorder are not module rows
    [record] = to_records(profile)
    record.validate()
    m = record.metrics
    assert (m["total_ms"], m["e2e_median_ms"], m["coverage"]) == (profile.total_ms, 3.1, profile.coverage)
    assert m["by_op_type"] == {"Conv": 3.0, "Reshape": 0.5, "Reorder": 0.5}
    assert m["layers"][0] == {"name": "a", "op_type": "Conv", "ms": 3.0, "modules": ["block.conv"]}


@pytest.mark.parametrize("name, says", [("native", "no layer profiler"), ("someruntime", "has no layer profiler")])
def test_a_runtime_without_a_layer_profiler_says_why_in_an_ok_record(tiny_spec, name, says):
    runner = types.SimpleNamespace(name=name)
    profile = profile_layers(tiny_spec, runner, Where.of(tiny_spec, name, "fp32", 1), ModuleCounts(), 1.5)
    [record] = to_records(profile)
    record.validate()
    assert record.status == "ok" and says in record.metrics["unavailable"]
    assert record.metrics["rows"] == [] and record.metrics["e2e_median_ms"] == 1.5


def test_an_onnx_runtime_that_writes_no_node_events_is_unavailable_not_a_failure(tiny_spec, monkeypatch, tmp_path):
    from perfkit.profiler.layers import onnxrt

    class Session:  # an ONNX Runtime build without the profiler: end_profiling names no file
        def __init__(self, *args, **kwargs):
            pass

        def run(self, *args):
            return None

        def end_profiling(self):
            return ""

    fake = types.SimpleNamespace(InferenceSession=Session, __version__="0.0-noprofile")
    monkeypatch.setattr(onnxrt, "_onnxruntime", lambda: fake)
    real = types.SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"], get_provider_options=lambda: {})
    runner = types.SimpleNamespace(name="onnx", session=real, session_options=lambda ort: types.SimpleNamespace(),
                                   artifact=types.SimpleNamespace(path=tmp_path / "m.onnx"), input_name="input",
                                   output_name="logits")
    profile = profile_layers(tiny_spec, runner, Where.of(tiny_spec, "onnx", "fp32", 1), ModuleCounts(), None)
    assert profile.unavailable == ("onnxruntime 0.0-noprofile wrote no node events to its profile (a build without "
                                   "the profiler?)")


def test_node_times_leave_out_the_warm_up_runs():
    from perfkit.profiler.layers.onnxrt import node_times

    run = lambda ts: {"cat": "Session", "name": "model_run", "ts": ts, "dur": 10}  # noqa: E731
    node = lambda ts, dur: {"cat": "Node", "name": "n_kernel_time", "ts": ts, "dur": dur,  # noqa: E731
                            "args": {"op_name": "Conv"}}
    events = [run(0), node(1, 500), run(20), node(21, 7), node(22, 5), run(40), node(41, 3)]
    assert node_times(events, warmup=1) == ({"n": 15.0}, {"n": "Conv"})


def test_profile_model_adds_a_layer_profile_per_runtime_and_batch_after_its_timings(tiny_spec, ctx, plan_of):
    plan = plan_of((get("eager"),), (1, 2), layers=True)
    assert plan.steps == 4 and {k[0] for k in plan.keys(tiny_spec)} == {"latency", "layers"}
    results = list(profile_model(tiny_spec, plan, ctx))
    assert [type(r).__name__ for r in results] == ["LatencyResult", "LatencyResult", "LayerProfile", "LayerProfile"]
    for latency, profile in zip(results[:2], results[2:]):
        assert profile.where == latency.where
        assert profile.e2e_median_ms == latency.timing.compute.median_ms  # the same batch's median beside it
        by = {r["module"]: r for r in profile.rows}
        assert by["features.0"]["type"] == "Conv2d" and by["features.0"]["macs"] == 6 * 28 * 28 * (3 * 5 * 5)  # outputs × (inputs × kernel)
        assert profile.coverage > 0.9 and all(r["ms"] >= 0 for r in profile.rows)


def test_a_runtime_that_cannot_open_fails_its_layer_points_too(tiny_spec, ctx, plan_of, monkeypatch):
    import perfkit.backends

    monkeypatch.setattr(perfkit.backends, "open_runner", lambda *a, **k: (_ for _ in ()).throw(OSError("no disk")))
    results = list(profile_model(tiny_spec, plan_of((get("eager"),), (1,), layers=True), ctx))
    assert [(type(r), r.kind, r.error) for r in results] == [(Failure, Kind.LATENCY, "OSError: no disk"),
                                                             (Failure, Kind.LAYERS, "OSError: no disk")]


def test_torch_op_profiles_keep_the_time_the_profiler_did_not_see():
    from perfkit.profiler.layers.torch_ops import OUTSIDE, op_layers

    def event(name, us, parent=None):
        return types.SimpleNamespace(name=name, cpu_time_total=us, cpu_parent=parent)

    conv = event("aten::conv2d", 3000)
    events = [event("forward", 5000), conv, event("aten::mkldnn_convolution", 2900, conv), event("aten::relu", 1000)]
    layers = op_layers(events, runs=2, cuda=False, wall_ms=2.5)
    assert {layer.name: layer.ms for layer in layers} == pytest.approx({"aten::conv2d": 1.5, "aten::relu": 0.5,
                                                                        OUTSIDE: 0.5})
    assert all(not layer.modules for layer in layers)  # by op only: unmapped


def test_eager_module_ranges_are_removed_after_profiling(tiny_spec):
    from perfkit.backends import open_runner
    from perfkit.context import Context

    with open_runner(tiny_spec, "eager", Context()) as runner:
        measured = L.torch_ops.profile(runner, tiny_spec.example_input(1), 2, L.module_counts(tiny_spec))
        assert not any(m._forward_pre_hooks or m._forward_hooks for m in runner.module.modules())
        assert runner.infer(tiny_spec.example_input(1)).shape == (1, 10)
    assert {layer.modules[0] for layer in measured.layers} >= {"", "features", "features.0", "classifier.5"}


def test_kinetos_start_stop_noise_is_held_back_and_anything_else_passed_on(capfd):
    import os

    from perfkit.profiler.layers.torch_ops import _kineto_quiet

    with _kineto_quiet():  # what Kineto's C++ writes to fd 2, bypassing sys.stderr
        os.write(2, b"USDT:2026-12-07 11:48:10 1:1 SyncActivityProfilerHandler.cpp:39] profiler_start\n"
                    b"ERROR:2026-12-07 11:48:10 1:1 DeviceProperties.cpp:56] gpuGetDeviceCount failed with code 35\n"
                    b"WARNING: something else went wrong\n")
    err = capfd.readouterr().err
    assert err == "WARNING: something else went wrong\n"
    os.write(2, b"after\n")  # fd 2 is the terminal's again
    assert capfd.readouterr().err == "after\n"
