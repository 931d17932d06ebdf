"""What every command does around its measurement: resolve the device and the model, open the run,
show progress, print tables or JSON."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from perfkit.cli.options import given_options
from perfkit.context import Context
from perfkit.errors import UsageError


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


def spec(args, *, announce: bool = True, **changes):
    """The one model of a command: MODEL or ``--model-code`` (``changes``: keywords that replace the
    flags' values), with a banner when it runs with random weights."""
    from perfkit.cli.options import model_keywords
    from perfkit.zoo.sources import resolve

    text = getattr(args, "model", None)
    keywords = {**model_keywords(args), **changes}
    if text is None and keywords["model_code"] is None:
        raise UsageError(f"{_prog(args)}: name a MODEL (a zoo name: resnet18, timm:<name>, ..., or a model.onnx file) "
                         f"or pass --model-code FILE.py:CALLABLE (see {_prog(args)} --help)")
    return _announced(resolve(text, **keywords), announce, args)


def specs(args, *, announce: bool = True) -> list:
    """Every model of a command that takes several: its MODEL arguments, then ``--model-code``; all
    resolved before anything runs (a bad one is refused before a run is written)."""
    from perfkit.cli.options import model_keywords
    from perfkit.zoo.sources import resolve

    keywords = model_keywords(args)
    code = keywords.pop("model_code")
    if not args.models and code is None:
        raise UsageError(f"{_prog(args)}: name one or more MODELs (zoo names or .onnx files) or pass --model-code "
                         f"FILE.py:CALLABLE (see {_prog(args)} --help)")
    out = [resolve(name, **keywords) for name in args.models]
    if code is not None:
        out.append(resolve(None, model_code=code, **keywords))
    return [_announced(s, announce, args) for s in out]


def runtimes_for(spec, backends, *, reference_runs: bool = False) -> list:
    """The chosen runtimes that can run ``spec``; each one that cannot (a PyTorch runtime for an ONNX
    file) is named in a note — not run, never a failure. An engine none of them runs runs in its own
    runtime (``backends.runnable``), with a note. None left is bad input (exit 2), unless the
    command runs the reference anyway (``reference_runs``: validate)."""
    from rich.markup import escape

    from perfkit.backends import all_backends, get, runnable
    from perfkit.report.console import banner

    kept, skipped = runnable(spec, backends)
    for name, why in skipped.items():
        banner(escape(f"note: {name} not run for {spec.name}: {why}"))
    if spec.engine and kept and not {get(b).name for b in backends} & {b.name for b in kept}:
        banner(escape(f"note: {spec.name} runs in {', '.join(b.name for b in kept)}, its own runtime"))
    if not kept and not reference_runs:
        fit = ", ".join(b.name for b in all_backends() if b.accepts(spec) is None)
        raise UsageError(f"none of the runtimes asked for ({', '.join(skipped)}) runs {spec.name}: "
                         f"{next(iter(skipped.values()))}; choose from: {fit}")
    return kept


def batches_for(spec, batches) -> list[int]:
    """The batches of a sweep that ``spec`` takes, with a note when some were left out (a fixed batch)."""
    from rich.markup import escape

    from perfkit.backends import batches_for as taken
    from perfkit.report.console import banner

    kept, note = taken(spec, batches)
    if note:
        banner(escape(f"note: {note}"))
    return kept


def _prog(args) -> str:
    return f"perfkit {getattr(args, 'command', '')}".strip()


def _announced(resolved, announce: bool, args=None):
    """``resolved``, checked against the command's precisions (an engine runs as it was built), with the
    banners of its weights (random) and, for an engine, of its reference."""
    from rich.markup import escape

    from perfkit.backends import reference_text
    from perfkit.report.console import banner
    from perfkit.vocab import parse_precisions
    from perfkit.zoo.sources.engines import check_precisions

    precision = getattr(args, "precision", None)
    if resolved.engine and precision is not None and str(precision).strip().lower() != "auto":
        check_precisions(resolved, parse_precisions(precision))
    if announce:
        warn_random(resolved)
        if resolved.engine:
            judged = (f"judged against {reference_text(resolved)}" if resolved.reference_model else
                      "no --reference (check needs one; validate counts against the labels)")
            banner(escape(f"{resolved.label}: runs as it was built; {judged}"))
    return resolved


def warn_random(spec) -> None:
    """The banner of a model that runs with random weights."""
    from perfkit.report.console import banner

    if spec.random_weights:
        banner(f"{spec.name}: RANDOM WEIGHTS — accuracy numbers are not meaningful (latency and parity are).")


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
