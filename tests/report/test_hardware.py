"""Hardware as a dimension: one store holding runs from two fake machines (``on_machine``), filtered and
grouped with --hardware by runs, report, select and regress; the cross-machine comparison; old records."""

from __future__ import annotations

import copy
import json

import pytest

from perfkit.cli import main
from perfkit.errors import UsageError
from perfkit.report.hardware import hardware_of, machine_rows, matches, only_hardware, record_hardware
from perfkit.report.html import report_context
from perfkit.report.regress import compare, load_side
from perfkit.report.select import Constraints, select
from perfkit.store import Kind

EPYC, XEON = "AMD EPYC 7B13 ×2 avx2", "Intel Xeon Platinum 8480+ ×8 amx_int8+amx_bf16"


@pytest.fixture
def two_machines(store, make_run, on_machine):
    """A run on each fake machine (the Xeon's 2× faster), same models: (epyc run, xeon run)."""
    on_machine("epyc")
    epyc = make_run(store, models=("alexnet",), error=False, accuracy=False)
    on_machine("xeon")
    xeon = make_run(store, models=("alexnet",), error=False, accuracy=False, latency_factor=0.5)
    return epyc, xeon


def test_every_record_names_its_machine(store, two_machines):
    epyc, xeon = two_machines
    assert {record_hardware(r)["label"] for r in store.records(epyc)} == {EPYC}
    assert {record_hardware(r)["label"] for r in store.records(xeon)} == {XEON}
    keys = {record_hardware(r)["key"] for r in store.records()}
    assert len(keys) == 2 and all(len(k) == 12 for k in keys)


def test_hardware_text_matches_the_key_or_part_of_the_label(store, two_machines):
    epyc, xeon = two_machines
    xeon_id = record_hardware(store.records(xeon)[0])
    assert matches(xeon_id, "xeon") and matches(xeon_id, "AMX_INT8") and matches(xeon_id, xeon_id["key"])
    assert not matches(xeon_id, "epyc") and not matches(xeon_id, xeon_id["key"][:6] + "zz")
    records = store.records()
    assert {r.run_id for r in only_hardware(records, "epyc", "the store")} == {epyc}
    assert only_hardware(records, "all", "the store") == records
    with pytest.raises(UsageError, match=r"--hardware 'H100' \(its hardware: .*EPYC.*; .*Xeon"):
        only_hardware(records, "H100", "the store")


