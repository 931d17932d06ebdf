"""The accuracy harness against an independent, straightforward computation.

The model is ResNet-18 with a random backbone and a head (``write_spread_weights``) that spreads
its predictions over ImageNet classes 5, 900 and a few decoys, so counts are neither 0 nor all.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import perfkit.backends
from perfkit.accuracy import harness
from perfkit.accuracy.harness import EvalOptions, evaluate, gate_failures, spec_with_transform, validate_model
from perfkit.backends import get, open_runner
from perfkit.backends.eager import EagerRunner
from perfkit.context import Context
from perfkit.data.imagenet import open_imagenet
from perfkit.data.synthetic import LAYOUTS, corrupt_jpeg, make_imagenet_folder, write_real_labels, write_spread_weights
from perfkit.distributed import Distributed
from perfkit.errors import DatasetError
from perfkit.record import recording, to_records
from perfkit.vocab import Precision
from perfkit.zoo.sources import resolve

CLASSES = [5, 900]


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    # seed 26: with these 8 images some are right and some wrong at top-1/top-5, at 224 and at 64 (checked)
    return write_spread_weights(tmp_path_factory.mktemp("w") / "resnet18-spread.pt", CLASSES, seed=26)


@pytest.fixture(scope="session")
def spec(weights):
    return resolve("resnet18", weights=str(weights))


@pytest.fixture(scope="session")
def small(spec):
    """The same model at 64×64 (a recorded override): 12× cheaper, for tests about everything but the transform."""
    return spec_with_transform(spec, spec.preprocess.with_overrides(resize_size=72, crop_size=64))


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("val") / "folders"
    make_imagenet_folder(root, CLASSES, 4)
    return root


@pytest.fixture(scope="session")
def reference(weights, dataset):
    return independent(weights, dataset)


def independent(weights: Path, root: Path, crops: int = 1) -> dict:
    """PIL + torchvision transforms + the model, one image at a time: what the harness must match."""
    import timm.data
    import torchvision
    from PIL import Image
    from torchvision import transforms as T

    wnids = timm.data.ImageNetInfo().label_names()
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(weights))
    model.eval()
    published = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    tencrop = T.Compose([T.Resize(256), T.TenCrop(224)])
    to_input = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    out = {"top1": 0, "top5": 0, "images": 0, "top1_if_folder_index": 0, "pred": {}}
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    for position, folder in enumerate(folders):
        for f in sorted(folder.iterdir()):
            img = Image.open(f).convert("RGB")
            with torch.no_grad():
                if crops == 1:
                    scores = model(published(img)[None])[0]
                else:
                    scores = torch.softmax(model(torch.stack([to_input(c) for c in tencrop(img)])), 1).mean(0)
            top5 = scores.topk(5).indices.tolist()
            label = wnids.index(folder.name)
            out["images"] += 1
            out["top1"] += top5[0] == label
            out["top5"] += label in top5
            out["top1_if_folder_index"] += top5[0] == position
            out["pred"][f"{folder.name}/{f.name}"] = top5[0]
    return out


def eager(spec, **options):
    """An un-entered eager runner (``options``: backend options such as channels_last)."""
    return open_runner(spec, "eager", Context(options=options))


def run(spec, root, runners=None, *, data=None, dist=None, **options):
    """``evaluate`` with ``EvalOptions(**options)``; the model's own transform unless one is given."""
    data = data or open_imagenet(root)
    runners = runners or {"eager": eager(spec)}
    options.setdefault("transform", spec.preprocess)
    kw = {} if dist is None else {"dist": dist}
    return evaluate(spec, data, runners, EvalOptions(**options), **kw)


REAL_OPEN = perfkit.backends.open_runner


def fake_open(swap=("onnx",), refuse=lambda name: name == "aoti"):
    """An ``open_runner`` stand-in: a runtime in ``swap`` is a SwapRunner, one that ``refuse``s cannot
    open, and the others open for real."""

    def open_runner_(s, backend, ctx, **kw):
        name = get(backend).name
        if refuse(name):
            raise NotImplementedError(f"runtime {name} is not wired yet")
        if name in swap:
            return SwapRunner(s, device=ctx.device, **kw)
        return REAL_OPEN(s, backend, ctx, **kw)

    return open_runner_


