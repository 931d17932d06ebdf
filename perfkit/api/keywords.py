"""The API's keywords, named like the command-line flags (``--calib-samples`` → ``calib_samples``), made
into what the measuring code takes; every bad value is a ``UsageError`` with the command line's
one-line message. What a command says before it works (random weights, runtimes that cannot run
the model, the calibration set) is handed to its ``notify`` callback as a ``Note``.

Every function shares four groups of keywords besides its own (``Keywords``): the model's (the
keywords of ``perfkit.zoo.sources.resolve``: ``weights``, ``num_classes``, ``input_size``, ``mean``,
...), the measuring context's (``MEASURING``), every runtime's options (``opset``, ``ov_device``, ...:
the backends' declarations) and, where a function profiles, every scenario's options
(``iterations``, ``offline_seconds``, ...: the scenarios' declarations).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass

from perfkit.errors import UsageError
from perfkit.vocab import positive

# The measuring context's keywords and their defaults (the flags' defaults).
MEASURING = {"device": "auto", "artifacts": None, "threads": None, "force": False, "calib": None,
             "calib_samples": None, "calib_method": "minmax", "command": None}


class Note(str):
    """What a command says before the work it concerns: the text, plus ``level`` — ``info``, ``note``,
    ``caution`` (what it concerns is not meaningful: int8 calibrated on synthetic images) or
    ``warning`` — and ``topic`` (``random-weights``, ``not-run``, ``batches``, ``reference``,
    ``calibration``, ``tensorrt``, ``data``, ``preprocessing``, ``distributed``, ``precision``)."""

    level: str
    topic: str

    def __new__(cls, text: str, level: str = "note", topic: str = "") -> "Note":
        note = super().__new__(cls, text)
        note.level, note.topic = level, topic
        return note


Notify = Callable[[Note], object]


def quiet(note: Note) -> None:
    """The API's default ``notify``: the notes are in the records' metrics anyway."""


def _model_defaults() -> dict:
    import inspect

    from perfkit.zoo.sources import resolve

    return {n: p.default for n, p in inspect.signature(resolve).parameters.items() if n != "text"}


def _own_keywords(function: str) -> set[str]:
    """The keywords ``perfkit.<function>`` takes itself (for a suggestion when one is misspelt)."""
    import inspect

    from perfkit import api

    return set(inspect.signature(getattr(api, function)).parameters) - {"keywords"}


@dataclass(frozen=True)
class Keywords:
    """The shared keywords of one call, checked: an unknown one is a ``UsageError`` naming it."""

    function: str  # perfkit.<function>: how messages name the call
    model: dict  # perfkit.zoo.sources.resolve's keywords
    measuring: dict  # MEASURING's
    options: dict  # the runtime options given (opset, ov_device, ...)
    scenario: dict  # scenario options given

    @classmethod
    def of(cls, function: str, given: dict, *, weights: str = "auto", scenarios: bool = False) -> "Keywords":
        from perfkit.backends import options as backend_options
        from perfkit.profiler.scenarios import all_scenarios

        model = {**_model_defaults(), "weights": weights}
        runtime = {o.name for o, _ in backend_options()}
        scenario = {o.name for s in all_scenarios() for o in s.options} if scenarios else set()
        known = cls.known(scenarios=scenarios)
        for name in given:
            if name not in known:
                close = difflib.get_close_matches(name, known | _own_keywords(function), 1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise UsageError(f"perfkit.{function}() takes no keyword '{name}'{hint}; see help(perfkit.{function})")
        out = cls(function, {k: given.get(k, v) for k, v in model.items()},
                  {k: given.get(k, v) for k, v in MEASURING.items()},
                  {k: v for k, v in given.items() if k in runtime and v is not None},
                  {k: v for k, v in given.items() if k in scenario and v is not None})
        positive(out.measuring["threads"], "--threads")
        return out

    @staticmethod
    def known(*, scenarios: bool = False) -> set[str]:
        """Every shared keyword: the model's, the measuring context's, each runtime's options and
        (``scenarios``) each scenario's."""
        from perfkit.backends import options as backend_options
        from perfkit.profiler.scenarios import all_scenarios

        scenario = {o.name for s in all_scenarios() for o in s.options} if scenarios else set()
        return {*_model_defaults(), *MEASURING, *(o.name for o, _ in backend_options()), *scenario}

    def device(self) -> str:
        from perfkit.device import resolve_device

        return resolve_device(self.measuring["device"])

    def context(self, device: str, artifacts, progress=None, calibration=None):
        """The measuring context: its runtime options, the int8 calibration set and ``artifacts``."""
        from perfkit.context import NO_PROGRESS, Context

        options = dict(self.options)
        if calibration is not None:
            options["calibration"] = calibration
        return Context(device=device, artifacts=artifacts, threads=self.measuring["threads"], options=options,
                       force=bool(self.measuring["force"]), progress=progress or NO_PROGRESS)

    def command(self, models: list) -> str:
        """What the run is recorded as: ``command``, else the call (``perfkit.profile(resnet18)``)."""
        return self.measuring["command"] or f"perfkit.{self.function}({', '.join(map(_named, models))})"

    def calibration(self, precisions, data, notify: Notify):
        """The int8 calibration set (``calibration_set``), announced when it was not given: a subset of
        ``data``, or synthetic images whose accuracy means nothing."""
        m = self.measuring
        chosen = calibration_set(m["calib"], m["calib_samples"], m["calib_method"], precisions, data)
        if chosen is not None and m["calib"] is None:
            why = "no --calib" + ("" if data is not None else " and no --data")
            notify(Note(f"int8: {chosen.describe()} ({why})", "info" if chosen.meaningful else "caution",
                        "calibration"))
        return chosen

    def spec(self, model, notify: Notify, precision=None, **changes):
        """The one model of a call: ``model`` or ``model_code`` (``changes``: keywords that replace the
        given ones), with a note when it runs with random weights; ``precision``: the precisions asked
        for (an engine runs only as it was built)."""
        from perfkit.zoo.sources import resolve

        keywords = {**self.model, **changes}
        if model is None and keywords["model_code"] is None:
            raise UsageError(f"perfkit {self.function}: name a MODEL (a zoo name: resnet18, timm:<name>, ..., or a "
                             f"model.onnx file) or pass --model-code FILE.py:CALLABLE (see perfkit {self.function} "
                             "--help)")
        return _announced(resolve(model, **keywords), notify, precision)

    def specs(self, models, notify: Notify, precision=None) -> list:
        """Every model of a call that takes several (one or a list), then ``model_code``; all resolved
        before anything runs (a bad one is refused before a run is written)."""
        from perfkit.zoo.sources import resolve

        keywords = dict(self.model)
        code = keywords.pop("model_code")
        models = listed(models)
        if not models and code is None:
            raise UsageError(f"perfkit {self.function}: name one or more MODELs (zoo names or .onnx files) or pass "
                             f"--model-code FILE.py:CALLABLE (see perfkit {self.function} --help)")
        out = [resolve(m, **keywords) for m in models]
        if code is not None:
            out.append(resolve(None, model_code=code, **keywords))
        return [_announced(s, notify, precision) for s in out]

    def scenario_runs(self, scenario: str, *, quick: bool = False) -> tuple:
        return scenario_runs(scenario, self.scenario, quick=quick)


