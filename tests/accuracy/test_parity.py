"""Parity metrics, inputs for `perfkit check`, and the command's exit code."""

from __future__ import annotations

import json
import math

import pytest
import torch

from perfkit.accuracy import parity as P
from perfkit.cli import main
from perfkit.errors import DatasetError, UsageError
from perfkit.store import Store


def _logits(n=8, classes=10, seed=0):
    return torch.randn(n, classes, generator=torch.Generator().manual_seed(seed))


def test_identical_logits_pass_with_perfect_scores():
    ref = _logits()
    r = P.compare(ref, ref.clone(), P.tolerance("fp32"))
    assert r.passed and r.within_tolerance and not r.failures
    assert (r.samples, r.max_abs_diff, r.mean_abs_diff, r.max_rel_diff, r.nonfinite) == (8, 0.0, 0.0, 0.0, 0)
    assert r.top1_agreement == 1.0 and r.top5_overlap == 1.0
    assert r.cosine_min == pytest.approx(1.0)


def test_differences_are_measured_exactly():
    ref = torch.tensor([[1.0, 2.0, 4.0], [0.5, -1.0, 0.0]], dtype=torch.float64)
    cand = ref.clone()
    cand[0, 2] += 0.01  # largest element of sample 0
    cand[1, 0] -= 0.002
    r = P.compare(ref, cand, P.Tolerance(atol=1e-3, rtol=0.0))
    assert r.max_abs_diff == pytest.approx(0.01)
    assert r.mean_abs_diff == pytest.approx(0.012 / 6)
    assert r.max_rel_diff == pytest.approx(max(0.01 / 4.0, 0.002 / 1.0))  # relative to each sample's max |logit|
    assert not r.passed and not r.within_tolerance
    assert "atol 0.001" in r.failures[0]
    assert P.compare(ref, cand, P.Tolerance(atol=0.02, rtol=0.0)).passed
    # rtol scales with the reference: 0.01 ≤ 0 + 0.003·4 passes, 0.002 ≤ 0.003·0.5 does not
    assert not P.compare(ref, cand, P.Tolerance(atol=0.0, rtol=0.003)).passed
    assert P.compare(ref, cand, P.Tolerance(atol=0.0, rtol=0.005)).passed


def test_top1_flip_and_top5_overlap():
    ref = torch.arange(10.0).repeat(4, 1)  # top-1 is class 9, top-5 is 5..9
    cand = ref.clone()
    cand[2, 0] = 100.0  # sample 2: class 0 becomes top-1, class 5 drops out of the top 5
    r = P.compare(ref, cand, P.Tolerance(atol=1000.0, rtol=0.0))
    assert r.top1_agreement == 0.75 and r.flipped_ids == [2]
    assert r.top5_overlap == pytest.approx((5 + 5 + 4 + 5) / 20)
    assert r.within_tolerance and not r.passed  # within atol, but fp32 demands 100% agreement
    assert "top-1 agreement 75.00%" in r.failures[0]


def test_tiny_logits_are_judged_relative_to_their_scale():
    """Random-weight networks can have logits ~1e-9: atol alone would pass anything there."""
    ref = _logits() * 1e-9
    wrong = ref + 5e-10 * _logits(seed=1)  # half the logit scale: a broken runtime
    r = P.compare(ref, wrong, P.tolerance("fp32"))
    assert r.within_tolerance and r.max_abs_diff < 1e-8  # far below atol ...
    assert not r.passed and any("max_rel" in f for f in r.failures)  # ... but caught by scale
    assert P.compare(ref, ref * (1 + 1e-6), P.tolerance("fp32")).passed


def test_input_independent_reference_is_flagged():
    ref = _logits(1).repeat(6, 1)  # every input gives the same logits
    assert P.compare(ref, ref.clone(), P.tolerance("fp32")).constant_reference
    assert not P.compare(_logits(6), _logits(6), P.tolerance("fp32")).constant_reference


