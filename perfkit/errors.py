"""Errors a user can act on.

Every error perfkit raises on purpose is a ``PerfkitError``: the CLI prints its message on one line
(no traceback) and exits with its ``exit_code``: 2 for bad input (a wrong name, path, option or
file), 1 for a measurement that failed. Anything else is a bug and keeps its traceback.
"""


class PerfkitError(Exception):
    """Base class: ``str(error)`` is a message that tells the user what to do."""

    exit_code = 2


class UsageError(PerfkitError):
    """Bad command-line input (unknown model, malformed option value, unsupported combination)."""


class WeightsError(PerfkitError):
    """Weights cannot be found or loaded (offline cache miss, corrupt file, wrong keys)."""


def pip_install(extra: str, index_url: str | None = None) -> str:
    """The command that installs perfkit's pip ``extra`` (from ``index_url`` too, where its wheels are)."""
    return f"pip install {f'--extra-index-url {index_url} ' if index_url else ''}'perfkit[{extra}]'"


class MissingDependency(PerfkitError):
    """An optional library is not installed; the message says how to install it."""

    def __init__(self, module: str, extra: str | None, why: str = "", index_url: str | None = None):
        self.module = module
        self.extra = extra
        hint = f" ({why})" if why else ""
        how = (pip_install(extra, index_url) if extra else
               "it is a core dependency of perfkit: reinstall perfkit (pip install -e .)")
        super().__init__(f"'{module}' is not installed{hint}. Install it with: {how}")


class ArtifactError(PerfkitError):
    """An exported artifact is missing, truncated, tampered with, or built elsewhere."""


class DatasetError(PerfkitError):
    """A dataset is missing, in an unknown layout, or holds unreadable files."""


class InputError(PerfkitError):
    """A tensor given to a runner does not match the artifact (shape, dtype, batch range)."""


class MeasurementError(PerfkitError):
    """A measurement ran and failed (a runtime crashed, an export failed, a check did not pass)."""

    exit_code = 1


class GateFailed(MeasurementError):
    """A CI gate (accuracy drop, parity, regression) failed."""


class StoreError(PerfkitError):
    """The run store failed while a command was writing to it (a server gone, a connection lost):
    the records committed before stay; the measurement that was under way is lost."""

    exit_code = 1
