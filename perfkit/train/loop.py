"""The training comparison: train or fine-tune zoo models on CIFAR-10 or an ImageFolder.

One epoch = a training pass (augmented) and a validation pass (the model's eval transform), timed
separately; loss and accuracy are integer counts and sums all-reduced over ranks, never running
averages. ``train`` yields one ``EpochResult`` per epoch after writing a log block in the classic
format (``Epoch 0/24 … train Loss: … Acc: …``), ``last.pt`` and, on improvement, ``best.pt``; the
caller records the results (``perfkit.record``).

Under ``torchrun`` (WORLD_SIZE > 1) it trains with DistributedDataParallel: a DistributedSampler
shards training, validation is sharded without padding so that the all-reduced counts cover every
image exactly once, and rank 0 alone logs, writes records and saves checkpoints.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from perfkit.data.cifar import download_dataset, load_dataset
from perfkit.device import resolve_device
from perfkit.distributed import ALONE, Distributed
from perfkit.errors import UsageError
from perfkit.results import Where
from perfkit.zoo.preprocess import EvalTransform
from perfkit.zoo.sources import resolve
from perfkit.zoo.spec import ModelSpec

DEFAULT_CHECKPOINT_ROOT = Path(".perfkit-checkpoints")
DEFAULT_LOG_DIR = Path("reports")
LR_FINETUNE = 0.001  # the classic fine-tuning recipe (SGD, momentum 0.9)
LR_SCRATCH = 0.01
AUX_LOSS_WEIGHT = 0.4  # torchvision's reference recipe for inception_v3's auxiliary head
SCHEDULES = ("step", "cosine")
CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    """One model's training job; the CLI flags map one to one."""

    model: str
    data: Path
    dataset: str = "cifar10"
    weights: str = "auto"  # pretrained if cached (fine-tuning), else random (from scratch)
    epochs: int = 25
    batch_size: int = 32
    lr: float | None = None  # None: LR_FINETUNE from pretrained weights, LR_SCRATCH from random
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine: towards 0 at the last epoch; step: ÷10 every step_size epochs
    step_size: int = 7
    input_size: int | None = None  # None: the model's native input size
    amp: bool = False
    device: str = "auto"
    workers: int | None = None  # None: 0 on CPU (compute needs the cores), up to 8 on CUDA
    seed: int = 0
    checkpoint_root: Path = DEFAULT_CHECKPOINT_ROOT  # files go to <root>/<model>/{last,best}.pt
    resume: bool = False
    download: bool = False
    log_dir: Path = DEFAULT_LOG_DIR
    progress: bool = True


@dataclass(frozen=True)
class EpochResult:
    """One finished epoch (kind train): the record's metrics and where the checkpoints are."""

    where: Where
    metrics: dict
    best_path: Path | None = None
    last_path: Path | None = None
    log_path: Path | None = None


def training_device(device: str, dist: Distributed) -> torch.device:
    """The device this process trains on: the resolved ``device``, one GPU per rank under torchrun."""
    if dist.enabled and str(device).startswith("cuda") and device not in ("cuda", "auto"):
        raise UsageError("under torchrun pass --device cuda (each rank takes the GPU of its LOCAL_RANK)")
    resolved = dist.device(resolve_device(device))
    if resolved.startswith("cuda"):
        torch.cuda.set_device(torch.device(resolved))
    return torch.device(resolved)


# -- model -----------------------------------------------------------------------------------------


