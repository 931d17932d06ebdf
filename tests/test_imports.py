"""Every module imports without the optional extras (tensorrt) and without a GPU."""

import importlib
import pkgutil
import subprocess
import sys

import perfkit


def _modules():
    return [m.name for m in pkgutil.walk_packages(perfkit.__path__, "perfkit.") if not m.name.endswith("__main__")]


def test_every_module_imports_without_tensorrt():
    code = (
        "import sys; sys.modules['tensorrt'] = None\n"  # None in sys.modules makes `import tensorrt` fail
        "import importlib\n"
        f"for name in {_modules()!r}: importlib.import_module(name)\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_help_on_every_command_has_an_example():
    from perfkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"run", "zoo", "summary", "export", "check", "validate", "profile", "train", "runs", "report",
            "select", "regress"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert "example:" in p.format_help(), name
