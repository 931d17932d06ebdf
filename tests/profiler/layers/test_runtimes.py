"""Each runtime's own profiler on real models, mapped to the model's modules; `perfkit profile --layers` and
`perfkit summary --layers-from` on the command line; a runtime whose profiler is unavailable."""

import json
import types

import pytest

import perfkit
from perfkit.cli import main

FAST = {"warmup": 1, "warmup_seconds": 0, "iterations": 3, "min_seconds": 0, "memory": False, "weights": "random"}
FAST_FLAGS = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0", "--no-memory",
              "--weights", "random"]


def _profiles(records) -> dict:
    return {(r.runtime, r.precision, r.batch): r for r in records if r.kind == "layers"}


def test_a_runtime_whose_profiler_is_unavailable_says_why_and_the_others_run(monkeypatch, shared_artifacts, capsys,
                                                                              tmp_path):
    from perfkit.profiler.layers import onnxrt

    class NoProfiler:  # an ONNX Runtime build without the profiler: end_profiling names no trace
        def __init__(self, *args, **kwargs):
            pass

        def run(self, *args):
            return None

        def end_profiling(self):
            return ""

    import onnxruntime

    build = types.SimpleNamespace(**{**vars(onnxruntime), "InferenceSession": NoProfiler, "__version__": "9.9"})
    monkeypatch.setattr(onnxrt, "_onnxruntime", lambda: build)
    store = tmp_path / "s.db"
    done = perfkit.profile("lenet5", runtimes="eager,onnx", batch="1", layers=True, artifacts=shared_artifacts,
                           store=store, **FAST)
    assert not done.failed  # the layer profile could not be taken: said, not a failed measurement
    profiles = _profiles(done.records())
    onnx, eager = profiles[("onnx", "fp32", 1)], profiles[("eager", "fp32", 1)]
    assert onnx.status == "ok" and "onnxruntime 9.9 wrote no node events" in onnx.metrics["unavailable"]
    assert onnx.metrics["rows"] == [] and onnx.metrics["e2e_median_ms"] > 0  # its latency was still taken
    assert eager.metrics["coverage"] > 0.9 and "unavailable" not in eager.metrics
    assert main(["summary", "--layers-from", done.run_id, "--store", str(store)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "onnx fp32 b1: no layer profile — onnxruntime 9.9 wrote no node events" in out
    assert "eager fp32 b1: layers sum" in out and "features.0" in out


def test_summary_layers_from_a_run_without_layer_profiles_is_one_line(tmp_path, capsys, shared_artifacts):
    store = tmp_path / "s.db"
    done = perfkit.profile("lenet5", runtimes="eager", batch="1", store=store, artifacts=shared_artifacts, **FAST)
    assert main(["summary", "--layers-from", done.run_id, "--store", str(store)]) == 2
    assert f"run {done.run_id} has no layer profiles (`perfkit profile --layers` writes them)" in capsys.readouterr().err


@pytest.mark.slow
def test_every_runtime_maps_lenet5s_layers_to_its_modules(capsys, shared_artifacts, tmp_path):
    """onnx and openvino name the convolutions by module path with their MACs (their ReLUs fused in, at 0 ms);
    TorchScript and AOTInductor by op only, the rest of their profiled time kept as a row."""
    rc = main(["profile", "lenet5", "-f", "eager,onnx,openvino,torchscript,aoti", "-b", "1", "--layers", "--json",
               "--artifacts", str(shared_artifacts), "--store", str(tmp_path / "s.db"), *FAST_FLAGS])
    assert rc == 0
    records = {r["runtime"]: r["metrics"] for r in json.loads(capsys.readouterr().out)["records"]
               if r["kind"] == "layers"}
    for runtime in ("onnx", "openvino"):
        rows = {r["module"]: r for r in records[runtime]["rows"]}
        assert rows["features.0"]["macs"] == 352_800 and rows["features.0"]["ms"] > 0, runtime
        assert rows["features.3"]["type"] == "Conv2d" and rows["features.3"]["ms"] > 0, runtime
        assert rows["features.1"]["ms"] == 0 and rows["features.1"]["type"] == "ReLU", runtime  # fused into the conv
        assert sum(r["ms"] for r in rows.values()) == pytest.approx(records[runtime]["total_ms"])
    for runtime in ("torchscript", "aoti"):
        m = records[runtime]
        assert m["coverage"] == 0 and all(r["module"] is None for r in m["rows"])
        assert "(outside the profiled ops)" in {layer["name"] for layer in m["layers"]}


@pytest.mark.slow
def test_resnet18_layers_are_named_by_module_paths_covering_90_percent_in_eager_onnx_and_openvino(tmp_path):
    """The issue's done-when: per runtime, rows named by the model's module paths (layer1.0.conv1 ...) with MACs
    and ms, covering at least 90 % of the runtime's profiled time."""
    done = perfkit.profile("resnet18", runtimes="eager,onnx,openvino", batch="1", precision="fp32", layers=True,
                           store=tmp_path / "s.db", artifacts=tmp_path / "artifacts", **FAST)
    assert not done.failed
    for runtime in ("eager", "onnx", "openvino"):
        m = _profiles(done.records())[(runtime, "fp32", 1)].metrics
        assert m["coverage"] >= 0.9, (runtime, m["coverage"])
        rows = {r["module"]: r for r in m["rows"]}
        assert rows["layer1.0.conv1"]["macs"] == 64 * 56 * 56 * 64 * 9 and rows["layer1.0.conv1"]["ms"] > 0, runtime
        assert rows["fc"]["macs"] == 512 * 1000 and rows["layer4.1.conv2"]["ms"] > 0, runtime


def test_profile_layers_prints_the_layer_table_after_the_timings(capsys, tmp_path):
    rc = main(["profile", "lenet5", "-f", "eager", "-b", "1", "--layers", "--store", str(tmp_path / "s.db"),
               *FAST_FLAGS])
    assert rc == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.index("SingleStream") < out.index("time per layer (each runtime's own profiler)")
    assert "eager fp32 b1: layers sum" in out and "vs end-to-end median" in out and "classifier.5" in out
