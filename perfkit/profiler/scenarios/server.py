"""The Server scenario: how many requests per second a runtime serves while the 99th-percentile
latency stays within a bound, through MLPerf's own LoadGen.

LoadGen sends one-image queries at Poisson-distributed times at a target rate and judges each test
(``perfkit.profiler.loadgen``); perfkit's SUT serves them with the runner every other scenario
measured, batching what has arrived (``--server-max-batch`` within ``--batch-timeout-ms``) on
``--server-workers`` threads. The search finds the largest target QPS at which LoadGen finds the
latency constraint met (p99 ≤ ``--latency-bound-ms``):

1. start at half the SingleStream rate at this batch (measured just before), double while the
   constraint is met and halve while it is not (at most three halvings), until one target met it and
   a higher one did not;
2. bisect (geometric mean) between the highest target that met it and the lowest higher one that did
   not, until they are within ``--server-precision`` of each other or ``--server-points`` targets
   were tried.

Quick by default: each target runs ``--server-seconds`` and at least 100 queries (p99 needs them), so
LoadGen's early-stopping check usually fails at low rates (it wants hundreds more queries) and its
verdict is INVALID even where the bound was met; the record says so, with every check and the extra
queries it asked for, and is labelled not MLPerf-compliant. ``--mlperf-compliant`` applies MLPerf's
minimum duration and query count (600 s per target) and counts a target only when LoadGen's whole
verdict is VALID.

A bound no target meets is a failed measurement naming every target tried and its p99. LoadGen's
summary and detail logs of every target are kept under ``--loadgen-logs`` (the record names the
folder and holds the summary of the target reported).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from perfkit.profiler import loadgen
from perfkit.profiler.contention import Contention, contention_metrics, worst
from perfkit.profiler.scenarios import Column, Compared, Curve, Headline, Point, Scenario, ScenarioOption, newest
from perfkit.results import Kind, KindSchema, Where

KIND = Kind.SERVER
QSL_SAMPLES = 32  # distinct input tensors LoadGen draws its queries from (made before the test)
MAX_HALVINGS = 3


@dataclass(frozen=True)
class ServerConfig:
    latency_bound_ms: float = 50.0
    max_batch: int = 1  # no batching: on a CPU it only adds waiting (benchmarks/bench_server.py, part 2)
    batch_timeout_ms: float = 0.0
    workers: int = 1
    seconds: float = 2.0
    points: int = 8
    precision: float = 0.1
    compliant: bool = False
    logs: str = ".perfkit-loadgen"

    def __post_init__(self):
        if self.latency_bound_ms <= 0 or self.seconds <= 0:
            raise ValueError(f"the latency bound (--latency-bound-ms) and the time per target (--server-seconds) "
                             f"must be positive, got {self.latency_bound_ms:g} and {self.seconds:g}")
        if self.points < 2 or self.precision <= 0:
            raise ValueError(f"--server-points must be at least 2 and --server-precision positive, got "
                             f"{self.points} and {self.precision:g}")
        loadgen.Batching(self.max_batch, self.batch_timeout_ms, self.workers)  # its own checks

    def meets(self, outcome: loadgen.Outcome) -> bool:
        """A target counts: LoadGen's whole verdict when compliant, else the latency constraint."""
        return outcome.valid if self.compliant else outcome.constraint_met

    @property
    def label(self) -> str:
        return ("MLPerf-compliant (LoadGen's minimum duration and queries)" if self.compliant else
                f"not MLPerf-compliant (min duration {self.seconds:g} s per target)")


