"""ONNX Runtime's per-node time: a second session over the runner's artifact, with the runner's own session
options and providers plus ``enable_profiling``; the node events (``cat == "Node"``) of its JSON trace,
averaged over the timed runs (the warm-up runs' events are left out by their ``model_run`` window).

ONNX Runtime names the nodes it runs after the graph's (``node_Conv_294_token_5``) or after their output
tensor (``relu_nchwc``: the NCHWc convolution writing ``relu``); ``onnx_graph`` maps them back, and the
graph nodes no run names (fused away: the ReLU and residual Add of a Conv+Add+ReLU) are counted for the
node that absorbed them.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

from perfkit.profiler.layers import WARMUP_RUNS, LayersUnavailable, LayerTime, RuntimeLayers
from perfkit.profiler.layers import onnx_graph

SOURCE = "ONNX Runtime profiler (SessionOptions.enable_profiling: node events of its JSON trace)"
MAPPING = ("ONNX node → module paths from the dynamo exporter's pkg.torch.onnx.name_scopes and the parameters "
           "each node reads; nodes ONNX Runtime fused away count for the node that ran them")


def profile(runner, x, runs: int, counts) -> RuntimeLayers:
    ort = _onnxruntime()
    with tempfile.TemporaryDirectory(prefix="perfkit-ort-profile-") as folder:
        options = runner.session_options(ort)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "trace")
        session = ort.InferenceSession(str(runner.artifact.path), options,
                                       providers=runner.session.get_providers(),
                                       provider_options=_provider_options(runner.session))
        feed = {runner.input_name: x.contiguous().numpy()}
        for _ in range(WARMUP_RUNS + runs):
            session.run([runner.output_name], feed)
        trace = session.end_profiling()
        events = json.loads(Path(trace).read_text()) if trace and Path(trace).is_file() else []
    times, op_types = node_times(events, WARMUP_RUNS)
    if not times:
        raise LayersUnavailable(f"onnxruntime {ort.__version__} wrote no node events to its profile (a build "
                                "without the profiler?)")
    graph = onnx_graph.read(runner.artifact.path, set(counts.types) or None)
    return RuntimeLayers(layers(graph, times, op_types, runs), runs, SOURCE, MAPPING)


def _onnxruntime():
    from perfkit.deps import require

    return require("onnxruntime")


def _provider_options(session) -> list[dict]:
    given = session.get_provider_options()
    return [given.get(p, {}) for p in session.get_providers()]


def node_times(events: list[dict], warmup: int) -> tuple[dict[str, float], dict[str, str]]:
    """Microseconds per node name summed over the runs after the first ``warmup`` ones, and each node's op."""
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session"
                     and e.get("name") == "model_run")
    start = windows[warmup][0] if len(windows) > warmup else None
    times: dict[str, float] = defaultdict(float)
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        if start is None or e["ts"] < start:
            continue
        name = e["name"].removesuffix("_kernel_time")
        times[name] += float(e["dur"])
        ops[name] = (e.get("args") or {}).get("op_name", "?")
    return dict(times), ops


def layers(graph: onnx_graph.GraphMap, times_us: dict[str, float], op_types: dict[str, str],
           runs: int) -> list[LayerTime]:
    """Each runtime node's mean ms per run with the modules of the graph nodes it ran."""
    ran = {name: graph.node(name) for name in times_us}
    modules = graph.layer_modules({name: [node] if node else [] for name, node in ran.items()})
    return [LayerTime(name, op_types.get(name, "?"), us / 1000 / runs, modules[name]) for name, us in times_us.items()]
