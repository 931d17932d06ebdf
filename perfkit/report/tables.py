"""Every table perfkit prints, built from records (or rows derived from them) in one place.

Commands, the pipeline and ``perfkit report`` render through these builders, so the same number
looks the same everywhere; units and rounding come from the formatters in ``perfkit.report.console``.
Each builder returns Rich renderables; the caller prints them.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich import box
from rich.markup import escape

from perfkit.report.console import (
    FORMATS, Column, fmt_bool, fmt_bytes, fmt_float, fmt_int, fmt_ms, fmt_pct, fmt_sci, fmt_seconds, fmt_si, fmt_time,
    render_table,
)
from perfkit.report.decision import decision_rows, decisions
from perfkit.report.hardware import hardware_of, labels
from perfkit.report.rows import (
    CONTENDED_MARK, contention_notes, failure_rows, is_random, memory_mib, parity_distances, scenario_rows,
    scenarios_in, summary_rows, training_rows, weights_label, winners,
)
from perfkit.store import Kind, Record

MIB = 2**20


def _of(records: Iterable[Record], kind: Kind) -> list[Record]:
    return [r for r in records if r.kind == kind]


def _flat(r: Record) -> dict:
    """A record as one flat row: its columns, status, error and metrics."""
    return {"kind": str(r.kind), "model": r.model, "runtime": r.runtime, "precision": r.precision, "batch": r.batch,
            "weights": r.weights, "device": r.device, "status": r.status, "error": r.error, **r.metrics}


def _signed(v) -> str:
    return "—" if v is None else f"{float(v):+.3f}"


def _pct100(fraction) -> str:
    return "—" if fraction is None else f"{100 * float(fraction):.1f}%"


def calibration_notes(records: Iterable[Record]) -> list[str]:
    """One line per calibration set the records' int8 results used, with the runtimes that used it:
    every table with an int8 row says what it was calibrated on (synthetic sets stand out)."""
    seen: dict[str, list[str]] = {}
    for r in records:
        text = r.metrics.get("calibration")
        if text and r.runtime:
            who = seen.setdefault(text, [])
            if r.runtime not in who:
                who.append(r.runtime)
    lines = []
    for text, who in seen.items():
        line = escape(f"int8 ({', '.join(who)}): {text}")
        lines.append(f"[bold magenta]{line}[/]" if "not meaningful" in text else line)
    return lines


def precision_notes(records: Iterable[Record]) -> list[str]:
    """What reduced precision can buy on the CPU these records ran on (its flags are in their
    environment): int8 without VNNI gains ~2× at most, bf16 without bf16 instructions is emulated."""
    records = [r for r in records if r.device == "cpu"]
    flags = next((r.env.get("cpu_flags") for r in records if (r.env or {}).get("cpu_flags") is not None), None)
    if flags is None:
        return []
    precisions = {r.precision for r in records}
    out = []
    if "int8" in precisions:
        vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
        out.append("int8 on this CPU: " + ("VNNI/AMX int8 dot products: up to ~4× fp32 in int8 kernels" if vnni else
                                           "AVX2 without VNNI: u8×s8 kernels do ~2× the MACs of fp32 FMA, so ~2× "
                                           "is the ceiling"))
    if "bf16" in precisions and not any(f in flags for f in ("avx512_bf16", "amx_bf16")):
        out.append("bf16 on this CPU: no avx512_bf16/AMX, so bf16 is emulated and slower than fp32 (measured, "
                   "not a speed option here)")
    return out


def _speedup(v) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _marked(key: str, fmt):
    """A column key whose number is followed by the contended mark when the row's timing was contended."""
    return lambda r: fmt(r.get(key)) + (f"[bold yellow]{CONTENDED_MARK}[/]" if r.get("contended") else "")


def _other_cpu(v) -> str:
    return "—" if v is None else f"{float(v):.0f}%"


def _contention_lines(records: Iterable[Record]) -> list[str]:
    return [f"[yellow]{escape(line)}[/]" if line.startswith(CONTENDED_MARK) else escape(line)
            for line in contention_notes(records)]


# -- export ---------------------------------------------------------------------------------------

def export_table(records: Iterable[Record], title: str):
    records = _of(records, Kind.EXPORT)
    rows = [_flat(r) for r in records]
    legend = ["cached: served from the artifact cache after checking every file's sha256; --force rebuilds"
              ] if any(r["status"] == "ok" and r.get("cached") for r in rows) else []
    legend = "\n".join(legend + calibration_notes(records)) or None
    return render_table(title, [
        Column("runtime", "runtime", justify="left"), Column("prec", "precision", justify="left"),
        Column("status", lambda r: "FAILED" if r["status"] == "error" else ("cached" if r.get("cached") else "exported"),
               justify="left"),
        Column("this run", "seconds", fmt_float(2)), Column("export s", "export_seconds", fmt_float(1)),
        Column("size", "artifact_bytes", fmt_bytes),
        Column("warnings", lambda r: None if r["status"] == "error" else len(r.get("warnings") or []), fmt_int),
        Column("sha256", lambda r: (r.get("sha256") or "—")[:12]),
        Column("path", lambda r: escape(r.get("artifact_path") or r["error"] or ""), justify="left"),
    ], rows, row_style=lambda r: "red" if r["status"] == "error" else None, caption=legend)


