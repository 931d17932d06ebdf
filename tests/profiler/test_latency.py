"""The profile's sweep (perfkit.profiler.session): every runtime × batch in increasing order over one
entered runner, out-of-memory back-off, failures as results, and the runner's configuration and
roofline position recorded with each SingleStream timing."""

import pytest
import torch

import perfkit.backends
from perfkit.profiler import profile_model
from perfkit.profiler.scenarios.singlestream import LatencyResult
from perfkit.profiler.session import is_out_of_memory
from perfkit.results import Failure, Kind
from perfkit.vocab import BatchRange


def _opener(monkeypatch, runners: dict):
    """Replace ``perfkit.backends.open_runner`` (what the profile opens runtimes with) by a lookup."""
    calls = []

    def opener(spec, backend, ctx, *, precision, batch):
        calls.append((backend.name, ctx, precision, batch))
        runner = runners[backend.name]
        if isinstance(runner, Exception):
            raise runner
        return runner

    monkeypatch.setattr(perfkit.backends, "open_runner", opener)
    return calls


@pytest.fixture
def sweep(plan_of, monkeypatch):
    """``sweep(spec, backends, batches, ctx, precision=..., flops=...)``: the profile's results, SingleStream only."""
    from perfkit.profiler import roofline

    def run(spec, backends, batches, ctx, *, precision="fp32", flops=None):
        monkeypatch.setattr(roofline, "model_flops", lambda spec: flops)
        return profile_model(spec, plan_of(backends, batches, precisions=(precision,)), ctx)

    return run


def _by(results):
    return {(r.where.runtime, r.where.batch): r for r in results}


def test_oom_batch_becomes_a_failure_and_the_sweep_goes_on(tiny_spec, fake_runner, ctx, progress, monkeypatch, sweep):
    eager = fake_runner(fail_at={32})
    _opener(monkeypatch, {"eager": eager, "onnx": RuntimeError("export failed"), "torchscript": fake_runner()})
    results = list(sweep(tiny_spec, ["eager", "onnx", "torchscript"], [32, 1, 8, 64], ctx))
    by = _by(results)
    assert [r.where.batch for r in results if r.where.runtime == "eager"] == [1, 8, 32, 64]  # ascending
    assert isinstance(by["eager", 1], LatencyResult) and isinstance(by["eager", 8], LatencyResult)
    oom = by["eager", 32]
    assert isinstance(oom, Failure) and oom.kind == Kind.LATENCY and "OutOfMemoryError" in oom.error
    assert isinstance(by["eager", 64], Failure) and "skipped" in by["eager", 64].error
    assert 64 not in eager.batches_seen  # backed off: never tried a batch larger than one that failed
    assert eager.entered == eager.exited == 1
    # a runtime that cannot be opened gives a failure per batch; the next runtime still runs
    assert all(isinstance(by["onnx", b], Failure) and "export failed" in by["onnx", b].error for b in (1, 8, 32, 64))
    assert all(isinstance(by["torchscript", b], LatencyResult) for b in (1, 8, 32, 64))
    assert progress.advanced == len(results) == 12  # one step per runtime × batch, failures included
    # every result is named fully: the record's provenance
    w = by["torchscript", 8].where
    assert (w.model, w.precision, w.device, w.weights) == ("lenet5", "fp32", "cpu", tiny_spec.weights.identity)


def test_results_are_yielded_as_they_are_measured(tiny_spec, fake_runner, ctx, monkeypatch, sweep):
    runner = fake_runner()
    _opener(monkeypatch, {"eager": runner})
    gen = sweep(tiny_spec, ["eager"], [1, 2], ctx)
    first = next(gen)
    assert first.where.batch == 1 and 2 not in runner.batches_seen  # batch 2 not measured yet
    assert runner.entered == 1 and runner.exited == 0
    assert next(gen).where.batch == 2
    with pytest.raises(StopIteration):
        next(gen)
    assert runner.exited == 1


