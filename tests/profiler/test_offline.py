"""The Offline scenario's loop and search, with fake runners whose requests sleep (so that k of them
really overlap, as a runtime that releases the GIL does) and one real runtime end to end."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from perfkit.backends.base import QUEUE, SERIAL, THREADS, OfflineSession
from perfkit.profiler.scenarios import Point
from perfkit.profiler.scenarios.offline import OfflineConfig, drive, measure, search
from perfkit.profiler.scenarios.singlestream import LatencyResult
from perfkit.record import to_records
from perfkit.results import Kind, Where, describe


def _measure(spec, runner, where, ctx, config, timing=None):
    """The Offline scenario's ``measure`` at ``where``, after a SingleStream ``timing`` at its batch (if given)."""
    earlier = {} if timing is None else {"singlestream": LatencyResult(where, timing, 2, {"intra_op_threads": 2}, False)}
    return measure(Point(spec, runner, where, ctx, config, earlier=earlier))


class FakeOfflineRunner:
    """A runtime whose requests take ``service(k)`` seconds with k in flight (sleeping, GIL released)."""

    name = "fake"
    calibration = None  # an fp32 runtime (Runner.calibration)

    def __init__(self, service, mechanism=THREADS, fail_at=None):
        self.service = service
        self.offline_mechanism = mechanism
        self.fail_at = fail_at
        self.sessions: list[int] = []
        self.closed: list[int] = []
        self.finished = 0  # requests completed by thread-driven sessions (warm-up included)

    def offline_session(self, k, x, cores):
        self.sessions.append(k)
        seconds = self.service(k)
        if self.fail_at == k:
            def call(i):
                raise RuntimeError(f"request {i} failed")
        else:
            def call(i):
                time.sleep(seconds)
                with lock:
                    self.finished += 1
        lock = threading.Lock()
        close = lambda: self.closed.append(k)  # noqa: E731
        threads = max(1, cores // k)
        if self.offline_mechanism == QUEUE:
            return _queue_session(k, seconds, threads, close)
        return OfflineSession(k, threads, f"{k} fake threads", {"k": k}, call=call, close=close)


def _queue_session(k, seconds, threads, close):
    """A queue of k slots: submit blocks while all k are busy; each request ends after ``seconds``."""
    slots = threading.Semaphore(k)
    started = []

    def submit():
        slots.acquire()
        started.append(time.perf_counter())
        threading.Timer(seconds, slots.release).start()

    def wait_all():
        for _ in range(k):
            slots.acquire()
        for _ in range(k):
            slots.release()

    return OfflineSession(k, threads, f"queue of {k}", {"k": k, "started": started}, submit=submit,
                          wait_all=wait_all, close=close)


def scaling(capacity=2, base=0.01):
    """Requests take ``base`` seconds up to ``capacity`` in flight, then slow down beyond it: with 4 in
    flight each takes 6 × base, so 4 in flight stays slower than 2 even when a loaded machine wakes
    every sleeping request up to 4 × base late (the ranking a test relies on must not race the clock)."""
    return lambda k: base if k <= capacity else base * k / capacity * 3


X = torch.zeros(4, 1, 8, 8)  # batch 4


def test_candidates_are_powers_of_two_up_to_the_bound():
    assert OfflineConfig(max_requests=4).candidates() == [1, 2, 4]
    assert OfflineConfig(max_requests=5).candidates() == [1, 2, 4]
    assert OfflineConfig(max_requests=1).candidates() == [1]
    assert OfflineConfig(max_requests=8).candidates(serial=True) == [1]
    with pytest.raises(ValueError):
        OfflineConfig(seconds=0)
    with pytest.raises(ValueError):
        OfflineConfig(max_requests=0)


@pytest.mark.parametrize("mechanism", [THREADS, QUEUE])
def test_search_finds_the_best_k_and_stops_when_more_is_not_faster(mechanism):
    runner = FakeOfflineRunner(scaling(capacity=2), mechanism)
    trials, notes = search(runner, X, OfflineConfig(seconds=0.2, max_requests=8), cores=2)
    assert [t.requests for t in trials] == [1, 2, 4]  # 4 is slower than 2: 8 is never tried
    assert runner.sessions == [1, 2, 4] and runner.closed == [1, 2, 4]  # every session closed
    rate = {t.requests: t.samples_per_s for t in trials}
    assert rate[2] > 1.5 * rate[1] and rate[4] < rate[2]
    best = max(trials, key=lambda t: t.samples_per_s)
    assert best.requests == 2 and best.threads_per_request == 1 and best.config["k"] == 2
    assert all(t.samples % 4 == 0 for t in trials)  # whole batches of 4 samples


@pytest.mark.parametrize("mechanism", [THREADS, QUEUE])
def test_the_window_is_the_fixed_time_plus_the_tail(mechanism):
    runner = FakeOfflineRunner(lambda k: 0.01, mechanism)
    with runner.offline_session(2, X, 2) as session:
        trial = drive(session, 4, OfflineConfig(seconds=0.3))
        started = session.config.get("started")
    # counted exactly what completed in the window: every request but the warm-up round (one per slot)
    done = runner.finished if mechanism == THREADS else len(started)
    assert trial.samples == (done - 2) * 4
    # the window is the fixed time, then the tail: at most one 10 ms request per slot after the deadline
    # (the slack is for a loaded machine waking the sleeper late; a missing tail would fail the lower bound)
    assert 0.3 <= trial.seconds < 0.3 + 0.25
    assert trial.samples / 4 <= 2 * trial.seconds / 0.01 + 2  # no more than two slots can complete
    assert trial.cpu_seconds >= 0 and trial.samples_per_s == trial.samples / trial.seconds


@pytest.mark.parametrize("mechanism", [THREADS, QUEUE])
def test_every_slot_completes_a_request_even_when_one_outlasts_the_window(mechanism):
    runner = FakeOfflineRunner(lambda k: 0.25, mechanism)
    with runner.offline_session(2, X, 2) as session:
        trial = drive(session, 4, OfflineConfig(seconds=0.05, warmup_rounds=0))
    # threads: one request per slot; a queue starts k at once and the next k when those finish
    # (submit blocks only while every slot is busy), each round counted whole
    rounds = 1 if mechanism == THREADS else 2
    assert trial.samples == rounds * 2 * 4
    assert 0.25 * rounds <= trial.seconds < 0.25 * rounds + 0.2  # the window waited for them


def test_the_queue_loop_starts_a_multiple_of_k_requests():
    runner = FakeOfflineRunner(lambda k: 0.007, QUEUE)
    with runner.offline_session(4, X, 4) as session:
        trial = drive(session, 1, OfflineConfig(seconds=0.1, warmup_rounds=2))
        started = session.config["started"]
    assert trial.samples % 4 == 0
    assert len(started) == trial.samples + 2 * 4  # the warm-up rounds are not counted


def test_a_serialising_runtime_is_only_tried_with_one_request():
    runner = FakeOfflineRunner(lambda k: 0.005, SERIAL)
    trials, _ = search(runner, X, OfflineConfig(seconds=0.05, max_requests=4), cores=2)
    assert [t.requests for t in trials] == [1]


def test_a_short_window_is_warned_about():
    runner = FakeOfflineRunner(lambda k: 0.2)
    trials, notes = search(runner, X, OfflineConfig(seconds=0.05, max_requests=1, warmup_rounds=0), cores=2,
                           label="m fake batch 4")
    assert len(trials) == 1 and notes and "--offline-seconds" in notes[0] and "m fake batch 4" in notes[0]


@pytest.mark.parametrize("mechanism", [THREADS, QUEUE])
def test_a_failing_request_fails_the_measurement_in_one_line(mechanism, tiny_spec, ctx):
    if mechanism == QUEUE:
        class Broken(FakeOfflineRunner):
            def offline_session(self, k, x, cores):
                def submit():
                    raise RuntimeError("request failed")
                return OfflineSession(k, 1, "broken queue", {}, submit=submit, wait_all=lambda: None)
        runner = Broken(lambda k: 0.01, QUEUE)
    else:
        runner = FakeOfflineRunner(lambda k: 0.01, fail_at=1)
    where = Where.of(tiny_spec, "fake", "fp32", 2, "cpu")
    with pytest.raises(RuntimeError) as err:  # the profile records it as this point's failure (test_session.py)
        _measure(tiny_spec, runner, where, ctx, OfflineConfig(seconds=0.05))
    assert "failed" in describe(err.value) and "\n" not in describe(err.value)


def test_the_result_records_the_best_k_and_every_k_tried(tiny_spec, ctx):
    runner = FakeOfflineRunner(scaling(capacity=2))
    where = Where.of(tiny_spec, "fake", "fp32", 4, "cpu")
    result = _measure(tiny_spec, runner, where, ctx, OfflineConfig(seconds=0.15, max_requests=4))
    assert result.best.requests == 2 and [t.requests for t in result.trials] == [1, 2, 4]
    [record] = to_records(result)
    record.validate()
    m = record.metrics
    assert record.kind == Kind.THROUGHPUT and record.batch == 4 and m["scenario"] == "offline"
    assert m["samples_per_s"] == result.best.samples_per_s and m["requests"] == 2 and m["threads_per_request"] == 1
    assert [t["requests"] for t in m["trials"]] == [1, 2, 4] and m["runtime_config"] == {"k": 2}
    assert m["window_seconds"] == 0.15 and m["max_requests"] == 4 and m["samples_per_cpu_s"] is None or \
        m["samples_per_cpu_s"] > 0


def test_the_default_session_runs_k_threads_through_infer_and_restores_torch_threads(tiny_spec, ctx):
    """Eager's mechanism (the base class's): k threads calling infer, torch's pool split between them."""
    from perfkit.backends import open_runner

    saved = torch.get_num_threads()
    with open_runner(tiny_spec, "eager", ctx) as runner:
        with runner.offline_session(2, tiny_spec.example_input(3), cores=4) as session:
            assert session.threaded and session.requests == 2 and session.threads_per_request == 2
            assert torch.get_num_threads() == 2 and session.config["intra_op_threads"] == 2
            trial = drive(session, 3, OfflineConfig(seconds=0.05))
        assert torch.get_num_threads() == saved
    assert trial.samples >= 2 * 3 and trial.samples % 3 == 0


def test_onnxruntime_runs_one_session_per_request_without_spinning(tiny_spec, shared_artifacts):
    from perfkit.backends import open_runner
    from perfkit.context import Context

    with open_runner(tiny_spec, "onnx", Context(artifacts=shared_artifacts)) as runner:
        with runner.offline_session(1, tiny_spec.example_input(2), cores=2) as one:
            assert one.config["sessions"] == 1 and one.config["intra_op_spinning"] == "default (on)"
        with runner.offline_session(2, tiny_spec.example_input(2), cores=2) as two:
            assert two.config["sessions"] == 2 and two.threads_per_request == 1
            assert two.config["intra_op_spinning"] is False and "spinning off" in two.mechanism
            trial = drive(two, 2, OfflineConfig(seconds=0.05))
    assert trial.samples >= 4


def test_profile_plans_offline_for_runtimes_that_keep_requests_in_flight(tiny_spec, plan_of):
    """native times itself (no Offline); aoti takes turns (K = 1 only); the plan's keys say so."""
    from perfkit.backends import get

    plan = plan_of(("eager", "aoti", "native"), (1, 8), offline=OfflineConfig(), memory=True)
    assert plan.not_measured() == {"offline": {"native": get("native").runner.offline_note}}
    assert get("aoti").runner.offline_mechanism == SERIAL and get("native").runner.offline_note
    keys = {k for k in plan.keys(tiny_spec) if k[0] == "throughput"}
    assert keys == {("throughput", "lenet5", rt, "fp32", 8, "cpu") for rt in ("eager", "aoti")}
    assert plan.steps == 3 * 2 + 3 * 2 + 2  # latency, memory (every batch), offline
    assert plan_of(plan.backends, (1, 8)).not_measured() == {}


def test_k1_is_the_singlestream_timing_when_the_sweep_has_it(tiny_spec, ctx):
    """SingleStream at the Offline batch is K = 1 (one request in flight, back to back): taken from that
    timing, so the loop starts at K = 2, and a runtime that serialises requests needs no loop at all."""
    from perfkit.profiler.scenarios.offline import from_singlestream
    from perfkit.profiler.timing import LatencyStats, RunnerTiming

    timing = RunnerTiming(LatencyStats.from_samples([10.0, 20.0, 30.0], batch=4), timer="perf_counter")
    single = from_singlestream(timing, 2, {"intra_op_threads": 2})
    assert single.requests == 1 and single.samples == 12 and single.seconds == pytest.approx(0.06)
    assert single.samples_per_s == pytest.approx(4 / 0.020) and single.samples_per_cpu_s is None
    assert single.source == "singlestream timing" and single.config == {"intra_op_threads": 2}

    runner = FakeOfflineRunner(scaling(capacity=2))
    trials, _ = search(runner, X, OfflineConfig(seconds=0.1, max_requests=4), cores=2, single=single)
    assert runner.sessions[0] == 2 and trials[0] is single  # no second K = 1 loop
    serial = FakeOfflineRunner(lambda k: 0.01, SERIAL)
    result = _measure(tiny_spec, serial, Where.of(tiny_spec, "fake", "fp32", 4, "cpu"), ctx, OfflineConfig(), timing)
    assert serial.sessions == [] and result.trials == (result.best,)
    assert (result.best.requests, result.best.samples, result.best.source) == (1, 12, "singlestream timing")
    [record] = to_records(result)
    record.validate()
    assert record.metrics["trials"][0]["source"] == "singlestream timing"


@pytest.mark.parametrize("mechanism", [THREADS, QUEUE])
def test_each_window_is_watched_and_the_most_contended_k_is_the_results(mechanism, tiny_spec, ctx, monkeypatch):
    """Every K's window (not its warm-up) is read by a ContentionMeter; the result and its record carry
    the most contended reading (a contended K may have lost, making the winner suspect), with a note."""
    import perfkit.profiler.scenarios.offline as offline_module
    from perfkit.profiler.contention import Contention
    from perfkit.profiler.timing import LatencyStats, RunnerTiming

    readings = iter([Contention(40.0, 2, 0.1, 0.08, 0.0)])  # K = 2's window: K = 1 comes from SingleStream
    windows = []

    class Meter:
        def __init__(self):
            self.given = next(readings)

        def start(self):
            windows.append("open")

        def stop(self):
            windows.append("close")

        def reading(self):
            return self.given

    monkeypatch.setattr(offline_module, "ContentionMeter", Meter)
    quiet = Contention(2.0, 2, 1.0, 0.04, 0.9)
    timing = RunnerTiming(LatencyStats.from_samples([10.0, 10.0, 10.0], batch=4), timer="perf_counter", contention=quiet)
    single = offline_module.from_singlestream(timing, 2, {})
    assert single.contention is quiet  # K = 1 is that timing, contention included
    runner = FakeOfflineRunner(lambda k: 0.5 if k > 1 else 0.01, mechanism)  # K = 2 is slower: the search stops
    result = _measure(tiny_spec, runner, Where.of(tiny_spec, "fake", "fp32", 4, "cpu"), ctx,
                      OfflineConfig(seconds=0.05, max_requests=4), timing)
    assert windows == ["open", "close"] and [t.requests for t in result.trials] == [1, 2]
    assert result.best.source == "singlestream timing" and result.contention.other_cpu_pct == 40.0
    assert any("contended: other processes used 40 % of the CPU" in n for n in result.warnings)
    [record] = to_records(result)
    record.validate()
    assert record.metrics["other_cpu_pct"] == 40.0 and record.metrics["contended"] is True
    assert [t["other_cpu_pct"] for t in record.metrics["trials"]] == [2.0, 40.0]


def test_cpu_seconds_count_every_thread_of_the_process():
    """samples per CPU-second divide by the whole process's CPU time: a request slot's thread counts
    (time.process_time, on every platform; getrusage exists on POSIX only)."""
    from perfkit.profiler.scenarios.offline import _cpu_seconds

    burned = {}

    def spin():
        start = time.thread_time()
        while time.thread_time() - start < 0.2:
            pass
        burned["s"] = time.thread_time() - start

    before = _cpu_seconds()
    worker = threading.Thread(target=spin)
    worker.start()
    worker.join()
    assert _cpu_seconds() - before >= burned["s"] >= 0.2