def listed(models) -> list:
    """One model or a list of them (None: none) as a list."""
    return [] if models is None else list(models) if isinstance(models, (list, tuple)) else [models]


def _named(model) -> str:
    """A model in a run's command text: a spec's name, a module's class, a name or path as given."""
    if hasattr(model, "identity"):  # a ModelSpec
        return model.name
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__


def _announced(spec, notify: Notify, precision=None):
    """``spec``, checked against the precisions asked for (an engine runs as it was built), with the notes
    of its weights (random) and, for an engine, of its reference."""
    from perfkit.backends import reference_text
    from perfkit.vocab import parse_precisions
    from perfkit.zoo.sources.engines import check_precisions

    if spec.engine and precision is not None and str(precision).strip().lower() != "auto":
        check_precisions(spec, parse_precisions(precision))
    if spec.random_weights:
        notify(Note(f"{spec.name}: RANDOM WEIGHTS — accuracy numbers are not meaningful (latency and parity are).",
                    "note", "random-weights"))
    if spec.engine:
        judged = (f"judged against {reference_text(spec)}" if spec.reference_model else
                  "no --reference (check needs one; validate counts against the labels)")
        notify(Note(f"{spec.label}: runs as it was built; {judged}", "note", "engine"))
    return spec


# -- the values of the flags every command shares ------------------------------------------------


