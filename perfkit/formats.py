"""Small shared vocabulary: formats, precisions, batch ranges.

Kept apart from the modules that use them so that zoo/, export/, runtime/ and store/ can all
name a format without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Format(StrEnum):
    EAGER = "eager"
    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"
    TENSORRT = "tensorrt"
    AOTI = "aoti"
    NATIVE = "native"  # the C++ LibTorch runner over a TorchScript artifact


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes an artifact accepts (TensorRT calls these min/opt/max)."""

    min: int = 1
    opt: int = 8
    max: int = 256

    def __post_init__(self):
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"batch range must satisfy 1 <= min <= opt <= max, got {self}")

    def contains(self, batch: int) -> bool:
        return self.min <= batch <= self.max

    @classmethod
    def covering(cls, batches) -> "BatchRange":
        """The default range when it covers every batch (so every command shares one cached
        artifact), else the default widened to cover them."""
        batches = sorted(set(batches))
        default = cls()
        if all(default.contains(b) for b in batches):
            return default
        lo, hi = min(default.min, batches[0]), max(default.max, batches[-1])
        return cls(lo, min(max(default.opt, lo), hi), hi)


def parse_list(text: str, enum: type[StrEnum]) -> list:
    """Parse ``"onnx,aoti"`` into enum members with a clear error on an unknown name."""
    from perfkit.errors import UsageError

    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(enum(part.lower()))
        except ValueError:
            names = ", ".join(m.value for m in enum)
            raise UsageError(f"unknown {enum.__name__.lower()} '{part}'; choose from: {names}") from None
    return out
