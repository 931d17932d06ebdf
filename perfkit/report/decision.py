"""The answer a report leads with: per model, which variant to ship, and what limits that answer.

A variant is a runtime × precision × batch of one model. The chosen one is the fastest (SingleStream p50
at the smallest batch measured for the model, as the scenario winners compare) among those that passed
parity with the reference and, where the run measured meaningful accuracy, kept top-1 ≥ 99 % of eager
fp32's (MLPerf's rule, ``perfkit select --min-relative-accuracy 0.99``). Every other scenario that ran
gets its own line: the best eligible variant by the scenario's headline figure (Offline samples/s,
Server QPS). The Rich summary and the HTML report both render these plain dicts; nothing here formats.
"""

from __future__ import annotations

from collections.abc import Iterable

from perfkit.report.console import FORMATS, fmt_bytes, fmt_latency, fmt_speedup
from perfkit.report.rows import MIN_RELATIVE_REDUCED, runtime_rank, scenarios_in, summary_rows
from perfkit.store import Record

SYNTHETIC_INT8 = "int8 accuracy not measured: calibrated on synthetic data"
RANDOM_WEIGHTS = "random weights: accuracy not meaningful"
SYNTHETIC_CALIBRATION = "int8 calibrated on synthetic data: real calibration images (--data) may do better"
NO_ACCURACY = "accuracy not measured (no --data): chosen on parity and speed only"


def _tie(choice: dict | None, runner_up: dict | None, samples: dict) -> str | None:
    """A limit line when the chosen variant and the runner-up are not told apart by their timings: the 95 %
    bootstrap interval of runner-up ÷ choice median (``perfkit.profiler.samples``, from every timed call
    both records kept) reaches 1. On a shared machine two runtimes within ~10 % of each other swap places
    from run to run; the answer then is "either", not the one that happened to come first."""
    from perfkit.profiler.samples import median_ratio_interval

    if choice is None or runner_up is None or choice["batch"] != runner_up["batch"]:
        return None
    found = [samples.get((v["runtime"], v["precision"], v["device"], v["batch"])) for v in (choice, runner_up)]
    interval = median_ratio_interval(*found) if all(found) else None
    if interval is None or interval[0] > 1:
        return None
    return (f"{choice['name']} and {runner_up['name']} are a tie within the timing noise (runner-up ÷ choice "
            f"median {runner_up['latency_ms'] / choice['latency_ms']:.2f}, 95 % interval {interval[0]:.3f}-"
            f"{interval[1]:.3f}): either will do; `perfkit profile` both on a quiet machine to separate them")


def variant_name(row: dict) -> str:
    """``onnx int8`` (with the device when it is not the CPU)."""
    parts = (row["runtime"], row["precision"], None if row["device"] in (None, "cpu") else row["device"])
    return " ".join(p for p in parts if p)


def _is_reference(row: dict, rows: list[dict]) -> bool:
    """The fp32 candidate parity compares against (eager; an ONNX file's: ONNX Runtime fp32): no parity of
    its own, and the first such fp32 row in registry order."""
    refs = [r for r in rows if r["parity_passed"] is None and r["precision"] in (None, "fp32") and r["runtime"]]
    return bool(refs) and row is min(refs, key=lambda r: runtime_rank(r["runtime"]))


def _gate(row: dict, meaningful: bool) -> str | None:
    """Why ``row`` may not be shipped (it did not run, parity, accuracy), or None."""
    if row["errors"] and not any(b["latency_median_ms"] is not None for b in row["batches"]):
        return f"{', '.join(dict.fromkeys(e.split(' ')[0] for e in row['errors']))} failed"
    if row["parity_passed"] is False:
        return "parity FAILED"
    if row["parity_passed"] is None:
        return "no parity check"
    rel = row["relative_top1"]
    if meaningful and rel is None:
        return "accuracy not measured"
    if meaningful and rel < MIN_RELATIVE_REDUCED:
        return f"top-1 {100 * rel:.2f} % of eager fp32's (< {MIN_RELATIVE_REDUCED:.0%})"
    return None


def _at(row: dict, batch: int) -> dict | None:
    return next((b for b in row["batches"] if b["batch"] == batch and b["latency_median_ms"] is not None), None)


