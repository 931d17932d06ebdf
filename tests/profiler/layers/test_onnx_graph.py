"""Mapping the names runtimes give their nodes back to the ONNX graph and the model's module paths."""

import onnx
import pytest
from onnx import TensorProto, helper

from perfkit.profiler.layers import onnx_graph


def _node(op, inputs, outputs, name, scopes=None):
    node = helper.make_node(op, inputs, outputs, name=name)
    if scopes is not None:
        entry = node.metadata_props.add()
        entry.key, entry.value = onnx_graph.SCOPES, repr(scopes)
    return node


@pytest.fixture
def block(tmp_path):
    """conv (batch norm folded in, the exporter's scopes on the batch norm) → relu → conv → add (residual) → relu,
    then a flatten at the model's top level: the shape of a ResNet basic block."""
    nodes = [
        _node("Conv", ["x", "b.conv1.weight", "b.conv1.weight_bias"], ["c1"], "node_Conv_1", ["", "b", "b.bn1", "bn"]),
        _node("Relu", ["c1"], ["relu"], "node_relu", ["", "b", "b.relu", "relu"]),
        _node("Conv", ["relu", "b.conv2.weight"], ["c2"], "node_Conv_2", ["", "b", "b.conv2", "conv"]),
        _node("Add", ["c2", "x"], ["added"], "node_add", ["", "b", "add"]),
        _node("Relu", ["added"], ["relu_1"], "node_relu_1", ["", "b", "b.relu", "relu_1"]),
        _node("Flatten", ["relu_1"], ["y"], "node_flatten", ["", "flatten"]),
    ]
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [1], [0.0])
             for n in ("b.conv1.weight", "b.conv1.weight_bias", "b.conv2.weight")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], inits)
    path = tmp_path / "block.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return onnx_graph.read(path, {"", "b", "b.conv1", "b.bn1", "b.relu", "b.conv2"})


def test_a_node_counts_for_its_innermost_scope_and_the_modules_whose_parameters_it_reads(block):
    # the batch norm folded into the convolution: both modules, the convolution found by its weights
    assert set(block.modules["node_Conv_1"]) == {"b.conv1", "b.bn1"}
    assert block.modules["node_add"] == ("b",)  # a block's own code stays the block's
    assert block.modules["node_flatten"] == ("",)  # the model's top level


@pytest.mark.parametrize("runtime_name, node", [
    ("node_Conv_2", "node_Conv_2"), ("node_Conv_2_token_12", "node_Conv_2"),  # ONNX Runtime's renames
    ("relu_nchwc", "node_relu"),  # named after its output tensor
    ("fused node_Conv_2", "node_Conv_2"), ("node_Conv_2/WithoutBiases", "node_Conv_2"),  # ORT's FusedGemm, OpenVINO
    ("relu_QuantizeLinear", "node_relu"),  # a QDQ node of a tensor
    ("ReorderOutput", None), ("input_abcd_acdb_reorder", None),
])
def test_runtime_names_resolve_to_the_graph_node_they_stand_for(block, runtime_name, node):
    assert block.node(runtime_name) == node


def test_nodes_fused_away_go_to_the_node_that_ran_them(block):
    # ONNX Runtime ran "relu_nchwc" (conv1+relu, named after relu) and "node_Conv_2" (conv2+add+relu_1)
    absorbed = block.absorbed({"node_relu", "node_Conv_2", "node_flatten"})
    assert absorbed == {"node_Conv_1": "node_relu",  # a convolution goes into its consumer, not the graph input
                        "node_add": "node_Conv_2", "node_relu_1": "node_Conv_2"}


def test_scopes_that_name_no_module_of_the_model_are_not_taken(tmp_path):
    node = _node("Relu", ["x"], ["y"], "n", ["", "elsewhere", "relu"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    assert onnx_graph.read(tmp_path / "m.onnx", {"", "features"}).modules["n"] == ()
    assert onnx_graph.read(tmp_path / "m.onnx", None).modules["n"] == ("elsewhere",)  # no model: as they are
