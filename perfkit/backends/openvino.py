"""OpenVINO: the ONNX artifact converted to OpenVINO IR (``model.xml`` + ``model.bin``), run by the CPU plugin.

Export: perfkit's own ONNX artifact at the requested precision (exported first if not cached),
converted with ``ov.convert_model`` and written with ``ov.save_model``. Converting the ONNX file
rather than the ``nn.Module`` reuses the export perfkit does anyway (2–7 s instead of 9–45 s for
the default models on a 2-core CPU, bit-identical logits, and no deprecated ``torch.jit.trace``
path), keeps the ONNX graph's I/O names (``input``/``logits``, or an ONNX file's own), and makes the
int8 artifact "the ONNX backend's
QDQ int8 graph, converted": OpenVINO runs QDQ ONNX natively (u8 kernels on the CPU). Details that
change numbers:

- ``ov.save_model`` compresses weights to fp16 by default (inception_v3's logits moved by 0.32);
  perfkit passes ``compress_to_fp16=False`` and refuses an fp32 IR holding fp16 constants.
- ``convert_model`` sends usage telemetry unless the user opted out; perfkit declines it for its
  own calls (see ``telemetry_declined``) without touching the user's consent file.

An OpenVINO IR someone built (``ModelSpec.form == "openvino-ir"``) is not converted: its artifact is
the ``.xml`` and ``.bin`` themselves, copied byte for byte, run as they were built.

Runner (CPU plugin; ``--ov-device GPU`` for an Intel GPU where OpenVINO's GPU plugin finds one):
the IR is reshaped to a static batch and compiled once per batch size (as benchmark_app's
``-shape`` does; a dynamic batch cost ~7% at batch 1 and ~10% when shapes alternate), with the
LATENCY hint for SingleStream and the inference precision pinned to f32 (OpenVINO picks bf16 by
itself on CPUs that have it, and f16 on GPUs). Streams, threads and pinning are left to the hint and
read back from the compiled model into the recorded configuration. Inputs are shared with the
torch tensor (no copy); outputs are copied out of the request.

Offline scenario: an ``AsyncInferQueue`` of k requests over a model compiled with the THROUGHPUT
hint planned for k requests (``PERFORMANCE_HINT_NUM_REQUESTS``), inputs bound once per request, as
benchmark_app does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch

from perfkit.artifacts import ensure_artifact
from perfkit.deps import import_module
from perfkit.backends.base import (
    ONNX_FILE, OPENVINO_IR, PYTORCH, QUEUE, RUN, ArtifactRunner, Backend, OfflineSession, Option,
)
from perfkit.backends.onnxruntime import BACKEND as ONNX
from perfkit.deps import require
from perfkit.errors import ArtifactError, PerfkitError
from perfkit.vocab import Precision

MAIN_FILE = "model.xml"  # its weights are model.bin beside it; both are in the manifest and hashed
TELEMETRY_ENV = "PERFKIT_OPENVINO_TELEMETRY"  # "1": leave OpenVINO's telemetry to its own settings
# Inference precision pinned per artifact precision: int8 = the quantized ops in int8, the rest in
# f32 (never an automatic bf16/f16); bf16 = the f32 IR run with OpenVINO's bf16 inference precision
# (its CPU plugin runs bf16 on AVX512-BF16 and AMX; elsewhere it would silently keep f32, which the
# runner refuses).
INFERENCE_PRECISION = {Precision.FP32: "f32", Precision.BF16: "bf16", Precision.INT8: "f32"}
QUANTIZED_OPS = ("FakeQuantize", "FakeConvert")


def _openvino():
    """OpenVINO's module; where it is not a core dependency (no PyPI wheel there), its extra says how."""
    return require("openvino", extra="openvino", why="the openvino backend")


@contextlib.contextmanager
def telemetry_declined() -> Iterator[str]:
    """Decline OpenVINO's usage telemetry for the ``convert_model`` calls inside this block.

    openvino-telemetry sends events from ``convert_model`` (and ``ovc``) unless a consent file says
    no (``opt_in_out --opt_out``, a per-user setting perfkit does not touch) or the process runs in
    CI, which it detects by ``CI=true``. perfkit sets that variable for the duration of its own call
    and restores it; it also spares the converter's network attempts (about 1 s a call offline).
    The decision is taken once per process, when OpenVINO first initialises its telemetry.
    Setting ``PERFKIT_OPENVINO_TELEMETRY=1`` leaves the decision to OpenVINO's own settings.
    """
    if os.environ.get(TELEMETRY_ENV) == "1":
        yield "left to OpenVINO's settings ($PERFKIT_OPENVINO_TELEMETRY=1)"
        return
    old = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield "declined for perfkit's convert_model call (CI=true during the call)"
    finally:
        if old is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = old


