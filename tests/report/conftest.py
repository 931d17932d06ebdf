"""Fixture runs for the report tests.

These records are TEST INPUTS, not measurements, and never appear in a report of a real run. They
are written the way a real run writes them: each measurement is a typed result (the result types
of perfkit.analysis, perfkit.accuracy, perfkit.profiler and perfkit.train, or a Failure) turned into
records by perfkit.record, inside ``recording`` (so the run's status agrees with its records), with
one model record per model made from the real resolved spec (published numbers come from there, as
in a real run; resolving loads no weights). Only the accuracy and export records, whose result types
need a dataset or an artifact on disk, are written as plain Records; the store validates them
against the strict per-kind schema like any other.
"""

from __future__ import annotations

import pytest

from perfkit.accuracy.parity import ParityCheck, ParityResult
from perfkit.profiler.contention import Contention
from perfkit.analysis import MACS_CONVENTION, ComplexityReport, Complexity, LayerRow, Summary
from perfkit.profiler.scenarios.singlestream import LatencyResult
from perfkit.profiler.memory import MemoryResult
from perfkit.profiler.scenarios.offline import OfflineConfig, OfflineResult, OfflineTrial
from perfkit.profiler.timing import LatencyStats, RunnerTiming
from perfkit.record import recording, to_records
from perfkit.results import Failure, Kind, Where
from perfkit.store import Record, Store
from perfkit.train.loop import EpochResult
from perfkit.zoo.sources import resolve

# model -> (weights, params, MACs, fixture top-1, fixture top-5, fixture eager p50 ms at batch 1)
FIXTURE_MODELS = {
    "resnet18": ("default", 11_689_512, 1_814_073_856, 69.70, 89.10, 20.0),
    "alexnet": ("default", 61_100_840, 714_197_696, 56.50, 79.00, 8.0),
    "googlenet": ("random", 6_624_904, 1_504_879_680, 0.10, 0.50, 15.0),
}
RUNTIME_SPEED = {"eager": 1.0, "onnx": 0.7}  # fixture latency factor per runtime
INT8_SPEED, INT8_TOP1_DROP = 0.5, 0.5  # with int8: onnx int8 is half onnx fp32's latency, 0.5 pp less top-1
BATCHES = (1, 8)
INPUT = (3, 224, 224)


def fixture_spec(model: str):
    return resolve(model, weights=FIXTURE_MODELS[model][0])


QUIET = Contention(1.0, 2, 2.0, 0.04, 0.3)  # other processes used 1 % of the CPU: a quiet machine
BUSY = Contention(47.0, 2, 2.0, 1.88, 0.0)  # ... 47 %: one busy loop beside the runtime


def latency_result(where: Where, median_ms: float, calibration: str | None = None,
                   contention: Contention | None = QUIET) -> LatencyResult:
    """A timing of 101 calls spread evenly from 0.8 to 1.2 × ``median_ms`` (its median; p99 just under 1.2 ×):
    enough calls for every percentile to be shown."""
    stats = LatencyStats.from_samples([median_ms * (0.8 + 0.4 * i / 100) for i in range(101)], where.batch,
                                      warmup_iterations=1)
    return LatencyResult(where, RunnerTiming(stats, timer="perf_counter", contention=contention), threads=2,
                         runtime_config={"intra_op_threads": 2}, self_timed=False, calibration=calibration)


OFFLINE_GAIN = {"eager": 1.0, "onnx": 1.6}  # fixture Offline samples/s over SingleStream at the largest batch


