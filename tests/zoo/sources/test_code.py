"""The user's own nn.Module (``--model-code FILE.py:CALLABLE`` / ``package.module:CALLABLE``): it resolves,
builds (in another process too), loads a checkpoint, goes through ``check`` and ``profile``, and every
way it can be wrong is one line naming the file and the problem, exit 2, nothing stored."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import textwrap

import pytest
import torch

from perfkit.cli import main
from perfkit.errors import UsageError, WeightsError
from perfkit.store import Store
from perfkit.zoo.sources import resolve

NET = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, num_classes=4):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.head = nn.Linear(8, num_classes)

        def forward(self, x):
            return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


    def build(num_classes: int = 4):
        return Net(num_classes)


    def fixed():
        return Net(5)


    def not_a_module():
        return 42


    def two_outputs():
        class Two(nn.Module):
            def forward(self, x):
                return x.mean((2, 3)), x.amax((2, 3))
        return Two()


    def boom():
        raise RuntimeError("no GPU here")
''')


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(NET)
    return path


def _trained(net, num_classes: int = 4):
    """The file's Net with weights and statistics unlike its seeded init, and its state dict saved beside it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("trained_net", net)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(7)
    model = module.build(num_classes)
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 32, 32))
    model.eval()
    path = net.with_name(f"net-{num_classes}.pth")
    torch.save({"state_dict": model.state_dict(), "epoch": 10}, path)
    return model, path


def test_resolves_with_its_own_name_label_and_default_preprocessing(net, tmp_path):
    spec = resolve(model_code=f"{net}:build", input_size=(3, 32, 32))
    assert (spec.source, spec.num_classes, spec.input_size, spec.weights.kind) == ("code", 4, (3, 32, 32), "built")
    assert spec.name == f"net.py:build@{spec.identity[:8]}" and spec.label == "net.py:build (4 classes)"
    pre = spec.preprocess
    assert (pre.crop_size, pre.resize_size, pre.mean, pre.interpolation) == (32, 36, (0.485, 0.456, 0.406), "bilinear")
    assert "resize = crop / 0.875" in pre.source and not pre.overrides
    # identity: the file's content and the callable, wherever the file lies
    moved = tmp_path / "elsewhere" / "net.py"
    moved.parent.mkdir()
    shutil.copy(net, moved)
    assert resolve(model_code=f"{moved}:build", input_size=(3, 32, 32)).identity == spec.identity
    assert resolve(model_code=f"{net}:fixed", input_size=(3, 32, 32)).identity != spec.identity
    moved.write_text(NET + "\n# edited\n")
    assert resolve(model_code=f"{moved}:build", input_size=(3, 32, 32)).identity != spec.identity
    a, b = spec.build(), spec.build()  # seeded: the same weights in every build (and every process)
    x = spec.example_input(2)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_checkpoint_and_num_classes_give_the_saved_models_logits(net):
    model, path = _trained(net, 3)
    spec = resolve(model_code=f"{net}:build", input_size=32, num_classes=3, weights=str(path))
    assert spec.options == (("num_classes", 3),) and spec.weights.entry == "state_dict"
    assert spec.label == "net.py:build (net-3.pth, 3 classes)"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(spec.build()(x), model(x))
    with pytest.raises(WeightsError, match=r"net-3.pth: head.weight is 3×8 but build\(\)'s module has 4×8 — pass "
                                           r"--num-classes 3"):
        resolve(model_code=f"{net}:build", input_size=32, weights=str(path))
    with pytest.raises(UsageError, match=r"has 5 outputs, not --num-classes 3, and its callable takes no num_classes"):
        resolve(model_code=f"{net}:fixed", input_size=32, num_classes=3)


def _build_logits(spec):
    with torch.no_grad():
        return spec.build()(spec.example_input(2))


def test_the_spec_builds_in_a_fresh_process(net):
    """Specs cross processes (memory children, torchrun): the builder pickles by reference and the
    child imports the user's file itself."""
    model, path = _trained(net)
    spec = resolve(model_code=f"{net}:build", input_size=(3, 32, 32), weights=str(path))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        child = pool.apply(_build_logits, (spec,))
    with torch.no_grad():
        assert torch.equal(child, model(spec.example_input(2)))


