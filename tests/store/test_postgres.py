"""The run store chosen by URL, and the PostgreSQL store against a real server (tests/store/conftest.py)."""

import json
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from perfkit.errors import MissingDependency, PerfkitError, UsageError
from perfkit.store import SCHEMAS, STORE_VERSION, Kind, Record, Store, base, tables
from perfkit.store.base import backend_for, redact
from perfkit.store.sqlite import SQLiteStore, store_file


def _memory(model: str, i: int = 0) -> Record:
    return Record(kind=Kind.MEMORY, model=model, metrics={"peak_bytes": i, "method": "test"})


def _latency(model: str, batch: int, median: float) -> Record:
    return Record(kind=Kind.LATENCY, model=model, runtime="eager", precision="fp32", batch=batch, device="cpu",
                  metrics={"iterations": 3, "latency_median_ms": median, "latency_p99_ms": median,
                           "throughput_per_s": 1.0})


def _cli(*argv: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfkit", *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert lines[-1].startswith("error: "), stderr
    return lines[-1]


# -- the URL picks the store --------------------------------------------------------------------------------

def test_a_location_names_its_database(tmp_path, monkeypatch):
    for sqlite in (tmp_path / "a.db", "reports/a.db", "sqlite:///a.db", r"C:\runs\a.db"):
        assert backend_for(sqlite).name == "sqlite"
    assert backend_for("postgresql://u@h:5432/db").name == backend_for("POSTGRES://u@h/db").name == "postgresql"
    assert store_file("sqlite:///rel/a.db") == Path("rel/a.db")
    assert store_file("sqlite:////abs/a.db") == Path("/abs/a.db")
    with pytest.raises(UsageError, match="names a local file"):
        store_file("sqlite://host/a.db")
    with pytest.raises(UsageError, match=r"unknown run store scheme 'mysql://' in mysql://u:\*\*\*@h/db"):
        backend_for("mysql://u:secret@h/db")
    assert redact("--store postgresql://u:secret@h:5/db") == "--store postgresql://u:***@h:5/db"
    monkeypatch.chdir(tmp_path)
    with Store("sqlite:///sub/s.db") as s:  # SQLAlchemy's form: three slashes, then a relative path
        assert isinstance(s, SQLiteStore) and s.location == Path("sub/s.db")
        s.start_run("x")
    assert (tmp_path / "sub" / "s.db").is_file()


def test_cli_refuses_an_unknown_scheme_in_one_line(capsys):
    from perfkit.cli import main

    assert main(["runs", "--store", "mysql://u:secret@h/db"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: unknown run store scheme 'mysql://'") and "secret" not in line


def test_a_postgresql_url_without_psycopg_names_the_extra(monkeypatch, capsys):
    from perfkit.cli import main

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    with pytest.raises(MissingDependency, match=r"perfkit\[postgres\]"):
        Store("postgresql://u@127.0.0.1:1/db")
    assert main(["runs", "--store", "postgresql://u@127.0.0.1:1/db"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "'psycopg' is not installed" in line and "pip install 'perfkit[postgres]'" in line


# -- the store on PostgreSQL -----------------------------------------------------------------------------

def test_roundtrip_supersede_and_finished(pg_url):
    with Store(pg_url) as store:
        assert type(store).__name__ == "PostgresStore" and store.path is None
        with store.run("perfkit test") as run_id:
            store.add(_latency("a", 1, 10.0), run_id)
            store.add(_latency("a", 8, 20.0), run_id)
            store.add(_memory("a", 5), run_id)
        [run] = store.runs()
        assert (run["id"], run["status"], run["records"], run["errors"]) == (run_id, "ok", 3, 0)
        assert run["host"] == platform.node() and run["pid"] == os.getpid()
        assert store.get_run("latest")["id"] == store.get_run(run_id[:10])["id"] == run_id
        recs = store.records(run_id)
        assert [r.kind for r in recs] == [Kind.LATENCY, Kind.LATENCY, Kind.MEMORY]
        assert recs[0].metrics["latency_median_ms"] == 10.0 and isinstance(recs[0].created, float)
        assert store.supersede(run_id, "a", [Kind.LATENCY]) == 2
        store.add(_latency("a", 1, 7.0), run_id)
        assert [r.metrics["latency_median_ms"] for r in store.records(run_id, kind=Kind.LATENCY)] == [7.0]
        expected = {("latency", "a", "eager", "fp32", b, "cpu") for b in (1, 8)}
        assert not store.finished(run_id, "a", [Kind.LATENCY], expected)
        store.add(_latency("a", 8, 8.0), run_id)
        assert store.finished(run_id, "a", [Kind.LATENCY], expected) and store.integrity_ok()
    with Store(pg_url, read_only=True) as store:
        assert len(store.records(run_id)) == 3
        with pytest.raises(PerfkitError, match="read-only"):
            store.start_run("y")


def test_the_tables_are_versioned_and_a_newer_store_is_refused(pg_url, postgres):
    Store(pg_url).close()
    db = pg_url.rsplit("/", 1)[1]
    assert postgres.sql("SELECT value FROM meta WHERE key='store_version'", db=db) == [(str(STORE_VERSION),)]
    postgres.sql("UPDATE meta SET value='99' WHERE key='store_version'", db=db)
    for read_only in (False, True):
        with pytest.raises(UsageError, match=f"has table layout 99, newer than this perfkit reads \\({STORE_VERSION}\\)"):
            Store(pg_url, read_only=read_only)


def test_a_reader_of_an_empty_database_creates_nothing(pg_url, postgres):
    with pytest.raises(PerfkitError, match="not a perfkit run store"):
        Store(pg_url, read_only=True)
    assert postgres.sql("SELECT count(*) FROM pg_tables WHERE schemaname='public'", db=pg_url.rsplit("/", 1)[1]) \
        == [(0,)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_first_release_store_is_migrated_in_one_transaction(backend, tmp_path, request, first_release_tables,
                                                              monkeypatch):
    """Layout 1 (no host, pid, superseded) is read as it is, migrated by a writer, and a migration that
    fails half-way leaves the store as it was."""
    if backend == "sqlite":
        location, dialect = str(tmp_path / "old.db"), tables.SQLITE
        import sqlite3

        def sql(*statements):
            with sqlite3.connect(location) as db:
                rows = [db.execute(s).fetchall() for s in statements]
            return rows[-1]
    else:
        location, dialect = request.getfixturevalue("pg_url"), tables.POSTGRES
        server = request.getfixturevalue("postgres")

        def sql(*statements):
            return server.sql(*statements, db=location.rsplit("/", 1)[1])
    sql(*first_release_tables(dialect),
        "INSERT INTO runs VALUES ('20250101-000000-abcd', 'perfkit run', 1.5, 2.5, 'ok', 'e', '{}')",
        "INSERT INTO records (run_id, kind, model, status, created, schema_version, metrics, env) VALUES "
        "('20250101-000000-abcd', 'memory', 'm', 'ok', 1.5, 1, '{\"peak_bytes\": 5, \"method\": \"rss\"}', '{}')")
    with Store(location, read_only=True) as s:
        assert [r.metrics["peak_bytes"] for r in s.records()] == [5] and s.runs()[0]["records"] == 1
    # a NOT NULL column without a default cannot be added to a table with rows, in either database
    broken = {2: (*tables.MIGRATIONS[2], ("records", "broken", "TEXT NOT NULL"))}
    monkeypatch.setattr(tables, "MIGRATIONS", broken)
    with pytest.raises(PerfkitError, match="; nothing was changed while migrating it from layout 1$"):
        Store(location)
    assert sql("SELECT count(*) FROM meta") == [(0,)]  # nothing stamped, no column added: rolled back
    with Store(location, read_only=True) as s:
        assert "host" not in s._columns("runs") and "superseded" not in s._columns("records")
    monkeypatch.undo()
    with Store(location) as s:
        assert {"host", "pid"} <= s._columns("runs") and len(s.records()) == 1
    assert sql("SELECT value FROM meta WHERE key='store_version'") == [(str(STORE_VERSION),)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_run_id_taken_by_another_writer_is_drawn_again(backend, tmp_path, request, monkeypatch):
    location = str(tmp_path / "s.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    drawn = iter(["20260101-000000-aaaa", "20260101-000000-aaaa", "20260101-000000-bbbb"])
    monkeypatch.setattr(base, "new_run_id", lambda: next(drawn))
    with Store(location) as s:
        assert s.start_run("first") == "20260101-000000-aaaa"
        assert s.start_run("second") == "20260101-000000-bbbb"
        assert {r["id"]: r["command"] for r in s.runs()} == {"20260101-000000-aaaa": "first",
                                                               "20260101-000000-bbbb": "second"}


def test_a_password_never_reaches_the_run_history(postgres, pg_url):
    with Store(pg_url) as s:
        s.start_run(f"perfkit profile lenet5 --store {postgres.url('x', 'pw_user', 'right')}")
        assert s.runs()[0]["command"] == f"perfkit profile lenet5 --store postgresql://pw_user:***@127.0.0.1:{postgres.port}/x"


def test_the_python_api_and_the_cli_keep_runs_in_postgres(postgres, pg_url, capsys):
    import perfkit
    from perfkit.cli import main

    done = perfkit.summary("lenet5", weights="random", store=pg_url)
    assert done.store == pg_url and not Path(os.environ["PERFKIT_STORE"]).exists()  # nothing went to a file
    assert main(["runs", "--json", "--store", pg_url]) == 0
    [run] = json.loads(capsys.readouterr().out)
    assert run["id"] == done.run_id and run["status"] == "ok" and run["records"] == len(done.records())
    assert main(["report", done.run_id, "--json", "--store", pg_url]) == 0
    assert [r["kind"] for r in json.loads(capsys.readouterr().out)["records"]] == ["model", "complexity"]


# -- resume: which runs may be taken over -------------------------------------------------------------------

def _set_owner(server, url, run_id, host, pid) -> None:
    server.sql(f"UPDATE runs SET host='{host}', pid={pid} WHERE id='{run_id}'", db=url.rsplit("/", 1)[1])


def test_resume_on_postgres_takes_over_only_a_dead_run_of_this_host(postgres, pg_url, dead_pid, live_pid):
    with Store(pg_url) as s:
        dead, alive, elsewhere = (s.start_run(name) for name in ("dead", "alive", "elsewhere"))
    _set_owner(postgres, pg_url, dead, platform.node(), dead_pid)
    _set_owner(postgres, pg_url, alive, platform.node(), live_pid)
    _set_owner(postgres, pg_url, elsewhere, platform.node() + "-another-host", dead_pid)
    with Store(pg_url, read_only=True) as s:
        assert {r["command"]: r["status"] for r in s.runs()} == {"dead": "interrupted", "alive": "running",
                                                                  "elsewhere": "running"}
    with Store(pg_url) as s:
        assert s.resumable(dead) == dead and s.start_run(run_id=dead) == dead
        assert (s.get_run(dead)["status"], s.get_run(dead)["pid"]) == ("running", os.getpid())
        with pytest.raises(UsageError, match=f"run {alive} is still running .*pid {live_pid}"):
            s.start_run(run_id=alive)
        with pytest.raises(UsageError, match=f"still marked running on host {platform.node()}-another-host"):
            s.resumable(elsewhere)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_reader_that_saw_a_dead_owner_does_not_interrupt_a_run_resumed_since(backend, tmp_path, request, dead_pid):
    location = str(tmp_path / "s.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    with Store(location) as s:
        run_id = s.start_run("perfkit run")
        with s._transaction():
            s._execute("UPDATE runs SET pid=? WHERE id=?", (dead_pid, run_id))
        stale = s._execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()  # read before the resume
        assert s.start_run(run_id=run_id) == run_id  # taken over by this (live) process
        assert s._run_dict(stale)["status"] == "interrupted"  # what that reader saw
        assert (s.get_run(run_id)["status"], s.get_run(run_id)["pid"]) == ("running", os.getpid())


def _resume(url, run_id, results, done) -> None:
    with Store(url) as s:
        try:
            results.put(s.start_run(run_id=run_id))
        except UsageError as exc:
            results.put(f"refused: {exc}")
        done.wait(120)  # the winner stays alive until both have tried


@pytest.mark.slow
def test_two_processes_resuming_one_run_cannot_both_take_it(postgres, pg_url, dead_pid):
    with Store(pg_url) as s:
        run_id = s.start_run("perfkit run")
    _set_owner(postgres, pg_url, run_id, platform.node(), dead_pid)
    ctx = mp.get_context("spawn")
    results, done = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_resume, args=(pg_url, run_id, results, done)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    done.set()
    for p in procs:
        p.join(60)
    assert outcomes[0] == run_id and outcomes[1].startswith(f"refused: run {run_id} is still running")


def test_perfkit_run_resumes_on_postgres_measuring_only_what_is_missing(postgres, pg_url):
    from perfkit import pipeline

    steps = (pipeline.Step.COMPLEXITY, pipeline.Step.EXPORT)
    cfg = dict(models=["lenet5"], weights="random", runtimes=["onnx"], batches=[1], parity_batches=[1],
               memory=False)
    with Store(pg_url) as store:
        first = pipeline.run_pipeline(pipeline.RunConfig(**cfg, steps=steps), store)
    postgres.sql(f"DELETE FROM records WHERE run_id='{first.run_id}' AND kind='export'", db=pg_url.rsplit("/", 1)[1])
    with Store(pg_url) as store:
        again = pipeline.run_pipeline(pipeline.RunConfig(**cfg, steps=steps, resume=first.run_id), store)
        kinds = sorted(str(r.kind) for r in store.records(first.run_id))
        assert again.run_id == first.run_id and "lenet5 complexity" in again.skipped
        assert "lenet5 export" not in again.skipped and store.get_run(first.run_id)["status"] == "ok"
    assert kinds == ["complexity", "export", "model"]  # each once: nothing measured twice


# -- bad input: one line, exit 2 ----------------------------------------------------------------------------

def test_an_unreachable_server_is_one_line(capsys):
    import socket

    from perfkit.cli import main

    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'perfkit[postgres]')")
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://postgres:secret@127.0.0.1:{port}/x"
    with pytest.raises(UsageError, match="cannot connect to the run store postgresql://postgres:\\*\\*\\*@"):
        Store(url)
    assert main(["runs", "--store", url]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot connect to the run store") and "secret" not in line


def test_a_wrong_password_is_one_line(postgres, capsys):
    from perfkit.cli import main

    import psycopg

    psycopg.connect(postgres.url("postgres", "pw_user", "right")).close()  # the right one is let in
    url = postgres.url("postgres", "pw_user", "wrong")
    assert main(["runs", "--store", url]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "password authentication failed" in line and "wrong" not in line.replace("pw_user", "")


def test_no_permission_to_create_the_tables_is_one_line(postgres, pg_url, capsys):
    from perfkit.cli import main

    url = pg_url.replace("postgres@", "noperm@")  # PostgreSQL 15: only the owner creates in schema public
    with pytest.raises(UsageError, match="no permission in the run store .*permission denied for schema public"):
        Store(url)
    assert main(["summary", "lenet5", "--store", url]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no permission in the run store" in line
    Store(pg_url).close()  # the owner creates the tables; a writer granted the rows needs no more
    postgres.sql("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO noperm", db=pg_url.rsplit("/", 1)[1])
    with Store(url) as s, s.run("granted") as run_id:
        s.add(_memory("m"), run_id)


# -- many writers at once --------------------------------------------------------------------------------

def _runs(url, writer, runs, per_run) -> None:
    with Store(url) as s:
        for n in range(runs):
            with s.run(f"writer {writer} run {n}") as run_id:
                for i in range(per_run):
                    s.add(_memory(f"{writer}-{n}-{i}", i), run_id)


@pytest.mark.slow
def test_four_processes_of_25_runs_lose_and_duplicate_nothing(pg_url):
    """Four writers open a new database at once (the tables are created once) and write 25 runs of 4
    records each: every record is there exactly once, in its own run, every run ok."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_runs, args=(pg_url, w, 25, 4)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    with Store(pg_url, read_only=True) as s:
        runs = s.runs()
        records = s.records()
        assert s.integrity_ok()
    assert len(runs) == 100 and len({r["id"] for r in runs}) == 100
    assert all(r["status"] == "ok" and r["records"] == 4 for r in runs)
    expected = {f"{w}-{n}-{i}" for w in range(4) for n in range(25) for i in range(4)}
    assert sorted(r.model for r in records) == sorted(expected)  # each once
    command = {r["id"]: r["command"] for r in runs}
    assert all(command[r.run_id] == "writer {} run {}".format(*r.model.split("-")[:2]) for r in records)


# -- the server lost in the middle of a run ----------------------------------------------------------------

@pytest.mark.slow
def test_a_server_killed_mid_run_ends_the_run_in_one_line_keeping_what_was_committed(own_postgres, tmp_path):
    """The CLI pauses right after its first latency record is committed (PERFKIT_TEST_PAUSE); the server
    is then killed (an immediate shutdown: no checkpoint, every connection cut) and the run let go."""
    url = own_postgres.url()
    pause = tmp_path / "pause"
    pause.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "perfkit", "profile", "lenet5", "-f", "eager,onnx", "-b", "1",
                             "--no-memory", "--store", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PERFKIT_TEST_PAUSE": f"latency:1:{pause}"})
    try:
        for _ in range(600):
            if (pause / "paused").exists() or proc.poll() is not None:
                break
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
        assert (pause / "paused").exists(), proc.communicate()
        own_postgres.stop("immediate")
        (pause / "release").touch()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, err
    line = _one_error_line(err)
    assert line.startswith(f"error: lost the run store {url}") and "records committed before are kept" in line
    own_postgres.start()
    with Store(url) as s:
        [run] = s.runs()
        assert run["status"] == "interrupted"  # its process is gone
        assert [(str(r.kind), r.runtime) for r in s.records(run["id"])] == [("model", None), ("latency", "eager")]


# -- done when: three concurrent profiles, three complete runs ------------------------------------------------

@pytest.mark.slow
def test_three_concurrent_profiles_give_three_complete_runs(pg_url):
    argv = ["profile", "lenet5", "-f", "eager,onnx", "-b", "1", "--no-memory", "--store", pg_url]
    procs = [subprocess.Popen([sys.executable, "-m", "perfkit", *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    out = _cli("runs", "--json", "--store", pg_url)
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)
    assert len(runs) == 3 and all(r["status"] == "ok" and r["records"] == 3 and r["errors"] == 0 for r in runs)
    with Store(pg_url, read_only=True) as s:
        for run in runs:
            keys = sorted((str(r.kind), r.runtime) for r in s.records(run["id"]))
            assert keys == [("latency", "eager"), ("latency", "onnx"), ("model", None)]



def test_sweep_shards_into_postgres_give_exactly_the_sequential_plan(pg_url, shared_artifacts, capsys):
    """`perfkit sweep --shard I/N` from several job-array tasks into one PostgreSQL store: together the
    plan's records, each once; a rerun of the whole sweep finds every cell recorded (issue 23's done-when)."""
    from collections import Counter

    from perfkit.cli import main

    fast = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0"]
    sweep = ["sweep", "lenet5", "-f", "eager,onnx", "-b", "1,2", "--no-memory", *fast,
             "--store", pg_url, "--artifacts", str(shared_artifacts)]
    assert main([*sweep, "--shard", "0/2"]) == 0 and main([*sweep, "--shard", "1/2"]) == 0
    capsys.readouterr()
    assert main(sweep) == 0
    assert "0 of 4 cell(s) measured, 4 recorded already" in capsys.readouterr().out
    with Store(pg_url, read_only=True) as store:
        measured = Counter(r.key for r in store.records() if r.kind != "model")
        assert sorted(r["id"][-4:] for r in store.runs()) == ["0of1", "0of2", "1of2"]
    assert measured == Counter(("latency", "lenet5", runtime, "fp32", batch, "cpu")
                               for runtime in ("eager", "onnx") for batch in (1, 2))
