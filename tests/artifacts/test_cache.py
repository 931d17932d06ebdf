"""The artifact cache: keys, cache hits, --force, integrity checks, stale temporaries, disk space,
captured exporter chatter."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
import sys
import warnings
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from perfkit.artifacts import (
    MANIFEST, ensure_artifact, cache_key, key_dir, load_artifact, remove_stale_temporaries, sha256_file, verify,
)
from perfkit.artifacts import cache as C
from perfkit.artifacts.capture import _ListHandler, capture_messages
from perfkit.artifacts.manifest import combined_sha256
from perfkit.backends import EXPORT, get, make_runner
from perfkit.context import Context, artifacts_dir, user_cache_dir
from perfkit.errors import ArtifactError
from perfkit.vocab import BatchRange, Precision
from perfkit.zoo.sources import resolve


@pytest.fixture
def ctx(tmp_path):
    return Context(artifacts=tmp_path / "art")


@pytest.fixture
def exported(tiny_spec, ctx):
    """A TorchScript artifact of LeNet-5 (the fastest export) in this test's own cache."""
    return ensure_artifact(tiny_spec, get("torchscript"), ctx)


def failing(backend_name: str, exc: BaseException, seen: list | None = None):
    """``backend_name``'s backend with an exporter that writes a partial file and then fails.

    Same name, so the same cache key and folder as the real one. ``seen`` collects what the
    exporter's request saw (its temporary folder) at the moment it failed.
    """

    def boom(req):
        (req.out_dir / "partial.bin").write_bytes(b"half")
        if seen is not None:
            seen.append(req.out_dir)
        raise exc

    return dataclasses.replace(get(backend_name), export=boom)


def rewrite_manifest(folder, edit):
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def test_manifest_describes_the_artifact(exported, tiny_spec):
    m = json.loads((exported.dir / MANIFEST).read_text())
    assert m == exported.manifest
    assert m["model"]["name"] == "lenet5" and m["model"]["random_weights"] is True
    assert m["model"]["weights"]["identity"] == tiny_spec.weights.identity
    assert m["backend"] == "torchscript" and m["precision"] == "fp32"
    assert m["device"] == "any" and m["compiled_for"] == "any"  # TorchScript runs anywhere
    assert m["inputs"] == [{"name": "input", "shape": ["batch", 3, 32, 32], "dtype": "float32"}]
    assert m["outputs"][0]["shape"] == ["batch", 10]
    assert m["batch"] == {"min": 1, "opt": 8, "max": 256}
    assert m["options"] == {"script": False}  # export options only: `optimize` is a run option
    assert m["torchscript"] == {"method": "trace"}
    assert m["preprocess"]["crop_size"] == 32
    assert "torch" in m["libraries"] and m["export_seconds"] > 0
    assert set(m["files"]) == {"model.ts"}
    assert m["files"]["model.ts"]["sha256"] == sha256_file(exported.path)
    assert m["files"]["model.ts"]["bytes"] == exported.path.stat().st_size == exported.bytes
    assert m["sha256"] == exported.sha256 == combined_sha256(m["files"])
    # TorchScript is deprecated in torch 2.14: its FutureWarning is captured into the manifest.
    assert any("deprecated" in w for w in m["warnings"])


def test_second_export_is_a_cache_hit(exported, tiny_spec, ctx):
    assert exported.cached is False
    again = ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert again.cached is True
    assert again.path == exported.path and again.sha256 == exported.sha256
    assert again.seconds < 1.0
    assert again.manifest["created"] == exported.manifest["created"]  # nothing was rewritten


def test_force_rebuilds(exported, tiny_spec, ctx):
    rebuilt = ensure_artifact(tiny_spec, get("torchscript"), ctx.replace(force=True))
    assert rebuilt.cached is False
    assert rebuilt.path == exported.path
    assert rebuilt.manifest["created"] > exported.manifest["created"]
    assert sorted(p.name for p in exported.dir.parent.iterdir()) == [exported.dir.name]  # no .tmp/.old left


