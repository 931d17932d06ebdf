"""Parameters, MACs and FLOPs of a model at its native input size, with the conventions named.

MACs are multiply-accumulates of the ops ``torch.utils.flop_counter.FlopCounterMode`` has a formula
for (convolution, linear/addmm, matmul/bmm, attention): its total counts each multiply-add as two
FLOPs, so MACs = total / 2. ``nn.MultiheadAttention``'s inference fast path is turned off while
counting: it is one fused op without a formula, which would make a torchvision ViT a third low. This is exactly what torchvision publishes as "GFLOPS" (``meta["_ops"]``),
which are really GMACs; perfkit says MACs and reports FLOPs = 2 × MACs beside them.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from perfkit.zoo.spec import ONNX_FILE, OPENVINO_IR, TORCHSCRIPT_FILE

MACS_CONVENTION = (
    "multiply-accumulates of conv+linear(+matmul, attention) = FlopCounterMode total / 2, "
    "nn.MultiheadAttention's fused fast path off so its projections and products count; "
    "torchvision's 'GFLOPS' (_ops) are these MACs; FLOPs = 2 × MACs"
)
PARAMS_CONVENTION = (
    "all parameters of the model as built, counted once from the root module (tied weights once; "
    "buffers such as BN running stats excluded); torchvision's pretrained convention: googlenet without "
    "its aux heads (aux1/aux2), inception_v3 with AuxLogits — the zoo builds them that way"
)
NOT_COUNTED = (
    "pooling, batch norm, activations, element-wise adds/muls (residuals, input transforms), "
    "concatenation and softmax have no FLOP formula; modules that run only in training (aux heads) are not run"
)
# A model given as an ONNX file has no module: its graph is counted (perfkit.analysis.onnx_macs).
ONNX_MACS_CONVENTION = (
    "multiply-accumulates of the ONNX graph's Conv/Gemm/MatMul/Einsum nodes per sample (perfkit's ONNX counter, "
    "the convention of the PyTorch count: one multiply-add = one MAC, bias additions not counted); FLOPs = 2 × MACs"
)
ONNX_PARAMS_CONVENTION = (
    "elements of the ONNX graph's floating-point initializers, as the exporter stored them (batch norm folded "
    "into convolutions is part of their weights; integer shape constants excluded); a graph has no trainable "
    "flag: all are counted as trainable"
)
ONNX_NOT_COUNTED = (
    "every other node of the graph (pooling, normalisation, activations, element-wise ops, reshapes); compute "
    "nodes without a MAC formula (attention, ConvTranspose, quantised ops) are listed under uncounted ops"
)


@dataclass(frozen=True)
class Complexity:
    """Raw counts for one model at one input size (batch 1, eval mode)."""

    model: str
    input_size: tuple[int, int, int]  # C, H, W
    params: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    flops: int
    macs_by_op: dict[str, int] = field(default_factory=dict)  # e.g. {"aten.convolution": ...}
    # module path → MACs of its calls, its submodules' included ("layer1" = every block of it; "" = the model);
    # modules without a counted op are absent. Empty for a graph (an ONNX file, an IR): it has no modules.
    macs_by_module: dict[str, int] = field(default_factory=dict)
    uncounted_ops: dict[str, int] = field(default_factory=dict)  # op -> calls that carry no FLOP formula
    macs_convention: str = MACS_CONVENTION
    params_convention: str = PARAMS_CONVENTION
    not_counted: str = NOT_COUNTED

    def metrics(self) -> dict:
        """The fields as record metrics (``input_size`` as a list, the model name left out)."""
        out = asdict(self)
        out.pop("model")
        out["input_size"] = list(self.input_size)
        return out


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameters.

    Counted from the root module: ``parameters()`` yields each tensor once, so weights tied between
    two layers are not counted twice (summing per-layer counts would).
    """
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return total, trainable


# Ops that allocate, copy, move or select data and do no arithmetic: they are left out of
# ``uncounted_ops``, which lists what computes but has no FLOP formula (views are left out too).
DATA_MOVEMENT_OPS = frozenset(f"aten.{name}" for name in (
    "empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros ones ones_like "
    "new_ones full full_like new_full scalar_tensor arange linspace fill fill_ zero_ copy copy_ clone _to_copy "
    "lift_fresh lift_fresh_copy detach alias _unsafe_view _reshape_alias contiguous cat stack constant_pad_nd "
    "roll flip repeat index index_select gather select_scatter slice_scatter channel_shuffle pixel_shuffle "
    "pixel_unshuffle split split_with_sizes unbind resize_ set_ tril triu meshgrid as_strided_"
).split()) | {"prim.device"}  # a metadata query (seen under fake tensors)


class _OpCalls(TorchDispatchMode):
    """Counts the aten ops a forward pass runs, so the ops without a FLOP formula can be listed."""

    def __init__(self):
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.views: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func._overloadpacket)
        self.calls[name] += 1
        if func.is_view:
            self.views.add(name)
        return func(*args, **(kwargs or {}))


def _cpu_flash_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode (torch 2.14) has formulas for the CUDA attention kernels but not for the CPU one
# that F.scaled_dot_product_attention dispatches to here: without this, a ViT's attention matmuls
# (QKᵀ and AV) would count zero on the CPU and differently on the GPU.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_sdpa_flop}


@contextlib.contextmanager
def _mha_fastpath_disabled() -> Iterator[None]:
    """Turn off ``nn.MultiheadAttention``'s inference fast path, and restore it after.

    In eval mode under no_grad the fast path runs the whole attention block as one
    ``aten._native_multi_head_attention`` op, which FlopCounterMode has no formula for: QKV
    projection, QKᵀ, AV and the output projection would count zero (a torchvision ViT a third
    low). The regular path runs the same arithmetic as linear/matmul/attention ops it can count.
    """
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


