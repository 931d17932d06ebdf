"""ImageFolders of your own classes (perfkit.data.imagefolder) and the one opener of --data.

The class index must be torchvision's ImageFolder's (sorted folder names) or the labels file's;
every refusal is one line naming the culprit.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from perfkit.data import open_dataset
from perfkit.data.imagefolder import read_labels
from perfkit.data.synthetic import make_class_folders, make_image, make_imagenet_folder
from perfkit.errors import DatasetError, UsageError

CLASSES = ["espresso", "cat", "Zebra", "ant"]  # sorted: Zebra, ant, cat, espresso (byte order, as torchvision)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    make_class_folders(root, CLASSES, 2)
    return root


def test_sorted_folder_names_are_the_class_index_as_in_torchvision(folder):
    from torchvision.datasets import ImageFolder

    (folder / "cat" / "deeper" / "still").mkdir(parents=True)
    make_image(99).save(folder / "cat" / "deeper" / "still" / "x.JPG")  # nested, upper-case suffix
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "README.md").write_text("top-level files are in no class")
    data = open_dataset(folder)
    tv = ImageFolder(str(folder))
    assert data.layout == "imagefolder" and data.labels_from == "folder names" and not data.imagenet
    assert data.class_names == tuple(tv.classes) == ("Zebra", "ant", "cat", "espresso")
    assert sorted((s.path, s.label) for s in data.samples) == sorted((Path(p), c) for p, c in tv.samples)
    assert "cat/deeper/still/x.JPG" in [s.image_id for s in data.samples] and len(data) == 9
    assert [s.image_id for s in data.samples] == sorted(s.image_id for s in data.samples)  # by relative path
    assert data.num_classes == 4 and "1 file(s) outside the class folders ignored" in data.describe()


def test_a_labels_file_reorders_the_index(folder, tmp_path):
    labels = tmp_path / "labels.txt"
    # a BOM, CRLF line ends, blank lines and surrounding spaces are not part of the names
    labels.write_bytes("\ufeffcat\r\n\r\n  espresso  \r\nant\t\r\nZebra\r\nunused\r\n\r\n".encode())
    data = open_dataset(folder, labels)
    assert data.class_names == ("cat", "espresso", "ant", "Zebra", "unused")
    assert {s.image_id.split("/")[0]: s.label for s in data.samples} == {"cat": 0, "espresso": 1, "ant": 2, "Zebra": 3}
    sha = hashlib.sha256(labels.read_bytes()).hexdigest()
    assert data.labels_from == f"{labels} (sha256 {sha[:12]})"
    assert data.num_classes == 5 and data.classes == [0, 1, 2, 3]
    assert "5 classes in the labels" in data.describe()


def test_limit_takes_the_first_images_by_relative_path(folder):
    data = open_dataset(folder)
    first = data.take(limit=3)
    assert [s.image_id for s in first.samples] == ["Zebra/0.png", "Zebra/1.png", "ant/0.png"]
    assert "first 3 (by relative path)" in first.describe() and first.full_size == 8
    per = data.take(per_class=1)
    assert [s.image_id for s in per.samples] == ["Zebra/0.png", "ant/0.png", "cat/0.png", "espresso/0.png"]


def _write(path, content: bytes):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("case, match", [
    ("missing-from-labels", r"class folder\(s\) 'ant' of .*photos not in the labels file .*labels.txt"),
    ("duplicate", r"labels.txt: 'cat' is listed twice \(lines 1 and 4\)"),
    ("one-label", r"labels.txt lists a single class \('cat'\)"),
    ("no-labels", r"labels.txt lists no class names"),
    ("labels-missing", r"labels file .*nope.txt does not exist"),
    ("labels-binary", r"labels file .*labels.txt is not UTF-8 text \(undecodable byte at offset 2\)"),
    ("empty-class", r"class folder .*photos/cat holds no images .* an empty class would count nothing"),
    ("single-class", r"has a single class folder \(cat\): accuracy needs at least two classes"),
    ("no-class-folders", r"holds no class folders: --data takes an ImageFolder"),
])
def test_bad_folders_and_labels_are_refused_in_one_line(folder, tmp_path, case, match):
    labels = tmp_path / "labels.txt"
    if case == "missing-from-labels":
        _write(labels, b"cat\nespresso\nZebra\n")
    elif case == "duplicate":
        _write(labels, b"cat\nespresso\nant\ncat\nZebra\n")
    elif case == "one-label":
        _write(labels, b"\ncat\n\n")
    elif case == "no-labels":
        _write(labels, b"\n  \n")
    elif case == "labels-missing":
        labels = tmp_path / "nope.txt"
    elif case == "labels-binary":
        _write(labels, b"ca\xff\xfe\x00t")
    elif case == "empty-class":
        labels = None
        for f in (folder / "cat").iterdir():
            f.unlink()
        (folder / "cat" / "sub").mkdir()  # a sub-folder without images is no image either
    elif case in ("single-class", "no-class-folders"):
        labels = None
        folder = tmp_path / "other"
        if case == "single-class":
            make_class_folders(folder, ["cat"], 2)
        else:
            folder.mkdir()
            make_image(1).save(folder / "a.png")
    with pytest.raises(DatasetError, match=match) as err:
        open_dataset(folder, labels)
    assert "\n" not in str(err.value)


def test_a_model_whose_outputs_differ_from_the_classes_is_refused_naming_both(folder, tmp_path, tiny_spec):
    five = _write(tmp_path / "labels.txt", b"cat\nespresso\nant\nZebra\nunused\n")
    with pytest.raises(UsageError, match=rf"^{five} has 5 classes but lenet5 \(random weights\) outputs 10$"):
        open_dataset(folder, five).check_model(tiny_spec)
    with pytest.raises(UsageError, match=r"photos has 4 class folders but lenet5 \(random weights\) outputs 10: give "
                                         r"--labels FILE .* or --num-classes 4"):
        open_dataset(folder).check_model(tiny_spec)
    open_dataset(folder).check_model(replace(tiny_spec, num_classes=4))  # the right head: accepted


def test_wordnet_id_folders_are_imagenet_unless_a_labels_file_says_otherwise(tmp_path, tiny_spec):
    images = make_imagenet_folder(tmp_path / "val", [5, 900], 2)
    assert open_dataset(tmp_path / "val").layout == "folders"
    with pytest.raises(UsageError, match="ImageNet-val needs a 1000-class model .*give --labels FILE"):
        open_dataset(tmp_path / "val").check_model(tiny_spec)
    wnids = sorted({im.wnid for im in images})
    labels = _write(tmp_path / "labels.txt", f"{wnids[1]}\n{wnids[0]}\n".encode())
    data = open_dataset(tmp_path / "val", labels)
    assert data.layout == "imagefolder" and data.class_names == (wnids[1], wnids[0])
    assert {s.label for s in data.samples if s.image_id.startswith(wnids[1])} == {0}
    assert "WordNet-id folders scored as the classes of" in data.describe() and "not as ImageNet-1k" in data.describe()


def test_labels_with_an_imagenet_layout_labelled_by_its_ground_truth_are_refused(tmp_path):
    make_imagenet_folder(tmp_path / "flat", [5, 900], 2, layout="flat-csv")
    labels = _write(tmp_path / "labels.txt", b"a\nb\n")
    with pytest.raises(UsageError, match=r"--labels .*labels.txt: .*flat is an ImageNet-val 'flat' layout"):
        open_dataset(tmp_path / "flat", labels)


def test_identity_tells_folders_with_the_same_file_names_sizes_and_times_apart(tmp_path):
    stamp = 1_600_000_000_000_000_000
    for name, seed in (("a", 0), ("b", 50)):
        for path in make_class_folders(tmp_path / name, ["x", "y"], 2, seed=seed, suffix=".bmp", size=(40, 40)):
            os.utime(path, ns=(stamp, stamp))  # as an archive extracted with its times would leave them
    a, b = open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")
    assert [s.image_id for s in a.all_samples] == [s.image_id for s in b.all_samples]
    assert [s.path.stat().st_size for s in a.all_samples] == [s.path.stat().st_size for s in b.all_samples]
    assert a.identity != b.identity
    assert open_dataset(tmp_path / "a").identity == a.identity  # the same folder again: the same identity


def test_read_labels_keeps_the_order_and_hashes_the_bytes(tmp_path):
    labels = _write(tmp_path / "l.txt", b"b\na\n")
    read = read_labels(labels)
    assert read.names == ("b", "a") and read.sha256 == hashlib.sha256(b"b\na\n").hexdigest()
