"""perfkit: export, verify, profile and compare image classifiers across runtimes.

The Python API (``perfkit.api``): ``perfkit.check``, ``validate``, ``profile``, ``export``,
``summary`` and ``run``, each returning a typed result with ``records()`` and ``table()``.
Importing perfkit stays cheap: each function imports what it measures with when it is called.
"""

__version__ = "0.2.0"

import sys  # noqa: E402
import types  # noqa: E402

from perfkit.api import (  # noqa: E402
    CheckResult, ExportResult, Note, ProfileResult, Result, RunResult, SummaryResult, ValidateResult, check, export,
    profile, run, summary, validate,
)
from perfkit.errors import MeasurementError, PerfkitError, UsageError  # noqa: E402
from perfkit.vocab import BatchRange, Precision  # noqa: E402

__all__ = [
    "__version__", "BatchRange", "CheckResult", "ExportResult", "MeasurementError", "Note", "PerfkitError",
    "Precision", "ProfileResult", "Result", "RunResult", "SummaryResult", "UsageError", "ValidateResult", "check",
    "export", "profile", "run", "summary", "validate",
]


class _ProfilePackage(types.ModuleType):
    """``perfkit.profile`` is both the function of the API and the profiler's package (perfkit/profile/):
    once that package is imported, Python binds it to ``perfkit.profile`` in place of the function.
    The package is then made callable, as the function (with its signature, for ``help`` in a
    notebook), so ``perfkit.profile(...)`` works either way (and ``perfkit.profile.memory`` too)."""

    def __call__(self, *args, **kwargs):
        from perfkit.api import profile as measure

        return measure(*args, **kwargs)


class _Perfkit(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        if name == "profile" and isinstance(value, types.ModuleType):
            import inspect

            value.__class__ = _ProfilePackage
            value.__signature__ = inspect.signature(profile)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Perfkit
