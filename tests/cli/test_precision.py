"""Precision on the command line: int8 export, check and profile of LeNet-5 through ONNX Runtime, what every
table says about calibration, and the synthetic fallback announced, never silent."""

from __future__ import annotations

import json

import pytest

from perfkit.cli import main
from perfkit.data.synthetic import make_image

FAST = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """One artifact cache for the module: LeNet-5's fp32 ONNX export is shared by every test."""
    return str(tmp_path_factory.mktemp("precision-artifacts"))


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib-images")
    for i in range(10):
        make_image(500 + i, (44, 36)).save(root / f"{i}.jpg", quality=92)
    return root


def _json(capsys, argv, code=0):
    assert main([*argv, "--json"]) == code
    captured = capsys.readouterr()
    return json.loads(captured.out)["records"], captured.err


def test_export_int8_without_calib_is_synthetic_and_says_so(capsys, artifacts):
    records, err = _json(capsys, ["export", "lenet5", "-f", "onnx", "--precision", "fp32,int8", "--weights", "random",
                                  "--artifacts", artifacts])
    exports = {r["precision"]: r for r in records if r["kind"] == "export"}
    assert set(exports) == {"fp32", "int8"} and all(r["status"] == "ok" for r in exports.values())
    int8 = exports["int8"]["metrics"]
    assert int8["calibration"] == "calibrated on 32 synthetic images (minmax) — accuracy not meaningful"
    assert int8["calibration_set"]["source"] == "synthetic" and int8["quantization"]["qdq_style"] == "x86"
    assert "calibration" not in exports["fp32"]["metrics"]
    # --json keeps stdout machine-readable; without it the command announces the fallback
    assert main(["export", "lenet5", "-f", "onnx", "--precision", "int8", "--weights", "random",
                 "--artifacts", artifacts]) == 0
    out = capsys.readouterr()
    assert "int8: calibrated on 32 synthetic images (minmax) — accuracy not meaningful (no --calib and no --data)" in \
        " ".join(out.err.split())
    assert "accuracy not meaningful" in " ".join(out.out.split())  # the table says it too


def test_check_int8_reports_agreement_and_error_and_passes_its_own_criteria(capsys, artifacts, calib):
    argv = ["check", "lenet5", "-f", "onnx", "--precision", "fp32,int8", "--weights", "random", "-b", "1,4",
            "--samples", "8", "--calib", str(calib), "--calib-samples", "8", "--artifacts", artifacts]
    records, _ = _json(capsys, argv)
    parity = {(r["precision"], r["batch"]): r["metrics"] for r in records if r["kind"] == "parity"}
    assert set(parity) == {("fp32", 1), ("fp32", 4), ("int8", 1), ("int8", 4)}
    int8 = parity["int8", 4]
    assert int8["passed"] and int8["min_cosine"] == 0.85 and int8["max_rel"] == 0.6 and int8["atol"] is None
    assert 0 < int8["max_abs_diff"] and 0 <= int8["top1_agreement"] <= 1 and int8["cosine_min"] >= 0.85
    assert int8["calibration"] == f"calibrated on 8 images from {calib.resolve()} (minmax)"
    assert parity["fp32", 4]["atol"] == 1e-3 and "calibration" not in parity["fp32", 4]
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "int8: each sample's logits keep cosine ≥ 0.85" in out and f"int8 (onnx): calibrated on 8 images" in out


def test_profile_shows_the_int8_speedup_and_leaves_eager_at_fp32(capsys, artifacts):
    argv = ["profile", "lenet5", "-f", "eager,onnx", "--precision", "fp32,int8", "-b", "1", "--no-memory",
            "--weights", "random", "--artifacts", artifacts, *FAST]
    records, err = _json(capsys, argv)
    latency = [(r["runtime"], r["precision"]) for r in records if r["kind"] == "latency"]
    assert latency == [("eager", "fp32"), ("onnx", "fp32"), ("onnx", "int8")]  # eager is int8's reference
    [int8] = [r for r in records if r["kind"] == "latency" and r["precision"] == "int8"]
    assert "synthetic" in int8["metrics"]["calibration"]
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "× fp32" in out and "int8 on this CPU" in out and "int8 (onnx): calibrated on 32 synthetic" in out


def test_a_calibration_folder_without_images_is_refused_before_anything_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["profile", "lenet5", "-f", "onnx", "--precision", "int8", "--calib", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: no images (")
    assert main(["export", "lenet5", "-f", "onnx", "--precision", "int8", "--calib", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --calib ") and err.endswith("is not a folder") 
