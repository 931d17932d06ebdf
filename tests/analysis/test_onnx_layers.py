"""The per-layer table of a model given as an ONNX file (analysis/onnx_layers.py): a row per node whose
output is an activation, params where a node first reads them, the memory estimates' formula."""

from __future__ import annotations

from perfkit.analysis import analyze
from perfkit.analysis.layers import MIB
from perfkit.zoo.sources import resolve


def test_rows_follow_the_graph_and_carry_its_initializers(onnx_files):
    spec = resolve(str(onnx_files.dynamic))
    report = analyze(spec)
    s, c = report.summary, report.complexity
    assert [(r.layer, r.output_shape, r.params) for r in s.layers] == [
        ("Conv-1", [-1, 8, 32, 32], 8 * 27 + 8), ("Relu-2", [-1, 8, 32, 32], 0), ("ReduceMean-3", [-1, 8], 0),
        ("Gemm-4", [-1, 3], 8 * 3 + 3)]
    assert s.total_params == c.params == sum(r.params for r in s.layers) and s.params_outside_rows == 0
    assert s.forward_backward_mib == 2 * (2 * 8 * 32 * 32 + 8 + 3) * 4 / MIB
    assert report.where.runtime == "onnx" and report.onnx is None  # nothing to cross-check: it is the graph
    assert c.macs == 8 * 27 * 32 * 32 + 8 * 3 and "Conv/Gemm/MatMul/Einsum" in c.macs_convention