def configure(values: dict) -> ServerConfig:
    config = ServerConfig(values["latency_bound_ms"], values["server_max_batch"], values["batch_timeout_ms"],
                          values["server_workers"], values["server_seconds"], values["server_points"],
                          values["server_precision"], bool(values["mlperf_compliant"]), values["loadgen_logs"])
    _check_writable(Path(config.logs))
    return config


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".perfkit-probe-{uuid.uuid4().hex}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--loadgen-logs {folder}: cannot be written ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class ServerResult:
    """The largest target QPS that met the bound at one runtime, with every target tried."""

    where: Where
    best: loadgen.Outcome
    trials: tuple[loadgen.Outcome, ...]
    config: ServerConfig
    batching: loadgen.Batching
    runtime_config: dict
    threads: int | None
    warnings: tuple[str, ...] = field(default=())
    calibration: str | None = None
    contention: Contention | None = None


def search(run, start_qps: float, config: ServerConfig, progress=None, label: str = "",
           meets=None) -> list[loadgen.Outcome]:
    """Targets tried in order (see the module docstring); ``run(qps)`` runs one LoadGen test and
    ``meets(outcome)`` says whether it counts (default: ``config.meets``)."""
    meets = meets or config.meets
    tried: list[loadgen.Outcome] = []

    def step(qps: float) -> None:
        if progress is not None:
            progress.update(f"server {label} target {qps:.1f} QPS")
        tried.append(run(qps))

    qps, halvings = start_qps, 0
    while len(tried) < config.points:
        step(qps)
        good, bad = _bracket(tried, meets)
        if good is not None and bad is not None:
            break
        if meets(tried[-1]):
            qps *= 2
        elif halvings == MAX_HALVINGS:
            return tried
        else:
            qps, halvings = qps / 2, halvings + 1
    while len(tried) < config.points:
        good, bad = _bracket(tried, meets)
        if good is None or bad is None or bad / good <= 1 + config.precision:
            break
        step(math.sqrt(good * bad))
    return tried


def _bracket(tried: list, meets) -> tuple[float | None, float | None]:
    """The highest target that met the bound, and the lowest higher one that did not (None: none yet)."""
    good = max((t.target_qps for t in tried if meets(t)), default=None)
    bad = min((t.target_qps for t in tried if not meets(t) and (good is None or t.target_qps > good)), default=None)
    return good, bad


def _start_qps(point: Point) -> float:
    """Half the SingleStream rate at this batch (a server cannot sustain more than it serves flat out
    without batching); a short timing of its own where SingleStream did not run."""
    single = point.earlier.get("singlestream")
    if single is not None and single.timing.compute.median_ms:
        return 0.5 * 1000 * point.batch / single.timing.compute.median_ms
    x = point.spec.example_input(point.batch)
    point.runner.infer(x)
    point.runner.synchronize()
    t0 = time.perf_counter()
    for _ in range(3):
        point.runner.infer(x)
    point.runner.synchronize()
    return 0.5 * 3 * point.batch / (time.perf_counter() - t0)


