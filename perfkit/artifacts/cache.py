"""The artifact cache: find an exported artifact again, or export it and publish it atomically.

An artifact lives in its own folder under the artifacts directory::

    <artifacts>/<model>/<backend>-<precision>-<device>-<key12>/
        model.onnx, model.onnx.data, ...   what the exporter wrote
        manifest.json                      written last: its presence means the export finished

The cache key covers everything that changes the exported bytes: the model (its identity: source,
architecture or code hash, classes, input size, weights identity), backend, precision, batch range, the backend's export options, the device
where the artifact is compiled for one (AOTInductor, TensorRT: the GPU model and compute capability,
not just "cuda") and the versions of the libraries that did the export (the backend declares them).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import torch

from perfkit.artifacts.capture import capture_messages
from perfkit.artifacts.manifest import MANIFEST, MANIFEST_VERSION, combined_sha256, hash_files, verify
from perfkit.device import device_type, on_device, pin_tf32
from perfkit.env import fingerprint, library_versions
from perfkit.errors import ArtifactError, PerfkitError
from perfkit.portable import pid_alive
from perfkit.results import Where
from perfkit.vocab import DTYPES, BatchRange, Precision

if TYPE_CHECKING:  # annotations only: artifacts/ never imports backends/ (backends import artifacts)
    from perfkit.context import Context

INPUT_NAME = "input"  # one name for the input and output of every perfkit export (ONNX, TensorRT bindings)
OUTPUT_NAME = "logits"
BYTES_PER_PARAM = {Precision.FP32: 4, Precision.FP16: 2, Precision.BF16: 2, Precision.INT8: 1}


@dataclass(frozen=True)
class Artifact:
    """An exported model: ``path`` is the main file, ``manifest`` the dict stored beside it.

    ``cached`` tells whether this call found it in the cache; ``seconds`` is what this call took
    (the export, or the cache lookup and hash check).
    """

    path: Path
    manifest: dict
    cached: bool = False
    seconds: float = 0.0

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    @property
    def precision(self) -> Precision:
        return Precision(self.manifest["precision"])

    @property
    def device(self) -> str:
        return self.manifest["device"]

    @property
    def batch(self) -> BatchRange:
        return BatchRange(**self.manifest["batch"])

    @property
    def sha256(self) -> str:
        """One digest over every file of the artifact (ONNX external data included)."""
        return self.manifest["sha256"]

    @property
    def files(self) -> dict[str, dict]:
        return self.manifest["files"]

    @property
    def bytes(self) -> int:
        return sum(f["bytes"] for f in self.files.values())

    @property
    def export_seconds(self) -> float:
        return self.manifest["export_seconds"]

    @property
    def warnings(self) -> list[str]:
        return self.manifest["warnings"]


@dataclass(frozen=True)
class ExportResult:
    """One export or cache hit, for the record (kind export)."""

    where: Where
    artifact: Artifact


@dataclass
class ExportRequest:
    """What an exporter is asked to build, and where to write it."""

    spec: object  # perfkit.zoo.spec.ModelSpec
    precision: Precision
    batch: BatchRange
    device: str
    options: dict
    out_dir: Path
    ctx: "Context"
    info: dict = field(default_factory=dict)  # backend-specific manifest fields the exporter adds
    # the artifact's I/O names: perfkit's exports use its own; an ONNX file the user gave keeps the graph's,
    # and an artifact built from another one keeps that one's (``keep_names``)
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]

    @property
    def example_batch(self) -> int:
        """Batch of the example input: ≥ 2 where the range allows, so that exporters cannot
        specialise the batch dimension to 1 (the 0/1 specialisation of torch.export)."""
        return min(max(2, self.batch.opt), self.batch.max)

    @property
    def dynamic(self) -> bool:
        return self.batch.max > self.batch.min

    def example_input(self) -> torch.Tensor:
        return self.spec.example_input(self.example_batch).to(self.device)

    def keep_names(self, source: "Artifact") -> None:
        """This artifact is converted from ``source`` (OpenVINO IR, a TensorRT engine, a quantized
        graph): its input and output keep ``source``'s names."""
        self.input_name = source.manifest["inputs"][0]["name"]
        self.output_name = source.manifest["outputs"][0]["name"]

    @property
    def calibration(self):
        """The calibration set of an int8 export (``perfkit.data.calibration.CalibrationSet``)."""
        value = self.options.get("calibration")
        if value is None:
            raise ArtifactError(f"an int8 {self.spec.name} artifact needs calibration data: pass --calib DIR "
                                "(or --data), or --calib synthetic to time it without meaningful accuracy")
        return value

    def calibration_batches(self, batch: int = 8) -> list[torch.Tensor]:
        """The calibration inputs through the model's preprocessing, in equal batches (histogram
        calibrators need equal shapes): the largest size ≤ ``batch`` in the artifact's range that
        divides the set, or the range's minimum with the remainder left out."""
        x = self.calibration.tensors(self.spec.preprocess)
        n = x.shape[0]
        sizes = [b for b in range(min(batch, self.batch.max, n), self.batch.min - 1, -1) if n % b == 0]
        size = sizes[0] if sizes else self.batch.min
        return [x[i:i + size] for i in range(0, n - n % size, size)]

    def model(self) -> torch.nn.Module:
        """The eval model on the export device, computing in ``precision`` with float32 I/O.

        Also checks that the disk has room for the artifact before anything is written.
        """
        model = self.spec.build()
        check_free_space(self.out_dir, sum(p.numel() for p in model.parameters()) * BYTES_PER_PARAM[self.precision],
                         shown=self.ctx.artifacts)
        model = model.to(self.device)
        if self.precision is Precision.FP32 or self.precision not in DTYPES:
            return model
        return FixedIO(model.to(self.dtype), self.dtype)