# -- parity ---------------------------------------------------------------------------------------

def parity_table(records: Iterable[Record], title: str, caption: str | None = None):
    records = _of(records, Kind.PARITY)
    rows = [parity_distances(_flat(r)) for r in records]
    caption = "\n".join([*([caption] if caption else []), *calibration_notes(records)]) or None
    return render_table(title, [
        Column("runtime", "runtime", justify="left"), Column("prec", "precision", justify="left"),
        Column("batch", "batch", fmt_int),
        Column("max |Δ|", "max_abs_diff", fmt_sci), Column("mean |Δ|", "mean_abs_diff", fmt_sci),
        Column("max rel", "max_rel_diff", fmt_sci),
        Column("cos min", "cosine_min", lambda v: "—" if v is None else f"{v:.6f}"),
        Column("top-1 agree", "top1_agreement", _pct100), Column("top-5 overlap", "top5_overlap", _pct100),
        Column("NaN/Inf", "nonfinite", fmt_int),
        Column("result", lambda r: None if r["status"] == "error" else r.get("passed"), fmt_bool),
        Column("why", lambda r: escape(r["error"] or "; ".join(r.get("failures") or [])), justify="left"),
    ], rows, row_style=lambda r: None if r.get("passed") else "red", caption=caption)


# -- accuracy -------------------------------------------------------------------------------------

def accuracy_table(records: Iterable[Record], title: str, notes: list[str]):
    records = _of(records, Kind.ACCURACY)
    rows = [_flat(r) for r in records]
    columns = [
        Column("runtime", "runtime", justify="left"), Column("prec", "precision", justify="left"),
        Column("images", "images", fmt_int),
        Column("top-1", "top1_correct", fmt_int), Column("top-1 %", "top1_pct", fmt_pct),
        Column("top-5", _top5("top5_correct"), _or_text(fmt_int)),
        Column("top-5 %", _top5("top5_pct"), _or_text(fmt_pct)),
        Column("Δ fp32 eager pp", "delta_top1_vs_eager_pp", _signed),
        Column("rel.", "relative_top1", lambda v: "—" if v is None else f"{100 * v:.2f}%"),
        # ImageNet's published accuracy means nothing on the user's own classes: no column for it there
        *([] if all(r.get("layout") == "imagefolder" for r in rows) else
          [Column("Δ pub. pp", "delta_top1_vs_ref_pp", _signed)]),
        Column("flips", "flips_vs_eager", fmt_int), Column("max |Δlogit|", "max_abs_diff_vs_eager", fmt_sci),
        Column("mean |Δlogit|", "mean_abs_diff_vs_eager", fmt_sci),
    ]
    if any(r.get("real_labels") for r in rows):
        columns += [Column("ReaL top-1 %", "real_top1_pct", fmt_pct), Column("ReaL images", "real_images", fmt_int)]
    notes = notes + [f"[red]{escape(r['runtime'] or '')} FAILED: {escape(r['error'])}[/]" for r in rows
                     if r["status"] == "error"]
    notes += ["Δ fp32 eager and rel. (top-1 as a share of eager fp32's, MLPerf's 99% rule) compare every runtime "
              "and precision with the reference fp32 on the same images (eager; an ONNX file's: ONNX Runtime on "
              "the CPU; an engine's: its --reference's); flips = images whose top-1 differs from it"]
    notes += calibration_notes(records)
    return render_table(title, columns, rows, caption="\n".join(notes),
                        row_style=lambda r: "red" if r["status"] == "error" else None)


def _top5(key: str):
    """A top-5 value, or "n/a" where an ok record has none (fewer than five classes: top-5 means nothing)."""
    return lambda r: "n/a" if r["status"] == "ok" and r.get(key) is None else r.get(key)


def _or_text(fmt):
    return lambda v: v if isinstance(v, str) else fmt(v)


def per_class_tables(records: Iterable[Record]) -> list:
    out = []
    for r in _of(records, Kind.ACCURACY):
        per_class = r.metrics.get("per_class")
        if not per_class:
            continue
        worst = sorted(per_class, key=lambda c: (c["top1_pct"], c["class_index"]))[:10]
        out.append(render_table(f"{r.runtime}: per-class top-1, worst {len(worst)} of {len(per_class)} classes", [
            # ImageNet rows name a class by its WordNet id, the user's classes by their name
            Column("class", "class_index", fmt_int), Column("name", lambda c: c.get("wnid") or c.get("name"),
                                                            justify="left"),
            Column("images", "images", fmt_int), Column("top-1", "top1_correct", fmt_int),
            Column("top-1 %", "top1_pct", fmt_pct),
            Column("top-5", lambda c: "n/a" if c.get("top5_correct") is None else c["top5_correct"],
                   _or_text(fmt_int)),
        ], worst))
    return out


