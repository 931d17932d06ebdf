"""The Server scenario: its QPS search (a fake LoadGen), perfkit's SUT under the real LoadGen (fake runners
that sleep, so the timings are the SUT's, not a model's), and ``perfkit profile --scenario server`` end to end."""

from __future__ import annotations

import json
import threading
import time
import types
from pathlib import Path

import pytest
import torch

from perfkit.cli import main
from perfkit.profiler import loadgen
from perfkit.profiler.scenarios.server import ServerConfig, configure, search
from perfkit.store import Store

needs_loadgen = pytest.mark.skipif(loadgen.unavailable() is not None, reason="mlcommons-loadgen is not installed")


def _outcome(qps, met, valid=None):
    result = {"result_perf_constraints_met": met, "result_validity": "VALID" if valid else "INVALID",
              "result_99.00_percentile_latency_ns": 1e6 if met else 9e7}
    return loadgen.Outcome("Server", qps, result, "/logs", 1.0)


def _capacity_search(capacity, start, **config):
    """The targets ``search`` tries against a server that meets the bound below ``capacity`` QPS."""
    tried = search(lambda q: _outcome(q, q <= capacity), start, ServerConfig(**config))
    return [round(t.target_qps, 2) for t in tried]


# -- the search --------------------------------------------------------------------------------------

def test_search_doubles_then_bisects_to_the_precision():
    tried = _capacity_search(300, 50, points=10, precision=0.1)
    assert tried[:4] == [50, 100, 200, 400]  # doubled until 400 failed
    good = max(q for q in tried if q <= 300)
    bad = min(q for q in tried if q > 300)
    assert bad / good <= 1.1 and 270 < good <= 300  # bisected to within 10 % of the capacity


def test_search_halves_down_from_a_start_above_capacity():
    tried = _capacity_search(30, 200, points=10)
    assert tried[:4] == [200, 100, 50, 25]
    assert max(q for q in tried if q <= 30) > 25  # then bisected between 25 and 50


def test_search_gives_up_after_three_halvings_and_respects_the_point_budget():
    assert _capacity_search(1, 80, points=10) == [80, 40, 20, 10]  # nothing met: stops, the caller fails
    assert len(_capacity_search(1e9, 1, points=5)) == 5  # never fails: stops at --server-points


def test_compliant_search_counts_only_valid_targets():
    # every target meets the bound, but LoadGen's verdict is VALID only up to 100 QPS
    tried = search(lambda q: _outcome(q, True, valid=q <= 100), 50, ServerConfig(points=6, compliant=True))
    assert [t.target_qps for t in tried][:3] == [50, 100, 200]
    assert max(t.target_qps for t in tried if t.valid) == 100
    assert all(100 < t.target_qps < 200 for t in tried[3:])  # bisecting between the VALID 100 and the INVALID 200


def test_configuration_is_checked(tmp_path):
    values = {"latency_bound_ms": 50.0, "server_max_batch": 4, "batch_timeout_ms": 2.0, "server_workers": 1,
              "server_seconds": 1.0, "server_points": 8, "server_precision": 0.1, "mlperf_compliant": False,
              "loadgen_logs": str(tmp_path / "logs")}
    assert configure(values).max_batch == 4 and (tmp_path / "logs").is_dir()
    for bad in ({"latency_bound_ms": 0.0}, {"server_max_batch": 0}, {"batch_timeout_ms": -1.0},
                {"server_points": 1}, {"server_seconds": 0.0}):
        with pytest.raises(ValueError):
            configure(values | bad)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot be written"):
        configure(values | {"loadgen_logs": str(tmp_path / "file" / "logs")})


# -- perfkit's SUT under the real LoadGen ----------------------------------------------------------

class SleepyRunner:
    """A runtime whose call takes ``fixed + per_sample × batch`` seconds (sleeping: the GIL is free)."""

    def __init__(self, fixed=0.002, per_sample=0.0005, min_batch=1, fail_after=None):
        self.batch = types.SimpleNamespace(min=min_batch, max=16)
        self.fixed, self.per_sample, self.fail_after = fixed, per_sample, fail_after
        self.shapes: list[int] = []
        self.lock = threading.Lock()

    def infer(self, x):
        with self.lock:
            self.shapes.append(x.shape[0])
            if self.fail_after is not None and len(self.shapes) > self.fail_after:
                raise RuntimeError("the runtime broke mid-test")
        time.sleep(self.fixed + self.per_sample * x.shape[0])

    def synchronize(self):
        pass


def _run(runner, qps, batching, tmp_path, bound_ms=50.0, seconds=0.5):
    samples = [torch.full((3, 4, 4), float(i)) for i in range(8)]
    settings = loadgen.settings_for("Server", target_qps=qps, latency_bound_ms=bound_ms, seconds=seconds)
    return loadgen.run_test(runner, samples, batching, settings, tmp_path / f"qps-{qps}", qps)


@needs_loadgen
def test_sut_serves_loadgen_and_reads_its_verdict(tmp_path):
    runner = SleepyRunner()
    out = _run(runner, 200, loadgen.Batching(max_batch=4, timeout_ms=2.0), tmp_path)
    assert out.queries >= 100 and sum(runner.shapes) == out.queries  # every query ran, once
    assert max(runner.shapes) <= 4 and out.mean_batch > 1  # batched, never above the largest batch
    assert 0 < out.p50_ms <= out.p99_ms < 50 and out.constraint_met
    assert 150 < out.scheduled_qps < 260  # LoadGen's Poisson schedule at the target
    assert (tmp_path / "qps-200" / "mlperf_log_summary.txt").read_text().count("Result is") == 1
    assert out.verdict() == "VALID" or out.verdict().startswith("INVALID: early stopping")


