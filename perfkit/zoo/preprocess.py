"""Eval preprocessing taken from the weights, never hand-copied.

torchvision: ``weights.transforms()`` (resize, crop, interpolation, antialias, mean/std).
timm: the model's pretrained config (input size, crop_pct, interpolation, mean/std).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class EvalTransform:
    """Resize the short side to ``resize_size``, center-crop ``crop_size``, scale to [0,1], normalise."""

    resize_size: int
    crop_size: int
    interpolation: str = "bilinear"  # name of torchvision.transforms.InterpolationMode
    antialias: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    source: str = "torchvision weights.transforms()"
    overrides: tuple[str, ...] = ()  # fields the user changed on purpose; recorded in results

    def with_overrides(self, **changes) -> "EvalTransform":
        """A copy with user overrides applied and remembered (``--mean/--std/--resize/--crop``)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        return replace(self, **changes, overrides=tuple(sorted(set(self.overrides) | changes.keys())))

    def key(self) -> str:
        """Identity of the decode+resize+crop part (what a uint8 tensor cache depends on)."""
        return f"r{self.resize_size}-c{self.crop_size}-{self.interpolation}-aa{int(self.antialias)}"

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"resize {self.resize_size} ({self.interpolation}{', antialias' if self.antialias else ''}) → "
            f"center crop {self.crop_size} → mean {list(self.mean)} std {list(self.std)}"
            + (f"  [overridden: {', '.join(self.overrides)}]" if self.overrides else "")
        )

    def resize_crop(self):
        """Resize the short side, then center-crop: the one eval geometry (PIL image or uint8 tensor in)."""
        from torchvision.transforms import v2

        return v2.Compose([
            v2.Resize(self.resize_size, interpolation=_mode(self.interpolation), antialias=self.antialias),
            v2.CenterCrop(self.crop_size),
        ])

    def pil_to_uint8(self):
        """PIL image → uint8 CHW tensor (resize + crop), the cacheable part.

        Resize and crop run on the PIL image, as ``weights.transforms()`` does on a PIL input:
        resizing a uint8 tensor instead differs by one grey level in places, enough to move a
        published top-1 count.
        """
        from torchvision.transforms import v2

        return v2.Compose([self.resize_crop(), v2.PILToTensor()])

    def ten_crop_uint8(self):
        """PIL image → uint8 (10, C, H, W): four corners and center, and their mirror images."""
        import torch
        from torchvision.transforms import v2

        resize = v2.Resize(self.resize_size, interpolation=_mode(self.interpolation), antialias=self.antialias)
        ten, to_tensor = v2.TenCrop(self.crop_size), v2.PILToTensor()
        return lambda img: torch.stack([to_tensor(c) for c in ten(resize(img))])

    def normalize(self, batch_uint8, device=None):
        """uint8 NCHW (or CHW) → float32 normalised, exactly as ``weights.transforms()`` does.

        With ``device`` the uint8 tensor is moved first (a quarter of the float32 traffic) and
        normalised there with the same arithmetic.
        """
        import torch

        x = batch_uint8 if device is None else batch_uint8.to(device, non_blocking=True)
        x = x.to(torch.float32).div_(255.0)
        mean, std = _mean_std(tuple(self.mean), tuple(self.std), str(x.device))
        return (x - mean) / std

    def __call__(self, image):
        """PIL image → normalised float CHW tensor."""
        return self.normalize(self.pil_to_uint8()(image))


@functools.lru_cache(maxsize=32)
def _mean_std(mean: tuple[float, ...], std: tuple[float, ...], device: str):
    """mean and std as (C, 1, 1) float32 tensors on ``device``, made once per device: a new CUDA
    tensor per batch is a host-to-device copy from pageable memory, which waits for the GPU."""
    import torch

    with torch.inference_mode(False):  # cached: usable later outside inference mode too (training)
        return (torch.tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1),
                torch.tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1))


def _mode(name: str):
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(name.lower())


def from_torchvision(weights) -> EvalTransform:
    t = weights.transforms()
    crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
    resize = t.resize_size[0] if isinstance(t.resize_size, (list, tuple)) else t.resize_size
    return EvalTransform(
        resize_size=int(resize),
        crop_size=int(crop),
        interpolation=t.interpolation.value,
        antialias=bool(t.antialias),
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        source=f"torchvision {weights}.transforms()",
    )


def from_timm(pretrained_cfg: dict, name: str) -> EvalTransform:
    _, h, _ = pretrained_cfg.get("input_size", (3, 224, 224))
    crop_pct = pretrained_cfg.get("crop_pct", 0.875)
    return EvalTransform(
        resize_size=int(math.floor(h / crop_pct)),
        crop_size=int(h),
        interpolation=pretrained_cfg.get("interpolation", "bilinear"),
        antialias=True,
        mean=tuple(float(v) for v in pretrained_cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in pretrained_cfg.get("std", (0.229, 0.224, 0.225))),
        source=f"timm pretrained_cfg of {name} (crop_pct {crop_pct})",
    )


# CIFAR-10 statistics, for LeNet-5 (which has no published ImageNet weights).
CIFAR10 = EvalTransform(
    resize_size=32, crop_size=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    source="CIFAR-10 channel statistics",
)
