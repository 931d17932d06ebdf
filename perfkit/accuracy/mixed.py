"""int8 that meets the accuracy gate: the fewest layers left in float (``perfkit validate --min-relative``).

When full int8 misses ``--min-relative R`` on the validation images, the search below finds the
fewest quantized layers to leave in float so that the int8 artifact meets it, and returns what it
tried. The set is the ``float_layers`` export option (``perfkit.backends.base.FLOAT_LAYERS``): ONNX
Runtime's ``nodes_to_exclude``, which the OpenVINO int8 IR (converted from that QDQ graph) and the
TensorRT int8 engine (built from its ``tensorrt`` style) carry as they are; it keys their caches.
AOTInductor's int8 (torchao PT2E) does not take it.

1. **Sensitivity**: one layer quantized at a time. Each weighted layer (Conv, Gemm, MatMul of the
   graph ONNX Runtime quantizes, with the activations and residual Add its output runs through:
   ``layer_units``) is quantized alone — the rest of the graph float — and its error is
   the relative squared error of the logits against fp32 (``Σ(q − f)² / Σf²``) on the first
   ``SENSITIVITY_IMAGES`` calibration images. Why not one layer *left float* at a time: in a fully
   quantized graph every other layer's error is still there, so removing one changes the output by
   little compared with the rest (and with the calibration sample's noise), and near-equal scores do
   not rank; quantized alone, each layer's own error is measured without the others', and small
   quantization errors add up close to linearly, so that ranking predicts which set to leave float.
   The activation ranges are calibrated once on the whole calibration set (ONNX Runtime's
   ``calibration_cache_path``) and reused by every per-layer graph, so they match the artifact's.
2. **Search**: the k most sensitive layers left float, k = 1, 2, 4, … (doubling) until the gate holds,
   then bisecting between the last k that missed and the first that met: about 2·log2(layers) int8
   exports and evaluations. Bounded at half the layers: a model that misses the gate with half its
   layers in float is reported as such, with every trial, and the best set found is kept. Bisecting
   assumes accuracy rises with k; on a few hundred images it need not (EfficientNet-Lite1, 100
   images: 4 layers float 94 agree, 16 layers 92, 32 layers 96), so the k found is the fewest the
   search saw meet the gate, not a proof that no smaller set does; the table shows every trial.
3. Each trial is a real int8 artifact (cached under its own key) run by ONNX Runtime on the CPU over
   the validation images (at most ``SEARCH_IMAGES``, center crop); the validation pass that follows
   judges the chosen artifact on every image with the gate itself.

Cost: one fp32 and one int8 pass over the search images; when full int8 misses, one fp32 pass over
all, then (layers × ``SENSITIVITY_IMAGES``) inferences plus one quantization per layer, and about
2·log2(layers) int8 exports with a pass over the search images each.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from perfkit.vocab import BatchRange, Precision

SENSITIVITY_IMAGES = 32  # calibration images each layer's error is measured on (layers × this inferences)
SEARCH_IMAGES = 500  # validation images each trial is evaluated on, held in memory (the validation pass uses all)
LAYER_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})  # the weighted layers, ranked and left float
# What a layer's output goes through before the next layer, left float with it: in a QDQ graph every
# quantized node quantizes all its inputs and outputs, so a convolution left float alone would still
# hand a quantized tensor to (and take one from) its activation or residual Add, and gain next to nothing.
FOLLOWERS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Add"})
SEARCH_RUNTIMES = frozenset({"onnx", "openvino", "tensorrt"})  # whose int8 is the QDQ ONNX graph (float_layers)


@dataclass(frozen=True)
class Layer:
    """One quantizable layer: its weighted ONNX node, op, module path (None when the graph does not say),
    its error quantized alone (relative squared error of the logits) and every node it leaves float
    (the weighted one, then the activations and residual Add its output runs through: ``FOLLOWERS``)."""

    node: str
    op: str
    module: str | None
    error: float
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trial:
    """One candidate evaluated on the search images: how many of the most sensitive layers were left float
    and the ONNX nodes that makes (``None``: every layer, the fp32 graph), its top-1 count, top-1 relative
    to the reference's and whether it meets the gate."""

    layers: int | None
    float_layers: tuple[str, ...] | None
    top1_correct: int
    relative: float | None
    meets: bool


@dataclass
class MixedSearch:
    """What the search did for one model: the gate, the images it judged on, the ranked layers (empty
    when full int8 met the gate or no set could), every trial in order, the chosen one (the fewest
    layers meeting the gate, else the best found), latency of full int8 and of the chosen set."""

    gate: float
    images: int
    reference_correct: int
    layers_total: int
    layers: list[Layer] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    chosen: Trial | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""

    @property
    def met(self) -> bool:
        return self.chosen is not None and self.chosen.meets

    @property
    def float_layers(self) -> tuple[str, ...]:
        return self.chosen.float_layers or () if self.chosen else ()

    @property
    def float_modules(self) -> list[str]:
        """The layers left float by module path where the graph says (else the ONNX node's name)."""
        return self.modules(self.chosen.layers or 0 if self.chosen else 0)

    def modules(self, k: int) -> list[str]:
        """The ``k`` most sensitive layers by module path where the graph says (else the ONNX node's name)."""
        return [layer.module or layer.node for layer in self.layers[:k]]

    def unit_nodes(self, k: int) -> tuple[str, ...]:
        """The ONNX nodes left float with the ``k`` most sensitive layers."""
        return tuple(n for layer in self.layers[:k] for n in (layer.nodes or (layer.node,)))


