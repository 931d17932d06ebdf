"""An AOTInductor package (``torch._inductor.aoti_compile_and_package``): ``perfkit <command> model.pt2``,
run by the aoti runtime only (``perfkit.zoo.sources.engines`` says what every engine shares).

What a package records, and what is read from it:

- ``archive_format`` ``pt2`` and compiled code under ``data/aotinductor/model/``: a ``.pt2`` of
  ``torch.export.save`` (a program, no compiled code) is refused with the advice to compile it.
- where it was compiled for, in its metadata (``*_metadata.json``): the device (``AOTI_DEVICE_KEY``),
  platform and machine, the CPU vector ISA Inductor compiled for (``AOTI_CPU_ISA``) and the GPU's compute
  capability. Refused naming both sides: another platform or machine, an ISA this CPU does not run (this
  CPU's are the ones Inductor itself finds usable here, ``cpu_vec_isa.valid_vec_isa_list``), another
  compute capability than this GPU's, a CUDA package on a machine without one.
- the PyTorch release that compiled it: NOT recorded (the archive and data versions are format
  versions). A package from another PyTorch fails when it loads, and that failure is the one line.
- the input it takes, in the input checks Inductor writes into the wrapper source it packages
  (``check_input_0``: the dimensions fixed at compile time; these checks run only with
  ``AOTI_RUNTIME_CHECK_INPUTS=1``, so a package fed another size would silently read the wrong memory:
  perfkit takes its size from here and refuses an ``--input-size`` that contradicts it). A fixed batch
  there restricts the sweep; the dynamic range's bounds are not trusted (Inductor writes narrower
  bounds than the export allowed). A package without its wrapper source needs ``--input-size``.

The number of classes is the width of one run's output on a zero input (loading a package takes a
second or two). ``perfkit summary`` refuses it: compiled code has no graph to count.
"""

from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path

import torch

from perfkit.errors import UsageError
from perfkit.zoo import sources as S
from perfkit.zoo.sources import engines as E
from perfkit.zoo.spec import AOTI_PACKAGE

MODEL = "model"  # the model name aoti_compile_and_package gives and aoti_load_package loads by default
_STATIC_DIM = re.compile(r'input_handles\[0\]: unmatched dim value at (\d+), "\s*<<\s*"expected: (\d+),')
_INPUTS = re.compile(r"check_input_(\d+)\s*\(")


def read(path: Path) -> E.EngineIO:
    archive, prefix, names = E.zip_names(path, FORMAT)
    with archive:
        kind = archive.read(f"{prefix}/archive_format").decode().strip() if f"{prefix}/archive_format" in names else ""
        folder = f"{prefix}/data/aotinductor/{MODEL}/"
        compiled = sorted(n for n in names if n.startswith(folder))
        if kind != "pt2" or not compiled:
            what = ("a torch.export program (torch.export.save), not compiled code" if kind == "pt2" else
                    "not a PT2 archive")
            raise UsageError(f"{path}: not an AOTInductor package: {what}; compile it with "
                             "torch._inductor.aoti_compile_and_package(program, package_path=...)")
        metas = [n for n in compiled if n.endswith("metadata.json")]
        metadata = json.loads(archive.read(metas[0])) if metas else {}
        wrapper = next((archive.read(n).decode(errors="replace") for n in compiled if n.endswith("wrapper.cpp")), "")
    device = str(metadata.get("AOTI_DEVICE_KEY") or "cpu")
    _check_built_for(path, metadata, device)
    dims, batch = _input_checks(wrapper, path)
    info = {"aoti": {"compiled_for": device, "package_metadata": metadata,
                     "torch_version": "not recorded by AOTInductor packages",
                     "input_from": "the package's input checks" if dims else "--input-size"}}
    return E.EngineIO(files=(path,), dims=dims, batch=batch, device=device, info=info)


