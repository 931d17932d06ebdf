"""An ``nn.Module`` instance, given to the Python API: ``perfkit.profile(net, input_size=(3, 224, 224))``.

Resolving copies the module (the caller's object is never put in eval mode, moved or converted) and
runs the copy once on a seeded input of ``input_size`` (required): the classes are the width of
that output. Every build is a fresh copy of that snapshot, so a later change to the caller's module
changes nothing measured. ``weights`` may name a checkpoint file, loaded into the snapshot as for
every other source; otherwise the module's own weights are measured.

Identity: a hash of the class's qualified name, the state dict (names, dtypes, shapes and bytes of
its tensors) and the input size; name ``ClassName@<identity[:8]>``; preprocessing the default for
your own model (``for_own_model``) under the preprocessing keywords.

Another process (memory is measured in a child process) gets the module pickled with the spec and
unpickles it only when it builds it. A module whose class that process cannot import — defined in a
notebook's ``__main__`` or inside a function — makes that one measurement fail with one line saying
so and what to do, instead of a child that dies on start-up; the runtimes that run an exported
artifact (ONNX Runtime, OpenVINO, TorchScript, AOTInductor) need no module there and are measured.
Pickling by value (cloudpickle) would lift that, but it is not a dependency perfkit has.
"""

from __future__ import annotations

import copy
import hashlib
import pickle

import torch
from torch import nn

from perfkit.errors import UsageError
from perfkit.zoo import sources as S
from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import for_own_model
from perfkit.zoo.sources.code import probe_outputs
from perfkit.zoo.spec import ModelSpec

NAME = "module"


def _claims(request: S.Request) -> bool:
    return isinstance(request.text, nn.Module)


def qualified_name(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve(request: S.Request) -> ModelSpec:
    given = request.text
    display = type(given).__name__
    what = f"the nn.Module {display}"
    if request.input_size is None:
        raise UsageError(f"{what} needs input_size=(C, H, W): the input it takes, e.g. (3, 224, 224)")
    size = S.input_size(request, None)
    try:
        snapshot = copy.deepcopy(given).cpu().eval()
    except Exception as exc:
        raise UsageError(f"{what} cannot be copied (perfkit measures a copy and leaves yours as it is): "
                         f"{type(exc).__name__}: {exc}") from None
    ref = _weights(request, snapshot, what)
    num_classes = probe_outputs(snapshot, size, what, request.num_classes,
                                "and a module's head is its own (num_classes only checks it)")
    digest = state_digest(snapshot, size)
    spec = ModelSpec(name=display, source=NAME, arch=qualified_name(given), weights=ref, input_size=size,
                     num_classes=num_classes, preprocess=S.preprocess(for_own_model(size), request, size),
                     builder=Snapshot(snapshot, qualified_name(given)), content=f"sha256:{digest}")
    return S.named(spec, display, user=True, native_classes=None)


def _weights(request: S.Request, snapshot: nn.Module, what: str) -> W.WeightsRef:
    """The module's own weights, or a checkpoint file loaded into the snapshot now."""
    if request.weights_file:
        ref, checkpoint = W.checkpoint_ref(request.weights, ema=request.ema)
        W.apply_state(snapshot, checkpoint.state, request.weights, name=what, classes_flag=None)
        return ref
    if request.ema:
        raise UsageError("--ema picks the EMA weights of a checkpoint file: pass --weights FILE")
    if request.weights not in ("default", "auto"):
        raise UsageError(f"{what} runs with its own weights: weights takes default or a checkpoint file, "
                         f"not '{request.weights}'")
    return W.WeightsRef("module", "the module's own", "module")


def state_digest(module: nn.Module, size: tuple[int, int, int]) -> str:
    """sha256 of the class's qualified name, the input size and every state-dict tensor (name, dtype,
    shape, bytes): two modules that compute the same thing from the same numbers share it."""
    digest = hashlib.sha256(f"{qualified_name(module)}\0{list(size)}".encode())
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Snapshot:
    """A module spec's builder: a copy of the resolved snapshot each time. Pickled (for another process)
    as the module's pickle, read back only when that process builds the model; a module that cannot be
    pickled, or whose class cannot be imported there, fails that build with one line."""

    def __init__(self, module: nn.Module | None, cls: str, data: bytes | None = None, problem: str | None = None):
        self.module, self.cls, self.data, self.problem = module, cls, data, problem

    def __call__(self, spec: ModelSpec) -> nn.Module:
        if self.module is None and self.problem is None:
            try:
                self.module = pickle.loads(self.data)
            except Exception as exc:  # the class is not importable here (AttributeError, ModuleNotFoundError, ...)
                self.problem = f"{type(exc).__name__}: {exc}"
        if self.module is None:
            raise UsageError(f"{spec.name}: the nn.Module cannot be rebuilt in another process ({self.problem}): "
                             f"measuring it there (its memory in eager) needs its class {self.cls} in an importable "
                             ".py file, not in a notebook or a function; or pass memory=False")
        return copy.deepcopy(self.module)

    def __reduce__(self):
        if self.data is None and self.problem is None:
            try:
                self.data = pickle.dumps(self.module)
            except Exception as exc:  # a class defined in a function, a lambda attribute, ...
                self.problem = f"{type(exc).__name__}: {exc}"
        return (Snapshot, (None, self.cls, self.data, self.problem))


SOURCE = S.Source(name=NAME, hint="an nn.Module instance (Python API, with input_size)", claims=_claims,
                  resolve=_resolve)