def test_force_keeps_the_old_copy_until_the_new_one_is_complete(exported, tiny_spec, ctx):
    """While the forced export runs, the cached copy is still in place and valid."""
    real = get("torchscript")
    during = []

    def watching(req):
        during.append((req.out_dir != exported.dir, verify(exported.dir)["created"]))
        return real.export(req)

    rebuilt = ensure_artifact(tiny_spec, dataclasses.replace(real, export=watching), ctx.replace(force=True))
    assert during == [(True, exported.manifest["created"])]
    assert rebuilt.path == exported.path and rebuilt.manifest["created"] > exported.manifest["created"]
    assert verify(exported.dir) == rebuilt.manifest


def test_failing_forced_export_leaves_the_old_artifact_usable(exported, tiny_spec, ctx):
    seen = []
    with pytest.raises(RuntimeError, match="exporter crashed"):
        ensure_artifact(tiny_spec, failing("torchscript", RuntimeError("exporter crashed"), seen),
                        ctx.replace(force=True))
    assert seen and seen[0] != exported.dir and not seen[0].exists()  # its temporary folder is gone
    assert sorted(p.name for p in exported.dir.parent.iterdir()) == [exported.dir.name]
    hit = ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert hit.cached and hit.manifest == exported.manifest
    x = tiny_spec.example_input(2, seed=4)
    with make_runner(tiny_spec, "torchscript", ctx, hit) as r:
        got = r.infer(x)
    with torch.no_grad():
        torch.testing.assert_close(got, tiny_spec.build()(x), rtol=1e-4, atol=1e-5)


def test_key_separates_what_changes_the_bytes(tiny_spec, tmp_path, monkeypatch):
    gpus = {"cuda:0": "cuda-NVIDIA_H100_80GB_HBM3-sm90", "cuda:1": "cuda-NVIDIA_L4-sm89"}
    monkeypatch.setattr(C, "device_identity", lambda device: gpus.get(device, "cpu"))

    def folder(backend="torchscript", options=None, **kw):
        b = get(backend)
        args = dict(spec=tiny_spec, precision=Precision.FP32, batch=BatchRange(), device="cpu")
        args.update(kw)
        key = cache_key(args["spec"], b, Precision(args["precision"]), args["batch"], args["device"],
                        b.options_for(options or {}, EXPORT))
        return key_dir(tmp_path, key)

    base = folder()
    assert folder() == base
    assert base.parent == tmp_path / "lenet5" and base.name.startswith("torchscript-fp32-any-")
    assert folder(precision="fp16") != base
    assert folder(batch=BatchRange(1, 4, 16)) != base
    assert folder(options={"script": True}) != base
    assert folder(backend="onnx") != base
    # another backend's options, and run options, do not key this backend's artifact
    assert folder(options={"opset": 17, "optimize": False, "inductor_freezing": False}) == base
    assert folder(backend="onnx", options={"opset": 17}) != folder(backend="onnx")
    weights = tmp_path / "w.pt"
    torch.save(tiny_spec.build().state_dict(), weights)
    assert folder(spec=resolve("lenet5", weights=str(weights))) != base
    # TorchScript runs anywhere; AOTInductor is compiled per device: per GPU model, not just "cuda"
    assert folder(device="cuda:0") == base
    aoti = {"backend": "aoti"}
    assert folder(device="cuda:0", **aoti) != folder(device="cpu", **aoti)
    assert folder(device="cuda:0", **aoti) != folder(device="cuda:1", **aoti)
    assert folder(device="cuda:0", **aoti).name.startswith("aoti-fp32-cuda-")
    assert folder(options={"inductor_freezing": False}, **aoti) != folder(**aoti)


def test_another_backends_option_leaves_the_artifact_alone(exported, tiny_spec, ctx):
    """One options dict serves every backend: torchscript ignores onnx's opset and its own run options."""
    hit = ensure_artifact(tiny_spec, get("torchscript"), ctx.replace(options={"opset": 17, "optimize": False}))
    assert hit.cached and hit.path == exported.path and hit.manifest["options"] == {"script": False}


