"""LeNet-5 (``lenet5``): the classic comparison's CIFAR-10 network, random or from a checkpoint."""

from __future__ import annotations

import torch
from torch import nn

from perfkit.errors import UsageError
from perfkit.zoo import sources as S
from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import CIFAR10
from perfkit.zoo.spec import ModelSpec

NAME = "lenet5"
NATIVE_CLASSES = 10
NATIVE_SIZE = (3, 32, 32)


class LeNet5(nn.Module):
    """LeNet-5 as in the classic comparison table: 32×32 input, ReLU, max-pooling."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 32 → 28 → 14
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 14 → 10 → 5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _claims(request: S.Request) -> bool:
    return request.text is not None and request.text.partition(":")[0] == NAME


def _resolve(request: S.Request) -> ModelSpec:
    if request.text != NAME:
        raise UsageError("lenet5 has no named weights: use random or a file path")
    num_classes = request.num_classes or NATIVE_CLASSES
    size = S.input_size(request, NATIVE_SIZE)
    if request.weights_file:
        model = S.model_with_classes(NAME, request, NATIVE_CLASSES)
        ref = S.checkpoint(request, lambda: LeNet5(num_classes, size[0]), model)
    elif request.weights in ("default", "auto", "random"):
        ref = W.RANDOM  # LeNet-5 has no published pretrained weights
    else:
        raise UsageError("lenet5 has no named weights: use random or a file path")
    if request.ema and ref.kind != "file":
        raise UsageError("--ema picks the EMA weights of a checkpoint file: pass --weights FILE")
    spec = ModelSpec(name=NAME, source=SOURCE.name, arch=NAME, weights=ref, input_size=size, num_classes=num_classes,
                     preprocess=S.preprocess(CIFAR10, request, size, NATIVE_SIZE), builder=construct)
    return S.named(spec, NAME, user=ref.kind == "file", native_classes=NATIVE_CLASSES)


def construct(spec: ModelSpec) -> nn.Module:
    model = LeNet5(spec.num_classes, spec.input_size[0])
    if spec.weights.kind == "file":
        S.load_file_weights(model, spec)
    return model


SOURCE = S.Source(name=NAME, hint="lenet5 (LeNet-5, 32×32)", claims=_claims, resolve=_resolve)
