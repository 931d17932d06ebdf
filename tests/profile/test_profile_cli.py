import json

from perfkit.cli import main
from perfkit.store import Store

FAST = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0"]


def test_profile_json_fields_and_records(capsys, tmp_path):
    store_path = tmp_path / "store.db"
    rc = main(["profile", "lenet5", "-f", "eager", "--batch", "1,2", "--json", "--store", str(store_path), *FAST])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "lenet5" and out["random_weights"] is True
    assert out["env"]["cpu_count"] and out["env"]["threads_used"] >= 1
    assert [(r["runtime"], r["batch"]) for r in out["results"]] == [("eager", 1), ("eager", 2)]
    for r in out["results"]:
        lat, mem = r["latency"], r["memory"]
        for key in ("latency_mean_ms", "latency_median_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
                    "latency_min_ms", "latency_max_ms", "latency_std_ms", "latency_cv", "throughput_per_s",
                    "iterations", "warmup_iterations", "achieved_gflops", "peak_gflops", "peak_fraction",
                    "peak_source", "threads"):
            assert lat[key] is not None, key
        assert lat["throughput_per_s"] == r["batch"] / (lat["latency_median_ms"] / 1000)
        assert lat["iterations"] >= 3
        assert mem["peak_bytes"] > 0 and "RSS" in mem["method"]
    with Store(store_path) as store:
        records = store.records(run_id=out["run_id"])
    assert sorted((str(r.kind), r.batch) for r in records) == [("latency", 1), ("latency", 2), ("memory", 1), ("memory", 2)]
    assert all(r.env.get("cpu_model") is not None or "cpu_count" in r.env for r in records)


def test_failed_runtime_is_recorded_and_exit_code_is_nonzero(capsys, tmp_path, monkeypatch):
    import perfkit.runtime

    def broken(*a, **k):
        raise RuntimeError("cannot load")

    monkeypatch.setattr(perfkit.runtime, "open_runner", broken)
    store_path = tmp_path / "store.db"
    rc = main(["profile", "lenet5", "-f", "eager", "--batch", "1", "--json", "--no-memory", "--store", str(store_path), *FAST])
    assert rc == 1
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0]["status"] == "error" and "cannot load" in out["results"][0]["error"]
    with Store(store_path) as store:
        (record,) = store.records(run_id=out["run_id"])
    assert record.status == "error" and "cannot load" in record.error


def test_bad_batch_is_a_usage_error(capsys):
    assert main(["profile", "lenet5", "--batch", "0,x"]) == 2
    assert "--batch" in capsys.readouterr().err


def test_table_output(capsys, tmp_path):
    rc = main(["profile", "lenet5", "-f", "eager", "--batch", "1", "--no-memory", "--store", str(tmp_path / "s.db"), *FAST])
    assert rc == 0
    out = capsys.readouterr().out
    assert "perfkit profile" in out and "eager" in out and "env:" in out
