import pytest
import torch

from perfkit.data.cache import TensorCache
from perfkit.errors import DatasetError


def test_entries_persist_across_instances(tmp_path):
    c = TensorCache(tmp_path, "r8-c4", "abc" * 10, 5, (3, 4, 4))
    assert c.get(2) is None and c.filled() == 0
    x = torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8)
    c.put(2, x)
    c.flush()
    again = TensorCache(tmp_path, "r8-c4", "abc" * 10, 5, (3, 4, 4))
    assert torch.equal(again.get(2), x) and again.get(1) is None and again.filled() == 1


def test_rejects_wrong_entries_and_mismatched_files(tmp_path):
    c = TensorCache(tmp_path, "k", "id" * 10, 2, (3, 2, 2))
    with pytest.raises(ValueError, match="uint8"):
        c.put(0, torch.zeros(3, 2, 2))
    with pytest.raises(DatasetError, match="does not match"):
        TensorCache(tmp_path, "k", "id" * 10, 3, (3, 2, 2))  # same folder, other size


def test_a_forked_process_sees_entries_and_writes_back(tmp_path):
    import multiprocessing as mp

    c = TensorCache(tmp_path, "k", "id" * 10, 4, (1, 2, 2))
    c.put(0, torch.full((1, 2, 2), 7, dtype=torch.uint8))
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_child, args=(c,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert int(c.get(3).sum()) == 4 * 9


def _child(cache):
    assert int(cache.get(0).sum()) == 28
    cache.put(3, torch.full((1, 2, 2), 9, dtype=torch.uint8))
    cache.flush()


def _zero_data(cache: TensorCache) -> None:
    """Zero every entry's bytes, leaving the flags and checksums: what a damaged disk or a hand edit does."""
    with cache.path.open("r+b") as fh:
        fh.seek(cache._data_offset)
        fh.write(bytes(cache.count * cache.entry_bytes))


def test_a_zeroed_entry_is_refused_not_served(tmp_path):
    c = TensorCache(tmp_path, "k", "id" * 10, 3, (3, 4, 4))
    c.put(1, torch.randint(1, 256, (3, 4, 4), dtype=torch.uint8))
    c.flush()
    _zero_data(c)
    again = TensorCache(tmp_path, "k", "id" * 10, 3, (3, 4, 4))
    with pytest.raises(DatasetError, match=f"tensor cache {again.path}: entry 1 does not match its checksum"):
        again.get(1)
    assert again.get(0) is None  # never written: decoded, not refused


def test_a_cache_of_the_old_format_is_refused(tmp_path):
    import json

    c = TensorCache(tmp_path, "k", "id" * 10, 2, (1, 2, 2))
    meta = json.loads((c.folder / "meta.json").read_text())
    meta.pop("format")
    (c.folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="does not match this dataset/transform; delete it"):
        TensorCache(tmp_path, "k", "id" * 10, 2, (1, 2, 2))


def test_cache_path_that_is_a_file(tmp_path):
    f = tmp_path / "cache.bin"
    f.write_text("x")
    with pytest.raises(DatasetError, match=f"--cache {f} is a file, not a folder"):
        TensorCache(f, "k", "id" * 10, 2, (1, 2, 2))
