"""The model-source registry: one declared unit per source, asked in order, duplicates refused; the
spec it yields is picklable and identified by its content."""

from __future__ import annotations

import importlib
import pickle

import pytest

from perfkit.errors import UsageError
from perfkit.zoo import sources as S
from perfkit.zoo.preprocess import EvalTransform
from perfkit.zoo.spec import ModelSpec
from perfkit.zoo.weights import RANDOM


def test_every_listed_module_declares_its_source_once():
    names = [importlib.import_module(m).SOURCE.name for m in S.SOURCE_MODULES]
    assert names == [s.name for s in S.all_sources()] == [
        "module", "code", "timm", "lenet5", "onnx", "openvino-ir", "torchscript", "aoti", "tensorrt", "torchvision"]
    for name in names:
        assert S.get(name).hint
    with pytest.raises(ValueError, match="a model source named 'timm' is already registered"):
        S.register(S.Source("timm", "again", lambda r: False, lambda r: None))


def _toy(spec: ModelSpec):
    import torch

    return torch.nn.Flatten()


def test_a_registered_source_resolves_what_it_claims():
    def resolve_toy(request: S.Request) -> ModelSpec:
        return ModelSpec(name=request.text, source="toy", arch="toy", weights=RANDOM, input_size=(1, 2, 2),
                         num_classes=4, preprocess=EvalTransform(2, 2), builder=_toy)

    S.register(S.Source("toy", "toy:<n>", lambda r: (r.text or "").startswith("toy:"), resolve_toy))
    try:
        spec = S.resolve("toy:a")
        assert spec.source == "toy" and tuple(spec.build()(spec.example_input(3)).shape) == (3, 4)
        with pytest.raises(UsageError, match=r"unknown model 'nope'\. A model is one of: .*timm:<name>.*; toy:<n>$"):
            S.resolve("nope")
    finally:
        S.unregister("toy")


def test_unknown_names_and_missing_models_are_usage_errors():
    with pytest.raises(UsageError) as err:
        S.resolve("resnet19")
    msg = str(err.value)
    assert msg.startswith("unknown model 'resnet19'") and "--model-code FILE.py:CALLABLE" in msg and "lenet5" in msg
    with pytest.raises(UsageError, match="no model given"):
        S.resolve()
    with pytest.raises(UsageError, match="--num-classes must be a positive integer, got 0"):
        S.resolve("resnet18", num_classes=0)
    with pytest.raises(UsageError, match="--input-size must be C,H,W or N"):
        S.resolve("resnet18", input_size=(3, 224))
    with pytest.raises(UsageError, match=r"--std takes three numbers \(R,G,B\), none zero"):
        S.resolve("resnet18", std=(0.2, 0.0, 0.2))


def test_specs_pickle_by_reference_and_identity_follows_content():
    spec = S.resolve("lenet5", weights="random")
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and again.builder is spec.builder and again.identity == spec.identity
    assert len(spec.identity) == 16 and int(spec.identity, 16) >= 0
    changed = {S.resolve("lenet5", weights="random", num_classes=3).identity,
               S.resolve("lenet5", weights="random", input_size=(1, 32, 32)).identity, spec.identity}
    assert len(changed) == 3
    # the preprocessing is not part of what the model is (it is recorded beside it)
    assert S.resolve("lenet5", weights="random", mean=(0.5, 0.5, 0.5)).identity == spec.identity
