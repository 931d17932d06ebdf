"""The accuracy harness on an ImageFolder of your own classes, against an independent computation.

The model is LeNet-5 (10 outputs, 32×32) with a random backbone and a head (``write_spread_weights``)
that spreads its predictions over the ten classes, on a 10-class folder ``c0 … c9`` of generated
images: counts are neither 0 nor all. The independent computation is torchvision's ``ImageFolder``
with the model's own transform, one image at a time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from perfkit.accuracy.harness import EvalOptions, evaluate
from perfkit.backends import open_runner
from perfkit.backends.eager import EagerRunner
from perfkit.context import Context
from perfkit.data import open_dataset
from perfkit.data.synthetic import make_class_folders, write_spread_weights
from perfkit.errors import UsageError
from perfkit.record import to_records
from perfkit.zoo.sources import resolve

NAMES = [f"c{i}" for i in range(10)]
PERMUTED = ["c3", "c7", "c0", "c9", "c1", "c5", "c8", "c2", "c6", "c4"]  # labels.txt: output i is PERMUTED[i]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_spread_weights(tmp_path_factory.mktemp("w") / "lenet5-spread.pt", list(range(10)), arch="lenet5",
                                decoys=0, seed=1)


@pytest.fixture(scope="module")
def spec(weights):
    return resolve("lenet5", weights=str(weights))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("mine") / "photos"
    make_class_folders(root, NAMES, 4, seed=7)
    return root


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("\n".join(PERMUTED) + "\n")
    return path


@pytest.fixture(scope="module")
def independent(spec, folder):
    """relative path → (folder name, top-5 classes), from torchvision's ImageFolder and the model itself."""
    from torchvision.datasets import ImageFolder

    model = spec.build()
    tv = ImageFolder(str(folder), transform=spec.preprocess)
    out = {}
    with torch.no_grad():
        for (path, label), (x, _) in zip(tv.samples, tv):
            out[Path(path).relative_to(folder).as_posix()] = (tv.classes[label], model(x[None])[0].topk(5).indices.tolist())
    return out


def _expected(independent, index: list[str]) -> tuple[int, int, int]:
    top1 = sum(top5[0] == index.index(name) for name, top5 in independent.values())
    top5 = sum(index.index(name) in top5 for name, top5 in independent.values())
    return len(independent), top1, top5


def run(spec, data, runners=None, **options):
    runners = runners or {"eager": open_runner(spec, "eager", Context())}
    return evaluate(spec, data, runners, EvalOptions(transform=spec.preprocess, **options))


def counts(result, label="eager"):
    c = result.runtimes[label].counts
    return c.images, c.top1_correct, c.top5_correct


def test_top1_count_equals_torchvision_imagefolder_and_the_models_own_transform(spec, folder, independent):
    expected = _expected(independent, NAMES)
    result = run(spec, open_dataset(folder))
    assert counts(result) == expected
    assert 0 < expected[1] < expected[2] < expected[0]  # some right, some wrong: the data are not trivial
    top1 = dict(zip(result.image_ids, result.predictions["eager"][:, 0].tolist()))
    assert top1 == {path: top5[0] for path, (_, top5) in independent.items()}  # image by image


def test_a_permuted_labels_file_gives_the_permuted_counts(spec, folder, labels, independent):
    result = run(spec, open_dataset(folder, labels), per_class=True)
    expected = _expected(independent, PERMUTED)
    assert counts(result) == expected and expected[1] != _expected(independent, NAMES)[1]
    rows = result.runtimes["eager"].per_class
    assert [(r["class_index"], r["name"], r["images"]) for r in rows] == [(i, n, 4) for i, n in enumerate(PERMUTED)]
    for row in rows:  # each class's count, from the independent predictions
        mine = [top5 for name, top5 in independent.values() if name == row["name"]]
        assert row["top1_correct"] == sum(top5[0] == row["class_index"] for top5 in mine)
    assert sum(r["top1_correct"] for r in rows) == expected[1]


class SwapRunner(EagerRunner):
    """A stand-in exported runtime that swaps the logits of classes 1 and 4."""

    name = "onnx"

    def _infer(self, x):
        y = super()._infer(x).clone()
        y[:, [1, 4]] = y[:, [4, 1]]
        return y


def test_flips_and_the_record_on_your_own_classes(spec, folder, labels):
    data = open_dataset(folder, labels).take(limit=30)
    result = run(spec, data, {"eager": open_runner(spec, "eager", Context()), "swap": SwapRunner(spec)}, per_class=True)
    top1 = result.predictions["eager"][:, 0]
    swapped = [i for i, p in zip(result.image_ids, top1) if p in (1, 4)]
    assert result.runtimes["swap"].flipped_ids == swapped and swapped
    assert result.image_ids == sorted(result.image_ids) and result.images == 30  # --limit: by relative path
    rows = {r.metrics["runner"]: r for r in to_records(result)}
    for r in rows.values():
        r.validate()
    m = rows["swap"].metrics
    assert m["flips_vs_eager"] == len(swapped) and m["flipped_ids"] == swapped
    assert (m["layout"], m["num_classes"], m["dataset_images"]) == ("imagefolder", 10, 40)
    assert m["labels_from"].startswith(f"{labels} (sha256 ") and m["ref_top1_pct"] is None
    assert [c["name"] for c in m["per_class"]][:2] == PERMUTED[:2]


