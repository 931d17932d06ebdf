"""Dataset evaluation: every runtime of a model in one pass over a labelled image set.

The set is ImageNet-val (labels in the ImageNet-1k index) or an ImageFolder of the user's classes
(``perfkit.data.open_dataset``); the model must output one logit per class of its index. Top-5 is
counted only where the index has at least five classes (with fewer it would be a meaningless 100 %).

Each batch is decoded and preprocessed once (DataLoader workers, optional uint8 tensor cache) and
fed to every runner; per runtime the harness keeps each image's five best classes and the logit
difference to the reference runner (eager; ONNX Runtime on the CPU for an ONNX file). Counts are
integers computed at the end from those
arrays, so a ``torchrun`` job (contiguous shards, no padding, arrays gathered to rank 0) reports
exactly the single-process numbers. The number of evaluated images must equal the dataset's (less
unreadable files skipped on purpose), or nothing is reported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from perfkit.accuracy import metrics as M
from perfkit.backends.base import Runner
from perfkit.data.cache import TensorCache
from perfkit.data.dataset import LabelledImages
from perfkit.distributed import ALONE, Distributed
from perfkit.errors import DatasetError, PerfkitError, UsageError
from perfkit.results import Failure, Kind, Where
from perfkit.vocab import BatchRange, Precision
from perfkit.zoo.preprocess import EvalTransform
from perfkit.zoo.spec import ModelSpec

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
        return self.transform.pil_to_uint8() if self.crops == 1 else self.transform.ten_crop_uint8()

    def __getitem__(self, i: int):
        from PIL import Image

        if self.cache is not None:
            try:
                hit = self.cache.get(self.positions[i])
            except DatasetError as exc:  # a damaged cache: raised in the main process, as one line
                return i, None, False, exc
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
    calibration: str | None = None  # what an int8 artifact was calibrated on
    mixed: object | None = None  # int8: validate's search for the layers left float (perfkit.accuracy.mixed)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class EvalResult:
    spec: ModelSpec
    data: LabelledImages
    transform: EvalTransform
    crops: int
    batch_size: int
    device: str
    reference: str  # label of the reference runtime (eager; onnx for an ONNX file)
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

    @property
    def published(self) -> dict:
        """Published accuracy of the weights that ran: none for random weights, and none on data that is
        not ImageNet-val (the published numbers are ImageNet's)."""
        return {} if self.spec.random_weights or not self.data.imagenet else self.spec.reference


# -- the pass ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate (the knobs of ``perfkit validate``).

    Attributes:
        transform: preprocessing; None: the model's own (``spec.preprocess``).
        crops: 1 (center crop) or 10 (corners + center, mirrored; softmax averaged).
        batch_size: images per batch (each runner sees ``batch_size × crops`` inputs).
        workers: DataLoader worker processes decoding JPEGs (0: in this process).
        cache_dir: uint8 tensor cache folder; None disables it.
        skip_unreadable: leave unreadable images out (recorded, result marked incomplete)
            instead of failing on the first one.
        per_class: also count per class.
        real: ReaL labels and their source, from ``perfkit.data.imagenet.real_labels``.
        out_dir: where the flipped-ids JSON goes (rank 0); None: not written.
    """

    transform: EvalTransform | None = None
    crops: int = 1
    batch_size: int = 32
    workers: int = 0
    cache_dir: Path | None = None
    skip_unreadable: bool = False
    per_class: bool = False
    real: tuple | None = None
    out_dir: Path | None = None

    def check(self, spec: ModelSpec, data: LabelledImages) -> None:
        data.check_model(spec)
        if self.real is not None and not data.imagenet:
            raise UsageError(f"--real-labels scores ImageNet-val images by their ILSVRC2012_val_N number; {data.root} "
                             f"is an {data.layout} of your own classes")
        if self.crops not in (1, 10):
            raise UsageError(f"--crops must be 1 or 10, got {self.crops}")
        if self.batch_size < 1 or self.workers < 0:
            raise UsageError("--batch must be >= 1 and --workers >= 0")


def evaluate(spec: ModelSpec, data: LabelledImages, runners: Mapping[str, Runner], options: EvalOptions = EvalOptions(),
             *, dist: Distributed = ALONE, progress=None) -> EvalResult:
    """Evaluate every runner on ``data`` in one pass; the first runner is the reference (eager, or the
    spec's reference runtime).

    Args:
        spec: the model (its ``num_classes`` must be the number of classes of ``data``'s index).
        data: the labelled set (``perfkit.data.open_dataset``) or a subset of it.
        runners: label → un-entered runner; entered here, all at once, released at the end.
        options: see ``EvalOptions``.
        dist: torchrun context; each rank evaluates a contiguous shard, rank 0 gets the totals.
        progress: a ``perfkit.context.Progress`` (rank 0 reports); None: silent.

    Raises:
        DatasetError: an unreadable image (without ``skip_unreadable``), or a count that does
            not add up to the dataset size.
        UsageError: a model whose outputs do not match the class index, or bad options.
    """
    from perfkit.context import NO_PROGRESS

    options.check(spec, data)
    if not runners:
        raise UsageError("no runtime to evaluate")
    options = replace(options, transform=options.transform or spec.preprocess)
    started = time.perf_counter()
    error: BaseException | None = None
    local: dict = {}
    try:
        local = _local_pass(spec, data, runners, options, dist, (progress or NO_PROGRESS) if dist.is_main else NO_PROGRESS)
    except Exception as exc:
        if not dist.enabled:
            raise
        error = exc  # raised below, after the other ranks learn of it
    # Every rank reaches this gather, even one that failed, so no rank waits forever.
    parts = dist.gather({"error": repr(error) if error else None, **({} if error else local)})
    if error is not None:
        raise error
    failed = [(r, p["error"]) for r, p in enumerate(parts) if p["error"]]
    if failed:
        raise DatasetError(f"rank {failed[0][0]} failed: {failed[0][1]}")
    result = _combine(spec, data, runners, options, parts, time.perf_counter() - started)
    if options.out_dir is not None and dist.is_main and any(r.flipped_ids for r in result.runtimes.values()):
        result.flips_file = write_flips(result, Path(options.out_dir))
    return result


def _combine(spec, data: LabelledImages, runners: Mapping[str, Runner], options: EvalOptions, parts: list[dict],
             seconds: float) -> EvalResult:
    """Counts from every rank's per-image predictions, after checking that they cover the dataset exactly."""
    labels = list(runners)
    reference = labels[0]
    positions = np.concatenate([p["positions"] for p in parts]).astype(np.int64)
    unreadable = sorted(f for p in parts for f in p["unreadable"])
    expected = len(data)
    if (len(positions) + len(unreadable) != expected or len(set(positions.tolist())) != len(positions)
            or not set(positions.tolist()) <= set(data.indices)):
        raise DatasetError(f"evaluated {len(positions)} images (+{len(unreadable)} unreadable) but the dataset has "
                           f"{expected}: refusing to report")
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    samples = data.all_samples
    gold = np.array([samples[i].label for i in positions], dtype=np.int64)
    ids = [samples[i].image_id for i in positions]
    results: dict[str, RuntimeAccuracy] = {}
    predictions: dict[str, np.ndarray] = {}
    ref_preds = np.concatenate([p["preds"][reference] for p in parts])[order]
    for label in labels:
        runtime, precision = runners[label].name, str(runners[label].precision)
        errors = [p["errors"][label] for p in parts if label in p["errors"]]
        if errors:
            results[label] = RuntimeAccuracy(label, runtime, precision, error=errors[0])
            continue
        preds = predictions[label] = np.concatenate([p["preds"][label] for p in parts])[order]
        r = RuntimeAccuracy(label, runtime, precision, counts=M.counts(preds, gold),
                            calibration=runners[label].calibration)
        if label != reference:
            r.diff = M.LogitDiff()
            for p in parts:
                r.diff.merge(p["diffs"][label])
            r.flipped_ids = [ids[i] for i in M.flips(preds, ref_preds)]
        if options.real is not None:
            r.real = M.real_counts(preds, [samples[i].val_number for i in positions], options.real[0])
        if options.per_class:
            r.per_class = M.per_class(preds, gold, data.class_names, data.class_key)
        results[label] = r
    return EvalResult(
        spec=spec, data=data, transform=options.transform, crops=options.crops, batch_size=options.batch_size,
        device=str(runners[reference].device.type), reference=reference, runtimes=results, images=len(positions),
        unreadable_files=unreadable, seconds=seconds, decoded=sum(p["decoded"] for p in parts),
        cache_hits=sum(p["cache_hits"] for p in parts), real_source=options.real[1] if options.real else None,
        image_ids=ids, predictions=predictions,
    )


def _local_pass(spec, data: LabelledImages, runners: Mapping[str, Runner], options: EvalOptions, dist: Distributed,
                progress) -> dict:
    """This process's share: per-image top-5 per runtime, logit diffs, unreadable files."""
    labels = list(runners)
    reference = labels[0]
    shard = dist.shard(len(data))
    samples = [data.samples[i] for i in shard]
    positions = [data.indices[i] for i in shard]
    transform, crops = options.transform, options.crops
    shape = (3, transform.crop_size, transform.crop_size) if crops == 1 else (crops, 3, transform.crop_size,
                                                                                transform.crop_size)
    cache = None
    if options.cache_dir is not None:
        cache = TensorCache(options.cache_dir, f"{transform.key()}-crops{crops}", data.identity, data.full_size, shape)
    dataset = _Decode([str(s.path) for s in samples], positions, transform, crops, cache)
    state = _PassState(labels, data.num_classes)
    with ExitStack() as stack:
        stack.enter_context(runners[reference])
        for label in labels[1:]:
            try:
                stack.enter_context(runners[label])
            except Exception as exc:  # a runtime that will not load is recorded; the others go on
                state.errors[label] = f"{type(exc).__name__}: {exc}"
        device = runners[reference].device
        loader = make_loader(dataset, options.batch_size, options.workers, pin=device.type == "cuda")
        progress.start(f"{spec.name} × {len(labels)} runtime(s)" + (f" [rank 0 of {dist.world}]" if dist.enabled else ""),
                       total=len(samples))
        for index, x_u8, cached, failed in loader:
            state.unreadable += _check_unreadable(failed, samples, options.skip_unreadable)
            if len(index):
                if cache is not None:
                    for j in torch.nonzero(~cached).flatten().tolist():
                        cache.put(positions[int(index[j])], x_u8[j])
                x = transform.normalize(x_u8, None if device.type == "cpu" else device).reshape(-1, 3, transform.crop_size, transform.crop_size)
                state.update(runners, x, len(index), crops, cached)
                state.evaluated += [positions[int(i)] for i in index]
            progress.update(advance=len(index) + len(failed))
    if cache is not None:
        cache.flush()
    return state.result()


def _check_unreadable(failed, samples, skip: bool) -> list[str]:
    for _, why in failed:
        if isinstance(why, DatasetError):  # the tensor cache, not the image: never skipped
            raise why
    for i, why in failed:
        if not skip:
            raise DatasetError(f"cannot read image {samples[i].path}: {why} "
                               "(fix or remove it, or pass --skip-unreadable to leave it out)")
    return [samples[i].image_id for i, _ in failed]


class _PassState:
    """What one process accumulates over its shard."""

    def __init__(self, labels: list[str], classes: int):
        self.labels, self.classes = labels, classes
        self.preds: dict[str, list[np.ndarray]] = {label: [] for label in labels}
        self.diffs = {label: M.LogitDiff() for label in labels[1:]}
        self.errors: dict[str, str] = {}
        self.evaluated: list[int] = []
        self.unreadable: list[str] = []
        self.decoded = self.hits = 0

    def update(self, runners, x: torch.Tensor, n: int, crops: int, cached: torch.Tensor) -> None:
        self.hits += int(cached.sum())
        self.decoded += int((~cached).sum())
        reference = self.labels[0]
        ref_logits = _infer(runners[reference], x, n * crops, self.classes)
        self.preds[reference].append(M.top5(M.crop_scores(ref_logits, crops)))
        for label in self.labels[1:]:
            if label in self.errors:
                continue
            try:
                logits = _infer(runners[label], x, n * crops, self.classes)
            except Exception as exc:  # a runtime failing mid-pass is recorded; the others go on
                self.errors[label] = f"{type(exc).__name__}: {exc}"
                continue
            self.preds[label].append(M.top5(M.crop_scores(logits, crops)))
            self.diffs[label].update(logits, ref_logits.to(logits.device))  # an ONNX file's reference: on the CPU

    def result(self) -> dict:
        empty = np.empty((0, min(M.TOPK, self.classes)), np.int32)
        return {
            "positions": np.array(self.evaluated, dtype=np.int64),
            "preds": {label: np.concatenate(p) if p else empty for label, p in self.preds.items()},
            "diffs": self.diffs, "errors": self.errors, "unreadable": self.unreadable, "decoded": self.decoded,
            "cache_hits": self.hits,
        }


def _infer(runner: Runner, x: torch.Tensor, n: int, classes: int) -> torch.Tensor:
    logits = runner.infer_all(x)  # a model with a fixed batch takes the batch in pieces
    if logits.dim() != 2 or logits.shape[0] != n or logits.shape[1] != classes:
        raise PerfkitError(f"{runner.name} returned logits of shape {tuple(logits.shape)}, expected ({n}, {classes})")
    return logits


def make_loader(dataset, batch_size: int, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    """In-order batches (the order is what makes shards and caches line up), decoded by workers."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        pin_memory=pin, persistent_workers=False, prefetch_factor=4 if workers else None,
    )


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
    """Runtimes that fail a gate: top-1 drop vs the reference (eager) > ``max_top1_drop`` pp, or top-1
    below ``min_relative`` × the reference's top-1. A runtime that failed to run fails every gate."""
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
                        "limit": max_top1_drop,
                        "why": f"top-1 {r.counts.top1_pct:.3f}% vs {result.reference} {ref.top1_pct:.3f}%"})
        if min_relative is not None and r.counts.top1_pct < min_relative * ref.top1_pct:
            rel = r.counts.top1_pct / ref.top1_pct if ref.top1_pct else 0.0
            out.append({"model": result.spec.name, "runtime": label, "gate": "min-relative", "value": rel,
                        "limit": min_relative,
                        "why": f"top-1 {r.counts.top1_pct:.3f}% vs {result.reference} {ref.top1_pct:.3f}%"})
    return out


# -- one model, every runtime --------------------------------------------------------------------------

@dataclass
class Validation:
    """One model's validation: the pass over the data, and the runtimes that could not even open."""

    result: EvalResult
    open_failures: list[Failure] = field(default_factory=list)

    def gate_failures(self, max_top1_drop: float | None = None, min_relative: float | None = None) -> list[dict]:
        """``gate_failures`` of the result, then a "ran" row per runtime that could not open."""
        rows = gate_failures(self.result, max_top1_drop, min_relative)
        if max_top1_drop is not None or min_relative is not None:
            rows += [{"model": f.where.model, "runtime": runtime_label(f.where.runtime, f.where.precision),
                      "gate": "ran", "value": None,
                      "limit": None, "why": f.error} for f in self.open_failures]
        return rows


def runtime_label(backend_name: str, precision: Precision | str) -> str:
    """The label of one runtime × precision in a validation pass (``onnx``, ``onnx int8``)."""
    precision = Precision(precision)
    return backend_name if precision is Precision.FP32 else f"{backend_name} {precision}"


def validate_model(spec: ModelSpec, data: LabelledImages, backends: Sequence, ctx, *,
                   precisions: Sequence[Precision | str] | Precision | str = (Precision.FP32,),
                   options: EvalOptions = EvalOptions(), dist: Distributed = ALONE,
                   automatic: bool = False, batch_range: BatchRange | None = None) -> Validation:
    """Validate one model on ``data`` in every runtime of ``backends`` at every precision it runs, in
    one pass, against the reference fp32 (opened first, whatever was asked): eager, for an ONNX file
    ONNX Runtime on the CPU running the file, for an engine its ``--reference`` model in that model's
    reference runtime (``backends.reference_of``); an engine without one is counted against the labels
    only. Runtimes that cannot run ``spec`` at all (PyTorch runtimes for an ONNX file, every runtime but
    its own for an engine) are left out; the command says so.

    Each runtime runs the precisions of ``precisions`` it supports on the device (the command line
    has refused the combinations a user asked for that it cannot run); eager runs at another float
    precision only when it is among ``backends``. ``automatic``: ``perfkit run``'s automatic plan
    (each runtime at the precisions of its ``Backend.run_precisions``). ``batch_range``: the range of
    the plan's artifacts (``perfkit run``: the ones parity checked), widened to the evaluation's batch.
    Opens one runner per runtime × precision (exporting what is missing) and runs ``evaluate``. An
    exported runtime that cannot open becomes a ``Failure`` (kind accuracy) and the others go on.

    Raises:
        PerfkitError: the model as a whole failed (the reference did not open, bad data, bad options).
    """
    from perfkit.backends import open_runner, reference_device, reference_of, runnable

    precisions = [Precision(precisions)] if isinstance(precisions, str) else list(map(Precision, precisions))
    options.check(spec, data)
    transform = options.transform or spec.preprocess
    spec = spec_with_transform(spec, transform)
    found = reference_of(spec)
    # the reference first: (runtime, precision, the model it runs); none for an engine without --reference,
    # whose first runtime then leads the pass (counts against the labels; Δ and flips against it)
    chosen = [] if found is None else [(found[1], Precision.FP32, spec_with_transform(found[0], transform))]
    lead = None if found is None else (found[1], Precision.FP32)
    chosen += [(b, p, spec) for p in precisions for b in dict.fromkeys(runnable(spec, backends)[0])
               if b.runs(p, ctx.device, automatic=automatic) and (b, p) != lead]
    batch = runner_batch(options.batch_size, options.crops)
    if batch_range is not None:  # the plan's artifacts, where they accept the evaluation's batch
        batch = batch_range if batch_range.contains(batch.max) else BatchRange.covering([batch_range.min, batch_range.max, batch.max])
    runners: dict[str, Runner] = {}
    failures: list[Failure] = []
    for i, (backend, precision, model) in enumerate(chosen):
        ctx.progress.update(f"{spec.name}: opening {backend.name} {precision}")
        lead = i == 0 and found is not None
        where = ctx.replace(device=reference_device(spec, ctx.device)) if lead else ctx
        try:
            runners[runtime_label(backend.name, precision)] = open_runner(model, backend, where, precision=precision,
                                                                          batch=batch)
        except Exception as exc:  # an exported runtime that cannot open is recorded; the rest go on
            if i == 0:
                raise
            failures.append(Failure.of(Kind.ACCURACY, Where.of(spec, backend.name, precision, options.batch_size,
                                                               ctx.device), exc))
    result = evaluate(spec, data, runners, replace(options, transform=transform), dist=dist, progress=ctx.progress)
    return Validation(result, failures)
