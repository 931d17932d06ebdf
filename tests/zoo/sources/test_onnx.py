"""An ONNX file as the model (``perfkit <command> model.onnx``): it resolves from its graph (names, layout,
batch, classes), is identified by its content, goes through export, check, validate, profile, summary
and the HTML report in the runtimes that start from ONNX (PyTorch runtimes are listed as not run), a fixed
batch restricts every sweep with a note, and every way the file can be wrong is one line naming it,
exit 2, nothing stored."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil

import pytest
import torch

from perfkit.cli import main
from perfkit.errors import UsageError
from perfkit.store import Store
from perfkit.zoo.sources import resolve

TIMING = ["--iterations", "3", "--min-seconds", "0.01", "--warmup", "1", "--warmup-seconds", "0.01"]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_fixed_batch_file_from_the_legacy_exporter(onnx_files):
    spec = resolve(str(onnx_files.fixed))
    assert (spec.source, spec.form, spec.reference_runtime, spec.weights.kind) == ("onnx", "onnx", "onnx", "graph")
    assert (spec.input_size, spec.num_classes, spec.fixed_batch) == ((3, 32, 32), 3, 2)
    assert spec.content == f"sha256:{_sha256(onnx_files.fixed)}"
    assert spec.name == f"fixed.onnx@{spec.identity[:8]}" and spec.label == "fixed.onnx (3 classes)"
    pre = spec.preprocess
    assert (pre.crop_size, pre.resize_size, pre.interpolation, pre.mean) == (32, 36, "bilinear", (0.485, 0.456, 0.406))
    assert "resize = crop / 0.875" in pre.source and not pre.overrides
    with pytest.raises(UsageError, match=r"^fixed.onnx@\w+: an ONNX file has no PyTorch module: PyTorch runtimes "
                                         r"cannot run it$"):
        spec.build()
    assert pickle.loads(pickle.dumps(spec)) == spec  # specs cross into measuring processes


def test_a_dynamic_batch_file_is_identified_by_its_content_and_external_data(onnx_files, tmp_path):
    spec = resolve(str(onnx_files.dynamic))
    assert (spec.input_size, spec.num_classes, spec.fixed_batch) == ((3, 32, 32), 3, None)
    copy = tmp_path / "dynamic.onnx"
    shutil.copy(onnx_files.dynamic, copy)
    shutil.copy(onnx_files.dynamic.with_name("dynamic.onnx.data"), tmp_path)
    assert resolve(str(copy)).identity == spec.identity  # the content, wherever the file lies
    data = tmp_path / "dynamic.onnx.data"
    weights = bytearray(data.read_bytes())
    weights[0] ^= 1  # other weights in the external data: another model
    data.write_bytes(bytes(weights))
    assert resolve(str(copy)).identity != spec.identity
    data.unlink()
    with pytest.raises(UsageError, match=r"dynamic.onnx: (its weights are in 'dynamic.onnx.data', which is not beside "
                                         r"it|not a valid ONNX model)"):
        resolve(str(copy))


def test_preprocessing_flags_are_recorded_and_the_graph_fixes_the_input(onnx_files):
    spec = resolve(str(onnx_files.fixed), resize=40, crop=32, interpolation="bicubic", mean=(0.5, 0.5, 0.5),
                   std=(0.25, 0.25, 0.25))
    pre = spec.preprocess
    assert (pre.resize_size, pre.crop_size, pre.interpolation, pre.mean, pre.std) == (40, 32, "bicubic",
                                                                                      (0.5,) * 3, (0.25,) * 3)
    assert set(pre.overrides) == {"resize_size", "crop_size", "interpolation", "mean", "std"}
    with pytest.raises(UsageError, match=r"fixed.onnx takes 3×32×32 inputs \(fixed in the graph\), not 3×40×40"):
        resolve(str(onnx_files.fixed), crop=40)
    with pytest.raises(UsageError, match=r"the graph's output has 3 classes, not --num-classes 5"):
        resolve(str(onnx_files.fixed), num_classes=5)
    with pytest.raises(UsageError, match=r"an ONNX file carries its own weights; drop --weights random"):
        resolve(str(onnx_files.fixed), weights="random")


def test_a_graph_with_open_height_and_width_takes_them_from_input_size(onnx_files, tmp_path):
    from perfkit.analysis import count_macs, measure_complexity

    model = onnx_files.model
    path = tmp_path / "any-size.onnx"
    onnx_files.export_legacy(model, path, batch=1, dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "scores": {0: "n"}})
    with pytest.raises(UsageError, match=r"any-size.onnx: the graph leaves the input's height or width open "
                                         r"\(3×\?×\?\): pass --input-size C,H,W"):
        resolve(str(path))
    spec = resolve(str(path), input_size=48)
    assert (spec.input_size, spec.fixed_batch, spec.preprocess.crop_size) == ((3, 48, 48), None, 48)
    # counted at the size given, as the module would be
    assert measure_complexity(spec).macs == count_macs(model, torch.zeros(1, 3, 48, 48))[0]


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _photos(tmp_path):
    from perfkit.data.synthetic import make_class_folders

    make_class_folders(tmp_path / "photos", ["cat", "dog", "espresso"], 3)
    labels = tmp_path / "labels.txt"
    labels.write_text("espresso\ncat\ndog\n")  # not the sorted folder names: the model's output order
    return tmp_path / "photos", labels


@pytest.mark.parametrize("which", ["fixed", "dynamic"])
def test_export_and_check_in_the_runtimes_that_start_from_onnx(onnx_files, which, capsys):
    path = getattr(onnx_files, which)
    spec = resolve(str(path))
    graph = {"fixed": ("image", "scores"), "dynamic": ("pixel_values", "logits")}[which]
    assert main(["export", str(path), "-f", "onnx,openvino,torchscript", "--json"]) == 0
    out = capsys.readouterr()
    assert (f"note: torchscript not run for {spec.name}: an ONNX file has no PyTorch module: PyTorch runtimes "
            "cannot run it") in out.err
    exports = {r["runtime"]: r for r in json.loads(out.out)["records"] if r["kind"] == "export"}
    assert set(exports) == {"onnx", "openvino"}
    for record in exports.values():
        manifest = json.loads((_folder(record) / "manifest.json").read_text())
        assert (manifest["inputs"][0]["name"], manifest["outputs"][0]["name"]) == graph
        assert record["metrics"]["batch_range"] == ({"min": 2, "opt": 2, "max": 2} if which == "fixed" else
                                                    {"min": 1, "opt": 8, "max": 256})
    copied = _folder(exports["onnx"])
    assert _sha256(copied / "model.onnx") == _sha256(path)  # the user's file itself
    if which == "dynamic":
        assert _sha256(copied / "dynamic.onnx.data") == _sha256(path.with_name("dynamic.onnx.data"))

    assert main(["check", str(path), "-f", "eager,onnx,openvino", "-b", "1,4", "--samples", "5", "--json"]) == 0
    out = capsys.readouterr()
    parity = [r for r in json.loads(out.out)["records"] if r["kind"] == "parity"]
    # onnx fp32 on the CPU is the reference itself; eager cannot run the file
    assert {r["runtime"] for r in parity} == {"openvino"} and all(r["metrics"]["passed"] for r in parity)
    assert sorted(r["batch"] for r in parity) == ([2] if which == "fixed" else [1, 4])
    assert (f"note: onnx fp32 on the CPU ({path.name} itself) is the reference: it is not compared with "
            "itself") in out.err
    if which == "fixed":
        assert f"note: {spec.name} takes batch 2 only (fixed in its graph): batch 1,4 left out, batch 2 measured " \
               "instead" in out.err


def _folder(record):
    from pathlib import Path

    return Path(record["metrics"]["artifact_path"]).parent


@pytest.mark.parametrize("which", ["fixed", "dynamic"])
def test_validate_profile_summary_and_the_report(onnx_files, which, tmp_path, capsys):
    path = getattr(onnx_files, which)
    spec = resolve(str(path))
    photos, labels = _photos(tmp_path)
    assert main(["validate", str(path), "--data", str(photos), "--labels", str(labels), "-f", "onnx,openvino",
                 "-b", "4", "--workers", "0", "--json"]) == 0
    accuracy = {r["runtime"]: r["metrics"] for r in _json(capsys)["records"] if r["kind"] == "accuracy"}
    assert set(accuracy) == {"onnx", "openvino"} and {m["images"] for m in accuracy.values()} == {9}
    assert accuracy["onnx"]["top1_correct"] == accuracy["openvino"]["top1_correct"]

    assert main(["profile", str(path), "-f", "onnx,openvino", "-b", "1,4", "--no-memory", *TIMING, "--json"]) == 0
    profile = _json(capsys)
    latency = [r for r in profile["records"] if r["kind"] == "latency"]
    assert {r["runtime"] for r in latency} == {"onnx", "openvino"}
    assert sorted({r["batch"] for r in latency}) == ([2] if which == "fixed" else [1, 4])
    assert all(r["status"] == "ok" and r["model"] == spec.name for r in latency)

    assert main(["summary", str(path), "--json"]) == 0
    (complexity,) = [r for r in _json(capsys)["records"] if r["kind"] == "complexity"]
    m = complexity["metrics"]
    # both exporters fold batch norm into the convolution: conv 8·27 + 8, linear 8·3 + 3
    assert (complexity["runtime"], m["params"], m["macs"]) == ("onnx", 8 * 27 + 8 + 8 * 3 + 3, 8 * 27 * 32 * 32 + 8 * 3)
    assert "initializers" in m["params_convention"] and [row["layer"] for row in m["layers"]][0] == "Conv-1"
    assert {r["metrics"]["flops_per_sample"] for r in latency} == {2 * m["macs"]}  # the roofline counts the graph

    report = tmp_path / "report.html"
    assert main(["report", profile["run_id"], "--html", str(report)]) == 0
    assert spec.name in report.read_text()


@pytest.fixture(scope="module")
def net224(tmp_path_factory):
    """A 224×224 ONNX file (dynamo exporter, dynamic batch, input ``pixel_values``) and its images.

    The model is one 224×224 convolution: its logits weigh every pixel of the crop, so that a resize,
    crop or interpolation other than the one asked for changes the count (seed 31: 5 of 12 correct at
    bicubic 256/224; bilinear gives 6, bicubic 240/224 gives 7, the least margin between two logits is 0.04)."""
    from perfkit.data.synthetic import make_class_folders

    folder = tmp_path_factory.mktemp("net224")
    torch.manual_seed(31)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 224), torch.nn.Flatten()).eval()
    torch.onnx.export(model, (torch.randn(2, 3, 224, 224),), str(folder / "model.onnx"), dynamo=True,
                      input_names=["pixel_values"], output_names=["logits"], verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    make_class_folders(folder / "photos", ["cat", "dog", "espresso"], 4)
    (folder / "labels.txt").write_text("espresso\ncat\ndog\n")
    return folder


def _independent_top1(folder, interpolation: str = "BICUBIC") -> int:
    """Top-1 count from ONNX Runtime run directly, torchvision's ImageFolder and the same transform."""
    import onnxruntime
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode[interpolation]), transforms.CenterCrop(224),
        transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    images = datasets.ImageFolder(str(folder / "photos"), transform=transform)
    order = (folder / "labels.txt").read_text().split()
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    correct = 0
    for x, target in images:
        logits = session.run(None, {"pixel_values": x[None].numpy()})[0]
        correct += int(logits.argmax()) == order.index(images.classes[target])
    return correct


