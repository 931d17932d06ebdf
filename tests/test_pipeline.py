"""`perfkit run` end to end on LeNet-5 (a real model small enough to export and profile in seconds)."""

import pytest

from perfkit import pipeline
from perfkit.cli import main
from perfkit.errors import PerfkitError
from perfkit.plan import ScenarioRun
from perfkit.profiler.scenarios import get
from perfkit.profiler.scenarios.offline import OfflineConfig
from perfkit.profiler.timing import TimingConfig
from perfkit.store import Kind, Store

FAST = TimingConfig(warmup=1, warmup_seconds=0.0, iterations=3, min_seconds=0.0)
FAST_OFFLINE = OfflineConfig(seconds=0.05, max_requests=2)
SCENARIOS = (ScenarioRun(get("singlestream"), FAST), ScenarioRun(get("offline"), FAST_OFFLINE))
QUICK_OFFLINE = ["--offline-seconds", "0.05", "--offline-max-requests", "2"]


def _cfg(**kw):
    base = dict(models=["lenet5"], weights="random", runtimes=["torchscript", "onnx"], batches=[1, 2], parity_samples=4,
                parity_batches=[1, 2], scenarios=SCENARIOS, memory=False)
    return pipeline.RunConfig(**{**base, **kw})


def _keys(records):
    return sorted(r.key for r in records)


def test_every_step_writes_its_records(store):
    result = pipeline.run_pipeline(_cfg(), store)
    assert result.failures == [] and result.skipped == []
    assert store.get_run(result.run_id)["status"] == "ok"
    recs = store.records(result.run_id)
    kinds = {(r.kind, r.runtime) for r in recs}
    assert (Kind.MODEL, None) in kinds and (Kind.COMPLEXITY, "eager") in kinds
    for fmt in ("torchscript", "onnx"):
        assert (Kind.EXPORT, fmt) in kinds and (Kind.PARITY, fmt) in kinds
    latency = {(r.runtime, r.batch) for r in recs if r.kind == Kind.LATENCY}
    assert latency == {(rt, b) for rt in ("eager", "torchscript", "onnx") for b in (1, 2)}
    offline = {(r.runtime, r.batch): r.metrics for r in recs if r.kind == Kind.THROUGHPUT}
    assert set(offline) == {(rt, 2) for rt in ("eager", "torchscript", "onnx")}  # the largest batch only
    assert all(m["samples_per_s"] > 0 and m["requests"] in (1, 2) and m["window_seconds"] == 0.05
               for m in offline.values())
    assert all(r.status == "ok" for r in recs)
    assert all(r.weights == "random:seed0" for r in recs)
    # exactly the planned keys, each once
    planned = set()
    for step in pipeline.STEPS.values():
        planned |= step.keys(_cfg(), _cfg().plan(_spec(), _cfg().backends()), _spec(), _cfg().backends())
    measured = [r.key for r in recs if r.kind not in (Kind.MODEL, Kind.ACCURACY)]
    assert sorted(measured) == sorted(k for k in planned if k[0] != "accuracy")


def _spec():
    from perfkit.zoo.sources import resolve

    return resolve("lenet5", weights="random")


# -- every kind of failure is recorded, the rest go on, and the exit code says so --------------------

def _boom(*args, **kwargs):
    raise RuntimeError("simulated failure")


def _break(monkeypatch, kind):
    import perfkit.analysis
    import perfkit.artifacts
    import perfkit.profiler.memory
    import perfkit.profiler.scenarios.singlestream as singlestream

    if kind == "complexity":
        monkeypatch.setattr(perfkit.analysis, "analyze", _boom)
    elif kind == "export":
        real = perfkit.artifacts.ensure_artifact
        monkeypatch.setattr(perfkit.artifacts, "ensure_artifact",
                            lambda spec, backend, ctx, **kw: _boom() if backend.name == "onnx" else real(spec, backend, ctx, **kw))
    elif kind == "parity":
        from perfkit.accuracy import parity

        real = parity.compare
        monkeypatch.setattr(parity, "compare", lambda ref, cand, tol: real(ref, cand + 1.0, tol))
    elif kind == "latency":
        real = singlestream.time_runner
        monkeypatch.setattr(singlestream, "time_runner",
                            lambda runner, *a, **k: _boom() if runner.name == "onnx" else real(runner, *a, **k))
    elif kind == "memory":
        monkeypatch.setattr(perfkit.profiler.memory, "start_memory", _boom)


