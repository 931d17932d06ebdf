import json

import pytest
import torch

from perfkit.data.imagenet import open_imagenet, real_labels, synsets
from perfkit.data.synthetic import DEVKIT_ARCHIVE, LAYOUTS, make_imagenet_folder, write_devkit_archive
from perfkit.errors import DatasetError


def test_synsets_are_the_sorted_imagenet_1k_list():
    s = synsets()
    assert len(s) == 1000 and list(s) == sorted(s) and s[0] == "n01440764" and s[999] == "n15075141"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_gives_the_imagenet_index_of_every_file(tmp_path, layout):
    images = make_imagenet_folder(tmp_path / layout, [5, 900, 17], 2, layout=layout)
    data = open_imagenet(tmp_path / layout)
    assert data.layout == layout.split("-")[0]
    assert [(s.path.name, s.label) for s in data.samples] == [(im.file_name, im.class_index) for im in images]
    assert data.classes == [5, 17, 900]


def test_subset_limit_is_deterministic_and_described(tmp_path):
    make_imagenet_folder(tmp_path, [5, 900], 4)
    data = open_imagenet(tmp_path)
    first = data.take(limit=3)
    assert [s.path.name for s in first.samples] == [f"ILSVRC2012_val_0000000{i}.JPEG" for i in (1, 2, 3)]
    per = data.take(per_class=1)
    assert sorted(s.label for s in per.samples) == [5, 900] and per.full_size == 8
    assert "first 1 per class" in per.describe() and "SUBSET" in per.describe()
    assert per.indices == tuple(data.samples.index(s) for s in per.samples)
    assert data.take() is data


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_imagenet(tmp_path / "nope")


def test_unknown_layout_lists_the_known_ones(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="no ImageNet-val layout") as err:
        open_imagenet(tmp_path)
    assert "LOC_val_solution.csv" in str(err.value) and "meta.bin" in str(err.value)


def test_folder_that_is_not_an_imagenet_class(tmp_path):
    make_imagenet_folder(tmp_path, [5], 1)
    (tmp_path / "n99999999").mkdir()
    with pytest.raises(DatasetError, match="n99999999"):
        open_imagenet(tmp_path)


def test_torchvision_root_with_a_class_folder_missing(tmp_path):
    import shutil

    make_imagenet_folder(tmp_path, [5, 900], 2, layout="torchvision")
    shutil.rmtree(tmp_path / "val" / synsets()[900])
    with pytest.raises(DatasetError, match=f"folder is missing.*{synsets()[900]}"):
        open_imagenet(tmp_path)


def test_torchvision_root_with_an_image_in_the_wrong_class(tmp_path):
    images = make_imagenet_folder(tmp_path, [5, 900], 2, layout="torchvision")
    moved = next(im for im in images if im.class_index == 5)
    moved.path.rename(tmp_path / "val" / synsets()[900] / moved.file_name)
    with pytest.raises(DatasetError, match=f"{moved.file_name}.*says {synsets()[5]}"):
        open_imagenet(tmp_path)


def test_devkit_ground_truth_with_wrong_count(tmp_path):
    make_imagenet_folder(tmp_path, [5, 900], 2, layout="flat-devkit")
    gt = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text(gt.read_text() + "7\n")
    with pytest.raises(DatasetError, match="5 labels but .* holds 4 images"):
        open_imagenet(tmp_path)


def test_csv_ground_truth_missing_an_image(tmp_path):
    images = make_imagenet_folder(tmp_path, [5, 900], 2, layout="flat-csv")
    images[0].path.unlink()
    with pytest.raises(DatasetError, match="lists 4 images, the folder holds 3.*ILSVRC2012_val_00000001"):
        open_imagenet(tmp_path)


def test_devkit_ids_need_meta_mat(tmp_path):
    make_imagenet_folder(tmp_path, [5], 2, layout="flat-devkit")
    (tmp_path / "meta.mat").unlink()
    with pytest.raises(DatasetError, match="needs the devkit's meta.mat"):
        open_imagenet(tmp_path)


def test_flat_images_without_ground_truth(tmp_path):
    make_imagenet_folder(tmp_path, [5], 2, layout="flat-csv")
    (tmp_path / "LOC_val_solution.csv").unlink()
    with pytest.raises(DatasetError, match="no ground truth"):
        open_imagenet(tmp_path)


