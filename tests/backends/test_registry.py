"""The backend registry: lookup, duplicate and contradicting declarations, precision/device checks,
and that one new Backend object is all a new runtime needs."""

from __future__ import annotations

import pytest
import torch

from perfkit import backends as B
from perfkit.backends import EXPORT, RUN, Backend, Option, Runner, get, names, open_runner, parse_backends, register
from perfkit.backends.eager import EagerRunner
from perfkit.context import Context
from perfkit.errors import UsageError
from perfkit.vocab import Precision

BUILTIN = ["eager", "torchscript", "onnx", "aoti", "tensorrt", "native", "openvino"]


@pytest.fixture
def registered():
    """Register backends for one test; they are removed afterwards whatever happens."""
    added = []

    def add(backend):
        added.append(backend.name)
        return register(backend)

    yield add
    for name in added:
        B.unregister(name)


class Doubled(EagerRunner):
    """A runtime of the test's own: eager logits times two."""

    name = "doubled"

    def _infer(self, x):
        return 2 * super()._infer(x)


def test_builtin_backends_in_order():
    assert names() == BUILTIN
    assert B.reference() is get("eager")
    assert [b.name for b in B.all_backends() if b.exports] == ["torchscript", "onnx", "aoti", "tensorrt", "openvino"]


def test_unknown_name_is_a_usage_error_listing_the_known_ones():
    with pytest.raises(UsageError, match="unknown runtime 'tensorflow'; choose from: " + ", ".join(BUILTIN)):
        get("tensorflow")


def test_lookup_ignores_case_and_space_and_passes_backends_through():
    onnx = get("onnx")
    assert get(" ONNX ") is onnx and get(onnx) is onnx


def test_parse_backends():
    assert [b.name for b in parse_backends("onnx, aoti,onnx,")] == ["onnx", "aoti"]
    assert [b.name for b in parse_backends(["eager", "native"])] == ["eager", "native"]
    with pytest.raises(UsageError, match="give at least one runtime"):
        parse_backends(" , ")
    with pytest.raises(UsageError, match="unknown runtime 'onx'"):
        parse_backends("eager,onx")
    with pytest.raises(UsageError, match="eager, native has no artifact to export; choose from: "
                                         "torchscript, onnx, aoti, tensorrt, openvino"):
        parse_backends("eager,onnx,native", exported_only=True)


def test_register_refuses_a_duplicate_name(registered):
    with pytest.raises(ValueError, match="a backend named 'onnx' is already registered"):
        register(Backend(name="onnx", summary="a second onnx", runner=EagerRunner))
    assert get("onnx").runner.__name__ == "OnnxRuntimeRunner"  # the original stays
    registered(Backend(name="doubled", summary="x2", runner=Doubled))
    with pytest.raises(ValueError, match="already registered"):
        register(Backend(name="doubled", summary="again", runner=Doubled))


@pytest.mark.parametrize("name", ["Onnx", "doubled ", ""])
def test_register_refuses_a_name_get_could_not_find(name):
    """get() looks names up in lower case: "Onnx" would be a second onnx that nothing can reach."""
    with pytest.raises(ValueError, match="lower case"):
        register(Backend(name=name, summary="", runner=Doubled))
    assert names() == BUILTIN


@pytest.mark.parametrize("option", [
    Option("opset", 17, "another default"),  # onnx and tensorrt: default None
    Option("opset", None, "another type", type=str),  # theirs: int
    Option("opset", None, "another stage", stage=RUN, type=int),  # theirs: export
    Option("optimize", False, "another default", stage=RUN),  # torchscript and native: True
])
def test_register_refuses_an_option_that_contradicts_another_backends(option):
    with pytest.raises(ValueError, match=f"option '{option.name}' of backend clash contradicts backend"):
        register(Backend(name="clash", summary="", runner=Doubled, options=(option,)))
    with pytest.raises(UsageError):
        get("clash")  # nothing was registered


def test_register_accepts_an_option_that_agrees(registered):
    agreeing = Option("opset", None, "the same opset, its own help text", stage=EXPORT, type=int)
    registered(Backend(name="doubled", summary="x2", runner=Doubled, options=(agreeing,)))
    shared = {o.name: declared for o, declared in B.options()}
    assert shared["opset"] == ["onnx", "tensorrt", "openvino", "doubled"]  # one CLI option, four backends


def test_register_takes_only_backends():
    with pytest.raises(TypeError, match="takes a Backend"):
        register(Doubled)


def test_option_stage_is_checked():
    with pytest.raises(ValueError, match="stage must be"):
        Option("x", 1, "", stage="compile")
    assert Option("inductor_freezing", True, "").flag == "--inductor-freezing"


