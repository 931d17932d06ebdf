import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perfkit.cli import main
from perfkit.cli.train import train_models
from perfkit.data.cifar import load_cifar10, make_cifar_batches, make_image_folder
from perfkit.errors import DatasetError, UsageError, WeightsError
from perfkit.record import to_records
from perfkit.store import Kind, Store
from perfkit.train import EpochResult, TrainConfig, train
from perfkit.train.loop import _split_outputs, check_input_size, eval_transform, load_checkpoint, lr_at, prepare_model
from perfkit.zoo.sources import resolve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    # A few hundred images of a learnable task (class colour + stripes under noise); chance is 0.1.
    return make_cifar_batches(tmp_path_factory.mktemp("cifar"), n_train=800, n_test=200, seed=0).parent


def _config(tmp_path, data, model="lenet5", **kw):
    kw = {"epochs": 2, "batch_size": 16, "progress": False, "checkpoint_root": tmp_path / "ckpt",
          "log_dir": tmp_path / "reports", **kw}
    return TrainConfig(model=model, data=data, **kw)


def _epochs(rec, model=None):
    """The ok train records a ``train_models`` run wrote (of ``model``), in epoch order."""
    return [r for r in rec.records if r.kind == Kind.TRAIN and r.status == "ok" and model in (None, r.model)]


def _val_accuracy(model, data_dir, spec, size):
    """Accuracy of a model on the CIFAR test batch, computed here independently of the loop."""
    pre = eval_transform(spec, size)
    data = load_cifar10(data_dir)
    x = torch.nn.functional.interpolate(data.val.images.float(), size=(size, size), mode="bilinear") if size != 32 \
        else data.val.images.float()
    x = (x / 255 - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == data.val.labels).float().mean().item()


