"""The single-file HTML report: a Jinja2 template with plotly.js inlined (no network requests).

Everything comes from the run's records through the row builders of ``perfkit.report.rows``
(the published numbers too: they were recorded with the run). Measured
accuracy and published accuracy are separate traces with separate names; when a run has no
measured accuracy (no ImageNet-val given), the charts show published numbers only and say so.
"""

from __future__ import annotations

import time
from pathlib import Path

from perfkit.deps import require
from perfkit.report.console import (
    FORMATS, fmt_bytes, fmt_float, fmt_int, fmt_latency, fmt_sci, fmt_seconds, fmt_time,
)
from perfkit.report.decision import decision_rows, decisions
from perfkit.report.hardware import across_machines, labels, machine_rows, only_hardware
from perfkit.report.output import check_writable, write_text
from perfkit.report.rows import (
    CONTENDED_MARK, contention_notes, failure_rows, is_random, latest_ok, load_run, memory_mib, parity_distances,
    scenario_rows, scenarios_in, summary_rows, training_curves, training_rows, weights_label, winners,
)
from perfkit.store import Kind, Record, Store

TEMPLATES = Path(__file__).parent / "templates"

# Known runtimes keep the colours readers learned; any other backend gets a stable one of its own.
RUNTIME_COLOURS = {
    "eager": "#1f77b4", "torchscript": "#ff7f0e", "onnx": "#2ca02c", "tensorrt": "#d62728",
    "aoti": "#9467bd", "native": "#8c564b", "openvino": "#e377c2",
}
PUBLISHED_COLOUR = "#7f7f7f"
_OTHER_COLOURS = ("#17becf", "#bcbd22", "#aec7e8", "#393b79")  # none a known runtime's
_PALETTE = (*RUNTIME_COLOURS.values(), *_OTHER_COLOURS)
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def colour(runtime: str | None) -> str:
    if runtime in RUNTIME_COLOURS:
        return RUNTIME_COLOURS[runtime]
    return _OTHER_COLOURS[sum(map(ord, runtime or "")) % len(_OTHER_COLOURS)]


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated when x goes down and y goes up (lower cost, higher accuracy), by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _label(row: dict) -> str:
    return row["model"] + (" (random weights)" if row["random"] else "")


def _first_batch(row: dict) -> dict | None:
    """Latency at the smallest batch measured (batch 1 when there is one): the interactive case."""
    return next((b for b in row["batches"] if b["latency_median_ms"] is not None), None)


def _bubble_sizes(params: list[float]) -> dict:
    top = max(params, default=1) or 1
    return {"sizemode": "area", "sizeref": 2.0 * top / 45**2, "sizemin": 4}


def build_charts(rows: list[dict], training: dict[tuple, list[dict]], sections: list[dict] | None = None,
                 distributions: list[dict] | None = None, chosen: set[tuple] = frozenset(),
                 machines: list[dict] | None = None) -> dict:
    """The report's plotly figures by name (only those the data supports); ``chosen``: the variants the
    decision names, as (model, weights, runtime, precision, device), labelled with a star; ``machines``:
    ``perfkit.report.hardware.machine_rows``."""
    go = require("plotly.graph_objects")
    from plotly.subplots import make_subplots

    measured = any(r["top1_pct"] is not None for r in rows)
    charts = {}
    if rows:  # a training-only run has no model × runtime candidates to compare
        charts["acc_vs_macs"] = _acc_vs_macs(go, rows, measured, chosen)
        charts["acc_vs_latency"] = _acc_vs_latency(go, rows, measured, chosen)
        charts["acc_bars"] = _acc_bars(go, make_subplots, rows)
    if any(_first_batch(r) for r in rows):
        charts["latency_vs_batch"] = _latency_vs_batch(go, make_subplots, rows)
    if distributions:
        charts["latency_distribution"] = _latency_distribution(go, distributions)
    if machines:
        charts["machines"] = _machines_chart(go, machines)
    for section in sections or ():
        if any(r["value"] is not None for r in section["rows"]):
            charts[section["name"]] = _scenario_chart(go, section)
        if any(r.get("curve") for r in section["rows"]):
            charts[section["name"] + "_curve"] = _curve_chart(go, section)
    if training:
        charts["training"] = _training(go, make_subplots, training)
    for fig in charts.values():
        fig.update_layout(template="plotly_white", margin={"t": 60, "b": 50, "l": 60, "r": 20},
                          legend={"itemsizing": "constant"})
    return charts


