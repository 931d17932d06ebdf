"""``perfkit select``: which model × runtime meets the constraints, Pareto-optimal first.

Candidates are (model, weights, runtime, precision, device). Each number comes from the newest ok
record of that candidate in the store (or in one run): latency and memory at the requested batch,
measured top-1 (published top-1 only when asked for, and labelled so), and top-1 relative to eager
fp32 on the same images (``--min-relative-accuracy 0.99``: MLPerf's rule, how an int8 candidate
qualifies). A candidate is excluded
with every reason that applies: a failed constraint, a missing number, a failed parity check.

``scenario="server"`` answers the serving question instead: candidates are ranked by the largest
target QPS at which LoadGen found p99 within a bound (the Server scenario's records measured at the
largest bound ≤ ``latency_bound_ms``), with LoadGen's verdict beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from perfkit.report.hardware import only_hardware, record_hardware
from perfkit.report.rows import candidate_key, is_random, latest_ok, parity_by_candidate, published_by_model
from perfkit.store import Kind, Record, Store

# --max-memory-mb is a deployment budget in megabytes of 10^6 bytes, as device datasheets and memory
# limits count them; every table and message of select says "MB = 10^6 bytes". Elsewhere perfkit shows
# memory in MiB (2**20 bytes: profile, run summary, summary's estimates) and says so.
MB = 1e6


@dataclass(frozen=True)
class Constraints:
    max_latency_ms: float | None = None
    min_top1: float | None = None
    max_memory_mb: float | None = None
    batch: int = 1
    device: str | None = None
    use_published: bool = False  # fall back to published top-1 where none was measured
    min_relative_accuracy: float | None = None  # measured top-1 / eager fp32's on the same images (e.g. 0.99)
    scenario: str | None = None  # "server": rank by the largest QPS that met a p99 bound (``latency_bound_ms``)
    latency_bound_ms: float | None = None


def _server(records: list[Record], key, bound_ms: float | None) -> tuple[dict, dict]:
    """Per candidate: its newest ok Server record measured at the tightest-fitting bound (the largest
    bound ≤ ``bound_ms``: a QPS that met a tighter bound meets a looser one), and every bound measured."""
    found: dict = {}
    bounds: dict = {}
    for r in sorted((r for r in records if r.kind == "server" and r.status == "ok"), key=lambda r: r.created):
        b = r.metrics.get("latency_bound_ms")
        bounds.setdefault(key(r), set()).add(b)
        if bound_ms is None or b is None or b > bound_ms:
            continue
        old = found.get(key(r))
        if old is None or b >= old.metrics["latency_bound_ms"]:
            found[key(r)] = r
    return found, bounds


def candidates(records: list[Record], batch: int = 1, bound_ms: float | None = None) -> list[dict]:
    """Every model × runtime × precision × device × hardware in ``records`` with its newest numbers at
    ``batch`` (one machine's numbers are never mixed with another's: a shared store holds many)."""
    refs = published_by_model(records)
    measured = [r for r in records if r.runtime is not None and r.kind not in (Kind.MODEL, Kind.COMPLEXITY, Kind.TRAIN)]
    machine = {id(r): record_hardware(r) for r in measured}
    key = lambda r: (*candidate_key(r), machine[id(r)]["key"])  # noqa: E731
    acc = latest_ok((r for r in measured if r.kind == Kind.ACCURACY), key)
    par = parity_by_candidate(measured, key)
    lat = latest_ok((r for r in measured if r.kind == Kind.LATENCY), lambda r: (key(r), r.batch))
    mem = latest_ok((r for r in measured if r.kind == Kind.MEMORY), lambda r: (key(r), r.batch))
    server, server_bounds = _server(measured, key, bound_ms)
    last_error: dict[tuple, Record] = {}
    for r in sorted(measured, key=lambda r: r.created):
        if r.status == "error":
            last_error[key(r)] = r
    out = []
    labels = {key(r): machine[id(r)]["label"] for r in measured}
    for k in dict.fromkeys(key(r) for r in measured):
        model, weights, runtime, precision, device, hardware = k
        a, p = acc.get(k), par.get(k, {})
        l, m = lat.get((k, batch)), mem.get((k, batch)) or mem.get((k, None))
        ref = refs.get((model, weights), {})
        out.append({
            "model": model, "weights": weights, "random": is_random(weights), "runtime": runtime,
            "precision": precision, "device": device, "hardware": labels[k], "hardware_key": hardware, "batch": batch,
            "top1_pct": a.metrics["top1_pct"] if a else None,
            "relative_top1": a.metrics.get("relative_top1") if a else None,
            "calibration": next((r.metrics["calibration"] for r in (a, l) if r and r.metrics.get("calibration")), None),
            "published_top1_pct": (a.metrics.get("ref_top1_pct") if a else None) or ref.get("acc1_pct"),
            "latency_median_ms": l.metrics["latency_median_ms"] if l else None,
            "latency_p99_ms": l.metrics.get("latency_p99_ms") if l else None,
            "throughput_per_s": l.metrics.get("throughput_per_s") if l else None,
            "peak_bytes": m.metrics["peak_bytes"] if m else None,
            "parity_passed": p.get("parity_passed"),  # every batch checked must pass
            **_server_fields(server.get(k), server_bounds.get(k, set())),
            "latency_batches": sorted(b for (kk, b) in lat if kk == k and b is not None),
            "last_error": f"{last_error[k].kind}: {last_error[k].error}" if k in last_error else None,
            "runs": sorted({r.run_id for r in (a, l, m) if r is not None}),
        })
    return out


def _server_fields(r: Record | None, bounds: set) -> dict:
    m = r.metrics if r is not None else {}
    return {"server_qps": m.get("qps"), "server_p99_ms": m.get("p99_ms"), "server_bound_ms": m.get("latency_bound_ms"),
            "server_verdict": m.get("verdict"), "server_bounds": sorted(b for b in bounds if b is not None)}


def _server_reasons(c: dict, con: Constraints) -> list[str]:
    if c["server_qps"] is not None:
        return []
    measured = ", ".join(f"{b:g} ms" for b in c["server_bounds"]) or "none"
    return [f"no Server QPS measured at a p99 bound ≤ {con.latency_bound_ms:g} ms (bounds measured: {measured}; "
            f"run `perfkit profile MODEL --scenario server --latency-bound-ms {con.latency_bound_ms:g}`)"]


def _reasons(c: dict, con: Constraints) -> list[str]:
    why = []
    if con.device is not None and c["device"] != con.device:
        why.append(f"device is {c['device'] or 'unknown'}, not {con.device}")
    if c["parity_passed"] is False:
        why.append("parity with eager FAILED")
    lat = c["latency_median_ms"]
    if con.scenario == "server":
        why += _server_reasons(c, con)
    elif lat is None:
        measured = ", ".join(map(str, c["latency_batches"])) or "none"
        why.append(f"no latency measured at batch {con.batch} (measured batches: {measured})")
    elif con.max_latency_ms is not None and lat > con.max_latency_ms:
        why.append(f"p50 latency {lat:.3f} ms > {con.max_latency_ms:g} ms")
    if con.min_top1 is not None:
        if c["top1"] is None:
            hint = "" if con.use_published else (
                "; pass --use-published to rank on published accuracy" if c["published_top1_pct"] is not None else "")
            why.append(f"no measured top-1 (run `perfkit validate` with ImageNet-val){hint}")
        elif c["top1"] < con.min_top1:
            src = "" if c["top1_source"] == "measured" else " (published)"
            why.append(f"top-1 {c['top1']:.2f}%{src} < {con.min_top1:g}%")
    if con.min_relative_accuracy is not None:
        rel = c["relative_top1"]
        if rel is None:
            why.append("no measured top-1 relative to eager fp32 (run `perfkit validate` with fp32 and this "
                       "precision on ImageNet-val)")
        elif rel < con.min_relative_accuracy:
            why.append(f"top-1 is {100 * rel:.2f}% of eager fp32's < {100 * con.min_relative_accuracy:g}%")
    if con.max_memory_mb is not None:
        if c["peak_bytes"] is None:
            why.append(f"no peak memory measured at batch {con.batch}")
        elif c["peak_bytes"] > con.max_memory_mb * MB:
            why.append(f"peak memory {c['peak_bytes'] / MB:.1f} MB > {con.max_memory_mb:g} MB (MB = 10^6 bytes)")
    if why and c["last_error"] and (lat is None or c["top1"] is None or c["relative_top1"] is None):
        why.append(f"last failure: {c['last_error']}")
    return why


def _dominates(a: dict, b: dict) -> bool:
    """More accurate and faster (Server: more QPS within the bound), strictly in one of them."""
    if a.get("server_qps") is not None and b.get("server_qps") is not None:
        speed_a, speed_b = -a["server_qps"], -b["server_qps"]
    else:
        speed_a, speed_b = a["latency_median_ms"], b["latency_median_ms"]
    return a["top1"] >= b["top1"] and speed_a <= speed_b and (a["top1"] > b["top1"] or speed_a < speed_b)


def select(store: Store, constraints: Constraints, run_id: str | None = None, hardware: str | None = None) -> dict:
    """Rank the candidates meeting ``constraints`` (Pareto-optimal first) and explain the rest; ``hardware``:
    only what was measured on matching hardware (``perfkit.report.hardware.only_hardware``).

    Returns ``{"constraints", "run", "selected": [...], "excluded": [...]}``; each selected
    candidate has ``rank``, ``pareto`` and ``top1``/``top1_source`` (measured or published);
    each excluded one has ``reasons``.
    """
    run = store.get_run(run_id)["id"] if run_id else None
    # strict: without an unreadable record, a candidate's older number would silently stand in for it
    records = only_hardware(store.records(run_id=run, strict=True), hardware, f"run {run}" if run else "the store")
    cands = candidates(records, constraints.batch, constraints.latency_bound_ms)
    for c in cands:
        if c["top1_pct"] is not None:
            c["top1"], c["top1_source"] = c["top1_pct"], "measured"
        elif constraints.use_published and c["published_top1_pct"] is not None:
            c["top1"], c["top1_source"] = c["published_top1_pct"], "published"
        else:
            c["top1"], c["top1_source"] = None, None
        c["reasons"] = _reasons(c, constraints)
    chosen = [c for c in cands if not c["reasons"]]
    excluded = [c for c in cands if c["reasons"]]
    rankable = [c for c in chosen if c["top1"] is not None]
    for c in chosen:
        c["pareto"] = c in rankable and not any(_dominates(o, c) for o in rankable if o is not c)
    if constraints.scenario == "server":  # the most queries per second served within the bound first
        chosen.sort(key=lambda c: -c["server_qps"])
    else:  # Pareto front first (most accurate first), then the dominated ones, then those without accuracy.
        chosen.sort(key=lambda c: (not c["pareto"], c["top1"] is None, -(c["top1"] or 0), c["latency_median_ms"]))
    for i, c in enumerate(chosen, start=1):
        c["rank"] = i
    excluded.sort(key=lambda c: (c["model"], c["runtime"] or "", c["precision"] or ""))
    return {"constraints": asdict(constraints), "run": run, "selected": chosen, "excluded": excluded}
