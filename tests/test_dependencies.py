"""Every third-party module perfkit imports (at module level or inside a function, or by name through
``perfkit.deps``) is declared in pyproject.toml, as a dependency or in an extra; pre-1.0 dependencies,
whose minor releases may break their API, have an upper bound."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# import name → the distributions that provide it (any one declared is enough)
DISTRIBUTIONS = {
    "PIL": {"pillow"}, "pynvml": {"nvidia-ml-py"}, "mlperf_loadgen": {"mlcommons-loadgen"},
    "onnxruntime": {"onnxruntime", "onnxruntime-gpu"}, "huggingface_hub": {"huggingface-hub"},
    "tensorrt": {"tensorrt-cu12-bindings", "tensorrt-cu13-bindings"}, "yaml": {"pyyaml"},
}
# modules imported only to say they are missing or to find optional runtimes by name
OPTIONAL_BY_NAME = {"tensorrt_bindings", "tensorrt_libs"}


def _declared() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    out = {}
    for spec in specs:
        name = re.match(r"[A-Za-z0-9_.\-]+", spec).group(0).lower().replace("_", "-")
        out[name] = spec
    return out


def _imported() -> set[str]:
    """Top-level module names perfkit imports anywhere, and those it imports by name (require("x"), ...)."""
    names = set()
    for path in (REPO / "perfkit").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
                  in ("require", "import_module", "available") and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "perfkit" and n != "__future__"}


def test_every_third_party_import_is_declared():
    declared = _declared()
    missing = {}
    for module in sorted(_imported() - OPTIONAL_BY_NAME):
        dists = DISTRIBUTIONS.get(module, {module.lower().replace("_", "-")})
        if not dists & declared.keys():
            missing[module] = sorted(dists)
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_pre_1_0_dependencies_have_an_upper_bound():
    for name, spec in _declared().items():
        lower = re.search(r">=\s*0\.", spec)
        if lower:
            assert "<" in spec.split(";")[0], f"{name} is pre-1.0 and has no upper bound: {spec}"
