"""perfkit summary MODEL: the per-layer table, params, MACs/FLOPs and memory estimates."""

from __future__ import annotations

from perfkit.cli import common
from perfkit.cli import options as O


def add(sub) -> None:
    p = O.command(sub, "summary", "per-layer table, params, MACs/FLOPs and memory estimates",
                  "Complexity of one model at its native input size (batch 1, eval mode): a per-layer table\n"
                  "(output shape, params) like torchsummary's, total/trainable params, MACs and FLOPs with\n"
                  "their convention, the published params/GMACs beside them, and the memory estimates (MiB).\n"
                  "Weights change none of these numbers; with the default 'auto' a model without a cached\n"
                  "pretrained file is built with random weights (and labelled so). Writes one complexity record.\n"
                  "--check-onnx also exports the model with perfkit's ONNX exporter (through the artifact\n"
                  "cache) and counts the Conv/Gemm/MatMul/Einsum MACs of that graph: exit 1 when the two\n"
                  "counts disagree by more than 0.1%. An ONNX file (MODEL = model.onnx) is counted from its graph:\n"
                  "params from its floating-point initializers, MACs by the same ONNX counter, a row per node.",
                  "perfkit summary resnet18 --weights random --json\n"
                  "  perfkit summary --model-code net.py:build --input-size 3,224,224\n"
                  "  perfkit summary model.onnx   # an ONNX file: params and MACs counted from its graph")
    O.model(p)
    p.add_argument("--check-onnx", action="store_true",
                   help="cross-check the MACs against the exported ONNX graph (same convention); exit 1 on a disagreement")
    p.add_argument("--layers-from", default=None, metavar="RUN",
                   help="print the layer table of a run of `perfkit profile --layers` instead (run id, a unique "
                        "prefix or latest): per module, its MACs and params and its time in each runtime × "
                        "precision × batch side by side, each profile's layer sum beside its end-to-end median; "
                        "MODEL, when given, picks one model of the run. Measures nothing")
    O.artifacts(p)
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.layers_from:
        return _layers_from(args)
    from perfkit.api import summary
    from perfkit.report.rows import published_by_model
    from perfkit.report.tables import complexity_tables
    from perfkit.store import Kind

    with common.progress(args) as bar:
        done = summary(args.model, **common.keywords(args, "model"), notify=common.notify(args), progress=bar)
    [spec], native = done.models, done.native
    [record] = done.records(Kind.COMPLEXITY)
    published = published_by_model(done.records()).get((record.model, record.weights), {})
    if spec.input_size != native.input_size:
        published = {"params": published.get("params")}  # published MACs are at the native size only
    common.show(args, done.run_id, done.records(), complexity_tables(record, spec.label, published)
                + _notes(record, native, spec))
    return common.exit_code(done)


def _layers_from(args) -> int:
    """The layers records of a stored run as tables (or JSON): nothing is measured or written."""
    from perfkit.errors import UsageError
    from perfkit.report.tables import layer_tables
    from perfkit.store import Kind

    with common.open_store(args, read_only=True) as store:
        run = store.get_run(args.layers_from)
        records = store.records(run["id"], kind=Kind.LAYERS, model=args.model or None)
    if not records:
        which = f" of {args.model}" if args.model else ""
        raise UsageError(f"run {run['id']} has no layer profiles{which} (`perfkit profile --layers` writes them)")
    common.show(args, run["id"], records, layer_tables(records, f"run {run['id'][:12]}"))
    return 0


def _notes(record, native, spec) -> list[str]:
    from rich.markup import escape

    m = record.metrics
    out = [f"[dim]params: {m['params_convention']}.[/]", f"[dim]not counted in MACs: {m['not_counted']}.[/]"]
    if m.get("params_outside_rows"):
        named = sorted((m.get("unrowed_params") or {}).items(), key=lambda kv: -kv[1])
        which = ", ".join(f"{escape(n)} ({v:,})" for n, v in named[:6]) + (
            f" and {len(named) - 6} more" if len(named) > 6 else "")
        out.append(f"[dim]{m['params_outside_rows']:,} params are in no layer row: modules not called at inference "
                   "(e.g. inception_v3's AuxLogits), parameters held directly by a module whose submodules are rows "
                   f"(a ViT's class token and position embedding), or shared weights{': ' + which if which else ''}.[/]")
    if spec.input_size != native.input_size:
        out.append(f"[yellow]counted at {'×'.join(map(str, spec.input_size))}, not the native "
                   f"{'×'.join(map(str, native.input_size))}: published MACs (native size) are not compared.[/]")
    if native.source == "timm":
        out.append("[dim]published: timm publishes top-1/params/GMACs per pretrained tag in its results tables "
                   "(pytorch-image-models/results/*.csv), which the installed timm package does not ship; "
                   "perfkit has no offline copy, so no published column is shown.[/]")
    return out + _onnx_notes(m)


def _onnx_notes(m: dict) -> list[str]:
    if m.get("onnx_macs") is None:
        return []
    diff = 100 * (m["onnx_macs"] / m["macs"] - 1) if m["macs"] else 0.0
    by_op = ", ".join(f"{op} {v / 1e9:.3f} G" for op, v in m.get("onnx_macs_by_op", {}).items())
    line = (f"ONNX cross-check: {m['onnx_macs'] / 1e9:.4f} GMACs in perfkit's exported ONNX graph ({by_op}) vs "
            f"{m['macs'] / 1e9:.4f} GMACs counted in PyTorch: {diff:+.3f}%")
    if m.get("onnx_agrees"):
        return [f"[green]{line} — agree (tolerance {100 * m['onnx_tolerance']:g}%).[/]"]
    missing = "; ".join(f"{op} ×{n}" for op, n in (m.get("onnx_no_formula") or {}).items())
    why = f"the graph has ops without a MAC formula ({missing})" if missing else "one of the two counts is wrong"
    return [f"[red]{line} — DISAGREE beyond {100 * m['onnx_tolerance']:g}%: {why}.[/]"]
