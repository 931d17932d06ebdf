import itertools
import statistics
import warnings

import numpy as np
import pytest

from perfkit.profiler.timing import (
    LatencyStats, NoisyTimingWarning, TimingConfig, measure, percentile, time_runner,
)
from perfkit.store import SCHEMAS, Kind

def test_percentile_matches_numpy_linear_interpolation():
    rng = np.random.default_rng(0)
    samples = sorted(rng.exponential(3.0, size=37).tolist())
    for q in (0, 10, 50, 90, 95, 99, 100):
        assert percentile(samples, q) == pytest.approx(np.percentile(samples, q, method="linear"), rel=1e-12)


def test_stats_on_known_samples():
    # Computed by hand: sorted [10, 20, 30, 40]; p90 rank 0.9*3 = 2.7 -> 30 + 0.7*10 = 37.
    stats = LatencyStats.from_samples([40.0, 10.0, 30.0, 20.0], batch=8, warmup_iterations=3)
    assert stats.mean_ms == 25.0
    assert stats.median_ms == 25.0
    assert stats.p90_ms == pytest.approx(37.0)
    assert stats.p95_ms == pytest.approx(38.5)
    assert stats.p99_ms == pytest.approx(39.7)
    assert (stats.min_ms, stats.max_ms) == (10.0, 40.0)
    assert stats.std_ms == pytest.approx(statistics.stdev([10, 20, 30, 40]))  # n - 1
    assert stats.cv == pytest.approx(stats.std_ms / 25.0)
    assert stats.throughput_per_s == pytest.approx(8 / 0.025)  # batch / median
    assert stats.iterations == 4 and stats.warmup_iterations == 3
    assert stats.noisy  # CV 52%
    assert not LatencyStats.from_samples([10.0] * 9 + [10.5], batch=1).noisy


def test_metrics_carry_the_required_latency_keys():
    metrics = LatencyStats.from_samples([1.0, 2.0, 3.0], batch=2).metrics()
    assert SCHEMAS[Kind.LATENCY].required <= metrics.keys() <= SCHEMAS[Kind.LATENCY].permitted
    assert all(isinstance(v, (int, float)) for v in metrics.values())


@pytest.mark.filterwarnings("ignore::perfkit.profiler.timing.NoisyTimingWarning")
def test_synchronize_after_every_call_and_count_bounds(fake_runner):
    runner = fake_runner()
    config = TimingConfig(warmup=7, warmup_seconds=0, iterations=25, min_seconds=0)
    timing = time_runner(runner, __import__("torch").zeros(4, 3, 8, 8), config)
    kinds = [e for e, _ in runner.events]
    assert kinds == ["infer", "sync"] * (7 + 25)  # every call, warm-up included, is synchronised
    assert timing.compute.warmup_iterations == 7
    assert timing.compute.iterations == 25
    assert timing.timer == "perf_counter" and timing.h2d is None and timing.e2e is None


def test_warmup_by_time_and_measurement_by_time(fake_runner):
    runner = fake_runner(sleep_s=0.002)
    config = TimingConfig(warmup=1, warmup_seconds=0.05, iterations=2, min_seconds=0.06)
    samples, warm = measure(lambda: runner.infer(__import__("torch").zeros(1, 1)), runner.synchronize, config)
    calls = [t for e, t in runner.events if e == "infer"]
    first_measured = calls[warm]
    assert warm > 1  # the count alone (1) was not enough: time kept it warming
    assert first_measured - calls[0] >= 0.049  # the loop clock starts just before the first call
    assert len(samples) > 2
    assert sum(samples) >= 0.06 * 1000 * 0.9  # ran for min_seconds, not just 2 calls


def test_cv_warning_on_unstable_timings(fake_runner):
    # alternate per infer call (the runner's event count also holds the synchronize after each call)
    sleeps = itertools.cycle([0.012, 0.001])
    runner = fake_runner(sleep_s=lambda n: next(sleeps))
    config = TimingConfig(warmup=0, warmup_seconds=0, iterations=10, min_seconds=0)
    with pytest.warns(NoisyTimingWarning, match="CV"):
        timing = time_runner(runner, __import__("torch").zeros(1, 3, 4, 4), config)
    assert timing.compute.noisy and timing.metrics()["cv_warning"] is True


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        TimingConfig(iterations=0)


@pytest.mark.filterwarnings("ignore::perfkit.profiler.timing.NoisyTimingWarning")
def test_runner_metrics_fit_the_latency_schema(fake_runner):
    timing = time_runner(fake_runner(), __import__("torch").zeros(2, 1), TimingConfig(1, 0, 3, 0))
    assert SCHEMAS[Kind.LATENCY].required <= timing.metrics().keys() <= SCHEMAS[Kind.LATENCY].permitted


class _SelfTimed:
    """A runner that times itself (like the native C++ runner): the profiler must not call infer."""

    self_timed = True
    device = __import__("torch").device("cpu")
    label = "native/fp32/cpu"

    def __init__(self):
        self.asked = []

    def infer(self, x):
        raise AssertionError("a self-timed runner is not timed through infer")

    def synchronize(self):
        raise AssertionError("a self-timed runner is not synchronised by the profiler")

    def time_self(self, batch, config):
        self.asked.append((batch, config))
        return {"samples_ms": [2.0, 1.0, 3.0, 2.0], "warmup_iterations": config.warmup, "load_seconds": 0.25}