def gate_table(failures: list[dict]):
    return render_table("accuracy gates FAILED", [
        Column("model", "model", justify="left"), Column("runtime", "runtime", justify="left"),
        Column("gate", "gate", justify="left"), Column("value", "value", fmt_float(4)),
        Column("limit", "limit", fmt_float(4)), Column("why", "why", justify="left"),
    ], failures, row_style=lambda r: "red")


def mixed_int8_table(record: Record):
    """What validate's --min-relative search tried for one int8 runtime's record: one row per trial (how
    many layers were left float, which, top-1 on the search images, relative to the reference, met);
    the caption says what was chosen, the most sensitive layers and the latency of full int8 vs the mix."""
    m = record.metrics["mixed_int8"]
    rows = [{**t, "floats": "all (fp32)" if t["layers"] is None else t["layers"],
             "names": ", ".join(t["modules"] or ()), "correct": f"{t['top1_correct']}/{m['images']}"}
            for t in m["trials"]]
    lines = [f"gate: top-1 ≥ {m['gate']} × the reference's ({m['reference_top1_correct']}/{m['images']} on the "
             f"search images); {m['note'] or 'full int8 meets it'}",
             "kept: " + (", ".join(m["float_modules"]) or "full int8")]
    if m["sensitivity"]:
        lines.append("most sensitive (logit rel. sq. error quantized alone): " + ", ".join(
            f"{s['module'] or s['node']} {s['error']:.2e}" for s in m["sensitivity"][:5]))
    if m.get("mixed_median_ms") is not None:
        lines.append(f"batch-1 median (a quick measure; perfkit profile for the real one): full int8 "
                     f"{fmt_ms(m['full_int8_median_ms'])}, with the layers float {fmt_ms(m['mixed_median_ms'])}")
    title = f"int8 layers left float — {record.model} {record.runtime} (search {fmt_seconds(m['search_seconds'])})"
    return render_table(title, [
        Column("float layers", "floats"), Column("which", "names", justify="left"),
        Column("top-1", "correct"), Column("rel.", "relative_top1", fmt_float(4)), Column("meets", "meets", fmt_bool),
    ], rows, caption="\n".join(lines), row_style=lambda r: None if r["meets"] else "yellow")


# -- scenarios (SingleStream, Offline, ...): each declares its rows, columns and caption ----------------

def _cell(column, marked: bool):
    """A scenario column as a report column: its key (or function of the row) in its format; the headline
    column (``marked``) followed by the contended mark where the row's timing was contended."""
    fmt = FORMATS[column.format]
    get = column.key if callable(column.key) else (lambda r, k=column.key: r.get(k))
    mark = lambda r: f"[bold yellow]{CONTENDED_MARK}[/]" if marked and r.get("contended") else ""  # noqa: E731
    return Column(column.header, lambda r: escape(fmt(get(r))) + mark(r), str)


def scenario_table(scenario, records: Iterable[Record], title: str, not_measured: dict[str, str] | None = None,
                   footer: str = ""):
    """One scenario's table: model (when several), runtime, precision, batch, then the scenario's own
    columns, the CPU other processes used and the error; its caption lines, the winners of it, the
    warnings of its rows, what it did not measure and why, and contention."""
    records = list(records)
    rows = scenario_rows(scenario, records)
    columns = [
        *([Column("model", "model", justify="left")] if len({r["model"] for r in rows}) > 1 else []),
        Column("runtime", "runtime", justify="left"), Column("prec", "precision", justify="left"),
        Column("batch", "batch"),
        *(_cell(c, c.key == scenario.headline.metric) for c in scenario.columns),
        Column("other CPU", "other_cpu_pct", _other_cpu),
        Column("error", lambda r: escape(r["error"] or ""), justify="left"),
    ]
    lines = [escape(line) for line in scenario.caption(records)]
    lines += [_winner_line(w, scenario) for w in winners(records) if scenario.name in w["by"]]
    lines += [f"[yellow]{escape(w)}[/]" for r in rows if not scenario.base for w in r.get("warnings") or []]
    lines += [f"{escape(name)}: {scenario.title} not measured ({escape(why)})" for name, why in (not_measured or {}).items()]
    timed = [r for r in records if r.kind == scenario.kind]
    if scenario.base:
        lines += precision_notes(timed) + ["other CPU = what other processes used of the CPUs this process may "
                                           "run on while it timed"]
    lines += calibration_notes(timed) + _contention_lines(timed) + ([escape(footer)] if footer else [])
    return render_table(title, columns, rows, caption="\n".join(lines),
                        row_style=lambda r: "red" if r["status"] == "error" or r.get("error") else
                        ("yellow" if r.get("contended") else None))


