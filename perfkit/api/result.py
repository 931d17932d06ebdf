"""What an API call returns, and where its records go while it runs.

Every call records into a run store as the commands do, one record at a time; without ``store=``
that store is a throwaway SQLite file in a temporary folder, closed and deleted when the call
returns, and the result keeps the ``Record`` objects. The artifact cache is likewise a throwaway
folder unless ``artifacts=`` (or ``$PERFKIT_ARTIFACTS``) names one — except for ``export``, whose
artifacts are what it is asked for (the command line's user cache folder by default).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The columns of ``Result.table()`` before each record's metrics (the CSV export's provenance).
PROVENANCE = ("run_id", "kind", "model", "runtime", "precision", "batch", "weights", "device", "status", "error")


@dataclass(kw_only=True, repr=False)
class Result:
    """What one call measured.

    Attributes:
        run_id: the run the records belong to (in ``store``, when one was given).
        device: the device measured on (``cpu``, ``cuda:0``).
        models: the ``ModelSpec`` of each model measured.
        store: where the records are kept (a SQLite file, or a PostgreSQL URL without its password);
            None: nowhere (a throwaway store).
        failures: why the run failed beyond its error records (a parity check or a gate did not pass).
        recorded: the ``Record`` objects, in the order they were recorded (``records()``).
    """

    run_id: str | None
    device: str
    models: list = field(default_factory=list)
    store: Path | str | None = None
    failures: list[str] = field(default_factory=list)
    recorded: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether anything failed: an error record, or a check or gate that did not pass (exit code 1)."""
        return bool(self.failures) or bool(self.errors)

    @property
    def errors(self) -> list:
        return [r for r in self.recorded if r.status == "error"]

    def records(self, kind: str | None = None) -> list:
        """The ``perfkit.store.Record`` objects of the run, or those of one ``kind`` (``latency``, ...)."""
        return [r for r in self.recorded if kind is None or str(r.kind) == str(kind)]

    def table(self, kind: str | None = None) -> list[dict]:
        """One flat dict per record: the provenance columns (``PROVENANCE``), then its metrics as they
        are (a metric named like a provenance column is ``metrics.<name>``) — ``pandas.DataFrame(result.table())``."""
        rows = []
        for r in self.records(kind):
            row = {column: getattr(r, column) for column in PROVENANCE}
            row.update(run_id=r.run_id or self.run_id, kind=str(r.kind))
            for name, value in r.metrics.items():
                row[f"metrics.{name}" if name in row else name] = value
            rows.append(row)
        return rows

    def __repr__(self) -> str:
        models = ", ".join(dict.fromkeys(r.model for r in self.recorded))
        state = "failed" if self.failed else "ok"
        return f"<{type(self).__name__} run {self.run_id} of {models}: {len(self.recorded)} records, {state}>"


@dataclass(kw_only=True, repr=False)
class CheckResult(Result):
    """``perfkit.check``: ``tolerances`` (precision → ``perfkit.accuracy.parity.Tolerance``), the
    ``reference`` runtime, and the inputs compared (``samples`` × ``source``: synthetic or images)."""

    tolerances: dict = field(default_factory=dict)
    reference: str = "eager"
    samples: int = 0
    source: str = "synthetic"

    @property
    def passed(self) -> bool:
        return not self.failed


@dataclass(kw_only=True, repr=False)
class ExportResult(Result):
    """``perfkit.export``: the ``precisions`` exported and the ``batch_range`` the artifacts accept."""

    precisions: list = field(default_factory=list)
    batch_range: Any = None


@dataclass(kw_only=True, repr=False)
class SummaryResult(Result):
    """``perfkit.summary``: ``native`` is the model at its native input size (published numbers are
    at that size; it is ``models[0]`` unless ``input_size`` changed it)."""

    native: Any = None


@dataclass(kw_only=True, repr=False)
class ProfileResult(Result):
    """``perfkit.profile()``: ``not_measured`` — scenario → {runtime: why it cannot measure it}."""

    not_measured: dict = field(default_factory=dict)


@dataclass(kw_only=True, repr=False)
class ValidateResult(Result):
    """``perfkit.validate``: ``evaluations`` (one ``perfkit.accuracy.harness.EvalResult`` per model
    validated) and ``gate_failures`` (the accuracy gates that did not pass)."""

    evaluations: list = field(default_factory=list)
    gate_failures: list = field(default_factory=list)


@dataclass(kw_only=True, repr=False)
class RunResult(Result):
    """``perfkit.run``: ``skipped`` (steps a resume found finished) and the wall time in ``seconds``."""

    skipped: list = field(default_factory=list)
    seconds: float = 0.0


# -- where the records and artifacts go ------------------------------------------------------------


@contextlib.contextmanager
def places(store, artifacts, *, keep_artifacts: bool = False, records: bool = True) -> Iterator[tuple]:
    """(the opened store, where its records are kept or None, the artifacts folder) of a call.

    ``store``: a path or URL (opened here and closed at the end), an open ``perfkit.store.Store`` (left open),
    or None: a throwaway store (``records`` False: none at all, for a process that records nothing).
    ``artifacts``: a folder; None: ``$PERFKIT_ARTIFACTS``, else a throwaway folder (``keep_artifacts``:
    else the command line's default). Throwaways live in one temporary folder, deleted at the end.
    """
    from perfkit.context import artifacts_dir
    from perfkit.store import Store

    with contextlib.ExitStack() as stack:
        scratch: list[Path] = []

        def temporary() -> Path:
            if not scratch:
                scratch.append(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perfkit-"))))
            return scratch[0]

        if not records:
            opened, kept = None, None
        elif store is None:
            opened, kept = stack.enter_context(Store(temporary() / "perfkit.db")), None
        elif isinstance(store, (str, os.PathLike)):
            opened = stack.enter_context(Store(store))
            kept = opened.location
        else:
            opened, kept = store, store.location
        given = artifacts is not None or os.environ.get("PERFKIT_ARTIFACTS") or keep_artifacts
        yield opened, kept, artifacts_dir(artifacts) if given else temporary() / "artifacts"


@dataclass
class Session:
    """A call's run: its recorder (``perfkit.record.RunRecorder``), measuring context and where the
    records are kept (None: nowhere)."""

    rec: Any
    ctx: Any
    kept: Path | str | None

    def result(self, cls: type[Result], models: list, **fields) -> Result:
        return cls(run_id=self.rec.run_id, device=self.ctx.device, models=list(models), store=self.kept,
                   failures=list(self.rec.failed_because), recorded=list(self.rec.records), **fields)


@contextlib.contextmanager
def session(keywords, store, device: str, models: list, *, progress=None, calibration=None,
            keep_artifacts: bool = False) -> Iterator[Session]:
    """Open the store and a run for ``models``; its status follows what it records (``perfkit.record``)."""
    from perfkit.record import recording

    with places(store, keywords.measuring["artifacts"], keep_artifacts=keep_artifacts) as (opened, kept, artifacts), \
            recording(opened, command=keywords.command(models), device=device) as rec:
        yield Session(rec, keywords.context(device, artifacts, progress, calibration), kept)
