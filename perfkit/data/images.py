"""Plain image folders: find the images under a folder, and load some through a model's preprocessing.

Any folder works: an ImageFolder-like tree, a flat folder, or one of the ImageNet-val layouts
``perfkit.data.imagenet`` reads (their images are found the same way; labels are not needed here).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from perfkit.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def image_files(root: str | Path, what: str = "--data") -> list[Path]:
    """Image files under ``root`` (any depth), sorted by path; ``what`` names the option in errors."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{what} {root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return files


def load_images(paths: Iterable[Path], transform) -> torch.Tensor:
    """``(N, C, H, W)`` float32: each image through ``transform`` (an ``EvalTransform``: PIL → CHW).

    An unreadable image is an error naming the file, never skipped or replaced.
    """
    from PIL import Image, UnidentifiedImageError

    tensors = []
    for path in paths:
        try:
            with Image.open(path) as img:
                tensors.append(transform(img.convert("RGB")))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DatasetError(f"cannot read image {path}: {exc}") from None
    return torch.stack(tensors)
