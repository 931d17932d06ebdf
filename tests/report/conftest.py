"""Fixture runs for the report tests.

These records are TEST INPUTS written by hand to the schema (perfkit/store/schema.py and the metric
names every producer agreed on); they are not measurements and never appear in a report of a real run.
"""

from __future__ import annotations

import pytest

from perfkit.store import Kind, Record, Store

# model -> (weights identity, params, MACs, fixture top-1, fixture top-5, fixture eager p50 ms at batch 1)
FIXTURE_MODELS = {
    "resnet18": ("ResNet18_Weights.IMAGENET1K_V1", 11_689_512, 1_814_073_856, 69.70, 89.10, 20.0),
    "alexnet": ("AlexNet_Weights.IMAGENET1K_V1", 61_100_840, 714_197_696, 56.50, 79.00, 8.0),
    "googlenet": ("random:seed0", 6_624_904, 1_504_879_680, 0.10, 0.50, 15.0),
}
RUNTIME_SPEED = {"eager": 1.0, "onnx": 0.7}  # fixture latency factor per runtime
BATCHES = (1, 8)


def _add(store: Store, run_id: str, kind: Kind, model: str, metrics: dict, **cols) -> None:
    store.add(Record(kind=kind, model=model, metrics=metrics, device="cpu", **cols), run_id)


def _make_run(store: Store, *, accuracy: bool = True, train: bool = False, latency_factor: float = 1.0,
             top1_shift: float = 0.0, parity_fail: bool = False, error: bool = True,
             models: tuple[str, ...] = tuple(FIXTURE_MODELS), command: str = "perfkit run (fixture)") -> str:
    """Write one fixture run and return its id.

    latency_factor scales every latency (and divides throughput); top1_shift is added to the onnx
    top-1; parity_fail makes alexnet/onnx fail parity at batch 8 (it passes at batch 1); error adds a failed tensorrt export.
    """
    with store.run(command) as run_id:
        for model in models:
            weights, params, macs, top1, top5, p50 = FIXTURE_MODELS[model]
            w = {"weights": weights}
            _add(store, run_id, Kind.COMPLEXITY, model, {
                "params": params, "trainable_params": params, "non_trainable_params": 0, "macs": macs,
                "flops": 2 * macs, "input_size": [3, 224, 224], "macs_convention": "conv+linear",
                "params_convention": "torchvision pretrained", "total_mb": 123.4,
                "layers": [{"layer": "conv1 (Conv2d)", "output_shape": [1, 64, 112, 112], "params": 9408},
                           {"layer": "fc (Linear)", "output_shape": [1, 1000], "params": 513000}],
            }, **w)
            for runtime, speed in RUNTIME_SPEED.items():
                cols = {"runtime": runtime, "precision": "fp32", **w}
                if runtime != "eager":
                    _add(store, run_id, Kind.EXPORT, model, {"export_seconds": 1.5, "artifact_bytes": params * 4,
                                                             "cached": False, "warnings": []}, **cols)
                    for batch in BATCHES:  # the parity checker writes one record per batch
                        failed = parity_fail and model == "alexnet" and batch == BATCHES[-1]
                        _add(store, run_id, Kind.PARITY, model, {
                            "samples": 8, "max_abs_diff": 0.5 if failed else 2e-6, "mean_abs_diff": 1e-7,
                            "top1_agreement": 0.75 if failed else 1.0, "top5_overlap": 1.0, "passed": not failed,
                            "inputs": "synthetic", "atol": 1e-4, "rtol": 1e-3, "cosine_min": 0.999999,
                        }, batch=batch, **cols)
                if accuracy:
                    t1 = max(0.0, top1 + (top1_shift if runtime == "onnx" else 0.0))
                    _add(store, run_id, Kind.ACCURACY, model, {
                        "images": 1000, "dataset_images": 1000, "top1_correct": round(t1 * 10),
                        "top5_correct": round(top5 * 10), "top1_pct": t1, "top5_pct": top5,
                        "delta_top1_vs_eager_pp": t1 - top1,
                        # the harness stores no published numbers for random weights; others are looked up
                        **({"ref_top1_pct": None, "ref_top5_pct": None} if weights.startswith("random") else {}),
                    }, batch=64, **cols)
                for batch in BATCHES:
                    ms = p50 * speed * latency_factor * (1 + 0.5 * (batch - 1))
                    _add(store, run_id, Kind.LATENCY, model, {
                        "iterations": 50, "latency_median_ms": ms, "latency_p99_ms": 1.2 * ms,
                        "throughput_per_s": 1000.0 * batch / ms,
                    }, batch=batch, **cols)
                    _add(store, run_id, Kind.MEMORY, model, {"peak_bytes": params * 4 + batch * 10_000_000,
                                                             "method": "rss"}, batch=batch, **cols)
        if error:
            store.add(Record.failure(Kind.EXPORT, models[0], RuntimeError("TensorRT is not installed [tensorrt extra]"),
                                     runtime="tensorrt", precision="fp16", device="cpu"), run_id)
        if train:
            for model in models[:2]:
                for epoch in range(3):
                    _add(store, run_id, Kind.TRAIN, model, {
                        "epoch": epoch, "epochs": 3, "train_loss": 2.0 - 0.3 * epoch, "train_acc": 0.3 + 0.1 * epoch,
                        "val_loss": 2.1 - 0.3 * epoch, "val_acc": 0.25 + 0.1 * epoch + (0.05 if model == "alexnet" else 0),
                        "epoch_seconds": 10.0 + epoch, "images_per_s": 500.0, "dataset": "cifar10",
                        **({"best_val_acc": 0.45 + (0.05 if model == "alexnet" else 0), "best_epoch": 2,
                            "total_seconds": 34.0} if epoch == 2 else {}),
                    }, weights="random:seed0", batch=32)
    return run_id


@pytest.fixture
def make_run():
    """``make_run(store, **options) -> run_id``: write one fixture run (see ``_make_run``)."""
    return _make_run
