"""Per-layer time from each runtime's own profiler, mapped back to the model's modules.

One module per runtime's profiler (each ``Backend`` names its own: ``layer_profiler``): ONNX Runtime's node events
(``SessionOptions.enable_profiling``), OpenVINO's performance counters (``PERF_COUNT``), TensorRT's
``IProfiler`` with the engine inspector's layer information, and
``torch.profiler`` for eager (a range per module call), TorchScript and AOTInductor (ops only: their
compiled graphs keep no module boundaries). Each returns the layers the runtime ran, timed over ``runs``
inferences after a warm-up, with the module paths each counts for. Profiling is its own pass on the entered
runner, after the latency numbers were taken: the profilers add overhead, so their sum is shown next to
the end-to-end median, never in its place.

A layer that ran several modules (a fusion) splits its time among them by their own MACs (a convolution
with its folded batch norm and ReLU: all of it to the convolution), evenly when none has MACs. Layers that
map to no module stay in the table as ``unmapped`` rows by op type; ``coverage`` is the share of the
profiled time on rows named by a module path (the model's own top-level code, ``(model)``, is not one).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from perfkit.results import Where

SPLIT = "a layer that ran several modules (a fusion) splits its time by their own MACs, evenly when none has any"
MACS_CONVENTION = "the module's own MACs per sample (its submodules' excluded), perfkit's PyTorch count"
WARMUP_RUNS = 2
RUNS = 10


class LayersUnavailable(Exception):
    """This runtime's layer profiler cannot run here: the runtime's row says why, the others go on."""


@dataclass(frozen=True)
class LayerTime:
    """One layer (node, primitive, op) as the runtime ran it: mean ms per inference."""

    name: str
    op_type: str
    ms: float
    modules: tuple[str, ...] = ()  # module paths it counts for ('' = the model's top level); () = unmapped

    def as_dict(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "ms": self.ms, "modules": list(self.modules)}


@dataclass(frozen=True)
class RuntimeLayers:
    """What a runtime's profiler measured."""

    layers: list[LayerTime]
    runs: int
    source: str  # which profiler, in words
    mapping: str  # how its layers were mapped to modules


@dataclass(frozen=True)
class LayerProfile:
    """One runtime × precision × batch profiled per layer (``unavailable``: why it could not be)."""

    where: Where
    source: str
    layers: list[LayerTime] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    runs: int = 0
    mapping: str = ""
    e2e_median_ms: float | None = None
    unavailable: str | None = None

    @property
    def total_ms(self) -> float:
        return sum(layer.ms for layer in self.layers)

    @property
    def coverage(self) -> float | None:
        """The share of the profiled time on rows named by a module path."""
        named = sum(r["ms"] for r in self.rows if r["module"])
        return named / self.total_ms if self.total_ms else None

    @property
    def by_op_type(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for layer in self.layers:
            out[layer.op_type] += layer.ms
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


@dataclass(frozen=True)
class ModuleCounts:
    """The model's modules: MACs per module path (submodules included, perfkit.analysis) and params and
    type per module."""

    macs: dict[str, int] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    complexity: object = None  # the perfkit.analysis Complexity they came from (its FLOPs feed the roofline)

    def own_macs(self, path: str) -> int:
        """MACs of ``path`` less its direct submodules' (FlopCounterMode lists every module with a counted op
        and each of its parents, so the children of a listed module are listed when they count)."""
        inner = sum(v for p, v in self.macs.items() if p != path and _parent(p) == path)
        return self.macs.get(path, 0) - inner


def _parent(path: str) -> str | None:
    if not path:
        return None
    return path.rsplit(".", 1)[0] if "." in path else ""


def module_counts(spec) -> ModuleCounts:
    """MACs, params and types per module of ``spec`` at batch 1 (empty for a graph or an engine someone built:
    no modules)."""
    if spec.form != "pytorch":
        return ModuleCounts()
    from perfkit.analysis.complexity import measure_complexity

    model = spec.build()
    counted = measure_complexity(spec, model)
    modules = dict(model.named_modules())
    return ModuleCounts(counted.macs_by_module, {p: sum(t.numel() for t in m.parameters(recurse=False))
                                                 for p, m in modules.items()},
                        {p: type(m).__name__ for p, m in modules.items()}, counted)


def module_rows(layers: list[LayerTime], counts: ModuleCounts) -> list[dict]:
    """Rows of the layer table: one per module path the layers map to (time split as ``SPLIT`` says), then
    one per op type of the unmapped layers; largest time first. MACs are each module's own, per sample."""
    rows: dict[tuple, dict] = {}
    for layer in layers:
        for module, share in _shares(layer.modules, counts):
            key = ("module", module)
            row = rows.setdefault(key, {"module": module, "type": counts.types.get(module), "op_types": [], "ms": 0.0,
                                        "macs": counts.own_macs(module) if counts.macs else None,
                                        "params": counts.params.get(module), "layers": 0})
            row["ms"] += layer.ms * share
            row["layers"] += 1
            row["op_types"] = list(dict.fromkeys([*row["op_types"], layer.op_type]))
        if not layer.modules:
            row = rows.setdefault(("op", layer.op_type), {"module": None, "type": None, "op_types": [layer.op_type],
                                                          "ms": 0.0, "macs": None, "params": None, "layers": 0})
            row["ms"] += layer.ms
            row["layers"] += 1
    return sorted(rows.values(), key=lambda r: -r["ms"])


def _shares(modules: tuple[str, ...], counts: ModuleCounts) -> list[tuple[str, float]]:
    if not modules:
        return []
    weights = [max(counts.own_macs(m), 0) for m in modules]
    total = sum(weights)
    if not total:
        return [(m, 1 / len(modules)) for m in modules]
    return [(m, w / total) for m, w in zip(modules, weights)]  # a module with none: shown, at 0 ms


def profile_layers(spec, runner, where: Where, counts: ModuleCounts, e2e_median_ms: float | None,
                   runs: int = RUNS) -> LayerProfile:
    """Per-layer time of an entered ``runner`` at ``where.batch`` (a separate pass: after its latency was
    taken). A runtime without a layer profiler here is a ``LayerProfile`` saying why; a profiler that fails
    raises (that point's failure)."""
    import importlib

    from perfkit.backends import all_backends

    backend = next((b for b in all_backends() if b.name == runner.name), None)  # its Backend declares the profiler
    module = backend.layer_profiler if backend else None
    if module is None:
        why = (backend.no_layer_profiler if backend else "") or f"{runner.name} has no layer profiler in perfkit"
        return LayerProfile(where, "none", unavailable=why, e2e_median_ms=e2e_median_ms)
    profiler = importlib.import_module(module)
    try:
        measured = profiler.profile(runner, spec.example_input(where.batch), runs, counts)
    except LayersUnavailable as exc:
        return LayerProfile(where, profiler.SOURCE, unavailable=str(exc), e2e_median_ms=e2e_median_ms)
    return LayerProfile(where, measured.source, measured.layers, module_rows(measured.layers, counts), measured.runs,
                        measured.mapping, e2e_median_ms)
