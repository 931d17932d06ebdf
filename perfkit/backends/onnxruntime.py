"""ONNX through the dynamo exporter, run by ONNX Runtime (CPU provider, or CUDA with I/O binding).

Export: ``torch.onnx.export(..., dynamo=True)`` with a symbolic batch dimension; weights go to an
external data file beside the graph (``model.onnx.data``), so the 2 GB protobuf limit never bites
and the artifact's hash covers both files. fp16 gives an fp16 graph with float32 input and output,
the form a strongly typed TensorRT network builds from.

An ONNX file the user gave (``ModelSpec.form == "onnx"``) is not exported: its fp32 artifact is the
file itself, copied byte for byte with its external data (the manifest hashes it, the cache stays
tamper-checked, keyed by the file's content); fp16 converts that copy (ONNX Runtime's float16
converter, float32 I/O kept) and int8 quantizes it as below. Its input and output keep the graph's
names, which every runner reads from the manifest.

Runner, tuned as ONNX Runtime's performance docs recommend: full graph optimisation
(ORT_ENABLE_ALL), sequential execution, intra-op threads = the cores this process may use, one
inter-op thread. onnxruntime silently falls back to the CPU when a provider cannot start, so the
runner checks that the provider it asked for is the one the session has.

int8 (static post-training quantization with ONNX Runtime's own tools, ``quantize_static``): the
fp32 ONNX artifact (cached, shared with fp32 runs) goes through ``quant_pre_process`` (symbolic shape
inference) and is calibrated on the calibration set (``perfkit.data.calibration``; minmax, entropy or
percentile, fed in equal batches), giving a QDQ graph — QuantizeLinear/DequantizeLinear pairs around
float ops, which ONNX Runtime fuses into integer kernels. Two QDQ styles (``--qdq-style``):

- ``x86`` (the default on x86 CPUs): uint8 activations (asymmetric), int8
  per-channel weights with ``reduce_range`` (7-bit). Why each: ONNX Runtime fuses int8 activations
  into integer kernels only on ARM (on x86 s8s8 runs DQ → fp32 → Q, slower than fp32); per-tensor
  weights wreck depthwise convolutions (EfficientNet/MobileNet); and without VNNI, MLAS's AVX2
  u8×s8 kernel adds pairs of products in int16 with saturation, which 8-bit weights overflow
  (EfficientNet-Lite1: top-1 agreement with fp32 42/54 instead of 48/54) — 7-bit weights cannot, on
  any CPU, at the same speed (ONNX Runtime's own advice for non-VNNI x86).
- ``arm`` (the default on ARM CPUs): int8 activations and per-channel int8 weights, full range, the
  form ONNX Runtime runs in integer kernels there (its quantization docs: S8S8 on ARM64). Chosen
  from ``platform.machine()``; not run on ARM hardware by this project (none at hand).
- ``tensorrt``: symmetric int8 activations and weights (zero point 0, per-channel weights, full
  range), the only Q/DQ form TensorRT's explicit quantization accepts. The TensorRT backend builds
  its int8 engine from this artifact; ONNX Runtime runs it too, slowly on x86.

Every op in ONNX Runtime's QDQ registry is quantized (Conv, Gemm/MatMul, Add, pooling, ...); ops
outside it (ReduceMean for global pooling, Softmax) stay float, which is what the registry is for.
The nodes named by the ``float_layers`` export option stay float too (``nodes_to_exclude``): the set
``perfkit validate --min-relative`` chooses when full int8 misses its gate (``perfkit.accuracy.mixed``);
it keys the artifact, and the OpenVINO IR and TensorRT engine converted from this graph carry it.

Offline scenario (``offline_session``): k sessions, one per Python thread (``run`` releases the GIL),
each with cores // k intra-op threads, as ONNX Runtime's thread-management docs advise for
concurrent sessions; with k > 1 the intra-op threads do not spin while waiting for work
(``session.intra_op.allow_spinning = 0``), since spinning burns the cores the other sessions need.

On CUDA the session runs on a stream of its own (``user_compute_stream``) that first waits for
torch's current stream: the input is produced by torch kernels (normalisation, a non-blocking copy)
that ONNX Runtime's streams would otherwise not wait for. ``Run`` synchronises its stream before
returning, so the output is complete when ``infer`` returns.
"""

from __future__ import annotations

import torch

from perfkit.artifacts import INPUT_NAME, OUTPUT_NAME
from perfkit.backends.base import (
    CALIBRATION, EXPORT, FLOAT_LAYERS, INT8_ONLY, ONNX_FILE, PYTORCH, ArtifactRunner, Backend, OfflineSession, Option,
)
from perfkit.deps import require
from perfkit.device import available_cores as machine_cores
from perfkit.errors import ArtifactError, PerfkitError, UsageError
from perfkit.vocab import Precision

