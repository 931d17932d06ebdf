import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from perfkit.errors import PerfkitError, UsageError
from perfkit.record import to_records
from perfkit.results import Failure, Where
from perfkit.store import SCHEMA_VERSION, SCHEMAS, Kind, Record, Store
from perfkit.store import STORE_VERSION, tables


def _ok(kind: Kind, model: str = "m", **extra) -> Record:
    return Record(kind=kind, model=model, metrics={k: 1 for k in SCHEMAS[kind].required} | extra)


def _failure(kind: Kind, model: str, error: BaseException | str, **where) -> Record:
    [record] = to_records(Failure.of(kind, Where(model, **where), error))
    return record


def test_roundtrip_and_run_lifecycle(store):
    with store.run("perfkit test") as run_id:
        store.add(_ok(Kind.PARITY, max_abs_diff=1.5e-6), run_id)
        store.add(_failure(Kind.EXPORT, "m", RuntimeError("nope"), runtime="onnx"), run_id)
    [run] = store.runs()
    assert run["id"] == run_id and run["status"] == "ok" and run["records"] == 2 and run["errors"] == 1
    assert run["host"] == platform.node() and run["pid"] == os.getpid()
    recs = store.records(run_id)
    assert [r.kind for r in recs] == [Kind.PARITY, Kind.EXPORT]
    assert recs[0].metrics["max_abs_diff"] == 1.5e-6
    assert recs[0].schema_version == SCHEMA_VERSION and recs[0].env["cpu_count"] == os.cpu_count()
    assert recs[1].error == "RuntimeError: nope" and recs[1].runtime == "onnx" and recs[1].status == "error"
    assert store.get_run("latest")["id"] == run_id
    assert store.get_run(run_id[:10])["id"] == run_id


def test_interrupted_run_keeps_finished_records(store):
    with pytest.raises(KeyboardInterrupt):
        with store.run() as run_id:
            store.add(_ok(Kind.MEMORY), run_id)
            raise KeyboardInterrupt
    assert store.get_run(run_id)["status"] == "interrupted"
    assert len(store.records(run_id)) == 1


def test_a_store_refuses_a_record_its_schema_refuses(store):
    run_id = store.start_run("x")
    with pytest.raises(ValueError, match="does not permit"):
        store.add(_ok(Kind.MEMORY, peak_mb=3), run_id)
    with pytest.raises(ValueError, match="lacks"):
        store.add(Record(kind=Kind.LATENCY, model="m", metrics={"iterations": 3}), run_id)
    assert store.records(run_id) == []


def _writer(path, n, tag):
    with Store(path) as s:
        run_id = s.start_run(f"writer {tag}")
        for i in range(n):
            s.add(Record(kind=Kind.MEMORY, model=f"{tag}-{i}", metrics={"peak_bytes": i, "method": "test"}), run_id)
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
        "    s.add(Record(kind=Kind.MEMORY, model=str(i), metrics={'peak_bytes': i, 'method': 'test'}), r); i += 1\n"
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
    db.close()
    # The killed writer's run never said how it ended: it is shown (and stored) as interrupted.
    with Store(path) as s:
        [run] = s.runs()
        assert run["status"] == "interrupted" and run["records"] == n


def test_unknown_run_is_a_clear_error(store):
    with pytest.raises(PerfkitError, match="no runs"):
        store.get_run("latest")
    store.start_run("x")
    with pytest.raises(PerfkitError, match="match 'zzz'"):
        store.get_run("zzz")


# -- a run whose process died ----------------------------------------------------------------------

def _set_owner(path, run_id, host, pid) -> None:
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET host=?, pid=? WHERE id=?", (host, pid, run_id))
    db.commit()
    db.close()


def _stored_status(path, run_id) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()[0]
    finally:
        db.close()


def test_a_running_run_whose_process_is_gone_is_interrupted(tmp_path, dead_pid):
    path = tmp_path / "s.db"
    with Store(path) as s:
        dead, alive, elsewhere = (s.start_run(name) for name in ("dead", "alive", "elsewhere"))
    _set_owner(path, dead, platform.node(), dead_pid)
    _set_owner(path, elsewhere, platform.node() + "-another-host", dead_pid)  # cannot tell: left alone
    # a reader sees it interrupted and changes nothing
    with Store(path, read_only=True) as s:
        status = {r["command"]: r["status"] for r in s.runs()}
        assert s.get_run(dead)["status"] == "interrupted"
    assert status == {"dead": "interrupted", "alive": "running", "elsewhere": "running"}
    assert _stored_status(path, dead) == "running"
    # a writer stores what it saw
    with Store(path) as s:
        assert s.get_run(dead)["status"] == "interrupted"
        assert s.get_run(alive)["status"] == "running"  # this process: alive
    assert _stored_status(path, dead) == "interrupted"
    assert _stored_status(path, elsewhere) == "running"


