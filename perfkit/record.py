"""The one place where typed results become stored ``Record`` rows.

Measuring code yields results (``perfkit.results``, and the result types of analysis, artifacts,
parity, accuracy, profile and train); a command or the pipeline hands each to a ``Recorder``, which
converts it here, validates it against its kind's schema and writes it to the store at once (a
Ctrl-C keeps everything recorded so far). Commands then render ``recorder.records`` through
``perfkit.report.tables``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from perfkit.results import Failure, Kind, Where
from perfkit.store.schema import Record

FLIPPED_IDS_IN_RECORD = 1000  # an accuracy record keeps this many flipped ids; the JSON file keeps all


def _record(kind: Kind, where: Where, metrics: dict, **extra) -> Record:
    return Record(kind=kind, model=where.model, metrics=metrics, runtime=where.runtime, precision=where.precision,
                  batch=where.batch, weights=where.weights, device=where.device, **extra)


@functools.singledispatch
def to_records(result) -> list[Record]:
    """The records of one result (most results are one record; a validation pass is one per runtime).
    A scenario's result (``perfkit.profiler.scenarios``, registered when it was) is one record of the
    scenario's kind with the metrics the scenario makes of it."""
    from perfkit.profiler.scenarios import all_scenarios

    for scenario in all_scenarios():
        if isinstance(result, scenario.result):
            return [_record(scenario.kind, result.where, scenario.metrics(result))]
    raise TypeError(f"no record conversion for {type(result).__name__}")


@to_records.register
def _failure(result: Failure) -> list[Record]:
    return [_record(result.kind, result.where, {}, status="error", error=result.error)]


def model_record(spec) -> Record:
    """What was measured (kind model): recorded once per model and run, so reports never look the
    model up again (published numbers, preprocessing and weights are as they were at run time).
    A model the user provides has no published numbers (its source leaves ``reference`` empty)."""
    ref = spec.reference
    metrics = {
        "label": spec.label, "source": spec.source, "identity": spec.identity, "arch": spec.arch,
        "reference_runtime": spec.reference_runtime, "random_weights": spec.random_weights,
        "input_size": list(spec.input_size), "num_classes": spec.num_classes, "preprocess": spec.preprocess.to_dict(),
        "ref_weights": ref.get("weights"), "ref_top1_pct": ref.get("acc1_pct"), "ref_top5_pct": ref.get("acc5_pct"),
        "ref_params": ref.get("params"), "ref_gmacs": ref.get("gmacs"),
    }
    if spec.weights.entry:
        metrics["weights_entry"] = spec.weights.entry  # which part of the checkpoint: "model", "model_ema", ...
    if spec.reference_model is not None:  # an engine's --reference: what its parity and accuracy are against
        ref_model = spec.reference_model
        metrics["reference_model"] = {"name": ref_model.name, "label": ref_model.label, "identity": ref_model.identity,
                                      "source": ref_model.source, "runtime": ref_model.reference_runtime}
    return _record(Kind.MODEL, Where(spec.name, weights=spec.weights.identity), metrics)


def _register_all() -> None:
    """Converters for the result types of the measuring packages (imported here, not there: the
    measuring code does not know about records)."""
    from perfkit.accuracy.harness import EvalResult
    from perfkit.accuracy.parity import ParityCheck
    from perfkit.analysis import ComplexityReport
    from perfkit.artifacts import ExportResult
    from perfkit.profiler.layers import LayerProfile
    from perfkit.profiler.memory import MemoryResult
    from perfkit.train.loop import EpochResult

    to_records.register(ComplexityReport, _complexity)
    to_records.register(ExportResult, _export)
    to_records.register(ParityCheck, _parity)
    to_records.register(EvalResult, _accuracy)
    to_records.register(MemoryResult, _memory)
    to_records.register(LayerProfile, _layers)
    to_records.register(EpochResult, _epoch)


