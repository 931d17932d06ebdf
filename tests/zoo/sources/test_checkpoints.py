"""A zoo architecture with the user's head and checkpoint (``MODEL --num-classes N --weights FILE``):
checkpoints saved the way training scripts save them resolve, build, give the logits of the model
they were saved from, and go through ``perfkit check`` and ``perfkit profile`` in-process."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
import torchvision

from perfkit.cli import main
from perfkit.errors import UsageError, WeightsError
from perfkit.zoo.sources import resolve

SIZE = 64  # resnet18 at 64×64: a real network, a few milliseconds per call


@pytest.fixture(scope="module")
def trained():
    """A 3-class resnet18 with weights and BatchNorm statistics unlike any fresh init."""
    torch.manual_seed(3)
    model = torchvision.models.resnet18(num_classes=3)
    with torch.no_grad():
        model.train()(torch.randn(8, 3, SIZE, SIZE))  # running statistics move off (0, 1)
        model.fc.weight.mul_(4.0)
    return model.eval()


def _torchvision_train_py(model, path):
    """As torchvision's references/classification/train.py saves a checkpoint (args: an argparse.Namespace)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30)
    args = argparse.Namespace(model="resnet18", lr=0.1, epochs=90, data_path="/datasets/imagenet", amp=False,
                              weights=None, output_dir=".", resume="")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(),
                "epoch": 89, "args": args}, path)


def _ddp(model, path):
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)


def _compiled(model, path):
    torch.save(torch.compile(model).state_dict(), path)  # keys under _orig_mod.


def _lightning(model, path):
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 4, "global_step": 400,
                "pytorch-lightning_version": "2.4.0", "optimizer_states": [], "lr_schedulers": []}, path)


def _ema(model, path):
    """torchvision's train.py with --model-ema: the EMA is an AveragedModel (module. keys, n_averaged)."""
    other = torchvision.models.resnet18(num_classes=3).state_dict()
    torch.save({"model": other, "model_ema": torch.optim.swa_utils.AveragedModel(model).state_dict(), "epoch": 1}, path)


FORMATS = {"train.py": (_torchvision_train_py, False, "model"), "ddp": (_ddp, False, ""),
           "compile": (_compiled, False, ""), "lightning": (_lightning, False, "state_dict"),
           "ema": (_ema, True, "model_ema")}


@pytest.mark.parametrize("fmt", FORMATS)
def test_checkpoint_resolves_builds_and_gives_the_saved_models_logits(trained, tmp_path, fmt):
    save, ema, entry = FORMATS[fmt]
    path = tmp_path / f"{fmt}.pth"
    save(trained, path)
    spec = resolve("resnet18", weights=str(path), num_classes=3, input_size=SIZE, ema=ema)
    assert spec.num_classes == 3 and spec.input_size == (3, SIZE, SIZE) and spec.weights.entry == entry
    assert spec.name == f"resnet18@{spec.identity[:8]}" and spec.reference == {}  # no published numbers
    assert spec.label == f"resnet18 ({fmt}.pth{' EMA' if ema else ''}, 3 classes)"
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(spec.build()(x), trained(x))


