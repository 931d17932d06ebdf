"""A labelled image set as the accuracy harness reads it, whatever its layout.

``LabelledImages`` is what ``perfkit.data.open_dataset`` returns: ImageNet-val in one of its layouts
(``perfkit.data.imagenet.ImageNetVal``, labels in the ImageNet-1k index) or an ImageFolder of the
user's own classes (``perfkit.data.imagefolder.ImageFolderSet``, labels from the sorted folder names
or a labels file). Both list their samples in a fixed order, take deterministic subsets, hash what
they hold (``identity``: it keys the decode-once tensor cache) and say whether a model's outputs
fit their class index (``check_model``).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from perfkit.errors import DatasetError

# ImageNet-val's file names; here because a sample's val number (what ReaL labels index) is read from it
VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.(JPEG|jpeg|jpg|JPG|png|PNG)$")


@dataclass(frozen=True)
class Sample:
    """One image: its file, its label (a class index) and a stable id (its path under the root)."""

    path: Path
    label: int
    image_id: str

    @property
    def val_number(self) -> int | None:
        """The N of ``ILSVRC2012_val_N.JPEG`` (what ReaL labels are indexed by), if the name has it."""
        m = VAL_NAME.match(self.path.name)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class LabelledImages:
    """A labelled image set, or a deterministic subset of one.

    Subclasses provide ``class_names`` (index → name), ``imagenet`` (labels are the ImageNet-1k
    index: published accuracy and ReaL labels apply), ``order`` (how samples are sorted, for the
    output), ``class_key`` (the key of a class name in per-class rows) and ``check_model``.
    """

    root: Path
    layout: str
    labels_from: str  # what gave the labels, for the output
    all_samples: tuple[Sample, ...]  # the whole set
    positions: tuple[int, ...] | None = None  # the subset's indices into all_samples; None = all
    subset: str | None = None  # how the subset was taken, for the output

    imagenet: ClassVar[bool] = False
    order: ClassVar[str] = "file name"
    class_key: ClassVar[str] = "name"

    @property
    def class_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """How many classes the label index has (the model must output exactly this many)."""
        return len(self.class_names)

    def check_model(self, spec) -> None:
        """Refuse a model whose outputs do not match the class index (one line naming both)."""
        raise NotImplementedError

    @cached_property
    def samples(self) -> tuple[Sample, ...]:
        if self.positions is None:
            return self.all_samples
        return tuple(self.all_samples[i] for i in self.positions)

    @property
    def indices(self) -> tuple[int, ...]:
        """Index of each selected sample in the whole set (what the tensor cache is indexed by)."""
        return self.positions if self.positions is not None else tuple(range(len(self.all_samples)))

    @property
    def full_size(self) -> int:
        return len(self.all_samples)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def classes(self) -> list[int]:
        return sorted({s.label for s in self.samples})

    def _identity_head(self) -> str:
        return self.layout

    def _file_key(self, stat) -> str:
        return f"{stat.st_size}\0{stat.st_mtime_ns}"

    @cached_property
    def identity(self) -> str:
        """Hash of the whole set's ids, labels and file sizes and times: changes when any file does."""
        h = hashlib.sha256(self._identity_head().encode())
        for s in self.all_samples:
            h.update(f"{s.image_id}\0{s.label}\0{self._file_key(s.path.stat())}\n".encode())
        return h.hexdigest()

    def take(self, limit: int | None = None, per_class: int | None = None) -> "LabelledImages":
        """A deterministic subset: the first ``per_class`` of each class, then the first ``limit`` (in ``order``)."""
        positions = list(self.indices)
        notes = []
        if per_class is not None:
            if per_class < 1:
                raise DatasetError(f"--limit-per-class must be ≥ 1, got {per_class}")
            seen: Counter = Counter()
            kept = []
            for i in positions:
                label = self.all_samples[i].label
                if seen[label] < per_class:
                    seen[label] += 1
                    kept.append(i)
            positions = kept
            notes.append(f"first {per_class} per class (by {self.order})")
        if limit is not None:
            if limit < 1:
                raise DatasetError(f"--limit must be ≥ 1, got {limit}")
            positions = positions[:limit]
            notes.append(f"first {limit} (by {self.order})")
        if not notes:
            return self
        return replace(self, positions=tuple(positions), subset=", then ".join(notes))

    def describe(self) -> str:
        what = f"{len(self)} images, {len(self.classes)} classes, layout '{self.layout}' ({self.labels_from})"
        if self.subset:
            what += f" — SUBSET: {self.subset} of {self.full_size} images"
        return what
