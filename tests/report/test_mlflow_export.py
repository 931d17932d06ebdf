"""``report --mlflow``: against a fake mlflow module (always; its names checked against the real
package where that is installed) and against real MLflow with a SQLite tracking store (skipped
without the ``mlflow`` extra)."""

import contextlib
import importlib.util
import sys
import types

import pytest

from perfkit.cli import main
from perfkit.errors import PerfkitError
from perfkit.report.candidates import candidate_rows
from perfkit.report.mlflow_export import EXPERIMENT, RUN_TAG, log_run

FAKE_API = ("set_tracking_uri", "set_experiment", "start_run", "log_params", "log_metrics", "log_dict", "log_artifact")


class FakeMlflow(types.ModuleType):
    """Records what perfkit logs, run by run (a stack of active runs, as MLflow's fluent API keeps)."""

    def __init__(self, fail_on: str | None = None):
        super().__init__("mlflow")
        self.exceptions = types.SimpleNamespace(MlflowException=type("MlflowException", (Exception,), {}))
        self.runs, self.active, self.calls, self.fail_on = [], [], [], fail_on

    def __getattr__(self, name):  # only the API perfkit is expected to use
        if name not in FAKE_API:
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, *args, **kwargs)

    def _call(self, name, *args, **kwargs):
        self.calls.append(name)
        if name == self.fail_on:
            raise self.exceptions.MlflowException("server said no\nsecond line")
        if name == "start_run":
            return self._start(**kwargs)
        run = self.active[-1] if self.active else None
        if name in ("log_params", "log_metrics"):
            run[name.split("_")[1]].update(args[0])
        elif name in ("log_dict", "log_artifact"):
            run["artifacts"].append(args[-1] if name == "log_dict" else args[0])

    @contextlib.contextmanager
    def _start(self, run_name, nested=False, tags=None):
        assert nested == bool(self.active), "a run inside another must be started nested"
        run = {"name": run_name, "parent": self.active[-1]["name"] if self.active else None, "tags": dict(tags or {}),
               "params": {}, "metrics": {}, "artifacts": []}
        self.runs.append(run)
        self.active.append(run)
        try:
            yield types.SimpleNamespace(info=types.SimpleNamespace(run_id=f"id-{len(self.runs)}"))
        finally:
            self.active.pop()


def test_the_fake_uses_the_real_api_names():
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed (pip install 'perfkit[mlflow]'): the names are checked where it is")
    import mlflow

    assert all(callable(getattr(mlflow, name)) for name in FAKE_API)
    assert issubclass(mlflow.exceptions.MlflowException, Exception)


def test_each_candidate_is_a_nested_run_with_its_numbers(store, make_run, tmp_path, monkeypatch):
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    run_id = make_run(store, int8="fixture calibration")
    run, records = store.get_run(run_id), store.records(run_id)
    html = tmp_path / "r.html"
    html.write_text("<html></html>")
    assert log_run("http://tracking:5000", run, records, html) == ("id-1", len(candidate_rows(records, run["env"])))
    parent, *children = fake.runs
    assert parent["name"] == f"perfkit run {run_id}" and parent["artifacts"] == ["environment.json", str(html)]
    assert parent["params"] == {"perfkit_run": run_id, "command": "perfkit run (fixture)"}
    assert all(c["parent"] == parent["name"] and c["tags"][RUN_TAG] == run_id for c in children)
    assert all(not c["artifacts"] for c in children)  # the report is logged once, on the run that holds them
    [onnx] = [c for c in children if c["name"] == "alexnet onnx int8 batch 8"]
    row = next(r for r in candidate_rows(records, run["env"])
               if (r["model"], r["runtime"], r["precision"], r["batch"]) == ("alexnet", "onnx", "int8", 8))
    assert onnx["params"] == {k: row[k] for k in ("model", "weights", "runtime", "precision", "batch", "device",
                                                   "hardware") if row[k] is not None}
    assert onnx["metrics"]["latency_p50_ms"] == row["latency_p50_ms"] and onnx["metrics"]["top1_pct"] == row["top1_pct"]
    assert "peak_memory_bytes" not in onnx["metrics"]  # not measured for int8: left out, never 0
    assert "parity_passed" not in onnx["metrics"] and onnx["tags"]["parity_passed"] == "True"  # a verdict: a tag
    assert onnx["tags"]["int8_calibration"] == "fixture calibration"
    assert fake.calls[:2] == ["set_tracking_uri", "set_experiment"]


def test_the_experiment_mlflow_is_told_to_use_is_kept(store, make_run, monkeypatch):
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    run_id = make_run(store, models=("alexnet",), error=False)
    log_run("http://tracking:5000", store.get_run(run_id), store.records(run_id))
    assert "set_experiment" not in fake.calls


def test_an_mlflow_error_is_one_line_naming_the_uri(store, make_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", FakeMlflow(fail_on="set_experiment"))
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    run_id = make_run(store, models=("alexnet",), error=False)
    with pytest.raises(PerfkitError, match=r"^--mlflow http://tracking:5000: server said no$"):
        log_run("http://tracking:5000", store.get_run(run_id), store.records(run_id))


def test_report_without_the_extra_is_one_line_before_any_output(store, make_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails
    make_run(store, models=("alexnet",), error=False)
    assert main(["report", "--store", str(store.path), "--mlflow", "http://tracking:5000"]) == 2
    captured = capsys.readouterr()
    assert "pip install 'perfkit[mlflow]'" in captured.err and captured.err.count("\n") == 1
    assert "alexnet" not in captured.out  # refused before the tables


def test_report_cli_logs_to_mlflow(store, make_run, monkeypatch, capsys):
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    run_id = make_run(store, models=("alexnet",), error=False)
    assert main(["report", run_id, "--store", str(store.path), "--mlflow", "http://tracking:5000"]) == 0
    assert "4 candidate(s)" in capsys.readouterr().err  # eager and onnx fp32 at batches 1 and 8
    assert len(fake.runs) == 5


def test_real_mlflow_holds_what_was_logged(store, make_run, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # a SQLite store keeps artifacts in ./mlruns
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)  # and restored after: mlflow sets the first for subprocesses
    run_id = make_run(store, models=("alexnet",), int8="fixture calibration", error=False)
    run, records = store.get_run(run_id), store.records(run_id)
    html = tmp_path / "report.html"
    html.write_text("<html></html>")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent_id, count = log_run(uri, run, records, html)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = client.search_runs([experiment.experiment_id], f"tags.`{RUN_TAG}` = '{run_id}'")
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert count == 6 and len(children) == count and len(found) == count + 1
    [int8] = [r for r in children if r.info.run_name == "alexnet onnx int8 batch 8"]
    row = next(r for r in candidate_rows(records, run["env"])
               if (r["model"], r["runtime"], r["precision"], r["batch"]) == ("alexnet", "onnx", "int8", 8))
    assert int8.data.params["batch"] == "8" and int8.data.params["precision"] == "int8"
    assert int8.data.metrics["latency_p50_ms"] == pytest.approx(row["latency_p50_ms"])
    assert int8.data.tags["int8_calibration"] == "fixture calibration"
    assert {a.path for a in client.list_artifacts(parent_id)} == {"report.html", "environment.json"}
