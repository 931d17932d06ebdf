"""The one progress display: a Rich bar on stderr implementing ``perfkit.context.Progress``.

Measuring code calls ``start``/``update``; this class decides how it looks. A known total shows a
bar with counts, rate and time left; an unknown one a spinner with the current step. It is a
context manager (the bar is removed when the block ends) and silent when disabled (``--json`` on a
non-terminal, other torchrun ranks).
"""

from __future__ import annotations

from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from perfkit.report.console import err_console


class _Rate(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        if task.total is None:
            return Text("")
        speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else None)
        return Text(f"— {self.unit}/s" if not speed else f"{speed:,.1f} {self.unit}/s")


class RichProgress:
    """``with RichProgress("img") as progress: measure(..., ctx.replace(progress=progress))``."""

    def __init__(self, unit: str = "step", *, enabled: bool = True, transient: bool = True, prefix: str = ""):
        self.prefix = prefix
        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             _Rate(unit), TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                             transient=transient, disable=not enabled)
        self._task = None

    def __enter__(self) -> "RichProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def _text(self, description: str) -> str:
        from rich.markup import escape

        return escape(f"{self.prefix}{description}")

    def start(self, description: str, total: int | None = None) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(self._text(description), total=total)

    def update(self, description: str | None = None, advance: int = 0) -> None:
        if self._task is None:
            self.start(description or "", None)
            description = None
        changes = {"advance": advance}
        if description is not None:
            changes["description"] = self._text(description)
        self._bar.update(self._task, **changes)

    def set_prefix(self, prefix: str) -> None:
        self.prefix = prefix
