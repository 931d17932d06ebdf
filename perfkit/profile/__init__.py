"""perfkit.profile: the profiler.

``timing`` (warm-up, synchronised timing loops, statistics), ``latency`` (runtime × batch sweeps
with out-of-memory back-off), ``memory`` (one spawned process per measurement), ``roofline``
(achieved GFLOP/s and fraction of the device peak). Only this package times inference; the native
C++ runner is the one exception (see perfkit/runtime/native.py).
"""