def test_validate_gives_the_independent_top1_in_every_runtime(net224, capsys):
    """The issue's done-when: the same top-1 count in every runtime as ONNX Runtime run by hand."""
    assert main(["validate", str(net224 / "model.onnx"), "--data", str(net224 / "photos"), "--labels",
                 str(net224 / "labels.txt"), "--resize", "256", "--crop", "224", "--interpolation", "bicubic",
                 "-f", "onnx,openvino", "--workers", "0", "--json"]) == 0
    accuracy = {r["runtime"]: r["metrics"] for r in _json(capsys)["records"] if r["kind"] == "accuracy"}
    expected = _independent_top1(net224)
    assert expected != _independent_top1(net224, "BILINEAR"), "the images no longer tell the interpolations apart"
    assert set(accuracy) == {"onnx", "openvino"}
    assert {m["top1_correct"] for m in accuracy.values()} == {expected}
    assert {m["images"] for m in accuracy.values()} == {12}


def _two_inputs(g):
    from onnx import TensorProto, helper

    return g("two.onnx", [("a", TensorProto.FLOAT, [1, 3, 8, 8]), ("b", TensorProto.FLOAT, [1, 3, 8, 8])],
             [("y", TensorProto.FLOAT, [1, 3])],
             [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("ReduceMean", ["s"], ["y"], axes=[2, 3],
                                                                           keepdims=0)])


