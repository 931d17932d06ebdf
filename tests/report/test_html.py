import json
import re
from html.parser import HTMLParser

import pytest
from plotly.offline import get_plotlyjs

from perfkit.report.html import build_charts, pareto_front, render_html, report_context


class _Refs(HTMLParser):
    """Every URL the page would load by itself: script/img/iframe src, stylesheet and icon links."""

    def __init__(self):
        super().__init__()
        self.urls, self.scripts, self.details = [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "details":
            self.details += 1
        if tag in ("script", "img", "iframe", "source", "video", "audio", "embed") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"])


def _figures(html: str) -> dict[str, list[dict]]:
    """chart div id -> the trace list plotly was given (Plotly.newPlot("id", [traces], ...))."""
    out = {}
    for m in re.finditer(r'Plotly\.newPlot\(\s*"(chart-[a-z_]+)",\s*(\[.*?\]),\s*\{', html, re.S):
        out[m.group(1)] = json.loads(m.group(2))
    return out


@pytest.fixture
def report(store, make_run, tmp_path):
    run_id = make_run(store, train=True, parity_fail=True)
    return render_html(store, run_id, tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_one_self_contained_file_with_plotly_inlined(report, tmp_path):
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.html"]
    assert get_plotlyjs()[:2000] in report  # the library itself, not a reference to it
    refs = _Refs()
    refs.feed(report)
    assert refs.urls == []  # nothing to fetch: no CDN script, stylesheet, font or image
    assert not re.search(r'<(script|link|img)[^>]+(src|href)\s*=\s*["\']?(https?:)?//', report)


def test_charts_carry_the_run_data(report):
    figs = _figures(report)
    assert set(figs) == {"chart-acc_vs_macs", "chart-acc_vs_latency", "chart-acc_bars", "chart-latency_vs_batch",
                         "chart-latency_distribution", "chart-training"}
    boxes = {t["name"]: t for t in figs["chart-latency_distribution"]}  # from every stored call (101 per point)
    onnx = boxes["onnx fp32"]
    i = onnx["x"].index("alexnet b1")
    assert onnx["median"][i] == pytest.approx(5.6, rel=1e-3) and onnx["lowerfence"][i] == pytest.approx(0.8 * 5.6, rel=1e-3)
    assert onnx["upperfence"][i] == pytest.approx(5.6 * (0.8 + 0.4 * 0.99), rel=1e-3)  # the p99 of 101 calls
    bubbles = {t["name"]: t for t in figs["chart-acc_vs_macs"]}
    assert set(bubbles) == {"eager (measured)", "onnx (measured)", "published (torchvision metadata)",
                            "Pareto front (measured)"}
    eager = bubbles["eager (measured)"]
    i = eager["hovertext"].index("resnet18")  # every point names itself on hover; labels: see below
    assert eager["x"][i] == pytest.approx(1.814073856) and eager["y"][i] == pytest.approx(69.70)
    assert eager["marker"]["size"][i] == 11_689_512  # bubble size = params
    assert "googlenet (random weights)" in eager["hovertext"]
    bars = {t["name"] for t in figs["chart-acc_bars"]}
    assert {"published (torchvision metadata)", "measured eager fp32", "measured onnx fp32"} <= bars
    lat = {t["name"]: t for t in figs["chart-latency_vs_batch"] if t.get("showlegend", True) is not False}
    assert lat["alexnet · onnx fp32"]["x"] == [1, 8]


def test_report_sections(report):
    for section in ('id="summary-table"', 'id="parity-table"', 'id="training-table"', 'id="env-table"',
                    'id="failure-table"', 'id="random-weights-note"'):
        assert section in report, section
    assert "TensorRT is not installed [tensorrt extra]" in report
    refs = _Refs()
    refs.feed(report)
    # everything after the decision collapses: accuracy, summary, latency, parity, training, layers, environment,
    # failures; inside the layers, one per-layer summary per model
    assert refs.details == 8 + 3
    assert "Conv2d-1" in report and "-1×64×112×112" in report
    assert 'id="no-measured-accuracy"' not in report


def test_no_measured_accuracy_uses_published_honestly(store, make_run, tmp_path):
    run_id = make_run(store, accuracy=False, error=False)
    ctx = report_context(store, run_id)
    assert not ctx["measured_accuracy"]
    names = {t.name for t in ctx["charts"]["acc_vs_macs"].data}
    assert names == {"published (torchvision metadata)", "Pareto front (published)"}
    assert "PUBLISHED" in ctx["charts"]["acc_vs_macs"].layout.title.text
    assert all("published" in t.name for t in ctx["charts"]["acc_vs_latency"].data if t.name != "Pareto front")
    assert [t.name for t in ctx["charts"]["acc_bars"].data] == ["published (torchvision metadata)"] * 2
    html = render_html(store, run_id, tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="no-measured-accuracy"' in html and 'id="training-table"' not in html and "chart-training" not in html
    assert 'id="failure-table"' not in html and "Every step ran." in html


def test_random_points_stay_off_the_measured_pareto_front(store, make_run):
    ctx = report_context(store, make_run(store))
    [front] = [t for t in ctx["charts"]["acc_vs_macs"].data if t.name.startswith("Pareto")]
    # googlenet (random weights, 0.1 %) has fewer MACs than resnet18 but must not be on the front
    assert list(front.x) == pytest.approx([0.714197696, 1.814073856])
    assert list(front.y) == pytest.approx([56.50, 69.70])


def test_pareto_front():
    pts = [(1.0, 50.0), (2.0, 70.0), (2.0, 60.0), (3.0, 65.0), (0.5, 40.0), (4.0, 75.0)]
    assert pareto_front(pts) == [(0.5, 40.0), (1.0, 50.0), (2.0, 70.0), (4.0, 75.0)]
    assert pareto_front([]) == []


def test_empty_batches_make_no_latency_chart():
    rows = [{"model": "m", "weights": None, "random": False, "runtime": "eager", "precision": "fp32",
             "top1_pct": None, "ref_top1_pct": None, "top5_pct": None, "ref_top5_pct": None, "ref_weights": None,
             "macs": None, "params": None, "batches": []}]
    assert "latency_vs_batch" not in build_charts(rows, {})


def test_training_only_run(store, tmp_path):
    from perfkit.store import Kind, Record

    with store.run("perfkit train lenet5") as run_id:
        for epoch in range(2):
            store.add(Record(kind=Kind.TRAIN, model="lenet5", weights="random:seed0", device="cpu", metrics={
                "epoch": epoch, "epochs": 2, "train_loss": 2.0 - epoch, "train_acc": 0.3 + 0.2 * epoch,
                "val_loss": 2.1 - epoch, "val_acc": 0.25 + 0.2 * epoch, "epoch_seconds": 3.0, "dataset": "cifar10"}),
                run_id)
    ctx = report_context(store, run_id)
    assert ctx["rows"] == [] and set(ctx["charts"]) == {"training"}
    [val, train] = [t for t in ctx["charts"]["training"].data if t.xaxis == "x"]
    assert list(val.y) == [0.25, 0.45] and list(train.y) == [0.3, 0.5] and list(val.x) == [0, 1]
    html = render_html(store, run_id, tmp_path / "t.html").read_text(encoding="utf-8")
    assert 'id="training-table"' in html and 'id="no-candidates"' in html and 'id="summary-table"' not in html
    assert 'id="no-measured-accuracy"' not in html


def test_complexity_memory_estimates_say_mib_and_their_convention(report):
    # the fixture's estimates are MiB (2**20 bytes): never labelled MB, with the convention named
    assert "estimated MB" not in report
    assert "estimated MiB (2**20 bytes): input 0.57, forward/backward 60.00" in report
    assert "torchsummary" in report and "container" in report


def test_schema_2_complexity_records_keep_their_memory_estimates():
    from perfkit.report.rows import memory_mib

    old = {"input_mb": 0.57, "forward_backward_mb": 60.0, "params_mb": 44.6, "total_mb": 105.2}  # held MiB
    assert memory_mib(old) == {"input": 0.57, "forward_backward": 60.0, "params": 44.6, "total": 105.2}


def test_contended_numbers_are_marked_and_explained(store, make_run, tmp_path):
    run_id = make_run(store, offline=True, busy=("alexnet", "onnx"))
    html = render_html(store, run_id, tmp_path / "r.html").read_text(encoding="utf-8")
    mark = '<span class="contended" title="contended: other processes used 47.0 % of the CPU while this was'
    summary = html[html.index('id="summary-table"'):html.index("</table>", html.index('id="summary-table"'))]
    assert summary.count(mark) == 3  # alexnet onnx: p50 at batch 1 and 8, Offline samples/s
    offline = html[html.index('id="offline-table"'):html.index("</table>", html.index('id="offline-table"'))]
    assert offline.count(mark) == 1
    note = html[html.index('id="contention-note"'):html.index("</div>", html.index('id="contention-note"'))]
    assert "other processes used 47 % of the CPU during 3 of 18 timings" in note
    quiet = render_html(store, make_run(store, offline=True), tmp_path / "q.html").read_text(encoding="utf-8")
    assert 'class="contended"' not in quiet and 'id="contention-note"' not in quiet


def test_server_records_get_a_qps_vs_p99_chart_per_runtime(store, make_run, tmp_path):
    """The Server scenario's search: p99 at every target QPS tried, filled where the bound was met."""
    from perfkit.store import Record

    run_id = make_run(store)
    trials = [{"target_qps": 20.0, "p99_ms": 30.0, "met": True, "verdict": "INVALID: early stopping not met"},
              {"target_qps": 40.0, "p99_ms": 120.0, "met": False, "verdict": "INVALID: performance constraint not met"},
              {"target_qps": 28.3, "p99_ms": 45.0, "met": True, "verdict": "VALID"}]
    store.add(Record(kind="server", model="resnet18", weights="IMAGENET1K_V1", runtime="onnx", precision="fp32",
                     batch=1, device="cpu", metrics={"qps": 28.3, "p99_ms": 45.0, "latency_bound_ms": 50.0,
                                                     "verdict": "VALID", "trials": trials}), run_id)
    html = render_html(store, run_id, tmp_path / "r.html").read_text(encoding="utf-8")
    figs = _figures(html)
    [line] = figs["chart-server_curve"]
    assert line["x"] == [20.0, 28.3, 40.0] and line["y"] == [30.0, 45.0, 120.0]  # in QPS order
    assert line["marker"]["symbol"] == ["circle", "circle", "circle-open"]
    assert line["text"] == ["INVALID: early stopping not met", "VALID", "INVALID: performance constraint not met"]
    assert "bound 50" in html and "chart-server" in figs  # beside the headline bar chart


def test_the_decision_is_the_first_section_and_everything_else_collapses(report):
    body = report[report.index("<body>"):]
    first_table = re.search(r'<table id="([a-z-]+)"', body).group(1)
    assert first_table == "decision-table"
    decision = body[body.index('id="decision-table"'):body.index("</table>", body.index('id="decision-table"'))]
    assert "<b>eager fp32</b>" in decision and "parity FAILED): onnx fp32" in decision  # alexnet's answer
    assert body.index('id="decision-table"') < body.index("<details") < body.index("Plotly.newPlot")
    for heading in ("accuracy", "summary", "speed", "parity", "training", "layers", "environment", "failures"):
        assert re.search(rf'<details class="section"( open)?><summary><h2 id="{heading}">', body), heading


def test_summary_fits_by_collapsing_secondary_columns_and_sorts_without_a_library(report):
    table = report[report.index('id="summary-table"'):report.index("</table>", report.index('id="summary-table"'))]
    header = table[:table.index("</thead>")]
    secondary = re.findall(r'<th class="[^"]*\bsec\b[^"]*">([^<]+)</th>', header)
    assert secondary == ["weights", "device", "top-1 % published", "Δ pp", "top-5 %", "top-5 % published", "Δ pp",
                         "parity agree", "max |Δ|", "params (M)", "GMACs"]  # one device: device is secondary too
    assert "#summary-table:not(.all) .sec { display: none; }" in report
    assert 'id="summary-filter"' in report and 'id="summary-all"' in report and "appendChild" in report
    assert 'data-v="5.6"' in table  # alexnet onnx p50 at batch 1: the raw number the page sorts by
    assert "<td data-v=\"5.6\">5.60<" in table  # shown to three significant digits, the unit in the header


def _labelled(trace) -> list[tuple[float, float, str]]:
    return [(x, y, t) for x, y, t in zip(trace.x, trace.y, trace.text or ()) if t]


def test_charts_label_only_the_pareto_front_and_the_chosen_variants(store, make_run):
    ctx = report_context(store, make_run(store, parity_fail=True,
                                         int8="32 seeded synthetic images (not meaningful for accuracy)"))
    chosen = {d["model"]: d["choice"]["name"] for d in ctx["decisions"]}
    assert chosen == {"resnet18": "onnx int8", "alexnet": "onnx int8", "googlenet": "onnx int8"}
    fig = ctx["charts"]["acc_vs_latency"]
    [front] = [t for t in fig.data if t.name == "Pareto front"]
    on_front = set(zip(front.x, front.y))
    labels = [p for t in fig.data if t.mode == "markers+text" for p in _labelled(t)]
    stars = sorted(text for _, _, text in labels if text.startswith("★"))
    assert stars == ["★ alexnet onnx int8", "★ googlenet (random weights) onnx int8", "★ resnet18 onnx int8"]
    assert all((x, y) in on_front for x, y, text in labels if not text.startswith("★"))
    points = sum(len(t.x) for t in fig.data if t.mode == "markers+text")
    assert points == 9 and len(labels) < points  # the rest name themselves on hover only
    assert all(t.hovertext is not None and all(t.hovertext) for t in fig.data if t.mode == "markers+text")
    macs = [p for t in ctx["charts"]["acc_vs_macs"].data for p in _labelled(t)]
    assert len(macs) == 3 and {m.split(" ")[1] for _, _, m in macs} == {"resnet18", "alexnet", "googlenet"}


def test_one_colour_per_runtime_and_one_symbol_per_precision_on_every_chart(store, make_run):
    from perfkit.report.html import PRECISION_SYMBOLS, colour

    ctx = report_context(store, make_run(store, int8="32 seeded synthetic images (not meaningful for accuracy)"))
    latency = [t for t in ctx["charts"]["acc_vs_latency"].data if t.mode == "markers+text"]
    onnx = next(t for t in latency if t.name.startswith("onnx"))
    assert onnx.marker.color == colour("onnx")
    assert set(onnx.marker.symbol) == {"circle", "triangle-up", "circle-open", "triangle-up-open"}  # open: random
    lines = {t.name: t for t in ctx["charts"]["latency_vs_batch"].data if t.showlegend is not False}
    assert lines["resnet18 · onnx int8"].marker.symbol == PRECISION_SYMBOLS["int8"]
    assert lines["resnet18 · onnx int8"].line.color == colour("onnx")
    bars = {t.name: t for t in ctx["charts"]["acc_bars"].data}
    assert bars["measured onnx int8"].marker.pattern.shape == "x" and bars["measured onnx fp32"].marker.pattern.shape == ""
    assert len({colour(r) for r in ("eager", "torchscript", "onnx", "tensorrt", "aoti", "native", "openvino", "x")}) == 8