def _models(rows: list[dict]) -> dict[str, dict]:
    """One entry per model (the first row of each): published numbers and complexity are per model."""
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["model"], r)
    return out


def _acc_vs_macs(go, rows: list[dict], measured: bool, chosen: set[tuple]):
    fig = go.Figure()
    sel_all = [r for r in rows if measured and r["top1_pct"] is not None and r["macs"]]
    pts = [(r["macs"] / 1e9, r["top1_pct"]) for r in sel_all if not r["random"]]
    pub = [r for r in _models(rows).values() if r["ref_top1_pct"] is not None and _gmacs(r) is not None]
    if not measured:
        pts = [(_gmacs(r), r["ref_top1_pct"]) for r in pub]
    front = pareto_front(pts)
    # every variant of a model shares its MACs: one label per model (its chosen variant, else its front point)
    named = {r["model"] for r in sel_all if _key(r) in chosen}
    shown = {id(r) for r in sel_all if _key(r) in chosen or
             (r["model"] not in named and (r["macs"] / 1e9, r["top1_pct"]) in front and not r["random"])}
    where = _label_positions([(r["macs"], id(r)) for r in sel_all if id(r) in shown])
    for runtime in dict.fromkeys(r["runtime"] for r in sel_all):
        sel = [r for r in sel_all if r["runtime"] == runtime]
        fig.add_trace(go.Scatter(
            x=[r["macs"] / 1e9 for r in sel], y=[r["top1_pct"] for r in sel], mode="markers+text",
            name=f"{runtime} (measured)", hovertext=[_label(r) for r in sel],
            text=[_point_label(r, chosen) if id(r) in shown else "" for r in sel],
            textposition=[where.get(id(r), "top center") for r in sel],
            marker={"color": colour(runtime), "size": [r["params"] or 0 for r in sel], "line": {"width": 1},
                    "symbol": [_symbol(r) for r in sel], **_bubble_sizes([r["params"] or 0 for r in rows])},
            customdata=[[r["precision"], r["params"]] for r in sel],
            hovertemplate="%{hovertext}<br>%{fullData.name} %{customdata[0]}<br>GMACs %{x:.3f}<br>"
                          "measured top-1 %{y:.2f}%<br>params %{customdata[1]:,}<extra></extra>",
        ))
    if pub:
        fig.add_trace(go.Scatter(
            x=[_gmacs(r) for r in pub], y=[r["ref_top1_pct"] for r in pub], mode="markers+text",
            name="published (torchvision metadata)", hovertext=[r["model"] for r in pub],
            text=[r["model"] if not measured and (_gmacs(r), r["ref_top1_pct"]) in front else "" for r in pub],
            textposition="bottom center",
            marker={"color": PUBLISHED_COLOUR, "symbol": PUBLISHED_SYMBOL, "size": [_params(r) or 0 for r in pub],
                    "line": {"width": 2}, **_bubble_sizes([_params(r) or 0 for r in pub])},
            customdata=[[r["ref_weights"] or "—"] for r in pub],
            hovertemplate="%{hovertext}<br>published top-1 %{y:.2f}% (%{customdata[0]})<br>GMACs %{x:.3f}"
                          "<extra></extra>",
        ))
    _front_trace(go, fig, front, f"Pareto front ({'measured' if measured else 'published'})")
    what = "measured top-1" if measured else "PUBLISHED top-1 (no measured accuracy in this run)"
    fig.update_layout(title=f"Accuracy vs complexity — {what}; bubble area = parameters; ★ = the variant to ship",
                      xaxis_title="GMACs (multiply-accumulates, conv+linear)", yaxis_title="top-1 %", height=520)
    return fig


