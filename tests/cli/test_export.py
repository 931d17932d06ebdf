"""`perfkit export`: table/JSON, cache hits, --force, failures recorded without stopping the rest."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from perfkit.cli import main
from perfkit.store import Store


def _export(capsys, *extra):
    code = main(["export", "lenet5", "--weights", "random", "--device", "cpu", "--json", *extra])
    data = json.loads(capsys.readouterr().out)
    assert all(r["run_id"] == data["run_id"] and "env" not in r for r in data["records"])
    [model] = [r for r in data["records"] if r["kind"] == "model"]
    assert model["model"] == "lenet5" and model["metrics"]["random_weights"] is True
    return code, [r for r in data["records"] if r["kind"] == "export"]


def test_export_then_cache_hit_then_force(capsys):
    code, rows = _export(capsys, "-f", "torchscript")
    assert code == 0 and rows[0]["status"] == "ok" and rows[0]["metrics"]["cached"] is False
    assert rows[0]["metrics"]["artifact_path"].endswith("model.ts") and rows[0]["metrics"]["artifact_bytes"] > 0
    code, rows = _export(capsys, "-f", "torchscript")
    assert code == 0 and rows[0]["metrics"]["cached"] is True and rows[0]["metrics"]["seconds"] < 1.0
    code, rows = _export(capsys, "-f", "torchscript", "--force")
    assert code == 0 and rows[0]["metrics"]["cached"] is False
    with Store() as store:
        records = store.records(kind="export")
    assert [r.metrics["cached"] for r in records] == [False, True, False]
    assert all(r.runtime == "torchscript" and r.weights == "random:seed0" and r.status == "ok" for r in records)
    assert all((r.precision, r.device, r.batch) == ("fp32", "cpu", 256) for r in records)
    assert records[-1].metrics["sha256"] == rows[0]["metrics"]["sha256"]


def test_one_failing_runtime_does_not_stop_the_others(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(torch.onnx, "export", broken)  # what the onnx backend exports with
    code, rows = _export(capsys, "-f", "onnx,torchscript")
    assert code == 1
    assert [r["runtime"] for r in rows] == ["onnx", "torchscript"]
    assert rows[0]["status"] == "error" and "simulated exporter crash" in rows[0]["error"]
    assert rows[1]["status"] == "ok"
    with Store() as store:
        records = store.records(kind="export")
        [run] = store.runs()
    assert [(r.runtime, r.status) for r in records] == [("onnx", "error"), ("torchscript", "ok")]
    assert "simulated exporter crash" in records[0].error
    assert run["status"] == "failed"


def test_every_precision_is_exported(capsys):
    code, rows = _export(capsys, "-f", "torchscript", "--precision", "fp32,bf16")
    assert code == 0
    assert [(r["runtime"], r["precision"], r["status"]) for r in rows] == [
        ("torchscript", "fp32", "ok"), ("torchscript", "bf16", "ok")]
    assert rows[0]["metrics"]["sha256"] != rows[1]["metrics"]["sha256"]


def test_tensorrt_on_cpu_is_refused_before_anything_runs(capsys):
    assert main(["export", "lenet5", "-f", "tensorrt", "--device", "cpu", "--weights", "random"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert "tensorrt does not run on cpu; it runs on cuda" in line
    with Store() as store:
        assert store.runs() == []  # refused before a run was opened


@pytest.mark.gpu
def test_tensorrt_says_it_was_not_run_here_and_names_the_extra(capsys, monkeypatch):
    from perfkit.backends.tensorrt import IMPORT_NAMES, tensorrt_extra

    for name in IMPORT_NAMES:
        monkeypatch.setitem(sys.modules, name, None)
    code = main(["export", "lenet5", "-f", "tensorrt", "--device", "cuda", "--weights", "random"])
    out = capsys.readouterr()
    assert code == 1
    assert "has not been run" in out.err
    assert f"perfkit[{tensorrt_extra()}]" in out.out


def test_table_output(capsys):
    assert main(["export", "lenet5", "-f", "torchscript", "--weights", "random", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "torchscript" in out and "exported" in out and "model.ts" in out


@pytest.mark.parametrize("argv, message", [
    (["-f", "eager"], "eager has no artifact to export; choose from: torchscript, onnx"),
    (["-f", "pytorch"], "unknown runtime 'pytorch'"),
    (["--formats", "pytorch"], "unknown runtime 'pytorch'"),  # the old name of -f still works
    (["--min-batch", "8", "--max-batch", "4"], "batch range"),
    (["--precision", "fp64"], "unknown precision 'fp64'"),
    (["-f", "torchscript", "--precision", "int8"], "torchscript on cpu supports fp32, fp16, bf16, not int8"),
    (["-f", "onnx", "--precision", "bf16"], "onnx on cpu supports fp32, fp16, int8, not bf16"),
])
def test_bad_arguments_are_clear(argv, message, capsys):
    assert main(["export", "lenet5", "--weights", "random", "--device", "cpu", *argv]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert message in line and "Traceback" not in line