def test_runs_shows_and_filters_by_hardware(store, two_machines, capsys):
    epyc, xeon = two_machines
    assert main(["runs", "--store", str(store.path), "--hardware", "xeon", "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)
    assert run["id"] == xeon and run["hardware"]["label"] == XEON
    assert main(["runs", "--store", str(store.path), "--hardware", "nothing-like-it", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["runs", "--store", str(store.path), "--limit", "1", "--hardware", "epyc", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [epyc]  # the limit counts matching runs


def test_select_keeps_each_machines_numbers_apart(store, two_machines):
    found = select(store, Constraints(batch=1))
    eager = sorted((c["hardware"], c["latency_median_ms"]) for c in found["selected"] + found["excluded"]
                   if c["runtime"] == "eager")
    assert eager == [(EPYC, pytest.approx(8.0)), (XEON, pytest.approx(4.0))]  # not the newest of the two
    only = select(store, Constraints(batch=1), hardware="EPYC")
    assert {c["hardware"] for c in only["selected"] + only["excluded"]} == {EPYC}


def test_select_cli_shows_the_hardware_column_across_machines(store, two_machines, capsys):
    main(["select", "--store", str(store.path), "-b", "1"])  # no accuracy measured: every candidate excluded
    out = capsys.readouterr().out
    assert "hardware" in out and "Xeon" in out and "EPYC" in out
    main(["select", "--store", str(store.path), "-b", "1", "--hardware", "xeon"])
    out = capsys.readouterr().out
    assert "EPYC" not in out and "hardware" not in out  # one machine: no column


def test_regress_refuses_another_machine_unless_asked(store, two_machines, capsys):
    epyc, xeon = two_machines
    with pytest.raises(UsageError) as refused:
        compare(load_side(store, epyc), load_side(store, xeon))
    assert EPYC in str(refused.value) and XEON in str(refused.value) and "--across-hardware" in str(refused.value)
    assert main(["regress", "--store", str(store.path), "--baseline", epyc, "--candidate", xeon]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "EPYC" in err and "Xeon" in err
    # asked for: compared (the Xeon is twice as fast: improvements, no regression)
    assert main(["regress", "--store", str(store.path), "--baseline", epyc, "--candidate", xeon,
                 "--across-hardware", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["hardware"] == {"baseline": [EPYC], "candidate": [XEON]} and result["compared"] > 0
    assert any(c["verdict"] == "improved" and c["metric"] == "latency_median_ms" for c in result["changes"])
    assert main(["regress", "--store", str(store.path), "--baseline", epyc, "--candidate", xeon,
                 "--across-hardware"]) == 0
    assert f"compared across hardware: {EPYC} (baseline) → {XEON} (candidate)" in capsys.readouterr().err


def test_regress_hardware_compares_one_machines_records(store, make_run, on_machine, two_machines, capsys):
    epyc, xeon = two_machines
    on_machine("epyc")
    again = make_run(store, models=("alexnet",), error=False, accuracy=False, latency_factor=1.5)
    assert main(["regress", "--store", str(store.path), "--baseline", epyc, "--candidate", again,
                 "--hardware", "epyc"]) == 1  # same machine: 50 % slower is a regression
    capsys.readouterr()
    assert main(["regress", "--store", str(store.path), "--baseline", epyc, "--candidate", xeon,
                 "--hardware", "epyc"]) == 2  # the candidate has no record on that machine: one line naming it
    assert f"no record of {xeon} was measured on hardware matching --hardware 'epyc'" in capsys.readouterr().err


def test_a_json_baseline_from_another_machine_is_refused_too(store, two_machines, tmp_path, capsys):
    epyc, xeon = two_machines
    assert main(["report", epyc, "--store", str(store.path), "--json-out", str(tmp_path / "base.json")]) == 0
    capsys.readouterr()
    assert main(["regress", "--store", str(store.path), "--baseline", str(tmp_path / "base.json"),
                 "--candidate", xeon]) == 2
    assert "measured on AMD EPYC" in capsys.readouterr().err


def test_old_records_without_the_identity_group_with_new_ones(store, make_run, on_machine):
    """Records written before fingerprints carried ``hardware`` get the same identity from their fields."""
    on_machine("epyc", identity=False)
    old = make_run(store, models=("alexnet",), error=False, accuracy=False)
    on_machine("epyc")
    new = make_run(store, models=("alexnet",), error=False, accuracy=False)
    assert all("hardware" not in r.env for r in store.records(old))
    assert {record_hardware(r)["key"] for r in store.records()} == {record_hardware(store.records(new)[0])["key"]}
    assert record_hardware(store.records(old)[0])["label"] == EPYC
    assert compare(load_side(store, old), load_side(store, new))["regressions"] == 0  # one machine: compared
    assert hardware_of(store.get_run(old)["env"])["label"] == EPYC  # a run's own fingerprint too


def test_a_record_on_the_gpu_is_named_by_its_gpu_and_one_without_a_fingerprint_is_unknown():
    env = {"device": "cpu", "cpu_model": "AMD EPYC", "cpu_count": 2, "cpu_flags": ["avx2"], "gpu_name": None}
    env["hardware"] = {"key": "0" * 12, "label": "stored for the cpu"}
    assert hardware_of(env)["label"] == "stored for the cpu"
    gpu = hardware_of({**env, "gpu_name": "NVIDIA H100 80GB HBM3"}, "cuda:0")  # not the cpu's stored identity
    assert gpu["label"] == "NVIDIA H100 80GB HBM3" and gpu["kind"] == "gpu"
    assert hardware_of({})["known"] is False


def test_the_rows_compare_each_candidate_across_machines(store, two_machines):
    rows = machine_rows(store.records())
    eager1 = [(r["hardware"], r["latency_median_ms"]) for r in rows if (r["runtime"], r["batch"]) == ("eager", 1)]
    assert eager1 == [(EPYC, pytest.approx(8.0)), (XEON, pytest.approx(4.0))]
    assert {(r["runtime"], r["precision"]) for r in rows} == {("eager", "fp32"), ("onnx", "fp32")}
    assert machine_rows(store.records(two_machines[0])) == []  # one machine: nothing to compare


def test_report_hardware_all_adds_the_across_machines_chart(store, two_machines, tmp_path, capsys):
    epyc, xeon = two_machines
    ctx = report_context(store, xeon)
    assert ctx["machines"] == [] and "machines" not in ctx["charts"]  # one run, one machine
    ctx = report_context(store, xeon, "all")
    bars = ctx["charts"]["machines"].data
    assert sorted(trace.name for trace in bars) == [EPYC, XEON]  # one group per machine
    assert all(len(trace.x) == 4 for trace in bars)  # alexnet × (eager, onnx) × batches (1, 8)
    assert ctx["records"] == len(store.records(xeon))  # the rest of the report is still the run's
    html = tmp_path / "r.html"
    assert main(["report", xeon, "--store", str(store.path), "--hardware", "all", "--html", str(html)]) == 0
    text = html.read_text()
    assert 'id="machines"' in text and text.count('id="chart-machines"') == 1
    assert f"measured on {XEON}" in text  # the run's own hardware, in the header
    out = capsys.readouterr().out
    assert "across machines" in out and f"run {xeon} on cpu (Intel Xeon Platinum 8480+" in out


def test_report_hardware_text_keeps_the_runs_records_on_that_machine(store, two_machines, capsys):
    epyc, _ = two_machines
    assert report_context(store, epyc, "epyc")["records"] == len(store.records(epyc))
    assert main(["report", epyc, "--store", str(store.path), "--hardware", "xeon"]) == 2
    assert f"no record of run {epyc} was measured on hardware matching --hardware 'xeon'" in capsys.readouterr().err


def test_a_run_whose_records_span_machines_compares_them_without_all(store, make_run, on_machine, machine_env):
    """A run whose cells ran on several hosts (a sharded sweep) compares its own machines, no --hardware needed."""
    on_machine("epyc")
    records = store.records(make_run(store, models=("alexnet",), error=False, accuracy=False))
    timed = [r for r in records if r.kind == Kind.LATENCY and r.runtime == "eager"]
    moved = copy.copy(timed[0])
    moved.env = machine_env("xeon")  # that cell was timed on the other host
    rows = machine_rows([*records, moved])
    assert [(r["hardware"], r["batch"]) for r in rows] == [(EPYC, timed[0].batch), (XEON, timed[0].batch)]