def scenario_tables(records: Iterable[Record], title: str, not_measured: dict[str, dict[str, str]] | None = None,
                    footer: str = "") -> list:
    """A table per scenario the records hold, SingleStream first; ``not_measured``: scenario name →
    {runtime: why it was not measured}."""
    records = list(records)
    return [scenario_table(s, records, f"{title}: {s.title}", (not_measured or {}).get(s.name), footer)
            for s in scenarios_in(records)]


def _winner_line(w: dict, scenario) -> str:
    where = " ".join(escape(str(x)) for x in (w["model"], w["precision"], w["device"]) if x)
    won = w["by"][scenario.name]
    mark = f"[bold yellow]{CONTENDED_MARK}[/]" if won["contended"] else ""
    detail = f" {escape(won['detail'])}" if won["detail"] else ""
    value = escape(FORMATS[scenario.headline.format](won["value"]))
    return (f"{where} — {scenario.title} winner (batch {won['batch']}): [bold]{escape(won['runtime'])}[/] {value} "
            f"{escape(scenario.headline.unit)}{mark}{detail}")


# -- complexity -----------------------------------------------------------------------------------

def complexity_tables(record: Record, label: str, published: dict | None = None) -> list:
    """The per-layer table and the totals (measured beside published) of one complexity record.

    ``published``: the model's published numbers (``rows.published_by_model``: params, gmacs), recorded
    with the run in its model record; records written before model records carried them themselves.
    """
    m = record.metrics
    c, h, w = m["input_size"]
    layers = render_table(f"{label} — {len(m['layers'])} layer calls at batch 1, input {c}×{h}×{w}", [
        Column("layer (type-n)", "layer", justify="left"), Column("module", "module", justify="left"),
        Column("output shape", "output_shape"),
        Column("params", lambda r: f"shared with {r['repeat_of']}" if r.get("repeat_of") else r["params"],
               lambda v: v if isinstance(v, str) else fmt_int(v)),
        Column("MACs", lambda r: r.get("macs"), fmt_si),
    ], m["layers"])
    published = published or {}
    ref_params, ref_gmacs = published.get("params", m.get("ref_params")), published.get("gmacs", m.get("ref_gmacs"))
    params_diff = None if ref_params is None else m["params"] - ref_params
    macs_diff = None if not ref_gmacs else 100 * (m["macs"] / (ref_gmacs * 1e9) - 1)
    mb, mib = fmt_float(2), memory_mib(m)

    def row(name, measured, published="", difference=""):
        return {"name": name, "measured": measured, "published": published, "difference": difference}

    rows = [
        row("total params", fmt_int(m["params"]), fmt_int(ref_params), "—" if params_diff is None else f"{params_diff:+,}"),
        row("trainable params", fmt_int(m["trainable_params"])),
        row("non-trainable params", fmt_int(m.get("non_trainable_params"))),
        row("MACs", fmt_si(m["macs"]), fmt_si(None if ref_gmacs is None else ref_gmacs * 1e9),
            "—" if macs_diff is None else f"{macs_diff:+.3f}%"),
        row("FLOPs (2 × MACs)", fmt_si(m["flops"])),
        row("input size (MiB)", mb(mib["input"])),
        row("forward/backward pass size (MiB)", mb(mib["forward_backward"])),
        row("params size (MiB)", mb(mib["params"])),
        row("estimated total size (MiB)", mb(mib["total"])),
    ]
    totals = render_table(f"{label} — totals", [
        Column("", "name", justify="left"), Column("measured", "measured"), Column("published", "published"),
        Column("difference", "difference"),
    ], rows, caption=f"MACs: {m.get('macs_convention')}.\nmemory estimates: {m.get('memory_convention', '—')}.")
    return [layers, totals]


# -- training -------------------------------------------------------------------------------------

def epochs_table(records: Iterable[Record]):
    rows = [_flat(r) for r in _of(records, Kind.TRAIN) if r.status == "ok"]
    four = fmt_float(4)
    return render_table("perfkit train — one row per epoch", [
        Column("model", "model", justify="left"), Column("weights", "weights", weights_label, justify="left"),
        Column("epoch", lambda r: f"{r['epoch']}/{(r.get('epochs') or 0) - 1}"),
        Column("train loss", "train_loss", four), Column("train acc", "train_acc", four),
        Column("val loss", "val_loss", four), Column("val acc", "val_acc", four),
        Column("time", "epoch_seconds", fmt_seconds), Column("img/s", "images_per_s", fmt_float(1)),
        Column("lr", "lr", lambda v: "—" if v is None else f"{v:.3g}"),
        Column("input", lambda r: (r.get("input_size") or [None])[-1], fmt_int),
    ], rows, row_style=lambda r: "bold" if r["epoch"] == r.get("best_epoch") else None)


