"""perfkit: export, verify, profile and compare image classifiers across runtimes.

The Python API (``perfkit.api``): ``perfkit.check``, ``validate``, ``profile``, ``export``,
``summary``, ``run`` and ``sweep``, each returning a typed result with ``records()`` and ``table()``.
Importing perfkit stays cheap: each function imports what it measures with when it is called.
"""

__version__ = "0.2.0"

from perfkit.api import (  # noqa: E402
    CheckResult, ExportResult, Note, ProfileResult, Result, RunResult, SummaryResult, SweepResult, SweepStatus,
    ValidateResult, check, export, profile, run, summary, sweep, sweep_status, validate,
)
from perfkit.errors import MeasurementError, PerfkitError, UsageError  # noqa: E402
from perfkit.vocab import BatchRange, Precision  # noqa: E402

__all__ = [
    "__version__", "BatchRange", "CheckResult", "ExportResult", "MeasurementError", "Note", "PerfkitError",
    "Precision", "ProfileResult", "Result", "RunResult", "SummaryResult", "SweepResult", "SweepStatus", "UsageError",
    "ValidateResult", "check", "export", "profile", "run", "summary", "sweep", "sweep_status", "validate",
]
