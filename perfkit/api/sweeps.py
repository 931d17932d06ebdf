"""``perfkit.sweep`` and ``perfkit.sweep_status``: models × runtimes × precisions × batches × scenarios
expanded to cells (``perfkit.sweeps.plan``), run in this process, as one ``shard`` of the plan, or on Ray,
each cell measured by ``perfkit profile``'s code; records of the same kinds and keys as profile's.

Everything is resolved and checked before anything runs (an unknown model, runtime or precision is a
``UsageError``, a Ray address that does not answer too), then one run is opened for this invocation
(or shard): ``<name>-<I>of<N>``. Cells the sweep's runs hold already are skipped (``perfkit.sweeps.state``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from perfkit.api.keywords import Keywords, Notify, quiet
from perfkit.api.result import Result, places
from perfkit.errors import UsageError

# The defaults of the flags the sweep file can also set (``perfkit profile``'s, but two batches).
DEFAULTS = {"runtimes": "eager", "precision": "fp32", "batch": "1,8", "scenario": "singlestream", "memory": True,
            "weights": "auto"}


@dataclass(kw_only=True, repr=False)
class SweepResult(Result):
    """``perfkit.sweep``: the sweep's ``name``, this ``shard`` (I, N), its ``cells``, those ``measured``
    now and those ``skipped`` (the store held them already: done, or failed earlier)."""

    name: str = ""
    shard: tuple[int, int] = (0, 1)
    cells: list = field(default_factory=list)
    measured: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


@dataclass(frozen=True)
class SweepStatus:
    """``perfkit.sweep_status``: the sweep's ``name``, the ids of its ``runs``, and each cell's state
    (``perfkit.sweeps.state.CellState``)."""

    name: str
    runs: list
    cells: list

    def count(self, state: str) -> int:
        return sum(1 for c in self.cells if c.state == state)


def sweep(models=None, *, file=None, runtimes=None, precision=None, batch=None, scenario=None, memory=None,
          shard=None, ray=None, workers=None, accelerator_type=None, name=None, weights=None, store=None,
          notify: Notify = quiet, progress=None, **keywords) -> SweepResult:
    """Measure every cell of the sweep (or of ``shard`` = ``"I/N"``, ``"auto"``) not yet in ``store``.

    ``models``: zoo names or model files (a list or a comma list); ``file``: a TOML sweep file holding
    these keywords (the keywords given here win). ``ray``: None (in this process), ``"local"`` (a local
    Ray instance of ``workers`` processes) or a cluster address; ``accelerator_type``: the Ray
    accelerator type GPU cells ask for. ``name``: the sweep's name in the store (default
    ``sweep-<hash of its plan>``): the same sweep again continues it; another name measures it anew.
    Other keywords: ``perfkit.profile``'s (scenario, runtime and model options, ``device``, ``threads``, ...).
    """
    from perfkit.record import recording
    from perfkit.sweeps import local, state
    from perfkit.sweeps.plan import parse_shard

    given, plan, name = _planned(models, file, dict(runtimes=runtimes, precision=precision, batch=batch,
                                                    scenario=scenario, memory=memory, weights=weights),
                                 name, keywords, notify, ray)
    index, count = parse_shard(shard, os.environ)
    cells = plan.shard(index, count)
    leave = _engine(ray, workers)
    try:
        with places(store, given.measuring["artifacts"]) as (opened, kept, artifacts):
            plan = dataclasses.replace(plan, setup=dataclasses.replace(plan.setup, artifacts=str(artifacts)))
            found = state.recorded(opened, name)
            todo = [c for c in cells if state.cell_state(plan, c, found).state in ("missing", "partial")]
            with recording(opened, command=given.command(list(plan.specs)), run_id=state.run_id(name, index, count),
                           device=plan.setup.device) as rec:
                for model in dict.fromkeys(c.model for c in cells):
                    rec.model(plan.specs[model])
                if progress is not None:
                    progress.start(f"sweep {name}: {len(todo)} of {len(cells)} cells",
                                   total=sum(len(plan.keys(c)) for c in todo))

                def write(cell, results, env=None) -> None:
                    for result in results:
                        rec.add(result, env=env, skip=found.keys())

                if ray is None:
                    local.run(plan, todo, write, progress)
                else:
                    from perfkit.sweeps import ray as on_ray

                    on_ray.run(plan, todo, write, progress, accelerator_type)
                recorded = opened.records(rec.run_id)
                _fail_on_errors(recorded, rec)
    finally:
        leave()
    return SweepResult(run_id=rec.run_id, device=plan.setup.device, models=list(plan.specs.values()), store=kept,
                       failures=list(rec.failed_because), recorded=recorded, name=name, shard=(index, count),
                       cells=list(cells), measured=todo, skipped=[c for c in cells if c not in todo])


def sweep_status(models=None, *, file=None, runtimes=None, precision=None, batch=None, scenario=None, memory=None,
                 shard=None, name=None, weights=None, store=None, ray=None, notify: Notify = quiet,
                 **keywords) -> SweepStatus:
    """What ``store`` holds of the sweep these keywords describe (as ``perfkit.sweep`` takes them; of
    one ``shard`` when given): each cell done, failed, partial or missing, and the sweep's runs."""
    from perfkit.sweeps import state
    from perfkit.sweeps.plan import parse_shard

    _, plan, name = _planned(models, file, dict(runtimes=runtimes, precision=precision, batch=batch,
                                                scenario=scenario, memory=memory, weights=weights),
                             name, keywords, notify, ray)
    cells = plan.shard(*parse_shard(shard, os.environ)) if shard is not None else plan.cells
    with places(store, None) as (opened, _, _):
        found = state.recorded(opened, name)
        runs = [r["id"] for r in state.sweep_runs(opened, name)]
    return SweepStatus(name, runs, [state.cell_state(plan, c, found) for c in cells])


