"""Training data: CIFAR-10 (the python pickle format) and any ImageFolder (``train/`` + ``val/``).

Both yield ``(uint8 CHW tensor, label)`` pairs through a caller-given transform, so that
augmentation and resizing run per sample in the loader workers and normalisation runs batched on
the training device. Every way a dataset can be absent or malformed is a ``DatasetError`` that
names the file and what was expected; nothing is skipped or substituted.

``make_cifar_batches`` and ``make_image_folder`` write a small *learnable* synthetic task in
those two layouts (tests and demos: no dataset can be downloaded here).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from perfkit.errors import DatasetError, UsageError

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_META = "batches.meta"
CIFAR_IMAGE_SIZE = 32
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

DATASETS = ("cifar10", "imagefolder")

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DataSplits:
    """A training set and a validation set sharing one class list."""

    name: str  # "cifar10" or "imagefolder"
    root: Path  # the folder actually read
    train: Dataset
    val: Dataset
    classes: list[str]
    native_size: int | None  # side of every source image when fixed (CIFAR: 32), else None


def load_dataset(name: str, root: str | Path, *, train_transform: Transform | None = None,
                 val_transform: Transform | None = None) -> DataSplits:
    """Open ``cifar10`` or ``imagefolder`` data under ``root``.

    Args:
        name: ``cifar10`` or ``imagefolder``.
        root: for cifar10 the ``cifar-10-batches-py`` folder or its parent; for imagefolder a folder
            holding ``train/`` and ``val/``, each with one sub-folder per class.
        train_transform: applied to each training image (uint8 CHW tensor in, uint8 CHW out).
        val_transform: applied to each validation image.
    """
    if name == "cifar10":
        return load_cifar10(root, train_transform=train_transform, val_transform=val_transform)
    if name == "imagefolder":
        return load_image_folder(root, train_transform=train_transform, val_transform=val_transform)
    raise UsageError(f"unknown dataset '{name}': use one of {', '.join(DATASETS)}")


def download_dataset(name: str, root: str | Path) -> None:
    """Fetch CIFAR-10 through torchvision (which checks the archive's MD5) unless it is there already."""
    from perfkit.zoo.weights import network_available

    if name != "cifar10":
        raise UsageError("--download works for --dataset cifar10 only; an ImageFolder is your own data")
    root = Path(root).expanduser()
    try:
        find_cifar_dir(root)
        return
    except DatasetError:
        pass  # absent: fetch it below
    if not network_available("www.cs.toronto.edu"):
        raise DatasetError(f"--download needs a network and this machine is offline: put the extracted "
                           f"{CIFAR_FOLDER}/ under {root} instead ({CIFAR_URL})")
    import torchvision

    root.mkdir(parents=True, exist_ok=True)
    torchvision.datasets.CIFAR10(str(root), train=True, download=True)


# -- CIFAR-10 -------------------------------------------------------------------------------------


class TensorImages(Dataset):
    """Images held in memory as one uint8 NCHW tensor (CIFAR-10 is 150 MB decoded)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Transform | None = None):
        if images.ndim != 4 or images.dtype != torch.uint8 or len(images) != len(labels):
            raise ValueError(f"expected uint8 NCHW images and one label each, got {tuple(images.shape)} {images.dtype}, {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def find_cifar_dir(root: str | Path) -> Path:
    """The ``cifar-10-batches-py`` folder: ``root`` itself or its child of that name."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"CIFAR-10 folder not found: {root}\n  {_cifar_hint()}")
    if (root / CIFAR_FOLDER).is_dir():
        return root / CIFAR_FOLDER
    if any((root / name).exists() for name in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH, CIFAR_META)):
        return root
    archive = next(iter(sorted(root.glob("cifar-10-python.tar.gz"))), None)
    if archive is not None:
        raise DatasetError(f"{root} holds {archive.name} but not the extracted batches: run `tar xzf {archive}` in {root}")
    raise DatasetError(f"no CIFAR-10 batches in {root}\n  {_cifar_hint()}")


def _cifar_hint() -> str:
    return (f"expected {CIFAR_FOLDER}/ with {', '.join(CIFAR_TRAIN_BATCHES)}, {CIFAR_TEST_BATCH} and {CIFAR_META} "
            f"(the python version, {CIFAR_URL}, extracted), or pass --download where a network exists")


