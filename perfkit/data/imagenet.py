"""ImageNet-val on disk: layout detection, labels in the ImageNet-1k index, subsets.

Three layouts are read (``open_imagenet`` picks one, or says clearly why none fits):

1. ``folders``: class folders named by WordNet id (``val/n01440764/*.JPEG``), any subset of the
   1000 classes;
2. ``flat``: ``ILSVRC2012_val_*.JPEG`` in one folder plus a ground truth: ``LOC_val_solution.csv``
   (Kaggle), or ``ILSVRC2012_validation_ground_truth.txt`` whose ids are the devkit's own numbering,
   mapped to WordNet ids through the devkit's ``meta.mat`` (a file, the extracted devkit, or the
   devkit archive);
3. ``torchvision``: the root that ``torchvision.datasets.ImageNet`` uses (``meta.bin`` or the devkit
   archive, plus ``val/``).

The label of an image is always its class's position among the 1000 ImageNet-1k synsets in sorted
order (the order the pretrained weights use), never the position of a folder among the folders
present: a subset of classes is scored against the right logits.
"""

from __future__ import annotations

import csv
import io
import re
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import ClassVar

from perfkit.data.dataset import VAL_NAME, LabelledImages, Sample
from perfkit.errors import DatasetError, UsageError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
WNID = re.compile(r"^n\d{8}$")
LOC_CSV = "LOC_val_solution.csv"
DEVKIT_GT = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_ARCHIVES = ("ILSVRC2012_devkit_t12.tar.gz", "ILSVRC2012_devkit_t12.tar")
DEVKIT_DIR = "ILSVRC2012_devkit_t12"
TORCHVISION_META = "meta.bin"


@cache
def synsets() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in sorted order (index = pretrained logit index)."""
    from perfkit.deps import require

    info = require("timm.data").ImageNetInfo()
    names = tuple(info.label_names())
    if len(names) != 1000 or list(names) != sorted(names):
        raise DatasetError("timm's ImageNet-1k synset list is not the 1000 sorted synsets; check the timm install")
    return names


@cache
def synset_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(synsets())}


@dataclass(frozen=True)
class ImageNetVal(LabelledImages):
    """A validation set, or a deterministic subset of one; samples sorted by file name.

    ``layout``: folders, flat or torchvision. Labels are ImageNet-1k indices.
    """

    imagenet: ClassVar[bool] = True
    class_key: ClassVar[str] = "wnid"

    @property
    def class_names(self) -> tuple[str, ...]:
        return synsets()

    def check_model(self, spec) -> None:
        if spec.num_classes != 1000:
            hint = (" (to score these WordNet-id folders as your own classes, give --labels FILE: the model's "
                    "class names, one per line, in its output order)") if self.layout == "folders" else ""
            raise UsageError(f"{spec.label} has {spec.num_classes} classes; ImageNet-val needs a 1000-class model{hint}")


def existing_folder(root: str | Path) -> Path:
    """``root`` as a path, refused unless it is a folder (what every dataset opener checks first)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder: --data takes the validation folder")
    return root


def imagenet_layout(root: Path) -> str | None:
    """The ImageNet-val layout of the folder ``root`` (torchvision, flat, folders), or None: none of them."""
    entries = list(root.iterdir())
    names = {e.name for e in entries}
    if (root / "val").is_dir() and (TORCHVISION_META in names or any(a in names for a in DEVKIT_ARCHIVES)):
        return "torchvision"
    if any(e.is_file() and VAL_NAME.match(e.name) for e in entries):
        return "flat"
    if any(e.is_dir() and WNID.match(e.name) for e in entries):
        return "folders"
    return None


def layout_help(root: Path) -> str:
    """The ImageNet-val layouts, one per line, for messages about ``root``."""
    return (f"  1. class folders named by WordNet id: {root}/n01440764/*.JPEG\n"
            f"  2. flat ILSVRC2012_val_*.JPEG files plus {LOC_CSV}, or {DEVKIT_GT} with the devkit\n"
            f"     (meta.mat, {DEVKIT_DIR}/ or {DEVKIT_ARCHIVES[0]})\n"
            f"  3. a torchvision.datasets.ImageNet root: {TORCHVISION_META} or {DEVKIT_ARCHIVES[0]}, plus val/")


