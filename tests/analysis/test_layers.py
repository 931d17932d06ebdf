"""The per-layer table (analysis/layers.py): shapes and params by hand, torchsummary's MB formula, odd modules."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
from torch import nn

from perfkit.analysis import summarize, summarize_module

MB = 2**20


def test_lenet5_rows_shapes_and_params_by_hand(tiny_spec):
    s = summarize(tiny_spec)
    rows = [(r.layer, r.output_shape, r.params) for r in s.layers]
    assert rows == [
        ("Conv2d-1", [-1, 6, 28, 28], 3 * 6 * 5 * 5 + 6),  # 32 → 28
        ("ReLU-2", [-1, 6, 28, 28], 0),
        ("MaxPool2d-3", [-1, 6, 14, 14], 0),  # → 14
        ("Conv2d-4", [-1, 16, 10, 10], 6 * 16 * 5 * 5 + 16),  # → 10
        ("ReLU-5", [-1, 16, 10, 10], 0),
        ("MaxPool2d-6", [-1, 16, 5, 5], 0),  # → 5
        ("Flatten-7", [-1, 400], 0),
        ("Linear-8", [-1, 120], 400 * 120 + 120),
        ("ReLU-9", [-1, 120], 0),
        ("Linear-10", [-1, 84], 120 * 84 + 84),
        ("ReLU-11", [-1, 84], 0),
        ("Linear-12", [-1, 10], 84 * 10 + 10),
    ]
    assert s.layers[0].module == "features.0"
    assert s.total_params == s.trainable_params == 62_006 and s.non_trainable_params == 0
    assert s.params_outside_rows == 0


def test_mb_estimates_follow_torchsummary_formula():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    s = summarize_module(model, (1, 6, 6))
    # outputs per sample: conv 2×4×4 = 32, relu 32, flatten 32, linear 3
    assert [r.output_elements for r in s.layers] == [32, 32, 32, 3]
    params = (1 * 2 * 3 * 3 + 2) + (32 * 3 + 3)
    assert s.total_params == params == 119
    assert s.input_mib == pytest.approx(36 * 4 / MB)
    assert s.forward_backward_mib == pytest.approx(2 * 99 * 4 / MB)
    assert s.params_mib == pytest.approx(119 * 4 / MB)
    assert s.total_mib == pytest.approx((36 + 2 * 99 + 119) * 4 / MB)


def test_module_called_twice_gets_two_rows_and_its_params_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.fc(self.fc(x)))

    s = summarize_module(Twice(), (4,))
    assert [(r.layer, r.module, r.params, r.repeat_of) for r in s.layers] == [
        ("Linear-1", "fc", 20, None), ("Linear-2", "fc", 0, "Linear-1"), ("Linear-3", "out", 10, None),
    ]
    assert s.total_params == 30 and s.params_outside_rows == 0
    assert s.forward_backward_mib == pytest.approx(2 * (4 + 4 + 2) * 4 / MB)


Pair = namedtuple("Pair", "main extra")


class _PairLeaf(nn.Module):
    """A leaf returning a namedtuple with a nested tuple and a None, as attention/RNN layers do."""

    def forward(self, x):
        return Pair(x * 2, (x[:, :1], None))


def test_tuple_and_namedtuple_outputs():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = _PairLeaf()
            self.lstm = nn.LSTM(3, 5, batch_first=True)

        def forward(self, x):
            main, _ = self.pair(x)
            out, (h, c) = self.lstm(main)
            return out

    s = summarize_module(Model(), (7, 3))
    pair, lstm = s.layers
    assert pair.layer == "_PairLeaf-1" and pair.output_shape == [[-1, 7, 3], [[-1, 1, 3]]]
    assert pair.output_elements == 21 + 3
    assert lstm.output_shape == [[-1, 7, 5], [[-1, 1, 5], [-1, 1, 5]]]  # (out, (h, c)); h/c dim 0 is layers
    assert lstm.output_elements == 35 + 5 + 5
    assert lstm.params == sum(p.numel() for p in Model().lstm.parameters())


def test_tied_weights_once_in_totals():
    a, b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    b.weight = a.weight
    s = summarize_module(nn.Sequential(a, b), (4,))
    assert s.total_params == 16
    assert [r.params for r in s.layers] == [16, 16]  # each row shows its layer's own weight
    assert s.params_outside_rows == -16  # ... so the rows over-count the shared one


def test_hooks_removed_and_model_left_in_eval(tiny_spec):
    model = tiny_spec.build()
    summarize(tiny_spec, model)
    assert not any(m._forward_hooks for m in model.modules())
    assert not model.training
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_attention_is_a_row_with_its_projection_params():
    """nn.MultiheadAttention holds in_proj_* itself and uses out_proj's weights functionally (out_proj
    never runs as a module): it is one row carrying both, not params in no row."""
    import torchvision

    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2,
                                               hidden_dim=8, mlp_dim=16, num_classes=10)
    s = summarize_module(vit, (3, 32, 32))
    (attn,) = [r for r in s.layers if r.layer.startswith("MultiheadAttention")]
    assert attn.module == "encoder.layers.encoder_layer_0.self_attention"
    assert attn.params == (8 * 24 + 24) + (8 * 8 + 8)  # in_proj weight/bias + out_proj weight/bias
    assert attn.output_shape == [[-1, 5, 8]]  # (output, None: no attention weights asked for)
    assert not any(r.module.endswith("out_proj") for r in s.layers)
    # what no row holds is named: the class token and position embedding of the non-leaf modules
    assert s.unrowed_params == {"class_token": 8, "encoder.pos_embedding": 5 * 8}
    assert s.params_outside_rows == 48


def test_module_whose_children_never_run_is_one_row():
    class UsesChildWeights(nn.Module):  # like torchvision's Swin attention: qkv/proj used functionally
        def __init__(self):
            super().__init__()
            self.qkv, self.proj = nn.Linear(4, 12), nn.Linear(4, 4)

        def forward(self, x):
            q, k, v = nn.functional.linear(x, self.qkv.weight, self.qkv.bias).chunk(3, -1)
            return nn.functional.linear(q * k * v, self.proj.weight, self.proj.bias)

    s = summarize_module(nn.Sequential(nn.Linear(4, 4), UsesChildWeights()), (4,))
    assert [(r.layer, r.module, r.params) for r in s.layers] == [("Linear-1", "0", 20), ("UsesChildWeights-2", "1", 80)]
    assert s.params_outside_rows == 0 and s.unrowed_params == {}
