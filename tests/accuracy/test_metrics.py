import numpy as np
import pytest
import torch

from perfkit.accuracy import metrics as M


def test_counts_and_per_class():
    preds = np.array([[3, 1, 2, 0, 4], [0, 3, 1, 2, 4], [9, 8, 7, 6, 5], [1, 0, 2, 3, 4]], np.int32)
    labels = np.array([3, 3, 1, 1])
    c = M.counts(preds, labels)
    assert (c.images, c.top1_correct, c.top5_correct) == (4, 2, 3)
    assert c.top1_pct == 50.0 and c.top5_pct == 75.0
    rows = M.per_class(preds, labels)
    assert [(r["class_index"], r["images"], r["top1_correct"], r["top5_correct"]) for r in rows] == \
        [(1, 2, 1, 1), (3, 2, 1, 2)]


def test_top5_is_best_first():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.5, 0.0, 0.2, 0.8]])
    assert M.top5(scores).tolist() == [[1, 6, 3, 2, 5]]


def test_multi_crop_averages_softmax_not_logits():
    # Crop 1 is very sure of class 0, crops 2..10 mildly prefer class 1: averaged logits pick 0,
    # averaged probabilities pick 1.
    logits = torch.zeros(10, 3)
    logits[0, 0] = 50.0
    logits[1:, 1] = 1.0
    scores = M.crop_scores(logits, 10)
    assert scores.shape == (1, 3) and torch.allclose(scores.sum(1), torch.ones(1))
    assert int(scores.argmax()) == 1 and int(logits.mean(0).argmax()) == 0
    assert M.crop_scores(logits, 1) is logits


def test_real_counts_skip_images_without_real_labels():
    preds = np.array([[1, 2, 3, 4, 5], [7, 8, 9, 10, 11], [4, 1, 0, 0, 0], [2, 0, 0, 0, 0]])
    real = [[1], [11], [], [5]]
    c = M.real_counts(preds, [1, 2, 3, 4], real)
    assert (c.images, c.top1_correct, c.top5_correct) == (3, 1, 2)
    assert M.real_counts(preds, [None, None, None, None], real).images == 0


def test_flips_and_logit_diff_merge():
    a = np.array([[1, 2], [3, 4], [5, 6]])
    b = np.array([[1, 2], [4, 3], [5, 6]])
    assert M.flips(a, b).tolist() == [1]
    d1, d2 = M.LogitDiff(), M.LogitDiff()
    d1.update(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.5, 2.0]]))
    d2.update(torch.tensor([[0.0, float("nan")]]), torch.tensor([[-2.0, 1.0]]))
    d1.merge(d2)
    assert d1.max_abs == 2.0 and d1.count == 3 and d1.nonfinite == 1
    assert d1.mean_abs == pytest.approx(2.5 / 3)
