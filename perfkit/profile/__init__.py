"""perfkit.profile: the profiler.

``timing`` (warm-up, synchronised timing loops, statistics), ``latency`` (runtime × batch sweeps
with out-of-memory back-off), ``memory`` (one spawned process per measurement), ``roofline``
(achieved GFLOP/s and fraction of the device peak), ``session`` (`profile_model`: all of these for
one model, yielding typed results). Only this package times inference; the native C++ runner is
the one runner that times itself (``Runner.self_timed``).
"""

from perfkit.profile.session import ProfilePlan, expected_keys, profile_model

__all__ = ["ProfilePlan", "expected_keys", "profile_model"]
