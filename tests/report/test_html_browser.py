"""Open a rendered report in headless Chromium: charts drawn, no console error, no network request, no
horizontal scrolling at 1400 px, no two chart text labels overlapping.

Slow (starts a browser); skipped where Chromium is not installed (Debian: apt-get install chromium).
Same check by hand: python benchmarks/check_html_browser.py reports/<run-id>.html
"""

import importlib.util
from pathlib import Path

import pytest

from perfkit.report.html import render_html

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "check_html_browser.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_html_browser", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checker = _checker()
needs_chromium = pytest.mark.skipif(checker.find_chromium() is None,
                                    reason="no Chromium installed (Debian: apt-get install chromium)")


@pytest.mark.slow
@needs_chromium
def test_report_renders_offline_in_chromium(store, make_run, tmp_path):
    path = render_html(store, make_run(store, train=True, parity_fail=True), tmp_path / "report.html")
    result = checker.check_html(path)
    assert result["loaded"] and result["console_errors"] == [] and result["exceptions"] == []
    assert result["external_requests"] == [] and result["requests"] == [path.resolve().as_uri()]
    charts = {c["id"]: c for c in result["charts"]}
    assert set(charts) == {"chart-acc_vs_macs", "chart-acc_vs_latency", "chart-acc_bars", "chart-latency_vs_batch",
                           "chart-latency_distribution", "chart-training"}
    assert all(c["svgs"] >= 1 and c["traces"] >= 1 for c in charts.values())
    assert charts["chart-latency_vs_batch"]["points"] >= 24  # 6 lines × 2 batches × 2 panels drawn
    assert result["horizontal_scroll"] == [] and result["layout"]["width"] == 1400  # the window it was measured in
    assert result["overlapping_labels"] == [] and result["layout"]["labels"] >= 3  # the chosen variants at least
    assert result["ok"]


@pytest.mark.slow
@needs_chromium
def test_a_report_with_int8_offline_and_contention_reads_at_a_glance(store, make_run, tmp_path):
    """More candidates, more columns (Offline) and notes: still no sideways scrolling, no label on a label."""
    run_id = make_run(store, parity_fail=True, int8="32 seeded synthetic images (not meaningful for accuracy)",
                      offline=True, busy=("resnet18", "onnx"))
    result = checker.check_html(render_html(store, run_id, tmp_path / "report.html"))
    assert result["console_errors"] == [] and result["exceptions"] == [] and result["external_requests"] == []
    assert result["horizontal_scroll"] == [] and result["overlapping_labels"] == []


@pytest.mark.slow
@needs_chromium
def test_checker_catches_requests_and_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><body><div class="plotly-graph-div" id="c"><svg class="main-svg"><g class="textpoint">'
                    '<text x="10" y="20">first label</text></g><g class="textpoint"><text x="12" y="22">second'
                    '</text></g></svg></div><div class="wide" style="overflow-x:auto"><table id="t"><tr><td '
                    'style="min-width:3000px">wide</td></tr></table></div>'
                    '<img src="http://127.0.0.1:9/x.png"><script>console.error("boom"); nope();</script>'
                    "</body></html>")
    result = checker.check_html(page)
    assert not result["ok"]
    assert result["external_requests"] == ["http://127.0.0.1:9/x.png"]
    assert "boom" in result["console_errors"] and any("nope" in e for e in result["exceptions"])
    assert result["overlapping_labels"] == [["c", "first label", "second"]]
    assert [s.split(":")[0] for s in result["horizontal_scroll"]] == ["t"]  # the box scrolls, not the page
