"""ONNX through the dynamo exporter, run by ONNX Runtime (CPU provider, or CUDA with I/O binding).

Export: ``torch.onnx.export(..., dynamo=True)`` with a symbolic batch dimension; weights go to an
external data file beside the graph (``model.onnx.data``), so the 2 GB protobuf limit never bites
and the artifact's hash covers both files. fp16 gives an fp16 graph with float32 input and output,
the form a strongly typed TensorRT network builds from.

Runner, tuned as ONNX Runtime's performance docs recommend: full graph optimisation
(ORT_ENABLE_ALL), sequential execution, intra-op threads = the cores this process may use, one
inter-op thread. onnxruntime silently falls back to the CPU when a provider cannot start, so the
runner checks that the provider it asked for is the one the session has.

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
from perfkit.backends.base import EXPORT, ArtifactRunner, Backend, OfflineSession, Option
from perfkit.deps import require
from perfkit.device import available_cores as machine_cores
from perfkit.errors import ArtifactError, PerfkitError
from perfkit.vocab import Precision

MAIN_FILE = "model.onnx"
BATCH_DIM = "batch"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def export(req) -> str:
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
    req.info["onnx"] = {
        "opset": next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None),
        "ir_version": graph.ir_version,
        "input_batch_dim": batch_dim or None,
        "external_data": sorted(p.name for p in req.out_dir.iterdir() if p.name != MAIN_FILE),
    }
    return MAIN_FILE


def input_batch_dim(graph) -> str:
    """The symbolic name of the first input's batch dimension ('' when it is a fixed number)."""
    dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_param if dim.HasField("dim_param") else ""


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
                               f"{self.artifact.path} (CUDA/cuDNN libraries missing?)")
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
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


BACKEND = Backend(
    name="onnx",
    summary="ONNX (dynamo exporter) on ONNX Runtime: CPU provider, or CUDA with I/O binding",
    runner=OnnxRuntimeRunner,
    export=export,
    options=(Option("opset", None, "ONNX opset; unset: the exporter's default, recorded in the manifest",
                    stage=EXPORT, type=int),),
    precisions={"cpu": frozenset({Precision.FP32, Precision.FP16}), "cuda": frozenset({Precision.FP32, Precision.FP16})},
    requires=("onnx", "onnxscript", "onnxruntime"),
    cache_libraries=("torch", "onnx", "onnxscript"),
    runtime_libraries=("onnxruntime", "onnxruntime-gpu"),
)
