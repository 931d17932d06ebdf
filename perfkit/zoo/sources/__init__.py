"""Model sources: how what the user names becomes a ``ModelSpec``. One module per source, one line
each in ``SOURCE_MODULES``.

Each module listed defines ``SOURCE``, a ``Source``: its name (``ModelSpec.source``), a hint of how
a user names one (for ``--help`` and the unknown-model message), ``claims`` (does this request
name one of mine?) and ``resolve`` (request → spec). Sources are asked in the order listed; the
first that claims a request resolves it. The spec's identity is ``ModelSpec.identity``, a hash of
the fields the source fills (``content`` says what ``arch`` does not: a code file's hash).
``register`` refuses a second source of the same name.

``resolve`` is the one entry point; its keywords mirror the command-line flags (``--weights``,
``--num-classes``, ``--input-size``, ``--model-code``, ``--reference``, ``--mean`` ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from perfkit.errors import UsageError
from perfkit.registry import Registry
from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import EvalTransform
from perfkit.zoo.spec import ModelSpec

__all__ = ["INTERPOLATIONS", "Request", "Source", "all_sources", "get", "register", "resolve", "resolve_request",
           "unregister"]

# Adding a model source: write perfkit/zoo/sources/<name>.py defining SOURCE, and add its line here
# (before torchvision, which claims every torchvision architecture name).
SOURCE_MODULES = (
    "perfkit.zoo.sources.module",  # first: the others read a request's text as a string
    "perfkit.zoo.sources.code",
    "perfkit.zoo.sources.timm",
    "perfkit.zoo.sources.lenet5",
    "perfkit.zoo.sources.onnx",
    "perfkit.zoo.sources.openvino_ir",
    "perfkit.zoo.sources.torchscript_file",
    "perfkit.zoo.sources.aoti_package",
    "perfkit.zoo.sources.tensorrt_engine",
    "perfkit.zoo.sources.torchvision",
)

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class Request:
    """What the user asked for: the ``resolve`` keywords, checked.

    ``preprocess``: the preprocessing fields the user set (EvalTransform names: ``mean``, ``std``,
    ``resize_size``, ``crop_size``, ``interpolation``); ``input_size`` an int N means N×N.
    """

    text: str | nn.Module | None = None  # an nn.Module: the Python API's (perfkit.zoo.sources.module)
    weights: str = "default"
    num_classes: int | None = None
    input_size: tuple[int, int, int] | int | None = None
    model_code: str | None = None
    preprocess: dict = field(default_factory=dict)
    ema: bool = False
    reference: str | None = None

    @property
    def weights_file(self) -> bool:
        """``--weights`` names a file (a path, or a name with a checkpoint's suffix), not a keyword."""
        text = self.weights
        if text in ("default", "auto", "random"):
            return False
        return any(sep in text for sep in ("/", "\\")) or text.endswith((".pt", ".pth", ".bin", ".ckpt")) or (
            Path(text).expanduser().exists())


@dataclass(frozen=True)
class Source:
    """One model source.

    Attributes:
        name: ``ModelSpec.source`` of its specs.
        hint: how a user names one of its models (``timm:<name>``).
        claims: whether a request names one of its models (cheap: no file is read).
        resolve: the request → its spec; a ``PerfkitError`` (one line, exit 2) for bad input.
    """

    name: str
    hint: str
    claims: Callable[[Request], bool]
    resolve: Callable[[Request], ModelSpec]


REGISTRY: Registry[Source] = Registry("model source", Source, SOURCE_MODULES, "SOURCE")
register, unregister, get, all_sources = REGISTRY.register, REGISTRY.unregister, REGISTRY.get, REGISTRY.all


def resolve(text: str | nn.Module | None = None, *, weights: str | None = "default", num_classes: int | None = None,
            input_size: tuple[int, int, int] | int | None = None, model_code: str | None = None,
            mean: Sequence[float] | None = None, std: Sequence[float] | None = None, resize: int | None = None,
            crop: int | None = None, interpolation: str | None = None, ema: bool = False,
            reference: str | None = None) -> ModelSpec:
    """The spec of a model, whatever its source.

    Args:
        text: a zoo name (``resnet50``, ``resnet50:IMAGENET1K_V2``, ``timm:convnext_tiny``, ``lenet5``),
            a path to an ONNX file (``model.onnx``, a str or a Path), or an ``nn.Module`` (with
            ``input_size``); None with ``model_code``.
        weights: ``default`` (pretrained), ``auto`` (pretrained if cached, else random), ``random``, a
            weights enum name, or a checkpoint file (read now: a file that does not fit is refused here).
        num_classes: the classifier's outputs when it is not the architecture's own (a checkpoint's head).
        input_size: C, H, W (or N for N×N); required with ``model_code``.
        model_code: ``path/to/file.py:CALLABLE`` or ``package.module:CALLABLE`` returning the nn.Module
            (the user's code: imported and run now).
        mean, std, resize, crop, interpolation: preprocessing overrides (recorded as such).
        ema: use a checkpoint's EMA weights (``state_dict_ema``/``model_ema``).
        reference: what an engine ``text`` names (``model.xml``, ``model.pt``, ``model.pt2``, ``model.engine``)
            is judged against: an ONNX file, a zoo name or ``FILE.py:CALLABLE``, resolved with the other
            keywords (an engine carries its own weights: ``weights``, ``num_classes`` and ``ema`` are the
            reference's). Only an engine takes one.

    Raises:
        PerfkitError: one line naming what is wrong (exit 2).
    """
    request = _request(text, weights, num_classes, input_size, model_code, ema,
                       {"mean": mean, "std": std, "resize_size": resize, "crop_size": crop,
                        "interpolation": interpolation}, reference)
    return resolve_request(request)


def resolve_request(request: Request) -> ModelSpec:
    """The spec of a checked request: the first source that claims it resolves it."""
    for source in all_sources():
        if source.claims(request):
            spec = source.resolve(request)
            if request.reference is not None and not spec.engine:
                raise UsageError(f"--reference {request.reference} names what an engine someone built (model.xml, "
                                 f".pt, .pt2, .engine) is judged against; {spec.name} is judged against its own "
                                 f"{spec.reference_runtime} fp32: drop --reference")
            return spec
    hints = "; ".join(s.hint for s in all_sources())
    raise UsageError(f"unknown model '{request.text}'. A model is one of: {hints}")


def _request(text, weights, num_classes, input_size, model_code, ema, preprocess: dict,
             reference: str | None = None) -> Request:
    if text is not None and model_code is not None:
        named = text if isinstance(text, str) else f"an nn.Module {type(text).__name__}"
        raise UsageError(f"both a MODEL ('{named}') and --model-code ('{model_code}') name the model: give one")
    if text is None and model_code is None:
        raise UsageError("no model given: name a MODEL (a zoo name) or pass --model-code FILE.py:CALLABLE")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise UsageError(f"--num-classes must be a positive integer, got {num_classes}")
    text = os.fspath(text) if isinstance(text, os.PathLike) else text
    return Request(text=text.strip() if isinstance(text, str) else text, weights=(weights or "default").strip(),
                   num_classes=num_classes, input_size=_input_size(input_size),
                   model_code=model_code, preprocess=_preprocess(preprocess), ema=bool(ema),
                   reference=None if reference is None else reference.strip())


def _input_size(value) -> tuple[int, int, int] | int | None:
    if value is None:
        return None
    dims = (value,) if isinstance(value, int) else _numbers(value, int) if isinstance(value, str) else tuple(value)
    if len(dims) not in (1, 3) or not all(isinstance(d, int) and d >= 1 for d in dims):
        raise UsageError(f"--input-size must be C,H,W or N (N×N), positive integers; got {value!r}")
    return dims[0] if len(dims) == 1 else dims


def _preprocess(given: dict) -> dict:
    out = {k: v for k, v in given.items() if v is not None}
    for name in ("mean", "std"):
        if name in out:
            values = _numbers(out[name], float)
            if len(values) != 3 or (name == "std" and 0.0 in values):
                raise UsageError(f"--{name} takes three numbers (R,G,B){', none zero' if name == 'std' else ''}, "
                                 f"got {out[name]!r}")
            out[name] = values
    for name, flag in (("resize_size", "--resize"), ("crop_size", "--crop")):
        if name in out and (not isinstance(out[name], int) or out[name] < 1):
            raise UsageError(f"{flag} must be a positive integer, got {out[name]!r}")
    if "interpolation" in out and out["interpolation"] not in INTERPOLATIONS:
        raise UsageError(f"--interpolation must be one of {', '.join(INTERPOLATIONS)}, got {out['interpolation']!r}")
    return out


def _numbers(value, kind) -> tuple:
    """``"3,224,224"`` or ``(3, 224, 224)`` as numbers of ``kind`` (ints stay as given: 3.5 is no size);
    () when they are not numbers."""
    parts = value.replace("x", ",").split(",") if isinstance(value, str) else value
    try:
        return tuple(kind(v) if isinstance(v, str) or kind is float else v for v in parts)
    except (TypeError, ValueError):
        return ()


# -- what the sources share ---------------------------------------------------------------------------


def existing_file(text: str, what: str, hint: str) -> Path:
    """``text`` as the absolute path of an existing file; a UsageError naming it otherwise (``no such
    <what>``, or ``pass <hint> itself`` for a folder)."""
    path = Path(text).expanduser().resolve()
    if not path.exists():
        raise UsageError(f"{text}: no such {what}")
    if not path.is_file():
        raise UsageError(f"{text} is not a file (pass {hint} itself)")
    return path


def file_input_size(request: Request, recorded: tuple, path: Path, *, open_hint: str, fixed_in: str,
                    fallback: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """C, H, W of a model given as a file: what the file records (``recorded``: each dimension or None), with
    ``--input-size`` (or ``--crop``, else ``fallback``) for what it leaves open; a size that contradicts it
    is refused naming both (``fixed_in``: where the file fixes it), an open one without a flag asks for it."""
    given, crop = request.input_size, request.preprocess.get("crop_size")
    if isinstance(given, int) or (given is None and crop is not None):
        side = crop if given is None else given
        given = (recorded[0] or 3, side, side)
    if given is not None and crop is not None and given[1:] != (crop, crop):
        raise UsageError(f"--crop {crop} and --input-size {','.join(map(str, given))} disagree: the center crop is "
                         "the model's input")
    shown = "×".join("?" if d is None else str(d) for d in recorded)
    size = given or (tuple(recorded) if None not in recorded else fallback)
    if size is None:
        raise UsageError(f"{path}: {open_hint} ({shown}): pass --input-size C,H,W (e.g. {recorded[0] or 3},224,224)")
    if any(known is not None and known != got for known, got in zip(recorded, size)):
        raise UsageError(f"{path} takes {shown} inputs ({fixed_in}), not {'×'.join(map(str, size))} "
                         "(--input-size / --crop)")
    return tuple(size)


def first_line(exc: BaseException) -> str:
    """``Type: the first line of its message`` (a library's multi-line error, for a one-line message)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__



def input_size(request: Request, native: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    """The input size asked for (``--input-size``, or a ``--crop`` without it), else ``native``."""
    size, crop = request.input_size, request.preprocess.get("crop_size")
    if isinstance(size, int):
        size = ((native or (3,))[0], size, size)
    if size is None and crop is not None and native is not None:
        size = (native[0], crop, crop)
    if size is not None and crop is not None and size[1:] != (crop, crop):
        raise UsageError(f"--crop {crop} and --input-size {','.join(map(str, size))} disagree: the center crop is "
                         "the model's input")
    return size or native


def preprocess(transform: EvalTransform, request: Request, size: tuple[int, int, int],
               native: tuple[int, int, int] | None = None) -> EvalTransform:
    """``transform`` with the user's overrides, recorded as such. An ``--input-size`` other than
    ``native`` without ``--crop`` sets the crop to it and scales the resize with it (a ``--crop``
    alone changes only the crop, as it always has)."""
    changes = dict(request.preprocess)
    _, h, w = size
    if "crop_size" not in changes and (h != transform.crop_size or (native is not None and size != native)):
        changes.setdefault("crop_size", h)
        changes.setdefault("resize_size", round(h * transform.resize_size / transform.crop_size))
    out = transform.with_overrides(**changes)
    if h != w and not out.unsupported:
        out = replace(out, unsupported=f"the input {h}×{w} is not square (perfkit's eval transform crops squares)")
    return out


def named(spec: ModelSpec, display: str, *, user: bool, native_classes: int | None) -> ModelSpec:
    """``spec`` with its name and label: the zoo name for zoo and random weights; for a model the user
    provides (``user``: a checkpoint, code) or a non-default head, ``display@<identity[:8]>``."""
    details = [spec.weights.describe()] if spec.weights.kind in ("file", "random") else []
    if spec.num_classes != native_classes:
        details.append(f"{spec.num_classes} classes")
    if user or spec.num_classes != native_classes:
        name = f"{display}@{spec.identity[:8]}"
    else:
        name = display
    label = f"{display} ({', '.join(details)})" if details else display
    return replace(spec, name=name, label=label)


def checkpoint(request: Request, construct: Callable[[], nn.Module], model: str,
               optional_prefixes: tuple[str, ...] = ()) -> W.WeightsRef:
    """The ``--weights`` file, read and fitted now to the model ``construct`` builds (on the meta
    device: shapes without memory or initialisation), so that a checkpoint that does not fit is
    one line before anything runs."""
    ref, ckpt = W.checkpoint_ref(request.weights, ema=request.ema)
    W.fit_state(ckpt.state, state_shapes(construct), source=request.weights, model=model,
                optional_prefixes=optional_prefixes)
    return ref


def state_shapes(construct: Callable[[], nn.Module]) -> dict[str, tuple]:
    try:
        with torch.device("meta"):
            model = construct()
    except (RuntimeError, NotImplementedError):  # a builder that computes on its tensors: build it for real
        with torch.random.fork_rng(devices=[]):
            model = construct()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def model_with_classes(name: str, request: Request, native_classes: int) -> str:
    """How messages name the model: ``resnet18``, or ``resnet18 with --num-classes 5``."""
    n = request.num_classes
    return name if n is None or n == native_classes else f"{name} with --num-classes {n}"


def load_file_weights(model: nn.Module, spec: ModelSpec, optional_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``spec``'s checkpoint file into ``model`` (the entry chosen when it was resolved)."""
    state = W.read_checkpoint(spec.weights.value, ema=spec.weights.ema).state
    W.apply_state(model, state, spec.weights.value, optional_prefixes, name=spec.name)