def replace_classifier(model: nn.Module, spec: ModelSpec, num_classes: int) -> list[str]:
    """Swap every classifier head (main and auxiliary) for a fresh one with ``num_classes`` outputs.

    timm models use ``reset_classifier``. torchvision models and LeNet-5: every ``Linear`` (or 1×1
    ``Conv2d``, squeezenet) producing the spec's class count is a head — fc, classifier[-1],
    heads.head, and inception_v3's AuxLogits.fc — and nothing else produces that count.

    Returns:
        The names of the replaced modules.
    """
    if spec.source == "timm":
        model.reset_classifier(num_classes)
        return ["reset_classifier()"]
    replaced = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and module.out_features == spec.num_classes:
            new = nn.Linear(module.in_features, num_classes, bias=module.bias is not None)
        elif isinstance(module, nn.Conv2d) and module.out_channels == spec.num_classes and module.kernel_size == (1, 1):
            new = nn.Conv2d(module.in_channels, num_classes, 1, bias=module.bias is not None)
        else:
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, new)
        replaced.append(name)
    if not replaced:
        raise UsageError(f"cannot find the classifier of {spec.name}: no Linear layer with {spec.num_classes} outputs")
    return replaced


def prepare_model(spec: ModelSpec, num_classes: int, seed: int = 0) -> tuple[nn.Module, list[str]]:
    """The zoo model with its weights, the classifier replaced (seeded), in training mode."""
    model = spec.build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = replace_classifier(model, spec, num_classes)
    return model.train(), heads


def check_input_size(model: nn.Module, size: int, num_classes: int, device: torch.device, name: str,
                     model_size: int | None = None) -> None:
    """A training-mode forward of two blank images at the training size (BatchNorm needs two).

    A size too small for the network (or for an auxiliary head, inception_v3's needs more than the
    main path) fails here with a clear error instead of in the first batch. BatchNorm statistics
    are restored afterwards: the check leaves no trace in the model.
    """
    saved = {k: v.clone() for k, v in model.named_buffers()}
    try:
        with torch.no_grad():
            logits, aux = _split_outputs(model.train()(torch.zeros(2, 3, size, size, device=device)))
    except RuntimeError as exc:
        raise UsageError(f"{name} cannot run at input size {size}×{size}: {str(exc).splitlines()[0]} "
                         f"(choose another --input-size; the model's own is {model_size})") from None
    finally:
        for key, value in saved.items():
            model.get_buffer(key).copy_(value)
    for out in (logits, *aux):
        if tuple(out.shape) != (2, num_classes):
            raise RuntimeError(f"{name} gives logits of shape {tuple(out.shape)} after the head swap, expected (2, {num_classes})")


def _split_outputs(out) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Main logits and auxiliary logits (inception_v3 / googlenet in training mode return tuples)."""
    if isinstance(out, torch.Tensor):
        return out, []
    main, *aux = out
    return main, [a for a in aux if a is not None]


# -- data ------------------------------------------------------------------------------------------


def eval_transform(spec: ModelSpec, size: int) -> EvalTransform:
    """The spec's eval transform scaled to ``size`` (resize/crop ratio and normalisation kept)."""
    pre = spec.preprocess
    if size == pre.crop_size:
        return pre
    return pre.with_overrides(crop_size=size, resize_size=round(size * pre.resize_size / pre.crop_size))


def _interpolation(pre: EvalTransform):
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(pre.interpolation.lower())


