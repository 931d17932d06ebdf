"""What every command does around its measurement: resolve the device and the model, open the run,
show progress, print tables or JSON."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from perfkit.cli.options import given_options
from perfkit.context import Context


def resolve_device(args) -> str:
    """The resolved ``--device`` of ``args`` (anything with a ``device`` attribute)."""
    from perfkit.device import resolve_device as resolve

    return resolve(getattr(args, "device", "auto"))


def context(args, device: str, progress=None, calibration=None) -> Context:
    """The measuring context of a command: its backend options, and the int8 calibration set."""
    from perfkit.cli.options import positive
    from perfkit.context import NO_PROGRESS, artifacts_dir

    options = given_options(args)
    if calibration is not None:
        options["calibration"] = calibration
    return Context(device=device, artifacts=artifacts_dir(getattr(args, "artifacts", None)),
                   threads=positive(getattr(args, "threads", None), "--threads"), options=options,
                   force=bool(getattr(args, "force", False)), progress=progress or NO_PROGRESS)


def calibration(args, precisions, data=None):
    """The int8 calibration set of a command (``options.calibration_set``), announced when it was not
    given: a subset of --data, or synthetic images whose accuracy means nothing."""
    from rich.markup import escape

    from perfkit.cli.options import calibration_set
    from perfkit.report.console import banner

    chosen = calibration_set(args, precisions, data)
    if chosen is not None and getattr(args, "calib", None) is None and not getattr(args, "json", False):
        why = "no --calib" + ("" if data is not None else " and no --data")
        banner(escape(f"int8: {chosen.describe()} ({why})"), style="bold" if chosen.meaningful else "bold magenta")
    return chosen


def spec(args, name: str | None = None, *, announce: bool = True):
    """The model, with a banner when it runs with random weights."""
    from perfkit.report.console import banner
    from perfkit.zoo.registry import resolve

    resolved = resolve(name or args.model, args.weights)
    if resolved.random_weights and announce:
        banner(f"{resolved.name}: RANDOM WEIGHTS — accuracy numbers are not meaningful (latency and parity are).")
    return resolved


def open_store(args, *, read_only: bool = False):
    from perfkit.store import Store

    return Store(getattr(args, "store", None), read_only=read_only)


@contextlib.contextmanager
def session(args, device: str = "cpu", *, run_id: str | None = None) -> Iterator:
    """Open the store and a run; yields its ``RunRecorder`` (the run's status follows what it records)."""
    from perfkit.record import recording

    with open_store(args) as store, recording(store, run_id=run_id, device=device) as rec:
        yield rec


def progress(args, unit: str = "step"):
    return progress_bar(unit, enabled=not getattr(args, "json", False))


def progress_bar(unit: str = "step", *, enabled: bool = True):
    from perfkit.report.console import err_console
    from perfkit.report.progress import RichProgress

    return RichProgress(unit, enabled=enabled or err_console.is_terminal)


def show(args, rec, renderables) -> None:
    """The command's output: tables, or the records it wrote as JSON with ``--json``."""
    from perfkit.report.console import console, print_json

    if getattr(args, "json", False):
        print_json({"run_id": rec.run_id, "records": [record_json(r) for r in rec.records]})
        return
    for item in renderables:
        console.print(item)


def record_json(record) -> dict:
    out = record.to_dict()
    out.pop("env", None)  # the run's environment is in `perfkit runs --json` and `perfkit report --json-out`
    return out


def exit_code(rec) -> int:
    return 1 if rec.failed else 0
