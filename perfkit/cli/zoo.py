"""perfkit zoo: the models perfkit knows, with their published numbers (a listing: no run, no records)."""

from __future__ import annotations

from perfkit.cli import options as O


def add(sub) -> None:
    p = O.command(sub, "zoo", "list models with published accuracy, params and MACs",
                  "List the model zoo: the default models (or every torchvision classifier with --all) with\n"
                  "the published ImageNet-val accuracy, parameters and MACs of their default weights, and\n"
                  "whether the pretrained file is in the local cache.", "perfkit zoo --json")
    p.add_argument("--all", action="store_true", help="every torchvision classification model, not just the defaults")
    O.json_flag(p)
    p.set_defaults(func=run)


def rows(all_models: bool) -> list[dict]:
    import torchvision

    from perfkit.zoo.sources import resolve
    from perfkit.zoo.sources.torchvision import DEFAULT_MODELS, list_torchvision
    from perfkit.zoo.weights import hub_cache_path

    names = list_torchvision() + ["lenet5"] if all_models else [*DEFAULT_MODELS, "lenet5"]
    out = []
    for name in names:
        spec = resolve(name, weights="random")  # no file access: the listing is about the published numbers
        ref = spec.reference
        cached = None
        if spec.source == "torchvision":
            cached = hub_cache_path(torchvision.models.get_weight(ref["weights"])).is_file()
        out.append({
            "model": name, "default_weights": ref.get("weights"), "acc1_pct": ref.get("acc1_pct"),
            "acc5_pct": ref.get("acc5_pct"), "params": ref.get("params"), "gmacs": ref.get("gmacs"),
            "input_size": list(spec.input_size), "weights_cached": cached, "preprocess": spec.preprocess.describe(),
        })
    return out


def run(args) -> int:
    from perfkit.report.console import console, print_json
    from perfkit.report.tables import zoo_table

    data = rows(args.all)
    if args.json:
        print_json(data)
    else:
        console.print(zoo_table(data))
    return 0