class FixedIO(torch.nn.Module):
    """float32 in, float32 logits out, whatever the precision inside.

    Every artifact keeps the Runner contract (float32 NCHW → float32 logits); an fp16 ONNX graph
    built this way is what a strongly typed TensorRT network needs (fp16 inside, fp32 at the edges).
    """

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def check_free_space(folder: Path, weight_bytes: int, shown: Path | None = None) -> None:
    """Refuse to start an export that cannot fit in ``folder`` (a full disk mid-write leaves some
    exporters' messages without a path). The message names ``shown``: the artifacts folder the user
    chose, not the temporary folder that is deleted when the export fails."""
    need = int(weight_bytes * 1.25) + (16 << 20)  # weights + graph/code overhead
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ArtifactError(f"not enough free disk space in {shown or folder}: {free / 2**20:.0f} MiB free, the "
                            f"artifact needs about {need / 2**20:.0f} MiB; free some space or pass --artifacts DIR "
                            "elsewhere")


def save_through_python(path: Path, save: Callable[[IO[bytes]], object]) -> None:
    """``save(buffer)`` into memory, then the bytes to ``path`` with Python's file I/O.

    torch's zip writer (torch.jit.save, the AOTInductor .pt2 packager) finishes its file in a C++
    destructor: a full disk there throws from the destructor and aborts the whole process (exit 134, a
    C++ trace, the temporary folder and a "running" run left behind). Written from Python, the same full
    disk is an OSError (ENOSPC) that the cache turns into one line, cleaning up after it.
    """
    buffer = io.BytesIO()
    save(buffer)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())


# -- keys -----------------------------------------------------------------------------------------


def device_identity(device: str) -> str:
    """What a device-specific artifact is compiled for: ``cpu``, or the GPU model and its compute
    capability (an engine or AOTI package built on one GPU model must not be handed to another)."""
    if device_type(device) != "cuda":
        return "cpu"
    props = torch.cuda.get_device_properties(torch.device(device))
    return f"cuda-{props.name}-sm{props.major}{props.minor}".replace(" ", "_")


def cache_key(spec, backend, precision: Precision, batch: BatchRange, device: str, options: dict) -> dict:
    """Everything that changes the exported bytes; the cache folder is named by its hash."""
    from perfkit import __version__

    return {
        "model": spec.name, "identity": spec.identity, "source": spec.source, "input_size": list(spec.input_size),
        "num_classes": spec.num_classes, "weights": spec.weights.identity,
        "backend": backend.name, "precision": str(precision), "batch": batch.to_dict(),
        "device": device_identity(device) if backend.device_specific else "any",
        "options": options, "libraries": library_versions(backend.libraries_for(precision)), "perfkit": __version__,
    }


