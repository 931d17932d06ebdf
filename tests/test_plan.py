"""perfkit.plan: each artifact resolved once and handed to every step; the plan's points and keys."""

from __future__ import annotations

import pytest

import perfkit.artifacts
from perfkit import pipeline
from perfkit.backends import get, prepare
from perfkit.context import Context
from perfkit.plan import Plan, ScenarioRun
from perfkit.profiler.scenarios import get as scenario
from perfkit.profiler.scenarios.offline import OfflineConfig
from perfkit.profiler.timing import TimingConfig
from perfkit.store import Kind

FAST = TimingConfig(warmup=1, warmup_seconds=0.0, iterations=3, min_seconds=0.0)
RUNS = (ScenarioRun(scenario("singlestream"), FAST), ScenarioRun(scenario("offline"), OfflineConfig(0.05, 2)))


@pytest.fixture
def resolutions(monkeypatch):
    """Every ``ensure_artifact`` call (cache lookup or export) as (backend, precision); ``fail`` names
    backends whose export fails."""
    calls, fail = [], set()
    real = perfkit.artifacts.ensure_artifact

    def counted(spec, backend, ctx, **kw):
        calls.append((backend.name, str(kw.get("precision"))))
        if backend.name in fail:
            raise RuntimeError(f"{backend.name} export broke")
        return real(spec, backend, ctx, **kw)

    monkeypatch.setattr(perfkit.artifacts, "ensure_artifact", counted)
    return calls, fail


def _cfg(**kw):
    base = dict(models=["lenet5"], weights="random", runtimes=["torchscript", "onnx"], batches=[1, 2],
                parity_samples=2, parity_batches=[1, 2], scenarios=RUNS, memory=True)
    return pipeline.RunConfig(**{**base, **kw})


def test_every_step_of_a_run_gets_the_artifact_resolved_once(store, resolutions):
    calls, _ = resolutions
    result = pipeline.run_pipeline(_cfg(), store)
    assert result.failures == []
    # export, parity, SingleStream, Offline and memory (whose children are handed it) share one artifact each
    assert sorted(calls) == [("onnx", "fp32"), ("torchscript", "fp32")]
    exports = {r.runtime: r for r in store.records(result.run_id, kind=Kind.EXPORT)}
    latency = [r for r in store.records(result.run_id, kind=Kind.LATENCY) if r.runtime in exports]
    assert latency and {r.runtime for r in latency} == set(exports)


def test_a_failed_export_is_every_steps_failure_and_is_not_tried_again(store, resolutions):
    calls, fail = resolutions
    fail.add("onnx")
    result = pipeline.run_pipeline(_cfg(memory=False), store)
    assert calls.count(("onnx", "fp32")) == 1  # export, parity and profile did not each export again
    failed = {(r.kind, r.batch) for r in store.records(result.run_id) if r.runtime == "onnx" and r.status == "error"}
    assert {Kind.EXPORT, Kind.PARITY, Kind.LATENCY, Kind.THROUGHPUT} <= {k for k, _ in failed}
    assert all("onnx export broke" in r.error for r in store.records(result.run_id)
               if r.runtime == "onnx" and r.status == "error")
    assert all(r.status == "ok" for r in store.records(result.run_id) if r.runtime == "torchscript")


def test_one_context_resolves_once_a_new_one_looks_again(tiny_spec, tmp_path, resolutions):
    calls, _ = resolutions
    ctx = Context(artifacts=tmp_path)
    first = prepare(tiny_spec, "onnx", ctx)
    assert prepare(tiny_spec, "onnx", ctx.replace(threads=1)) is first  # copies share the memo
    assert calls == [("onnx", "fp32")]
    again = prepare(tiny_spec, "onnx", Context(artifacts=tmp_path))
    assert again.cached and again.sha256 == first.sha256 and len(calls) == 2
    prepare(tiny_spec, "onnx", ctx, batch=perfkit.vocab.BatchRange(1, 1, 1))  # another batch range: another artifact
    assert len(calls) == 3


def test_the_plans_export_options_are_every_steps(tiny_spec):
    """TensorRT builds an optimization profile per timed batch: the option is set for every step by the
    plan (not by the profiler behind the plan's back), so the engine timed is the one parity checked."""
    plan = Plan((get("eager"), get("onnx")), (8, 1, 32), covers=(4, 64))
    assert plan.batches == (1, 8, 32)
    assert plan.export_options({}) == {"profile_batches": (1, 8, 32)}
    assert plan.export_options({"profile_batches": (4,), "opset": None}) == {"profile_batches": (4,)}  # the user's wins
    assert plan.batch_range.contains(64) and plan.batch_range.contains(1)
    ctx = plan.context(Context())
    assert ctx.options["profile_batches"] == (1, 8, 32)
    tensorrt = get("tensorrt")
    assert tensorrt.export_options(ctx.options, "fp32")["profile_batches"] == (1, 8, 32)
    assert "profile_batches" not in get("onnx").export_options(ctx.options, "fp32")  # only who declares it


def test_the_plan_counts_its_points_and_knows_its_keys(tiny_spec):
    plan = Plan(("eager", "onnx", "native"), (1, 4), scenarios=RUNS, memory_batches=(4,))
    # SingleStream: 3 × 2; Offline (native keeps one request in flight: not measured): 2; memory at batch 4: 3
    assert plan.steps == 6 + 2 + 3
    keys = plan.keys(tiny_spec)
    assert ("throughput", "lenet5", "onnx", "fp32", 4, "cpu") in keys
    assert not any(k[0] == "throughput" and k[2] == "native" for k in keys)
    assert sorted(plan.not_measured()) == ["offline"]
    with pytest.raises(ValueError, match="base one"):
        Plan(("eager",), (1,), scenarios=RUNS[1:])
