"""perfkit.registry: the one registry behind runtimes, model sources and scenarios."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from perfkit.errors import UsageError
from perfkit.registry import Registry


@dataclass(frozen=True)
class Unit:
    name: str
    colour: str = "red"


@pytest.fixture
def modules(monkeypatch):
    """Two importable modules defining UNIT."""
    for name, unit in (("reg_test_a", Unit("alpha")), ("reg_test_b", Unit("beta", "blue"))):
        module = types.ModuleType(name)
        module.UNIT = unit
        monkeypatch.setitem(sys.modules, name, module)
    return ("reg_test_a", "reg_test_b")


def _one_colour(new, others):
    if any(o.colour == new.colour for o in others):
        raise ValueError(f"{new.name}: colour {new.colour} taken")


def test_units_load_in_order_and_are_found_by_name(modules):
    registry = Registry("unit", Unit, modules, "UNIT")
    assert registry.names() == ["alpha", "beta"]
    assert registry.get("BETA ").colour == "blue" and registry.get(registry.get("alpha")).name == "alpha"
    with pytest.raises(UsageError, match="unknown unit 'gamma'; choose from: alpha, beta"):
        registry.get("gamma")
    assert registry.find(lambda u: u.colour == "blue").name == "beta" and registry.find(lambda u: False) is None


def test_duplicates_bad_names_wrong_types_and_the_axis_rule_are_refused(modules):
    registry = Registry("unit", Unit, modules, "UNIT", check=_one_colour)
    with pytest.raises(ValueError, match="a unit named 'alpha' is already registered"):
        registry.register(Unit("alpha", "green"))
    with pytest.raises(ValueError, match="lower case without spaces"):
        registry.register(Unit("Gamma", "green"))
    with pytest.raises(TypeError, match="takes a Unit"):
        registry.register("gamma")
    with pytest.raises(ValueError, match="colour red taken"):
        registry.register(Unit("gamma"))
    registry.register(Unit("gamma", "green"))
    assert registry.names() == ["alpha", "beta", "gamma"]
    registry.unregister("gamma")
    assert registry.names() == ["alpha", "beta"]


def test_extra_modules_load_after_and_a_bad_one_is_one_line_naming_where_it_came_from(modules, monkeypatch):
    extra = ["reg_test_b"]
    registry = Registry("unit", Unit, modules[:1], "UNIT", extra=lambda: extra, extra_from="$UNITS")
    assert registry.names() == ["alpha", "beta"]
    extra[:] = ["no_such_unit_module"]
    with pytest.raises(UsageError, match=r"unit module 'no_such_unit_module' \(from \$UNITS\) cannot be loaded"):
        registry.reload()
    with pytest.raises(ModuleNotFoundError):  # a built-in module that does not import is a bug, not bad input
        Registry("unit", Unit, ("no_such_builtin_module",), "UNIT").all()
