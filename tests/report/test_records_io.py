import csv
import json

import pytest

from perfkit.cli import main
from perfkit.errors import PerfkitError
from perfkit.report.records_io import CSV_COLUMNS, read_json, write_csv, write_json


def test_csv_has_provenance_then_metric_columns(store, make_run, tmp_path):
    run_id = make_run(store)
    with open(write_csv(store, run_id, tmp_path / "r.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    assert tuple(header[:len(CSV_COLUMNS)]) == CSV_COLUMNS
    assert header[len(CSV_COLUMNS):] == sorted(header[len(CSV_COLUMNS):])  # one column per metric key
    assert len(rows) == len(store.records(run_id))
    lat = next(r for r in rows if r["kind"] == "latency" and r["model"] == "alexnet" and r["runtime"] == "onnx"
               and r["batch"] == "8")
    assert float(lat["latency_median_ms"]) == pytest.approx(8.0 * 0.7 * 4.5)  # raw number, no unit text
    assert lat["top1_pct"] == ""  # metrics of other kinds stay empty
    cx = next(r for r in rows if r["kind"] == "complexity" and r["model"] == "resnet18")
    assert json.loads(cx["layers"])[0]["layer"] == "Conv2d-1"
    err = next(r for r in rows if r["status"] == "error")
    assert err["runtime"] == "tensorrt" and "TensorRT is not installed" in err["error"]


def test_json_roundtrip_keeps_every_record(store, make_run, tmp_path):
    run_id = make_run(store, train=True)
    run, records = read_json(write_json(store, run_id, tmp_path / "x.json"))
    assert run["id"] == run_id
    assert [r.to_dict() for r in records] == [r.to_dict() for r in store.records(run_id)]


def test_json_of_a_newer_version_is_refused(store, make_run, tmp_path):
    path = write_json(store, make_run(store), tmp_path / "x.json")
    payload = json.loads(path.read_text())
    payload["version"] = 99
    path.write_text(json.dumps(payload))
    with pytest.raises(PerfkitError, match="version 99"):
        read_json(path)


def test_report_cli_exports_and_prints(store, make_run, tmp_path, capsys):
    run_id = make_run(store)
    assert main(["report", run_id[:15], "--csv", str(tmp_path / "r.csv"), "--json-out", str(tmp_path / "r.json"),
                 "--html", str(tmp_path / "r.html")]) == 0
    captured = capsys.readouterr()
    assert f"run {run_id}" in captured.out and "could not run" in captured.out
    assert str(tmp_path / "r.html") in captured.err
    assert all((tmp_path / n).is_file() for n in ("r.csv", "r.json", "r.html"))
    assert read_json(tmp_path / "r.json")[0]["id"] == run_id
    assert main(["report", "--json"]) == 0  # latest run, JSON on stdout only
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["run"]["id"] == run_id and len(payload["records"]) == len(store.records(run_id))
    assert payload == json.loads((tmp_path / "r.json").read_text())  # --json prints what --json-out writes
    assert "could not run" not in captured.out + captured.err  # no table besides the JSON


def test_report_cli_unknown_run(store, make_run, capsys):
    make_run(store)
    assert main(["report", "nope"]) == 2
    assert "no run" in capsys.readouterr().err