def test_resuming_a_run_takes_it_over(tmp_path, dead_pid):
    path = tmp_path / "s.db"
    with Store(path) as s:
        run_id = s.start_run("perfkit run")
    _set_owner(path, run_id, platform.node(), dead_pid)
    with Store(path) as s:
        assert s.get_run(run_id)["status"] == "interrupted"
        assert s.start_run(run_id=run_id) == run_id
        run = s.get_run(run_id)
        assert run["status"] == "running" and run["pid"] == os.getpid() and run["finished"] is None
        assert run["command"] == "perfkit run"  # the run keeps its command


def test_a_run_whose_process_is_alive_cannot_be_resumed(tmp_path, live_pid):
    path = tmp_path / "s.db"
    with Store(path) as s:
        run_id = s.start_run("perfkit run")
    _set_owner(path, run_id, platform.node(), live_pid)
    with Store(path) as s:
        for resume in (lambda: s.resumable(run_id[:12]), lambda: s.start_run(run_id=run_id)):
            with pytest.raises(UsageError) as err:
                resume()
            assert f"run {run_id} is still running (host {platform.node()}, pid {live_pid})" in str(err.value)
        run = s.get_run(run_id)
        assert (run["status"], run["pid"]) == ("running", live_pid)  # left to its process
    os.kill(live_pid, signal.SIGKILL)
    os.waitpid(live_pid, 0)
    with Store(path) as s:  # its process is gone: now it can be taken over
        assert s.resumable(run_id) == run_id and s.start_run(run_id=run_id) == run_id


def test_a_running_run_of_another_host_is_not_resumed_but_an_ended_one_is(tmp_path):
    path = tmp_path / "s.db"
    with Store(path) as s:
        running, ended = s.start_run("running"), s.start_run("ended")
        s.finish_run(ended, "interrupted")
    other = platform.node() + "-another-host"
    for run_id in (running, ended):
        _set_owner(path, run_id, other, 4321)
    with Store(path) as s:
        with pytest.raises(UsageError, match=f"run {running} is still marked running on host {other} \\(pid 4321\\)"
                                             f".*resume it on {other}"):
            s.start_run(run_id=running)
        assert s.get_run(running)["host"] == other
        assert s.start_run(run_id=ended) == ended and s.get_run(ended)["host"] == platform.node()


# -- a record that cannot be read -----------------------------------------------------------------------

@pytest.mark.parametrize("text, why", [
    ("[1,2]", "its metrics are an array ('[1,2]'), not a JSON object"),
    ('"text"', "its metrics are a string ('\"text\"'), not a JSON object"),
    ("not json", "its metrics are not JSON ('not json')"),
])
def test_a_record_that_cannot_be_read_is_skipped_naming_it_once(tmp_path, capsys, corrupt_metrics, text, why):
    path = tmp_path / "s.db"
    with Store(path) as s:
        run_id = s.start_run("x")
        s.add(_ok(Kind.MEMORY, model="a"), run_id)
        s.add(Record(kind=Kind.LATENCY, model="b", runtime="onnx", precision="fp32", batch=1,
                     metrics={k: 1 for k in SCHEMAS[Kind.LATENCY].required}), run_id)
    [bad] = corrupt_metrics(path, text, kind="latency")
    named = f"record #{bad} (latency b onnx fp32) of run {run_id} cannot be read: {why}"
    with Store(path, read_only=True) as s:
        assert [r.model for r in s.records(run_id)] == ["a"]  # the rest is read
        assert [r.model for r in s.records()] == ["a"]  # read again: named once
        assert s.unreadable(run_id) == [named]
        with pytest.raises(PerfkitError) as err:
            s.records(run_id, strict=True)
    assert str(err.value).startswith(named) and str(path) in str(err.value)
    assert capsys.readouterr().err == f"warning: {named}; skipped\n"


# -- superseded records -----------------------------------------------------------------------------