def _key(row: dict) -> tuple:
    return (row["model"], row["weights"], row["runtime"], row["precision"], row["device"])


def _point_label(row: dict, chosen: set[tuple]) -> str:
    """A point's text on a chart: the chosen variant starred (the page's label guard keeps it first)."""
    text = f"{_label(row)} {row['runtime']} {row['precision'] or ''}".strip()
    return f"★ {text}" if _key(row) in chosen else text


def _symbol(row: dict) -> str:
    """One marker symbol per precision on every chart; random weights: the same symbol, open."""
    return PRECISION_SYMBOLS.get(row["precision"], "circle") + ("-open" if row["random"] else "")


def _label_positions(points: list[tuple[float, object]]) -> dict[object, str]:
    """Labelled points in x order take turns above and below, so neighbours' labels do not meet."""
    ordered = sorted(points, key=lambda p: p[0])
    return {key: ("top center" if i % 2 == 0 else "bottom center") for i, (_, key) in enumerate(ordered)}


def _front_trace(go, fig, front: list[tuple[float, float]], name: str) -> None:
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[p[0] for p in front], y=[p[1] for p in front], mode="lines", name=name,
                                 line={"color": "black", "dash": "dash", "shape": "hv"}, hoverinfo="skip"))


def _gmacs(row: dict) -> float | None:
    """Measured MACs (complexity record) or, without one, the published count (same convention)."""
    if row["macs"]:
        return row["macs"] / 1e9
    return row.get("ref_gmacs")


def _params(row: dict) -> float | None:
    return row["params"] or row.get("ref_params")


PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8")  # the order a model's precisions are connected in
PRECISION_SYMBOLS = {"fp32": "circle", "fp16": "diamond", "bf16": "square", "int8": "triangle-up"}
PRECISION_LEGEND = "● fp32 ◆ fp16 ■ bf16 ▲ int8"
# bars cannot take a marker symbol: the same precision gets the same fill pattern on every bar chart
PRECISION_PATTERNS = {"fp32": "", "fp16": "/", "bf16": "-", "int8": "x"}
PUBLISHED_SYMBOL = "star-diamond-open"  # not a precision's symbol: published numbers are no variant


def _precision_rank(precision: str | None) -> int:
    return PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER)


def _acc_vs_latency(go, rows: list[dict], measured: bool, chosen: set[tuple]):
    """Accuracy vs latency; each model's precisions in one runtime are connected (fp32 → fp16 → int8),
    so the trade reads as a line: how much faster, how much top-1 lost. Only the Pareto front and the
    chosen variants carry a label; every point names itself on hover."""
    fig = go.Figure()
    key = "top1_pct" if measured else "ref_top1_pct"
    timed = [(r, b) for r in rows if r[key] is not None and (b := _first_batch(r)) is not None]
    timed.sort(key=lambda rb: _precision_rank(rb[0]["precision"]))
    front = pareto_front([(b["latency_median_ms"], r[key]) for r, b in timed if not (measured and r["random"])])
    shown = {id(r) for r, b in timed if _key(r) in chosen or
             ((b["latency_median_ms"], r[key]) in front and not (measured and r["random"]))}
    where = _label_positions([(b["latency_median_ms"], id(r)) for r, b in timed if id(r) in shown])
    for runtime in dict.fromkeys(r["runtime"] for r, _ in timed):
        sel = [(r, b) for r, b in timed if r["runtime"] == runtime]
        _precision_chains(go, fig, runtime, sel, key)
        fig.add_trace(go.Scatter(
            x=[b["latency_median_ms"] for _, b in sel], y=[r[key] for r, _ in sel], mode="markers+text",
            name=f"{runtime} ({'measured' if measured else 'published'} top-1)", legendgroup=runtime,
            hovertext=[f"{_label(r)} {r['precision'] or ''}".strip() for r, _ in sel],
            text=[_point_label(r, chosen) if id(r) in shown else "" for r, _ in sel],
            textposition=[where.get(id(r), "top center") for r, _ in sel],
            marker={"color": colour(runtime), "size": 12, "symbol": [_symbol(r) for r, _ in sel]},
            customdata=[[r["precision"], b["batch"], r["calibration"] or ""] for r, b in sel],
            hovertemplate="%{hovertext}<br>%{fullData.name} %{customdata[0]}<br>p50 %{x:.3f} ms at batch "
                          "%{customdata[1]}<br>top-1 %{y:.2f}%<br>%{customdata[2]}<extra></extra>",
        ))
    _front_trace(go, fig, front, "Pareto front")
    what = "measured top-1" if measured else "PUBLISHED top-1 of each architecture (no measured accuracy in this run)"
    fig.update_layout(title=f"Accuracy vs latency — {what}; a model's precisions are joined (fp32 → fp16 → int8; "
                            f"symbol: {PRECISION_LEGEND}; ★ = the variant to ship)",
                      xaxis_title="p50 latency, ms (smallest batch measured)", xaxis_type="log",
                      yaxis_title="top-1 %", height=480)
    return fig


