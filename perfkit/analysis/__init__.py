"""Complexity analysis: params, MACs and FLOPs (complexity.py) and the per-layer table (summary.py)."""

from perfkit.analysis.complexity import (
    MACS_CONVENTION,
    NOT_COUNTED,
    PARAMS_CONVENTION,
    Complexity,
    complexity_record,
    count_macs,
    count_params,
    measure_complexity,
)
from perfkit.analysis.summary import LayerRow, Summary, summarize, summarize_module

__all__ = [
    "MACS_CONVENTION", "NOT_COUNTED", "PARAMS_CONVENTION", "Complexity", "LayerRow", "Summary",
    "complexity_record", "count_macs", "count_params", "measure_complexity", "summarize", "summarize_module",
]
