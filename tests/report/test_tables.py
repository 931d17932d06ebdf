"""The Rich tables (perfkit.report.tables): the run summary and the per-command tables."""

from rich.console import Console

from perfkit.report.rows import load_run
from perfkit.profiler.scenarios import get
from perfkit.report.tables import export_table, parity_table, runs_table, scenario_table, summary_table
from perfkit.store import Kind


def profile_table(records, title):
    """The SingleStream table (what `perfkit profile` prints first)."""
    return scenario_table(get("singlestream"), records, title)


def _text(*renderables, width=220) -> str:
    out = Console(record=True, width=width)
    for item in renderables:
        out.print(item)
    return out.export_text()


def test_rich_summary_prints_rows_random_mark_and_failures(store, make_run):
    run_id = make_run(store, train=True, parity_fail=True)
    text = _text(*summary_table(*load_run(store, run_id)))
    assert f"run {run_id}" in text and "(random)" in text
    assert "could not run" in text and "RuntimeError: TensorRT is not installed [tensorrt extra]" in text
    assert "alexnet onnx fp32: parity FAIL" in text
    assert "training comparison" in text and "cifar10" in text
    assert "69.76" in text  # published resnet18 top-1, from the run's model record
    assert "(failed)" in text  # the run's status


def test_no_accuracy_run_says_so(store, make_run):
    text = _text(*summary_table(*load_run(store, make_run(store, accuracy=False))))
    assert "No measured accuracy in this run" in text


def test_summary_of_a_run_without_candidates(store):
    with store.run("perfkit train lenet5") as run_id:
        pass
    text = _text(*summary_table(*load_run(store, run_id)))
    assert "no model × runtime was measured" in text


def test_command_tables_render_the_records(store, make_run):
    run_id = make_run(store, parity_fail=True)
    records = [r for r in store.records(run_id) if r.model == "alexnet" or r.runtime == "tensorrt"]
    text = _text(export_table(records, "exports"), parity_table(records, "parity"),
                 profile_table(records, "profile"))
    assert "exported" in text and "FAILED" in text and "TensorRT is not installed" in text
    assert "FAIL" in text and "pass" in text and "75.0%" in text  # parity at batch 8 failed, batch 1 passed
    assert "5.600 ms" in text and "25.200 ms" in text  # alexnet onnx p50 at batch 1 and 8
    assert len([r for r in records if r.kind == Kind.LATENCY]) == 4


def test_runs_table(store, make_run):
    make_run(store)
    runs = store.runs()
    for r in runs:
        r["seconds"] = r["finished"] - r["started"]
    text = _text(runs_table(runs, store.path))
    assert runs[0]["id"] in text and "failed" in text and "perfkit run (fixture)" in text
    assert runs[0]["env"]["hardware"]["key"] in text  # the hardware it ran on (its label may wrap)


def test_cached_legend_only_when_something_was_served_from_the_cache():
    from perfkit.store import Record

    def export(runtime, status="ok", cached=False):
        metrics = {"export_seconds": 1.0, "artifact_bytes": 10, "cached": cached} if status == "ok" else {}
        return Record(Kind.EXPORT, "m", metrics, runtime=runtime, precision="fp32", status=status,
                      error=None if status == "ok" else "ArtifactError: boom")

    legend = "served from the artifact cache"
    assert legend not in _text(export_table([export("onnx", "error"), export("aoti", "error")], "export"))
    assert legend not in _text(export_table([export("onnx"), export("aoti", "error")], "export"))
    assert legend in _text(export_table([export("onnx", cached=True), export("aoti", "error")], "export"))


def test_contended_timings_are_marked_wherever_they_are_shown(store, make_run):
    """alexnet onnx was timed beside a busy process (47 %), everything else on a quiet machine (1 %):
    its numbers, and only its, carry the mark, and each table says what the mark means."""
    run, records = load_run(store, make_run(store, offline=True, busy=("alexnet", "onnx")))
    alexnet = [r for r in records if r.model == "alexnet"]
    profile = _text(profile_table(alexnet, "profile"), width=300)
    assert "5.600 ms†" in profile and "25.200 ms†" in profile  # onnx p50 at batch 1 and 8
    assert "8.000 ms†" not in profile and "8.000 ms" in profile  # eager, quiet
    assert "47%" in profile and "1%" in profile  # the other-CPU column, both
    assert ("† contended: other processes used 47 % of the CPU during 2 of 4 timings (onnx fp32 batch 1, onnx fp32 "
            "batch 8) — re-run on a quiet machine") in profile
    offline = _text(scenario_table(get("offline"), alexnet, "offline"), width=400)
    [onnx_line] = [line for line in offline.splitlines() if "│ onnx" in line]
    [eager_line] = [line for line in offline.splitlines() if "│ eager" in line]
    assert "†" in onnx_line and "†" not in eager_line
    assert "during 1 of 2 timings (onnx fp32 batch 8 offline)" in offline  # one model: not named
    summary = _text(*summary_table(run, records), width=300)
    assert "5.60†" in summary and "25.20†" in summary and "8.00†" not in summary
    assert ("alexnet onnx fp32: contended: other processes used up to 47 % of the CPU while timing batch 1, 8 and "
            "offline (batch 8) (†) — re-run on a quiet machine") in summary
    assert ("during 3 of 18 timings (alexnet onnx fp32 batch 1, alexnet onnx fp32 batch 8, alexnet onnx fp32 batch 8 "
            "offline)") in summary  # the caption: every candidate's timings counted, the model named


def test_a_quiet_run_has_no_mark_and_unmeasured_contention_is_never_called_clean(store, make_run):
    run, records = load_run(store, make_run(store))
    lat = [r for r in records if r.kind == Kind.LATENCY]
    text = _text(profile_table(lat, "profile"), *summary_table(run, records))
    assert "†" not in text and "contended" not in text and "not measured" not in text
    for r in lat[:2]:  # two timings whose contention could not be read (no /proc/stat)
        r.metrics.update(other_cpu_pct=None, contended=None)
    text = _text(profile_table(lat, "profile"))
    assert "contention not measured for 2 timing(s)" in text and "not known to be clean" in text
    for r in lat:  # records older than schema 4 have no contention metrics: nothing said either way
        r.metrics.pop("other_cpu_pct"), r.metrics.pop("contended")
    assert "contention" not in _text(profile_table(lat, "profile"))


def test_the_summary_opens_with_the_decision(store, make_run):
    run, records = load_run(store, make_run(store, parity_fail=True, offline=True))
    items = summary_table(run, records)
    first = _text(items[0], width=200)
    assert first.lstrip().startswith("what to ship")
    [alexnet] = [line for line in first.splitlines() if line.lstrip().startswith("alexnet")]
    assert "SingleStream p50" in alexnet and "eager fp32" in alexnet and "8.00 ms" in alexnet  # onnx failed parity
    [resnet] = [line for line in first.splitlines() if line.lstrip().startswith("resnet18")]
    assert "onnx fp32" in resnet and "1.43× vs eager fp32" in resnet and "eager fp32 20.0 ms (1.00×)" in resnet
    assert sum("Offline samples/s" in line for line in first.splitlines()) == 3  # a line per model
    limits = _text(*items[1:5], width=200)
    assert "what limits the answer" in limits and "alexnet — " in limits and "left out (parity FAILED): onnx fp32" in limits