def training_table(records: Iterable[Record]):
    return render_table("training comparison", [
        Column("model", lambda r: r["model"] + (" (random init)" if r["random"] else ""), justify="left"),
        Column("dataset", "dataset", justify="left"),
        Column("epochs", lambda r: f"{r['epochs_done']}/{'—' if r['epochs'] is None else r['epochs']}", str),
        Column("best val acc", "best_val_acc", fmt_float(4)), Column("best epoch", "best_epoch", fmt_int),
        Column("final train acc", "final_train_acc", fmt_float(4)),
        Column("s / epoch", "epoch_seconds_mean", fmt_seconds), Column("img/s", "images_per_s_mean", fmt_float(1)),
        Column("total", "total_seconds", fmt_seconds),
    ], training_rows(list(records)))


# -- failures and the run summary -----------------------------------------------------------------

def failures_table(records: Iterable[Record]):
    return render_table("could not run", [
        Column("step", "kind", justify="left"), Column("model", "model", justify="left"),
        Column("runtime", "runtime", justify="left"), Column("prec", "precision", justify="left"),
        Column("batch", "batch"), Column("why", "error", escape, justify="left", style="red"),
    ], failure_rows(list(records)))


def _batch_lines(row: dict, fn) -> str:
    return "\n".join(fn(b) for b in row["batches"]) or "—"


def _summary_scenario(scenario) -> Column:
    """A summary column for a scenario besides SingleStream: its headline figure, detail and batch."""
    fmt = FORMATS[scenario.headline.format]

    def cell(r):
        f = r["scenarios"].get(scenario.name)
        if f is None:
            return "—"
        mark = f"[bold yellow]{CONTENDED_MARK}[/]" if f["contended"] else ""
        where = " ".join(x for x in (f["detail"], f"b{f['batch']}") if x)
        return f"{escape(fmt(f['value']))}{mark}\n{escape(where)}"

    return Column(f"{scenario.title} {scenario.headline.unit}", cell, str)


def _summary_columns(rows: list[dict], scenarios: list) -> list[Column]:
    devices = {r["device"] for r in rows}
    two, one = fmt_float(2), fmt_float(1)
    dash = lambda v: "—" if v is None else str(v)  # noqa: E731
    mib = lambda v: "—" if v is None else f"{v / MIB:.1f}"  # noqa: E731
    parity = {True: "[green]pass[/]", False: "[red]FAIL[/]"}
    columns = [
        Column("model", lambda r: escape(r["model"]) + (" [bold magenta](random)[/]" if r["random"] else ""),
               str, justify="left"),
        Column("runtime", lambda r: " ".join(x for x in (r["runtime"], r["precision"]) if x) or "—", str,
               justify="left"),
        *([Column("dev", "device", justify="left")] if len(devices) > 1 else []),
        Column("top-1 %", "top1_pct", two), Column("pub", "ref_top1_pct", two),
        Column("Δ pp", "delta_top1_vs_ref_pp", lambda v: "—" if v is None else f"{v:+.2f}"),
        Column("top-5 %", "top5_pct", two), Column("pub", "ref_top5_pct", two),
        Column("parity", lambda r: "—" if r["parity_passed"] is None else
               f"{parity[bool(r['parity_passed'])]} {_pct100(r['parity_agreement'])}", str),
        Column("max |Δ|", "parity_max_abs_diff", fmt_sci),
        Column("batch", lambda r: _batch_lines(r, lambda x: dash(x["batch"])), str),
        Column("p50 ms", lambda r: _batch_lines(r, _marked("latency_median_ms", two)), str),
        Column("p99 ms", lambda r: _batch_lines(r, lambda x: two(x["latency_p99_ms"])), str),
        Column("img/s", lambda r: _batch_lines(r, lambda x: one(x["throughput_per_s"])), str),
        Column("peak MiB", lambda r: _batch_lines(r, lambda x: mib(x["peak_bytes"])), str),
        *(_summary_scenario(s) for s in scenarios),
        Column("params M", "params", lambda v: "—" if v is None else f"{v / 1e6:.2f}"),
        Column("GMACs", "macs", lambda v: "—" if v is None else f"{v / 1e9:.3f}"),
    ]
    return columns


def _summary_contention(records: list[Record]) -> str:
    """The summary's caption lines on contention (each contended row also says so below the table), and on
    the percentiles left out for want of timed calls."""
    from perfkit.profiler.scenarios.singlestream import percentile_notes

    lines = _contention_lines(records) + [escape(n) for n in percentile_notes(_of(records, Kind.LATENCY))]
    return "".join("\n" + line for line in lines)