def _eager_only(name):
    """``refuse`` for ``fake_open``: every exported runtime."""
    return name != "eager"


def counts(result, label="eager"):
    c = result.runtimes[label].counts
    return c.images, c.top1_correct, c.top5_correct


class SwapRunner(EagerRunner):
    """A stand-in 'exported' runtime that swaps the logits of classes 5 and 900."""

    name = "onnx"

    def _infer(self, x):
        y = super()._infer(x).clone()
        y[:, [5, 900]] = y[:, [900, 5]]
        return y


def test_counts_equal_an_independent_computation(spec, dataset, reference):
    result = run(spec, dataset)
    assert counts(result) == (reference["images"], reference["top1"], reference["top5"])
    # The data are not trivial: some images right, some wrong...
    assert 0 < reference["top1"] < reference["top5"] < reference["images"]
    # ...and scoring classes 5 and 900 as folder positions 0 and 1 would give another count.
    assert reference["top1_if_folder_index"] != reference["top1"]
    assert result.complete and result.decoded == 8


@pytest.mark.slow
def test_ten_crop_equals_an_independent_computation(spec, weights, dataset):
    expected = independent(weights, dataset, crops=10)
    result = run(spec, dataset, crops=10, batch_size=3)
    assert counts(result) == (expected["images"], expected["top1"], expected["top5"])


@pytest.fixture(scope="session")
def small_result(small, dataset):
    return run(small, dataset)


@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_every_layout_gives_the_same_counts(small, small_result, tmp_path, layout):
    make_imagenet_folder(tmp_path / layout, CLASSES, 4, layout=layout)
    assert counts(run(small, tmp_path / layout)) == counts(small_result)
    assert 0 < small_result.runtimes["eager"].counts.top5_correct < 8


def test_two_runtimes_in_one_pass_decode_once(small, dataset, small_result):
    runners = {"eager": eager(small), "eager-cl": eager(small, channels_last=True), "swap": SwapRunner(small)}
    result = run(small, dataset, runners, batch_size=3)
    assert result.decoded == 8  # once, not once per runtime
    assert counts(result) == counts(result, "eager-cl") == counts(small_result)
    assert result.runtimes["eager-cl"].diff.max_abs < 1e-3 and not result.runtimes["eager-cl"].flipped_ids
    # The swapped runtime flips exactly the images whose eager top-1 was 5 or 900.
    top1 = result.predictions["eager"][:, 0]
    swapped = [i for i, p in zip(result.image_ids, top1) if p in CLASSES]
    assert result.runtimes["swap"].flipped_ids == swapped and swapped
    assert result.runtimes["swap"].diff.max_abs > 0.01
    rows = {r.metrics["runner"]: r for r in to_records(result)}
    assert rows["swap"].runtime == "onnx" and rows["swap"].metrics["flips_vs_eager"] == len(swapped)
    assert rows["swap"].metrics["delta_top1_vs_eager_pp"] == pytest.approx(
        100 * (result.runtimes["swap"].counts.top1_correct - result.runtimes["eager"].counts.top1_correct) / 8)
    assert rows["eager"].metrics["transform_overrides"] == ["crop_size", "resize_size"]
    for r in rows.values():
        r.validate()


def test_cache_gives_identical_counts_and_skips_decoding(small, dataset, tmp_path):
    plain = run(small, dataset)
    part = run(small, dataset, data=open_imagenet(dataset).take(limit=3), cache_dir=tmp_path / "c")
    assert (part.decoded, part.cache_hits) == (3, 0)
    first = run(small, dataset, cache_dir=tmp_path / "c")
    assert (first.decoded, first.cache_hits) == (5, 3)  # the subset's entries are reused
    second = run(small, dataset, cache_dir=tmp_path / "c", workers=2)
    assert (second.decoded, second.cache_hits) == (0, 8)
    assert counts(plain) == counts(first) == counts(second)
    assert second.runtimes["eager"].counts == plain.runtimes["eager"].counts