def _engine(ray, workers):
    """Start or join Ray (``ray``: None runs in this process); returns what leaves it."""
    if ray is None:
        if workers is not None:
            raise UsageError("--workers sets the worker processes of --ray local")
        return lambda: None
    from perfkit.sweeps import ray as on_ray

    return on_ray.connect(None if ray in ("", True) else str(ray), workers)


def _fail_on_errors(recorded, rec) -> None:
    """The run's status follows all its records, those of an earlier invocation it continues included."""
    errors = [r for r in recorded if r.status == "error"]
    if errors and not rec.errors:
        rec.fail(f"{len(errors)} failed measurement(s)")


def _planned(models, file, axes: dict, name, keywords: dict, notify: Notify, ray) -> tuple:
    """(the checked Keywords, the SweepPlan, the sweep's name): the file read, flags over it, defaults
    for the rest, every model resolved and every value checked."""
    from perfkit.api import keywords as K
    from perfkit.sweeps import file as sweep_file, state

    if file is not None:
        known = {"models", *axes, *Keywords.known(scenarios=True)}
        from_file = sweep_file.read(file, known)
        if models is not None and "models" in from_file:
            raise UsageError(f"models are named twice: on the command line and in {file}; name them in one place")
        models = models if models is not None else from_file.pop("models", None)
        in_file = {k: from_file.pop(k, None) for k in axes}
        axes = {k: in_file[k] if v is None else v for k, v in axes.items()}
        keywords = {**from_file, **{k: v for k, v in keywords.items() if v is not None}}
    axes = {k: DEFAULTS[k] if v is None else v for k, v in axes.items()}
    given = Keywords.of("sweep", keywords, weights=axes["weights"], scenarios=True)
    named = [m.strip() for m in K.text(K.listed(models) if isinstance(models, (list, tuple)) else models or "")
             .split(",") if m.strip()]
    if not named and given.model["model_code"] is None:
        raise UsageError("perfkit sweep: name one or more MODELs (lenet5,resnet18 or a sweep file's models) or "
                         "--model-code FILE.py:CALLABLE (see perfkit sweep --help)")
    plan = _plan(given, named, axes, notify, ray)
    return given, plan, state.checked_name(name) if name else state.default_name(plan.identity)


def _plan(given, named: list, axes: dict, notify: Notify, ray):
    """The ``SweepPlan``: each model resolved (its request kept for workers), the runtimes that run it,
    its batches, the precisions checked against the runtimes on the device, the cells expanded."""
    from perfkit.api import keywords as K
    from perfkit.sweeps.plan import Setup, SweepPlan, expand

    device = _device(given, ray)
    backends = K.runtimes(axes["runtimes"])
    precisions = K.precisions(axes["precision"], backends, device)
    batches = K.batches(axes["batch"])
    runs = given.scenario_runs(axes["scenario"])
    model = dict(given.model)
    code = model.pop("model_code")
    requests = [{"text": m, **model} for m in named] + ([{"text": None, "model_code": code, **model}] if code else [])
    specs, kept, taken = {}, {}, {}
    for request in requests:
        spec = given.spec(request["text"], notify, axes["precision"], model_code=request.get("model_code"))
        if spec.name in specs:  # named twice: measured once
            continue
        specs[spec.name], kept[spec.name] = spec, request
        taken[spec.name] = (K.runtimes_for(spec, backends, notify), tuple(K.batches_for(spec, batches, notify)))
    calibration = given.calibration(precisions, None, notify)
    options = {**given.options, **({"calibration": calibration} if calibration else {})}
    setup = Setup(kept, {n: s.identity for n, s in specs.items()}, {n: b for n, (_, b) in taken.items()},
                  tuple(r.scenario.name for r in runs), _typed(given.scenario), bool(axes["memory"]), device, "",
                  given.measuring["threads"], options, bool(given.measuring["force"]),
                  os.environ.get("OMP_NUM_THREADS"))
    cells = expand(specs, {n: r for n, (r, _) in taken.items()}, precisions, setup.batches, device)
    return SweepPlan(setup, specs, cells)


def _typed(values: dict) -> dict:
    """Scenario option values as their declared types: ``min_seconds = 0`` from a file and
    ``--min-seconds 0`` are one sweep (its identity hashes them)."""
    from perfkit.profiler.scenarios import all_scenarios

    types = {o.name: o.type for s in all_scenarios() for o in s.options}
    try:
        return {k: v if isinstance(v, bool) else types[k](v) for k, v in values.items()}
    except (TypeError, ValueError) as exc:
        raise UsageError(f"a scenario option has a bad value: {exc}") from None


def _device(given, ray) -> str:
    """The resolved ``device``. On Ray, ``cuda`` is each cell's own GPU as Ray shows it to its worker
    (``cuda:0``), whether or not this driver has one."""
    text = str(given.measuring["device"]).strip().lower()
    if ray is not None and text.startswith("cuda"):
        return "cuda:0"
    return given.device()