def measure(point: Point) -> ServerResult:
    from perfkit.backends.base import THREADS
    from perfkit.errors import MeasurementError, UsageError

    runner, config, spec = point.runner, point.config, point.spec
    if config.workers > 1 and runner.offline_mechanism != THREADS:
        raise UsageError(f"{runner.label}: --server-workers {config.workers} needs a runtime that takes concurrent "
                         f"calls; this one runs one call at a time (use --server-workers 1)")
    notes = []
    batching = loadgen.Batching(min(config.max_batch, runner.batch.max), config.batch_timeout_ms, config.workers)
    if batching.max_batch < config.max_batch:
        notes.append(f"{runner.label}: batches capped at {batching.max_batch}, the artifact's largest batch "
                     f"(re-export with a wider --max-batch)")
    samples = list(spec.example_input(QSL_SAMPLES).unbind(0))
    folder = Path(config.logs) / f"{time.strftime('%Y%m%dT%H%M%S')}-{spec.name}-{runner.name}-{runner.precision}-" \
                                 f"{runner.device.type}-{uuid.uuid4().hex[:6]}"
    label = f"{spec.name} {runner.name} {runner.precision}"

    def run(qps: float) -> loadgen.Outcome:
        settings = loadgen.settings_for("Server", target_qps=qps, latency_bound_ms=config.latency_bound_ms,
                                        seconds=config.seconds, compliant=config.compliant, samples=QSL_SAMPLES)
        return loadgen.run_test(runner, samples, batching, settings, folder / f"qps-{qps:.2f}", qps)

    trials = search(run, _start_qps(point), config, point.ctx.progress, label)
    met = [t for t in trials if config.meets(t)]
    if not met:
        tried = ", ".join(f"{t.target_qps:.1f} QPS: p99 {t.p99_ms:.1f} ms" for t in trials)
        raise MeasurementError(f"{label}: no target met p99 ≤ {config.latency_bound_ms:g} ms "
                               f"({'VALID ' if config.compliant else ''}tried {tried}); LoadGen's logs: {folder}")
    best = max(met, key=lambda t: t.target_qps)
    contention = worst(t.contention for t in trials)
    if contention is not None and contention.contended:
        notes.append(f"{label} Server: {contention.message()} while it was measured (the QPS found is not a clean "
                     "number) — re-run on a quiet machine")
    config_used = runner.config()
    threads = config_used.get("intra_op_threads") or config_used.get("intra_op_num_threads") or runner.threads
    return ServerResult(point.where, best, tuple(trials), config, batching, config_used,
                        threads if isinstance(threads, int) else None, tuple(notes), runner.calibration, contention)


def metrics(result: ServerResult) -> dict:
    best, config = result.best, result.config
    summary = Path(best.log_dir) / "mlperf_log_summary.txt"
    return {
        "scenario": "server", "qps": best.target_qps, "scheduled_qps": best.scheduled_qps, "p99_ms": best.p99_ms,
        "p50_ms": best.p50_ms, "p90_ms": best.p90_ms, "mean_ms": best.mean_ms, "queries": best.queries,
        "latency_bound_ms": config.latency_bound_ms, "verdict": best.verdict(), "valid": best.valid,
        "checks": {name: best.result.get(key) for key, name in loadgen.CHECKS},
        "early_stopping_more_queries": best.more_queries, "mean_batch": best.mean_batch,
        "max_batch": result.batching.max_batch, "batch_timeout_ms": result.batching.timeout_ms,
        "workers": result.batching.workers, "threads": result.threads, "batching": result.batching.describe(),
        "compliant": config.compliant, "compliance": config.label, "seconds_per_target": config.seconds,
        "trials": [t.summary() for t in result.trials], "runtime_config": result.runtime_config,
        "loadgen_logs": str(Path(best.log_dir).parent), "loadgen_summary": summary.read_text(errors="replace"),
        "warnings": list(result.warnings), **({"calibration": result.calibration} if result.calibration else {}),
        **contention_metrics(result.contention),
    }


# -- its table ---------------------------------------------------------------------------------------

def rows(records: list) -> list[dict]:
    """One row per runtime measured (newest per key; failures too)."""
    out = []
    for r in newest(records, KIND).values():
        m = r.metrics
        out.append({"model": r.model, "weights": r.weights, "runtime": r.runtime, "precision": r.precision,
                    "device": r.device, "batch": r.batch, "status": r.status, "error": r.error, **m,
                    "verdict_short": _short(m), "tried_text": _tried(m.get("trials") or [])})
    return out


def _short(m: dict) -> str | None:
    verdict = m.get("verdict")
    if verdict is None:
        return None
    return "VALID" if verdict == "VALID" else "bound met; " + verdict if m.get("checks", {}).get(
        "performance constraint (p99 within the bound)") else verdict


def _tried(trials: list[dict]) -> str:
    return "  ".join(f"{t['target_qps']:.1f}{'✓' if t.get('met') else '✗'}" for t in trials) or "—"


