"""Timing samples kept with their record, compact, and what may be said from them.

Every timed call's latency is stored with its record (``samples``), so a percentile can be recomputed
and ``regress`` can judge a change against the noise instead of comparing two medians. Encoding: each
sample as a whole number of quanta above the smallest (the quantum is 1/10,000 of the median, at
least 1 ns: far below any timing's own noise; the rounding error is at most half a quantum), as
uint32 little-endian with the bytes of each position grouped together (their high bytes are mostly
zero), deflated (zlib level 9) and base64'd into one JSON string, in call order. Measured in
tests/profiler/test_samples.py: a 10,000-sample point is about 13 KB in the store (40 KB as raw
float32, 33 KB deflated without the quantization).

A percentile q is shown only from ``min_samples(q)`` samples on: with fewer, the "99th percentile"
of 3 samples is just their maximum. p50 needs 2, p90 10, p95 20, p99 100.

``median_ratio_interval`` is how ``perfkit regress`` tells a change from noise: the bootstrap interval
of the candidate's median over the baseline's, from both sides' stored samples.
"""

from __future__ import annotations

import base64
import math
import zlib

import numpy as np

ENCODING = "quanta-u32le-byteshuffle+zlib+base64"
RELATIVE_QUANTUM = 1e-4
MIN_QUANTUM_MS = 1e-6


def pack(samples_ms) -> dict:
    """Samples → the record's ``samples`` metric: {encoding, count, base_ms, quantum_ms, data}."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to pack")
    base = float(values.min())
    quantum = max(float(np.median(values)) * RELATIVE_QUANTUM, MIN_QUANTUM_MS)
    quanta = np.round((values - base) / quantum).astype("<u4")
    shuffled = quanta.view(np.uint8).reshape(-1, 4).T.tobytes()
    return {"encoding": ENCODING, "count": int(values.size), "base_ms": base, "quantum_ms": quantum,
            "data": base64.b64encode(zlib.compress(shuffled, 9)).decode("ascii")}


def unpack(packed) -> list[float] | None:
    """The record's ``samples`` metric → the samples in ms, in call order (None: not a stored sample set,
    or a damaged one)."""
    if not isinstance(packed, dict) or packed.get("encoding") != ENCODING:
        return None
    try:
        raw = zlib.decompress(base64.b64decode(packed["data"], validate=True))
        count = int(packed["count"])
        if len(raw) != 4 * count:
            return None
        quanta = np.frombuffer(raw, dtype=np.uint8).reshape(4, count).T.copy().view("<u4").ravel()
        return (float(packed["base_ms"]) + quanta.astype(np.float64) * float(packed["quantum_ms"])).tolist()
    except (KeyError, TypeError, ValueError, zlib.error):
        return None


def min_samples(q: float) -> int:
    """The fewest samples a q-th percentile (0 < q < 100) means something from: 1 / (1 - q/100), and 2
    for the median."""
    return max(2, math.ceil(1 / (1 - q / 100) - 1e-9))


def shown(q: float, value, count) -> float | None:
    """``value`` where ``count`` samples support the q-th percentile, else None (not shown)."""
    if value is None or count is None:
        return value
    return value if count >= min_samples(q) else None


# -- the noise of a change: a bootstrap interval of the median ratio -------------------------------

MIN_FOR_INTERVAL = 10  # fewer samples on a side: no interval (regress falls back to the two medians)
_MAX_DRAWN = 2000  # each side is subsampled to this many (seeded) before resampling: plenty for a median


def median_ratio_interval(baseline, candidate, *, confidence: float = 0.95, resamples: int = 2000,
                          seed: int = 0) -> tuple[float, float] | None:
    """The percentile-bootstrap interval of median(candidate) / median(baseline), resampling each side's
    samples with replacement (seeded: the same inputs give the same interval); None when a side has
    fewer than ``MIN_FOR_INTERVAL`` samples."""
    a, b = np.asarray(baseline, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if a.size < MIN_FOR_INTERVAL or b.size < MIN_FOR_INTERVAL:
        return None
    rng = np.random.default_rng(seed)
    a, b = (rng.choice(x, _MAX_DRAWN, replace=False) if x.size > _MAX_DRAWN else x for x in (a, b))
    ratios = np.empty(resamples)
    for start in range(0, resamples, 250):  # in chunks: 250 × 2000 draws at a time
        n = min(250, resamples - start)
        ma = np.median(a[rng.integers(0, a.size, (n, a.size))], axis=1)
        mb = np.median(b[rng.integers(0, b.size, (n, b.size))], axis=1)
        ratios[start:start + n] = mb / ma
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)
