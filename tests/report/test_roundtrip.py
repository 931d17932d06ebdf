"""What `perfkit report RUN --json-out FILE` exports, `perfkit regress` accepts: every kind of run
perfkit makes, regressed against itself, passes; a doctored copy fails on the gate it breaks; a
malformed number (``true``, ``Infinity``, a string) is one line naming the file, record and metric.

One run per kind is shared by the tests of this module (module-scoped fixtures, made on first use),
so they write to their own store and artifact cache, passed explicitly: the autouse fixture points
$PERFKIT_STORE at each test's own folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from perfkit.cli import main
from perfkit.data.cifar import make_cifar_batches
from perfkit.data.synthetic import make_imagenet_folder, write_spread_weights
from perfkit.store import Store

TIMING = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0"]
LENET5 = ["lenet5", "--weights", "random", "--device", "cpu"]
CLASSES = [5, 900]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("roundtrip")


def _store(home: Path) -> list[str]:
    return ["--store", str(home / "store.db")]


def _exported(home: Path, name: str, argv: list, *, artifacts: bool = True) -> tuple[str, Path]:
    """Run one perfkit command into the module's store and export its run: (run id, JSON file)."""
    cache = ["--artifacts", str(home / "artifacts")] if artifacts else []
    assert main([*map(str, argv), *_store(home), *cache]) == 0
    with Store(home / "store.db") as store:
        run_id = store.runs(1)[0]["id"]
    path = home / f"{name}.json"
    assert main(["report", run_id, "--json-out", str(path), *_store(home)]) == 0
    return run_id, path


@pytest.fixture(scope="module")
def run_export(home):
    # perfkit run's automatic plan: fp32, plus ONNX Runtime int8 on a CPU, calibrated on synthetic images
    return _exported(home, "run", ["run", *LENET5, "-f", "torchscript,onnx", "-b", "1", "--no-memory",
                                   "--parity-samples", "2", "--offline-seconds", "0.2", "--html", home / "run.html"])


@pytest.fixture(scope="module")
def profile_export(home):
    return _exported(home, "profile", ["profile", *LENET5, "-f", "eager,onnx", "-b", "1,2", "--no-memory", *TIMING])


@pytest.fixture(scope="module")
def offline_export(home):
    return _exported(home, "offline", ["profile", *LENET5, "-f", "onnx", "-b", "2", "--no-memory", *TIMING,
                                       "--scenario", "offline", "--offline-seconds", "0.2"])


@pytest.fixture(scope="module")
def server_export(home):
    pytest.importorskip("mlperf_loadgen")
    return _exported(home, "server", ["profile", *LENET5, "-f", "eager", "-b", "1", "--no-memory", *TIMING,
                                      "--scenario", "server", "--server-seconds", "0.3", "--server-points", "3",
                                      "--loadgen-logs", str(home / "loadgen")])


@pytest.fixture(scope="module")
def check_export(home):
    return _exported(home, "check", ["check", *LENET5, "-f", "torchscript,onnx", "-b", "1,2", "--samples", "2"])


@pytest.fixture(scope="module")
def validate_export(home):
    # spread weights: some images right and some wrong, so top-1 is a real number between 0 and 100
    weights = write_spread_weights(home / "resnet18-spread.pt", CLASSES, seed=26)
    make_imagenet_folder(home / "val", CLASSES, 2)
    return _exported(home, "validate", ["validate", "resnet18", "--weights", weights, "--data", home / "val",
                                        "--resize", 72, "--crop", 64, "-f", "torchscript", "--workers", 0])


@pytest.fixture(scope="module")
def export_export(home):
    return _exported(home, "export", ["export", *LENET5, "-f", "torchscript,onnx"])


@pytest.fixture(scope="module")
def summary_export(home):
    return _exported(home, "summary", ["summary", "lenet5", "--weights", "random"])


@pytest.fixture(scope="module")
def train_export(home):
    cifar = make_cifar_batches(home / "cifar", n_train=64, n_test=32).parent
    return _exported(home, "train", ["train", "lenet5", "--data", cifar, "--epochs", 2, "-b", 16, "--device", "cpu",
                                     "--checkpoint-dir", home / "ckpt", "--log-dir", home / "logs"], artifacts=False)


KINDS = ["run", "profile", "offline", "server", "check", "validate", "export", "summary", "train"]


