"""An OpenVINO IR's graph, read through OpenVINO, and what perfkit counts in it: the MACs of its
Convolution, GroupConvolution and MatMul operations and the elements of its weight constants (used by
``complexity.measure_openvino`` and ``engines.summarize_openvino``)."""

from __future__ import annotations

import math

from perfkit.deps import require

OPENVINO_MACS_CONVENTION = (
    "multiply-accumulates of the IR's Convolution/GroupConvolution/MatMul operations per sample, read through "
    "OpenVINO at batch 1 (the convention of the PyTorch count: one multiply-add = one MAC, bias additions not "
    "counted); FLOPs = 2 × MACs"
)
OPENVINO_PARAMS_CONVENTION = (
    "elements of the IR's weight constants as its converter stored them (floating-point and 8-bit: batch norm "
    "folded into convolutions is part of their weights, a quantized IR's int8 weights are counted once, "
    "integer shape constants excluded); an IR has no trainable flag: all are counted as trainable"
)
OPENVINO_NOT_COUNTED = (
    "every other operation of the IR (pooling, normalisation, activations, element-wise ops, quantize/dequantize, "
    "reshapes); compute operations without a MAC formula are listed under uncounted ops"
)
COUNTED = ("Convolution", "GroupConvolution", "MatMul")
NO_FORMULA = ("ConvolutionBackpropData", "GroupConvolutionBackpropData", "Einsum", "ScaledDotProductAttention")
WEIGHT_TYPES = ("f32", "f16", "bf16", "f64", "i8", "u8", "i4", "u4")


def read(spec):
    """The IR read through OpenVINO at ``spec.input_size`` and batch 1 (its fixed batch, if it has one)."""
    ov = require("openvino", extra="openvino", why="counting an OpenVINO IR")
    model = ov.Core().read_model(spec.arch)
    model.reshape({model.inputs[0]: [spec.fixed_batch or 1, *spec.input_size]})
    return model


def weight_elements(const) -> int:
    """Elements of a weight constant (0 for a shape or index constant)."""
    weights = const.get_output_element_type(0).get_type_name() in WEIGHT_TYPES
    return math.prod(const.get_output_shape(0)) if weights else 0


def macs(op) -> int:
    """MACs of one counted operation at batch 1 (its shapes are static there)."""
    out = list(op.get_output_shape(0))
    weights = list(op.get_input_shape(1))
    kind = op.get_type_name()
    if kind == "Convolution":  # weights (C_out, C_in, k...)
        return math.prod(out) * math.prod(weights[1:])
    if kind == "GroupConvolution":  # weights (groups, C_out/groups, C_in/groups, k...)
        return math.prod(out) * math.prod(weights[2:])
    a = list(op.get_input_shape(0))
    k = a[-2] if op.get_attributes().get("transpose_a") else a[-1]
    return math.prod(out) * k
