"""Errors a user can act on.

Every error perfkit raises on purpose is a ``PerfkitError``: the CLI prints its message (no
traceback) and exits with its ``exit_code``. Anything else is a bug and keeps its traceback.
"""


class PerfkitError(Exception):
    """Base class: ``str(error)`` is a message that tells the user what to do."""

    exit_code = 2


class UsageError(PerfkitError):
    """Bad command-line input (unknown model, malformed option value)."""


class WeightsError(PerfkitError):
    """Weights cannot be found or loaded (offline cache miss, corrupt file, wrong keys)."""


class MissingDependency(PerfkitError):
    """An optional extra is not installed; the message names the pip extra."""

    def __init__(self, module: str, extra: str, why: str = ""):
        self.module = module
        self.extra = extra
        hint = f" ({why})" if why else ""
        super().__init__(
            f"'{module}' is not installed{hint}. Install it with: pip install 'perfkit[{extra}]'"
        )


class ArtifactError(PerfkitError):
    """An exported artifact is missing, truncated, tampered with, or built elsewhere."""


class DatasetError(PerfkitError):
    """A dataset is missing, in an unknown layout, or holds unreadable files."""


class InputError(PerfkitError):
    """A tensor given to a runner does not match the artifact (shape, dtype, batch range)."""


class GateFailed(PerfkitError):
    """A CI gate (accuracy drop, parity, regression) failed; exit code 1."""

    exit_code = 1
