import json

import pytest

from perfkit.cli import main
from perfkit.errors import PerfkitError
from perfkit.report.records_io import write_json
from perfkit.report.regress import Side, compare, load_side
from perfkit.store import Kind


def _verdicts(result, verdict):
    return {(c["model"], c["runtime"], c["batch"], c["metric"]) for c in result["changes"] if c["verdict"] == verdict}


def test_identical_runs_pass(store, make_run, capsys):
    base, cand = make_run(store), make_run(store)
    result = compare(load_side(store, base), load_side(store, cand))
    assert result["regressions"] == 0 and result["compared"] > 30
    assert all(c["verdict"] == "same" for c in result["changes"])
    assert main(["regress", "--baseline", base, "--candidate", cand]) == 0
    assert "no metric changed" in capsys.readouterr().out


def test_top1_drop_is_a_regression(store, make_run, capsys):
    base, cand = make_run(store), make_run(store, top1_shift=-1.0)
    result = compare(load_side(store, base), load_side(store, cand), max_top1_drop_pp=0.5)
    assert _verdicts(result, "regression") == {("resnet18", "onnx", None, "top1_pct"),
                                               ("alexnet", "onnx", None, "top1_pct")}
    [change] = [c for c in result["changes"] if c["model"] == "alexnet" and c["metric"] == "top1_pct"
                and c["runtime"] == "onnx"]
    assert change["change"] == pytest.approx(-1.0) and change["unit"] == "pp"
    # googlenet (random) was at 0.10 % and is clamped at 0: a 0.1 pp drop is within the gate
    assert ("googlenet", "onnx", None, "top1_pct") in _verdicts(result, "within")
    assert compare(load_side(store, base), load_side(store, cand), max_top1_drop_pp=2.0)["regressions"] == 0
    assert main(["regress", "--baseline", base]) == 1  # candidate defaults to the latest run
    captured = capsys.readouterr()
    assert "regression" in captured.out and "2 regression(s)" in captured.err


def test_latency_increase_is_a_regression(store, make_run):
    base, cand = make_run(store), make_run(store, latency_factor=1.2)
    strict = compare(load_side(store, base), load_side(store, cand), max_latency_increase_pct=10)
    assert len(_verdicts(strict, "regression")) == 12  # 3 models × 2 runtimes × 2 batches
    assert all(m == "latency_median_ms" for *_, m in _verdicts(strict, "regression"))
    assert ("alexnet", "eager", 1, "throughput_per_s") in _verdicts(strict, "changed")  # reported, not gated
    assert compare(load_side(store, base), load_side(store, cand), max_latency_increase_pct=25)["regressions"] == 0
    faster = compare(load_side(store, cand), load_side(store, base), max_latency_increase_pct=10)
    assert faster["regressions"] == 0 and len(_verdicts(faster, "improved")) == 12


def test_parity_failure_and_new_errors_are_regressions(store, make_run, crashed):
    base = make_run(store, error=False)
    cand = make_run(store, parity_fail=True, error=False)
    result = compare(load_side(store, base), load_side(store, cand))
    assert _verdicts(result, "regression") == {("alexnet", "onnx", 8, "passed")}  # batch 1 still passes
    # the same candidate, but alexnet/onnx latency at batch 1 now crashes
    records = crashed(store.records(cand), "alexnet", "onnx", 1, "session crashed")
    result = compare(load_side(store, base), Side("edited", {"env": {}}, records))
    [c] = [c for c in result["changes"] if c["verdict"] == "now fails"]
    assert (c["model"], c["runtime"], c["batch"]) == ("alexnet", "onnx", 1) and "session crashed" in c["candidate"]
    assert result["regressions"] == 2  # parity and the crash


def test_missing_and_new_records_are_listed_not_gated(store, make_run):
    base = make_run(store, models=("resnet18", "alexnet"))
    cand = make_run(store, models=("resnet18", "googlenet"))
    result = compare(load_side(store, base), load_side(store, cand))
    assert result["regressions"] == 0
    assert {c["model"] for c in result["changes"] if c["verdict"] == "missing"} == {"alexnet"}
    assert {c["model"] for c in result["changes"] if c["verdict"] == "new"} == {"googlenet"}