def _variant(row: dict, timing: dict, baseline: dict | None) -> dict:
    """What the decision says of one variant at one batch."""
    base = _at(baseline, timing["batch"]) if baseline else None
    # memory is often measured at one batch only (the largest): then that one, and say which
    memory = timing if timing["peak_bytes"] is not None else next(
        (b for b in row["batches"] if b["peak_bytes"] is not None), timing)
    return {"name": variant_name(row), "runtime": row["runtime"], "precision": row["precision"],
            "device": row["device"], "batch": timing["batch"], "latency_ms": timing["latency_median_ms"],
            "peak_bytes": memory["peak_bytes"], "peak_batch": memory["batch"], "contended": timing["contended"],
            "speedup": base["latency_median_ms"] / timing["latency_median_ms"] if base else None,
            "top1_pct": row["top1_pct"], "relative_top1": row["relative_top1"], "calibration": row["calibration"]}


def _scenario_line(scenario, eligible: list[dict]) -> dict | None:
    """The best eligible variants by a scenario's headline figure (besides SingleStream)."""
    h = scenario.headline
    found = [(r, r["scenarios"][scenario.name]) for r in eligible
             if scenario.name in r["scenarios"] and r["scenarios"][scenario.name]["value"] is not None]
    found.sort(key=lambda rf: rf[1]["value"] if h.better == "min" else -rf[1]["value"])
    if not found:
        return None
    best = [{"name": variant_name(r), "runtime": r["runtime"], "precision": r["precision"], **f} for r, f in found[:2]]
    return {"scenario": scenario.name, "title": scenario.title, "unit": h.unit, "format": h.format,
            "choice": best[0], "runner_up": best[1] if len(best) > 1 else None}


def _limits(rows: list[dict], skipped: list[tuple[dict, str]], picked: list[dict], meaningful: bool) -> list[str]:
    """What limits a model's answer, as plain lines."""
    out = []
    if rows[0]["random"]:
        out.append(RANDOM_WEIGHTS)
    elif all(r["top1_pct"] is None for r in rows):
        out.append(NO_ACCURACY)
    synthetic = [r for r in rows if r["precision"] == "int8" and "not meaningful" in (r["calibration"] or "")]
    if synthetic and all(r["top1_pct"] is None for r in synthetic):
        out.append(SYNTHETIC_INT8)
    elif synthetic:
        out.append(SYNTHETIC_CALIBRATION)
    for why in dict.fromkeys(w for _, w in skipped):
        names = ", ".join(variant_name(r) for r, w in skipped if w == why)
        out.append(f"no parity for {names}" if why == "no parity check" else f"left out ({why}): {names}")
    if any(v["contended"] for v in picked):
        out.append("contended timing (other processes used the CPU): re-run on a quiet machine")
    return out


def _model_decision(rows: list[dict], scenarios: list, samples: dict) -> dict:
    meaningful = not rows[0]["random"] and any(r["top1_pct"] is not None for r in rows)
    eligible, skipped = [], []
    for r in (r for r in rows if r["runtime"]):
        why = None if _is_reference(r, rows) else _gate(r, meaningful)
        if why:
            skipped.append((r, why))
        else:
            eligible.append(r)
    reference = next((r for r in rows if _is_reference(r, rows)), None)
    batches = [b["batch"] for r in eligible for b in r["batches"] if b["latency_median_ms"] is not None]
    batch = min(batches, default=None)
    timed = sorted(((r, _at(r, batch)) for r in eligible if batch is not None and _at(r, batch)),
                   key=lambda rt: rt[1]["latency_median_ms"])
    ranked = [_variant(r, t, reference) for r, t in timed[:2]]
    lines = [line for sc in scenarios if not sc.base if (line := _scenario_line(sc, eligible))]
    contended = ranked[:1] + [{"contended": line["choice"]["contended"]} for line in lines]
    tie = _tie(*(ranked + [None, None])[:2], samples)
    return {"model": rows[0]["model"], "weights": rows[0]["weights"], "random": rows[0]["random"],
            "baseline": variant_name(reference) if reference else None,
            "choice": ranked[0] if ranked else None, "runner_up": ranked[1] if len(ranked) > 1 else None,
            "scenarios": lines, "limits": _limits(rows, skipped, contended, meaningful) + ([tie] if tie else []),
            "eligible": [variant_name(r) for r in eligible], "skipped": {variant_name(r): w for r, w in skipped}}


