"""Rows for reports, built from a run's records only: one row per model × runtime × precision.

The row builders here are shared by the Rich tables, the HTML report and ``perfkit select``. They
read records and nothing else: the published numbers are those recorded with the run (kind model),
never looked up again, and are always labelled as published, never mixed with what was measured.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from perfkit.profiler.samples import shown
from perfkit.store import Kind, Record, Store

# Beyond these, a measured top-1 is flagged (coloured) in the summary as a possible regression.
BELOW_PUBLISHED_PP = 1.0  # torchvision's own re-evaluations land within a few tenths of a point
BELOW_EAGER_PP = 0.1  # an exported fp32 runtime should classify (almost) exactly like eager
MIN_RELATIVE_REDUCED = 0.99  # fp16/bf16/int8: MLPerf's rule, top-1 ≥ 99% of fp32's
CONTENDED_MARK = "†"  # follows a number timed while other processes used the CPU (every table, the HTML)


@functools.cache
def runtime_rank(name: str | None) -> int:
    """Runtimes sort in the backend registry's order (eager first); unknown names after them."""
    from perfkit.backends import names

    order = names()
    return order.index(name) if name in order else len(order)


def is_random(weights: str | None) -> bool:
    """Random-weight records carry the weights identity ``random:seed<N>``."""
    return bool(weights) and weights.startswith("random")


def weights_label(weights: str | None) -> str:
    """Short weights name for tables: the enum member, ``random``, or the file identity."""
    if not weights:
        return "—"
    if is_random(weights):
        return "random"
    return weights.split(".")[-1]


MEMORY_ESTIMATES = ("input", "forward_backward", "params", "total")


def memory_mib(metrics: dict) -> dict[str, float | None]:
    """A complexity record's memory estimates in MiB, by name (``input``, ``forward_backward``, ...).

    Records of schema 2 and older stored the same MiB values under ``*_mb`` keys."""
    return {k: metrics.get(f"{k}_mib", metrics.get(f"{k}_mb")) for k in MEMORY_ESTIMATES}


def published_by_model(records: Iterable[Record]) -> dict[tuple, dict]:
    """(model, weights) → the published numbers recorded with the run (kind model), or, for records
    written before model records existed, what the complexity and accuracy records carried."""
    out: dict[tuple, dict] = {}
    for r in sorted(records, key=lambda r: r.created):
        m = r.metrics
        if r.kind == Kind.MODEL and r.status == "ok":
            out[(r.model, r.weights)] = {"acc1_pct": m.get("ref_top1_pct"), "acc5_pct": m.get("ref_top5_pct"),
                                         "params": m.get("ref_params"), "gmacs": m.get("ref_gmacs"),
                                         "weights": m.get("ref_weights")}
        elif r.kind == Kind.COMPLEXITY and r.status == "ok" and (r.model, r.weights) not in out:
            out.setdefault((r.model, r.weights), {"params": m.get("ref_params"), "gmacs": m.get("ref_gmacs")})
    return {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in out.items()}


def load_run(store: Store, run_id: str, *, strict: bool = False) -> tuple[dict, list[Record]]:
    """The run (``latest``, an id or a unique prefix) and all its records, oldest first (a record that
    cannot be read: skipped with a warning naming it, or with ``strict`` an error; see ``Store.records``)."""
    run = store.get_run(run_id)
    return run, store.records(run["id"], strict=strict)


def latest_ok(records: Iterable[Record], key) -> dict:
    """The newest ok record for each ``key(record)`` (a resumed run may measure a thing twice)."""
    out = {}
    for r in sorted(records, key=lambda r: r.created):
        if r.status == "ok":
            out[key(r)] = r
    return out


def _fill_weights(records: list[Record]) -> dict[str, str]:
    """Model -> its weights identity when the run used exactly one (error records often lack it)."""
    seen: dict[str, set] = {}
    for r in records:
        if r.weights and r.kind not in (Kind.TRAIN, Kind.MODEL):  # a training job is a different model (its own classes)
            seen.setdefault(r.model, set()).add(r.weights)
    return {m: next(iter(w)) for m, w in seen.items() if len(w) == 1}


def candidate_key(r: Record, weights: dict[str, str] | None = None) -> tuple:
    """(model, weights, runtime, precision, device): what one summary row describes."""
    w = r.weights or (weights or {}).get(r.model)
    return (r.model, w, r.runtime, r.precision, r.device)


def _sort_key(key: tuple, order: dict[str, int]) -> tuple:
    model, weights, runtime, precision, device = key
    return (order.get(model, 0), model, weights or "", runtime_rank(runtime), runtime or "",
            precision or "", device or "")


