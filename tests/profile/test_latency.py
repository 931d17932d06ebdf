import torch

from perfkit.formats import BatchRange, Format
from perfkit.profile.latency import batch_range_for, is_out_of_memory, sweep
from perfkit.profile.timing import TimingConfig


FAST = TimingConfig(warmup=1, warmup_seconds=0, iterations=3, min_seconds=0)


def _opener(runners: dict):
    calls = []

    def opener(spec, fmt, **kwargs):
        calls.append((fmt, kwargs))
        runner = runners[fmt]
        if isinstance(runner, Exception):
            raise runner
        return runner

    opener.calls = calls
    return opener


def test_oom_batch_becomes_an_error_record_and_the_sweep_goes_on(tiny_spec, fake_runner):
    eager = fake_runner(fail_at={32})
    opener = _opener({Format.EAGER: eager, Format.ONNX: RuntimeError("export failed"),
                      Format.TORCHSCRIPT: fake_runner()})
    seen = []
    points = sweep(tiny_spec, ["eager", "onnx", "torchscript"], [32, 1, 8, 64], config=FAST, opener=opener,
                   on_point=seen.append)
    assert seen == points
    by = {(str(p.runtime), p.batch): p for p in points}
    assert [p.batch for p in points if p.runtime is Format.EAGER] == [1, 8, 32, 64]  # ascending
    assert by["eager", 1].ok and by["eager", 8].ok
    assert isinstance(by["eager", 32].error, torch.OutOfMemoryError)
    assert not by["eager", 64].ok and "skipped" in str(by["eager", 64].error)
    assert 64 not in eager.batches_seen  # backed off: never tried a batch larger than one that failed
    assert eager.entered == eager.exited == 1
    # a runtime that cannot be opened gives an error per batch; the next runtime still runs
    assert all(not by["onnx", b].ok for b in (1, 8, 32, 64))
    assert all(by["torchscript", b].ok for b in (1, 8, 32, 64))


def test_other_errors_do_not_stop_larger_batches(tiny_spec, fake_runner):
    runner = fake_runner(fail_at={8}, error=lambda b: ValueError("shape mismatch"))
    points = sweep(tiny_spec, ["eager"], [1, 8, 32], config=FAST, opener=_opener({Format.EAGER: runner}))
    assert [p.ok for p in points] == [True, False, True]


def test_exporter_is_asked_for_a_batch_range_covering_the_batches(tiny_spec, fake_runner):
    opener = _opener({Format.EAGER: fake_runner()})
    sweep(tiny_spec, ["eager"], [1, 512], config=FAST, opener=opener)
    brange = opener.calls[0][1]["batch"]
    assert brange.contains(1) and brange.contains(512)
    assert opener.calls[0][1]["channels_last"] is False


def test_batch_range_for():
    assert batch_range_for([1, 8, 32]) == BatchRange()  # shares the export cache with `perfkit export`
    wide = batch_range_for([4, 1024])
    assert wide.contains(4) and wide.contains(1024) and wide.min <= wide.opt <= wide.max


def test_is_out_of_memory():
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested buffer"))
    assert not is_out_of_memory(ValueError("bad shape"))


def test_real_eager_sweep_measures(tiny_spec):
    points = sweep(tiny_spec, ["eager"], [1, 2], config=FAST)
    assert all(p.ok for p in points)
    assert points[1].timing.compute.batch == 2 and points[0].threads == torch.get_num_threads()