def _complexity(result) -> list[Record]:
    from perfkit.analysis import MEMORY_CONVENTION, ONNX_TOLERANCE

    c, s = result.complexity, result.summary
    metrics = c.metrics()
    metrics.update(
        layers=[row.as_dict() for row in s.layers], params_outside_rows=s.params_outside_rows,
        unrowed_params=s.unrowed_params, input_mib=s.input_mib, forward_backward_mib=s.forward_backward_mib,
        params_mib=s.params_mib, total_mib=s.total_mib, memory_convention=MEMORY_CONVENTION,
    )
    if result.onnx is not None:
        metrics.update(onnx_macs=result.onnx.macs, onnx_macs_by_op=result.onnx.macs_by_op,
                       onnx_no_formula=result.onnx.no_formula, onnx_tolerance=ONNX_TOLERANCE,
                       onnx_agrees=result.onnx_agrees)
    return [_record(Kind.COMPLEXITY, result.where, metrics)]


def _export(result) -> list[Record]:
    a = result.artifact
    metrics = {
        "export_seconds": a.export_seconds, "artifact_bytes": a.bytes, "cached": a.cached, "seconds": a.seconds,
        "sha256": a.sha256, "artifact_path": str(a.path), "warnings": a.warnings, "batch_range": a.manifest["batch"],
        "options": a.manifest["options"], "compiled_for": a.manifest.get("compiled_for"),
    }
    if "calibration" in a.manifest:
        metrics["calibration"] = a.manifest["calibration"]["description"]
        metrics["calibration_set"] = {k: v for k, v in a.manifest["calibration"].items() if k != "files"}
        metrics["quantization"] = a.manifest.get("quantization") or {}
    return [_record(Kind.EXPORT, result.where, metrics)]


def _parity(result) -> list[Record]:
    # NaN/Inf logits make the distances NaN: recorded as missing (None), never as NaN in an ok record.
    metrics = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in result.result.metrics().items()}
    return [_record(Kind.PARITY, result.where, {**metrics, "failures": result.result.failures,
                                                 "inputs": result.source, **_calibration(result.calibration)})]


def _calibration(description: str | None) -> dict:
    """The calibration metric of an int8 result (what every table says about int8)."""
    return {"calibration": description} if description else {}


def _accuracy(result) -> list[Record]:
    out = []
    for label, r in result.runtimes.items():
        where = Where(result.spec.name, r.runtime, r.precision, result.batch_size, result.spec.weights.identity,
                      result.device)
        if r.ok:
            out.append(_record(Kind.ACCURACY, where, accuracy_metrics(result, label)))
        else:
            out.append(_record(Kind.ACCURACY, where, {}, status="error", error=r.error))
    return out