def _cli(capsys, *argv) -> dict:
    assert main([*map(str, argv), "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _check_and_profile(capsys, path, *flags) -> tuple[dict, dict]:
    model = ["resnet18", "--num-classes", 3, "--weights", path, "--input-size", SIZE, *flags]
    check = _cli(capsys, "check", *model, "-f", "onnx", "-b", 1, "--samples", 4)
    profile = _cli(capsys, "profile", *model, "-f", "eager,onnx", "-b", 1, "--no-memory", "--iterations", 3,
                   "--min-seconds", 0.01, "--warmup", 1, "--warmup-seconds", 0.01)
    return check, profile


def _assert_measured(spec, check: dict, profile: dict) -> None:
    (parity,) = [r for r in check["records"] if r["kind"] == "parity"]
    assert parity["model"] == spec.name and parity["metrics"]["passed"] and parity["weights"] == spec.weights.identity
    (model,) = [r for r in check["records"] if r["kind"] == "model"]
    m = model["metrics"]
    assert (m["label"], m["source"], m["identity"], m["num_classes"]) == (spec.label, "torchvision", spec.identity, 3)
    assert m["ref_top1_pct"] is None and m["ref_params"] is None  # not the published resnet18
    latency = {r["runtime"]: r for r in profile["records"] if r["kind"] == "latency"}
    assert set(latency) == {"eager", "onnx"} and all(r["model"] == spec.name and r["status"] == "ok"
                                                      for r in latency.values())


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_checkpoint_format_through_check_and_profile(trained, tmp_path, capsys, fmt):
    save, ema, entry = FORMATS[fmt]
    path = tmp_path / f"{fmt}.pth"
    save(trained, path)
    spec = resolve("resnet18", weights=str(path), num_classes=3, input_size=SIZE, ema=ema)
    check, profile = _check_and_profile(capsys, path, *(["--ema"] if ema else []))
    _assert_measured(spec, check, profile)
    (model,) = [r for r in check["records"] if r["kind"] == "model"]
    assert model["metrics"].get("weights_entry", "") == entry  # which part of the checkpoint was measured


def test_the_report_and_select_show_a_checkpoint_like_a_zoo_model(trained, tmp_path, capsys):
    from perfkit.report.rows import load_run, summary_rows
    from perfkit.store import Store

    path = tmp_path / "finetuned.pth"
    _torchvision_train_py(trained, path)
    spec = resolve("resnet18", weights=str(path), num_classes=3, input_size=SIZE)
    run = _cli(capsys, "profile", "resnet18", "--num-classes", 3, "--weights", path, "--input-size", SIZE, "-f", "eager",
               "-b", 1, "--no-memory", "--iterations", 3, "--min-seconds", 0.01, "--warmup", 1, "--warmup-seconds", 0.01)
    with Store() as store:
        _, records = load_run(store, run["run_id"])
    (row,) = summary_rows(records)
    assert row["model"] == spec.name and row["weights"] == spec.weights.identity and not row["random"]
    assert row["ref_top1_pct"] is None and row["batches"][0]["latency_median_ms"] > 0
    chosen = _cli(capsys, "select", "-b", 1)
    assert [c["model"] for c in chosen["selected"]] == [spec.name]
    assert main(["report", run["run_id"], "--html", str(tmp_path / "r.html")]) == 0
    assert spec.name in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_two_checkpoints_of_one_architecture_never_share_a_name(trained, tmp_path):
    _ddp(trained, tmp_path / "a.pth")
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "b.pth")
    a, b = (resolve("resnet18", weights=str(tmp_path / f), num_classes=3) for f in ("a.pth", "b.pth"))
    assert a.name != b.name and a.identity != b.identity and a.name.startswith("resnet18@")
    assert resolve("resnet18", weights=str(tmp_path / "a.pth"), num_classes=3) == a  # content, not the call: stable


def test_zoo_and_random_weights_keep_the_zoo_name_a_new_head_does_not():
    assert resolve("resnet18", weights="random").name == "resnet18"
    assert resolve("resnet18", weights="default").name == "resnet18"
    head = resolve("resnet18", weights="random", num_classes=7)
    assert head.name == f"resnet18@{head.identity[:8]}" and head.label == "resnet18 (random weights, 7 classes)"
    assert head.reference == {} and head.build()(torch.zeros(1, 3, 224, 224)).shape == (1, 7)
    assert resolve("resnet18", weights="random", num_classes=1000).name == "resnet18"  # its own head


def test_a_new_head_with_published_weights_is_refused():
    with pytest.raises(UsageError, match=r"--num-classes 7 gives resnet18 a new head.*--weights FILE .*--weights random"):
        resolve("resnet18", weights="default", num_classes=7)
    with pytest.raises(UsageError, match="--ema picks the EMA weights of a checkpoint file"):
        resolve("resnet18", weights="random", ema=True)


def test_the_issue_head_mismatch_message_for_timm(tmp_path):
    """The issue's example, exactly: a 7-class efficientnet_lite0 checkpoint without --num-classes."""
    import timm

    torch.save(timm.create_model("efficientnet_lite0", num_classes=7).state_dict(), tmp_path / "finetuned.pth")
    finetuned = str(tmp_path / "finetuned.pth")
    with pytest.raises(WeightsError) as err:
        resolve("timm:efficientnet_lite0", weights=finetuned)
    assert str(err.value) == (f"{finetuned}: classifier.weight is 7×1280 but timm:efficientnet_lite0 has 1000×1280 "
                              "— pass --num-classes 7")
    with pytest.raises(WeightsError, match="but timm:efficientnet_lite0 with --num-classes 5 has 5×1280 — pass "
                                           "--num-classes 7"):
        resolve("timm:efficientnet_lite0", weights=finetuned, num_classes=5)
    spec = resolve("timm:efficientnet_lite0", weights=finetuned, num_classes=7)
    assert spec.name == f"timm:efficientnet_lite0@{spec.identity[:8]}" and spec.num_classes == 7


def test_timm_checkpoint_with_ema_and_its_own_transform(tmp_path):
    import timm

    torch.manual_seed(0)
    trained, ema = timm.create_model("test_resnet", num_classes=3), timm.create_model("test_resnet", num_classes=3)
    torch.save({"epoch": 2, "arch": "test_resnet", "state_dict": trained.state_dict(), "state_dict_ema": ema.state_dict(),
                "args": argparse.Namespace(model="test_resnet", model_ema=True)}, tmp_path / "timm.pth.tar")
    x = torch.randn(2, 3, 160, 160)
    for model, use_ema in ((trained, False), (ema, True)):
        spec = resolve("timm:test_resnet", weights=str(tmp_path / "timm.pth.tar"), num_classes=3, ema=use_ema)
        with torch.no_grad():
            assert torch.equal(spec.build()(x), model.eval()(x))
    # the architecture's own preprocessing (timm's config of test_resnet), not overridden
    assert spec.preprocess.crop_size == 160 and spec.preprocess.mean == (0.5, 0.5, 0.5) and not spec.preprocess.overrides


def test_preprocessing_flags_override_and_are_recorded():
    spec = resolve("resnet18", weights="random", mean=(0.5, 0.5, 0.5), interpolation="bicubic", resize=80, crop=72)
    pre = spec.preprocess
    assert (pre.mean, pre.interpolation, pre.resize_size, pre.crop_size) == ((0.5, 0.5, 0.5), "bicubic", 80, 72)
    assert pre.overrides == ("crop_size", "interpolation", "mean", "resize_size") and spec.input_size == (3, 72, 72)
    sized = resolve("resnet18", weights="random", input_size=(3, 112, 112))
    assert (sized.preprocess.resize_size, sized.preprocess.crop_size) == (128, 112)  # 256/224 kept
    with pytest.raises(UsageError, match="--crop 64 and --input-size 3,112,112 disagree"):
        resolve("resnet18", weights="random", input_size=112, crop=64)
    with pytest.raises(UsageError, match="--interpolation must be one of nearest, bilinear, bicubic"):
        resolve("resnet18", weights="random", interpolation="lanczos")
