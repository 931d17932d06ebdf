"""Contention: how much of the CPU other processes used while perfkit timed.

A busy machine does not always show in the samples: one ``while True: pass`` beside a torch runtime
made its latency 80-760× slower with a CV of 3.5-5.8 % (the thread pools spin against the other
process evenly), so the CV warning stayed silent and the number looked clean. This module measures
the cause instead of its symptom.

Method: over each timing window, the CPU time the machine spent *not idle* on the CPUs this process
may run on (``os.sched_getaffinity``; the per-CPU ``cpuN`` lines of ``/proc/stat``) minus this
process's own CPU time (``time.process_time``: every thread, nanoseconds; plus the children it
reaped, so the native runner's process counts as ours) is what other processes used::

    other_cpu_pct = (CPUs × wall − idle − iowait − own) / (CPUs × wall) × 100

Busy time is taken as wall minus the idle and iowait counters rather than as the sum of user, nice,
system, irq, softirq and steal: the two are the same time (steal, the hypervisor giving the CPU to
another machine, counts as busy either way), but the kernel prints each counter truncated to a
jiffy (10 ms), so two truncated counters per CPU carry a third of the error of six. Measured on a
2-CPU VM, 0.5 s windows: the sum of six wobbled by ±1.5 points from window to window, wall minus
idle by ±0.5. A window shorter than ``MIN_WINDOW_SECONDS`` is too coarse for the jiffies and is
reported as not measured; windows of one timing accumulate (the CUDA path's three loops, one
Offline K's window). A timing is contended when others used ``CONTENDED_PCT`` of the CPUs or more,
or, on a many-core machine, ``CONTENDED_CORES`` of a core or more while less than that was idle.

The share is of the CPUs the affinity mask allows. In a container limited by a CPU quota
(``cpu.max``) but not a cpuset, those are the host's CPUs: a busy neighbour counts against them all,
and the share reads lower than the quota would make it.

Alternatives the issue named, and why not: the run queue (``/proc/loadavg``'s running count,
sampled during the window) counts this process's own runnable threads (a spinning torch pool is
2-64 of them) and is a snapshot, so it needs a sampling thread inside the timed window and still
cannot tell whose threads ran; this process's CPU time against threads × wall falls when the
runtime merely waits (ONNX Runtime with one request, a GPU) as much as when it is preempted, and
says nothing about who took the CPU. The idle counters answer the question directly and cost two
reads of ``/proc/stat`` per window, outside the timed calls.

Where ``/proc/stat`` is missing (macOS, Windows) contention is recorded as not measured (None),
never as clean. The native C++ runner's self-timed loop is covered over its whole process run
(its model load included), its CPU counted as this process's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# Other processes using a tenth of the CPUs this process may run on is far above an idle machine's
# background (kernel threads, a shell: 0-2.5 % in 1 s windows on a quiet 2-CPU VM, 0.1-0.8 % over
# lenet5's timings) and far below what one busy loop took beside a profile (27-39 % on that VM),
# which can slow a torch runtime 80× or more.
CONTENDED_PCT = 10.0
# On a many-core machine one busy process is a few percent of the CPUs (beside a torch pool with a
# thread per core it gets about N/(N+1) of a core), yet the pool waits for its slowest thread: half a
# core or more taken by others while under half a core was left idle (every core wanted) is
# contention too. The idle condition keeps a pool with spare cores from being flagged.
CONTENDED_CORES = 0.5
# The kernel prints its counters in jiffies (10 ms): over a shorter window one jiffy per CPU is
# more than 5 % of it, too coarse against a 10 % threshold.
MIN_WINDOW_SECONDS = 0.2

_IDLE_FIELDS = (3, 4)  # idle, iowait in a /proc/stat cpuN line after its name


@dataclass(frozen=True)
class Contention:
    """What other processes used of the CPUs this process may run on, over one or more windows."""

    other_cpu_pct: float | None  # None: not measured (``unmeasured`` says why)
    cpus: int
    wall_seconds: float
    other_cpu_seconds: float | None = None
    idle_cpu_seconds: float | None = None
    unmeasured: str | None = None

    @property
    def contended(self) -> bool | None:
        """Whether the timing is not a clean number; None when contention was not measured."""
        if self.other_cpu_pct is None:
            return None
        cores, idle = self.other_cpu_seconds / self.wall_seconds, self.idle_cpu_seconds / self.wall_seconds
        return self.other_cpu_pct >= CONTENDED_PCT or (cores >= CONTENDED_CORES and idle < CONTENDED_CORES)

    def message(self) -> str:
        """``contended: other processes used 47 % of the CPU (0.9 of 2 cores)`` (the measured share)."""
        if self.other_cpu_pct is None:
            return f"contention not measured: {self.unmeasured}"
        cores = self.other_cpu_seconds / self.wall_seconds
        what = "contended" if self.contended else "quiet"
        saturated = ", under half a core left idle" if self.contended and self.other_cpu_pct < CONTENDED_PCT else ""
        return (f"{what}: other processes used {self.other_cpu_pct:.0f} % of the CPU ({cores:.1f} of {self.cpus} "
                f"cores{saturated})")


def read_proc_stat(path: str = "/proc/stat") -> dict[int, tuple[int, ...]] | None:
    """Jiffy counters of each CPU (``cpuN`` lines of ``/proc/stat``), or None where there is none."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            try:
                out[int(name[3:])] = tuple(int(v) for v in rest.split())
            except ValueError:  # a format this code does not know: not measured, rather than misread
                return None
    return out or None