def _regress(capsys, baseline, candidate, *extra) -> tuple[int, dict]:
    capsys.readouterr()  # what a fixture's command printed, when the fixture was made in this test
    code = main(["regress", "--baseline", str(baseline), "--candidate", str(candidate), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_regressed_against_its_own_export_passes(kind, request, home, capsys):
    run_id, path = request.getfixturevalue(f"{kind}_export")
    for baseline, candidate in ((path, path), (path, run_id), (run_id, path)):
        code, result = _regress(capsys, baseline, candidate, *_store(home))
        assert code == 0, (baseline, candidate)
        assert result["compared"] > 0 and result["regressions"] == result["missing"] == result["new"] == 0
        assert {c["verdict"] for c in result["changes"]} == {"same"}


def test_the_run_export_holds_int8_records_with_their_calibration(run_export):
    """The reported defect: int8 records carry a calibration description, which regress used to refuse."""
    records = json.loads(run_export[1].read_text())["records"]
    described = {r["kind"] for r in records if r["precision"] == "int8" and r["metrics"].get("calibration")}
    assert {"export", "parity", "latency", "throughput"} <= described


def test_a_changed_calibration_is_reported_not_gated(run_export, tmp_path, capsys):
    _, path = run_export
    payload = json.loads(path.read_text())
    edited = [r for r in payload["records"] if r["metrics"].get("calibration")]
    for r in edited:
        r["metrics"]["calibration"] = "calibrated on 64 images of ci/calib (entropy)"
    copy = tmp_path / "recalibrated.json"
    copy.write_text(json.dumps(payload))
    code, result = _regress(capsys, path, copy)
    assert code == 0
    flagged = [c for c in result["changes"] if c["verdict"] != "same"]
    assert {(c["metric"], c["verdict"], c["change"]) for c in flagged} == {("calibration", "changed", None)}
    assert len(flagged) == len(edited)


def _times(metric: str, factor: float):
    def edit(r: dict) -> bool:
        from perfkit.profiler.samples import pack, unpack

        r["metrics"][metric] *= factor
        if metric == "latency_median_ms" and r["metrics"].get("samples"):  # the stored calls say the same
            r["metrics"]["samples"] = pack([v * factor for v in unpack(r["metrics"]["samples"])])
        return True
    return edit


def _minus(metric: str, amount: float):
    def edit(r: dict) -> bool:
        r["metrics"][metric] -= amount
        return True
    return edit


def _fail_parity(r: dict) -> bool:
    was, r["metrics"]["passed"] = r["metrics"]["passed"], False
    return was


def _fail_step(r: dict) -> bool:
    r.update(status="error", error="RuntimeError: exporter crashed")
    return True


def _last_epoch(r: dict) -> bool:  # one train key per model: the newest record (the last epoch) is compared
    return r["metrics"]["epoch"] == r["metrics"]["epochs"] - 1 and _minus("best_val_acc", 0.1)(r)


# (kind of run, kind of record edited, the edit, (metric, verdict) expected of each edited record, exit code)
DOCTORED = [
    ("run", "latency", _times("latency_median_ms", 2.0), ("latency_median_ms", "regression"), 1),
    ("run", "parity", _fail_parity, ("passed", "regression"), 1),
    ("run", "throughput", _times("samples_per_s", 0.5), ("samples_per_s", "regression"), 1),
    ("profile", "latency", _times("latency_median_ms", 2.0), ("latency_median_ms", "regression"), 1),
    ("offline", "throughput", _times("samples_per_s", 0.5), ("samples_per_s", "regression"), 1),
    ("server", "server", _times("qps", 0.5), ("qps", "regression"), 1),
    ("check", "parity", _fail_parity, ("passed", "regression"), 1),
    ("validate", "accuracy", _minus("top1_pct", 5.0), ("top1_pct", "regression"), 1),
    ("export", "export", _fail_step, ("status", "now fails"), 1),
    ("summary", "complexity", _times("params", 2), ("params", "changed"), 0),  # reported, not gated
    ("train", "train", _last_epoch, ("best_val_acc", "changed"), 0),
]


@pytest.mark.parametrize("kind, record_kind, edit, expected, code", DOCTORED,
                         ids=[f"{k}-{e[0]}" for k, _, _, e, _ in DOCTORED])
def test_a_doctored_copy_is_judged_on_what_was_changed(kind, record_kind, edit, expected, code, request, tmp_path,
                                                       capsys):
    _, path = request.getfixturevalue(f"{kind}_export")
    payload = json.loads(path.read_text())
    for r in payload["records"]:  # this machine may have been busy: a contended timing would not be judged
        if "contended" in r["metrics"]:
            r["metrics"]["contended"] = False
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(payload))
    edited = [r for r in payload["records"] if r["kind"] == record_kind and r["status"] == "ok" and edit(r)]
    assert edited
    copy = tmp_path / "doctored.json"
    copy.write_text(json.dumps(payload))
    got, result = _regress(capsys, path, copy)
    assert got == code
    flagged = [c for c in result["changes"] if c["verdict"] != "same"]
    assert {(c["kind"], c["metric"], c["verdict"]) for c in flagged} == {(record_kind, *expected)}
    assert len(flagged) == len(edited) and result["regressions"] == (len(edited) if code else 0)


@pytest.mark.parametrize("side", ["baseline", "candidate"])
@pytest.mark.parametrize("token", ["true", "Infinity", "-Infinity", "NaN", '"fast"', "null"])
def test_a_latency_that_is_not_a_finite_number_is_one_line_naming_the_record(run_export, tmp_path, capsys, token,
                                                                              side):
    _, path = run_export
    payload = json.loads(path.read_text())
    i, r = next((i, r) for i, r in enumerate(payload["records"]) if r["kind"] == "latency" and r["status"] == "ok")
    r["metrics"]["latency_median_ms"] = "@@token@@"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(payload).replace('"@@token@@"', token))  # Python's json reads these back
    sides = (bad, path) if side == "baseline" else (path, bad)
    capsys.readouterr()
    assert main(["regress", "--baseline", str(sides[0]), "--candidate", str(sides[1])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err and str(bad) in err
    named = rf"malformed record \(#{i}, latency lenet5 {r['runtime']} {r['precision']} batch {r['batch']}\)"
    assert re.search(named, err) and "latency_median_ms" in err, err
