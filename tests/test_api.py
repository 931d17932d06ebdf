"""The Python API (perfkit.check/validate/profile/...): the same work as the commands, typed results, nothing
kept without store=, the command line's one-line messages as exceptions, and the command line as a thin
layer over it (the same records, the same defaults)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import perfkit
from perfkit.cli import build_parser, main

FAST = {"warmup": 1, "warmup_seconds": 0, "iterations": 3, "min_seconds": 0}
FAST_FLAGS = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0"]


def test_import_perfkit_is_cheap_and_names_the_api():
    code = ("import sys, perfkit\n"
            "heavy = [m for m in ('perfkit.backends', 'perfkit.cli', 'perfkit.store', 'perfkit.zoo', 'rich', 'onnx',"
            " 'onnxruntime', 'openvino') if m in sys.modules]\n"
            "print(heavy, sorted(perfkit.__all__))\n"
            "import perfkit.profiler.memory\n"  # the profiler's package is perfkit.profiler: the API's name stays its own
            "print(perfkit.profile is perfkit.api.profile, perfkit.profiler.memory.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("[] ") and "'profile'" in out[0] and "'PerfkitError'" in out[0]
    assert out[1] == "True perfkit.profiler.memory"
    assert {"check", "validate", "profile", "export", "summary", "run", "Result", "UsageError"} <= set(perfkit.__all__)


def _key(r) -> tuple:
    return (str(r.kind), r.runtime, r.precision, r.batch, r.device, r.status)


def test_profile_of_a_module_gives_the_records_the_cli_gives_for_its_model_code(net_module, capsys):
    """The issue's API test: perfkit.profile(nn.Module, ...) in this process, and `perfkit profile --model-code`
    for the same model: the same kinds, keys, runtimes, batches and metric names (memory measured in a child
    process, which imports the module's class)."""
    done = perfkit.profile(net_module.tiny_net(), input_size=(3, 32, 32), runtimes="eager,onnx", batch=(1, 2), **FAST)
    assert isinstance(done, perfkit.ProfileResult) and not done.failed and done.store is None
    [spec] = done.models
    assert spec.name.startswith("TinyNet@") and {r.model for r in done.records()} == {spec.name}
    rc = main(["profile", "--model-code", f"{net_module.path}:build", "--input-size", "3,32,32", "-f", "eager,onnx",
               "-b", "1,2", "--json", *FAST_FLAGS])
    assert rc == 0
    cli = json.loads(capsys.readouterr().out)["records"]
    assert sorted(map(_key, done.records())) == sorted(
        (r["kind"], r["runtime"], r["precision"], r["batch"], r["device"], r["status"]) for r in cli)
    assert {k[0] for k in map(_key, done.records())} == {"model", "latency", "memory"}
    for api in done.records():
        [other] = [r for r in cli if (r["kind"], r["runtime"], r["batch"]) == (str(api.kind), api.runtime, api.batch)]
        assert set(api.metrics) == set(other["metrics"]), (api.kind, api.runtime, api.batch)
    memory = {r.runtime: r.metrics for r in done.records("memory") if r.batch == 1}
    assert memory["eager"]["peak_bytes"] > 0 and memory["onnx"]["peak_bytes"] > 0


def test_a_module_the_memory_process_cannot_import_is_one_line_in_its_memory_record():
    """A class defined in a function (as in a notebook cell's scope): timed here, its exported runtimes'
    memory measured, and eager's memory — which needs the module in the child — one clear line."""

    class Local(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))

    done = perfkit.profile(Local(), input_size=(3, 16, 16), runtimes="eager,onnx", batch=1, **FAST)
    assert {(str(r.kind), r.runtime): r.status for r in done.records() if r.kind != "model"} == {
        ("latency", "eager"): "ok", ("latency", "onnx"): "ok", ("memory", "onnx"): "ok", ("memory", "eager"): "error"}
    [failed] = done.errors
    assert "the nn.Module cannot be rebuilt in another process" in failed.error and "Local" in failed.error
    assert "importable .py file" in failed.error and "Traceback" not in failed.error and "\n" not in failed.error
    assert done.failed