def test_workers_give_the_same_counts(small, dataset, small_result):
    assert counts(run(small, dataset, workers=2, batch_size=3)) == counts(small_result)


def test_unreadable_jpeg_names_the_file_or_is_skipped_and_marked(small, tmp_path):
    images = make_imagenet_folder(tmp_path / "d", CLASSES, 2)
    corrupt_jpeg(images[1].path, "truncate")
    with pytest.raises(DatasetError, match=f"cannot read image .*{images[1].file_name}.*--skip-unreadable"):
        run(small, tmp_path / "d")
    result = run(small, tmp_path / "d", skip_unreadable=True, workers=2)
    assert result.images == 3 and not result.complete
    assert result.unreadable_files == [f"{images[1].wnid}/{images[1].file_name}"]
    metrics = to_records(result)[0].metrics
    assert metrics["unreadable"] == 1 and metrics["complete"] is False and metrics["images"] == 3


def test_a_count_that_does_not_add_up_is_refused(small, dataset, monkeypatch):
    real_loader = harness.make_loader

    def drop_last_batch(*args, **kwargs):
        return list(real_loader(*args, **kwargs))[:-1]

    monkeypatch.setattr(harness, "make_loader", drop_last_batch)
    with pytest.raises(DatasetError, match="evaluated 6 images .* dataset has 8: refusing to report"):
        run(small, dataset, batch_size=2)


class _ThreadGroup:
    """Two ranks in threads of one process: ``gather`` is a real all-gather between them."""

    def __init__(self, world):
        self.world, self.slots, self.barrier = world, [None] * world, threading.Barrier(world)

    def rank(self, r):
        group = self

        class Rank(Distributed):
            def gather(self, obj):
                group.slots[r] = obj
                group.barrier.wait(60)
                return list(group.slots)

        return Rank(r, group.world)


def test_sharded_ranks_total_the_single_process_counts(small, dataset):
    single = run(small, dataset, runners={"eager": eager(small), "swap": SwapRunner(small)})
    assert [len(Distributed(r, 3).shard(8)) for r in range(3)] == [2, 3, 3]
    assert sorted(i for r in range(3) for i in Distributed(r, 3).shard(8)) == list(range(8))
    group, out = _ThreadGroup(2), {}

    def rank(r):
        out[r] = run(small, dataset, runners={"eager": eager(small), "swap": SwapRunner(small)},
                     dist=group.rank(r))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    for r in range(2):
        assert out[r].images == 8 and out[r].decoded == 8
        for label in ("eager", "swap"):
            assert out[r].runtimes[label].counts == single.runtimes[label].counts
        assert out[r].runtimes["swap"].flipped_ids == single.runtimes["swap"].flipped_ids


def test_real_labels_score_the_extra_labels(small, dataset, small_result, tmp_path):
    images = sorted(make_imagenet_folder(tmp_path / "unused", CLASSES, 4), key=lambda im: im.file_name)
    top1 = dict(zip(small_result.image_ids, small_result.predictions["eager"][:, 0].tolist()))
    # The first image also accepts its predicted class; the second has no ReaL label at all.
    first, second = images[0], images[1]
    write_real_labels(tmp_path / "real.json", images, {first.file_name: [top1[f"{first.wnid}/{first.file_name}"]],
                                                       second.file_name: []})
    real = (json.loads((tmp_path / "real.json").read_text()), "test")
    result = run(small, dataset, real=real, per_class=True)
    r = result.runtimes["eager"]
    assert r.real.images == 7
    assert r.real.top1_correct == 1 + sum(top1[f"{im.wnid}/{im.file_name}"] == im.class_index for im in images[2:])
    assert {c["class_index"]: c["images"] for c in r.per_class} == {5: 4, 900: 4}
    assert sum(c["top1_correct"] for c in r.per_class) == r.counts.top1_correct


