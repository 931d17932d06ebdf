"""TensorRT engines built from the ONNX artifact with the TensorRT 10/11 name-based API.

NOT RUN HERE: this module was written against NVIDIA's documented Python API (TensorRT 10.x and
11.x) on a machine with no GPU and no TensorRT; only its GPU-free parts are unit-tested.

- The network is strongly typed (required in TensorRT 11, where BuilderFlag.FP16 is gone): an fp16
  engine comes from the fp16 ONNX graph, whose input and output stay float32.
- TF32 is cleared so that fp32 engines compare strictly with eager (perfkit pins TF32 off everywhere).
- One optimization profile covers the artifact's batch range (min/opt/max).
- A timing cache file per GPU and TensorRT version is reused across builds.
- ONNX parser errors are reported verbatim.
- The manifest records the GPU name, compute capability and TensorRT version; the runner refuses an
  engine built on another GPU or TensorRT version (engines are not portable).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from perfkit.deps import require
from perfkit.errors import ArtifactError
from perfkit.export.artifact import INPUT_NAME, ExportContext
from perfkit.formats import BatchRange, Format

OPTIONS = {"opset": None, "workspace_mb": None}  # workspace_mb None: TensorRT's default (device memory)
LIBRARIES = ("torch", "onnx", "onnxscript", "tensorrt")
MAIN_FILE = "model.engine"
NOT_RUN_HERE = ("the TensorRT path is written against the documented TensorRT 10/11 API and has not been run "
                "on the machine perfkit was developed on (no GPU, no TensorRT there); check its results")


def device_specific(options: dict) -> bool:
    return True


def export(ctx: ExportContext) -> str:
    trt = require("tensorrt")
    gpu = current_gpu(ctx.device)
    from perfkit.export.artifact import ensure_artifact

    source = ensure_artifact(ctx.spec, Format.ONNX, precision=ctx.precision, artifacts=ctx.artifacts,
                             batch=ctx.batch, opset=ctx.options["opset"])
    logger = _logger(trt)
    builder = trt.Builder(logger)
    # STRONGLY_TYPED is required for TensorRT 10 to take types from the graph; 11 ignores the flag
    # (always strongly typed) but still accepts it.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source.path)):
        raise ArtifactError(f"TensorRT's ONNX parser rejected {source.path}:\n" + "\n".join(parser_errors(parser)))
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)
    if ctx.options["workspace_mb"]:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(ctx.options["workspace_mb"]) << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *profile_shapes(ctx.batch, ctx.spec.input_size))
    config.add_optimization_profile(profile)
    cache_file = timing_cache_path(ctx.artifacts, gpu["gpu_name"], trt.__version__)
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(f"TensorRT could not build an engine from {source.path}:\n" + "\n".join(logger.errors))
    (ctx.out_dir / MAIN_FILE).write_bytes(serialized)
    _write_atomic(cache_file, bytes(config.get_timing_cache().serialize()))
    ctx.info["tensorrt"] = {
        "tensorrt_version": trt.__version__, **gpu, "strongly_typed": True, "tf32": False,
        "profile": {"min": ctx.batch.min, "opt": ctx.batch.opt, "max": ctx.batch.max},
        "source_onnx": {"path": str(source.path), "sha256": source.sha256},
        "timing_cache": str(cache_file),
        "builder_messages": logger.messages,
    }
    return MAIN_FILE


def current_gpu(device: str) -> dict:
    """Name and compute capability of the CUDA device ``device`` (TensorRT needs one)."""
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise ArtifactError("TensorRT engines are built and run on a CUDA GPU: pass --device cuda on a machine with one")
    props = torch.cuda.get_device_properties(dev)
    return {"gpu_name": props.name, "compute_capability": f"{props.major}.{props.minor}"}


def profile_shapes(batch: BatchRange, input_size: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes of the optimization profile."""
    return tuple((b, *input_size) for b in (batch.min, batch.opt, batch.max))


def timing_cache_path(artifacts: Path, gpu_name: str, trt_version: str) -> Path:
    """One timing cache per GPU model and TensorRT version (timings do not transfer between them)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", gpu_name).strip("-")
    return Path(artifacts) / "tensorrt" / f"timing-{slug}-trt{trt_version}.cache"


def parser_errors(parser) -> list[str]:
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


def _logger(trt):
    """A TensorRT logger that keeps warnings and errors for the manifest and error messages."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[str] = []
            self.errors: list[str] = []

        def log(self, severity, msg):
            # Severity is a pybind11 enum: lower values are more severe.
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(f"{severity.name}: {msg}")
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(f"  {msg}")

    return Logger()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
