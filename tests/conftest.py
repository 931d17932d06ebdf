"""Markers and shared fixtures.

gpu / tensorrt tests skip themselves when the hardware or extra is missing; slow tests run only
with --runslow (CI passes it: the suite still fits its time budget); the model sweeps marked
all_models (every torchvision classifier instead of one per family, about an hour) only with
--runslow --all-models.

Tests never touch the network, with one exception: tests/backends/test_tensorrt_bindings.py (slow)
downloads NVIDIA's TensorRT 10 and 11 Python bindings wheels (1.3 MB each, from PyPI) once into
pytest's cache folder (.pytest_cache/d/trt-bindings) to check perfkit's TensorRT calls against
them; it skips, saying why, where they cannot be downloaded (PERFKIT_TRT_BINDINGS_DIR: a folder
holding them, for offline machines).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")
    parser.addoption("--all-models", action="store_true", default=False,
                     help="with --runslow: every torchvision classifier in the model sweeps, not one per family")


def pytest_collection_modifyitems(config, items):
    skips = {}
    if not config.getoption("--runslow"):
        skips["slow"] = pytest.mark.skip(reason="slow: pass --runslow to run")
    if not config.getoption("--all-models"):
        skips["all_models"] = pytest.mark.skip(reason="one model per family by default: pass --all-models for all")
    if not torch.cuda.is_available():
        skips["gpu"] = pytest.mark.skip(reason="no CUDA GPU")
    if not torch.cuda.is_available() or not any(importlib.util.find_spec(m) for m in ("tensorrt", "tensorrt_bindings")):
        skips["tensorrt"] = pytest.mark.skip(reason="needs TensorRT (the tensorrt-cu12/-cu13 extra) and a GPU")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own store and artifact cache, and never touches the network (but see the
    module docstring for the one test that downloads)."""
    monkeypatch.setenv("PERFKIT_STORE", str(tmp_path / "store.db"))
    monkeypatch.setenv("PERFKIT_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PERFKIT_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture
def live_pid():
    """A process of this host that stays alive while the test runs."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid() -> int:
    """The id of a process that has exited and been reaped (its id may be reused later, not within a test)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def store(tmp_path):
    from perfkit.store import Store

    with Store(tmp_path / "store.db") as s:
        yield s


@pytest.fixture
def corrupt_metrics():
    """``corrupt_metrics(store_path, text, kind=..., runtime=...)``: overwrite the metrics column of the
    current records that match with ``text`` (what a hand edit or a bug leaves); returns their ids."""
    import sqlite3

    def corrupt(path, text: str, **where) -> list[int]:
        sql = " AND ".join(["superseded=0", *(f"{column}=?" for column in where)])
        db = sqlite3.connect(path)
        try:
            with db:
                ids = [row[0] for row in db.execute(f"SELECT id FROM records WHERE {sql}", tuple(where.values()))]
                db.executemany("UPDATE records SET metrics=? WHERE id=?", [(text, i) for i in ids])
        finally:
            db.close()
        assert ids, f"no record matches {where}"
        return ids

    return corrupt


@pytest.fixture(scope="session")
def lenet5_artifacts(tmp_path_factory):
    """One artifact cache shared by the tests that only need LeNet-5's ONNX export (the slow part)."""
    return tmp_path_factory.mktemp("lenet5-artifacts")


@pytest.fixture(scope="session")
def tiny_spec():
    """LeNet-5 with random weights: a real model that builds and runs in milliseconds."""
    from perfkit.zoo.sources import resolve

    return resolve("lenet5", weights="random")


@pytest.fixture(scope="session")
def shared_artifacts(tmp_path_factory):
    """One artifact cache for the whole test session: LeNet-5's ONNX export (seconds on a busy
    2-core machine) is made once and reused by the tests that only read it."""
    return tmp_path_factory.getbasetemp() / "shared-artifacts"


class TinyNet(torch.nn.Module):
    """A seeded three-class classifier: conv, batch norm, ReLU, global pooling, linear."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def tiny_net(seed: int = 0) -> torch.nn.Module:
    """``TinyNet`` with seeded weights and batch-norm statistics unlike its initial ones."""
    torch.manual_seed(seed)
    model = TinyNet()
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return model.eval()


def export_legacy(model, path, batch: int, size: int = 32, **kwargs) -> None:
    """The legacy TorchScript-based exporter with a fixed batch, the input named ``image``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(batch, 3, size, size),), str(path), dynamo=False,
                          input_names=["image"], output_names=["scores"], **kwargs)


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory):
    """Two ONNX files of one seeded ``TinyNet`` (3 classes, 3×32×32), the module itself, and the helpers
    that made them (``tiny_net``, ``export_legacy``) for tests that export their own:

    - ``fixed``: the legacy TorchScript-based exporter, a fixed batch of 2, input ``image``;
    - ``dynamic``: the dynamo exporter, a symbolic batch, input ``pixel_values``, its weights in
      external data beside it (``dynamic.onnx.data``).
    Tests that change a file copy it first."""
    import types

    folder = tmp_path_factory.mktemp("onnx-files")
    model = tiny_net()
    export_legacy(model, folder / "fixed.onnx", batch=2)
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(folder / "dynamic.onnx"), dynamo=True,
                      input_names=["pixel_values"], output_names=["logits"], verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    return types.SimpleNamespace(fixed=folder / "fixed.onnx", dynamic=folder / "dynamic.onnx", model=model,
                                 tiny_net=tiny_net, export_legacy=export_legacy)