MAIN_FILE = "model.onnx"
BATCH_DIM = "batch"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


QDQ_STYLES = ("x86", "arm", "tensorrt")


def machine_qdq_style(machine: str | None = None) -> str:
    """The default QDQ style for this CPU: ``arm`` on ARM (aarch64, arm64), where ONNX Runtime runs
    int8 activations in integer kernels, else ``x86``."""
    import platform

    return "arm" if (machine or platform.machine()).lower() in ("aarch64", "arm64", "armv8l") else "x86"


def export(req) -> str:
    if req.precision is Precision.INT8:
        return export_int8(req)
    if req.spec.form == ONNX_FILE:
        return export_file(req)
    onnx = require("onnx")
    require("onnxscript")
    model = req.model()
    x = req.example_input()
    dynamic_shapes = ({0: torch.export.Dim(BATCH_DIM, min=req.batch.min, max=req.batch.max)},) if req.dynamic else None
    path = req.out_dir / MAIN_FILE
    torch.onnx.export(
        model, (x,), str(path), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic_shapes, opset_version=req.options["opset"], external_data=True, verbose=False,
    )
    # The checker takes the path so that external data and >2 GB models are handled.
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path), load_external_data=False)
    batch_dim = input_batch_dim(graph)
    if req.dynamic and not batch_dim:
        raise ArtifactError(f"{path}: the exporter fixed the input's batch dimension; a dynamic batch was asked for "
                            f"({req.batch.min}..{req.batch.max})")
    req.info["onnx"] = graph_info(graph, req.out_dir)
    return MAIN_FILE


def export_file(req) -> str:
    """An ONNX file the user gave: at fp32 the file itself, copied byte for byte (with its external
    data) after checking it is the file the model was resolved from; at fp16 that copy converted by
    ONNX Runtime's float16 converter, float32 input and output kept (the form perfkit's own fp16
    export has). Its input and output keep the graph's names."""
    onnx = require("onnx")
    from perfkit.zoo.sources.onnx import copy_into

    if req.options.get("opset") is not None:
        raise UsageError(f"--opset {req.options['opset']} sets the exporter's opset; {req.spec.arch} is an ONNX file "
                         "already and runs with its own")
    if req.precision is Precision.FP16:
        return export_file_fp16(req, onnx)
    io = copy_into(req.spec, req.out_dir, MAIN_FILE)
    req.input_name, req.output_name = io.input_name, io.output_name
    graph = onnx.load(str(req.out_dir / MAIN_FILE), load_external_data=False)
    req.info["onnx"] = {**graph_info(graph, req.out_dir), "source_file": {"path": req.spec.arch,
                                                                          "content": req.spec.content}}
    return MAIN_FILE


def export_file_fp16(req, onnx) -> str:
    from perfkit.artifacts import ensure_artifact

    require("onnxruntime")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = ensure_artifact(req.spec, BACKEND, req.ctx.replace(force=False), precision=Precision.FP32,
                             batch=req.batch)
    req.keep_names(source)
    half = convert_float_to_float16(onnx.load(str(source.path)), keep_io_types=True)
    # the converter appends the casts of the kept float32 I/O at the end of the node list: sorted again
    # (ONNX requires topological order; onnxscript's IR, the exporter's own, sorts it)
    ir = require("onnxscript").ir
    model = ir.from_proto(half)
    model.graph.sort()
    onnx.save(ir.to_proto(model), str(req.out_dir / MAIN_FILE), save_as_external_data=True,
              location=MAIN_FILE + ".data")
    onnx.checker.check_model(str(req.out_dir / MAIN_FILE))
    graph = onnx.load(str(req.out_dir / MAIN_FILE), load_external_data=False)
    req.info["onnx"] = {**graph_info(graph, req.out_dir),
                        "converter": "onnxruntime.transformers.float16.convert_float_to_float16 (keep_io_types)",
                        "source_onnx": {"path": str(source.path), "sha256": source.sha256}}
    return MAIN_FILE


def graph_info(graph, folder) -> dict:
    """What the manifest records about an ONNX graph written to ``folder``."""
    return {
        "opset": next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None),
        "ir_version": graph.ir_version,
        "input_batch_dim": input_batch_dim(graph) or None,
        "external_data": sorted(p.name for p in folder.iterdir() if p.name != MAIN_FILE),
    }


