"""perfkit.record: results become records in one place, written at once, and the run's status agrees
with what was recorded."""

import pytest

from perfkit.profiler.memory import MemoryResult
from perfkit.record import Recorder, recording, to_records
from perfkit.results import Failure, Kind, Where
from perfkit.store import Store


def _memory(model="m", batch=1):
    return MemoryResult(Where(model, "eager", "fp32", batch, "random:seed0", "cpu"), 1234, "rss", {"artifact_bytes": 9})


def test_a_result_becomes_a_record_with_its_provenance():
    [record] = to_records(_memory())
    assert (record.kind, record.model, record.runtime, record.precision, record.batch, record.weights,
            record.device) == (Kind.MEMORY, "m", "eager", "fp32", 1, "random:seed0", "cpu")
    assert record.metrics == {"peak_bytes": 1234, "method": "rss", "artifact_bytes": 9}
    record.validate()
    with pytest.raises(TypeError, match="no record conversion for str"):
        to_records("a number")


def test_each_result_is_in_the_store_as_soon_as_it_is_added(tmp_path):
    path = tmp_path / "s.db"
    with Store(path) as store, recording(store, command="perfkit test") as rec:
        rec.add(_memory())
        with Store(path, read_only=True) as reader:  # another process would see it too: Ctrl-C keeps it
            assert [r.metrics["peak_bytes"] for r in reader.records(rec.run_id)] == [1234]
            assert reader.get_run(rec.run_id)["status"] == "running"
        assert rec.records[0].env["cpu_count"]  # the run's environment, filled in


@pytest.mark.parametrize("how, status", [
    ("nothing", "ok"), ("error record", "failed"), ("fail", "failed"), ("exception", "failed"),
    ("interrupt", "interrupted"),
])
def test_the_run_status_agrees_with_the_records(how, status, store):
    with pytest.raises((RuntimeError, KeyboardInterrupt)) if how in ("exception", "interrupt") else _nothing():
        with recording(store, command="perfkit test") as rec:
            rec.add(_memory())
            if how == "error record":
                rec.add(Failure.of(Kind.LATENCY, Where("m", "onnx"), RuntimeError("boom")))
            elif how == "fail":
                rec.fail("a gate failed")
                assert rec.failed and rec.errors == []
            elif how == "exception":
                raise RuntimeError("a bug")
            elif how == "interrupt":
                raise KeyboardInterrupt
    run = store.get_run(rec.run_id)
    assert run["status"] == status and run["finished"] is not None
    assert len(store.records(rec.run_id)) == (2 if how == "error record" else 1)  # finished records are kept


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_model_is_recorded_once_per_run(store, tiny_spec):
    with recording(store) as rec:
        rec.model(tiny_spec)
        rec.model(tiny_spec)
    [model] = store.records(rec.run_id, kind=Kind.MODEL)
    assert model.model == "lenet5" and model.weights == "random:seed0" and model.metrics["random_weights"] is True
    # a resumed run (same id, a new recorder) has it already
    with recording(store, run_id=rec.run_id) as again:
        again.model(tiny_spec)
    assert again.run_id == rec.run_id and len(store.records(rec.run_id, kind=Kind.MODEL)) == 1
    assert store.get_run(rec.run_id)["status"] == "ok"


def test_add_all_records_a_generator_as_it_yields(store):
    seen = []

    def measure():
        for batch in (1, 2):
            yield _memory(batch=batch)
            seen.append(len(store.records(rec.run_id)))

    rec = Recorder(store, store.start_run("x"))
    records = rec.add_all(measure())
    assert seen == [1, 2] and [r.batch for r in records] == [1, 2]


def test_a_record_its_schema_refuses_is_not_written(store):
    rec = Recorder(store, store.start_run("x"))
    bad = MemoryResult(Where("m", "eager"), 1, "rss", {"peak_megabytes": 3})
    with pytest.raises(ValueError, match="peak_megabytes"):
        rec.add(bad)
    assert store.records(rec.run_id) == []
