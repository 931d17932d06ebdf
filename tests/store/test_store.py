import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from perfkit.store import SCHEMA_VERSION, Kind, Record, Store
from perfkit.store.schema import REQUIRED_METRICS


def _ok(kind: Kind, **extra) -> Record:
    return Record(kind=kind, model="m", metrics={k: 1 for k in REQUIRED_METRICS[kind]} | extra)


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_requires_its_metrics(kind):
    _ok(kind).validate()
    some = sorted(REQUIRED_METRICS[kind])[0]
    rec = _ok(kind)
    del rec.metrics[some]
    with pytest.raises(ValueError, match=some):
        rec.validate()


def test_formatted_strings_are_not_metrics():
    rec = _ok(Kind.LATENCY)
    rec.metrics["latency_median_ms"] = object()
    with pytest.raises(ValueError, match="raw number"):
        rec.validate()


def test_error_record_needs_text_and_skips_metrics():
    Record(kind=Kind.EXPORT, model="m", status="error", error="boom").validate()
    with pytest.raises(ValueError):
        Record(kind=Kind.EXPORT, model="m", status="error").validate()


def test_roundtrip_and_run_lifecycle(store):
    with store.run("perfkit test") as run_id:
        store.add(_ok(Kind.PARITY, max_abs_diff=1.5e-6), run_id)
        store.add(Record.failure(Kind.EXPORT, "m", RuntimeError("nope"), runtime="onnx"), run_id)
    [run] = store.runs()
    assert run["id"] == run_id and run["status"] == "ok" and run["records"] == 2 and run["errors"] == 1
    recs = store.records(run_id)
    assert [r.kind for r in recs] == [Kind.PARITY, Kind.EXPORT]
    assert recs[0].metrics["max_abs_diff"] == 1.5e-6
    assert recs[0].schema_version == SCHEMA_VERSION and recs[0].env["cpu_count"] == os.cpu_count()
    assert recs[1].error == "RuntimeError: nope" and recs[1].runtime == "onnx"
    assert store.get_run("latest")["id"] == run_id
    assert store.get_run(run_id[:10])["id"] == run_id


def test_interrupted_run_keeps_finished_records(store):
    with pytest.raises(KeyboardInterrupt):
        with store.run() as run_id:
            store.add(_ok(Kind.MEMORY), run_id)
            raise KeyboardInterrupt
    assert store.get_run(run_id)["status"] == "interrupted"
    assert len(store.records(run_id)) == 1


def _writer(path, n, tag):
    with Store(path) as s:
        run_id = s.start_run(f"writer {tag}")
        for i in range(n):
            s.add(Record(kind=Kind.MEMORY, model=f"{tag}-{i}", metrics={"peak_bytes": i}), run_id)
        s.finish_run(run_id, "ok")


def test_two_processes_lose_nothing(tmp_path):
    path = tmp_path / "shared.db"
    Store(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, 150, tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(path) as s:
        models = {r.model for r in s.records()}
        assert len(models) == 300
        assert s.integrity_ok()


def test_killed_writer_leaves_consistent_db(tmp_path):
    path = tmp_path / "killed.db"
    code = (
        "import sys; from perfkit.store import Store, Record, Kind\n"
        f"s = Store({str(path)!r}); r = s.start_run('loop')\n"
        "i = 0\n"
        "while True:\n"
        "    s.add(Record(kind=Kind.MEMORY, model=str(i), metrics={'peak_bytes': i}), r); i += 1\n"
        "    if i == 20: print('ready', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    assert n >= 20
    # The ids are dense: every committed record is whole, none half-written.
    assert db.execute("SELECT MAX(CAST(model AS INTEGER)) FROM records").fetchone()[0] == n - 1


def test_unknown_run_is_a_clear_error(store):
    from perfkit.errors import PerfkitError

    with pytest.raises(PerfkitError, match="no runs"):
        store.get_run("latest")
    store.start_run("x")
    with pytest.raises(PerfkitError, match="match 'zzz'"):
        store.get_run("zzz")