def test_a_class_of_a_notebooks_main_is_one_line_in_its_memory_record(monkeypatch):
    """A notebook defines its classes in ``__main__``, which a child process does not have: pickling works
    here, unpickling fails there, and the record says so in one line (no child dying on start-up)."""

    class NotebookNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.head(x.mean((2, 3)))

    NotebookNet.__module__, NotebookNet.__qualname__ = "__main__", "NotebookNet"
    monkeypatch.setattr(sys.modules["__main__"], "NotebookNet", NotebookNet, raising=False)
    done = perfkit.profile(NotebookNet(), input_size=(3, 8, 8), runtimes="eager", batch=1, **FAST)
    [failed] = done.errors
    assert failed.kind == "memory" and "AttributeError" in failed.error and "__main__.NotebookNet" in failed.error
    assert "\n" not in failed.error and [r.status for r in done.records("latency")] == ["ok"]


def _error_line(capsys, argv: list[str]) -> str:
    """The one error line `perfkit ARGV` prints (after the notes it gave before it failed)."""
    assert main(argv) == 2
    [line] = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error: ")]
    return line.removeprefix("error: ")


@pytest.mark.parametrize("call, argv", [
    (lambda: perfkit.profile("lenet5", batch="0,x"), ["profile", "lenet5", "--batch", "0,x"]),
    (lambda: perfkit.profile("resnet19"), ["profile", "resnet19"]),
    (lambda: perfkit.profile("lenet5", scenario="multistream"), ["profile", "lenet5", "--scenario", "multistream"]),
    (lambda: perfkit.profile("lenet5", offline_seconds=1), ["profile", "lenet5", "--offline-seconds", "1"]),
    (lambda: perfkit.check("lenet5", runtimes="onnx,nope"), ["check", "lenet5", "-f", "onnx,nope"]),
    (lambda: perfkit.check("lenet5", weights="random", runtimes="onnx", batch=512),
     ["check", "lenet5", "--weights", "random", "-f", "onnx", "-b", "512"]),
    (lambda: perfkit.export("lenet5", runtimes="eager"), ["export", "lenet5", "-f", "eager"]),
    (lambda: perfkit.summary(model_code="missing.py:build", input_size=(3, 32, 32)),
     ["summary", "--model-code", "missing.py:build", "--input-size", "3,32,32"]),
])
def test_bad_input_raises_the_message_the_cli_prints(call, argv, capsys):
    with pytest.raises(perfkit.UsageError) as err:
        call()
    assert isinstance(err.value, perfkit.PerfkitError)
    assert str(err.value) == _error_line(capsys, argv)


def test_bad_keywords_are_usage_errors_naming_them():
    with pytest.raises(perfkit.UsageError, match=r"profile\(\) takes no keyword 'batches' \(did you mean batch\?"):
        perfkit.profile("lenet5", batches=(1, 2))
    with pytest.raises(perfkit.UsageError, match=r"perfkit.check\(\) takes no keyword 'offline_seconds'; see help"):
        perfkit.check("lenet5", offline_seconds=1)  # a scenario option where no scenario runs
    with pytest.raises(perfkit.UsageError, match=r"needs input_size=\(C, H, W\)"):
        perfkit.profile(torch.nn.Linear(3, 2))


