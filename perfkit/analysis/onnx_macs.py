"""MACs of an exported ONNX graph, counted the way the PyTorch count is (a cross-check of it).

Counted, one multiply-add per multiply-accumulate, bias additions not counted (the convention of
``FlopCounterMode`` / 2 and of torchvision's ``_ops``):

- ``Conv``: output elements × (input channels per group × kernel elements)
- ``Gemm``: M × N × K
- ``MatMul``: output elements × K (broadcast batch × M × N × K, 1-D operands included)
- ``Einsum`` of two operands: the product of every index's size (the batched matmul it is)

Shapes are taken at batch 1: the exporter's stored shapes with the batch symbol set to 1, and ONNX
shape inference from the inputs fixed to batch 1 for the rest (a graph whose height and width are
symbolic, an ONNX file given with ``--input-size``, has them fixed the same way; a graph whose batch is
a number N is counted at N and divided by N: every counted op's work grows with the batch). A counted
node whose shapes do not resolve is an
error, never a zero; compute-heavy ops this counter has no formula for (``Attention``,
``ConvTranspose``, quantised and recurrent ops) are listed, so a graph using them is reported as
not comparable instead of agreeing by accident.
"""

from __future__ import annotations

import ast
import math
import operator
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from perfkit.deps import require
from perfkit.errors import MeasurementError

# The counts agree exactly on every torchvision classifier; the margin only absorbs an exporter that
# folds a small constant computation away (it never hides a missing attention block: a ViT's is ~35 %).
ONNX_TOLERANCE = 1e-3

COUNTED_OPS = ("Conv", "Gemm", "MatMul", "Einsum")
NO_FORMULA_OPS = frozenset(
    "Attention MultiHeadAttention ConvTranspose ConvInteger MatMulInteger QLinearConv QLinearMatMul "
    "LSTM GRU RNN".split()
)


@dataclass(frozen=True)
class OnnxMacs:
    """MACs of one ONNX graph at batch 1."""

    macs: int
    macs_by_op: dict[str, int] = field(default_factory=dict)  # {"Conv": ..., "MatMul": ...}
    no_formula: dict[str, int] = field(default_factory=dict)  # compute ops present but not counted

    def agrees_with(self, macs: int, tolerance: float = ONNX_TOLERANCE) -> bool:
        """True when ``macs`` (the PyTorch count) is within ``tolerance`` of this count and nothing
        in the graph went uncounted."""
        return not self.no_formula and abs(self.macs - macs) <= tolerance * max(macs, 1)


