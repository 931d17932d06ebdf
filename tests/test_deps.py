"""perfkit.deps: a missing library names how to install it, from what the caller declares (deps sits
below the backend registry and never looks backends up)."""

from __future__ import annotations

import pytest

from perfkit.deps import available, require
from perfkit.errors import MissingDependency


def test_a_missing_library_of_an_extra_names_the_extra():
    with pytest.raises(MissingDependency) as err:
        require("perfkit_no_such_module.sub", extra="openvino", why="the openvino backend")
    text = str(err.value)
    assert "'perfkit_no_such_module.sub' is not installed (the openvino backend)" in text
    assert "pip install 'perfkit[openvino]'" in text and err.value.extra == "openvino"


def test_a_missing_core_library_says_reinstall():
    with pytest.raises(MissingDependency) as err:
        require("perfkit_no_such_module")
    assert "core dependency" in str(err.value) and err.value.extra is None


def test_present_libraries_import():
    assert require("json").dumps([]) == "[]"
    assert available("json") and not available("perfkit_no_such_module")


@pytest.mark.parametrize("check", [require, available])
def test_a_ctrl_c_inside_an_extension_init_stays_a_ctrl_c(tmp_path, monkeypatch, check):
    """pybind11 re-raises what interrupts a module's init as ImportError("initialization failed") from it:
    a Ctrl-C there must not read as a missing library (the run would go on, and end 'failed')."""
    (tmp_path / "perfkit_fake_pybind.py").write_text(
        "raise ImportError('initialization failed') from KeyboardInterrupt()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        check("perfkit_fake_pybind")
