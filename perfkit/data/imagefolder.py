"""An ImageFolder of the user's own classes, and ``open_dataset``: the one opener of ``--data``.

An ImageFolder holds one sub-folder per class (``cat/``, ``espresso/``, …) with images anywhere
under it (sub-folders included, symbolic links followed), as ``torchvision.datasets.ImageFolder``
reads it. The class index is, as there, the sorted folder names; or ``--labels FILE``: one class
name per line in the model's output order (blank lines and surrounding whitespace ignored, a UTF-8
byte-order mark accepted). A folder of WordNet ids is ImageNet-val, scored in the ImageNet-1k index,
unless a labels file is given: then the file wins and the output says so (a model fine-tuned on
Imagenette-style folders). Samples are sorted by their path under the root, so ``--limit N`` takes
the same images every time.

Refused, each in one line: no class folders, a single class, a class folder without images (it
would silently count nothing), a folder missing from the labels file, and a labels file that is
missing, undecodable, empty, of one class or with a name listed twice.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from perfkit.data.dataset import LabelledImages, Sample
from perfkit.data.imagenet import IMAGE_EXTENSIONS, existing_folder, imagenet_layout, open_imagenet
from perfkit.errors import DatasetError, UsageError

LAYOUT = "imagefolder"
LABELS_HINT = "--labels FILE (the model's class names, one per line, in its output order)"


@dataclass(frozen=True)
class LabelsFile:
    """The class names of a labels file, in the model's output order, and the file's hash."""

    path: Path
    names: tuple[str, ...]
    sha256: str

    def describe(self) -> str:
        return f"{self.path} (sha256 {self.sha256[:12]})"


def read_labels(path: str | Path) -> LabelsFile:
    """One class name per line; blank lines and surrounding whitespace ignored, a BOM accepted.

    Raises:
        DatasetError: a missing or unreadable file, not UTF-8, no names, a single name, a name twice.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"labels file {path} {'is a folder' if path.is_dir() else 'does not exist'}")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read the labels file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"labels file {path} is not UTF-8 text (undecodable byte at offset {exc.start}); "
                           "it holds one class name per line") from None
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if name in first_line:
            raise DatasetError(f"labels file {path}: '{name}' is listed twice (lines {first_line[name]} and "
                               f"{number}); each class name once, in the model's output order")
        if name:
            first_line[name] = number
    names = tuple(first_line)
    if len(names) < 2:
        what = "no class names" if not names else f"a single class ('{names[0]}')"
        raise DatasetError(f"labels file {path} lists {what}: accuracy needs at least two classes, one name per line")
    return LabelsFile(path, names, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class ImageFolderSet(LabelledImages):
    """The user's labelled folders: samples sorted by path under the root."""

    names: tuple[str, ...] = ()  # class index → name
    labels_file: LabelsFile | None = None  # None: the sorted folder names are the index
    ignored_files: int = 0  # files at the top level, in no class folder: not scored (torchvision ignores them too)
    note: str | None = None  # said with the description (WordNet-id folders scored by a labels file)

    order: ClassVar[str] = "relative path"

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.names

    def _identity_head(self) -> str:
        # The folder itself and the class index: two folders holding files of the same names, sizes
        # and times (extracted from archives, say) never share tensor cache entries.
        return "\0".join((self.layout, str(self.root.resolve()), *self.names))

    def _file_key(self, stat) -> str:
        # The change time too: unlike the modification time, extracting or copying cannot preserve it.
        return f"{super()._file_key(stat)}\0{stat.st_ctime_ns}"

    def check_model(self, spec) -> None:
        if spec.num_classes == self.num_classes:
            return
        if self.labels_file is not None:
            raise UsageError(f"{self.labels_file.path} has {self.num_classes} classes but {spec.label} outputs "
                             f"{spec.num_classes}")
        raise UsageError(f"{self.root} has {self.num_classes} class folders but {spec.label} outputs "
                         f"{spec.num_classes}: give {LABELS_HINT}, or --num-classes {self.num_classes} for a model "
                         "with a head of these classes")

    def describe(self) -> str:
        what = super().describe()
        if len(self.classes) != self.num_classes:
            what += f"; {self.num_classes} classes in the labels"
        if self.ignored_files:
            what += f"; {self.ignored_files} file(s) outside the class folders ignored"
        return what + (f"; {self.note}" if self.note else "")


def images_under(folder: Path) -> list[Path]:
    """Image files anywhere under ``folder`` (links followed, as torchvision's ImageFolder does)."""
    found = []
    for where, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        found += [Path(where) / f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return found


def open_imagefolder(root: str | Path, labels: str | Path | None = None, *, note: str | None = None) -> ImageFolderSet:
    """The class folders of ``root`` and their images, labelled by folder name through the index.

    Raises:
        DatasetError: see the module docstring.
    """
    root = existing_folder(root)
    labels_file = read_labels(labels) if labels is not None else None
    # torchvision's find_classes: every sub-folder is a class (links to folders included)
    folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not folders:
        raise DatasetError(
            f"{root} holds no class folders: --data takes an ImageFolder of your classes ({root}/<class>/<image>) "
            "or ImageNet-val (WordNet-id folders, ILSVRC2012_val_* files with their ground truth, or a torchvision "
            "ImageNet root)")
    if len(folders) == 1:
        raise DatasetError(f"{root} has a single class folder ({folders[0]}): accuracy needs at least two classes")
    names = labels_file.names if labels_file is not None else tuple(folders)
    index = {name: i for i, name in enumerate(names)}
    missing = [f for f in folders if f not in index]
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise DatasetError(f"class folder(s) {shown} of {root} not in the labels file {labels_file.path}: every class "
                           "folder must be named exactly as a line of it")
    samples = []
    for name in folders:
        files = images_under(root / name)
        if not files:
            raise DatasetError(f"class folder {root / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}): an empty "
                               "class would count nothing; add its images or remove the folder")
        samples += [Sample(f, index[name], f.relative_to(root).as_posix()) for f in files]
    ignored = sum(1 for entry in os.scandir(root) if entry.is_file())
    return ImageFolderSet(
        root=root, layout=LAYOUT, labels_from=labels_file.describe() if labels_file else "folder names",
        all_samples=tuple(sorted(samples, key=lambda s: s.image_id)), names=names, labels_file=labels_file,
        ignored_files=ignored, note=note)


def open_dataset(root: str | Path, labels: str | Path | None = None) -> LabelledImages:
    """Open ``--data``: an ImageNet-val layout (detected first, labels in the ImageNet-1k index), else
    an ImageFolder of the user's classes (sorted folder names, or ``labels``: a labels file).

    A labels file with WordNet-id folders scores them as the user's classes (the file wins, and the
    description says so); with the other ImageNet layouts, whose labels come from their ground
    truth, it is refused.

    Raises:
        DatasetError: a layout or labels file that cannot be read, or is refused (one line each).
        UsageError: ``labels`` with a flat or torchvision ImageNet layout.
    """
    root = existing_folder(root)
    layout = imagenet_layout(root)
    if layout is None:
        return open_imagefolder(root, labels)
    if labels is None:
        return open_imagenet(root)
    if layout == "folders":
        return open_imagefolder(root, labels, note=f"WordNet-id folders scored as the classes of {labels}, not as "
                                                   "ImageNet-1k")
    raise UsageError(f"--labels {labels}: {root} is an ImageNet-val '{layout}' layout, labelled by its ground truth "
                     "in the ImageNet-1k index; --labels applies to class folders")