def accuracy_metrics(result, label: str) -> dict:
    """Raw metrics of one runtime of a validation pass."""
    r, ref = result.runtimes[label], result.runtimes[result.reference]
    published = result.published
    m = {
        "images": result.images, "dataset_images": result.data.full_size,
        "top1_correct": r.counts.top1_correct, "top5_correct": r.counts.top5_correct,
        "top1_pct": r.counts.top1_pct, "top5_pct": r.counts.top5_pct,
        "ref_top1_pct": published.get("acc1_pct"), "ref_top5_pct": published.get("acc5_pct"),
        "delta_top1_vs_eager_pp": r.counts.top1_pct - ref.counts.top1_pct,
        "delta_top5_vs_eager_pp": _difference(r.counts.top5_pct, ref.counts.top5_pct),
        "delta_top1_vs_ref_pp": (r.counts.top1_pct - published["acc1_pct"]) if published.get("acc1_pct") else None,
        "flips_vs_eager": len(r.flipped_ids), "flipped_ids": r.flipped_ids[:FLIPPED_IDS_IN_RECORD],
        "flipped_ids_file": str(result.flips_file) if result.flips_file and r.flipped_ids else None,
        "max_abs_diff_vs_eager": r.diff.max_abs if r.diff else 0.0,
        "mean_abs_diff_vs_eager": r.diff.mean_abs if r.diff else 0.0,
        "nonfinite_logits": r.diff.nonfinite if r.diff else 0,
        "crops": result.crops, "limit": result.data.subset, "layout": result.data.layout,
        "dataset_identity": result.data.identity[:16], "labels_from": result.data.labels_from,
        "num_classes": result.data.num_classes,
        "transform": result.transform.to_dict(), "transform_overrides": list(result.transform.overrides),
        "unreadable": len(result.unreadable_files), "unreadable_files": result.unreadable_files,
        "complete": result.complete, "seconds": result.seconds,
        "images_per_s": result.images / result.seconds if result.seconds else None,
        "random_weights": result.spec.random_weights, "runner": label,
        "relative_top1": r.counts.top1_pct / ref.counts.top1_pct if ref.counts.top1_pct else None,
        "reference": f"{ref.runtime} {ref.precision}", **_calibration(r.calibration),
    }
    if r.real is not None:
        m.update(real_images=r.real.images, real_top1_correct=r.real.top1_correct,
                 real_top5_correct=r.real.top5_correct, real_top1_pct=r.real.top1_pct,
                 real_top5_pct=r.real.top5_pct, real_labels=result.real_source)
    if r.per_class is not None:
        m["per_class"] = r.per_class
    if r.mixed is not None:
        m.update(float_layers=list(r.mixed.float_layers), mixed_int8=mixed_metrics(r.mixed))
    return m


def mixed_metrics(search) -> dict:
    """validate's search for the int8 layers left float (``perfkit.accuracy.mixed.MixedSearch``), raw."""
    return {
        "gate": search.gate, "met": search.met, "note": search.note, "images": search.images,
        "reference_top1_correct": search.reference_correct, "layers_total": search.layers_total,
        "sensitivity": [{"node": l.node, "op": l.op, "module": l.module, "error": l.error, "nodes": list(l.nodes)}
                        for l in search.layers],
        "trials": [{"layers": t.layers, "modules": None if t.layers is None else search.modules(t.layers),
                    "float_layers": None if t.float_layers is None else list(t.float_layers),
                    "top1_correct": t.top1_correct, "relative_top1": t.relative, "meets": t.meets}
                   for t in search.trials],
        "float_modules": search.float_modules,
        "full_int8_median_ms": search.latency_ms.get("full_int8"), "mixed_median_ms": search.latency_ms.get("mixed"),
        "search_seconds": search.seconds,
    }


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _memory(result) -> list[Record]:
    return [_record(Kind.MEMORY, result.where, {"peak_bytes": result.peak_bytes, "method": result.method,
                                                **result.details})]


def _layers(result) -> list[Record]:
    """A layer profile: its rows by module (the table), the runtime's own layers, and the sum of their times
    beside the end-to-end median; a runtime whose profiler is unavailable here says why."""
    from perfkit.profiler.layers import MACS_CONVENTION, SPLIT

    metrics = {"source": result.source, "rows": result.rows, "e2e_median_ms": result.e2e_median_ms}
    if result.unavailable:
        return [_record(Kind.LAYERS, result.where, {**metrics, "unavailable": result.unavailable})]
    metrics.update(layers=[layer.as_dict() for layer in result.layers], total_ms=result.total_ms,
                   coverage=result.coverage, runs=result.runs, split=SPLIT, by_op_type=result.by_op_type,
                   mapping=result.mapping, macs_convention=MACS_CONVENTION)
    return [_record(Kind.LAYERS, result.where, metrics)]


def _epoch(result) -> list[Record]:
    return [_record(Kind.TRAIN, result.where, dict(result.metrics))]


_register_all()


_written: Counter = Counter()  # records of each kind this process has stored (for _test_pause)
TEST_PAUSE = "PERFKIT_TEST_PAUSE"