def open_imagenet(root: str | Path) -> ImageNetVal:
    """Detect the layout of ``root`` and list its samples with ImageNet-1k labels.

    Raises:
        DatasetError: missing folder, unknown layout, a ground truth that does not match the files,
            a class folder named in the ground truth but missing, an unknown WordNet id.
    """
    root = existing_folder(root)
    layout = imagenet_layout(root)
    if layout is None:
        raise DatasetError(f"{root} is in no ImageNet-val layout perfkit knows. Expected one of:\n{layout_help(root)}")
    samples, source = {"torchvision": _torchvision, "flat": _flat, "folders": _folders}[layout](root)
    if not samples:
        raise DatasetError(f"{root} holds no images")
    # File name first: ILSVRC2012_val_N order whatever the layout, so --limit picks the same images.
    samples = tuple(sorted(samples, key=lambda s: (s.path.name, s.image_id)))
    return ImageNetVal(root=root, layout=layout, labels_from=source, all_samples=samples)


# -- layout 1: class folders ------------------------------------------------------------------------

def _folders(root: Path) -> tuple[list[Sample], str]:
    index = synset_index()
    dirs = sorted(e for e in root.iterdir() if e.is_dir())
    bad = [d.name for d in dirs if d.name not in index]
    if bad:
        raise DatasetError(
            f"{root}: folder(s) {', '.join(bad[:5])}{' …' if len(bad) > 5 else ''} are not ImageNet-1k WordNet ids; "
            "class folders must be named like n01440764"
        )
    samples = []
    for d in dirs:
        files = _images_in(d)
        if not files:
            raise DatasetError(f"class folder {d} holds no images")
        samples += [Sample(f, index[d.name], f"{d.name}/{f.name}") for f in files]
    return samples, "class folder names"


def _images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


# -- layout 2: flat files + ground truth -------------------------------------------------------------

def _flat(root: Path) -> tuple[list[Sample], str]:
    files = {f.name: f for f in root.iterdir() if f.is_file() and VAL_NAME.match(f.name)}
    for where in (root, root.parent):
        if (where / LOC_CSV).is_file():
            return _from_loc_csv(where / LOC_CSV, files), str(where / LOC_CSV)
    gt, id_to_wnid, source = _devkit(root)
    if gt is None:
        raise DatasetError(
            f"{root} holds {len(files)} ILSVRC2012_val_*.JPEG files but no ground truth: put {LOC_CSV}, or "
            f"{DEVKIT_GT} with the devkit's meta.mat (or {DEVKIT_DIR}/, or {DEVKIT_ARCHIVES[0]}) beside them"
        )
    return _from_numbered(root, files, [id_to_wnid[i] for i in gt], source), source


def _from_loc_csv(path: Path, files: dict[str, Path]) -> list[Sample]:
    index = synset_index()
    truth: dict[str, int] = {}
    first_line: dict[str, int] = {}
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports write one) is not part of the header
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text CSV (undecodable byte at offset {exc.start})") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc})") from None
    header = rows[0] if rows else None
    if not header or header[:2] != ["ImageId", "PredictionString"]:
        raise DatasetError(f"{path}: expected the header 'ImageId,PredictionString', got {header}")
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        wnid = row[1].split()[0] if len(row) > 1 and row[1].split() else ""
        if wnid not in index:
            raise DatasetError(f"{path}:{line}: '{wnid}' is not an ImageNet-1k WordNet id")
        if row[0] in truth and truth[row[0]] != index[wnid]:
            raise DatasetError(f"{path}:{line}: {row[0]} is listed again with another label ({wnid}; line "
                               f"{first_line[row[0]]} says {synsets()[truth[row[0]]]}): the ground truth is ambiguous")
        first_line.setdefault(row[0], line)
        truth[row[0]] = index[wnid]
    by_stem = {Path(name).stem: f for name, f in files.items()}
    _check_same(path, set(truth), set(by_stem))
    return [Sample(by_stem[stem], label, by_stem[stem].name) for stem, label in truth.items()]


