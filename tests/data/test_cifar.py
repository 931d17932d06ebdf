import pickle

import numpy as np
import pytest
import torch

from perfkit.data.cifar import (
    CIFAR10_CLASSES, download_dataset, find_cifar_dir, load_cifar10, load_dataset, load_image_folder,
    make_cifar_batches, make_image_folder,
)
from perfkit.errors import DatasetError, UsageError


@pytest.fixture
def cifar(tmp_path):
    return make_cifar_batches(tmp_path, n_train=103, n_test=40, seed=3)


def _rewrite(path, **changes):
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del batch[key]
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def test_generated_batches_are_real_cifar_format_and_read_back_exactly(cifar):
    assert cifar.name == "cifar-10-batches-py"
    with open(cifar / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="latin1")  # how every CIFAR-10 reader opens the files
    assert raw["data"].dtype == np.uint8 and raw["data"].shape == (21, 3072) and len(raw["labels"]) == 21
    data = load_cifar10(cifar.parent)  # the parent folder works as well as the folder itself
    assert data.root == cifar and data.classes == list(CIFAR10_CLASSES) and data.native_size == 32
    assert len(data.train) == 103 and len(data.val) == 40
    # data_batch_1 holds images 0..20, data_batch_2 the next 21: order and pixel layout are kept.
    assert torch.equal(data.train.images[21:42], torch.from_numpy(raw["data"].reshape(-1, 3, 32, 32)))
    assert data.train.labels[21:42].tolist() == raw["labels"]
    image, label = data.val[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and 0 <= label < 10
    assert torch.bincount(data.val.labels, minlength=10).tolist() == [4] * 10  # balanced classes
    assert find_cifar_dir(cifar) == find_cifar_dir(cifar.parent) == cifar


def test_classes_differ_in_colour(cifar):
    data = load_cifar10(cifar)
    means = torch.stack([data.train.images[data.train.labels == k].float().mean((0, 2, 3)) for k in range(10)])
    # Every pair of class mean colours is far apart compared with the pixel noise (std 20).
    gaps = torch.cdist(means, means) + torch.eye(10) * 1e3
    assert gaps.min() > 30


@pytest.mark.parametrize("case, match", [
    ("missing_batch", "lacks data_batch_3"),
    ("missing_meta", "lacks batches.meta"),
    ("cifar100_keys", "needs 'data' and 'labels'.*CIFAR-100"),
    ("no_labels_key", "needs 'data' and 'labels'"),
    ("wrong_shape", r"shape \(N, 3072\).*\(21, 1024\)"),
    ("wrong_dtype", "uint8 pixels, got float32"),
    ("label_count", "21 images but labels of shape"),
    ("label_high", r"label 10 at index 0 is outside 0..9"),
    ("label_negative", r"label -1 at index 3 is outside 0..9"),
    ("not_a_pickle", "cannot read CIFAR file .*data_batch_2"),
    ("truncated", "cannot read CIFAR file .*data_batch_2"),
    ("not_a_dict", "holds a list, not a CIFAR batch dict"),
    ("code_in_pickle", "refusing to load (posix|os).system"),
    ("meta_without_names", "no 'label_names'"),
])
def test_malformed_cifar_is_a_clear_error(cifar, case, match):
    batch = cifar / "data_batch_2"
    if case == "missing_batch":
        (cifar / "data_batch_3").unlink()
    elif case == "missing_meta":
        (cifar / "batches.meta").unlink()
    elif case == "cifar100_keys":
        _rewrite(batch, labels=None, fine_labels=[0] * 21)
    elif case == "no_labels_key":
        _rewrite(batch, labels=None)
    elif case == "wrong_shape":
        _rewrite(batch, data=np.zeros((21, 1024), np.uint8))
    elif case == "wrong_dtype":
        _rewrite(batch, data=np.zeros((21, 3072), np.float32))
    elif case == "label_count":
        _rewrite(batch, labels=[0] * 20)
    elif case == "label_high":
        _rewrite(batch, labels=[10] + [0] * 20)
    elif case == "label_negative":
        _rewrite(batch, labels=[0, 0, 0, -1] + [0] * 17)
    elif case == "not_a_pickle":
        batch.write_bytes(b"this is not a pickle at all")
    elif case == "truncated":
        batch.write_bytes(batch.read_bytes()[:500])
    elif case == "not_a_dict":
        batch.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    elif case == "code_in_pickle":
        import os

        class Evil:
            def __reduce__(self):
                return os.system, ("echo pwned",)

        batch.write_bytes(pickle.dumps({"data": Evil(), "labels": []}, protocol=2))
    elif case == "meta_without_names":
        _rewrite(cifar / "batches.meta", label_names=None)
    with pytest.raises(DatasetError, match=match):
        load_cifar10(cifar)


def test_absent_cifar_names_the_layout_and_the_archive(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="data_batch_1.*--download"):
        load_cifar10(tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="tar xzf"):
        load_cifar10(tmp_path)


def test_download_refuses_offline_and_for_imagefolder(tmp_path, cifar):
    with pytest.raises(DatasetError, match="offline"):
        download_dataset("cifar10", tmp_path / "empty")  # conftest sets PERFKIT_OFFLINE
    download_dataset("cifar10", cifar.parent)  # already present: nothing to fetch, no error
    with pytest.raises(UsageError, match="cifar10 only"):
        download_dataset("imagefolder", tmp_path)
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset("mnist", tmp_path)


def test_image_folder_reads_both_splits_with_one_class_list(tmp_path):
    root = make_image_folder(tmp_path / "folder", n_train=12, n_val=8, num_classes=4, size=40)
    data = load_dataset("imagefolder", root)
    assert data.classes == ["class_00", "class_01", "class_02", "class_03"] and data.native_size is None
    assert len(data.train) == 12 and len(data.val) == 8
    image, label = data.val[0]
    assert image.shape == (3, 40, 40) and image.dtype == torch.uint8
    assert label == data.classes.index(data.val.samples[0][0].split("/")[-2])


def test_image_folder_errors(tmp_path):
    root = make_image_folder(tmp_path / "folder", n_train=8, n_val=8, num_classes=2, size=16)
    (root / "val" / "class_01").rename(root / "val" / "class_07")
    with pytest.raises(DatasetError, match=r"same class folders.*only in train: \['class_01'\].*only in val: \['class_07'\]"):
        load_image_folder(root)
    import shutil

    shutil.rmtree(root / "val")
    with pytest.raises(DatasetError, match="no val/ folder"):
        load_image_folder(root)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    with pytest.raises(DatasetError, match="empty/train"):
        load_image_folder(tmp_path / "empty")


def test_unreadable_image_is_named(tmp_path):
    root = make_image_folder(tmp_path / "folder", n_train=4, n_val=4, num_classes=2, size=16)
    data = load_image_folder(root)
    bad = data.val.samples[1][0]
    with open(bad, "wb") as f:
        f.write(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=f"unreadable image {bad}"):
        data.val[1]