def test_nothing_in_common_is_an_error(store, make_run):
    base = make_run(store, models=("alexnet",), error=False)
    cand = make_run(store, models=("googlenet",), error=False)
    with pytest.raises(PerfkitError, match="no record in common"):
        compare(load_side(store, base), load_side(store, cand))


def test_json_baseline_roundtrip(store, make_run, tmp_path, capsys):
    base = make_run(store)
    path = write_json(store, base, tmp_path / "ci" / "baseline.json")
    from_file = load_side(None, str(path))
    from_store = load_side(store, base)
    assert from_file.run["id"] == base and len(from_file.records) == len(from_store.records)
    assert [r.to_dict() for r in from_file.records] == [r.to_dict() for r in from_store.records]
    cand = make_run(store, latency_factor=1.5)
    by_file = compare(from_file, load_side(store, cand))
    by_run = compare(from_store, load_side(store, cand))
    assert by_file["changes"] == by_run["changes"] and by_file["regressions"] == 12
    assert main(["regress", "--baseline", str(path), "--candidate", cand, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["regressions"] == 12 and out["baseline"].startswith(str(path))
    # the CLI export writes the same file format
    assert main(["report", base, "--json-out", str(tmp_path / "cli.json")]) == 0
    assert main(["regress", "--baseline", str(tmp_path / "cli.json"), "--candidate", base]) == 0


def test_bad_baseline_files(tmp_path, store):
    with pytest.raises(PerfkitError, match=r"does not exist \(export one with `perfkit report RUN --json-out "):
        load_side(store, str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(PerfkitError, match=r"not a perfkit JSON export \(write one with `perfkit report RUN --json-out"):
        load_side(store, str(bad))
    bad.write_text("{not json")
    with pytest.raises(PerfkitError, match="not a perfkit JSON export"):
        load_side(store, str(bad))


def _kind(payload, kind):
    return next(i for i, r in enumerate(payload["records"]) if r["kind"] == kind and r["status"] == "ok")


def _lat(payload):
    return _kind(payload, "latency")


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["records"][_lat(p)].__setitem__("metrics", None),
     r"malformed record \(#\d+, latency resnet18 eager fp32 batch 1\): metrics must be a mapping"),
    (lambda p: p["records"].__setitem__(_lat(p), "hello"), r"malformed record \(#\d+\): a record must be a JSON object"),
    (lambda p: p["records"][_lat(p)]["metrics"].__setitem__("latency_median_ms", "fast"),
     r'malformed record \(#\d+, latency .*\): latency_median_ms is "fast", not a number'),
    (lambda p: p["records"][_lat(p)]["metrics"].__setitem__("latency_median_ms", True),
     r"latency_median_ms is true, not a number"),
    (lambda p: p["records"][_lat(p)]["metrics"].__setitem__("latency_median_ms", float("inf")),
     r"latency_median_ms is Infinity, not a finite number"),
    (lambda p: p["records"][_lat(p)]["metrics"].__setitem__("latency_median_ms", None),
     r"latency_median_ms is null, not a number"),  # a gate needs its number
    (lambda p: p["records"][_kind(p, "parity")]["metrics"].__setitem__("passed", "yes"),
     r"\(#\d+, parity .*\): passed is \"yes\", not true or false"),
    (lambda p: p["records"][_kind(p, "throughput")]["metrics"].__setitem__("samples_per_s", float("-inf")),
     r"\(#\d+, throughput .*\): samples_per_s is -Infinity, not a finite number"),
    (lambda p: p["records"][_lat(p)]["metrics"].__setitem__("latency_median_ms", [1]), "latency_median_ms is \\[1\\]"),
    (lambda p: p["records"][_kind(p, "parity")]["metrics"].__setitem__("max_abs_diff", False),
     r"\(#\d+, parity .*\): max_abs_diff is false, not a number"),
    (lambda p: p["records"][_lat(p)].__setitem__("created", "yesterday"), "'created' is 'yesterday'"),
    (lambda p: p.__setitem__("run", "x"), "'run' must be an object and 'records' a list"),
    (lambda p: p.__setitem__("records", None), "'run' must be an object and 'records' a list"),
], ids=["metrics-null", "record-string", "metric-string", "metric-list", "metric-true", "metric-infinity",
        "gated-null", "verdict-string", "throughput-minus-infinity", "parity-number-false", "created-string",
        "run-string", "records-null"])
