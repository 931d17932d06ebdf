"""Lazy imports of optional heavy dependencies.

``import perfkit`` must work without TensorRT, a GPU, or NVML. Modules that need one of them call
``require(...)`` at the point of use, which raises ``MissingDependency`` naming the pip extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from perfkit.errors import MissingDependency

# import name -> (pip extra, why perfkit needs it)
_EXTRAS = {
    "tensorrt": ("tensorrt", "TensorRT engines"),
    "onnxruntime": ("onnx", "the ONNX Runtime runner"),
    "onnx": ("onnx", "ONNX export"),
    "onnxscript": ("onnx", "ONNX export"),
    "pynvml": ("gpu", "NVML GPU memory"),
    "plotly": ("report", "HTML charts"),
    "timm": ("timm", "timm models and ImageNet metadata"),
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ``MissingDependency`` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra, why = _EXTRAS.get(module.split(".")[0], (module, ""))
        raise MissingDependency(module, extra, why) from exc


def available(module: str) -> bool:
    """True when ``module`` imports (used to choose defaults, never to hide an error)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