def test_tampered_file_is_refused_naming_it(exported, tiny_spec, ctx):
    data = bytearray(exported.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    exported.path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="modified") as err:
        ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert str(exported.path) in str(err.value)
    with pytest.raises(ArtifactError, match=str(exported.path)):
        load_artifact(exported.dir)


def test_truncated_file_is_refused_naming_it(exported, tiny_spec, ctx):
    data = exported.path.read_bytes()
    exported.path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match="truncated") as err:
        ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert str(exported.path) in str(err.value)


def test_deleted_file_is_refused_naming_it(exported, tiny_spec, ctx):
    exported.path.unlink()
    with pytest.raises(ArtifactError, match="missing") as err:
        ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert str(exported.path) in str(err.value)


def test_missing_or_corrupt_manifest(exported, tmp_path):
    (exported.dir / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="cannot read artifact manifest"):
        load_artifact(exported.dir)
    with pytest.raises(ArtifactError, match="no manifest"):
        load_artifact(tmp_path)


def test_deleted_manifest_is_refused_with_the_way_out_and_force_rebuilds(exported, tiny_spec, ctx):
    (exported.dir / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match=f"no manifest at {exported.dir / MANIFEST}: .*export again with --force"):
        ensure_artifact(tiny_spec, get("torchscript"), ctx)
    rebuilt = ensure_artifact(tiny_spec, get("torchscript"), ctx.replace(force=True))  # replaces the folder whole
    assert not rebuilt.cached and verify(rebuilt.dir) == rebuilt.manifest


def test_emptied_file_list_is_refused(exported, tiny_spec, ctx):
    """An emptied list would otherwise switch every file check off (even with a matching digest)."""
    def empty(m):
        m["files"] = {}
        m["sha256"] = combined_sha256({})

    rewrite_manifest(exported.dir, empty)
    with pytest.raises(ArtifactError, match="does not list the main file model.ts") as err:
        ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert str(exported.dir / MANIFEST) in str(err.value)


def test_edited_file_list_is_refused(exported):
    """A file list changed without its digest: refused even when the listed file still matches."""
    rewrite_manifest(exported.dir, lambda m: m["files"].update({"extra.bin": {"sha256": "0" * 64, "bytes": 1}}))
    with pytest.raises(ArtifactError, match="does not match the artifact's digest") as err:
        load_artifact(exported.dir)
    assert str(exported.dir / MANIFEST) in str(err.value)


@pytest.mark.parametrize("key", ["files", "batch", "main_file", "sha256", "model"])
def test_manifest_missing_a_key_is_refused(key, exported, tiny_spec, ctx):
    rewrite_manifest(exported.dir, lambda m: m.pop(key))
    with pytest.raises(ArtifactError, match=f"lacks {key}") as err:
        ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert str(exported.dir / MANIFEST) in str(err.value)


def test_manifest_of_another_version_is_refused(exported):
    rewrite_manifest(exported.dir, lambda m: m.update(manifest_version=1))
    with pytest.raises(ArtifactError, match="manifest version 1"):
        load_artifact(exported.dir)


def test_unlisted_file_is_refused_naming_it(exported, tiny_spec, ctx):
    extra = exported.dir / "sub" / "injected.so"
    extra.parent.mkdir()
    extra.write_bytes(b"not part of the export")
    with pytest.raises(ArtifactError, match="not listed") as err:
        ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert str(extra) in str(err.value)


def test_manifest_of_another_export_is_refused(exported, tiny_spec, ctx):
    rewrite_manifest(exported.dir, lambda m: m["key"].update(options={"script": True}))
    with pytest.raises(ArtifactError, match="cache key mismatch"):
        ensure_artifact(tiny_spec, get("torchscript"), ctx)


