"""perfkit.profiler: the profiler (``perfkit.profile(...)`` is the Python API's function over it).

``timing`` (warm-up, synchronised timing loops, statistics), ``scenarios`` (one module per way of
driving a runner: SingleStream, Offline), ``contention`` (what other processes used of the CPU while
timing), ``memory`` (one child process per measurement), ``roofline`` (achieved GFLOP/s and fraction
of the device peak), ``session`` (`profile_model`: all of these for one model under a plan, yielding
typed results). Only this package times inference; the native C++ runner is the one runner that
times itself (``Runner.self_timed``).
"""

from perfkit.profiler.session import profile_model

__all__ = ["profile_model"]
