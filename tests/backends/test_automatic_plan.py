"""``perfkit run``'s automatic plan follows the hardware: each runtime at the reduced precisions its
``run_precisions`` names, measured only where the CPU (or GPU) accelerates them, and the run says what
it left out and why."""

from __future__ import annotations

import pytest

from perfkit import env
from perfkit.api import keywords as K
from perfkit.backends import get
from perfkit.vocab import Precision

AMX = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]
AVX2 = ["avx2", "fma", "f16c"]
ARM = ["asimd", "asimdhp", "asimddp", "i8mm", "bf16"]
RUNTIMES = ["eager", "torchscript", "onnx", "aoti", "openvino"]


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(flags)``: this process's CPU features are ``flags`` (None: unreadable)."""
    def use(flags):
        monkeypatch.setattr(env, "cpu_flags", lambda path="/proc/cpuinfo": flags)
    return use


def _planned(device="cpu") -> set[tuple[str, str]]:
    return {(name, p.value) for name in RUNTIMES for p in Precision if get(name).runs(p, device, automatic=True)}


def test_accelerated_precisions_come_from_the_cpu_features():
    assert env.accelerated("cpu", AMX) == {"int8": "amx_int8", "bf16": "amx_bf16"}
    assert env.accelerated("cpu", AVX2) == {"int8": "avx2"}
    assert env.accelerated("cpu", ARM) == {"int8": "i8mm", "bf16": "bf16", "fp16": "asimdhp"}
    assert env.accelerated("cpu", []) == {}
    assert env.accelerated("cuda:0", []) == {"fp16": "CUDA tensor cores", "int8": "CUDA tensor cores"}


def test_an_amx_xeon_gets_bf16_and_openvino_int8(cpu):
    """The issue's machine: the default run's winner was 2.7× slower than OpenVINO int8, left out."""
    cpu(AMX)
    fp32 = {(n, "fp32") for n in RUNTIMES}
    assert _planned() == fp32 | {("eager", "bf16"), ("openvino", "bf16"), ("onnx", "int8"), ("openvino", "int8")}
    assert K.precisions("auto", [get(n) for n in RUNTIMES], "cpu", lenient=True) == [
        Precision.FP32, Precision.BF16, Precision.INT8]


def test_an_avx2_cpu_gets_int8_but_no_bf16_and_says_why(cpu):
    cpu(AVX2)
    assert ("openvino", "int8") in _planned() and not any(p == "bf16" for _, p in _planned())
    why = get("openvino").left_out("bf16", "cpu")
    assert why.startswith("this CPU does not accelerate bf16") and "avx512_bf16" in why
    notes = K.automatic_plan_notes([get(n) for n in RUNTIMES], "cpu")
    assert notes[0] == ("precision auto: this CPU accelerates int8 (avx2); measured beyond fp32: onnx int8, "
                        "openvino int8")
    assert any(line.startswith("left out: eager bf16, openvino bf16 — this CPU does not accelerate bf16")
               for line in notes)


def test_unreadable_cpu_features_assume_nothing(cpu):
    cpu(None)  # macOS, Windows: no /proc/cpuinfo
    assert _planned() == {(n, "fp32") for n in RUNTIMES}


def test_explicit_precisions_ignore_the_hardware(cpu):
    """Asked for by name, a runtime runs every precision it supports, accelerated or not."""
    cpu([])
    assert get("openvino").runs("bf16", "cpu") and get("aoti").runs("int8", "cpu")
    assert K.precisions("bf16,int8", [get("openvino")], "cpu") == [Precision.BF16, Precision.INT8]


def test_the_reference_at_a_reduced_precision_is_parity_checked_in_run(cpu):
    """eager bf16 is a candidate like any other: checked against eager fp32 (eager fp32 is not checked
    against itself)."""
    from perfkit.pipeline import RunConfig, _parity_keys
    from perfkit.zoo.sources import resolve

    cpu(AMX)
    cfg = RunConfig(models=["lenet5"], weights="random", precisions=[Precision.FP32, Precision.BF16], automatic=True)
    spec = resolve("lenet5", weights="random")
    backends = cfg.backends()
    keys = _parity_keys(cfg, cfg.plan(spec, backends), spec, backends)
    checked = {(k[2], k[3]) for k in keys}
    assert ("eager", "bf16") in checked and ("eager", "fp32") not in checked and ("openvino", "bf16") in checked
