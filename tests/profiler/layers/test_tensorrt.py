"""TensorRT's layer profile on the fake TensorRT: IProfiler times of each timed run, the engine inspector's
layer information, and TensorRT's layer names (fusions, reformats, Myelin regions) mapped to LeNet-5's
modules through the ONNX graph perfkit really exports for it."""

import json
import types

import pytest

from perfkit.artifacts import ensure_artifact
from perfkit.backends import get
from perfkit.context import Context
from perfkit.errors import PerfkitError
from perfkit.profiler.layers import RUNS, ModuleCounts, module_counts, onnx_graph, profile_layers, trt_names
from perfkit.profiler.layers import tensorrt as L
from perfkit.record import to_records
from perfkit.results import Where


@pytest.fixture(scope="module")
def lenet(tiny_spec, shared_artifacts):
    """LeNet-5's ONNX artifact (the graph a TensorRT engine is built from), its map and its module counts."""
    onnx_artifact = ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=shared_artifacts))
    counts = module_counts(tiny_spec)
    return types.SimpleNamespace(path=onnx_artifact.path, counts=counts,
                                 graph=onnx_graph.read(onnx_artifact.path, set(counts.types)))


@pytest.mark.parametrize("layer, nodes", [
    ("node_conv2d + node_relu", ["node_conv2d", "node_relu"]),  # a fusion
    ("PWN(PWN(node_relu_2), node_linear_1)", ["node_relu_2", "node_linear_1"]),  # a pointwise fusion, nested
    ("Reformatting CopyNode for Input Tensor 0 to node_conv2d_1 + node_relu_1",  # counts for the layer it feeds
     ["node_conv2d_1", "node_relu_1"]),
    ("{ForeignNode[node_max_pool2d_1...node_linear_1]}",  # a Myelin region: first to last in graph order
     ["node_max_pool2d_1", "node_Reshape_7", "node_linear", "node_relu_2", "node_linear_1"]),
    ("classifier.3.weight", ["node_linear_1"]),  # a weight constant: the node reading it
    ("relu_2", ["node_relu_2"]),  # a tensor: the node writing it
    ("(Unnamed Layer* 12) [Shuffle]", []),  # no node of the graph
    ("node_conv2d + (Unnamed Layer* 3) [Shuffle]", ["node_conv2d"]),
])
def test_tensorrt_layer_names_resolve_to_the_onnx_nodes_they_ran(lenet, layer, nodes):
    assert trt_names.nodes_of(lenet.graph, layer) == nodes


def test_the_inspectors_onnx_layer_metadata_comes_first(lenet):
    metadata = "[ONNX Layer: node_linear]\x1e[ONNX Layer: node_relu_2]"
    assert trt_names.nodes_of(lenet.graph, "a name TensorRT made up", metadata) == ["node_linear", "node_relu_2"]
    assert trt_names.nodes_of(lenet.graph, "node_linear", "[ONNX Layer: not_in_the_graph]") == ["node_linear"]


# what one run's IProfiler reports for a LeNet-5 engine, in ms
ENGINE = [("Reformatting CopyNode for Input Tensor 0 to node_conv2d + node_relu", 0.03),
          ("node_conv2d + node_relu", 0.5), ("node_max_pool2d", 0.1), ("node_conv2d_1 + node_relu_1", 0.4),
          ("{ForeignNode[node_max_pool2d_1...node_linear_2]}", 1.0), ("(Unnamed Layer* 12) [Shuffle]", 0.05)]
INSPECTOR = {"Layers": [{"Name": "node_conv2d + node_relu", "LayerType": "CaskConvolution",
                         "Metadata": "[ONNX Layer: node_conv2d]\x1e[ONNX Layer: node_relu]"},
                        {"Name": "{ForeignNode[node_max_pool2d_1...node_linear_2]}", "LayerType": "Myelin"}],
             "Bindings": ["input", "logits"]}


@pytest.fixture
def engine(fake_trt, monkeypatch, lenet):
    """An entered TensorRT runner over the fake TensorRT: ``infer`` enqueues on the fake context."""
    monkeypatch.setattr(L, "import_tensorrt", lambda: fake_trt)
    fake_trt.IExecutionContext._layer_ms = ENGINE
    fake_trt.ICudaEngine._information = json.dumps(INSPECTOR)
    cuda_engine = fake_trt.ICudaEngine()
    context = cuda_engine.create_execution_context()
    artifact = types.SimpleNamespace(path="model.engine",
                                     manifest={"tensorrt": {"source_onnx": {"path": str(lenet.path)}}})
    return types.SimpleNamespace(name="tensorrt", engine=cuda_engine, context=context, artifact=artifact,
                                 infer=lambda x: context.execute_async_v3(0x5EED), synchronize=lambda: None)


