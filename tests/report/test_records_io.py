import json
from pathlib import Path

import pytest

from perfkit.cli import main
from perfkit.errors import PerfkitError
from perfkit.report.records_io import read_json, write_json


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


@pytest.mark.parametrize("flag", ["--html", "--csv", "--json-out"])
def test_report_output_to_a_directory_is_one_line(store, make_run, tmp_path, capsys, flag):
    make_run(store)
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["report", "--store", str(store.path), flag, str(folder)]) == 2
    captured = capsys.readouterr()
    assert f"{flag} {folder} is a directory" in captured.err and captured.err.count("\n") == 1
    assert "could not run" not in captured.out  # refused before any output


@pytest.mark.parametrize("flag", ["--html", "--csv", "--json-out"])
def test_report_output_in_an_unwritable_place_is_one_line(store, make_run, tmp_path, capsys, monkeypatch, flag):
    import os

    make_run(store)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    real_access = os.access
    # root may write anywhere: make the read-only folder read-only for this test whoever runs it
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    try:
        assert main(["report", "--store", str(store.path), flag, str(locked / "sub" / "r.out")]) == 2
        err = capsys.readouterr().err
        assert f"{flag} {locked / 'sub' / 'r.out'}: permission denied" in err and err.count("\n") == 1
    finally:
        locked.chmod(0o700)


def test_a_write_the_os_refuses_is_one_line(tmp_path, monkeypatch):
    import tempfile

    from perfkit.errors import UsageError
    from perfkit.report.output import write_text

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(UsageError, match=f"cannot write --csv {tmp_path / 'r.csv'}: Permission denied"):
        write_text(tmp_path / "r.csv", "a,b", "--csv")


@pytest.mark.parametrize("flag", ["--html", "--csv", "--json-out"])
def test_report_output_under_a_file_is_one_line(store, make_run, tmp_path, capsys, flag):
    make_run(store)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["report", "--store", str(store.path), flag, str(afile / "r.out")]) == 2
    err = capsys.readouterr().err
    assert f"{afile} is a file, not a folder" in err and err.count("\n") == 1


def test_a_failed_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    import errno
    import os

    from perfkit.errors import UsageError
    from perfkit.report.output import write_text

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(UsageError, match=f"cannot write --html {tmp_path / 'r.html'}: the disk is full"):
        write_text(tmp_path / "r.html", "<html>", "--html")
    assert list(tmp_path.iterdir()) == []


def test_run_html_to_a_directory_is_refused_before_the_run(tmp_path, capsys):
    folder = tmp_path / "reports"
    folder.mkdir()
    assert main(["run", "lenet5", "--weights", "random", "-f", "eager", "--no-memory", "--html", str(folder)]) == 2
    assert f"--html {folder} is a directory" in capsys.readouterr().err
    from perfkit.store import Store

    with Store() as s:
        assert s.runs() == []  # nothing ran


def test_report_shows_the_rest_of_a_run_with_an_unreadable_record_and_names_it(store, make_run, tmp_path, capsys,
                                                                               corrupt_metrics):
    run_id = make_run(store)
    [bad] = corrupt_metrics(store.path, "[1,2]", kind="latency", model="alexnet", runtime="onnx", batch=8)
    assert main(["report", run_id, "--json-out", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")]) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if "warning" in line] == [
        f"warning: record #{bad} (latency alexnet onnx fp32) of run {run_id} cannot be read: its metrics are an "
        "array ('[1,2]'), not a JSON object; skipped"]  # once, though the table, JSON and HTML all read the run
    assert "internal error" not in captured.err and "resnet18" in captured.out and (tmp_path / "r.html").is_file()
    latency = {(r.model, r.runtime, r.batch) for r in read_json(tmp_path / "r.json")[1] if r.kind == "latency"}
    assert ("alexnet", "onnx", 1) in latency and ("alexnet", "onnx", 8) not in latency