def test_gate_failures_name_the_runtime(small, dataset):
    result = run(small, dataset, runners={"eager": eager(small), "swap": SwapRunner(small)})
    drop = result.runtimes["eager"].counts.top1_pct - result.runtimes["swap"].counts.top1_pct
    assert drop != 0
    failed = gate_failures(result, max_top1_drop=min(drop, 0) - 1, min_relative=None)
    assert [(f["runtime"], f["gate"]) for f in failed] == [("swap", "max-top1-drop")]
    assert gate_failures(result, max_top1_drop=abs(drop) + 1, min_relative=0.0) == []


def test_validate_model_records_every_runtime_and_the_ones_that_could_not_open(spec, dataset, small_result, store,
                                                                             tmp_path, monkeypatch):
    monkeypatch.setattr(perfkit.backends, "open_runner", fake_open())
    options = EvalOptions(transform=spec.preprocess.with_overrides(resize_size=72, crop_size=64, mean=None),
                          out_dir=tmp_path / "out")
    done = validate_model(spec, open_imagenet(dataset), ["aoti", "onnx", "onnx"], Context(), options=options)
    # Eager is opened first, as the reference; the runtime that could not open is kept, not raised.
    assert list(done.result.runtimes) == ["eager", "onnx"]
    assert [(f.kind, f.where.runtime) for f in done.open_failures] == [("accuracy", "aoti")]
    assert counts(done.result) == counts(small_result)  # the overrides reached the pass
    assert store.records() == []  # measuring writes nothing: the caller records
    with recording(store) as rec:
        rec.add(done.result)
        rec.add_all(done.open_failures)
    recs = {r.runtime: r for r in store.records(rec.run_id, kind="accuracy")}
    assert set(recs) == {"eager", "onnx", "aoti"} and len(store.records(rec.run_id, kind="accuracy")) == 3
    assert [recs[k].status for k in ("eager", "onnx", "aoti")] == ["ok", "ok", "error"]
    assert store.get_run(rec.run_id)["status"] == "failed"  # a runtime that could not open fails the run
    eager_m, onnx, aoti = recs["eager"].metrics, recs["onnx"].metrics, recs["aoti"]
    assert (eager_m["images"], eager_m["top1_correct"], eager_m["top5_correct"]) == counts(small_result)
    assert eager_m["transform_overrides"] == ["crop_size", "resize_size"] and eager_m["transform"]["crop_size"] == 64
    assert onnx["flips_vs_eager"] == len(done.result.runtimes["onnx"].flipped_ids) > 0
    assert Path(onnx["flipped_ids_file"]).parent == tmp_path / "out"
    assert "not wired" in aoti.error and (aoti.precision, aoti.device) == ("fp32", "cpu")
    assert aoti.weights == spec.weights.identity == recs["eager"].weights
    # a user's checkpoint: its own name (the architecture and the identity's prefix), never the zoo's resnet18
    assert aoti.model == recs["eager"].model == spec.name == f"resnet18@{spec.identity[:8]}" and aoti.batch == recs["eager"].batch == 32
    # With a gate set, the runtime that could not open fails it; without one, nothing fails.
    assert [(f["runtime"], f["gate"]) for f in done.gate_failures(max_top1_drop=100.0)] == [("aoti", "ran")]
    assert done.gate_failures() == []


def test_validate_model_measures_and_records_nothing(small, dataset, store):
    done = validate_model(small, open_imagenet(dataset).take(limit=2), ["eager"], Context())
    assert done.result.images == 2 and not done.open_failures and store.records() == []
    (record,) = to_records(done.result)
    record.validate()
    assert (record.runtime, record.metrics["images"], record.metrics["dataset_images"]) == ("eager", 2, 8)


def test_validate_model_refuses_a_model_that_is_not_an_imagenet_classifier(tiny_spec, dataset):
    from perfkit.errors import UsageError

    with pytest.raises(UsageError, match="10 classes"):
        validate_model(tiny_spec, open_imagenet(dataset), ["eager"], Context())