def test_published_imagenet_accuracy_is_never_attached_to_your_classes(spec, folder):
    claimed = replace(spec, reference={"acc1_pct": 99.0, "acc5_pct": 99.9})
    result = run(claimed, open_dataset(folder).take(limit=4))
    assert result.published == {}
    metrics = to_records(result)[0].metrics
    assert metrics["ref_top1_pct"] is None and metrics["delta_top1_vs_ref_pp"] is None


def test_fewer_than_five_classes_have_no_top5(tiny_spec, tmp_path):
    from perfkit.report.tables import accuracy_table, per_class_tables

    make_class_folders(tmp_path / "three", ["a", "b", "c"], 2)
    three = replace(tiny_spec, num_classes=3)  # LeNet-5 with a 3-class head
    result = run(three, open_dataset(tmp_path / "three"), per_class=True)
    r = result.runtimes["eager"]
    assert r.counts.images == 6 and r.counts.top5_correct is None and r.counts.top5_pct is None
    assert all(row["top5_correct"] is None for row in r.per_class)
    [record] = to_records(result)
    record.validate()
    assert record.metrics["top5_pct"] is None and record.metrics["delta_top5_vs_eager_pp"] is None
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(accuracy_table([record], "t", []))
    [row] = [line for line in console.export_text(clear=True).splitlines() if line.startswith("│ eager")]
    assert row.count("n/a") == 2  # top-5 and top-5 %: "n/a", not a meaningless 100 %
    console.print(*per_class_tables([record]))
    assert console.export_text().count("n/a") == 3  # one per class


def test_the_tensor_cache_never_mixes_two_folders_of_the_same_geometry(spec, tmp_path):
    stamp = 1_600_000_000_000_000_000
    for name, seed in (("a", 0), ("b", 500)):
        for path in make_class_folders(tmp_path / name, NAMES, 1, seed=seed, suffix=".bmp", size=(36, 36)):
            os.utime(path, ns=(stamp, stamp))  # same names, sizes and times: only the pixels differ
    a, b = open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")
    plain_b = run(spec, b)
    run(spec, a, cache_dir=tmp_path / "cache")
    cached_b = run(spec, b, cache_dir=tmp_path / "cache")
    assert (cached_b.decoded, cached_b.cache_hits) == (10, 0)
    assert np.array_equal(cached_b.predictions["eager"], plain_b.predictions["eager"])
    again = run(spec, b, cache_dir=tmp_path / "cache")
    assert (again.decoded, again.cache_hits) == (0, 10) and counts(again) == counts(plain_b)
    assert not np.array_equal(run(spec, a).predictions["eager"], plain_b.predictions["eager"])


def test_real_labels_need_imagenet(spec, folder):
    with pytest.raises(UsageError, match="--real-labels scores ImageNet-val .* imagefolder of your own classes"):
        run(spec, open_dataset(folder), real=([[1]], "test"))


# -- the command line ------------------------------------------------------------------------------------

def cli(*argv):
    from perfkit.cli import main

    return main([str(a) for a in argv])


def test_cli_validate_json_on_your_folder(spec, weights, folder, labels, independent, capsys):
    rc = cli("validate", "lenet5", "--weights", weights, "--data", folder, "--labels", labels, "--workers", 0,
             "--per-class", "--json")
    assert rc == 0
    [row] = [r for r in json.loads(capsys.readouterr().out)["records"] if r["kind"] == "accuracy"]
    m = row["metrics"]
    assert (m["images"], m["top1_correct"], m["top5_correct"]) == _expected(independent, PERMUTED)
    assert m["layout"] == "imagefolder" and m["num_classes"] == 10 and str(labels) in m["labels_from"]
    assert {c["name"] for c in m["per_class"]} == set(NAMES)


def test_cli_validate_prints_class_names_and_no_published_column(weights, folder, capsys):
    assert cli("validate", "lenet5", "--weights", weights, "--data", folder, "--workers", 0, "--per-class") == 0
    captured = capsys.readouterr()
    out, err = " ".join(captured.out.split()), " ".join(captured.err.split())
    assert "layout 'imagefolder' (folder names)" in err and "40 images, 10 classes" in err
    assert "per-class top-1" in out and "c0" in out and "pub" not in out  # no published column on your classes


