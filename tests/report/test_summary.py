import pytest
from rich.console import Console

from perfkit.report.summary import print_run_summary, published, run_summary, summary_rows, training_rows
from perfkit.store import Kind, Record


def _row(rows, model, runtime):
    [row] = [r for r in rows if r["model"] == model and r["runtime"] == runtime]
    return row


def test_one_row_per_model_runtime_precision(store, make_run):
    data = run_summary(store, make_run(store))
    keys = [(r["model"], r["runtime"], r["precision"]) for r in data["rows"]]
    assert len(keys) == len(set(keys)) == 7  # 3 models × (eager, onnx) + the failed tensorrt export
    # models in run order, eager before onnx
    assert keys[:3] == [("resnet18", "eager", "fp32"), ("resnet18", "onnx", "fp32"), ("resnet18", "tensorrt", "fp16")]


def test_accuracy_measured_published_and_delta(store, make_run):
    rows = run_summary(store, make_run(store, top1_shift=-2.0))["rows"]
    onnx = _row(rows, "resnet18", "onnx")
    ref = published("resnet18", "ResNet18_Weights.IMAGENET1K_V1")
    assert ref["acc1_pct"] == pytest.approx(69.758)  # torchvision metadata, not a fixture number
    assert onnx["top1_pct"] == pytest.approx(67.70)
    assert onnx["ref_top1_pct"] == pytest.approx(69.758)
    assert onnx["delta_top1_vs_ref_pp"] == pytest.approx(67.70 - 69.758)
    assert onnx["status"] == "warn" and any("below published" in f for f in onnx["flags"])
    assert _row(rows, "resnet18", "eager")["status"] == "ok"


def test_latency_memory_parity_params_per_row(store, make_run):
    rows = run_summary(store, make_run(store, parity_fail=True))["rows"]
    alex = _row(rows, "alexnet", "onnx")
    assert [b["batch"] for b in alex["batches"]] == [1, 8]
    assert alex["batches"][0]["latency_median_ms"] == pytest.approx(8.0 * 0.7)
    assert alex["batches"][1]["throughput_per_s"] == pytest.approx(1000 * 8 / (8.0 * 0.7 * 4.5))
    assert alex["batches"][0]["peak_bytes"] == 61_100_840 * 4 + 10_000_000
    assert alex["params"] == 61_100_840 and alex["macs"] == 714_197_696
    assert alex["parity_passed"] is False and alex["parity_agreement"] == 0.75
    assert alex["status"] == "fail" and "parity FAIL" in alex["flags"]
    assert _row(rows, "alexnet", "eager")["parity_passed"] is None  # eager is the reference


def test_random_weights_are_marked_and_never_accuracy_flagged(store, make_run):
    rows = run_summary(store, make_run(store))["rows"]
    g = _row(rows, "googlenet", "eager")
    assert g["random"] is True and g["weights"] == "random:seed0"
    assert g["delta_top1_vs_ref_pp"] < -60  # random weights are far below published...
    assert g["status"] == "ok"  # ...which is expected, not a regression
    assert any("random weights" in f for f in g["flags"])
    assert not _row(rows, "resnet18", "eager")["random"]


def test_error_records_make_a_failed_row_and_a_failure_entry(store, make_run):
    data = run_summary(store, make_run(store))
    trt = _row(data["rows"], "resnet18", "tensorrt")
    assert trt["status"] == "fail" and trt["errors"] == ["export"]
    assert trt["weights"] == "ResNet18_Weights.IMAGENET1K_V1"  # filled from the model's other records
    assert trt["top1_pct"] is None and trt["batches"] == []
    [f] = data["failures"]
    assert f["kind"] == "export" and f["runtime"] == "tensorrt" and "TensorRT is not installed" in f["error"]