@needs_loadgen
def test_sut_pads_below_the_smallest_batch_and_an_overloaded_sut_misses_the_bound(tmp_path):
    runner = SleepyRunner(fixed=0.02, min_batch=2)
    out = _run(runner, 200, loadgen.Batching(max_batch=1), tmp_path, bound_ms=20)
    assert set(runner.shapes) == {2}  # one query per call, padded to the artifact's smallest batch
    assert not out.constraint_met and out.p99_ms > 20 and not out.valid  # 200 QPS of 20 ms calls queue up
    assert "performance constraint" in out.verdict()


@needs_loadgen
def test_a_runner_that_fails_mid_test_raises_after_loadgen_ends(tmp_path):
    runner = SleepyRunner(fail_after=5)
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="broke mid-test"):
        _run(runner, 200, loadgen.Batching(), tmp_path)
    assert len(runner.shapes) == 6 and time.perf_counter() - t0 < 10  # no further calls; LoadGen ended on time


# -- end to end --------------------------------------------------------------------------------------

QUICK = ["--weights", "random", "--no-memory", "--iterations", "5", "--min-seconds", "0.1", "--warmup", "1",
         "--warmup-seconds", "0.05", "--server-seconds", "0.3", "--server-points", "3"]


@needs_loadgen
def test_profile_server_records_qps_p99_verdict_and_keeps_loadgen_logs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "s.db"
    code = main(["profile", "lenet5", "-f", "eager", "-b", "1", "--scenario", "server", "--latency-bound-ms", "50",
                 "--store", str(store), "--json", *QUICK])
    assert code == 0
    with Store(store) as s:
        (rec,) = s.records(kind="server")
    m = rec.metrics
    assert rec.status == "ok" and m["qps"] > 0 and m["p99_ms"] <= 50 and m["latency_bound_ms"] == 50
    assert len(m["trials"]) == 3 and m["qps"] == max(t["target_qps"] for t in m["trials"] if t["met"])
    assert m["verdict"].startswith(("VALID", "INVALID")) and "MLPerf Results Summary" in m["loadgen_summary"]
    assert "not MLPerf-compliant" in m["compliance"]
    logs = Path(m["loadgen_logs"])
    assert len(list(logs.glob("qps-*/mlperf_log_detail.txt"))) == 3  # every target's logs are kept
    printed = json.loads(capsys.readouterr().out)
    assert "server" in json.dumps(printed)


@needs_loadgen
def test_a_bound_no_target_meets_is_a_failed_record_naming_the_targets(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "s.db"
    code = main(["profile", "lenet5", "-f", "eager", "-b", "1", "--scenario", "server", "--latency-bound-ms", "0.001",
                 "--store", str(store), *QUICK])
    assert code == 1
    with Store(store) as s:
        (rec,) = s.records(kind="server")
    assert rec.status == "error" and "no target met p99 ≤ 0.001 ms" in rec.error and "QPS: p99" in rec.error


def test_an_unwritable_log_folder_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code = main(["profile", "lenet5", "-f", "eager", "--scenario", "server", "--loadgen-logs",
                 str(tmp_path / "file" / "x"), "--store", str(tmp_path / "s.db"), *QUICK])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--loadgen-logs" in err and "cannot be written" in err and len(err.splitlines()) == 1


@needs_loadgen
@pytest.mark.slow
def test_ctrl_c_during_a_loadgen_test_interrupts_at_once_and_keeps_what_was_measured(tmp_path):
    """LoadGen runs on a thread of its own: the main thread takes Ctrl-C at once, the run is marked
    interrupted (exit 130) and SingleStream's record, measured before, is kept."""
    import os
    import signal
    import subprocess
    import sys

    store, logs = tmp_path / "s.db", tmp_path / "logs"
    cmd = [sys.executable, "-m", "perfkit", "profile", "lenet5", "-f", "eager", "-b", "1", "--scenario", "server",
           "--store", str(store), "--loadgen-logs", str(logs), *QUICK[:-4], "--server-seconds", "30"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 120
    while not list(logs.glob("*/qps-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # inside LoadGen's 30 s test
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - sent < 10, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    with Store(store) as s:
        run = s.get_run("latest")
        kinds = {r.kind for r in s.records(run["id"])}
    assert run["status"] == "interrupted" and "latency" in kinds and "server" not in kinds


@needs_loadgen
def test_two_workers_batching_share_the_queue_without_losing_or_repeating_a_query(tmp_path):
    """Workers waiting in their batching windows race for the same queries (a worker once woke to an
    empty queue and called the runner with nothing)."""
    runner = SleepyRunner(fixed=0.004, per_sample=0.0)
    out = _run(runner, 400, loadgen.Batching(max_batch=4, timeout_ms=3.0, workers=2), tmp_path)
    assert min(runner.shapes) >= 1 and max(runner.shapes) <= 4
    assert sum(runner.shapes) == out.queries  # every query served once