def summary_rows(records: list[Record]) -> list[dict]:
    """One row per model × weights × runtime × precision × device, with raw numbers.

    Keys: model, weights, random, runtime, precision, device; top1_pct/top5_pct (measured),
    ref_top1_pct/ref_top5_pct/ref_weights (published), delta_top1_vs_ref_pp, delta_top5_vs_ref_pp,
    delta_top1_vs_eager_pp, images, dataset_images; parity_agreement (worst batch), parity_max_abs_diff, parity_passed;
    batches (list of {batch, latency_median_ms, latency_p90_ms, latency_p99_ms, throughput_per_s, peak_bytes});
    calibration (what an int8 row was calibrated on), relative_top1 (top-1 / eager fp32's);
    scenarios (scenario name → {batch, value, detail, other_cpu_pct, contended}: the headline figure of
    every scenario but SingleStream, where measured);
    peak_bytes (smallest batch measured); params, macs; errors (the steps that failed); flags (why a row
    is coloured); status (ok, warn, fail). Missing numbers are ``None``.
    """
    wmap = _fill_weights(records)
    refs = published_by_model(records)
    order: dict[str, int] = {}
    for r in records:
        order.setdefault(r.model, len(order))
    key = functools.partial(candidate_key, weights=wmap)

    measured = [r for r in records if r.kind not in (Kind.MODEL, Kind.COMPLEXITY, Kind.TRAIN)]
    keys = {key(r) for r in measured if r.runtime is not None}
    for model in order:  # a model that only has complexity or runtime-less errors still gets a row
        if not any(k[0] == model for k in keys) and any(
                r.model == model and r.kind not in (Kind.TRAIN, Kind.MODEL) for r in records):
            keys.add((model, wmap.get(model), None, None, None))

    complexity = latest_ok((r for r in records if r.kind == Kind.COMPLEXITY), lambda r: r.model)
    accuracy = latest_ok((r for r in records if r.kind == Kind.ACCURACY), key)
    parity = parity_by_candidate(records, key)
    latency = latest_ok((r for r in records if r.kind == Kind.LATENCY), lambda r: (key(r), r.batch))
    memory = latest_ok((r for r in records if r.kind == Kind.MEMORY), lambda r: (key(r), r.batch))
    calibrations = {key(r): r.metrics["calibration"] for r in measured if r.metrics.get("calibration")}
    others = [(sc, latest_ok((r for r in records if r.kind == sc.kind), key)) for sc in scenarios_in(records)
              if not sc.base]
    errors: dict[tuple, list[str]] = {}
    for r in measured:
        if r.status == "error" and r.runtime is not None:
            errors.setdefault(key(r), []).append(f"{r.kind}{'' if r.batch is None else f' (batch {r.batch})'}")

    rows = []
    for k in sorted(keys, key=lambda k: _sort_key(k, order)):
        model, weights, runtime, precision, device = k
        row = {"model": model, "weights": weights, "random": is_random(weights), "runtime": runtime,
               "precision": precision, "device": device}
        acc = accuracy.get(k)
        row.update(_accuracy_fields(acc.metrics if acc else {}, refs.get((model, weights), {})))
        row.update(parity.get(k, {"parity_agreement": None, "parity_max_abs_diff": None, "parity_passed": None}))
        row["batches"] = _batch_fields(k, latency, memory)
        row["peak_bytes"] = next((b["peak_bytes"] for b in row["batches"] if b["peak_bytes"] is not None), None)
        row["scenarios"] = {sc.name: _headline_fields(sc, found[k]) for sc, found in others if k in found}
        cx = complexity.get(model)
        row["params"] = cx.metrics.get("params") if cx else None
        row["macs"] = cx.metrics.get("macs") if cx else None
        row["errors"] = errors.get(k, [])
        row["calibration"] = calibrations.get(k)
        row["relative_top1"] = acc.metrics.get("relative_top1") if acc else None
        _judge(row)
        rows.append(row)
    return rows


def _headline_fields(scenario, r: Record) -> dict:
    """A scenario's headline figure of a candidate, with its batch and a short detail (Offline: its K)."""
    m = r.metrics
    return {"batch": r.batch, "value": m.get(scenario.headline.metric), "detail": scenario.headline.detail(m),
            **_contention_fields(r)}


