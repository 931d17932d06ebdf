"""An ONNX file: ``perfkit <command> path/to/model.onnx``.

Resolving checks the file with ``onnx.checker`` (external data and files over 2 GB included) and reads
its graph: exactly one float32 image input ``(N, C, H, W)`` and one logits output ``(N, classes)``;
anything else is refused naming what the graph has. Input and output names are the graph's own. A
batch dimension that is a number N is the only batch the model takes (``ModelSpec.fixed_batch``); a
symbolic one takes any batch. Height and width come from the graph, or from ``--input-size`` (or
``--crop``) where the graph leaves them symbolic.

There is no PyTorch module: the runtimes that start from ONNX (``Backend.starts_from``: ONNX Runtime,
OpenVINO, TensorRT) run the file itself, copied into their artifact folder (so the manifest hashes it),
and the reference of parity and accuracy is ONNX Runtime fp32 on the CPU running it
(``reference_runtime = "onnx"``). Preprocessing: perfkit's stated default for your own model (ImageNet
mean/std, resize = crop / 0.875, bilinear), the preprocessing flags override it, recorded as such.
Identity: the sha256 of the file (with its external data files, when it has any).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from perfkit.deps import require
from perfkit.errors import ArtifactError, UsageError
from perfkit.zoo import sources as S
from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import for_own_model
from perfkit.zoo.spec import ModelSpec

NAME = "onnx"
SUFFIX = ".onnx"
NO_MODULE = "an ONNX file has no PyTorch module: PyTorch runtimes cannot run it"
NEEDS = "perfkit needs one float32 image input (N, C, H, W) and one logits output (N, classes)"
# names an artifact folder keeps for itself: external data files may not take them
RESERVED = ("manifest.json",)


@dataclass(frozen=True)
class GraphIO:
    """The image input and logits output of an ONNX graph (None: a dimension the graph leaves symbolic)."""

    input_name: str
    output_name: str
    batch: int | None
    channels: int
    height: int | None
    width: int | None
    classes: int
    data_files: tuple[str, ...] = ()  # external data, relative to the file's folder


def _claims(request: S.Request) -> bool:
    return request.model_code is None and request.text is not None and request.text.lower().endswith(SUFFIX)


def _resolve(request: S.Request) -> ModelSpec:
    path = S.existing_file(request.text, "ONNX file", "the .onnx file")
    if request.weights_file or request.weights not in ("default", "auto") or request.ema:
        raise UsageError(f"{path}: an ONNX file carries its own weights; drop --weights {request.weights}"
                         + (" and --ema" if request.ema else ""))
    io = read_graph(path)
    if request.num_classes is not None and request.num_classes != io.classes:
        raise UsageError(f"{path}: the graph's output has {io.classes} classes, not --num-classes "
                         f"{request.num_classes}")
    size = S.file_input_size(request, (io.channels, io.height, io.width), path, fixed_in="fixed in the graph",
                             open_hint="the graph leaves the input's height or width open")
    sha = content_sha256(path, io.data_files)
    ref = W.WeightsRef("graph", str(path), f"onnx:{sha[:16]}")
    spec = ModelSpec(name=path.name, source=NAME, arch=str(path), weights=ref, input_size=size, num_classes=io.classes,
                     preprocess=S.preprocess(for_own_model(size), request, size), builder=construct,
                     content=f"sha256:{sha}", reference_runtime="onnx", form="onnx", fixed_batch=io.batch)
    return S.named(spec, path.name, user=True, native_classes=None)


def read_graph(path: Path) -> GraphIO:
    """The checked graph's image input and logits output; a UsageError naming what it has otherwise."""
    onnx = require("onnx")
    try:
        onnx.checker.check_model(str(path))  # the path, not a loaded proto: external data and > 2 GB files
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # the checker's and the parser's errors: first line, naming the file
        raise UsageError(f"{path}: not a valid ONNX model ({S.first_line(exc)})") from None
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]  # old IR versions list weights as inputs
    if len(inputs) != 1 or len(graph.output) != 1:
        found = "; ".join([*(f"input {_describe(onnx, v)}" for v in inputs),
                           *(f"output {_describe(onnx, v)}" for v in graph.output)])
        raise UsageError(f"{path}: {NEEDS}; the graph has {len(inputs)} input(s) and {len(graph.output)} output(s): "
                         f"{found}")
    x, y = inputs[0], graph.output[0]
    xd, yd = _image_dims(onnx, x, path), _logits_dims(onnx, y, path)
    return GraphIO(x.name, y.name, xd[0] if isinstance(xd[0], int) else None, xd[1],
                   *(d if isinstance(d, int) else None for d in xd[2:]), yd[1], data_files(model, path))


