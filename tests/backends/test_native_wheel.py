"""The native runner from a built wheel: perfkit installed from its wheel (not the checkout) builds the
C++ runner from the sources the wheel ships, into the artifacts folder, and profiles with it.

The installed copy is imported from a pip ``--target`` folder put first on PYTHONPATH, run from a
folder outside the checkout, so the checkout's perfkit cannot be the one imported; torch and the other
dependencies come from the environment running the tests (the wheel is installed with --no-deps).
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from perfkit.store import Store

CHECKOUT = Path(__file__).resolve().parents[2]


def _missing_tool() -> str | None:
    if shutil.which("cmake") is None:
        return "needs cmake (>= 3.18) to build the native runner"
    if not any(shutil.which(c) for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c):
        return "needs a C++20 compiler (c++, g++ or clang++ on PATH, or $CXX) to build the native runner"
    # distribution metadata, not find_spec("pip"): setuptools' distutils hack sees a lookup of pip and
    # switches this process to the stdlib distutils, which breaks torch's C++ compiles (AOTInductor) later
    versions = {}
    for name in ("pip", "setuptools"):
        try:
            versions[name] = int(importlib.metadata.version(name).split(".")[0])
        except importlib.metadata.PackageNotFoundError:
            return f"needs {name} in this environment to build and install the wheel"
    if versions["setuptools"] < 77:
        return "needs setuptools >= 77 (pyproject's build requirement) to build the wheel offline"
    return None


MISSING = _missing_tool()


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{cmd[:4]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _install_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the checkout (a build in place would leave build/ and *.egg-info
    in it) and install it into a folder of its own; return that folder."""
    src = tmp_path / "src"
    shutil.copytree(CHECKOUT / "perfkit", src / "perfkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(CHECKOUT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "wheels"), str(src)])
    (wheel,) = (tmp_path / "wheels").glob("perfkit-*.whl")
    site = tmp_path / "site"
    _run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)])
    return site


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.slow
@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
def test_wheel_installed_perfkit_builds_and_profiles_native(tmp_path):
    site = _install_wheel(tmp_path)
    installed = site / "perfkit"
    assert (installed / "native" / "CMakeLists.txt").is_file() and (installed / "native" / "runner.cpp").is_file()
    assert any(site.glob("perfkit-*.dist-info/licenses/LICENSE"))
    before = _tree(installed)

    artifacts, cwd = tmp_path / "artifacts", tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PERFKIT_NATIVE_BUILD"}
    # PYTHONDONTWRITEBYTECODE: the installed tree must stay as installed (site-packages may be read-only)
    env.update(PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1", PERFKIT_ARTIFACTS=str(artifacts))
    python = [sys.executable]

    where = _run([*python, "-c", "import json, perfkit, perfkit.backends.native as n; "
                  "print(json.dumps([perfkit.__file__, str(n.SOURCE_DIR)]))"], cwd=cwd, env=env)
    module, source_dir = map(Path, json.loads(where.stdout))
    assert module.resolve() == (installed / "__init__.py").resolve() and not module.is_relative_to(CHECKOUT)
    assert source_dir == (installed / "native").resolve()

    built = json.loads(_run([*python, "-m", "perfkit", "build-native", "--json"], cwd=cwd, env=env).stdout)
    print(f"native build from the wheel: {built['build_seconds']:.1f} s")  # shown with -s; the README quotes it
    build_dir = Path(built["build_dir"])
    assert built["rebuilt"] and Path(built["binary"]).is_file() and build_dir == (artifacts / "native-build").resolve()
    # CMake read the installed copy's sources, not the checkout's
    cache = (build_dir / "CMakeCache.txt").read_text()
    assert f"CMAKE_HOME_DIRECTORY:INTERNAL={source_dir}\n" in cache

    binary_mtime = Path(built["binary"]).stat().st_mtime_ns
    store = tmp_path / "s.db"
    profiled = _run([*python, "-m", "perfkit", "profile", "lenet5", "-f", "native", "-b", "1", "--weights", "random",
                     "--no-memory", "--iterations", "3", "--min-seconds", "0.1", "--store", str(store), "--json"],
                    cwd=cwd, env=env)
    # the runner found build-native's binary in the artifacts folder and did not compile again
    assert sorted(tmp_path.rglob(Path(built["binary"]).name)) == [Path(built["binary"])]
    assert Path(built["binary"]).stat().st_mtime_ns == binary_mtime
    with Store(store, read_only=True) as s:
        latency = [r for r in s.records(kind="latency") if r.runtime == "native"]
    assert len(latency) == 1 and latency[0].status == "ok", profiled.stdout[-2000:]
    assert latency[0].metrics["self_timed"] is True and latency[0].metrics["iterations"] >= 3
    assert _tree(installed) == before  # nothing built or cached inside the installed package