def load_cifar10(root: str | Path, *, train_transform: Transform | None = None,
                 val_transform: Transform | None = None) -> DataSplits:
    """CIFAR-10 from its python batches: ``data_batch_1..5`` for training, ``test_batch`` for validation."""
    folder = find_cifar_dir(root)
    missing = [n for n in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH, CIFAR_META) if not (folder / n).is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 folder {folder} lacks {', '.join(missing)}\n  {_cifar_hint()}")
    classes = read_cifar_meta(folder / CIFAR_META)
    train = [read_cifar_batch(folder / n, len(classes)) for n in CIFAR_TRAIN_BATCHES]
    test_images, test_labels = read_cifar_batch(folder / CIFAR_TEST_BATCH, len(classes))
    train_images = torch.cat([images for images, _ in train])
    train_labels = torch.cat([labels for _, labels in train])
    if len(train_labels) == 0 or len(test_labels) == 0:
        raise DatasetError(f"CIFAR-10 folder {folder} has {len(train_labels)} training and {len(test_labels)} test images; both must be > 0")
    return DataSplits(
        name="cifar10", root=folder, classes=classes, native_size=CIFAR_IMAGE_SIZE,
        train=TensorImages(train_images, train_labels, train_transform),
        val=TensorImages(test_images, test_labels, val_transform),
    )


def read_cifar_meta(path: Path) -> list[str]:
    meta = _unpickle(path)
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, (str, bytes)) for n in names):
        raise DatasetError(f"{path} has no 'label_names' list of class names (keys: {sorted(meta)})")
    return [n.decode() if isinstance(n, bytes) else n for n in names]