def test_a_new_backend_is_one_object(registered, tiny_spec, tmp_path):
    registered(Backend(name="doubled", summary="eager x2", runner=Doubled, default_in_run=False))
    assert "doubled" in names() and get("doubled").unavailable("cpu") is None
    x = tiny_spec.example_input(2, seed=1)
    ctx = Context(artifacts=tmp_path)
    with open_runner(tiny_spec, "eager", ctx) as eager, open_runner(tiny_spec, "doubled", ctx) as doubled:
        assert isinstance(doubled, Doubled) and doubled.precision is Precision.FP32
        torch.testing.assert_close(doubled.infer(x), 2 * eager.infer(x))
    assert "doubled" not in [b.name for b in B.default_backends("cpu")]
    B.unregister("doubled")
    with pytest.raises(UsageError, match="unknown runtime 'doubled'"):
        get("doubled")


@pytest.mark.parametrize("backend, precision, device, message", [
    ("tensorrt", "fp32", "cpu", "tensorrt does not run on cpu; it runs on cuda"),
    ("native", "fp16", "cpu", "native on cpu supports fp32, not fp16"),
    ("native", "bf16", "cuda:0", "native on cuda supports fp32, not bf16"),
    ("onnx", "bf16", "cpu", "onnx on cpu supports fp32, fp16, int8, not bf16"),
    ("onnx", "int8", "cuda:0", "onnx on cuda supports fp32, fp16, not int8"),
    ("aoti", "int8", "cuda:0", "aoti on cuda supports fp32, fp16, bf16, not int8"),
    ("torchscript", "int8", "cpu", "torchscript on cpu supports fp32, fp16, bf16, not int8"),
    ("eager", "int8", "cpu", "eager on cpu supports fp32, fp16, bf16, not int8"),
    ("tensorrt", "bf16", "cuda:1", "tensorrt on cuda supports fp32, fp16, int8, not bf16"),
])
def test_check_refuses_an_unsupported_precision_or_device(backend, precision, device, message):
    with pytest.raises(UsageError, match=message):
        get(backend).check(precision, device)


def test_check_accepts_what_is_supported():
    assert get("native").check("fp32", "cpu") is Precision.FP32
    assert get("tensorrt").check("fp16", "cuda:0") is Precision.FP16
    assert get("aoti").check(Precision.BF16, "cpu") is Precision.BF16


def test_open_runner_checks_before_exporting(tiny_spec, tmp_path):
    with pytest.raises(UsageError, match="onnx on cpu supports fp32, fp16, int8, not bf16"):
        open_runner(tiny_spec, "onnx", Context(artifacts=tmp_path), precision="bf16")
    with pytest.raises(UsageError, match="eager on cpu supports"):
        open_runner(tiny_spec, "eager", Context(artifacts=tmp_path), precision="int8")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_options_for_fills_defaults_and_keeps_stages_apart():
    ts = get("torchscript")
    assert ts.options_for({}, EXPORT) == {"script": False}
    assert ts.options_for({}, RUN) == {"optimize": True}
    given = {"script": True, "optimize": False, "opset": 18}
    assert ts.options_for(given, EXPORT) == {"script": True} and ts.options_for(given, RUN) == {"optimize": False}
    assert get("onnx").options_for(given, EXPORT, "fp32") == {"opset": 18}
    # int8-only options (the QDQ style, the calibration set, the layers left float) exist at int8 only: they never
    # key an fp32 artifact
    assert get("onnx").options_for(given, EXPORT, "int8") == {"opset": 18, "qdq_style": "x86", "calibration": None,
                                                               "float_layers": ()}
    assert get("aoti").options_for({"inductor_freezing": None}, EXPORT) == {"inductor_freezing": True}


def test_base_runner_needs_its_hooks():
    with pytest.raises(TypeError):
        Runner(None)  # abstract: _load and _infer are the backend's


def test_each_runtime_runs_the_precisions_it_declares_and_the_automatic_plan_is_narrower():
    from perfkit.backends import at_precision

    assert [b.name for b in at_precision(["eager", "torchscript", "onnx", "aoti"], "int8", "cpu")] == ["onnx", "aoti"]
    assert [b.name for b in at_precision(["eager", "onnx", "aoti"], "int8", "cpu", automatic=True)] == ["onnx"]
    assert [b.name for b in at_precision(["eager", "onnx", "aoti"], "fp32", "cpu", automatic=True)] == [
        "eager", "onnx", "aoti"]
    assert [b.name for b in at_precision(["onnx", "aoti", "tensorrt"], "int8", "cuda:0")] == ["tensorrt"]