def _check_built_for(path: Path, metadata: dict, device: str) -> None:
    """Refuse a package compiled for another platform, machine, CPU vector ISA or GPU, naming both."""
    built = (metadata.get("AOTI_PLATFORM"), metadata.get("AOTI_MACHINE"))
    here = (sys.platform, platform.machine())
    if all(built) and built != here:
        raise UsageError(f"{path} was compiled for {'/'.join(built)}, this machine is {'/'.join(here)}")
    if device == "cpu":
        isa = str(metadata.get("AOTI_CPU_ISA") or "").strip()
        usable = _usable_isas()
        if isa and isa.upper() not in ("INVALID_VEC_ISA", "") and isa.upper() not in usable:
            raise UsageError(f"{path} was compiled for CPUs with {isa}; this CPU runs {', '.join(usable) or 'none'} "
                             "(Inductor's vector ISAs): compile it on (or for) this CPU")
        return
    if not torch.cuda.is_available():
        raise UsageError(f"{path} was compiled for {device} (compute capability "
                         f"{metadata.get('AOTI_COMPUTE_CAPABILITY') or '?'}); this machine has no CUDA GPU")
    capability = "".join(map(str, torch.cuda.get_device_capability(0)))
    wanted = str(metadata.get("AOTI_COMPUTE_CAPABILITY") or "")
    if wanted and wanted != capability:
        raise UsageError(f"{path} was compiled for compute capability {wanted}; this {torch.cuda.get_device_name(0)} "
                         f"is {capability}")


def _usable_isas() -> list[str]:
    from torch._inductor import cpu_vec_isa

    return [str(isa).upper() for isa in cpu_vec_isa.valid_vec_isa_list()]


def _input_checks(wrapper: str, path: Path) -> tuple[tuple | None, tuple[int, int] | None]:
    """C, H, W and a fixed batch from the wrapper's input checks (None where it fixes none)."""
    if not wrapper:
        return None, None
    inputs = {int(i) for i in _INPUTS.findall(wrapper)}
    if len(inputs) > 1:
        raise UsageError(f"{path}: {E.NEEDS}; the package takes {len(inputs)} inputs")
    fixed = {int(d): int(v) for d, v in _STATIC_DIM.findall(wrapper)}
    if any(d > 3 for d in fixed):
        raise UsageError(f"{path}: {E.NEEDS}; its input has {max(fixed) + 1} dimensions")
    dims = tuple(fixed.get(d) for d in (1, 2, 3))
    batch = (fixed[0], fixed[0]) if 0 in fixed else None
    return (dims if any(d is not None for d in dims) else None), batch


def classes(path: Path, io: E.EngineIO, size: tuple[int, int, int]) -> int:
    """The logits' width: one run on a zero input of ``size`` (its fixed batch, else 1) where it was compiled for."""
    device = io.device or "cpu"
    batch = io.batch[0] if io.batch else 1
    try:
        model = torch._inductor.aoti_load_package(str(path), device_index=0 if device == "cuda" else -1)
        with torch.inference_mode():
            out = model(torch.zeros((batch, *size), device=device))
    except Exception as exc:  # a package from another PyTorch, or one that does not take this input
        raise UsageError(f"{path}: torch {torch.__version__} could not load and run it on a zero "
                         f"{batch}×{'×'.join(map(str, size))} input ({S.first_line(exc)}); a package runs in the "
                         "PyTorch that compiled it") from None
    out = out[0] if isinstance(out, (tuple, list)) and out else out
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != batch:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"{path}: {E.NEEDS}; on a {batch}×{'×'.join(map(str, size))} input it returned {got}")
    return int(out.shape[1])


FORMAT = E.Format(name=AOTI_PACKAGE, words="an AOTInductor package", short="AOTInductor", suffixes=(".pt2",),
                  runtime="aoti", read=read, classes=classes,
                  size_hint="the package does not record its input size (no wrapper source in it)")
SOURCE = E.source(FORMAT)
