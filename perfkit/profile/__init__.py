"""perfkit.profile: the profiler.

``timing`` (warm-up, synchronised timing loops, statistics), ``latency`` (runtime × batch sweeps
with out-of-memory back-off), ``memory`` (one spawned process per measurement), ``roofline``
(achieved GFLOP/s and fraction of the device peak), ``session`` (`profile_model`: all of these for
one model, writing the records; the work behind `perfkit profile` and `perfkit run`). Only this
package times inference; the native C++ runner is the one exception (see perfkit/runtime/native.py).
"""

from perfkit.profile.session import ProfileResult, profile_model, profile_steps

__all__ = ["ProfileResult", "profile_model", "profile_steps"]