def ir_summary(xml_path: Path) -> dict:
    """What the saved IR holds: constants by element type and quantized operations, read from the XML."""
    constants: Counter = Counter()
    ops: Counter = Counter()
    for _, layer in ET.iterparse(xml_path):
        if layer.tag != "layer":
            continue
        ops[layer.get("type")] += 1
        if layer.get("type") == "Const":
            data = layer.find("data")
            constants[data.get("element_type") if data is not None else "?"] += 1
        layer.clear()
    return {"constant_types": dict(sorted(constants.items())),
            "quantized_ops": sum(ops[o] for o in QUANTIZED_OPS), "layers": sum(ops.values())}


def export(req) -> str:
    from perfkit.backends import get

    if req.spec.form == OPENVINO_IR:  # an IR someone built: the files themselves (perfkit.zoo.sources.engines)
        from perfkit.zoo.sources.engines import copy_engine

        return copy_engine(req, MAIN_FILE)
    ov = _openvino()
    # bf16 is an inference precision of the f32 IR (the runner's hint), converted from the fp32 ONNX artifact
    onnx_precision = Precision.FP32 if req.precision is Precision.BF16 else req.precision
    source = ensure_artifact(req.spec, get("onnx"), req.ctx.replace(force=False), precision=onnx_precision,
                             batch=req.batch)  # an ONNX file the user gave: its copy, converted as it is
    req.keep_names(source)
    with telemetry_declined() as telemetry:
        model = ov.convert_model(str(source.path))
    path = req.out_dir / MAIN_FILE
    ov.save_model(model, str(path), compress_to_fp16=False)  # the default would round weights to fp16
    ir = ir_summary(path)
    if req.precision is not Precision.INT8 and set(ir["constant_types"]) & {"f16", "bf16"}:
        raise ArtifactError(f"{path}: the f32 IR holds reduced-precision constants {ir['constant_types']}")
    if req.precision is Precision.INT8 and not ir["quantized_ops"]:
        raise ArtifactError(f"{path}: the int8 IR converted from {source.path} has no quantized operations: "
                            "its ONNX source is not a QDQ graph")
    req.info["openvino"] = {
        "openvino_version": ov.get_version(), "converter": "openvino.convert_model (ONNX frontend)",
        "compress_to_fp16": False, **ir, "telemetry": telemetry,
        "source_onnx": {"path": str(source.path), "sha256": source.sha256, "precision": str(source.precision)},
    }
    return MAIN_FILE


@functools.cache
def _plugin_problem() -> str | None:
    try:
        ov = import_module("openvino")  # a Ctrl-C during it stays one (perfkit.deps)
        devices = ov.Core().available_devices
    except Exception as exc:  # a broken install is "unavailable", with the reason
        return f"openvino is installed but cannot start: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None if "CPU" in devices else f"openvino's CPU plugin is not available here (devices: {devices})"


def _probe(device: str) -> str | None:
    return _plugin_problem()


def compiled_config(compiled) -> dict:
    """The configuration a compiled model reports (what the hint decided), as raw values."""
    supported = compiled.get_property("SUPPORTED_PROPERTIES")
    read = {
        "performance_hint": "PERFORMANCE_HINT", "inference_precision": "INFERENCE_PRECISION_HINT",
        "num_streams": "NUM_STREAMS", "inference_num_threads": "INFERENCE_NUM_THREADS",
        "optimal_infer_requests": "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "hint_num_requests": "PERFORMANCE_HINT_NUM_REQUESTS",
        "cpu_pinning": "ENABLE_CPU_PINNING", "hyper_threading": "ENABLE_HYPER_THREADING",
        "execution_mode": "EXECUTION_MODE_HINT", "execution_devices": "EXECUTION_DEVICES",
    }
    out = {}
    for key, name in read.items():
        if name not in supported:
            continue
        value = compiled.get_property(name)
        if hasattr(value, "to_string"):  # ov.Type
            value = value.to_string()
        elif not isinstance(value, (bool, int, float, str, list)):
            value = str(value).split(".")[-1]  # enums: ExecutionMode.PERFORMANCE -> PERFORMANCE
        out[key] = value
    if isinstance(out.get("hint_num_requests"), str) and out["hint_num_requests"].isdigit():
        out["hint_num_requests"] = int(out["hint_num_requests"])
    return out