@pytest.mark.parametrize("kind", ["complexity", "export", "parity", "latency", "memory"])
def test_a_failing_step_is_recorded_the_rest_go_on_and_the_run_fails(kind, store, monkeypatch):
    _break(monkeypatch, kind)
    result = pipeline.run_pipeline(_cfg(memory=kind == "memory"), store)
    assert any(f"lenet5 {kind}" in f for f in result.failures), result.failures
    if kind in ("export", "latency"):  # only the broken runtime fails (its later steps with it)
        assert all(" onnx " in f for f in result.failures), result.failures
    assert store.get_run(result.run_id)["status"] == "failed"
    recs = store.records(result.run_id)
    # the other runtime still went through every step
    assert any(r.kind == Kind.LATENCY and r.runtime == "torchscript" and r.status == "ok" for r in recs) or kind == "latency"
    if kind != "parity":
        assert any(r.kind == kind and r.status == "error" for r in recs)


def test_cli_exit_code_is_1_for_a_memory_failure(monkeypatch, capsys, tmp_path):
    """`perfkit run` once exited 0 where `perfkit profile` exited 1 for the same memory failure."""
    _break(monkeypatch, "memory")
    code = main(["run", "lenet5", "--weights", "random", "-f", "torchscript", "-b", "1", "--parity-samples", "2",
                 "--html", str(tmp_path / "r.html"), *QUICK_OFFLINE])
    err = capsys.readouterr().err
    assert code == 1 and "memory" in err and "simulated failure" in err


def test_accuracy_on_a_model_that_is_not_an_imagenet_classifier_is_a_recorded_failure(store, tmp_path):
    from perfkit.data.synthetic import make_imagenet_folder

    make_imagenet_folder(tmp_path / "val", classes=[1, 2], per_class=1)
    result = pipeline.run_pipeline(_cfg(data=tmp_path / "val", steps=(pipeline.Step.ACCURACY,)), store)
    [failure] = result.failures
    assert "accuracy" in failure and "1000-class" in failure


def test_unknown_model_fails_alone(store):
    result = pipeline.run_pipeline(_cfg(models=["resnet19", "lenet5"], steps=(pipeline.Step.COMPLEXITY,)), store)
    assert len(result.failures) == 1 and "resnet19" in result.failures[0]
    assert {r.model for r in store.records(result.run_id) if r.status == "ok"} == {"lenet5"}


# -- resume -------------------------------------------------------------------------------------------

def test_resume_skips_finished_steps_and_reruns_partial_ones(store):
    first = pipeline.run_pipeline(_cfg(steps=(pipeline.Step.COMPLEXITY, pipeline.Step.EXPORT)), store)
    with pytest.raises(PerfkitError, match="no run"):
        pipeline.run_pipeline(_cfg(resume="20990101"), store)
    # drop one latency record as if the run had been killed mid-profile
    again = pipeline.run_pipeline(_cfg(resume=first.run_id[:15]), store)  # a unique prefix is enough
    assert again.run_id == first.run_id
    assert set(again.skipped) == {"lenet5 complexity", "lenet5 export"}
    recs = store.records(first.run_id)
    assert len([r for r in recs if r.kind == Kind.COMPLEXITY]) == 1  # not measured twice
    assert len([r for r in recs if r.kind == Kind.MODEL]) == 1
    keys = [r.key for r in recs]
    assert len(keys) == len(set(keys))  # one current record per planned key


