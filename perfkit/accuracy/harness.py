"""Dataset evaluation: every runtime of a model in one pass over ImageNet-val.

Each batch is decoded and preprocessed once (DataLoader workers, optional uint8 tensor cache) and
fed to every runner; per runtime the harness keeps each image's five best classes and the logit
difference to the reference runner (eager). Counts are integers computed at the end from those
arrays, so a ``torchrun`` job (contiguous shards, no padding, arrays gathered to rank 0) reports
exactly the single-process numbers. The number of evaluated images must equal the dataset's (less
unreadable files skipped on purpose), or nothing is reported.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from perfkit.accuracy import metrics as M
from perfkit.data.cache import TensorCache
from perfkit.data.imagenet import ImageNetVal, synsets
from perfkit.errors import DatasetError, PerfkitError, UsageError
from perfkit.formats import BatchRange, Format, Precision
from perfkit.runtime.base import Runner
from perfkit.store import Kind, Record, Store
from perfkit.zoo.preprocess import EvalTransform
from perfkit.zoo.registry import ModelSpec

FLIPPED_IDS_IN_RECORD = 1000  # the record keeps this many flipped ids; the JSON file keeps all


# -- preprocessing ------------------------------------------------------------------------------------

def spec_with_transform(spec: ModelSpec, transform: EvalTransform) -> ModelSpec:
    """The spec evaluated at ``transform`` (a ``--crop`` override changes the model's input size)."""
    if transform == spec.preprocess:
        return spec
    return replace(spec, preprocess=transform, input_size=(spec.input_size[0], transform.crop_size, transform.crop_size))


def runner_batch(batch_size: int, crops: int) -> BatchRange:
    """The batch range runners must accept: ``batch_size × crops`` images per call, fewer at the end."""
    return BatchRange.covering([batch_size * crops])


class _Decode(torch.utils.data.Dataset):
    """Sample ``i`` → (i, uint8 tensor or None, came from the cache, error text or None).

    Errors are returned, not raised, so the main process can name the file in a clean message
    (or skip it with ``--skip-unreadable``) instead of a worker's traceback.
    """

    def __init__(self, paths: list[str], positions: list[int], transform: EvalTransform, crops: int,
                 cache: TensorCache | None):
        self.paths, self.positions, self.crops, self.cache = paths, positions, crops, cache
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def _pipeline(self):
        if self.crops == 1:
            return self.transform.pil_to_uint8()
        from torchvision.transforms import v2

        t = self.transform
        resize = v2.Resize(t.resize_size, interpolation=v2.InterpolationMode(t.interpolation.lower()),
                           antialias=t.antialias)
        ten, to_tensor = v2.TenCrop(t.crop_size), v2.PILToTensor()
        return lambda img: torch.stack([to_tensor(c) for c in ten(resize(img))])

    def __getitem__(self, i: int):
        from PIL import Image

        if self.cache is not None:
            hit = self.cache.get(self.positions[i])
            if hit is not None:
                return i, hit, True, None
        if not hasattr(self, "_fn"):
            self._fn = self._pipeline()
        try:
            with Image.open(self.paths[i]) as img:
                x = self._fn(img.convert("RGB"))  # convert() decodes fully: truncation raises here
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            return i, None, False, f"{type(exc).__name__}: {exc}"
        return i, x, False, None


def _collate(items):
    ok = [it for it in items if it[1] is not None]
    index = torch.tensor([it[0] for it in ok], dtype=torch.int64)
    x = torch.stack([it[1] for it in ok]) if ok else torch.empty(0, dtype=torch.uint8)
    cached = torch.tensor([it[2] for it in ok], dtype=torch.bool)
    failed = [(it[0], it[3]) for it in items if it[1] is None]
    return index, x, cached, failed


def _normalize(x_u8: torch.Tensor, transform: EvalTransform, device: torch.device) -> torch.Tensor:
    if device.type == "cpu":
        return transform.normalize(x_u8)
    # On a GPU, copy uint8 (4× less traffic) and normalise there with the same arithmetic.
    x = x_u8.to(device, non_blocking=True).to(torch.float32).div_(255.0)
    mean = torch.tensor(transform.mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    std = torch.tensor(transform.std, dtype=torch.float32, device=device).view(-1, 1, 1)
    return (x - mean) / std


# -- distributed (torchrun) ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Distributed:
    """Rank and world size of a ``torchrun`` job; shards are contiguous, with no padding."""

    rank: int
    world: int

    @classmethod
    def from_env(cls, device: str = "cpu") -> "Distributed | None":
        """Join the process group torchrun describes (gloo on CPU, nccl on GPU); None when alone."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        import torch.distributed as dist

        if not dist.is_initialized():
            cuda = device.startswith("cuda")
            if cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def shard(self, n: int) -> range:
        return range(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def gather(self, obj) -> list:
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    @staticmethod
    def close() -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# -- results ------------------------------------------------------------------------------------------

@dataclass
class RuntimeAccuracy:
    """What one runtime scored; raw numbers, ready for a record."""

    label: str
    runtime: str
    precision: str
    counts: M.Counts | None = None
    diff: M.LogitDiff | None = None  # vs the reference runtime; None for the reference itself
    flipped_ids: list[str] = field(default_factory=list)
    real: M.Counts | None = None
    per_class: list[dict] | None = None
    error: str | None = None  # set when the runtime failed: no counts

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class EvalResult:
    spec: ModelSpec
    data: ImageNetVal
    transform: EvalTransform
    crops: int
    batch_size: int
    device: str
    reference: str  # label of the reference runtime (eager)
    runtimes: dict[str, RuntimeAccuracy]
    images: int  # evaluated images (= len(data) - unreadable)
    unreadable_files: list[str]
    seconds: float
    decoded: int
    cache_hits: int
    real_source: str | None = None
    flips_file: Path | None = None
    image_ids: list[str] = field(default_factory=list, repr=False)  # evaluated images, in dataset order
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # label → (N, 5) top-5

    @property
    def complete(self) -> bool:
        return not self.unreadable_files

    def row(self, label: str) -> dict:
        """Raw metrics of one runtime, with the vocabulary's keys."""
        r = self.runtimes[label]
        ref = self.runtimes[self.reference]
        published = self.spec.reference if not self.spec.random_weights else {}
        m = {
            "images": self.images, "dataset_images": self.data.full_size,
            "top1_correct": r.counts.top1_correct, "top5_correct": r.counts.top5_correct,
            "top1_pct": r.counts.top1_pct, "top5_pct": r.counts.top5_pct,
            "ref_top1_pct": published.get("acc1_pct"), "ref_top5_pct": published.get("acc5_pct"),
            "delta_top1_vs_eager_pp": r.counts.top1_pct - ref.counts.top1_pct,
            "delta_top5_vs_eager_pp": r.counts.top5_pct - ref.counts.top5_pct,
            "delta_top1_vs_ref_pp": (r.counts.top1_pct - published["acc1_pct"]) if published.get("acc1_pct") else None,
            "flips_vs_eager": len(r.flipped_ids),
            "flipped_ids": r.flipped_ids[:FLIPPED_IDS_IN_RECORD],
            "flipped_ids_file": str(self.flips_file) if self.flips_file and r.flipped_ids else None,
            "max_abs_diff_vs_eager": r.diff.max_abs if r.diff else 0.0,
            "mean_abs_diff_vs_eager": r.diff.mean_abs if r.diff else 0.0,
            "nonfinite_logits": r.diff.nonfinite if r.diff else 0,
            "crops": self.crops, "limit": self.data.subset, "layout": self.data.layout,
            "dataset_identity": self.data.identity[:16], "labels_from": self.data.labels_from,
            "transform": self.transform.to_dict(), "transform_overrides": list(self.transform.overrides),
            "unreadable": len(self.unreadable_files), "unreadable_files": self.unreadable_files,
            "complete": self.complete, "seconds": self.seconds, "images_per_s": self.images / self.seconds if self.seconds else None,
            "random_weights": self.spec.random_weights, "runner": label,
        }
        if r.real is not None:
            m.update(real_images=r.real.images, real_top1_correct=r.real.top1_correct,
                     real_top5_correct=r.real.top5_correct, real_top1_pct=r.real.top1_pct,
                     real_top5_pct=r.real.top5_pct, real_labels=self.real_source)
        if r.per_class is not None:
            m["per_class"] = r.per_class
        return m

    def records(self) -> list[Record]:
        """One accuracy record per runtime (an error record for a runtime that failed)."""
        out = []
        for label, r in self.runtimes.items():
            cols = dict(runtime=r.runtime, precision=r.precision, batch=self.batch_size,
                        weights=self.spec.weights.identity, device=self.device)
            if r.ok:
                out.append(Record(Kind.ACCURACY, self.spec.name, self.row(label), **cols))
            else:
                out.append(Record(Kind.ACCURACY, self.spec.name, {"runner": label}, status="error", error=r.error,
                                  **cols))
        return out


# -- the pass ------------------------------------------------------------------------------------------

def evaluate(spec: ModelSpec, data: ImageNetVal, runners: Mapping[str, Runner], *,
             transform: EvalTransform | None = None, crops: int = 1, batch_size: int = 32, workers: int = 0,
             cache_dir: Path | None = None, skip_unreadable: bool = False, per_class: bool = False,
             real: tuple[list[list[int]], str] | None = None, dist: Distributed | None = None,
             progress: bool = True, out_dir: Path | None = None) -> EvalResult:
    """Evaluate every runner on ``data`` in one pass; the first runner is the reference (eager).

    Args:
        spec: the model (its ``num_classes`` must be 1000: labels are ImageNet-1k indices).
        data: the validation set or a subset of it.
        runners: label → un-entered runner; entered here, all at once, released at the end.
        transform: preprocessing; default ``spec.preprocess``.
        crops: 1 (center crop) or 10 (corners + center, mirrored; softmax averaged).
        batch_size: images per batch (each runner sees ``batch_size × crops`` inputs).
        workers: DataLoader worker processes decoding JPEGs (0: in this process).
        cache_dir: uint8 tensor cache folder; None disables it.
        skip_unreadable: leave unreadable images out (recorded, result marked incomplete)
            instead of failing on the first one.
        per_class: also count per class.
        real: ReaL labels and their source, from ``perfkit.data.imagenet.real_labels``.
        dist: torchrun context; each rank evaluates a contiguous shard, rank 0 gets the totals.
        progress: show a Rich progress bar on stderr (rank 0 only).
        out_dir: where the flipped-ids JSON goes (rank 0); None: not written.

    Raises:
        DatasetError: an unreadable image (without ``skip_unreadable``), or a count that does
            not add up to the dataset size.
        UsageError: a model that is not a 1000-class ImageNet classifier, or bad options.
    """
    transform = transform or spec.preprocess
    if spec.num_classes != 1000:
        raise UsageError(f"{spec.name} has {spec.num_classes} classes; ImageNet-val needs a 1000-class model")
    if crops not in (1, 10):
        raise UsageError(f"--crops must be 1 or 10, got {crops}")
    if not runners:
        raise UsageError("no runtime to evaluate")
    labels = list(runners)
    reference = labels[0]
    started = time.perf_counter()
    error: BaseException | None = None
    local: dict = {}
    try:
        local = _local_pass(spec, data, runners, transform, crops, batch_size, workers, cache_dir,
                            skip_unreadable, dist, progress)
    except Exception as exc:
        if dist is None:
            raise
        error = exc  # raised below, after the other ranks learn of it
    if dist is not None:
        # Every rank reaches this gather, even one that failed, so no rank waits forever.
        parts = dist.gather({"error": repr(error) if error else None, **({} if error else local)})
        if error is not None:
            raise error
        failed = [(r, p["error"]) for r, p in enumerate(parts) if p["error"]]
        if failed:
            raise DatasetError(f"rank {failed[0][0]} failed: {failed[0][1]}")
    else:
        parts = [local]
    seconds = time.perf_counter() - started

    positions = np.concatenate([p["positions"] for p in parts]).astype(np.int64)
    unreadable = sorted(f for p in parts for f in p["unreadable"])
    expected = len(data)
    if (len(positions) + len(unreadable) != expected or len(set(positions.tolist())) != len(positions)
            or not set(positions.tolist()) <= set(data.indices)):
        raise DatasetError(
            f"evaluated {len(positions)} images (+{len(unreadable)} unreadable) but the dataset has {expected}: "
            "refusing to report"
        )
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    samples = data.all_samples
    gold = np.array([samples[i].label for i in positions], dtype=np.int64)
    ids = [samples[i].image_id for i in positions]
    results: dict[str, RuntimeAccuracy] = {}
    predictions: dict[str, np.ndarray] = {}
    ref_preds = np.concatenate([p["preds"][reference] for p in parts])[order]
    for label in labels:
        runtime, precision = str(runners[label].format), str(runners[label].precision)
        errors = [p["errors"][label] for p in parts if label in p["errors"]]
        if errors:
            results[label] = RuntimeAccuracy(label, runtime, precision, error=errors[0])
            continue
        preds = predictions[label] = np.concatenate([p["preds"][label] for p in parts])[order]
        r = RuntimeAccuracy(label, runtime, precision, counts=M.counts(preds, gold))
        if label != reference:
            r.diff = M.LogitDiff()
            for p in parts:
                r.diff.merge(p["diffs"][label])
            r.flipped_ids = [ids[i] for i in M.flips(preds, ref_preds)]
        if real is not None:
            r.real = M.real_counts(preds, [samples[i].val_number for i in positions], real[0])
        if per_class:
            r.per_class = M.per_class(preds, gold, synsets())
        results[label] = r

    result = EvalResult(
        spec=spec, data=data, transform=transform, crops=crops, batch_size=batch_size,
        device=str(runners[reference].device.type), reference=reference, runtimes=results, images=len(positions),
        unreadable_files=unreadable, seconds=seconds, decoded=sum(p["decoded"] for p in parts),
        cache_hits=sum(p["cache_hits"] for p in parts), real_source=real[1] if real else None,
        image_ids=ids, predictions=predictions,
    )
    if out_dir is not None and (dist is None or dist.rank == 0) and any(r.flipped_ids for r in results.values()):
        result.flips_file = write_flips(result, Path(out_dir))
    return result


def _local_pass(spec, data, runners, transform, crops, batch_size, workers, cache_dir, skip_unreadable, dist,
                progress) -> dict:
    """This process's share: per-image top-5 per runtime, logit diffs, unreadable files."""
    labels = list(runners)
    reference = labels[0]
    shard = dist.shard(len(data)) if dist is not None else range(len(data))
    samples = [data.samples[i] for i in shard]
    positions = [data.indices[i] for i in shard]
    shape = (3, transform.crop_size, transform.crop_size) if crops == 1 else (crops, 3, transform.crop_size,
                                                                                transform.crop_size)
    cache = None
    if cache_dir is not None:
        cache = TensorCache(cache_dir, f"{transform.key()}-crops{crops}", data.identity, data.full_size, shape)
    dataset = _Decode([str(s.path) for s in samples], positions, transform, crops, cache)

    preds: dict[str, list[np.ndarray]] = {label: [] for label in labels}
    diffs = {label: M.LogitDiff() for label in labels[1:]}
    errors: dict[str, str] = {}
    evaluated: list[int] = []
    unreadable: list[str] = []
    decoded = hits = 0
    with ExitStack() as stack:
        stack.enter_context(runners[reference])
        for label in labels[1:]:
            try:
                stack.enter_context(runners[label])
            except Exception as exc:  # a runtime that will not load is recorded; the others go on
                errors[label] = f"{type(exc).__name__}: {exc}"
        device = runners[reference].device
        loader = make_loader(dataset, batch_size, workers, pin=device.type == "cuda")
        bar = _progress(len(samples), enabled=progress and (dist is None or dist.rank == 0),
                        what=f"{spec.name} × {len(labels)} runtime(s)"
                             + (f" [rank 0 of {dist.world}]" if dist is not None else ""))
        with bar:
            task = bar.add_task("validate", total=len(samples))
            for index, x_u8, cached, failed in loader:
                for i, why in failed:
                    if not skip_unreadable:
                        raise DatasetError(f"cannot read image {samples[i].path}: {why} "
                                           "(fix or remove it, or pass --skip-unreadable to leave it out)")
                    unreadable.append(samples[i].image_id)
                if len(index):
                    hits += int(cached.sum())
                    decoded += int((~cached).sum())
                    if cache is not None:
                        for j in torch.nonzero(~cached).flatten().tolist():
                            cache.put(positions[int(index[j])], x_u8[j])
                    x = _normalize(x_u8, transform, device).reshape(-1, 3, transform.crop_size, transform.crop_size)
                    ref_logits = _infer(runners[reference], x, len(index) * crops)
                    preds[reference].append(M.top5(M.crop_scores(ref_logits, crops)))
                    for label in labels[1:]:
                        if label in errors:
                            continue
                        try:
                            logits = _infer(runners[label], x, len(index) * crops)
                        except Exception as exc:  # a runtime failing mid-pass is recorded; the others go on
                            errors[label] = f"{type(exc).__name__}: {exc}"
                            continue
                        preds[label].append(M.top5(M.crop_scores(logits, crops)))
                        diffs[label].update(logits, ref_logits)
                    evaluated += [positions[int(i)] for i in index]
                bar.advance(task, len(index) + len(failed))
    if cache is not None:
        cache.flush()
    empty = np.empty((0, M.TOPK), np.int32)
    return {
        "positions": np.array(evaluated, dtype=np.int64),
        "preds": {label: np.concatenate(p) if p else empty for label, p in preds.items()},
        "diffs": diffs, "errors": errors, "unreadable": unreadable, "decoded": decoded, "cache_hits": hits,
    }


def _infer(runner: Runner, x: torch.Tensor, n: int) -> torch.Tensor:
    logits = runner.infer(x)
    if logits.dim() != 2 or logits.shape[0] != n or logits.shape[1] != 1000:
        raise PerfkitError(f"{runner.name} returned logits of shape {tuple(logits.shape)}, expected ({n}, 1000)")
    return logits


def make_loader(dataset, batch_size: int, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    """In-order batches (the order is what makes shards and caches line up), decoded by workers."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        pin_memory=pin, persistent_workers=False, prefetch_factor=4 if workers else None,
    )


def _progress(total: int, enabled: bool, what: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    from perfkit.report.console import err_console

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else None)
            return Text("— img/s" if not speed else f"{speed:,.0f} img/s")

    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), Rate(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, disable=not enabled, transient=False)


def write_flips(result: EvalResult, out_dir: Path) -> Path:
    """All flipped image ids per runtime, as JSON next to the run's other outputs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result.spec.name.replace(':', '_')}-flips.json"
    path.write_text(json.dumps({
        "model": result.spec.name, "reference": result.reference, "dataset": str(result.data.root),
        "flipped_ids": {label: r.flipped_ids for label, r in result.runtimes.items() if r.ok and r.flipped_ids},
    }, indent=1))
    return path


# -- gates ---------------------------------------------------------------------------------------------

def gate_failures(result: EvalResult, max_top1_drop: float | None = None,
                  min_relative: float | None = None) -> list[dict]:
    """Runtimes that fail a gate: top-1 drop vs eager > ``max_top1_drop`` pp, or top-1 below
    ``min_relative`` × eager's top-1. A runtime that failed to run fails every gate."""
    out = []
    ref = result.runtimes[result.reference].counts
    for label, r in result.runtimes.items():
        if label == result.reference or (max_top1_drop is None and min_relative is None):
            continue
        if not r.ok:
            out.append({"model": result.spec.name, "runtime": label, "gate": "ran", "value": None,
                        "limit": None, "why": r.error})
            continue
        drop = ref.top1_pct - r.counts.top1_pct
        if max_top1_drop is not None and drop > max_top1_drop:
            out.append({"model": result.spec.name, "runtime": label, "gate": "max-top1-drop", "value": drop,
                        "limit": max_top1_drop, "why": f"top-1 {r.counts.top1_pct:.3f}% vs eager {ref.top1_pct:.3f}%"})
        if min_relative is not None and r.counts.top1_pct < min_relative * ref.top1_pct:
            rel = r.counts.top1_pct / ref.top1_pct if ref.top1_pct else 0.0
            out.append({"model": result.spec.name, "runtime": label, "gate": "min-relative", "value": rel,
                        "limit": min_relative, "why": f"top-1 {r.counts.top1_pct:.3f}% vs eager {ref.top1_pct:.3f}%"})
    return out


def open_error_failures(model: str, open_errors: Mapping[str, BaseException], max_top1_drop: float | None = None,
                        min_relative: float | None = None) -> list[dict]:
    """Gate-failure rows for runtimes that could not open: with any gate set, they fail it ("ran")."""
    if max_top1_drop is None and min_relative is None:
        return []
    return [{"model": model, "runtime": fmt, "gate": "ran", "value": None, "limit": None,
             "why": f"{type(exc).__name__}: {exc}"} for fmt, exc in open_errors.items()]


# -- one model, every runtime --------------------------------------------------------------------------

@dataclass
class ModelValidation:
    """One model's validation: the pass over the data, and the runtimes that could not even open."""

    result: EvalResult
    open_errors: dict[str, BaseException] = field(default_factory=dict)  # runtime → why it did not open

    def gate_failures(self, max_top1_drop: float | None = None, min_relative: float | None = None) -> list[dict]:
        """``gate_failures`` of the result, then a "ran" row per runtime that could not open."""
        return (gate_failures(self.result, max_top1_drop, min_relative)
                + open_error_failures(self.result.spec.name, self.open_errors, max_top1_drop, min_relative))


def validate_model(spec: ModelSpec, data: ImageNetVal, *, store: Store | None = None, run_id: str | None = None,
                   formats: list[Format | str], precision: Precision | str = Precision.FP32, device: str = "cpu",
                   artifacts: Path | None = None, overrides: Mapping | None = None, batch_size: int = 32,
                   workers: int = 0, cache_dir: Path | None = None, crops: int = 1, skip_unreadable: bool = False,
                   per_class: bool = False, real: tuple[list[list[int]], str] | None = None,
                   dist: Distributed | None = None, progress: bool = True,
                   out_dir: Path | None = None) -> ModelValidation:
    """Validate one model on ``data`` in every runtime of ``formats`` (eager first, as the reference).

    Applies the preprocessing ``overrides`` (recorded in the result), opens one runner per runtime
    and runs ``evaluate``. An exported runtime that cannot open is kept in ``open_errors`` and the
    others go on. With ``store`` (the lead rank of a torchrun job), writes one accuracy record per
    runtime, and an error record per runtime that could not open, under ``run_id``.

    Args:
        spec: the model, as resolved (its own preprocessing).
        data: the validation set or a subset of it.
        store: where records go; None writes nothing (other ranks, or a caller that records itself).
        run_id: the store's run the records belong to; required with ``store``.
        formats: runtimes to evaluate; eager is added (first) when missing, duplicates are dropped.
        precision: precision of every runtime.
        device: "cpu", "cuda" or "cuda:N".
        artifacts: artifact cache folder for exported runtimes (None: the default).
        overrides: ``EvalTransform.with_overrides`` keywords (mean, std, resize_size, crop_size);
            None values are not overrides.
        progress: print the preprocessing banners and the progress bar (the lead rank only).
        batch_size, workers, cache_dir, crops, skip_unreadable, per_class, real, dist, out_dir:
            as in ``evaluate``.

    Raises:
        PerfkitError: the model as a whole failed (eager did not open, bad data, bad options);
            nothing is recorded for it here: the caller records the failure.
    """
    from perfkit.report.console import banner
    from perfkit.runtime import open_runner  # looked up per call: exported runtimes load lazily

    if store is not None and run_id is None:
        raise ValueError("validate_model: records written to a store need a run_id")
    precision = Precision(precision)
    formats = [Format.EAGER] + [f for f in dict.fromkeys(map(Format, formats)) if f is not Format.EAGER]
    transform = spec.preprocess.with_overrides(**(overrides or {}))
    spec = spec_with_transform(spec, transform)
    if progress:
        banner(f"{spec.label} preprocessing: {transform.describe()}  (from {transform.source})", style="bold")
        if transform.overrides:
            banner(f"WARNING: preprocessing overridden ({', '.join(transform.overrides)}); "
                   "the published accuracy assumes the model's own", style="bold red")
    runners: dict[str, Runner] = {}
    open_errors: dict[str, BaseException] = {}
    for fmt in formats:
        try:
            runners[str(fmt)] = open_runner(spec, fmt, precision=precision, device=device, artifacts=artifacts,
                                            batch=runner_batch(batch_size, crops))
        except Exception as exc:  # an exported runtime that cannot open is recorded; the rest go on
            if fmt is Format.EAGER:
                raise
            open_errors[str(fmt)] = exc
    result = evaluate(spec, data, runners, transform=transform, crops=crops, batch_size=batch_size, workers=workers,
                      cache_dir=cache_dir, skip_unreadable=skip_unreadable, per_class=per_class, real=real,
                      dist=dist, progress=progress, out_dir=out_dir)
    if store is not None:
        for record in result.records():
            store.add(record, run_id)
        for fmt, exc in open_errors.items():
            store.add(Record.failure(Kind.ACCURACY, spec.name, exc, runtime=fmt, precision=str(precision),
                                     device=device.split(":")[0], weights=spec.weights.identity), run_id)
    return ModelValidation(result, open_errors)
