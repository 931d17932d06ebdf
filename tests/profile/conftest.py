"""Fixtures for profiler tests: fake runners that count and log calls instead of running a model."""

from __future__ import annotations

import time

import pytest

import torch


class FakeRunner:
    """Logs every ``infer`` and ``synchronize``; optionally sleeps or fails at a batch size."""

    def __init__(self, *, sleep_s=0.0, fail_at=None, error=None, device="cpu"):
        self.device = torch.device(device)
        self.sleep_s = sleep_s
        self.fail_at = fail_at or ()
        self.error = error or (lambda b: torch.OutOfMemoryError(f"CUDA out of memory at batch {b}"))
        self.events: list[tuple[str, float]] = []
        self.batches_seen: list[int] = []
        self.entered = self.exited = 0
        self.name = "fake"

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
        self.events.append(("sync", time.perf_counter()))


@pytest.fixture
def fake_runner():
    """The FakeRunner class (conftest modules are not importable under --import-mode=importlib)."""
    return FakeRunner