def test_runtimes_declare_the_forms_they_start_from(onnx_files, tiny_spec, tmp_path):
    from perfkit.zoo.sources import resolve

    spec = resolve(str(onnx_files.fixed))
    onnx_runtimes = {b.name for b in B.all_backends() if b.accepts(spec) is None}
    assert onnx_runtimes == {"onnx", "openvino", "tensorrt"}
    assert all(b.accepts(tiny_spec) is None for b in B.all_backends())
    assert get("aoti").accepts(spec) == "an ONNX file has no PyTorch module: PyTorch runtimes cannot run it"
    kept, skipped = B.runnable(spec, ["eager", "onnx", "native"])
    assert [b.name for b in kept] == ["onnx"] and set(skipped) == {"eager", "native"}
    with pytest.raises(UsageError, match=r"eager cannot run fixed.onnx@\w+: an ONNX file has no PyTorch module"):
        open_runner(spec, "eager", Context(artifacts=tmp_path))
    assert (B.reference_for(spec).name, B.reference_device(spec, "cuda:0")) == ("onnx", "cpu")
    assert (B.reference_for(tiny_spec).name, B.reference_device(tiny_spec, "cuda:0")) == ("eager", "cuda:0")
    assert B.reference_text(spec) == "onnx fp32 on the CPU (fixed.onnx itself)"


def test_a_fixed_batch_restricts_sweeps_with_a_note(onnx_files, tiny_spec):
    from perfkit.vocab import BatchRange
    from perfkit.zoo.sources import resolve

    spec = resolve(str(onnx_files.fixed))  # batch 2, fixed in the graph
    assert B.artifact_batch(spec, BatchRange()) == BatchRange(2, 2, 2)
    assert B.artifact_batch(tiny_spec, BatchRange(1, 4, 16)) == BatchRange(1, 4, 16)
    assert B.batches_for(spec, [1, 2, 4]) == ([2], f"{spec.name} takes batch 2 only (fixed in its graph): batch 1,4 "
                                                   "left out, batch 2 measured")
    assert B.batches_for(spec, [2]) == ([2], None)
    assert B.batches_for(tiny_spec, [4, 1]) == ([1, 4], None)


def _engine(spec, form: str, **fields):
    """``spec`` as an engine of ``form`` (what an engine source makes; no file is read)."""
    from dataclasses import replace

    return replace(spec, form=form, source=form, **fields)


@pytest.mark.parametrize("form, runs_in", [("openvino-ir", {"openvino"}), ("torchscript", {"torchscript", "native"}),
                                           ("aoti", {"aoti"}), ("tensorrt", {"tensorrt"})])
def test_an_engine_runs_in_its_own_runtime_only(tiny_spec, form, runs_in):
    spec = _engine(tiny_spec, form)
    assert {b.name for b in B.all_backends() if b.accepts(spec) is None} == runs_in
    assert get("onnx").accepts(spec).endswith("runs in its own runtime only")
    kept, skipped = B.runnable(spec, ["eager", "onnx"])  # none asked for runs it: its own runtime does
    assert [b.name for b in kept] == sorted(runs_in - {"native"}) and set(skipped) == {"eager", "onnx"}
    assert {b.name for b in B.runnable(spec, sorted(runs_in))[0]} == runs_in


def test_an_engines_reference_is_another_model_or_none(tiny_spec, onnx_files):
    from perfkit.accuracy.parity import is_reference_run
    from perfkit.zoo.sources import resolve

    alone = _engine(tiny_spec, "openvino-ir", reference_runtime="")
    assert B.reference_of(alone) is None and B.reference_for(alone) is None
    assert B.reference_text(alone) == "no reference (--reference not given)"
    onnx = resolve(str(onnx_files.fixed))
    judged = _engine(tiny_spec, "openvino-ir", reference_model=onnx, reference_runtime="onnx")
    assert B.reference_of(judged) == (onnx, get("onnx")) and B.reference_device(judged, "cuda:0") == "cpu"
    assert B.reference_text(judged) == f"onnx fp32 on the CPU ({onnx.name})"
    assert not is_reference_run(judged, get("openvino"), "fp32", "cpu")  # never compared with itself: it is not it
    eager = _engine(tiny_spec, "torchscript", reference_model=tiny_spec)
    assert B.reference_text(eager) == f"eager fp32 ({tiny_spec.name})"
    assert B.reference_device(eager, "cuda:0") == "cuda:0"  # eager runs on the command's device


def test_an_engines_batch_range_restricts_sweeps_with_a_note(tiny_spec):
    from perfkit.vocab import BatchRange

    spec = _engine(tiny_spec, "aoti", batch_limits=(2, 16))
    assert B.artifact_batch(spec, BatchRange(1, 8, 256)) == BatchRange(2, 8, 16)
    assert B.batches_for(spec, [1, 4, 32]) == ([4], f"{spec.name} takes batches 2..16 only (fixed when it was built): "
                                                    "batch 1,32 left out, batch 4 measured")
    assert B.batches_for(spec, [1]) == ([2], f"{spec.name} takes batches 2..16 only (fixed when it was built): batch 1 "
                                             "left out, batch 2 measured instead")
