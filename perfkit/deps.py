"""Lazy imports of optional heavy dependencies.

``import perfkit`` must work without TensorRT, a GPU, or NVML. Modules that need a library call
``require(...)`` at the point of use, which raises ``MissingDependency`` saying how to install it:
the pip extra the caller names (a backend passes its own ``Backend.extra``), or a reinstall for a
core dependency. This module sits below the backend registry and never imports it.
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


def import_module(module: str) -> ModuleType:
    """``importlib.import_module``, except that a Ctrl-C during the import stays a Ctrl-C.

    A pybind11 extension turns whatever interrupts its initialisation into ``ImportError("initialization
    failed")`` raised from it (ONNX Runtime's ``_pybind_state``): a Ctrl-C that lands there would read
    as a missing library, and the run would go on without it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        cause = exc
        while cause is not None:
            if isinstance(cause, KeyboardInterrupt):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        raise


def require(module: str, *, extra: str | None = None, why: str = "", index_url: str | None = None) -> ModuleType:
    """Import ``module`` or raise ``MissingDependency`` saying how to install it: with ``extra`` (the
    caller's pip extra), ``pip install 'perfkit[extra]'``; else it is a core dependency."""
    try:
        return import_module(module)
    except ImportError as exc:
        if extra is None:
            raise MissingDependency(module, None, why or _CORE.get(module.split(".")[0], "")) from exc
        raise MissingDependency(module, extra, why, index_url) from exc


def available(module: str) -> bool:
    """True when ``module`` imports (used to choose defaults, never to hide an error)."""
    try:
        import_module(module)
    except ImportError:
        return False
    return True
