"""Params, MACs and the per-layer table of an engine someone built, where its format allows a count.

- An OpenVINO IR has a graph: counted like an ONNX file's (``complexity.measure_openvino``,
  ``summarize_openvino``; ``openvino_graph`` reads it), through OpenVINO at batch 1. MACs of its
  Convolution, GroupConvolution and MatMul operations; params are the elements of its weight constants
  (floating-point and 8-bit ones: a quantized IR keeps its weights as int8 constants); a row per
  operation whose output is an activation, named ``<Type>-<n>``, carrying the weight constants it reads
  that no earlier row read.
- A TorchScript file is a module: its params are its parameters, its MACs FlopCounterMode's (TorchScript
  runs aten ops through the dispatcher, where the counter sees them, so the count is the PyTorch one).
  TorchScript modules take no forward hooks, so a row is an aten op whose output is an activation
  (``<op>-<n>``: ``convolution-1``, ``relu-2``), carrying the parameters it reads that no earlier row read.
- An AOTInductor package and a TensorRT engine are compiled code: no graph to count (``uncountable``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from perfkit.analysis import openvino_graph as G
from perfkit.analysis.complexity import DATA_MOVEMENT_OPS
from perfkit.analysis.layers import BYTES_PER_ELEMENT, MIB, LayerRow, Summary
from perfkit.zoo.spec import AOTI_PACKAGE, TENSORRT_ENGINE

NOT_ROWS = ("Parameter", "Result", "Constant", "ShapeOf")


def uncountable(spec) -> str | None:
    """Why ``spec`` has nothing to count params and MACs from (compiled code), or None."""
    if spec.form not in (AOTI_PACKAGE, TENSORRT_ENGINE):
        return None
    from perfkit.zoo.sources.engines import format_of

    return (f"{spec.name} is {format_of(spec).words}, compiled code: there is no graph or module to count params "
            "and MACs from; count the model it was built from (perfkit summary REFERENCE)")


# -- OpenVINO IR ---------------------------------------------------------------------------------


def _constant_derived(ops) -> set:
    """The operations computed from constants only (weights and their decompression: Convert, Multiply...)."""
    derived: set = set()
    for op in ops:
        inputs = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        if op.get_type_name() == "Constant" or (inputs and all(n in derived for n in inputs)):
            derived.add(op)
    return derived


def _weights_under(op, derived: set) -> list:
    """The weight constants feeding ``op`` through constant-only operations."""
    out, todo = [], [op.input_value(i).get_node() for i in range(op.get_input_size())]
    while todo:
        node = todo.pop()
        if node not in derived:
            continue
        if node.get_type_name() == "Constant":
            out.append(node)
        todo += [node.input_value(i).get_node() for i in range(node.get_input_size())]
    return out


def summarize_openvino(spec) -> Summary:
    """The per-layer table of an OpenVINO IR at ``spec.input_size``, batch 1 (see the module docstring)."""
    ops = list(G.read(spec).get_ordered_ops())
    derived = _constant_derived(ops)
    read: set = set()
    rows: list[LayerRow] = []
    for op in ops:
        if op in derived or op.get_type_name() in NOT_ROWS or not op.get_output_size():
            continue
        shape = op.get_output_partial_shape(0)
        if shape.rank.is_dynamic or len(shape) < 2 or shape.is_dynamic:
            continue
        own = [c for c in _weights_under(op, derived) if c not in read]
        read.update(own)
        dims = [d.get_length() for d in shape]
        rows.append(LayerRow(f"{op.get_type_name()}-{len(rows) + 1}", op.get_friendly_name(), [-1, *dims[1:]],
                             math.prod(dims[1:]), sum(map(G.weight_elements, own))))
    constants = [op for op in ops if op.get_type_name() == "Constant" and G.weight_elements(op)]
    unrowed = {c.get_friendly_name(): G.weight_elements(c) for c in constants if c not in read}
    return _summary(spec, rows, sum(map(G.weight_elements, constants)), 0, unrowed)


def _summary(spec, rows: list[LayerRow], total: int, frozen: int, unrowed: dict) -> Summary:
    """Totals and memory estimates over ``rows`` (``perfkit.analysis.layers``' formula)."""
    input_mib = math.prod(spec.input_size) * BYTES_PER_ELEMENT / MIB
    fwd_bwd_mib = 2 * sum(r.output_elements for r in rows) * BYTES_PER_ELEMENT / MIB
    params_mib = total * BYTES_PER_ELEMENT / MIB
    return Summary(input_size=tuple(spec.input_size), layers=rows, total_params=total, trainable_params=total - frozen,
                   non_trainable_params=frozen, input_mib=input_mib, forward_backward_mib=fwd_bwd_mib,
                   params_mib=params_mib, total_mib=input_mib + fwd_bwd_mib + params_mib, unrowed_params=unrowed)


# -- TorchScript ---------------------------------------------------------------------------------


def torchscript_module(spec) -> torch.nn.Module:
    from perfkit.zoo.sources.torchscript_file import load

    return load(Path(spec.arch))


class _Ops(TorchDispatchMode):
    """Each aten op a forward pass runs whose output is an activation: (op, shape, storages it read)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, tuple, set]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func._overloadpacket)
        if (isinstance(out, torch.Tensor) and out.dim() >= 2 and not func.is_view and name not in DATA_MOVEMENT_OPS):
            read = {a.untyped_storage().data_ptr() for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)}
            self.calls.append((name, tuple(out.shape), read))
        return out


def summarize_torchscript(spec, module: torch.nn.Module) -> Summary:
    """The per-layer table of a TorchScript module: a row per aten op (see the module docstring)."""
    params = dict(module.named_parameters())
    by_storage = {p.untyped_storage().data_ptr(): name for name, p in params.items()}
    recorder = _Ops()
    with torch.inference_mode(), recorder:
        module(torch.zeros((1, *spec.input_size)))
    claimed: set[str] = set()
    rows: list[LayerRow] = []
    for name, shape, read in recorder.calls:
        own = [by_storage[ptr] for ptr in read if ptr in by_storage and by_storage[ptr] not in claimed]
        claimed.update(own)
        rows.append(LayerRow(f"{name.removeprefix('aten.')}-{len(rows) + 1}", "", [-1, *shape[1:]],
                             math.prod(shape[1:]), sum(params[n].numel() for n in own)))
    frozen = sum(p.numel() for p in params.values() if not p.requires_grad)
    unrowed = {n: p.numel() for n, p in params.items() if n not in claimed}
    return _summary(spec, rows, sum(p.numel() for p in params.values()), frozen, unrowed)