def own_cpu_seconds() -> float:
    """This process's CPU time, every thread, plus the children it has reaped (the native runner)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def allowed_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on (None where the platform does not say)."""
    return frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _now() -> float:
    return time.perf_counter()


def _jiffy_seconds() -> float:
    return 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True)
class _Snapshot:
    wall: float
    own: float
    idle: dict[int, int] | None  # idle + iowait jiffies per allowed CPU; None: not readable


def _snapshot(cpus: frozenset[int] | None) -> _Snapshot:
    stat = read_proc_stat() if cpus else None
    idle = None
    if stat is not None and cpus <= stat.keys() and all(len(stat[c]) > max(_IDLE_FIELDS) for c in cpus):
        idle = {c: sum(stat[c][i] for i in _IDLE_FIELDS) for c in cpus}
    return _Snapshot(_now(), own_cpu_seconds(), idle)


class ContentionMeter:
    """Accumulates what other processes used over timing windows: ``start()`` … ``stop()`` (or
    ``with meter.window():``) around each window, then ``reading()``. The reads happen outside the
    timed calls; a window costs two reads of ``/proc/stat``."""

    def __init__(self):
        self.cpus = allowed_cpus()
        self._open: _Snapshot | None = None
        self.wall = self.own = 0.0
        self.idle_jiffies = 0
        self.unmeasured: str | None = None

    def start(self) -> None:
        self._open = _snapshot(self.cpus)

    def stop(self) -> None:
        begin, end = self._open, _snapshot(self.cpus)
        self._open = None
        if begin is None:
            raise RuntimeError("ContentionMeter.stop() without start()")
        self.wall += end.wall - begin.wall
        self.own += end.own - begin.own
        if begin.idle is None or end.idle is None:
            self.unmeasured = self.unmeasured or "no per-CPU /proc/stat on this platform"
        else:
            self.idle_jiffies += sum(end.idle[c] - begin.idle[c] for c in begin.idle)

    @contextmanager
    def window(self) -> Iterator[None]:
        self.start()
        try:
            yield
        finally:
            self.stop()

    def reading(self) -> Contention:
        """Contention over every window so far (not measured where a window could not be read or
        all of them together are shorter than ``MIN_WINDOW_SECONDS``)."""
        n = len(self.cpus or ())
        why = self.unmeasured
        if why is None and self.wall < MIN_WINDOW_SECONDS:
            why = f"timed for {self.wall:.2f} s, under the {MIN_WINDOW_SECONDS} s that 10 ms jiffies resolve"
        if why is not None:
            return Contention(None, n, self.wall, unmeasured=why)
        idle = self.idle_jiffies * _jiffy_seconds()
        other = max(0.0, n * self.wall - idle - self.own)  # a jiffy of truncation can make it -0.01
        return Contention(100.0 * other / (n * self.wall), n, self.wall, other, idle)


def worst(readings: Iterable[Contention | None]) -> Contention | None:
    """The most contended of several readings (one per Offline K): a contended window makes the
    search's winner suspect. Not measured (None) only when none was measured."""
    readings = [r for r in readings if r is not None]
    measured = [r for r in readings if r.other_cpu_pct is not None]
    if measured:
        return max(measured, key=lambda r: (bool(r.contended), r.other_cpu_pct))
    return readings[0] if readings else None


def contention_metrics(reading: Contention | None) -> dict:
    """A timing's record metrics: what other processes used of the CPU and whether that makes it
    contended, both None where it was not measured (never recorded as clean)."""
    return {"other_cpu_pct": None if reading is None else reading.other_cpu_pct,
            "contended": None if reading is None else reading.contended}
