"""Eval preprocessing taken from the weights, never hand-copied.

torchvision: ``weights.transforms()`` (resize, crop, interpolation, antialias, mean/std).
timm: the transform timm's own ``create_transform(**resolve_data_config(...))`` builds, read back.
The user's own model: explicit flags, recorded, over a stated default (``for_own_model``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class EvalTransform:
    """Resize the short side to ``resize_size``, center-crop ``crop_size``, scale to [0,1], normalise.

    ``crop_mode`` ``squash`` (timm's) resizes both sides to ``resize_size`` instead, ignoring the
    aspect ratio. ``unsupported``, when set, says why perfkit cannot reproduce the model's
    preprocessing on images (timm's ``border`` crop mode, a non-square input): the model still runs
    on synthetic inputs, and feeding it images is refused with that reason.
    """

    resize_size: int
    crop_size: int
    interpolation: str = "bilinear"  # name of torchvision.transforms.InterpolationMode
    antialias: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    source: str = "torchvision weights.transforms()"
    overrides: tuple[str, ...] = ()  # fields the user changed on purpose; recorded in results
    crop_mode: str = "center"  # or "squash"
    unsupported: str = ""

    def with_overrides(self, **changes) -> "EvalTransform":
        """A copy with user overrides applied and remembered (``--mean/--std/--resize/--crop/--interpolation``)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        return replace(self, **changes, overrides=tuple(sorted(set(self.overrides) | changes.keys())))

    def key(self) -> str:
        """Identity of the decode+resize+crop part (what a uint8 tensor cache depends on)."""
        mode = "" if self.crop_mode == "center" else f"-{self.crop_mode}"
        return f"r{self.resize_size}-c{self.crop_size}-{self.interpolation}-aa{int(self.antialias)}{mode}"

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        resize = f"resize {self.resize_size}" + (f"×{self.resize_size} (squash, " if self.crop_mode == "squash" else " (")
        return (
            f"{resize}{self.interpolation}{', antialias' if self.antialias else ''}) → "
            f"center crop {self.crop_size} → mean {list(self.mean)} std {list(self.std)}"
            + (f"  [overridden: {', '.join(self.overrides)}]" if self.overrides else "")
            + (f"  [not reproducible on images: {self.unsupported}]" if self.unsupported else "")
        )

    def _resize(self):
        from torchvision.transforms import v2

        if self.unsupported:
            from perfkit.errors import UsageError

            raise UsageError(f"cannot preprocess images for this model: {self.unsupported}")
        size = [self.resize_size, self.resize_size] if self.crop_mode == "squash" else self.resize_size
        return v2.Resize(size, interpolation=_mode(self.interpolation), antialias=self.antialias)

    def resize_crop(self):
        """Resize the short side (both, squash), then center-crop: the one eval geometry (PIL image or uint8 tensor in)."""
        from torchvision.transforms import v2

        return v2.Compose([self._resize(), v2.CenterCrop(self.crop_size)])

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

        resize = self._resize()
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


def from_timm(data_config: dict, name: str) -> EvalTransform:
    """The eval transform timm builds for ``data_config`` (``timm.data.resolve_data_config``'s result).

    The geometry is read back from timm's own ``create_transform`` (sizes as timm computes them from
    crop_pct, crop mode, test size), so it cannot drift from timm's; ``center`` and ``squash`` crop
    modes are reproduced exactly, anything else is marked ``unsupported`` with what timm built.
    """
    from timm.data import create_transform

    steps = create_transform(**data_config, is_training=False).transforms
    kinds = [type(t).__name__ for t in steps]
    mode, (_, h, w) = data_config.get("crop_mode", "center"), data_config["input_size"]
    base = EvalTransform(
        resize_size=int(math.floor(h / data_config["crop_pct"])), crop_size=int(h),
        interpolation=str(data_config["interpolation"]), mean=tuple(float(v) for v in data_config["mean"]),
        std=tuple(float(v) for v in data_config["std"]), crop_mode=str(mode),
        source=f"timm create_transform(**resolve_data_config()) of {name} (crop_pct {data_config['crop_pct']}, "
               f"crop_mode {mode})")
    if kinds[:2] != ["Resize", "CenterCrop"] or h != w:
        return replace(base, unsupported=f"timm's {' → '.join(kinds[:2])} (crop_mode {mode}, input {h}×{w}) is not "
                                         "perfkit's resize + square center crop")
    resize, crop = steps[0], steps[1]
    size, crop_size = resize.size, crop.size
    return replace(base, resize_size=int(size if isinstance(size, int) else size[0]),
                   crop_size=int(crop_size if isinstance(crop_size, int) else crop_size[0]),
                   interpolation=resize.interpolation.value, antialias=bool(resize.antialias),
                   crop_mode="center" if isinstance(size, int) else "squash")


# The user's own model: a stated default that every output shows (flags override it, recorded).
OWN_MODEL_CROP_PCT = 0.875


def for_own_model(input_size: tuple[int, int, int]) -> EvalTransform:
    """Default preprocessing of a ``--model-code`` model: ImageNet mean/std, resize = crop / 0.875, bilinear."""
    _, h, w = input_size
    out = EvalTransform(resize_size=int(math.floor(h / OWN_MODEL_CROP_PCT)), crop_size=int(h),
                        source="perfkit's default for your own model: ImageNet mean/std, resize = crop / 0.875, "
                               "bilinear (set --mean/--std/--resize/--crop/--interpolation to match your training)")
    return out if h == w else replace(out, unsupported=f"the input {h}×{w} is not square")


# CIFAR-10 statistics, for LeNet-5 (which has no published ImageNet weights).
CIFAR10 = EvalTransform(
    resize_size=32, crop_size=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    source="CIFAR-10 channel statistics",
)