def test_package_module_and_sibling_imports(tmp_path, monkeypatch):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = resolve(model_code="mypkg.models:build", input_size=(3, 16, 16))
    assert spec.name.startswith("mypkg.models:build@") and spec.arch == "mypkg.models:build"
    project = tmp_path / "project"
    project.mkdir()
    (project / "layers.py").write_text(NET)
    (project / "model.py").write_text("from layers import Net\n\ndef make():\n    return Net(6)\n")
    assert resolve(model_code=f"{project / 'model.py'}:make", input_size=(3, 16, 16)).num_classes == 6


def test_through_check_and_profile(net, capsys):
    _, path = _trained(net)
    model = ["--model-code", f"{net}:build", "--input-size", "3,32,32", "--weights", str(path)]
    assert main(["check", *model, "-f", "onnx", "-b", "1", "--samples", "4", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)
    spec = resolve(model_code=f"{net}:build", input_size=(3, 32, 32), weights=str(path))
    (parity,) = [r for r in check["records"] if r["kind"] == "parity"]
    assert parity["model"] == spec.name and parity["metrics"]["passed"]
    (record,) = [r for r in check["records"] if r["kind"] == "model"]
    assert (record["metrics"]["source"], record["metrics"]["identity"]) == ("code", spec.identity)
    assert main(["profile", *model, "-f", "eager,onnx", "-b", "1", "--no-memory", "--iterations", "3",
                 "--min-seconds", "0.01", "--warmup", "1", "--warmup-seconds", "0.01", "--json"]) == 0
    profile = json.loads(capsys.readouterr().out)
    latency = [r for r in profile["records"] if r["kind"] == "latency"]
    assert {r["runtime"] for r in latency} == {"eager", "onnx"} and all(r["model"] == spec.name for r in latency)


SIZE = ["--input-size", "3,32,32"]
BAD = [
    (["--model-code", "missing.py:build", *SIZE], r"--model-code missing.py:build: \S*missing.py does not exist"),
    (["--model-code", "broken.py:build", *SIZE], r"--model-code broken.py:build: importing \S*broken.py raised "
                                                 r"ValueError: bad config$"),
    (["--model-code", "net.py:biuld", *SIZE], r"net.py has no 'biuld' \(it defines: Net, build, fixed, not_a_module, "
                                              r"two_outputs, boom\)"),
    (["--model-code", "net.py:not_a_module", *SIZE], r"not_a_module\(\) returned a int, not a torch.nn.Module"),
    (["--model-code", "net.py:boom", *SIZE], r"boom\(\) raised RuntimeError: no GPU here"),
    (["--model-code", "net.py:build", "--input-size", "1,32,32"],
     r"net.py:build: the module fails on a 1×1×32×32 input \(--input-size 1,32,32\): RuntimeError: "),
    (["--model-code", "net.py:two_outputs", *SIZE], r"the module returns a tuple for a 1×3×32×32 input; perfkit needs "
                                                    r"one logits tensor"),
    (["--model-code", "net.py", *SIZE], r"--model-code net.py: name the callable that returns the module too"),
    (["--model-code", "net.py:build"], r"--model-code net.py:build needs --input-size C,H,W"),
    (["resnet18", "--model-code", "net.py:build", *SIZE], r"both a MODEL \('resnet18'\) and --model-code"),
    (["--model-code", "nosuchpkg.models:build", *SIZE], r"nosuchpkg.models:build: there is no module 'nosuchpkg' on "
                                                        r"sys.path"),
]


@pytest.mark.parametrize("argv, expected", BAD)
@pytest.mark.parametrize("command", ["profile", "check", "export", "summary"])
def test_bad_code_is_one_line_exit_2_and_nothing_stored(net, monkeypatch, capsys, command, argv, expected):
    import re

    (net.parent / "broken.py").write_text("raise ValueError('bad config\\nsecond line')\n")
    monkeypatch.chdir(net.parent)
    assert main([command, *argv]) == 2
    err = capsys.readouterr().err
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and re.search(expected, line), line
    with Store() as store:
        assert store.runs() == []