def _precision_chains(go, fig, runtime: str, sel: list[tuple[dict, dict]], key: str) -> None:
    """A dotted line through each model's precisions in one runtime."""
    for model in dict.fromkeys(r["model"] for r, _ in sel):
        chain = [(r, b) for r, b in sel if r["model"] == model]
        if len(chain) > 1:
            fig.add_trace(go.Scatter(
                x=[b["latency_median_ms"] for _, b in chain], y=[r[key] for r, _ in chain], mode="lines",
                line={"color": colour(runtime), "width": 1.5, "dash": "dot"}, legendgroup=runtime,
                showlegend=False, hoverinfo="skip",
                name=f"{model} {runtime}: {' → '.join(r['precision'] or '—' for r, _ in chain)}"))


def _acc_bars(go, make_subplots, rows: list[dict]):
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("top-1 %", "top-5 %"))
    models = _models(rows)
    labels = [_label(r) for r in models.values()]
    for i, (metric, ref) in enumerate((("top1_pct", "ref_top1_pct"), ("top5_pct", "ref_top5_pct")), start=1):
        fig.add_trace(go.Bar(x=labels, y=[r[ref] for r in models.values()], name="published (torchvision metadata)",
                             marker={"color": PUBLISHED_COLOUR}, legendgroup="published", showlegend=i == 1),
                      row=i, col=1)
        for runtime, precision in dict.fromkeys((r["runtime"], r["precision"]) for r in rows):
            sel = {r["model"]: r[metric] for r in rows if (r["runtime"], r["precision"]) == (runtime, precision)}
            if not any(v is not None for v in sel.values()):
                continue
            fig.add_trace(go.Bar(x=labels, y=[sel.get(m) for m in models], name=f"measured {runtime} {precision}",
                                 marker=_bar_marker(runtime, precision), legendgroup=f"{runtime} {precision}",
                                 showlegend=i == 1, hovertemplate="%{x}: %{y:.2f} %<extra>%{fullData.name}</extra>"),
                          row=i, col=1)
    measured = any(r["top1_pct"] is not None for r in rows)
    fig.update_layout(barmode="group", height=620, title="Top-1 / top-5 per model — published and measured"
                      if measured else "Top-1 / top-5 per model — PUBLISHED only (no measured accuracy in this run)")
    fig.update_yaxes(range=[0, 105])
    return fig


def _bar_marker(runtime: str | None, precision: str | None) -> dict:
    """A bar's colour (its runtime) and fill pattern (its precision), the same on every bar chart."""
    return {"color": colour(runtime), "pattern": {"shape": PRECISION_PATTERNS.get(precision, ".")}}