def runtimes(value, *, exported_only: bool = False) -> list:
    """``"onnx,openvino"`` or ``["onnx", "openvino"]`` → backends."""
    from perfkit.backends import parse_backends

    return parse_backends(value, exported_only=exported_only)


def batches(value) -> list[int]:
    """``"1,8"``, ``(1, 8)`` or ``8`` → sorted distinct batch sizes."""
    from perfkit.vocab import parse_batches

    return parse_batches(value)


def text(value) -> str:
    """A comma list as the command line writes it (for messages): ``(1, 8)`` → ``1,8``."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def precisions(value, backends, device: str, *, lenient: bool = False) -> list:
    """The precisions asked for, checked against the chosen runtimes on ``device``: the one place
    where an unsupported combination becomes a one-line error.

    Every chosen runtime must run every precision, except the reference (eager), which runs the float
    precisions and is the fp32 reference of int8. ``lenient`` (``perfkit run`` with automatic
    runtimes): each runtime runs the precisions it supports, and a precision must have at least one.
    ``auto`` (``perfkit run``'s default): fp32, plus each reduced precision some chosen runtime's
    automatic plan measures on ``device``: those in its ``Backend.run_precisions`` that the hardware
    accelerates (``Backend.left_out`` says why the others are not).
    """
    from perfkit.device import device_type
    from perfkit.vocab import Precision, parse_precisions

    if isinstance(value, str) and value.strip().lower() == "auto":
        auto = [Precision.FP32, Precision.BF16, Precision.FP16, Precision.INT8]
        return [p for p in auto if p is Precision.FP32 or any(b.runs(p, device, automatic=True) for b in backends)]
    out = parse_precisions(value)
    for p in out:
        where = f"{p} on {device_type(device)} runs in: {', '.join(_runners_of(p, device)) or 'no runtime'}"
        # strict: every chosen runtime but the reference; lenient and strict: at least one runtime
        checked = [b for b in backends if not b.reference] if not lenient else []
        if not any(b.runs(p, device) for b in backends):
            checked.append(backends[0])
        for backend in checked:
            try:
                backend.check(p, device)
            except UsageError as exc:
                raise UsageError(f"{exc} ({where})") from None
    return out


def automatic_plan_notes(backends, device: str) -> list[str]:
    """What ``--precision auto`` measures beyond fp32 on ``device`` and what it leaves out, and why, one
    line each (``Backend.left_out``)."""
    from perfkit.env import accelerated
    from perfkit.vocab import Precision

    measured, left = [], {}
    for b in backends:
        for p in Precision:
            if p is Precision.FP32 or (b.reference and p is Precision.INT8):
                continue
            if b.runs(p, device, automatic=True):
                measured.append(f"{b.name} {p}")
            elif (why := b.left_out(p, device)) is not None:
                left.setdefault(why, []).append(f"{b.name} {p}")
    fast = ", ".join(f"{p} ({feature})" for p, feature in accelerated(device).items()) or "no reduced precision"
    lines = [f"precision auto: this {device.split(':')[0].upper()} accelerates {fast}; measured beyond fp32: "
             f"{', '.join(measured) or 'nothing'}"]
    return lines + [f"left out: {', '.join(which)} — {why}" for why, which in left.items()]


def _runners_of(precision, device: str) -> list[str]:
    from perfkit.backends import all_backends

    return [b.name for b in all_backends() if b.runs(precision, device) and b.unavailable(device) is None]


def calibration_set(calib, samples: int | None, method: str, precisions, data=None):
    """The int8 calibration set (None without int8): ``calib`` (a folder, or ``synthetic``), else a
    seeded subset of ``data`` (the command's labelled images), else synthetic."""
    from perfkit.data.calibration import DEFAULT_SAMPLES, CalibrationSet, Source
    from perfkit.vocab import Precision

    samples = positive(samples, "--calib-samples")
    if Precision.INT8 not in precisions:
        return None
    if calib is not None and str(calib).strip().lower() == "synthetic":
        return CalibrationSet.synthetic(samples, method)
    if calib is not None:
        chosen = CalibrationSet(Source.IMAGES, calib, samples or DEFAULT_SAMPLES, method)
    elif data is not None:
        chosen = CalibrationSet(Source.VALIDATION, data, samples or DEFAULT_SAMPLES, method)
    else:
        return CalibrationSet.synthetic(samples, method)
    chosen.files  # a folder without images is refused now, before anything runs (exit 2)
    return chosen


def scenario_runs(scenario, given: dict, *, quick: bool = False) -> tuple:
    """The ``ScenarioRun`` of each scenario asked for (``"singlestream,offline"`` or a list), configured
    from ``given`` (scenario option → value); bad values and options of a scenario not asked for are
    one line."""
    from perfkit.plan import ScenarioRun
    from perfkit.profiler.scenarios import parse

    chosen = parse(text(scenario))
    # an option of a scenario that was not asked for is a mistake, not a silent no-op
    asked = {o.name for s in chosen for o in s.options}
    stray = sorted(set(given) - asked)
    if stray:
        flags = ", ".join("--" + n.replace("_", "-") for n in stray)
        raise UsageError(f"{flags} belong(s) to a scenario not asked for: add it to --scenario")
    return tuple(ScenarioRun.of(s.name, {o.name: given.get(o.name) for o in s.options}, quick=quick) for s in chosen)


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


# -- what a command says before it works ----------------------------------------------------------


def runtimes_for(spec, backends, notify: Notify, *, reference_runs: bool = False) -> list:
    """The chosen runtimes that can run ``spec``; each one that cannot (a PyTorch runtime for an ONNX
    file) is named in a note — not run, never a failure. An engine none of them runs runs in its own
    runtime (``backends.runnable``), with a note. None left is bad input (exit 2), unless the command
    runs the reference anyway (``reference_runs``: validate)."""
    from perfkit.backends import all_backends, get, runnable

    kept, skipped = runnable(spec, backends)
    for name, why in skipped.items():
        notify(Note(f"note: {name} not run for {spec.name}: {why}", "note", "not-run"))
    if spec.engine and kept and not {get(b).name for b in backends} & {b.name for b in kept}:
        notify(Note(f"note: {spec.name} runs in {', '.join(b.name for b in kept)}, its own runtime", "note", "not-run"))
    if not kept and not reference_runs:
        fit = ", ".join(b.name for b in all_backends() if b.accepts(spec) is None)
        raise UsageError(f"none of the runtimes asked for ({', '.join(skipped)}) runs {spec.name}: "
                         f"{next(iter(skipped.values()))}; choose from: {fit}")
    return kept


def batches_for(spec, batches, notify: Notify) -> list[int]:
    """The batches of a sweep that ``spec`` takes, with a note when some were left out (a fixed batch)."""
    from perfkit.backends import batches_for as taken

    kept, note = taken(spec, batches)
    if note:
        notify(Note(f"note: {note}", "note", "batches"))
    return kept


def not_run_here(backends, notify: Notify) -> None:
    """TensorRT's note: what of it is not run on this machine."""
    from perfkit.backends.tensorrt import NOT_RUN_HERE

    if any(b.name == "tensorrt" for b in backends):
        notify(Note(f"note: {NOT_RUN_HERE}.", "note", "tensorrt"))


def batch_range(min_batch: int, opt_batch: int, max_batch: int):
    from perfkit.vocab import BatchRange

    try:
        return BatchRange(min_batch, min(max(opt_batch, min_batch), max_batch), max_batch)
    except UsageError:
        raise UsageError(f"the batch range must satisfy 1 <= --min-batch <= --max-batch, got "
                         f"{min_batch}..{max_batch}") from None
