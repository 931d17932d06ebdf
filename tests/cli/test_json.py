"""`--json` of the measuring commands: plain JSON on stdout, {"run_id", "records"}, the records the
store holds (without the environment, which the store and `report --json` keep)."""

from __future__ import annotations

import json

import pytest

from perfkit.cli import main
from perfkit.store import Store

FAST = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0"]


def _json_run(capsys, argv, code=0):
    assert main(argv) == code
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # stdout is JSON and nothing else (banners and progress go to stderr)
    assert set(data) == {"run_id", "records"} and data["records"]
    with Store() as store:
        stored = store.records(data["run_id"])
        [run] = [r for r in store.runs() if r["id"] == data["run_id"]]
    expected = [r.to_dict() for r in stored]
    for r in expected:
        r.pop("env")
    assert data["records"] == expected  # exactly what was stored, in order
    return data, run


@pytest.mark.parametrize("argv, kinds", [
    (["export", "lenet5", "-f", "torchscript", "--precision", "fp32,bf16"], ["model", "export", "export"]),
    (["check", "lenet5", "-f", "torchscript", "-b", "1,4", "--samples", "8"], ["model", "export", "parity", "parity"]),
    (["profile", "lenet5", "-f", "eager", "-b", "1", "--no-memory", *FAST], ["model", "latency"]),
])
def test_measuring_commands_print_their_records(argv, kinds, capsys):
    data, run = _json_run(capsys, [*argv, "--weights", "random", "--device", "cpu", "--json"])
    assert [r["kind"] for r in data["records"]] == kinds
    assert all(r["status"] == "ok" and r["model"] == "lenet5" for r in data["records"])
    assert run["status"] == "ok"


def test_check_json_says_what_was_compared(capsys):
    data, _ = _json_run(capsys, ["check", "lenet5", "-f", "torchscript", "-b", "2", "--samples", "4",
                                 "--weights", "random", "--json"])
    [parity] = [r for r in data["records"] if r["kind"] == "parity"]
    m = parity["metrics"]
    assert (parity["runtime"], parity["precision"], parity["batch"]) == ("torchscript", "fp32", 2)
    assert m["samples"] == 4 and m["passed"] is True and m["top1_agreement"] == 1.0 and m["inputs"] == "synthetic"
    assert m["max_abs_diff"] < 1e-4 and m["atol"] > 0 and m["rtol"] > 0  # the tolerance is recorded with it


def test_a_failed_measurement_is_in_the_json_and_the_exit_code(capsys, monkeypatch):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(torch.onnx, "export", broken)
    data, run = _json_run(capsys, ["check", "lenet5", "-f", "onnx", "-b", "1", "--samples", "4", "--weights", "random",
                                   "--json"], code=1)
    failed = [r for r in data["records"] if r["status"] == "error"]
    assert failed and all("simulated exporter crash" in r["error"] for r in failed)
    assert {r["kind"] for r in failed} <= {"export", "parity"}
    assert run["status"] == "failed"


def test_report_json_prints_the_run_export(capsys, tmp_path):
    data, _ = _json_run(capsys, ["profile", "lenet5", "-f", "eager", "-b", "1", "--no-memory", "--weights", "random",
                                 "--json", *FAST])
    assert main(["report", data["run_id"], "--json"]) == 0
    export = json.loads(capsys.readouterr().out)
    assert export["run"]["id"] == data["run_id"] and export["format"] == "perfkit-run-records"
    assert [r["kind"] for r in export["records"]] == [r["kind"] for r in data["records"]]
    assert all(r["env"] for r in export["records"])  # the export keeps the environment
    assert main(["report", data["run_id"], "--json-out", str(tmp_path / "run.json")]) == 0
    assert json.loads((tmp_path / "run.json").read_text()) == export
