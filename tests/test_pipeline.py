"""`perfkit run` end to end on LeNet-5 (a real model small enough to export and profile in seconds)."""

import pytest

from perfkit import pipeline
from perfkit.cli import main
from perfkit.errors import PerfkitError
from perfkit.formats import Format
from perfkit.profile.timing import TimingConfig
from perfkit.store import Kind, Store

FAST = TimingConfig(warmup=1, warmup_seconds=0.0, iterations=3, min_seconds=0.0)


def _cfg(**kw):
    base = dict(models=["lenet5"], formats=[Format.TORCHSCRIPT, Format.ONNX], batches=[1, 2], parity_samples=4,
                parity_batches=[1, 2], timing=FAST, memory=False)
    return pipeline.RunConfig(**{**base, **kw})


def test_every_step_writes_its_records(store):
    result = pipeline.run_pipeline(_cfg(), store)
    assert result.failures == [] and result.skipped == []
    assert store.get_run(result.run_id)["status"] == "ok"
    recs = store.records(result.run_id)
    kinds = {(r.kind, r.runtime) for r in recs}
    assert (Kind.COMPLEXITY, "eager") in kinds
    for fmt in ("torchscript", "onnx"):
        assert (Kind.EXPORT, fmt) in kinds and (Kind.PARITY, fmt) in kinds
    latency = {(r.runtime, r.batch) for r in recs if r.kind == Kind.LATENCY}
    assert latency == {(rt, b) for rt in ("eager", "torchscript", "onnx") for b in (1, 2)}
    assert all(r.status == "ok" for r in recs)
    assert all(r.weights == "random:seed0" for r in recs)


def test_a_failing_step_is_recorded_and_the_rest_go_on(store, monkeypatch):
    import perfkit.export.artifact as artifact

    real = artifact.ensure_artifact

    def broken(spec, fmt, **kw):
        if Format(fmt) is Format.ONNX:
            raise RuntimeError("onnx exporter exploded")
        return real(spec, fmt, **kw)

    monkeypatch.setattr(artifact, "ensure_artifact", broken)
    result = pipeline.run_pipeline(_cfg(), store)
    assert any("onnx exporter exploded" in f for f in result.failures)
    recs = store.records(result.run_id)
    errors = [r for r in recs if r.status == "error"]
    assert errors and all(r.runtime == "onnx" for r in errors)
    # torchscript still exported, checked and profiled
    assert any(r.kind == Kind.PARITY and r.runtime == "torchscript" and r.status == "ok" for r in recs)
    assert any(r.kind == Kind.LATENCY and r.runtime == "torchscript" and r.status == "ok" for r in recs)


def test_resume_skips_finished_steps(store):
    first = pipeline.run_pipeline(_cfg(steps=(pipeline.Step.COMPLEXITY, pipeline.Step.EXPORT)), store)
    n_before = len(store.records(first.run_id))
    with pytest.raises(PerfkitError, match="no run"):
        pipeline.run_pipeline(_cfg(resume="20990101"), store)
    again = pipeline.run_pipeline(_cfg(resume=first.run_id[:15]), store)  # a unique prefix is enough
    assert again.run_id == first.run_id
    assert set(again.skipped) == {"lenet5 complexity", "lenet5 export"}
    recs = store.records(first.run_id)
    assert len([r for r in recs if r.kind == Kind.COMPLEXITY]) == 1  # not measured twice
    assert any(r.kind == Kind.LATENCY for r in recs) and len(recs) > n_before


def test_unknown_model_fails_alone(store):
    result = pipeline.run_pipeline(_cfg(models=["resnet19", "lenet5"], steps=(pipeline.Step.COMPLEXITY,)), store)
    assert len(result.failures) == 1 and "resnet19" in result.failures[0]
    assert {r.model for r in store.records(result.run_id) if r.status == "ok"} == {"lenet5"}


def test_cli_run_prints_summary_and_writes_html(tmp_path, capsys):
    html = tmp_path / "r.html"
    code = main(["run", "lenet5", "-f", "torchscript", "--batch", "1", "--parity-samples", "2", "--no-memory",
                 "--html", str(html)])
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
    cfg = _cfg(models=["resnet18"], formats=[Format.TORCHSCRIPT], batches=[1], parity_batches=[1],
               data=tmp_path / "val")
    result = pipeline.run_pipeline(cfg, store)
    assert result.failures == []
    acc = {r.runtime: r for r in store.records(result.run_id, kind=Kind.ACCURACY)}
    assert set(acc) == {"eager", "torchscript"}
    assert acc["eager"].metrics["images"] == 4
    assert acc["torchscript"].metrics["top1_correct"] == acc["eager"].metrics["top1_correct"]
