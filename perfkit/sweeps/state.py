"""What of a sweep the store holds already: its runs, the record keys they recorded, each cell's state.

A sweep is named (``--name``, default ``sweep-<identity>``: a hash of its cells and settings) and each
invocation or shard writes one run, ``<name>-<I>of<N>``. The same command again re-opens that run
(``Store.start_run`` with its id; refused while its process still runs): an interrupted sweep, or a
Slurm task requeued after preemption, continues where it stopped. Every run of the sweep counts,
whatever its sharding: a key recorded by any of them, ok or failed, is not measured again, so shards,
resumes and a worker retried by Ray never record a key twice. Only the store's ``runs`` and
``records`` are used: this works on any store that implements them (SQLite, PostgreSQL).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from perfkit.errors import UsageError
from perfkit.results import Kind

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SHARD_SUFFIX = re.compile(r"-\d+of\d+")


def default_name(identity: str) -> str:
    return f"sweep-{identity}"


def checked_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UsageError(f"--name {name!r}: a sweep name is letters, digits, '.', '_' and '-', starting with a "
                         "letter or digit")
    return name


def run_id(name: str, index: int, count: int) -> str:
    """The run of shard ``index`` of ``count`` of sweep ``name`` (0of1: the whole sweep)."""
    return f"{name}-{index}of{count}"


def sweep_runs(store, name: str) -> list[dict]:
    """The runs of sweep ``name`` in ``store``, oldest first."""
    runs = [r for r in store.runs() if r["id"].startswith(name) and SHARD_SUFFIX.fullmatch(r["id"][len(name):])]
    return sorted(runs, key=lambda r: r["started"])


def recorded(store, name: str) -> dict[tuple, list[tuple[str, str]]]:
    """Record key → [(status, run id), ...] over every run of sweep ``name`` (model records left out:
    each run has its own)."""
    out: dict[tuple, list] = defaultdict(list)
    for run in sweep_runs(store, name):
        for record in store.records(run["id"]):
            if record.kind != Kind.MODEL:
                out[record.key].append((record.status, run["id"]))
    return dict(out)


@dataclass(frozen=True)
class CellState:
    """A cell and what the store holds of it: ``state`` is done (every key recorded ok), failed (a key
    recorded failed), partial (some keys recorded) or missing. Done and failed cells are not measured
    again; a partial one is, and only its missing keys are written."""

    cell: object  # perfkit.sweeps.plan.Cell
    state: str
    recorded: int
    expected: int
    runs: tuple[str, ...]

    def to_dict(self) -> dict:
        c = self.cell
        return {"index": c.index, "model": c.model, "runtime": c.runtime, "precision": c.precision,
                "batch": c.batch, "state": self.state, "recorded": self.recorded, "expected": self.expected,
                "runs": list(self.runs)}


def cell_state(plan, cell, found: dict[tuple, list]) -> CellState:
    """The state of ``cell`` of ``plan`` given ``found`` (``recorded``'s answer)."""
    keys = plan.keys(cell)
    hits = [found[k] for k in keys if k in found]
    statuses = {status for entries in hits for status, _ in entries}
    runs = tuple(sorted({run for entries in hits for _, run in entries}))
    if "error" in statuses:  # not retried by a resume (a failed timing has no memory record to wait for)
        state = "failed"
    elif len(hits) < len(keys):
        state = "partial" if hits else "missing"
    else:
        state = "done"
    return CellState(cell, state, len(hits), len(keys), runs)
