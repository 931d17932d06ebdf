"""The precision trade in the report layer: select admits an int8 candidate by relative accuracy, regress
compares per precision, the HTML chart joins a model's precisions, every table names the calibration."""

from __future__ import annotations

import pytest

from perfkit.cli import main
from perfkit.report.html import build_charts, report_context
from perfkit.report.regress import compare, load_side
from perfkit.report.rows import load_run, summary_rows
from perfkit.report.select import Constraints, select
from perfkit.profiler.scenarios import get
from perfkit.report.rows import scenario_rows
from perfkit.report.tables import calibration_notes, summary_table

CALIBRATION = "calibrated on 512 validation images (seeded subset of --data, minmax)"
SYNTHETIC = "calibrated on 32 synthetic images (minmax) — accuracy not meaningful"


def _cands(result):
    return [(c["model"], c["runtime"], c["precision"]) for c in result]


def test_select_min_relative_accuracy_admits_an_int8_candidate(store, make_run, capsys):
    make_run(store, int8=CALIBRATION, error=False)
    result = select(store, Constraints(min_relative_accuracy=0.99))
    chosen = _cands(result["selected"])
    # resnet18 int8 keeps 69.2 / 69.7 = 99.3% of eager fp32's top-1 and is the fastest resnet18: Pareto
    assert ("resnet18", "onnx", "int8") in chosen and ("resnet18", "onnx", "fp32") in chosen
    r18 = next(c for c in result["selected"] if c["precision"] == "int8" and c["model"] == "resnet18")
    assert r18["relative_top1"] == pytest.approx(69.2 / 69.7) and r18["pareto"] and r18["calibration"] == CALIBRATION
    # googlenet (random weights, 0.1% top-1) int8 keeps nothing: excluded, with the reason
    [gnet] = [c for c in result["excluded"] if (c["model"], c["precision"]) == ("googlenet", "int8")]
    assert gnet["reasons"] == ["top-1 is 0.00% of eager fp32's < 99%"]
    assert ("resnet18", "onnx", "int8") not in _cands(select(store, Constraints(min_relative_accuracy=0.995))["selected"])
    assert main(["select", "--min-relative-accuracy", "0.99", "--max-latency-ms", "8"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "int8" in out and "rel. fp32" in out and CALIBRATION in out
    assert main(["select", "--min-relative-accuracy", "99"]) == 2
    assert "--min-relative-accuracy is a fraction in (0, 1], got 99" in capsys.readouterr().err


def test_regress_compares_int8_with_int8(store, make_run):
    base = make_run(store, int8=CALIBRATION, error=False)
    cand = make_run(store, int8=CALIBRATION, error=False, latency_factor=1.5)
    result = compare(load_side(store, base), load_side(store, cand))
    slower = {(c["model"], c["runtime"], c["precision"], c["batch"]) for c in result["changes"]
              if c["verdict"] == "regression" and c["metric"] == "latency_median_ms"}
    assert ("resnet18", "onnx", "int8", 1) in slower and ("resnet18", "onnx", "fp32", 1) in slower
    # every change compares a record with the same precision's (the key holds it); an fp32 run has no int8 records
    fp32_only = make_run(store, error=False)
    missing = {(c["runtime"], c["precision"]) for c in compare(load_side(store, base), load_side(store, fp32_only))
               ["changes"] if c["verdict"] == "missing"}
    assert missing == {("onnx", "int8")}


def test_regress_reports_a_changed_calibration_set(store, make_run):
    base = make_run(store, int8=CALIBRATION, error=False)
    cand = make_run(store, int8=SYNTHETIC, error=False)
    changes = [c for c in compare(load_side(store, base), load_side(store, cand))["changes"]
               if c["metric"] == "calibration"]
    assert changes and all(c["verdict"] == "changed" and c["precision"] == "int8" for c in changes)
    assert {(c["kind"], c["baseline"], c["candidate"]) for c in changes} >= {("accuracy", CALIBRATION, SYNTHETIC)}


def test_the_chart_joins_each_models_precisions(store, make_run):
    run = make_run(store, int8=CALIBRATION, error=False)
    _, records = load_run(store, run)
    rows = summary_rows(records)
    fig = build_charts(rows, {})["acc_vs_latency"]
    lines = [t for t in fig.data if t.mode == "lines" and "→" in (t.name or "")]
    assert {t.name for t in lines} >= {"resnet18 onnx: fp32 → int8", "alexnet onnx: fp32 → int8"}
    r18 = next(t for t in lines if t.name.startswith("resnet18"))
    assert r18.x[1] < r18.x[0] and r18.y[1] == pytest.approx(r18.y[0] - 0.5)  # fp32 first: faster, 0.5 pp less
    points = next(t for t in fig.data if t.name == "onnx (measured top-1)")
    assert "triangle-up" in points.marker.symbol  # int8 has its own symbol
    ctx = report_context(store, run)
    assert any(CALIBRATION in c for c in ctx["calibrations"])


def test_tables_show_the_speedup_and_the_calibration(store, make_run):
    run = make_run(store, int8=CALIBRATION, error=False)
    _, records = load_run(store, run)
    rows = {(r["model"], r["runtime"], r["precision"], r["batch"]): r for r in scenario_rows(get("singlestream"), records)}
    fp32, int8 = rows["resnet18", "onnx", "fp32", 1], rows["resnet18", "onnx", "int8", 1]
    assert int8["speedup_vs_fp32"] == pytest.approx(fp32["latency_median_ms"] / int8["latency_median_ms"]) == 2.0
    assert rows["resnet18", "onnx", "fp32", 1]["speedup_vs_fp32"] is None
    assert calibration_notes(records) == [f"int8 (onnx): {CALIBRATION}"]
    text = " ".join(str(x) for x in summary_table({"id": run, "command": "c", "status": "ok"}, records))
    assert CALIBRATION in text
    r18 = next(r for r in summary_rows(records) if (r["model"], r["precision"]) == ("resnet18", "int8"))
    assert r18["calibration"] == CALIBRATION and r18["relative_top1"] == pytest.approx(69.2 / 69.7)
    assert r18["status"] == "ok"  # 99.3% of fp32's top-1: within MLPerf's rule, not flagged