def key_dir(root: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    model = key["model"].replace(":", "_").replace("/", "_")
    device = "any" if key["device"] == "any" else key["device"].split("-")[0]
    return root / model / f"{key['backend']}-{key['precision']}-{device}-{digest[:12]}"


# -- the cache ------------------------------------------------------------------------------------


def ensure_artifact(spec, backend, ctx: "Context", *, precision: Precision | str = Precision.FP32,
                    batch: BatchRange = BatchRange()) -> Artifact:
    """The artifact of ``spec`` for ``backend``: served from the cache (hash-checked) or exported now.

    The backend's export options come from ``ctx.options`` (defaults filled in); ``ctx.force``
    exports again and replaces the cached copy only once the new one is complete.

    Raises:
        ArtifactError: a cached file is truncated or tampered with (the message names it), the
            disk is full, or the export failed in a way the exporter reported.
    """
    precision = Precision(precision)
    options = backend.export_options(ctx.options, precision)
    root = ctx.artifacts
    _check_root(root)
    _sweep_once(root)
    key = cache_key(spec, backend, precision, batch, ctx.device, backend.keyed(options))
    folder = key_dir(root, key)
    start = time.perf_counter()
    if folder.exists() and not ctx.force:
        manifest = verify(folder)
        if manifest["key"] != key:
            raise ArtifactError(f"{folder / MANIFEST} was written for another export (cache key mismatch); "
                                "export again with --force")
        return Artifact(folder / manifest["main_file"], manifest, cached=True, seconds=time.perf_counter() - start)
    manifest = _export(spec, backend, precision, batch, ctx, options, key, folder)
    return Artifact(folder / manifest["main_file"], manifest, cached=False, seconds=time.perf_counter() - start)


def load_artifact(folder: str | os.PathLike) -> Artifact:
    """An artifact from its folder, hash-checked."""
    start = time.perf_counter()
    manifest = verify(folder)
    return Artifact(Path(folder) / manifest["main_file"], manifest, cached=True, seconds=time.perf_counter() - start)


def _check_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise ArtifactError(f"--artifacts {root} is a file, not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot create the artifacts folder {root}: {exc.strerror or exc}") from None


def _export(spec, backend, precision, batch, ctx, options, key, folder: Path) -> dict:
    # Export into a private folder and rename it into place: a crashed or concurrent export never
    # leaves a half-written artifact where the cache would find it, and --force replaces the good
    # copy only once the new one is complete.
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder.parent)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    # Device-independent artifacts are always exported on the CPU, so that their one cache entry
    # never carries traces of the device that happened to export it first.
    export_device = ctx.device if backend.device_specific else "cpu"
    request = ExportRequest(spec=spec, precision=precision, batch=batch, device=export_device, options=options,
                            out_dir=tmp, ctx=ctx)
    try:
        pin_tf32(False)  # Inductor and TensorRT read the TF32 switches when they compile
        start = time.perf_counter()
        # The export device made current: TensorRT builds on (and Inductor compiles for) the current
        # CUDA device, which must be the one the cache key and the manifest name.
        with capture_messages() as messages, torch.no_grad(), on_device(export_device):
            main_file = backend.export(request)
        seconds = time.perf_counter() - start
        files = hash_files(tmp)
        text = json.dumps(_manifest(request, backend, key, main_file, files, seconds, messages), indent=2, default=str)
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        manifest = json.loads(text)  # the same dict a later cache hit reads (lists, not tuples)
        ours = _publish(tmp, folder)
    except BaseException as exc:
        full = _disk_full(exc, tmp)  # asked before the partial files are deleted
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise ArtifactError(f"the disk is full: exporting {backend.name} into {folder.parent} failed "
                                f"({type(exc).__name__}); free some space or pass --artifacts DIR elsewhere") from None
        raise
    return manifest if ours else verify(folder)