def fewest(meets: Callable[[int], bool], limit: int) -> int | None:
    """The smallest k in 1..``limit`` with ``meets(k)`` (``meets`` rising with k; k = 0 known to miss):
    doubling, then bisecting between the last miss and the first hit. None when ``limit`` misses."""
    miss, k = 0, 1
    while True:
        k = min(k, limit)
        if meets(k):
            break
        if k >= limit:
            return None
        miss, k = k, k * 2
    hit = k
    while hit - miss > 1:
        mid = (hit + miss) // 2
        if meets(mid):
            hit = mid
        else:
            miss = mid
    return hit


def search(spec, ctx, images: torch.Tensor, labels: torch.Tensor, gate: float, batch: BatchRange,
           progress=None) -> MixedSearch:
    """The fewest layers of ``spec`` to leave float for its int8 ONNX artifact to meet ``gate`` × the
    reference's top-1 on ``images`` (preprocessed) with ``labels`` (see the module docstring).
    ``ctx``: the measuring context (its calibration set, its artifacts); trials run on the CPU."""
    start = time.perf_counter()
    ctx = ctx.replace(device="cpu")
    step = batch.max
    with _open(spec, spec.reference_runtime, ctx, Precision.FP32, batch) as reference:
        ref_correct = _correct(reference, images, labels, step)
    done = MixedSearch(gate=gate, images=len(labels), reference_correct=ref_correct, layers_total=0)
    tried: dict[int, Trial] = {}

    def trial(k: int | None) -> Trial:
        floats = None if k is None else done.unit_nodes(k)
        precision = Precision.FP32 if floats is None else Precision.INT8
        options = {**ctx.options, "float_layers": floats or ()}
        with _open(spec, "onnx", ctx.replace(options=options), precision, batch) as runner:
            correct = _correct(runner, images, labels, step)
        made = Trial(k, floats, correct, correct / ref_correct if ref_correct else None, correct >= gate * ref_correct)
        done.trials.append(made)
        return made

    _say(progress, f"int8 gate {gate}: full int8")
    if not trial(0).meets and _reachable(trial, done):
        _say(progress, "int8 gate: each layer's sensitivity")
        done.layers = sensitivity(spec, ctx, batch)
        done.layers_total = len(done.layers)

        def meets(k: int) -> bool:
            if k not in tried:
                _say(progress, f"int8 gate: {k} layer(s) float")
                tried[k] = trial(k)
            return tried[k].meets

        found = fewest(meets, max(1, len(done.layers) // 2)) if done.layers else None
        done.note = (f"{found} of {len(done.layers)} layers left float" if found else
                     f"misses the gate even with {max(1, len(done.layers) // 2)} of {len(done.layers)} layers "
                     "(half) left float")
    done.chosen = _best(done.trials)
    if done.chosen.float_layers:
        done.latency_ms = _latency(spec, ctx, batch, done.chosen.float_layers)
    done.seconds = time.perf_counter() - start
    return done


def _reachable(trial, done: MixedSearch) -> bool:
    """Whether leaving layers float can meet the gate at all: the fp32 graph (every layer float) must."""
    if trial(None).meets:
        return True
    done.note = "even the fp32 ONNX graph (every layer float) misses the gate: no float set can meet it"
    return False


def _best(trials: list[Trial]) -> Trial:
    """The int8 trial with the fewest float layers that meets the gate, else the most accurate int8 one
    (fewest float layers among equals): what the validation pass then runs."""
    int8 = [t for t in trials if t.float_layers is not None]
    meeting = [t for t in int8 if t.meets]
    if meeting:
        return min(meeting, key=lambda t: t.layers)
    return max(int8, key=lambda t: (t.top1_correct, -t.layers))


def _say(progress, text: str) -> None:
    if progress is not None:
        progress.update(text)


def _open(spec, backend: str, ctx, precision: Precision, batch: BatchRange):
    from perfkit.backends import open_runner

    return open_runner(spec, backend, ctx, precision=precision, batch=batch)


def _correct(runner, images: torch.Tensor, labels: torch.Tensor, step: int) -> int:
    return sum(int((runner.infer(images[i:i + step]).argmax(1) == labels[i:i + step]).sum())
               for i in range(0, len(labels), step))


def _latency(spec, ctx, batch: BatchRange, floats: tuple[str, ...]) -> dict[str, float]:
    """Median batch-1 latency (ms) of full int8 and of the chosen mixed artifact: a quick measure of
    what leaving the layers float costs (``perfkit profile`` measures it properly)."""
    import warnings

    from perfkit.profiler.timing import NoisyTimingWarning, TimingConfig, time_runner

    quick = TimingConfig(warmup=5, warmup_seconds=0.2, iterations=30, min_seconds=0.5)
    x = spec.example_input(1)
    out = {}
    for name, layers in (("full_int8", ()), ("mixed", floats)):
        with _open(spec, "onnx", ctx.replace(options={**ctx.options, "float_layers": layers}), Precision.INT8,
                   batch) as runner, warnings.catch_warnings():
            warnings.simplefilter("ignore", NoisyTimingWarning)  # a quick indication, labelled so; not a profile
            out[name] = time_runner(runner, x, quick, label=f"int8 {name}").compute.median_ms
    return out


# -- sensitivity: one layer quantized at a time ----------------------------------------------------

def sensitivity(spec, ctx, batch: BatchRange) -> list[Layer]:
    """Every weighted layer of the ONNX graph ONNX Runtime quantizes, most sensitive first (see the
    module docstring: one layer quantized at a time, on the first ``SENSITIVITY_IMAGES`` calibration
    images, the activation ranges calibrated once on the whole calibration set)."""
    from perfkit.artifacts import ensure_artifact
    from perfkit.backends import get
    from perfkit.backends.onnxruntime import BACKEND, CalibrationReader, prepare_for_quantization
    from perfkit.deps import require

    onnx = require("onnx")
    source = ensure_artifact(spec, get("onnx"), ctx, precision=Precision.FP32, batch=batch)
    calibration = BACKEND.export_options(ctx.options, Precision.INT8)
    x = calibration["calibration"].tensors(spec.preprocess)
    batches = [x[i:i + 8] for i in range(0, len(x) - len(x) % min(8, len(x)), min(8, len(x)))]
    sample = {source.manifest["inputs"][0]["name"]: x[:SENSITIVITY_IMAGES].numpy()}
    work = Path(tempfile.mkdtemp(prefix="perfkit-sensitivity-"))
    try:
        pre = prepare_for_quantization(source.path, work / "fp32")
        graph = onnx.load(str(pre), load_external_data=False).graph
        units = layer_units(graph)
        fp32 = _run(pre, sample)
        quantize = _quantizer(pre, work, CalibrationReader(batches, next(iter(sample))), calibration)
        layers = [Layer(n.name, n.op_type, module_of(n), _error(_run(quantize(unit), sample), fp32), unit)
                  for n, unit in units]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sorted(layers, key=lambda layer: -layer.error)


def _error(out, fp32) -> float:
    """Relative squared error of the logits ``out`` against ``fp32``."""
    import numpy as np

    return float(np.sum((out - fp32) ** 2) / max(np.sum(fp32 ** 2), 1e-30))


def layer_units(graph) -> list[tuple[object, tuple[str, ...]]]:
    """Each weighted node of ``graph`` with the nodes it is left float with: itself, then the chain of
    ``FOLLOWERS`` its output runs through while each is the only consumer (stopping after an Add)."""
    consumers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    units = []
    for n in (n for n in graph.node if n.op_type in LAYER_OPS):
        unit, tail = [n.name], n
        while tail.op_type != "Add" and len(next_ := consumers.get(tail.output[0], [])) == 1 \
                and next_[0].op_type in FOLLOWERS:
            tail = next_[0]
            unit.append(tail.name)
        units.append((n, tuple(unit)))
    return units


def _quantizer(pre: Path, work: Path, reader, options: dict) -> Callable[[str], Path]:
    """A function quantizing only the nodes it is given (into ``work``), with the ranges of one calibration."""
    from perfkit.backends.onnxruntime import qdq_settings
    from perfkit.deps import require

    quantization = require("onnxruntime.quantization")
    settings = qdq_settings(quantization, options["qdq_style"], options["calibration"].method, len(reader))
    cache = work / "ranges.json"

    def quantize(nodes: tuple[str, ...]) -> Path:
        out = work / "one.onnx"
        quantization.quantize_static(str(pre), str(out), reader, quant_format=quantization.QuantFormat.QDQ,
                                     nodes_to_quantize=list(nodes), calibration_cache_path=str(cache),
                                     use_external_data_format=True, **settings)
        return out

    return quantize


def _run(path: Path, feed: dict):
    from perfkit.deps import require

    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0].astype("float64")


def module_of(node) -> str | None:
    """The module a weighted node came from: the owner of its weight where the exporter named the initializer
    after the parameter (``blocks.0.0.conv_dw.weight`` → ``blocks.0.0.conv_dw``; a batch norm the exporter
    folded into the convolution leaves its own name scope on the node, not the convolution's), else the last
    module of the dynamo exporter's ``pkg.torch.onnx.name_scopes`` (``['', 'layer1', 'layer1.0',
    'layer1.0.conv1', 'conv2d']`` → ``layer1.0.conv1``), None without either."""
    import ast

    if len(node.input) > 1 and node.input[1].endswith(".weight"):
        return node.input[1].removesuffix(".weight")
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [s for s in ast.literal_eval(prop.value) if s]
            return scopes[-2] if len(scopes) >= 2 else None
    return None
