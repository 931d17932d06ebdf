"""The Python API: what the commands do, for notebooks and scripts.

    import perfkit

    result = perfkit.profile("resnet18", runtimes="eager,onnx", batch=(1, 8), weights="random")
    result = perfkit.profile(my_module, input_size=(3, 224, 224), runtimes=["eager", "onnx"])
    pandas.DataFrame(result.table())

``check``, ``validate``, ``profile``, ``export``, ``summary`` and ``run`` take a model — a zoo name
(``"resnet18"``, ``"timm:convnext_tiny"``, ``"lenet5"``), a path to an ONNX file, or an ``nn.Module``
instance (with ``input_size=(C, H, W)``) — and keywords named like the flags of the command of the
same name (``--calib-samples`` → ``calib_samples``; comma lists as a string or a list); see
``perfkit.api.keywords`` for the ones they share. Each returns a typed ``Result``: ``records()``,
``table()`` (flat dicts for pandas), ``run_id``, ``failed``. Nothing is kept unless ``store=`` names
a run store (a path, a ``sqlite:///`` or ``postgresql://`` URL, or a ``perfkit.store.Store``). Bad input
raises ``perfkit.PerfkitError`` (a
``UsageError``) with the command line's one-line message; ``notify`` receives, as ``Note`` strings,
what a command prints before it works; ``progress`` takes a ``perfkit.context.Progress``.

The command line is a thin layer over these functions: ``perfkit.cli`` turns flags into their
keywords and prints what they return.
"""

from perfkit.api.commands import check, export, profile, run, summary
from perfkit.api.keywords import Note
from perfkit.api.result import (
    CheckResult, ExportResult, ProfileResult, Result, RunResult, SummaryResult, ValidateResult,
)
from perfkit.api.sweeps import SweepResult, SweepStatus, sweep, sweep_status
from perfkit.api.validation import validate

__all__ = [
    "CheckResult", "ExportResult", "Note", "ProfileResult", "Result", "RunResult", "SummaryResult", "SweepResult",
    "SweepStatus", "ValidateResult", "check", "export", "profile", "run", "summary", "sweep", "sweep_status", "validate",
]
