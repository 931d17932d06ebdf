"""The measurement context: what every measuring function needs besides the model and its axes.

One object instead of a dozen threaded parameters. It holds no store and no terminal: measuring code
reports progress through the ``Progress`` protocol and returns typed results; the caller records
them (``perfkit.record``) and renders them (``perfkit.report``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol



class Progress(Protocol):
    """Where measuring code says what it is doing (a Rich bar in the CLI, nothing in tests)."""

    def start(self, description: str, total: int | None = None) -> None:
        """Begin a piece of work of ``total`` units (None: unknown length)."""

    def update(self, description: str | None = None, advance: int = 0) -> None:
        """Say what is happening now and/or that ``advance`` units are done."""


class NoProgress:
    def start(self, description: str, total: int | None = None) -> None:
        pass

    def update(self, description: str | None = None, advance: int = 0) -> None:
        pass


NO_PROGRESS = NoProgress()


def user_cache_dir(platform: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """perfkit's folder in the platform's user cache: ``$XDG_CACHE_HOME/perfkit`` (else ``~/.cache/perfkit``)
    on Linux and other POSIX systems, ``~/Library/Caches/perfkit`` on macOS, ``%LOCALAPPDATA%\\perfkit\\Cache``
    on Windows: where tools of this kind keep what can be rebuilt, wherever the user stands."""
    import sys

    platform, environ = platform or sys.platform, os.environ if environ is None else environ
    if platform == "win32":
        base = environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "perfkit" / "Cache"
    if platform == "darwin":
        return Path.home() / "Library" / "Caches" / "perfkit"
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "perfkit"


def artifacts_dir(arg: str | os.PathLike | None = None) -> Path:
    """The artifacts folder: ``arg``, else ``$PERFKIT_ARTIFACTS``, else ``artifacts`` in the user cache
    folder (``user_cache_dir``)."""
    if arg is not None:
        return Path(arg).expanduser()
    env = os.environ.get("PERFKIT_ARTIFACTS")
    return Path(env).expanduser() if env else user_cache_dir() / "artifacts"


@dataclass(frozen=True)
class Context:
    """Where and how to measure.

    Attributes:
        device: a resolved device, ``"cpu"`` or ``"cuda:N"`` (``perfkit.device.resolve_device``).
        artifacts: the artifact cache folder.
        threads: CPU threads for every runtime; None: each runtime's tuned default.
        options: backend options the user set, by option name (``{"opset": 18, "script": True}``);
            each backend fills in its own defaults for the rest (``Backend.options_for``).
        force: export again even when an artifact is cached.
        progress: where to report progress.
        resolved: the artifacts ``perfkit.backends.prepare`` resolved in this context (and the failures),
            shared by every copy ``replace`` makes: each is resolved once (``perfkit.plan``).
    """

    device: str = "cpu"
    artifacts: Path = field(default_factory=artifacts_dir)
    threads: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    force: bool = False
    progress: Progress = NO_PROGRESS
    resolved: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "artifacts", artifacts_dir(self.artifacts))

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    def replace(self, **changes) -> "Context":
        return replace(self, **changes)
