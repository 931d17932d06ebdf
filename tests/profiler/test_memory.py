import sys

import pytest
import torch

from perfkit.context import Context
from perfkit.profiler.memory import HostPeak, MemoryResult, artifact_size, measure_memory
from perfkit.record import to_records
from perfkit.store import SCHEMAS, Kind
from perfkit.zoo.sources import resolve


def test_host_peak_sees_an_allocation():
    import mmap

    peak = HostPeak()
    # 64 MiB of fresh anonymous pages, each touched: never resident before, whatever earlier tests left
    # in malloc's or torch's free lists (a torch.ones block could reuse those, and RSS would not grow)
    block = mmap.mmap(-1, 64 * 2**20)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    block.close()
    assert peak.delta() >= 60 * 2**20  # a peak: still seen after the memory is freed
    assert "RSS" in peak.method


def test_without_proc_the_peak_comes_from_ru_maxrss_and_without_getrusage_it_is_not_measured(monkeypatch):
    """macOS has no /proc: ru_maxrss (in its unit) is the fallback; Windows has no getrusage either: the
    measurement fails saying why, instead of giving a number."""
    from perfkit.errors import MeasurementError
    from perfkit.profiler import memory

    def no_proc(path, *args, **kwargs):
        assert str(path).startswith("/proc/self/")
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(memory, "open", no_proc, raising=False)  # the module's open(), before builtins'
    peak = memory.HostPeak()
    assert not peak.resettable and "ru_maxrss" in peak.method
    assert peak.delta() >= 0  # a peak never falls
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "resource", None)  # as on Windows: `import resource` fails
        with pytest.raises(MeasurementError, match="host memory is not measured on this platform.*getrusage"):
            memory.HostPeak()
    monkeypatch.setattr(memory, "own_peak_rss_bytes", lambda: peak.base + 5 * 2**20)  # what getrusage says later
    assert peak.delta() == 5 * 2**20


def test_artifact_size_counts_every_file_of_the_artifact(tiny_spec, tmp_path):
    """The ONNX graph's external data counts, not only the main file (the IR's .bin likewise)."""
    from perfkit.backends import prepare
    from perfkit.context import Context

    art = prepare(tiny_spec, "onnx", Context(artifacts=tmp_path))
    assert artifact_size(art) == sum(p.stat().st_size for p in art.dir.iterdir() if p.name != "manifest.json")
    assert artifact_size(art) > art.path.stat().st_size
    assert artifact_size(None) is None


def test_spawned_process_reports_the_model_memory(tmp_path):
    spec = resolve("resnet18", weights="random")
    params_bytes = 11_689_512 * 4  # resnet18's fp32 weights must be resident at the peak
    result = measure_memory(spec, "eager", 1, Context(device="cpu", artifacts=tmp_path))
    assert isinstance(result, MemoryResult)
    assert result.details["rss_delta_bytes"] == result.peak_bytes >= params_bytes
    assert result.peak_bytes < 2 * 2**30
    assert "RSS" in result.method
    w = result.where
    assert (w.model, w.runtime, w.precision, w.batch, w.device, w.weights) == (
        "resnet18", "eager", "fp32", 1, "cpu", "random:seed0")
    assert all(v is not None for v in result.details.values())  # unknown numbers are left out, not None
    [record] = to_records(result)
    record.validate()  # the record fits the memory schema
    assert SCHEMAS[Kind.MEMORY].required <= record.metrics.keys()


def test_spawned_failure_becomes_an_error(tiny_spec, tmp_path):
    from dataclasses import replace

    from perfkit.errors import PerfkitError

    wrong = replace(tiny_spec, input_size=(3, 40, 40))  # LeNet-5's classifier takes 32×32 inputs only: fails in the child
    with pytest.raises(PerfkitError, match="memory measurement of lenet5 eager batch 1 failed: RuntimeError.*shapes"):
        measure_memory(wrong, "eager", 1, Context(artifacts=tmp_path))


WEIGHTS_RESNET18 = 11_689_512 * 4  # fp32 bytes


def _runnable(backend, device="cuda:0"):
    from perfkit.backends import get

    why = get(backend).unavailable(device)
    if why:
        pytest.skip(why)


@pytest.mark.gpu
def test_nvml_handle_is_the_gpu_torch_calls_by_that_index():
    """NVML numbers GPUs by PCI order and ignores CUDA_VISIBLE_DEVICES: each CUDA index must map to
    the NVML device with the same UUID (MIG instances: the MIG uuid), not to NVML's device N."""
    import pynvml

    from perfkit.device import nvml_handle

    def bare(uuid):
        uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        return uuid.split("-", 1)[1] if uuid.startswith(("GPU-", "MIG-")) else uuid

    for index in range(torch.cuda.device_count()):
        nvml_uuid = pynvml.nvmlDeviceGetUUID(nvml_handle(f"cuda:{index}"))
        assert bare(nvml_uuid) == bare(torch.cuda.get_device_properties(index).uuid)


