"""What every command does around the API call it is a layer over: turn its flags into the call's
keywords, print the notes the call gives before it works, show progress, print tables or JSON."""

from __future__ import annotations

import sys

from perfkit.cli.options import given_options, model_keywords

# Flags that are the command line's own: how it prints (--json, --html), not what is measured.
CLI_ONLY = ("func", "command", "json", "html", "layers_from")  # flags the CLI handles itself
# A note's level (perfkit.api.Note) → its banner's style.
STYLES = {"info": "bold", "note": "bold yellow", "caution": "bold magenta", "warning": "bold red"}


def keywords(args, *positional: str) -> dict:
    """The API keywords of a command's flags: each flag under its own name (``--calib-samples`` →
    ``calib_samples``), the model flags parsed (``options.model_keywords``), runtime and scenario
    options under their names, the store and artifact cache the command line defaults to, and the
    command line as the run's command. ``positional``: arguments the caller passes itself (MODEL)."""
    from perfkit.backends import options
    from perfkit.context import artifacts_dir
    from perfkit.store import default_store

    runtime = {f"opt_{o.name}" for o, _ in options()}  # --opt-batch (dest opt_batch) is a flag of its own
    out = {k: v for k, v in vars(args).items()
           if k not in CLI_ONLY and k not in positional and k not in runtime and not k.startswith("scn_")}
    out.update(given_options(args))
    out.update({k[4:]: v for k, v in vars(args).items() if k.startswith("scn_") and v is not None})
    out.update(model_keywords(args))
    out["store"] = getattr(args, "store", None) or default_store()
    if "artifacts" in out:  # the command line's cache: --artifacts, $PERFKIT_ARTIFACTS or the user cache folder
        out["artifacts"] = artifacts_dir(out["artifacts"])
    out["command"] = " ".join(["perfkit", *sys.argv[1:]])
    return out


def notify(args):
    """Where the API's notes go: a banner on stderr each (with ``--json``, not the int8 calibration note)."""
    from rich.markup import escape

    from perfkit.report.console import banner

    def show(note) -> None:
        if not (getattr(args, "json", False) and note.topic == "calibration"):
            banner(escape(note), style=STYLES.get(note.level, "bold yellow"))

    return show


def resolve_device(args) -> str:
    """The resolved ``--device`` of ``args`` (anything with a ``device`` attribute)."""
    from perfkit.device import resolve_device as resolve

    return resolve(getattr(args, "device", "auto"))


def open_store(args, *, read_only: bool = False):
    from perfkit.store import Store

    return Store(getattr(args, "store", None), read_only=read_only)


def progress(args, unit: str = "step"):
    return progress_bar(unit, enabled=not getattr(args, "json", False))


def progress_bar(unit: str = "step", *, enabled: bool = True):
    from perfkit.report.console import err_console
    from perfkit.report.progress import RichProgress

    return RichProgress(unit, enabled=enabled or err_console.is_terminal)


def show(args, run_id: str, records: list, renderables) -> None:
    """The command's output: tables, or the records it wrote as JSON with ``--json``."""
    from perfkit.report.console import console, print_json

    if getattr(args, "json", False):
        print_json({"run_id": run_id, "records": [record_json(r) for r in records]})
        return
    for item in renderables:
        console.print(item)


def record_json(record) -> dict:
    out = record.to_dict()
    out.pop("env", None)  # the run's environment is in `perfkit runs --json` and `perfkit report --json-out`
    return out


def exit_code(done) -> int:
    """1 when anything failed (a ``perfkit.api.Result`` or a ``RunRecorder``), else 0."""
    return 1 if done.failed else 0
