"""Fixtures for profiler tests: fake runners that count and log calls instead of running a model."""

from __future__ import annotations

import time

import pytest

import torch


class FakeRunner:
    """Logs every ``infer`` and ``synchronize``; optionally sleeps or fails at a batch size.

    Has what the profiler reads from a ``perfkit.backends.Runner``: name, precision, device, threads,
    self_timed, calibration (what an int8 artifact was calibrated on) and ``config()``.
    """

    self_timed = False
    calibration = None

    def __init__(self, *, sleep_s=0.0, fail_at=None, error=None, device="cpu", name="fake", precision="fp32"):
        from perfkit.vocab import Precision

        self.device = torch.device(device)
        self.precision = Precision(precision)
        self.threads = None
        self.sleep_s = sleep_s
        self.fail_at = fail_at or ()
        self.error = error or (lambda b: torch.OutOfMemoryError(f"CUDA out of memory at batch {b}"))
        self.events: list[tuple[str, float]] = []
        self.batches_seen: list[int] = []
        self.entered = self.exited = 0
        self.name = name
        self.label = f"{name}/{self.precision}/{self.device}"

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        self.exited += 1

    def infer(self, x):
        b = x.shape[0]
        self.batches_seen.append(b)
        if b in self.fail_at:
            raise self.error(b)
        self.events.append(("infer", time.perf_counter()))
        sleep = self.sleep_s(len(self.events)) if callable(self.sleep_s) else self.sleep_s
        if sleep:
            time.sleep(sleep)
        return torch.zeros(b, 10)

    def synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.events.append(("sync", time.perf_counter()))

    def config(self):
        return {"intra_op_threads": 3, "fake": True}


class RecordingProgress:
    """A ``perfkit.context.Progress`` that keeps what it was told."""

    def __init__(self):
        self.started: list[tuple[str, int | None]] = []
        self.descriptions: list[str] = []
        self.advanced = 0

    def start(self, description, total=None):
        self.started.append((description, total))

    def update(self, description=None, advance=0):
        if description is not None and (not self.descriptions or self.descriptions[-1] != description):
            self.descriptions.append(description)
        self.advanced += advance


@pytest.fixture
def fake_runner():
    """The FakeRunner class (conftest modules are not importable under --import-mode=importlib)."""
    return FakeRunner


@pytest.fixture
def progress():
    return RecordingProgress()


@pytest.fixture
def ctx(tmp_path, progress):
    """A CPU measuring context with its own artifact folder that records progress."""
    from perfkit.context import Context

    return Context(device="cpu", artifacts=tmp_path / "artifacts", progress=progress)


@pytest.fixture
def plan_of():
    """``plan_of(backends, batches, **kw)``: a ``perfkit.plan.Plan`` whose SingleStream loop is short (one
    warm-up call, three timed calls), without memory unless asked; ``offline=OfflineConfig(...)`` adds
    the Offline scenario."""
    from perfkit.plan import Plan, ScenarioRun
    from perfkit.profiler.scenarios import get
    from perfkit.profiler.timing import TimingConfig

    def make(backends, batches, *, offline=None, timing=None, memory=False, **kw):
        runs = [ScenarioRun(get("singlestream"), timing or TimingConfig(warmup=1, warmup_seconds=0, iterations=3,
                                                                         min_seconds=0))]
        if offline is not None:
            runs.append(ScenarioRun(get("offline"), offline))
        return Plan(tuple(backends), tuple(batches), scenarios=tuple(runs), memory=memory, **kw)

    return make
