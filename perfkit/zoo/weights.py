"""Where weights come from: the torch hub cache, a file, the Hugging Face cache, or a seeded random init.

Pretrained files are never downloaded where there is no network: an offline cache miss is a
``WeightsError`` naming the path the file is expected at and the two ways around it.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from perfkit.errors import WeightsError

RANDOM_SEED = 0  # random weights are seeded so every process builds the same model


@dataclass(frozen=True)
class WeightsRef:
    """What weights a model uses.

    kind: ``pretrained`` (a torchvision enum or timm's pretrained tag), ``file``, ``random``,
        ``built`` (a ``--model-code`` module's own, as its callable made them, seeded), or ``graph``
        (an ONNX file's own initializers: ``onnx:<sha256[:16]>`` of the file).
    value: the enum's full name (``ResNet50_Weights.IMAGENET1K_V2``), the file path, or ``random``.
    identity: short stable identity for caches and records (enum name, ``file:<sha256[:16]>``, with
        ``+ema`` when a checkpoint's EMA weights are used, ``random:seed0``).
    entry: a checkpoint file's entry the weights are under (``model``, ``state_dict_ema``; ``""``: bare).
    """

    kind: str
    value: str
    identity: str
    entry: str = ""

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    @property
    def ema(self) -> bool:
        return self.entry in EMA_ENTRIES

    def describe(self) -> str:
        """Short text for labels: ``finetuned.pth``, ``finetuned.pth EMA``, ``random weights``."""
        if self.kind == "file":
            return Path(self.value).name + (" EMA" if self.ema else "")
        return "random weights" if self.is_random else self.identity


RANDOM = WeightsRef("random", "random", f"random:seed{RANDOM_SEED}")


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise WeightsError(f"weights path {path} is a directory: pass the state-dict file inside it")
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_ref(path: str | os.PathLike, *, entry: str = "") -> WeightsRef:
    """The weights of a file, identified by its content (and by the entry, when it is the EMA)."""
    path = Path(path).expanduser()
    _check_file(path)
    ema = "+ema" if entry in EMA_ENTRIES else ""
    return WeightsRef("file", str(path.resolve()), f"file:{sha256_of(path)[:16]}{ema}", entry)


def checkpoint_ref(path: str | os.PathLike, *, ema: bool = False) -> tuple[WeightsRef, Checkpoint]:
    """A checkpoint file read now (a bad file is refused before anything runs) and its reference."""
    checkpoint = read_checkpoint(path, ema=ema)
    return file_ref(path, entry=checkpoint.entry), checkpoint


def offline_by_setting() -> bool:
    """``PERFKIT_OFFLINE`` or Hugging Face's ``HF_HUB_OFFLINE`` set to 1/true/yes/on."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("PERFKIT_OFFLINE", "HF_HUB_OFFLINE"))


def network_available(host: str = "download.pytorch.org", timeout: float = 3.0) -> bool:
    """Cheap check so that an offline machine fails at once instead of hanging in a download
    (Hugging Face's client retries for about a minute before it gives up)."""
    if offline_by_setting():
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_cache_path(weights) -> Path:
    """Where ``torch.hub`` keeps a torchvision weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def load_torchvision_state(weights) -> dict:
    """State dict of a torchvision weights enum: from the hub cache, or downloaded if online."""
    path = hub_cache_path(weights)
    if path.is_file():
        return load_state_file(path)
    if network_available():
        return weights.get_state_dict(progress=True, check_hash=True)
    raise WeightsError(
        f"pretrained weights {weights} are not in the torch hub cache and this machine is offline.\n"
        f"  expected file: {path}\n"
        f"  either copy the file there, pass --weights PATH to a state dict, or pass --weights random "
        f"(random weights: accuracy is not meaningful)"
    )


# Where training scripts keep the trained weights inside a checkpoint, in the order timm's
# load_checkpoint looks (torchvision's train.py: "model"; timm and Lightning: "state_dict").
TRAINED_ENTRIES = ("state_dict", "model", "model_state_dict")
# Their exponential moving average: timm's train.py ("state_dict_ema"), torchvision's ("model_ema").
EMA_ENTRIES = ("state_dict_ema", "model_ema")
# Wrappers that prefix every key: DistributedDataParallel, torch.compile, a Lightning module's `self.model`.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
# Bookkeeping entries that are not weights: torch.optim.swa_utils.AveragedModel's counter (torchvision's EMA).
BOOKKEEPING_KEYS = ("n_averaged",)
SAVE_STATE_DICT = "save a state dict instead: torch.save(model.state_dict(), PATH)"


@dataclass(frozen=True)
class Checkpoint:
    """The weights read from a checkpoint file: the state dict and the entry it was under
    (``""`` for a bare state dict)."""

    state: dict
    entry: str = ""

    @property
    def ema(self) -> bool:
        return self.entry in EMA_ENTRIES


def load_state_file(path: str | os.PathLike) -> dict:
    """The trained weights of a checkpoint file (its EMA only when it holds nothing else)."""
    return read_checkpoint(path).state


def read_checkpoint(path: str | os.PathLike, *, ema: bool = False) -> Checkpoint:
    """A state dict from a file as training scripts write them: a bare state dict, or a checkpoint
    holding one under ``state_dict``/``model``/``model_state_dict`` (``ema``: under
    ``state_dict_ema``/``model_ema``) beside entries that are not weights (optimizer, epoch, args).

    Always ``torch.load(weights_only=True)``: a file that needs other pickled code to load is refused.
    ``argparse.Namespace`` is allowed: torchvision's and timm's train.py save their ``args`` as one,
    and rebuilding it sets attributes only, it runs no code.
    """
    import argparse

    path = Path(path)
    _check_file(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt/truncated/non-torch file
        raise WeightsError(_unreadable(path, exc)) from None
    entry, state = _entry(obj, path, ema)
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        where = f"its '{entry}' entry" if entry else "it"
        raise WeightsError(f"{path}: {where} is not a state dict (a mapping of parameter names to tensors)")
    return Checkpoint(dict(state), entry)


def _unreadable(path: Path, exc: Exception) -> str:
    text = str(exc)
    needs = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if needs:
        # torch's own text suggests weights_only=False, which would run code from the file: never echoed.
        return (f"{path} needs arbitrary pickled code to load (it holds a {needs.group(1)} object) and perfkit "
                f"loads weights with torch.load(weights_only=True): {SAVE_STATE_DICT}")
    first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else ""
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"cannot read weights file {path}: {reason} (not a PyTorch state dict, or a truncated one)"


def _entry(obj, path: Path, ema: bool) -> tuple[str, dict]:
    """(entry name, state dict) of a loaded checkpoint: the trained weights, or the EMA with ``ema``."""
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict: {SAVE_STATE_DICT}")
    found = [k for k in (*TRAINED_ENTRIES, *EMA_ENTRIES) if isinstance(obj.get(k), dict)]
    emas = [k for k in found if k in EMA_ENTRIES]
    if ema:
        if not emas:
            raise WeightsError(f"{path} has no EMA weights ({' or '.join(EMA_ENTRIES)}): drop --ema")
        return emas[0], obj[emas[0]]
    if found:  # the trained weights; the EMA only when the file holds nothing else
        return found[0], obj[found[0]]
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return "", obj
    entries = ", ".join(map(str, list(obj)[:8])) + (" …" if len(obj) > 8 else "")
    raise WeightsError(f"{path} holds no state dict: its entries are {entries} (perfkit reads a bare state dict or "
                       f"one under {', '.join((*TRAINED_ENTRIES, *EMA_ENTRIES))})")


# -- fitting a state dict to a model ------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """A state dict made to fit a model: ``state`` with ``prefix`` stripped from every key."""

    state: dict
    prefix: str = ""


def fit_state(state: dict, expected: dict[str, tuple], *, source: str, model: str,
              optional_prefixes: tuple[str, ...] = (), classes_flag: str | None = "--num-classes") -> Fit:
    """``state`` fitted to a model whose state dict has ``expected`` names → shapes.

    A wrapper prefix (``module.``, ``_orig_mod.``, ``model.``) is stripped only when every key has
    it and the stripped keys fit; keys under ``optional_prefixes`` may be missing or extra.

    Raises:
        WeightsError: one line naming ``source``: the first missing and unexpected keys (a state
            dict for another architecture), or the tensors whose shapes differ — for a classifier
            head, both shapes and the ``classes_flag`` value that fits (None: no flag can fix it).
    """
    variants = _prefix_variants({k: v for k, v in state.items() if k not in BOOKKEEPING_KEYS or k in expected})
    misfits = [(_key_misfit(s, expected, optional_prefixes), prefix, s) for prefix, s in variants]
    best = min(misfits, key=lambda m: len(m[0][0]) + len(m[0][1]))
    (missing, unexpected), prefix, chosen = best
    if missing or unexpected:
        detail = "; ".join(part for part in (_few("missing", missing), _few("unexpected", unexpected)) if part)
        raise WeightsError(f"{source} does not fit {model} (a state dict for another architecture?): {detail}")
    wrong = [(k, tuple(v.shape), tuple(expected[k])) for k, v in chosen.items()
             if k in expected and tuple(v.shape) != tuple(expected[k])]
    if wrong:
        raise WeightsError(_shape_message(wrong, source, model, classes_flag))
    return Fit(chosen, prefix)


def _prefix_variants(state: dict) -> list[tuple[str, dict]]:
    """``state`` as it is, then with each wrapper prefix that every key shares stripped, in turn."""
    out, prefix = [("", state)], ""
    while True:
        shared = next((p for p in WRAPPER_PREFIXES if state and all(k.startswith(p) for k in state)), None)
        if shared is None:
            return out
        prefix += shared
        state = {k[len(shared):]: v for k, v in state.items()}
        out.append((prefix, state))


def _key_misfit(state: dict, expected: dict, optional: tuple[str, ...]) -> tuple[list[str], list[str]]:
    missing = [k for k in expected if k not in state and not k.startswith(optional)]
    unexpected = [k for k in state if k not in expected and not k.startswith(optional)]
    return missing, unexpected


def _few(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    return f"{what} keys " + ", ".join(keys[:4]) + (f" … ({len(keys)} in all)" if len(keys) > 4 else "")


def _dims(shape: tuple) -> str:
    return "×".join(map(str, shape)) or "a scalar"


def _shape_message(wrong: list[tuple], source: str, model: str, classes_flag: str | None) -> str:
    key, have, want = wrong[0]
    outputs = {h[0] for _, h, _ in wrong if h}
    head = (len(outputs) == 1 and all(h and w and h[1:] == w[1:] and h[0] != w[0] for _, h, w in wrong))
    if head:  # only the classifier's output count differs: the checkpoint has another head
        fix = f"pass {classes_flag} {outputs.pop()}" if classes_flag else f"the checkpoint has {outputs.pop()} classes"
        return f"{source}: {key} is {_dims(have)} but {model} has {_dims(want)} — {fix}"
    more = f" (and {len(wrong) - 1} more tensor(s))" if len(wrong) > 1 else ""
    return f"{source} does not fit {model}: {key} is {_dims(have)} but {model} has {_dims(want)}{more}"


def apply_state(model: torch.nn.Module, state: dict, source: str, optional_prefixes: tuple[str, ...] = (), *,
                name: str | None = None, classes_flag: str | None = "--num-classes") -> str:
    """Load ``state`` into ``model`` once it fits (``fit_state``); returns the wrapper prefix stripped."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fit = fit_state(state, expected, source=source, model=name or type(model).__name__,
                    optional_prefixes=optional_prefixes, classes_flag=classes_flag)
    model.load_state_dict(fit.state, strict=False)  # strict on what matters: fit_state checked every key
    return fit.prefix