class OpenVINORunner(ArtifactRunner):
    name = "openvino"
    offline_mechanism = QUEUE

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        self._compiled: dict[int, tuple] = {}  # batch -> (compiled model, its infer request)
        self._last_batch: int | None = None

    @property
    def ov_device(self) -> str:
        return str(self.options.get("ov_device") or "CPU").upper()

    def _load(self) -> None:
        ov = _openvino()
        core = ov.Core()
        if self.ov_device not in core.available_devices:
            raise PerfkitError(f"openvino: device {self.ov_device} is not available here (OpenVINO sees "
                               f"{', '.join(core.available_devices) or 'none'}); use --ov-device CPU")
        self.core = core
        self.model = core.read_model(str(self.artifact.path))

    def properties(self, hint: str, requests: int | None = None) -> dict:
        """Compile properties: the hint, the pinned precision, threads when --threads was given."""
        out = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[self.precision]}
        if requests:
            out["PERFORMANCE_HINT_NUM_REQUESTS"] = str(requests)
        if self.threads:
            out["INFERENCE_NUM_THREADS"] = str(self.threads)
        return out

    def compile(self, batch: int, properties: dict):
        """The model reshaped to a static ``batch`` and compiled with ``properties``; a pinned inference
        precision the plugin did not take (bf16 on a CPU without bf16 arithmetic) is refused."""
        model = self.model.clone()
        model.reshape({model.inputs[0]: [batch, *self.spec.input_size]})
        compiled = self.core.compile_model(model, self.ov_device, properties)
        asked = properties.get("INFERENCE_PRECISION_HINT")
        got = compiled.get_property("INFERENCE_PRECISION_HINT")
        got = got.to_string() if hasattr(got, "to_string") else str(got)
        if asked and got != asked:
            raise PerfkitError(f"openvino on {self.ov_device} runs {got}, not the {asked} asked for "
                               f"({self.precision} needs a CPU with bf16 arithmetic: AVX512-BF16 or AMX)")
        return compiled

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        batch = int(x.shape[0])
        if batch not in self._compiled:
            compiled = self.compile(batch, self.properties("LATENCY"))
            self._compiled[batch] = (compiled, compiled.create_infer_request())
        self._last_batch = batch
        # One sharing mode per request, always: a request that once shared a caller's array and
        # then copies would copy into that array.
        out = self._compiled[batch][1].infer({0: x.contiguous().numpy()}, share_inputs=True)
        return torch.from_numpy(out[0])

    def _release(self) -> None:
        self._compiled.clear()
        self.model = self.core = None

    def config(self) -> dict:
        entry = self._compiled.get(self._last_batch)
        reported = compiled_config(entry[0]) if entry else {
            "performance_hint": "LATENCY", "inference_precision": INFERENCE_PRECISION[self.precision]}
        return {"ov_device": self.ov_device, "static_batch": self._last_batch, **reported, "inputs": "shared"}

    def offline_session(self, k: int, x: torch.Tensor, cores: int) -> OfflineSession:
        """An AsyncInferQueue of k requests, THROUGHPUT hint planned for k (see the module docstring).

        ``cores`` is not passed on: the hint plans streams and threads over the cores it sees
        (``--threads`` still caps them).
        """
        ov = _openvino()
        batch = int(x.shape[0])
        compiled = self.compile(batch, self.properties("THROUGHPUT", requests=k))
        queue = ov.AsyncInferQueue(compiled, k)
        inputs = [x.clone().contiguous() for _ in range(k)]
        for i, xi in enumerate(inputs):  # bound once: the loop only starts requests
            queue[i].set_input_tensor(ov.Tensor(xi.numpy(), shared_memory=True))
        reported = compiled_config(compiled)
        streams, threads = reported.get("num_streams"), reported.get("inference_num_threads")
        per_stream = threads // streams if isinstance(streams, int) and streams and isinstance(threads, int) else None
        how = (f"AsyncInferQueue of {k} request(s), THROUGHPUT hint planned for {k}: {streams} stream(s) × "
               f"{per_stream} thread(s)")
        held = [compiled, queue, inputs]
        return OfflineSession(k, per_stream, how,
                              {"ov_device": self.ov_device, "static_batch": batch, **reported, "requests": k,
                               "inputs": "bound once per request"},
                              submit=queue.start_async, wait_all=queue.wait_all, close=held.clear)


BACKEND = Backend(
    name="openvino",
    summary="OpenVINO IR converted from the ONNX artifact, on the CPU plugin (LATENCY hint, inference precision pinned)",
    runner=OpenVINORunner,
    export=export,
    # Everything that keys the ONNX artifact keys its conversion too (its options and exporters).
    options=(*ONNX.options,
             Option("ov_device", "CPU", "openvino: OpenVINO device plugin (CPU; GPU = an Intel GPU through OpenVINO's "
                                        "GPU plugin, where one is present)", stage=RUN, type=str)),
    # int8: the IR converted from ONNX Runtime's QDQ artifact (its calibration keys this cache too);
    # bf16: the f32 IR at OpenVINO's bf16 inference precision
    precisions={"cpu": frozenset({Precision.FP32, Precision.BF16, Precision.INT8})},
    extra="openvino",
    requires=("openvino",),
    probe=_probe,
    cache_libraries=(*ONNX.cache_libraries, "openvino"),
    quant_libraries=ONNX.quant_libraries,
    # `perfkit run` measures bf16 and int8 where the CPU accelerates them (perfkit.env.accelerated)
    run_precisions=frozenset({Precision.FP32, Precision.BF16, Precision.INT8}),
    runtime_libraries=("openvino",),
    starts_from=frozenset({PYTORCH, ONNX_FILE, OPENVINO_IR}),
    layer_profiler="perfkit.profiler.layers.openvino",
)