def test_nan_and_inf_fail_and_are_counted():
    ref = _logits()
    cand = ref.clone()
    cand[0, 0] = float("nan")
    cand[3, 1] = float("inf")
    r = P.compare(ref, cand, P.Tolerance(atol=10.0, rtol=0.0))
    assert r.nonfinite == 2 and not r.passed
    assert r.failures[0] == "this runtime gives 2 NaN/Inf logits where the reference's are finite"
    # Distances over NaN/Inf logits mean nothing: NaN, never the finite entries' 0.
    assert math.isnan(r.max_abs_diff) and math.isnan(r.mean_abs_diff)


def test_a_reference_with_nan_logits_is_blamed_not_the_runtime():
    ref = _logits()
    ref[2] = float("nan")  # broken weights: eager itself gives NaN
    for cand in (ref.clone(), _logits(seed=1)):  # the runtime agrees with it, or not: either way nothing to judge
        r = P.compare(ref, cand, P.tolerance("fp32"))
        assert not r.passed and r.failures == [
            "the reference (fp32) itself gives 10 NaN/Inf logits of 80: the model or its weights are broken, not this "
            "runtime's export"]


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
def test_nan_weights_fail_parity_naming_the_weights_not_the_export(tmp_path, runtime):
    """LeNet-5 with a state dict of NaNs given as its weights file: every runtime faithfully gives NaN,
    and the check says the model is broken instead of blaming the export (TorchScript's own reload
    check refused the export, ONNX parity blamed the runtime's "NaN/Inf logits")."""
    from perfkit.context import Context
    from perfkit.zoo.sources import resolve

    weights = tmp_path / "nan.pt"
    torch.save({k: torch.full_like(v, float("nan")) for k, v in resolve("lenet5", weights="random").build().state_dict().items()},
               weights)
    spec = resolve("lenet5", weights=str(weights))
    results = list(P.check_parity(spec, [runtime], Context(artifacts=tmp_path / "art"),
                                  inputs=P.inputs_for(spec, 4), batches=[2]))
    [check] = [r for r in results if isinstance(r, P.ParityCheck)]
    assert check.where.runtime == runtime and check.result.nonfinite == 40 and not check.result.passed
    assert check.result.failures == ["the reference (fp32) itself gives 40 NaN/Inf logits of 40: the model or its "
                                     "weights are broken, not this runtime's export"]


def test_nan_logits_record_as_a_failed_check_not_a_crash():
    """A runtime that returns NaN gives a valid parity record: passed False, the distances missing."""
    from perfkit.record import to_records
    from perfkit.results import Where

    ref = _logits()
    cand = ref.clone()
    cand[0, 0] = float("nan")
    r = P.compare(ref, cand, P.tolerance("fp32"))
    (record,) = to_records(P.ParityCheck(Where("m", "onnx", "fp32", 8), r, "synthetic"))
    record.validate()
    m = record.metrics
    assert record.status == "ok" and m["passed"] is False and m["nonfinite"] == 1
    assert m["max_abs_diff"] is None and m["mean_abs_diff"] is None
    assert m["failures"][0] == "this runtime gives 1 NaN/Inf logits where the reference's are finite"
    json.dumps(record.to_dict(), allow_nan=False)  # strict JSON: no NaN in --json output


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        P.compare(_logits(4), _logits(5), P.tolerance("fp32"))


def test_tolerances_per_precision_and_overrides():
    fp32, fp16 = P.tolerance("fp32"), P.tolerance("fp16")
    assert fp32.atol == 1e-3 and fp32.min_top1_agreement == 1.0
    assert fp16.atol > fp32.atol and fp16.rtol > fp32.rtol
    assert P.tolerance("bf16").atol > fp16.atol
    assert P.tolerance("fp32", atol=0.5).atol == 0.5 and P.tolerance("fp32", atol=0.5).rtol == fp32.rtol
    assert fp32.max_rel == 1e-3 and P.tolerance("fp32", max_rel=0.1).max_rel == 0.1
    with pytest.raises(UsageError):
        P.tolerance("fp32", atol=-1)
    # int8 has no elementwise bound; it is judged by direction and scale of the error (see below)
    int8 = P.tolerance("int8")
    assert int8.atol == float("inf") and int8.min_top1_agreement == 0.0 and int8.min_cosine == 0.85
    assert int8.max_rel == 0.6 and P.tolerance("int8", max_rel=0.3).max_rel == 0.3


