"""Runners: one per runtime, all behind the ``Runner`` interface.

``open_runner`` is the one entry point the rest of perfkit uses: it finds (or exports) the artifact
a format needs and returns an un-entered runner; use it as ``with open_runner(...) as r: r.infer(x)``.
"""

from __future__ import annotations

from pathlib import Path

from perfkit.formats import BatchRange, Format, Precision
from perfkit.runtime.base import Runner, pin_tf32
from perfkit.zoo.registry import ModelSpec

__all__ = ["Runner", "open_runner", "pin_tf32"]


def open_runner(spec: ModelSpec, fmt: Format | str, *, precision: Precision | str = Precision.FP32,
                device: str = "cpu", artifacts: Path | None = None, batch: BatchRange = BatchRange(),
                **options) -> Runner:
    """A runner for ``spec`` in ``fmt``; exported formats are exported first if not cached."""
    fmt = Format(fmt)
    if fmt is Format.EAGER:
        from perfkit.runtime.eager import EagerRunner

        return EagerRunner(spec, precision=Precision(precision), device=device, batch=batch, **options)
    raise NotImplementedError(f"runtime {fmt} is not wired yet")  # filled in by the export issue
