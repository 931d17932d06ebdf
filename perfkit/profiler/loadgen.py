"""MLPerf LoadGen driving perfkit's runners: the system under test (SUT), the sample library (QSL)
and one LoadGen test, with LoadGen's own verdict read back from its detail log.

LoadGen (PyPI ``mlcommons-loadgen``, import ``mlperf_loadgen``) decides when queries arrive (Poisson
in the Server scenario), measures every query's latency from issue to completion and judges the
run (VALID, or which of its checks failed). perfkit supplies what serves the queries:

- the QSL: ``samples`` input tensors made before the test, so preprocessing is outside the timed
  path (LoadGen's load/unload callbacks have nothing left to do);
- the SUT, ``DynamicBatcher``: LoadGen's issuing thread only appends queries to a queue; ``workers``
  threads each take the oldest query, wait up to ``timeout_ms`` from its arrival for more (up to
  ``max_batch``, as a serving system's dynamic batcher does), stack their tensors, call the runner's
  ``infer`` once and complete them together. A runner whose batch range starts above the batch formed
  gets it padded with zeros. A worker whose runner raises records the error and from then on
  completes every query at once without running it, so LoadGen ends its test on time and the caller
  raises the error (nothing timed after it is kept).

``run_test`` runs LoadGen on a thread of its own so that Ctrl-C reaches the main thread at once: the
batcher is then told to stop running the model, and the interrupt goes on up (the caller records
what was measured before it). LoadGen cannot stop a test early, so a process interrupted during one
leaves through ``os._exit`` at interpreter exit, with the interrupt's exit code (``_exit_past``).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

INSTALL = "pip install 'perfkit[loadgen]' (MLPerf's LoadGen, mlcommons-loadgen: wheels for Linux x86_64, CPython 3.7-3.13)"

# The summary's lines LoadGen's verdict is made of, in its order, by the detail log's key.
CHECKS = (("result_perf_constraints_met", "performance constraint (p99 within the bound)"),
          ("result_min_duration_met", "min duration"),
          ("result_min_queries_met", "min queries"),
          ("early_stopping_met", "early stopping"))


def unavailable() -> str | None:
    """Why LoadGen cannot run here (None: it can)."""
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError as exc:
        return f"MLPerf LoadGen is not installed ({exc}): {INSTALL}"
    return None


@dataclass(frozen=True)
class Batching:
    """How the SUT serves: ``workers`` threads, each forming batches of up to ``max_batch`` queries
    that arrived within ``timeout_ms`` of the oldest one."""

    max_batch: int = 1
    timeout_ms: float = 0.0
    workers: int = 1

    def __post_init__(self):
        if self.max_batch < 1 or self.workers < 1 or self.timeout_ms < 0:
            raise ValueError(f"the largest batch and the workers must be at least 1 and the batching window at "
                             f"least 0 ms, got {self.max_batch}, {self.workers} and {self.timeout_ms:g}")

    def describe(self) -> str:
        window = f", waiting up to {self.timeout_ms:g} ms for more" if self.max_batch > 1 else ""
        return f"{self.workers} worker thread(s), batches of up to {self.max_batch}{window}"


class DynamicBatcher:
    """LoadGen's SUT over an entered runner (see the module docstring).

    The queue is a ``queue.SimpleQueue`` (its ``get`` is C code: the per-query cost is what limits a
    Python SUT at high rates; ``benchmarks/bench_loadgen_overhead.py``), holding (arrival time, query)
    and one ``None`` per worker to stop. ``mean_batch``: the queries served per runner call.
    """

    def __init__(self, runner, samples: list[torch.Tensor], batching: Batching):
        import mlperf_loadgen as lg

        self._lg, self.runner, self.samples, self.batching = lg, runner, samples, batching
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None  # the runner's, if it raised
        self.skip = False  # complete queries without running the model (after an error or Ctrl-C)
        self._counts = [[0, 0] for _ in range(batching.workers)]  # per worker: batches, queries
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True, name=f"perfkit-sut-{i}")
                         for i in range(batching.workers)]
        for t in self._threads:
            t.start()

    # -- LoadGen's callbacks (its issuing thread) ----------------------------------------------------

    def issue(self, queries) -> None:
        now = time.perf_counter()
        for q in queries:
            self._queue.put((now, q))

    def flush(self) -> None:
        pass

    # -- the workers ---------------------------------------------------------------------------------

    def _take(self) -> list | None:
        """The next batch: the oldest query and what arrives within the window from its arrival, up
        to ``max_batch`` (None: stop)."""
        first = self._queue.get()
        if first is None:
            return None
        taken, b = [first[1]], self.batching
        deadline = first[0] + b.timeout_ms / 1000
        while len(taken) < b.max_batch:
            try:
                item = self._queue.get_nowait()  # already arrived: no waiting
            except queue.Empty:
                left = deadline - time.perf_counter()
                if left <= 0 or self.skip:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:  # stop: leave it for the next call
                self._queue.put(None)
                break
            taken.append(item[1])
        return taken

    def _work(self, i: int) -> None:
        lg, counts = self._lg, self._counts[i]
        while (taken := self._take()) is not None:
            if not self.skip:
                try:
                    self._run([q.index for q in taken])
                except BaseException as exc:  # the caller raises it once LoadGen's test has ended
                    self.error, self.skip = exc, True
            counts[0] += 1
            counts[1] += len(taken)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in taken])

    def _run(self, indices: list[int]) -> None:
        if len(indices) == 1:
            x = self.samples[indices[0]].unsqueeze(0)  # a view: no copy for one query
        else:
            x = torch.stack([self.samples[i] for i in indices])
        short = self.runner.batch.min - x.shape[0]
        if short > 0:
            x = torch.cat([x, x.new_zeros((short, *x.shape[1:]))])
        self.runner.infer(x)
        self.runner.synchronize()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()

    @property
    def mean_batch(self) -> float | None:
        batches = sum(c[0] for c in self._counts)
        return sum(c[1] for c in self._counts) / batches if batches else None


@dataclass(frozen=True)
class Outcome:
    """One LoadGen test: its figures and verdict as LoadGen logged them (``mlperf_log_detail.txt``)."""

    scenario: str
    target_qps: float | None
    result: dict  # the detail log's result_* and early_stopping_* values, by key
    log_dir: str
    seconds: float
    mean_batch: float | None = None
    contention: object = None  # a perfkit.profiler.contention.Contention over the test
    extra: dict = field(default_factory=dict)

    def _ms(self, key: str) -> float | None:
        ns = self.result.get(key)
        return None if ns is None else ns / 1e6

    @property
    def p50_ms(self) -> float | None:
        return self._ms("result_50.00_percentile_latency_ns")

    @property
    def p90_ms(self) -> float | None:
        return self._ms("result_90.00_percentile_latency_ns")

    @property
    def p99_ms(self) -> float | None:
        return self._ms("result_99.00_percentile_latency_ns")

    @property
    def mean_ms(self) -> float | None:
        return self._ms("result_mean_latency_ns")

    @property
    def scheduled_qps(self) -> float | None:
        return self.result.get("result_scheduled_samples_per_sec")

    @property
    def completed_qps(self) -> float | None:
        """Samples completed per second (Server: ``completed_samples_per_sec``; Offline: its result)."""
        found = self.result.get("result_completed_samples_per_sec")
        return found if found is not None else self.result.get("result_samples_per_second")

    @property
    def queries(self) -> int | None:
        return self.result.get("result_query_count")

    @property
    def valid(self) -> bool:
        return self.result.get("result_validity") == "VALID"

    @property
    def constraint_met(self) -> bool:
        return bool(self.result.get("result_perf_constraints_met"))

    @property
    def failed(self) -> list[str]:
        """LoadGen's checks that failed, in its summary's order."""
        return [name for key, name in CHECKS if self.result.get(key) is False]

    @property
    def more_queries(self) -> int | None:
        """The queries early stopping asked for beyond those run (None: it did not ask)."""
        found = re.search(r"at least (\d+) more", str(self.result.get("early_stopping_result", "")))
        return int(found.group(1)) if found else None

    def verdict(self) -> str:
        """``VALID``, or ``INVALID`` with the checks that failed (early stopping with the queries it asks for)."""
        if self.valid:
            return "VALID"
        failed = [f"{name} (needs at least {self.more_queries} more queries)" if name == "early stopping"
                  and self.more_queries else name for name in self.failed]
        return "INVALID: " + (", ".join(failed) + " not met" if failed else "LoadGen gave no reason")

    def summary(self) -> dict:
        return {"target_qps": self.target_qps, "scheduled_qps": self.scheduled_qps, "p50_ms": self.p50_ms,
                "p99_ms": self.p99_ms, "queries": self.queries, "met": self.constraint_met, "valid": self.valid,
                "verdict": self.verdict(), "mean_batch": self.mean_batch, "seconds": self.seconds,
                "log_dir": self.log_dir,
                "other_cpu_pct": None if self.contention is None else self.contention.other_cpu_pct}


def read_detail_log(path: Path) -> dict:
    """The values LoadGen logged under ``result_*`` and ``early_stopping_*`` keys (its verdict and figures)."""
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            continue
        key = entry.get("key", "")
        if key.startswith(("result_", "early_stopping_")):
            out[key] = entry.get("value")
    return out


def settings_for(scenario: str, *, target_qps: float | None = None, latency_bound_ms: float | None = None,
                 seconds: float = 1.0, min_queries: int = 100, compliant: bool = False, samples: int = 64):
    """LoadGen's ``TestSettings`` for a performance run. ``compliant``: MLPerf's own minimum duration and
    query count for an image classifier (LoadGen's built-in mlperf.conf for resnet50: 600 s), else
    ``seconds`` and ``min_queries`` (a quick run, not MLPerf-compliant)."""
    import mlperf_loadgen as lg

    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, scenario)
    s.mode = lg.TestMode.PerformanceOnly
    if compliant:
        s.FromConfig("", "resnet50", scenario, 0)
    else:
        s.min_duration_ms = int(seconds * 1000)
        s.min_query_count = min_queries
    if target_qps is not None:
        s.server_target_qps = float(target_qps)
        s.offline_expected_qps = float(target_qps)
    if latency_bound_ms is not None:
        s.server_target_latency_ns = int(latency_bound_ms * 1e6)
    s.performance_sample_count_override = samples
    return s


def _exit_past(done: threading.Event, code: int) -> None:
    """At interpreter exit after an interrupted test: LoadGen's C++ threads are still running its
    schedule (it has no way to stop early), and finalising the interpreter under them aborts the
    process ("terminate called without an active exception", exit -6). The records are stored and the
    message printed by now, so leave at once with the exit code the interrupt meant."""
    if not done.is_set():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_test(runner, samples: list[torch.Tensor], batching: Batching, settings, log_dir: Path,
             target_qps: float | None = None) -> Outcome:
    """One LoadGen test of an entered runner; its logs go to ``log_dir`` (created). Raises the runner's
    error if it failed during the test, ``OSError`` if the logs cannot be written."""
    import mlperf_loadgen as lg

    from perfkit.profiler.contention import ContentionMeter

    log_dir.mkdir(parents=True, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut_server = DynamicBatcher(runner, samples, batching)
    sut = lg.ConstructSUT(sut_server.issue, sut_server.flush)
    qsl = lg.ConstructQSL(len(samples), len(samples), lambda s: None, lambda s: None)
    meter = ContentionMeter()
    done = threading.Event()

    def test() -> None:
        try:
            lg.StartTestWithLogSettings(sut, qsl, settings, log)
        finally:
            done.set()

    started = time.perf_counter()
    meter.start()
    threading.Thread(target=test, daemon=True, name="perfkit-loadgen").start()
    try:
        # an Event, not Thread.join: a Ctrl-C inside join(timeout) marks the running thread stopped
        # (CPython 3.11's bpo-45274 handling), and the exit below could not tell LoadGen still runs
        while not done.wait(0.1):  # the main thread stays free to take Ctrl-C
            pass
    except BaseException as exc:
        sut_server.skip = True  # LoadGen finishes its schedule without the model; the interrupt goes on up
        code = 143 if type(exc).__name__ == "Terminated" else 130 if isinstance(exc, KeyboardInterrupt) else 1
        atexit.register(_exit_past, done, code)
        raise
    meter.stop()
    seconds = time.perf_counter() - started
    sut_server.close()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    if sut_server.error is not None:
        raise sut_server.error
    detail = log_dir / "mlperf_log_detail.txt"
    if not detail.exists():
        raise OSError(f"LoadGen wrote no log to {log_dir} (is it writable?)")
    return Outcome(str(settings.scenario).split(".")[-1], target_qps, read_detail_log(detail), str(log_dir),
                   seconds, sut_server.mean_batch, meter.reading())
