"""Fault injection: `perfkit run` killed (SIGKILL) or interrupted (SIGINT) at every step kind and at
random points, then resumed with ``--resume RUN``, ends with exactly the record keys of a run that
was never interrupted, with status ok only if every record is ok.

Each chain kills one run again and again (every resume is killed at a later point), then lets the
last resume finish: fewer process launches than one kill per run, and each resume also starts from
the state an earlier kill left. A step-kind kill never races the run: the run pauses right after it
has stored the record the kill names (``$PERFKIT_TEST_PAUSE``, perfkit/record.py), the test signals
it there and only then releases it, so the signal lands inside that step on a fast, slow or loaded
machine alike. The random points are seeded delays: either outcome (killed, or finished first) is
valid there. The chains run side by side (each its own store and artifact cache).
SIGTERM is handled like Ctrl-C; its test pauses the run at a known record in the same way.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from perfkit.record import TEST_PAUSE
from perfkit.store import Store

# LeNet-5 with tiny settings: every step runs in a second or two (the pipeline's own timing).
RUN = [sys.executable, "-m", "perfkit", "run", "lenet5", "--weights", "random", "-f", "torchscript,onnx", "-b", "1",
       "--parity-samples", "2"]
TIMEOUT = 300


@dataclass(frozen=True)
class Kill:
    sig: signal.Signals
    kind: str | None = None  # kill where this process has just stored this many records of this kind...
    count: int = 1
    delay: float | None = None  # ... or after this many seconds


class Chain:
    def __init__(self, root: Path, memory: bool):
        root.mkdir(parents=True)
        self.root, self.memory = root, memory
        self.store = root / "store.db"
        self.run_id: str | None = None
        self.log = root / "stderr.txt"
        self.launches = 0

    def launch(self, env: dict | None = None) -> subprocess.Popen:
        cmd = [*RUN, "--store", str(self.store), "--artifacts", str(self.root / "art"), "--html",
               str(self.root / "report.html"), *([] if self.memory else ["--no-memory"]),
               *(["--resume", self.run_id] if self.run_id else [])]
        with self.log.open("a") as log:  # its own session: a signal to its group reaches the memory child too
            return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                                    env={**os.environ, **(env or {})})

    def run(self, kill: Kill | None = None) -> tuple[int, bool]:
        """Run once, killed as ``kill`` says; (exit code, whether the kill was sent)."""
        self.launches += 1
        pause = self.root / f"pause-{self.launches}"
        env = {}
        if kill and kill.kind:
            pause.mkdir()
            env[TEST_PAUSE] = f"{kill.kind}:{kill.count}:{pause}"
        proc = self.launch(env)
        started = time.monotonic()
        sent = False
        while proc.poll() is None and time.monotonic() < started + TIMEOUT:
            due = kill and (kill.delay is not None and time.monotonic() - started >= kill.delay
                            or kill.kind and (pause / "paused").exists())
            if due and not sent:
                os.killpg(proc.pid, kill.sig)
                if kill.kind:
                    (pause / "release").touch()  # a signal the run survives must not leave it paused
                sent = True
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"perfkit run took over {TIMEOUT} s; see {self.log}")
        if self.run_id is None:
            with Store(self.store, read_only=True) as s:
                self.run_id = s.get_run("latest")["id"]
        return proc.wait(), sent

    def state(self) -> tuple[str, set[tuple], list]:
        with Store(self.store, read_only=True) as s:
            records = s.records(self.run_id)
            return s.get_run(self.run_id)["status"], {r.key for r in records}, records


def _chain(root: Path, memory: bool, kills: list[Kill]) -> dict:
    chain = Chain(root, memory)
    statuses = []
    for kill in kills:
        code, sent = chain.run(kill)
        # a step-kind kill always reaches its step: the run paused there for it
        assert sent or kill.kind is None, (f"{kill} never reached its pause point ({chain.log})", code)
        status, _, _ = chain.state()
        # killed: the run says interrupted (SIGKILL: its pid is dead; Ctrl-C: perfkit says so and exits 130,
        # or, at a random point that falls in Python's start-up or shutdown, dies of the signal itself)
        allowed = {-signal.SIGKILL} if kill.sig == signal.SIGKILL else {130, *([-signal.SIGINT] if kill.delay else [])}
        # a random point may fall after the run was recorded finished, while the process still wrote its
        # report or exited: then the run is ok (every record is there) although the signal killed the process
        finished_first = kill.delay is not None and status == "ok"
        if code == -signal.SIGINT:  # outside perfkit's main: the run is as the last process left it
            assert kill.delay is not None and status != "running", (kill, code, status)
        elif code != 0:
            assert code in allowed and (status == "interrupted" or finished_first), (kill, code, status)
        statuses.append((kill, code, status))
    code, _ = chain.run()  # the last resume runs to the end
    status, keys, records = chain.state()
    leftovers = sorted(p.name for p in (root / "art").rglob("*") if ".tmp-" in p.name or ".old-" in p.name)
    return {"code": code, "status": status, "keys": keys, "records": records, "kills": statuses,
            "leftovers": leftovers, "log": chain.log}


def _reference(root: Path, memory: bool) -> set[tuple]:
    chain = Chain(root, memory)
    assert chain.run()[0] == 0, chain.log.read_text()[-2000:]
    status, keys, _ = chain.state()
    assert status == "ok"
    return keys


@pytest.mark.slow  # ~2-3 minutes on 2 cores: about 20 launches of `perfkit run`, three chains side by side
def test_killed_and_interrupted_runs_resume_to_the_uninterrupted_record_keys(tmp_path):
    rng = random.Random(11)
    kill_chain = [Kill(signal.SIGKILL, "model"), Kill(signal.SIGKILL, "export"), Kill(signal.SIGKILL, "parity"),
                  Kill(signal.SIGKILL, "latency", 2), Kill(signal.SIGKILL, delay=rng.uniform(4, 12)),
                  Kill(signal.SIGKILL, delay=rng.uniform(4, 12))]
    int_chain = [Kill(signal.SIGINT, "export"), Kill(signal.SIGINT, "parity"), Kill(signal.SIGINT, "latency", 2),
                 Kill(signal.SIGINT, delay=rng.uniform(4, 12))]
    memory_chain = [Kill(signal.SIGKILL, "memory"), Kill(signal.SIGINT, "memory")]
    with ThreadPoolExecutor(max_workers=5) as pool:
        plain = pool.submit(_reference, tmp_path / "ref", False)
        with_memory = pool.submit(_reference, tmp_path / "ref-memory", True)
        chains = {"SIGKILL": pool.submit(_chain, tmp_path / "kill", False, kill_chain),
                  "SIGINT": pool.submit(_chain, tmp_path / "int", False, int_chain),
                  "memory": pool.submit(_chain, tmp_path / "memory", True, memory_chain)}
        expected = {"SIGKILL": plain.result(), "SIGINT": plain.result(), "memory": with_memory.result()}
        results = {name: future.result() for name, future in chains.items()}
    assert any(k[0] == "memory" for k in expected["memory"]) and not any(k[0] == "memory" for k in expected["SIGKILL"])
    for name, result in results.items():
        where = f"{name} chain ({result['log']})"
        # every step-kind kill landed while the run was still going
        assert all(code != 0 for kill, code, _ in result["kills"] if kill.kind), (where, result["kills"])
        assert result["keys"] == expected[name], where
        assert len(result["records"]) == len(result["keys"])  # one current record per key: no duplicates
        all_ok = all(r.status == "ok" and (r.kind != "parity" or r.metrics.get("passed")) for r in result["records"])
        assert result["status"] == ("ok" if all_ok else "failed") and result["code"] == (0 if all_ok else 1), where
        assert all_ok, where  # LeNet-5 with random weights passes every step
        assert result["leftovers"] == [], where  # killed exports' temporaries are gone


@pytest.mark.slow  # ~20 s: one `perfkit profile` with its memory children
def test_sigterm_during_the_memory_step_marks_the_run_interrupted_and_exits_143(tmp_path):
    """SIGTERM (kill, a scheduler, a container stop) is handled like Ctrl-C: one line, the run marked
    interrupted, the measuring children killed, exit code 128 + 15. Deterministic: the process pauses
    right after storing its first memory record (PERFKIT_TEST_PAUSE) and is signalled there."""
    pause = tmp_path / "pause"
    pause.mkdir()
    store, log = tmp_path / "store.db", tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "perfkit", "profile", "lenet5", "--weights", "random", "-f", "eager", "-b", "1,2",
           "--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0",
           "--store", str(store), "--artifacts", str(tmp_path / "art")]
    env = {**os.environ, "PERFKIT_TEST_PAUSE": f"memory:1:{pause}"}
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        deadline = time.monotonic() + TIMEOUT  # a hang guard, not a timing: the pause waits for the signal
        while not (pause / "paused").exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        (pause / "release").touch()  # were SIGTERM ignored, the command would go on and end 0
        code = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 128 + signal.SIGTERM, text[-2000:]
    assert text.strip().splitlines()[-1] == ("terminated (SIGTERM): the run is marked interrupted; finished records "
                                             "are kept in the store")
    assert "Traceback" not in text
    with Store(store, read_only=True) as s:
        run = s.get_run("latest")
        assert run["status"] == "interrupted"
        assert [r.batch for r in s.records(run["id"], kind="memory")] == [1]  # what was stored before it is kept