def test_runner_is_released_when_the_consumer_stops_early(tiny_spec, fake_runner, ctx, monkeypatch, sweep):
    runner = fake_runner()
    _opener(monkeypatch, {"eager": runner})
    gen = sweep(tiny_spec, ["eager"], [1, 2, 4], ctx)
    next(gen)
    gen.close()
    assert runner.exited == 1


def test_other_errors_do_not_stop_larger_batches(tiny_spec, fake_runner, ctx, monkeypatch, sweep):
    runner = fake_runner(fail_at={8}, error=lambda b: ValueError("shape mismatch"))
    _opener(monkeypatch, {"eager": runner})
    results = list(sweep(tiny_spec, ["eager"], [1, 8, 32], ctx))
    assert [type(r).__name__ for r in results] == ["LatencyResult", "Failure", "LatencyResult"]
    assert results[1].error == "ValueError: shape mismatch"


def test_the_runtime_is_opened_for_a_batch_range_covering_the_batches(tiny_spec, fake_runner, ctx, monkeypatch, sweep):
    calls = _opener(monkeypatch, {"eager": fake_runner()})
    list(sweep(tiny_spec, ["eager"], [1, 512], ctx, precision="fp16"))
    [(name, opened_ctx, precision, brange)] = calls
    assert name == "eager" and precision == "fp16"
    assert brange.contains(1) and brange.contains(512)
    # backends that build one profile per batch (TensorRT) are told the swept batches, through the
    # plan's export options (every step's artifact is then the same one)
    assert opened_ctx.options["profile_batches"] == (1, 512)


def test_result_carries_the_runner_configuration_and_roofline(tiny_spec, fake_runner, ctx, monkeypatch, sweep):
    from perfkit.profiler import roofline

    peaks = []
    monkeypatch.setattr(roofline, "device_peak", lambda device, precision, threads: peaks.append(
        (device, str(precision), threads)) or roofline.Peak(100.0, "stub"))
    _opener(monkeypatch, {"eager": fake_runner()})
    [result] = sweep(tiny_spec, ["eager"], [4], ctx, flops=(1_000_000, "by hand"))
    assert result.runtime_config == {"intra_op_threads": 3, "fake": True} and result.threads == 3
    assert result.self_timed is False and result.flops_source == "by hand"
    assert result.roofline["flops_per_sample"] == 1_000_000
    assert peaks == [("cpu", "fp32", 3)]  # the peak at the runner's own thread count
    assert result.roofline["peak_fraction"] == pytest.approx(result.roofline["achieved_gflops"] / 100.0)
    assert result.roofline["achieved_gflops"] == pytest.approx(
        1_000_000 * 4 / (result.timing.compute.median_ms / 1000) / 1e9)
    [no_flops] = sweep(tiny_spec, ["eager"], [4], ctx)
    assert no_flops.roofline == {} and no_flops.flops_source is None


def test_batch_range_covering():
    assert BatchRange.covering([1, 8, 32]) == BatchRange()  # shares the export cache with `perfkit export`
    wide = BatchRange.covering([4, 1024])
    assert wide.contains(4) and wide.contains(1024) and wide.min <= wide.opt <= wide.max


def test_is_out_of_memory():
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested buffer"))
    assert not is_out_of_memory(ValueError("bad shape"))


def test_real_eager_sweep_measures(tiny_spec, ctx, plan_of):
    results = list(profile_model(tiny_spec, plan_of(["eager"], [1, 2]), ctx))
    assert all(isinstance(r, LatencyResult) for r in results)
    assert results[1].timing.compute.batch == 2 and results[0].threads == torch.get_num_threads()
    assert results[0].runtime_config["inference_mode"] is True


def test_unknown_runtime_is_refused_before_measuring(ctx, plan_of):
    from perfkit.errors import UsageError

    with pytest.raises(UsageError, match="unknown runtime 'pytorch'"):
        plan_of(["pytorch"], [1])
