"""Imports: every module loads without the optional extras (tensorrt), without a GPU, and without what
only Linux has (fcntl, resource, /proc), where ``perfkit --help`` works too; the package's import graph
is acyclic; data flows one way (measuring code never imports the store, the recorder, the report or
Rich); every pip extra a backend names exists in pyproject.toml."""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import perfkit

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "perfkit"  # the package's source folder
MEASURING = ("analysis", "accuracy", "profiler", "train", "backends", "artifacts")
NOT_FROM_MEASURING = ("perfkit.store", "perfkit.record", "perfkit.report", "rich")


def _modules():
    return [m.name for m in pkgutil.walk_packages(perfkit.__path__, "perfkit.") if not m.name.endswith("__main__")]


def test_every_module_imports_without_tensorrt():
    code = (
        # None in sys.modules makes `import tensorrt` (and the bindings it re-exports) fail
        "import sys; sys.modules['tensorrt'] = sys.modules['tensorrt_bindings'] = None\n"
        "import importlib\n"
        f"for name in {_modules()!r}: importlib.import_module(name)\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# What a platform without Linux's extras looks like, set up before perfkit is imported: no fcntl and no
# resource (Windows: `import` raises ImportError), no /proc (macOS, Windows: opening it finds nothing),
# no sched_getaffinity (macOS, Windows). Every read of /proc in perfkit goes through open().
WITHOUT_LINUX = textwrap.dedent("""
    import builtins, io, os, sys
    sys.modules['fcntl'] = sys.modules['resource'] = None
    os.__dict__.pop('sched_getaffinity', None)
    _open = io.open
    def _open_without_proc(file, *args, **kwargs):
        if not isinstance(file, int) and os.fsdecode(file).startswith('/proc'):
            raise FileNotFoundError(2, 'No such file or directory', file)
        return _open(file, *args, **kwargs)
    builtins.open = io.open = _open_without_proc
""")


def test_every_module_imports_and_help_works_without_fcntl_resource_and_proc():
    """pip installs perfkit on Windows and macOS: the CLI must at least build its parser there."""
    code = WITHOUT_LINUX + textwrap.dedent(f"""
        import importlib
        for name in {_modules()!r}:
            importlib.import_module(name)
        assert sys.modules['fcntl'] is None and sys.modules['resource'] is None  # nothing put them back
        from perfkit.cli import main
        for argv in (['--help'], ['zoo', '--help']):
            try:
                main(argv)
            except SystemExit as exc:
                assert exc.code == 0, (argv, exc.code)
            else:
                raise AssertionError(f'{{argv}}: --help did not exit')
        print('ok')
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("usage: perfkit") == 2 and "perfkit zoo" in out.stdout
    assert out.stdout.strip().endswith("ok")


def test_the_linux_extras_are_really_gone_in_that_setup():
    code = WITHOUT_LINUX + textwrap.dedent("""
        for name in ('fcntl', 'resource'):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise AssertionError(name)
        try:
            open('/proc/self/status')
        except FileNotFoundError:
            pass
        else:
            raise AssertionError('/proc')
        from perfkit.env import cpu_flags
        from perfkit.profiler.contention import read_proc_stat
        print(cpu_flags(), read_proc_stat(), hasattr(os, 'sched_getaffinity'))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None", "False"]


def test_help_on_every_command_has_an_example():
    from perfkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"run", "zoo", "summary", "export", "check", "validate", "profile", "train", "runs", "report",
            "select", "regress"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert "example:" in p.format_help(), name


# -- the import graph, read with ast ------------------------------------------------------------------

def _package_modules(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for the package in ``root`` (its folder name is the package name)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not inside functions, not under ``if TYPE_CHECKING:``
    (its ``else`` runs), but inside try/if/with/class bodies at module level."""
    out = []

    def walk(stmts):
        for node in stmts:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append(node)
            elif isinstance(node, ast.If) and _is_type_checking(node):
                walk(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody"):
                    walk(getattr(node, field, None) or [])
                for handler in getattr(node, "handlers", None) or []:
                    walk(handler.body)

    walk(tree.body)
    return out


def _all_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _imported_names(module: str, is_package: bool, node) -> list[str]:
    """Absolute names an import statement imports (``from a import b``: ``a.b``, which may be a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against this module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    return [base, *(f"{base}.{a.name}" for a in node.names)]


def import_graph(root: Path, *, deferred: bool = False) -> dict[str, set[str]]:
    """Module → the package's modules it imports (``from a import b`` goes to ``a.b`` when that is a
    module, else to ``a``): at module level, or with ``deferred`` also inside functions (a cycle closed
    by a function-local import is still a layering cycle; only a module importing a package it lives in
    is left out, as that package's ``__init__`` has already run)."""
    modules = _package_modules(root)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges = set()
        for node in (_all_imports_but_type_checking(tree) if deferred else _module_level_imports(tree)):
            names = _imported_names(name, path.name == "__init__.py", node)
            if isinstance(node, ast.ImportFrom):
                base, members = names[0], names[1:]
                targets = [m if m in modules else base for m in members]
            else:
                targets = names
            edges |= {t for t in targets if t in modules and t != name and not (deferred and _encloses(t, name))}
        graph[name] = edges
    return graph


def _encloses(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def _all_imports_but_type_checking(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for stmt in node.body for n in ast.walk(stmt)}
    return [n for n in _all_imports(tree) if id(n) not in skipped]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


@pytest.mark.parametrize("deferred", [False, True], ids=["module-level", "with-function-local"])
def test_the_import_graph_is_acyclic(deferred):
    graph = import_graph(ROOT, deferred=deferred)
    assert set(graph) >= {"perfkit", "perfkit.cli", "perfkit.store.sqlite", "perfkit.backends.onnxruntime"}
    assert "perfkit.results" in graph["perfkit.record"] and "perfkit.store.schema" in graph["perfkit.record"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_cycles_and_skips_what_does_not_run(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n"
                              "def f():\n    import pkg.c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "sub" / "b.py").write_text("try:\n    from .. import c\nexcept ImportError:\n    pass\nB = 1\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == set()  # TYPE_CHECKING and function-level imports do not run at import time
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.sub"] == {"pkg.sub.b"}
    assert find_cycle(graph) is None
    # with deferred imports: a -> c (inside f) and c -> a close a cycle; TYPE_CHECKING still does not count
    assert import_graph(pkg, deferred=True)["pkg.a"] == {"pkg.c"}
    assert find_cycle(import_graph(pkg, deferred=True)) == ["pkg.a", "pkg.c", "pkg.a"]
    (pkg / "sub" / "d.py").write_text("def f():\n    from pkg.sub import B\n")  # its own package: not a cycle
    assert import_graph(pkg, deferred=True)["pkg.sub.d"] == set()
    (pkg / "a.py").write_text("from pkg.sub import B\n")  # a -> sub -> sub.b -> c -> a
    assert find_cycle(import_graph(pkg)) == ["pkg.a", "pkg.sub", "pkg.sub.b", "pkg.c", "pkg.a"]


@pytest.mark.parametrize("package", MEASURING)
def test_measuring_code_never_imports_the_store_the_recorder_the_report_or_rich(package):
    """Measuring code returns typed results; recording and rendering are the caller's (anywhere in a
    module: at the top or inside a function)."""
    modules = {n: p for n, p in _package_modules(ROOT).items() if n.split(".")[1:2] == [package]}
    assert modules, package
    offences = []
    for name, path in modules.items():
        for node in _all_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for imported in _imported_names(name, path.name == "__init__.py", node):
                if any(imported == f or imported.startswith(f + ".") for f in NOT_FROM_MEASURING):
                    offences.append(f"{name}:{node.lineno} imports {imported}")
    assert offences == []


def test_the_layering_check_would_see_an_offence():
    tree = ast.parse("def f():\n    from perfkit.report.console import console\n    from .. import record\n")
    names = [n for node in _all_imports(tree) for n in _imported_names("perfkit.profiler.x", False, node)]
    assert "perfkit.report.console" in names and "perfkit.record" in names


# -- packaging ----------------------------------------------------------------------------------------

def test_every_backend_extra_is_defined_in_pyproject():
    from perfkit.backends import all_backends

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]
    named = {b.name: b.extra for b in all_backends() if b.extra}
    assert named, "no backend names an extra: this test checks nothing"
    missing = {name: extra for name, extra in named.items() if extra not in extras or not extras[extra]}
    assert missing == {}, f"backends name pip extras pyproject.toml does not define: {missing}"
    # and MissingDependency's hint is one a user can run
    from perfkit.errors import MissingDependency

    for extra in named.values():
        assert f"pip install 'perfkit[{extra}]'" in str(MissingDependency("x", extra))