def test_supersede_hides_records_from_every_reader(store):
    run_id = store.start_run("perfkit run")
    for batch in (1, 8):
        store.add(Record(kind=Kind.LATENCY, model="a", batch=batch, runtime="eager", precision="fp32", device="cpu",
                         metrics={"iterations": 3, "latency_median_ms": 10.0 * batch, "latency_p99_ms": 11.0 * batch,
                                  "throughput_per_s": 100.0}), run_id)
    store.add(_ok(Kind.MEMORY, model="a"), run_id)
    store.add(_failure(Kind.LATENCY, "b", "RuntimeError: boom", runtime="eager"), run_id)
    assert store.supersede(run_id, "a", [Kind.LATENCY]) == 2
    assert store.supersede(run_id, "a", [Kind.LATENCY]) == 0  # already superseded
    # the re-measurement
    store.add(Record(kind=Kind.LATENCY, model="a", batch=1, runtime="eager", precision="fp32", device="cpu",
                     metrics={"iterations": 3, "latency_median_ms": 7.0, "latency_p99_ms": 8.0,
                              "throughput_per_s": 140.0}), run_id)
    current = store.records(run_id, kind=Kind.LATENCY, model="a")
    assert [r.metrics["latency_median_ms"] for r in current] == [7.0]
    assert len(store.records(run_id, kind=Kind.LATENCY, model="a", include_superseded=True)) == 3
    assert {r.kind for r in store.records(run_id, model="a")} == {Kind.LATENCY, Kind.MEMORY}  # memory untouched
    [run] = store.runs()
    assert run["records"] == 3 and run["errors"] == 1  # a 1, memory, b's error; superseded rows not counted
    assert store.supersede(run_id, "b", [Kind.LATENCY]) == 1
    assert store.runs()[0]["errors"] == 0


def test_finished_wants_every_expected_key_ok_and_no_error(store):
    run_id = store.start_run("perfkit run")

    def lat(batch):
        return Record(kind=Kind.LATENCY, model="a", batch=batch, runtime="eager", precision="fp32", device="cpu",
                      metrics={"iterations": 3, "latency_median_ms": 1.0, "latency_p99_ms": 1.0,
                               "throughput_per_s": 1.0})

    expected = {("latency", "a", "eager", "fp32", b, "cpu") for b in (1, 8)}
    store.add(lat(1), run_id)
    assert not store.finished(run_id, "a", [Kind.LATENCY], expected)  # batch 8 missing
    store.add(_failure(Kind.LATENCY, "a", "RuntimeError: oom", runtime="eager", precision="fp32", batch=8,
                       device="cpu"), run_id)
    assert not store.finished(run_id, "a", [Kind.LATENCY], expected)  # batch 8 failed
    store.supersede(run_id, "a", [Kind.LATENCY])
    store.add(lat(1), run_id)
    store.add(lat(8), run_id)
    assert store.finished(run_id, "a", [Kind.LATENCY], expected)
    assert not store.finished(run_id, "a", [Kind.LATENCY], set())  # nothing expected is not "finished"


# -- read-only opening -----------------------------------------------------------------------------

def test_read_only_store_reads_and_refuses_writes(tmp_path):
    path = tmp_path / "s.db"
    with Store(path) as s, s.run("perfkit x") as run_id:
        s.add(_ok(Kind.MEMORY), run_id)
    with Store(path, read_only=True) as s:
        assert [r["id"] for r in s.runs()] == [run_id] and len(s.records(run_id)) == 1
        with pytest.raises(PerfkitError, match="read-only"):
            s.add(_ok(Kind.MEMORY), run_id)
        with pytest.raises(PerfkitError, match="read-only"):
            s.start_run("y")
    with Store(path) as s:
        assert len(s.runs()) == 1 and len(s.records()) == 1


def test_read_only_open_of_a_missing_store_is_a_usage_error_and_creates_nothing(tmp_path):
    path = tmp_path / "typo" / "store.db"
    with pytest.raises(UsageError, match="no run store"):
        Store(path, read_only=True)
    assert not path.parent.exists()


def test_read_only_open_of_something_else_is_a_clear_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    with pytest.raises(PerfkitError, match="not a database"):
        Store(text, read_only=True)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (a)").connection.commit()
    with pytest.raises(PerfkitError, match="not a perfkit run store"):
        Store(other, read_only=True)


