"""The command line: thin commands, one module each, over one shared vocabulary (``options``).

Each command module has ``add(sub)`` (arguments, help with an example) and ``run(args)``: the
measuring commands turn their flags into the keywords of the Python API function of the same name
(``perfkit.api``: it resolves, measures and records) and print what it returns. Errors a user can act
on are ``PerfkitError``: one line, no traceback, the error's exit code (2 bad input, 1 measurement failed).
An unexpected exception is a bug: one line too, exit 1, with the traceback when PERFKIT_DEBUG=1.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from perfkit.cli import check, export, history, native, profile, run as run_cmd, summary, sweep, train, validate, zoo
from perfkit.cli.options import ArgumentParser, Formatter
from perfkit.errors import PerfkitError

COMMANDS = (
    run_cmd.add, zoo.add, summary.add, export.add, check.add, validate.add, profile.add, sweep.add, native.add, train.add,
    history.add_runs, history.add_report, history.add_select, history.add_regress,
)


def build_parser() -> ArgumentParser:
    from perfkit import __version__

    parser = ArgumentParser(
        prog="perfkit", formatter_class=Formatter,
        description="Pick an image classifier and ship it: export to TorchScript/ONNX/AOTInductor/TensorRT,\n"
                    "prove every runtime matches eager PyTorch and the published ImageNet accuracy,\n"
                    "profile latency/throughput/memory, and compare it all in tables and an HTML report.",
        epilog="start with:\n  perfkit run            # the whole pipeline on the classic four models\n"
               "  perfkit <command> --help",
    )
    parser.add_argument("--version", action="version", version=f"perfkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=ArgumentParser)
    for add in COMMANDS:
        add(sub)
    return parser


SIGTERM_EXIT = 128 + signal.SIGTERM  # 143: what a shell reports for a process that SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler, a container stop), raised in the main thread: handled like
    Ctrl-C — the run is marked interrupted, measuring children are killed, finished records are kept."""


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second SIGTERM must not cut the clean-up short
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    from perfkit.report.console import err_console

    # only the main thread may set handlers (main() called from another thread keeps SIGTERM as it is)
    handles_sigterm = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if handles_sigterm else None
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except PerfkitError as exc:
        # soft_wrap: the error stays one line however long (a pipe or a CI log is not wrapped for us)
        err_console.print(f"[bold red]error:[/] {_one_line(exc)}", markup=True, highlight=False, soft_wrap=True)
        return exc.exit_code
    except Terminated:
        err_console.print("[yellow]terminated (SIGTERM): the run is marked interrupted; finished records are kept "
                          "in the store[/]")
        return SIGTERM_EXIT
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: finished records are kept in the store[/]")
        return 130
    except Exception as exc:  # a bug: say so in one line; the traceback on request
        if os.environ.get("PERFKIT_DEBUG"):
            raise
        err_console.print(f"[bold red]internal error:[/] {_one_line(exc, with_type=True)} "
                          "(a perfkit bug: rerun with PERFKIT_DEBUG=1 for the traceback and report it)",
                          markup=True, highlight=False, soft_wrap=True)
        return 1
    finally:
        if handles_sigterm:  # None: a handler not set from Python, i.e. the default
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _one_line(exc: BaseException, with_type: bool = False) -> str:
    from rich.markup import escape

    text = str(exc).strip() or type(exc).__name__
    if with_type:
        text = f"{type(exc).__name__}: {text}"
    return escape(text)


if __name__ == "__main__":
    sys.exit(main())