def test_malformed_baselines_are_one_line_naming_the_file(store, make_run, tmp_path, capsys, edit, message):
    path = write_json(store, make_run(store, offline=True), tmp_path / "base.json")
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))
    assert main(["regress", "--baseline", str(path), "--candidate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and err.count("\n") == 1 and "internal error" not in err
    assert __import__("re").search(message, err), err


def test_a_contended_timing_is_not_judged(store, make_run, capsys):
    """A timing taken on a busy machine on either side is reported as contended, never as a
    regression, an improvement or within the gate: its change measures the machine."""
    base = make_run(store, offline=True)
    cand = make_run(store, offline=True, latency_factor=3.0, busy=("alexnet", "onnx"))
    result = compare(load_side(store, base), load_side(store, cand), max_latency_increase_pct=10)
    busy = {c for c in _verdicts(result, "contended") if c[3] == "latency_median_ms"}
    assert busy == {("alexnet", "onnx", 1, "latency_median_ms"), ("alexnet", "onnx", 8, "latency_median_ms")}
    assert ("alexnet", "onnx", 8, "samples_per_s") in _verdicts(result, "contended")  # Offline too
    assert result["regressions"] == 10 + 5  # 12 slower medians and 6 Offline drops, less the 3 contended
    [change] = [c for c in result["changes"] if c["verdict"] == "contended" and c["batch"] == 1
                and c["metric"] == "latency_median_ms"]
    assert change["contended"] == "candidate: other processes used 47 % of the CPU"
    back = compare(load_side(store, cand), load_side(store, base))  # contended baseline: the same
    assert ("alexnet", "onnx", 1, "latency_median_ms") in _verdicts(back, "contended")
    assert main(["regress", "--baseline", base, "--candidate", cand]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "│ contended" in out  # the verdict column (its reason wraps in the cell)
    assert f"{len(_verdicts(result, 'contended'))} timing change(s) not judged: contended (other processes" in out


def test_a_calibration_is_text_compared_as_a_description(store, make_run, tmp_path, capsys):
    base = make_run(store, int8="calibrated on 32 synthetic images (minmax) — accuracy not meaningful")
    cand = make_run(store, int8="calibrated on 64 images of ci/calib (entropy)")
    path = write_json(store, base, tmp_path / "base.json")
    result = compare(load_side(None, str(path)), load_side(store, cand))
    changed = {(c["kind"], c["change"], c["verdict"]) for c in result["changes"] if c["metric"] == "calibration"}
    assert changed == {("accuracy", None, "changed"), ("latency", None, "changed"), ("parity", None, "changed")}
    assert result["regressions"] == 0
    payload = json.loads(path.read_text())
    payload["records"][next(i for i, r in enumerate(payload["records"]) if r["metrics"].get("calibration"))][
        "metrics"]["calibration"] = 32
    path.write_text(json.dumps(payload))
    assert main(["regress", "--baseline", str(path), "--candidate", cand]) == 2
    assert "calibration is 32, not text" in capsys.readouterr().err


def test_a_non_finite_number_in_the_store_is_refused_not_compared(store, make_run, capsys):
    """The schema refuses NaN but not infinity; an infinite baseline p50 would make any candidate "improved"."""
    base, cand = make_run(store, error=False), make_run(store, error=False)
    [r] = [r for r in store.records(base) if (r.kind, r.model, r.runtime, r.batch) == (Kind.LATENCY, "alexnet", "onnx", 8)]
    r.metrics["latency_median_ms"], r.created = float("inf"), r.created + 1  # the newest of its key
    store.add(r, base)
    for argv in (["--baseline", base, "--candidate", cand], ["--baseline", cand, "--candidate", base]):
        assert main(["regress", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"run {base} holds a malformed record" in err, err
        assert "latency alexnet onnx fp32 batch 8): latency_median_ms is Infinity, not a finite number" in err


def test_a_gated_number_rising_from_zero_is_still_judged(store, make_run):
    base, cand = make_run(store, error=False), make_run(store, error=False)
    records = []
    for r in store.records(base):
        if r.kind == Kind.LATENCY and r.batch == 1:
            r.metrics["latency_median_ms"] = 0.0  # no % change from 0: the direction still fails the gate
            r.metrics.pop("samples")  # (a baseline from before samples were kept: the medians alone decide)
        records.append(r)
    result = compare(Side("zeroed", {"env": {}}, records), load_side(store, cand))
    regressions = _verdicts(result, "regression")
    assert len(regressions) == 6 and {(b, m) for _, _, b, m in regressions} == {(1, "latency_median_ms")}  # 3 × 2
    assert all(c["change"] is None for c in result["changes"] if c["verdict"] == "regression")
    back = compare(load_side(store, cand), Side("zeroed", {"env": {}}, records))  # 20 ms → 0 ms: faster
    assert back["regressions"] == 0 and len(_verdicts(back, "improved")) == 6


def test_a_run_with_an_unreadable_record_is_a_malformed_side(store, make_run, capsys, corrupt_metrics):
    base, cand = make_run(store), make_run(store)
    [bad] = corrupt_metrics(store.path, '"text"', run_id=base, kind="parity", model="alexnet", runtime="onnx", batch=1)
    assert main(["regress", "--baseline", base, "--candidate", cand]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "internal error" not in captured.err
    assert f"record #{bad} (parity alexnet onnx fp32) of run {base} cannot be read" in captured.err
    with pytest.raises(PerfkitError, match=f"record #{bad} "):
        load_side(store, base)
    assert load_side(store, cand).label == cand  # the other run reads as before


def _with_samples(records, factor: float, spread: float, seed: int):
    """The latency records with their stored samples replaced: a lognormal of ``spread`` around ``factor`` × the
    recorded median, and the median set to match."""
    import numpy as np

    from perfkit.profiler.samples import pack

    out = []
    for r in records:
        if r.kind == Kind.LATENCY and r.status == "ok":
            values = np.random.default_rng(seed + (r.batch or 0)).lognormal(np.log(r.metrics["latency_median_ms"]
                                                                                 * factor), spread, 200)
            r.metrics.update(samples=pack(values), latency_median_ms=float(np.median(values)), iterations=200)
        out.append(r)
    return out


def test_a_median_change_is_judged_against_its_noise(store, make_run):
    """With every timed call stored, a p50 past the limit is a regression only when the 95 % interval of the
    median ratio excludes no change; otherwise `inconclusive` (reported with its interval, not gated)."""
    base = Side("base", {"env": {}}, _with_samples(store.records(make_run(store, error=False)), 1.0, 0.02, 1))
    slow = Side("slow", {"env": {}}, _with_samples(store.records(make_run(store, error=False)), 1.3, 0.02, 2))
    result = compare(base, slow)
    medians = [c for c in result["changes"] if c["metric"] == "latency_median_ms"]
    assert medians and all(c["verdict"] == "regression" for c in medians)
    assert all(c["interval"][0] > 20 for c in medians)  # about +30 %, the whole interval above 0
    noisy_base = Side("nb", {"env": {}}, _with_samples(store.records(make_run(store, error=False)), 1.0, 0.9, 3))
    noisy = Side("n", {"env": {}}, _with_samples(store.records(make_run(store, error=False)), 1.15, 0.9, 4))
    result = compare(noisy_base, noisy)
    verdicts = {c["verdict"] for c in result["changes"] if c["metric"] == "latency_median_ms"}
    assert "inconclusive" in verdicts and result["regressions"] == sum(
        c["verdict"] == "regression" for c in result["changes"])
    inconclusive = [c for c in result["changes"] if c["verdict"] == "inconclusive"]
    assert all(c["interval"][0] <= 0 <= c["interval"][1] for c in inconclusive)
