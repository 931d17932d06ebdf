"""``perfkit sweep --file sweep.toml``: the sweep's keywords in a TOML file (``tomllib``; YAML would need
a dependency perfkit does not have). The keys are the keywords of ``perfkit.sweep`` (the flags' names,
``-`` or ``_``), values as on the command line or as lists::

    models = ["lenet5", "resnet18"]
    runtimes = ["eager", "onnx"]
    precision = "fp32"
    batch = [1, 2]
    scenario = "singlestream"
    memory = false
    iterations = 3          # any scenario, runtime or model option
"""

from __future__ import annotations

import difflib
from pathlib import Path

from perfkit.errors import UsageError


def read(path, known: set[str]) -> dict:
    """The keywords of the sweep file at ``path``; an unreadable file or an unknown key is one line."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--file {path}: no such file")
    if path.suffix.lower() in (".yaml", ".yml"):
        raise UsageError(f"--file {path}: a sweep file is TOML (sweep.toml); YAML is not read")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--file {path}: not valid TOML: {exc}") from None
    out = {str(k).replace("-", "_"): v for k, v in data.items()}
    for key, value in out.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, 1)
            raise UsageError(f"--file {path}: unknown key '{key}'{f' (did you mean {close[0]}?)' if close else ''}")
        if isinstance(value, dict):
            raise UsageError(f"--file {path}: '{key}' is a table; give a value or a list")
    return out
