"""Engines someone already built as the model (``perfkit <command> model.xml|.pt|.pt2|.engine``): each
resolves from what its file records, runs in its own runtime only (its file is the artifact), is judged
against the model ``--reference`` names (check passes; a doctored engine fails parity with exit 1), is
validated on an ImageFolder and profiled, and every way its file or flags can be wrong is one line, exit
2, nothing stored. The engines are a 3-class LeNet-5 exported by perfkit itself; a TensorRT engine is read
on the fake TensorRT of tests/backends (its header, I/O, profiles, manifest and refusals), and checked for
real only where a GPU and TensorRT are (marker tensorrt). The AOTInductor tests share one compile (slow)."""

from __future__ import annotations

import json
import pickle
import re
import shutil
import struct
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from perfkit.backends.tensorrt import current_gpu as CURRENT_GPU
from perfkit.cli import main
from perfkit.errors import UsageError
from perfkit.store import Store
from perfkit.zoo.sources import resolve

TIMING = ["--iterations", "3", "--min-seconds", "0.01", "--warmup", "1", "--warmup-seconds", "0.01"]
LENET = dict(weights="random", num_classes=3)  # the model every engine here was exported from
REFERENCE_FLAGS = ["--weights", "random", "--num-classes", "3"]


def _export(spec, backend: str, root: Path, device: str = "cpu") -> Path:
    from perfkit.artifacts import ensure_artifact
    from perfkit.backends import get
    from perfkit.context import Context

    return ensure_artifact(spec, get(backend), Context(device=device, artifacts=root)).path


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """The 3-class LeNet-5 exported by perfkit, its files taken out of the artifact cache: ``ir`` (``lenet.xml``
    and ``lenet.bin``), ``ts`` (traced TorchScript), ``onnx`` (the reference, with its external data), and
    ``scripted`` (a scripted TorchScript of the same module: it records no input size)."""
    spec = resolve("lenet5", **LENET)
    root, folder = tmp_path_factory.mktemp("engine-artifacts"), tmp_path_factory.mktemp("engines")
    onnx = _export(spec, "onnx", root)
    for path in onnx.parent.glob("model.onnx*"):
        shutil.copy(path, folder / path.name)
    xml = _export(spec, "openvino", root)
    shutil.copy(xml, folder / "lenet.xml")
    shutil.copy(xml.with_suffix(".bin"), folder / "lenet.bin")
    shutil.copy(_export(spec, "torchscript", root), folder / "lenet.pt")
    torch.jit.save(torch.jit.script(spec.build()), str(folder / "scripted.pt"))
    return SimpleNamespace(spec=spec, folder=folder, ir=folder / "lenet.xml", ts=folder / "lenet.pt",
                           onnx=folder / "model.onnx", scripted=folder / "scripted.pt")


@pytest.fixture(scope="module")
def aoti(engines, tmp_path_factory):
    """The same LeNet-5 as an AOTInductor package (one compile, 10-40 s, shared by the AOTI tests)."""
    path = engines.folder / "lenet.pt2"
    shutil.copy(_export(engines.spec, "aoti", tmp_path_factory.mktemp("aoti-artifacts")), path)
    return path


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _photos(tmp_path) -> Path:
    from perfkit.data.synthetic import make_class_folders

    make_class_folders(tmp_path / "photos", ["cat", "dog", "espresso"], 3)
    return tmp_path / "photos"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- what each format records ---------------------------------------------------------------------


def test_an_ir_resolves_from_its_graph_and_is_identified_by_both_files(engines, tmp_path):
    spec = resolve(str(engines.ir))
    assert (spec.source, spec.form, spec.engine, spec.weights.kind) == ("openvino-ir", "openvino-ir", True, "engine")
    assert (spec.input_size, spec.num_classes, spec.fixed_batch, spec.batch_limits) == ((3, 32, 32), 3, None, None)
    assert spec.name == f"lenet.xml@{spec.identity[:8]}" and spec.label == "lenet.xml (OpenVINO IR, 3 classes)"
    assert spec.reference_model is None and spec.reference_runtime == ""
    with pytest.raises(UsageError, match=r"^lenet.xml@\w+: an OpenVINO IR has no PyTorch module: it runs in its own "
                                         r"runtime only$"):
        spec.build()
    assert pickle.loads(pickle.dumps(spec)) == spec
    copy = tmp_path / "other.xml"
    shutil.copy(engines.ir, copy)
    shutil.copy(engines.ir.with_suffix(".bin"), copy.with_suffix(".bin"))
    assert resolve(str(copy)).identity == spec.identity  # the content, wherever the files lie
    weights = bytearray(copy.with_suffix(".bin").read_bytes())
    weights[-1] ^= 1
    copy.with_suffix(".bin").write_bytes(bytes(weights))
    assert resolve(str(copy)).identity != spec.identity  # other weights: another engine


