"""The decision a report leads with (perfkit.report.decision), on the fixture runs of conftest.py."""

import pytest

from perfkit.report.decision import (
    NO_ACCURACY, RANDOM_WEIGHTS, SYNTHETIC_CALIBRATION, SYNTHETIC_INT8, decision_rows, decisions,
)
from perfkit.report.rows import load_run

SYNTHETIC = "32 seeded synthetic images (not meaningful for accuracy)"


def _by_model(store, run_id) -> dict[str, dict]:
    _, records = load_run(store, run_id)
    return {d["model"]: d for d in decisions(records)}


def test_the_fastest_variant_that_passed_parity_is_chosen_over_a_faster_one_that_failed(store, make_run):
    found = _by_model(store, make_run(store, parity_fail=True))
    alexnet = found["alexnet"]  # onnx fp32 is 0.7× eager's latency but failed parity at batch 8
    assert alexnet["choice"]["name"] == "eager fp32" and alexnet["choice"]["latency_ms"] == pytest.approx(8.0)
    assert alexnet["skipped"] == {"onnx fp32": "parity FAILED"} and alexnet["runner_up"] is None
    assert "left out (parity FAILED): onnx fp32" in alexnet["limits"]
    resnet = found["resnet18"]  # both passed: onnx is faster, eager is the runner-up at 1×
    assert (resnet["choice"]["name"], resnet["runner_up"]["name"]) == ("onnx fp32", "eager fp32")
    assert resnet["choice"]["batch"] == 1 and resnet["choice"]["speedup"] == pytest.approx(1 / 0.7)
    assert resnet["choice"]["peak_bytes"] == 11_689_512 * 4 + 10_000_000  # its memory at that batch
    assert resnet["runner_up"]["speedup"] == pytest.approx(1.0) and resnet["baseline"] == "eager fp32"
    assert "left out (export failed): tensorrt fp16" in resnet["limits"]  # the run's failed TensorRT export


def test_int8_wins_when_it_passes_and_the_accuracy_gate_holds_it_back_when_it_does_not(store, make_run):
    found = _by_model(store, make_run(store, int8=SYNTHETIC, error=False))
    assert found["resnet18"]["choice"]["name"] == "onnx int8"  # 0.5 pp below 69.7: 99.3 % of eager's
    assert found["resnet18"]["runner_up"]["name"] == "onnx fp32"
    assert found["resnet18"]["choice"]["speedup"] == pytest.approx(1 / 0.35)
    assert SYNTHETIC_CALIBRATION in found["resnet18"]["limits"]
    # onnx 0.5 pp lower: int8 is 1 pp below eager fp32 (98.6 % < 99 %): left out, onnx fp32 chosen
    found = _by_model(store, make_run(store, int8=SYNTHETIC, error=False, top1_shift=-0.5))
    resnet = found["resnet18"]
    assert resnet["choice"]["name"] == "onnx fp32" and resnet["skipped"]["onnx int8"].startswith("top-1 98.57 %")
    # random weights: accuracy means nothing, so no gate; int8 wins on speed and the limits say why
    googlenet = found["googlenet"]
    assert googlenet["choice"]["name"] == "onnx int8" and googlenet["choice"]["relative_top1"] < 0.99
    assert googlenet["limits"][0] == RANDOM_WEIGHTS


def test_without_accuracy_the_limits_say_so(store, make_run):
    found = _by_model(store, make_run(store, accuracy=False, int8=SYNTHETIC, error=False))
    assert found["resnet18"]["choice"]["name"] == "onnx int8"
    assert found["resnet18"]["limits"] == [NO_ACCURACY, SYNTHETIC_INT8]
    assert found["googlenet"]["limits"] == [RANDOM_WEIGHTS, SYNTHETIC_INT8]