def test_check_passes_and_fails_like_the_cli(monkeypatch, capsys):
    from perfkit.accuracy import parity

    keywords = {"weights": "random", "runtimes": "onnx", "batch": (1, 2), "samples": 4}
    argv = ["check", "lenet5", "--weights", "random", "-f", "onnx", "-b", "1,2", "--samples", "4", "--json"]
    done = perfkit.check("lenet5", **keywords)
    assert done.passed and not done.failed and done.reference == "eager"
    assert (done.samples, done.source) == (4, "synthetic")
    assert {(r.runtime, r.batch, r.metrics["passed"]) for r in done.records("parity")} == {("onnx", 1, True),
                                                                                           ("onnx", 2, True)}
    assert main(argv) == 0
    capsys.readouterr()
    real = parity.compare
    monkeypatch.setattr(parity, "compare", lambda ref, cand, tol: real(ref, cand + 1.0, tol))
    done = perfkit.check("lenet5", **keywords)
    assert not done.passed and done.failures == ["2 parity check(s) failed"] and not done.errors
    assert [r.metrics["passed"] for r in done.records("parity")] == [False, False]
    assert main(argv) == 1
    cli = json.loads(capsys.readouterr().out)["records"]
    assert [r["metrics"]["passed"] for r in cli if r["kind"] == "parity"] == [False, False]


