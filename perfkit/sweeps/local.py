"""The in-process engine: the cells one after another in this process (the default, and each
``--shard I/N`` of a Slurm job array or a Kubernetes Indexed Job).

Each cell is measured by ``perfkit profile``'s own code (``perfkit.profiler.profile_model`` under the
cell's ``perfkit.plan.Plan``), over one memo of resolved artifacts for the whole process: each
(model, runtime, precision) artifact is exported or found in the cache once, then reused by every cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator


def measure(setup, cell, spec, resolved: dict, progress=None) -> Iterator:
    """The typed results of one cell, as they are measured (``perfkit.profiler.profile_model``)."""
    from perfkit.profiler import profile_model

    return profile_model(spec, setup.plan(cell), setup.context(cell.model, resolved, progress))


def run(plan, cells: Iterable, write: Callable, progress=None) -> None:
    """Measure ``cells`` of ``plan`` in order; ``write(cell, results)`` records each result as it
    comes (a Ctrl-C keeps what was written)."""
    resolved: dict = {}
    for cell in cells:
        write(cell, measure(plan.setup, cell, plan.specs[cell.model], resolved, progress))
