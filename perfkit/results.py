"""The vocabulary of results: what kind of measurement, of what, and a failure of one.

Measuring code (analysis, export, parity, accuracy, profile, train) returns typed results named by a
``Where`` (model, runtime, precision, batch, weights, device) and never sees the store or the
terminal; ``perfkit.record`` is the one place that turns results into stored ``Record`` rows.

The kinds of ``Kind`` are perfkit's own steps; a scenario (``perfkit.profiler.scenarios``) declares a
record kind of its own with its ``KindSchema``, so a record's kind is a ``Kind`` or such a name
(``kind_of``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    MODEL = "model"  # what was measured: the model, its weights, preprocessing and published numbers
    COMPLEXITY = "complexity"
    EXPORT = "export"
    PARITY = "parity"
    ACCURACY = "accuracy"
    LATENCY = "latency"
    THROUGHPUT = "throughput"  # the Offline scenario: best samples/s with k requests in flight
    SERVER = "server"  # the Server scenario: the most QPS with p99 within a bound (MLPerf LoadGen)
    MEMORY = "memory"
    LAYERS = "layers"  # per-layer time from a runtime's own profiler (perfkit profile --layers)
    TRAIN = "train"


def kind_of(kind: str) -> Kind | str:
    """``Kind`` for perfkit's own kinds, else the name as given (a scenario's record kind)."""
    try:
        return Kind(kind)
    except ValueError:
        if not isinstance(kind, str) or not kind.strip():
            raise ValueError(f"a record kind is a non-empty name, got {kind!r}") from None
        return kind


@dataclass(frozen=True)
class KindSchema:
    """The metrics an ok record of one kind must carry (``required``) and may carry (``optional``)."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()

    @property
    def permitted(self) -> frozenset[str]:
        return self.required | self.optional

    @classmethod
    def of(cls, required: str, optional: str = "") -> "KindSchema":
        """From space-separated metric names."""
        return cls(frozenset(required.split()), frozenset(optional.split()))


@dataclass(frozen=True)
class Where:
    """What a result is about: the record's provenance columns."""

    model: str
    runtime: str | None = None
    precision: str | None = None
    batch: int | None = None
    weights: str | None = None
    device: str | None = None  # device type: cpu or cuda

    @classmethod
    def of(cls, spec, runtime: str | None = None, precision=None, batch: int | None = None,
           device: str | None = None) -> "Where":
        return cls(spec.name, runtime, None if precision is None else str(precision), batch, spec.weights.identity,
                   None if device is None else str(device).split(":")[0])

    def replace(self, **changes) -> "Where":
        from dataclasses import replace

        return replace(self, **changes)


@dataclass(frozen=True)
class Failure:
    """A measurement that did not produce a number, and why (one line)."""

    kind: Kind | str
    where: Where
    error: str

    @classmethod
    def of(cls, kind: Kind | str, where: Where, exc: BaseException | str) -> "Failure":
        text = exc if isinstance(exc, str) else describe(exc)
        return cls(kind_of(kind), where, text)


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line (the first line of a multi-line message, the rest trimmed)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
