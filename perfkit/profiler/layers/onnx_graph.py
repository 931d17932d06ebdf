"""Where an ONNX node came from: the model's module paths, read from the graph perfkit exported.

The dynamo exporter writes ``pkg.torch.onnx.name_scopes`` on every node (``['', 'layer1', 'layer1.0',
'layer1.0.bn1', '<fx node>']``: the last entry is the op itself, the one before it the innermost module).
Its optimiser folds batch norm into the preceding convolution and keeps the batch norm's scopes on the
fused node, so a node also counts for the modules whose parameters it reads (initializers are named by
parameter path: ``layer1.0.conv1.weight``, ``…weight_bias``, ``…weight_DequantizeLinear_Output`` in a QDQ
graph). ONNX Runtime and OpenVINO rename what they run: ``<node or tensor>_nchwc``, ``…_token_12``,
``…/WithoutBiases``, ``<tensor>_QuantizeLinear``; ``node`` strips those back to a node of the graph (a
tensor name stands for the node that produced it).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

SCOPES = "pkg.torch.onnx.name_scopes"
# What runtimes append to a node's or tensor's name (ONNX Runtime's layout and fusion passes, its QDQ
# names, OpenVINO's bias split); stripped one at a time until a name of the graph is left.
_SUFFIX = re.compile(r"(_kernel_time|_nchwc|_token_\d+|_QuantizeLinear|_DequantizeLinear|_Output|_output_\d+|"
                     r"_quantized|_bias|_fused|/[^/]*)$")
_PARAMETER = re.compile(r"^(?P<module>.+)\.(weight|bias|in_proj_weight|in_proj_bias)$")
_PREFIX = re.compile(r"^fused ")  # ONNX Runtime's name for a Gemm/Conv it fused with an activation
# Ops that fusions absorb others into (a convolution takes in its activation and residual add), never the
# other way round: such a node that vanished went into its consumer, any other into its producer.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv", "QLinearMatMul", "ConvInteger",
                         "MatMulInteger"})
SHAPE_OPS = frozenset({"Constant", "Shape", "Identity", "ConstantOfShape", "Unsqueeze", "Squeeze", "Concat",
                       "Gather", "Cast", "Range"})  # shape arithmetic: never a layer of its own


@dataclass
class GraphMap:
    """One ONNX graph's nodes, tensors and the module paths of each node."""

    modules: dict[str, tuple[str, ...]]  # node name → module paths it counts for ('' = the model itself)
    op_types: dict[str, str]
    producer: dict[str, str] = field(default_factory=dict)  # tensor → the node writing it
    consumers: dict[str, list[str]] = field(default_factory=dict)  # tensor → the nodes reading it
    inputs: dict[str, list[str]] = field(default_factory=dict)  # node → its input tensors
    outputs: dict[str, list[str]] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)  # initializer (a parameter) → its module path

    def node(self, runtime_name: str) -> str | None:
        """The graph's node a runtime's node or layer name stands for (None: none)."""
        name = _PREFIX.sub("", runtime_name)
        while name:
            if name in self.modules:
                return name
            if name in self.producer:
                return self.producer[name]
            stripped = _SUFFIX.sub("", name)
            if stripped == name:
                return None
            name = stripped
        return None

    def modules_of(self, nodes) -> tuple[str, ...]:
        """The module paths of ``nodes``, each once, in order."""
        return tuple(dict.fromkeys(m for n in nodes for m in self.modules.get(n, ())))

    def layer_modules(self, ran: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
        """Runtime layer → the module paths of the graph nodes it ran and of those fused away into them."""
        absorbed = self.absorbed({n for nodes in ran.values() for n in nodes})
        into: dict[str, list[str]] = {}
        for original, owner in absorbed.items():
            into.setdefault(owner, []).append(original)
        return {name: self.modules_of([m for n in nodes for m in (n, *into.get(n, ()))]) for name, nodes in ran.items()}

    def absorbed(self, ran: set[str]) -> dict[str, str]:
        """Nodes of the graph that no runtime node is named after (fused away) → the node that ran them.

        ONNX Runtime's fusions (Conv+Relu, Conv+Add+Relu, Gemm+activation) merge a node with a
        neighbour whose tensor feeds only it, and the fused node may be named after either (``relu_nchwc``
        is the convolution writing ``relu``): a vanished convolution or matmul went into its only consumer,
        any other node into its producer whose output it alone reads (following nodes that vanished too).
        """
        owner = {n: n for n in ran}
        vanished = [n for n in self.modules if n not in ran and self.op_types[n] not in SHAPE_OPS]
        changed = True
        while changed:
            changed = False
            for n in vanished:
                if n in owner:
                    continue
                target = self._fused_into(n, owner)
                if target is not None:
                    owner[n] = owner[target]
                    changed = True
        return {n: owner[n] for n in vanished if n in owner}

    def _fused_into(self, n: str, owner: dict) -> str | None:
        if self.op_types[n] in COMPUTE_OPS:
            return self._consumer(n, owner)
        for tensor in self.inputs.get(n, ()):
            p = self.producer.get(tensor)
            if p in owner and len(self.consumers.get(tensor, ())) == 1:
                return p
        return None

    def _consumer(self, n: str, owner: dict) -> str | None:
        outs = self.outputs.get(n, ())
        if len(outs) == 1 and len(self.consumers.get(outs[0], ())) == 1:
            c = self.consumers[outs[0]][0]
            return c if c in owner else None
        return None


def read(path: str | Path, module_paths: set[str] | None = None) -> GraphMap:
    """The map of the ONNX graph at ``path`` (its weights are not loaded). ``module_paths``: the model's
    ``named_modules`` paths (None: a graph without a model; its scopes are taken as they are)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    out = GraphMap({}, {})
    for i, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{i}"
        out.op_types[name] = node.op_type
        out.inputs[name] = [t for t in node.input if t]
        out.outputs[name] = [t for t in node.output if t]
        for t in out.outputs[name]:
            out.producer[t] = name
        for t in out.inputs[name]:
            out.consumers.setdefault(t, []).append(name)
        meta = {p.key: p.value for p in node.metadata_props}
        own = _scope(meta.get(SCOPES), module_paths)
        for t in out.inputs[name]:
            module = _parameter_module(t, module_paths)
            if module is not None:
                out.parameters[t] = module
        params = [out.parameters[t] for t in out.inputs[name] if t in out.parameters]
        out.modules[name] = tuple(dict.fromkeys([*params, *([own] if own is not None else [])]))
    _quantizers_follow_producers(out)
    return out


def source(runner, section: str, counts) -> GraphMap | None:
    """The map of the ONNX graph the runner's artifact was converted from (its manifest's
    ``<section>.source_onnx``), None for one someone built with no ONNX beside it."""
    given = (runner.artifact.manifest.get(section) or {}).get("source_onnx") or {}
    if not given.get("path"):
        return None
    return read(given["path"], set(counts.types) or None)


def _quantizers_follow_producers(out: GraphMap) -> None:
    """The quantizer adds Q/DQ nodes without scopes: each counts for the module whose output it
    (de)quantizes (the model's input: none)."""
    for name, op in out.op_types.items():
        if op in ("QuantizeLinear", "DequantizeLinear") and not out.modules[name] and out.inputs[name]:
            source = out.producer.get(out.inputs[name][0])
            if source is not None:
                out.modules[name] = out.modules[source]


def _scope(text: str | None, module_paths: set[str] | None) -> str | None:
    """The innermost module of a node's name scopes (None: the node has none, or names no module)."""
    if not text:
        return None
    try:
        scopes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(scopes, list) or not scopes:
        return None
    module = scopes[-2] if len(scopes) >= 2 else ""
    return module if module_paths is None or module in module_paths else None


def _parameter_module(tensor: str, module_paths: set[str] | None) -> str | None:
    """The module whose parameter ``tensor`` is (``layer1.0.conv1.weight_DequantizeLinear_Output`` →
    ``layer1.0.conv1``), None for an activation."""
    name = tensor
    while True:
        found = _PARAMETER.match(name)
        if found and (module_paths is None or found["module"] in module_paths):
            return found["module"]
        stripped = _SUFFIX.sub("", name)
        if stripped == name:
            return None
        name = stripped
