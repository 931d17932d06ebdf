"""The user's own ``nn.Module``: ``--model-code path/to/file.py:build`` or ``package.module:build``.

The callable returns the module (it is called with ``num_classes=N`` when it takes that parameter
and ``--num-classes N`` is given). This is the user's code, imported and run as Python imports it: a
file is executed as a module, with its folder added to the end of ``sys.path`` so that it can import
its siblings; a ``package.module`` is imported from ``sys.path`` (the current folder added last).
Resolving imports it, builds the module and runs it once on an input of ``--input-size``: every
failure is one line naming the file and the problem. The number of classes is the width of that
output. Identity: the sha256 of the file (a package module: of its own file) and the callable's name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from perfkit.errors import UsageError
from perfkit.zoo import sources as S
from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import for_own_model
from perfkit.zoo.spec import ModelSpec

NAME = "code"
# A code model's weights when no file is given: whatever its callable made, built under a fixed seed.
BUILT = W.WeightsRef("built", "as the callable built them", f"built:seed{W.RANDOM_SEED}")


def _claims(request: S.Request) -> bool:
    return request.model_code is not None


def _resolve(request: S.Request) -> ModelSpec:
    text = request.model_code
    where, fn, is_file = _parse(text)
    if request.input_size is None:
        raise UsageError(f"--model-code {text} needs --input-size C,H,W (the input your module takes, e.g. 3,224,224)")
    size = S.input_size(request, None)
    module, sha = _import(where, is_file, text)
    takes = _takes_num_classes(_callable(module, fn, text))
    options = (("num_classes", request.num_classes),) if takes and request.num_classes is not None else ()
    arch = f"{Path(where).expanduser().resolve() if is_file else where}:{fn}"
    display = f"{Path(where).name if is_file else where}:{fn}"
    ref = _weights(request)
    model = _probe_build(module, fn, options, text, ref if ref.kind == "file" else None, request, takes)
    why = (f"although it was built with num_classes={request.num_classes}" if options
           else "and its callable takes no num_classes parameter to pass it on")
    num_classes = probe_outputs(model, size, f"--model-code {text}", request.num_classes, why)
    spec = ModelSpec(name=display, source=NAME, arch=arch, weights=ref, input_size=size, num_classes=num_classes,
                     preprocess=S.preprocess(for_own_model(size), request, size), builder=construct,
                     content=f"sha256:{sha}:{fn}", options=options)
    return S.named(spec, display, user=True, native_classes=None)


def _parse(text: str) -> tuple[str, str, bool]:
    """``(file or module, callable, is a file)`` of ``FILE.py:CALLABLE`` / ``package.module:CALLABLE``."""
    where, sep, fn = text.strip().rpartition(":")
    if not sep or not where or not all(part.isidentifier() for part in fn.split(".")):
        raise UsageError(f"--model-code {text}: name the callable that returns the module too: FILE.py:CALLABLE or "
                         "package.module:CALLABLE (e.g. net.py:build)")
    return where, fn, where.endswith(".py") or "/" in where or os.sep in where


def _weights(request: S.Request) -> W.WeightsRef:
    if request.weights_file:
        return W.checkpoint_ref(request.weights, ema=request.ema)[0]
    if request.ema:
        raise UsageError("--ema picks the EMA weights of a checkpoint file: pass --weights FILE")
    if request.weights == "random":
        return W.RANDOM
    if request.weights in ("default", "auto"):
        return BUILT
    raise UsageError(f"--model-code takes --weights FILE (a checkpoint), random, or default (as the callable builds "
                     f"it), not '{request.weights}'")


def _takes_num_classes(factory) -> bool:
    try:
        return "num_classes" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import(where: str, is_file: bool, text: str) -> tuple[ModuleType, str]:
    """The module (imported once per content) and the sha256 of its file."""
    if not is_file:
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            missing = isinstance(exc, ModuleNotFoundError) and exc.name and where.startswith(exc.name)
            why = f"there is no module '{exc.name}' on sys.path" if missing else f"importing it raised {_first_line(exc)}"
            raise UsageError(f"--model-code {text}: {why}") from None
        file = getattr(module, "__file__", None)
        return module, W.sha256_of(Path(file)) if file else ""
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"--model-code {text}: {path} does not exist" if not path.exists() else
                         f"--model-code {text}: {path} is not a file")
    sha = W.sha256_of(path)
    # one module per file and content: an edited file is imported afresh, a copy elsewhere is its own module
    key = hashlib.sha256(f"{path}\0{sha}".encode()).hexdigest()[:12]
    name = f"_perfkit_code_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{key}"
    if name in sys.modules:
        return sys.modules[name], sha
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))  # its siblings import as they would beside `python file.py`
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look their module up
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise UsageError(f"--model-code {text}: importing {path} raised {_first_line(exc)}") from None
    return module, sha


def _callable(module: ModuleType, fn: str, text: str):
    obj = module
    for part in fn.split("."):
        if not hasattr(obj, part):
            defined = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__]
            names = ", ".join(defined[:6]) or "nothing callable"
            raise UsageError(f"--model-code {text}: {module.__file__ or module.__name__} has no '{fn}' "
                             f"(it defines: {names})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"--model-code {text}: '{fn}' is a {type(obj).__name__}, not a callable returning the module")
    return obj


def _call(factory, options: tuple, fn: str, text: str) -> nn.Module:
    try:
        model = factory(**dict(options))
    except Exception as exc:
        raise UsageError(f"--model-code {text}: {fn}() raised {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model-code {text}: {fn}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _probe_build(module, fn, options, text, ref, request: S.Request, takes: bool) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(W.RANDOM_SEED)
        model = _call(_callable(module, fn, text), options, fn, text)
    if ref is not None:
        state = W.read_checkpoint(ref.value, ema=ref.ema).state
        # --num-classes can fix a head that does not fit only where the callable takes num_classes
        W.apply_state(model, state, request.weights, name=f"{fn}()'s module",
                      classes_flag="--num-classes" if takes else None)
    return model.eval()


def probe_outputs(model: nn.Module, size: tuple[int, int, int], what: str, num_classes: int | None, why: str) -> int:
    """The logits' width, from one forward pass on a seeded input of ``size``; ``what`` names the model in
    messages, ``why`` says why an output width other than ``num_classes`` is not fixed for the user."""
    shape = "×".join(map(str, (1, *size)))
    x = torch.randn((1, *size), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise UsageError(f"{what}: the module fails on a {shape} input (--input-size "
                         f"{','.join(map(str, size))}): {_first_line(exc)}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise UsageError(f"{what}: the module returns {got} for a {shape} input; perfkit needs one "
                         "logits tensor of shape (batch, classes)")
    if num_classes is not None and out.shape[1] != num_classes:
        raise UsageError(f"{what}: the module has {out.shape[1]} outputs, not --num-classes {num_classes}, {why}")
    return int(out.shape[1])


def construct(spec: ModelSpec) -> nn.Module:
    where, _, fn = spec.arch.rpartition(":")
    is_file = where.endswith(".py") or os.sep in where
    module, sha = _import(where, is_file, spec.arch)
    if spec.content != f"sha256:{sha}:{fn}":
        raise UsageError(f"--model-code {spec.arch}: the file changed since the model was resolved (its sha256 is "
                         "not the one this run recorded); run the command again")
    model = _call(_callable(module, fn, spec.arch), spec.options, fn, spec.arch)
    if spec.weights.kind == "file":
        S.load_file_weights(model, spec)
    return model


SOURCE = S.Source(name=NAME, hint="--model-code FILE.py:CALLABLE or package.module:CALLABLE (your own nn.Module)",
                  claims=_claims, resolve=_resolve)
