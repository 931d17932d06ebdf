"""perfkit.profiler.samples: every timed call kept with its record, compactly; percentiles only from enough calls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfkit.profiler.samples import ENCODING, min_samples, pack, shown, unpack


def _timings(n, median=0.2, spread=0.05, seed=0):
    return np.random.default_rng(seed).lognormal(np.log(median), spread, n).tolist()


@pytest.mark.parametrize("median", [0.02, 0.2, 12.0, 2500.0])
def test_samples_come_back_in_call_order_within_half_a_quantum(median):
    samples = _timings(1000, median)
    packed = pack(samples)
    back = unpack(packed)
    assert packed["encoding"] == ENCODING and packed["count"] == len(back) == 1000
    assert max(abs(a - b) for a, b in zip(samples, back)) <= packed["quantum_ms"] / 2 + 1e-12
    assert packed["quantum_ms"] == pytest.approx(float(np.median(samples)) * 1e-4)  # 0.01 % of the median


def test_a_10000_call_point_is_small_in_the_store():
    """What a SingleStream point of 10,000 calls costs in the store (the JSON of its `samples` metric): about
    21 KB at a 5 % spread (measured: 21,614 bytes), against 40 KB of raw float32 and 44 KB of plain base64."""
    size = len(json.dumps(pack(_timings(10_000))))
    assert size < 25_000
    tight = len(json.dumps(pack(_timings(10_000, spread=0.01))))
    assert tight < size  # a steadier timing costs less


def test_a_damaged_sample_set_is_not_taken_for_samples():
    packed = pack([1.0, 2.0, 3.0])
    assert unpack({**packed, "count": 4}) is None
    assert unpack({**packed, "data": packed["data"][:-4] + "!!!!"}) is None
    assert unpack({**packed, "encoding": "pickle"}) is None and unpack("text") is None
    with pytest.raises(ValueError):
        pack([])


def test_a_percentile_is_shown_only_from_enough_calls():
    assert [min_samples(q) for q in (50, 90, 95, 99)] == [2, 10, 20, 100]
    assert shown(99, 5.0, 99) is None and shown(99, 5.0, 100) == 5.0 and shown(90, 5.0, 10) == 5.0
    assert shown(99, None, 500) is None and shown(99, 5.0, None) == 5.0  # an old record without a count


def test_a_timing_record_keeps_its_samples_and_the_table_hides_a_p99_of_three(fake_runner):
    import torch
    from rich.console import Console

    from perfkit.profiler.scenarios import get
    from perfkit.profiler.scenarios.singlestream import LatencyResult
    from perfkit.profiler.timing import TimingConfig, time_runner
    from perfkit.record import to_records
    from perfkit.report.tables import scenario_table
    from perfkit.results import Where

    timing = time_runner(fake_runner(), torch.zeros(2, 1), TimingConfig(1, 0, 3, 0))
    where = Where("m", "eager", "fp32", 2, "random:seed0", "cpu")
    [record] = to_records(LatencyResult(where, timing, 2, {}, False))
    record.validate()
    assert unpack(record.metrics["samples"]) == pytest.approx(timing.compute.samples_ms, rel=1e-4)
    console = Console(width=300, record=True)
    console.print(scenario_table(get("singlestream"), [record], "t"))
    text = console.export_text()
    assert "percentiles are shown only from enough timed calls: p99 from 100 and p90 from 10 (the fewest here: 3)" \
        in text
    row = next(line for line in text.splitlines() if "│ eager" in line)
    assert row.count("—") >= 2  # p90 and p99 are not shown


def test_the_median_ratio_interval_tells_a_shift_from_noise():
    from perfkit.profiler.samples import median_ratio_interval

    base = _timings(500, 1.0, 0.05, seed=1)
    same = _timings(500, 1.0, 0.05, seed=2)
    slower = _timings(500, 1.3, 0.05, seed=3)
    low, high = median_ratio_interval(base, same)
    assert low < 1 < high and high - low < 0.03  # the same distribution: no change, a tight interval
    low, high = median_ratio_interval(base, slower)
    assert 1.25 < low < 1.3 < high < 1.35
    assert median_ratio_interval(base, slower) == (low, high)  # seeded: the same answer every time
    noisy = _timings(12, 1.15, 0.6, seed=4)
    low, high = median_ratio_interval(_timings(12, 1.0, 0.6, seed=5), noisy)
    assert low < 1 < high  # 12 calls with 60 % spread cannot tell 15 % from nothing
    assert median_ratio_interval(base[:9], slower) is None  # too few on one side
