"""A per-layer summary in the manner of the classic torchsummary table.

One row per call of a leaf module (a module without children), in call order, named
``<Type>-<n>`` where ``n`` is the row number (torchsummary's numbering: Conv2d-1, ReLU-2, ...).
Memory estimates follow torchsummary's float32 convention, per sample:

- input size = elements of one input × 4 bytes
- forward/backward pass size = 2 × (sum of the output elements of every row) × 4 bytes
  (each activation is kept for the backward pass and has a gradient of the same size)
- params size = parameters × 4 bytes; estimated total = the sum of the three.

MB here is 2**20 bytes, as in torchsummary. torchsummary also hooks container blocks (a ResNet
``BasicBlock``), so its forward/backward figure for such models counts those outputs a second time;
perfkit rows are leaf modules only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from perfkit.analysis.complexity import count_params

BYTES_PER_ELEMENT = 4  # float32, torchsummary's convention
MB = 2**20
MEMORY_CONVENTION = (
    "torchsummary's float32 estimates per sample over leaf-module outputs (containers not counted again); "
    "MB = 2**20 bytes (MiB)"
)


@dataclass(frozen=True)
class LayerRow:
    """One call of one leaf module."""

    layer: str  # "Conv2d-1"
    module: str  # qualified name in the model, "features.0"
    output_shape: list  # [-1, C, H, W]; a list of shapes for tuple outputs
    output_elements: int  # per sample (batch 1)
    params: int  # the module's own parameters; 0 on its second and later calls
    repeat_of: str | None = None  # the first row of a module called more than once

    def as_dict(self) -> dict:
        return {"layer": self.layer, "module": self.module, "output_shape": self.output_shape,
                "params": self.params, "repeat_of": self.repeat_of}


@dataclass(frozen=True)
class Summary:
    """Per-layer rows and totals; raw numbers only (formatting is the CLI's job)."""

    input_size: tuple[int, ...]  # C, H, W (no batch)
    layers: list[LayerRow]
    total_params: int  # from the root module: tied weights once, non-leaf parameters included
    trainable_params: int
    non_trainable_params: int
    input_mb: float
    forward_backward_mb: float
    params_mb: float
    total_mb: float

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
    """Run one batch-1 forward pass in eval mode with hooks on every leaf module.

    Args:
        model: any module taking one tensor of shape (1, *input_size).
        input_size: the input shape without the batch dimension, e.g. (3, 224, 224).
    """
    model.eval()
    names = {m: name for name, m in model.named_modules()}
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    calls: list[tuple[nn.Module, object]] = []
    handles = [m.register_forward_hook(lambda mod, _inp, out: calls.append((mod, _shapes(out)))) for m in leaves]
    first_param = next(model.parameters(), None)
    x = torch.zeros((1, *input_size), device=first_param.device if first_param is not None else "cpu")
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()

    rows: list[LayerRow] = []
    first_row: dict[nn.Module, str] = {}
    for i, (module, (shape, elements)) in enumerate(calls, start=1):
        label = f"{type(module).__name__}-{i}"
        repeat_of = first_row.get(module)
        params = 0 if repeat_of else sum(p.numel() for p in module.parameters())
        first_row.setdefault(module, label)
        rows.append(LayerRow(label, names[module], shape, elements, params, repeat_of))

    total, trainable = count_params(model)
    input_mb = math.prod(input_size) * BYTES_PER_ELEMENT / MB
    fwd_bwd_mb = 2 * sum(r.output_elements for r in rows) * BYTES_PER_ELEMENT / MB
    params_mb = total * BYTES_PER_ELEMENT / MB
    return Summary(
        input_size=tuple(input_size), layers=rows, total_params=total, trainable_params=trainable,
        non_trainable_params=total - trainable, input_mb=input_mb, forward_backward_mb=fwd_bwd_mb,
        params_mb=params_mb, total_mb=input_mb + fwd_bwd_mb + params_mb,
    )


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