def scenarios_in(records: Iterable[Record]) -> list:
    """The scenarios (``perfkit.profiler.scenarios``) whose records are among ``records``, in registry order."""
    from perfkit.profiler.scenarios import all_scenarios

    kinds = {str(r.kind) for r in records}
    return [s for s in all_scenarios() if str(s.kind) in kinds]


def timing_kinds() -> set[str]:
    """The record kinds of every scenario (what contention is measured for)."""
    from perfkit.profiler.scenarios import all_scenarios

    return {str(s.kind) for s in all_scenarios()}


def _contention_fields(r: Record | None) -> dict:
    """A timing's contention: other_cpu_pct (None: not measured, or a record older than schema 4)
    and contended (True only when measured and contended)."""
    m = r.metrics if r is not None else {}
    return {"other_cpu_pct": m.get("other_cpu_pct"), "contended": bool(m.get("contended"))}


def contention_notes(records: Iterable[Record]) -> list[str]:
    """Plain-text lines on the timings other processes disturbed (the newest ok latency and Offline
    records), and on those whose contention could not be measured; none for older records."""
    records = list(records)
    kinds = timing_kinds()
    timings = list(latest_ok((r for r in records if str(r.kind) in kinds),
                             lambda r: (r.kind, r.model, r.runtime, r.precision, r.batch, r.device)).values())
    hit = [r for r in timings if r.metrics.get("contended")]
    lines = []
    if hit:
        pcts = sorted(r.metrics["other_cpu_pct"] for r in hit)
        share = f"{pcts[0]:.0f} %" if round(pcts[0]) == round(pcts[-1]) else f"{pcts[0]:.0f}–{pcts[-1]:.0f} %"
        several = len({r.model for r in timings}) > 1
        names = [f"{r.model + ' ' if several else ''}{r.runtime} {r.precision} batch {r.batch}"
                 f"{'' if r.kind == Kind.LATENCY else ' ' + _scenario_name(r.kind)}" for r in hit]
        which = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        lines.append(f"{CONTENDED_MARK} contended: other processes used {share} of the CPU during {len(hit)} of "
                     f"{len(timings)} timings ({which}) — re-run on a quiet machine")
    unmeasured = sum("other_cpu_pct" in r.metrics and r.metrics["other_cpu_pct"] is None for r in timings)
    if unmeasured:
        lines.append(f"contention not measured for {unmeasured} timing(s) (a window too short for the kernel's 10 ms "
                     "counters, or no /proc/stat on this platform): not known to be clean")
    return lines


def published_applies(metrics: dict) -> bool:
    """Whether ImageNet's published accuracy may stand beside an accuracy record: not when it was
    measured on the user's own classes (an ImageFolder), where the published numbers mean nothing."""
    return metrics.get("layout") != "imagefolder"


def _accuracy_fields(m: dict, ref: dict) -> dict:
    """Measured and published accuracy side by side, and their difference."""
    if not published_applies(m):
        ref = {k: v for k, v in ref.items() if k not in ("acc1_pct", "acc5_pct")}
    out = dict(
        top1_pct=m.get("top1_pct"), top5_pct=m.get("top5_pct"), images=m.get("images"),
        dataset_images=m.get("dataset_images"),
        # the harness leaves the published numbers out for random weights; the row still shows the
        # architecture's published accuracy, labelled as such, next to the random-weights mark
        ref_top1_pct=_first(m.get("ref_top1_pct"), ref.get("acc1_pct")),
        ref_top5_pct=_first(m.get("ref_top5_pct"), ref.get("acc5_pct")),
        ref_weights=ref.get("weights"), ref_params=ref.get("params"), ref_gmacs=ref.get("gmacs"),
        delta_top1_vs_eager_pp=m.get("delta_top1_vs_eager_pp"),
    )
    out["delta_top1_vs_ref_pp"] = _diff(out["top1_pct"], out["ref_top1_pct"])
    out["delta_top5_vs_ref_pp"] = _diff(out["top5_pct"], out["ref_top5_pct"])
    return out


def _batch_fields(k: tuple, latency: dict, memory: dict) -> list[dict]:
    """Latency and peak memory of one candidate, per batch size measured."""
    batches = sorted({b for (kk, b) in latency if kk == k} | {b for (kk, b) in memory if kk == k},
                     key=lambda b: (b is None, b))
    out = []
    for b in batches:
        lat, mem = latency.get((k, b)), memory.get((k, b))
        out.append({
            "batch": b,
            "latency_median_ms": lat.metrics.get("latency_median_ms") if lat else None,
            # the p99 of fewer than 100 calls is not a p99, nor the p90 of fewer than 10 a p90
            # (perfkit.profiler.samples): not shown
            "latency_p90_ms": shown(90, lat.metrics.get("latency_p90_ms"), lat.metrics.get("iterations")) if lat else None,
            "latency_p99_ms": shown(99, lat.metrics.get("latency_p99_ms"), lat.metrics.get("iterations")) if lat else None,
            "throughput_per_s": lat.metrics.get("throughput_per_s") if lat else None,
            "peak_bytes": mem.metrics.get("peak_bytes") if mem else None, **_contention_fields(lat),
        })
    return out


