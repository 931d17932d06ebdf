"""`perfkit profile`: JSON records, the store, failures and exit codes, the table."""

import json

import perfkit.backends
from perfkit.cli import main
from perfkit.store import SCHEMAS, Kind, Store

FAST = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0"]


def _records(out: str):
    data = json.loads(out)
    assert set(data) == {"run_id", "records"}
    assert all(r["run_id"] == data["run_id"] and "env" not in r for r in data["records"])
    return data["run_id"], data["records"]


def test_profile_json_fields_and_records(capsys, tmp_path):
    store_path = tmp_path / "store.db"
    rc = main(["profile", "lenet5", "-f", "eager", "--batch", "1,2", "--json", "--store", str(store_path), *FAST])
    assert rc == 0
    run_id, records = _records(capsys.readouterr().out)
    [model] = [r for r in records if r["kind"] == "model"]
    assert model["model"] == "lenet5" and model["metrics"]["random_weights"] is True
    assert model["weights"] == "random:seed0"
    latency = [r for r in records if r["kind"] == "latency"]
    memory = {r["batch"]: r for r in records if r["kind"] == "memory"}
    assert [(r["runtime"], r["precision"], r["batch"], r["device"]) for r in latency] == [
        ("eager", "fp32", 1, "cpu"), ("eager", "fp32", 2, "cpu")]
    for r in latency:
        lat = r["metrics"]
        for key in ("latency_mean_ms", "latency_median_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
                    "latency_min_ms", "latency_max_ms", "latency_std_ms", "latency_cv", "throughput_per_s",
                    "iterations", "warmup_iterations", "achieved_gflops", "peak_gflops", "peak_fraction",
                    "peak_source", "threads", "flops_per_sample", "runtime_config"):
            assert lat[key] is not None, key
        assert lat["throughput_per_s"] == r["batch"] / (lat["latency_median_ms"] / 1000)
        assert lat["iterations"] >= 3 and lat["threads"] >= 1 and lat["self_timed"] is False
        assert lat.keys() <= SCHEMAS[Kind.LATENCY].permitted
        mem = memory[r["batch"]]["metrics"]
        assert mem["peak_bytes"] > 0 and "RSS" in mem["method"]
    assert sorted(memory) == [1, 2]
    with Store(store_path) as store:
        stored = store.records(run_id=run_id)
        [run] = store.runs()
    assert sorted((str(r.kind), r.batch) for r in stored) == [
        ("latency", 1), ("latency", 2), ("memory", 1), ("memory", 2), ("model", None)]
    assert all(r.env.get("cpu_count") for r in stored)  # the environment is in the store, not in the JSON
    assert run["id"] == run_id and run["status"] == "ok"


def test_failed_runtime_is_recorded_and_exit_code_is_nonzero(capsys, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("cannot load")

    monkeypatch.setattr(perfkit.backends, "open_runner", broken)
    store_path = tmp_path / "store.db"
    rc = main(["profile", "lenet5", "-f", "eager", "--batch", "1", "--json", "--no-memory", "--store", str(store_path),
               *FAST])
    assert rc == 1
    run_id, records = _records(capsys.readouterr().out)
    [failed] = [r for r in records if r["kind"] == "latency"]
    assert failed["status"] == "error" and "cannot load" in failed["error"] and failed["metrics"] == {}
    with Store(store_path) as store:
        (record,) = store.records(run_id=run_id, kind=Kind.LATENCY)
        [run] = store.runs()
    assert record.status == "error" and "cannot load" in record.error
    assert run["status"] == "failed"  # the run's status agrees with its records


def test_bad_batch_is_a_usage_error(capsys):
    assert main(["profile", "lenet5", "--batch", "0,x"]) == 2
    err = capsys.readouterr().err
    assert "--batch" in err and len(err.strip().splitlines()) == 1


def test_bad_threads_and_timing_are_usage_errors(capsys):
    assert main(["profile", "lenet5", "--threads", "0", "--weights", "random"]) == 2
    assert "--threads" in capsys.readouterr().err
    assert main(["profile", "lenet5", "--iterations", "0", "--weights", "random"]) == 2
    assert "iterations" in capsys.readouterr().err


def test_table_output(capsys, tmp_path):
    rc = main(["profile", "lenet5", "-f", "eager", "--batch", "1", "--no-memory", "--store", str(tmp_path / "s.db"),
               *FAST])
    assert rc == 0
    out = capsys.readouterr().out
    with Store(tmp_path / "s.db") as store:
        [run] = store.runs()
    assert "perfkit profile" in out and "eager" in out and f"run {run['id']}" in out
    assert "configuration: eager:" in out and "inference_mode=True" in out  # the tuned configuration, said


def test_profile_offline_prints_singlestream_and_offline_and_records_both(capsys, shared_artifacts):
    """`perfkit profile -f eager,onnx,openvino --scenario offline`: both scenarios and the winners."""
    rc = main(["profile", "lenet5", "-f", "eager,onnx,openvino", "-b", "1,2", "--scenario", "offline", "--no-memory",
               "--offline-seconds", "0.1", "--offline-max-requests", "2", "--artifacts", str(shared_artifacts), *FAST])
    out = capsys.readouterr().out
    assert rc == 0
    assert "SingleStream" in out and "Offline" in out and "offline samples/s" in out
    assert "AsyncInferQueue" in out and "InferenceSession" in out and "SingleStream winner (batch 1)" in out
    with Store() as store:
        records = store.records()
    offline = {r.runtime: r for r in records if r.kind == Kind.THROUGHPUT}
    assert set(offline) == {"eager", "onnx", "openvino"} and {r.batch for r in offline.values()} == {2}
    for r in offline.values():
        r.validate()
        assert r.metrics["samples_per_s"] > 0 and r.metrics["requests"] in (1, 2) and r.metrics["trials"]
    assert offline["openvino"].metrics["runtime_config"]["performance_hint"] == "THROUGHPUT"
    latency = {(r.runtime, r.batch): r.metrics for r in records if r.kind == Kind.LATENCY}
    assert latency[("openvino", 1)]["runtime_config"]["performance_hint"] == "LATENCY"
    assert latency[("openvino", 1)]["runtime_config"]["inference_precision"] == "f32"



def test_profile_scenario_and_offline_options_are_checked(capsys):
    assert main(["profile", "lenet5", "--scenario", "multistream"]) == 2
    assert "unknown scenario 'multistream'; choose from: singlestream, offline, server" in capsys.readouterr().err
    assert main(["profile", "lenet5", "--scenario", "offline", "--offline-seconds", "0"]) == 2
    err = capsys.readouterr().err
    assert "(--offline-seconds) must be positive" in err and len(err.strip().splitlines()) == 1
    # an option of a scenario not asked for is refused, not ignored
    assert main(["profile", "lenet5", "--offline-seconds", "1"]) == 2
    assert "--offline-seconds belong(s) to a scenario not asked for" in capsys.readouterr().err