def export_int8(req) -> str:
    """A QDQ int8 graph from the fp32 artifact and the calibration set (see the module docstring); the
    nodes of ``float_layers`` (validate's mixed-precision search) are left in float."""
    import shutil
    from collections import Counter

    from perfkit.artifacts import ensure_artifact

    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    style = req.options["qdq_style"]
    if style not in QDQ_STYLES:
        raise UsageError(f"--qdq-style must be one of {', '.join(QDQ_STYLES)}, got '{style}'")
    calibration = req.calibration
    source = ensure_artifact(req.spec, BACKEND, req.ctx.replace(force=False), precision=Precision.FP32,
                             batch=req.batch)  # an ONNX file the user gave: its copy, quantized from the file itself
    req.keep_names(source)
    batches = req.calibration_batches()
    floats = sorted(req.options.get("float_layers") or ())
    # quant_pre_process writes a copy of the graph; it goes beside the artifact's private folder
    # (named so that a killed export's leftovers are cleaned up like the folder itself), never into it.
    work = req.out_dir.with_name(f"q-{req.out_dir.name}")
    try:
        pre = prepare_for_quantization(source.path, work)
        settings = qdq_settings(quantization, style, calibration.method, len(batches))
        missing = sorted(set(floats) - {n.name for n in onnx.load(str(pre), load_external_data=False).graph.node})
        if missing:
            raise ArtifactError(f"float_layers names nodes that {source.path} does not have: {', '.join(missing[:5])}")
        quantization.quantize_static(str(pre), str(req.out_dir / MAIN_FILE), CalibrationReader(batches, req.input_name),
                                     quant_format=quantization.QuantFormat.QDQ, use_external_data_format=True,
                                     nodes_to_exclude=floats, **settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for path in req.out_dir.iterdir():
        path.chmod(0o644)  # ONNX Runtime writes external data with mode 0600 (mkstemp)
    onnx.checker.check_model(str(req.out_dir / MAIN_FILE))
    graph = onnx.load(str(req.out_dir / MAIN_FILE), load_external_data=False)
    ops = Counter(node.op_type for node in graph.graph.node)
    if not ops.get("QuantizeLinear"):
        raise ArtifactError(f"ONNX Runtime's quantizer left {source.path} without a single QuantizeLinear: "
                            "nothing was quantized")
    req.info["onnx"] = graph_info(graph, req.out_dir)
    req.info["quantization"] = {
        "tool": "onnxruntime.quantization.quantize_static (QDQ)", "qdq_style": style,
        "calibration_batches": [len(batches), int(batches[0].shape[0])],
        **{k: getattr(v, "name", v) for k, v in settings.items()}, "float_layers": floats,
        "ops": dict(sorted(ops.items())), "source_onnx": {"path": str(source.path), "sha256": source.sha256},
    }
    return MAIN_FILE


def prepare_for_quantization(source, work):
    """``source`` (an fp32 ONNX file) through ``quant_pre_process`` (symbolic shape inference and ONNX
    Runtime's basic graph optimisations) into the fresh folder ``work``: the graph every int8 export and
    the mixed-precision search quantize, whose node names ``float_layers`` refers to."""
    import shutil

    from onnxruntime.quantization.shape_inference import quant_pre_process

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    pre = work / MAIN_FILE
    quant_pre_process(str(source), str(pre), save_as_external_data=True, all_tensors_to_one_file=True,
                      external_data_location=MAIN_FILE + ".data")
    return pre


def qdq_settings(quantization, style: str, method: str, chunks: int) -> dict:
    """``quantize_static`` keyword arguments of a QDQ style (see the module docstring)."""
    q = quantization.QuantType
    methods = {"minmax": quantization.CalibrationMethod.MinMax, "entropy": quantization.CalibrationMethod.Entropy,
               "percentile": quantization.CalibrationMethod.Percentile}
    extra: dict = {}
    if method != "minmax":
        # Histogram calibrators keep every intermediate output of every batch in memory until the end
        # (~20 MB per 224² resnet18 sample); striding merges them a few batches at a time. The stride
        # counts reader calls and must divide their number.
        extra["CalibStridedMinMax"] = max(d for d in range(1, min(4, chunks) + 1) if chunks % d == 0)
    if style == "tensorrt":
        extra.update(ActivationSymmetric=True, WeightSymmetric=True)
        return dict(activation_type=q.QInt8, weight_type=q.QInt8, per_channel=True, reduce_range=False,
                    calibrate_method=methods[str(method)], extra_options=extra)
    if style == "arm":  # s8 activations and weights: ONNX Runtime's integer kernels on ARM (full 8-bit range)
        return dict(activation_type=q.QInt8, weight_type=q.QInt8, per_channel=True, reduce_range=False,
                    calibrate_method=methods[str(method)], extra_options=extra)
    return dict(activation_type=q.QUInt8, weight_type=q.QInt8, per_channel=True, reduce_range=True,
                calibrate_method=methods[str(method)], extra_options=extra)


class CalibrationReader:
    """ONNX Runtime's calibration data reader protocol over equal batches: ``get_next`` feeds one
    batch per call, then None; ``set_range``/``__len__`` let strided calibration restart a slice."""

    def __init__(self, batches, input_name: str):
        self.batches = [b.numpy() for b in batches]
        self.input_name = input_name
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = iter(self.batches[start_index:end_index])

    def get_next(self):
        batch = next(self._next, None)
        return None if batch is None else {self.input_name: batch}


def input_batch_dim(graph) -> str:
    """The symbolic name of the first input's batch dimension ('' when it is a fixed number)."""
    dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_param if dim.HasField("dim_param") else ""


def cuda_mismatch(ort, torch_cuda: str | None = torch.version.cuda) -> str | None:
    """Why onnxruntime-gpu's CUDA provider cannot share torch's CUDA libraries, or None.

    The provider loads the CUDA/cuDNN major it was built for (PyPI's onnxruntime-gpu 1.23-1.26:
    CUDA 12, 1.27 and later: CUDA 13); with torch on another major it fails to load and onnxruntime
    falls back to the CPU.
    """
    built = getattr(getattr(getattr(ort, "capi", None), "build_and_package_info", None), "cuda_version", None)
    if not built or not torch_cuda or built.split(".")[0] == torch_cuda.split(".")[0]:
        return None
    fix = "pip install 'onnxruntime-gpu<1.27'" if torch_cuda.startswith("12.") else "pip install -U onnxruntime-gpu"
    return (f"onnxruntime-gpu {ort.__version__} is built for CUDA {built}, torch uses CUDA {torch_cuda}: "
            f"install the build for torch's CUDA major ({fix})")


class OnnxRuntimeRunner(ArtifactRunner):
    name = "onnx"

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        self.threads = self.threads or machine_cores()
        self.spinning: bool | None = None  # None: ONNX Runtime's default (intra-op threads spin)
        self.session = None
        self._binding = None
        self._stream = None

    @property
    def provider(self) -> str:
        return CUDA if self.device.type == "cuda" else CPU

    def session_options(self, ort):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        if self.spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        options.log_severity_level = 3  # errors only; warnings about node placement are expected
        return options

    def _providers(self) -> list:
        if self.provider == CPU:
            return [CPU]
        # TF32 pinned off like every other runtime; cuDNN searches convolution algorithms
        # exhaustively (ORT's default), as torch runtimes do with cudnn.benchmark while timing.
        self._stream = torch.cuda.Stream(self.device)
        return [(CUDA, {"device_id": self.device.index, "use_tf32": 0,
                        "user_compute_stream": str(self._stream.cuda_stream)})]

    def _load(self) -> None:
        ort = require("onnxruntime")
        if self.provider not in ort.get_available_providers():
            raise PerfkitError(f"onnxruntime has no {self.provider} here (available: "
                               f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu for CUDA")
        if self.provider == CUDA and not torch.cuda.is_available():  # the GPU wheel lists CUDA without a GPU
            raise PerfkitError(f"onnxruntime's {CUDA} needs a CUDA GPU, and torch sees none here; use --device cpu")
        session = ort.InferenceSession(str(self.artifact.path), self.session_options(ort), providers=self._providers())
        active = session.get_providers()
        if active[0] != self.provider:
            raise PerfkitError(f"onnxruntime fell back to {active[0]} instead of {self.provider} for "
                               f"{self.artifact.path} ({cuda_mismatch(ort) or 'CUDA/cuDNN libraries missing?'})")
        graph = (session.get_inputs()[0].name, session.get_outputs()[0].name)
        if graph != (self.input_name, self.output_name):
            raise ArtifactError(f"{self.artifact.path}: the graph's input and output are {graph}, its manifest says "
                                f"{(self.input_name, self.output_name)}; export again with --force")
        self.session = session
        if self.provider == CUDA:
            self._binding = session.io_binding()

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        if self.provider == CPU:
            return torch.from_numpy(self.session.run([self.output_name], {self.input_name: x.numpy()})[0])
        import numpy as np

        # ORT's stream waits for the torch work that produced x; x stays alive for that stream.
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        x.record_stream(self._stream)
        out = torch.empty((x.shape[0], self.spec.num_classes), dtype=torch.float32, device=self.device)
        b = self._binding
        b.bind_input(self.input_name, "cuda", self.device.index, np.float32, tuple(x.shape), x.data_ptr())
        b.bind_output(self.output_name, "cuda", self.device.index, np.float32, tuple(out.shape), out.data_ptr())
        self.session.run_with_iobinding(b)
        # Run synchronises the provider's stream before returning (ONNX Runtime's default); the wait
        # keeps `out` ordered for torch's stream should that default ever change.
        torch.cuda.current_stream(self.device).wait_stream(self._stream)
        return out

    def synchronize(self) -> None:
        super().synchronize()
        if self._stream is not None:
            self._stream.synchronize()

    def _release(self) -> None:
        self.session = self._binding = self._stream = None

    def config(self) -> dict:
        return {"provider": self.provider, "graph_optimization_level": "ORT_ENABLE_ALL",
                "execution_mode": "ORT_SEQUENTIAL", "intra_op_num_threads": self.threads,
                "inter_op_num_threads": 1, "intra_op_spinning": "default (on)" if self.spinning is None else self.spinning,
                "io_binding": self.provider == CUDA}

    def offline_session(self, k: int, x: torch.Tensor, cores: int) -> OfflineSession:
        """k sessions, each called by its own thread with cores // k intra-op threads (k = 1: this one)."""
        if k == 1:
            sessions = [self]
        else:
            sessions = [OnnxRuntimeRunner(self.spec, artifact=self.artifact, device=str(self.device),
                                          options=self.options, threads=max(1, cores // k)) for _ in range(k)]
        opened = []
        try:
            for s in sessions:
                if s is not self:
                    s.spinning = False
                    s.__enter__()
                    opened.append(s)
        except BaseException:
            for s in opened:
                s.__exit__(None, None, None)
            raise
        inputs = [x.clone() for _ in sessions]

        def call(i: int) -> None:
            sessions[i].infer(inputs[i])
            sessions[i].synchronize()

        def close() -> None:
            for s in opened:
                s.__exit__(None, None, None)

        threads = sessions[0].threads
        how = (f"{k} InferenceSession(s), one per Python thread, {threads} intra-op thread(s) each"
               + (", spinning off" if k > 1 else ""))
        return OfflineSession(k, threads, how, {**sessions[0].config(), "requests": k, "sessions": k},
                              call=call, close=close, warm=k == 1)


def _probe(device: str) -> str | None:
    """Why ONNX Runtime cannot run on ``device`` here (the CPU wheel has no CUDA provider), or None."""
    if torch.device(device).type != "cuda":
        return None
    ort = require("onnxruntime")
    if CUDA not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} here has no {CUDA} (the CPU wheel?): install onnxruntime-gpu "
                f"built for torch's CUDA {torch.version.cuda}")
    return None


BACKEND = Backend(
    name="onnx",
    summary="ONNX (dynamo exporter) on ONNX Runtime: CPU provider, or CUDA with I/O binding",
    runner=OnnxRuntimeRunner,
    export=export,
    options=(Option("opset", None, "ONNX opset; unset: the exporter's default, recorded in the manifest",
                    stage=EXPORT, type=int),
             Option("qdq_style", machine_qdq_style(), "onnx int8: x86 (uint8 activations, 7-bit per-channel "
                    "weights: ONNX Runtime's fast form on any x86 CPU), arm (int8 activations and weights: its "
                    "integer kernels on ARM) or tensorrt (symmetric int8, zero point 0); default: this CPU's",
                    stage=EXPORT, precisions=INT8_ONLY),
             CALIBRATION, FLOAT_LAYERS),
    # int8 on CUDA: ONNX Runtime's CUDA provider has no fused QDQ kernels for convolutions (it would
    # run DQ → fp32 → Q); on a GPU int8 is TensorRT's, from the tensorrt QDQ style.
    precisions={"cpu": frozenset({Precision.FP32, Precision.FP16, Precision.INT8}),
                "cuda": frozenset({Precision.FP32, Precision.FP16})},
    # the CPU provider has few fp16 kernels (casts around fp32 ones): fp16 only on a GPU
    run_precisions={"cpu": frozenset({Precision.FP32, Precision.INT8}), "cuda": frozenset({Precision.FP32, Precision.FP16})},
    requires=("onnx", "onnxscript", "onnxruntime"),
    probe=_probe,
    cache_libraries=("torch", "onnx", "onnxscript"),
    quant_libraries=("onnxruntime", "onnxruntime-gpu"),
    runtime_libraries=("onnxruntime", "onnxruntime-gpu"),
    starts_from=frozenset({PYTORCH, ONNX_FILE}),
    layer_profiler="perfkit.profiler.layers.onnxrt",
)