def count_onnx_macs(model, input_size: tuple[int, int, int] | None = None) -> OnnxMacs:
    """MACs per sample of the Conv/Gemm/MatMul/Einsum nodes of ``model`` (a path to a ``.onnx`` file or a
    ModelProto); ``input_size`` (C, H, W) fixes the first input's symbolic dimensions beyond the batch.

    External weight files are not read (only shapes are needed).

    Raises:
        MeasurementError: the file is not an ONNX model, or a counted node's shapes do not resolve.
    """
    onnx = require("onnx")
    name = str(model) if isinstance(model, (str, os.PathLike)) else "the ONNX model"
    if isinstance(model, (str, os.PathLike)):
        try:
            model = onnx.load(str(Path(model)), load_external_data=False)
        except Exception as exc:  # a protobuf DecodeError names nothing: say which file
            raise MeasurementError(f"{name}: not a readable ONNX model ({type(exc).__name__})") from None
    shapes = inferred_shapes(onnx, model, input_size)
    graph = model.graph
    by_op: Counter[str] = Counter()
    no_formula: Counter[str] = Counter()
    for node in _nodes(graph, model):
        if node.op_type in NO_FORMULA_OPS:
            no_formula[node.op_type] += 1
        if node.op_type not in COUNTED_OPS:
            continue
        if node.op_type == "Einsum" and len(node.input) != 2:
            no_formula[f"Einsum with {len(node.input)} operands"] += 1
            continue
        dims = [shapes.get(n) for n in (*node.input[:2], node.output[0])]
        if any(d is None or any(v is None for v in d) for d in dims):
            raise MeasurementError(f"{name}: the shapes of {node.op_type} node {node.name or node.output[0]!r} "
                                   "do not resolve at batch 1; its MACs cannot be counted")
        by_op[node.op_type] += _FORMULAS[node.op_type](node, *dims)
    batch = fixed_batch(model)
    by_op = Counter({op: macs // batch for op, macs in by_op.items()})
    return OnnxMacs(sum(by_op.values()), dict(by_op), dict(no_formula))


# TensorProto element types of floating-point tensors: FLOAT, FLOAT16, DOUBLE, BFLOAT16
FLOAT_TYPES = frozenset({1, 10, 11, 16})


def float_initializers(model) -> dict[str, int]:
    """Elements of each floating-point initializer (weights, biases; integer shape constants left out),
    from the stored dimensions: external data is not read."""
    return {t.name: math.prod(t.dims) for t in model.graph.initializer if t.data_type in FLOAT_TYPES}


def image_input(model):
    """The graph's first input that is not an initializer (old IR versions list weights as inputs), or None."""
    initializers = {t.name for t in model.graph.initializer}
    return next((v for v in model.graph.input if v.name not in initializers), None)


def _input_dims(model) -> list:
    value = image_input(model)
    return [] if value is None else list(value.type.tensor_type.shape.dim)


def fixed_batch(model) -> int:
    """The batch the graph is fixed to (its first input's first dimension as a number), else 1."""
    dims = _input_dims(model)
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 1


def _nodes(graph, model):
    """The graph's nodes; a node calling a model-local function is an error (its body has no shapes)."""
    local = {f.name for f in model.functions}
    for node in graph.node:
        if node.op_type in local:
            raise MeasurementError(f"the ONNX graph calls the local function {node.op_type!r}; inline it "
                                   "(the exporter's optimize step does) before counting")
        yield node


def inferred_shapes(onnx, model, input_size=None) -> dict[str, list[int | None]]:
    """Every value's shape at batch 1 (dimensions that do not resolve are None).

    Two sources: the shapes the exporter stored (torch's exporter writes every value's shape, its
    dimensions as expressions of the batch symbol such as ``4*batch``), evaluated at batch 1; and
    ONNX shape inference from inputs fixed to batch 1, for values the exporter left without one
    (inference alone cannot follow some index computations, such as an exported ``as_strided``).
    """
    g = model.graph
    initializers = {t.name for t in g.initializer}
    inputs = [v for v in g.input if v.name not in initializers]
    batch = {d.dim_param: 1 for v in inputs for d in v.type.tensor_type.shape.dim[:1] if d.dim_param}
    image = _input_dims(model)
    sizes = list(zip(image[1:], input_size or ()))
    batch.update({d.dim_param: size for d, size in sizes if d.dim_param})
    stored = _value_shapes((*g.input, *g.value_info, *g.output), batch)
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name not in initializers and dims and dims[0].dim_param in batch:
            dims[0].dim_value = 1  # sets the oneof: the symbol is gone
    for dim, size in zip(_input_dims(fixed)[1:], input_size or ()):
        if not dim.HasField("dim_value"):
            dim.dim_value = size  # a symbolic (or unnamed) height or width, at the size given
    del fixed.graph.value_info[:]  # they hold the symbolic batch: infer them again from the fixed inputs
    for value in fixed.graph.output:
        value.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True).graph
    shapes = {t.name: list(t.dims) for t in g.initializer}
    shapes.update(_value_shapes((*inferred.input, *inferred.value_info, *inferred.output), batch))
    shapes.update({name: dims for name, dims in stored.items() if None not in dims})
    return shapes


def _value_shapes(values, symbols: dict[str, int]) -> dict[str, list[int | None]]:
    out = {}
    for value in values:
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            out[value.name] = [d.dim_value if d.HasField("dim_value") else _evaluate(d.dim_param, symbols)
                               for d in tensor.shape.dim]
    return out


_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
               ast.Mod: operator.mod}


def _evaluate(expression: str, symbols: dict[str, int]) -> int | None:
    """A symbolic dimension such as ``4*batch`` at the given symbol values; None when it does not resolve."""
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in symbols:
            return symbols[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](value(node.left), value(node.right))
        raise ValueError(expression)

    try:
        return value(ast.parse(expression, mode="eval").body) if expression else None
    except (ValueError, SyntaxError, ZeroDivisionError):
        return None


def _conv(node, x, w, y) -> int:
    return math.prod(y) * math.prod(w[1:])  # every output element: (C_in / groups) × kernel multiply-adds


def _gemm(node, a, b, y) -> int:
    transposed = any(attr.name == "transA" and attr.i for attr in node.attribute)
    return math.prod(y) * (a[0] if transposed else a[1])  # M × N outputs, each a dot product of length K


def _matmul(node, a, b, y) -> int:
    return math.prod(y) * a[-1]  # every output element is a dot product of length K (1-D operands too)


def _einsum(node, a, b, y) -> int:
    """Two operands: one multiply-add per combination of every index (what the contraction's bmm does)."""
    equation = next(attr.s.decode() for attr in node.attribute if attr.name == "equation").replace(" ", "")
    lhs, _, out = equation.partition("->")
    terms = lhs.split(",")
    sizes: dict[str, int] = {}
    for term, dims in zip(terms, (a, b)):
        if "..." in term:
            head, tail = term.split("...")
            if "..." not in out:
                raise MeasurementError(f"Einsum {equation!r} sums over '...': no MAC formula for it")
            term = head + "." * (len(dims) - len(head) - len(tail)) + tail
        for letter, size in zip(term, dims):
            if letter != ".":
                sizes[letter] = max(sizes.get(letter, 1), size)
    ellipsis = 1
    if "..." in out:
        head, tail = out.split("...")
        ellipsis = math.prod(y[len(head):len(y) - len(tail)])
    return math.prod(sizes.values()) * ellipsis


_FORMULAS = {"Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "Einsum": _einsum}
