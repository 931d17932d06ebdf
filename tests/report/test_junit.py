import json
import xml.etree.ElementTree as ET

from perfkit.cli import main
from perfkit.report.junit import junit_xml, write_junit
from perfkit.report.regress import Side, compare, load_side


def _parse(text: str) -> ET.Element:
    root = ET.fromstring(text.encode("utf-8"))  # bytes: the document's own encoding declaration applies
    assert root.tag == "testsuites"
    return root


def _case(suite: ET.Element, classname: str, name: str) -> ET.Element:
    [case] = [c for c in suite.iter("testcase") if (c.get("classname"), c.get("name")) == (classname, name)]
    return case


def _counts_agree(root: ET.Element, result: dict) -> None:
    """The suite's counts are those of its testcases, and those of the comparison."""
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    failed = [c for c in cases if c.find("failure") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    for element in (root, suite):
        assert element.get("tests") == str(len(cases)) == str(len(result["changes"]))
        assert element.get("failures") == str(len(failed)) == str(result["regressions"])
        assert element.get("skipped") == str(len(skipped)) and element.get("errors") == "0"


def test_a_regression_is_a_failure_with_its_numbers(store, make_run):
    base, cand = make_run(store), make_run(store, latency_factor=1.2, parity_fail=True)
    result = compare(load_side(store, base), load_side(store, cand), max_latency_increase_pct=10)
    root = _parse(junit_xml(result))
    _counts_agree(root, result)
    suite = root.find("testsuite")
    assert result["regressions"] == 13  # 12 latencies (3 models × 2 runtimes × 2 batches) and a parity check
    latency = _case(suite, "alexnet.onnx.fp32", "latency latency_median_ms [batch 8, cpu]")
    failure = latency.find("failure")
    assert failure.get("type") == "regression"
    assert failure.get("message") == "regression: latency_median_ms 25.2 → 30.24 (+20.00 %; limit 10 %)"
    out = latency.find("system-out").text.splitlines()
    assert out[:3] == ["baseline: 25.2", "candidate: 30.24", "change: +20.00 %"]
    assert out[3].startswith("interval (95%, change of the median): [+")  # both sides kept their calls
    parity = _case(suite, "alexnet.onnx.fp32", "parity passed [batch 8, cpu]")
    assert parity.find("failure").get("message") == "regression: passed True → False"
    unchanged = _case(suite, "alexnet.onnx.fp32", "accuracy top1_pct [cpu]")  # accuracy has no batch
    assert unchanged.find("failure") is None and unchanged.find("skipped") is None
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["baseline"] == base and props["candidate"] == cand and props["max_latency_increase_pct"] == "10"


def test_what_regress_does_not_judge_is_skipped_with_the_reason(store, make_run):
    base = make_run(store)
    cand = make_run(store, models=("resnet18", "alexnet"), latency_factor=1.2, busy=("alexnet", "onnx"))
    result = compare(load_side(store, base), load_side(store, cand))
    root = _parse(junit_xml(result))
    _counts_agree(root, result)
    suite = root.find("testsuite")
    busy = _case(suite, "alexnet.onnx.fp32", "latency latency_median_ms [batch 1, cpu]").find("skipped")
    assert busy.get("type") == "contended" and busy.get("message").startswith(
        "contended, not judged: candidate: other processes used 47 % of the CPU")
    gone = _case(suite, "googlenet.onnx.fp32", "latency record [batch 1, cpu]").find("skipped")
    assert (gone.get("type"), gone.get("message")) == ("missing", "in the baseline, not in the candidate")
    quiet = _case(suite, "alexnet.eager.fp32", "latency latency_median_ms [batch 1, cpu]")
    assert quiet.find("failure") is not None  # the same change on a quiet machine is judged


def test_a_step_that_now_fails_is_a_failure_and_control_characters_stay_valid_xml(store, make_run, crashed):
    base, cand = make_run(store, error=False), make_run(store, error=False)
    records = crashed(store.records(cand), "alexnet", "onnx", 1, "\x1b[31msession crashed\x1b[0m")
    result = compare(load_side(store, base), Side("edited", {"env": {}}, records))
    root = _parse(junit_xml(result))
    _counts_agree(root, result)
    failure = _case(root.find("testsuite"), "alexnet.onnx.fp32", "latency status [batch 1, cpu]").find("failure")
    assert failure.get("type") == "now fails" and "[31msession crashed" in failure.get("message")


def test_regress_cli_writes_junit_beside_its_verdict(store, make_run, tmp_path, capsys):
    base, cand = make_run(store), make_run(store, top1_shift=-1.0)
    path = tmp_path / "ci" / "regress.xml"
    assert main(["regress", "--baseline", base, "--candidate", cand, "--junit", str(path), "--json"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout stays the JSON alone
    assert str(path) in captured.err.replace("\n", "")
    _counts_agree(_parse(path.read_text(encoding="utf-8")), result)
    assert result["regressions"] == 2  # resnet18 and alexnet onnx top-1


def test_regress_junit_to_a_folder_is_refused_before_the_work(store, make_run, tmp_path, capsys):
    base = make_run(store)
    assert main(["regress", "--baseline", base, "--candidate", "nope", "--junit", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--junit {tmp_path} is a directory" in err and err.count("\n") == 1  # not "no run matches 'nope'"


def test_write_junit_returns_the_path(store, make_run, tmp_path):
    run = make_run(store)
    result = compare(load_side(store, run), load_side(store, run))
    path = write_junit(result, tmp_path / "r.xml")
    root = _parse(path.read_text(encoding="utf-8"))
    assert root.find("testsuite").findall("testcase") and root.get("failures") == "0" and root.get("skipped") == "0"
