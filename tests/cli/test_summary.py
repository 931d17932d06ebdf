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
                                 "params": 3 * 64 * 7 * 7, "repeat_of": None}
    assert data["layers"][-1]["output_shape"] == [-1, 1000]

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