def test_failed_export_leaves_nothing_behind(tiny_spec, ctx):
    with pytest.raises(RuntimeError, match="exporter crashed"):
        ensure_artifact(tiny_spec, failing("torchscript", RuntimeError("exporter crashed")), ctx)
    assert not [p for p in ctx.artifacts.rglob("*") if p.is_file()]
    assert not list(ctx.artifacts.rglob("*.tmp-*"))


def test_disk_full_mid_export_is_an_artifact_error(tiny_spec, ctx):
    with pytest.raises(ArtifactError, match="the disk is full") as err:
        ensure_artifact(tiny_spec, failing("torchscript", OSError(errno.ENOSPC, "No space left on device")), ctx)
    assert str(ctx.artifacts / "lenet5") in str(err.value)
    assert not [p for p in ctx.artifacts.rglob("*") if p.is_file()]


def test_onnx_short_write_is_named_as_a_full_disk(tiny_spec, ctx):
    """What the ONNX exporter raises when the disk fills: no path, no "disk full" (only byte counts)."""
    with pytest.raises(ArtifactError, match="the disk is full: exporting onnx into") as err:
        ensure_artifact(tiny_spec, failing("onnx", OSError("2359296 requested and 1284928 written")), ctx)
    assert str(ctx.artifacts / "lenet5") in str(err.value)
    assert not [p for p in ctx.artifacts.rglob("*") if p.is_file()]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) for a real ENOSPC")
@pytest.mark.parametrize("backend", ["torchscript", pytest.param("aoti", marks=pytest.mark.slow)])
def test_a_disk_that_fills_while_torch_writes_is_one_line_and_leaves_nothing(tiny_spec, ctx, monkeypatch, backend):
    """torch's C++ zip writer aborted the whole process when the disk filled under it (exit 134, a C++
    trace, the temporary folder left): the bytes now go to the file through Python."""
    real_open = open
    writes = []

    def full_disk(path, mode="r"):  # every write of the artifact's file meets a full disk (ENOSPC)
        writes.append(path)
        return real_open("/dev/full", mode)

    monkeypatch.setattr(C, "open", full_disk, raising=False)
    with pytest.raises(ArtifactError) as err:
        ensure_artifact(tiny_spec, get(backend), ctx)
    assert str(err.value).startswith(f"the disk is full: exporting {backend} into {ctx.artifacts / 'lenet5'} failed "
                                     "(OSError)") and "\n" not in str(err.value)
    assert [p.name for p in writes] == [__import__(f"perfkit.backends.{backend}", fromlist=["MAIN_FILE"]).MAIN_FILE]
    assert not list(ctx.artifacts.rglob("*.tmp-*")) and not [p for p in ctx.artifacts.rglob("*") if p.is_file()]


def test_full_disk_is_refused_before_writing(tiny_spec, ctx, monkeypatch):
    usage = namedtuple("usage", "total used free")
    asked = []

    def full(path):
        asked.append(path)
        return usage(100 << 30, (100 << 30) - (1 << 20), 1 << 20)  # 1 MiB free

    monkeypatch.setattr(shutil, "disk_usage", full)
    saved = []
    monkeypatch.setattr(torch.jit, "save", lambda *a, **k: saved.append(a))
    with pytest.raises(ArtifactError, match="not enough free disk space in") as err:
        ensure_artifact(tiny_spec, get("torchscript"), ctx)
    # named: the artifacts folder the user chose, not the temporary folder deleted on the way out
    assert asked and f"not enough free disk space in {ctx.artifacts}: " in str(err.value)
    assert ".tmp-" not in str(err.value)
    assert "1 MiB free" in str(err.value) and "--artifacts" in str(err.value)
    assert saved == []  # refused before the exporter wrote anything
    assert not [p for p in ctx.artifacts.rglob("*") if p.is_file()]
    assert not list(ctx.artifacts.rglob("*.tmp-*"))


