"""Artifacts: an exported file, its manifest, and the cache that finds them again.

An artifact lives in its own folder under the artifacts directory::

    <artifacts>/<model>/<format>-<precision>-<device>-<key12>/
        model.onnx, model.onnx.data, ...   what the exporter wrote
        manifest.json                      written last: its presence means the export finished

The cache key covers everything that changes the exported bytes: the model (architecture, input size,
weights identity), format, precision, batch range, exporter options, the device where that matters
(AOTInductor, TensorRT) and the versions of the libraries that did the export. Every file's sha256 is
in the manifest and is checked whenever an artifact is served, so a truncated or edited file is
refused with its name instead of producing wrong numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch

from perfkit.errors import ArtifactError, UsageError
from perfkit.formats import BatchRange, Format, Precision
from perfkit.runtime.base import pin_tf32
from perfkit.zoo.registry import ModelSpec

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_ARTIFACTS = Path(".perfkit-artifacts")
INPUT_NAME = "input"  # one name for the input and output in every format (ONNX, TensorRT bindings)
OUTPUT_NAME = "logits"

_EXPORTERS = {
    Format.TORCHSCRIPT: "perfkit.export.torchscript",
    Format.ONNX: "perfkit.export.onnx",
    Format.AOTI: "perfkit.export.aoti",
    Format.TENSORRT: "perfkit.export.tensorrt",
}
_DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


def artifacts_dir(arg: str | os.PathLike | None = None) -> Path:
    """The artifacts folder: ``arg``, else ``$PERFKIT_ARTIFACTS``, else ``./.perfkit-artifacts``."""
    if arg is not None:
        return Path(arg).expanduser()
    env = os.environ.get("PERFKIT_ARTIFACTS")
    return Path(env).expanduser() if env else DEFAULT_ARTIFACTS


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
    def format(self) -> Format:
        return Format(self.manifest["format"])

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


@dataclass
class ExportContext:
    """What an exporter is asked to build, and where to write it."""

    spec: ModelSpec
    precision: Precision
    batch: BatchRange
    device: str
    options: dict
    out_dir: Path
    artifacts: Path
    info: dict = field(default_factory=dict)  # format-specific manifest fields the exporter adds

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]

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

    def model(self) -> torch.nn.Module:
        """The eval model on the export device, computing in ``precision`` with float32 I/O."""
        model = self.spec.build().to(self.device)
        if self.precision is Precision.FP32:
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


# -- exporter registry --------------------------------------------------------------------------


def exporter(fmt: Format | str) -> ModuleType:
    """The exporter module of ``fmt``: it defines OPTIONS, LIBRARIES, DEVICE_SPECIFIC and export()."""
    fmt = Format(fmt)
    if fmt not in _EXPORTERS:
        raise UsageError(f"{fmt} is not an exported format; choose from: {', '.join(map(str, _EXPORTERS))}")
    return importlib.import_module(_EXPORTERS[fmt])


def export_options(fmt: Format | str, options: dict) -> dict:
    """``options`` with the exporter's defaults filled in; an unknown option is a ``UsageError``."""
    known = exporter(fmt).OPTIONS
    unknown = set(options) - known.keys()
    if unknown:
        raise UsageError(f"{fmt} export has no option {', '.join(sorted(unknown))}; it takes: {', '.join(known) or 'none'}")
    return {**known, **{k: v for k, v in options.items() if v is not None}}


def cache_key(spec: ModelSpec, fmt: Format, precision: Precision, batch: BatchRange, device: str, options: dict) -> dict:
    """Everything that changes the exported bytes; the cache folder is named by its hash."""
    from importlib import metadata

    from perfkit import __version__

    mod = exporter(fmt)
    versions = {}
    for lib in mod.LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[lib] = metadata.version(lib)
    return {
        "model": spec.name, "source": spec.source, "input_size": list(spec.input_size),
        "num_classes": spec.num_classes, "weights": spec.weights.identity,
        "format": str(fmt), "precision": str(precision),
        "batch": {"min": batch.min, "opt": batch.opt, "max": batch.max},
        "device": _device_type(device) if mod.device_specific(options) else "any",
        "options": options, "libraries": versions, "perfkit": __version__,
    }


def _device_type(device: str) -> str:
    return torch.device(device).type


