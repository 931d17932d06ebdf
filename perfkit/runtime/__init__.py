"""Runners: one per runtime, all behind the ``Runner`` interface.

``open_runner`` is the one entry point the rest of perfkit uses: it finds (or exports) the artifact
a format needs and returns an un-entered runner; use it as ``with open_runner(...) as r: r.infer(x)``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from perfkit.formats import BatchRange, Format, Precision
from perfkit.runtime.base import ArtifactRunner, Runner, pin_tf32
from perfkit.zoo.registry import ModelSpec

__all__ = ["ArtifactRunner", "Runner", "open_runner", "pin_tf32", "runner_class"]

_RUNNERS = {
    Format.TORCHSCRIPT: ("perfkit.runtime.torchscript", "TorchScriptRunner"),
    Format.ONNX: ("perfkit.runtime.onnxruntime", "OnnxRuntimeRunner"),
    Format.AOTI: ("perfkit.runtime.aoti", "AotiRunner"),
    Format.TENSORRT: ("perfkit.runtime.tensorrt", "TensorRTRunner"),
}


def runner_class(fmt: Format | str) -> type[ArtifactRunner]:
    """The runner class of an exported format (imported lazily: TensorRT is an optional extra)."""
    fmt = Format(fmt)
    if fmt not in _RUNNERS:
        raise NotImplementedError(f"runtime {fmt} has no artifact runner")
    module, name = _RUNNERS[fmt]
    return getattr(importlib.import_module(module), name)


def open_runner(spec: ModelSpec, fmt: Format | str, *, precision: Precision | str = Precision.FP32,
                device: str = "cpu", artifacts: Path | None = None, batch: BatchRange = BatchRange(),
                **options) -> Runner:
    """A runner for ``spec`` in ``fmt``; exported formats are exported first if not cached.

    ``options`` holds exporter options (``script``, ``freeze``, ``opset``, ``workspace_mb``, ``force``)
    and runner options (eager: ``channels_last``; onnx: ``threads``).
    """
    fmt = Format(fmt)
    if fmt is Format.EAGER:
        from perfkit.runtime.eager import EagerRunner

        return EagerRunner(spec, precision=Precision(precision), device=device, batch=batch, **options)
    if fmt not in _RUNNERS:
        raise NotImplementedError(f"runtime {fmt} is not wired in open_runner")
    from perfkit.export.artifact import ensure_artifact, exporter

    export_keys = set(exporter(fmt).OPTIONS) | {"force"}
    export_opts = {k: options.pop(k) for k in list(options) if k in export_keys}
    artifact = ensure_artifact(spec, fmt, precision=precision, artifacts=artifacts, batch=batch, device=device,
                               **export_opts)
    return runner_class(fmt)(spec, artifact, device=device, **options)
