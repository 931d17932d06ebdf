"""Where weights come from: the torch hub cache, a file, the Hugging Face cache, or a seeded random init.

Pretrained files are never downloaded where there is no network: an offline cache miss is a
``WeightsError`` naming the path the file is expected at and the two ways around it.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from perfkit.errors import WeightsError

RANDOM_SEED = 0  # random weights are seeded so every process builds the same model


@dataclass(frozen=True)
class WeightsRef:
    """What weights a model uses.

    kind: ``pretrained`` (a torchvision enum or timm's pretrained tag), ``file`` or ``random``.
    value: the enum's full name (``ResNet50_Weights.IMAGENET1K_V2``), the file path, or ``random``.
    identity: short stable identity for caches and records (enum name, ``file:<sha256[:16]>``, ``random:seed0``).
    """

    kind: str
    value: str
    identity: str

    @property
    def is_random(self) -> bool:
        return self.kind == "random"


RANDOM = WeightsRef("random", "random", f"random:seed{RANDOM_SEED}")


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise WeightsError(f"weights path {path} is a directory: pass the state-dict file inside it")
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")


def file_ref(path: str | os.PathLike) -> WeightsRef:
    path = Path(path).expanduser()
    _check_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return WeightsRef("file", str(path.resolve()), f"file:{digest.hexdigest()[:16]}")


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


def load_state_file(path: str | os.PathLike) -> dict:
    """A state dict from a file: a bare state dict, or a checkpoint holding one under state_dict/model."""
    path = Path(path)
    _check_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt/truncated/non-torch file
        # torch's own text may suggest weights_only=False, which would run code from the file: keep its first sentence.
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        raise WeightsError(f"cannot read weights file {path}: {reason} (not a PyTorch state dict, or a truncated one)") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path} does not hold a state dict (a mapping of names to tensors, "
            f"or a checkpoint with one under 'state_dict' or 'model')"
        )
    # Checkpoints saved from DistributedDataParallel prefix every key with "module.".
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def apply_state(model: torch.nn.Module, state: dict, source: str, optional_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``state`` strictly, except keys under ``optional_prefixes`` (e.g. auxiliary heads)."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when strict=False
        raise WeightsError(f"weights from {source} do not fit {type(model).__name__}: {str(exc).strip()[:600]}") from None
    missing = [k for k in result.missing_keys if not k.startswith(optional_prefixes)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(optional_prefixes)]
    if missing or unexpected:
        def few(keys):
            return ", ".join(keys[:5]) + (f" … ({len(keys)} in all)" if len(keys) > 5 else "")

        detail = []
        if missing:
            detail.append(f"missing keys: {few(missing)}")
        if unexpected:
            detail.append(f"unexpected keys: {few(unexpected)}")
        raise WeightsError(f"weights from {source} do not fit {type(model).__name__}: " + "; ".join(detail))
