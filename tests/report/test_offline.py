"""The Offline scenario in the report: rows beside SingleStream, the winners, the tables, the HTML
chart, and regress comparing like with like."""

from __future__ import annotations

import pytest
from rich.console import Console

from perfkit.profiler.scenarios import get
from perfkit.report.html import build_charts, render_html, report_context
from perfkit.report.regress import compare, load_side
from perfkit.report.rows import load_run, scenario_rows, summary_rows, winners
from perfkit.report.tables import scenario_table, summary_table

OFFLINE = get("offline")


def _text(renderables) -> str:
    console = Console(width=250, record=True)
    for r in renderables if isinstance(renderables, list) else [renderables]:
        console.print(r)
    return console.export_text()


@pytest.fixture
def run(store, make_run):
    return load_run(store, make_run(store, offline=True, accuracy=False))


def test_offline_rows_sit_beside_singlestream_at_the_same_batch(run):
    _, records = run
    rows = {(r["model"], r["runtime"]): r for r in scenario_rows(OFFLINE, records)}
    assert set(rows) == {(m, rt) for m in ("resnet18", "alexnet", "googlenet") for rt in ("eager", "onnx")}
    r = rows[("resnet18", "onnx")]
    assert r["batch"] == 8 and r["requests"] == 2 and r["threads_per_request"] == 1
    assert r["gain"] == pytest.approx(1.6, rel=1e-2) and rows[("resnet18", "eager")]["gain"] == pytest.approx(1, rel=1e-2)
    assert [t["requests"] for t in r["trials"]] == [1, 2]
    assert r["singlestream_per_s"] == pytest.approx(8 / (20.0 * 0.7 * 4.5 / 1000))


def test_each_scenario_has_its_winner(run):
    _, records = run
    won = {w["model"]: w["by"] for w in winners(records)}
    assert won["resnet18"]["singlestream"] == {"runtime": "onnx", "batch": 1, "value": pytest.approx(14.0),
                                               "detail": "", "contended": False}
    assert won["resnet18"]["offline"]["runtime"] == "onnx" and won["resnet18"]["offline"]["detail"] == "K=2"


def test_summary_rows_and_table_show_the_offline_figure(run):
    run_row, records = run
    row = next(r for r in summary_rows(records) if (r["model"], r["runtime"]) == ("alexnet", "onnx"))
    offline = row["scenarios"]["offline"]
    assert offline["batch"] == 8 and offline["detail"] == "K=2" and offline["value"] > 0
    text = _text(summary_table(run_row, records))
    assert "Offline samples/s" in text and "K=2 b8" in text
    assert "resnet18 fp32 cpu — SingleStream winner (batch 1): onnx 14.000 ms" in text
    assert "resnet18 fp32 cpu — Offline winner (batch 8): onnx" in text


def test_the_offline_table_names_the_mechanism_and_what_was_not_measured(run):
    _, records = run
    text = _text(scenario_table(OFFLINE, records, "offline", {"native": "the C++ runner times itself"}))
    assert "× SingleStream" in text and ("1.60" in text or "1.59" in text) and "fixture: 2 request(s)" in text
    assert "native: Offline not measured (the C++ runner times itself)" in text
    assert "1: " in text and "2: " in text  # every K tried, with its samples/s


def test_a_run_without_offline_has_no_offline_column_or_chart(store, make_run):
    run_row, records = load_run(store, make_run(store, accuracy=False))
    assert "Offline samples/s" not in _text(summary_table(run_row, records))
    ctx = report_context(store, run_row["id"])
    assert ctx["sections"] == [] and "offline" not in ctx["charts"]


def test_the_html_report_has_an_offline_chart_and_table(store, make_run, tmp_path):
    run_id = make_run(store, offline=True, accuracy=False)
    ctx = report_context(store, run_id)
    fig = ctx["charts"]["offline"]
    names = {t.name for t in fig.data}
    assert names == {"eager fp32", "onnx fp32"}
    bars = [t for t in fig.data if t.name == "onnx fp32"]
    # the K that won is on hover (text on every bar would pile up with many variants)
    assert bars and list(bars[0].hovertext) == ["K=2"] * 3 and bars[0].text is None
    html = render_html(store, run_id, tmp_path / "r.html").read_text()
    assert 'id="chart-offline"' in html and 'id="offline-table"' in html and 'id="winners-table"' in html
    assert 'href="#offline"' in html


def test_the_chart_is_left_out_when_every_offline_measurement_failed():
    section = {"name": "offline", "rows": [{"label": "m", "runtime": "onnx", "precision": "fp32", "value": None}]}
    assert "offline" not in build_charts([], {}, [section])


def test_regress_gates_an_offline_drop_in_the_same_configuration(store, make_run):
    base = make_run(store, offline=True)
    cand = make_run(store, offline=True, offline_factor=0.8)
    result = compare(load_side(store, base), load_side(store, cand), max_throughput_drop_pct=10)
    gated = {(c["model"], c["runtime"]) for c in result["changes"]
             if c["verdict"] == "regression" and c["metric"] == "samples_per_s"}
    assert gated == {(m, rt) for m in ("resnet18", "alexnet", "googlenet") for rt in ("eager", "onnx")}
    assert result["regressions"] == 6 and result["thresholds"]["max_throughput_drop_pct"] == 10
    assert compare(load_side(store, base), load_side(store, cand), max_throughput_drop_pct=25)["regressions"] == 0
    # SingleStream did not change: latency and throughput kinds are compared apart
    assert all(c["verdict"] == "same" for c in result["changes"] if c["kind"] == "latency")


def test_regress_does_not_gate_a_timing_taken_in_another_configuration(store, make_run):
    base = make_run(store, offline=True)
    cand = make_run(store, offline=True, offline_factor=0.5, offline_requests=1)
    result = compare(load_side(store, base), load_side(store, cand))
    changed = [c for c in result["changes"] if c["kind"] == "throughput" and c["metric"] == "samples_per_s"]
    assert changed and all(c["verdict"] == "config changed" for c in changed)
    assert "requests: 2 → 1" in changed[0]["config"]
    assert result["regressions"] == 0


def test_regress_cli_shows_config_changes(store, make_run, capsys):
    from perfkit.cli import main

    base = make_run(store, offline=True)
    make_run(store, offline=True, offline_requests=1, offline_factor=0.5)
    assert main(["regress", "--baseline", base, "--max-throughput-drop", "5"]) == 0
    out = capsys.readouterr().out
    assert "config changed (" in out and "requests: 2" in out
    assert "Offline samples/s drop > 5%" in out.replace("\n", " ")
