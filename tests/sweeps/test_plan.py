"""perfkit.sweeps.plan: cells in one order, shards that partition the plan, each cell's keys, the identity."""

import dataclasses

import pytest

from perfkit.backends import get
from perfkit.errors import UsageError
from perfkit.sweeps.plan import Cell, Setup, SweepPlan, expand, parse_shard
from perfkit.vocab import Precision


def _cells(models=("a", "b"), batches=(1, 2, 4)):
    backends = {m: [get("eager"), get("onnx")] for m in models}
    return expand(dict.fromkeys(models), backends, [Precision.FP32, Precision.INT8], {m: batches for m in models},
                  "cpu")


def test_expand_is_model_precision_runtime_batch_and_skips_what_a_runtime_does_not_run():
    cells = _cells(models=("a",), batches=(1, 2))
    assert [(c.index, c.model, c.runtime, c.precision, c.batch) for c in cells] == [
        (0, "a", "eager", "fp32", 1), (1, "a", "eager", "fp32", 2), (2, "a", "onnx", "fp32", 1),
        (3, "a", "onnx", "fp32", 2),
        # eager is the fp32 reference of int8: it has no int8 cell
        (4, "a", "onnx", "int8", 1), (5, "a", "onnx", "int8", 2)]
    assert _cells() == _cells()  # deterministic


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 20])
def test_shards_are_disjoint_balanced_and_together_the_plan(count):
    plan = SweepPlan(Setup({}, {}, {}, ("singlestream",)), {}, _cells())
    shards = [plan.shard(i, count) for i in range(count)]
    flat = [c for s in shards for c in s]
    assert flat == list(plan.cells)  # disjoint, in order, nothing left out
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_a_shard_out_of_range_is_refused():
    plan = SweepPlan(Setup({}, {}, {}, ("singlestream",)), {}, _cells())
    with pytest.raises(UsageError, match="0..1"):
        plan.shard(2, 2)


def test_parse_shard_from_flags_and_schedulers():
    assert parse_shard(None, {}) == (0, 1)
    assert parse_shard("1/4", {}) == (1, 4)
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert parse_shard("auto", slurm) == (2, 3)
    assert parse_shard("auto/4", {"JOB_COMPLETION_INDEX": "3"}) == (3, 4)
    for bad, env in (("4/4", {}), ("x/2", {}), ("1", {}), ("auto", {}), ("auto", {"JOB_COMPLETION_INDEX": "0"})):
        with pytest.raises(UsageError, match="--shard"):
            parse_shard(bad, env)


def _lenet_plan(tiny_spec, **changes) -> SweepPlan:
    setup = Setup({"lenet5": {"text": "lenet5", "weights": "random"}}, {"lenet5": tiny_spec.identity},
                  {"lenet5": (1, 2)}, ("singlestream", "offline"), {}, True, "cpu")
    setup = dataclasses.replace(setup, **changes)
    specs = {"lenet5": tiny_spec}
    return SweepPlan(setup, specs, expand(specs, {"lenet5": [get("onnx")]}, [Precision.FP32], setup.batches, "cpu"))


def test_cell_keys_follow_profile_offline_at_the_largest_batch_only(tiny_spec):
    plan = _lenet_plan(tiny_spec)
    small, large = plan.cells
    assert plan.keys(small) == {("latency", "lenet5", "onnx", "fp32", 1, "cpu"),
                                ("memory", "lenet5", "onnx", "fp32", 1, "cpu")}
    assert plan.keys(large) == {("latency", "lenet5", "onnx", "fp32", 2, "cpu"),
                                ("throughput", "lenet5", "onnx", "fp32", 2, "cpu"),
                                ("memory", "lenet5", "onnx", "fp32", 2, "cpu")}
    # every cell's artifact covers the model's batches: one export serves them all
    assert {plan.setup.plan(c).batch_range for c in plan.cells} == {plan.setup.plan(small).batch_range}
    assert plan.setup.context("lenet5", {}).options["profile_batches"] == (1, 2)


def test_failures_name_every_timed_key_and_no_memory(tiny_spec):
    plan = _lenet_plan(tiny_spec)
    failures = plan.failures(plan.cells[1], "lost")
    assert sorted((str(f.kind), f.where.batch, f.error) for f in failures) == [
        ("latency", 2, "lost"), ("throughput", 2, "lost")]


def test_identity_changes_with_what_changes_a_number(tiny_spec):
    base = _lenet_plan(tiny_spec).identity
    assert base == _lenet_plan(tiny_spec).identity
    assert base != _lenet_plan(tiny_spec, memory=False).identity
    assert base != _lenet_plan(tiny_spec, scenario_options={"iterations": 3}).identity
    assert base == _lenet_plan(tiny_spec, artifacts="/elsewhere").identity  # where artifacts live changes nothing


def test_cell_text():
    assert str(Cell(0, "lenet5", "onnx", "fp32", 2)) == "lenet5 onnx fp32 batch 2"
