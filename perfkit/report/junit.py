"""``perfkit regress --junit FILE``: the comparison as a JUnit XML report, which CI systems render.

One testcase per compared metric of a record key (model, runtime, precision, batch, device, kind):
classname ``model.runtime.precision``, name ``kind metric [batch B, device]``. A regression or a step
that now fails is a failure; what regress does not judge (contended, inconclusive, config changed) and
what has no counterpart (missing, new) is skipped with the reason; everything else passes. Each
testcase's system-out holds the baseline, the candidate, the change and its noise interval; the
suite's properties hold the two sides, the thresholds and how the environments differ.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from perfkit.report.output import check_writable, write_text
from perfkit.report.regress import compared

FAILED = ("regression", "now fails")
SKIPPED = ("contended", "inconclusive", "config changed", "missing", "new")
# XML 1.0 cannot hold most control characters (an ANSI colour code in an error message would make
# the whole file unreadable), so they are dropped from every text and attribute
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value) -> str:
    return _NOT_XML.sub("", "none" if value is None else str(value))


def _change(c: dict) -> str:
    return f"{c['change']:+.2f} {c['unit']}".rstrip() if c.get("change") is not None else ""


def _limit(c: dict, thresholds: dict) -> str:
    """``limit 10 %``: the threshold of the gated metric ``c`` is about (empty for an ungated one)."""
    limit = next((m.limit for m in compared(c["kind"]) if m.name == c["metric"] and m.limit), None)
    return "" if limit is None else f"limit {thresholds[limit]:g} {c['unit']}".rstrip()


def _reason(c: dict, thresholds: dict) -> str:
    """One line on why a change failed or was skipped."""
    verdict = c["verdict"]
    if verdict == "regression":
        why = "; ".join(p for p in (_change(c), _limit(c, thresholds)) if p)
        what = f"regression: {c['metric']} {_text(c['baseline'])} → {_text(c['candidate'])}"
        return f"{what} ({why})" if why else what
    if verdict == "now fails":
        return f"now fails: {_text(c['candidate'])}"
    if verdict == "contended":
        return f"contended, not judged: {c['contended']}"
    if verdict == "inconclusive":
        low, high = c["interval"]
        return f"inconclusive: {_change(c)} but the 95% interval [{low:+.2f} %, {high:+.2f} %] includes no change"
    if verdict == "config changed":
        return "measured in another configuration, not judged: " + "; ".join(c["config"])
    if verdict == "missing":
        return "in the baseline, not in the candidate"
    return "in the candidate, not in the baseline: nothing to compare"


def _output(c: dict) -> str:
    lines = [f"baseline: {_text(c['baseline'])}", f"candidate: {_text(c['candidate'])}"]
    if c.get("change") is not None:
        lines.append(f"change: {_change(c)}")
    if c.get("interval"):
        lines.append("interval (95%, change of the median): [{:+.2f} %, {:+.2f} %]".format(*c["interval"]))
    return "\n".join(lines)


def testcase(c: dict, thresholds: dict) -> ET.Element:
    """One change of ``perfkit.report.regress.compare`` as a <testcase>."""
    where = ", ".join(_text(v) for v in (None if c["batch"] is None else f"batch {c['batch']}", c["device"]) if v)
    case = ET.Element("testcase", classname=".".join(_text(c[k]) for k in ("model", "runtime", "precision")),
                      name=_text(f"{c['kind']} {c['metric']} [{where}]"))
    if c["verdict"] in FAILED or c["verdict"] in SKIPPED:
        tag = "failure" if c["verdict"] in FAILED else "skipped"
        ET.SubElement(case, tag, message=_text(_reason(c, thresholds)), type=c["verdict"])
    ET.SubElement(case, "system-out").text = _text(_output(c))
    return case


def junit_xml(result: dict) -> str:
    """The result of ``compare`` as a JUnit XML document (<testsuites> holding one <testsuite>)."""
    changes = result["changes"]
    counts = {"tests": str(len(changes)), "failures": str(sum(c["verdict"] in FAILED for c in changes)),
              "errors": "0", "skipped": str(sum(c["verdict"] in SKIPPED for c in changes))}
    root = ET.Element("testsuites", name="perfkit regress", **counts)
    suite = ET.SubElement(root, "testsuite", name=_text(f"perfkit regress: {result['candidate']} vs baseline "
                                                        f"{result['baseline']}"), **counts)
    props = ET.SubElement(suite, "properties")
    named = [("baseline", result["baseline"]), ("candidate", result["candidate"]),
             *sorted(result["thresholds"].items()),
             ("env_differences", "; ".join(result["env_differences"]) or "none")]
    for name, value in named:
        ET.SubElement(props, "property", name=name, value=_text(value))
    suite.extend(testcase(c, result["thresholds"]) for c in changes)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: dict, path: str | Path, flag: str = "--junit") -> Path:
    check_writable(path, flag)
    return write_text(path, junit_xml(result), flag)