def decision_table(records: list[Record], rows: list[dict]) -> list:
    """The answer first: per model (and scenario), the fastest variant that passed parity and the accuracy
    gate, its speed-up, memory, the runner-up and what limits the answer (``perfkit.report.decision``)."""
    lines = decision_rows(decisions(records, rows))
    mark = f"[bold yellow]{CONTENDED_MARK}[/]"
    table = render_table("what to ship: the fastest variant that passed parity (and top-1 ≥ 99 % of eager fp32's "
                         "where accuracy was measured)", [
        Column("model", lambda r: (escape(r["model"]) + (" [bold magenta](random)[/]" if r["random"] else ""))
               if r["first"] else "", str, justify="left"),
        Column("scenario", "scenario", escape, justify="left"),
        Column("ship", lambda r: f"[bold]{escape(r['choice'])}[/]", str, justify="left"),
        Column("batch", "batch"),
        Column("figure", lambda r: escape(r["figure"]) + (mark if r["contended"] else ""), str),
        Column("speed-up", "speedup", escape), Column("peak memory", "memory", escape),
        Column("runner-up", "runner_up", escape, justify="left"),
    ], lines, row_style=lambda r: "red" if r["failed"] else None,
        caption="SingleStream p50 at the smallest batch measured; speed-up over the reference at the same batch; "
                "the other scenarios: their headline figure")
    table.box, table.padding, table.pad_edge = box.SIMPLE_HEAD, (0, 1, 0, 0), False
    table.columns[0].no_wrap = True
    limits = [f"  {escape(r['model'])} — [yellow]{escape('; '.join(r['limits']))}[/]" for r in lines if r["limits"]]
    return [table, *(["[bold]what limits the answer:[/]", *limits] if limits else [])]


def summary_table(run: dict, records: list[Record]) -> list:
    """The run summary: the decision first, then one line per model × runtime × precision, then notes,
    training and failures."""
    rows = summary_rows(records)
    devices = {r["device"] for r in rows}
    others = [sc for sc in scenarios_in(records) if not sc.base and any(sc.name in r["scenarios"] for r in rows)]
    columns = _summary_columns(rows, others)
    style = {"fail": "red", "warn": "yellow", "ok": None}
    where = f" on {devices.pop()}" if len(devices) == 1 and None not in devices else ""
    machines = labels(r for r in records if r.runtime is not None)
    where += f" ({escape(machines[0])})" if len(machines) == 1 else f" ({len(machines)} machines)" if machines else ""
    title = f"run {run['id']}{where} — {escape(run['command'])} ({run['status']})"
    out: list = decision_table(records, rows) if any(r["runtime"] for r in rows) else []
    if rows:
        scenarios = "".join(f"{sc.title} {sc.headline.unit} = the {sc.title} scenario's figure, at its batch (b); "
                            for sc in others)
        table = render_table(title, columns, rows, row_style=lambda r: style[r["status"]],
                             caption="top-1/top-5 measured on ImageNet-val; pub = published with the weights "
                                     "(recorded with the run); parity vs eager (an ONNX file: vs ONNX Runtime fp32 "
                                     "on the CPU); latency and peak memory per batch; "
                                     f"{scenarios}MACs = multiply-accumulates; MiB = 2**20 bytes"
                                     + _summary_contention(records))
        # borders and double padding would cost a fifth of a 160-column terminal
        table.box, table.padding, table.pad_edge = box.SIMPLE_HEAD, (0, 1, 0, 0), False
        table.columns[0].no_wrap = True
        out.append(table)
    else:
        out.append(f"{title}: no model × runtime was measured")
    for r in rows:
        if r["status"] != "ok":
            what = " ".join(escape(str(x)) for x in (r["model"], r["runtime"], r["precision"]) if x)
            out.append(f"[{style[r['status']]}]  {what}: {escape('; '.join(r['flags']))}[/]")
    if others:  # with one scenario the table says it all; with several, which runtime wins which
        won = winners(records)
        out += [_winner_line(w, sc) for sc in scenarios_in(records) for w in won if sc.name in w["by"]]
    if rows and all(r["top1_pct"] is None for r in rows):
        out.append("[yellow]No measured accuracy in this run (no ImageNet-val given): the top-1/top-5 "
                   "columns show published numbers only.[/]")
    if any(r["random"] for r in rows):
        out.append("[bold magenta]Models marked (random) ran with random weights: their accuracy is not "
                   "meaningful (latency, memory and parity are).[/]")
    out += precision_notes(_of(records, Kind.LATENCY)) + calibration_notes(records)
    if _of(records, Kind.TRAIN):
        out.append(training_table(records))
    if any(r.status == "error" for r in records):
        out.append(failures_table(records))
    return out


# -- listings: zoo, runs, select, regress ---------------------------------------------------------