# -- the command line ------------------------------------------------------------------------------------

def cli(*argv):
    from perfkit.cli import main

    return main([str(a) for a in argv])


def accuracy_rows(out: dict) -> dict:
    """``perfkit validate --json`` → runtime → the accuracy record (provenance columns + metrics)."""
    return {r["runtime"]: {**r, **r["metrics"]} for r in out["records"] if r["kind"] == "accuracy"}


def test_cli_json_counts_records_and_flips_file(weights, dataset, capsys, monkeypatch):
    monkeypatch.setattr(perfkit.backends, "open_runner", fake_open())
    rc = cli("validate", "resnet18", "--weights", weights, "--data", dataset, "--resize", 72, "--crop", 64, "-f", "onnx", "--workers", 0,
             "--json", "--std", "0.229,0.224,0.225")
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    rows = accuracy_rows(out)
    assert set(rows) == {"eager", "onnx"}  # eager always runs first, as the reference
    assert all(r["status"] == "ok" and r["model"].startswith("resnet18@") and r["precision"] == "fp32" for r in rows.values())
    # An override is recorded even when it repeats the model's own value: it was asked for.
    assert rows["eager"]["transform_overrides"] == ["crop_size", "resize_size", "std"]
    assert rows["eager"]["transform"]["crop_size"] == 64 and rows["onnx"]["flips_vs_eager"] > 0
    flips_file = Path(rows["onnx"]["flipped_ids_file"])
    assert json.loads(flips_file.read_text())["flipped_ids"]["onnx"] == rows["onnx"]["flipped_ids"]
    (model,) = [r for r in out["records"] if r["kind"] == "model"]  # what was measured, recorded with the run
    assert model["model"] == rows["eager"]["model"] and model["metrics"]["random_weights"] is False
    from perfkit.store import Store

    with Store() as store:
        recs = store.records(kind="accuracy")
        assert store.get_run(out["run_id"])["status"] == "ok"
    assert sorted(r.runtime for r in recs) == ["eager", "onnx"] and all(r.status == "ok" for r in recs)
    assert {r.run_id for r in recs} == {out["run_id"]}


def test_cli_gate_exits_1_with_a_table(weights, dataset, capsys, monkeypatch):
    monkeypatch.setattr(perfkit.backends, "open_runner", fake_open())
    rc = cli("validate", "resnet18", "--weights", weights, "--data", dataset, "--resize", 72, "--crop", 64, "-f", "eager,onnx", "--workers", 0,
             "--min-relative", "1.5")
    captured = capsys.readouterr()
    assert rc == 1
    assert "accuracy gates FAILED" in captured.out and "min-relative" in captured.out
    from perfkit.store import Store

    with Store() as store:
        (run_,) = store.runs()
    assert run_["status"] == "failed"


def test_cli_unwired_runtime_is_an_error_record_not_a_crash(weights, dataset, capsys, monkeypatch):
    monkeypatch.setattr(perfkit.backends, "open_runner", fake_open(swap=(), refuse=_eager_only))
    rc = cli("validate", "resnet18", "--weights", weights, "--data", dataset, "--resize", 72, "--crop", 64, "-f", "eager,aoti", "--workers", 0,
             "--limit", 2, "--max-top1-drop", 1)
    captured = capsys.readouterr()
    assert rc == 1 and "not wired" in captured.out and "SUBSET: first 2" in captured.out


def test_ctrl_c_keeps_the_finished_model(weights, dataset, monkeypatch):
    from perfkit.store import Store

    real_evaluate, calls = harness.evaluate, []

    def second_is_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(harness, "evaluate", second_is_interrupted)
    rc = cli("validate", "resnet18", "resnet18", "--weights", weights, "--data", dataset, "--resize", 72, "--crop", 64, "--workers", 0,
             "--limit", 2)
    assert rc == 130
    with Store() as store:
        (run_,) = store.runs()
        assert run_["status"] == "interrupted"
        assert [r.metrics["images"] for r in store.records(kind="accuracy")] == [2]