def _test_pause(kind: Kind) -> None:
    """A test hook: with ``$PERFKIT_TEST_PAUSE`` = ``KIND:COUNT:DIR``, the process pauses right after it
    has stored its COUNT-th record of KIND: it creates ``DIR/paused`` and waits until ``DIR/release``
    exists (at most 120 s). tests/test_fault_injection.py signals the paused process and then releases
    it, so a kill lands inside the step it names on any machine, fast, slow or loaded, instead of
    racing the run. Pauses at most once per process; costs one dict lookup when the variable is unset.
    """
    wanted = os.environ.get(TEST_PAUSE)
    if not wanted:
        return
    _written[kind] += 1
    name, count, folder = wanted.split(":", 2)
    if name != kind or _written[kind] != int(count) or _written["paused"]:
        return
    _written["paused"] += 1
    (Path(folder) / "paused").touch()
    deadline = time.monotonic() + 120
    while not (Path(folder) / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def environment(device: str = "cpu") -> dict:
    """The fingerprint recorded with a run and its records: the host, the device and the versions of
    the core libraries and of every backend's (the measuring side computes it; the store stores it)."""
    from perfkit.backends import library_names
    from perfkit.env import fingerprint

    return fingerprint(device, library_names())


class Recorder:
    """Writes the records of one run: each result as it arrives, one transaction each."""

    def __init__(self, store, run_id: str, device: str = "cpu"):
        self.store = store
        self.run_id = run_id
        self.env = environment(device)
        self.records: list[Record] = []
        self._models: set[str] = set()

    def add(self, result, *, env: dict | None = None, skip: set | frozenset = frozenset()) -> list[Record]:
        """Record ``result``; ``env``: the fingerprint of the machine that measured it when that is not
        this process's (a sweep's Ray worker); ``skip``: record keys the run has already (a resumed
        sweep re-measures a cell only for its missing keys, and writes only those)."""
        records = [r for r in to_records(result) if r.key not in skip]
        for record in records:
            record.env = record.env or env or self.env
            self._write(record)
        self.records += records
        return records

    def _write(self, record: Record) -> None:
        self.store.add(record, self.run_id)
        _test_pause(record.kind)

    def add_all(self, results: Iterable) -> list[Record]:
        """Record every result of a measuring generator as it is yielded."""
        out = []
        for result in results:
            out += self.add(result)
        return out

    def model(self, spec) -> None:
        """Record what ``spec`` is, once per model in this run (a resumed run has it already)."""
        if spec.name in self._models:
            return
        self._models.add(spec.name)
        if any(r.status == "ok" for r in self.store.records(self.run_id, kind=Kind.MODEL, model=spec.name)):
            return
        self.store.supersede(self.run_id, spec.name, (Kind.MODEL,))  # one that could not be read is replaced
        record = model_record(spec)
        record.env = self.env
        self._write(record)
        self.records.append(record)

    @property
    def errors(self) -> list[Record]:
        return [r for r in self.records if r.status == "error"]


class RunRecorder(Recorder):
    """A ``Recorder`` that also owns its run's status: ok only when nothing it recorded failed and
    the command did not say otherwise (``fail``)."""

    def __init__(self, store, run_id: str, device: str = "cpu"):
        super().__init__(store, run_id, device)
        self.failed_because: list[str] = []

    def fail(self, why: str) -> None:
        """Mark the run failed although every record is ok (a gate failed, a check did not pass)."""
        self.failed_because.append(why)

    @property
    def failed(self) -> bool:
        return bool(self.failed_because or self.errors)


@contextlib.contextmanager
def recording(store, *, command: str | None = None, run_id: str | None = None, device: str = "cpu"):
    """``with recording(store) as rec:`` opens a run (or re-opens ``run_id``) and closes it with a status
    that agrees with what was recorded: ok, failed (an error record, a failed gate, an exception) or
    interrupted (Ctrl-C)."""
    run_id = store.start_run(command, run_id, device, env=environment(device))
    rec = RunRecorder(store, run_id, device)
    status = "failed"
    try:
        yield rec
        status = "failed" if rec.failed else "ok"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        store.finish_run(run_id, status)