def test_stale_temporaries_of_a_dead_export_are_removed_on_the_next_export(tiny_spec, ctx, live_pid, dead_pid):
    model_dir = ctx.artifacts / "lenet5"
    stale = [model_dir / f"torchscript-fp32-any-0123456789ab.tmp-{dead_pid}",
             model_dir / f"onnx-fp32-any-ab.old-{dead_pid}"]
    kept = [model_dir / f"torchscript-fp32-any-0123456789ab.tmp-{live_pid}",  # an export still running
            model_dir / f"onnx-fp32-any-ab.old-{os.getpid()}",  # this process's own
            model_dir / "notes.tmp-abc", model_dir / f"tmp-{dead_pid}"]  # not perfkit's temporaries
    for folder in stale + kept:
        folder.mkdir(parents=True)
        (folder / "model.ts").write_bytes(b"half-written")
    art = ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert not any(p.exists() for p in stale)
    assert all((p / "model.ts").is_file() for p in kept)
    assert art.dir.parent == model_dir and verify(art.dir) == art.manifest


def test_stale_temporaries_of_every_model_go_when_a_process_first_uses_the_cache(exported, tiny_spec, ctx, live_pid,
                                                                                 dead_pid, monkeypatch):
    stale = [ctx.artifacts / "resnet18" / f"onnx-fp32-any-0123456789ab.tmp-{dead_pid}",
             ctx.artifacts / "vgg16" / f"openvino-fp32-any-ab.old-{dead_pid}"]
    kept = [ctx.artifacts / "resnet18" / f"onnx-fp32-any-0123456789ab.tmp-{live_pid}",  # an export still running
            ctx.artifacts / "resnet18" / "onnx-fp32-any-0123456789ab"]
    for folder in stale + kept:
        folder.mkdir(parents=True)
    monkeypatch.setattr(C, "_SWEPT", set())  # as in a new process
    assert ensure_artifact(tiny_spec, get("torchscript"), ctx).cached  # lenet5 from the cache: no export of theirs
    assert not any(p.exists() for p in stale) and all(p.is_dir() for p in kept)
    later = ctx.artifacts / "vgg16" / f"openvino-fp32-any-cd.tmp-{dead_pid}"
    later.mkdir()
    ensure_artifact(tiny_spec, get("torchscript"), ctx)
    assert later.is_dir()  # once per process: the walk is not repeated on every use


def test_remove_stale_temporaries_reports_what_it_removed(tmp_path, live_pid, dead_pid):
    (tmp_path / f"a.tmp-{dead_pid}").mkdir()
    (tmp_path / f"a.tmp-{live_pid}").mkdir()
    assert remove_stale_temporaries(tmp_path) == [tmp_path / f"a.tmp-{dead_pid}"]
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_artifacts_root_that_is_a_file_is_refused(tiny_spec, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="is a file, not a folder"):
        ensure_artifact(tiny_spec, get("torchscript"), Context(artifacts=tmp_path / "file"))


def test_artifacts_dir_precedence(tmp_path, monkeypatch):
    assert artifacts_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("PERFKIT_ARTIFACTS", str(tmp_path / "env"))
    assert artifacts_dir(None) == tmp_path / "env"
    assert Context().artifacts == tmp_path / "env"
    monkeypatch.delenv("PERFKIT_ARTIFACTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    # the platform's user cache, never the folder the user happens to stand in
    expected = tmp_path / "xdg" / "perfkit" / "artifacts" if sys.platform not in ("darwin", "win32") else None
    assert artifacts_dir(None) == (expected or user_cache_dir() / "artifacts")


def test_the_user_cache_folder_of_each_platform(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path / "home"))
    assert user_cache_dir("linux", {}) == tmp_path / "home" / ".cache" / "perfkit"
    assert user_cache_dir("linux", {"XDG_CACHE_HOME": "/c"}) == Path("/c/perfkit")
    assert user_cache_dir("darwin", {}) == tmp_path / "home" / "Library" / "Caches" / "perfkit"
    assert user_cache_dir("win32", {"LOCALAPPDATA": str(tmp_path / "local")}) == tmp_path / "local" / "perfkit" / "Cache"
    assert user_cache_dir("win32", {}) == tmp_path / "home" / "AppData" / "Local" / "perfkit" / "Cache"