def _latency_vs_batch(go, make_subplots, rows: list[dict]):
    fig = make_subplots(rows=1, cols=2, subplot_titles=("p50 latency (ms)", "throughput (images/s)"))
    dash = {m: _DASHES[i % len(_DASHES)] for i, m in enumerate(_models(rows))}
    batches = sorted({b["batch"] for r in rows for b in r["batches"] if b["batch"] is not None})
    for r in rows:
        pts = [b for b in r["batches"] if b["batch"] is not None and b["latency_median_ms"] is not None]
        if not pts:
            continue
        name = f"{_label(r)} · {r['runtime']} {r['precision'] or ''}".strip()
        style = {"color": colour(r["runtime"]), "dash": dash[r["model"]]}
        marker = {"symbol": _symbol(r), "size": 8}
        x = [b["batch"] for b in pts]
        fig.add_trace(go.Scatter(x=x, y=[b["latency_median_ms"] for b in pts], mode="lines+markers", name=name,
                                 line=style, marker=marker, legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[b["throughput_per_s"] for b in pts], mode="lines+markers", name=name,
                                 line=style, marker=marker, legendgroup=name, showlegend=False), row=1, col=2)
    fig.update_xaxes(type="log", title_text="batch", tickvals=batches, ticktext=[str(b) for b in batches])
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(title="Latency and throughput vs batch, per runtime", height=480)
    return fig


def latency_distributions(records: list[Record]) -> list[dict]:
    """Each SingleStream timing's distribution from its stored calls (``perfkit.profiler.samples``), as box
    statistics (the page carries five numbers per box, not the calls): min, p25, median, p75, and the p99
    from 100 calls on (else the max), with the call count."""
    import numpy as np

    from perfkit.profiler.samples import min_samples, unpack

    out = []
    latest = latest_ok((r for r in records if r.kind == Kind.LATENCY),
                       lambda r: (r.model, r.runtime, r.precision, r.batch, r.device))
    for r in latest.values():
        calls = unpack(r.metrics.get("samples"))
        if not calls:
            continue
        q = np.percentile(calls, [0, 25, 50, 75, 99 if len(calls) >= min_samples(99) else 100])
        out.append({"model": r.model, "random": is_random(r.weights), "runtime": r.runtime, "precision": r.precision,
                    "batch": r.batch, "calls": len(calls), "mean": float(np.mean(calls)),
                    **dict(zip(("min", "p25", "median", "p75", "top"), map(float, q)))})
    return out


def _machines_chart(go, machines: list[dict]):
    """One model × runtime × precision at one batch per x position, one bar group (a trace, a colour) per
    machine: the same candidate side by side on each hardware it was timed on."""
    fig = go.Figure()
    for i, key in enumerate(dict.fromkeys(m["hardware_key"] for m in machines)):
        mine = [m for m in machines if m["hardware_key"] == key]
        label = mine[0]["hardware"]
        fig.add_trace(go.Bar(
            x=[f"{_label(m)} · {m['runtime']} {m['precision']} · b{m['batch']}" for m in mine],
            y=[m["latency_median_ms"] for m in mine], name=label, legendgroup=key,
            marker={"color": _PALETTE[i % len(_PALETTE)]},
            customdata=[[m["device"], m["run_id"]] for m in mine],
            hovertemplate="%{x}<br>" + label.replace("%", "%%") + " (%{customdata[0]})<br>p50 %{y:.3f} ms"
                          "<br>run %{customdata[1]}<extra></extra>"))
    fig.update_layout(title="Across machines: SingleStream p50 latency, one group per machine (lower is faster)",
                      barmode="group", yaxis_title="p50 latency (ms)", height=460)
    return fig


def _latency_distribution(go, boxes: list[dict]):
    """Every timed call per runtime × precision and batch, as boxes: how wide each distribution is, not only
    where its median sits (the whisker reaches the p99 from 100 calls on, else the slowest call)."""
    fig = go.Figure()
    for runtime, precision in dict.fromkeys((b["runtime"], b["precision"]) for b in boxes):
        sel = [b for b in boxes if (b["runtime"], b["precision"]) == (runtime, precision)]
        x = [f"{b['model']}{' (random)' if b['random'] else ''} b{b['batch']}" for b in sel]
        fig.add_trace(go.Box(x=x, name=f"{runtime} {precision}", marker={"color": colour(runtime)},
                             lowerfence=[b["min"] for b in sel], q1=[b["p25"] for b in sel],
                             median=[b["median"] for b in sel], q3=[b["p75"] for b in sel],
                             upperfence=[b["top"] for b in sel], mean=[b["mean"] for b in sel],
                             hovertext=[f"{b['calls']} calls" for b in sel]))
    fig.update_yaxes(type="log", title_text="latency per call (ms)")
    fig.update_layout(boxmode="group", height=460, title="Latency distribution of every timed call (SingleStream): "
                                                          "box = p25-p75, line = median, whiskers = min to p99")
    return fig