def decisions(records: Iterable[Record], rows: list[dict] | None = None) -> list[dict]:
    """Per model (as the run measured them): ``choice`` and ``runner_up`` (SingleStream: name, runtime,
    precision, device, batch, latency_ms, speedup over ``baseline`` at that batch, peak_bytes and peak_batch
    (the chosen batch's, else the batch memory was measured at), contended,
    top1_pct, relative_top1, calibration; None when nothing passed), ``scenarios`` (one line per other
    scenario: scenario, title, unit, format, choice and runner_up with value, detail, batch, contended),
    ``limits`` (plain lines), ``eligible`` (variant names) and ``skipped`` (variant name → why).

    ``rows``: the run's ``summary_rows`` when the caller has them already."""
    records = list(records)
    rows = summary_rows(records) if rows is None else rows
    scenarios = scenarios_in(records)
    models = dict.fromkeys((r["model"], r["weights"]) for r in rows)
    return [_model_decision([r for r in rows if (r["model"], r["weights"]) == m], scenarios, _samples(records, m))
            for m in models]


def _samples(records: list[Record], model: tuple) -> dict:
    """Every timed call's latency a model's SingleStream records kept, by (runtime, precision, device, batch)."""
    from perfkit.profiler.samples import unpack
    from perfkit.results import Kind

    return {(r.runtime, r.precision, r.device, r.batch): unpack(r.metrics.get("samples"))
            for r in records if r.kind == Kind.LATENCY and r.status == "ok" and (r.model, r.weights) == model}


def _runner_up_text(v: dict | None, fmt) -> str:
    if v is None:
        return "—"
    speedup = f" ({fmt_speedup(v['speedup'])})" if v.get("speedup") is not None else ""
    return f"{v['name']} {fmt(v)}{speedup}" + (f" b{v['batch']}" if "value" in v else "")


def _memory_text(c: dict | None) -> str:
    if c is None or c["peak_bytes"] is None:
        return "—"
    return fmt_bytes(c["peak_bytes"]) + ("" if c["peak_batch"] == c["batch"] else f" (batch {c['peak_batch']})")


def decision_rows(found: list[dict]) -> list[dict]:
    """The decision as plain-text cells, one row per model and scenario (SingleStream first), for the Rich
    table and the HTML report alike: model, random, scenario, choice, batch, figure, speedup, memory,
    runner_up, contended, limits (the model's first row only), first (the model's first row), failed."""
    out = []
    for d in found:
        c = d["choice"]
        lines = [{"scenario": "SingleStream p50", "choice": c["name"] if c else "nothing passed",
                  "batch": c["batch"] if c else None, "figure": fmt_latency(c["latency_ms"]) if c else "—",
                  "speedup": f"{fmt_speedup(c['speedup'])} vs {d['baseline']}" if c and c["speedup"] else "—",
                  "memory": _memory_text(c), "contended": bool(c and c["contended"]),
                  "runner_up": _runner_up_text(d["runner_up"], lambda v: fmt_latency(v["latency_ms"]))}]
        for s in d["scenarios"]:
            fmt = FORMATS[s["format"]]
            value = lambda v: f"{fmt(v['value'])} {s['unit']}"  # noqa: E731
            detail = f" ({s['choice']['detail']})" if s["choice"]["detail"] else ""
            lines.append({"scenario": f"{s['title']} {s['unit']}", "choice": s["choice"]["name"],
                          "batch": s["choice"]["batch"], "figure": value(s["choice"]) + detail, "speedup": "—",
                          "memory": "—", "contended": s["choice"]["contended"],
                          "runner_up": _runner_up_text(s["runner_up"], value)})
        for i, line in enumerate(lines):
            out.append({"model": d["model"], "random": d["random"], "first": i == 0, "failed": c is None,
                        "limits": d["limits"] if i == 0 else [], **line})
    return out
