"""Report rows (perfkit.report.rows): built from a run's records only."""

import pytest

from perfkit.record import model_record
from perfkit.report.rows import published_by_model, run_summary, summary_rows, training_rows
from perfkit.store import Kind, Record
from perfkit.zoo.sources import resolve


def _row(rows, model, runtime):
    [row] = [r for r in rows if r["model"] == model and r["runtime"] == runtime]
    return row


def _latency(model="lenet5", ms=1.0, **cols):
    cols = {"runtime": "eager", "precision": "fp32", "batch": 1, **cols}
    return Record(kind=Kind.LATENCY, model=model, **cols, metrics={
        "iterations": 5, "latency_median_ms": ms, "latency_p99_ms": ms, "throughput_per_s": 1e3 / ms})


def test_one_row_per_model_runtime_precision(store, make_run):
    data = run_summary(store, make_run(store))
    keys = [(r["model"], r["runtime"], r["precision"]) for r in data["rows"]]
    assert len(keys) == len(set(keys)) == 7  # 3 models × (eager, onnx) + the failed tensorrt export
    # models in run order, eager before onnx
    assert keys[:3] == [("resnet18", "eager", "fp32"), ("resnet18", "onnx", "fp32"), ("resnet18", "tensorrt", "fp16")]


def test_published_numbers_come_from_the_model_records_of_the_run(store, make_run):
    run_id = make_run(store)
    refs = published_by_model(store.records(run_id))
    ref = refs[("resnet18", "ResNet18_Weights.IMAGENET1K_V1")]
    assert ref["acc1_pct"] == pytest.approx(69.758)  # torchvision metadata, recorded with the run
    assert ref["acc5_pct"] == pytest.approx(89.078) and ref["params"] == 11_689_512
    assert ref["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    # random weights: the architecture's published numbers, keyed by the weights that ran
    assert refs[("googlenet", "random:seed0")]["acc1_pct"] == pytest.approx(69.778)
    assert len(store.records(run_id, kind=Kind.MODEL)) == 3  # once per model and run


def test_a_run_without_model_records_has_no_published_numbers(store):
    """Nothing is looked up in the zoo: a run that did not record them has none."""
    with store.run() as run_id:
        store.add(_latency("resnet18", 5.0, weights="ResNet18_Weights.IMAGENET1K_V1"), run_id)
    [row] = summary_rows(store.records(run_id))
    assert row["ref_top1_pct"] is None and row["ref_weights"] is None and row["ref_params"] is None


def test_the_published_numbers_are_those_recorded_not_the_zoo_s(store):
    record = model_record(resolve("resnet18", weights="default"))
    record.metrics["ref_top1_pct"] = 12.5  # as if torchvision's metadata had said so when the run was made
    with store.run() as run_id:
        store.add(record, run_id)
        store.add(_latency("resnet18", 5.0, weights="ResNet18_Weights.IMAGENET1K_V1"), run_id)
    [row] = summary_rows(store.records(run_id))
    assert row["ref_top1_pct"] == 12.5 and row["ref_weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert row["ref_params"] == 11_689_512


def test_accuracy_measured_published_and_delta(store, make_run):
    rows = run_summary(store, make_run(store, top1_shift=-2.0))["rows"]
    onnx = _row(rows, "resnet18", "onnx")
    assert onnx["top1_pct"] == pytest.approx(67.70)
    assert onnx["ref_top1_pct"] == pytest.approx(69.758)
    assert onnx["delta_top1_vs_ref_pp"] == pytest.approx(67.70 - 69.758)
    assert onnx["status"] == "warn" and any("below published" in f for f in onnx["flags"])
    assert any("below eager" in f for f in onnx["flags"])
    assert _row(rows, "resnet18", "eager")["status"] == "ok"


def test_published_accuracy_is_not_shown_beside_accuracy_on_your_own_classes(store):
    """ImageNet's published top-1 means nothing on the user's ImageFolder: no published column, no delta, no flag."""
    record = model_record(resolve("resnet18", weights="default"))  # weights with published ImageNet numbers
    weights = "ResNet18_Weights.IMAGENET1K_V1"
    accuracy = Record(kind=Kind.ACCURACY, model="resnet18", runtime="eager", precision="fp32", batch=32, weights=weights,
                      metrics={"images": 40, "top1_correct": 10, "top5_correct": 30, "top1_pct": 25.0, "top5_pct": 75.0,
                               "ref_top1_pct": None, "layout": "imagefolder", "num_classes": 1000})
    with store.run() as run_id:
        store.add(record, run_id)
        store.add(accuracy, run_id)
    [row] = summary_rows(store.records(run_id))
    assert row["top1_pct"] == 25.0 and row["ref_top1_pct"] is None and row["ref_top5_pct"] is None
    assert row["delta_top1_vs_ref_pp"] is None and not any("published" in f for f in row["flags"])
    assert row["ref_params"] == 11_689_512  # what is not accuracy still comes from the model record


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
    assert g["ref_top1_pct"] == pytest.approx(69.778)  # the architecture's, from the model record
    assert g["delta_top1_vs_ref_pp"] < -60  # random weights are far below published...
    assert g["status"] == "ok"  # ...which is expected, not a regression
    assert any("random weights" in f for f in g["flags"])
    assert not _row(rows, "resnet18", "eager")["random"]


def test_error_records_make_a_failed_row_and_a_failure_entry(store, make_run):
    data = run_summary(store, make_run(store))
    trt = _row(data["rows"], "resnet18", "tensorrt")
    assert trt["status"] == "fail" and trt["errors"] == ["export"]
    assert trt["weights"] == "ResNet18_Weights.IMAGENET1K_V1"  # filled from the model's other records
    assert trt["ref_top1_pct"] == pytest.approx(69.758)  # and so are its published numbers
    assert trt["top1_pct"] is None and trt["batches"] == []
    [f] = data["failures"]
    assert f["kind"] == "export" and f["runtime"] == "tensorrt" and "TensorRT is not installed" in f["error"]
    assert data["run"]["status"] == "failed"  # the run's status agrees with its records


def test_newest_record_wins_within_a_run(store):
    with store.run() as run_id:
        for ms in (10.0, 7.0):
            store.add(_latency("lenet5", ms), run_id)
    [row] = summary_rows(store.records(run_id))
    assert row["batches"][0]["latency_median_ms"] == 7.0
    assert row["ref_top1_pct"] is None and row["top1_pct"] is None  # lenet5 has no published numbers


def test_superseded_records_are_not_reported(store):
    run_id = store.start_run("perfkit run")
    store.add(_latency("lenet5", 10.0), run_id)
    store.supersede(run_id, "lenet5", [Kind.LATENCY])
    store.add(_latency("lenet5", 12.0), run_id)  # the re-measurement, slower
    [row] = run_summary(store, run_id)["rows"]
    assert row["batches"][0]["latency_median_ms"] == 12.0


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
    assert {(row["model"], row["runtime"]) for row in data["rows"]} == {
        (m, rt) for m in ("resnet18", "alexnet", "googlenet") for rt in ("eager", "onnx")} | {("resnet18", "tensorrt")}
    assert _row(data["rows"], "resnet18", "tensorrt")["weights"] == "ResNet18_Weights.IMAGENET1K_V1"


def test_training_best_epoch_without_trainer_bookkeeping(store):
    with store.run() as run_id:
        for epoch, acc in enumerate((0.2, 0.6, 0.4)):
            store.add(Record(kind=Kind.TRAIN, model="lenet5", runtime="eager", metrics={
                "epoch": epoch, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": acc,
                "epoch_seconds": 2.0}), run_id)
    [row] = training_rows(store.records(run_id))
    assert row["best_val_acc"] == 0.6 and row["best_epoch"] == 1 and row["total_seconds"] == 6.0


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