def _int_input(g):
    from onnx import TensorProto, helper

    return g("int.onnx", [("x", TensorProto.INT64, [1, 3, 8, 8])], [("y", TensorProto.FLOAT, [1, 3])],
             [helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
              helper.make_node("ReduceMean", ["f"], ["y"], axes=[2, 3], keepdims=0)])


def _three_d_output(g):
    from onnx import TensorProto, helper

    return g("3d.onnx", [("x", TensorProto.FLOAT, [1, 3, 8, 8])], [("y", TensorProto.FLOAT, [1, 3, 8])],
             [helper.make_node("ReduceMean", ["x"], ["y"], axes=[3], keepdims=0)])


def _channels_last(g):
    from onnx import TensorProto, helper

    return g("nhwc.onnx", [("x", TensorProto.FLOAT, [1, 8, 8, 3])], [("y", TensorProto.FLOAT, [1, 3])],
             [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1, 2], keepdims=0)])


def _invalid(g):
    from onnx import TensorProto, helper

    return g("invalid.onnx", [("x", TensorProto.FLOAT, [1, 3, 8, 8])], [("y", TensorProto.FLOAT, [1, 3])],
             [helper.make_node("ReduceMean", ["nowhere"], ["y"], axes=[2, 3], keepdims=0)])


