"""perfkit: export, verify, profile and compare image classifiers across runtimes."""

__version__ = "0.1.0"

from perfkit.errors import PerfkitError  # noqa: E402
from perfkit.formats import BatchRange, Format, Precision  # noqa: E402

__all__ = ["__version__", "BatchRange", "Format", "PerfkitError", "Precision"]
