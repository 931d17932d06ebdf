"""The Ray engine: ``perfkit sweep ... --ray [ADDRESS]`` runs the cells as Ray tasks (extra ``perfkit[ray]``).

``local`` starts a Ray instance on this machine (``--workers`` worker processes); an address (or
``$RAY_ADDRESS``) joins a running cluster, whose nodes must have perfkit installed. The driver (this
process) owns the results: workers only measure and return typed results with the fingerprint of
the machine that measured them; the driver records them, so even a SQLite store works.

- At most one perfkit task per node at a time: every task needs one unit of the custom resource
  ``perfkit_node``, which each node declares once (``ray start --resources='{"perfkit_node": 1}'``;
  ``local`` declares it). Why a custom resource rather than placement groups: a placement group
  reserves a fixed set of nodes up front (the driver would then balance cells over them itself and
  the autoscaler could not add nodes), while a resource of 1 per node lets Ray's own scheduler queue
  the cells and fill each node as it frees, on any number of nodes. Exports hold it too: an export
  beside a timing would disturb it. It keeps perfkit's tasks apart, not other users' work.
- One GPU per task where the sweep measures on CUDA (``num_gpus=1``: Ray sets the visible GPU, so
  the cell runs on ``cuda:0`` of its own view); ``--accelerator-type`` targets a kind of GPU node.
- Each artifact is exported once per (model, runtime, precision) by an export task; the cells that
  need it depend on that task, and find it in the content-keyed artifact cache (``--artifacts`` on
  storage the nodes share; a node that does not see it exports its own copy). An export that fails
  fails its cells with its error instead of being tried again by each.
- A worker resolves each model again from its request (names and paths cross to it, not modules) and
  checks it is the driver's (its identity): a node whose file or cached weights differ fails its
  cells saying so, rather than measuring another model under the same name.
- A task whose worker dies is retried by Ray (``max_retries``); one lost more often than that is
  recorded as failed. The driver writes only keys the sweep has not recorded yet (``perfkit.sweeps.state``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from perfkit.errors import UsageError
from perfkit.results import describe

NODE_RESOURCE = "perfkit_node"
RETRIES = 3
ANSWER_TIMEOUT_S = 5.0
TEST_KILL = "PERFKIT_TEST_KILL_CELL"


def connect(address: str | None, workers: int | None) -> Callable[[], None]:
    """Start a local Ray instance (``local``) or join the cluster at ``address`` (None: ``$RAY_ADDRESS``,
    else local), unless this process is connected already; returns what disconnects (nothing then).
    A cluster that does not answer, or whose nodes do not declare ``perfkit_node``, is one line
    (``UsageError``) before anything is recorded."""
    import logging

    from perfkit.deps import require

    # Something that accepts connections but is no Ray head would keep ray.init retrying for 20 s
    # (read when ray is imported): a few seconds, unless the user set it.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(int(ANSWER_TIMEOUT_S)))
    ray = require("ray", extra="ray", why="perfkit sweep --ray")
    if ray.is_initialized():  # this process started or joined Ray itself (a notebook, a benchmark): used as is
        _check_nodes(ray, "the Ray instance this process is connected to")
        return lambda: None
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "include_dashboard": False}
    if address == "local":
        from perfkit.device import available_cores

        ray.init(address="local", num_cpus=workers or available_cores(), resources={NODE_RESOURCE: 1}, **quiet)
        return ray.shutdown
    if workers is not None:
        raise UsageError("--workers sets the worker processes of --ray local; a cluster has its own")
    _answers(address)
    try:
        ray.init(address=address, **quiet)
    except Exception as exc:  # the address answered but is not a Ray cluster perfkit can join
        raise UsageError(f"cannot join the Ray cluster at {address}: {describe(exc)}") from None
    try:
        _check_nodes(ray, f"the Ray cluster at {address}")
    except UsageError:
        ray.shutdown()
        raise
    return ray.shutdown


def _check_nodes(ray, what: str) -> None:
    if not ray.cluster_resources().get(NODE_RESOURCE):
        raise UsageError(f"{what} has no '{NODE_RESOURCE}' resource: start each node with ray start ... "
                         f"--resources='{{\"{NODE_RESOURCE}\": 1}}' (one perfkit task per node at a "
                         "time)")


def _answers(address: str) -> None:
    """Refuse, quickly, an address where nothing listens (``ray.init`` would retry for a minute)."""
    if address == "auto":  # a cluster started on this machine: Ray finds it itself
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=ANSWER_TIMEOUT_S).close()
    except ValueError:
        raise UsageError(f"--ray {address}: give local, auto, HOST:PORT or ray://HOST:PORT") from None
    except OSError as exc:
        raise UsageError(f"the Ray cluster at {address} does not answer ({exc.strerror or exc}); check --ray or "
                         "$RAY_ADDRESS") from None


def run(plan, cells: Iterable, write: Callable, progress=None, accelerator: str | None = None) -> None:
    """Measure ``cells`` of ``plan`` as Ray tasks; ``write(cell, results, env)`` records each cell's
    results as they come back, in the order the cells finish."""
    import ray

    from perfkit.backends import get

    setup = ray.put(plan.setup)
    needs = {"num_cpus": 1, "resources": {NODE_RESOURCE: 1}, "max_retries": RETRIES,
             "num_gpus": 0 if plan.setup.device == "cpu" else 1}
    if accelerator:
        needs["accelerator_type"] = accelerator
    export, measure = ray.remote(_export).options(**needs), ray.remote(_measure).options(**needs)
    exports: dict = {}
    pending: dict = {}
    for cell in cells:
        if cell.artifact not in exports:
            exports[cell.artifact] = export.remote(setup, cell) if get(cell.runtime).needs_artifact else None
        pending[measure.remote(setup, cell, exports[cell.artifact])] = cell
    try:
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready)
            try:
                results, env = ray.get(ready)
            except ray.exceptions.RayTaskError as exc:  # it raised: a bug (a failed measurement is a result)
                results, env = f"failed on its Ray worker: {_first_line(getattr(exc, 'cause', None) or exc)}", None
            except ray.exceptions.RayError as exc:  # its worker was lost, and again on each retry
                results, env = f"lost on Ray after {RETRIES} retries: {_first_line(exc)}", None
            write(cell, plan.failures(cell, results) if isinstance(results, str) else results, env)
            if progress is not None:
                progress.update(f"{cell} done", advance=len(plan.keys(cell)))
    finally:
        for ref in pending:  # interrupted: nothing keeps measuring for a driver that is gone
            ray.cancel(ref, force=True)


def _first_line(exc: BaseException) -> str:
    """One line of what went wrong (Ray's errors carry the worker's traceback, with colours)."""
    return describe(exc).splitlines()[0]


# -- on the workers ---------------------------------------------------------------------------------

_SPECS: dict = {}  # this worker process's models, resolved once each
_RESOLVED: dict = {}  # its memo of artifacts (``perfkit.backends.prepare``), shared by its tasks
_THREADS: list = []  # the thread count a process started on this node has (asked once per worker)


def _node_threads(setup) -> None:
    """Ray sets ``OMP_NUM_THREADS`` to a task's ``num_cpus`` (1) in its workers, so that tasks can share
    a node, and torch reads it once, at import: eager would time on one thread here and on every core
    in process. A perfkit task has its node to itself (``perfkit_node``), so it runs with the threads a
    process started there has: the driver's ``OMP_NUM_THREADS``, else torch's own default, asked of a
    fresh interpreter without Ray's setting; its memory children inherit it. ``--threads`` sets its own."""
    import subprocess
    import sys

    import torch

    if setup.threads is not None:
        return
    if not _THREADS:
        threads = setup.omp_threads
        if threads is None:
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            asked = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                                   capture_output=True, text=True, check=True, timeout=300)
            threads = asked.stdout.split()[-1]
        _THREADS.append(int(threads))
    torch.set_num_threads(_THREADS[0])
    os.environ["OMP_NUM_THREADS"] = str(_THREADS[0])


