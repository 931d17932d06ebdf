"""`perfkit sweep`: the sequential sweep's records, shards, resume, --status, the file form and bad input."""

import json
import socket
import sys
from collections import Counter

import pytest

from perfkit.cli import main
from perfkit.store import Store

FAST = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0"]
LENET = ["lenet5", "-f", "eager,onnx", "-b", "1,2", "--no-memory", *FAST]
# what `perfkit profile lenet5 -f eager,onnx -b 1,2 --no-memory` records, besides its model record
PLAN_KEYS = {("latency", "lenet5", runtime, "fp32", batch, "cpu") for runtime in ("eager", "onnx") for batch in (1, 2)}


def _sweep(tmp_path, artifacts, *extra, store="store.db") -> int:
    return main(["sweep", *LENET, "--store", str(tmp_path / store), "--artifacts", str(artifacts), *extra])


def _measured(path) -> Counter:
    """Every current record key of every run in the store but the model records, counted."""
    with Store(path, read_only=True) as store:
        return Counter(r.key for r in store.records() if r.kind != "model")


def test_sequential_sweep_records_profile_keys_in_one_run(tmp_path, shared_artifacts, capsys):
    assert _sweep(tmp_path, shared_artifacts, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"].startswith("sweep-") and out["run_id"].endswith("-0of1")
    assert {tuple(r[k] for k in ("kind", "model", "runtime", "precision", "batch", "device"))
            for r in out["records"] if r["kind"] != "model"} == PLAN_KEYS
    assert _measured(tmp_path / "store.db") == Counter(PLAN_KEYS)
    with Store(tmp_path / "store.db", read_only=True) as store:
        [run] = store.runs()
        [model] = store.records(run["id"], kind="model")
    assert run["status"] == "ok"
    assert model.model == "lenet5" and model.metrics["random_weights"]
    # report, select and regress read it as a profile run
    assert main(["report", run["id"], "--store", str(tmp_path / "store.db")]) == 0


def test_shards_give_exactly_the_sequential_plan_and_a_rerun_measures_nothing(tmp_path, shared_artifacts, capsys):
    assert _sweep(tmp_path, shared_artifacts, "--shard", "0/2", store="sharded.db") == 0
    assert _sweep(tmp_path, shared_artifacts, "--shard", "1/2", store="sharded.db") == 0
    assert _measured(tmp_path / "sharded.db") == Counter(PLAN_KEYS)
    with Store(tmp_path / "sharded.db", read_only=True) as store:
        ids = sorted(r["id"] for r in store.runs())
    assert [i[-4:] for i in ids] == ["0of2", "1of2"]
    capsys.readouterr()
    # the whole sweep again, in the same store: every cell is recorded already, none measured twice
    assert _sweep(tmp_path, shared_artifacts, store="sharded.db") == 0
    assert "0 of 4 cell(s) measured, 4 recorded already" in capsys.readouterr().out
    assert _measured(tmp_path / "sharded.db") == Counter(PLAN_KEYS)


def test_an_interrupted_sweep_resumes_in_the_same_run(tmp_path, shared_artifacts, monkeypatch, capsys):
    from perfkit.sweeps import local

    real, calls = local.measure, []

    def interrupted(setup, cell, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(cell.index)
        return real(setup, cell, *args, **kwargs)

    monkeypatch.setattr(local, "measure", interrupted)
    assert _sweep(tmp_path, shared_artifacts) == 130
    assert sum(_measured(tmp_path / "store.db").values()) == 2
    monkeypatch.setattr(local, "measure", real)
    capsys.readouterr()
    assert _sweep(tmp_path, shared_artifacts) == 0
    assert "2 of 4 cell(s) measured, 2 recorded already" in capsys.readouterr().out
    assert _measured(tmp_path / "store.db") == Counter(PLAN_KEYS)
    with Store(tmp_path / "store.db", read_only=True) as store:
        [run] = store.runs()  # the same run, continued
    assert run["status"] == "ok"


def test_status_says_done_and_missing_per_cell(tmp_path, shared_artifacts, capsys):
    assert _sweep(tmp_path, shared_artifacts, "--shard", "1/2") == 0
    capsys.readouterr()
    assert _sweep(tmp_path, shared_artifacts, "--status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert [(c["runtime"], c["batch"], c["state"]) for c in status["cells"]] == [
        ("eager", 1, "missing"), ("eager", 2, "missing"), ("onnx", 1, "done"), ("onnx", 2, "done")]
    assert status["runs"] == [f"{status['name']}-1of2"]
    assert _sweep(tmp_path, shared_artifacts, "--status") == 0
    assert "4 cell(s): 2 done, 0 failed, 0 partial, 2 missing" in capsys.readouterr().out


def test_the_file_form_is_the_flags_plan(tmp_path, shared_artifacts, capsys):
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text('models = ["lenet5"]\nruntimes = ["eager", "onnx"]\nbatch = [1, 2]\nmemory = false\n'
                          'warmup = 1\nwarmup-seconds = 0\niterations = 3\nmin_seconds = 0\n')
    assert _sweep(tmp_path, shared_artifacts, "--shard", "0/2") == 0
    capsys.readouterr()
    # the same sweep (same name): the file's status sees the flags' shard
    assert main(["sweep", "--file", str(sweep_file), "--store", str(tmp_path / "store.db"), "--status", "--json"]) == 0
    states = [c["state"] for c in json.loads(capsys.readouterr().out)["cells"]]
    assert states == ["done", "done", "missing", "missing"]
    # flags win over the file: --batch 1 is another plan
    assert main(["sweep", "--file", str(sweep_file), "-b", "1", "--store", str(tmp_path / "store.db"), "--status",
                 "--json"]) == 0
    assert [c["batch"] for c in json.loads(capsys.readouterr().out)["cells"]] == [1, 1]


def _one_line_exit_2(capsys, argv, *expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("error:")]) == 1, err
    for text in expected:
        assert text in err[-1]


@pytest.mark.parametrize("flags, expected", [
    (["lenet5,nosuch", "-f", "eager"], "unknown model 'nosuch'"),
    (["lenet5", "-f", "eager,nosuch"], "unknown runtime 'nosuch'"),
    (["lenet5", "--precision", "fp99"], "unknown precision 'fp99'"),
    (["lenet5", "--shard", "2/2"], "--shard"),
    (["lenet5", "--workers", "2"], "--workers"),
    (["lenet5", "--name", "no spaces"], "--name"),
    ([], "name one or more MODELs"),
])
def test_bad_flags_are_one_line_before_anything_runs(tmp_path, capsys, flags, expected):
    _one_line_exit_2(capsys, ["sweep", *flags, "--store", str(tmp_path / "s.db")], expected)
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("text, expected", [
    ('models = ["lenet5", "nosuch"]\n', "unknown model 'nosuch'"),
    ('models = ["lenet5"]\nruntimes = ["eager", "nosuch"]\n', "unknown runtime 'nosuch'"),
    ('models = ["lenet5"]\nruntime = "eager"\n', "unknown key 'runtime' (did you mean runtimes?)"),
    ('models = ["lenet5"\n', "not valid TOML"),
])
def test_a_bad_sweep_file_is_refused_before_anything_runs(tmp_path, capsys, text, expected):
    (tmp_path / "sweep.toml").write_text(text)
    _one_line_exit_2(capsys, ["sweep", "--file", str(tmp_path / "sweep.toml"), "--store", str(tmp_path / "s.db")],
                     expected)
    assert not (tmp_path / "s.db").exists()


def test_models_in_the_file_and_on_the_command_line_are_refused(tmp_path, capsys):
    (tmp_path / "sweep.yaml").write_text("models: [lenet5]\n")
    _one_line_exit_2(capsys, ["sweep", "--file", str(tmp_path / "sweep.yaml")], "TOML")
    (tmp_path / "sweep.toml").write_text('models = ["lenet5"]\n')
    _one_line_exit_2(capsys, ["sweep", "lenet5", "--file", str(tmp_path / "sweep.toml")], "named twice")


def test_ray_missing_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as where it is not installed: import fails
    _one_line_exit_2(capsys, ["sweep", "lenet5", "--ray", "local", "--store", str(tmp_path / "s.db")],
                     "perfkit[ray]")
    assert not (tmp_path / "s.db").exists()


def test_a_ray_address_that_does_not_answer_is_one_line_and_loses_nothing(tmp_path, shared_artifacts, capsys):
    pytest.importorskip("ray")
    assert _sweep(tmp_path, shared_artifacts, "--shard", "0/2") == 0
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    capsys.readouterr()
    _one_line_exit_2(capsys, ["sweep", *LENET, "--ray", f"127.0.0.1:{port}", "--store", str(tmp_path / "store.db")],
                     "does not answer")
    assert sum(_measured(tmp_path / "store.db").values()) == 2  # what the shard recorded is all there
