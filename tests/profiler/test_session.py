import pytest

import perfkit.backends
import perfkit.results
from perfkit.backends import get
from perfkit.errors import MeasurementError, UsageError
from perfkit.plan import Plan
from perfkit.profiler import memory, profile_model
from perfkit.profiler.memory import MemoryResult
from perfkit.profiler.scenarios.singlestream import LatencyResult
from perfkit.record import Recorder
from perfkit.results import Failure
from perfkit.store import Kind

@pytest.fixture
def stub_peak(monkeypatch):
    """Fake runners report made-up thread counts: don't measure this CPU's peak for them."""
    from perfkit.profiler import roofline

    monkeypatch.setattr(roofline, "device_peak", lambda *a, **k: roofline.Peak(100.0, "stub"))


def test_profile_model_yields_latency_with_roofline_and_reports_progress(tiny_spec, store, ctx, progress, plan_of):
    plan = plan_of((get("eager"),), (2, 1))
    assert plan.steps == 2
    results = list(profile_model(tiny_spec, plan, ctx))
    assert [(type(r), r.where.runtime, r.where.precision, r.where.batch) for r in results] == [
        (LatencyResult, "eager", "fp32", 1), (LatencyResult, "eager", "fp32", 2)]
    # progress names each measurement before it runs and advances once per step
    assert progress.descriptions == ["timing lenet5 eager fp32", "singlestream lenet5 eager fp32 batch 1",
                                     "singlestream lenet5 eager fp32 batch 2"]
    assert progress.advanced == plan.steps
    for r in results:
        assert r.timing.compute.iterations >= 3 and r.timing.compute.median_ms > 0
        flops = r.roofline["flops_per_sample"]
        assert flops > 0 and r.flops_source
        assert r.roofline["achieved_gflops"] == pytest.approx(
            flops * r.where.batch / (r.timing.compute.median_ms / 1000) / 1e9)
        assert r.runtime_config["channels_last"] is False  # eager's tuned configuration, recorded
    # what the recorder stores is what was measured
    run_id = store.start_run("test")
    Recorder(store, run_id).add_all(results)
    records = store.records(run_id)
    assert sorted((r.kind, r.batch, r.status) for r in records) == [(Kind.LATENCY, 1, "ok"), (Kind.LATENCY, 2, "ok")]
    by_batch = {r.batch: r for r in records}
    for r in results:
        record = by_batch[r.where.batch]
        assert (record.model, record.runtime, record.precision, record.weights, record.device) == (
            "lenet5", "eager", "fp32", tiny_spec.weights.identity, "cpu")
        assert record.metrics["latency_median_ms"] == r.timing.compute.median_ms
        assert record.metrics["achieved_gflops"] == r.roofline["achieved_gflops"]
        assert record.metrics["runtime_config"] == r.runtime_config and record.metrics["self_timed"] is False
    assert {r.key for r in records} == plan.keys(tiny_spec)


def test_memory_is_measured_after_every_timing_and_not_where_timing_failed(tiny_spec, fake_runner, ctx, progress,
                                                                           monkeypatch, stub_peak, plan_of):
    calls, timeline = [], []
    runner = fake_runner(fail_at={4}, error=lambda b: ValueError("bad batch"))
    runner_infer = runner.infer

    def infer(x):
        timeline.append(("time", x.shape[0]))
        return runner_infer(x)

    runner.infer = infer
    monkeypatch.setattr(perfkit.backends, "open_runner", lambda spec, backend, ctx, **kw: runner)

    def fake_memory(spec, backend, batch, ctx, *, precision, brange, artifact):
        calls.append((backend, batch, str(precision), brange))
        timeline.append(("memory", batch))
        if batch == 2:
            raise MeasurementError("child died")
        return MemoryResult(perfkit.results.Where.of(spec, backend, precision, batch, ctx.device), 1000 * batch, "fake")

    monkeypatch.setattr(memory, "start_memory", deferred(fake_memory))
    plan = plan_of((get("eager"),), (1, 2, 4), memory=True)
    results = list(profile_model(tiny_spec, plan, ctx))
    kinds = [(type(r).__name__, getattr(r, "kind", Kind.LATENCY if isinstance(r, LatencyResult) else Kind.MEMORY),
              r.where.batch) for r in results]
    assert kinds == [("LatencyResult", Kind.LATENCY, 1), ("LatencyResult", Kind.LATENCY, 2),
                     ("Failure", Kind.LATENCY, 4), ("MemoryResult", Kind.MEMORY, 1), ("Failure", Kind.MEMORY, 2)]
    assert [b for _, b, _, _ in calls] == [1, 2]  # batch 4 failed its timing: no memory measured there
    assert results[-1].error == "MeasurementError: child died"
    first_memory = timeline.index(("memory", 1))
    assert all(kind == "time" for kind, _ in timeline[:first_memory])  # every timing before any memory process
    assert all(brange.contains(4) for *_, brange in calls)  # the same artifact as the timing
    assert progress.advanced == plan.steps == 6