@pytest.fixture
def onnx_graph(tmp_path):
    """``onnx_graph(name, inputs, outputs, nodes=(), initializers=())``: a small ONNX file written with
    ``onnx.helper`` (inputs/outputs as ``(name, elem_type, shape)``), unchecked: for the graphs perfkit refuses."""
    import onnx
    from onnx import helper

    def write(name: str, inputs, outputs, nodes=(), initializers=()):
        graph = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info(*i) for i in inputs],
                                  [helper.make_tensor_value_info(*o) for o in outputs], list(initializers))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        path = tmp_path / name
        onnx.save(model, str(path))
        return path

    return write


def _net_source() -> str:
    """``TinyNet`` and ``tiny_net`` as a module of their own, with ``build`` for ``--model-code``."""
    import inspect

    return ("import torch\n\n\n" + inspect.getsource(TinyNet) + "\n\n" + inspect.getsource(tiny_net)
            + "\n\ndef build():\n    return tiny_net(0)\n")


@pytest.fixture
def net_module(tmp_path, monkeypatch):
    """``tiny_nets.py`` (``TinyNet``, seeded ``tiny_net(seed)``, and ``build`` for ``--model-code``) written to
    a folder on ``sys.path`` and imported by name: a module another process can import too. ``.path``: the file."""
    import importlib
    import sys

    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "tiny_nets.py").write_text(_net_source())
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "tiny_nets", raising=False)
    module = importlib.import_module("tiny_nets")
    module.path = folder / "tiny_nets.py"
    yield module
    sys.modules.pop("tiny_nets", None)


# -- a fake TensorRT (tests/backends/fake_tensorrt.py, checked against the real bindings by
# tests/backends/test_tensorrt_bindings.py) that perfkit's TensorRT code imports instead of the real one

FAKE_TENSORRT = Path(__file__).parent / "backends" / "fake_tensorrt.py"


def load_fake_tensorrt():
    """A fresh copy of tests/backends/fake_tensorrt.py (its controls and call log start empty)."""
    spec = importlib.util.spec_from_file_location("perfkit_tests_fake_tensorrt", FAKE_TENSORRT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_trt(monkeypatch):
    """The fake TensorRT module, imported by perfkit's TensorRT backend in place of the real one,
    on a machine where torch has a GPU named "NVIDIA H100 80GB HBM3" (sm 9.0)."""
    from perfkit.backends import tensorrt as T

    trt = load_fake_tensorrt()
    monkeypatch.setattr(T, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(T, "current_gpu", lambda device: {"gpu_name": "NVIDIA H100 80GB HBM3",
                                                            "compute_capability": "9.0"})
    monkeypatch.setattr("perfkit.artifacts.device_identity", lambda device: "cuda-NVIDIA_H100_80GB_HBM3-sm90")
    monkeypatch.setattr("perfkit.artifacts.cache.device_identity", lambda device: "cuda-NVIDIA_H100_80GB_HBM3-sm90")
    return trt
