import pytest

from perfkit.data.imagenet import synsets
from perfkit.data.synthetic import LAYOUTS, corrupt_jpeg, make_imagenet_folder


def test_same_seed_same_files_and_distinct_images(tmp_path):
    a = make_imagenet_folder(tmp_path / "a", [5, 900], 3)
    b = make_imagenet_folder(tmp_path / "b", [5, 900], 3)
    assert [x.path.read_bytes() for x in a] == [x.path.read_bytes() for x in b]
    assert len({x.path.read_bytes() for x in a}) == 6  # no two images alike
    assert sorted(x.class_index for x in a) == [5, 5, 5, 900, 900, 900]
    assert {x.wnid for x in a} == {synsets()[5], synsets()[900]}
    # Classes are interleaved in file-name order, as in the real validation set.
    assert [x.class_index for x in a] != sorted(x.class_index for x in a)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_writes_the_same_pixels(tmp_path, layout):
    ref = make_imagenet_folder(tmp_path / "ref", [1, 2], 2)
    got = make_imagenet_folder(tmp_path / layout, [1, 2], 2, layout=layout)
    assert [(x.file_name, x.class_index, x.path.read_bytes()) for x in got] == \
        [(x.file_name, x.class_index, x.path.read_bytes()) for x in ref]


def test_corrupt_jpeg_really_breaks_decoding(tmp_path):
    from PIL import Image

    img = make_imagenet_folder(tmp_path, [3], 1)[0]
    corrupt_jpeg(img.path, "truncate")
    with pytest.raises(OSError), Image.open(img.path) as im:
        im.convert("RGB")
