"""One registry for every axis of the work (runtimes, model sources, scenarios): named units declared in
their own modules, loaded on first use, duplicates refused.

Each axis keeps a tuple of module names (``BACKEND_MODULES``, ``SOURCE_MODULES``, ``SCENARIO_MODULES``);
each module defines its unit under one attribute name (``BACKEND``, ``SOURCE``, ``SCENARIO``). A unit has a
``name``: lower case without spaces, unique in its registry. ``check(unit, others)`` is the axis's own
rule against the units already there (a backend option that contradicts another's, a scenario's record
kind taken twice); it raises ``ValueError``. ``extra()`` names more modules to load (``$PERFKIT_BACKENDS``).
Units keep the order they were loaded in: model sources are asked in that order.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from perfkit.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """The units of one axis (see the module docstring).

    Args:
        what: what a unit is, for messages (``backend``, ``model source``, ``scenario``).
        called: what users call one, for the unknown-name message (``runtime``; default: ``what``).
        unit: the type every unit is (``register`` refuses anything else).
        modules: the built-in modules, in order.
        attribute: the name each module defines its unit under.
        check: the axis's own rule, ``check(new, existing units)`` → raises ``ValueError``.
        extra: more module names to load after the built-in ones (read when the registry loads);
            ``extra_from`` says where they come from (``$PERFKIT_BACKENDS``), for the error naming one.
    """

    def __init__(self, what: str, unit: type, modules: tuple[str, ...], attribute: str, *, called: str = "",
                 check: Callable[[T, list[T]], None] | None = None, extra: Callable[[], list[str]] | None = None,
                 extra_from: str = ""):
        self.what, self.unit, self.modules, self.attribute = what, unit, modules, attribute
        self.called, self.check, self.extra, self.extra_from = called or what, check, extra, extra_from
        self._units: dict[str, T] = {}
        self._loaded = False

    def _add(self, unit: T) -> None:
        if not isinstance(unit, self.unit):
            raise TypeError(f"register() takes a {self.unit.__name__}, got {type(unit).__name__}")
        name = unit.name
        if not name or name != name.strip().lower() or " " in name:  # get() looks names up in lower case
            raise ValueError(f"a {self.what} name is lower case without spaces, got '{name}'")
        if name in self._units:
            raise ValueError(f"a {self.what} named '{name}' is already registered")
        if self.check is not None:
            self.check(unit, list(self._units.values()))
        self._units[name] = unit

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        extra = self.extra() if self.extra is not None else []
        for module in (*self.modules, *extra):
            try:
                unit = getattr(importlib.import_module(module), self.attribute)
            except (ImportError, AttributeError) as exc:
                if module not in extra:
                    raise
                raise UsageError(f"{self.what} module '{module}' (from {self.extra_from or 'the registry'}) cannot be "
                                 f"loaded: {exc}") from None
            self._add(unit)

    def reload(self) -> None:
        """Forget every unit and load the modules again (after ``extra()`` changed)."""
        self._units.clear()
        self._loaded = False
        self.load()

    def register(self, unit: T) -> T:
        """Add ``unit`` after the loaded ones; its name taken, or the axis's rule broken, is refused."""
        self.load()
        self._add(unit)
        return unit

    def unregister(self, name: str) -> None:
        self._units.pop(name, None)

    def all(self) -> list[T]:
        self.load()
        return list(self._units.values())

    def __iter__(self) -> Iterator[T]:
        return iter(self.all())

    def names(self) -> list[str]:
        return [u.name for u in self.all()]

    def get(self, name) -> T:
        """The unit called ``name`` (case-insensitive); an unknown name is a UsageError listing the known ones."""
        if isinstance(name, self.unit):
            return name
        self.load()
        key = str(name).strip().lower()
        if key not in self._units:
            raise UsageError(f"unknown {self.called} '{name}'; choose from: {', '.join(self._units)}")
        return self._units[key]

    def find(self, match: Callable[[T], bool]) -> T | None:
        """The first unit ``match`` accepts (None: none does)."""
        return next((u for u in self.all() if match(u)), None)