def test_a_self_timed_runner_is_timed_by_its_own_loop():
    runner = _SelfTimed()
    config = TimingConfig(warmup=4, warmup_seconds=0, iterations=4, min_seconds=0)
    with pytest.warns(NoisyTimingWarning, match="native/fp32/cpu"):  # its samples vary by 41%: said so too
        timing = time_runner(runner, __import__("torch").zeros(8, 3, 4, 4), config)
    assert runner.asked == [(8, config)]  # the batch of the input, the same bounds
    assert timing.compute.batch == 8 and timing.compute.median_ms == 2.0 and timing.compute.iterations == 4
    assert timing.compute.warmup_iterations == 4 and timing.compute.throughput_per_s == pytest.approx(8 / 0.002)
    assert timing.timer.startswith("native") and timing.load_seconds == 0.25
    metrics = timing.metrics()
    assert metrics["load_seconds"] == 0.25 and metrics["timer"] == timing.timer
    assert metrics.keys() <= SCHEMAS[Kind.LATENCY].permitted


@pytest.mark.gpu
def test_cuda_timing_runs_on_the_runner_device_with_cudnn_benchmark(fake_runner):
    import torch

    device = f"cuda:{torch.cuda.device_count() - 1}"
    seen = []
    runner = fake_runner(device=device)
    infer = runner.infer

    def watching(x):
        seen.append((torch.cuda.current_device(), torch.backends.cudnn.benchmark, x.device))
        return infer(x)

    runner.infer = watching
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoisyTimingWarning)
            timing = time_runner(runner, torch.zeros(2, 3, 4, 4), TimingConfig(1, 0, 3, 0))
        assert torch.backends.cudnn.benchmark is False  # restored
    finally:
        torch.backends.cudnn.benchmark = before
    index = torch.device(device).index
    assert seen and all(d == index and bench is True for d, bench, _ in seen)
    assert all(x.type == "cuda" for _, _, x in seen)  # compute and end-to-end loops feed device tensors
    assert timing.timer.startswith("cuda-events") and "cudnn.benchmark on" in timing.timer


@pytest.mark.gpu
def test_cuda_events_h2d_and_e2e(tiny_spec, tmp_path):
    from perfkit.backends import open_runner
    from perfkit.context import Context

    config = TimingConfig(warmup=3, warmup_seconds=0, iterations=10, min_seconds=0)
    ctx = Context(device="cuda:0", artifacts=tmp_path)
    with open_runner(tiny_spec, "eager", ctx) as runner, warnings.catch_warnings():
        warnings.simplefilter("ignore", NoisyTimingWarning)
        timing = time_runner(runner, tiny_spec.example_input(32), config)
    assert timing.timer.startswith("cuda-events")
    assert timing.h2d.median_ms > 0 and timing.e2e.median_ms > 0
    # end-to-end includes the copy and the compute
    assert timing.e2e.median_ms >= timing.h2d.median_ms
    metrics = timing.metrics()
    assert {"h2d_median_ms", "e2e_median_ms"} <= metrics.keys()


class _ScriptedMeter:
    """A ContentionMeter that logs where its windows open and close and reads ``reading``."""

    reading_to_give = None
    log: list = []

    def start(self):
        self.log.append(("meter start", 0.0))

    def stop(self):
        self.log.append(("meter stop", 0.0))

    def window(self):
        import contextlib

        @contextlib.contextmanager
        def span():
            self.start()
            yield
            self.stop()
        return span()

    def reading(self):
        return self.reading_to_give


def _scripted(monkeypatch, log, reading):
    import perfkit.profiler.timing as timing_module

    monkeypatch.setattr(_ScriptedMeter, "log", log)
    monkeypatch.setattr(_ScriptedMeter, "reading_to_give", reading)
    monkeypatch.setattr(timing_module, "ContentionMeter", _ScriptedMeter)


def test_contention_is_measured_over_the_measured_loop_only(fake_runner, monkeypatch):
    from perfkit.profiler.contention import Contention

    runner = fake_runner()
    quiet = Contention(1.5, 2, 1.0, 0.03, 0.4)
    _scripted(monkeypatch, runner.events, quiet)
    from perfkit.profiler.timing import ContendedTimingWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoisyTimingWarning)  # a fake runner's CV is whatever this machine gives
        warnings.simplefilter("error", ContendedTimingWarning)  # a quiet machine is not called contended
        timing = time_runner(runner, __import__("torch").zeros(1, 1), TimingConfig(2, 0, 3, 0))
    kinds = [e for e, _ in runner.events]
    assert kinds == ["infer", "sync"] * 2 + ["meter start"] + ["infer", "sync"] * 3 + ["meter stop"]
    assert timing.contention is quiet


def test_a_contended_timing_warns_whatever_its_cv(fake_runner, monkeypatch):
    from perfkit.profiler.contention import Contention
    from perfkit.profiler.timing import ContendedTimingWarning

    busy = Contention(47.0, 2, 1.0, 0.94, 0.0)
    _scripted(monkeypatch, [], busy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        timing = time_runner(fake_runner(), __import__("torch").zeros(1, 1), TimingConfig(1, 0, 3, 0), label="m eager")
    [w] = [w for w in caught if w.category is ContendedTimingWarning]
    assert issubclass(ContendedTimingWarning, NoisyTimingWarning)  # the sweep keeps it with the record's warnings
    assert str(w.message).startswith("m eager: contended: other processes used 47 % of the CPU (0.9 of 2 cores)")
    assert "re-run on a quiet machine" in str(w.message) and timing.contention is busy


def test_a_self_timed_runner_is_watched_over_its_whole_run(monkeypatch):
    runner = _SelfTimed()
    log = []
    _scripted(monkeypatch, log, None)
    original = runner.time_self
    runner.time_self = lambda batch, config: (log.append(("time_self", 0.0)), original(batch, config))[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoisyTimingWarning)
        time_runner(runner, __import__("torch").zeros(2, 1), TimingConfig(1, 0, 4, 0))
    assert [e for e, _ in log] == ["meter start", "time_self", "meter stop"]