def _publish(tmp: Path, folder: Path) -> bool:
    """Move ``tmp`` into place; False when another process published the same artifact first."""
    if not folder.exists():
        try:
            tmp.rename(folder)
            return True
        except OSError:
            if not (folder / MANIFEST).is_file():
                raise
            shutil.rmtree(tmp)  # another process exported the same artifact first: keep theirs
            return False
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
    folder.rename(old)  # --force (or a broken copy): swap, then delete the old one
    try:
        tmp.rename(folder)
    except BaseException:
        old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return True


DISK_FULL_BYTES = 1 << 20  # less free than this right after a failed write: the disk filled up


def _disk_full(exc: BaseException, folder: Path) -> bool:
    if not isinstance(exc, Exception) or isinstance(exc, PerfkitError):  # an exporter's own verdict stands
        return False
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    if "No space left on device" in text or ("requested and" in text and "written" in text):
        return True
    # C++ writers report a full disk without errno or words for it (OpenVINO's save_model: "basic_ios::clear:
    # iostream error"): the filesystem itself says so while the partial files still fill it
    try:
        return shutil.disk_usage(folder).free < DISK_FULL_BYTES
    except OSError:
        return False


_SWEPT: set[Path] = set()  # artifacts folders this process has cleared of dead exports' temporaries


def _sweep_once(root: Path) -> None:
    """Stale temporaries of every model, once per process and artifacts folder (one directory walk of
    depth 2): a killed export of a model that is never exported again would otherwise stay forever."""
    key = root.resolve()
    if key in _SWEPT:
        return
    _SWEPT.add(key)
    for model_dir in root.iterdir():
        if model_dir.is_dir() and not model_dir.is_symlink():
            remove_stale_temporaries(model_dir)


def remove_stale_temporaries(model_dir: Path) -> list[Path]:
    """Delete ``*.tmp-<pid>`` / ``*.old-<pid>`` folders whose process is gone (a killed export)."""
    removed = []
    for path in model_dir.iterdir() if model_dir.is_dir() else ():
        stem, _, pid = path.name.rpartition(".")
        kind, _, number = pid.partition("-")
        if kind in ("tmp", "old") and number.isdigit() and stem and not pid_alive(int(number)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _manifest(req: ExportRequest, backend, key: dict, main_file: str, files: dict, seconds: float,
              messages: list[str]) -> dict:
    spec = req.spec
    env = fingerprint(req.device, backend.libraries)
    batch_dim = "batch" if req.dynamic else req.batch.min
    return {
        "manifest_version": MANIFEST_VERSION,
        "key": key,
        "backend": backend.name,
        "precision": str(req.precision),
        "device": key["device"] if key["device"] == "any" else device_type(req.device),
        "compiled_for": key["device"],
        "model": {
            "name": spec.name, "identity": spec.identity, "source": spec.source, "arch": spec.arch,
            "label": spec.label, "num_classes": spec.num_classes, "reference_runtime": spec.reference_runtime,
            "weights": {"kind": spec.weights.kind, "value": spec.weights.value, "identity": spec.weights.identity,
                        "entry": spec.weights.entry},
            "random_weights": spec.random_weights,
        },
        "inputs": [{"name": req.input_name, "shape": [batch_dim, *spec.input_size], "dtype": "float32"}],
        "outputs": [{"name": req.output_name, "shape": [batch_dim, spec.num_classes], "dtype": "float32"}],
        "batch": req.batch.to_dict(),
        "example_batch": req.example_batch,
        "preprocess": spec.preprocess.to_dict(),
        "options": backend.keyed(req.options),
        **({"calibration": req.calibration.manifest()} if req.precision is Precision.INT8 else {}),
        "main_file": main_file,
        "files": files,
        "sha256": combined_sha256(files),
        "libraries": env["libraries"],
        "env": {k: env.get(k) for k in ("hostname", "cpu_model", "gpu_name", "compute_capability", "cuda")},
        "export_seconds": seconds,
        "tf32": False,
        "warnings": messages,
        "created": time.time(),
        **req.info,
    }
