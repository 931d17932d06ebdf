"""The Offline scenario: the most samples per second a runtime gives with k requests in flight.

MLPerf's Offline scenario, benchmark_app's ``-hint throughput`` and trtexec's ``--infStreams``: for a
fixed wall time, keep k requests in flight through the runtime's own concurrency mechanism (the
runner's ``offline_session``: OpenVINO's AsyncInferQueue, one ONNX Runtime session per thread,
TensorRT contexts on streams of their own, k threads calling a torch runtime) and count what
completes. SingleStream's ``batch / median latency`` is one request at a time; a server runs
several, and its throughput can be well above that.

For each k of 1, 2, 4, … up to a bound, every request slot runs once (warm-up; not where the
session only calls the runner that has just run this batch), then the window
opens: requests are started until ``seconds`` have passed *and* every slot has run as often as the
others (benchmark_app's rule), and the window closes when the last one finishes, so the duration
includes the tail. samples/s = completed requests × batch / window. The search stops at the first k
that is not faster than the best so far. The process CPU time over the window
(``time.process_time``, all threads) gives samples per CPU-second, the steadier figure on a shared
machine. Over the same window a ``ContentionMeter`` measures the CPU other processes used; the
result carries the most contended K's reading (a contended window makes the winner suspect too).

k = 1 is SingleStream: one request in flight, back to back, in the configuration SingleStream timed.
Where the SingleStream timing at this batch is at hand (the profile sweep), k = 1 is that timing
(samples/s = batch / mean latency over its loop) instead of a second loop measuring the same thing;
a runtime whose concurrent callers take turns (``SERIAL``) then needs no Offline loop at all.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from perfkit.profiler.contention import Contention, ContentionMeter, contention_metrics, worst
from perfkit.profiler.scenarios import Column, Compared, Headline, Point, Scenario, ScenarioOption, newest
from perfkit.results import Kind, KindSchema, Where

SHORT_WINDOW = 3  # fewer completions per request slot than this in a window: a warning to measure longer


@dataclass(frozen=True)
class OfflineConfig:
    """How long each k is measured and how far k is searched (powers of two up to ``max_requests``)."""

    seconds: float = 2.0
    max_requests: int = 4
    warmup_rounds: int = 1  # requests per slot before the window opens

    def __post_init__(self):
        if self.seconds <= 0 or self.max_requests < 1 or self.warmup_rounds < 0:
            raise ValueError(f"the window (--offline-seconds) must be positive and the largest K "
                             f"(--offline-max-requests) at least 1, got {self.seconds} and {self.max_requests}")

    def candidates(self, serial: bool = False) -> list[int]:
        """The k to try: 1, 2, 4, … up to ``max_requests`` (1 only for a runtime that serialises requests)."""
        out, k = [], 1
        while k <= (1 if serial else self.max_requests):
            out.append(k)
            k *= 2
        return out


@dataclass(frozen=True)
class OfflineTrial:
    """One k: what completed in the window and the configuration that did it."""

    requests: int
    threads_per_request: int | None
    samples: int
    seconds: float
    cpu_seconds: float | None  # None: not measured (k = 1 taken from the SingleStream timing)
    mechanism: str
    config: dict
    source: str = "offline loop"  # or "singlestream timing"
    contention: Contention | None = None  # what other processes used of the CPU over the window

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def samples_per_cpu_s(self) -> float | None:
        return self.samples / self.cpu_seconds if self.cpu_seconds else None

    def summary(self) -> dict:
        return {"requests": self.requests, "threads_per_request": self.threads_per_request,
                "samples_per_s": self.samples_per_s, "samples_per_cpu_s": self.samples_per_cpu_s,
                "samples": self.samples, "seconds": self.seconds, "source": self.source, "mechanism": self.mechanism,
                "other_cpu_pct": None if self.contention is None else self.contention.other_cpu_pct}


def from_singlestream(timing, threads: int | None, config: dict) -> OfflineTrial:
    """k = 1 from a SingleStream timing (a ``RunnerTiming``) at the Offline batch: the same loop of one
    request in flight; samples/s = batch × calls / the sum of their latencies (batch / mean latency)."""
    stats = timing.compute
    return OfflineTrial(1, threads, stats.batch * stats.iterations, sum(stats.samples_ms) / 1000, None,
                        "one request in flight: the SingleStream loop at this batch (batch / mean latency)",
                        dict(config), source="singlestream timing", contention=timing.contention)


@dataclass(frozen=True)
class OfflineResult:
    """The best k of one runtime at one batch (kind throughput), with every k tried."""

    where: Where
    best: OfflineTrial
    trials: tuple[OfflineTrial, ...]
    config: OfflineConfig
    warnings: tuple[str, ...] = field(default=())
    calibration: str | None = None  # what an int8 artifact was calibrated on
    contention: Contention | None = None  # the most contended K's window (``worst``); None: not read


def _cpu_seconds() -> float:
    # process_time: user + system time of every thread of this process, as getrusage(RUSAGE_SELF)
    # gives it, but on every platform (GetProcessTimes on Windows)
    return time.process_time()


def drive(session, batch: int, config: OfflineConfig) -> OfflineTrial:
    """Run ``session`` (an ``OfflineSession``) for one window and count what completed."""
    meter = ContentionMeter()
    count, seconds, cpu = (_threads if session.threaded else _queue)(session, config, meter)
    return OfflineTrial(session.requests, session.threads_per_request, count * batch, seconds, cpu,
                        session.mechanism, dict(session.config), contention=meter.reading())


def _queue(session, config: OfflineConfig, meter: ContentionMeter) -> tuple[int, float, float]:
    """One thread submits; ``submit`` blocks while every slot is busy (benchmark_app's loop)."""
    k = session.requests
    for _ in range(0 if session.warm else k * config.warmup_rounds):
        session.submit()
    session.wait_all()
    started = 0
    meter.start()
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    deadline = t0 + config.seconds
    while time.perf_counter() < deadline or started % k:
        session.submit()
        started += 1
    session.wait_all()
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    meter.stop()
    return started, seconds, cpu


def _threads(session, config: OfflineConfig, meter: ContentionMeter) -> tuple[int, float, float]:
    """k threads, thread i calling ``session.call(i)`` back to back; each completes at least one
    request in the window, and the window ends when the last thread's last request does."""
    k = session.requests
    counts = [0] * k
    errors: list[BaseException] = []
    start: dict[str, float] = {}

    def open_window() -> None:  # runs once, when every worker has warmed up, before any is released
        meter.start()
        start["cpu"], start["t"] = _cpu_seconds(), time.perf_counter()
        start["deadline"] = start["t"] + config.seconds

    ready = threading.Barrier(k + 1, action=open_window)

    def worker(i: int) -> None:
        try:
            for _ in range(0 if session.warm else config.warmup_rounds):
                session.call(i)
            ready.wait()
            while not errors:
                session.call(i)
                counts[i] += 1
                if time.perf_counter() >= start["deadline"]:
                    break
        except threading.BrokenBarrierError:
            pass  # another worker failed during warm-up; its error is reported
        except BaseException as exc:  # raised in the caller after every thread stopped
            errors.append(exc)
            ready.abort()

    workers = [threading.Thread(target=worker, args=(i,), daemon=True, name=f"perfkit-offline-{i}") for i in range(k)]
    for w in workers:
        w.start()
    try:
        ready.wait()  # every worker has warmed up: the window opens
    except threading.BrokenBarrierError:
        pass
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    seconds, cpu = time.perf_counter() - start["t"], _cpu_seconds() - start["cpu"]
    meter.stop()
    return sum(counts), seconds, cpu


def search(runner, x, config: OfflineConfig, cores: int, progress=None, label: str = "",
           single: OfflineTrial | None = None) -> tuple[list, list[str]]:
    """Try k = 1, 2, 4, … on an entered runner; stop at the first k not faster than the best so far.

    ``single``: k = 1 already measured (``from_singlestream``); the loop starts at k = 2.
    Returns (trials in the order tried, warnings).
    """
    from perfkit.backends.base import SERIAL

    batch = int(x.shape[0])
    trials: list[OfflineTrial] = [single] if single is not None else []
    notes: list[str] = []
    for k in config.candidates(serial=runner.offline_mechanism == SERIAL):
        if k == 1 and single is not None:
            continue
        if progress is not None:
            progress.update(f"offline {label} {k} request(s) in flight")
        with runner.offline_session(k, x, cores) as session:
            trial = drive(session, batch, config)
        if trial.samples // batch < SHORT_WINDOW * k:
            notes.append(f"{label}: only {trial.samples // batch} requests completed with {k} in flight in "
                         f"{trial.seconds:.1f} s; a longer window (--offline-seconds) gives a steadier figure")
        best = max((t.samples_per_s for t in trials), default=0.0)
        trials.append(trial)
        if trials[:-1] and trial.samples_per_s <= best:
            break
    return trials, notes


def measure(point: Point) -> OfflineResult:
    """The Offline scenario of an entered runner at the point's batch: its best k and every k tried
    (k = 1 from SingleStream's timing at this batch, measured just before it)."""
    from perfkit.device import available_cores

    spec, runner, where, ctx, config = point.spec, point.runner, point.where, point.ctx, point.config
    single = point.earlier.get("singlestream")
    single = from_singlestream(single.timing, single.threads, single.runtime_config) if single is not None else None
    x = spec.example_input(where.batch)
    label = f"{spec.name} {runner.name} batch {where.batch}"
    trials, notes = search(runner, x, config, ctx.threads or available_cores(), ctx.progress, label, single)
    best = max(trials, key=lambda t: t.samples_per_s)
    contention = worst(t.contention for t in trials)
    if contention is not None and contention.contended:
        notes.append(f"{label} Offline: {contention.message()} while it was measured (the samples/s and the K "
                     "that won are not clean numbers) — re-run on a quiet machine")
    return OfflineResult(where, best, tuple(trials), config, tuple(notes), runner.calibration, contention)


def unavailable(backend) -> str | None:
    """Why the Offline scenario cannot measure ``backend`` (its runner keeps no requests in flight)."""
    runner = backend.runner
    return None if runner.offline_mechanism is not None else (runner.offline_note or "it keeps one request in flight")


def metrics(result: OfflineResult) -> dict:
    best = result.best
    return {
        "scenario": "offline", "samples_per_s": best.samples_per_s, "requests": best.requests,
        "threads_per_request": best.threads_per_request, "samples": best.samples, "seconds": best.seconds,
        "cpu_seconds": best.cpu_seconds, "samples_per_cpu_s": best.samples_per_cpu_s, "mechanism": best.mechanism,
        "runtime_config": best.config, "trials": [t.summary() for t in result.trials],
        "max_requests": result.config.max_requests, "window_seconds": result.config.seconds,
        "warnings": list(result.warnings), **({"calibration": result.calibration} if result.calibration else {}),
        **contention_metrics(result.contention),
    }


def _cores_up_to_4() -> int:
    """``perfkit run``'s bound: more requests in flight than cores cannot run side by side on a CPU
    runtime that gives each at least one thread."""
    from perfkit.device import available_cores

    return min(4, available_cores())


def configure(values: dict) -> OfflineConfig:
    return OfflineConfig(values["offline_seconds"], values["offline_max_requests"])


# -- its table: beside SingleStream at the same batch ------------------------------------------------

def rows(records: list) -> list[dict]:
    """One row per Offline measurement (newest per key; failures too), beside the SingleStream
    throughput of the same runtime at the same batch and the gain over it."""
    single = newest(records, Kind.LATENCY)
    out = []
    for r in newest(records, Kind.THROUGHPUT).values():
        lat = single.get((str(Kind.LATENCY), *r.key[1:]))
        ss = lat.metrics.get("throughput_per_s") if lat is not None and lat.status == "ok" else None
        m = r.metrics
        out.append({
            "model": r.model, "weights": r.weights, "runtime": r.runtime, "precision": r.precision, "device": r.device,
            "batch": r.batch, "status": r.status, "error": r.error, **m, "trials_text": _trials(m.get("trials") or []),
            "concurrency": _concurrency(m), "singlestream_per_s": ss,
            "gain": m["samples_per_s"] / ss if ss and m.get("samples_per_s") else None,
        })
    return out


def _trials(trials: list[dict]) -> str:
    return "  ".join(f"{t['requests']}{'*' if t.get('source') == 'singlestream timing' else ''}: "
                     f"{t['samples_per_s']:.1f}" for t in trials) or "—"


def _concurrency(m: dict) -> str | None:
    """How the runtime kept several requests in flight: the mechanism of the largest K tried."""
    trials = [t for t in m.get("trials") or [] if t.get("mechanism")]
    return max(trials, key=lambda t: t["requests"])["mechanism"] if trials else m.get("mechanism")


def caption(records: list) -> list[str]:
    rows_ = rows(records)
    lines = ["Offline: the most samples/s with K requests in flight for a fixed time per K (K = 1, 2, 4, ... "
             "searched; the window includes the tail; 1* = K = 1 taken from the SingleStream loop at this batch, "
             "batch / mean latency); SingleStream img/s = batch / p50 latency at the same batch; samples/CPU-s = "
             "per second of this process's CPU time (steadier on a shared machine)"]
    return lines + [f"{r['runtime']}: {r['concurrency']}" for r in {r["runtime"]: r for r in rows_
                                                                   if r["concurrency"]}.values()]


SCHEMA = KindSchema.of(
    "samples_per_s requests threads_per_request samples seconds",
    "scenario cpu_seconds samples_per_cpu_s mechanism runtime_config trials max_requests window_seconds "
    "warnings calibration other_cpu_pct contended")

SCENARIO = Scenario(
    name="offline",
    title="Offline",
    summary="the most samples/s with K requests in flight through each runtime's own concurrency (K = 1, 2, 4, ... "
            "searched) at the largest batch",
    kind=Kind.THROUGHPUT,
    schema=SCHEMA,
    result=OfflineResult,
    measure=measure,
    metrics=metrics,
    headline=Headline("samples_per_s", "samples/s", "max", "rate",
                      detail=lambda m: f"K={m['requests']}" if m.get("requests") else ""),
    options=(
        ScenarioOption("offline_seconds", 2.0, "Offline: measuring window per K, seconds", quick=0.5),
        ScenarioOption("offline_max_requests", 4, "Offline: the largest K (requests in flight) searched", int,
                       quick=_cores_up_to_4, metavar="K"),
    ),
    configure=configure,
    batches=lambda batches: (max(batches),),
    unavailable=unavailable,
    rows=rows,
    columns=(Column("offline samples/s", "samples_per_s", "rate"), Column("K", "requests", "int"), Column("threads/req", "threads_per_request", "int"),
             Column("samples/CPU-s", "samples_per_cpu_s", "ratio"),
             Column("SingleStream img/s", "singlestream_per_s", "rate"), Column("× SingleStream", "gain", "ratio"),
             Column("K tried: samples/s", "trials_text", "text")),
    caption=caption,
    compared=(Compared("samples_per_s", limit="max_throughput_drop_pct", worse=-1), Compared("samples_per_cpu_s"),
              Compared("calibration", "description")),
    same_config=("requests", "threads_per_request"),
)