def _int8_like(ref: torch.Tensor, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return ref + noise * ref.abs().amax(1, keepdim=True) * torch.randn(ref.shape, generator=g)


def test_int8_passes_on_direction_and_scale_not_on_agreement():
    """Random-weight logits on synthetic inputs are near-ties: quantisation noise flips many top-1s
    (resnet18 int8 vs fp32, measured: 66% agreement, min cosine 0.993) and that is not a failure."""
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(32, 1000, generator=g) * 0.2 + torch.randn(1, 1000, generator=g)  # shared offset: near-ties
    noisy = _int8_like(ref, 0.05)
    r = P.compare(ref, noisy, P.tolerance("int8"))
    assert r.passed and r.top1_agreement < 0.9 and r.cosine_min > 0.9 and r.atol is not None
    metrics = r.metrics()
    assert metrics["atol"] is None and metrics["rtol"] is None and metrics["min_cosine"] == 0.85  # no infinities stored


def test_int8_fails_a_broken_quantisation():
    """What a broken int8 artifact looks like (measured on resnet18: calibrated on a tenth of the input
    scale, min cosine 0.73 and max |Δ| 0.76 of the logit scale): clipped, scrambled logits."""
    g = torch.Generator().manual_seed(4)
    ref = torch.randn(16, 1000, generator=g)
    clipped = P.compare(ref, ref.clamp(-0.2, 0.2), P.tolerance("int8"))
    assert not clipped.passed and any("max |Δ|" in f for f in clipped.failures)
    scrambled = P.compare(ref, _int8_like(ref, 0.6, seed=5), P.tolerance("int8"))
    assert not scrambled.passed and any("min cosine with eager" in f for f in scrambled.failures)
    nan = ref.clone()
    nan[0, 0] = float("nan")
    assert "this runtime gives 1 NaN/Inf logits where the reference's are finite" in \
        P.compare(ref, nan, P.tolerance("int8")).failures


def test_logits_feeds_inputs_in_batches(tiny_spec):
    seen = []

    class Recorder:
        def infer_all(self, x):  # what a runner is fed (a fixed-batch runner pads inside it)
            seen.append(x.shape[0])
            return x.flatten(1)[:, :10]

    x = P.synthetic_inputs(tiny_spec, 10, seed=1)
    out = P.logits(Recorder(), x, 4)
    assert seen == [4, 4, 2] and torch.equal(out, x.flatten(1)[:, :10])


def test_synthetic_inputs_are_seeded(tiny_spec):
    a = P.synthetic_inputs(tiny_spec, 3, seed=1)
    assert a.shape == (3, 3, 32, 32)
    assert torch.equal(a, P.synthetic_inputs(tiny_spec, 3, seed=1))
    assert not torch.equal(a, P.synthetic_inputs(tiny_spec, 3, seed=2))


def _images(root, n, size=(40, 36)):
    from PIL import Image

    for i in range(n):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, color=(i * 20, 100, 200 - i * 10)).save(folder / f"img{i}.jpg")


def test_image_inputs_go_through_the_model_preprocessing(tiny_spec, tmp_path):
    _images(tmp_path, 5)
    x = P.image_inputs(tiny_spec, tmp_path, 4)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    from PIL import Image

    first = P.image_files(tmp_path)[0]
    with Image.open(first) as img:
        assert torch.equal(x[0], tiny_spec.preprocess(img.convert("RGB")))


