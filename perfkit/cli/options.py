"""The shared command-line vocabulary: one definition per option, used by every command.

- ``-f/--runtimes``: a comma list of backends (their names come from the registry).
- ``-b/--batch``: a comma list of batch sizes.
- ``--precision``: a comma list, checked against what each chosen backend runs on the device.
- ``--json``: JSON on stdout instead of tables (``--json-out FILE`` writes a file).
- ``--resume [RUN]``: continue an earlier run.
- ``--scenario singlestream|offline``: latency only, or also the Offline (maximum-throughput) scenario.
- backend options (``--opset``, ``--script``, ...): generated from the backends' declarations.
Every unknown or unsupported value is a one-line error with exit code 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from perfkit.errors import UsageError

EPILOG_COMMON = ("Records go to the run store (--store, $PERFKIT_STORE, default reports/perfkit.db); "
                 "artifacts to --artifacts ($PERFKIT_ARTIFACTS, default .perfkit-artifacts/).")


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument raises a UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def command(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description, formatter_class=Formatter,
                          epilog=f"example:\n  {example}\n\n{EPILOG_COMMON}")


# -- the shared options -----------------------------------------------------------------------------

def store(p) -> None:
    p.add_argument("--store", type=Path, default=None, help="run store (SQLite); default $PERFKIT_STORE or reports/perfkit.db")


def json_flag(p) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout instead of tables")


def weights(p, default: str = "auto") -> None:
    p.add_argument("--weights", default=default,
                   help="auto (pretrained if cached, else random and labelled so), default (pretrained, "
                        "fail when not cached), random, a weights enum name (IMAGENET1K_V2), or a state-dict path")


def artifacts(p) -> None:
    p.add_argument("--artifacts", type=Path, default=None,
                   help="artifact cache folder; default $PERFKIT_ARTIFACTS or .perfkit-artifacts/")


def device(p) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when present)")


def runtimes(p, default: str, what: str = "runtimes") -> None:
    from perfkit.backends import all_backends

    names = ", ".join(b.name for b in all_backends())
    p.add_argument("-f", "--runtimes", "--formats", dest="runtimes", default=default,
                   help=f"comma-separated {what}: {names}")


def batch(p, default: str, help: str = "comma-separated batch sizes") -> None:
    p.add_argument("-b", "--batch", default=default, help=help)


def precision(p, default: str = "fp32") -> None:
    p.add_argument("--precision", default=default,
                   help="comma-separated precisions (fp32, fp16, bf16, int8), each checked against what every "
                        "chosen runtime supports on the device")


def threads(p) -> None:
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every runtime (default: each one's tuned default)")


SCENARIOS = ("singlestream", "offline")


def scenario(p, default: str, seconds: float, max_requests: int = 4) -> None:
    """``--scenario`` and the Offline scenario's window and bound."""
    p.add_argument("--scenario", default=default, choices=SCENARIOS,
                   help="singlestream: one request at a time, latency per batch; offline: that, plus the Offline "
                        "scenario at the largest batch: the most samples/s with K requests in flight through each "
                        "runtime's own concurrency (K = 1, 2, 4, ... searched)")
    p.add_argument("--offline-seconds", type=float, default=seconds, help="Offline: measuring window per K, seconds")
    p.add_argument("--offline-max-requests", type=int, default=max_requests, metavar="K",
                   help="Offline: the largest K (requests in flight) searched")


def offline_config(args):
    """The ``OfflineConfig`` asked for, or None for SingleStream only."""
    from perfkit.profile.offline import OfflineConfig

    if args.scenario != "offline":
        return None
    try:
        return OfflineConfig(args.offline_seconds, args.offline_max_requests)
    except ValueError:
        raise UsageError(f"--offline-seconds must be positive and --offline-max-requests at least 1, got "
                         f"{args.offline_seconds} and {args.offline_max_requests}") from None


def resume(p, what: str) -> None:
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                   help=f"continue an earlier run (its id, a unique prefix, or latest; without a value: {what})")


def backend_options(p) -> None:
    """One flag per backend option, generated from the registry (shared names appear once)."""
    from perfkit.backends import options

    group = p.add_argument_group("runtime options (from each backend's declaration)")
    for option, owners in options():
        help = f"{option.help} [{', '.join(owners)}]"
        if isinstance(option.default, bool):
            group.add_argument(option.flag, dest=f"opt_{option.name}", action=argparse.BooleanOptionalAction,
                               default=None, help=f"{help} (default: {option.default})")
        else:
            group.add_argument(option.flag, dest=f"opt_{option.name}", type=option.type or str, default=None,
                               help=f"{help} (default: {option.default})")


def batch_range(p) -> None:
    p.add_argument("--min-batch", type=int, default=1, help="smallest batch the artifact accepts")
    p.add_argument("--opt-batch", type=int, default=8, help="batch TensorRT tunes for (also the example batch)")
    p.add_argument("--max-batch", type=int, default=256, help="largest batch the artifact accepts")


# -- reading them back --------------------------------------------------------------------------------

def given_options(args) -> dict:
    """The backend options the user set (``--opset 18`` → ``{"opset": 18}``)."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}


def positive(value: int | None, flag: str, allow_zero: bool = False) -> int | None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(f"{flag} must be {'≥ 0' if allow_zero else 'a positive integer'}, got {value}")
    return value


def chosen(args, *, exported_only: bool = False) -> list:
    from perfkit.backends import parse_backends

    return parse_backends(args.runtimes, exported_only=exported_only)


def precisions(args, backends, device: str) -> list:
    """The precisions asked for, each checked against every chosen runtime on ``device``."""
    from perfkit.vocab import parse_precisions

    out = parse_precisions(args.precision)
    for backend in backends:
        for p in out:
            backend.check(p, device)
    return out


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)
