"""Top-k counts, crop averaging and per-image parity: integers, never running averages.

The harness keeps, per runtime, each image's five best classes (5 small ints an image); every
count here is computed from those arrays at the end, so a sharded run gathers the arrays and
computes exactly what a single process computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TOPK = 5


def crop_scores(logits: torch.Tensor, crops: int) -> torch.Tensor:
    """``(N*crops, C)`` logits → ``(N, C)`` scores to rank.

    One crop: the logits themselves (softmax would not change the order). Several crops: the mean
    of the per-crop softmax, as in the VGG paper's multi-crop evaluation.
    """
    if crops == 1:
        return logits
    n = logits.shape[0] // crops
    return torch.softmax(logits.view(n, crops, -1).float(), dim=-1).mean(dim=1)


def top5(scores: torch.Tensor) -> np.ndarray:
    """The five best classes of each row, best first, as int32 ``(N, 5)`` on the CPU."""
    k = min(TOPK, scores.shape[1])
    return scores.topk(k, dim=1, largest=True, sorted=True).indices.to(torch.int32).cpu().numpy()


@dataclass
class Counts:
    images: int
    top1_correct: int
    top5_correct: int | None  # None: fewer than five classes, where top-5 would always be right

    @property
    def top1_pct(self) -> float:
        return pct(self.top1_correct, self.images)

    @property
    def top5_pct(self) -> float | None:
        return None if self.top5_correct is None else pct(self.top5_correct, self.images)


def pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _top5(hits: np.ndarray) -> int | None:
    """Rows of ``hits`` (N, k) with a hit among their k best; None when k < 5 (fewer classes than five)."""
    return int(hits.any(axis=1).sum()) if hits.shape[1] >= TOPK else None


def counts(preds: np.ndarray, labels: np.ndarray) -> Counts:
    """Top-1 and top-5 correct counts of ``preds`` (N, k ≤ 5) against ``labels`` (N,)."""
    hits = preds == labels[:, None]
    return Counts(len(labels), int(hits[:, 0].sum()), _top5(hits))


def per_class(preds: np.ndarray, labels: np.ndarray, names: tuple[str, ...] | None = None,
              key: str = "wnid") -> list[dict]:
    """Counts per class present in ``labels``, ordered by class index; ``names[i]`` under ``key``."""
    out = []
    hits = preds == labels[:, None]
    for cls in np.unique(labels):
        sel = labels == cls
        row = {"class_index": int(cls), "images": int(sel.sum()), "top1_correct": int(hits[sel, 0].sum()),
               "top5_correct": _top5(hits[sel])}
        if names is not None:
            row[key] = names[int(cls)]
        row["top1_pct"] = pct(row["top1_correct"], row["images"])
        out.append(row)
    return out


def real_counts(preds: np.ndarray, val_numbers: list[int | None], real: list[list[int]]) -> Counts:
    """Counts against the ReaL labels: an image counts when it has a non-empty ReaL label set.

    Top-1 is right when the best class is in the set, top-5 when any of the five is (timm's rule).
    """
    images = top1 = top5_ = 0
    for row, number in zip(preds, val_numbers):
        if number is None or not 1 <= number <= len(real) or not real[number - 1]:
            continue
        ok = set(real[number - 1])
        images += 1
        top1 += int(row[0]) in ok
        top5_ += any(int(c) in ok for c in row)
    return Counts(images, top1, top5_)


def flips(preds: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Positions where the top-1 class differs from the reference runtime's."""
    return np.flatnonzero(preds[:, 0] != reference[:, 0])


@dataclass
class LogitDiff:
    """Running max and sum of |a - b| over logits; mergeable across batches and processes."""

    max_abs: float = 0.0
    sum_abs: float = 0.0
    count: int = 0
    nonfinite: int = 0  # NaN/inf logits of ``a``: counted apart so they cannot hide in max/mean

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        d = (a.float() - b.float()).abs()
        finite = torch.isfinite(d)
        self.nonfinite += int((~torch.isfinite(a)).sum())
        d = d[finite]
        if d.numel():
            self.max_abs = max(self.max_abs, float(d.max()))
            self.sum_abs += float(d.double().sum())
            self.count += d.numel()

    def merge(self, other: "LogitDiff") -> None:
        self.max_abs = max(self.max_abs, other.max_abs)
        self.sum_abs += other.sum_abs
        self.count += other.count
        self.nonfinite += other.nonfinite

    @property
    def mean_abs(self) -> float:
        return self.sum_abs / self.count if self.count else 0.0