def test_torchscript_records_the_traced_input_and_a_scripted_module_needs_input_size(engines):
    traced = resolve(str(engines.ts))
    assert (traced.form, traced.input_size, traced.num_classes) == ("torchscript", (3, 32, 32), 3)
    with pytest.raises(UsageError, match=r"scripted.pt: a scripted TorchScript module does not record its input size "
                                         r"\(\?×\?×\?\): pass --input-size C,H,W"):
        resolve(str(engines.scripted))
    assert resolve(str(engines.scripted), input_size=(3, 32, 32)).num_classes == 3
    # the reference says what the file does not
    judged = resolve(str(engines.scripted), reference=str(engines.onnx))
    assert judged.input_size == (3, 32, 32) and judged.reference_model.form == "onnx"


def test_a_reference_gives_its_preprocessing_and_must_fit_the_engine(engines):
    spec = resolve(str(engines.ir), reference=str(engines.onnx), resize=40, interpolation="bicubic")
    ref = spec.reference_model
    assert (ref.source, ref.reference_runtime, spec.reference_runtime) == ("onnx", "onnx", "onnx")
    assert spec.preprocess == ref.preprocess and spec.preprocess.resize_size == 40
    assert spec.identity == resolve(str(engines.ir)).identity  # the reference judges the engine, it is not part of it
    eager = resolve(str(engines.ir), reference="lenet5", **LENET)  # a zoo name, with the model flags
    assert (eager.reference_model.name, eager.reference_model.reference_runtime) == (engines.spec.name, "eager")
    with pytest.raises(UsageError, match=r"lenet.xml outputs 3 classes, its reference lenet5 10: pass --num-classes 3"):
        resolve(str(engines.ir), reference="lenet5", weights="random")
    with pytest.raises(UsageError, match=r"^--reference .*lenet.pt is a TorchScript file: the reference is an ONNX "
                                         r"file or a PyTorch model"):
        resolve(str(engines.ir), reference=str(engines.ts))


def test_a_code_reference_is_imported_like_model_code(engines, tmp_path):
    code = tmp_path / "net.py"
    code.write_text("from perfkit.zoo.sources import resolve\n\n\ndef build():\n"
                    "    return resolve('lenet5', weights='random', num_classes=3).build()\n")
    spec = resolve(str(engines.ts), reference=f"{code}:build")
    assert (spec.reference_model.source, spec.reference_model.input_size) == ("code", (3, 32, 32))


# -- the commands -----------------------------------------------------------------------------------