def read_cifar_batch(path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file → (uint8 N×3×32×32 images, int64 labels), every field checked."""
    batch = _unpickle(path)
    if "data" not in batch or "labels" not in batch:
        hint = " (this looks like CIFAR-100, which is not supported)" if "fine_labels" in batch else ""
        raise DatasetError(f"{path} is not a CIFAR-10 batch: it needs 'data' and 'labels', it has {sorted(batch)}{hint}")
    data = batch["data"]
    side = CIFAR_IMAGE_SIZE
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * side * side:
        shape = getattr(data, "shape", type(data).__name__)
        raise DatasetError(f"{path}: 'data' must be an array of shape (N, {3 * side * side}) (N images of 3×{side}×{side}), got {shape}")
    if data.dtype != np.uint8:
        raise DatasetError(f"{path}: 'data' must hold uint8 pixels, got {data.dtype}")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: 'labels' must be a list of integers") from None
    if labels.ndim != 1 or len(labels) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DatasetError(f"{path}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside 0..{num_classes - 1} "
                           f"({len(bad)} labels out of range)")
    # Rows are the red plane, then green, then blue, each row-major: exactly C×H×W.
    images = torch.from_numpy(data.reshape(-1, 3, side, side).copy())
    return images, torch.from_numpy(labels)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a batch file can not run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds arrays and lists only")


def _unpickle(path: Path) -> dict:
    try:
        raw = path.read_bytes()
        # latin1: the official files were pickled by Python 2 (str keys and pixel strings).
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise DatasetError(f"cannot read CIFAR file {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


# -- ImageFolder ----------------------------------------------------------------------------------


class FolderImages(Dataset):
    """``root/<class>/<image>`` decoded with PIL; an unreadable file is an error naming it."""

    def __init__(self, samples: list[tuple[str, int]], transform: Transform | None = None):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms.v2.functional import pil_to_tensor

        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                image = pil_to_tensor(im.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DatasetError(f"unreadable image {path}: {type(exc).__name__}: {exc}") from None
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def load_image_folder(root: str | Path, *, train_transform: Transform | None = None,
                      val_transform: Transform | None = None) -> DataSplits:
    """``root/train/<class>/*`` and ``root/val/<class>/*`` with the same class folders."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = Path(root).expanduser()
    splits = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise DatasetError(f"ImageFolder {root} has no {split}/ folder: expected {root}/train/<class>/*.jpg "
                               f"and {root}/val/<class>/*.jpg")
        try:
            classes, class_to_idx = find_classes(str(folder))
            samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as exc:
            raise DatasetError(f"ImageFolder {folder}: {exc}") from None
        splits[split] = (classes, samples)
    (train_classes, train_samples), (val_classes, val_samples) = splits["train"], splits["val"]
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        # Labels are folder indices: a class missing on one side would shift every label after it.
        raise DatasetError(f"ImageFolder {root}: train/ and val/ must have the same class folders "
                           f"(only in train: {only_train or '—'}; only in val: {only_val or '—'})")
    return DataSplits(
        name="imagefolder", root=root, classes=list(train_classes), native_size=None,
        train=FolderImages(train_samples, train_transform), val=FolderImages(val_samples, val_transform),
    )


# -- a learnable synthetic task ---------------------------------------------------------------------


def synthetic_images(labels: np.ndarray, num_classes: int, rng: np.random.Generator, size: int = CIFAR_IMAGE_SIZE) -> np.ndarray:
    """uint8 N×3×size×size images whose class shows in colour and stripe direction, under noise.

    Class k has its own hue and its own stripe orientation/frequency; every image gets a random
    brightness shift and Gaussian pixel noise so that no single pixel gives the label away.
    """
    hues = np.linspace(0, 1, num_classes, endpoint=False)
    # Saturated colours around the hue circle (a cheap HSV → RGB with S = V = 1).
    palette = np.clip(np.abs(((hues[:, None] * 6 + np.array([0, 4, 2])) % 6) - 3) - 1, 0, 1) * 180 + 40
    yy, xx = np.mgrid[0:size, 0:size] / size
    angles = np.pi * np.arange(num_classes) / num_classes
    freqs = 2 + np.arange(num_classes) % 3
    out = np.empty((len(labels), 3, size, size), dtype=np.uint8)
    for i, k in enumerate(labels):
        stripes = np.sin(2 * np.pi * freqs[k] * (xx * np.cos(angles[k]) + yy * np.sin(angles[k])) + rng.uniform(0, 2 * np.pi))
        image = palette[k][:, None, None] * (0.8 + 0.2 * stripes)[None] + rng.uniform(-20, 20)
        image = image + rng.normal(0, 20, size=image.shape)
        out[i] = np.clip(image, 0, 255).astype(np.uint8)
    return out


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes)


def make_cifar_batches(root: str | Path, n_train: int = 500, n_test: int = 200, seed: int = 0) -> Path:
    """Write a CIFAR-10-format ``cifar-10-batches-py/`` of a learnable synthetic task under ``root``.

    The files are real CIFAR-10 python batches (protocol-2 pickles with ``data`` as uint8
    N×3072 and ``labels`` as a list, and ``batches.meta``). torchvision's ``CIFAR10`` class would
    refuse them only because it checks the MD5 of the official files.

    Returns:
        The ``cifar-10-batches-py`` folder.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    k = len(CIFAR10_CLASSES)
    train_labels = _balanced_labels(n_train, k, rng)
    parts = np.array_split(np.arange(n_train), len(CIFAR_TRAIN_BATCHES))
    batches = [(name, train_labels[idx]) for name, idx in zip(CIFAR_TRAIN_BATCHES, parts)]
    batches.append((CIFAR_TEST_BATCH, _balanced_labels(n_test, k, rng)))
    for i, (name, labels) in enumerate(batches):
        images = synthetic_images(labels, k, rng)
        batch = {
            "batch_label": f"synthetic batch {i + 1} of {len(batches)} (perfkit, seed {seed})",
            "labels": [int(v) for v in labels],
            "data": images.reshape(len(labels), -1),
            "filenames": [f"synthetic_{name}_{j:05d}.png" for j in range(len(labels))],
        }
        _pickle(folder / name, batch)
    _pickle(folder / CIFAR_META, {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": len(parts[0]), "num_vis": 3072})
    return folder


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_image_folder(root: str | Path, n_train: int = 200, n_val: int = 100, num_classes: int = 4, size: int = 48,
                      seed: int = 0) -> Path:
    """Write ``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` of the same synthetic task."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in (("train", n_train), ("val", n_val)):
        labels = _balanced_labels(n, num_classes, rng)
        images = synthetic_images(labels, num_classes, rng, size)
        for j, (label, image) in enumerate(zip(labels, images)):
            folder = root / split / f"class_{label:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{j:05d}.png")
    return root