def train_transform(pre: EvalTransform, size: int, native_size: int | None):
    """Standard augmentation: pad 4 + random crop + flip at the native size of fixed-size data
    (CIFAR, then resized to ``size``), random-resized crop + flip for anything else."""
    from torchvision.transforms import v2

    mode = _interpolation(pre)
    if native_size is not None:
        steps = [v2.RandomCrop(native_size, padding=native_size // 8), v2.RandomHorizontalFlip()]
        if size != native_size:
            steps.append(v2.Resize([size, size], interpolation=mode, antialias=True))
        return v2.Compose(steps)
    return v2.Compose([v2.RandomResizedCrop(size, interpolation=mode, antialias=True), v2.RandomHorizontalFlip()])


# -- schedule and checkpoints ------------------------------------------------------------------------


def lr_at(epoch: int, base: float, schedule: str, epochs: int, step_size: int) -> float:
    """Learning rate of an epoch, a pure function of it so that resuming needs no scheduler state."""
    if schedule == "step":
        return base * 0.1 ** (epoch // step_size)
    return base * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def checkpoint_dir(root: Path, model: str) -> Path:
    return Path(root) / model.replace(":", "_").replace("/", "_")


def _save(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-save never leaves a truncated checkpoint behind


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path} (train without --resume first)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise UsageError(f"--resume: cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"--resume: {path} is not a perfkit training checkpoint")
    return ckpt


# -- logging ---------------------------------------------------------------------------------------


class _Log:
    """Lines to ``echo`` (the terminal) and to the log file; silent on ranks other than 0."""

    def __init__(self, path: Path | None, echo: Callable[[str], None] | None):
        self.path = path
        self.echo = echo
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")

    def __call__(self, text: str = "") -> None:
        if self.path is None:
            return
        if self.echo is not None:
            self.echo(text)
        self._file.write(text + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)}m {seconds % 60:.0f}s"


def log_path(cfg: TrainConfig, run_id: str | None) -> Path:
    return cfg.log_dir / f"train-{run_id}-{checkpoint_dir(Path(), cfg.model).name}.log"


def resume_run_id(configs: list[TrainConfig]) -> str | None:
    """Resuming re-opens the run the checkpoint was written in, so its epochs stay one series."""
    for cfg in configs:
        path = checkpoint_dir(cfg.checkpoint_root, cfg.model) / "last.pt"
        if cfg.resume and path.is_file():
            return load_checkpoint(path).get("run_id")
    return None


# -- training --------------------------------------------------------------------------------------


@dataclass
class _Job:
    """Everything the epochs of one training job share, built once by ``_prepare``."""

    cfg: TrainConfig
    dist: Distributed
    spec: ModelSpec
    device: torch.device
    amp_dtype: torch.dtype | None
    size: int
    pre: EvalTransform
    data: object
    model: nn.Module
    net: nn.Module
    heads: list[str]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loaders: tuple
    sampler: object
    generator: torch.Generator
    ckpt_dir: Path
    identity: dict
    ckpt: dict | None
    base_lr: float
    start: int

    @property
    def precision(self) -> str:
        return {torch.float16: "fp16", torch.bfloat16: "bf16", None: "fp32"}[self.amp_dtype]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre.normalize(x, self.device)


def _check_config(cfg: TrainConfig) -> None:
    if cfg.schedule not in SCHEDULES:
        raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}, got '{cfg.schedule}'")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise UsageError("--epochs and --batch-size must be at least 1")


def _load_data(cfg: TrainConfig, dist: Distributed, pre: EvalTransform, size: int):
    if cfg.download:
        if dist.is_main:
            download_dataset(cfg.dataset, cfg.data)
        dist.barrier()
    data = load_dataset(cfg.dataset, cfg.data)
    data.train.transform = train_transform(pre, size, data.native_size)
    data.val.transform = pre.resize_crop()
    return data


def _loaders(cfg: TrainConfig, dist: Distributed, data, device: torch.device):
    workers = cfg.workers if cfg.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    generator = torch.Generator()
    sampler = None
    if dist.enabled:
        sampler = torch.utils.data.DistributedSampler(data.train, dist.world, dist.rank, shuffle=True, seed=cfg.seed)
    shard_size = len(sampler) if sampler is not None else len(data.train)
    kw = dict(batch_size=cfg.batch_size, num_workers=workers, pin_memory=device.type == "cuda",
              persistent_workers=workers > 0)
    # BatchNorm cannot train on a batch of one image: drop the last batch only in that case.
    train = DataLoader(data.train, sampler=sampler, shuffle=sampler is None, generator=generator,
                       drop_last=shard_size % cfg.batch_size == 1, **kw)
    # Validation shards without padding (DistributedSampler would repeat images): counts stay exact.
    val = DataLoader(Subset(data.val, range(dist.rank, len(data.val), dist.world)), shuffle=False, **kw)
    return (train, val), sampler, generator


def _prepare(cfg: TrainConfig, dist: Distributed) -> _Job:
    _check_config(cfg)
    device = training_device(cfg.device, dist)
    amp_dtype = _amp_dtype(cfg.amp, device)
    spec = resolve(cfg.model, weights=cfg.weights)
    size = cfg.input_size or spec.input_size[-1]
    pre = eval_transform(spec, size)
    data = _load_data(cfg, dist, pre, size)
    num_classes = len(data.classes)
    model, heads = prepare_model(spec, num_classes, cfg.seed)
    model.to(device)
    check_input_size(model, size, num_classes, device, spec.name, spec.input_size[-1])
    ckpt_dir = checkpoint_dir(cfg.checkpoint_root, spec.name)
    identity = {"model": spec.name, "source": spec.source, "weights": spec.weights.identity, "dataset": data.name,
                "classes": list(data.classes), "input_size": [3, size, size]}
    ckpt = load_checkpoint(ckpt_dir / "last.pt") if cfg.resume else None
    if ckpt is not None:
        _check_identity(ckpt, identity, ckpt_dir / "last.pt")
        model.load_state_dict(ckpt["model"])
    base_lr = cfg.lr if cfg.lr is not None else (
        ckpt["lr"] if ckpt else (LR_SCRATCH if spec.random_weights else LR_FINETUNE))
    start = ckpt["epoch"] + 1 if ckpt else 0
    if start >= cfg.epochs:
        raise UsageError(f"{spec.name}: the checkpoint in {ckpt_dir} has finished {start} epochs already; "
                         f"pass --epochs above {start} to train on")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
    net = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loaders, sampler, generator = _loaders(cfg, dist, data, device)
    return _Job(cfg, dist, spec, device, amp_dtype, size, pre, data, model, net, heads, optimizer, scaler, loaders,
                sampler, generator, ckpt_dir, identity, ckpt, base_lr, start)


def _log_header(job: _Job, log: _Log) -> None:
    cfg, spec, data = job.cfg, job.spec, job.data
    weights_note = "from scratch (random init)" if spec.random_weights else "fine-tuning pretrained weights"
    log(f"perfkit train {spec.name} on {data.name} ({data.root}): {len(data.train)} train / {len(data.val)} val images, "
        f"{len(data.classes)} classes")
    log(f"  weights {spec.weights.identity} — {weights_note}; new head: {', '.join(job.heads)}")
    log(f"  input {job.size}×{job.size}; val transform: {job.pre.describe()}; train: {_describe(data.train.transform)}")
    log(f"  device {job.device}, {job.precision}, batch {cfg.batch_size} × {job.dist.world} process(es), SGD lr "
        f"{job.base_lr:g} momentum {cfg.momentum} wd {cfg.weight_decay:g}, {cfg.schedule} schedule, seed {cfg.seed}")
    log(f"  checkpoints: {job.ckpt_dir}/last.pt, best.pt" + (f"; resuming at epoch {job.start}" if job.ckpt else ""))


def _run_epoch(job: _Job, epoch: int, progress) -> tuple[list[float], list[float], float, float]:
    """Train then validate one epoch; (train loss sum, correct, n), (val …), seconds of each."""
    cfg = job.cfg
    lr = lr_at(epoch, job.base_lr, cfg.schedule, cfg.epochs, cfg.step_size)
    for group in job.optimizer.param_groups:
        group["lr"] = lr
    # Seeded per epoch (shuffle, augmentation): a resumed run sees the same epochs.
    job.generator.manual_seed(cfg.seed + epoch)
    torch.manual_seed(cfg.seed + epoch)
    if job.sampler is not None:
        job.sampler.set_epoch(epoch)
    criterion = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    train_stats = job.dist.all_reduce(_train_epoch(job, criterion, progress, f"epoch {epoch} train")).tolist()
    train_seconds = time.perf_counter() - t0  # the all-reduce (or .tolist()) waited for the device
    t1 = time.perf_counter()
    val_stats = job.dist.all_reduce(_evaluate(job, criterion, progress, f"epoch {epoch} val")).tolist()
    return train_stats, val_stats, train_seconds, time.perf_counter() - t1


def _epoch_metrics(job: _Job, epoch: int, stats, best: tuple[float, int]) -> dict:
    (train_loss, train_correct, train_n), (val_loss, val_correct, val_n), train_s, val_s = stats
    if int(val_n) != len(job.data.val):
        raise RuntimeError(f"validated {int(val_n)} images, the validation set has {len(job.data.val)}")
    cfg = job.cfg
    return {
        "epoch": epoch, "epochs": cfg.epochs, "train_loss": train_loss / train_n, "train_acc": train_correct / train_n,
        "val_loss": val_loss / val_n, "val_acc": val_correct / val_n, "epoch_seconds": train_s + val_s,
        "train_seconds": train_s, "val_seconds": val_s, "images_per_s": train_n / train_s,
        "best_val_acc": best[0], "best_epoch": best[1], "dataset": job.data.name,
        "lr": lr_at(epoch, job.base_lr, cfg.schedule, cfg.epochs, cfg.step_size),
        "train_images": int(train_n), "val_images": int(val_n), "correct_val": int(val_correct),
        "num_classes": len(job.data.classes), "input_size": [3, job.size, job.size], "world_size": job.dist.world,
        "amp": cfg.amp, "resumed": job.ckpt is not None,
    }


def _checkpoint(job: _Job, epoch: int, metrics: dict, run_id: str | None, elapsed: float) -> dict:
    return {
        "format": CHECKPOINT_FORMAT, "model": job.model.state_dict(), "optimizer": job.optimizer.state_dict(),
        "scaler": job.scaler.state_dict() if job.scaler.is_enabled() else None, "epoch": epoch,
        "best_val_acc": metrics["best_val_acc"], "best_epoch": metrics["best_epoch"], "val_acc": metrics["val_acc"],
        "lr": job.base_lr, "spec": job.identity, "run_id": run_id, "elapsed_seconds": elapsed,
        "classes": list(job.data.classes),
    }


def train(cfg: TrainConfig, dist: Distributed = ALONE, *, run_id: str | None = None,
          echo: Callable[[str], None] | None = None, progress=None) -> Iterator[EpochResult]:
    """Train one model for ``cfg.epochs`` epochs (or the rest of them with ``cfg.resume``).

    Yields an ``EpochResult`` after each epoch, once its checkpoints are saved (rank 0 only; other
    ranks train and yield nothing). ``echo`` shows the log lines; ``progress`` the batches.
    """
    from perfkit.context import NO_PROGRESS

    job = _prepare(cfg, dist)
    log = _Log(log_path(cfg, run_id) if dist.is_main else None, echo)
    progress = (progress or NO_PROGRESS) if dist.is_main and cfg.progress else NO_PROGRESS
    if dist.is_main:
        job.ckpt_dir.mkdir(parents=True, exist_ok=True)
    best = (job.ckpt["best_val_acc"], job.ckpt["best_epoch"]) if job.ckpt else (-1.0, -1)
    elapsed_before = job.ckpt["elapsed_seconds"] if job.ckpt else 0.0
    where = Where(job.spec.name, "eager", job.precision, cfg.batch_size * dist.world, job.spec.weights.identity,
                  job.device.type)
    _log_header(job, log)
    t_start = time.perf_counter()
    try:
        for epoch in range(job.start, cfg.epochs):
            log(f"Epoch {epoch}/{cfg.epochs - 1}")
            log("-" * 10)
            stats = _run_epoch(job, epoch, progress)
            val_acc = stats[1][1] / stats[1][2]
            if val_acc > best[0]:
                best = (val_acc, epoch)
            metrics = _epoch_metrics(job, epoch, stats, best)
            log(f"train Loss: {metrics['train_loss']:.4f} Acc: {metrics['train_acc']:.4f}")
            log(f"val Loss: {metrics['val_loss']:.4f} Acc: {metrics['val_acc']:.4f}")
            log(f"epoch time {_mmss(metrics['epoch_seconds'])} (train {metrics['train_seconds']:.1f}s, "
                f"{metrics['images_per_s']:.1f} images/s; val {metrics['val_seconds']:.1f}s)  lr {metrics['lr']:g}")
            log()
            if not dist.is_main:
                continue
            total = elapsed_before + time.perf_counter() - t_start
            state = _checkpoint(job, epoch, metrics, run_id, total)
            _save(state, job.ckpt_dir / "last.pt")
            if best[1] == epoch:
                _save(state, job.ckpt_dir / "best.pt")
            if epoch == cfg.epochs - 1:
                metrics.update(total_seconds=total, checkpoint=str(job.ckpt_dir / "best.pt"), log_path=str(log.path))
                log(f"Training complete in {_mmss(total)}")
                log(f"Best val Acc: {best[0]:4f} (epoch {best[1]})")
                log(f"best checkpoint: {job.ckpt_dir / 'best.pt'}")
                log(f"log: {log.path}")
            yield EpochResult(where, metrics, job.ckpt_dir / "best.pt", job.ckpt_dir / "last.pt", log.path)
    finally:
        log.close()


def _check_identity(ckpt: dict, identity: dict, path: Path) -> None:
    saved = ckpt.get("spec", {})
    diff = [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in identity.items() if saved.get(k) != v]
    if diff:
        raise UsageError(f"--resume: {path} was trained differently; use the same model, weights, dataset and "
                         f"--input-size ({'; '.join(diff)})")


def _amp_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    if not amp:
        return None
    # fp16 needs a GradScaler on CUDA; CPU autocast computes in bf16, whose range needs none.
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def _train_epoch(job: _Job, criterion, progress, label: str) -> torch.Tensor:
    job.net.train()
    # Sums stay on the device and the image count on the host: no per-step device sync.
    loss_sum = torch.zeros((), dtype=torch.float64, device=job.device)
    correct = torch.zeros((), dtype=torch.float64, device=job.device)
    n = 0
    loader = job.loaders[0]
    progress.start(label, total=len(loader))
    for images, labels in loader:
        x, y = job.normalise(images), labels.to(job.device, non_blocking=True)
        with _autocast(job.device, job.amp_dtype):
            logits, aux = _split_outputs(job.net(x))
            main_loss = criterion(logits, y)
            loss = main_loss + AUX_LOSS_WEIGHT * sum(criterion(a, y) for a in aux) if aux else main_loss
        job.optimizer.zero_grad(set_to_none=True)
        job.scaler.scale(loss).backward()
        job.scaler.step(job.optimizer)
        job.scaler.update()
        # The reported loss is the main head's, comparable across models with and without aux heads.
        loss_sum += main_loss.detach().double() * len(labels)
        correct += (logits.argmax(1) == y).sum().double()
        n += len(labels)
        progress.update(advance=1)
    return torch.stack([loss_sum, correct, torch.tensor(float(n), dtype=torch.float64, device=job.device)])


def _evaluate(job: _Job, criterion, progress, label: str) -> torch.Tensor:
    # The bare module, not the DDP wrapper: shards differ in size, and DDP's forward would sync buffers.
    model = job.model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=job.device)
    correct = torch.zeros((), dtype=torch.float64, device=job.device)
    n = 0
    loader = job.loaders[1]
    progress.start(label, total=len(loader))
    with torch.no_grad():
        for images, labels in loader:
            x, y = job.normalise(images), labels.to(job.device, non_blocking=True)
            with _autocast(job.device, job.amp_dtype):
                logits = model(x)
            loss_sum += criterion(logits.float(), y).double() * len(labels)
            correct += (logits.argmax(1) == y).sum().double()
            n += len(labels)
            progress.update(advance=1)
    model.train()
    return torch.stack([loss_sum, correct, torch.tensor(float(n), dtype=torch.float64, device=job.device)])


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _describe(transform) -> str:
    return " → ".join(type(t).__name__ for t in getattr(transform, "transforms", [transform]))
