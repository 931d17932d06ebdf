"""Small ImageNet-val look-alikes made of generated JPEGs, for tests and benchmarks.

``make_imagenet_folder`` writes the same images (same pixels, same file names, same labels) in any
of the layouts ``perfkit.data.imagenet`` reads, so a test can check that every layout gives the
same counts. Images are deterministic random blobs and noise: a model cannot score them all alike,
and no two are identical. File names are numbered ``ILSVRC2012_val_XXXXXXXX.JPEG`` with the classes
interleaved as in the real validation set.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Layouts this module writes; the first word is the layout perfkit.data.imagenet detects.
LAYOUTS = (
    "folders",  # root/n01440764/ILSVRC2012_val_00000001.JPEG
    "flat-csv",  # root/ILSVRC2012_val_*.JPEG + root/LOC_val_solution.csv
    "flat-devkit",  # root/ILSVRC2012_val_*.JPEG + root/ILSVRC2012_validation_ground_truth.txt + root/meta.mat
    "flat-devkit-archive",  # root/ILSVRC2012_val_*.JPEG + root/ILSVRC2012_devkit_t12.tar.gz
    "torchvision",  # root/meta.bin + root/val/<wnid>/*.JPEG (what torchvision.datasets.ImageNet leaves)
    "torchvision-devkit",  # root/ILSVRC2012_devkit_t12.tar.gz + root/val/<wnid>/*.JPEG
)

DEVKIT_ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"


@dataclass(frozen=True)
class SyntheticImage:
    file_name: str  # ILSVRC2012_val_XXXXXXXX.JPEG
    class_index: int  # ImageNet-1k index (position among the sorted synsets)
    wnid: str
    path: Path  # where it was written


def devkit_ids() -> dict[str, int]:
    """A fixed, shuffled wnid → ILSVRC2012_ID map standing in for the devkit's meta.mat.

    The real devkit numbers the synsets in its own (not sorted) order; shuffling here makes a
    reader that confuses devkit ids with sorted indices fail the tests.
    """
    from perfkit.data.imagenet import synsets

    wnids = list(synsets())
    order = list(range(1, len(wnids) + 1))
    random.Random(2012).shuffle(order)
    return dict(zip(wnids, order))


def make_image(seed: int, size: tuple[int, int] | None = None):
    """A deterministic RGB PIL image: coloured blobs on a gradient plus noise, random size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size or (int(rng.integers(48, 97)), int(rng.integers(40, 81)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        a, b, off = rng.uniform(-2, 2, 3)
        img[..., c] = 128 + 60 * np.sin(a * xx / w * np.pi + b * yy / h * np.pi + off * np.pi)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, max(w, h) / 2)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        img[mask] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 25, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def make_class_folders(root: str | Path, classes: list[str] | tuple[str, ...], per_class: int, *, seed: int = 0,
                       suffix: str = ".png", size: tuple[int, int] | None = None) -> list[Path]:
    """An ImageFolder of your own classes: ``per_class`` generated images in ``root/<class>/``.

    Image ``j`` of class ``k`` is ``make_image(seed + 1000 k + j)`` saved as ``<j>{suffix}`` (the
    format follows the suffix; a fixed ``size`` with ``.bmp`` or ``.ppm`` gives files of equal
    size). Returns the files, class by class.
    """
    root = Path(root)
    paths = []
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            path = root / name / f"{j}{suffix}"
            make_image(seed + 1000 * k + j, size).save(path)
            paths.append(path)
    return paths


def make_imagenet_folder(root: str | Path, classes: list[int] | tuple[int, ...], per_class: int,
                         layout: str = "folders", *, seed: int = 0,
                         size: tuple[int, int] | None = None) -> list[SyntheticImage]:
    """Write ``per_class`` generated JPEGs for each ImageNet-1k class index in ``classes``.

    Args:
        root: dataset folder to create (the ``--data`` argument of ``perfkit validate``).
        classes: ImageNet-1k class indices (0..999), e.g. ``[5, 900]``.
        per_class: images per class.
        layout: one of ``LAYOUTS``.
        seed: changes the pixels and the interleaving; the same seed gives the same files.
        size: fixed (width, height); default a random size per image.

    Returns:
        The images, sorted by file name.
    """
    from perfkit.data.imagenet import synsets

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    wnids = synsets()
    root = Path(root)
    pairs = [(c, j) for c in classes for j in range(per_class)]
    random.Random(seed).shuffle(pairs)  # interleave classes as the real val set does
    image_dir = root / "val" if layout.startswith("torchvision") else root
    images = []
    for number, (cls, j) in enumerate(pairs, start=1):
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        folder = image_dir / wnids[cls] if layout in ("folders", "torchvision", "torchvision-devkit") else image_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        make_image(seed * 1_000_003 + cls * 1009 + j, size).save(path, format="JPEG", quality=90)
        images.append(SyntheticImage(name, cls, wnids[cls], path))

    gt_wnids = [im.wnid for im in images]  # in file-name order
    if layout == "flat-csv":
        lines = ["ImageId,PredictionString"]
        for im in images:
            # LOC_val_solution.csv lists boxes as "wnid x0 y0 x1 y1" repeated; the first wnid is the label.
            lines.append(f"{im.file_name.removesuffix('.JPEG')},{im.wnid} 1 2 30 40 {im.wnid} 3 4 20 20 ")
        (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    elif layout == "flat-devkit":
        ids = devkit_ids()
        (root / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{ids[w]}\n" for w in gt_wnids))
        (root / "meta.mat").write_bytes(_meta_mat_bytes())
    elif layout in ("flat-devkit-archive", "torchvision-devkit"):
        write_devkit_archive(root / DEVKIT_ARCHIVE, gt_wnids)
    elif layout == "torchvision":
        import torch

        wnid_to_classes = {w: (w,) for w in wnids}
        torch.save((wnid_to_classes, gt_wnids), root / "meta.bin")
    return images


def write_devkit_archive(path: Path, val_wnids: list[str]) -> None:
    """A devkit archive with ``data/meta.mat`` and ``data/ILSVRC2012_validation_ground_truth.txt``."""
    ids = devkit_ids()
    members = {
        "ILSVRC2012_devkit_t12/data/meta.mat": _meta_mat_bytes(),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt":
            "".join(f"{ids[w]}\n" for w in val_wnids).encode(),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _meta_mat_bytes() -> bytes:
    """meta.mat as the devkit has it: a ``synsets`` struct array, leaves first, then inner nodes."""
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    ids = devkit_ids()
    leaves = sorted(ids.items(), key=lambda kv: kv[1])
    # Two inner (non-leaf) synsets, as in the real file: a reader must skip them.
    inner = [("n00001740", 1001), ("n00002137", 1002)]
    arr = np.zeros((len(leaves) + len(inner), 1), dtype=[(f, "O") for f in fields])
    for row, (wnid, sid) in enumerate(leaves + inner):
        is_leaf = sid <= 1000
        arr[row, 0] = (np.array([[sid]], np.uint16), wnid, f"words of {wnid}", "gloss", np.array([[0 if is_leaf else 2]], np.uint8),
                       np.zeros((1, 0) if is_leaf else (1, 2), np.int16), np.array([[0]], np.uint8),
                       np.array([[1300]], np.uint16))
    buf = io.BytesIO()
    savemat(buf, {"synsets": arr})
    return buf.getvalue()


def write_real_labels(path: Path, images: list[SyntheticImage], extra: dict[str, list[int]] | None = None,
                      total: int | None = None) -> dict[int, list[int]]:
    """A ReaL-labels JSON (list indexed by val image number - 1) for generated images.

    Each image gets its own label plus ``extra[file_name]``; images listed with ``[]`` in
    ``extra`` get no ReaL label (they are left out of ReaL scoring, as in the real file).
    """
    extra = extra or {}
    numbers = [int(im.file_name[15:23]) for im in images]
    n = total or max(numbers)
    labels: list[list[int]] = [[] for _ in range(n)]
    for im, number in zip(images, numbers):
        more = extra.get(im.file_name)
        labels[number - 1] = [] if more == [] else sorted({im.class_index, *(more or [])})
    path.write_text(json.dumps(labels))
    return {i + 1: v for i, v in enumerate(labels)}


def corrupt_jpeg(path: Path, how: str = "truncate") -> None:
    """Damage a JPEG: ``truncate`` keeps the first third, ``garbage`` overwrites it with junk."""
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 3])
    elif how == "garbage":
        path.write_bytes(b"not a jpeg at all" * 10)
    else:
        raise ValueError(f"unknown corruption {how!r}")


def write_spread_weights(path: str | Path, classes: list[int] | tuple[int, ...], *, arch: str = "resnet18",
                         decoys: int = 8, seed: int = 0) -> Path:
    """A state dict for a zoo model (a torchvision ResNet, ``lenet5``) whose predictions vary from image to image.

    A randomly initialised network gives every generated image the same top classes, so every
    count would be 0 or 100%. This keeps the random backbone and replaces the last linear layer
    (the head) with one that scores only ``classes`` plus ``decoys`` other classes, from the
    standardised features of the image: a test then sees counts strictly between 0 and the image count.
    """
    import torch

    from perfkit.zoo.sources import resolve

    spec = resolve(arch, weights="random")
    model = spec.build()
    name = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    parent, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent)
    # Standardise with statistics of generated images that are not in any dataset (other seeds).
    probe = torch.stack([spec.preprocess(make_image(10_000_000 + i)) for i in range(12)])
    head = getattr(parent, attr)
    setattr(parent, attr, torch.nn.Identity())
    with torch.inference_mode():
        feats = model(probe)
    setattr(parent, attr, head)
    mu, sd = feats.mean(0), feats.std(0).clamp_min(1e-6)
    g = torch.Generator().manual_seed(seed)
    others = [c for c in torch.randperm(head.out_features, generator=g).tolist() if c not in classes][:decoys]
    weight = torch.zeros_like(head.weight)
    bias = torch.full_like(head.bias, -1e4)  # every other class ranks far below
    for c in [*classes, *others]:
        w = torch.randn(feats.shape[1], generator=g) / sd / feats.shape[1] ** 0.5
        weight[c] = w * 4
        bias[c] = -(w * mu).sum() * 4
    state = model.state_dict()
    state[f"{name}.weight"], state[f"{name}.bias"] = weight, bias
    path = Path(path)
    torch.save(state, path)
    return path
