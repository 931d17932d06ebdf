"""Checkpoints as training scripts write them: entries, wrapper prefixes, EMA, pickled code, and
state dicts that do not fit (each refused in one line naming the file and the tensors)."""

from __future__ import annotations

import argparse
import collections

import pytest
import torch
from torch import nn

from perfkit.errors import WeightsError
from perfkit.zoo.weights import apply_state, checkpoint_ref, fit_state, read_checkpoint


class Tiny(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, classes)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def _state(seed: int = 0, classes: int = 4) -> dict:
    torch.manual_seed(seed)
    return Tiny(classes).state_dict()


def _prefixed(state: dict, prefix: str) -> dict:
    return collections.OrderedDict((prefix + k, v) for k, v in state.items())


def _shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("wrap, entry", [
    (lambda s: s, ""),
    # torchvision's references/classification/train.py: args is an argparse.Namespace
    (lambda s: {"model": s, "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {"last_epoch": 3},
                "epoch": 3, "args": argparse.Namespace(lr=0.5, model="tiny", data_path="/data", amp=False)}, "model"),
    (lambda s: {"state_dict": s, "epoch": 9, "global_step": 90}, "state_dict"),
    (lambda s: {"model_state_dict": s, "optimizer_state_dict": {}}, "model_state_dict"),
    (lambda s: {"state_dict_ema": s, "epoch": 1}, "state_dict_ema"),  # only the EMA: used, and recorded as such
])
def test_checkpoint_entries(tmp_path, wrap, entry):
    state = _state()
    torch.save(wrap(state), tmp_path / "c.pth")
    ckpt = read_checkpoint(tmp_path / "c.pth")
    assert ckpt.entry == entry and ckpt.state.keys() == state.keys()
    assert all(torch.equal(ckpt.state[k], v) for k, v in state.items())


def test_trained_weights_by_default_ema_on_request(tmp_path):
    trained, ema = _state(0), _state(1)
    torch.save({"state_dict": trained, "state_dict_ema": ema, "args": argparse.Namespace(model_ema=True)},
               tmp_path / "timm.pth")
    assert torch.equal(read_checkpoint(tmp_path / "timm.pth").state["fc.weight"], trained["fc.weight"])
    ref, ckpt = checkpoint_ref(tmp_path / "timm.pth", ema=True)
    assert ckpt.entry == "state_dict_ema" and torch.equal(ckpt.state["fc.weight"], ema["fc.weight"])
    plain, _ = checkpoint_ref(tmp_path / "timm.pth")
    assert ref.identity == plain.identity + "+ema" and ref.ema and not plain.ema  # not one artifact for both
    torch.save({"model": trained}, tmp_path / "no-ema.pth")
    with pytest.raises(WeightsError, match=r"no-ema.pth has no EMA weights .*drop --ema"):
        read_checkpoint(tmp_path / "no-ema.pth", ema=True)


def test_torchvision_ema_averaged_model_is_unwrapped(tmp_path):
    """torchvision's train.py saves model_ema, an AveragedModel: keys under module. plus n_averaged."""
    model = Tiny()
    averaged = torch.optim.swa_utils.AveragedModel(model)
    torch.save({"model": model.state_dict(), "model_ema": averaged.state_dict()}, tmp_path / "tv.pth")
    ckpt = read_checkpoint(tmp_path / "tv.pth", ema=True)
    assert "n_averaged" in ckpt.state and ckpt.entry == "model_ema"
    fresh = Tiny()
    assert apply_state(fresh, ckpt.state, "tv.pth") == "module."
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "model.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped_when_every_key_has_them_and_they_fit(prefix):
    state = _state()
    fit = fit_state(_prefixed(state, prefix), _shapes(Tiny()), source="w.pth", model="tiny")
    assert fit.prefix == prefix and list(fit.state) == list(state)


def test_a_prefix_the_model_itself_has_is_kept():
    """A model whose only child is called `model`: its keys start with model. and must stay."""
    wrapper = nn.Sequential()
    wrapper.add_module("model", Tiny())
    fit = fit_state(wrapper.state_dict(), _shapes(wrapper), source="w.pth", model="wrapper")
    assert fit.prefix == "" and list(fit.state) == list(wrapper.state_dict())


def test_real_compiled_and_ddp_style_state_dicts_load(tmp_path):
    model = Tiny()
    compiled = torch.compile(model)  # compiling is lazy: its state dict has _orig_mod. keys at once
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    fresh = Tiny(4)
    assert apply_state(fresh, compiled.state_dict(), "c.pth") == "_orig_mod."
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_a_head_that_does_not_fit_names_the_tensor_both_shapes_and_the_flag():
    with pytest.raises(WeightsError) as err:
        fit_state(_state(classes=7), _shapes(Tiny(4)), source="finetuned.pth", model="tiny")
    assert str(err.value) == "finetuned.pth: fc.weight is 7×2 but tiny has 4×2 — pass --num-classes 7"
    with pytest.raises(WeightsError, match="fc.weight is 7×2 but tiny has 4×2 — the checkpoint has 7 classes$"):
        fit_state(_state(classes=7), _shapes(Tiny(4)), source="f.pth", model="tiny", classes_flag=None)


def test_another_architecture_lists_the_first_mismatched_keys():
    other = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 4)).state_dict()
    with pytest.raises(WeightsError) as err:
        fit_state(other, _shapes(Tiny()), source="other.pth", model="tiny")
    msg = str(err.value)
    assert msg.startswith("other.pth does not fit tiny") and "\n" not in msg
    assert "missing keys conv.weight, conv.bias, bn.weight, bn.bias … (9 in all)" in msg
    assert "unexpected keys 0.weight, 0.bias, 2.weight, 2.bias" in msg
    wrong = _state()
    wrong["conv.weight"] = torch.zeros(2, 3, 5, 5)
    with pytest.raises(WeightsError, match=r"^w.pth does not fit tiny: conv.weight is 2×3×5×5 but tiny has 2×3×3×3$"):
        fit_state(wrong, _shapes(Tiny()), source="w.pth", model="tiny")


def test_pickled_code_is_refused_with_how_to_save_a_state_dict(tmp_path):
    torch.save(Tiny(), tmp_path / "whole-model.pth")  # torch.save(model): needs the class to load
    with pytest.raises(WeightsError) as err:
        read_checkpoint(tmp_path / "whole-model.pth")
    msg = str(err.value)
    assert "whole-model.pth needs arbitrary pickled code to load" in msg and "Tiny" in msg
    assert "torch.save(model.state_dict(), PATH)" in msg and "weights_only=False" not in msg and "\n" not in msg


def test_a_checkpoint_without_a_state_dict_lists_its_entries(tmp_path):
    torch.save({"epoch": 3, "optimizer": {"state": {}}}, tmp_path / "opt.pth")
    with pytest.raises(WeightsError, match=r"opt.pth holds no state dict: its entries are epoch, optimizer"):
        read_checkpoint(tmp_path / "opt.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match=r"list.pth holds a list, not a state dict"):
        read_checkpoint(tmp_path / "list.pth")