def _key_dir(root: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    model = key["model"].replace(":", "_").replace("/", "_")
    return root / model / f"{key['format']}-{key['precision']}-{key['device']}-{digest[:12]}"


# -- the cache ------------------------------------------------------------------------------------


def ensure_artifact(spec: ModelSpec, fmt: Format | str, *, precision: Precision | str = Precision.FP32,
                    artifacts: str | os.PathLike | None = None, batch: BatchRange = BatchRange(),
                    force: bool = False, device: str = "cpu", **options) -> Artifact:
    """The artifact of ``spec`` in ``fmt``: served from the cache (hash-checked) or exported now.

    Args:
        spec: the model.
        fmt: torchscript, onnx, aoti or tensorrt.
        precision: compute precision inside the artifact (its I/O stays float32).
        artifacts: artifacts folder (see ``artifacts_dir``).
        batch: batch sizes the artifact must accept (dynamic batch dimension / TensorRT profile).
        force: export again even when a cached artifact exists.
        device: where the artifact will run; part of the key only for device-specific formats.
        **options: exporter options (``script``, ``freeze``, ``opset``, ...).

    Raises:
        ArtifactError: a cached file is truncated or tampered with (the message names it).
        UsageError: an unknown option.
    """
    fmt, precision = Format(fmt), Precision(precision)
    if precision not in _DTYPES:
        raise UsageError(f"export supports {', '.join(map(str, _DTYPES))}, not {precision}")
    options = export_options(fmt, options)
    root = artifacts_dir(artifacts)
    key = cache_key(spec, fmt, precision, batch, device, options)
    folder = _key_dir(root, key)
    start = time.perf_counter()
    if force and folder.exists():
        shutil.rmtree(folder)
    if (folder / MANIFEST).is_file():
        manifest = verify(folder)
        if manifest["key"] != key:
            raise ArtifactError(f"{folder / MANIFEST} was written for another export (cache key mismatch); "
                                "delete the folder or export with --force")
        return Artifact(folder / manifest["main_file"], manifest, cached=True, seconds=time.perf_counter() - start)
    manifest = _export(spec, fmt, precision, batch, device, options, key, root, folder)
    return Artifact(folder / manifest["main_file"], manifest, cached=False, seconds=time.perf_counter() - start)


def _export(spec, fmt, precision, batch, device, options, key, root: Path, folder: Path) -> dict:
    # Export into a private folder and rename it into place: a crashed or concurrent export never
    # leaves a half-written artifact where the cache would find it.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    # Device-independent formats are always exported on the CPU, so that their one cache entry
    # never carries traces of the device that happened to export it first.
    export_device = device if exporter(fmt).device_specific(options) else "cpu"
    ctx = ExportContext(spec=spec, precision=precision, batch=batch, device=export_device, options=options,
                        out_dir=tmp, artifacts=root)
    try:
        # Inductor reads the TF32 switches when it compiles: pin them like every runtime does.
        pin_tf32(False)
        start = time.perf_counter()
        with capture_messages() as messages, torch.no_grad():
            main_file = exporter(fmt).export(ctx)
        seconds = time.perf_counter() - start
        files = hash_files(tmp)
        text = json.dumps(_manifest(ctx, fmt, key, main_file, files, seconds, messages), indent=2, default=str)
        (tmp / MANIFEST).write_text(text)
        manifest = json.loads(text)  # the same dict a later cache hit reads (lists, not tuples)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / MANIFEST).is_file():
                raise
            # Another process exported the same artifact first: keep theirs.
            shutil.rmtree(tmp)
            return verify(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _manifest(ctx: ExportContext, fmt: Format, key: dict, main_file: str, files: dict, seconds: float,
              messages: list[str]) -> dict:
    from perfkit.env import fingerprint

    spec = ctx.spec
    env = fingerprint()
    batch_dim = "batch" if ctx.dynamic else ctx.batch.min
    return {
        "manifest_version": MANIFEST_VERSION,
        "key": key,
        "format": str(fmt),
        "precision": str(ctx.precision),
        "device": key["device"],
        "model": {
            "name": spec.name, "source": spec.source, "label": spec.label, "num_classes": spec.num_classes,
            "weights": {"kind": spec.weights.kind, "value": spec.weights.value, "identity": spec.weights.identity},
            "random_weights": spec.random_weights,
        },
        "inputs": [{"name": INPUT_NAME, "shape": [batch_dim, *spec.input_size], "dtype": "float32"}],
        "outputs": [{"name": OUTPUT_NAME, "shape": [batch_dim, spec.num_classes], "dtype": "float32"}],
        "batch": {"min": ctx.batch.min, "opt": ctx.batch.opt, "max": ctx.batch.max},
        "example_batch": ctx.example_batch,
        "preprocess": spec.preprocess.to_dict(),
        "options": ctx.options,
        "main_file": main_file,
        "files": files,
        "sha256": combined_sha256(files),
        "libraries": env["libraries"],
        "env": {k: env.get(k) for k in ("hostname", "cpu_model", "gpu_name", "compute_capability", "cuda")},
        "export_seconds": seconds,
        "tf32": False,
        "warnings": messages,
        "created": time.time(),
        **ctx.info,
    }


def export_record(spec: ModelSpec, artifact: Artifact, device: str):
    """The store record of one export or cache hit (kind export)."""
    from perfkit.store.schema import Kind, Record

    return Record(
        kind=Kind.EXPORT, model=spec.name, runtime=str(artifact.format), precision=str(artifact.precision),
        batch=artifact.batch.max, weights=spec.weights.identity, device=device,
        metrics={
            "export_seconds": artifact.export_seconds, "artifact_bytes": artifact.bytes, "cached": artifact.cached,
            "artifact_path": str(artifact.path), "sha256": artifact.sha256, "warnings": artifact.warnings,
            "seconds": artifact.seconds, "batch_min": artifact.batch.min, "batch_opt": artifact.batch.opt,
            "batch_max": artifact.batch.max,
        },
    )


# -- integrity ------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(folder: Path) -> dict[str, dict]:
    """sha256 and size of every file in ``folder`` (recursively) except the manifest."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        out[path.relative_to(folder).as_posix()] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return out


def combined_sha256(files: dict[str, dict]) -> str:
    lines = "".join(f"{name}\t{info['sha256']}\n" for name, info in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"no manifest at {path}: not an artifact folder, or its export did not finish") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read artifact manifest {path}: {exc}") from None
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise ArtifactError(f"{path} has manifest version {manifest.get('manifest_version')}, this perfkit reads "
                            f"{MANIFEST_VERSION}; export again with --force")
    return manifest


def verify(folder: str | os.PathLike) -> dict:
    """Read the manifest of ``folder`` and check every file's size and sha256 against it.

    Raises:
        ArtifactError: naming the first file that is missing, truncated, or whose hash differs.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name, info in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"artifact file {path} is missing; export again with --force")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise ArtifactError(f"artifact file {path} is truncated or changed: {size} bytes, the manifest says "
                                f"{info['bytes']}; export again with --force")
        if sha256_file(path) != info["sha256"]:
            raise ArtifactError(f"artifact file {path} has been modified (sha256 differs from the manifest); "
                                "export again with --force")
    return manifest


def load_artifact(folder: str | os.PathLike) -> Artifact:
    """An artifact from its folder, hash-checked."""
    start = time.perf_counter()
    manifest = verify(folder)
    return Artifact(Path(folder) / manifest["main_file"], manifest, cached=True, seconds=time.perf_counter() - start)


# -- exporter chatter -----------------------------------------------------------------------------


class _ListHandler(logging.Handler):
    def __init__(self, out: list[str]):
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def capture_messages() -> Iterator[list[str]]:
    """Collect the warnings, warning-level log lines and prints an exporter emits, off the terminal.

    torch gives many of its loggers their own stderr handler (and no propagation), so those
    handlers are swapped out for the duration rather than relying on the root logger.
    """
    messages: list[str] = []
    handler = _ListHandler(messages)
    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger) and lg.handlers
    ]
    saved = [(lg, lg.handlers[:]) for lg in loggers]
    out = io.StringIO()
    try:
        for lg in loggers:
            lg.handlers = [handler]
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            warnings.simplefilter("always")
            yield messages
    finally:
        for lg, handlers in saved:
            lg.handlers = handlers
    messages.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    messages.extend(line.strip() for line in out.getvalue().splitlines() if line.strip())
    unique = list(dict.fromkeys(messages))  # the same warning once, in first-seen order
    messages[:] = unique


