"""Params, MACs and layer rows of an engine someone built, counted where its format allows: an OpenVINO
IR from its graph, a TorchScript module through the dispatcher; compiled code is not counted."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from perfkit.analysis import analyze, count_macs, count_params, measure_complexity, uncountable
from perfkit.zoo.sources import resolve


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """LeNet-5 (no batch norm: every parameter survives the ONNX and OpenVINO conversions as it is), its
    module, its traced TorchScript file and its OpenVINO IR exported by perfkit."""
    from perfkit.artifacts import ensure_artifact
    from perfkit.backends import get
    from perfkit.context import Context

    spec = resolve("lenet5", weights="random")
    root, folder = tmp_path_factory.mktemp("artifacts"), tmp_path_factory.mktemp("lenet")
    xml = ensure_artifact(spec, get("openvino"), Context(artifacts=root)).path
    shutil.copy(xml, folder / "lenet.xml")
    shutil.copy(xml.with_suffix(".bin"), folder / "lenet.bin")
    shutil.copy(ensure_artifact(spec, get("torchscript"), Context(artifacts=root)).path, folder / "lenet.pt")
    return spec, spec.build(), folder


@pytest.mark.parametrize("file", ["lenet.xml", "lenet.pt"])
def test_an_ir_and_a_torchscript_file_count_as_the_module_does(lenet, file):
    spec, module, folder = lenet
    engine = resolve(str(folder / file))
    counted = measure_complexity(engine)
    assert counted.macs == count_macs(module, torch.zeros(1, *spec.input_size))[0] and counted.flops == 2 * counted.macs
    assert counted.params == count_params(module)[0]
    report = analyze(engine)
    assert report.where.runtime == {"lenet.xml": "openvino", "lenet.pt": "torchscript"}[file]
    rows = report.summary.layers
    # every weight is read by one row; the rows end with the logits
    assert sum(r.params for r in rows) == counted.params and not report.summary.unrowed_params
    assert rows[-1].output_shape == [-1, 10] and rows[0].output_shape == [-1, 6, 28, 28]


def test_compiled_code_has_nothing_to_count(lenet):
    spec = replace(lenet[0], form="aoti", source="aoti", name="lenet.pt2@0")
    assert "an AOTInductor package, compiled code: there is no graph or module to count" in uncountable(spec)
    assert measure_complexity(spec) is None and uncountable(lenet[0]) is None
