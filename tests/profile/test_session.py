import pytest

from perfkit.errors import UsageError
from perfkit.profile import profile_model, profile_steps
from perfkit.profile.timing import TimingConfig
from perfkit.store import Kind, Store

FAST = TimingConfig(warmup=1, warmup_seconds=0, iterations=3, min_seconds=0)


def test_profile_model_writes_latency_records_with_roofline_and_reports_progress(tiny_spec, tmp_path):
    steps = []
    with Store(tmp_path / "store.db") as store, store.run() as run_id:
        result = profile_model(tiny_spec, store=store, run_id=run_id, formats=["eager"], batches=[2, 1],
                               config=FAST, memory=False, on_step=steps.append)
    assert result.failed == 0 and result.config is FAST
    assert result.flops > 0 and result.flops_source
    assert [(r["runtime"], r["precision"], r["batch"], r["status"]) for r in result.rows] == [
        ("eager", "fp32", 1, "ok"), ("eager", "fp32", 2, "ok")]
    # on_step comes once before each measurement, naming it; memory off means no memory steps
    assert steps == ["timing lenet5 eager fp32 batch 1", "timing lenet5 eager fp32 batch 2"]
    assert len(steps) == profile_steps(["eager"], [2, 1], ["fp32"], memory=False)
    for row in result.rows:
        lat = row["latency"]
        assert row["memory"] is None and row["error"] is None
        assert lat["iterations"] >= 3 and lat["latency_median_ms"] > 0
        assert lat["achieved_gflops"] == pytest.approx(
            result.flops * row["batch"] / (lat["latency_median_ms"] / 1000) / 1e9)
        assert lat["flops_source"] == result.flops_source and lat["channels_last"] is False
    with Store(tmp_path / "store.db") as store:
        records = store.records(run_id=run_id)
    assert sorted((r.kind, r.batch, r.status) for r in records) == [
        (Kind.LATENCY, 1, "ok"), (Kind.LATENCY, 2, "ok")]
    by_batch = {r.batch: r for r in records}
    for row in result.rows:  # the rows are what was stored
        record = by_batch[row["batch"]]
        assert (record.model, record.runtime, record.weights, record.device) == (
            "lenet5", "eager", tiny_spec.weights.identity, "cpu")
        assert record.metrics["latency_median_ms"] == row["latency"]["latency_median_ms"]


def test_profile_model_refuses_empty_or_bad_inputs_before_measuring(tiny_spec, tmp_path):
    with Store(tmp_path / "store.db") as store, store.run() as run_id:
        for kwargs in (dict(formats=[], batches=[1]), dict(formats=["eager"], batches=[0]),
                       dict(formats=["eager"], batches=[1], threads=0)):
            with pytest.raises(UsageError):
                profile_model(tiny_spec, store=store, run_id=run_id, config=FAST, memory=False, **kwargs)
        assert store.records(run_id=run_id) == []
