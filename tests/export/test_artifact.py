"""The artifact cache: keys, cache hits, --force, integrity checks, captured exporter chatter."""

from __future__ import annotations

import json
import logging
import shutil
import warnings

import pytest

from perfkit.errors import ArtifactError, UsageError
from perfkit.export import artifact as A
from perfkit.formats import BatchRange
from perfkit.zoo.registry import resolve


@pytest.fixture
def exported(tiny_spec, tmp_path):
    """A TorchScript artifact of LeNet-5 (the fastest export) in this test's own cache."""
    return A.ensure_artifact(tiny_spec, "torchscript", artifacts=tmp_path / "art")


def test_manifest_describes_the_artifact(exported, tiny_spec):
    m = json.loads((exported.dir / A.MANIFEST).read_text())
    assert m == exported.manifest
    assert m["model"]["name"] == "lenet5" and m["model"]["random_weights"] is True
    assert m["model"]["weights"]["identity"] == tiny_spec.weights.identity
    assert m["format"] == "torchscript" and m["precision"] == "fp32"
    assert m["inputs"] == [{"name": "input", "shape": ["batch", 3, 32, 32], "dtype": "float32"}]
    assert m["outputs"][0]["shape"] == ["batch", 10]
    assert m["batch"] == {"min": 1, "opt": 8, "max": 256}
    assert m["preprocess"]["crop_size"] == 32
    assert "torch" in m["libraries"] and m["export_seconds"] > 0
    assert set(m["files"]) == {"model.ts"}
    assert m["files"]["model.ts"]["sha256"] == A.sha256_file(exported.path)
    assert m["files"]["model.ts"]["bytes"] == exported.path.stat().st_size == exported.bytes
    # TorchScript is deprecated in torch 2.14: its FutureWarning is captured into the manifest.
    assert any("deprecated" in w for w in m["warnings"])


def test_second_export_is_a_cache_hit(exported, tiny_spec, tmp_path):
    assert exported.cached is False
    again = A.ensure_artifact(tiny_spec, "torchscript", artifacts=tmp_path / "art")
    assert again.cached is True
    assert again.path == exported.path and again.sha256 == exported.sha256
    assert again.seconds < 1.0
    assert again.manifest["created"] == exported.manifest["created"]  # nothing was rewritten


def test_force_rebuilds(exported, tiny_spec, tmp_path):
    rebuilt = A.ensure_artifact(tiny_spec, "torchscript", artifacts=tmp_path / "art", force=True)
    assert rebuilt.cached is False
    assert rebuilt.path == exported.path
    assert rebuilt.manifest["created"] > exported.manifest["created"]


def test_key_separates_what_changes_the_bytes(tiny_spec, tmp_path):
    def folder(**kw):
        args = dict(spec=tiny_spec, fmt="torchscript", precision="fp32", batch=BatchRange(), device="cpu",
                    options=A.export_options("torchscript", {}))
        args.update(kw)
        key = A.cache_key(args["spec"], A.Format(args["fmt"]), A.Precision(args["precision"]), args["batch"],
                          args["device"], args["options"])
        return A._key_dir(tmp_path, key)

    base = folder()
    assert folder() == base
    assert folder(precision="fp16") != base
    assert folder(batch=BatchRange(1, 4, 16)) != base
    assert folder(options=A.export_options("torchscript", {"script": True})) != base
    assert folder(fmt="onnx", options=A.export_options("onnx", {})) != base
    weights = tmp_path / "w.pt"
    import torch

    torch.save(tiny_spec.build().state_dict(), weights)
    assert folder(spec=resolve("lenet5", str(weights))) != base
    # TorchScript (unfrozen) runs anywhere, AOTInductor is compiled per device type.
    assert folder(device="cuda") == base
    aoti = dict(fmt="aoti", options={})
    assert folder(device="cuda", **aoti) != folder(device="cpu", **aoti)


def test_unknown_option_is_a_usage_error(tiny_spec, tmp_path):
    with pytest.raises(UsageError, match="no option opset"):
        A.ensure_artifact(tiny_spec, "torchscript", artifacts=tmp_path, opset=17)


def test_tampered_file_is_refused_naming_it(exported, tiny_spec, tmp_path):
    data = bytearray(exported.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    exported.path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="modified") as err:
        A.ensure_artifact(tiny_spec, "torchscript", artifacts=tmp_path / "art")
    assert str(exported.path) in str(err.value)
    with pytest.raises(ArtifactError, match=str(exported.path)):
        A.load_artifact(exported.dir)


def test_truncated_file_is_refused_naming_it(exported, tiny_spec, tmp_path):
    data = exported.path.read_bytes()
    exported.path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match="truncated") as err:
        A.ensure_artifact(tiny_spec, "torchscript", artifacts=tmp_path / "art")
    assert str(exported.path) in str(err.value)


def test_missing_or_corrupt_manifest(exported, tmp_path):
    (exported.dir / A.MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="cannot read artifact manifest"):
        A.load_artifact(exported.dir)
    with pytest.raises(ArtifactError, match="no manifest"):
        A.load_artifact(tmp_path)


def test_failed_export_leaves_nothing_behind(tiny_spec, tmp_path, monkeypatch):
    from perfkit.export import torchscript

    def boom(ctx):
        (ctx.out_dir / "partial.ts").write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torchscript, "export", boom)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        A.ensure_artifact(tiny_spec, "torchscript", artifacts=tmp_path / "art")
    assert not [p for p in (tmp_path / "art").rglob("*") if p.is_file()]


def test_artifacts_dir_precedence(tmp_path, monkeypatch):
    assert A.artifacts_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("PERFKIT_ARTIFACTS", str(tmp_path / "env"))
    assert A.artifacts_dir(None) == tmp_path / "env"
    monkeypatch.delenv("PERFKIT_ARTIFACTS")
    assert A.artifacts_dir(None) == A.DEFAULT_ARTIFACTS


def test_capture_messages_keeps_chatter_off_the_terminal(capsys):
    torch_logger = logging.getLogger("torch._dynamo")
    with A.capture_messages() as messages:
        warnings.warn("exporter warning", UserWarning)
        warnings.warn("exporter warning", UserWarning)  # kept once
        logging.getLogger("some.lib").warning("logged warning")
        torch_logger.warning("torch logger warning")
        print("printed line")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert messages == ["some.lib: logged warning", "torch._dynamo: torch logger warning",
                        "UserWarning: exporter warning", "printed line"]
    # handlers are restored afterwards
    assert torch_logger.handlers != [] and not any(isinstance(h, A._ListHandler) for h in torch_logger.handlers)


def test_copied_cache_is_still_valid(exported, tiny_spec, tmp_path):
    """Manifests hold relative file names: a cache folder can be moved or copied."""
    shutil.copytree(tmp_path / "art", tmp_path / "moved")
    hit = A.ensure_artifact(tiny_spec, "torchscript", artifacts=tmp_path / "moved")
    assert hit.cached and hit.path.is_relative_to(tmp_path / "moved")
