"""OpenVINO's per-layer time: the runner's IR compiled once more at the batch with its own properties plus
``PERF_COUNT``; each executed primitive's ``real_time`` from ``get_profiling_info()``, summed over the timed
runs. The runtime model's ``originalLayersNames`` (rt_info) lists the IR layers each primitive ran (a
convolution with its bias and ReLU); the IR keeps the ONNX node names it was converted from, so
``onnx_graph`` maps them to module paths through the ONNX artifact the IR came from. A reorder OpenVINO
inserts (a layout change) counts for the primitive it feeds.
"""

from __future__ import annotations

from collections import defaultdict

from perfkit.profiler.layers import WARMUP_RUNS, LayersUnavailable, LayerTime, RuntimeLayers
from perfkit.profiler.layers import onnx_graph

SOURCE = "OpenVINO performance counters (PERF_COUNT, InferRequest.get_profiling_info: real_time)"
MAPPING = ("primitive → the IR layers it ran (runtime model rt_info originalLayersNames) → ONNX nodes of the "
           "artifact the IR was converted from → module paths (pkg.torch.onnx.name_scopes, parameters read)")


def profile(runner, x, runs: int, counts) -> RuntimeLayers:
    batch = int(x.shape[0])
    compiled = runner.compile(batch, {**runner.properties("LATENCY"), "PERF_COUNT": True})
    request = compiled.create_infer_request()
    feed = {0: x.contiguous().numpy()}
    for _ in range(WARMUP_RUNS):
        request.infer(feed)
    us: dict[str, float] = defaultdict(float)
    op_types: dict[str, str] = {}
    for _ in range(runs):
        request.infer(feed)
        for info in request.get_profiling_info():
            if info.status.name == "EXECUTED":
                us[info.node_name] += info.real_time.total_seconds() * 1e6
                op_types[info.node_name] = info.node_type
    if not us:
        raise LayersUnavailable(f"OpenVINO on {runner.ov_device} reported no executed primitive with PERF_COUNT")
    graph = onnx_graph.source(runner, "openvino", counts)
    original = original_layers(compiled)
    out = []
    for name, total in us.items():
        nodes = [graph.node(n) for n in _ran(name, original)] if graph else []
        modules = graph.modules_of(n for n in nodes if n) if graph else ()
        out.append(LayerTime(name, op_types[name], total / 1000 / runs, modules))
    return RuntimeLayers(out, runs, SOURCE, MAPPING if graph else "an IR without its ONNX source: unmapped")


def original_layers(compiled) -> dict[str, list[str]]:
    """Primitive name → the names of the IR layers it ran (empty for a reorder OpenVINO inserted)."""
    out = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
        out[op.get_friendly_name()] = [n for n in names.split(",") if n]
    return out


def _ran(name: str, original: dict[str, list[str]]) -> list[str]:
    """The IR layers primitive ``name`` ran; a reorder OpenVINO inserted (no layers of its own, named
    ``<source>_<layouts>_<consumer>``) counts for the primitive it converts the input of."""
    if original.get(name):
        return original[name]
    fed = [p for p in original if p != name and original[p] and name.endswith("_" + p)]
    return original[max(fed, key=len)] if fed else []