def test_a_partly_finished_step_is_not_finished(store):
    done = pipeline.run_pipeline(_cfg(), store)
    with store._transaction() as db:  # a killed profile: only some latency records were written
        db.execute("DELETE FROM records WHERE run_id=? AND kind='latency' AND runtime='onnx'", (done.run_id,))
    again = pipeline.run_pipeline(_cfg(resume=done.run_id), store)
    assert "lenet5 profile" not in again.skipped and "lenet5 parity" in again.skipped
    recs = store.records(done.run_id)
    latency = sorted((r.runtime, r.batch) for r in recs if r.kind == Kind.LATENCY)
    assert latency == sorted((rt, b) for rt in ("eager", "torchscript", "onnx") for b in (1, 2))
    old = store.records(done.run_id, include_superseded=True)
    assert len(old) > len(recs)  # the earlier attempt is kept, marked superseded
    assert store.get_run(done.run_id)["status"] == "ok" and again.failures == []


def test_resume_re_measures_unreadable_records_and_a_run_that_keeps_one_is_not_ok(store, corrupt_metrics):
    steps = (pipeline.Step.COMPLEXITY, pipeline.Step.EXPORT)
    first = pipeline.run_pipeline(_cfg(runtimes=["torchscript"], steps=steps), store)
    for kind in ("model", "complexity", "export"):
        corrupt_metrics(store.path, "[1,2]", kind=kind)
    # a resume of the complexity step alone re-measures what it cannot read; the export record stays unreadable
    partial = pipeline.run_pipeline(_cfg(runtimes=["torchscript"], steps=steps[:1], resume=first.run_id), store)
    assert partial.skipped == []
    [line] = partial.failures
    assert "(export lenet5 torchscript fp32)" in line and "cannot be read" in line
    assert store.get_run(first.run_id)["status"] == "failed"
    full = pipeline.run_pipeline(_cfg(runtimes=["torchscript"], steps=steps, resume=first.run_id), store)
    assert full.failures == [] and full.skipped == ["lenet5 complexity"]
    assert store.get_run(first.run_id)["status"] == "ok" and store.unreadable(first.run_id) == []
    assert sorted(str(r.kind) for r in store.records(first.run_id)) == ["complexity", "export", "model"]


def test_resume_after_a_failed_step_reruns_it_and_the_status_agrees(store, monkeypatch):
    with monkeypatch.context() as m:
        _break(m, "export")
        failed = pipeline.run_pipeline(_cfg(), store)
    assert store.get_run(failed.run_id)["status"] == "failed"
    fixed = pipeline.run_pipeline(_cfg(resume=failed.run_id), store)
    assert fixed.failures == [] and store.get_run(failed.run_id)["status"] == "ok"
    assert "lenet5 export" not in fixed.skipped and "lenet5 parity" not in fixed.skipped
    recs = store.records(failed.run_id)
    assert all(r.status == "ok" for r in recs)
    assert any(r.kind == Kind.PARITY and r.runtime == "onnx" and r.metrics["passed"] for r in recs)


def test_cli_run_prints_summary_and_writes_html(tmp_path, capsys):
    html = tmp_path / "r.html"
    code = main(["run", "lenet5", "--weights", "random", "-f", "torchscript", "-b", "1", "--parity-samples", "2",
                 "--no-memory", "--html", str(html), *QUICK_OFFLINE])
    out = capsys.readouterr().out
    assert code == 0
    assert "lenet5" in out and "(random)" in out and str(html) in out.replace("\n", "")
    text = html.read_text()
    assert "<html" in text.lower() and "lenet5" in text
    with Store() as store:  # PERFKIT_STORE from the autouse fixture
        [run] = store.runs()
        assert run["status"] == "ok" and run["command"].startswith("perfkit")


@pytest.mark.slow
def test_accuracy_step_with_imagenet_folder(store, tmp_path):
    from perfkit.data.synthetic import make_imagenet_folder

    make_imagenet_folder(tmp_path / "val", classes=[1, 500], per_class=2)
    cfg = _cfg(models=["resnet18"], runtimes=["torchscript"], batches=[1], parity_batches=[1], data=tmp_path / "val")
    result = pipeline.run_pipeline(cfg, store)
    assert result.failures == []
    acc = {r.runtime: r for r in store.records(result.run_id, kind=Kind.ACCURACY)}
    assert set(acc) == {"eager", "torchscript"}
    assert acc["eager"].metrics["images"] == 4
    assert acc["torchscript"].metrics["top1_correct"] == acc["eager"].metrics["top1_correct"]