def test_cli_int8_calibrates_on_a_calib_folder_of_your_classes(weights, folder, tmp_path, capsys):
    calib = tmp_path / "calib"
    make_class_folders(calib, ["x", "y"], 3, seed=900)
    rc = cli("validate", "lenet5", "--weights", weights, "--data", folder, "--workers", 0, "-f", "onnx",
             "--precision", "fp32,int8", "--calib", calib, "--limit", 8, "--json")
    assert rc == 0
    rows = {(r["runtime"], r["precision"]): r["metrics"] for r in json.loads(capsys.readouterr().out)["records"]
            if r["kind"] == "accuracy"}
    assert set(rows) == {("eager", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    assert rows["onnx", "int8"]["calibration"] == f"calibrated on 6 images from {calib} (minmax)"
    assert rows["onnx", "int8"]["images"] == 8 and rows["onnx", "int8"]["layout"] == "imagefolder"


def _no_runs():
    from perfkit.store import Store

    with Store() as store:
        return store.runs() == []


@pytest.mark.parametrize("case, match", [
    ("count", r"labels.txt has 5 classes but lenet5 \(lenet5-spread.pt\) outputs 10"),
    ("folders", r"has 5 class folders but lenet5 \(lenet5-spread.pt\) outputs 10: give --labels FILE .* or --num-classes 5"),
    ("missing", r"class folder\(s\) 'c4' of .* not in the labels file .*labels.txt"),
    ("duplicate", r"labels.txt: 'c1' is listed twice \(lines 2 and 4\)"),
    ("single", r"has a single class folder \(c0\)"),
    ("empty", r"class folder .*c2 holds no images"),
    ("no-file", r"labels file .*nope.txt does not exist"),
    ("undecodable", r"labels file .*labels.txt is not UTF-8 text"),
    ("real", r"--real-labels scores ImageNet-val"),
])
def test_cli_refusals_are_one_line_exit_2_and_nothing_stored(weights, tmp_path, capsys, case, match):
    root, labels, extra = tmp_path / "mine", tmp_path / "labels.txt", []
    make_class_folders(root, NAMES[:1] if case == "single" else NAMES[:5], 1)
    labels.write_text({"count": "c0\nc1\nc2\nc3\nc4\n", "missing": "c0\nc1\nc2\nc3\n",
                       "duplicate": "c0\nc1\nc2\nc1\nc3\nc4\n"}.get(case, "\n".join(NAMES) + "\n"))
    if case == "undecodable":
        labels.write_bytes(b"\xff\xfe\x00c0")
    if case == "empty":
        (root / "c2" / "0.png").unlink()
    if case in ("folders", "single", "empty", "real"):
        labels = None
    if case == "no-file":
        labels = tmp_path / "nope.txt"
    if case == "real":
        make_class_folders(root, NAMES, 1)
        extra = ["--real-labels"]
    argv = ["validate", "lenet5", "--weights", weights, "--data", root, "--workers", 0, *extra]
    rc = cli(*argv, *(["--labels", labels] if labels else []))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(match, " ".join(err.split())), err
    assert _no_runs()


@pytest.mark.slow
def test_real_weights_on_photos_in_your_folders_give_the_known_answer_in_every_runtime(rw, lite1, tmp_path, capsys):
    """EfficientNet-Lite1's real ImageNet weights, its 1000 outputs named by a labels file (espresso and missile
    where ImageNet has them), on scikit-image's coffee and rocket photos (and their mirror images) in
    ``espresso/`` and ``missile/``: every photo right, in eager and ONNX Runtime alike."""
    from PIL import Image

    _, weights = lite1
    root = tmp_path / "mine"
    for photo, folder in (("coffee", "espresso"), ("rocket", "missile")):
        (root / folder).mkdir(parents=True)
        image = rw.photo(photo)
        image.save(root / folder / f"{photo}.png")
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / folder / f"{photo}-mirrored.jpg")
    names = [f"imagenet-{i}" for i in range(1000)]
    names[967], names[657] = "espresso", "missile"
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    rc = cli("validate", rw.LITE1, "--weights", weights, "--data", root, "--labels", tmp_path / "labels.txt",
             "-f", "eager,onnx", "--workers", 0, "--per-class", "--json", "--artifacts", tmp_path / "artifacts")
    assert rc == 0
    rows = {r["runtime"]: r["metrics"] for r in json.loads(capsys.readouterr().out)["records"] if r["kind"] == "accuracy"}
    assert set(rows) == {"eager", "onnx"}
    for m in rows.values():
        assert (m["images"], m["top1_correct"], m["top5_correct"], m["num_classes"]) == (4, 4, 4, 1000)
        assert [(c["name"], c["top1_correct"]) for c in m["per_class"]] == [("missile", 2), ("espresso", 2)]
        assert m["ref_top1_pct"] is None and m["flips_vs_eager"] == 0
