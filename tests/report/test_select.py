import json

import pytest

from perfkit.cli import main
from perfkit.report.select import Constraints, select
from perfkit.store import Kind, Record


def _names(cands):
    return [(c["model"], c["runtime"]) for c in cands]


def _reasons(result, model, runtime):
    [c] = [c for c in result["excluded"] if (c["model"], c["runtime"]) == (model, runtime)]
    return c["reasons"]


def test_pareto_first_then_dominated(store, make_run):
    make_run(store, error=False)
    result = select(store, Constraints())
    sel = result["selected"]
    # fixture: resnet18 69.70 % (eager 20 ms, onnx 14 ms), alexnet 56.50 % (eager 8 ms, onnx 5.6 ms),
    # googlenet random 0.10 % (15 / 10.5 ms). Pareto: resnet18 eager & onnx (equal top-1, onnx faster
    # dominates eager), alexnet onnx.
    pareto = [c for c in sel if c["pareto"]]
    assert _names(pareto) == [("resnet18", "onnx"), ("alexnet", "onnx")]
    assert [c["rank"] for c in sel] == list(range(1, len(sel) + 1))
    assert _names(sel[:2]) == [("resnet18", "onnx"), ("alexnet", "onnx")]
    assert ("resnet18", "eager") in _names(sel[2:])
    assert all(c["top1_source"] == "measured" for c in sel)


def test_constraints_exclude_with_reasons(store, make_run):
    make_run(store, parity_fail=True)
    result = select(store, Constraints(max_latency_ms=15, min_top1=60, max_memory_mb=100))
    assert _names(result["selected"]) == [("resnet18", "onnx")]
    assert _reasons(result, "resnet18", "eager") == ["p50 latency 20.000 ms > 15 ms"]
    alex = _reasons(result, "alexnet", "onnx")
    assert "parity with eager FAILED" in alex and "top-1 56.50% < 60%" in alex
    assert "peak memory 254.4 MB > 100 MB (MB = 10^6 bytes)" in alex  # a deployment budget: decimal MB
    trt = _reasons(result, "resnet18", "tensorrt")
    assert any("no latency measured at batch 1" in r for r in trt)
    assert any("no measured top-1" in r for r in trt)
    assert any(r.startswith("last failure: export: RuntimeError") for r in trt)


def test_missing_measured_top1_and_published_fallback(store, make_run):
    make_run(store, accuracy=False, error=False)
    strict = select(store, Constraints(min_top1=60))
    assert strict["selected"] == []
    reasons = _reasons(strict, "resnet18", "onnx")
    assert any("no measured top-1" in r and "--use-published" in r for r in reasons)
    loose = select(store, Constraints(min_top1=60, use_published=True))
    assert {c["model"] for c in loose["selected"]} == {"resnet18", "googlenet"}
    assert all(c["top1_source"] == "published" for c in loose["selected"])
    r18 = next(c for c in loose["selected"] if c["model"] == "resnet18")
    assert r18["top1"] == pytest.approx(69.758)
    assert next(c for c in loose["selected"] if c["model"] == "googlenet")["random"] is True


def test_batch_and_device(store, make_run):
    make_run(store, error=False)
    at8 = select(store, Constraints(batch=8, max_latency_ms=50))
    alex = next(c for c in at8["selected"] if (c["model"], c["runtime"]) == ("alexnet", "onnx"))
    assert alex["latency_median_ms"] == pytest.approx(5.6 * 4.5) and alex["batch"] == 8
    assert alex["peak_bytes"] == 61_100_840 * 4 + 80_000_000
    assert "p50 latency 63.000 ms > 50 ms" in _reasons(at8, "resnet18", "onnx")
    at4 = select(store, Constraints(batch=4))
    assert at4["selected"] == []
    assert any("measured batches: 1, 8" in r for r in _reasons(at4, "alexnet", "eager"))
    gpu = select(store, Constraints(device="cuda"))
    assert gpu["selected"] == [] and "device is cpu, not cuda" in _reasons(gpu, "alexnet", "eager")