def _spec(setup, model: str):
    from perfkit.zoo.sources import resolve

    request = setup.requests[model]
    key = json.dumps(request, sort_keys=True, default=str)
    if key not in _SPECS:
        _SPECS[key] = resolve(**request)
    return _SPECS[key]


def _export(setup, cell) -> str | None:
    """Export (or find in the cache) the artifact of ``cell``'s (model, runtime, precision); its error, or None."""
    from perfkit.backends import prepare

    try:
        _node_threads(setup)
        prepare(_spec(setup, cell.model), cell.runtime, setup.context(cell.model, _RESOLVED),
                precision=cell.precision, batch=setup.plan(cell).batch_range)
    except Exception as exc:  # the cells that need it fail with it (a raise would make Ray retry it)
        return describe(exc)
    return None


def _measure(setup, cell, export_error: str | None) -> tuple[list | str, dict]:
    """The results of ``cell`` (or why it cannot be measured here, which the driver records as the
    cell's failures) and the fingerprint of the machine that measured them."""
    from perfkit.record import environment
    from perfkit.sweeps.local import measure

    env = environment(setup.device)
    if export_error is not None:
        return export_error, env
    try:
        spec = _spec(setup, cell.model)
    except Exception as exc:  # a file missing on this node, weights not cached here: the same on a retry
        return f"cannot resolve {cell.model} on this worker: {describe(exc)}", env
    if spec.identity != setup.identities[cell.model]:
        return (f"{cell.model} resolves to another model on this worker than on the driver (weights or code "
                f"differ: identity {spec.identity[:12]} here, {setup.identities[cell.model][:12]} there)"), env
    _node_threads(setup)
    results = list(measure(setup, cell, spec, _RESOLVED))
    _test_kill(cell)
    return results, env


def _test_kill(cell) -> None:
    """A test hook: with ``$PERFKIT_TEST_KILL_CELL`` = ``INDEX:DIR``, the worker that has just measured
    cell INDEX kills itself (SIGKILL) before returning, once (``DIR/killed`` marks it): a worker lost
    mid-sweep at a point the test chooses, on any machine. Costs one lookup when the variable is unset."""
    wanted = os.environ.get(TEST_KILL)
    if not wanted:
        return
    index, folder = wanted.split(":", 1)
    if int(index) != cell.index:
        return
    try:
        os.close(os.open(Path(folder) / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