def _scenario_chart(go, section: dict):
    """A scenario's headline figure per model, one bar per runtime × precision (its detail on the bar)."""
    ok = [r for r in section["rows"] if r["value"] is not None]
    models = list(dict.fromkeys(r["label"] for r in ok))
    fig = go.Figure()
    for runtime, precision in dict.fromkeys((r["runtime"], r["precision"]) for r in ok):
        sel = {r["label"]: r for r in ok if (r["runtime"], r["precision"]) == (runtime, precision)}
        name = f"{runtime} {precision}"
        pts = [sel.get(m) for m in models]
        fig.add_trace(go.Bar(x=models, y=[r["value"] if r else None for r in pts], name=name,
                             marker=_bar_marker(runtime, precision), hovertext=[r["detail"] if r else "" for r in pts],
                             hovertemplate="%{x}<br>" + name + ": %{y:.4g} " + section["unit"] + " %{hovertext}"
                                           "<extra></extra>"))
    batches = sorted({r["batch"] for r in ok})
    fig.update_yaxes(title_text=section["unit"])
    fig.update_layout(barmode="group", height=460, title=f"{section['title']} (batch {', '.join(map(str, batches))})")
    return fig


def _curve(curve, row: dict) -> dict | None:
    """A row's search as points to draw (``Scenario.curve``), or None."""
    if curve is None or not row.get(curve.points):
        return None
    pts = [p for p in row[curve.points] if p.get(curve.x) is not None and p.get(curve.y) is not None]
    return {"x": [p[curve.x] for p in pts], "y": [p[curve.y] for p in pts], "ok": [bool(p.get(curve.ok)) for p in pts],
            "note": [str(p.get(curve.note) or "") if curve.note else "" for p in pts],
            "limit": row.get(curve.limit) if curve.limit else None}


def _curve_chart(go, section: dict):
    """A scenario's search per runtime × precision (Server: p99 at each target QPS; filled = bound met,
    hollow = not; dashed = the bound)."""
    fig = go.Figure()
    for r in section["rows"]:
        c = r.get("curve")
        if c is None:
            continue
        order = sorted(range(len(c["x"])), key=lambda i: c["x"][i])
        name = f"{r['label']} {r['runtime']} {r['precision']}"
        fig.add_trace(go.Scatter(
            x=[c["x"][i] for i in order], y=[c["y"][i] for i in order], mode="lines+markers", name=name,
            line={"color": colour(r["runtime"])},
            marker={"size": 9, "symbol": [PRECISION_SYMBOLS.get(r["precision"], "circle") + ("" if c["ok"][i] else "-open")
                                          for i in order]},
            text=[c["note"][i] for i in order], hovertemplate=name + "<br>%{x:.1f}: %{y:.2f}<br>%{text}<extra></extra>"))
        if c["limit"] is not None:
            fig.add_hline(y=c["limit"], line_dash="dash", line_color="grey",
                          annotation_text=f"bound {c['limit']:g}", annotation_position="top left")
    x_title, y_title = section["curve_axes"]
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, type="log")
    fig.update_layout(height=460, title=f"{section['name']}: {y_title} at each {x_title} tried "
                                        "(filled: within the bound, hollow: not)")
    return fig