def test_newest_record_wins_within_a_run(store, make_run):
    with store.run() as run_id:
        for ms in (10.0, 7.0):
            store.add(Record(kind=Kind.LATENCY, model="lenet5", runtime="eager", precision="fp32", batch=1,
                             metrics={"iterations": 5, "latency_median_ms": ms, "latency_p99_ms": ms,
                                      "throughput_per_s": 1e3 / ms}), run_id)
    [row] = summary_rows(store.records(run_id))
    assert row["batches"][0]["latency_median_ms"] == 7.0
    assert row["ref_top1_pct"] is None and row["top1_pct"] is None  # lenet5 has no published numbers


def test_training_rows(store, make_run):
    data = run_summary(store, make_run(store, train=True))
    rows = {r["model"]: r for r in data["training"]}
    assert set(rows) == {"resnet18", "alexnet"}
    r = rows["alexnet"]
    assert r["best_val_acc"] == pytest.approx(0.50) and r["best_epoch"] == 2
    assert r["epoch_seconds_mean"] == pytest.approx(11.0) and r["total_seconds"] == 34.0
    assert r["epochs_done"] == 3 and r["epochs"] == 3 and r["random"] and r["dataset"] == "cifar10"
    # training records make no candidate rows (and don't confuse the weights of the others)
    assert all(row["runtime"] is not None for row in data["rows"])
    assert _row(data["rows"], "resnet18", "tensorrt")["weights"] == "ResNet18_Weights.IMAGENET1K_V1"


def test_training_best_epoch_without_trainer_bookkeeping(store, make_run):
    with store.run() as run_id:
        for epoch, acc in enumerate((0.2, 0.6, 0.4)):
            store.add(Record(kind=Kind.TRAIN, model="lenet5", metrics={
                "epoch": epoch, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": acc,
                "epoch_seconds": 2.0}), run_id)
    [row] = training_rows(store.records(run_id))
    assert row["best_val_acc"] == 0.6 and row["best_epoch"] == 1 and row["total_seconds"] == 6.0


def test_rich_summary_prints_rows_random_mark_and_failures(store, make_run):
    run_id = make_run(store, train=True, parity_fail=True)
    out = Console(record=True, width=220)
    print_run_summary(store, run_id, console=out)
    text = out.export_text()
    assert f"run {run_id}" in text and "(random)" in text
    assert "could not run" in text and "RuntimeError: TensorRT is not installed [tensorrt extra]" in text
    assert "alexnet onnx fp32: parity FAIL" in text
    assert "training comparison" in text and "cifar10" in text
    assert "69.76" in text  # published resnet18 top-1


def test_no_accuracy_run_says_so(store, make_run):
    out = Console(record=True, width=220)
    print_run_summary(store, make_run(store, accuracy=False), console=out)
    assert "No measured accuracy in this run" in out.export_text()


def test_parity_is_the_worst_over_batches(store, make_run):
    run_id = make_run(store, parity_fail=True)
    per_batch = {r.batch: r.metrics["passed"] for r in store.records(run_id, Kind.PARITY, "alexnet")
                 if r.runtime == "onnx"}
    assert per_batch == {1: True, 8: False}  # the fixture: passes at batch 1 only
    alex = _row(run_summary(store, run_id)["rows"], "alexnet", "onnx")
    assert alex["parity_passed"] is False and alex["parity_agreement"] == 0.75 and alex["parity_max_abs_diff"] == 0.5


def test_accuracy_on_a_subset_is_noted(store):
    with store.run() as run_id:
        store.add(Record(kind=Kind.ACCURACY, model="resnet18", runtime="eager", precision="fp32",
                         weights="ResNet18_Weights.IMAGENET1K_V1", metrics={
                             "images": 500, "dataset_images": 50_000, "top1_correct": 350, "top5_correct": 450,
                             "top1_pct": 70.0, "top5_pct": 90.0}), run_id)
    [row] = summary_rows(store.records(run_id))
    assert "accuracy on 500 of 50000 images (a subset)" in row["flags"] and row["status"] == "ok"
