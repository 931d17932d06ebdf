"""The record schema: one typed schema per kind, strict for current records, lenient for old ones."""

import pytest

from perfkit.record import model_record, to_records
from perfkit.results import Failure, Kind, Where
from perfkit.store import SCHEMA_VERSION, SCHEMAS, Record
from perfkit.store.schema import KindSchema


def _ok(kind: Kind, **extra) -> Record:
    return Record(kind=kind, model="m", metrics={k: 1 for k in SCHEMAS[kind].required} | extra)


def test_every_kind_has_a_schema_and_nothing_else_does():
    assert set(SCHEMAS) == set(Kind)
    for kind, schema in SCHEMAS.items():
        assert isinstance(schema, KindSchema) and schema.required, kind
    assert SCHEMA_VERSION == 6


def test_schema_2_complexity_records_with_mb_keys_stay_readable():
    """Schema 3 renamed the complexity sizes *_mb (which held MiB) to *_mib; baselines kept in git
    from schema 2 still validate, and the new records refuse the old names."""
    old = {"input_mb": 0.57, "forward_backward_mb": 60.0, "params_mb": 44.6, "total_mb": 105.2}
    Record(kind=Kind.COMPLEXITY, model="m", schema_version=2, metrics={**_ok(Kind.COMPLEXITY).metrics, **old}).validate()
    with pytest.raises(ValueError, match="does not permit"):
        _ok(Kind.COMPLEXITY, **old).validate()


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_requires_its_metrics(kind):
    _ok(kind).validate()
    for missing in sorted(SCHEMAS[kind].required):
        rec = _ok(kind)
        del rec.metrics[missing]
        with pytest.raises(ValueError, match=missing):
            rec.validate()


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_refuses_an_unknown_metric(kind):
    _ok(kind, **{k: 1 for k in SCHEMAS[kind].optional}).validate()  # every optional metric is permitted
    rec = _ok(kind, latency_median_msec=1.0)  # a typo of a real metric name
    with pytest.raises(ValueError, match="latency_median_msec"):
        rec.validate()


def test_older_records_keep_their_metrics_readable():
    old = _ok(Kind.LATENCY, retired_metric=1)
    old.schema_version = SCHEMA_VERSION - 1
    old.validate()
    old.metrics.pop("iterations")
    with pytest.raises(ValueError, match="iterations"):  # required metrics are still required
        old.validate()


def test_formatted_strings_are_not_metrics():
    rec = _ok(Kind.LATENCY)
    rec.metrics["latency_median_ms"] = object()
    with pytest.raises(ValueError, match="raw number"):
        rec.validate()


def test_nan_is_refused_in_an_ok_record():
    rec = _ok(Kind.LATENCY, latency_cv=float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        rec.validate()


def test_error_record_needs_text_and_no_metrics():
    [failure] = to_records(Failure.of(Kind.EXPORT, Where("m", "onnx"), RuntimeError("boom")))
    failure.validate()
    assert failure.status == "error" and failure.error == "RuntimeError: boom" and failure.metrics == {}
    with pytest.raises(ValueError, match="what went wrong"):
        Record(kind=Kind.EXPORT, model="m", status="error").validate()
    with pytest.raises(ValueError, match="status"):
        Record(kind=Kind.EXPORT, model="m", status="maybe", error="x").validate()


def test_unknown_kind_is_refused():
    """A kind is a step's or a registered scenario's (perfkit.profiler.scenarios); anything else cannot be stored."""
    with pytest.raises(ValueError, match="unknown record kind 'benchmark'"):
        Record(kind="benchmark", model="m").validate()
    with pytest.raises(ValueError):
        Record(kind="", model="m")
    assert Record(kind="throughput", model="m").kind == Kind.THROUGHPUT  # a scenario's kind of its own


@pytest.mark.parametrize("name, weights", [("resnet18", "default"), ("googlenet", "random"), ("lenet5", "random")])
def test_model_records_fit_their_schema(name, weights):
    from perfkit.zoo.sources import resolve

    spec = resolve(name, weights=weights)  # resolving loads no weights
    record = model_record(spec)
    record.validate()
    assert record.kind == Kind.MODEL and record.model == name and record.weights == spec.weights.identity
    assert record.runtime is None and record.batch is None
    m = record.metrics
    assert m["random_weights"] is spec.random_weights and m["input_size"] == list(spec.input_size)
    assert m["identity"] == spec.identity and len(m["identity"]) == 16 and m["source"] == spec.source
    assert m["reference_runtime"] == "eager" and "weights_entry" not in m  # no checkpoint file
    if name == "lenet5":
        assert m["ref_top1_pct"] is None  # no published numbers
    else:  # the architecture's published numbers, even with random weights (labelled by random_weights)
        assert m["ref_top1_pct"] == spec.reference["acc1_pct"] and m["ref_params"] == spec.reference["params"]


@pytest.mark.parametrize("contention", [None, "unmeasured", "contended"])
def test_timings_record_contention_and_never_record_unmeasured_as_clean(contention):
    """Schema 4: latency records carry other_cpu_pct and contended; not measured is None (not False)."""
    from perfkit.profiler.contention import Contention
    from perfkit.profiler.scenarios.singlestream import LatencyResult
    from perfkit.profiler.timing import LatencyStats, RunnerTiming

    reading = {None: None, "unmeasured": Contention(None, 2, 0.05, unmeasured="timed for 0.05 s"),
               "contended": Contention(47.0, 2, 1.0, 0.94, 0.0)}[contention]
    timing = RunnerTiming(LatencyStats.from_samples([1.0, 2.0], batch=1), timer="perf_counter", contention=reading)
    [record] = to_records(LatencyResult(Where("m", "eager", "fp32", 1, device="cpu"), timing, 2, {}, False))
    record.validate()
    expected = (47.0, True) if contention == "contended" else (None, None)
    assert (record.metrics["other_cpu_pct"], record.metrics["contended"]) == expected


def test_schema_3_timings_without_contention_stay_valid():
    for kind in (Kind.LATENCY, Kind.THROUGHPUT):
        old = Record(kind=kind, model="m", schema_version=3, metrics={k: 1 for k in SCHEMAS[kind].required})
        old.validate()
        assert "contended" not in old.metrics and {"other_cpu_pct", "contended"} <= SCHEMAS[kind].optional