def test_one_line_per_scenario_and_contended_timings_limit_the_answer(store, make_run):
    found = _by_model(store, make_run(store, parity_fail=True, offline=True, busy=("resnet18", "onnx")))
    [offline] = found["alexnet"]["scenarios"]  # onnx would serve more, but failed parity
    assert offline["scenario"] == "offline" and offline["unit"] == "samples/s"
    assert offline["choice"]["name"] == "eager fp32" and offline["runner_up"] is None
    [offline] = found["resnet18"]["scenarios"]
    assert (offline["choice"]["name"], offline["runner_up"]["name"]) == ("onnx fp32", "eager fp32")
    assert offline["choice"]["batch"] == 8 and offline["choice"]["value"] > offline["runner_up"]["value"]
    assert any(line.startswith("contended timing") for line in found["resnet18"]["limits"])
    assert not any(line.startswith("contended") for line in found["alexnet"]["limits"])


def test_decision_rows_are_the_text_both_reports_show(store, make_run):
    _, records = load_run(store, make_run(store, parity_fail=True, offline=True))
    rows = decision_rows(decisions(records))
    assert [(r["model"], r["scenario"]) for r in rows][:2] == [("resnet18", "SingleStream p50"),
                                                             ("resnet18", "Offline samples/s")]
    first = rows[0]
    assert first["first"] and first["choice"] == "onnx fp32" and first["figure"] == "14.0 ms"
    assert first["speedup"] == "1.43× vs eager fp32" and first["memory"] == "54.1 MiB"
    assert first["runner_up"] == "eager fp32 20.0 ms (1.00×)" and first["limits"]
    assert not rows[1]["first"] and rows[1]["limits"] == [] and rows[1]["figure"].endswith("samples/s (K=2)")


def test_memory_measured_at_another_batch_is_shown_with_that_batch(store, make_run):
    _, records = load_run(store, make_run(store, error=False))
    records = [r for r in records if not (r.kind == "memory" and r.batch == 1)]  # memory at batch 8 only
    [resnet] = [r for r in decision_rows(decisions(records)) if r["model"] == "resnet18"]
    assert resnet["batch"] == 1 and resnet["memory"] == "120.9 MiB (batch 8)"  # (4 × params + 8 × 10 MB) / 2**20


def _v(name, latency_ms, batch=1):
    runtime, precision = name.split()
    return {"name": name, "runtime": runtime, "precision": precision, "device": "cpu", "batch": batch,
            "latency_ms": latency_ms}


def test_a_runner_up_within_the_timing_noise_is_called_a_tie_and_a_clear_one_is_not():
    from perfkit.report.decision import _tie

    spread = [0.8 + 0.4 * i / 100 for i in range(101)]  # ±20 % around the median, as a busy machine gives
    samples = {("onnx", "int8", "cpu", 1): [2.0 * x for x in spread],
               ("openvino", "int8", "cpu", 1): [2.04 * x for x in spread],  # 2 % slower: inside the noise
               ("eager", "fp32", "cpu", 1): [3.0 * x for x in spread],  # 1.5×: clearly slower
               ("eager", "fp32", "cpu", 8): [2.04 * x for x in spread]}
    tie = _tie(_v("onnx int8", 2.0), _v("openvino int8", 2.04), samples)
    assert tie.startswith("onnx int8 and openvino int8 are a tie") and "median 1.02" in tie
    assert _tie(_v("onnx int8", 2.0), _v("eager fp32", 3.0), samples) is None
    assert _tie(_v("onnx int8", 2.0), _v("eager fp32", 2.04, batch=8), samples) is None  # not the same batch
    assert _tie(_v("onnx int8", 2.0), _v("tensorrt int8", 2.0), samples) is None  # no samples kept: no claim
    assert _tie(_v("onnx int8", 2.0), None, samples) is None


def test_the_fixture_run_has_no_tie_where_onnx_is_clearly_faster(store, make_run):
    resnet = _by_model(store, make_run(store))["resnet18"]  # onnx at 0.7× eager, each ±20 %
    assert resnet["runner_up"] is not None and not any("tie" in line for line in resnet["limits"])