def test_read_only_open_of_a_store_from_before_supersede(tmp_path, first_release_tables):
    """A store written by an older perfkit (no host/pid/superseded columns) is listed as it is: a
    reader cannot migrate it; a writer migrates it to the current layout and stamps its version."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(";".join(first_release_tables(tables.SQLITE)))
    now = time.time()
    db.execute("INSERT INTO runs VALUES ('20250101-000000-abcd', 'perfkit run', ?, ?, 'ok', 'e', '{}')", (now, now))
    db.execute("INSERT INTO records (run_id, kind, model, status, created, schema_version, metrics, env) "
               "VALUES ('20250101-000000-abcd', 'memory', 'm', 'ok', ?, 1, ?, '{}')",
               (now, json.dumps({"peak_bytes": 5, "method": "rss", "retired_metric": 1})))
    db.commit()
    db.close()
    with Store(path, read_only=True) as s:
        [run] = s.runs()
        assert run["records"] == 1 and run["status"] == "ok"
        [record] = s.records(run["id"])
        assert record.metrics["peak_bytes"] == 5 and record.schema_version == 1
        record.validate()  # an older record's metrics are not refused
    with Store(path) as s:  # a writer migrates it
        assert len(s.records()) == 1
    db = sqlite3.connect(path)
    assert "superseded" in {r[1] for r in db.execute("PRAGMA table_info(records)")}
    assert db.execute("SELECT value FROM meta WHERE key='store_version'").fetchone() == (str(STORE_VERSION),)
    db.close()


def _without_root_privileges() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def test_cli_lists_a_store_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "baseline"
    folder.mkdir()
    path = folder / "perfkit.db"
    with Store(path) as s, s.run("perfkit profile lenet5") as run_id:
        s.add(_ok(Kind.MEMORY, model="lenet5"), run_id)
    assert sorted(p.name for p in folder.iterdir()) == ["perfkit.db"]  # closed cleanly: no -wal, no -shm
    path.chmod(0o444)
    folder.chmod(0o555)
    # one process (perfkit's imports are slow): check the folder really is read-only, then read the store
    code = (
        "import sys\n"
        "from perfkit.cli import main\n"
        "try:\n"
        f"    open({str(folder / 'probe')!r}, 'w')\n"
        "except PermissionError:\n"
        "    pass\n"
        "else:\n"
        "    sys.exit('the folder is writable: this test would prove nothing')\n"
        f"sys.exit(main(['runs', '--store', {str(path)!r}, '--json'])"
        f" or main(['report', {run_id!r}, '--json', '--store', {str(path)!r}]))\n"
    )
    try:
        out = subprocess.run([*_without_root_privileges(), sys.executable, "-c", code], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        decoder = json.JSONDecoder()
        runs, end = decoder.raw_decode(out.stdout)
        report, _ = decoder.raw_decode(out.stdout[end:].lstrip())
        [run] = runs
        assert run["id"] == run_id and run["records"] == 1 and run["status"] == "ok"
        assert report["run"]["id"] == run_id and [r["model"] for r in report["records"]] == ["lenet5"]
        assert sorted(p.name for p in folder.iterdir()) == ["perfkit.db"]
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


@pytest.mark.parametrize("argv", [["runs"], ["report"], ["select"], ["regress", "--baseline", "latest"]])
def test_cli_readers_refuse_a_missing_store_in_one_line(argv, capsys):
    from perfkit.cli import main

    assert main([*argv, "--store", "/no/such.db"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert "error: no run store at /no/such.db" in line and "Traceback" not in line
    assert not os.path.exists("/no")  # a reader never creates a store


def test_a_store_whose_folder_cannot_be_created_is_one_line(tmp_path, capsys):
    from perfkit.cli import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["summary", "lenet5", "--store", str(afile / "sub" / "s.db")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the random-weights banner
    assert f"error: cannot create the folder of the run store {afile / 'sub' / 's.db'}" in line


def test_a_full_disk_is_one_error_naming_the_store_and_the_store_stays_usable(tmp_path):
    """SQLite rolls back by itself on SQLITE_FULL; a second ROLLBACK used to raise "no transaction is
    active" and hide the real error."""
    path = tmp_path / "s.db"
    with Store(path) as s:
        run_id = s.start_run("perfkit test")
        pages = s._db.execute("PRAGMA page_count").fetchone()[0]
        s._db.execute(f"PRAGMA max_page_count={pages + 2}")  # this connection's disk is now (nearly) full
        big = _ok(Kind.COMPLEXITY, layers=["x" * 1000] * 100)
        with pytest.raises(PerfkitError) as err:
            for _ in range(20):
                s.add(big, run_id)
        message = str(err.value)
        assert message.startswith(f"cannot write to the run store {path}: database or disk is full")
        assert f"free some space in {tmp_path}" in message and "\n" not in message
        s._db.execute("PRAGMA max_page_count=1073741823")
        s.add(_ok(Kind.LATENCY), run_id)  # space again: the store still works
    with Store(path) as s:
        assert s._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
