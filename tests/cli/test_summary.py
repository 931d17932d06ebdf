"""`perfkit summary`: JSON numbers, the Rich table, and the complexity record in the store."""

from __future__ import annotations

import json

import pytest

from perfkit.cli import main
from perfkit.store import Kind, Store


def _records(out: str) -> dict:
    """``perfkit summary --json`` → kind → its one record."""
    data = json.loads(out)
    by_kind = {}
    for r in data["records"]:
        assert r["kind"] not in by_kind and r["run_id"] == data["run_id"]
        by_kind[r["kind"]] = r
    return by_kind


def test_json_resnet18_matches_torchvision_and_lands_in_store(capsys):
    assert main(["summary", "resnet18", "--weights", "random", "--json"]) == 0
    out, err = capsys.readouterr()
    records = _records(out)  # stdout is plain JSON: the random-weights banner went to stderr
    assert "RANDOM WEIGHTS" in err
    assert set(records) == {"model", "complexity"}
    model, complexity = records["model"]["metrics"], records["complexity"]
    data = complexity["metrics"]
    # Measured beside the published numbers recorded with the run (kind model).
    assert data["params"] == 11_689_512 == model["ref_params"]
    assert data["macs"] == pytest.approx(1.814e9, rel=0.005)
    assert abs(100 * (data["macs"] / (model["ref_gmacs"] * 1e9) - 1)) < 0.5
    assert data["flops"] == 2 * data["macs"]
    assert model["random_weights"] is True and complexity["weights"] == records["model"]["weights"] == "random:seed0"
    assert data["layers"][0] == {"layer": "Conv2d-1", "module": "conv1", "output_shape": [-1, 64, 112, 112],
                                 "params": 3 * 64 * 7 * 7, "repeat_of": None, "macs": 64 * 112 * 112 * 3 * 7 * 7}
    assert data["layers"][-1]["output_shape"] == [-1, 1000]
    assert data["macs_by_module"]["layer1.0.conv1"] == 64 * 56 * 56 * 64 * 9  # per module path, in the record
    assert data["macs_by_module"]["layer1"] == sum(v for k, v in data["macs_by_module"].items()
                                                   if k.startswith("layer1.") and k.count(".") == 1)

    with Store() as store:  # PERFKIT_STORE from the autouse fixture
        (record,) = store.records(kind=Kind.COMPLEXITY)
        (run,) = store.runs()
    assert record.run_id == complexity["run_id"] == run["id"] and run["status"] == "ok"
    assert record.status == "ok" and record.model == "resnet18" and record.weights == "random:seed0"
    assert (record.runtime, record.precision, record.batch, record.device) == ("eager", "fp32", 1, "cpu")
    assert (complexity["runtime"], complexity["precision"], complexity["batch"], complexity["device"]) == (
        "eager", "fp32", 1, "cpu")
    stored = record.metrics
    assert stored["macs"] == data["macs"] and stored["layers"] == data["layers"]
    assert stored["input_size"] == [3, 224, 224] and "GFLOPS" in stored["macs_convention"]
    assert stored["total_mib"] == pytest.approx(stored["input_mib"] + stored["forward_backward_mib"] + stored["params_mib"])


def test_table_shows_the_published_numbers_beside_the_measured_ones(capsys):
    assert main(["summary", "resnet18", "--weights", "random"]) == 0
    out = capsys.readouterr().out
    (params_row,) = [line for line in out.splitlines() if "total params" in line]
    assert params_row.count("11,689,512") == 2 and "+0" in params_row  # measured, published, difference
    (macs_row,) = [line for line in out.splitlines() if line.strip("│ ").split("│")[0].strip() == "MACs"]
    assert macs_row.count("1.814 G") == 2 and "%" in macs_row


def test_table_lenet5(capsys):
    assert main(["summary", "lenet5"]) == 0
    out, err = capsys.readouterr()
    for text in ("Conv2d-1", "[-1, 6, 28, 28]", "[-1, 16, 5, 5]", "Linear-12", "62,006", "651.72 k",
                 "forward/backward pass size (MiB)", "FlopCounterMode"):
        assert text in out
    assert "lenet5 (random weights)" in out and "RANDOM WEIGHTS" in err


