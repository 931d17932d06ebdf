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
                  "pretrained file is built with random weights (and labelled so). Writes one complexity record.",
                  "perfkit summary resnet18 --weights random --json")
    p.add_argument("model", help="a zoo name: resnet18, inception_v3, lenet5, timm:<name>, ...")
    O.weights(p)
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from perfkit.analysis import analyze
    from perfkit.report.console import err_console
    from perfkit.report.rows import published_by_model
    from perfkit.report.tables import complexity_tables
    from perfkit.results import Failure, Kind, Where
    from perfkit.store import Kind as K

    spec = common.spec(args)
    with common.session(args) as rec:
        rec.model(spec)
        try:
            with err_console.status(f"counting params and MACs of {spec.label} ..."):
                rec.add(analyze(spec))
        except Exception as exc:  # recorded as the step's failure, then reported as the command's error
            rec.add(Failure.of(Kind.COMPLEXITY, Where.of(spec, "eager", "fp32", 1, "cpu"), exc))
            raise
    [record] = [r for r in rec.records if r.kind == K.COMPLEXITY]
    published = published_by_model(rec.records).get((record.model, record.weights), {})
    common.show(args, rec, complexity_tables(record, spec.label, published) + _notes(record))
    return 0


def _notes(record) -> list[str]:
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
    return out