PARITY_DISTANCES = ("max_abs_diff", "mean_abs_diff", "max_rel_diff")


def parity_distances(metrics: dict) -> dict:
    """A parity record's metrics with its logit distances as NaN where the runtime produced NaN/Inf
    logits: the record stores them as missing (an ok record holds no NaN), which would otherwise read
    as "not measured" or, worse, as the finite entries' small difference."""
    if not metrics.get("nonfinite"):
        return metrics
    return {**metrics, **{k: math.nan for k in PARITY_DISTANCES}}


def _worst(a, b):
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def parity_by_candidate(records: list[Record], key=candidate_key) -> dict[tuple, dict]:
    """Parity per candidate over all the batches it was checked at: worst agreement, largest
    difference, and passed only when every batch passed."""
    per_batch = latest_ok((r for r in records if r.kind == Kind.PARITY), lambda r: (key(r), r.batch))
    out: dict[tuple, dict] = {}
    for (k, _), r in per_batch.items():
        m = parity_distances(r.metrics)
        agg = out.setdefault(k, {"parity_agreement": m["top1_agreement"], "parity_max_abs_diff": m["max_abs_diff"],
                                 "parity_passed": bool(m["passed"])})
        agg["parity_agreement"] = min(agg["parity_agreement"], m["top1_agreement"])
        agg["parity_max_abs_diff"] = _worst(agg["parity_max_abs_diff"], m["max_abs_diff"])
        agg["parity_passed"] = agg["parity_passed"] and bool(m["passed"])
    return out


def _first(*values):
    return next((v for v in values if v is not None), None)


def _diff(a, b):
    return None if a is None or b is None else float(a) - float(b)


def _judge(row: dict) -> None:
    """Flag failures (red) and likely regressions (yellow); random weights are never accuracy-flagged."""
    fail, warn = [], []
    fail += [f"{step} failed" for step in row["errors"]]
    if row["parity_passed"] is False:
        fail.append("parity FAIL")
    if not row["random"]:
        d = row["delta_top1_vs_ref_pp"]
        if d is not None and d < -BELOW_PUBLISHED_PP:
            warn.append(f"top-1 {-d:.2f} pp below published")
        e, rel = row["delta_top1_vs_eager_pp"], row["relative_top1"]
        if row["precision"] in (None, "fp32"):
            if e is not None and row["runtime"] != "eager" and e < -BELOW_EAGER_PP:
                warn.append(f"top-1 {-e:.2f} pp below eager")
        elif rel is not None and rel < MIN_RELATIVE_REDUCED:
            warn.append(f"top-1 {100 * rel:.2f}% of eager fp32's ({-e:.2f} pp below; < {MIN_RELATIVE_REDUCED:.0%})")
    if row["random"]:
        warn.append("random weights: accuracy not meaningful")
    if row["calibration"] and "not meaningful" in row["calibration"]:
        warn.append("int8 calibrated on synthetic data: accuracy not meaningful")
    if row["images"] is not None and row["dataset_images"] is not None and row["images"] != row["dataset_images"]:
        warn.append(f"accuracy on {row['images']} of {row['dataset_images']} images (a subset)")
    contended = _contended_flag(row)
    row["flags"] = fail + warn + contended
    row["status"] = "fail" if fail else ("warn" if contended or any("below" in w for w in warn) else "ok")


def _contended_flag(row: dict) -> list[str]:
    """``contended: …`` when any timing of the row was taken while other processes used the CPU."""
    hit = [b for b in row["batches"] if b["contended"]]
    others = {name: f for name, f in row["scenarios"].items() if f["contended"]}
    if not hit and not others:
        return []
    worst = max(x["other_cpu_pct"] for x in [*hit, *others.values()])
    what = [f"batch {', '.join(str(b['batch']) for b in hit)}"] if hit else []
    what += [f"{name} (batch {f['batch']})" for name, f in others.items()]
    return [f"contended: other processes used up to {worst:.0f} % of the CPU while timing {' and '.join(what)} "
            f"({CONTENDED_MARK}) — re-run on a quiet machine"]