def zoo_table(rows: list[dict]):
    return render_table("perfkit zoo — published ImageNet-val metrics of the default weights", [
        Column("model", "model", justify="left"),
        Column("weights", lambda r: (r["default_weights"] or "—").split(".")[-1], justify="left"),
        Column("acc@1", "acc1_pct", fmt_pct), Column("acc@5", "acc5_pct", fmt_pct),
        Column("params", "params", fmt_int), Column("GMACs", "gmacs", fmt_float(3)),
        Column("input", lambda r: "×".join(map(str, r["input_size"][1:]))),
        Column("cached", lambda r: {True: "yes", False: "no", None: "—"}[r["weights_cached"]]),
    ], rows, caption="GMACs: multiply-accumulates of conv+linear (torchvision labels these GFLOPS); FLOPs = 2 × MACs")


def runs_table(runs: list[dict], path):
    style = {"ok": None, "running": "yellow", "interrupted": "yellow", "failed": "red"}
    machine = lambda r: r.get("hardware") or hardware_of(r.get("env"))  # noqa: E731
    return render_table(f"runs in {path}", [
        Column("run", "id", justify="left"), Column("started", "started", fmt_time),
        Column("took", "seconds", fmt_seconds), Column("status", "status", justify="left"),
        Column("records", "records", fmt_int), Column("errors", "errors", fmt_int),
        Column("hardware", lambda r: escape(machine(r)["label"]), str, justify="left"),
        Column("hw key", lambda r: machine(r)["key"], str, justify="left"),
        Column("command", "command", escape, justify="left"),
    ], runs, row_style=lambda r: "red" if r["errors"] else style.get(r["status"]))


def machines_table(rows: list[dict]):
    """One model × runtime × precision × batch across machines (``perfkit.report.hardware.machine_rows``)."""
    return render_table("across machines: SingleStream latency of each candidate on each hardware", [
        Column("model", lambda r: escape(r["model"]) + (" [magenta](random weights)[/]" if r["random"] else ""), str,
               justify="left"),
        Column("runtime", "runtime", justify="left"), Column("prec", "precision", justify="left"),
        Column("batch", "batch"), Column("hardware", lambda r: escape(r["hardware"]), str, justify="left"),
        Column("device", "device", justify="left"), Column("p50", "latency_median_ms", fmt_ms),
        Column("img/s", "throughput_per_s", fmt_float(1)), Column("run", "run_id", justify="left"),
    ], rows, caption="the newest ok timing of each candidate on each machine (hardware: `perfkit runs`)")


def select_tables(result: dict, batch: int, server: bool = False) -> list:
    from perfkit.report.select import MB

    name = lambda c: escape(c["model"]) + (" [magenta](random weights)[/]" if c["random"] else "")  # noqa: E731
    top1 = lambda c: "—" if c["top1"] is None else f"{c['top1']:.2f}" + (  # noqa: E731
        " [yellow](published)[/]" if c["top1_source"] == "published" else "")
    speed = [Column("p50", "latency_median_ms", fmt_ms), Column("p99", "latency_p99_ms", fmt_ms),
             Column("img/s", "throughput_per_s", fmt_float(1))]
    if server:
        speed = [Column("QPS (p99 ≤ bound)", "server_qps", fmt_float(1)), Column("p99", "server_p99_ms", fmt_ms),
                 Column("bound", "server_bound_ms", fmt_ms),
                 Column("LoadGen verdict", lambda c: escape(c["server_verdict"] or "—"), str, justify="left")]
    title = (f"candidates meeting the constraints (Server, p99 ≤ {result['constraints']['latency_bound_ms']:g} ms)"
             if server else f"candidates meeting the constraints (batch {batch})")
    # a store shared by several machines: which one each candidate's numbers were measured on
    machines = len({c["hardware_key"] for c in result["selected"] + result["excluded"]}) > 1
    hardware = [Column("hardware", lambda c: escape(c["hardware"]), str, justify="left")] if machines else []
    out = [render_table(title, [
        Column("#", "rank"), Column("Pareto", lambda c: "★" if c["pareto"] else "", str),
        Column("model", name, str, justify="left"), Column("runtime", "runtime", justify="left"),
        Column("prec", "precision", justify="left"), Column("device", "device", justify="left"), *hardware,
        Column("top-1 %", top1, str),
        Column("rel. fp32", "relative_top1", lambda v: "—" if v is None else f"{100 * v:.2f}%"),
        *speed,
        Column("peak MB", "peak_bytes", lambda v: "—" if v is None else f"{v / MB:.1f}"),
    ], result["selected"], caption="\n".join([
        "★ = Pareto-optimal: no other candidate is both more accurate and faster; rel. fp32 = top-1 / eager "
        "fp32's on the same images (an ONNX file's: ONNX Runtime fp32 on the CPU); MB = 10^6 bytes (the "
        "--max-memory-mb budget's unit; other tables show MiB = 2**20)",
        *_candidate_calibrations(result["selected"])]))]
    if result["excluded"]:
        out.append(render_table("excluded", [
            Column("model", name, str, justify="left"), Column("runtime", "runtime", justify="left"),
            Column("prec", "precision", justify="left"), Column("device", "device", justify="left"), *hardware,
            Column("why", lambda c: escape("; ".join(c["reasons"])), str, justify="left", style="yellow"),
        ], result["excluded"]))
    return out


