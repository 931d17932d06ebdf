"""ONNX export: dynamic batch, external data covered by the hash, checker, opset option."""

from __future__ import annotations

import onnx
import pytest

from perfkit.artifacts import MANIFEST, ensure_artifact, load_artifact
from perfkit.artifacts.manifest import combined_sha256
from perfkit.backends import get
from perfkit.backends.onnxruntime import input_batch_dim
from perfkit.context import Context
from perfkit.errors import ArtifactError
from perfkit.vocab import BatchRange


@pytest.fixture
def onnx_artifact(tiny_spec, shared_artifacts):
    return ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=shared_artifacts))


def test_batch_dimension_is_symbolic(onnx_artifact):
    graph = onnx.load(str(onnx_artifact.path), load_external_data=False)
    assert input_batch_dim(graph) == "batch"
    assert [i.name for i in graph.graph.input] == ["input"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    info = onnx_artifact.manifest["onnx"]
    assert info["input_batch_dim"] == "batch" and info["opset"] >= 17
    # exported with an example batch ≥ 2, so torch.export could not specialise it to 1
    assert onnx_artifact.manifest["example_batch"] >= 2


def test_external_data_is_part_of_the_artifact(onnx_artifact):
    files = onnx_artifact.files
    assert "model.onnx" in files and onnx_artifact.manifest["onnx"]["external_data"]
    for name in onnx_artifact.manifest["onnx"]["external_data"]:
        assert name in files and files[name]["bytes"] > 0
    weights = sum(f["bytes"] for n, f in files.items() if n != "model.onnx")
    assert weights > 200_000  # LeNet-5's ~62k float32 parameters live outside the graph file
    onnx.checker.check_model(str(onnx_artifact.path))


def test_tampered_external_data_is_refused_naming_the_file(onnx_artifact, tiny_spec, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(onnx_artifact.dir.parent.parent, copy)  # keep the shared cache intact
    data_name = onnx_artifact.manifest["onnx"]["external_data"][0]
    folder = copy / onnx_artifact.dir.relative_to(onnx_artifact.dir.parent.parent)
    blob = bytearray((folder / data_name).read_bytes())
    blob[100] ^= 0x01
    (folder / data_name).write_bytes(bytes(blob))
    with pytest.raises(ArtifactError) as err:
        ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=copy))
    assert str(folder / data_name) in str(err.value)


def _copy_of(artifact, tmp_path):
    """The artifact's folder in a copy of the shared cache (so that tests can damage it)."""
    import shutil

    root = artifact.dir.parent.parent
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    return copy / artifact.dir.relative_to(root)


def test_external_data_dropped_from_the_manifest_is_refused_naming_it(onnx_artifact, tmp_path):
    """Even with the digest recomputed, a weights file the manifest no longer lists is refused."""
    import json

    folder = _copy_of(onnx_artifact, tmp_path)
    data_name = onnx_artifact.manifest["onnx"]["external_data"][0]
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["files"][data_name]
    manifest["sha256"] = combined_sha256(manifest["files"])
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="not listed") as err:
        load_artifact(folder)
    assert str(folder / data_name) in str(err.value)


def test_static_batch_when_the_range_is_one_size(tiny_spec, tmp_path):
    art = ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=tmp_path, options={"opset": 18}),
                          batch=BatchRange(4, 4, 4))
    graph = onnx.load(str(art.path), load_external_data=False)
    assert input_batch_dim(graph) == ""
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert art.manifest["inputs"][0]["shape"][0] == 4
    assert art.manifest["onnx"]["opset"] == 18 and art.manifest["options"] == {"opset": 18}


@pytest.mark.slow
def test_fp16_graph_keeps_float32_io(tiny_spec, tmp_path):
    """The fp16 variant (what TensorRT builds from): fp16 weights inside, float32 at the edges."""
    art = ensure_artifact(tiny_spec, get("onnx"), Context(artifacts=tmp_path), precision="fp16")
    graph = onnx.load(str(art.path))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert graph.graph.input[0].type.tensor_type.elem_type == f32
    assert graph.graph.output[0].type.tensor_type.elem_type == f32
    assert any(init.data_type == f16 for init in graph.graph.initializer)
