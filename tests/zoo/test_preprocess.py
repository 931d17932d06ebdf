"""The eval transform's tensor half: torchvision's arithmetic, and no per-batch host-to-device copy."""

from __future__ import annotations

import torch

from perfkit.zoo.preprocess import EvalTransform


def test_normalize_matches_torchvision_and_makes_mean_and_std_once_per_device(monkeypatch):
    from torchvision.transforms import v2

    pre = EvalTransform(resize_size=8, crop_size=8, mean=(0.5, 0.25, 0.125), std=(0.2, 0.3, 0.4))
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    expected = v2.Normalize(pre.mean, pre.std)(x.float() / 255)
    torch.testing.assert_close(pre.normalize(x), expected, rtol=0, atol=0)
    made = []
    real = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(k.get("device")) or real(*a, **k))
    for _ in range(5):  # batches: on CUDA a new tensor per batch is a pageable copy that waits for the GPU
        pre.normalize(x, "cpu")
    assert made == []  # made by the first call above, reused since
    with torch.inference_mode():  # made inside inference mode (validate) ...
        EvalTransform(resize_size=8, crop_size=8, mean=(0.1, 0.2, 0.3)).normalize(x)
    out = EvalTransform(resize_size=8, crop_size=8, mean=(0.1, 0.2, 0.3)).normalize(x)  # ... and usable outside it (training)
    assert not out.is_inference()
