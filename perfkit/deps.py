"""Lazy imports of optional heavy dependencies.

``import perfkit`` must work without TensorRT, a GPU, or NVML. Modules that need a library call
``require(...)`` at the point of use, which raises ``MissingDependency`` saying how to install it:
the pip extra of the backend that declares the library (derived from the backend registry), or a
reinstall for a core dependency.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from perfkit.errors import MissingDependency

# Core dependencies (in pyproject's `dependencies`): import name -> what perfkit uses it for.
_CORE = {
    "onnx": "ONNX export", "onnxscript": "ONNX export", "onnxruntime": "the ONNX Runtime backend",
    "pynvml": "NVML GPU memory", "plotly": "HTML charts", "jinja2": "the HTML report",
    "timm": "timm models", "scipy": "the ImageNet devkit's meta.mat",
    "torchao": "AOTInductor int8 (PT2E quantization)",
}


def extra_of(module: str) -> tuple[str | None, str, str | None]:
    """(pip extra or None for a core dependency, why perfkit needs ``module``, the extra's index URL)."""
    top = module.split(".")[0]
    if top in _CORE:
        return None, _CORE[top], None
    from perfkit.backends import all_backends

    for backend in all_backends():
        if top in (alt.split(".")[0] for m in backend.requires for alt in m.split("|")):
            return backend.extra, f"the {backend.name} backend", backend.extra_index_url
    return None, "", None


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ``MissingDependency`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(module, *extra_of(module)) from exc


def available(module: str) -> bool:
    """True when ``module`` imports (used to choose defaults, never to hide an error)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
