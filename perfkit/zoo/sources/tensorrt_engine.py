"""A TensorRT engine (a serialized plan): ``perfkit <command> model.engine`` (or ``.plan``), run by the
tensorrt runtime only, on a CUDA GPU (``perfkit.zoo.sources.engines`` says what every engine shares).

NOT RUN ON A GPU YET, like the tensorrt backend: written against TensorRT 10/11's Python API (the calls
are checked against the real bindings by tests/backends/test_tensorrt_bindings.py and exercised on its
fake TensorRT); without a GPU only the header checks run.

What a plan records, and what is read from it:

- its header (what ``trtexec --getPlanVersionOnly`` reads, without deserializing): the tag ``ftrt``,
  the serialization version (0) and the TensorRT version that built it (bytes 24-27). An engine built
  by another TensorRT is refused naming both (plans are not portable across TensorRT releases).
- the GPU it was built for: not in the header. TensorRT refuses, when it deserializes the plan, one
  built for another compute capability; that refusal is the one line, naming this GPU. The manifest
  then records this GPU, the one it loads on, and the tensorrt runner's own check
  (``check_compatible``: the same TensorRT version and GPU) guards every later load.
- its I/O tensors, read from the deserialized engine: exactly one float32 input (N, C, H, W) and one
  float32 output (N, classes), their names, and the batch range of each optimization profile (profile 0's
  range is the range it takes; the runner selects a profile built for exactly the batch it runs, where
  there is one).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

from perfkit.errors import ArtifactError, UsageError
from perfkit.vocab import BatchRange
from perfkit.zoo.sources import engines as E
from perfkit.zoo.spec import TENSORRT_ENGINE

if TYPE_CHECKING:  # annotations only (the test of TensorRT calls reads them to type the objects)
    import tensorrt

PLAN_TAG = 0x74727466  # "ftrt": how a TensorRT plan file starts
HEADER_BYTES = 28


def plan_version(plan: bytes, path: Path) -> str:
    """The TensorRT version recorded in the header of ``plan`` (``path``'s bytes); a UsageError when it is not one."""
    head = plan[:HEADER_BYTES]
    if len(head) < HEADER_BYTES:
        raise UsageError(f"{path}: not a TensorRT engine: {len(head)} bytes, shorter than a plan's header")
    tag, serialization = struct.unpack_from("<II", head)
    if tag != PLAN_TAG:
        raise UsageError(f"{path}: not a TensorRT engine (a plan starts with 'ftrt'; this starts with {head[:4]!r})")
    if serialization != 0:
        raise UsageError(f"{path}: a TensorRT plan of serialization version {serialization}, which this perfkit does "
                         "not read (version 0: TensorRT 8.6 to 11)")
    return ".".join(str(b) for b in head[24:28])


def same_release(built: str, here: str) -> bool:
    """Whether a plan built by TensorRT ``built`` (four numbers) loads in TensorRT ``here``: the same release."""
    ours = here.split(".")
    return built.split(".")[:len(ours)] == ours


def read(path: Path) -> E.EngineIO:
    from perfkit.backends.tensorrt import current_gpu, import_tensorrt, make_logger

    plan = path.read_bytes()  # read once: TensorRT deserializes the same bytes
    built = plan_version(plan, path)
    trt = import_tensorrt()
    if not same_release(built, trt.__version__):
        raise UsageError(f"{path} was built by TensorRT {built}; this is TensorRT {trt.__version__}: engines load only "
                         "in the TensorRT release that built them (rebuild it here, or pass its ONNX file)")
    try:
        gpu = current_gpu("cuda:0")
    except ArtifactError:
        raise UsageError(f"{path}: a TensorRT engine is read and run on a CUDA GPU, and this machine has "
                         "none") from None
    logger = make_logger(trt)
    runtime: tensorrt.Runtime = trt.Runtime(logger)
    # deserialized on the current GPU (0: nothing has made another one current yet)
    engine: tensorrt.ICudaEngine | None = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        said = (list(logger.errors) or ["no reason given"])[0].strip()
        raise UsageError(f"{path}: TensorRT {trt.__version__} cannot load it on this {gpu['gpu_name']} (compute "
                         f"capability {gpu['compute_capability']}): {said}")
    return _io(trt, engine, path, {"tensorrt": {"tensorrt_version": trt.__version__, "built_with": built, **gpu}})


def _io(trt, engine: tensorrt.ICudaEngine, path: Path, info: dict) -> E.EngineIO:
    """The engine's image input and logits output, and its profiles' batch ranges."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    shapes = {n: tuple(engine.get_tensor_shape(n)) for n in names}
    found = "; ".join(f"{n} {engine.get_tensor_dtype(n)} {shapes[n]}" for n in names)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UsageError(f"{path}: {E.NEEDS}; the engine has {len(inputs)} input(s) and {len(outputs)} output(s): "
                         f"{found}")
    x, y = inputs[0], outputs[0]
    xs, ys = shapes[x], shapes[y]
    typed = all(engine.get_tensor_dtype(n) == trt.DataType.FLOAT for n in (x, y))
    if not typed or len(xs) != 4 or len(ys) != 2 or ys[1] < 1 or min(xs[1:]) < 1:
        raise UsageError(f"{path}: {E.NEEDS}, with its channels, height and width fixed; the engine has: {found}")
    profiles = [_profile(engine, x, p) for p in range(engine.num_optimization_profiles)]
    batch = (xs[0], xs[0]) if xs[0] > 0 else (profiles[0].min, profiles[0].max) if profiles else None
    info["tensorrt"]["profiles"] = [p.to_dict() for p in profiles]
    return E.EngineIO(files=(path,), input_name=x, output_name=y, dims=xs[1:], classes=ys[1], batch=batch,
                      device="cuda", info=info)


def _profile(engine: tensorrt.ICudaEngine, name: str, index: int) -> BatchRange:
    low, opt, high = engine.get_tensor_profile_shape(name, index)
    return BatchRange(low[0], opt[0], high[0])


FORMAT = E.Format(name=TENSORRT_ENGINE, words="a TensorRT engine", short="TensorRT engine",
                  suffixes=(".engine", ".plan"), runtime="tensorrt", read=read)
SOURCE = E.source(FORMAT)