def export_and_record(store, run_id: str, spec: ModelSpec, fmt: Format | str, *,
                      precision: Precision | str = Precision.FP32, artifacts=None, batch: BatchRange = BatchRange(),
                      device: str = "cpu", force: bool = False, record_cache_hit: bool = True,
                      **options) -> tuple[Artifact | None, str | None]:
    """Export (or find in the cache) one artifact and record it in the store.

    Returns ``(artifact, None)``, or ``(None, error text)`` after recording the failure: one
    format's failure must not stop the others (``export``, ``check`` and ``run`` all go on).
    ``record_cache_hit=False`` records only real exports (``check`` after ``export`` in one run).
    """
    from perfkit.store.schema import Kind, Record

    try:
        artifact = ensure_artifact(spec, fmt, precision=precision, artifacts=artifacts, batch=batch,
                                   force=force, device=device, **options)
    except Exception as exc:
        store.add(Record.failure(Kind.EXPORT, spec.name, exc, runtime=str(Format(fmt)), precision=str(precision),
                                 batch=batch.max, weights=spec.weights.identity, device=device), run_id)
        return None, f"{type(exc).__name__}: {exc}"
    if record_cache_hit or not artifact.cached:
        store.add(export_record(spec, artifact, device), run_id)
    return artifact, None