def test_export_copies_the_file_itself_and_says_there_is_nothing_to_export(engines, capsys):
    spec = resolve(str(engines.ir))
    assert main(["export", str(engines.ir), "-f", "onnx,openvino", "--json"]) == 0
    out = capsys.readouterr()
    assert "nothing to export" in out.err and f"note: onnx not run for {spec.name}: an OpenVINO IR runs in its own " \
                                              "runtime only" in out.err
    [record] = [r for r in json.loads(out.out)["records"] if r["kind"] == "export"]
    folder = Path(record["metrics"]["artifact_path"]).parent
    assert record["runtime"] == "openvino"
    assert _sha256(folder / "model.xml") == _sha256(engines.ir)
    assert _sha256(folder / "model.bin") == _sha256(engines.ir.with_suffix(".bin"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["engine"]["format"] == "openvino-ir" and manifest["engine"]["content"] == spec.content
    assert manifest["openvino"]["ir_version"] == 11 and manifest["openvino"]["written_by"]
    assert (manifest["inputs"][0]["name"], manifest["precision"]) == ("input", "fp32")


@pytest.mark.parametrize("which, runtimes", [("ir", ["openvino"]), ("ts", ["torchscript"])])
def test_check_against_the_reference_passes(engines, which, runtimes, capsys):
    path = getattr(engines, which)
    assert main(["check", str(path), "--reference", str(engines.onnx), "-b", "1,4", "--samples", "5"]) == 0
    out = capsys.readouterr().out
    assert "vs onnx fp32 on the CPU (model.onnx@" in out
    assert main(["check", str(path), "--reference", "lenet5", *REFERENCE_FLAGS, "-b", "1,4", "--samples", "5",
                 "--json"]) == 0
    parity = [r for r in _json(capsys)["records"] if r["kind"] == "parity"]
    assert {r["runtime"] for r in parity} == set(runtimes) and all(r["metrics"]["passed"] for r in parity)
    with Store() as store:
        models = [r for r in store.records() if r.kind == "model"]
    assert models[-1].metrics["reference_model"]["name"] == engines.spec.name  # the model record says against what


def _doctored_ir(engines, tmp_path) -> Path:
    """The IR with the convolution weights in its .bin scaled by 1.5 (the XML untouched)."""
    xml, weights = tmp_path / "doctored.xml", bytearray(engines.ir.with_suffix(".bin").read_bytes())
    shutil.copy(engines.ir, xml)
    consts = [layer.find("data") for layer in ET.parse(xml).getroot().iter("layer") if layer.get("type") == "Const"]
    const = next(d for d in consts if d.get("element_type") == "f32" and len(d.get("shape").split(",")) == 4)
    start, size = int(const.get("offset")), int(const.get("size"))
    values = np.frombuffer(bytes(weights[start:start + size]), dtype=np.float32) * 1.5
    weights[start:start + size] = values.astype(np.float32).tobytes()
    xml.with_suffix(".bin").write_bytes(bytes(weights))
    return xml


def _other_torchscript(engines, tmp_path) -> Path:
    """A TorchScript file of the same architecture with other weights."""
    model = resolve("lenet5", weights="random", num_classes=3).build()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.0)
    path = tmp_path / "other.pt"
    torch.jit.save(torch.jit.trace(model, torch.randn(2, 3, 32, 32)), str(path))
    return path


@pytest.mark.parametrize("doctor", [_doctored_ir, _other_torchscript], ids=["ir-weights-edited", "other-model"])
def test_a_doctored_engine_fails_parity_with_exit_1(engines, doctor, tmp_path, capsys):
    path = doctor(engines, tmp_path)
    assert main(["check", str(path), "--reference", str(engines.onnx), "-b", "1", "--samples", "5", "--json"]) == 1
    parity = [r for r in _json(capsys)["records"] if r["kind"] == "parity"]
    assert parity and not any(r["metrics"]["passed"] for r in parity)


@pytest.mark.parametrize("which, runtime", [("ir", "openvino"), ("ts", "torchscript")])
def test_validate_with_and_without_a_reference_and_profile(engines, which, runtime, tmp_path, capsys):
    path, photos = getattr(engines, which), _photos(tmp_path)
    assert main(["validate", str(path), "--data", str(photos), "-b", "4", "--workers", "0", "--json"]) == 0
    alone = {r["runtime"]: r["metrics"] for r in _json(capsys)["records"] if r["kind"] == "accuracy"}
    assert set(alone) == {runtime} and alone[runtime]["images"] == 9  # -f eager cannot run it: its own runtime does
    assert main(["validate", str(path), "--reference", str(engines.onnx), "--data", str(photos), "-b", "4",
                 "--workers", "0", "--json"]) == 0
    judged = {r["runtime"]: r["metrics"] for r in _json(capsys)["records"] if r["kind"] == "accuracy"}
    assert set(judged) == {"onnx", runtime}
    assert judged[runtime]["top1_correct"] == judged["onnx"]["top1_correct"] == alone[runtime]["top1_correct"]
    assert judged[runtime]["reference"] == "onnx fp32" and judged[runtime]["flips_vs_eager"] == 0

    assert main(["profile", str(path), "-f", runtime, "-b", "1,4", "--no-memory", *TIMING, "--json"]) == 0
    latency = [r for r in _json(capsys)["records"] if r["kind"] == "latency"]
    assert sorted(r["batch"] for r in latency) == [1, 4] and all(r["status"] == "ok" for r in latency)
    assert {r["metrics"]["flops_per_sample"] for r in latency} == {2 * _macs(engines.spec)}  # the format's graph


def _macs(spec) -> int:
    from perfkit.analysis import measure_complexity

    return measure_complexity(spec).macs


def test_summary_counts_what_the_format_has(engines, capsys):
    for path in (engines.ir, engines.ts):
        assert main(["summary", str(path), "--json"]) == 0
        [complexity] = [r for r in _json(capsys)["records"] if r["kind"] == "complexity"]
        assert complexity["metrics"]["macs"] == _macs(engines.spec) and complexity["metrics"]["layers"]


def test_run_measures_an_engine_against_its_reference(engines, tmp_path, capsys):
    assert main(["run", str(engines.ir), "--reference", str(engines.onnx), "-f", "openvino", "-b", "1",
                 "--parity-samples", "2", "--no-memory", "--scenario", "singlestream", "--data",
                 str(_photos(tmp_path)), "--json", "--html", str(tmp_path / "r.html")]) == 0
    kinds = {(r["kind"], r["runtime"]) for r in _json(capsys)["records"]}
    assert kinds >= {("complexity", "openvino"), ("export", "openvino"), ("parity", "openvino"),
                     ("accuracy", "onnx"), ("accuracy", "openvino"), ("latency", "openvino")}
    assert not {k for k in kinds if k[1] in ("eager", "torchscript")}


# -- AOTInductor (one compile, shared) ---------------------------------------------------------------


@pytest.mark.slow
def test_an_aoti_package_records_its_input_and_passes_check(engines, aoti, tmp_path, capsys):
    spec = resolve(str(aoti))
    assert (spec.form, spec.input_size, spec.num_classes) == ("aoti", (3, 32, 32), 3)
    with pytest.raises(UsageError, match=r"lenet.pt2 takes 3×32×32 inputs \(recorded in the file\), not 3×28×28"):
        resolve(str(aoti), input_size=(3, 28, 28))
    assert main(["check", str(aoti), "--reference", str(engines.onnx), "-b", "1,4", "--samples", "5", "--json"]) == 0
    parity = [r for r in _json(capsys)["records"] if r["kind"] == "parity"]
    assert {r["runtime"] for r in parity} == {"aoti"} and all(r["metrics"]["passed"] for r in parity)
    assert main(["validate", str(aoti), "--data", str(_photos(tmp_path)), "-b", "4", "--workers", "0", "--json"]) == 0
    assert {r["runtime"] for r in _json(capsys)["records"] if r["kind"] == "accuracy"} == {"aoti"}
    assert main(["profile", str(aoti), "-b", "1,4", "--no-memory", *TIMING, "--json"]) == 0
    latency = [r for r in _json(capsys)["records"] if r["kind"] == "latency"]
    assert {r["runtime"] for r in latency} == {"aoti"} and all(r["metrics"].get("flops_per_sample") is None
                                                               for r in latency)  # compiled code: nothing counted


def _rewrite_zip(src: Path, dst: Path, edit) -> Path:
    """``src`` with each member's bytes passed through ``edit(name, data)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            zout.writestr(item, edit(item.filename, zin.read(item.filename)))
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("key, value, expected", [
    ("AOTI_CPU_ISA", "SVE256", r"was compiled for CPUs with SVE256; this CPU runs"),
    ("AOTI_MACHINE", "riscv64", r"was compiled for linux/riscv64, this machine is linux/"),
])
def test_an_aoti_package_for_other_hardware_is_refused(aoti, tmp_path, capsys, key, value, expected):
    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith("metadata.json"):
            return data
        return json.dumps({**json.loads(data), key: value}).encode()

    path = _rewrite_zip(aoti, tmp_path / "edited.pt2", edit)
    assert main(["profile", str(path), "-b", "1", "--no-memory"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("error: ") and re.search(expected, line), line
    with Store() as store:
        assert store.runs() == []


# -- TensorRT, on the fake TensorRT (no GPU here) --------------------------------------------------------


def _plan(path: Path, version: tuple[int, int, int, int] = (10, 16, 1, 11), tag: bytes = b"ftrt") -> Path:
    """A file with a TensorRT plan's header (the fake TensorRT deserializes anything)."""
    path.write_bytes(tag + struct.pack("<I", 0) + bytes(16) + bytes(version) + b"engine body")
    return path



def test_a_tensorrt_engine_resolves_from_the_engine_and_its_plan_is_the_artifact(fake_trt, tmp_path):
    from perfkit.artifacts import ensure_artifact
    from perfkit.backends import get
    from perfkit.context import Context
    from perfkit.vocab import BatchRange

    path = _plan(tmp_path / "model.engine")
    spec = resolve(str(path))
    assert (spec.form, spec.input_size, spec.num_classes, spec.batch_limits) == ("tensorrt", (3, 32, 32), 10, (1, 64))
    art = ensure_artifact(spec, get("tensorrt"), Context(device="cuda:0", artifacts=tmp_path / "artifacts"),
                          batch=BatchRange(1, 8, 64))
    assert art.path.read_bytes() == path.read_bytes()
    info = art.manifest["tensorrt"]
    assert (info["tensorrt_version"], info["built_with"], info["gpu_name"]) == ("10.16.1.11", "10.16.1.11",
                                                                                "NVIDIA H100 80GB HBM3")
    assert info["profiles"] == [{"min": 1, "opt": 8, "max": 64}]
    assert (art.manifest["inputs"][0]["name"], art.manifest["outputs"][0]["name"]) == ("input", "logits")


def test_tensorrt_refusals_name_both_sides(fake_trt, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match=r"old.engine was built by TensorRT 10.3.0.26; this is TensorRT 10.16.1.11"):
        resolve(str(_plan(tmp_path / "old.engine", (10, 3, 0, 26))))
    with pytest.raises(UsageError, match=r"not.plan: not a TensorRT engine \(a plan starts with 'ftrt'"):
        resolve(str(_plan(tmp_path / "not.plan", tag=b"PK\x03\x04")))
    fake_trt.Runtime._engine = False  # TensorRT refuses to deserialize it (another GPU)
    with pytest.raises(UsageError, match=r"TensorRT 10.16.1.11 cannot load it on this NVIDIA H100 80GB HBM3 \(compute "
                                         r"capability 9.0\)"):
        resolve(str(_plan(tmp_path / "elsewhere.engine")))
    monkeypatch.setattr("perfkit.backends.tensorrt.current_gpu", CURRENT_GPU)  # this machine's: none
    with pytest.raises(UsageError, match=r"a TensorRT engine is read and run on a CUDA GPU, and this machine has none"):
        resolve(str(_plan(tmp_path / "model.engine")))


@pytest.mark.tensorrt
def test_a_real_tensorrt_engine_passes_check_and_profile_on_the_gpu(engines, tmp_path, capsys):
    path = tmp_path / "lenet.engine"
    shutil.copy(_export(engines.spec, "tensorrt", tmp_path / "artifacts", device="cuda:0"), path)
    assert main(["check", str(path), "--reference", str(engines.onnx), "--device", "cuda", "-b", "1,4", "--samples",
                 "5", "--json"]) == 0
    parity = [r for r in _json(capsys)["records"] if r["kind"] == "parity"]
    assert {r["runtime"] for r in parity} == {"tensorrt"} and all(r["metrics"]["passed"] for r in parity)
    assert main(["profile", str(path), "--device", "cuda", "-b", "1,4", "--no-memory", *TIMING, "--json"]) == 0
    assert {r["runtime"] for r in _json(capsys)["records"] if r["kind"] == "latency"} == {"tensorrt"}


# -- bad input: one line, exit 2, nothing stored ------------------------------------------------------


def _ir_version(engines, tmp_path, old: str, new: str, name: str) -> Path:
    xml = tmp_path / name
    xml.write_text(engines.ir.read_text().replace(old, new, 1))
    shutil.copy(engines.ir.with_suffix(".bin"), xml.with_suffix(".bin"))
    return xml


def _truncated(source: Path, tmp_path, name: str) -> Path:
    data = source.read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    for sibling in source.parent.glob(source.stem + ".bin"):
        shutil.copy(sibling, (tmp_path / name).with_suffix(".bin"))
    return tmp_path / name


def _cut_bin(engines, tmp_path) -> Path:
    shutil.copy(engines.ir, tmp_path / "short.xml")
    weights = engines.ir.with_suffix(".bin").read_bytes()
    (tmp_path / "short.bin").write_bytes(weights[: len(weights) // 2])
    return tmp_path / "short.xml"


def _no_bin(engines, tmp_path) -> Path:
    shutil.copy(engines.ir, tmp_path / "alone.xml")
    return tmp_path / "alone.xml"


def _state_dict(engines, tmp_path) -> Path:
    torch.save(engines.spec.build().state_dict(), tmp_path / "weights.pt")
    return tmp_path / "weights.pt"


def _ts_version(engines, tmp_path) -> Path:
    return _rewrite_zip(engines.ts, tmp_path / "future.pt",
                        lambda name, data: b"99\n" if name.endswith("/version") and "/.data/" not in name else data)


BAD = [
    ("missing", lambda e, t: e.folder / "missing.xml", [], r"missing.xml: no such file \(an OpenVINO IR\)$"),
    ("truncated ir", lambda e, t: _truncated(e.ir, t, "cut.xml"), [], r"cut.xml: not an OpenVINO IR: not valid XML"),
    ("truncated ts", lambda e, t: _truncated(e.ts, t, "cut.pt"), [],
     r"cut.pt: not a TorchScript file: not a zip archive"),
    ("ir without its bin", _no_bin, [], r"alone.xml: its weights alone.bin are not beside it"),
    ("truncated bin", _cut_bin, [], r"short.xml: OpenVINO [\d.]+ cannot read it \(Incorrect weights in bin file!\)$"),
    ("state dict", _state_dict, [], r"weights.pt holds a state dict \(torch.save\), not TorchScript: pass its "
                                    r"architecture with --weights weights.pt"),
    ("ir version", lambda e, t: _ir_version(e, t, 'version="11"', 'version="99"', "v99.xml"), [],
     r"v99.xml is OpenVINO IR version 99 \(written by OpenVINO [\d.]+\); this OpenVINO [\d.]+ reads IR versions 10 "
     r"and 11"),
    ("ir from a newer openvino",
     lambda e, t: _ir_version(e, t, '<Runtime_version value="', '<Runtime_version value="2099.1.0-', "new.xml"), [],
     r"new.xml was written by OpenVINO 2099.1.0, newer than this OpenVINO [\d.]+"),
    ("torchscript version", _ts_version, [],
     r"future.pt is TorchScript file format version 99, written by a newer PyTorch; this torch [\w.+]+ reads up to "
     r"version \d+"),
    ("check without a reference", lambda e, t: e.ir, [], r"has nothing to be compared with: pass --reference SOURCE"),
    ("weights without a reference", lambda e, t: e.ir, ["--weights", "random"],
     r"lenet.xml carries its own weights: --weights random would be the weights of the model --reference names"),
    ("an engine as the reference", lambda e, t: e.ir, ["--reference", "{ts}"],
     r"--reference .*lenet.pt is a TorchScript file"),
    ("a reference of other classes", lambda e, t: e.ir, ["--reference", "lenet5", "--weights", "random"],
     r"outputs 3 classes, its reference lenet5 10"),
    ("an input size the file contradicts", lambda e, t: e.ts, ["--input-size", "3,28,28"],
     r"lenet.pt takes 3×32×32 inputs \(recorded in the file\), not 3×28×28"),
    ("another precision", lambda e, t: e.ir, ["-f", "openvino", "--precision", "int8", "--reference", "{onnx}"],
     r"runs as it was built \(an OpenVINO IR\): --precision int8 asks perfkit's exporters for another precision"),
]


@pytest.mark.parametrize("make, extra, expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_engines_and_flags_are_one_line_exit_2_and_nothing_stored(engines, tmp_path, capsys, make, extra, expected):
    path = make(engines, tmp_path)
    extra = [a.format(ts=engines.ts, onnx=engines.onnx) for a in extra]
    assert main(["check", str(path), *extra]) == 2
    [line] = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error: ")]
    assert re.search(expected, line), line
    with Store() as store:
        assert store.runs() == []


@pytest.mark.parametrize("command", ["validate", "profile", "summary"])
def test_a_bad_engine_is_refused_by_every_command(engines, tmp_path, capsys, command):
    extra = ["--data", str(_photos(tmp_path))] if command == "validate" else []
    assert main([command, str(_state_dict(engines, tmp_path)), *extra]) == 2
    assert "holds a state dict (torch.save), not TorchScript" in capsys.readouterr().err
    with Store() as store:
        assert store.runs() == []


def test_summary_of_compiled_code_says_there_is_nothing_to_count(fake_trt, tmp_path, capsys):
    assert main(["summary", str(_plan(tmp_path / "model.engine"))]) == 2
    assert "is a TensorRT engine, compiled code: there is no graph or module to count" in capsys.readouterr().err
    with Store() as store:
        assert store.runs() == []
