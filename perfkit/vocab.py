"""The axes every measurement is named by: precision and the batch range an artifact accepts.

Runtimes are not an enum here: they are the names of registered backends (``perfkit.backends``),
so that adding one never edits this file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import torch

from perfkit.errors import UsageError


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


# The torch dtype a model computes in at each float precision (int8 is a quantized graph, not a dtype).
DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes an artifact accepts (TensorRT calls these min/opt/max)."""

    min: int = 1
    opt: int = 8
    max: int = 256

    def __post_init__(self):
        if not 1 <= self.min <= self.opt <= self.max:
            raise UsageError(f"a batch range must satisfy 1 <= min <= opt <= max, got "
                             f"{self.min}/{self.opt}/{self.max}")

    def contains(self, batch: int) -> bool:
        return self.min <= batch <= self.max

    def to_dict(self) -> dict:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    @classmethod
    def covering(cls, batches: Iterable[int]) -> "BatchRange":
        """The default range when it covers every batch (so every command shares one cached
        artifact), else the default widened to cover them."""
        batches = sorted(set(batches))
        default = cls()
        if not batches or all(default.contains(b) for b in batches):
            return default
        lo, hi = min(default.min, batches[0]), max(default.max, batches[-1])
        return cls(lo, min(max(default.opt, lo), hi), hi)


def parse_precisions(text: str | Iterable[str]) -> list[Precision]:
    """``"fp32,int8"`` → precisions, in order, without duplicates; an unknown name is a UsageError."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    out: list[Precision] = []
    for part in (str(p).strip().lower() for p in parts):
        if not part:
            continue
        try:
            out.append(Precision(part))
        except ValueError:
            raise UsageError(f"unknown precision '{part}'; choose from: {', '.join(p.value for p in Precision)}") from None
    if not out:
        raise UsageError("give at least one precision (fp32, fp16, bf16, int8)")
    return list(dict.fromkeys(out))


def parse_batches(text: str | int | Iterable[int], what: str = "--batch") -> list[int]:
    """``"1,8,32"`` (or ``8``, ``(1, 8)``) → sorted distinct positive batch sizes; anything else is a UsageError."""
    parts = text.split(",") if isinstance(text, str) else [text] if isinstance(text, int) else list(text)
    try:
        values = sorted({int(str(v).strip()) for v in parts if str(v).strip()})
    except ValueError:
        raise UsageError(f"{what} takes comma-separated positive integers, got '{text}'") from None
    if not values or values[0] < 1:
        raise UsageError(f"{what} takes comma-separated positive integers, got '{text}'")
    return values


def positive(value: int | None, flag: str, allow_zero: bool = False) -> int | None:
    """``value`` (None: not given), refused unless it is a positive integer (``allow_zero``: or 0)."""
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(f"{flag} must be {'≥ 0' if allow_zero else 'a positive integer'}, got {value}")
    return value