def test_memory_estimates_name_their_convention_in_mib(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("estimated total size (MiB)", "MiB = 2**20 bytes", "torchsummary", "container blocks"):
        assert text in out
    assert "(MB)" not in out


def test_missing_pretrained_weights_fail_cleanly_and_are_recorded(capsys):
    # Offline with an empty TORCH_HOME (autouse fixture): the pretrained file cannot be found.
    assert main(["summary", "resnet18", "--weights", "default"]) == 2
    assert "--weights random" in capsys.readouterr().err
    with Store() as store:
        (record,) = store.records(kind=Kind.COMPLEXITY)
        (run,) = store.runs()
    assert record.status == "error" and "WeightsError" in record.error
    assert run["status"] == "failed"


def test_unknown_model_is_a_usage_error(capsys):
    assert main(["summary", "no_such_net"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_check_onnx_agrees_on_lenet5(capsys, lenet5_artifacts):
    assert main(["summary", "lenet5", "--check-onnx", "--json", "--artifacts", str(lenet5_artifacts)]) == 0
    metrics = _records(capsys.readouterr().out)["complexity"]["metrics"]
    assert metrics["onnx_macs"] == metrics["macs"] == 651_720 and metrics["onnx_agrees"] is True
    assert metrics["onnx_macs_by_op"] == {"Conv": 6 * 28 * 28 * 75 + 16 * 10 * 10 * 150,
                                          "Gemm": 400 * 120 + 120 * 84 + 84 * 10}
    assert main(["summary", "lenet5", "--check-onnx", "--artifacts", str(lenet5_artifacts)]) == 0  # cached now
    out = " ".join(capsys.readouterr().out.split())
    assert "ONNX cross-check: 0.0007 GMACs" in out and "+0.000% — agree" in out


def test_check_onnx_disagreement_exits_1_and_fails_the_run(capsys, monkeypatch, lenet5_artifacts):
    """A wrong PyTorch count (as the ViT one was) is reported, not printed as a silent number."""
    import dataclasses

    import perfkit.analysis as analysis

    real = analysis.measure_complexity

    def undercount(spec, model=None):  # e.g. an attention block counted as zero
        cx = real(spec, model)
        return dataclasses.replace(cx, macs=cx.macs * 2 // 3, flops=cx.flops * 2 // 3)

    monkeypatch.setattr(analysis, "measure_complexity", undercount)
    assert main(["summary", "lenet5", "--check-onnx", "--artifacts", str(lenet5_artifacts)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "DISAGREE beyond 0.1%" in out and "+50.000%" in out
    with Store() as store:
        (record,) = store.records(kind=Kind.COMPLEXITY)
        (run,) = store.runs()
    assert record.status == "ok" and record.metrics["onnx_agrees"] is False
    assert run["status"] == "failed"


def test_input_size_counts_at_another_resolution(capsys):
    assert main(["summary", "resnet18", "--weights", "random", "--input-size", "160", "--json"]) == 0
    metrics = _records(capsys.readouterr().out)["complexity"]["metrics"]
    assert metrics["input_size"] == [3, 160, 160]
    assert metrics["macs"] == pytest.approx(1.814e9 * (160 / 224) ** 2, rel=0.01)


def test_input_size_table_does_not_compare_published_macs_at_another_size(capsys):
    assert main(["summary", "resnet18", "--weights", "random", "--input-size", "3,160,160"]) == 0
    out = capsys.readouterr().out
    (macs_row,) = [line for line in out.splitlines() if line.strip("│ ").split("│")[0].strip() == "MACs"]
    assert "1.814 G" not in macs_row and "%" not in macs_row  # the published 1.814 G is at 224
    assert "not the native 3×224×224" in " ".join(out.split())


def test_vit_is_built_for_its_input_size(capsys):
    """torchvision's ViT builder sizes the position embedding from the weights; perfkit passes the
    spec's size itself (vit_h_14's default weights are at 518), and --input-size rebuilds it."""
    from perfkit.zoo.sources import resolve

    spec = resolve("vit_b_16:IMAGENET1K_SWAG_E2E_V1", weights="auto")
    assert spec.input_size == (3, 384, 384)
    assert main(["summary", "vit_b_32", "--weights", "random", "--input-size", "64", "--json"]) == 0
    metrics = _records(capsys.readouterr().out)["complexity"]["metrics"]
    assert metrics["unrowed_params"]["encoder.pos_embedding"] == (2 * 2 + 1) * 768


def test_input_size_the_model_cannot_take_is_a_usage_error(capsys):
    assert main(["summary", "lenet5", "--input-size", "3,64,64"]) == 2  # its classifier expects 16×5×5
    err = capsys.readouterr().err
    assert "lenet5 does not run at --input-size 3×64×64: RuntimeError: mat1 and mat2" in err
    assert "perfkit bug" not in err


@pytest.mark.parametrize("value", ["3,224", "0", "a,b,c", "3,-1,5"])
def test_bad_input_size_is_a_usage_error(capsys, value):
    assert main(["summary", "lenet5", "--input-size", value]) == 2
    assert "--input-size must be C,H,W or N" in capsys.readouterr().err


def test_timm_summary_says_why_there_is_no_published_column(capsys):
    assert main(["summary", "timm:test_resnet", "--weights", "random"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "does not ship" in out and "no published column" in out
