"""A TorchScript file (``torch.jit.save``): ``perfkit <command> model.pt`` (or ``.ts``, ``.pth``), run by the
torchscript runtime and by native (perfkit's C++ LibTorch runner, which runs TorchScript) only
(``perfkit.zoo.sources.engines`` says what every engine shares).

What the file records, and what is read from it:

- a zip archive whose ``constants.pkl`` and ``code/`` make it TorchScript. A ``torch.save`` file has
  neither: a state dict (or a training checkpoint) is refused with the advice to pass its architecture
  with ``--weights``; a pickled module with the advice to save it with ``torch.jit.save``.
- its file format version (``version``). TorchScript does not record the PyTorch release that saved it:
  the format version stands for it, and one newer than this PyTorch reads is refused naming both.
- for a traced module, the input it was traced with (``traced_inputs.pkl``, which the tracer stores
  by default): its C, H, W are the input size. Read with an unpickler that builds nothing but shapes
  (no code from the file runs). A scripted module records no input: ``--input-size`` (or the
  reference's) gives it.

The number of classes is the width of one run's output on a zero input (on the CPU: a module traced on a
GPU with device constants baked in fails there, in one line). The batch is whatever the module takes.
``perfkit summary`` counts its parameters and its MACs (FlopCounterMode sees the aten ops TorchScript runs).
"""

from __future__ import annotations

import pickle
import re
import warnings
from io import BytesIO
from pathlib import Path

import torch

from perfkit.errors import UsageError
from perfkit.zoo import sources as S
from perfkit.zoo.sources import engines as E
from perfkit.zoo.spec import TORCHSCRIPT_FILE

TRACED_INPUTS = "traced_inputs.pkl"


def read(path: Path) -> E.EngineIO:
    archive, prefix, names = E.zip_names(path, FORMAT)
    with archive:
        if f"{prefix}/constants.pkl" not in names or not any(n.startswith(f"{prefix}/code/") for n in names):
            raise UsageError(_not_torchscript(path, prefix, names))
        version = archive.read(f"{prefix}/version").decode().strip() if f"{prefix}/version" in names else "?"
        traced = archive.read(f"{prefix}/{TRACED_INPUTS}") if f"{prefix}/{TRACED_INPUTS}" in names else b""
    shape = _traced_shape(traced)
    info = {"torchscript": {"method": "file (traced)" if shape else "file", "file_format_version": version,
                            "torch_version": "not recorded by TorchScript (its file format version stands for it)",
                            **({"traced_input": list(shape)} if shape else {})}}
    return E.EngineIO(files=(path,), dims=tuple(shape[1:]) if shape else None, info=info)


def _not_torchscript(path: Path, prefix: str, names: set[str]) -> str:
    if f"{prefix}/data.pkl" not in names:
        return f"{path}: not a TorchScript file (a zip archive without TorchScript's constants.pkl and code/)"
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # needs pickled code: a whole module saved with torch.save (never unpickled here)
        return (f"{path} was saved by torch.save with pickled code (a whole module?), not torch.jit.save: save it with "
                "torch.jit.save(torch.jit.trace(model, example), path), or save its state_dict and pass it with "
                "--weights")
    return (f"{path} holds a state dict (torch.save), not TorchScript: pass its architecture with --weights "
            f"{path.name} (e.g. perfkit check resnet18 --num-classes N --weights {path.name}, or --model-code "
            "FILE.py:CALLABLE)")


class _Shapes(pickle.Unpickler):
    """Reads ``traced_inputs.pkl`` building nothing but tensor shapes: every other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, *rest: tuple(size)
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return lambda value, tag: value
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if module == "torch" and name == "FloatStorage":
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor shape")

    def persistent_load(self, pid):
        return pid


def _traced_shape(data: bytes) -> tuple[int, ...] | None:
    """The shape of the one float32 tensor ``forward`` was traced with, if the file holds it and it is 4-D."""
    if not data:
        return None
    try:
        inputs = _Shapes(BytesIO(data)).load().get("forward")
    except Exception:  # another layout of the tracer's record: the format says nothing we can read
        return None
    if isinstance(inputs, (list, tuple)) and len(inputs) == 1 and isinstance(inputs[0], tuple) and len(inputs[0]) == 4:
        return tuple(int(d) for d in inputs[0])
    return None


def load(path: Path) -> torch.jit.ScriptModule:
    """The module on the CPU; a file this PyTorch cannot read is one line naming both versions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as exc:
            text = str(exc)
            if "maximum supported version" in text:
                found, most = (re.findall(r"version (?:for reading is )?(\d+)", text) + ["?", "?"])[:2]
                raise UsageError(f"{path} is TorchScript file format version {found}, written by a newer PyTorch; this "
                                 f"torch {torch.__version__} reads up to version {most}: run it with the PyTorch "
                                 "that saved it or newer") from None
            raise UsageError(f"{path}: torch {torch.__version__} cannot load it ({S.first_line(exc)})") from None


def classes(path: Path, io: E.EngineIO, size: tuple[int, int, int]) -> int:
    """The logits' width: one run on a zero input of ``size`` (batch 1), on the CPU."""
    module = load(path)
    try:
        with torch.inference_mode():
            out = module(torch.zeros((1, *size)))
    except Exception as exc:  # the user's module failing on this input: a wrong --input-size, a GPU-traced module
        raise UsageError(f"{path}: running it on a zero 1×{'×'.join(map(str, size))} input failed "
                         f"({S.first_line(exc)}); is --input-size right?") from None
    out = out[0] if isinstance(out, (tuple, list)) and out else out  # (logits, aux) of scripted Inception-style models
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1 or not out.is_floating_point():
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"{path}: {E.NEEDS}; on a 1×{'×'.join(map(str, size))} input it returned {got}")
    return int(out.shape[1])


FORMAT = E.Format(name=TORCHSCRIPT_FILE, words="a TorchScript file", short="TorchScript",
                  suffixes=(".pt", ".ts", ".pth"),
                  runtime="torchscript", read=read, classes=classes,
                  size_hint="a scripted TorchScript module does not record its input size")
SOURCE = E.source(FORMAT)
