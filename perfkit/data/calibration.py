"""The calibration set of an int8 artifact: which images, how many, how chosen, and by which method.

Post-training quantization measures the range of every activation on a few hundred representative
inputs (the calibration set) and fixes the int8 scales from it. What those inputs were decides the
artifact, so a ``CalibrationSet`` is part of the artifact's cache key and manifest
(``identity()``), and every table and report says what an int8 result was calibrated on
(``describe()``).

Three sources, never chosen silently:

- ``images``: ``--calib DIR``, any image folder (an ImageNet-val layout included);
- ``validation``: without ``--calib``, a seeded subset of ``--data`` (the images later evaluated:
  said so, "calibrated on N validation images");
- ``synthetic``: without either, seeded generated images (blobs and gradients, the generator of
  ``perfkit.data.synthetic``) — enough to build and time an int8 artifact, not to judge its accuracy,
  and labelled "accuracy not meaningful" everywhere.

The selection is seeded: the same folder, sample count and seed give the same images. Images go
through the model's own eval preprocessing (``ModelSpec.preprocess``).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path

import torch

from perfkit.data.images import image_files, load_images
from perfkit.errors import UsageError

DEFAULT_SAMPLES = 512  # images from --calib or --data
SYNTHETIC_SAMPLES = 32  # generated images: enough to fix ranges for timing, cheap in `perfkit run`
DEFAULT_SEED = 0
SYNTHETIC_GENERATOR = "perfkit.data.synthetic.make_image v1"  # bump if the generator's pixels change


class CalibrationMethod(StrEnum):
    """How activation ranges are taken from the calibration set (ONNX Runtime's names, lower case)."""

    MINMAX = "minmax"  # the observed min and max
    ENTROPY = "entropy"  # the range minimising the KL divergence of the quantised histogram
    PERCENTILE = "percentile"  # a high percentile of |x| (ONNX Runtime's default 99.999)


class Source(StrEnum):
    IMAGES = "images"
    VALIDATION = "validation"
    SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class CalibrationSet:
    """Which inputs calibrate an int8 artifact. Frozen and picklable (it crosses process boundaries).

    Attributes:
        source: images (``--calib DIR``), validation (a subset of ``--data``) or synthetic.
        root: the image folder (None for synthetic).
        samples: how many to use (fewer when the folder has fewer images).
        method: how ranges are taken (minmax, entropy, percentile).
        seed: the seed of the selection (and of the synthetic images).
    """

    source: Source
    root: str | None = None
    samples: int = DEFAULT_SAMPLES
    method: CalibrationMethod = CalibrationMethod.MINMAX
    seed: int = DEFAULT_SEED

    def __post_init__(self):
        object.__setattr__(self, "source", Source(self.source))
        try:
            object.__setattr__(self, "method", CalibrationMethod(str(self.method).lower()))
        except ValueError:
            choices = ", ".join(m.value for m in CalibrationMethod)
            raise UsageError(f"unknown calibration method '{self.method}'; choose from: {choices}") from None
        if self.samples < 1:
            raise UsageError(f"--calib-samples must be a positive integer, got {self.samples}")
        if (self.root is None) != (self.source is Source.SYNTHETIC):
            raise UsageError("a calibration set from images needs a folder; a synthetic one takes none")
        if self.root is not None:
            object.__setattr__(self, "root", str(Path(self.root).expanduser().resolve()))

    @classmethod
    def synthetic(cls, samples: int | None = None, method: str = CalibrationMethod.MINMAX,
                  seed: int = DEFAULT_SEED) -> "CalibrationSet":
        return cls(Source.SYNTHETIC, None, samples or SYNTHETIC_SAMPLES, method, seed)

    @property
    def meaningful(self) -> bool:
        """False for synthetic inputs: the artifact runs and times right, its accuracy means little."""
        return self.source is not Source.SYNTHETIC

    @cached_property
    def files(self) -> tuple[Path, ...]:
        """The selected images: a seeded sample of the folder's images, in path order (none if synthetic)."""
        if self.root is None:
            return ()
        what = "--calib" if self.source is Source.IMAGES else "--data"
        every = image_files(self.root, what)
        if len(every) <= self.samples:
            return tuple(every)
        chosen = random.Random(self.seed).sample(range(len(every)), self.samples)
        return tuple(every[i] for i in sorted(chosen))

    @property
    def count(self) -> int:
        """How many inputs are actually used."""
        return self.samples if self.root is None else len(self.files)

    @cached_property
    def digest(self) -> str:
        """What the inputs are: the selected files (path under the folder, size, modification time),
        or the synthetic generator with its seed and count."""
        h = hashlib.sha256()
        if self.root is None:
            h.update(f"{SYNTHETIC_GENERATOR}\0{self.seed}\0{self.samples}".encode())
        for path in self.files:
            st = path.stat()
            h.update(f"{path.relative_to(self.root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def identity(self) -> dict:
        """What keys the artifact cache: the set's content, how many, how chosen and the method."""
        return {"source": str(self.source), "digest": self.digest[:16], "samples": self.count, "seed": self.seed,
                "method": str(self.method)}

    def describe(self) -> str:
        """One line for tables and reports."""
        n = self.count
        if self.source is Source.SYNTHETIC:
            return f"calibrated on {n} synthetic images ({self.method}) — accuracy not meaningful"
        if self.source is Source.VALIDATION:
            return f"calibrated on {n} validation images (seeded subset of --data, {self.method})"
        return f"calibrated on {n} images from {self.root} ({self.method})"

    def manifest(self) -> dict:
        """What the artifact's manifest records: identity, description and the files (relative names)."""
        return {**self.identity(), "root": self.root, "description": self.describe(), "meaningful": self.meaningful,
                "files": [p.relative_to(self.root).as_posix() for p in self.files] if self.root else []}

    def tensors(self, transform) -> torch.Tensor:
        """The inputs, ``(N, C, H, W)`` float32, through ``transform`` (the model's ``EvalTransform``)."""
        if self.root is not None:
            return load_images(self.files, transform)
        from perfkit.data.synthetic import make_image

        return torch.stack([transform(make_image(self.seed * 1_000_003 + i)) for i in range(self.samples)])


def calibration_key(value: "CalibrationSet | None"):
    """The form of a calibration set that keys an artifact and is written to its manifest."""
    return None if value is None else value.identity()