def test_newest_numbers_across_runs_or_one_run(store, make_run):
    old = make_run(store, error=False)
    make_run(store, error=False, latency_factor=2.0)
    newest = {(c["model"], c["runtime"]): c for c in select(store, Constraints())["selected"]}
    assert newest[("alexnet", "eager")]["latency_median_ms"] == pytest.approx(16.0)
    pinned = {(c["model"], c["runtime"]): c for c in select(store, Constraints(), run_id=old)["selected"]}
    assert pinned[("alexnet", "eager")]["latency_median_ms"] == pytest.approx(8.0)
    assert pinned[("alexnet", "eager")]["runs"] == [old]


def test_cli_json_and_exit_codes(store, make_run, capsys):
    make_run(store)
    assert main(["select", "--max-latency-ms", "15", "--min-top1", "60", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert _names(out["selected"]) == [("resnet18", "onnx")] and out["constraints"]["max_latency_ms"] == 15
    assert main(["select", "--min-top1", "99"]) == 1  # nothing qualifies: a gate for scripts
    text = capsys.readouterr()
    assert "excluded" in text.out and "no candidate meets the constraints" in text.err


def test_cli_empty_store(store, capsys):
    assert main(["select"]) == 2
    assert "no measured candidates" in capsys.readouterr().err


def test_cli_missing_store(tmp_path, capsys):
    assert main(["select", "--store", str(tmp_path / "nope.db")]) == 2
    assert "no run store" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()


def test_candidate_without_weights_column_is_still_listed(store):
    with store.run() as run_id:
        store.add(Record(kind=Kind.LATENCY, model="lenet5", runtime="onnx", precision="fp32", batch=1, device="cpu",
                         metrics={"iterations": 5, "latency_median_ms": 1.0, "latency_p99_ms": 1.5,
                                  "throughput_per_s": 1000.0}), run_id)
    [c] = select(store, Constraints(max_latency_ms=2))["selected"]
    assert c["top1"] is None and c["pareto"] is False and c["rank"] == 1


def test_cli_refuses_to_choose_past_an_unreadable_record(store, make_run, capsys, corrupt_metrics):
    """Skipping it would let an older number of that candidate (or none) decide: exit 2, naming it."""
    make_run(store)
    [bad] = corrupt_metrics(store.path, "not json", kind="latency", model="resnet18", runtime="onnx", batch=1)
    assert main(["select", "--max-latency-ms", "15"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert f"record #{bad} (latency resnet18 onnx fp32) of run " in captured.err and "not JSON" in captured.err


def _server(store, run_id, runtime, qps, bound, p99, precision="fp32", verdict="INVALID: early stopping not met"):
    trials = [{"target_qps": qps, "p99_ms": p99, "met": True}, {"target_qps": 2 * qps, "p99_ms": 4 * bound, "met": False}]
    store.add(Record(kind="server", model="resnet18", weights="IMAGENET1K_V1", runtime=runtime, precision=precision,
                     batch=1, device="cpu", metrics={"qps": qps, "p99_ms": p99, "latency_bound_ms": bound,
                                                     "verdict": verdict, "trials": trials}), run_id)


def test_server_ranks_by_the_largest_qps_within_the_bound(store, capsys):
    with store.run() as run_id:
        _server(store, run_id, "onnx", 40.0, 50, 45.0)
        _server(store, run_id, "openvino", 55.0, 50, 48.0, verdict="VALID")
        _server(store, run_id, "openvino", 90.0, 100, 95.0)  # a looser bound: not a QPS within 50 ms
        _server(store, run_id, "eager", 70.0, 100, 80.0)  # measured at 100 ms only
    result = select(store, Constraints(scenario="server", latency_bound_ms=50))
    assert [(c["runtime"], c["server_qps"]) for c in result["selected"]] == [("openvino", 55.0), ("onnx", 40.0)]
    [why] = _reasons(result, "resnet18", "eager")
    assert "no Server QPS measured at a p99 bound ≤ 50 ms (bounds measured: 100 ms" in why
    # a tighter bound's QPS also meets a looser bound; the largest bound within it is taken
    loose = select(store, Constraints(scenario="server", latency_bound_ms=200))
    assert [(c["runtime"], c["server_qps"]) for c in loose["selected"]][0] == ("openvino", 90.0)
    assert main(["select", "--scenario", "server", "--latency-bound-ms", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["selected"][0]["server_verdict"] == "VALID"
    assert main(["select", "--scenario", "server"]) == 2  # the bound is required
    assert main(["select", "--latency-bound-ms", "50"]) == 2  # and means the Server scenario
    assert "--scenario server" in capsys.readouterr().err