def _profile(tiny_spec, runner, counts):
    return profile_layers(tiny_spec, runner, Where.of(tiny_spec, "tensorrt", "fp16", 2), counts, 2.5)


def test_the_iprofiler_times_each_timed_run_once_and_rows_name_the_modules(tiny_spec, engine, lenet, fake_trt):
    profile = _profile(tiny_spec, engine, lenet.counts)
    assert profile.unavailable is None and profile.runs == RUNS
    by = {layer.name: layer for layer in profile.layers}
    assert {n: layer.ms for n, layer in by.items()} == pytest.approx(dict(ENGINE))  # a mean per run, not a sum
    assert by["node_conv2d + node_relu"].op_type == "CaskConvolution"  # the inspector's layer type
    assert by["node_max_pool2d"].op_type == "MaxPool"  # no inspector entry: the ONNX op it ran
    assert by["(Unnamed Layer* 12) [Shuffle]"].modules == ()
    rows = {r["module"]: r for r in profile.rows}
    # the reformat feeding conv1 counts for it; the ReLU fused into it has no MACs: all of the time to the conv
    assert rows["features.0"]["ms"] == pytest.approx(0.53) and rows["features.1"]["ms"] == 0
    # the Myelin region split by MACs among the three linear layers (48000 : 10080 : 840)
    assert rows["classifier.1"]["ms"] == pytest.approx(48000 / 58920)
    assert rows["classifier.5"]["ms"] == pytest.approx(840 / 58920)
    assert rows[None]["ms"] == pytest.approx(0.05) and rows[None]["op_types"] == ["?"]
    assert profile.coverage == pytest.approx(1 - 0.05 / sum(ms for _, ms in ENGINE))
    [record] = to_records(profile)
    record.validate()
    assert record.metrics["e2e_median_ms"] == 2.5
    # warm-up unreported; each timed run reported after it finished; the context given back as it was
    calls = [c for c in fake_trt._calls if c[0] in ("profiler", "enqueue_emits_profile", "report_to_profiler",
                                                     "execute_async_v3")]
    assert calls[:4] == [("execute_async_v3", 0x5EED)] * 2 + [("enqueue_emits_profile", False), ("profiler", "set")]
    assert calls[4:-2] == [("execute_async_v3", 0x5EED), ("report_to_profiler",)] * RUNS
    assert calls[-2:] == [("profiler", None), ("enqueue_emits_profile", True)]
    assert ("get_engine_information", fake_trt.LayerInformationFormat.JSON) in fake_trt._calls


def test_an_engine_without_its_onnx_source_gives_unmapped_rows(tiny_spec, engine, fake_trt):
    fake_trt.ICudaEngine._information = '{"Layers": ["node_conv2d + node_relu"]}'  # names only: not DETAILED
    engine.artifact.manifest = {"tensorrt": {}}  # an engine someone built
    profile = _profile(tiny_spec, engine, ModuleCounts())
    assert profile.coverage == 0 and all(r["module"] is None for r in profile.rows)
    assert profile.mapping == "an engine without its ONNX source: unmapped"
    assert sum(r["ms"] for r in profile.rows) == pytest.approx(sum(ms for _, ms in ENGINE))  # nothing dropped


def test_a_layer_reported_more_often_than_the_timed_runs_is_an_error(tiny_spec, engine, lenet, fake_trt):
    # a context that keeps emitting a profile at each enqueue: every timed run would be reported twice
    type(engine.context).enqueue_emits_profile = property(lambda self: True, lambda self, value: None)
    with pytest.raises(PerfkitError, match=f"other than the {RUNS} timed runs: .*node_conv2d \\+ node_relu' "
                                           f"{2 * RUNS}"):
        _profile(tiny_spec, engine, lenet.counts)
    assert engine.context.profiler is None  # given back all the same


def test_no_layer_reported_is_unavailable_and_a_refused_report_is_an_error(tiny_spec, engine, lenet, fake_trt):
    fake_trt.IExecutionContext._layer_ms = []
    profile = _profile(tiny_spec, engine, lenet.counts)
    assert f"TensorRT {fake_trt.__version__} reported no layer time" in profile.unavailable
    fake_trt.IExecutionContext._refuse = ("report_to_profiler",)
    with pytest.raises(PerfkitError, match="TensorRT could not report layer times for model.engine"):
        _profile(tiny_spec, engine, lenet.counts)