def test_accuracy_step_on_your_labelled_folder(store, tmp_path):
    from perfkit.data.synthetic import make_class_folders

    names = [f"k{i}" for i in range(10)]
    make_class_folders(tmp_path / "mine", names, 1)
    (tmp_path / "labels.txt").write_text("\n".join(reversed(names)))
    cfg = _cfg(runtimes=["onnx"], data=tmp_path / "mine", labels=tmp_path / "labels.txt", limit=6,
               steps=(pipeline.Step.ACCURACY,))
    result = pipeline.run_pipeline(cfg, store)
    assert result.failures == []
    acc = {r.runtime: r.metrics for r in store.records(result.run_id, kind=Kind.ACCURACY)}
    assert set(acc) == {"eager", "onnx"}
    for m in acc.values():
        assert (m["layout"], m["num_classes"], m["images"], m["dataset_images"]) == ("imagefolder", 10, 6, 10)
        assert m["labels_from"].startswith(f"{tmp_path / 'labels.txt'} (sha256 ")
    assert acc["onnx"]["top1_correct"] == acc["eager"]["top1_correct"]


@pytest.mark.parametrize("argv, match", [
    (["--labels", "labels.txt"], "--labels names the classes of --data; give --data too"),
    (["--data", "mine", "--labels", "nope.txt"], "labels file .*nope.txt does not exist"),
    (["--data", "mine"], "has a single class folder"),
])
def test_cli_run_refuses_bad_data_before_a_run_is_stored(tmp_path, capsys, monkeypatch, argv, match):
    import re

    from perfkit.data.synthetic import make_class_folders

    monkeypatch.chdir(tmp_path)
    make_class_folders(tmp_path / "mine", ["only"], 1)
    (tmp_path / "labels.txt").write_text("only\nother\n")
    assert main(["run", "lenet5", "--weights", "random", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    with Store() as store:
        assert store.runs() == []


def test_cli_run_json_prints_the_records_of_the_run(tmp_path, capsys):
    import json

    code = main(["run", "lenet5", "--weights", "random", "-f", "onnx", "-b", "1", "--parity-samples", "2",
                 "--no-memory", "--json", "--html", str(tmp_path / "r.html"), *QUICK_OFFLINE])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    with Store() as store:
        assert [r["kind"] for r in out["records"]] == [str(r.kind) for r in store.records(out["run_id"])]
    assert {(r["kind"], r["runtime"]) for r in out["records"]} >= {
        ("export", "onnx"), ("parity", "onnx"), ("latency", "eager"), ("latency", "onnx"),
        ("throughput", "eager"), ("throughput", "onnx")}  # the Offline scenario is on by default


def test_cli_run_scenario_singlestream_skips_offline(tmp_path, capsys):
    import json

    code = main(["run", "lenet5", "--weights", "random", "-f", "onnx", "-b", "1", "--parity-samples", "2",
                 "--no-memory", "--json", "--html", str(tmp_path / "r.html"), "--scenario", "singlestream"])
    assert code == 0
    assert not [r for r in json.loads(capsys.readouterr().out)["records"] if r["kind"] == "throughput"]


def test_cli_run_resume_of_an_unknown_run_is_one_line_before_anything_runs(capsys):
    assert main(["run", "lenet5", "--weights", "random", "--resume", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no run" in err and "ImageNet" not in err


def test_cli_run_resume_of_a_run_still_running_is_refused_before_anything_runs(tmp_path, capsys):
    import os
    import platform
    import sqlite3
    import subprocess
    import sys

    path = tmp_path / "store.db"
    with Store(path) as s:
        run_id = s.start_run("perfkit run lenet5")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        with sqlite3.connect(path) as db:  # the run belongs to a live process of this host
            db.execute("UPDATE runs SET pid=? WHERE id=?", (sleeper.pid, run_id))
        assert main(["run", "lenet5", "--weights", "random", "-f", "onnx", "--no-memory", "--store", str(path),
                     "--artifacts", str(tmp_path / "art"), "--resume", run_id[:10]]) == 2
    finally:
        sleeper.kill()
        sleeper.wait()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"run {run_id} is still running (host {platform.node()}, pid {sleeper.pid})" in err
    with Store(path, read_only=True) as s:
        assert s.records(run_id) == [] and len(s.runs()) == 1  # nothing ran, no new run
    assert not (tmp_path / "art").exists() and os.getpid() != sleeper.pid


# -- precision: each runtime at the precisions it runs ------------------------------------------------

def test_int8_runs_where_a_runtime_builds_it_and_the_plan_knows_it(store):
    from perfkit.data.calibration import CalibrationSet

    cfg = _cfg(precisions=["fp32", "int8"], options={"calibration": CalibrationSet.synthetic(8)}, batches=[1])
    result = pipeline.run_pipeline(cfg, store)
    assert result.failures == []
    recs = store.records(result.run_id)
    by_kind = {}
    for r in recs:
        by_kind.setdefault(str(r.kind), set()).add((r.runtime, r.precision))
    # torchscript and eager do not build int8: they run fp32 only (eager is int8's fp32 reference)
    assert by_kind["export"] == {("torchscript", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    assert by_kind["parity"] == by_kind["export"]
    assert by_kind["latency"] == {("eager", "fp32"), ("torchscript", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    int8 = [r for r in recs if r.precision == "int8"]
    assert all(r.metrics["calibration"] == "calibrated on 8 synthetic images (minmax) — accuracy not meaningful"
               for r in int8)
    assert all(r.metrics["passed"] for r in int8 if r.kind == Kind.PARITY)
    planned = set().union(*(step.keys(cfg, cfg.plan(_spec(), cfg.backends()), _spec(), cfg.backends())
                            for step in pipeline.STEPS.values()))
    assert sorted(r.key for r in recs if r.kind not in (Kind.MODEL, Kind.ACCURACY)) == \
        sorted(k for k in planned if k[0] != "accuracy")
    again = pipeline.run_pipeline(_cfg(precisions=["fp32", "int8"], options=cfg.options, batches=[1],
                                       resume=result.run_id), store)
    assert set(again.skipped) == {f"lenet5 {s}" for s in ("complexity", "export", "parity", "profile")}


def test_cli_run_includes_int8_by_default_and_says_what_it_was_calibrated_on(tmp_path, capsys):
    code = main(["run", "lenet5", "--weights", "random", "-f", "torchscript,onnx", "-b", "1", "--parity-samples", "2",
                 "--no-memory", "--html", str(tmp_path / "r.html")])
    captured = capsys.readouterr()
    out, err = " ".join(captured.out.split()), " ".join(captured.err.split())
    assert code == 0
    assert "onnx int8" in out and "int8 (onnx): calibrated on 32 synthetic images (minmax) — accuracy not meaningful" in out
    assert "(no --calib and no --data)" in err
    html = (tmp_path / "r.html").read_text()
    assert "calibrated on 32 synthetic images" in html and "precision-note" in html


def _configured(argv: list[str], monkeypatch):
    """The pipeline configuration `perfkit ARGV` makes (the pipeline itself not run)."""
    from perfkit.errors import PerfkitError

    seen = []

    def configured(cfg, *args):
        seen.append(cfg)
        raise PerfkitError("configured")

    monkeypatch.setattr(pipeline, "run_pipeline", configured)
    assert main(argv) == 2
    return seen[0]


def test_run_takes_the_users_module_and_head_beside_zoo_names(store, tmp_path, monkeypatch):
    """`perfkit run MODEL... --model-code FILE.py:CALLABLE --num-classes N`: each model resolved with the
    same flags, the code model last, each under its own name."""
    net = tmp_path / "tiny_net.py"
    net.write_text("from torch import nn\n\ndef build(num_classes=10):\n"
                   "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))\n")
    cfg = _cfg(models=["lenet5"], model_code=f"{net}:build", model_options={"num_classes": 3, "input_size": (3, 32, 32)},
               steps=(pipeline.Step.COMPLEXITY,))
    result = pipeline.run_pipeline(cfg, store)
    assert result.failures == []
    models = {r.model: r.metrics for r in store.records(result.run_id, kind=Kind.MODEL)}
    names = sorted(models)
    assert names[0].startswith("lenet5@") and names[1].startswith("tiny_net.py:build@")
    assert [models[n]["num_classes"] for n in names] == [3, 3] and models[names[1]]["source"] == "code"
    complexity = {r.model for r in store.records(result.run_id, kind=Kind.COMPLEXITY)}
    assert complexity == set(names)
    args = ["run", "--model-code", f"{net}:build", "--input-size", "3,32,32", "--weights", "random", "--json"]
    parsed = _configured(args, monkeypatch)
    assert parsed.models == [] and parsed.model_code == f"{net}:build"  # not the classic four as well
    assert parsed.model_options["input_size"] == (3, 32, 32) and parsed.weights == "random"


def test_run_takes_an_onnx_file_in_the_runtimes_that_start_from_onnx(store, onnx_files, tmp_path):
    """`perfkit run model.onnx`: PyTorch runtimes are not run (not failures), the reference is ONNX Runtime on
    the CPU, the fixed batch (2) is the only one measured, and a resume finds every step finished."""
    from perfkit.data.calibration import CalibrationSet
    from perfkit.data.synthetic import make_class_folders
    from perfkit.vocab import Precision

    make_class_folders(tmp_path / "photos", ["cat", "dog", "espresso"], 2)
    cfg = _cfg(models=[str(onnx_files.fixed)], weights="auto", runtimes=["eager", "torchscript", "onnx", "openvino"],
               batches=[1, 4], parity_batches=[1, 4], data=tmp_path / "photos", precisions=[Precision.FP32,
                                                                                             Precision.INT8],
               options={"calibration": CalibrationSet.synthetic(8, "minmax")}, scenarios=SCENARIOS[:1])
    result = pipeline.run_pipeline(cfg, store)
    assert result.failures == []
    records = [r for r in store.records(result.run_id) if r.kind != Kind.MODEL]
    assert {r.runtime for r in records} == {"onnx", "openvino"}
    by_kind = {kind: {(r.runtime, r.precision, r.batch) for r in records if r.kind == kind}
               for kind in (Kind.PARITY, Kind.LATENCY, Kind.ACCURACY, Kind.COMPLEXITY)}
    measured = {(b, p) for b in ("onnx", "openvino") for p in ("fp32", "int8")}
    assert by_kind[Kind.PARITY] == {(b, p, 2) for b, p in measured - {("onnx", "fp32")}}  # onnx fp32: the reference
    assert by_kind[Kind.LATENCY] == {(b, p, 2) for b, p in measured}
    assert {r[:2] for r in by_kind[Kind.ACCURACY]} == measured
    assert by_kind[Kind.COMPLEXITY] == {("onnx", "fp32", 1)}
    again = pipeline.run_pipeline(_cfg(**{**cfg.__dict__, "resume": result.run_id}), store)
    name = next(r.model for r in records)
    assert set(again.skipped) == {f"{name} {step}" for step in pipeline.Step}


def test_run_takes_models_as_repeated_model_flags_after_the_positional_ones(monkeypatch, onnx_files):
    """`perfkit run lenet5 --model model.onnx --model resnet18`: every source, in that order."""
    cfg = _configured(["run", "lenet5", "--model", str(onnx_files.dynamic), "--model", "resnet18", "--weights",
                       "random", "--no-memory"], monkeypatch)
    assert cfg.models == ["lenet5", str(onnx_files.dynamic), "resnet18"]