def test_lenet5_learns_and_writes_records_log_and_checkpoints(tmp_path, cifar, capsys):
    ckpt, reports = tmp_path / "ckpt", tmp_path / "reports"
    rc = main(["train", "lenet5", "--data", str(cifar), "--epochs", "2", "-b", "16",
               "--checkpoint-dir", str(ckpt), "--log-dir", str(reports), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["kind"] for r in out["records"]} == {"train"} and {r["run_id"] for r in out["records"]} == {out["run_id"]}
    assert all((r["model"], r["runtime"], r["status"]) == ("lenet5", "eager", "ok") for r in out["records"])
    rows = [r["metrics"] for r in out["records"]]
    assert [r["epoch"] for r in rows] == [0, 1] and all(r["epochs"] == 2 for r in rows)
    last = rows[-1]
    assert last["val_acc"] >= 0.5 and last["best_val_acc"] == max(r["val_acc"] for r in rows)  # chance: 0.1
    assert last["train_images"] == 800 and last["val_images"] == 200 and last["dataset"] == "cifar10"
    assert last["total_seconds"] >= sum(r["epoch_seconds"] for r in rows) * 0.99
    assert "total_seconds" not in rows[0] and rows[0]["lr"] == 0.01 and rows[1]["lr"] == pytest.approx(0.005)

    with Store() as store:  # the autouse fixture points PERFKIT_STORE at this test's store
        records = store.records(kind=Kind.TRAIN)
        run = store.get_run("latest")
    assert [r.metrics["epoch"] for r in records] == [0, 1]
    assert {r.run_id for r in records} == {run["id"]} == {out["run_id"]} and run["status"] == "ok"
    assert records[0].weights == "random:seed0" and records[0].precision == "fp32" and records[0].batch == 16
    assert records[0].device == "cpu" and [r.metrics for r in records] == rows

    log = (reports / f"train-{run['id']}-lenet5.log").read_text()
    assert last["log_path"] == str(reports / f"train-{run['id']}-lenet5.log")
    for line in ("Epoch 0/1", "Epoch 1/1", f"train Loss: {rows[0]['train_loss']:.4f} Acc: {rows[0]['train_acc']:.4f}",
                 f"val Loss: {last['val_loss']:.4f} Acc: {last['val_acc']:.4f}", "Training complete in",
                 f"Best val Acc: {last['best_val_acc']:4f}", "images/s"):
        assert line in log

    best = load_checkpoint(ckpt / "lenet5" / "best.pt")
    assert best["epoch"] == last["best_epoch"] and best["best_val_acc"] == last["best_val_acc"]
    assert best["spec"]["classes"][0] == "airplane" and (ckpt / "lenet5" / "last.pt").is_file()
    # The best checkpoint loads through the zoo (same 10 classes) and reproduces its val accuracy.
    spec = resolve("lenet5", weights=str(ckpt / "lenet5" / "best.pt"))
    assert _val_accuracy(spec.build(), cifar, spec, 32) == pytest.approx(last["best_val_acc"])

    # --resume takes an optional RUN; alone, it continues the checkpoints' run (here: nothing left to train).
    capsys.readouterr()
    assert main(["train", "lenet5", "--data", str(cifar), "--epochs", "2", "--checkpoint-dir", str(ckpt),
                 "--log-dir", str(reports), "--resume"]) == 2
    assert "finished 2 epochs already" in capsys.readouterr().err


def test_resume_trains_only_the_missing_epochs_and_matches_an_uninterrupted_run(tmp_path, cifar):
    straight = train_models([_config(tmp_path / "a", cifar)])
    first = train_models([_config(tmp_path / "b", cifar, epochs=1)])
    # --resume without a value: the run the checkpoints were written in.
    resumed = train_models([_config(tmp_path / "b", cifar, epochs=2, resume=True)], resume="latest")
    assert [r.metrics["epoch"] for r in _epochs(first)] == [0]
    assert [r.metrics["epoch"] for r in _epochs(straight)] == [0, 1]
    assert [r.metrics["epoch"] for r in _epochs(resumed)] == [1] and _epochs(resumed)[0].metrics["resumed"]
    # Same run in the store, and the same numbers as training two epochs in one go.
    assert resumed.run_id == first.run_id == _epochs(resumed)[0].run_id != straight.run_id
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert _epochs(resumed)[0].metrics[key] == pytest.approx(_epochs(straight)[1].metrics[key], rel=1e-5), key
    with Store() as store:
        series = store.records(run_id=first.run_id, kind=Kind.TRAIN)
        assert store.get_run(first.run_id)["status"] == "ok"
    assert [r.metrics["epoch"] for r in series] == [0, 1]
    assert load_checkpoint(tmp_path / "b" / "ckpt" / "lenet5" / "last.pt")["epoch"] == 1

    # --resume RUN must name the run the checkpoints were written in.
    with pytest.raises(UsageError, match=f"checkpoints were written in run {first.run_id}, not {straight.run_id}"):
        train_models([_config(tmp_path / "b", cifar, epochs=3, resume=True)], resume=straight.run_id)
    with pytest.raises(UsageError, match="finished 2 epochs already"):
        train_models([_config(tmp_path / "b", cifar, epochs=2, resume=True)])
    other = make_image_folder(tmp_path / "folder", n_train=4, n_val=2, num_classes=2, size=32)
    with pytest.raises(UsageError, match="trained differently.*dataset: checkpoint 'cifar10', now 'imagefolder'"):
        train_models([_config(tmp_path / "b", other, dataset="imagefolder", epochs=3, resume=True)])
    with pytest.raises(UsageError, match="no checkpoint at"):
        train_models([_config(tmp_path / "c", cifar, resume=True)])


def test_image_folder_training_replaces_the_head_for_its_classes(tmp_path):
    root = make_image_folder(tmp_path / "folder", n_train=240, n_val=80, num_classes=4, size=40)
    rec = train_models([_config(tmp_path, root, dataset="imagefolder", input_size=32, epochs=2, batch_size=8)])
    last = _epochs(rec)[-1].metrics
    assert last["num_classes"] == 4 and last["dataset"] == "imagefolder" and last["val_images"] == 80
    assert last["best_val_acc"] >= 0.5  # chance: 0.25
    best_path = Path(last["checkpoint"])
    assert best_path == tmp_path / "ckpt" / "lenet5" / "best.pt"
    state = load_checkpoint(best_path)["model"]
    assert state["classifier.5.weight"].shape == (4, 84)
    # A 4-class checkpoint does not fit the 10-class zoo model: a clear error, never a silent load ...
    with pytest.raises(WeightsError, match="best.pt: classifier.5.weight is 4×84 but lenet5 has 10×84 — pass "
                                           "--num-classes 4"):
        resolve("lenet5", weights=str(best_path))
    # ... and with its head named, it loads
    assert resolve("lenet5", weights=str(best_path), num_classes=4).build()(torch.zeros(1, 3, 32, 32)).shape == (1, 4)


def test_failure_writes_an_error_record_and_fails_the_run(tmp_path):
    with pytest.raises(DatasetError):
        train_models([_config(tmp_path, tmp_path / "absent")])
    with Store() as store:
        (record,) = store.records(kind=Kind.TRAIN)
        assert record.status == "error" and "DatasetError" in record.error
        assert store.get_run("latest")["status"] == "failed"


def test_a_failed_model_does_not_stop_the_next_one(tmp_path, cifar):
    rec = train_models([_config(tmp_path / "bad", tmp_path / "absent", epochs=1),
                        _config(tmp_path / "good", cifar, epochs=1)])
    assert rec.failed and [r.status for r in rec.records] == ["error", "ok"]
    assert "DatasetError" in rec.records[0].error and rec.records[1].metrics["epoch"] == 0
    with Store() as store:
        assert [r.status for r in store.records(rec.run_id, kind=Kind.TRAIN)] == ["error", "ok"]
        assert store.get_run(rec.run_id)["status"] == "failed"
    assert "FAILED: DatasetError" in (tmp_path / "bad" / "reports" / f"train-{rec.run_id}-lenet5.log").read_text()


def test_cpu_amp_trains_in_bf16_and_yields_epoch_results_that_record_valid(tmp_path, cifar):
    """``train`` on a CUDA-free CPU: typed results only (no store), each a valid train record."""
    cfg = _config(tmp_path, cifar, epochs=1, amp=True, device="cpu")
    (result,) = list(train(cfg, run_id="r1"))
    assert isinstance(result, EpochResult)
    (record,) = to_records(result)
    record.validate()
    assert (record.kind, record.model, record.runtime, record.precision, record.batch, record.device) == (
        "train", "lenet5", "eager", "bf16", 16, "cpu")
    assert record.weights == "random:seed0" and record.status == "ok"
    assert record.metrics["amp"] is True and 0 <= record.metrics["val_acc"] <= 1 and record.metrics["train_loss"] > 0
    assert result.best_path == tmp_path / "ckpt" / "lenet5" / "best.pt" and result.best_path.is_file()
    assert result.last_path.is_file() and result.log_path == tmp_path / "reports" / "train-r1-lenet5.log"
    assert record.metrics["checkpoint"] == str(result.best_path) and record.metrics["log_path"] == str(result.log_path)
    with Store() as store:
        assert store.records() == []  # measuring writes nothing; the caller records


def test_lr_schedules():
    assert [lr_at(e, 0.1, "step", 20, 7) for e in (0, 6, 7, 14)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert [lr_at(e, 0.1, "cosine", 4, 7) for e in range(4)] == pytest.approx([0.1, 0.0853553, 0.05, 0.0146447], rel=1e-5)


def test_heads_are_replaced_and_aux_outputs_split():
    model, heads = prepare_model(resolve("resnet18", weights="random"), 7)
    assert heads == ["fc"] and model.fc.out_features == 7 and model.training
    model, heads = prepare_model(resolve("squeezenet1_1", weights="random"), 3)
    assert heads == ["classifier.1"]
    check_input_size(model, 64, 3, torch.device("cpu"), "squeezenet1_1")
    main_out, aux = _split_outputs((torch.ones(2, 3), torch.zeros(2, 3)))
    assert main_out.sum() == 6 and len(aux) == 1
    assert _split_outputs((torch.ones(2, 3), None))[1] == []


@pytest.mark.slow
@pytest.mark.parametrize("name, heads", [
    ("inception_v3", ["AuxLogits.fc", "fc"]), ("googlenet", ["fc"]), ("alexnet", ["classifier.6"]),
    ("vgg16", ["classifier.6"]), ("mobilenet_v2", ["classifier.1"]), ("densenet121", ["classifier"]),
])
def test_zoo_heads_are_found(name, heads):
    model, replaced = prepare_model(resolve(name, weights="random"), 10)
    assert replaced == heads
    check_input_size(model, 299 if name == "inception_v3" else 224, 10, torch.device("cpu"), name)


@pytest.mark.slow
def test_inception_v3_trains_with_its_aux_head():
    model, _ = prepare_model(resolve("inception_v3", weights="random"), 10)
    # The auxiliary head needs more than the main path: too small fails before training starts.
    with pytest.raises(UsageError, match="inception_v3 cannot run at input size 96×96"):
        check_input_size(model, 96, 10, torch.device("cpu"), "inception_v3")
    logits, aux = _split_outputs(model(torch.randn(2, 3, 299, 299)))
    assert logits.shape == (2, 10) and len(aux) == 1 and aux[0].shape == (2, 10)


def test_too_small_input_is_a_usage_error_and_the_check_leaves_no_trace():
    model, _ = prepare_model(resolve("alexnet", weights="random"), 10)
    with pytest.raises(UsageError, match="alexnet cannot run at input size 32×32"):
        check_input_size(model, 32, 10, torch.device("cpu"), "alexnet")
    model, _ = prepare_model(resolve("resnet18", weights="random"), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_input_size(model, 32, 10, torch.device("cpu"), "resnet18")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched


@pytest.mark.slow
def test_resnet18_learns_at_input_size_32(tmp_path, cifar):
    rec = train_models([_config(tmp_path, cifar, model="resnet18", input_size=32, epochs=2, batch_size=32)])
    last = _epochs(rec)[-1].metrics
    best_path = Path(last["checkpoint"])
    assert last["best_val_acc"] >= 0.5 and [r.metrics["epoch"] for r in _epochs(rec)] == [0, 1]
    assert last["input_size"] == [3, 32, 32]
    spec = resolve("resnet18", weights="random")
    # The 10-class checkpoint does not fit the 1000-class zoo model: a clear error.
    with pytest.raises(WeightsError, match="fc.weight is 10×512 but resnet18 has 1000×512 — pass --num-classes 10"):
        resolve("resnet18", weights=str(best_path))
    model, _ = prepare_model(spec, 10)
    model.load_state_dict(load_checkpoint(best_path)["model"])
    assert _val_accuracy(model, cifar, spec, 32) == pytest.approx(last["best_val_acc"])
    own = resolve("resnet18", weights=str(best_path), num_classes=10, input_size=32)  # the checkpoint as it is
    assert _val_accuracy(own.build(), cifar, spec, 32) == pytest.approx(last["best_val_acc"])


@pytest.mark.slow
def test_torchrun_two_gloo_processes(tmp_path, cifar):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "perfkit",
           "train", "lenet5", "--data", str(cifar), "--epochs", "2", "-b", "16", "--device", "cpu",
           "--checkpoint-dir", str(tmp_path / "ckpt"), "--log-dir", str(tmp_path / "reports")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    with Store() as store:
        records = store.records(kind=Kind.TRAIN)
    # Rank 0 alone writes: one record per epoch, counts all-reduced over both shards.
    assert [r.metrics["epoch"] for r in records] == [0, 1]
    last = records[-1].metrics
    assert last["world_size"] == 2 and last["val_images"] == 200 and last["train_images"] == 800
    assert records[-1].batch == 32 and last["best_val_acc"] >= 0.5
    assert out.stdout.count("perfkit train — one row per epoch") == 1
    # The sharded validation equals a single-process evaluation of the saved model.
    spec = resolve("lenet5", weights=str(tmp_path / "ckpt" / "lenet5" / "last.pt"))
    assert _val_accuracy(spec.build(), cifar, spec, 32) == pytest.approx(last["val_acc"])


def test_a_training_step_never_waits_for_the_device(tmp_path, cifar, monkeypatch):
    """Per step, nothing copies a host value to the device or reads one back: on CUDA each such
    copy waits for the GPU and images/s comes out low. Counted on the CPU, where the same calls
    happen; what an epoch does once (its totals) is allowed."""
    import collections

    from perfkit.train import loop

    counts, active = collections.Counter(), [False]

    def counting(name, real):
        def wrapper(*args, **kwargs):
            if active[0]:
                counts[name] += 1
            return real(*args, **kwargs)
        return wrapper

    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch, "tensor", counting("torch.tensor", torch.tensor))
    real_epoch = loop._train_epoch

    def epoch(job, *args, **kwargs):
        import dataclasses

        batches = list(job.loaders[0])  # data loading (host-side decoding, collation) is not counted
        active[0] = True
        try:
            return real_epoch(dataclasses.replace(job, loaders=(batches, *job.loaders[1:])), *args, **kwargs)
        finally:
            active[0] = False

    monkeypatch.setattr(loop, "_train_epoch", epoch)
    results = list(train(_config(tmp_path, cifar, epochs=1, batch_size=16)))  # 50 steps
    assert results and results[0].metrics["train_images"] == 800
    assert sum(counts.values()) <= 3, counts  # per epoch, not per step: its image count, mean and std once
