"""Decode-once cache of preprocessed uint8 tensors.

Decoding and resizing JPEGs is most of the cost of a validation pass on a fast runtime. The
cache keeps the resized, cropped uint8 tensors (before normalisation, which is cheap and differs
between models) in one memory-mapped file per (transform key, crops, dataset identity), so later
runs and later models with the same resize/crop skip decoding. The mean/std normalisation is not
part of the key: models that share resize/crop but not mean/std share the cache.

File layout: ``DIR/<transform key>-crops<C>/<dataset identity[:20]>/tensors.u8`` holds N flag bytes
(1 = entry written), N little-endian uint32 CRC-32 checksums, padding to 4096, then N entries of
``shape`` uint8. An entry's data and checksum are written before its flag, so a run killed
half-way leaves only complete entries marked; every entry read is checked against its checksum, so
a changed or zeroed file is refused instead of scored (zeroed tensors once gave top-1 0 % "from
cache"). The file is memory-mapped shared: DataLoader workers see entries the main process wrote.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from perfkit.errors import DatasetError

_ALIGN = 4096
FORMAT = 2  # 2: a CRC-32 per entry


class TensorCache:
    """uint8 tensors of one dataset under one transform; entry ``i`` is sample ``i`` of the full set."""

    def __init__(self, folder: str | Path, key: str, identity: str, count: int, shape: tuple[int, ...]):
        root = Path(folder).expanduser()
        if root.exists() and not root.is_dir():
            raise DatasetError(f"--cache {root} is a file, not a folder")
        self.folder = root / key / identity[:20]
        self.path = self.folder / "tensors.u8"
        self.count = count
        self.shape = tuple(shape)
        self.entry_bytes = int(np.prod(self.shape))
        self._data_offset = -(-5 * count // _ALIGN) * _ALIGN  # flags (1 byte) and checksums (4) per entry
        self._meta = {"format": FORMAT, "key": key, "identity": identity, "count": count, "shape": list(self.shape)}
        self._mm: tuple | None = None  # (pid, flags, checksums, data), opened per process
        self._create()

    def _create(self) -> None:
        meta_path = self.folder / "meta.json"
        if self.path.is_file() and meta_path.is_file():
            try:
                found = json.loads(meta_path.read_text())
            except json.JSONDecodeError as exc:
                raise DatasetError(f"tensor cache {meta_path} is damaged ({exc}); delete {self.folder}") from exc
            if found != self._meta or self.path.stat().st_size != self._data_offset + self.count * self.entry_bytes:
                raise DatasetError(f"tensor cache {self.folder} does not match this dataset/transform; delete it")
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"cannot create the tensor cache folder {self.folder}: {exc.strerror or exc}") from None
        tmp = self.folder / f".tensors.{os.getpid()}.tmp"
        with tmp.open("wb") as fh:
            fh.truncate(self._data_offset + self.count * self.entry_bytes)  # sparse: all flags 0
        (self.folder / f".meta.{os.getpid()}.tmp").write_text(json.dumps(self._meta))
        # Atomic renames: a concurrent process (torchrun rank) sees either no file or a whole one.
        os.replace(self.folder / f".meta.{os.getpid()}.tmp", meta_path)
        os.replace(tmp, self.path)

    def _arrays(self) -> tuple[np.memmap, np.memmap, np.memmap]:
        # Open lazily in each process: a forked or spawned DataLoader worker maps the file itself.
        if self._mm is None or self._mm[0] != os.getpid():
            flags = np.memmap(self.path, np.uint8, "r+", 0, (self.count,))
            sums = np.memmap(self.path, "<u4", "r+", self.count, (self.count,))
            data = np.memmap(self.path, np.uint8, "r+", self._data_offset, (self.count, *self.shape))
            self._mm = (os.getpid(), flags, sums, data)
        return self._mm[1], self._mm[2], self._mm[3]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_mm"] = None
        return state

    def get(self, index: int) -> torch.Tensor | None:
        """The cached tensor of sample ``index``, or None when it was never written.

        Raises:
            DatasetError: the entry does not match its checksum (the file was changed or damaged).
        """
        flags, sums, data = self._arrays()
        if not flags[index]:
            return None
        entry = np.array(data[index])
        if zlib.crc32(entry.tobytes()) != int(sums[index]):
            raise DatasetError(f"tensor cache {self.path}: entry {index} does not match its checksum (the file was "
                               f"changed or damaged); delete {self.folder} and run again")
        return torch.from_numpy(entry)

    def put(self, index: int, tensor: torch.Tensor) -> None:
        if tuple(tensor.shape) != self.shape or tensor.dtype != torch.uint8:
            raise ValueError(f"cache entry must be uint8 {self.shape}, got {tensor.dtype} {tuple(tensor.shape)}")
        flags, sums, data = self._arrays()
        entry = tensor.contiguous().numpy()
        data[index] = entry
        sums[index] = zlib.crc32(entry.tobytes())
        flags[index] = 1

    def filled(self) -> int:
        return int(self._arrays()[0].sum(dtype=np.int64))

    def flush(self) -> None:
        if self._mm is not None and self._mm[0] == os.getpid():
            for array in reversed(self._mm[1:]):  # data and checksums before the flags
                array.flush()