def scenario_sections(records: list[Record]) -> list[dict]:
    """Every scenario but SingleStream (the summary and the latency charts show it), as a section:
    name, title, caption lines, column headers, rows of formatted cells, and the headline per row."""
    out = []
    for scenario in scenarios_in(records):
        if scenario.base:
            continue
        h, rows = scenario.headline, []
        for r in scenario_rows(scenario, records):
            cells = [FORMATS[c.format](c.key(r) if callable(c.key) else r.get(c.key)) for c in scenario.columns]
            rows.append({**{k: r.get(k) for k in ("model", "runtime", "precision", "batch", "status", "error",
                                                  "contended", "other_cpu_pct", "random")},
                         "label": r["model"] + (" (random weights)" if r["random"] else ""), "cells": cells,
                         "value": r.get(h.metric) if r["status"] == "ok" else None, "detail": h.detail(r),
                         "marked": [c.key == h.metric for c in scenario.columns], "curve": _curve(scenario.curve, r)})
        out.append({"name": scenario.name, "title": f"{scenario.title}: {scenario.summary}", "unit": h.unit,
                    "curve_axes": None if scenario.curve is None else (scenario.curve.x_title, scenario.curve.y_title),
                    "caption": scenario.caption(records), "headers": [c.header for c in scenario.columns],
                    "rows": rows})
    return out


