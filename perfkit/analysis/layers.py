"""A per-layer summary in the manner of the classic torchsummary table.

One row per call of a module none of whose submodules ran (a leaf, or an attention module that
uses its children's weights itself), in call order, named ``<Type>-<n>`` where ``n`` is the row
number (torchsummary's numbering: Conv2d-1, ReLU-2, ...). Memory estimates are float32, per sample:

- input size = elements of one input × 4 bytes
- forward/backward pass size = 2 × (sum of the output elements of every row) × 4 bytes
  (each activation is kept for the backward pass and has a gradient of the same size)
- params size = parameters × 4 bytes; estimated total = the sum of the three.

Sizes are MiB (2**20 bytes, torchsummary's "MB"). The formula is torchsummary's, applied to layer
rows only: torchsummary also hooks container blocks (a ResNet ``BasicBlock``, an Inception block),
whose output is the same activation as their last layer's (or a concatenation of their branches'),
so its forward/backward figure counts those activations twice and is higher for such models.
torchinfo differs the other way: it counts only layers with parameters and uses MB = 10^6 bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from perfkit.analysis.complexity import count_params

BYTES_PER_ELEMENT = 4  # float32, torchsummary's convention
MIB = 2**20
MEMORY_CONVENTION = (
    "float32 per sample, torchsummary's formula over layer rows only: forward/backward = 2 × every row's "
    "output (each activation once; torchsummary also counts container blocks' outputs again, so its figure "
    "is higher for models built of blocks); MiB = 2**20 bytes"
)


@dataclass(frozen=True)
class LayerRow:
    """One call of a layer (a module none of whose submodules ran)."""

    layer: str  # "Conv2d-1"
    module: str  # qualified name in the model, "features.0"
    output_shape: list  # [-1, C, H, W]; a list of shapes for tuple outputs
    output_elements: int  # per sample (batch 1)
    params: int  # the module's own parameters; 0 on its second and later calls
    repeat_of: str | None = None  # the first row of a module called more than once
    macs: int | None = None  # the module's MACs (every call of it; 0 on its later calls); None: not counted

    def as_dict(self) -> dict:
        return {"layer": self.layer, "module": self.module, "output_shape": self.output_shape,
                "params": self.params, "repeat_of": self.repeat_of, "macs": self.macs}


@dataclass(frozen=True)
class Summary:
    """Per-layer rows and totals; raw numbers only (formatting is the CLI's job)."""

    input_size: tuple[int, ...]  # C, H, W (no batch)
    layers: list[LayerRow]
    total_params: int  # from the root module: tied weights once, non-leaf parameters included
    trainable_params: int
    non_trainable_params: int
    input_mib: float
    forward_backward_mib: float
    params_mib: float
    total_mib: float
    unrowed_params: dict[str, int] = field(default_factory=dict)  # parameter name -> elements, held by no row

    @property
    def params_outside_rows(self) -> int:
        """Parameters that no row shows: modules the forward pass never calls (inception_v3's
        AuxLogits in eval mode), parameters held by non-leaf modules, or weights shared by two rows
        (negative then)."""
        return self.total_params - sum(r.params for r in self.layers)


def summarize(spec, model: nn.Module | None = None) -> Summary:
    """Summary of ``spec`` at its native input size; ``model`` defaults to ``spec.build()``."""
    model = spec.build() if model is None else model
    return summarize_module(model, spec.input_size)


def summarize_module(model: nn.Module, input_size: tuple[int, ...]) -> Summary:
    """Run one batch-1 forward pass in eval mode with hooks on every module.

    A row is a call of a module none of whose submodules ran: a leaf, or a module that uses its
    children's weights itself. ``nn.MultiheadAttention`` is the common case: it holds ``in_proj_*``
    and calls ``out_proj``'s weights functionally, so its ``out_proj`` child never runs as a module;
    torchvision's Swin attention does the same with ``qkv``/``proj``. Such a module is one row
    carrying all its parameters, so attention shows up in the table instead of in no row at all.

    Args:
        model: any module taking one tensor of shape (1, *input_size).
        input_size: the input shape without the batch dimension, e.g. (3, 224, 224).
    """
    model.eval()
    names = {m: name for name, m in model.named_modules()}
    calls: list[tuple[nn.Module, object]] = []
    handles = [m.register_forward_hook(lambda mod, _inp, out: calls.append((mod, _shapes(out))))
               for m in names]
    first_param = next(model.parameters(), None)
    x = torch.zeros((1, *input_size), device=first_param.device if first_param is not None else "cpu")
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()

    called = {m for m, _ in calls}
    rows = _rows([c for c in calls if _is_row(c[0], called)], names)
    total, trainable = count_params(model)
    covered = {id(p) for r in rows for p in r.module_params}
    input_mib = math.prod(input_size) * BYTES_PER_ELEMENT / MIB
    fwd_bwd_mib = 2 * sum(r.output_elements for r in rows) * BYTES_PER_ELEMENT / MIB
    params_mib = total * BYTES_PER_ELEMENT / MIB
    return Summary(
        input_size=tuple(input_size), layers=[r.row for r in rows], total_params=total, trainable_params=trainable,
        non_trainable_params=total - trainable, input_mib=input_mib, forward_backward_mib=fwd_bwd_mib,
        params_mib=params_mib, total_mib=input_mib + fwd_bwd_mib + params_mib,
        unrowed_params={n: p.numel() for n, p in model.named_parameters() if id(p) not in covered},
    )


def _is_row(module: nn.Module, called: set) -> bool:
    """A module is a row when it ran and none of its submodules did."""
    return not any(m in called for m in module.modules() if m is not module)


@dataclass(frozen=True)
class _Row:
    row: LayerRow
    module_params: tuple  # the module's parameter tensors (to find those no row holds)

    @property
    def output_elements(self) -> int:
        return self.row.output_elements


def _rows(calls: list[tuple[nn.Module, object]], names: dict) -> list[_Row]:
    rows: list[_Row] = []
    first_row: dict[nn.Module, str] = {}
    for i, (module, (shape, elements)) in enumerate(calls, start=1):
        label = f"{type(module).__name__}-{i}"
        repeat_of = first_row.get(module)
        params = tuple(module.parameters())
        first_row.setdefault(module, label)
        count = 0 if repeat_of else sum(p.numel() for p in params)
        rows.append(_Row(LayerRow(label, names[module], shape, elements, count, repeat_of), params))
    return rows


def _shapes(out) -> tuple[list, int]:
    """(shape with the batch dimension as -1, element count) of a module output.

    Tuples, lists and namedtuples give a list of shapes; dict outputs their values; None and
    non-tensor entries (an attention layer's absent weights) are skipped.
    """
    if isinstance(out, torch.Tensor):
        shape = list(out.shape)
        return ([-1, *shape[1:]] if shape else []), out.numel()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        parts = [_shapes(o) for o in out if o is not None]
        parts = [p for p in parts if p[0] is not None]
        return [p[0] for p in parts], sum(p[1] for p in parts)
    return None, 0
