"""Issue 19's first done-when, end to end: `perfkit validate timm:efficientnet_lite0 --num-classes 7 --weights CKPT
--data FOLDER -f eager,onnx,openvino --json` on a 7-class checkpoint gives, in every runtime, the top-1 count of an
independent computation: timm's own model and eval transform (resolve_data_config + create_transform) over
torchvision's ImageFolder, with no perfkit code in the loop."""

from __future__ import annotations

import json

import pytest
import torch

CLASSES = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu"]


def _checkpoint(path):
    """A 7-class efficientnet_lite0 'fine-tuned' the way timm's train.py saves one: random weights, BatchNorm
    statistics taken from a few batches (so its logits depend on the image), in a dict with the training state."""
    import timm

    torch.manual_seed(7)
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=7)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 3, 224, 224) * 4 - 2)
    model.eval()
    torch.save({"epoch": 11, "arch": "efficientnet_lite0", "state_dict": model.state_dict(),
                "optimizer": {"state": {}, "param_groups": []}, "version": 2}, path)
    return model


def _independent_top1(model, folder) -> tuple[int, set]:
    import timm.data
    from torchvision.datasets import ImageFolder

    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    data = ImageFolder(str(folder), transform=transform)
    assert data.classes == CLASSES
    predicted = []
    with torch.no_grad():
        for x, _ in data:
            predicted.append(int(model(x.unsqueeze(0)).argmax(1)))
    return sum(p == y for p, (_, y) in zip(predicted, data.samples)), set(predicted)


@pytest.mark.slow  # exports efficientnet_lite0 to ONNX and OpenVINO (~30 s on 2 cores)
def test_a_7_class_checkpoint_validates_to_the_independent_count_in_every_runtime(tmp_path, capsys):
    from perfkit.cli import main
    from perfkit.data.synthetic import make_class_folders

    ckpt = tmp_path / "finetuned_7_classes.pth"
    model = _checkpoint(ckpt)
    folder = tmp_path / "photos"
    make_class_folders(folder, CLASSES, 3, size=(260, 240))
    expected, predicted = _independent_top1(model, folder)
    assert len(predicted) > 1  # the logits depend on the image: the count is not a constant guess

    code = main(["validate", "timm:efficientnet_lite0", "--num-classes", "7", "--weights", str(ckpt),
                 "--data", str(folder), "-f", "eager,onnx,openvino", "--workers", "0", "--json",
                 "--artifacts", str(tmp_path / "art")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    counts = {r["runtime"]: r["metrics"]["top1_correct"] for r in out["records"] if r["kind"] == "accuracy"}
    assert counts == {"eager": expected, "onnx": expected, "openvino": expected}
    images = {r["metrics"]["images"] for r in out["records"] if r["kind"] == "accuracy"}
    assert images == {21}
