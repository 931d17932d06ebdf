"""The int8 calibration set: seeded selection, sample count, identity (what keys the artifact cache),
the model's preprocessing, synthetic sets labelled as such, errors naming the file."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from perfkit.data.calibration import (
    DEFAULT_SAMPLES, SYNTHETIC_SAMPLES, CalibrationMethod, CalibrationSet, Source, calibration_key,
)
from perfkit.data.synthetic import make_image, make_imagenet_folder
from perfkit.errors import DatasetError, UsageError


@pytest.fixture
def folder(tmp_path):
    """20 small JPEGs in two class folders (an ImageFolder-like tree)."""
    root = tmp_path / "calib"
    for i in range(20):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        make_image(i, (40, 36)).save(sub / f"img{i:02d}.jpg", quality=90)
    return root


def test_selection_is_seeded_sorted_and_of_the_asked_size(folder):
    a = CalibrationSet(Source.IMAGES, folder, samples=8)
    assert len(a.files) == a.count == 8 and list(a.files) == sorted(a.files)
    assert a.files == CalibrationSet(Source.IMAGES, folder, samples=8).files  # same seed: same images
    assert a.files != CalibrationSet(Source.IMAGES, folder, samples=8, seed=1).files
    whole = CalibrationSet(Source.IMAGES, folder, samples=DEFAULT_SAMPLES)
    assert whole.count == 20 and "calibrated on 20 images from" in whole.describe()  # fewer than asked: all, said so


def test_identity_changes_with_the_set_the_count_the_seed_and_the_method(folder):
    base = CalibrationSet(Source.IMAGES, folder, samples=8)
    same = CalibrationSet(Source.IMAGES, str(folder), samples=8, method="MINMAX")
    assert base.identity() == same.identity() == calibration_key(same)
    assert base.identity() != CalibrationSet(Source.IMAGES, folder, samples=9).identity()
    assert base.identity() != CalibrationSet(Source.IMAGES, folder, samples=8, seed=3).identity()
    assert base.identity() != CalibrationSet(Source.IMAGES, folder, samples=8, method="entropy").identity()
    assert base.identity() != CalibrationSet(Source.VALIDATION, folder, samples=8).identity()
    # editing a selected image changes the set; a copy of the folder elsewhere (same files) does not
    copy = folder.parent / "copy"
    shutil.copytree(folder, copy)
    assert CalibrationSet(Source.IMAGES, copy, samples=8).identity() == base.identity()
    victim = base.files[0]
    make_image(99, (40, 36)).save(victim, quality=90)
    os.utime(victim, ns=(1, 1))
    assert CalibrationSet(Source.IMAGES, folder, samples=8).identity() != base.identity()
    assert calibration_key(None) is None


def test_images_go_through_the_models_preprocessing(folder, tiny_spec):
    from PIL import Image

    cal = CalibrationSet(Source.IMAGES, folder, samples=4)
    x = cal.tensors(tiny_spec.preprocess)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    with Image.open(cal.files[0]) as img:
        assert torch.equal(x[0], tiny_spec.preprocess(img.convert("RGB")))


def test_an_imagenet_layout_is_an_image_folder_too(tmp_path):
    for layout in ("flat-csv", "torchvision"):
        root = tmp_path / layout
        make_imagenet_folder(root, [1, 2], 3, layout)
        assert CalibrationSet(Source.VALIDATION, root, samples=4).count == 4
        assert "calibrated on 4 validation images (seeded subset of --data" in \
            CalibrationSet(Source.VALIDATION, root, samples=4).describe()


def test_an_imagefolder_of_your_classes_calibrates_on_every_image_under_it(tmp_path, tiny_spec):
    """--calib takes the same folders as --data: images nested under class folders count, other files do not."""
    from perfkit.data import open_dataset
    from perfkit.data.synthetic import make_class_folders

    root = tmp_path / "mine"
    make_class_folders(root, ["cat", "espresso"], 3, suffix=".jpg")
    (root / "cat" / "more").mkdir()
    make_image(7).save(root / "cat" / "more" / "deep.png")
    (root / "espresso" / "labels.csv").write_text("not an image")
    cal = CalibrationSet(Source.IMAGES, root, samples=DEFAULT_SAMPLES)
    assert {p.relative_to(root).as_posix() for p in cal.files} == {s.image_id for s in open_dataset(root).samples}
    assert cal.count == 7 and cal.tensors(tiny_spec.preprocess).shape == (7, 3, 32, 32)


def test_synthetic_sets_are_seeded_and_say_accuracy_is_not_meaningful(tiny_spec):
    cal = CalibrationSet.synthetic()
    assert cal.count == SYNTHETIC_SAMPLES and not cal.meaningful and cal.files == ()
    assert cal.describe() == f"calibrated on {SYNTHETIC_SAMPLES} synthetic images (minmax) — accuracy not meaningful"
    x = CalibrationSet.synthetic(3).tensors(tiny_spec.preprocess)
    assert x.shape == (3, 3, 32, 32) and torch.equal(x, CalibrationSet.synthetic(3).tensors(tiny_spec.preprocess))
    assert not torch.equal(x, CalibrationSet.synthetic(3, seed=1).tensors(tiny_spec.preprocess))
    assert CalibrationSet.synthetic(3).identity() != CalibrationSet.synthetic(4).identity()
    assert CalibrationSet.synthetic(3).manifest()["files"] == [] and cal.manifest()["meaningful"] is False


def test_the_manifest_lists_the_chosen_files(folder):
    m = CalibrationSet(Source.IMAGES, folder, samples=3).manifest()
    assert len(m["files"]) == 3 and all(f.endswith(".jpg") and not f.startswith("/") for f in m["files"])
    assert m["root"] == str(folder.resolve()) and m["samples"] == 3 and m["method"] == "minmax" and m["meaningful"]


def test_an_unreadable_image_is_an_error_naming_it(folder, tiny_spec):
    bad = folder / "a" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg"):
        CalibrationSet(Source.IMAGES, folder, samples=100).tensors(tiny_spec.preprocess)


def test_bad_values_are_one_line_usage_errors(folder, tmp_path):
    with pytest.raises(UsageError, match="unknown calibration method 'kl'; choose from: minmax, entropy, percentile"):
        CalibrationSet(Source.IMAGES, folder, method="kl")
    with pytest.raises(UsageError, match="--calib-samples must be a positive integer, got 0"):
        CalibrationSet(Source.IMAGES, folder, samples=0)
    with pytest.raises(DatasetError, match="--calib .* is not a folder"):
        CalibrationSet(Source.IMAGES, tmp_path / "nowhere").files
    assert [m.value for m in CalibrationMethod] == ["minmax", "entropy", "percentile"]
