"""An ``nn.Module`` instance as a model (the Python API's): identity from the class, the state dict and the
input size; the caller's module never changed; the spec crosses processes, and a class another process
cannot import is one line when that process builds it."""

from __future__ import annotations

import pickle

import pytest
import torch

from perfkit.errors import UsageError
from perfkit.zoo.sources import resolve


def test_a_module_resolves_to_a_named_spec_of_its_own_outputs(net_module):
    TinyNet, tiny_net = net_module.TinyNet, net_module.tiny_net
    net = tiny_net()
    spec = resolve(net, input_size=(3, 32, 32))
    assert spec.source == "module" and spec.num_classes == 3 and spec.input_size == (3, 32, 32)
    assert spec.name == f"TinyNet@{spec.identity[:8]}" and spec.arch == "tiny_nets.TinyNet"
    assert spec.preprocess.crop_size == 32 and spec.preprocess.resize_size == 36  # the own-model default
    assert not spec.random_weights and spec.weights.kind == "module"
    x = spec.example_input(2)
    with torch.no_grad():
        assert torch.equal(spec.build()(x), net(x))
    # the same numbers are the same model; other numbers, another size or another class are not
    assert resolve(tiny_net(), input_size=(3, 32, 32)).name == spec.name
    assert resolve(tiny_net(seed=1), input_size=(3, 32, 32)).name != spec.name
    assert resolve(net, input_size=(3, 48, 48)).name != spec.name
    other = TinyNet()
    other.load_state_dict(net.state_dict())
    assert resolve(other, input_size=(3, 32, 32)).name == spec.name

    class Renamed(TinyNet):
        pass

    renamed = Renamed()
    renamed.load_state_dict(net.state_dict())
    assert resolve(renamed, input_size=(3, 32, 32)).name.startswith("Renamed@")


def test_the_callers_module_is_left_as_it_was_and_each_build_is_a_copy(net_module):
    net = net_module.tiny_net().train()
    weight = net.conv.weight
    spec = resolve(net, input_size=32)
    assert net.training and net.conv.weight is weight  # not put in eval mode, not replaced
    first, second = spec.build(), spec.build()
    assert not first.training and first is not second and first.conv.weight is not weight
    with torch.no_grad():
        net.conv.weight.add_(1.0)  # a later change to the caller's module changes nothing measured
    x = spec.example_input(1)
    with torch.no_grad():
        assert torch.equal(spec.build()(x), first(x))


def test_a_checkpoint_file_is_loaded_into_the_copy(tmp_path, net_module):
    tiny_net = net_module.tiny_net
    trained = tiny_net(seed=3)
    path = tmp_path / "best.pth"
    torch.save({"model": trained.state_dict(), "epoch": 3}, path)
    spec = resolve(tiny_net(), input_size=(3, 32, 32), weights=str(path))
    assert spec.weights.kind == "file" and spec.label.startswith("TinyNet (best.pth")
    assert spec.name != resolve(tiny_net(), input_size=(3, 32, 32)).name
    x = spec.example_input(2)
    with torch.no_grad():
        assert torch.equal(spec.build()(x), trained(x))


@pytest.mark.parametrize("keywords, message", [
    ({}, "the nn.Module TinyNet needs input_size=(C, H, W)"),
    ({"input_size": (3, 32, 32), "num_classes": 5},
     "the nn.Module TinyNet: the module has 3 outputs, not --num-classes 5"),
    ({"input_size": (1, 32, 32)}, "the nn.Module TinyNet: the module fails on a 1×1×32×32 input"),
    ({"input_size": (3, 32, 32), "weights": "random"}, "the nn.Module TinyNet runs with its own weights"),
    ({"input_size": (3, 32, 32), "ema": True}, "--ema picks the EMA weights of a checkpoint file"),
])
def test_bad_input_is_one_line(keywords, message, net_module):
    with pytest.raises(UsageError) as err:
        resolve(net_module.tiny_net(), **keywords)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_spec_pickles_and_builds_where_the_class_can_be_imported(net_module):
    spec = resolve(net_module.tiny_net(), input_size=(3, 32, 32))
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and again.name == spec.name
    x = spec.example_input(1)
    with torch.no_grad():
        assert torch.equal(again.build()(x), spec.build()(x))


def test_a_class_defined_in_a_function_fails_only_when_another_process_builds_it():
    class Local(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.head(x.mean((2, 3)))

    spec = resolve(Local(), input_size=(3, 8, 8))
    spec.build()  # in this process: the module itself
    elsewhere = pickle.loads(pickle.dumps(spec))  # what a child process receives: pickling does not fail
    with pytest.raises(UsageError) as err:
        elsewhere.build()
    text = str(err.value)
    assert text.startswith(f"{spec.name}: the nn.Module cannot be rebuilt in another process")
    assert "Local" in text and "importable .py file" in text and "memory=False" in text and "\n" not in text
