"""TensorRT's per-layer time: its own ``IProfiler`` on the runner's execution context, and the engine
inspector's layer information for what each layer is and which ONNX nodes it ran.

Timing: a perfkit subclass of ``trt.IProfiler`` becomes the context's ``profiler`` for the timed runs,
with ``enqueue_emits_profile`` cleared: ``execute_async_v3`` then stays asynchronous and TensorRT reports a
run's layer times (``report_layer_time(layer_name, ms)``, once per layer) when ``report_to_profiler()`` is
called after the run finished (the runner's stream synchronized). So each timed run is reported exactly
once and the warm-up runs never are; a layer reported another number of times is an error, not an average
of something else. The context is given back without a profiler, emitting profiles again (its default).

Names: the engine inspector's layer information (``create_engine_inspector().get_engine_information(JSON)``)
gives each layer's ``LayerType`` and the ONNX nodes it came from when the engine was built with
``ProfilingVerbosity.DETAILED`` (perfkit's default; an engine built with less lists names only);
``trt_names`` maps layer names to the nodes of the ONNX graph the engine was built from, ``onnx_graph``
nodes to module paths. An engine someone built, with no ONNX beside it: every layer an unmapped row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING

from perfkit.backends.tensorrt import import_tensorrt
from perfkit.errors import PerfkitError
from perfkit.profiler.layers import WARMUP_RUNS, LayersUnavailable, RuntimeLayers
from perfkit.profiler.layers import onnx_graph, trt_names

if TYPE_CHECKING:  # annotations only (tests/backends/test_tensorrt_bindings.py types TensorRT objects by them)
    import tensorrt

SOURCE = ("TensorRT IProfiler (report_layer_time of each timed run, reported after it with report_to_profiler) "
          "and the engine inspector's layer information")
MAPPING = ("TensorRT layer → the ONNX nodes it ran (the inspector's [ONNX Layer: …] metadata, else its name: "
           "fusions 'a + b', PWN(…), reformats count for the layer they feed, ForeignNode[first...last] ranges) → "
           "module paths (pkg.torch.onnx.name_scopes, parameters read)")


def profile(runner, x, runs: int, counts) -> RuntimeLayers:
    trt = import_tensorrt()
    engine: tensorrt.ICudaEngine = runner.engine
    info = layer_information(trt, engine)
    ms, reports = time_layers(trt, runner, x, runs)
    if not ms:
        raise LayersUnavailable(f"TensorRT {trt.__version__} reported no layer time to the IProfiler")
    wrong = {name: n for name, n in reports.items() if n != runs}
    if wrong:
        raise PerfkitError(f"TensorRT's IProfiler reported layers a number of times other than the {runs} timed runs: "
                           + ", ".join(f"{name!r} {n}" for name, n in sorted(wrong.items())[:5]))
    graph = onnx_graph.source(runner, "tensorrt", counts)
    return RuntimeLayers(trt_names.layers(graph, info, ms, runs), runs, SOURCE,
                         MAPPING if graph else "an engine without its ONNX source: unmapped")


def make_profiler(trt) -> tensorrt.IProfiler:
    """An IProfiler that sums each layer's reported ms and counts its reports."""

    class Profiler(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)
            self.ms: dict[str, float] = defaultdict(float)
            self.reports: dict[str, int] = defaultdict(int)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.ms[layer_name] += ms
            self.reports[layer_name] += 1

    return Profiler()


def time_layers(trt, runner, x, runs: int) -> tuple[dict[str, float], dict[str, int]]:
    """ms per layer summed over ``runs`` runs of the entered ``runner`` after a warm-up, and each layer's
    number of reports (see the module docstring)."""
    context: tensorrt.IExecutionContext = runner.context
    for _ in range(WARMUP_RUNS):
        runner.infer(x)
    runner.synchronize()
    recorder = make_profiler(trt)
    context.enqueue_emits_profile = False
    context.profiler = recorder
    try:
        for _ in range(runs):
            runner.infer(x)
            runner.synchronize()
            if not context.report_to_profiler():
                raise PerfkitError(f"TensorRT could not report layer times for {runner.artifact.path}")
    finally:
        context.profiler = None
        context.enqueue_emits_profile = True
    return dict(recorder.ms), dict(recorder.reports)


def layer_information(trt, engine: tensorrt.ICudaEngine) -> dict[str, dict]:
    """Layer name → what the engine inspector says of it (``{"Name": …}`` alone for an engine built
    without DETAILED profiling verbosity, which lists names only)."""
    inspector = engine.create_engine_inspector()
    if inspector is None:
        return {}
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    listed = json.loads(text).get("Layers", []) if text else []
    out = {}
    for layer in listed:
        entry = layer if isinstance(layer, dict) else {"Name": str(layer)}
        out[str(entry.get("Name"))] = entry
    return out

