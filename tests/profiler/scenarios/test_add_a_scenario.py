"""Adding a scenario is one module and one registry line (``SCENARIO_MODULES``, or ``register`` at run time).

This test writes a new scenario module — Burst: N calls back to back at the smallest batch, timed as
one — into a temporary folder, registers its ``SCENARIO``, and runs ``perfkit profile --scenario
burst`` (its option generated from its declaration), the record store (its own kind and schema), the
report (its table, chart and winner), ``regress`` (its gated metric) and ``report --json-out``
through it, touching no perfkit file.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap

import pytest

from perfkit.cli import main
from perfkit.profiler import scenarios
from perfkit.store import Store

MODULE = textwrap.dedent('''
    """Burst: N calls back to back at the smallest batch, timed as one (how long a client waits for N)."""
    import time
    from dataclasses import dataclass

    from perfkit.profiler.scenarios import Column, Compared, Headline, Scenario, ScenarioOption, newest
    from perfkit.results import KindSchema, Where


    @dataclass(frozen=True)
    class BurstResult:
        where: Where
        calls: int
        seconds: float


    def measure(point):
        x = point.spec.example_input(point.batch)
        point.runner.infer(x)  # warm
        point.runner.synchronize()
        start = time.perf_counter()
        for _ in range(point.config):
            point.runner.infer(x)
        point.runner.synchronize()
        return BurstResult(point.where, point.config, time.perf_counter() - start)


    def configure(values):
        if values["burst_calls"] < 1:
            raise ValueError(f"--burst-calls must be at least 1, got {values['burst_calls']}")
        return values["burst_calls"]


    def rows(records):
        return [{"model": r.model, "runtime": r.runtime, "precision": r.precision, "device": r.device, "batch": r.batch,
                 "weights": r.weights, "status": r.status, "error": r.error, **r.metrics}
                for r in newest(records, "burst").values()]


    SCENARIO = Scenario(
        name="burst", title="Burst", summary="N calls back to back at the smallest batch, timed as one",
        kind="burst", schema=KindSchema.of("burst_ms calls"), result=BurstResult, measure=measure,
        metrics=lambda r: {"burst_ms": r.seconds * 1000, "calls": r.calls},
        headline=Headline("burst_ms", "ms", "min", "float3"),
        options=(ScenarioOption("burst_calls", 8, "Burst: calls per burst", int),),
        configure=configure, batches=lambda batches: (min(batches),), rows=rows,
        columns=(Column("burst", "burst_ms", "ms"), Column("calls", "calls", "int")),
        caption=lambda records: ["Burst: one clock"],
        compared=(Compared("burst_ms", limit="max_latency_increase_pct", worse=+1),),
    )
''')


@pytest.fixture
def burst(tmp_path):
    path = tmp_path / "burst_scenario.py"
    path.write_text(MODULE)
    spec = importlib.util.spec_from_file_location("burst_scenario", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scenarios.register(module.SCENARIO)  # the one registry line
    try:
        yield module.SCENARIO
    finally:
        scenarios.unregister("burst")


def test_a_new_scenario_runs_records_reports_and_regresses(burst, tmp_path, capsys):
    store, artifacts = tmp_path / "s.db", tmp_path / "art"
    with pytest.raises(ValueError, match="already registered"):
        scenarios.register(burst)  # a second scenario of the same name (or kind) is refused
    code = main(["profile", "lenet5", "--weights", "random", "-f", "eager,onnx", "-b", "1,2", "--scenario", "burst",
                 "--burst-calls", "5", "--no-memory", "--iterations", "3", "--min-seconds", "0", "--warmup", "1",
                 "--warmup-seconds", "0", "--store", str(store), "--artifacts", str(artifacts)])
    out = capsys.readouterr().out
    assert code == 0
    assert "SingleStream" in out and ": Burst" in out and "Burst winner (batch 1)" in out  # its table, after the base one
    assert "Burst: one clock" in out  # its caption
    with Store(store) as s:
        run = s.get_run("latest")
        records = s.records(run["id"])
    bursts = {r.runtime: r for r in records if r.kind == "burst"}
    assert set(bursts) == {"eager", "onnx"} and {r.batch for r in bursts.values()} == {1}  # its batches: the smallest
    for r in bursts.values():
        r.validate()  # its own kind, checked against its own schema
        assert r.metrics["calls"] == 5 and r.metrics["burst_ms"] > 0
    assert {(r.runtime, r.batch) for r in records if r.kind == "latency"} == {(rt, b) for rt in ("eager", "onnx")
                                                                             for b in (1, 2)}
    # the report: its table and its chart
    html = tmp_path / "r.html"
    assert main(["report", run["id"], "--store", str(store), "--html", str(html), "--json-out",
                 str(tmp_path / "bl.json")]) == 0
    text = html.read_text(encoding="utf-8")
    assert 'id="burst-table"' in text and 'id="chart-burst"' in text and 'href="#burst"' in text
    # regress: its gated metric
    capsys.readouterr()
    assert main(["regress", "--baseline", str(tmp_path / "bl.json"), "--candidate", run["id"],
                 "--store", str(store)]) == 0
    payload = json.loads((tmp_path / "bl.json").read_text())
    for item in payload["records"]:
        if item["kind"] == "burst":
            item["metrics"]["burst_ms"] /= 3  # the baseline was 3× faster: the candidate is a regression
    (tmp_path / "doctored.json").write_text(json.dumps(payload))
    assert main(["regress", "--baseline", str(tmp_path / "doctored.json"), "--candidate", run["id"],
                 "--store", str(store)]) == 1
    assert "burst_ms" in capsys.readouterr().out


def test_its_options_are_checked_like_any_other(burst, capsys):
    assert main(["profile", "lenet5", "--weights", "random", "--scenario", "burst", "--burst-calls", "0"]) == 2
    err = capsys.readouterr().err
    assert "--burst-calls must be at least 1" in err and len(err.strip().splitlines()) == 1
    assert main(["profile", "lenet5", "--weights", "random", "--burst-calls", "3"]) == 2  # burst not asked for
    assert "--burst-calls belong(s) to a scenario not asked for" in capsys.readouterr().err