def test_capture_messages_keeps_chatter_off_the_terminal(capsys):
    torch_logger = logging.getLogger("torch._dynamo")
    with capture_messages() as messages:
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
    assert torch_logger.handlers != [] and not any(isinstance(h, _ListHandler) for h in torch_logger.handlers)


def test_copied_cache_is_still_valid(exported, tiny_spec, ctx, tmp_path):
    """Manifests hold relative file names: a cache folder can be moved or copied."""
    shutil.copytree(ctx.artifacts, tmp_path / "moved")
    hit = ensure_artifact(tiny_spec, get("torchscript"), Context(artifacts=tmp_path / "moved"))
    assert hit.cached and hit.path.is_relative_to(tmp_path / "moved")


def test_a_device_specific_export_runs_with_its_gpu_current(tiny_spec, tmp_path, monkeypatch):
    """TensorRT builds on (and Inductor compiles for) the current CUDA device: the export of a
    device-specific artifact for cuda:1 must run with cuda:1 current, the device its key names.
    Device-independent artifacts are exported on the CPU, with no device made current."""
    import contextlib

    current = ["cuda:0"]

    @contextlib.contextmanager
    def on_device(device):
        before = current[0]
        current[0] = str(device)
        try:
            yield
        finally:
            current[0] = before

    seen = []

    def export(req):
        seen.append((req.device, current[0]))
        (req.out_dir / "model.bin").write_bytes(b"x")
        return "model.bin"

    monkeypatch.setattr(C, "on_device", on_device)
    monkeypatch.setattr(C, "device_identity", lambda device: f"gpu-of-{device}")
    ctx = Context(device="cuda:1", artifacts=tmp_path)
    aoti = dataclasses.replace(get("aoti"), export=export)
    art = ensure_artifact(tiny_spec, aoti, ctx)
    assert seen == [("cuda:1", "cuda:1")] and art.manifest["compiled_for"] == "gpu-of-cuda:1"
    ensure_artifact(tiny_spec, dataclasses.replace(get("torchscript"), export=export), ctx)
    assert seen[1] == ("cpu", "cpu")
    assert current == ["cuda:0"]  # restored

def test_int8_key_holds_the_calibration_set_and_the_quantizer(tiny_spec, tmp_path):
    from perfkit.data.calibration import CalibrationSet

    onnx = get("onnx")

    def key(precision, **options):
        return cache_key(tiny_spec, onnx, Precision(precision), BatchRange(), "cpu",
                         onnx.keyed(onnx.options_for(options, EXPORT, precision)))

    def folder(precision, **options):
        return key_dir(tmp_path, key(precision, **options))

    synthetic = CalibrationSet.synthetic(32)
    base = folder("int8", calibration=synthetic)
    assert base.name.startswith("onnx-int8-any-") and folder("int8", calibration=CalibrationSet.synthetic(32)) == base
    assert folder("int8", calibration=CalibrationSet.synthetic(16)) != base  # sample count
    assert folder("int8", calibration=CalibrationSet.synthetic(32, method="entropy")) != base  # method
    assert folder("int8", calibration=CalibrationSet.synthetic(32, seed=1)) != base  # the set
    assert folder("int8", calibration=synthetic, qdq_style="tensorrt") != base
    # the key holds the set's identity in JSON, and the quantizer's version; fp32 holds neither
    assert key("int8", calibration=synthetic)["options"]["calibration"] == synthetic.identity()
    assert {"onnxruntime", "onnxruntime-gpu"} & set(key("int8", calibration=synthetic)["libraries"])
    assert folder("fp32", calibration=synthetic, qdq_style="tensorrt") == folder("fp32")
    assert not {"onnxruntime", "onnxruntime-gpu"} & set(key("fp32")["libraries"])