def test_devkit_archive_that_is_not_the_devkit(tmp_path):
    import tarfile

    make_imagenet_folder(tmp_path, [5], 1, layout="flat-csv")
    (tmp_path / "LOC_val_solution.csv").unlink()
    with tarfile.open(tmp_path / DEVKIT_ARCHIVE, "w:gz"):
        pass
    with pytest.raises(DatasetError, match="not the ILSVRC2012 devkit"):
        open_imagenet(tmp_path)


def test_devkit_archive_maps_ids_through_meta_not_sorted_order(tmp_path):
    # Ground-truth id k is NOT the (k-1)-th sorted synset: only meta.mat says which synset it is.
    make_imagenet_folder(tmp_path, [0], 1, layout="flat-csv")
    (tmp_path / "LOC_val_solution.csv").unlink()
    write_devkit_archive(tmp_path / DEVKIT_ARCHIVE, [synsets()[0]])
    (gt_id,) = [int(x) for x in __import__("tarfile").open(tmp_path / DEVKIT_ARCHIVE).extractfile(
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt").read().split()]
    assert gt_id != 1
    assert open_imagenet(tmp_path).samples[0].label == 0


def test_identity_changes_when_a_file_changes(tmp_path):
    images = make_imagenet_folder(tmp_path, [5], 2)
    before = open_imagenet(tmp_path).identity
    images[0].path.write_bytes(images[0].path.read_bytes() + b"\0")
    assert open_imagenet(tmp_path).identity != before


def test_real_labels_from_timm_and_from_a_file(tmp_path):
    labels, source = real_labels()
    assert len(labels) == 50000 and "timm" in source
    (tmp_path / "real.json").write_text(json.dumps([[1, 2], []]))
    assert real_labels(tmp_path / "real.json")[0] == [[1, 2], []]
    (tmp_path / "bad.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(DatasetError, match="list of lists"):
        real_labels(tmp_path / "bad.json")


def test_meta_bin_that_is_not_one(tmp_path):
    make_imagenet_folder(tmp_path, [5], 1, layout="torchvision")
    torch.save({"x": 1}, tmp_path / "meta.bin")
    with pytest.raises(DatasetError, match="meta.bin"):
        open_imagenet(tmp_path)


def test_torchvision_root_with_val_not_yet_sorted_into_folders(tmp_path):
    images = make_imagenet_folder(tmp_path, [5, 900], 2, layout="torchvision-devkit")
    for im in images:
        im.path.rename(tmp_path / "val" / im.file_name)
    for folder in {im.path.parent for im in images}:
        folder.rmdir()
    data = open_imagenet(tmp_path)
    assert data.layout == "torchvision"
    assert [(s.path.name, s.label) for s in data.samples] == [(im.file_name, im.class_index) for im in images]


def test_csv_of_random_bytes_is_one_error_naming_the_file(tmp_path):
    make_imagenet_folder(tmp_path, [5], 1, layout="flat-csv")
    csv_path = tmp_path / "LOC_val_solution.csv"
    csv_path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(DatasetError, match=f"{csv_path}: not a UTF-8 text CSV"):
        open_imagenet(tmp_path)


def test_csv_duplicate_image_with_another_label_is_refused(tmp_path):
    make_imagenet_folder(tmp_path, [5, 900], 1, layout="flat-csv")
    csv_path = tmp_path / "LOC_val_solution.csv"
    lines = csv_path.read_text().splitlines()
    image_id = lines[1].split(",")[0]
    csv_path.write_text("\n".join([*lines, f"{image_id},{synsets()[7]} 1 2 3 4"]) + "\n")
    with pytest.raises(DatasetError, match=f"{image_id} is listed again with another label"):
        open_imagenet(tmp_path)
    # the same label twice (a box per line, as the real file has) is fine
    csv_path.write_text("\n".join([*lines, lines[1]]) + "\n")
    assert len(open_imagenet(tmp_path)) == 2


def test_csv_with_a_utf8_byte_order_mark_is_accepted(tmp_path):
    make_imagenet_folder(tmp_path, [5, 900], 1, layout="flat-csv")
    csv_path = tmp_path / "LOC_val_solution.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    data = open_imagenet(tmp_path)
    assert sorted(s.label for s in data.samples) == [5, 900]