def _dims(value) -> list[int | str]:
    """Each dimension: its number, its symbol, or ``?`` where the graph names neither."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def _dtype(onnx, value) -> str:
    return onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()


def _describe(onnx, value) -> str:
    if not value.type.HasField("tensor_type"):
        return f"'{value.name}' (not a tensor)"
    shape = f"({', '.join(map(str, _dims(value)))})" if value.type.tensor_type.HasField("shape") else "(no shape)"
    return f"'{value.name}' {_dtype(onnx, value)} {shape}"


def _image_dims(onnx, x, path: Path) -> list[int | str]:
    what = f"{path}: {NEEDS}; its input is {_describe(onnx, x)}"
    if not x.type.HasField("tensor_type") or x.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UsageError(f"{what}: perfkit feeds float32 images")
    dims = _dims(x) if x.type.tensor_type.HasField("shape") else []
    if len(dims) != 4:
        raise UsageError(f"{what}, not 4-D")
    if dims[3] in (1, 3) and dims[1] not in (1, 3):
        raise UsageError(f"{what}: channels last (N, H, W, C)? perfkit feeds channels first (N, C, H, W)")
    if not isinstance(dims[1], int):
        raise UsageError(f"{what}: the channel dimension must be a number")
    return dims


def _logits_dims(onnx, y, path: Path) -> list[int | str]:
    what = f"{path}: {NEEDS}; its output is {_describe(onnx, y)}"
    if not y.type.HasField("tensor_type") or y.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UsageError(f"{what}: perfkit reads float32 logits")
    dims = _dims(y) if y.type.tensor_type.HasField("shape") else []
    if len(dims) != 2 or not isinstance(dims[1], int):
        raise UsageError(f"{what}, not (N, classes) with a fixed number of classes")
    return dims


def data_files(model, path: Path) -> tuple[str, ...]:
    """The external data files the graph's tensors refer to, each checked to lie beside ``path``."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    out = []
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if location not in out:
                out.append(location)
    folder = path.parent
    for location in out:
        where = (folder / location).resolve()
        if not where.is_relative_to(folder) or location in (*RESERVED, path.name):
            raise UsageError(f"{path}: its external data '{location}' must be a file beside it")
        if not where.is_file():
            raise UsageError(f"{path}: its weights are in '{location}', which is not beside it (copy the file's "
                             "external data too)")
    return tuple(out)


def content_sha256(path: Path, files: tuple[str, ...] = ()) -> str:
    """The file's sha256; with external data, the sha256 of every file's name and sha256."""
    main = W.sha256_of(path)
    if not files:
        return main
    lines = [f"{path.name}\t{main}", *(f"{name}\t{W.sha256_of(path.parent / name)}" for name in sorted(files))]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def copy_into(spec: ModelSpec, folder: Path, main_file: str) -> GraphIO:
    """Copy ``spec``'s file (and its external data) into ``folder`` as ``main_file``, byte for byte, after
    checking that it is still the file ``spec`` was resolved from; its graph's I/O."""
    path = Path(spec.arch)
    if not path.is_file():
        raise ArtifactError(f"{path} is gone since the model was resolved")
    io = read_graph(path)
    if f"sha256:{content_sha256(path, io.data_files)}" != spec.content:
        raise ArtifactError(f"{path} changed since the model was resolved (its sha256 is not the one this run "
                            "recorded); run the command again")
    shutil.copyfile(path, folder / main_file)
    for name in io.data_files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path.parent / name, folder / name)
    return io


def construct(spec: ModelSpec):
    raise UsageError(f"{spec.name}: {NO_MODULE}")


SOURCE = S.Source(name=NAME, hint="path/to/model.onnx (an ONNX file: one image input, one logits output)",
                  claims=_claims, resolve=_resolve)
