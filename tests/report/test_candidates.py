import csv

import pytest

from perfkit.cli import main
from perfkit.report.candidates import candidate_rows, columns, write_csv
from perfkit.store import Kind
from perfkit.zoo.sources import resolve

CALIBRATION = "64 synthetic images (fixture)"
# the fixture run (tests/report/conftest.py): alexnet's params, top-1 and eager p50 at batch 1; onnx takes
# 0.7 × eager's time, int8 half onnx fp32's with 0.5 pp less top-1; Offline gains onnx 1.6×; batches 1 and 8
ALEXNET_PARAMS, ALEXNET_TOP1, ALEXNET_P50 = 61_100_840, 56.50, 8.0
MODELS, BATCHES = 3, 2


def _read(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _row(rows, model, runtime, precision, batch):
    [row] = [r for r in rows if (r["model"], r["runtime"], r["precision"], r["batch"]) == (model, runtime, precision,
                                                                                           batch)]
    return row


def _fixture_csv(store, make_run, tmp_path):
    run_id = make_run(store, int8=CALIBRATION, offline=True, busy=("alexnet", "eager"))
    return run_id, _read(write_csv(store.get_run(run_id), store.records(run_id), tmp_path / "c.csv"))


def test_one_row_per_candidate_and_batch_with_units_in_the_header(store, make_run, tmp_path):
    run_id, (header, rows) = _fixture_csv(store, make_run, tmp_path)
    assert tuple(header) == columns()
    assert header[:7] == ["model", "weights", "runtime", "precision", "batch", "device", "hardware"]
    assert {"latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "throughput_img_per_s", "offline_samples_per_s",
            "server_qps", "peak_memory_bytes", "published_top1_pct"} <= set(header)
    # 3 models × (eager fp32, onnx fp32, onnx int8) × 2 batches, and the tensorrt export that failed
    assert len(rows) == MODELS * 3 * BATCHES + 1
    assert len({(r["model"], r["runtime"], r["precision"], r["batch"]) for r in rows}) == len(rows)
    machine = store.get_run(run_id)["env"]["hardware"]["label"]  # e.g. "AMD EPYC ×2 avx2"
    assert {r["hardware"] for r in rows} == {machine} and {r["device"] for r in rows} == {"cpu"}


def test_the_values_are_those_of_the_run(store, make_run, tmp_path):
    _, (_, rows) = _fixture_csv(store, make_run, tmp_path)
    params, top1 = ALEXNET_PARAMS, ALEXNET_TOP1
    onnx = _row(rows, "alexnet", "onnx", "fp32", "8")
    median = ALEXNET_P50 * 0.7 * 4.5  # the fixture's onnx latency at batch 8
    assert float(onnx["latency_p50_ms"]) == pytest.approx(median)
    # 101 calls from 0.8 to 1.2 × the median: p90 at 1.16 ×, p99 at 1.196 ×
    assert float(onnx["latency_p90_ms"]) == pytest.approx(1.16 * median, rel=1e-5)
    assert float(onnx["latency_p99_ms"]) == pytest.approx(1.196 * median, rel=1e-5)
    assert float(onnx["throughput_img_per_s"]) == pytest.approx(8 / (median / 1000), rel=1e-5)
    assert float(onnx["offline_samples_per_s"]) == pytest.approx(8 / (median / 1000) * 1.6, rel=1e-2)
    assert int(onnx["peak_memory_bytes"]) == params * 4 + 8 * 10_000_000
    assert (float(onnx["top1_pct"]), float(onnx["top1_relative_to_eager_fp32"])) == (top1, 1.0)
    published = resolve("alexnet", weights="default").reference["acc1_pct"]
    assert float(onnx["published_top1_pct"]) == published != float(onnx["top1_pct"])  # in its own column
    assert (onnx["parity_passed"], onnx["contended"], onnx["int8_calibration"]) == ("True", "False", "")
    assert int(onnx["params"]) == params and onnx["weights"] == "AlexNet_Weights.IMAGENET1K_V1"

    int8 = _row(rows, "alexnet", "onnx", "int8", "1")
    assert float(int8["latency_p50_ms"]) == pytest.approx(ALEXNET_P50 * 0.7 * 0.5)
    assert float(int8["top1_relative_to_eager_fp32"]) == pytest.approx((top1 - 0.5) / top1, rel=1e-5)
    assert int8["int8_calibration"] == CALIBRATION
    assert int8["peak_memory_bytes"] == ""  # not measured for int8 here: empty, never 0


def test_not_measured_is_an_empty_cell(store, make_run, tmp_path):
    _, (_, rows) = _fixture_csv(store, make_run, tmp_path)
    eager = _row(rows, "alexnet", "eager", "fp32", "1")
    assert eager["parity_passed"] == ""  # eager is the reference: no parity check
    assert eager["offline_samples_per_s"] == "" and eager["server_qps"] == ""  # Offline ran at batch 8 only
    assert eager["contended"] == "True"  # the fixture's busy candidate
    assert _row(rows, "alexnet", "eager", "fp32", "8")["offline_samples_per_s"] != ""
    failed = _row(rows, "resnet18", "tensorrt", "fp16", "")
    assert failed["failed_steps"] == "export"
    assert all(failed[c] == "" for c in ("latency_p50_ms", "throughput_img_per_s", "top1_pct", "contended",
                                         "parity_passed", "peak_memory_bytes"))


@pytest.mark.parametrize(("calls", "p90_shown", "p99_shown"), [(100, True, True), (20, True, False), (5, False, False)])
def test_percentiles_from_too_few_calls_are_left_out(store, make_run, calls, p90_shown, p99_shown):
    """As in the tables (perfkit.profiler.samples.shown): a p99 needs 100 calls, a p90 10."""
    run_id = make_run(store, models=("alexnet",))
    records = store.records(run_id)
    for r in records:
        if r.kind == Kind.LATENCY:
            r.metrics["iterations"] = calls
    row = next(r for r in candidate_rows(records) if r["runtime"] == "onnx" and r["batch"] == 1)
    assert row["latency_p50_ms"] is not None
    assert (row["latency_p90_ms"] is not None, row["latency_p99_ms"] is not None) == (p90_shown, p99_shown)


def test_hardware_comes_from_each_candidates_records(store, make_run):
    """A sharded run's cells may run on different hosts: each row names the machine of its own records."""
    from perfkit.env import hardware

    records = store.records(make_run(store, models=("alexnet",)))
    for r in records:
        env = {**r.env, "cpu_model": "host-B CPU" if r.runtime == "onnx" else "host-A CPU", "cpu_count": 4}
        r.env = {**env, "hardware": hardware(env)}  # as the measuring side on that host computes it
    rows = candidate_rows(records, {"cpu_model": "the run's host"})
    assert {(r["runtime"], r["hardware"].split(" ×")[0]) for r in rows if r["runtime"] in ("eager", "onnx")} == {
        ("eager", "host-A"), ("onnx", "host-B")}


def test_report_cli_writes_the_candidate_csv(store, make_run, tmp_path, capsys):
    run_id = make_run(store, models=("resnet18",), error=False)
    assert main(["report", run_id, "--store", str(store.path), "--csv", str(tmp_path / "r.csv")]) == 0
    assert f"candidates of run {run_id} written to {tmp_path / 'r.csv'}" in capsys.readouterr().err.replace("\n", "")
    header, rows = _read(tmp_path / "r.csv")
    assert tuple(header) == columns() and len(rows) == 2 * BATCHES  # eager and onnx fp32