def offline_result(where: Where, samples_per_s: float, requests: int = 2, config: dict | None = None,
                   contention: Contention | None = QUIET) -> OfflineResult:
    """An Offline search that tried K = 1 and ``requests`` and found ``samples_per_s`` at ``requests``."""
    def trial(k: int, rate: float) -> OfflineTrial:
        return OfflineTrial(k, 2 // k or 1, round(rate * 2.0), 2.0, 3.9, f"fixture: {k} request(s)",
                            {**(config or {"intra_op_threads": 2 // k or 1}), "requests": k}, contention=contention)

    best = trial(requests, samples_per_s)
    first = trial(1, samples_per_s / 1.3) if requests != 1 else best
    return OfflineResult(where, best, (first, best) if requests != 1 else (best,), OfflineConfig(),
                         contention=contention)


def _complexity(spec, params: int, macs: int) -> ComplexityReport:
    layers = [LayerRow("Conv2d-1", "conv1", [-1, 64, 112, 112], 64 * 112 * 112, 9408),
              LayerRow("Linear-2", "fc", [-1, 1000], 1000, 513_000)]
    return ComplexityReport(
        Where.of(spec, "eager", "fp32", 1, "cpu"),
        Complexity(spec.name, INPUT, params, params, 0, macs, 2 * macs, macs_convention=MACS_CONVENTION),
        Summary(INPUT, layers, params, params, 0, input_mib=0.57, forward_backward_mib=60.0, params_mib=params * 4 / 2**20,
                total_mib=123.4))


def _parity(where: Where, failed: bool) -> ParityCheck:
    return ParityCheck(where, ParityResult(
        samples=8, max_abs_diff=0.5 if failed else 2e-6, mean_abs_diff=1e-7, max_rel_diff=0.05 if failed else 1e-7,
        cosine_min=0.999999, top1_agreement=0.75 if failed else 1.0, top5_overlap=1.0, nonfinite=0,
        within_tolerance=not failed, passed=not failed, atol=1e-4, rtol=1e-3, min_top1_agreement=1.0, max_rel=1e-3,
        flipped_ids=[1, 5] if failed else [], failures=["top-1 agreement 75% < 100%"] if failed else []), "synthetic")


def _int8_parity(where: Where, calibration: str) -> ParityCheck:
    return ParityCheck(where, ParityResult(
        samples=8, max_abs_diff=0.3, mean_abs_diff=0.05, max_rel_diff=0.1, cosine_min=0.995, top1_agreement=0.875,
        top5_overlap=0.9, nonfinite=0, within_tolerance=True, passed=True, atol=float("inf"), rtol=float("inf"),
        min_top1_agreement=0.0, max_rel=0.6, min_cosine=0.85, flipped_ids=[3]), "synthetic", calibration)


def _accuracy(spec, where: Where, top1: float, top5: float, eager_top1: float, **extra) -> Record:
    """What the harness records for one runtime (no published numbers for random weights)."""
    ref = {} if spec.random_weights else spec.reference
    return Record(kind=Kind.ACCURACY, model=where.model, runtime=where.runtime, precision=where.precision,
                  batch=where.batch, weights=where.weights, device=where.device, metrics={
                      "images": 1000, "dataset_images": 1000, "top1_correct": round(top1 * 10),
                      "top5_correct": round(top5 * 10), "top1_pct": top1, "top5_pct": top5,
                      "ref_top1_pct": ref.get("acc1_pct"), "ref_top5_pct": ref.get("acc5_pct"),
                      "delta_top1_vs_eager_pp": top1 - eager_top1,
                      "delta_top1_vs_ref_pp": top1 - ref["acc1_pct"] if ref else None,
                      "complete": True, "crops": 1, "random_weights": spec.random_weights, "runner": where.runtime,
                      "relative_top1": top1 / eager_top1 if eager_top1 else None, **extra})


def _export(where: Where, params: int) -> Record:
    return Record(kind=Kind.EXPORT, model=where.model, runtime=where.runtime, precision=where.precision,
                  batch=where.batch, weights=where.weights, device=where.device, metrics={
                      "export_seconds": 1.5, "artifact_bytes": params * 4, "cached": False, "seconds": 1.5,
                      "sha256": "0" * 64, "artifact_path": f"/artifacts/{where.model}/{where.runtime}/model",
                      "warnings": [], "batch_range": {"min": 1, "opt": 8, "max": 256}})


def _put(rec, record: Record) -> None:
    """Write a plain record as the recorder writes its results (with the run's environment)."""
    record.env = rec.env
    rec.store.add(record, rec.run_id)
    rec.records.append(record)


def _make_run(store: Store, *, accuracy: bool = True, train: bool = False, latency_factor: float = 1.0,
              top1_shift: float = 0.0, parity_fail: bool = False, error: bool = True, int8: str | None = None,
              models: tuple[str, ...] = tuple(FIXTURE_MODELS), command: str = "perfkit run (fixture)",
              offline: bool = False, offline_factor: float = 1.0, offline_requests: int = 2,
              busy: tuple[str, str] | None = None) -> str:
    """Write one fixture run and return its id.

    latency_factor scales every latency (and divides throughput); top1_shift is added to the onnx
    top-1; parity_fail makes alexnet/onnx fail parity at batch 8 (it passes at batch 1); error adds a
    failed tensorrt export (recorded without weights, as some failures are); int8 (a calibration
    description) adds an onnx int8 candidate per model, calibrated so: ``INT8_SPEED`` × onnx fp32's
    latency, ``INT8_TOP1_DROP`` pp below its top-1. offline adds an Offline result per runtime at the
    largest batch (onnx gains 1.6× over SingleStream, eager nothing), scaled by offline_factor, won by
    offline_requests requests in flight. busy = (model, runtime): that candidate's timings (SingleStream
    and Offline) were taken while other processes used 47 % of the CPU (``BUSY``); the rest on a quiet
    machine (1 %).
    """
    with recording(store, command=command) as rec:
        for model in models:
            _, params, macs, top1, top5, p50 = FIXTURE_MODELS[model]
            spec = fixture_spec(model)
            rec.model(spec)
            rec.add(_complexity(spec, params, macs))
            for runtime, speed in RUNTIME_SPEED.items():
                where = Where.of(spec, runtime, "fp32", device="cpu")
                machine = BUSY if busy == (model, runtime) else QUIET
                if runtime != "eager":
                    _put(rec, _export(where.replace(batch=256), params))  # kind export: the artifact's max batch
                    for batch in BATCHES:  # the parity checker writes one record per batch
                        failed = parity_fail and model == "alexnet" and batch == BATCHES[-1]
                        rec.add(_parity(where.replace(batch=batch), failed))
                if accuracy:
                    t1 = max(0.0, top1 + (top1_shift if runtime == "onnx" else 0.0))
                    _put(rec, _accuracy(spec, where.replace(batch=64), t1, top5, top1))
                for batch in BATCHES:
                    ms = p50 * speed * latency_factor * (1 + 0.5 * (batch - 1))
                    rec.add(latency_result(where.replace(batch=batch), ms, contention=machine))
                if offline:
                    big = BATCHES[-1]
                    single = big / (p50 * speed * latency_factor * (1 + 0.5 * (big - 1)) / 1000)
                    rec.add(offline_result(where.replace(batch=big), single * OFFLINE_GAIN[runtime] * offline_factor,
                                           offline_requests, contention=machine))
                for batch in BATCHES:
                    rec.add(MemoryResult(where.replace(batch=batch), params * 4 + batch * 10_000_000, "rss"))
            if int8:
                _add_int8(rec, spec, (top1 + top1_shift, top5), p50 * RUNTIME_SPEED["onnx"] * latency_factor, accuracy,
                          int8)
        if error:
            rec.add(Failure.of(Kind.EXPORT, Where(models[0], "tensorrt", "fp16", device="cpu"),
                               RuntimeError("TensorRT is not installed [tensorrt extra]")))
        if train:
            for model in models[:2]:
                spec = resolve(model, weights="random")
                where = Where.of(spec, "eager", "fp32", 32, "cpu")
                for epoch in range(3):
                    rec.add(EpochResult(where, {
                        "epoch": epoch, "epochs": 3, "train_loss": 2.0 - 0.3 * epoch, "train_acc": 0.3 + 0.1 * epoch,
                        "val_loss": 2.1 - 0.3 * epoch, "val_acc": 0.25 + 0.1 * epoch + (0.05 if model == "alexnet" else 0),
                        "epoch_seconds": 10.0 + epoch, "images_per_s": 500.0, "dataset": "cifar10",
                        **({"best_val_acc": 0.45 + (0.05 if model == "alexnet" else 0), "best_epoch": 2,
                            "total_seconds": 34.0} if epoch == 2 else {}),
                    }))
    return rec.run_id


def _add_int8(rec, spec, onnx_top: tuple[float, float], onnx_p50: float, accuracy: bool, calibration: str) -> None:
    where = Where.of(spec, "onnx", "int8", device="cpu")
    eager_top1 = FIXTURE_MODELS[spec.name][3]
    for batch in BATCHES:
        rec.add(_int8_parity(where.replace(batch=batch), calibration))
    if accuracy:
        t1 = max(0.0, onnx_top[0] - INT8_TOP1_DROP)
        _put(rec, _accuracy(spec, where.replace(batch=64), t1, onnx_top[1], eager_top1, calibration=calibration,
                            flips_vs_eager=5))
    for batch in BATCHES:
        rec.add(latency_result(where.replace(batch=batch), onnx_p50 * INT8_SPEED * (1 + 0.5 * (batch - 1)), calibration))


@pytest.fixture
def make_run():
    """``make_run(store, **options) -> run_id``: write one fixture run (see ``_make_run``)."""
    return _make_run


# Two fake machines: what perfkit.env.fingerprint reports on each (the rest of the fingerprint is this host's).
MACHINES = {
    "epyc": {"hostname": "ci-epyc", "cpu_model": "AMD EPYC 7B13 64-Core Processor", "cpu_count": 2,
             "cpu_flags": ["avx2", "fma", "f16c"]},
    "xeon": {"hostname": "lab-xeon", "cpu_model": "Intel(R) Xeon(R) Platinum 8480+", "cpu_count": 8,
             "cpu_flags": ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]},
}


def machine_env(name: str, *, identity: bool = True) -> dict:
    """The fingerprint a run on fake machine ``name`` records; ``identity=False``: as perfkit recorded it
    before fingerprints carried a hardware identity (no ``hardware`` field)."""
    from perfkit.env import fingerprint, hardware

    env = {k: v for k, v in fingerprint("cpu").items() if k != "hardware"}
    env.update(MACHINES[name])
    return {**env, "hardware": hardware(env)} if identity else env


@pytest.fixture(name="machine_env")
def _machine_env():
    """``machine_env(name, identity=True)``: the fingerprint of fake machine ``name`` (see ``machine_env``)."""
    return machine_env


@pytest.fixture
def on_machine(monkeypatch):
    """``on_machine(name, identity=True)``: from now on, runs record the fingerprint of fake machine ``name``
    (``machine_env``), as if they ran there."""
    def use(name: str, identity: bool = True) -> None:
        env = machine_env(name, identity=identity)
        monkeypatch.setattr("perfkit.record.environment", lambda device="cpu": env)

    return use


def _crashed(records: list[Record], model: str, runtime: str, batch: int, message: str) -> list[Record]:
    """``records`` with the latency of ``model`` × ``runtime`` at ``batch`` replaced by an error record
    saying ``message`` (what a run in which that timing crashed holds)."""
    out = []
    for r in records:
        if (r.kind, r.model, r.runtime, r.batch) == (Kind.LATENCY, model, runtime, batch):
            [r] = to_records(Failure.of(Kind.LATENCY, Where(r.model, r.runtime, r.precision, r.batch, r.weights,
                                                            r.device), RuntimeError(message)))
        out.append(r)
    return out


@pytest.fixture
def crashed():
    """``crashed(records, model, runtime, batch, message) -> records``: one latency turned into an error."""
    return _crashed