@pytest.mark.gpu
def test_cuda_torch_runtime_uses_the_allocator(tmp_path):
    spec = resolve("resnet18", weights="random")
    result = measure_memory(spec, "eager", 8, Context(device="cuda:0", artifacts=tmp_path))
    assert result.peak_bytes >= WEIGHTS_RESNET18
    assert "torch allocator" in result.method
    assert result.details["gpu_context_bytes"] > 0  # NVML sees the CUDA context (of this GPU, found by UUID)
    assert result.where.device == "cuda"
    to_records(result)[0].validate()


@pytest.mark.gpu
def test_cuda_aoti_peak_includes_the_weights(tmp_path_factory):
    """AOTInductor allocates its constants with cudaMalloc unless weight_use_caching_allocator is
    on: then the torch-allocator peak would miss the model's weights."""
    from perfkit.vocab import BatchRange

    _runnable("aoti")
    spec = resolve("resnet18", weights="random")
    # the package tests/backends/test_runners.py compiled (same cache and batch range): no second compile
    shared = Context(device="cuda:0", artifacts=tmp_path_factory.getbasetemp() / "shared-artifacts")
    result = measure_memory(spec, "aoti", 8, shared, brange=BatchRange(1, 8, 16))
    assert "torch allocator" in result.method
    assert result.peak_bytes >= WEIGHTS_RESNET18, (result.peak_bytes, result.details)


@pytest.mark.gpu
def test_cuda_onnxruntime_uses_nvml(tmp_path):
    _runnable("onnx")
    spec = resolve("resnet18", weights="random")
    result = measure_memory(spec, "onnx", 8, Context(device="cuda:0", artifacts=tmp_path))
    assert "NVML" in result.method and result.details["gpu_context_bytes"] > 0
    # ONNX Runtime's arena holds at least the fp32 weights; NVML is device-wide, so other processes
    # on the GPU can only add to it (a lower bound keeps this stable on a shared GPU)
    assert result.peak_bytes >= 0.9 * WEIGHTS_RESNET18, result.details
    assert result.details["artifact_bytes"] > WEIGHTS_RESNET18 * 0.9  # the ONNX file holds the fp32 weights
    to_records(result)[0].validate()


def test_a_separate_process_on_cuda_reports_host_memory_and_says_so(tiny_spec, tmp_path):
    """The native runner measures its own process's host RSS; on CUDA that must not pass for GPU memory."""
    import dataclasses

    from perfkit.backends import Runner, get

    class OwnProcess(Runner):
        name = "ownproc"
        out_of_process = True

        def _load(self):
            pass

        def _infer(self, x):
            return x

        def own_memory(self, batch, runs):
            return {"peak_bytes": 123, "rss_delta_bytes": 123, "method": "host peak RSS delta in its process"}

    backend = dataclasses.replace(get("eager"), name="ownproc", runner=OwnProcess)
    result = measure_memory(tiny_spec, backend, 1, Context(device="cuda:0", artifacts=tmp_path))
    assert result.peak_bytes == 123 and result.where.device == "cuda"
    assert result.method.endswith("(host memory: the GPU memory of a separate process is not measured)")
    cpu = measure_memory(tiny_spec, backend, 1, Context(device="cpu", artifacts=tmp_path))
    assert "GPU memory" not in cpu.method


def test_the_memory_child_ignores_ctrl_c(monkeypatch):
    """Ctrl-C reaches the whole process group: the measuring child leaves it to the parent (which
    kills it) instead of dying with a long traceback of its own."""
    import os
    import signal
    import time

    from perfkit.profiler import memory as M

    sent = []

    class Conn:
        def send(self, message):
            sent.append(message)

        def close(self):
            pass

    def measure(*args):
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C in the terminal does to the child
        time.sleep(0.05)
        return {"peak_bytes": 1, "method": "test"}

    monkeypatch.setattr(M, "_measure_here", measure)
    before = signal.getsignal(signal.SIGINT)
    try:
        M._child(Conn(), dict(os.environ), list(__import__("sys").path))
    finally:
        signal.signal(signal.SIGINT, before)
    assert sent == [("ok", {"peak_bytes": 1, "method": "test"})]


@pytest.mark.parametrize("fails", [False, True])
def test_an_orphaned_memory_child_exits_quietly_when_its_parent_is_gone(monkeypatch, capfd, fails):
    """The parent was killed: sending the result (or the error) meets a broken pipe, which is no reason
    for the tracebacks it printed."""
    import multiprocessing as mp
    import os
    import signal
    import sys

    from perfkit.profiler import memory as M

    def measure(*args):
        if fails:
            raise RuntimeError("the runtime failed")
        return {"peak_bytes": 1, "method": "test"}

    monkeypatch.setattr(M, "_measure_here", measure)
    receiver, sender = mp.Pipe(duplex=False)
    receiver.close()  # the parent's end: gone
    before = signal.getsignal(signal.SIGINT)
    try:
        M._child(sender, dict(os.environ), list(sys.path))  # returns: nothing raised
    finally:
        signal.signal(signal.SIGINT, before)
    assert sender.closed and capfd.readouterr().err == ""