def _check_same(gt_path: Path, in_truth: set[str], on_disk: set[str]) -> None:
    if in_truth == on_disk:
        return
    missing, extra = sorted(in_truth - on_disk), sorted(on_disk - in_truth)
    parts = [f"the ground truth {gt_path} lists {len(in_truth)} images, the folder holds {len(on_disk)}"]
    if missing:
        parts.append(f"{len(missing)} listed but missing (e.g. {', '.join(missing[:3])})")
    if extra:
        parts.append(f"{len(extra)} on disk but not listed (e.g. {', '.join(extra[:3])})")
    raise DatasetError("; ".join(parts))


def _from_numbered(root: Path, files: dict[str, Path], gt_wnids: list[str], source: str) -> list[Sample]:
    """Images numbered 1..N, ground truth line k for image k (the devkit's convention)."""
    index = synset_index()
    numbered = {int(VAL_NAME.match(name).group(1)): f for name, f in files.items()}
    if len(numbered) != len(gt_wnids) or set(numbered) != set(range(1, len(gt_wnids) + 1)):
        raise DatasetError(
            f"{source} has {len(gt_wnids)} labels but {root} holds {len(numbered)} images numbered "
            f"{min(numbered, default=0)}..{max(numbered, default=0)}: they must be ILSVRC2012_val_00000001 .. "
            f"{len(gt_wnids):08d}, one per label"
        )
    return [Sample(f, index[gt_wnids[n - 1]], f.name) for n, f in numbered.items()]


def _devkit(root: Path) -> tuple[list[int] | None, dict[int, str], str]:
    """Devkit ground-truth ids and the id → WordNet id map, from files, a folder or the archive."""
    for base in (root, root.parent):
        for folder in (base, base / DEVKIT_DIR / "data", base / DEVKIT_DIR):
            if (folder / DEVKIT_GT).is_file():
                meta = next((m for m in (folder / "meta.mat", base / "meta.mat", base / DEVKIT_DIR / "data" / "meta.mat")
                             if m.is_file()), None)
                gt = _parse_gt((folder / DEVKIT_GT).read_text(), folder / DEVKIT_GT)
                if meta is not None:
                    return gt, _parse_meta_mat(meta.read_bytes(), meta), f"{folder / DEVKIT_GT} + {meta}"
                archive = _find_archive(base)
                if archive is None:
                    raise DatasetError(
                        f"{folder / DEVKIT_GT} numbers classes in the devkit's order; perfkit needs the devkit's "
                        f"meta.mat (or {DEVKIT_DIR}/ or {DEVKIT_ARCHIVES[0]}) beside it to map them to WordNet ids"
                    )
                _, id_to_wnid = _read_archive(archive)
                return gt, id_to_wnid, f"{folder / DEVKIT_GT} + {archive}"
        archive = _find_archive(base)
        if archive is not None:
            gt, id_to_wnid = _read_archive(archive)
            return gt, id_to_wnid, str(archive)
    return None, {}, ""


def _find_archive(folder: Path) -> Path | None:
    return next((folder / a for a in DEVKIT_ARCHIVES if (folder / a).is_file()), None)


def _read_archive(path: Path) -> tuple[list[int], dict[int, str]]:
    gt_name, meta_name = f"{DEVKIT_DIR}/data/{DEVKIT_GT}", f"{DEVKIT_DIR}/data/meta.mat"
    try:
        with tarfile.open(path) as tar:
            members = {m.name.lstrip("./"): m for m in tar.getmembers()}
            if gt_name not in members or meta_name not in members:
                raise DatasetError(f"{path} is not the ILSVRC2012 devkit: it lacks {gt_name} or {meta_name}")
            gt_text = tar.extractfile(members[gt_name]).read().decode()
            meta = tar.extractfile(members[meta_name]).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"cannot read the devkit archive {path}: {exc}") from exc
    return _parse_gt(gt_text, path), _parse_meta_mat(meta, path)


def _parse_gt(text: str, where: Path) -> list[int]:
    try:
        ids = [int(line) for line in text.split()]
    except ValueError as exc:
        raise DatasetError(f"{where}: expected one class id per line ({exc})") from exc
    bad = [i for i in ids if not 1 <= i <= 1000]
    if bad:
        raise DatasetError(f"{where}: class ids must be 1..1000, found {bad[0]}")
    return ids