@dataclass(frozen=True)
class MacCount:
    """One forward pass counted: total, per op, per module path (submodules included), and the calls of
    ops that compute without a FLOP formula."""

    macs: int
    by_op: dict[str, int]
    by_module: dict[str, int]
    uncounted: dict[str, int]


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int], dict[str, int]]:
    """MACs of one forward pass of ``model`` on ``x``.

    Returns:
        (macs, macs per counted op, calls per op that computes but has no FLOP formula — views and
        data movement such as ``aten.empty``/``aten.cat`` excluded).
    """
    counted = count(model, x)
    return counted.macs, counted.by_op, counted.uncounted


def count(model: nn.Module, x: torch.Tensor) -> MacCount:
    """``count_macs`` with the per-module counts: FlopCounterMode tracks the module each op ran in and
    names it ``<RootClass>.<path>``; the root's name is dropped so that keys are ``named_modules`` paths
    (the model itself is ``""``)."""
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    with torch.no_grad(), _mha_fastpath_disabled(), counter, _OpCalls() as ops:
        model(x)
    counts = counter.get_flop_counts()
    # Every formula in FlopCounterMode is 2 × (multiply-adds), so these divisions are exact.
    by_op = {str(op): int(n) // 2 for op, n in counts.get("Global", {}).items()}
    root = type(model).__name__
    by_module = {name.removeprefix(root).removeprefix("."): sum(int(n) for n in per_op.values()) // 2
                 for name, per_op in counts.items() if name != "Global" and (name == root or name.startswith(root + "."))}
    registry = {str(op) for op in counter.flop_registry}
    uncounted = {op: n for op, n in sorted(ops.calls.items())
                 if op not in registry and op not in ops.views and op not in DATA_MOVEMENT_OPS}
    return MacCount(int(counter.get_total_flops()) // 2, by_op, by_module, uncounted)


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def measure_complexity(spec, model: nn.Module | None = None) -> Complexity | None:
    """Params, MACs and FLOPs of ``spec`` at its native input size (batch 1, eval mode, no grad); None for
    an engine that is compiled code (``perfkit.analysis.engines``: nothing to count).

    Args:
        spec: a ``ModelSpec``; its ``input_size`` is the size the MACs are counted at
            (299×299 for inception_v3). An ONNX file (``spec.form == "onnx"``) is counted from its
            graph (``measure_onnx``), an OpenVINO IR from its graph and a TorchScript file from its module
            (``perfkit.analysis.engines``).
        model: the built model, to avoid building it twice; ``spec.build()`` when omitted.
            Its weights do not change any count.
    """
    if spec.form == ONNX_FILE:
        return measure_onnx(spec)
    if spec.form == OPENVINO_IR:
        return measure_openvino(spec)
    if spec.form == TORCHSCRIPT_FILE and model is None:  # its module: counted as PyTorch counts any
        from perfkit.zoo.sources.torchscript_file import load

        model = load(Path(spec.arch))
    if spec.engine and model is None:  # compiled code (an AOTInductor package, a TensorRT engine)
        return None
    model = spec.build() if model is None else model
    model.eval()
    total, trainable = count_params(model)
    counted = count(model, spec.example_input(1).to(_device(model)))
    return Complexity(
        model=spec.name, input_size=tuple(spec.input_size), params=total, trainable_params=trainable,
        non_trainable_params=total - trainable, macs=counted.macs, flops=2 * counted.macs, macs_by_op=counted.by_op,
        uncounted_ops=counted.uncounted, macs_by_module=counted.by_module,
    )


def measure_onnx(spec) -> Complexity:
    """Params and MACs of a model given as an ONNX file, counted from its graph (the conventions say how)."""
    from perfkit.analysis.onnx_macs import count_onnx_macs, float_initializers
    from perfkit.deps import require

    graph = require("onnx").load(spec.arch, load_external_data=False)
    counted = count_onnx_macs(graph, spec.input_size)
    params = sum(float_initializers(graph).values())
    return Complexity(
        model=spec.name, input_size=tuple(spec.input_size), params=params, trainable_params=params,
        non_trainable_params=0, macs=counted.macs, flops=2 * counted.macs, macs_by_op=counted.macs_by_op,
        uncounted_ops=counted.no_formula, macs_convention=ONNX_MACS_CONVENTION,
        params_convention=ONNX_PARAMS_CONVENTION, not_counted=ONNX_NOT_COUNTED,
    )


def measure_openvino(spec) -> Complexity:
    """Params and MACs of an OpenVINO IR, counted from its graph at batch 1 (the conventions say how)."""
    from perfkit.analysis import openvino_graph as G

    ops = list(G.read(spec).get_ordered_ops())
    by_op: Counter[str] = Counter()
    no_formula: Counter[str] = Counter()
    for op in ops:
        kind = op.get_type_name()
        if kind in G.COUNTED:
            by_op[kind] += G.macs(op)
        elif kind in G.NO_FORMULA:
            no_formula[kind] += 1
    params = sum(G.weight_elements(op) for op in ops if op.get_type_name() == "Constant")
    by_op = Counter({op: n // (spec.fixed_batch or 1) for op, n in by_op.items()})  # per sample
    macs = sum(by_op.values())
    return Complexity(model=spec.name, input_size=tuple(spec.input_size), params=params, trainable_params=params,
                      non_trainable_params=0, macs=macs, flops=2 * macs, macs_by_op=dict(by_op),
                      uncounted_ops=dict(no_formula), macs_convention=G.OPENVINO_MACS_CONVENTION,
                      params_convention=G.OPENVINO_PARAMS_CONVENTION, not_counted=G.OPENVINO_NOT_COUNTED)