def _scenario_name(kind) -> str:
    from perfkit.profiler.scenarios import by_kind

    found = by_kind(str(kind))
    return found.name if found is not None else str(kind)


def scenario_rows(scenario, records: Iterable[Record]) -> list[dict]:
    """A scenario's table rows (its own ``rows``: raw values, failures too), each marked ``random`` when its
    weights are, in the report's order: models as they ran, runtimes in registry order."""
    records = list(records)
    order = {m: i for i, m in enumerate(dict.fromkeys(r.model for r in records))}
    rows = [{**row, "random": is_random(row.get("weights"))} for row in scenario.rows(records)]
    return sorted(rows, key=lambda r: (order.get(r["model"], 0), r["model"], runtime_rank(r["runtime"]),
                                       r["precision"] or "", r["device"] or "", r["batch"] or 0))


def winners(records: Iterable[Record]) -> list[dict]:
    """Which runtime wins each scenario, per model × precision × device: the best headline figure of
    the scenario (SingleStream: the lowest p50 at the smallest batch measured; Offline: the most
    samples/s), as {model, precision, device, by: {scenario name: {runtime, batch, value, detail,
    contended}}}."""
    records = list(records)
    out: dict[tuple, dict] = {}
    for scenario in scenarios_in(records):
        h = scenario.headline
        ok = [r for r in scenario_rows(scenario, records) if r["status"] == "ok" and r.get(h.metric) is not None]
        smallest = {}
        for r in ok:
            group = (r["model"], r["precision"], r["device"])
            smallest[group] = min(smallest.get(group, r["batch"]), r["batch"])
        for r in ok:
            group = (r["model"], r["precision"], r["device"])
            if h.smallest_batch and r["batch"] != smallest[group]:
                continue
            best = out.setdefault(group, {}).get(scenario.name)
            value = r[h.metric]
            if best is None or (value < best["value"] if h.better == "min" else value > best["value"]):
                out[group][scenario.name] = {"runtime": r["runtime"], "batch": r["batch"], "value": value,
                                             "detail": h.detail(r), "contended": bool(r.get("contended"))}
    return [{"model": m, "precision": p, "device": d, "by": by} for (m, p, d), by in out.items()]


def failure_rows(records: list[Record]) -> list[dict]:
    """What could not run and why: every error record of the run."""
    return [{"kind": str(r.kind), "model": r.model, "runtime": r.runtime, "precision": r.precision,
             "batch": r.batch, "device": r.device, "error": r.error} for r in records if r.status == "error"]


def _train_key(r: Record) -> tuple:
    return (r.model, r.weights, r.metrics.get("dataset"), r.precision, r.device)


def training_curves(records: list[Record]) -> dict[tuple, list[dict]]:
    """Per training job (model, weights, dataset, precision, device): its epochs in order."""
    epochs = latest_ok((r for r in records if r.kind == Kind.TRAIN), lambda r: (_train_key(r), r.metrics["epoch"]))
    out: dict[tuple, list[dict]] = {}
    for (k, _), r in sorted(epochs.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        out.setdefault(k, []).append(r.metrics)
    return out


def training_rows(records: list[Record]) -> list[dict]:
    """The training comparison: best val acc and its epoch, time per epoch, total time per job."""
    rows = []
    for (model, weights, dataset, precision, device), epochs in training_curves(records).items():
        last = epochs[-1]
        best = max(epochs, key=lambda e: e["val_acc"])
        seconds = [e["epoch_seconds"] for e in epochs]
        rows.append({
            "model": model, "weights": weights, "random": is_random(weights), "dataset": dataset,
            "precision": precision, "device": device, "epochs_done": len(epochs), "epochs": last.get("epochs"),
            # the trainer's own bookkeeping wins (it saw every epoch, even ones resumed away from)
            "best_val_acc": last.get("best_val_acc", best["val_acc"]),
            "best_epoch": last.get("best_epoch", best["epoch"]),
            "final_train_acc": last["train_acc"], "final_val_acc": last["val_acc"],
            "epoch_seconds_mean": sum(seconds) / len(seconds),
            "images_per_s_mean": _mean(e.get("images_per_s") for e in epochs),
            "total_seconds": last.get("total_seconds", sum(seconds)),
        })
    return rows


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def run_summary(store: Store, run_id: str) -> dict:
    """Everything the summary shows, as raw data: run, rows, failures, training."""
    run, records = load_run(store, run_id)
    return {"run": run, "rows": summary_rows(records), "failures": failure_rows(records),
            "training": training_rows(records)}


