"""Complexity analysis: params, MACs and FLOPs (complexity.py), the per-layer table (layers.py) and
the MACs of the exported ONNX graph as a cross-check of the PyTorch count (onnx_macs.py); a model given
as an ONNX file is counted from its graph (complexity.measure_onnx, onnx_layers.py), an engine someone
built where its format allows (engines.py: an OpenVINO IR's graph, a TorchScript module; not compiled code)."""

from __future__ import annotations

from dataclasses import dataclass

from perfkit.analysis.complexity import (
    MACS_CONVENTION, NOT_COUNTED, PARAMS_CONVENTION, Complexity, count_macs, count_params, measure_complexity,
)
from perfkit.analysis.layers import MEMORY_CONVENTION, LayerRow, Summary, summarize, summarize_module
from perfkit.analysis.onnx_macs import ONNX_TOLERANCE, OnnxMacs, count_onnx_macs
from perfkit.analysis.engines import uncountable
from perfkit.results import Where
from perfkit.zoo.spec import ONNX_FILE, OPENVINO_IR

__all__ = [
    "MACS_CONVENTION", "MEMORY_CONVENTION", "NOT_COUNTED", "ONNX_TOLERANCE", "PARAMS_CONVENTION", "Complexity",
    "ComplexityReport", "LayerRow", "OnnxMacs", "Summary", "analyze", "complexity_where", "count_macs",
    "count_onnx_macs", "count_params", "measure_complexity", "onnx_cross_check", "summarize", "summarize_module",
    "uncountable", "with_macs",
]


@dataclass(frozen=True)
class ComplexityReport:
    """What ``perfkit summary`` measures: the counts and the per-layer table of one model."""

    where: Where
    complexity: Complexity
    summary: Summary
    onnx: OnnxMacs | None = None  # the exported ONNX graph's MACs, when cross-checked

    @property
    def onnx_agrees(self) -> bool | None:
        """Whether the ONNX count matches the PyTorch count within ``ONNX_TOLERANCE`` (None: not checked)."""
        return None if self.onnx is None else self.onnx.agrees_with(self.complexity.macs)


def analyze(spec, model=None, *, onnx_ctx=None) -> ComplexityReport:
    """Build the model once (``model`` to reuse one), count it and summarise its layers, batch 1, eval mode.

    Args:
        onnx_ctx: a ``Context``: also export the model to ONNX with perfkit's own exporter (through
            the artifact cache in ``onnx_ctx.artifacts``) and count that graph's MACs.

    A model given as an ONNX file has no module: its graph is counted and tabulated (``measure_onnx``,
    ``summarize_onnx``), recorded under its reference runtime (onnx); there is nothing to cross-check.
    An engine someone built is counted where its format allows (``perfkit.analysis.engines``), recorded
    under its own runtime; compiled code is refused (``uncountable``).

    Raises:
        UsageError: ``spec`` is compiled code (an AOTInductor package, a TensorRT engine).
    """
    if spec.form == ONNX_FILE:
        from perfkit.analysis.onnx_layers import summarize_onnx

        return ComplexityReport(complexity_where(spec), measure_complexity(spec), summarize_onnx(spec))
    if spec.engine:
        return _analyze_engine(spec)
    model = spec.build() if model is None else model
    first = next(model.parameters(), None)
    device = first.device.type if first is not None else "cpu"
    complexity, summary = measure_complexity(spec, model), summarize(spec, model)
    summary = with_macs(summary, complexity.macs_by_module)
    onnx = None if onnx_ctx is None else onnx_cross_check(spec, onnx_ctx)
    return ComplexityReport(Where.of(spec, "eager", "fp32", 1, device), complexity, summary, onnx)


def with_macs(summary: Summary, macs_by_module: dict[str, int]) -> Summary:
    """``summary`` with each row's MACs from the per-module count (a module called twice: its first row
    carries every call's MACs, as with params)."""
    from dataclasses import replace

    rows = [replace(r, macs=0 if r.repeat_of else macs_by_module.get(r.module, 0)) for r in summary.layers]
    return replace(summary, layers=rows)


def complexity_where(spec) -> Where:
    """Where a model's complexity is recorded: eager for a module, its reference runtime (onnx) for an ONNX
    file, its own runtime for an engine (a model's counts do not depend on the runtime)."""
    if spec.engine:
        from perfkit.zoo.sources.engines import format_of

        return Where.of(spec, format_of(spec).runtime, "fp32", 1, "cpu")
    return Where.of(spec, spec.reference_runtime, "fp32", 1, "cpu")


def _analyze_engine(spec) -> ComplexityReport:
    from perfkit.analysis import engines
    from perfkit.errors import UsageError

    reason = engines.uncountable(spec)
    if reason:
        raise UsageError(reason)
    if spec.form == OPENVINO_IR:
        return ComplexityReport(complexity_where(spec), measure_complexity(spec), engines.summarize_openvino(spec))
    module = engines.torchscript_module(spec)
    return ComplexityReport(complexity_where(spec), measure_complexity(spec, module),
                            engines.summarize_torchscript(spec, module))


def onnx_cross_check(spec, ctx) -> OnnxMacs:
    """MACs of ``spec``'s ONNX artifact (exported now or served from the cache), at batch 1."""
    from perfkit.artifacts import ensure_artifact
    from perfkit.backends import get

    artifact = ensure_artifact(spec, get("onnx"), ctx.replace(device="cpu"))
    return count_onnx_macs(artifact.path)