def test_unreadable_image_is_named(tiny_spec, tmp_path):
    _images(tmp_path, 2)
    bad = tmp_path / "class0" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg"):
        P.image_inputs(tiny_spec, tmp_path, 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        P.image_files(tmp_path / "empty")


# -- perfkit check --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_artifacts(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "shared-artifacts"


def _check(capsys, shared_artifacts, *extra):
    """Exit code and the parity records of ``perfkit check --json`` (provenance columns + metrics)."""
    code = main(["check", "lenet5", "--weights", "random", "--device", "cpu", "--artifacts", str(shared_artifacts),
                 "--json", *extra])
    out = json.loads(capsys.readouterr().out)
    return code, [{**r, **r["metrics"]} for r in out["records"] if r["kind"] == "parity"]


def test_check_passes_and_records_parity(capsys, tmp_path):
    # its own artifact cache: check records the exports it made, not cache hits, and the shared cache
    # may already hold these artifacts (whatever test ran first)
    code, rows = _check(capsys, tmp_path / "artifacts", "-f", "torchscript,onnx", "--samples", "12", "--batch", "1,5")
    assert code == 0
    assert [(r["runtime"], r["batch"]) for r in rows] == [("torchscript", 1), ("torchscript", 5), ("onnx", 1), ("onnx", 5)]
    assert all(r["status"] == "ok" and r["passed"] and r["samples"] == 12 and r["top1_agreement"] == 1.0 for r in rows)
    assert all((r["model"], r["precision"], r["device"]) == ("lenet5", "fp32", "cpu") for r in rows)
    with Store() as store:
        parity = store.records(kind="parity")
        exports = store.records(kind="export")
    assert len(parity) == 4 and {r.runtime for r in exports} == {"torchscript", "onnx"}
    assert all(r.metrics["inputs"] == "synthetic" and r.metrics["atol"] == 1e-3 for r in parity)


def test_check_fails_with_exit_code_1_on_an_absurd_tolerance(capsys, shared_artifacts):
    code, rows = _check(capsys, shared_artifacts, "-f", "onnx", "--samples", "4", "--atol", "1e-12", "--rtol", "0")
    assert code == 1
    assert len(rows) == 2 and not any(r["passed"] for r in rows) and all(r["status"] == "ok" for r in rows)
    assert all(r["max_abs_diff"] > 1e-12 for r in rows)
    with Store() as store:
        assert [r.metrics["passed"] for r in store.records(kind="parity")] == [False, False]


def test_check_on_images(capsys, shared_artifacts, tmp_path):
    _images(tmp_path / "data", 6)
    code, rows = _check(capsys, shared_artifacts, "-f", "torchscript", "--data", str(tmp_path / "data"),
                        "--samples", "32", "--batch", "1,4")
    assert code == 0 and all(r["samples"] == 6 for r in rows)  # every image there is, no more
    with Store() as store:
        assert {r.metrics["inputs"] for r in store.records(kind="parity")} == {"data"}


def test_check_refuses_a_tampered_artifact_naming_the_file(capsys, shared_artifacts, tmp_path):
    import shutil

    from perfkit.backends import prepare
    from perfkit.context import Context
    from perfkit.zoo.sources import resolve

    own = tmp_path / "own"
    src = prepare(resolve("lenet5", weights="random"), "onnx", Context(artifacts=shared_artifacts))
    shutil.copytree(shared_artifacts, own)
    victim = own / src.path.relative_to(shared_artifacts)
    victim.write_bytes(victim.read_bytes().replace(b"logits", b"logitz"))
    code, rows = _check(capsys, own, "-f", "onnx", "--samples", "2")
    assert code == 1
    assert [r["batch"] for r in rows] == [1, 8]  # every batch of the runtime fails
    assert all(r["status"] == "error" and str(victim) in r["error"] and "modified" in r["error"] for r in rows)
    with Store() as store:
        failed = store.records(kind="parity")
        assert store.records(kind="export") == []  # nothing was exported or measured from the tampered file
        assert store.get_run("latest")["status"] == "failed"
    assert [r.status for r in failed] == ["error", "error"] and all(str(victim) in r.error for r in failed)


def test_check_batch_outside_the_range_is_a_usage_error(capsys):
    assert main(["check", "lenet5", "--weights", "random", "--batch", "1,300"]) == 2
    assert "artifact range 1..256" in capsys.readouterr().err


def test_nan_logits_show_as_nan_in_the_parity_and_run_tables():
    """The record stores the distances as missing; every table says NaN (not "—", not 0)."""
    from rich.console import Console

    from perfkit.record import to_records
    from perfkit.report.rows import parity_by_candidate
    from perfkit.report.tables import parity_table
    from perfkit.results import Where

    ref = _logits()
    cand = ref.clone()
    cand[0, 0] = float("nan")
    records = []
    for batch in (1, 8):  # two batches: the run summary takes the worst over them
        records += to_records(P.ParityCheck(Where("m", "onnx", "fp32", batch), P.compare(ref, cand, P.tolerance("fp32")),
                                            "synthetic"))
    records += to_records(P.ParityCheck(Where("m", "aoti", "fp32", 8), P.compare(ref, ref.clone(), P.tolerance("fp32")),
                                        "synthetic"))
    console = Console(width=200, record=True)
    console.print(parity_table(records, "parity"))
    rows = [line for line in console.export_text().splitlines() if "onnx" in line]
    assert len(rows) == 2 and all(line.count(" NaN │") == 3 for line in rows)  # max |Δ|, mean |Δ|, max rel
    (onnx,) = [v for k, v in parity_by_candidate(records).items() if "onnx" in k]
    assert math.isnan(onnx["parity_max_abs_diff"]) and onnx["parity_passed"] is False


def test_an_onnx_files_reference_is_onnx_runtime_on_the_cpu_running_it(onnx_files, tmp_path):
    """No PyTorch module: eager is left out, onnx fp32 on the CPU is the reference (not compared with
    itself), every other runtime and onnx int8 are held to its logits."""
    from perfkit.accuracy.parity import ParityCheck
    from perfkit.context import Context
    from perfkit.data.calibration import CalibrationSet
    from perfkit.zoo.sources import resolve

    spec = resolve(str(onnx_files.dynamic))
    ctx = Context(artifacts=tmp_path, options={"calibration": CalibrationSet.synthetic(16, "minmax")})
    inputs = P.synthetic_inputs(spec, 6)
    reference = P.reference_logits(spec, inputs, [4], ctx)[4]
    with torch.no_grad():
        assert torch.allclose(reference, onnx_files.model(inputs), atol=1e-5)
    fp32 = [r for r in P.check_parity(spec, ["eager", "onnx", "openvino"], ctx, inputs=(inputs, "synthetic"),
                                      batches=[4]) if isinstance(r, ParityCheck)]
    assert [(r.where.runtime, r.result.passed) for r in fp32] == [("openvino", True)]
    int8 = [r for r in P.check_parity(spec, ["onnx"], ctx, inputs=(inputs, "synthetic"), batches=[4],
                                      precision="int8") if isinstance(r, ParityCheck)]
    assert [(r.where.runtime, r.where.precision) for r in int8] == [("onnx", "int8")] and int8[0].result.passed


def test_bf16_gates_the_direction_and_scale_of_the_error_not_near_tie_flips():
    """Correct bf16 flips near-ties (vgg16 in perfkit run's default: one of 8) and moves small logits by up to
    15 % of the largest; what it keeps is each sample's direction. A wrong one loses that."""
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(8, 10, generator=g)
    ref[0, :2] = torch.tensor([3.0, 2.999])  # a near-tie
    close = ref + 0.05 * torch.randn(8, 10, generator=g)
    close[0, :2] = torch.tensor([2.998, 3.0])  # the tie flips
    result = P.compare(ref, close, P.tolerance("bf16"))
    assert result.passed and result.top1_agreement == 7 / 8
    wrong = torch.randn(8, 10, generator=g)  # another direction altogether
    assert not P.compare(ref, wrong, P.tolerance("bf16")).passed
    scaled = ref * 1.6  # the right direction, the wrong scale: max |Δ| = 0.6 × the largest logit
    assert not P.compare(ref, scaled, P.tolerance("bf16")).passed
