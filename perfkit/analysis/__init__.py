"""Complexity analysis: params, MACs and FLOPs (complexity.py) and the per-layer table (layers.py)."""

from __future__ import annotations

from dataclasses import dataclass

from perfkit.analysis.complexity import (
    MACS_CONVENTION, NOT_COUNTED, PARAMS_CONVENTION, Complexity, count_macs, count_params, measure_complexity,
)
from perfkit.analysis.layers import MEMORY_CONVENTION, LayerRow, Summary, summarize, summarize_module
from perfkit.results import Where

__all__ = [
    "MACS_CONVENTION", "MEMORY_CONVENTION", "NOT_COUNTED", "PARAMS_CONVENTION", "Complexity", "ComplexityReport",
    "LayerRow", "Summary", "analyze", "count_macs", "count_params", "measure_complexity", "summarize",
    "summarize_module",
]


@dataclass(frozen=True)
class ComplexityReport:
    """What ``perfkit summary`` measures: the counts and the per-layer table of one model."""

    where: Where
    complexity: Complexity
    summary: Summary


def analyze(spec, model=None) -> ComplexityReport:
    """Build the model once (``model`` to reuse one), count it and summarise its layers, batch 1, eval mode."""
    model = spec.build() if model is None else model
    first = next(model.parameters(), None)
    device = first.device.type if first is not None else "cpu"
    return ComplexityReport(Where.of(spec, "eager", "fp32", 1, device), measure_complexity(spec, model),
                            summarize(spec, model))
