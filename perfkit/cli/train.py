"""perfkit train MODEL... --dataset cifar10 --data DIR: the training comparison."""

from __future__ import annotations

import traceback
from pathlib import Path

from perfkit.cli import common
from perfkit.cli import options as O


def add(sub) -> None:
    p = O.command(sub, "train", "train or fine-tune models on CIFAR-10 or an ImageFolder (time per epoch, best acc)",
                  "Train or fine-tune zoo models with their classifier replaced for the dataset's classes, the\n"
                  "classic training comparison: per epoch train/val loss and accuracy, seconds and images/s,\n"
                  "the best val accuracy and its epoch. Logs go to stderr and reports/train-<run>-<model>.log;\n"
                  "checkpoints to <checkpoint-dir>/<model>/last.pt (every epoch) and best.pt (on improvement).\n"
                  "Data-parallel: torchrun --nproc_per_node N -m perfkit train ... (rank 0 logs and writes).\n"
                  "A best.pt holds {'model': state_dict, ...} with the NEW head: `--weights best.pt` loads it\n"
                  "wherever the class count matches and fails with a clear error where it does not.",
                  "perfkit train resnet18 googlenet --dataset cifar10 --data ~/data --epochs 2 --input-size 64")
    p.add_argument("models", nargs="+", metavar="MODEL", help="zoo models (resnet18, timm:<name>, lenet5, ...)")
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "imagefolder"),
                   help="cifar10: the python batches (DIR or DIR/cifar-10-batches-py); imagefolder: DIR/train/<class>/*, "
                        "DIR/val/<class>/*")
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 through torchvision if absent (needs a network)")
    p.add_argument("--epochs", type=int, default=25)
    O.batch(p, "32", "images per batch per process (one number)")
    p.add_argument("--lr", type=float, default=None,
                   help="SGD learning rate (momentum 0.9); default 0.001 fine-tuning pretrained weights, 0.01 from scratch")
    p.add_argument("--schedule", default="cosine", choices=("cosine", "step"), help="cosine to 0, or step: ÷10 every 7 epochs")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    O.weights(p)
    p.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="train and validate at N×N (default: the model's input size, e.g. 224; 32 is CIFAR's own)")
    p.add_argument("--amp", action="store_true", help="mixed precision: fp16 + GradScaler on CUDA, bf16 autocast on CPU")
    O.device(p)
    p.add_argument("--workers", type=int, default=None, help="data-loader processes (default: 0 on CPU, up to 8 on CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", type=Path, default=Path(".perfkit-checkpoints"), metavar="DIR",
                   help="checkpoints go to DIR/<model>/last.pt and best.pt")
    O.resume(p, "the run the checkpoints were written in")
    p.add_argument("--log-dir", type=Path, default=Path("reports"), help="folder of the training logs")
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=run)


def configs(args) -> list:
    from perfkit.errors import UsageError
    from perfkit.train import TrainConfig
    from perfkit.vocab import parse_batches

    batches = parse_batches(args.batch)
    if len(batches) != 1:
        raise UsageError(f"train takes one batch size (-b N), got '{args.batch}'")
    return [TrainConfig(
        model=name, data=args.data, dataset=args.dataset, weights=args.weights, epochs=args.epochs,
        batch_size=batches[0], lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
        input_size=args.input_size, amp=args.amp, device=args.device, workers=args.workers, seed=args.seed,
        checkpoint_root=args.checkpoint_dir, resume=args.resume is not None, download=args.download,
        log_dir=args.log_dir, progress=not args.json,
    ) for name in args.models]


def train_models(configs: list, *, store_path=None, resume: str | None = None, echo=None):
    """Train each model in turn in one run of the store (the checkpoint's run when resuming).

    A model that fails gets an error record and the rest still train (on a single process; under
    torchrun a failure ends the job, since the other ranks would wait forever). Returns the
    ``RunRecorder``; raises the first failure when every model failed.
    """
    from perfkit.distributed import Distributed
    from perfkit.errors import UsageError
    from perfkit.record import recording
    from perfkit.results import Failure, Kind, Where
    from perfkit.store import Store
    from perfkit.train import resume_run_id, train

    if not configs:
        raise UsageError("name at least one model to train")
    dist = Distributed.from_env(common.resolve_device(configs[0]))
    finished = False
    try:
        if not dist.is_main:
            for cfg in configs:
                for _ in train(cfg, dist):
                    pass
            finished = True
            return None
        with Store(store_path) as store:
            run_id = _run_to_resume(store, resume, resume_run_id(configs))
            with common.progress_bar("batch") as bar, recording(store, run_id=run_id) as rec:
                failures = []
                for cfg in configs:
                    try:
                        rec.add_all(train(cfg, dist, run_id=rec.run_id, echo=echo, progress=bar))
                    except Exception as exc:
                        rec.add(Failure.of(Kind.TRAIN, Where(cfg.model, "eager"), exc))
                        if dist.enabled:
                            raise
                        failures.append(exc)
                        _failure_log(cfg, rec.run_id, exc)
                if failures and len(failures) == len(configs):
                    raise failures[0]
        finished = True
        return rec
    finally:
        dist.close(finished=finished)


def _run_to_resume(store, asked: str | None, from_checkpoint: str | None) -> str | None:
    """The store run to continue: none, the checkpoints' own (``--resume`` without a value), or RUN."""
    from perfkit.errors import UsageError

    if asked is None:
        return None
    if asked == "latest":
        return from_checkpoint
    run_id = store.resumable(asked)
    if from_checkpoint is not None and from_checkpoint != run_id:
        raise UsageError(f"--resume {asked}: the checkpoints were written in run {from_checkpoint}, not {run_id}")
    return run_id


def _failure_log(cfg, run_id: str, exc: BaseException) -> None:
    from perfkit.errors import PerfkitError
    from perfkit.train.loop import log_path

    path = log_path(cfg, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"FAILED: {type(exc).__name__}: {exc}\n")
        if not isinstance(exc, PerfkitError):  # a bug: keep its traceback in the log
            f.write("".join(traceback.format_exception(exc)))


def run(args) -> int:
    from perfkit.report.console import console, err_console
    from perfkit.report.tables import epochs_table

    rec = train_models(configs(args), store_path=args.store, resume=args.resume,
                       echo=None if args.json else lambda text: err_console.print(text, markup=False, highlight=False))
    if rec is None:
        return 0  # torchrun: rank 0 prints
    common.show(args, rec.run_id, rec.records, [epochs_table(rec.records)])
    if not args.json:
        for r in rec.records:
            if r.status == "ok" and "total_seconds" in r.metrics:
                m = r.metrics
                console.print(f"{r.model}: best val acc {m['best_val_acc']:.4f} at epoch {m['best_epoch']}; "
                              f"best checkpoint {m['checkpoint']}; log {m['log_path']}", markup=False)
    return common.exit_code(rec)
