"""``perfkit regress``: compare a candidate run with a baseline, record by record.

Records match on (kind, model, runtime, precision, batch, device); accuracy ignores the batch it
was evaluated with; SingleStream (kind latency) and Offline (kind throughput) are different kinds,
so they are never compared with each other. Each compared metric is a number (its change in pp for
a percentage, in % otherwise), a verdict (parity's ``passed``) or a description (text: the
calibration set of an int8 result, reported as changed when it differs). Gates: a top-1 drop beyond
``max_top1_drop_pp``, a p50 latency increase beyond ``max_latency_increase_pct``, an Offline
samples/s drop beyond ``max_throughput_drop_pct``, a parity check that passed and now fails, and a
step that ran and now errors (an export included). Everything else that changed is reported
without failing.

Like with like: a timing is judged only against one taken in the same configuration (the runtime
configuration recorded with it: hints, streams, threads, sessions; for Offline also the K and the
threads per request that won). When that differs, the change is reported as ``config changed``,
naming what differs, and not gated. Either side is a run in the store or a JSON export
(``perfkit report RUN --json-out FILE``), so CI can keep its baseline in git.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from perfkit.errors import PerfkitError, UsageError
from perfkit.report.hardware import labels, only_hardware, record_hardware
from perfkit.report.records_io import describe, read_json
from perfkit.report.rows import load_run
from perfkit.store import Kind, Record, Store

DEFAULT_MAX_TOP1_DROP_PP = 0.5
DEFAULT_MAX_LATENCY_INCREASE_PCT = 10.0
DEFAULT_MAX_THROUGHPUT_DROP_PCT = 10.0

NUMBER, VERDICT, DESCRIPTION = "number", "verdict", "description"


@dataclass(frozen=True)
class Metric:
    """One compared metric: a number, a verdict (a bool: a pass that now fails is a regression) or a
    description (text, only ever reported as changed).

    A gated number names its threshold (``limit``, a key of ``compare``'s limits) and the direction
    that is worse (``worse``: +1 a rise, -1 a drop); a gated number must be there in an ok record.
    """

    name: str
    type: str = NUMBER
    limit: str | None = None
    worse: int = 0

    def problem(self, value) -> str | None:
        """Why ``value`` cannot be compared as this metric (None when it can)."""
        if self.type == DESCRIPTION:
            return None if value is None or isinstance(value, str) else "not text"
        if self.type == VERDICT:
            return None if isinstance(value, bool) else "not true or false"
        if value is None:
            return "not a number" if self.limit else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):  # True is an int to Python
            return "not a number"
        return None if math.isfinite(value) else "not a finite number"  # inf/NaN would switch a gate off


_CALIBRATION = Metric("calibration", DESCRIPTION)
# kind -> its compared metrics. Records match per precision (it is part of the key): an int8 result
# is only ever compared with an int8 result, and a change of its calibration set is reported beside
# its numbers. Train records are one per epoch: the newest of a key (the last epoch) is compared.
_STEPS: dict[Kind, tuple[Metric, ...]] = {
    Kind.ACCURACY: (Metric("top1_pct", limit="max_top1_drop_pp", worse=-1), Metric("top5_pct"),
                    Metric("relative_top1"), _CALIBRATION),
    Kind.PARITY: (Metric("passed", VERDICT), Metric("top1_agreement"), Metric("max_abs_diff"), _CALIBRATION),
    Kind.MEMORY: (Metric("peak_bytes"),),
    Kind.COMPLEXITY: (Metric("params"), Metric("macs")),
    Kind.EXPORT: (Metric("artifact_bytes"), _CALIBRATION),
    Kind.TRAIN: (Metric("val_acc"), Metric("best_val_acc"), Metric("epoch_seconds")),
}


def compared(kind) -> tuple[Metric, ...]:
    """The metrics compared for records of ``kind``: a step's, or what its scenario declares."""
    from perfkit.profiler.scenarios import by_kind

    if kind in _STEPS:
        return _STEPS[kind]
    scenario = by_kind(str(kind))
    return () if scenario is None else tuple(Metric(c.metric, c.type, c.limit, c.worse) for c in scenario.compared)


def _timing(kind):
    """The scenario whose timings records of ``kind`` are (None: not a timing)."""
    from perfkit.profiler.scenarios import by_kind

    return by_kind(str(kind))


_ENV_KEYS = ("cpu_model", "gpu_name", "driver", "cuda", "cpu_count")


@dataclass(frozen=True)
class Side:
    label: str  # run id, or the file it came from
    run: dict
    records: list[Record]


def load_side(store: Store | None, ref: str) -> Side:
    """A JSON export (a path ending in .json, or any existing file) or a run of the store."""
    path = Path(ref)
    if path.suffix == ".json" or path.is_file():
        run, records = read_json(path)
        check_compared(str(path), records)
        return Side(f"{path} (run {run.get('id')})", run, records)
    if store is None:
        raise PerfkitError(f"'{ref}' is not a file, and no run store was given to look it up in")
    run, records = load_run(store, ref, strict=True)  # a record left out could hide a regression
    # perfkit never stores a non-finite number (the schema refuses NaN; parity records a non-finite
    # distance as None), so one here was written by something else. It is refused like a malformed
    # file rather than judged: an infinite baseline would make any candidate look improved, and a
    # regression verdict would blame the candidate for a broken reference.
    check_compared(f"run {run['id']}", records)
    return Side(run["id"], run, records)


def on_hardware(side: Side, text: str | None) -> Side:
    """``side`` with only its records measured on hardware matching ``--hardware TEXT``."""
    return Side(side.label, side.run, only_hardware(side.records, text, side.label))


def check_compared(where: str, records: list[Record]) -> None:
    """Every metric regress compares must be of its type (a hand-edited baseline may say "fast",
    ``true`` or ``Infinity``): the first that is not is one error naming ``where``, the record and it."""
    for i, r in enumerate(records):
        for metric in compared(r.kind) if r.status == "ok" else ():
            value = r.metrics.get(metric.name)
            problem = metric.problem(value)
            if problem:
                raise PerfkitError(f"{where} holds a malformed record ({describe(i, r)}): {metric.name} is "
                                   f"{json.dumps(value, default=str)}, {problem}")


def _key(r: Record) -> tuple:
    # An accuracy pass's batch size is how it was evaluated, not what was measured: runs that
    # evaluated with different batch sizes still compare. Latency, memory and parity are per batch.
    batch = None if r.kind in (Kind.ACCURACY, Kind.COMPLEXITY) else r.batch
    return (str(r.kind), r.model, r.runtime, r.precision, batch, r.device)


def _latest(records: list[Record]) -> dict[tuple, Record]:
    """The newest record (ok or error) per key: a step that failed and then ran on resume is ok."""
    out = {}
    for r in sorted(records, key=lambda r: r.created):
        if compared(r.kind):
            out[_key(r)] = r
    return out


def _change(metric: Metric, a, b) -> tuple[float | None, str]:
    if metric.type != NUMBER or a is None or b is None:
        return None, ""
    if metric.name.endswith("_pct"):
        return float(b) - float(a), "pp"
    if a == 0:
        return None, "%"
    return 100.0 * (float(b) - float(a)) / abs(float(a)), "%"


def configuration(r: Record) -> dict:
    """What a timing was taken with: its runtime configuration, and what its scenario adds to it (Offline:
    the winning K and threads per request; an older record without one compares as unknown)."""
    out = dict(r.metrics.get("runtime_config") or {})
    scenario = _timing(r.kind)
    out.update({k: r.metrics.get(k) for k in (scenario.same_config if scenario else ())})
    return out


def config_differences(a: Record, b: Record) -> list[str]:
    """``key: baseline → candidate`` for every configuration entry that differs (none when either
    side recorded no configuration: old baselines stay comparable)."""
    if _timing(a.kind) is None:
        return []
    ca, cb = configuration(a), configuration(b)
    if not a.metrics.get("runtime_config") or not b.metrics.get("runtime_config"):
        return []
    return [f"{k}: {ca.get(k)} → {cb.get(k)}" for k in sorted(set(ca) | set(cb), key=str) if ca.get(k) != cb.get(k)]


def _judge(metric: Metric, a, b, change: float | None, limits: dict) -> str:
    if a == b:
        return "same"
    if metric.type == VERDICT:
        return "regression" if a and not b else "improved"
    if metric.limit and a is not None and b is not None:
        # a % change from 0 has no size, only a direction: it still passes the gate or fails it
        worse = metric.worse * (change if change is not None else math.copysign(math.inf, b - a))
        limit = limits[metric.limit]
        return "regression" if worse > limit else ("improved" if worse < -limit else "within")
    return "changed"


def contended_sides(a: Record, b: Record) -> str | None:
    """Why two timings cannot be judged against each other: either was taken while other processes
    used the CPU (``contended`` in the record, schema 4), so its change says how busy the machine was,
    not how fast the runtime is. Reported with the verdict ``contended``, never gated."""
    share = lambda pct: f"{pct:.0f} %" if isinstance(pct, (int, float)) else "an unrecorded share"  # noqa: E731
    sides = [f"{name}: other processes used {share(r.metrics.get('other_cpu_pct'))} of the CPU"
             for name, r in (("baseline", a), ("candidate", b)) if r.metrics.get("contended")]
    return "; ".join(sides) or None


def noise_interval(a: Record, b: Record) -> tuple[float, float] | None:
    """The 95 % bootstrap interval of the change of a timing's median, in %, from both records' stored
    samples (``perfkit.profiler.samples``); None where a side kept too few or none (older records)."""
    from perfkit.profiler.samples import median_ratio_interval, unpack

    sa, sb = unpack(a.metrics.get("samples")), unpack(b.metrics.get("samples"))
    found = median_ratio_interval(sa, sb) if sa and sb else None
    return None if found is None else (100 * (found[0] - 1), 100 * (found[1] - 1))


def _against_noise(verdict: str, interval: tuple[float, float] | None) -> str:
    """A gated median that moved past its limit counts only when the interval says it moved at all: a
    regression whose interval reaches 0 % (or an improvement whose interval does) is ``inconclusive``."""
    if interval is None:
        return verdict
    low, high = interval
    moved = low > 0 or high < 0
    return "inconclusive" if verdict in ("regression", "improved") and not moved else verdict


def _metric_changes(where: dict, a: Record, b: Record, limits: dict) -> list[dict]:
    """Each compared metric of two ok records of one key, judged (not gated across configurations); a
    gated median with stored samples on both sides is judged against its noise, its interval reported."""
    differs = config_differences(a, b)
    out = []
    for metric in compared(a.kind):
        va, vb = a.metrics.get(metric.name), b.metrics.get(metric.name)
        if va is None and vb is None:
            continue
        change, unit = _change(metric, va, vb)
        verdict = _judge(metric, va, vb, change, limits)
        entry = {**where, "metric": metric.name, "baseline": va, "candidate": vb, "change": change, "unit": unit,
                 "verdict": verdict}
        if metric.limit and metric.name.endswith("median_ms") and verdict != "same":
            interval = noise_interval(a, b)
            if interval is not None:
                entry.update(verdict=_against_noise(verdict, interval), interval=list(interval))
        if differs and verdict != "same":
            entry.update(verdict="config changed", config=differs)
        elif verdict != "same" and change is not None and (busy := contended_sides(a, b)):
            entry.update(verdict="contended", contended=busy)
        out.append(entry)
    return out


def compare(baseline: Side, candidate: Side, *, max_top1_drop_pp: float = DEFAULT_MAX_TOP1_DROP_PP,
            max_latency_increase_pct: float = DEFAULT_MAX_LATENCY_INCREASE_PCT,
            max_throughput_drop_pct: float = DEFAULT_MAX_THROUGHPUT_DROP_PCT, across_hardware: bool = False) -> dict:
    """Compare two sides; ``regressions`` counts the changes that fail the gate. Records measured on other
    hardware than their counterpart are refused (``same_hardware``) unless ``across_hardware``.

    Returns ``{"baseline", "candidate", "thresholds", "changes": [...], "compared", "regressions",
    "missing", "new", "env_differences", "hardware"}``; each change has the record key, metric, baseline,
    candidate, change (pp for percentages, % otherwise), unit, verdict (regression, improved,
    within, inconclusive, changed, config changed, contended, same, now fails, fixed, missing, new),
    for a median with stored samples on both sides its 95 % ``interval`` (% change), and, for a timing
    taken in another configuration, ``config`` (what differs).
    """
    limits = {"max_top1_drop_pp": max_top1_drop_pp, "max_latency_increase_pct": max_latency_increase_pct,
              "max_throughput_drop_pct": max_throughput_drop_pct}
    base, cand = _latest(baseline.records), _latest(candidate.records)
    common = [k for k in base if k in cand]
    if not common:
        raise PerfkitError(
            f"the baseline ({baseline.label}) and the candidate ({candidate.label}) have no record in common: "
            f"compare runs of the same models, runtimes, precisions and batches")
    hardware = same_hardware(baseline, candidate, [(base[k], cand[k]) for k in common], across_hardware)
    changes = []
    for k in base:
        kind, model, runtime, precision, batch, device = k
        where = {"kind": kind, "model": model, "runtime": runtime, "precision": precision, "batch": batch,
                 "device": device}
        a, b = base[k], cand.get(k)
        if b is None:
            changes.append({**where, "metric": "record", "baseline": a.status, "candidate": None, "change": None,
                            "unit": "", "verdict": "missing"})
            continue
        if a.status != b.status:
            verdict = "now fails" if b.status == "error" else "fixed"
            changes.append({**where, "metric": "status", "baseline": a.error or a.status,
                            "candidate": b.error or b.status, "change": None, "unit": "", "verdict": verdict})
            continue
        if a.status == "error":
            continue  # failed in both: nothing to compare, and nothing new
        changes += _metric_changes(where, a, b, limits)
    for k in cand:
        if k not in base:
            kind, model, runtime, precision, batch, device = k
            changes.append({"kind": kind, "model": model, "runtime": runtime, "precision": precision, "batch": batch,
                            "device": device, "metric": "record", "baseline": None, "candidate": cand[k].status,
                            "change": None, "unit": "", "verdict": "new"})
    verdicts = [c["verdict"] for c in changes]
    return {
        "baseline": baseline.label, "candidate": candidate.label,
        "thresholds": limits,
        "changes": changes, "compared": len(common),
        "regressions": sum(v in ("regression", "now fails") for v in verdicts),
        "missing": verdicts.count("missing"), "new": verdicts.count("new"),
        "env_differences": env_differences(baseline.run.get("env") or {}, candidate.run.get("env") or {}),
        "hardware": hardware,
    }


def same_hardware(baseline: Side, candidate: Side, pairs: list[tuple[Record, Record]], allowed: bool) -> dict:
    """The hardware of each side's compared records (``{"baseline": [labels], "candidate": [labels]}``).
    A pair measured on different hardware (``perfkit.report.hardware``) is a UsageError naming both, unless
    ``allowed`` (``--across-hardware``): a latency from another machine is a different machine, not a regression.
    Only a difference known is refused: a record whose fingerprint names no CPU or GPU compares."""
    for a, b in pairs:
        ha, hb = record_hardware(a), record_hardware(b)
        known = ha.get("known", True) and hb.get("known", True)
        if known and ha["key"] != hb["key"] and not allowed:
            raise UsageError(f"the baseline ({baseline.label}) was measured on {ha['label']} [{ha['key']}] and the "
                             f"candidate ({candidate.label}) on {hb['label']} [{hb['key']}]: pass --across-hardware "
                             "to compare them anyway, or --hardware to compare one machine's records")
    return {"baseline": labels(a for a, _ in pairs), "candidate": labels(b for _, b in pairs)}


def env_differences(a: dict, b: dict) -> list[str]:
    """Hardware and library differences between two runs (latency across machines is not comparable)."""
    out = [f"{k}: {a.get(k)} → {b.get(k)}" for k in _ENV_KEYS if a.get(k) != b.get(k)]
    la, lb = a.get("libraries") or {}, b.get("libraries") or {}
    out += [f"{lib}: {la.get(lib)} → {lb.get(lib)}" for lib in sorted(set(la) | set(lb)) if la.get(lib) != lb.get(lib)]
    return out