def test_validate_on_a_folder_of_your_classes(net_module, tmp_path):
    """perfkit.validate(module, folder): every runtime sees the same images; the eager count is the one an
    independent eager pass with the same preprocessing gets."""
    from PIL import Image
    from torchvision import transforms

    from perfkit.data.synthetic import make_class_folders

    files = make_class_folders(tmp_path / "photos", ["cat", "dog", "fox"], 3)
    net = net_module.tiny_net()
    done = perfkit.validate(net, tmp_path / "photos", input_size=(3, 32, 32), runtimes="eager,onnx", batch=4,
                            workers=0)
    assert isinstance(done, perfkit.ValidateResult) and not done.failed and len(done.evaluations) == 1
    rows = {r["runtime"]: r for r in done.table("accuracy")}
    assert set(rows) == {"eager", "onnx"} and {r["images"] for r in rows.values()} == {9}
    assert rows["eager"]["top1_correct"] == rows["onnx"]["top1_correct"] and rows["eager"]["labels_from"]
    prep = transforms.Compose([transforms.Resize(36), transforms.CenterCrop(32), transforms.ToTensor(),
                               transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with torch.no_grad():
        x = torch.stack([prep(Image.open(f).convert("RGB")) for f in files])
        predicted = net(x).argmax(1).tolist()
    assert rows["eager"]["top1_correct"] == sum(p == i // 3 for i, p in enumerate(predicted))


def test_nothing_is_written_without_store(tmp_path, monkeypatch):
    work = tmp_path / "notebook"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("PERFKIT_ARTIFACTS")  # the artifact cache a call makes for itself is thrown away too
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    done = perfkit.check("lenet5", weights="random", runtimes="onnx", batch=1, samples=2)
    assert done.store is None and done.run_id and done.records("parity")
    assert all(r.run_id == done.run_id for r in done.records())
    assert list(work.iterdir()) == [] and not Path(os.environ["PERFKIT_STORE"]).exists()
    assert not [p for p in scratch.iterdir() if p.name.startswith("perfkit-")]  # the throwaway store and cache


def test_a_store_keeps_the_run_and_report_renders_it(tmp_path, capsys):
    from perfkit.store import Store

    path = tmp_path / "runs.db"
    done = perfkit.profile("lenet5", weights="random", runtimes="eager", batch=1, memory=False, store=path, **FAST)
    assert done.store == path and done.run_id
    with Store(path) as store:
        [run] = store.runs()
        assert run["id"] == done.run_id and run["status"] == "ok" and run["command"] == "perfkit.profile(lenet5)"
        assert [r.key for r in store.records(done.run_id)] == [r.key for r in done.records()]
        again = perfkit.summary("lenet5", weights="random", store=store, command="nightly summary")
        assert store.get_run(again.run_id)["command"] == "nightly summary"  # an open store is left open
    assert main(["report", done.run_id, "--store", str(path), "--html", str(tmp_path / "r.html")]) == 0
    assert "lenet5" in (tmp_path / "r.html").read_text()


def test_table_rows_are_provenance_then_metrics(net_module):
    done = perfkit.summary(net_module.tiny_net(), input_size=32)
    [row] = done.table("complexity")
    assert list(row)[:10] == ["run_id", "kind", "model", "runtime", "precision", "batch", "weights", "device", "status",
                              "error"]
    assert row["run_id"] == done.run_id and row["kind"] == "complexity" and row["model"] == done.models[0].name
    assert row["params"] == sum(p.numel() for p in net_module.tiny_net().parameters()) and row["macs"] > 0
    assert len(done.table()) == len(done.records()) == 2 and repr(done).startswith("<SummaryResult run ")


def test_notes_come_before_the_work_they_concern():
    notes = []
    done = perfkit.profile("lenet5", runtimes="eager,onnx", precision="fp32,int8", batch=1, memory=False,
                           notify=lambda note: notes.append((note.level, note.topic, str(note))), **FAST)
    assert [(level, topic) for level, topic, _ in notes] == [("note", "random-weights"), ("caution", "calibration")]
    assert notes[1][2] == ("int8: calibrated on 32 synthetic images (minmax) — accuracy not meaningful "
                           "(no --calib and no --data)")
    assert {(r.runtime, r.precision) for r in done.records("latency")} == {("eager", "fp32"), ("onnx", "fp32"),
                                                                           ("onnx", "int8")}


COMMANDS = {name: getattr(perfkit.api, name) for name in ("check", "export", "summary", "profile", "validate", "run")}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_api_defaults_are_the_flags_defaults(name, tmp_path):
    """Each keyword a command's flags give the API (``cli.common.keywords``) has the flag's default as its
    default in the API: the function's own, or the shared groups'."""
    from perfkit.api.keywords import MEASURING, Keywords
    from perfkit.cli.common import keywords

    argv = [name, "lenet5"] + (["--data", str(tmp_path)] if name == "validate" else [])
    given = keywords(build_parser().parse_args(argv), "model", "models", "more_models", "data")
    own = {k: p.default for k, p in inspect.signature(COMMANDS[name]).parameters.items()
           if p.default is not inspect.Parameter.empty}
    shared = Keywords.of(name, {}, scenarios=name in ("profile", "run"))
    defaults = {**shared.model, **MEASURING, **own}
    assert set(given) <= set(defaults) | set(shared.options) | {"workers"}
    differ = {k: (v, defaults[k]) for k, v in given.items() if k in defaults and v != defaults[k]}
    assert set(differ) <= {"store", "artifacts", "command", "workers", "weights"}, differ  # the CLI's own places
    assert given["weights"] == own["weights"]


def test_run_takes_modules_beside_zoo_names(net_module):
    """perfkit.run([name, module]): the whole pipeline for each, in one run, each under its own name."""
    done = perfkit.run(["lenet5", net_module.tiny_net()], input_size=(3, 32, 32), num_classes=3, runtimes="onnx",
                       precision="fp32", batch=1, parity_samples=2, memory=False, scenario="singlestream", **FAST)
    assert isinstance(done, perfkit.RunResult) and done.failures == [] and not done.failed and done.seconds > 0
    kinds = {}
    for r in done.records():
        kinds.setdefault(r.model, set()).add(str(r.kind))
    [module, lenet] = sorted(kinds)
    assert module.startswith("TinyNet@") and lenet.startswith("lenet5@")  # lenet5 with 3 classes: a head of its own
    assert all(k == {"model", "complexity", "export", "parity", "latency"} for k in kinds.values()), kinds
    assert repr(done).startswith(f"<RunResult run {done.run_id} of {lenet}, {module}: ")


def test_the_command_line_keeps_its_artifact_cache(tmp_path, monkeypatch):
    """The CLI passes its own default cache (the user cache folder's artifacts/) to the API, whose default is a
    throwaway one; nothing is written where the user stands."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.delenv("PERFKIT_ARTIFACTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["check", "lenet5", "--weights", "random", "-f", "onnx", "-b", "1", "--samples", "2", "--json"]) == 0
    assert [p.name for p in (tmp_path / "cache" / "perfkit" / "artifacts").iterdir()]
    assert not (tmp_path / "here" / ".perfkit-artifacts").exists()
