"""What the engine sources share: an engine someone already built — an OpenVINO IR (``model.xml``), a
TorchScript file (``.pt``/``.ts``), an AOTInductor package (``.pt2``), a TensorRT engine
(``.engine``/``.plan``) — given as ``perfkit <command> FILE``.

Each format is a source module of its own (``openvino_ir``, ``torchscript_file``, ``aoti_package``,
``tensorrt_engine``; one line each in ``SOURCE_MODULES``) declaring a ``Format``: what its files record
and how they are checked differ (an XML graph and its weights, a TorchScript or AOTInductor zip, a
TensorRT plan's header), what happens next does not, and lives here:

- **The file is the artifact.** The runtime the engine was built for (``Format.runtime``; a TorchScript
  file also runs in ``native``, the C++ runner of TorchScript) copies it byte for byte into its artifact
  folder (``copy_engine``: the manifest hashes it; it is checked to be the file the model was resolved
  from); nothing is exported and no other runtime runs it. It runs as it was built: its records carry
  precision fp32 (perfkit asks no exporter for another) and the manifest says what the format records
  about it (versions, where it was built, quantized operations).
- **Identity**: the sha256 of its files. Name: ``<file name>@<identity[:8]>``.
- **Input and output**: the names, sizes and batches the format records. ``--input-size`` is asked for
  only where it records none (a scripted TorchScript module, an AOTInductor package without its wrapper
  source) and no reference gives one; the number of classes, where the format does not say it, is the
  width of one run's output on a zero input.
- **Reference**: ``--reference SOURCE`` — an ONNX file, a zoo name or ``FILE.py:CALLABLE`` /
  ``package.module:CALLABLE`` — is what parity and accuracy hold the engine to: ONNX Runtime fp32 on the
  CPU for an ONNX file, eager PyTorch for a module (``ModelSpec.reference_model``). It is resolved with
  the command's model and preprocessing flags: the engine carries its own weights, so ``--weights``,
  ``--num-classes`` and ``--ema`` are the reference's; ``--input-size`` and the preprocessing flags apply
  to both (without ``--input-size``, the reference is built at the engine's input size). It must take
  the engine's input and give its number of classes. Without one, ``check`` is refused (nothing to
  compare with); ``validate`` counts against the labels and ``profile`` times.
- **Preprocessing**: the reference's (the engine is an export of it), else perfkit's stated default for
  your own model (ImageNet mean/std, resize = crop / 0.875, bilinear); the flags override both, recorded.
- **Built elsewhere**: an engine for other hardware or another runtime version is refused naming both;
  each format's module says what its format records.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from perfkit.errors import ArtifactError, UsageError
from perfkit.zoo import sources as S
from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import for_own_model
from perfkit.zoo.spec import ModelSpec

INPUT_NAME, OUTPUT_NAME = "input", "logits"  # perfkit's names, for formats whose tensors have none
NEEDS = "perfkit needs one float32 image input (N, C, H, W) and one logits output (N, classes)"
REFERENCE_KINDS = "an ONNX file or a PyTorch model (a zoo name, FILE.py:CALLABLE or package.module:CALLABLE)"


@dataclass(frozen=True)
class EngineIO:
    """What an engine's files say about it.

    Attributes:
        files: the engine's files, the main one first (an IR's ``.xml``, then its ``.bin``).
        input_name, output_name: its tensors' names (perfkit's where the format names none).
        dims: C, H, W of its input, each None where the format does not record it; None: nothing recorded.
        classes: the logits' width; None where the format does not record it (one run finds it).
        batch: the smallest and largest batch it takes; None: any.
        device: the device type it was compiled for (an AOTInductor package's); None: any it runs on.
        info: manifest sections: what the format records (versions, where it was built).
    """

    files: tuple[Path, ...]
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    dims: tuple[int | None, int | None, int | None] | None = None
    classes: int | None = None
    batch: tuple[int, int] | None = None
    device: str | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Format:
    """One engine format.

    Attributes:
        name: the source's name, and ``ModelSpec.form`` of its specs (what ``Backend.starts_from`` lists).
        words: the format in words (``an OpenVINO IR``), short: for labels (``OpenVINO IR``).
        suffixes: the file names it claims.
        runtime: the runtime it runs in.
        read: the file → what it records, after checking it (a UsageError naming the file otherwise;
            refused there too: an engine built for other hardware or another runtime version).
        classes: ``(path, io, size) → classes`` by one run on a zero input, for formats that do not
            record them; its failure (a wrong ``--input-size``) is a UsageError naming the file.
        size_hint: why the flag is needed where the format records no input size.
    """

    name: str
    words: str
    short: str
    suffixes: tuple[str, ...]
    runtime: str
    read: Callable[[Path], EngineIO]
    classes: Callable[[Path, EngineIO, tuple[int, int, int]], int] | None = None
    size_hint: str = ""


_FORMATS: dict[str, Format] = {}


def source(fmt: Format) -> S.Source:
    """The model source of ``fmt`` (each format module's ``SOURCE``)."""
    _FORMATS[fmt.name] = fmt
    suffixes = "/".join(fmt.suffixes)
    return S.Source(name=fmt.name, hint=f"path/to/model{suffixes} ({fmt.words}, runs in {fmt.runtime} only; judged "
                                        "against --reference)",
                    claims=lambda request: _claims(fmt, request), resolve=lambda request: _resolve(fmt, request))


def format_of(spec: ModelSpec) -> Format:
    S.all_sources()  # loads the format modules (a spec unpickled in a measuring process names its format only)
    return _FORMATS[spec.form]


def _claims(fmt: Format, request: S.Request) -> bool:
    return request.model_code is None and request.text is not None and request.text.lower().endswith(fmt.suffixes)


def _resolve(fmt: Format, request: S.Request) -> ModelSpec:
    path = S.existing_file(request.text, f"file ({fmt.words})", f"{fmt.words} file")
    _flags_need_reference(request, path)
    io = fmt.read(path)
    reference = _reference(request, io, path)
    size = S.file_input_size(request, io.dims or (None, None, None), path, fixed_in="recorded in the file",
                             open_hint=fmt.size_hint or "it does not record its input size",
                             fallback=reference.input_size if reference else None)
    classes = io.classes if io.classes is not None else fmt.classes(path, io, size)
    if request.num_classes is not None and reference is None and request.num_classes != classes:
        raise UsageError(f"{path}: it outputs {classes} classes, not --num-classes {request.num_classes}")
    if reference is not None:
        _check_reference(reference, path, size, classes)
    sha = content_sha256(io.files)
    fixed = io.batch[0] if io.batch and io.batch[0] == io.batch[1] else None
    spec = ModelSpec(name=path.name, source=fmt.name, arch=str(path),
                     weights=W.WeightsRef("engine", str(path), f"{fmt.name}:{sha[:16]}"), input_size=size,
                     num_classes=classes, builder=construct, content=f"sha256:{sha}", form=fmt.name,
                     preprocess=reference.preprocess if reference else S.preprocess(for_own_model(size), request, size),
                     reference_runtime=reference.reference_runtime if reference else "", fixed_batch=fixed,
                     batch_limits=None if fixed else io.batch, reference_model=reference)
    return replace(spec, name=f"{path.name}@{spec.identity[:8]}", label=f"{path.name} ({fmt.short}, {classes} classes)")


def _flags_need_reference(request: S.Request, path: Path) -> None:
    """An engine carries its own weights: the weight flags belong to the model ``--reference`` names."""
    if request.reference is not None:
        return
    given = [flag for flag, on in (("--weights " + request.weights, request.weights_file or request.weights not in
                                    ("default", "auto")), ("--ema", request.ema)) if on]
    if given:
        raise UsageError(f"{path} carries its own weights: {' and '.join(given)} would be the weights of the model "
                         "--reference names (pass --reference, or drop them)")


def reference_request(request: S.Request, size: tuple[int, int, int] | None) -> S.Request:
    """The request of ``--reference``: an ONNX file, a zoo name, or code (``FILE.py:CALLABLE``,
    ``package.module:CALLABLE``), with the command's other flags; at ``size`` when ``--input-size`` is
    not given (the engine's input)."""
    text = request.reference
    where, sep, _ = text.rpartition(":")
    code = bool(sep) and not text.lower().endswith(".onnx") and (
        where.endswith(".py") or "/" in where or os.sep in where or ("." in where and where != "timm"))
    return replace(request, text=None if code else text, model_code=text if code else None, reference=None,
                   input_size=request.input_size or size)


def _reference(request: S.Request, io: EngineIO, path: Path) -> ModelSpec | None:
    if request.reference is None:
        return None
    known = io.dims if io.dims is not None and None not in io.dims else None
    try:
        reference = S.resolve_request(reference_request(request, known))
    except UsageError as exc:
        raise UsageError(f"--reference {request.reference}: {exc}") from None
    if reference.engine:
        raise UsageError(f"--reference {request.reference} is {format_of(reference).words}: the reference is "
                         f"{REFERENCE_KINDS}, run by ONNX Runtime on the CPU or eager PyTorch")
    return reference


def _check_reference(reference: ModelSpec, path: Path, size: tuple[int, int, int], classes: int) -> None:
    if reference.input_size != size:
        raise UsageError(f"{path} takes {'×'.join(map(str, size))} inputs, its reference {reference.name} "
                         f"{'×'.join(map(str, reference.input_size))}: both are fed the same images (pass "
                         "--input-size C,H,W for both)")
    if reference.num_classes != classes:
        raise UsageError(f"{path} outputs {classes} classes, its reference {reference.name} "
                         f"{reference.num_classes}: pass --num-classes {classes} (and the reference's checkpoint "
                         "with --weights)")


def content_sha256(files: tuple[Path, ...]) -> str:
    """The main file's sha256; with more files (an IR's weights), the sha256 of each one's suffix and sha256
    (names left out: the same engine, wherever it lies and whatever it is called)."""
    if len(files) == 1:
        return W.sha256_of(files[0])
    lines = "\n".join(f"{path.suffix}\t{W.sha256_of(path)}" for path in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def zip_names(path: Path, fmt: Format) -> tuple[zipfile.ZipFile, str, set[str]]:
    """``path`` opened as the zip archive TorchScript and AOTInductor write, its top folder and its names."""
    try:
        archive = zipfile.ZipFile(path)
        names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise UsageError(f"{path}: not {fmt.words}: not a zip archive ({exc}; truncated, or another format)") from None
    prefix = next(iter(sorted(names)), "").split("/")[0]
    if not prefix:
        raise UsageError(f"{path}: not {fmt.words}: an empty archive")
    return archive, prefix, names


def construct(spec: ModelSpec):
    raise UsageError(f"{spec.name}: {format_of(spec).words} has no PyTorch module: it runs in its own runtime only")


# -- what the runtimes do with it ------------------------------------------------------------------


def check_precisions(spec: ModelSpec, precisions) -> None:
    """An engine runs as it was built: perfkit has no exporter to ask for another precision."""
    from perfkit.vocab import Precision

    other = [str(p) for p in map(Precision, precisions) if p is not Precision.FP32]
    if spec.engine and other:
        raise UsageError(f"{spec.name} runs as it was built ({format_of(spec).words}): --precision {','.join(other)} "
                         "asks perfkit's exporters for another precision, and there is nothing to export; pass "
                         "--precision fp32 (its manifest records what the engine itself computes in)")


def copy_engine(req, main_file: str) -> str:
    """The artifact of an engine: its files copied byte for byte into ``req.out_dir`` (the main one as
    ``main_file``, the others beside it under its stem) after checking that they are still what the
    model was resolved from; the manifest gets what the format records. Called by each runtime's export."""
    from perfkit.device import device_type
    from perfkit.vocab import Precision

    spec = req.spec
    fmt = format_of(spec)
    check_precisions(spec, [req.precision])
    path = Path(spec.arch)
    if not path.is_file():
        raise ArtifactError(f"{path} is gone since the model was resolved")
    io = fmt.read(path)
    if f"sha256:{content_sha256(io.files)}" != spec.content:
        raise ArtifactError(f"{path} changed since the model was resolved (its sha256 is not the one this run "
                            "recorded); run the command again")
    if io.device is not None and io.device != device_type(req.device):
        raise UsageError(f"{path} was compiled for {io.device}, not {device_type(req.device)}: pass --device "
                         f"{io.device}")
    stem = Path(main_file).stem
    for i, src in enumerate(io.files):
        shutil.copyfile(src, req.out_dir / (main_file if i == 0 else stem + src.suffix))
    req.input_name, req.output_name = io.input_name, io.output_name
    req.info.update(io.info)
    req.info["engine"] = {"format": fmt.name, "file": str(path), "content": spec.content,
                          "precision": f"as built ({Precision.FP32} is perfkit's axis: nothing was exported)"}
    return main_file
