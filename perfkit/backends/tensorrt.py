"""TensorRT engines built from the ONNX artifact with the TensorRT 10/11 name-based API.

NOT RUN ON A GPU YET: written against NVIDIA's Python API (TensorRT 10.x and 11.x); every call is
checked against the real bindings of both versions by tests/backends/test_tensorrt_bindings.py
(the real wheels' classes and signatures, loaded with stub libraries, without a GPU).

- The network is strongly typed (required in TensorRT 11, where BuilderFlag.FP16 and BuilderFlag.INT8
  are gone): an fp16 engine comes from the fp16 ONNX graph, whose input and output stay float32; an
  int8 engine from the QDQ int8 ONNX graph of the onnx backend in its ``tensorrt`` style (symmetric
  int8, zero point 0: TensorRT's explicit quantization takes no other), calibrated by ONNX Runtime's
  tools on the same calibration set. No builder precision flag and no TensorRT calibrator: the Q/DQ
  nodes say where int8 runs.
- TF32 is cleared so that fp32 engines compare strictly with eager (perfkit pins TF32 off everywhere).
- Profiling verbosity DETAILED by default (``--profiling-verbosity``, an export option: it keys the
  artifact cache, so an engine built with less detail is not reused): the engine inspector then
  gives each layer's type and the ONNX nodes it came from, which the layer profile
  (perfkit.profiler.layers.tensorrt) maps to the model's modules. It makes the plan record more about
  its layers; whether that costs any speed has not been measured (no GPU run yet).
- One optimization profile covers the artifact's batch range (min/opt/max); with ``profile_batches``
  (the profiler sets it to the swept batch sizes) there is also one profile per batch size, tuned
  for exactly that batch, and the runner selects it — batch 1 and 256 do not share kernels tuned for 8.
- A timing cache file per GPU and TensorRT version is reused across builds; one TensorRT refuses
  (another driver, a damaged file) is replaced by a fresh one, and the manifest says so.
- ONNX parser errors are reported verbatim.
- The manifest records the GPU name, compute capability and TensorRT version; the runner refuses an
  engine built on another GPU or TensorRT version (engines are not portable).
- An engine someone built (``perfkit <command> model.engine``, ``ModelSpec.form == "tensorrt"``) is not
  built again: its artifact is the plan itself (``perfkit.zoo.sources.tensorrt_engine`` refuses one of
  another TensorRT release, and TensorRT one of another GPU); its manifest records its profiles, this
  TensorRT and this GPU, so the same check guards every later load.
- The runner enqueues on a CUDA stream of its own (not the legacy default stream, where TensorRT
  adds synchronisation and warns), ordered after and before torch's current stream by events.
- Offline scenario (``offline_session``): k execution contexts, each on a CUDA stream of its own,
  fed round-robin from one thread (trtexec's ``--infStreams``). A context of a dynamic-shape engine
  needs an optimization profile no other running context uses, so each context comes from its own
  deserialized copy of the engine (trtexec's older ``--streams`` did the same): k copies of the
  weights in device memory.

Installing: NVIDIA's ``tensorrt-cuNN`` packages provide ``import tensorrt``, a re-export of
``tensorrt_bindings``; perfkit's ``tensorrt-cu12``/``tensorrt-cu13`` extras install only the two
wheels (``tensorrt-cuNN-bindings`` from PyPI, ``tensorrt-cuNN-libs`` from pypi.nvidia.com), so
perfkit imports ``tensorrt`` where it exists (NGC containers, NVIDIA's packages) and
``tensorrt_bindings`` otherwise. Annotations naming ``tensorrt.X`` are read by
tests/backends/test_tensorrt_bindings.py, which checks every TensorRT call here against the
real bindings of TensorRT 10 and 11.
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from perfkit.artifacts import ensure_artifact
from perfkit.backends.base import (
    CALIBRATION, EXPORT, FLOAT_LAYERS, ONNX_FILE, PYTORCH, QUEUE, TENSORRT_ENGINE, ArtifactRunner, Backend, OfflineSession, Option,
)
from perfkit.deps import import_module
from perfkit.errors import ArtifactError, InputError, MissingDependency, PerfkitError, pip_install
from perfkit.vocab import BatchRange, Precision

if TYPE_CHECKING:  # annotations only (the test of TensorRT calls reads them to type the objects)
    import tensorrt

MAIN_FILE = "model.engine"
NOT_RUN_HERE = ("the TensorRT path is written against the TensorRT 10/11 API and checked against its real "
                "bindings, but has not been run on a GPU yet; check its results")


def tensorrt_extra(cuda: str | None = torch.version.cuda) -> str:
    """perfkit's pip extra for TensorRT built for torch's CUDA major (12 or 13; 13 otherwise)."""
    major = (cuda or "").split(".")[0]
    return f"tensorrt-cu{major}" if major in ("12", "13") else "tensorrt-cu13"


NVIDIA_INDEX = "https://pypi.nvidia.com"  # the libraries' wheels (PyPI has a stub sdist that downloads them)
IMPORT_NAMES = ("tensorrt", "tensorrt_bindings")  # NVIDIA's re-export first, then the module itself
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu12-bindings", "tensorrt-cu13-bindings",
                          "tensorrt-cu12-libs", "tensorrt-cu13-libs")


def import_tensorrt():
    """TensorRT's Python module, or MissingDependency naming the extra for torch's CUDA major."""
    for name in IMPORT_NAMES:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            return import_module(name)  # a Ctrl-C during it stays one (perfkit.deps)
        except ImportError as exc:  # the bindings are there, the libraries (libnvinfer) are not
            raise PerfkitError(f"TensorRT's Python module '{name}' is installed but does not load ({exc}); "
                               f"install the libraries of the same version: "
                               f"{pip_install(tensorrt_extra(), NVIDIA_INDEX)}") from None
    raise MissingDependency("tensorrt", tensorrt_extra(), "the tensorrt backend", NVIDIA_INDEX)


def export(req) -> str:
    from perfkit.backends import get

    if req.spec.form == TENSORRT_ENGINE:  # an engine someone built: the plan itself (perfkit.zoo.sources.engines)
        from perfkit.zoo.sources.engines import copy_engine

        return copy_engine(req, MAIN_FILE)
    trt = import_tensorrt()
    gpu = current_gpu(req.device)
    source = ensure_artifact(req.spec, get("onnx"), source_context(req), precision=req.precision, batch=req.batch)
    req.keep_names(source)  # the engine's tensors are the ONNX graph's (an ONNX file the user gave names its own)
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    # STRONGLY_TYPED makes TensorRT 10 take types from the graph; 11 is always strongly typed and
    # deprecates the flag (its value differs between versions, so it is looked up, never hard-coded).
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source.path)):
        raise ArtifactError(f"TensorRT's ONNX parser rejected {source.path}:\n" + "\n".join(parser_errors(parser)))
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)
    levels = {"detailed": trt.ProfilingVerbosity.DETAILED, "layer_names_only": trt.ProfilingVerbosity.LAYER_NAMES_ONLY,
              "none": trt.ProfilingVerbosity.NONE}
    if req.options["profiling_verbosity"] not in levels:
        raise InputError(f"--profiling-verbosity {req.options['profiling_verbosity']!r}: one of {', '.join(levels)}")
    config.profiling_verbosity = levels[req.options["profiling_verbosity"]]
    if req.options["workspace_mb"]:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(req.options["workspace_mb"]) << 20)
    profiles = profile_batches(req.batch, req.options["profile_batches"])
    for shapes in (profile_shapes(b, req.spec.input_size) for b in profiles):
        profile = builder.create_optimization_profile()
        low, opt, high = shapes
        profile.set_shape(req.input_name, min=low, opt=opt, max=high)
        if config.add_optimization_profile(profile) < 0:
            raise ArtifactError(f"TensorRT rejected the optimization profile {shapes} for {source.path}")
    cache_file = timing_cache_path(req.ctx.artifacts, gpu["gpu_name"], trt.__version__)
    cache_note = attach_timing_cache(config, cache_file)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(f"TensorRT could not build an engine from {source.path}:\n" + "\n".join(logger.errors))
    (req.out_dir / MAIN_FILE).write_bytes(serialized)
    tuned = config.get_timing_cache()
    if tuned is not None:
        _write_atomic(cache_file, bytes(tuned.serialize()))
    req.info["tensorrt"] = {
        "tensorrt_version": trt.__version__, **gpu, "strongly_typed": True, "tf32": False,
        "profiles": [p.to_dict() for p in profiles], "profiling_verbosity": req.options["profiling_verbosity"],
        "source_onnx": {"path": str(source.path), "sha256": source.sha256},
        **({"quantization": source.manifest["quantization"]} if "quantization" in source.manifest else {}),
        "timing_cache": str(cache_file), "timing_cache_note": cache_note,
        "builder_messages": list(logger.messages),
    }
    return MAIN_FILE


PROFILING_VERBOSITY = ("detailed", "layer_names_only", "none")  # TensorRT's ProfilingVerbosity, as trtexec spells it


def verbosity(text: str) -> str:
    """A ``--profiling-verbosity`` value (ValueError otherwise: argparse's one line, exit 2)."""
    if text not in PROFILING_VERBOSITY:
        raise ValueError(f"profiling verbosity {text!r}: one of {', '.join(PROFILING_VERBOSITY)}")
    return text


def source_context(req):
    """The context the ONNX source is exported in: never forced again (``--force`` rebuilds the
    engine), and at int8 the QDQ style TensorRT takes."""
    ctx = req.ctx.replace(force=False)
    if req.precision is Precision.INT8:
        ctx = ctx.replace(options={**ctx.options, "qdq_style": "tensorrt"})
    return ctx


def current_gpu(device: str) -> dict:
    """Name and compute capability of the CUDA device ``device`` (TensorRT needs one)."""
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise ArtifactError("TensorRT engines are built and run on a CUDA GPU: pass --device cuda on a machine with one")
    props = torch.cuda.get_device_properties(dev)
    return {"gpu_name": props.name, "compute_capability": f"{props.major}.{props.minor}"}


def attach_timing_cache(config: tensorrt.IBuilderConfig, cache_file: Path) -> str:
    """Give the builder the timing cache stored in ``cache_file`` (or an empty one); what happened, in words.

    TensorRT refuses a cache from another device or driver (``set_timing_cache`` returns False
    with ``ignore_mismatch=False``) and returns None for a damaged one: the build then starts from
    an empty cache, which replaces the file afterwards.
    """
    stored = cache_file.read_bytes() if cache_file.is_file() else b""
    cache = config.create_timing_cache(stored)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return f"reused {cache_file}" if stored else "new"
    if not stored or not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
        raise ArtifactError("TensorRT refused an empty timing cache")
    return f"TensorRT refused {cache_file} (another GPU, driver or a damaged file): started from an empty cache"


def profile_batches(batch: BatchRange, tuned: list[int] | tuple[int, ...] | None) -> list[BatchRange]:
    """The optimization profiles: the whole range first (profile 0), then one per tuned batch size."""
    out = [batch]
    for b in sorted(set(tuned or ())):
        if batch.contains(b) and BatchRange(b, b, b) not in out:
            out.append(BatchRange(b, b, b))
    return out


def profile_shapes(batch: BatchRange, input_size: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes of one optimization profile."""
    return tuple((b, *input_size) for b in (batch.min, batch.opt, batch.max))


def timing_cache_path(artifacts: Path, gpu_name: str, trt_version: str) -> Path:
    """One timing cache per GPU model and TensorRT version (timings do not transfer between them)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", gpu_name).strip("-")
    return Path(artifacts) / "tensorrt" / f"timing-{slug}-trt{trt_version}.cache"


def parser_errors(parser: tensorrt.OnnxParser) -> list[str]:
    """Every error of TensorRT's ONNX parser, with its node, in the parser's own words."""
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = f" (node {err.node()} '{err.node_name()}' {err.node_operator()})" if err.node() >= 0 else ""
        out.append(f"  {err.code()}: {err.desc()}{where}")
    return out


def check_compatible(manifest: dict, trt_version: str, gpu_name: str, compute_capability: str) -> None:
    """Refuse an engine built for another GPU or TensorRT version (plans are not portable)."""
    built = manifest["tensorrt"]
    here = {"tensorrt_version": trt_version, "gpu_name": gpu_name, "compute_capability": compute_capability}
    diffs = [f"{k}: built with {built.get(k)!r}, this machine has {v!r}" for k, v in here.items() if built.get(k) != v]
    if diffs:
        raise ArtifactError("TensorRT engine was built elsewhere and cannot be loaded here ("
                            + "; ".join(diffs) + "); export it again on this machine")


def make_logger(trt, keep: int = 50) -> tensorrt.ILogger:
    """A TensorRT logger that keeps the first ``keep`` warnings and errors (bounded: it also lives
    through timed inference, where a per-call warning must not grow a list without end)."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: collections.deque[str] = collections.deque(maxlen=keep)
            self.errors: collections.deque[str] = collections.deque(maxlen=keep)

        def log(self, severity: tensorrt.ILogger.Severity, msg: str) -> None:
            # Severity is a pybind11 enum: lower values are more severe.
            if int(severity) <= int(trt.ILogger.Severity.WARNING) and len(self.messages) < keep:
                self.messages.append(f"{severity.name}: {msg}")
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(f"  {msg}")

    return Logger()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class TensorRTRunner(ArtifactRunner):
    """An execution context on a stream of its own, with torch-owned input and output buffers."""

    name = "tensorrt"
    offline_mechanism = QUEUE

    def _load(self) -> None:  # runs with self.device current (Runner.__enter__): TensorRT allocates there
        trt = import_tensorrt()
        gpu = current_gpu(str(self.device))
        check_compatible(self.artifact.manifest, trt.__version__, gpu["gpu_name"], gpu["compute_capability"])
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.artifact.path.read_bytes())
        if engine is None:
            raise ArtifactError(f"TensorRT could not deserialize {self.artifact.path}:\n" + "\n".join(self._logger.errors))
        for tensor in (self.input_name, self.output_name):  # the buffers below are float32 torch tensors
            if engine.get_tensor_dtype(tensor) != trt.DataType.FLOAT:
                raise ArtifactError(f"{self.artifact.path}: engine tensor {tensor} is "
                                    f"{engine.get_tensor_dtype(tensor)}, perfkit feeds and reads FLOAT")
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise PerfkitError(f"TensorRT could not create an execution context for {self.artifact.path}:\n"
                               + "\n".join(self._logger.errors))
        self._stream = torch.cuda.Stream(self.device)
        self._profiles = [BatchRange(**p) for p in self.artifact.manifest["tensorrt"]["profiles"]]
        self._profile = 0

    def _select_profile(self, batch: int) -> None:
        want = next((i for i, p in enumerate(self._profiles) if p.min == p.max == batch), 0)
        if want != self._profile:
            if not self._context.set_optimization_profile_async(want, self._stream.cuda_stream):
                raise PerfkitError(f"TensorRT could not switch to optimization profile {want} of {self.artifact.path}")
            self._profile = want

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        ctx, stream = self._context, self._stream
        stream.wait_stream(torch.cuda.current_stream(self.device))  # x was produced on torch's stream
        self._select_profile(x.shape[0])
        if not ctx.set_input_shape(self.input_name, tuple(x.shape)):
            raise PerfkitError(f"TensorRT rejected input shape {tuple(x.shape)} for {self.artifact.path}")
        out = torch.empty(tuple(ctx.get_tensor_shape(self.output_name)), dtype=torch.float32, device=self.device)
        if not (ctx.set_tensor_address(self.input_name, x.data_ptr())
                and ctx.set_tensor_address(self.output_name, out.data_ptr())):
            raise PerfkitError(f"TensorRT refused a tensor address for {self.artifact.path}")
        x.record_stream(stream)
        out.record_stream(stream)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise PerfkitError(f"TensorRT execution failed for {self.artifact.path}:\n" + "\n".join(self._logger.errors))
        torch.cuda.current_stream(self.device).wait_stream(stream)  # whoever reads `out` waits for it
        return out

    def _release(self) -> None:
        self._context = self._engine = self._runtime = self._stream = None

    @property
    def engine(self):
        return getattr(self, "_engine", None)

    @property
    def context(self):
        """The execution context ``infer`` runs (the layer profiler attaches its IProfiler to it)."""
        return getattr(self, "_context", None)

    def engine_device_bytes(self) -> int | None:
        """Device memory the engine's execution context needs, as TensorRT reports it."""
        engine: tensorrt.ICudaEngine | None = self.engine
        if engine is None:
            return None
        # device_memory_size_v2 is in TensorRT 11 and later 10.x; device_memory_size only in 10.x
        size = getattr(engine, "device_memory_size_v2", None)
        if size is None:
            size = getattr(engine, "device_memory_size", None)
        return None if size is None else int(size)

    def offline_session(self, k: int, x: torch.Tensor, cores: int) -> OfflineSession:
        """k contexts (one per engine copy) on k streams, submitted round-robin; see the module docstring."""
        batch = x.shape[0]
        profile = next((i for i, p in enumerate(self._profiles) if p.min == p.max == batch), 0)
        plan = self.artifact.path.read_bytes()
        slots = []
        with torch.cuda.device(self.device):
            for _ in range(k):
                engine: tensorrt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(plan)
                context: tensorrt.IExecutionContext | None = (None if engine is None
                                                              else engine.create_execution_context())
                if context is None:
                    raise PerfkitError(f"TensorRT could not create execution context {len(slots) + 1} of {k} for "
                                       f"{self.artifact.path}:\n" + "\n".join(self._logger.errors))
                stream = torch.cuda.Stream(self.device)
                if profile and not context.set_optimization_profile_async(profile, stream.cuda_stream):
                    raise PerfkitError(f"TensorRT could not select optimization profile {profile} of {self.artifact.path}")
                xi = x.to(self.device).contiguous()
                out = torch.empty((batch, self.spec.num_classes), dtype=torch.float32, device=self.device)
                if not (context.set_input_shape(self.input_name, tuple(xi.shape))
                        and context.set_tensor_address(self.input_name, xi.data_ptr())
                        and context.set_tensor_address(self.output_name, out.data_ptr())):
                    raise PerfkitError(f"TensorRT refused the input shape or a tensor address for {self.artifact.path}")
                slots.append((engine, context, stream, torch.cuda.Event(), xi, out))
        order = itertools.cycle(range(k))

        def submit() -> None:
            slot = slots[next(order)]
            context: tensorrt.IExecutionContext = slot[1]
            stream, done = slot[2], slot[3]
            done.synchronize()  # this slot's previous request has finished (a fresh event returns at once)
            if not context.execute_async_v3(stream.cuda_stream):
                raise PerfkitError(f"TensorRT execution failed for {self.artifact.path}:\n" + "\n".join(self._logger.errors))
            done.record(stream)

        def wait_all() -> None:
            for slot in slots:
                slot[3].synchronize()

        how = f"{k} execution context(s) from {k} engine copies, one CUDA stream each, submitted round-robin"
        return OfflineSession(k, None, how, {**self.config(), "requests": k, "streams": k, "profile": profile},
                              submit=submit, wait_all=wait_all, close=slots.clear)

    def config(self) -> dict:
        info = self.artifact.manifest["tensorrt"]
        return {"tensorrt_version": info["tensorrt_version"], "strongly_typed": True, "tf32": False,
                "profiles": info["profiles"], "own_stream": True}


BACKEND = Backend(
    name="tensorrt",
    summary="TensorRT engine built from the ONNX artifact (GPU; the tensorrt extra)",
    runner=TensorRTRunner,
    export=export,
    options=(
        Option("opset", None, "ONNX opset; unset: the exporter's default, recorded in the manifest", stage=EXPORT,
               type=int),
        Option("workspace_mb", None, "tensorrt: builder workspace limit in MiB (unset: TensorRT's default)",
               stage=EXPORT, type=int),
        Option("profile_batches", None, "tensorrt: batch sizes that get an optimization profile of their own "
                                        "(comma list; the profiler sets it to the swept batches)",
               stage=EXPORT, type=lambda text: tuple(int(b) for b in str(text).split(",") if b.strip())),
        Option("profiling_verbosity", "detailed", "tensorrt: what the engine records about its layers ("
                                                  + ", ".join(PROFILING_VERBOSITY) + "; detailed: the layer profile "
                                                  "maps layers to modules through it)", stage=EXPORT, type=verbosity),
        CALIBRATION,
        FLOAT_LAYERS,  # its int8 engine is built from the QDQ graph: the nodes left float there stay float here
    ),
    precisions={"cuda": frozenset({Precision.FP32, Precision.FP16, Precision.INT8})},
    extra=tensorrt_extra(),
    extra_index_url=NVIDIA_INDEX,
    requires=("|".join(IMPORT_NAMES),),
    # distributions: NVIDIA's packages or perfkit's extras (the version is also checked at load, from the module)
    cache_libraries=("torch", "onnx", "onnxscript", *TENSORRT_DISTRIBUTIONS),
    quant_libraries=("onnxruntime", "onnxruntime-gpu"),
    runtime_libraries=TENSORRT_DISTRIBUTIONS,
    device_specific=True,
    # an ONNX file the user gave: its copy, parsed as it is; an engine someone built: the plan itself
    starts_from=frozenset({PYTORCH, ONNX_FILE, TENSORRT_ENGINE}),
    layer_profiler="perfkit.profiler.layers.tensorrt",
)