class Deferred:
    """start_memory's result around a fake: the fake runs when the result is asked for."""

    def __init__(self, where, run, events=None):
        self.where, self.run, self.events = where, run, events if events is not None else []

    def result(self):
        self.events.append(("finish", self.where.batch))
        return self.run()

    def cancel(self):
        self.events.append(("killed", self.where.batch))


def deferred(fake, events=None):
    def start(spec, backend, batch, ctx, **kw):
        if events is not None:
            events.append(("start", batch))
        where = perfkit.results.Where.of(spec, backend, kw.get("precision", "fp32"), batch, ctx.device)
        return Deferred(where, lambda: fake(spec, backend, batch, ctx, **kw), events)
    return start


def test_memory_children_run_two_at_a_time_in_order_and_leftovers_are_killed(tiny_spec, fake_runner, ctx, monkeypatch,
                                                                               stub_peak, plan_of):
    """On a CPU two measuring processes overlap (each measures only itself); results keep the timing
    order, and a profile stopped early (Ctrl-C, a consumer that stops) kills the ones still running."""
    monkeypatch.setattr(perfkit.backends, "open_runner", lambda spec, backend, ctx, **kw: fake_runner())
    monkeypatch.setattr(memory, "concurrent_children", lambda device: 2)
    events = []
    monkeypatch.setattr(memory, "start_memory", deferred(
        lambda spec, backend, batch, ctx, **kw: MemoryResult(perfkit.results.Where.of(spec, backend, "fp32", batch, "cpu"),
                                                             batch, "fake"), events))
    plan = plan_of(("eager",), (1, 2, 4), memory=True)
    got = [r.where.batch for r in profile_model(tiny_spec, plan, ctx) if isinstance(r, MemoryResult)]
    assert got == [1, 2, 4]
    assert events == [("start", 1), ("start", 2), ("finish", 1), ("start", 4), ("finish", 2), ("finish", 4)]
    events.clear()
    run = profile_model(tiny_spec, plan, ctx)
    next(r for r in run if isinstance(r, MemoryResult))
    run.close()
    assert events == [("start", 1), ("start", 2), ("finish", 1), ("killed", 2)]


def test_memory_children_are_one_at_a_time_on_cuda_and_at_most_two_on_a_cpu(monkeypatch):
    """NVML's used memory is device-wide: GPU measurements must not overlap."""
    import perfkit.device

    real = memory.concurrent_children
    monkeypatch.setattr(perfkit.device, "available_cores", lambda: 16)
    assert real("cuda:0") == 1 and real("cpu") == 2
    monkeypatch.setattr(perfkit.device, "available_cores", lambda: 1)
    assert real("cpu") == 1


def test_memory_batches_limit_where_memory_is_measured(tiny_spec, fake_runner, ctx, monkeypatch, stub_peak, plan_of):
    monkeypatch.setattr(perfkit.backends, "open_runner", lambda spec, backend, ctx, **kw: fake_runner())
    measured = []
    monkeypatch.setattr(memory, "start_memory", deferred(lambda spec, backend, batch, ctx, **kw: measured.append(batch)
                        or MemoryResult(perfkit.results.Where.of(spec, backend, "fp32", batch, "cpu"), 1, "fake")))
    plan = plan_of(("eager",), (1, 8), memory=True, memory_batches=(1,))
    list(profile_model(tiny_spec, plan, ctx))
    assert measured == [1] and plan.steps == 3
    assert plan.keys(tiny_spec) == {
        ("latency", "lenet5", "eager", "fp32", 1, "cpu"), ("latency", "lenet5", "eager", "fp32", 8, "cpu"),
        ("memory", "lenet5", "eager", "fp32", 1, "cpu")}


def test_every_precision_is_swept(tiny_spec, fake_runner, ctx, monkeypatch, stub_peak, plan_of):
    opened = []

    def opener(spec, backend, ctx, *, precision, batch):
        opened.append(str(precision))
        return fake_runner(precision=precision)

    monkeypatch.setattr(perfkit.backends, "open_runner", opener)
    plan = plan_of(("eager",), (1,), precisions=("fp32", "bf16"))
    results = list(profile_model(tiny_spec, plan, ctx))
    assert opened == ["fp32", "bf16"] and [r.where.precision for r in results] == ["fp32", "bf16"]


def test_plan_refuses_empty_or_bad_inputs_before_measuring():
    for kwargs in (dict(backends=(), batches=(1,)), dict(backends=("eager",), batches=()),
                   dict(backends=("eager",), batches=(0,)), dict(backends=("eager",), batches=(1,), precisions=())):
        with pytest.raises(UsageError):
            Plan(**kwargs)


def test_a_failure_is_a_failure_result_not_an_exception(tiny_spec, ctx, monkeypatch, plan_of):
    def broken(*a, **k):
        raise RuntimeError("cannot load")

    monkeypatch.setattr(perfkit.backends, "open_runner", broken)
    results = list(profile_model(tiny_spec, plan_of(("eager",), (1, 2), memory=True), ctx))
    assert all(isinstance(r, Failure) and r.kind == Kind.LATENCY and r.error == "RuntimeError: cannot load"
               for r in results)
    assert len(results) == 2  # no memory measured for runtimes that could not be timed
