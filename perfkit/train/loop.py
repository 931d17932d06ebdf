"""The training comparison: train or fine-tune zoo models on CIFAR-10 or an ImageFolder.

One epoch = a training pass (augmented) and a validation pass (the model's eval transform), timed
separately; loss and accuracy are integer counts and sums all-reduced over ranks, never running
averages. Each epoch writes one ``train`` record, a log line block in the classic format
(``Epoch 0/24 … train Loss: … Acc: …``), ``last.pt`` and, on improvement, ``best.pt``.

Under ``torchrun`` (WORLD_SIZE > 1) it trains with DistributedDataParallel: a DistributedSampler
shards training, validation is sharded without padding so that the all-reduced counts cover every
image exactly once, and rank 0 alone logs, writes records and saves checkpoints.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from perfkit.data.cifar import download_dataset, load_dataset
from perfkit.errors import PerfkitError, UsageError
from perfkit.store import Kind, Record, Store
from perfkit.zoo.preprocess import EvalTransform
from perfkit.zoo.registry import ModelSpec, resolve

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


@dataclass
class TrainResult:
    model: str
    records: list[Record] = field(default_factory=list)  # this invocation's epochs
    log_path: Path | None = None
    best_path: Path | None = None
    last_path: Path | None = None
    best_val_acc: float | None = None
    best_epoch: int | None = None
    total_seconds: float | None = None


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a torchrun job (world size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(t)
        return t

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def init_distributed(device: str) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(rank, world, local)


def resolve_device(device: str, dist: Dist = Dist()) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA GPU is visible; use --device cpu")
        if dist.enabled:
            if device != "cuda":
                raise UsageError("under torchrun pass --device cuda (each rank takes the GPU of its LOCAL_RANK)")
            device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(torch.device(device))
    elif device != "cpu":
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got '{device}'")
    return torch.device(device)


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


def _uint8_eval(pre: EvalTransform):
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(pre.resize_size, interpolation=_interpolation(pre), antialias=pre.antialias),
                       v2.CenterCrop(pre.crop_size)])


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
    """Lines to stderr and to the log file; silent on ranks other than 0."""

    def __init__(self, path: Path | None):
        self.path = path
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")

    def __call__(self, text: str = "") -> None:
        if self.path is None:
            return
        from perfkit.report.console import err_console

        err_console.print(text, markup=False, highlight=False)
        self._file.write(text + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)}m {seconds % 60:.0f}s"


# -- training --------------------------------------------------------------------------------------


def train_models(configs: list[TrainConfig], *, store_path: str | Path | None = None,
                 command: str | None = None) -> list[TrainResult]:
    """Train each model in turn in one store run (re-opened when resuming); joins torchrun if present.

    A model that fails gets an error record and the rest still train (on a single process; under
    torchrun a failure ends the job, since the other ranks would wait forever). Raises when any failed.
    """
    if not configs:
        raise UsageError("name at least one model to train")
    dist = init_distributed(configs[0].device if configs[0].device != "auto" else
                            ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        if not dist.is_main:
            return [train_one(cfg, dist) for cfg in configs]
        resume_run = _resume_run_id(configs)
        results, failures = [], []
        with Store(store_path) as store, store.run(command, run_id=resume_run) as run_id:
            for cfg in configs:
                try:
                    results.append(train_one(cfg, dist, store=store, run_id=run_id))
                except Exception as exc:
                    store.add(Record.failure(Kind.TRAIN, cfg.model, exc, runtime="eager"), run_id)
                    if dist.enabled or len(configs) == 1:
                        raise
                    failures.append((cfg.model, exc))
                    _failure_log(cfg, run_id, exc)
            if failures:
                raise PerfkitError("training failed for " + "; ".join(f"{m} ({type(e).__name__}: {e})" for m, e in failures))
        return results
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()


def _resume_run_id(configs: list[TrainConfig]) -> str | None:
    """Resuming re-opens the run the checkpoint was written in, so its epochs stay one series."""
    for cfg in configs:
        path = checkpoint_dir(cfg.checkpoint_root, cfg.model) / "last.pt"
        if cfg.resume and path.is_file():
            return load_checkpoint(path).get("run_id")
    return None


def _failure_log(cfg: TrainConfig, run_id: str, exc: BaseException) -> None:
    log = _Log(cfg.log_dir / f"train-{run_id}-{checkpoint_dir(Path(), cfg.model).name}.log")
    log(f"FAILED: {type(exc).__name__}: {exc}")
    if not isinstance(exc, PerfkitError):  # a bug: keep its traceback in the log
        log("".join(traceback.format_exception(exc)))
    log.close()


def train_one(cfg: TrainConfig, dist: Dist = Dist(), *, store: Store | None = None, run_id: str | None = None) -> TrainResult:
    """Train one model for ``cfg.epochs`` epochs (or the rest of them with ``cfg.resume``)."""
    if cfg.schedule not in SCHEDULES:
        raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}, got '{cfg.schedule}'")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise UsageError("--epochs and --batch-size must be at least 1")
    device = resolve_device(cfg.device, dist)
    amp_dtype = _amp_dtype(cfg.amp, device)
    spec = resolve(cfg.model, cfg.weights)
    size = cfg.input_size or spec.input_size[-1]
    pre = eval_transform(spec, size)

    if cfg.download:
        if dist.is_main:
            download_dataset(cfg.dataset, cfg.data)
        dist.barrier()
    data = load_dataset(cfg.dataset, cfg.data)
    data.train.transform = train_transform(pre, size, data.native_size)
    data.val.transform = _uint8_eval(pre)
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

    workers = cfg.workers if cfg.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    generator = torch.Generator()
    sampler = None
    if dist.enabled:
        sampler = torch.utils.data.DistributedSampler(data.train, dist.world_size, dist.rank, shuffle=True, seed=cfg.seed)
    shard_size = len(sampler) if sampler is not None else len(data.train)
    loader_kw = dict(batch_size=cfg.batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                     persistent_workers=workers > 0)
    # BatchNorm cannot train on a batch of one image: drop the last batch only in that case.
    train_loader = DataLoader(data.train, sampler=sampler, shuffle=sampler is None, generator=generator,
                              drop_last=shard_size % cfg.batch_size == 1, **loader_kw)
    # Validation shards without padding (DistributedSampler would repeat images): counts stay exact.
    val_loader = DataLoader(Subset(data.val, range(dist.rank, len(data.val), dist.world_size)), shuffle=False, **loader_kw)
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return (x.to(device, non_blocking=True).float().div_(255) - mean) / std

    result = TrainResult(model=spec.name)
    log = _Log(cfg.log_dir / f"train-{run_id}-{ckpt_dir.name}.log" if dist.is_main else None)
    result.log_path = log.path
    best_acc = ckpt["best_val_acc"] if ckpt else -1.0
    best_epoch = ckpt["best_epoch"] if ckpt else -1
    elapsed_before = ckpt["elapsed_seconds"] if ckpt else 0.0
    precision = {torch.float16: "fp16", torch.bfloat16: "bf16", None: "fp32"}[amp_dtype]
    weights_note = "from scratch (random init)" if spec.random_weights else "fine-tuning pretrained weights"
    log(f"perfkit train {spec.name} on {data.name} ({data.root}): {len(data.train)} train / {len(data.val)} val images, "
        f"{num_classes} classes")
    log(f"  weights {spec.weights.identity} — {weights_note}; new head: {', '.join(heads)}")
    log(f"  input {size}×{size}; val transform: {pre.describe()}; train: {_describe(data.train.transform)}")
    log(f"  device {device}, {precision}, batch {cfg.batch_size} × {dist.world_size} process(es), SGD lr {base_lr:g} "
        f"momentum {cfg.momentum} wd {cfg.weight_decay:g}, {cfg.schedule} schedule, seed {cfg.seed}")
    log(f"  checkpoints: {ckpt_dir}/last.pt, best.pt" + (f"; resuming at epoch {start}" if ckpt else ""))
    if log.path is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    criterion = nn.CrossEntropyLoss()
    t_start = time.perf_counter()
    try:
        for epoch in range(start, cfg.epochs):
            lr = lr_at(epoch, base_lr, cfg.schedule, cfg.epochs, cfg.step_size)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Seeded per epoch (shuffle, augmentation): a resumed run sees the same epochs.
            generator.manual_seed(cfg.seed + epoch)
            torch.manual_seed(cfg.seed + epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            log(f"Epoch {epoch}/{cfg.epochs - 1}")
            log("-" * 10)
            with _progress(cfg.progress and dist.is_main) as progress:
                t0 = time.perf_counter()
                train_stats = _train_epoch(net, train_loader, normalise, criterion, optimizer, scaler, amp_dtype, device,
                                           progress, f"epoch {epoch} train")
                train_stats = dist.all_reduce(train_stats).tolist()  # also waits for the device
                train_seconds = time.perf_counter() - t0
                t1 = time.perf_counter()
                val_stats = dist.all_reduce(_evaluate(model, val_loader, normalise, criterion, amp_dtype, device,
                                                      progress, f"epoch {epoch} val")).tolist()
                val_seconds = time.perf_counter() - t1
            train_loss, train_correct, train_n = train_stats
            val_loss, val_correct, val_n = val_stats
            if int(val_n) != len(data.val):
                raise RuntimeError(f"validated {int(val_n)} images, the validation set has {len(data.val)}")
            train_acc, val_acc = train_correct / train_n, val_correct / val_n
            if val_acc > best_acc:
                best_acc, best_epoch = val_acc, epoch
            epoch_seconds = train_seconds + val_seconds
            metrics = {
                "epoch": epoch, "epochs": cfg.epochs, "train_loss": train_loss / train_n, "train_acc": train_acc,
                "val_loss": val_loss / val_n, "val_acc": val_acc, "epoch_seconds": epoch_seconds,
                "train_seconds": train_seconds, "val_seconds": val_seconds, "images_per_s": train_n / train_seconds,
                "best_val_acc": best_acc, "best_epoch": best_epoch, "dataset": data.name, "lr": lr,
                "train_images": int(train_n), "val_images": int(val_n), "correct_val": int(val_correct),
                "num_classes": num_classes, "input_size": [3, size, size], "world_size": dist.world_size,
                "amp": cfg.amp, "resumed": ckpt is not None,
            }
            log(f"train Loss: {metrics['train_loss']:.4f} Acc: {train_acc:.4f}")
            log(f"val Loss: {metrics['val_loss']:.4f} Acc: {val_acc:.4f}")
            log(f"epoch time {_mmss(epoch_seconds)} (train {train_seconds:.1f}s, {metrics['images_per_s']:.1f} images/s; "
                f"val {val_seconds:.1f}s)  lr {lr:g}")
            log()
            if not dist.is_main:
                continue
            total = elapsed_before + time.perf_counter() - t_start
            state = {
                "format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None, "epoch": epoch,
                "best_val_acc": best_acc, "best_epoch": best_epoch, "val_acc": val_acc, "lr": base_lr,
                "spec": identity, "run_id": run_id, "elapsed_seconds": total, "classes": list(data.classes),
            }
            result.last_path = ckpt_dir / "last.pt"
            _save(state, result.last_path)
            if best_epoch == epoch:
                _save(state, ckpt_dir / "best.pt")
            result.best_path = ckpt_dir / "best.pt"
            if epoch == cfg.epochs - 1:
                metrics.update(total_seconds=total, checkpoint=str(result.best_path), log_path=str(log.path))
                log(f"Training complete in {_mmss(total)}")
                log(f"Best val Acc: {best_acc:4f} (epoch {best_epoch})")
                log(f"best checkpoint: {result.best_path}")
                log(f"log: {log.path}")
                result.total_seconds = total
            record = Record(kind=Kind.TRAIN, model=spec.name, metrics=metrics, runtime="eager", precision=precision,
                            batch=cfg.batch_size * dist.world_size, weights=spec.weights.identity, device=device.type)
            result.records.append(store.add(record, run_id) if store is not None else record)
    finally:
        log.close()
    result.best_val_acc, result.best_epoch = best_acc, best_epoch
    return result


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


def _train_epoch(net, loader, normalise, criterion, optimizer, scaler, amp_dtype, device, progress, label) -> torch.Tensor:
    net.train()
    stats = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, images
    task = progress.add_task(label, total=len(loader)) if progress else None
    for images, labels in loader:
        x, y = normalise(images), labels.to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            logits, aux = _split_outputs(net(x))
            main_loss = criterion(logits, y)
            loss = main_loss + AUX_LOSS_WEIGHT * sum(criterion(a, y) for a in aux) if aux else main_loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        # The reported loss is the main head's, comparable across models with and without aux heads.
        stats += torch.stack([main_loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double(),
                              torch.tensor(len(y), dtype=torch.float64, device=device)])
        if progress:
            progress.advance(task)
    return stats


def _evaluate(model, loader, normalise, criterion, amp_dtype, device, progress, label) -> torch.Tensor:
    # The bare module, not the DDP wrapper: shards differ in size, and DDP's forward would sync buffers.
    model.eval()
    stats = torch.zeros(3, dtype=torch.float64, device=device)
    task = progress.add_task(label, total=len(loader)) if progress else None
    with torch.no_grad():
        for images, labels in loader:
            x, y = normalise(images), labels.to(device, non_blocking=True)
            with _autocast(device, amp_dtype):
                logits = model(x)
            stats += torch.stack([criterion(logits.float(), y).double() * len(y), (logits.argmax(1) == y).sum().double(),
                                  torch.tensor(len(y), dtype=torch.float64, device=device)])
            if progress:
                progress.advance(task)
    model.train()
    return stats


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from perfkit.report.console import err_console

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, transient=True)


def _describe(transform) -> str:
    return " → ".join(type(t).__name__ for t in getattr(transform, "transforms", [transform]))
