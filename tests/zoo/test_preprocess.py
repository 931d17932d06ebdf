"""The eval transform: torchvision's arithmetic, no per-batch host-to-device copy, timm's own transform."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from perfkit.errors import UsageError
from perfkit.zoo.preprocess import EvalTransform, for_own_model
from perfkit.zoo.sources import resolve


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


# -- timm: the transform timm's own create_transform builds, read back ------------------------------------

PHOTOS = ("chelsea", "coffee", "astronaut")  # scikit-image's bundled photos: 451×300, 400×400, 512×512


def _photo(name: str):
    from PIL import Image

    data = pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) is not installed")
    return Image.fromarray(getattr(data, name)())


@pytest.mark.parametrize("model, input_size, geometry", [
    ("timm:test_resnet", None, (168, 160, "bilinear", "center")),  # crop_pct 0.95, mean/std 0.5
    ("timm:efficientnet_lite0", None, (256, 224, "bicubic", "center")),  # crop_pct 0.875, ImageNet mean/std
    ("timm:coat_lite_medium_384", None, (384, 384, "bicubic", "squash")),  # crop_mode squash: aspect not kept
    ("timm:resnet50", 288, (303, 288, "bicubic", "center")),  # its test size, resolved by timm at 288
])
def test_timm_transform_is_timms_own_on_real_photos(model, input_size, geometry):
    import timm

    spec = resolve(model, weights="random", input_size=input_size)
    pre = spec.preprocess
    assert (pre.resize_size, pre.crop_size, pre.interpolation, pre.crop_mode) == geometry and not pre.unsupported
    cfg = timm.models.get_pretrained_cfg(model.removeprefix("timm:")).to_dict()
    args = {"input_size": (3, input_size, input_size)} if input_size else {}
    theirs = timm.data.create_transform(**timm.data.resolve_data_config(args=args, pretrained_cfg=cfg), is_training=False)
    for name in PHOTOS:
        image = _photo(name)
        torch.testing.assert_close(pre(image), theirs(image), rtol=0, atol=0, msg=f"{model} on {name}")


def test_a_timm_crop_mode_perfkit_cannot_reproduce_is_refused_on_images_only():
    """timm's `border` crop mode (resize the longest side, pad): the model still runs on synthetic inputs,
    and feeding it images is one line saying why."""
    spec = resolve("timm:deepseek_vit_412m", weights="random")
    assert "ResizeKeepRatio → CenterCropOrPad (crop_mode border" in spec.preprocess.unsupported
    assert "not reproducible on images" in spec.preprocess.describe()
    with pytest.raises(UsageError) as err:
        spec.preprocess(_photo("coffee"))
    assert str(err.value).startswith("cannot preprocess images for this model: timm's ResizeKeepRatio") and (
        "\n" not in str(err.value))


def test_squash_has_its_own_cache_key():
    square = EvalTransform(resize_size=384, crop_size=384)
    assert replace(square, crop_mode="squash").key() != square.key() == "r384-c384-bilinear-aa1"


def test_own_model_default_and_a_non_square_input():
    pre = for_own_model((3, 224, 224))
    assert (pre.resize_size, pre.crop_size, pre.mean, pre.std) == (256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    wide = for_own_model((3, 224, 320))
    assert wide.unsupported == "the input 224×320 is not square"
    with pytest.raises(UsageError, match="not square"):
        wide.pil_to_uint8()
