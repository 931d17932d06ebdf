"""The contention sampler: other processes' CPU share from /proc/stat and this process's CPU time
(fake readers), the threshold's edges, what is not measured, and one real busy machine."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from perfkit.profiler import contention as C
from perfkit.profiler.contention import CONTENDED_PCT, MIN_WINDOW_SECONDS, Contention, ContentionMeter, worst

JIFFY = 0.25  # a binary fraction, so the expected percentages are exact


def fake_machine(monkeypatch, cpus, steps):
    """Each snapshot the meter takes reads the next step: (wall s, own CPU s, {cpu: idle jiffies} or None).

    The idle jiffies land in the idle field (4th); iowait (5th) is fixed, and the busy fields hold
    noise, which the method must ignore."""
    steps = iter(steps)
    current = {}

    def read_proc_stat():
        current.update(zip(("wall", "own", "idle"), next(steps)))
        if current["idle"] is None:
            return None
        return {c: (1000 + 7 * c, 3, 500, idle, 10, 0, 2, 0, 0, 0) for c, idle in current["idle"].items()}

    monkeypatch.setattr(C, "allowed_cpus", lambda: frozenset(cpus))
    monkeypatch.setattr(C, "read_proc_stat", read_proc_stat)
    monkeypatch.setattr(C, "_now", lambda: current["wall"])
    monkeypatch.setattr(C, "own_cpu_seconds", lambda: current["own"])
    monkeypatch.setattr(C, "_jiffy_seconds", lambda: JIFFY)


def one_window(monkeypatch, cpus, wall, own, idle_jiffies) -> Contention:
    """A window of ``wall`` seconds in which this process used ``own`` CPU seconds and the CPUs
    ``cpus`` were idle for ``idle_jiffies`` jiffies (spread over them)."""
    per_cpu = {c: idle_jiffies // len(cpus) + (1 if i < idle_jiffies % len(cpus) else 0) for i, c in enumerate(cpus)}
    fake_machine(monkeypatch, cpus, [(100.0, 7.0, {c: 0 for c in cpus}), (100.0 + wall, 7.0 + own, per_cpu)])
    meter = ContentionMeter()
    with meter.window():
        pass
    return meter.reading()


def test_other_processes_share_is_busy_time_minus_this_process(monkeypatch):
    # 2 CPUs × 2 s = 4 CPU-s; idle 4 jiffies = 1 s; this process 1 s: others used 2 CPU-s = 50 %
    r = one_window(monkeypatch, [0, 1], wall=2.0, own=1.0, idle_jiffies=4)
    assert r.other_cpu_pct == 50.0 and r.other_cpu_seconds == 2.0 and r.idle_cpu_seconds == 1.0
    assert r.cpus == 2 and r.wall_seconds == 2.0 and r.contended is True
    assert r.message() == "contended: other processes used 50 % of the CPU (1.0 of 2 cores)"


def test_only_the_cpus_this_process_may_run_on_count(monkeypatch):
    # CPUs 2 and 3 of a bigger machine: CPU 0 and 1's lines (busy or not) are not read
    fake_machine(monkeypatch, [2, 3], [(0.0, 0.0, {0: 0, 1: 0, 2: 0, 3: 0}), (1.0, 1.0, {0: 0, 1: 0, 2: 2, 3: 2})])
    meter = ContentionMeter()
    with meter.window():
        pass
    assert meter.reading().other_cpu_pct == 0.0  # 2 CPU-s: 1 idle, 1 this process's


def test_threshold_edge(monkeypatch):
    # 5 CPUs × 2 s = 10 CPU-s; idle 32 jiffies = 8 s: others used 10 % exactly when this process used 1 s
    at = one_window(monkeypatch, [0, 1, 2, 3, 4], wall=2.0, own=1.0, idle_jiffies=32)
    assert at.other_cpu_pct == CONTENDED_PCT and at.contended is True
    below = one_window(monkeypatch, [0, 1, 2, 3, 4], wall=2.0, own=1.0 + 2**-10, idle_jiffies=32)
    assert below.other_cpu_pct < CONTENDED_PCT and below.contended is False
    assert below.message().startswith("quiet: other processes used 10 % of the CPU")  # rounded, still quiet


def test_a_core_taken_on_a_saturated_many_core_machine_is_contention(monkeypatch):
    # 16 CPUs, 1 s: others used one core (6.25 %, under the percentage) while a quarter core was idle
    saturated = one_window(monkeypatch, list(range(16)), wall=1.0, own=14.75, idle_jiffies=1)
    assert saturated.other_cpu_pct == 6.25 and saturated.contended is True
    assert saturated.message() == ("contended: other processes used 6 % of the CPU (1.0 of 16 cores, under half a "
                                   "core left idle)")
    # the same core taken while four were idle: this process's threads had room elsewhere
    roomy = one_window(monkeypatch, list(range(16)), wall=1.0, own=11.0, idle_jiffies=16)
    assert roomy.other_cpu_pct == 6.25 and roomy.contended is False
    # under half a core taken (a shell, a browser tab) on a saturated machine: background, not contention
    light = one_window(monkeypatch, list(range(16)), wall=1.0, own=15.5, idle_jiffies=1)
    assert light.other_cpu_seconds == 0.25 and light.contended is False


def test_windows_accumulate(monkeypatch):
    # two 0.5 s windows on 2 CPUs (the CUDA path's loops, one Offline K): others busy only in the second
    fake_machine(monkeypatch, [0, 1], [
        (0.0, 0.0, {0: 0, 1: 0}), (0.5, 1.0, {0: 0, 1: 0}),  # this process used both CPUs
        (9.0, 5.0, {0: 50, 1: 50}), (9.5, 5.5, {0: 50, 1: 50}),  # others used 0.5 of the 1 CPU-s
    ])
    meter = ContentionMeter()
    for _ in range(2):
        meter.start()
        meter.stop()
    r = meter.reading()
    assert r.wall_seconds == 1.0 and r.other_cpu_pct == 25.0 and r.contended is True


def test_never_negative(monkeypatch):
    # a truncated jiffy can leave idle + own a hair above wall × CPUs: recorded as 0, not -0.6 %
    assert one_window(monkeypatch, [0, 1], wall=2.0, own=2.0, idle_jiffies=9).other_cpu_pct == 0.0


def test_no_proc_stat_is_not_measured_never_clean(monkeypatch):
    fake_machine(monkeypatch, [0, 1], [(0.0, 0.0, None), (2.0, 1.0, None)])
    meter = ContentionMeter()
    with meter.window():
        pass
    r = meter.reading()
    assert r.other_cpu_pct is None and r.contended is None  # None, not False
    assert "not measured" in r.message() and "/proc/stat" in r.message()


def test_no_affinity_is_not_measured(monkeypatch):
    monkeypatch.setattr(C, "allowed_cpus", lambda: None)  # macOS, Windows: no sched_getaffinity
    meter = ContentionMeter()
    with meter.window():
        pass
    assert meter.reading().contended is None


def test_cpus_missing_from_proc_stat_are_not_measured(monkeypatch):
    fake_machine(monkeypatch, [0, 5], [(0.0, 0.0, {0: 0, 1: 0}), (2.0, 1.0, {0: 0, 1: 0})])
    meter = ContentionMeter()
    with meter.window():
        pass
    assert meter.reading().other_cpu_pct is None


def test_a_window_too_short_for_jiffies_is_not_measured(monkeypatch):
    short = MIN_WINDOW_SECONDS / 2
    fake_machine(monkeypatch, [0, 1], [(0.0, 0.0, {0: 0, 1: 0}), (short, 0.0, {0: 0, 1: 0})])
    meter = ContentionMeter()
    with meter.window():
        pass
    r = meter.reading()
    assert r.other_cpu_pct is None and r.contended is None and "jiffies" in r.unmeasured


def test_read_proc_stat_parses_per_cpu_lines_only(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 5 100 1 0 0 0 0 0\ncpu0 4 0 2 50 1 0 0 0 0 0\ncpu1 6 0 3 50 0 0 0 0 0 0\n"
                    "intr 1 2 3\nctxt 42\n")
    assert C.read_proc_stat(str(stat)) == {0: (4, 0, 2, 50, 1, 0, 0, 0, 0, 0), 1: (6, 0, 3, 50, 0, 0, 0, 0, 0, 0)}
    assert C.read_proc_stat(str(tmp_path / "missing")) is None
    stat.write_text("cpu0 4 0 two 50\n")
    assert C.read_proc_stat(str(stat)) is None  # an unknown format: not measured, not misread


def test_the_real_readers_measure_something_here():
    """On Linux the real readers give a number (a quiet machine is not asserted: CI is shared)."""
    if C.read_proc_stat() is None or C.allowed_cpus() is None:
        pytest.skip("no /proc/stat here")
    meter = ContentionMeter()
    with meter.window():  # a window long enough for jiffies, this process busy through it
        end = time.perf_counter() + MIN_WINDOW_SECONDS
        while time.perf_counter() < end:
            pass
    r = meter.reading()
    assert isinstance(r.other_cpu_pct, float) and 0.0 <= r.other_cpu_pct <= 100.0
    assert r.cpus == len(C.allowed_cpus()) and r.wall_seconds >= MIN_WINDOW_SECONDS


def test_worst_prefers_a_contended_reading_and_never_invents_a_clean_one():
    quiet, busy = Contention(3.0, 2, 1.0, 0.06, 1.5), Contention(40.0, 2, 1.0, 0.8, 0.0)
    unmeasured = Contention(None, 2, 0.1, unmeasured="short")
    assert worst([quiet, None, busy, unmeasured]) is busy
    assert worst([unmeasured, quiet]) is quiet
    assert worst([None, unmeasured]) is unmeasured and worst([None]) is None and worst([]) is None


BUSY_LOOP = ("import time\nend = time.perf_counter() + 0.2\nwhile time.perf_counter() < end: pass\n"
             "print('ready', flush=True)\nwhile True: pass\n")


@pytest.fixture
def busy_machine():
    """One busy loop per available core, each spinning before it says ready; killed afterwards.

    Tests beside it are not flaky: they assert the other processes' CPU use, which the loops
    guarantee (at least their fair share of the cores beside this process's threads), never how
    slow a timing got."""
    from perfkit.device import available_cores

    if C.read_proc_stat() is None or C.allowed_cpus() is None:
        pytest.skip("no /proc/stat here: contention is recorded as not measured")
    loops = [subprocess.Popen([sys.executable, "-I", "-S", "-c", BUSY_LOOP], stdout=subprocess.PIPE, text=True)
             for _ in range(available_cores())]
    try:
        assert all(p.stdout.readline().strip() == "ready" for p in loops)
        yield len(loops)
    finally:
        for p in loops:
            p.kill()
            p.wait()
            p.stdout.close()


@pytest.mark.filterwarnings("ignore:.*latency CV:perfkit.profiler.timing.NoisyTimingWarning")
def test_a_timing_beside_busy_loops_is_contended(busy_machine, fake_runner):
    import torch

    from perfkit.profiler.timing import ContendedTimingWarning, TimingConfig, time_runner

    with pytest.warns(ContendedTimingWarning, match="contended: other processes used"):
        timing = time_runner(fake_runner(sleep_s=0.001), torch.zeros(1, 1), TimingConfig(1, 0, 5, 0.3))
    assert timing.contention.contended is True and timing.contention.other_cpu_pct >= 2.5 * CONTENDED_PCT


@pytest.mark.slow  # the ONNX export and two runtimes' timings beside the loops: 5-30 s on 2 shared cores
def test_a_profile_beside_busy_loops_is_marked_contended(busy_machine, capsys, shared_artifacts):
    """`perfkit profile -f eager,onnx` beside the loops: every timing is marked contended, far above
    the threshold, in the records and in the CLI's warnings (ONNX Runtime's too, whose latency the
    issue found unchanged by a busy loop)."""
    from perfkit.cli import main

    rc = main(["profile", "lenet5", "--weights", "random", "-f", "eager,onnx", "-b", "1", "--no-memory", "--json",
               "--iterations", "5", "--min-seconds", "0.5", "--warmup", "1", "--warmup-seconds", "0.1",
               "--artifacts", str(shared_artifacts)])
    captured = capsys.readouterr()
    assert rc == 0
    latency = [r for r in json.loads(captured.out)["records"] if r["kind"] == "latency"]
    assert {r["runtime"] for r in latency} == {"eager", "onnx"}
    for r in latency:
        assert r["metrics"]["contended"] is True, r["runtime"]
        assert r["metrics"]["other_cpu_pct"] >= 2.5 * CONTENDED_PCT, (r["runtime"], r["metrics"]["other_cpu_pct"])
        assert any("contended: other processes used" in w for w in r["metrics"]["warnings"])
    assert captured.err.count("contended: other processes used") >= 2  # the CLI's warning lines


@pytest.mark.filterwarnings("ignore::perfkit.profiler.timing.NoisyTimingWarning")
def test_a_timing_records_the_share_as_a_number(fake_runner):
    """Whatever else runs on this machine (a quiet one is not asserted: CI is shared), a timing's
    record carries other_cpu_pct as a number and contended as a bool."""
    import torch

    from perfkit.profiler.scenarios.singlestream import LatencyResult
    from perfkit.profiler.timing import TimingConfig, time_runner
    from perfkit.record import to_records
    from perfkit.results import Where

    if C.read_proc_stat() is None or C.allowed_cpus() is None:
        pytest.skip("no /proc/stat here")
    timing = time_runner(fake_runner(sleep_s=0.001), torch.zeros(1, 1), TimingConfig(1, 0, 3, MIN_WINDOW_SECONDS))
    [record] = to_records(LatencyResult(Where("m", "fake", "fp32", 1, device="cpu"), timing, 1, {}, False))
    record.validate()
    assert isinstance(record.metrics["other_cpu_pct"], float) and isinstance(record.metrics["contended"], bool)
