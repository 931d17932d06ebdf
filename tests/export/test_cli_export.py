"""`perfkit export`: table/JSON, cache hits, --force, failures recorded without stopping the rest."""

from __future__ import annotations

import json
import sys

import pytest

from perfkit.cli import main
from perfkit.store import Store


def _export(capsys, *extra):
    code = main(["export", "lenet5", "--weights", "random", "--device", "cpu", "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_export_then_cache_hit_then_force(capsys):
    code, rows = _export(capsys, "-f", "torchscript")
    assert code == 0 and rows[0]["status"] == "ok" and rows[0]["cached"] is False
    code, rows = _export(capsys, "-f", "torchscript")
    assert rows[0]["cached"] is True and rows[0]["seconds"] < 1.0
    code, rows = _export(capsys, "-f", "torchscript", "--force")
    assert rows[0]["cached"] is False
    with Store() as store:
        records = store.records(kind="export")
    assert [r.metrics["cached"] for r in records] == [False, True, False]
    assert all(r.runtime == "torchscript" and r.weights == "random:seed0" and r.status == "ok" for r in records)
    assert records[-1].metrics["sha256"] == rows[0]["sha256"]


def test_one_failing_format_does_not_stop_the_others(capsys, monkeypatch):
    from perfkit.export import onnx

    def broken(ctx):
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(onnx, "export", broken)
    code, rows = _export(capsys, "-f", "onnx,torchscript")
    assert code == 1
    assert [r["format"] for r in rows] == ["onnx", "torchscript"]
    assert rows[0]["status"] == "error" and "simulated exporter crash" in rows[0]["error"]
    assert rows[1]["status"] == "ok"
    with Store() as store:
        records = store.records(kind="export")
    assert [(r.runtime, r.status) for r in records] == [("onnx", "error"), ("torchscript", "ok")]
    assert "simulated exporter crash" in records[0].error


def test_tensorrt_says_it_was_not_run_here_and_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code = main(["export", "lenet5", "-f", "tensorrt", "--device", "cuda", "--weights", "random"])
    out = capsys.readouterr()
    assert code == 1
    assert "has not been run" in out.err
    assert "perfkit[tensorrt]" in out.out


def test_table_output(capsys):
    assert main(["export", "lenet5", "-f", "torchscript", "--weights", "random", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "torchscript" in out and "exported" in out and "model.ts" in out


@pytest.mark.parametrize("argv, message", [
    (["-f", "eager"], "exported formats"),
    (["-f", "pytorch"], "unknown format 'pytorch'"),
    (["--min-batch", "8", "--max-batch", "4"], "batch range"),
])
def test_bad_arguments_are_clear(argv, message, capsys):
    assert main(["export", "lenet5", "--weights", "random", *argv]) == 2
    assert message in capsys.readouterr().err
