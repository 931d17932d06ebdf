"""The record schema: one row per measurement, raw numbers only.

Metric keys carry their unit as a suffix (``latency_ms``, ``peak_bytes``, ``top1_correct``).
Provenance (model, runtime, precision, batch, weights, device) lives in columns, never in names.
Bump ``SCHEMA_VERSION`` when a kind's mandatory fields change; tests check every kind.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum

SCHEMA_VERSION = 1


class Kind(StrEnum):
    COMPLEXITY = "complexity"
    EXPORT = "export"
    PARITY = "parity"
    ACCURACY = "accuracy"
    LATENCY = "latency"
    MEMORY = "memory"
    TRAIN = "train"


# Metrics that a successful (status "ok") record of each kind must carry.
REQUIRED_METRICS: dict[Kind, frozenset[str]] = {
    Kind.COMPLEXITY: frozenset({"params", "trainable_params", "macs", "flops"}),
    Kind.EXPORT: frozenset({"export_seconds", "artifact_bytes"}),
    Kind.PARITY: frozenset({"samples", "max_abs_diff", "mean_abs_diff", "top1_agreement", "passed"}),
    Kind.ACCURACY: frozenset({"images", "top1_correct", "top5_correct", "top1_pct", "top5_pct"}),
    Kind.LATENCY: frozenset({"iterations", "latency_median_ms", "latency_p99_ms", "throughput_per_s"}),
    Kind.MEMORY: frozenset({"peak_bytes"}),
    Kind.TRAIN: frozenset({"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_seconds"}),
}

_SCALARS = (int, float, str, bool, type(None))


@dataclass
class Record:
    """One measurement. ``metrics`` holds numbers (and short strings such as a method name)."""

    kind: Kind
    model: str
    metrics: dict = field(default_factory=dict)
    runtime: str | None = None
    precision: str | None = None
    batch: int | None = None
    weights: str | None = None  # weights identity: enum name, file sha256, or "random"
    device: str | None = None
    status: str = "ok"  # "ok" or "error"
    error: str | None = None
    env: dict = field(default_factory=dict)  # filled from the run when empty
    run_id: str | None = None
    created: float = field(default_factory=time.time)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        self.kind = Kind(self.kind)

    def validate(self) -> None:
        """Raise ``ValueError`` if the record breaks the schema."""
        if self.status not in ("ok", "error"):
            raise ValueError(f"status must be 'ok' or 'error', got {self.status!r}")
        if self.status == "error" and not self.error:
            raise ValueError("an error record must say what went wrong")
        if not self.model:
            raise ValueError("record has no model")
        for key, value in self.metrics.items():
            if isinstance(value, (list, dict)):
                continue  # small structured payloads (per-batch lists, flipped ids) are allowed
            if not isinstance(value, _SCALARS):
                raise ValueError(f"metric {key!r} is {type(value).__name__}, not a raw number")
            if isinstance(value, float) and math.isnan(value) and self.status == "ok":
                raise ValueError(f"metric {key!r} is NaN in an ok record")
        if self.status == "ok":
            missing = REQUIRED_METRICS[self.kind] - self.metrics.keys()
            if missing:
                raise ValueError(f"{self.kind} record lacks {sorted(missing)}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["kind"] = str(self.kind)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def failure(cls, kind: Kind, model: str, exc: BaseException, **columns) -> "Record":
        """An error record for a step that failed; the pipeline goes on with the rest."""
        return cls(kind=kind, model=model, status="error", error=f"{type(exc).__name__}: {exc}", **columns)