def _truncated(g, onnx_files, tmp_path):
    data = onnx_files.fixed.read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    return tmp_path / "truncated.onnx"


BAD = [
    ("missing", lambda g, f, t: f.fixed.with_name("missing.onnx"), r"missing.onnx: no such ONNX file$"),
    ("truncated", _truncated, r"truncated.onnx: not a valid ONNX model \(\w+: "),
    ("invalid", lambda g, f, t: _invalid(g), r"invalid.onnx: not a valid ONNX model \(ValidationError: .*nowhere"),
    ("two inputs", lambda g, f, t: _two_inputs(g),
     r"two.onnx: perfkit needs one float32 image input \(N, C, H, W\) and one logits output \(N, classes\); the graph "
     r"has 2 input\(s\) and 1 output\(s\): input 'a' float \(1, 3, 8, 8\); input 'b' float"),
    ("int input", lambda g, f, t: _int_input(g), r"int.onnx: .*; its input is 'x' int64 \(1, 3, 8, 8\): perfkit feeds "
                                              r"float32 images$"),
    ("3-D output", lambda g, f, t: _three_d_output(g), r"3d.onnx: .*; its output is 'y' float \(1, 3, 8\), not \(N, "
                                                    r"classes\)"),
    ("channels last", lambda g, f, t: _channels_last(g), r"nhwc.onnx: .*\(1, 8, 8, 3\): channels last"),
]


@pytest.mark.parametrize("make, expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
@pytest.mark.parametrize("command", ["export", "check", "validate", "profile", "summary"])
def test_bad_files_are_one_line_exit_2_and_nothing_stored(onnx_graph, onnx_files, tmp_path, capsys, command,
                                                           make, expected):
    path = make(onnx_graph, onnx_files, tmp_path)
    extra = ["--data", str(_photos(tmp_path)[0])] if command == "validate" else []
    assert main([command, str(path), *extra]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and re.search(expected, line), line
    with Store() as store:
        assert store.runs() == []