def caption(records: list) -> list[str]:
    found = [r.metrics for r in newest(records, KIND).values() if r.status == "ok"]
    lines = ["Server (MLPerf LoadGen): the largest target QPS of Poisson-arriving one-image queries at which "
             "LoadGen found p99 within the bound; ✓/✗ = bound met or not at each target tried"]
    for how in sorted({"; ".join(filter(None, (m.get("compliance"), m.get("batching")))) for m in found} - {""}):
        lines.append(how)
    for logs in sorted({m["loadgen_logs"] for m in found if m.get("loadgen_logs")}):
        lines.append(f"LoadGen logs: {logs}")
    return lines


SCHEMA = KindSchema.of(
    "qps p99_ms latency_bound_ms verdict trials",
    "scenario scheduled_qps p50_ms p90_ms mean_ms queries valid checks early_stopping_more_queries mean_batch "
    "max_batch batch_timeout_ms workers threads batching compliant compliance seconds_per_target runtime_config "
    "loadgen_logs loadgen_summary warnings calibration other_cpu_pct contended")


def _options() -> tuple[ScenarioOption, ...]:
    return (
        ScenarioOption("latency_bound_ms", 50.0, "Server: the p99 latency bound, ms", metavar="MS"),
        ScenarioOption("server_max_batch", ServerConfig.max_batch, "Server: the largest batch the SUT forms from "
                       "queries that have arrived", int, metavar="N"),
        ScenarioOption("batch_timeout_ms", ServerConfig.batch_timeout_ms, "Server: how long the SUT waits from a "
                       "query's arrival for more to batch with it, ms", metavar="MS"),
        ScenarioOption("server_workers", 1, "Server: SUT threads calling the runtime (more than 1: runtimes "
                       "that take concurrent calls)", int, metavar="N"),
        ScenarioOption("server_seconds", 2.0, "Server: LoadGen's minimum duration per target QPS (quick runs)",
                       quick=1.0),
        ScenarioOption("server_points", 8, "Server: the most target QPS tried", int, metavar="N"),
        ScenarioOption("server_precision", 0.1, "Server: stop bisecting when the met and failed targets are "
                       "within this fraction", metavar="F"),
        ScenarioOption("mlperf_compliant", False, "Server: MLPerf's minimum duration and queries (600 s per "
                       "target) and LoadGen's whole verdict VALID", bool),
        ScenarioOption("loadgen_logs", ServerConfig.logs, "Server: the folder LoadGen's logs are kept in", str,
                       metavar="DIR"),
    )


SCENARIO = Scenario(
    name="server",
    title="Server",
    summary="MLPerf LoadGen's Server: the largest Poisson QPS with p99 within --latency-bound-ms (needs "
            "mlcommons-loadgen)",
    kind=KIND,
    schema=SCHEMA,
    result=ServerResult,
    measure=measure,
    metrics=metrics,
    headline=Headline("qps", "QPS", "max", "rate",
                      detail=lambda m: f"p99 {m['p99_ms']:.1f} ms ≤ {m['latency_bound_ms']:g}" if m.get("p99_ms") else ""),
    options=_options(),
    configure=configure,
    batches=lambda batches: (min(batches),),
    unavailable=lambda backend: loadgen.unavailable(),
    rows=rows,
    columns=(Column("QPS (p99 ≤ bound)", "qps", "rate"), Column("p99", "p99_ms", "ms"),
             Column("bound", "latency_bound_ms", "ms"), Column("p50", "p50_ms", "ms"),
             Column("mean batch", "mean_batch", "ratio"), Column("LoadGen verdict", "verdict_short", "text"),
             Column("targets tried (QPS)", "tried_text", "text")),
    caption=caption,
    compared=(Compared("qps", limit="max_throughput_drop_pct", worse=-1), Compared("p99_ms"),
              Compared("verdict", "description"), Compared("calibration", "description")),
    same_config=("latency_bound_ms", "max_batch", "batch_timeout_ms", "workers", "compliant"),
    curve=Curve("trials", "target_qps", "p99_ms", "met", "target QPS (Poisson arrivals)", "p99 latency (ms)",
                limit="latency_bound_ms", note="verdict"),
)