def test_cli_bad_data_is_a_clean_error(weights, tmp_path, capsys):
    assert cli("validate", "resnet18", "--weights", weights, "--data", tmp_path / "missing") == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_batch_takes_one_number(weights, dataset, capsys):
    assert cli("validate", "resnet18", "--weights", weights, "--data", dataset, "-b", "1,8") == 2
    assert "one batch size" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_equal_single_process(weights, dataset, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    args = ["-m", "perfkit", "validate", "resnet18", "--weights", str(weights), "--data", str(dataset),
            "--resize", "72", "--crop", "64", "--workers", "0", "--json", "-b", "3", "-f", "eager"]

    def counts_of(cmd):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [(r["runtime"], r["images"], r["top1_correct"], r["top5_correct"], r["flipped_ids"])
                for r in accuracy_rows(json.loads(proc.stdout)).values()]

    single = counts_of([sys.executable, *args, "--store", str(tmp_path / "one.db")])
    double = counts_of([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", "29533", *args, "--store", str(tmp_path / "two.db")])
    assert double == single and single[0][1] == 8


def test_exported_runtimes_match_eager_counts(spec, dataset, reference, tmp_path):
    ctx = Context(artifacts=tmp_path / "artifacts")
    runners = {"eager": open_runner(spec, "eager", ctx)}
    for name in ("torchscript", "onnx"):
        runners[name] = open_runner(spec, name, ctx)
    result = run(spec, dataset, runners)
    for label in runners:
        assert counts(result, label) == (8, reference["top1"], reference["top5"]), label
    assert [r.runtime for r in to_records(result)] == ["eager", "torchscript", "onnx"]


@pytest.mark.slow
def test_aoti_matches_eager_counts(spec, dataset, reference, tmp_path):
    ctx = Context(artifacts=tmp_path / "a")
    runners = {"eager": open_runner(spec, "eager", ctx), "aoti": open_runner(spec, "aoti", ctx)}
    result = run(spec, dataset, runners)
    assert counts(result, "aoti") == (8, reference["top1"], reference["top5"])


def test_cli_a_requested_runtime_that_cannot_run_is_a_non_zero_exit(weights, dataset, capsys, monkeypatch):
    monkeypatch.setattr(perfkit.backends, "open_runner", fake_open(swap=(), refuse=_eager_only))
    rc = cli("validate", "resnet18", "--weights", weights, "--data", dataset, "--resize", 72, "--crop", 64,
             "-f", "eager,aoti", "--workers", 0, "--limit", 1)
    # A measurement that failed (not bad input): exit 1, the failure named in the table.
    assert rc == 1 and "aoti FAILED" in capsys.readouterr().out
    from perfkit.store import Store

    with Store() as store:
        assert sorted((r.runtime, r.status) for r in store.records(kind="accuracy")) == [("aoti", "error"),
                                                                                         ("eager", "ok")]
        assert store.get_run("latest")["status"] == "failed"


def test_zeroed_cache_is_refused_not_scored(small, dataset, tmp_path):
    """Zeroed cache contents once gave top-1 0 % "from cache" with exit 0."""
    from perfkit.data.cache import TensorCache

    run(small, dataset, cache_dir=tmp_path / "c")
    (tensors,) = (tmp_path / "c").rglob("tensors.u8")
    meta = json.loads((tensors.parent / "meta.json").read_text())
    with tensors.open("r+b") as fh:  # zero the data, keep the flags and checksums
        size = fh.seek(0, 2)
        offset = TensorCache(tmp_path / "c", meta["key"], meta["identity"], meta["count"], meta["shape"])._data_offset
        fh.seek(offset)
        fh.write(bytes(size - offset))
    for workers in (0, 2):  # raised from a DataLoader worker too, as the same one-line error
        with pytest.raises(DatasetError, match="does not match its checksum") as err:
            run(small, dataset, cache_dir=tmp_path / "c", workers=workers)
        assert "\n" not in str(err.value)

# -- precisions: one pass, every precision against eager fp32 ------------------------------------------

CALIBRATED = "calibrated on 8 validation images (seeded subset of --data, minmax)"


class LossyInt8Runner(EagerRunner):
    """A stand-in int8 runtime: fp32 compute that never predicts the two classes of the data (so it
    loses top-1 against eager fp32), reporting int8 and what it was calibrated on."""

    name = "onnx"

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **{**kwargs, "precision": "fp32"})
        self.precision = Precision.INT8

    @property
    def calibration(self):
        return CALIBRATED

    def _load(self):
        self.module = self.spec.build()

    def _infer(self, x):
        with torch.inference_mode():
            y = self.module(x)
            y[:, CLASSES] = -1e9
        return y


class CopyRunner(EagerRunner):
    """A stand-in fp32 'exported' runtime: eager's logits."""

    name = "onnx"


def open_by_precision(s, backend, ctx, *, precision="fp32", batch=None):
    if get(backend).name == "onnx":
        cls = LossyInt8Runner if str(precision) == "int8" else CopyRunner
        return cls(s, device=ctx.device, precision=precision, batch=batch)
    return REAL_OPEN(s, backend, ctx, precision=precision, batch=batch)


def test_one_pass_judges_every_precision_against_eager_fp32(small, dataset, monkeypatch, store):
    monkeypatch.setattr(perfkit.backends, "open_runner", open_by_precision)
    # eager is the fp32 reference of int8: asked for at int8 it is not run at int8, and not an error
    done = validate_model(small, open_imagenet(dataset), ["eager", "onnx"], Context(), precisions=["fp32", "int8"])
    assert list(done.result.runtimes) == ["eager", "onnx", "onnx int8"] and not done.open_failures
    with recording(store) as rec:
        rec.add(done.result)
    recs = {(r.runtime, r.precision): r.metrics for r in store.records(rec.run_id, kind="accuracy")}
    assert set(recs) == {("eager", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    eager, int8 = recs["eager", "fp32"], recs["onnx", "int8"]
    assert int8["top1_correct"] == 0 < eager["top1_correct"] and int8["reference"] == "eager fp32"
    assert int8["delta_top1_vs_eager_pp"] == -eager["top1_pct"] and int8["relative_top1"] == 0.0
    assert int8["flips_vs_eager"] >= eager["top1_correct"]  # every image eager got right, int8 gets wrong
    assert int8["calibration"] == CALIBRATED and "calibration" not in recs["onnx", "fp32"]
    assert recs["onnx", "fp32"]["relative_top1"] == 1.0
    # MLPerf's rule as a gate: int8 below 99% of eager fp32's top-1 fails it, fp32 does not
    failed = done.gate_failures(min_relative=0.99)
    assert [(f["runtime"], f["gate"], f["value"]) for f in failed] == [("onnx int8", "min-relative", 0.0)]


def test_validate_prints_both_precisions_and_exits_1_on_the_relative_gate(weights, dataset, monkeypatch, capsys):
    from perfkit.cli import main

    monkeypatch.setattr(perfkit.backends, "open_runner", open_by_precision)
    args = ["validate", "resnet18", "--weights", str(weights), "--data", str(dataset), "-f", "eager,onnx",
            "--precision", "fp32,int8", "--workers", "0", "--resize", "72", "--crop", "64"]
    assert main(args) == 0
    captured = capsys.readouterr()
    out, err = " ".join(captured.out.split()), " ".join(captured.err.split())
    assert "Δ fp32 eager" in out and "rel." in out and "int8" in out
    assert f"int8 (onnx): {CALIBRATED}" in out  # every table says what int8 was calibrated on
    assert f"int8: {CALIBRATED} (no --calib)" in err  # and the command announced it
    assert main([*args, "--min-relative", "0.99"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "accuracy gates FAILED" in out and "onnx int8" in out and "min-relative" in out
