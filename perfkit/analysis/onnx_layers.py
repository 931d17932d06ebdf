"""The per-layer table of a model given as an ONNX file: one row per node of the graph, in graph order.

A row is a node whose first output is an activation: a tensor of rank ≥ 2 whose shape resolves at
batch 1 (shape arithmetic — ``Shape``, ``Gather`` of indices, ``Concat`` of sizes — is 1-D and left
out). Rows are named ``<OpType>-<n>`` (torchsummary's numbering), the module column is the node's name
(or its output's), params are the floating-point initializers it reads that no earlier row read. The
memory estimates follow ``perfkit.analysis.layers``' formula over those rows.
"""

from __future__ import annotations

import math

from perfkit.analysis.layers import BYTES_PER_ELEMENT, MIB, LayerRow, Summary
from perfkit.analysis.onnx_macs import float_initializers, inferred_shapes
from perfkit.deps import require


def summarize_onnx(spec) -> Summary:
    """The summary of ``spec``'s ONNX file at its input size (``spec.input_size``), batch 1."""
    onnx = require("onnx")
    model = onnx.load(spec.arch, load_external_data=False)
    shapes = inferred_shapes(onnx, model, spec.input_size)
    weights = float_initializers(model)
    read: set[str] = set()
    rows: list[LayerRow] = []
    for node in model.graph.node:
        shape = shapes.get(node.output[0]) if node.output else None
        if not shape or len(shape) < 2 or None in shape:
            continue
        own = [name for name in dict.fromkeys(node.input) if name in weights and name not in read]
        read.update(own)
        rows.append(LayerRow(f"{node.op_type}-{len(rows) + 1}", node.name or node.output[0], [-1, *shape[1:]],
                             math.prod(shape[1:]), sum(weights[name] for name in own)))
    total = sum(weights.values())
    input_mib = math.prod(spec.input_size) * BYTES_PER_ELEMENT / MIB
    fwd_bwd_mib = 2 * sum(r.output_elements for r in rows) * BYTES_PER_ELEMENT / MIB
    params_mib = total * BYTES_PER_ELEMENT / MIB
    return Summary(
        input_size=tuple(spec.input_size), layers=rows, total_params=total, trainable_params=total,
        non_trainable_params=0, input_mib=input_mib, forward_backward_mib=fwd_bwd_mib, params_mib=params_mib,
        total_mib=input_mib + fwd_bwd_mib + params_mib,
        unrowed_params={name: n for name, n in weights.items() if name not in read},
    )