def _parse_meta_mat(data: bytes, where: Path) -> dict[int, str]:
    """ILSVRC2012_ID → WordNet id for the 1000 leaf synsets of the devkit's meta.mat."""
    try:
        from scipy import io as sio
    except ImportError as exc:
        raise DatasetError(
            f"reading the devkit's {where.name} needs scipy (a perfkit dependency: pip install scipy); "
            f"or give the labels as {LOC_CSV} or torchvision's {TORCHVISION_META}"
        ) from exc
    try:
        synsets_ = sio.loadmat(io.BytesIO(data), squeeze_me=True)["synsets"]
        out = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets_ if int(s["num_children"]) == 0}
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{where} is not the devkit's meta.mat ({type(exc).__name__}: {exc})") from exc
    index = synset_index()
    if sorted(out) != list(range(1, 1001)) or set(out.values()) != set(index):
        raise DatasetError(f"{where}: expected the 1000 ImageNet-1k leaf synsets with ids 1..1000")
    return out


# -- layout 3: torchvision.datasets.ImageNet root --------------------------------------------------------

def _torchvision(root: Path) -> tuple[list[Sample], str]:
    val = root / "val"
    if (root / TORCHVISION_META).is_file():
        val_wnids, source = _read_meta_bin(root / TORCHVISION_META), str(root / TORCHVISION_META)
    else:
        archive = _find_archive(root)
        gt, id_to_wnid = _read_archive(archive)
        val_wnids, source = [id_to_wnid[i] for i in gt], str(archive)
    flat = {f.name: f for f in val.iterdir() if f.is_file() and VAL_NAME.match(f.name)}
    if flat:  # val/ not yet sorted into class folders
        return _from_numbered(val, flat, val_wnids, source), source
    # val/<wnid>/ILSVRC2012_val_N.JPEG: the folder must be the ground truth's class for image N.
    index = synset_index()
    expected = defaultdict(int)
    for w in val_wnids:
        expected[w] += 1
    missing = sorted(w for w in expected if not (val / w).is_dir())
    if missing:
        raise DatasetError(
            f"{val}: the ground truth ({source}) has images of {len(missing)} class(es) whose folder is missing, "
            f"e.g. {val / missing[0]}"
        )
    samples = []
    for w in sorted(expected):
        for f in _images_in(val / w):
            m = VAL_NAME.match(f.name)
            n = int(m.group(1)) if m else 0
            if not 1 <= n <= len(val_wnids) or val_wnids[n - 1] != w:
                truth = val_wnids[n - 1] if 1 <= n <= len(val_wnids) else "no entry"
                raise DatasetError(f"{f}: the ground truth ({source}) says {truth}, the file is in {w}/")
            samples.append(Sample(f, index[w], f"{w}/{f.name}"))
    if len(samples) != len(val_wnids):
        raise DatasetError(f"{val} holds {len(samples)} images, the ground truth ({source}) lists {len(val_wnids)}")
    return samples, source


def _read_meta_bin(path: Path) -> list[str]:
    import torch

    try:
        _, val_wnids = torch.load(path, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad pickle; all mean "not a meta.bin"
        raise DatasetError(f"{path} is not torchvision's ImageNet meta.bin ({type(exc).__name__}: {exc})") from exc
    unknown = sorted(set(val_wnids) - set(synset_index()))
    if unknown:
        raise DatasetError(f"{path} lists unknown WordNet ids, e.g. {unknown[0]}")
    return list(val_wnids)


# -- ReaL labels ------------------------------------------------------------------------------------

def real_labels(path: str | Path | None = None) -> tuple[list[list[int]], str]:
    """ReaL labels ("Are we done with ImageNet?"): per val image number, the acceptable classes.

    ``path`` None takes the copy that timm ships; an image with an empty list has no ReaL label.
    """
    import json

    if path is None:
        from importlib.resources import files

        from perfkit.deps import require

        require("timm.data")
        ref = files("timm.data") / "_info" / "imagenet_real_labels.json"
        text, source = ref.read_text(), "timm's imagenet_real_labels.json"
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DatasetError(f"ReaL labels file {p} does not exist")
        text, source = p.read_text(), str(p)
    try:
        labels = json.loads(text)
        ok = isinstance(labels, list) and all(isinstance(v, list) and all(isinstance(c, int) and 0 <= c < 1000 for c in v)
                                               for v in labels)
    except json.JSONDecodeError:
        ok = False
    if not ok:
        raise DatasetError(f"{source}: expected a JSON list of lists of class indices 0..999")
    return labels, source
