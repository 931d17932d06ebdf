"""perfkit: export, verify, profile and compare image classifiers across runtimes."""

__version__ = "0.2.0"

from perfkit.errors import PerfkitError  # noqa: E402
from perfkit.vocab import BatchRange, Precision  # noqa: E402

__all__ = ["__version__", "BatchRange", "PerfkitError", "Precision"]