def _training(go, make_subplots, training: dict[tuple, list[dict]]):
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy per epoch", "loss per epoch"))
    for i, ((model, weights, dataset, precision, _device), epochs) in enumerate(training.items()):
        name = f"{model}{' (random init)' if is_random(weights) else ''} · {dataset or '—'}"
        c = _PALETTE[i % len(_PALETTE)]
        x = [e["epoch"] for e in epochs]
        for split, dash in (("val", "solid"), ("train", "dot")):
            fig.add_trace(go.Scatter(x=x, y=[e[f"{split}_acc"] for e in epochs], mode="lines+markers",
                                     name=f"{name} {split}", line={"color": c, "dash": dash}, legendgroup=name),
                          row=1, col=1)
            fig.add_trace(go.Scatter(x=x, y=[e[f"{split}_loss"] for e in epochs], mode="lines+markers",
                                     name=f"{name} {split}", line={"color": c, "dash": dash}, legendgroup=name,
                                     showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_layout(title="Training: validation (solid) and training (dotted) curves", height=460)
    return fig


def _env_items(env: dict) -> list[tuple[str, str]]:
    items = []
    for k, v in env.items():
        if isinstance(v, dict):
            items += [(f"{k}.{kk}", str(vv)) for kk, vv in v.items()]
        else:
            items.append((k, "—" if v is None else str(v)))
    return items


def _record_rows(records: list[Record], kind: Kind) -> list[dict]:
    """Ok records of a kind, newest per (model, runtime, precision, batch), as flat dicts."""
    latest = latest_ok((r for r in records if r.kind == kind), lambda r: (r.model, r.runtime, r.precision, r.batch, r.device))
    return [{"model": r.model, "runtime": r.runtime, "precision": r.precision, "batch": r.batch, "device": r.device,
             "weights": weights_label(r.weights), "random": is_random(r.weights), **r.metrics} for r in latest.values()]


def _precision_notes(records: list[Record]) -> list[str]:
    from perfkit.report.tables import precision_notes

    return precision_notes(r for r in records if r.kind == Kind.LATENCY)


def _winner_rows(records: list[Record]) -> list[dict]:
    """The winners of every scenario per model × precision × device, their values formatted."""
    by_name = {s.name: s for s in scenarios_in(records)}
    out = []
    for w in winners(records):
        cells = {}
        for name, won in w["by"].items():
            h = by_name[name].headline
            cells[name] = {**won, "text": f"{FORMATS[h.format](won['value'])} {h.unit}"}
        out.append({**w, "by": cells})
    return out


def layer_time(records: list[Record]) -> dict | None:
    """The per-layer profiles of the run (None: none): each profile's sum beside its end-to-end median (or why
    it has none), its time by op type, and the top layers with achieved GFLOP/s and int8 against fp32."""
    from perfkit.report import layer_rows as L

    measured = L.profiles(records)
    if not measured:
        return None
    ok = [r for r in measured if r.status == "ok" and not r.metrics.get("unavailable")]
    top = L.top_layers(ok)
    return {"totals": L.totals(measured), "by_op": [{"label": L.label(r), "model": r.model, "ops": L.by_op_type(r)}
                                                     for r in ok],
            "top": top, "precisions": sorted({p for row in top for p in row["ms"]}, key=_precision_rank)}


def report_context(store: Store, run_id: str, hardware: str | None = None) -> dict:
    """Everything the template shows (also useful to tests): raw rows plus plotly figures. ``hardware``:
    ``--hardware`` (``perfkit.report.hardware``: the run's records on matching hardware, or ``all``)."""
    run, records = load_run(store, run_id)
    records = only_hardware(records, hardware, f"run {run['id']}")
    machines = machine_rows(across_machines(store, records, hardware))
    rows = summary_rows(records)
    curves = training_curves(records)
    complexity = [{**c, "memory_mib": memory_mib(c)} for c in _record_rows(records, Kind.COMPLEXITY)]
    sections = scenario_sections(records)
    distributions = latency_distributions(records)
    found = decisions(records, rows)
    chosen = {(d["model"], d["weights"], c["runtime"], c["precision"], c["device"]) for d in found
              if (c := d["choice"])}
    return {
        "run": run, "records": len(records), "rows": rows, "decisions": found, "decision": decision_rows(found),
        "measured_accuracy": any(r["top1_pct"] is not None for r in rows),
        "several_devices": len({r["device"] for r in rows}) > 1,
        "random_models": sorted({r["model"] for r in rows if r["random"]}),
        "parity": [parity_distances(p) for p in _record_rows(records, Kind.PARITY)], "exports": _record_rows(records, Kind.EXPORT),
        "complexity": complexity, "layer_time": layer_time(records), "failures": failure_rows(records), "training": training_rows(records),
        "calibrations": list(dict.fromkeys(f"{r['model']} · {r['runtime']} {r['precision']}: {r['calibration']}"
                                           for r in rows if r["calibration"])),
        "precision_notes": _precision_notes(records),
        "contention_notes": contention_notes(records), "contended_mark": CONTENDED_MARK,
        "sections": sections, "winners": _winner_rows(records), "scenario_names": [s.name for s in scenarios_in(records)],
        "machines": machines, "hardware": labels(r for r in records if r.runtime is not None),
        "env": _env_items(run["env"]),
        "charts": build_charts(rows, curves, sections, distributions, chosen, machines),
        "generated": time.time(),
    }


def _environment():
    jinja2 = require("jinja2")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(
        f1=fmt_float(1), f2=fmt_float(2), f3=fmt_float(3), f4=fmt_float(4), int=fmt_int, sci=fmt_sci,
        bytes=fmt_bytes, seconds=fmt_seconds, time=fmt_time,
        frac=lambda v: "—" if v is None else f"{100 * float(v):.2f}%",
        pp=lambda v: "—" if v is None else f"{float(v):+.2f}",
        mega=lambda v: "—" if v is None else f"{float(v) / 1e6:.2f}",
        giga=lambda v: "—" if v is None else f"{float(v) / 1e9:.3f}",
        dash=lambda v: "—" if v is None or v == "" else v,
        shape=lambda v: "—" if v is None else "×".join(map(str, v)) if isinstance(v, list) else str(v),
        wlabel=weights_label, ms=lambda v: fmt_latency(v)[:-3] if v is not None else "—",
        raw=lambda v: "" if v is None else repr(v),  # a number as the page sorts by it
    )
    return env


def render_html(store: Store, run_id: str, path: str | Path, flag: str = "--html", hardware: str | None = None) -> Path:
    """Write the run's report as one self-contained HTML file (plotly.js inlined) and return its path
    (``hardware``: as ``report_context``)."""
    check_writable(path, flag)
    pio = require("plotly.io")
    from plotly.offline import get_plotlyjs

    ctx = report_context(store, run_id, hardware)
    ctx["charts"] = {name: pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"chart-{name}",
                                       config=_PLOTLY_CONFIG)
                     for name, fig in ctx["charts"].items()}
    ctx["plotly_js"] = get_plotlyjs()
    html = _environment().get_template("report.html.j2").render(**ctx)
    return write_text(path, html, flag)
