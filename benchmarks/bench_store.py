"""Records per second written to the run store: PostgreSQL vs SQLite, in one run.

Each writer process opens the store and writes latency records the way a run does (``Store.add``:
validated, one transaction each), each carrying 200 timed calls and the run's environment. The same
records go to a fresh SQLite file and to a fresh PostgreSQL database; with several writers at once
(``--writers 1,4``), the rate is all writers' records over the wall time from the first start to the
last end. Prints both rates and the ratio PostgreSQL / SQLite for each writer count (JSON with --json),
and the server's durability settings (a commit waits for the WAL flush unless ``synchronous_commit``
is off; SQLite runs in WAL mode with ``synchronous=NORMAL``, perfkit's setting).

    python benchmarks/bench_store.py --postgres postgresql://postgres@127.0.0.1:5432/postgres

The PostgreSQL URL names a database this user may create databases from (``CREATE DATABASE`` is run
for a scratch database, dropped at the end); its query string is kept, so
``?options=-c%20synchronous_commit%3Doff`` measures commits that do not wait for the WAL flush. Without a server at hand, as an unprivileged user:
``initdb -D /tmp/pg && pg_ctl -D /tmp/pg -o "-p 5433 -k /tmp" -l /tmp/pg.log start``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfkit.env import fingerprint  # noqa: E402
from perfkit.store import Kind, Record, Store  # noqa: E402


def _record(i: int, env: dict) -> Record:
    samples = [1.0 + (i * 7 + k) % 13 / 100 for k in range(200)]
    return Record(kind=Kind.LATENCY, model="resnet18", runtime="onnx", precision="fp32", batch=1 + i % 8,
                  device="cpu", env=env, metrics={"iterations": 200, "latency_median_ms": 1.06,
                                                  "latency_p99_ms": 1.12, "throughput_per_s": 940.0,
                                                  "samples": samples})


def _writer(location: str, count: int, start, out) -> None:
    env = fingerprint("cpu")
    with Store(location) as store:
        run_id = store.start_run("bench_store")
        records = [_record(i, env) for i in range(count)]
        out.put("ready")
        start.wait()
        began = time.perf_counter()
        for record in records:
            store.add(record, run_id)
        out.put((began, time.perf_counter()))
        store.finish_run(run_id, "ok")


def records_per_s(location: str, writers: int, count: int) -> float:
    """All writers' records over the time from the first writer's start to the last one's end."""
    Store(location).close()  # the tables exist before the clock starts
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(location, count, start, out)) for _ in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:  # every writer has opened its store and built its records: start them together
        assert out.get(timeout=600) == "ready"
    start.set()
    spans = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise SystemExit(f"a writer failed (exit {p.exitcode})")
    with Store(location, read_only=True) as store:
        assert len(store.records(kind=Kind.LATENCY)) == writers * count, "records were lost"
    return writers * count / (max(end for _, end in spans) - min(began for began, _ in spans))


def _scratch_database(url: str, name: str) -> tuple[str, dict]:
    """A fresh database ``name`` on the server of ``url`` (its query, e.g. ``?options=...``, kept): its URL,
    and the durability settings a connection to it gets."""
    from urllib.parse import urlsplit

    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    scratch = urlsplit(url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(scratch) as conn:
        settings = {s: conn.execute(f"SHOW {s}").fetchone()[0] for s in ("fsync", "synchronous_commit")}
    return scratch, settings


def _drop(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", required=True, metavar="URL", help="a server to write to (see above)")
    parser.add_argument("--records", type=int, default=1000, help="records per writer")
    parser.add_argument("--writers", default="1,4", help="writer process counts to measure, comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for writers in [int(w) for w in args.writers.split(",")]:
        name = f"perfkit_bench_{writers}"
        pg_url, settings = _scratch_database(args.postgres, name)
        try:
            with tempfile.TemporaryDirectory() as folder:
                sqlite_rate = records_per_s(str(Path(folder) / "bench.db"), writers, args.records)
            pg_rate = records_per_s(pg_url, writers, args.records)
        finally:
            _drop(args.postgres, name)
        results.append({"writers": writers, "records_per_writer": args.records, "sqlite_records_per_s": sqlite_rate,
                        "postgres_records_per_s": pg_rate, "ratio_postgres_over_sqlite": pg_rate / sqlite_rate,
                        "postgres_settings": settings})
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(f"{r['writers']} writer(s) × {r['records_per_writer']} records: SQLite {r['sqlite_records_per_s']:.0f} "
              f"records/s, PostgreSQL {r['postgres_records_per_s']:.0f} records/s, ratio PostgreSQL/SQLite "
              f"{r['ratio_postgres_over_sqlite']:.2f} (server fsync={r['postgres_settings']['fsync']}, "
              f"synchronous_commit={r['postgres_settings']['synchronous_commit']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