def _candidate_calibrations(candidates: list[dict]) -> list[str]:
    lines = dict.fromkeys(f"{c['model']} {c['runtime']} {c['precision']}: {c['calibration']}"
                          for c in candidates if c.get("calibration"))
    return [escape(line) for line in lines]


def _interval(change: dict) -> str | None:
    """A median's 95 % interval, from both sides' stored samples (``perfkit regress``)."""
    found = change.get("interval")
    return None if not found else f"95% CI {found[0]:+.1f} … {found[1]:+.1f} %"


def regress_table(result: dict, title: str, caption: str):
    value = lambda v: "—" if v is None else (f"{v:.6g}" if isinstance(v, float) else escape(str(v)))  # noqa: E731
    change = lambda c: "—" if c["change"] is None else f"{c['change']:+.3g} {c['unit']}"  # noqa: E731
    style = {"regression": "red", "now fails": "red", "improved": "green", "fixed": "green", "missing": "yellow",
             "config changed": "yellow", "contended": "yellow", "inconclusive": "yellow"}
    shown = [c for c in result["changes"] if c["verdict"] != "same"]
    why = lambda c: "; ".join(c.get("config") or []) or c.get("contended") or _interval(c)  # noqa: E731
    verdict = lambda c: c["verdict"] + (f" ({escape(why(c))})" if why(c) else "")  # noqa: E731
    return render_table(title, [
        Column("model", "model", justify="left"), Column("runtime", "runtime", justify="left"),
        Column("prec", "precision", justify="left"), Column("batch", "batch"),
        Column("step", "kind", justify="left"), Column("metric", "metric", justify="left"),
        Column("baseline", "baseline", value), Column("candidate", "candidate", value),
        Column("change", change, str), Column("verdict", verdict, str, justify="left"),
    ], sorted(shown, key=lambda c: c["verdict"] not in ("regression", "now fails")),
        row_style=lambda c: style.get(c["verdict"]), caption=caption)


__all__ = [
    "accuracy_table", "calibration_notes", "complexity_tables", "decision_table", "epochs_table", "export_table", "failures_table",
    "gate_table", "is_random", "machines_table", "parity_table", "precision_notes", "per_class_tables",
    "scenario_table", "scenario_tables",
    "regress_table", "runs_table", "select_tables", "summary_table", "training_table", "zoo_table",
]


def layer_tables(records: Iterable[Record], title: str) -> list:
    """Per model, the layer table of its layers records: a row per module (MACs, params, ms in each runtime ×
    precision × batch side by side), then the sum of each profile's layer times beside its end-to-end median."""
    from perfkit.report import layer_rows as L

    out = []
    measured = L.profiles(records)
    for model in dict.fromkeys(r.model for r in measured):
        mine = [r for r in measured if r.model == model]
        labels = [L.label(r) for r in mine if r.status == "ok" and not r.metrics.get("unavailable")]
        columns = [Column("module", "name", justify="left"), Column("type", "type", justify="left"),
                   Column("MACs", "macs", fmt_si), Column("params", "params", fmt_int)]
        columns += [Column(f"{lab} ms", lambda row, lab=lab: row["ms"].get(lab), fmt_float(3)) for lab in labels]
        out.append(render_table(f"{title} — {model}: time per layer (each runtime's own profiler)", columns,
                                L.side_by_side(mine), caption=_layer_caption(mine)))
    return out


def _layer_caption(measured: list[Record]) -> str:
    from perfkit.report import layer_rows as L

    lines = []
    for t in L.totals(measured):
        if t["why_not"]:
            lines.append(f"{t['label']}: no layer profile — {escape(t['why_not'])}")
            continue
        median = "—" if t["e2e_median_ms"] is None else f"{t['e2e_median_ms']:.3f} ms"
        lines.append(f"{t['label']}: layers sum {t['total_ms']:.3f} ms vs end-to-end median {median}; "
                     f"{_pct100(t['coverage'])} on module rows ({t['runs']} runs, {escape(t['source'])})")
    lines.append("MACs: the module's own per sample (submodules excluded); a fused layer's time is split among the "
                 "modules it ran by their MACs, evenly when none has any; (unmapped) rows: layers no module path "
                 "could be found for; profilers add overhead: their sums are not latencies.")
    return "\n".join(lines)
