"""AOTInductor: ``torch.export`` with a dynamic batch, compiled by Inductor and packaged as a ``.pt2``.

Tuned as the Inductor docs recommend for inference: ``freezing`` (weights become constants, so
Inductor folds and pre-packs them; on CPU this is also what enables oneDNN weight pre-packing).
The package holds compiled code for one device, so the device (the GPU model and compute
capability on CUDA) is part of the cache key and the runner refuses a package built for another.
On CUDA the weights are allocated through torch's caching allocator
(``aot_inductor.weight_use_caching_allocator``), so the profiler's allocator peak includes them.
Compiling for CUDA needs a CUDA toolkit (``CUDA_HOME`` with nvcc and headers); its absence is a
one-line error.

int8 (CPU): PT2E static quantization with the x86 Inductor quantizer, which torch 2.14 no longer
ships (``torch.ao.quantization.quantize_pt2e`` is gone) and torchao does
(``torchao.quantization.pt2e``): export → ``prepare_pt2e`` (observers) → calibration batches →
``convert_pt2e`` (Q/DQ around float ops) → export again → AOTInductor, whose int8 passes (registered
by importing torchao's x86 quantizer) fuse Q/DQ + conv/linear into oneDNN int8 kernels. Three
things that fail silently or loudly otherwise, found on this torch:

- Inductor applies those fusions only while freezing, and freezes only with grad disabled: without
  both the package runs DQ → fp32 convolution → Q, no faster than fp32. int8 always freezes (the
  exporter runs under ``torch.no_grad``), and the package is checked for int8 kernels.
- The first export is strict: a non-strict export of torchvision's ResNet (one ReLU module called
  twice per block) makes the quantizer fail with "Input partition has more than one output node".
  A model that only exports non-strictly falls back to it (recorded).
- ``reduce_range=True`` (7-bit activations): without VNNI, u8×s8 products saturate in int16 and
  8-bit ranges cost EfficientNet-Lite1 five points of top-1 agreement; 7-bit is safe on any CPU.
"""

from __future__ import annotations

import os

import torch

from perfkit.artifacts import capture_messages, save_through_python
from perfkit.backends.base import (
    AOTI_PACKAGE, CALIBRATION, CPU_FLOAT, EXPORT, PYTORCH, SERIAL, ArtifactRunner, Backend, Option,
)
from perfkit.deps import require
from perfkit.errors import ArtifactError
from perfkit.vocab import Precision

MAIN_FILE = "model.pt2"


TOOLKIT_HELP = "install one and set CUDA_HOME, or use -f onnx/torchscript on this GPU"


def cuda_toolkit_problem() -> str | None:
    """Why Inductor cannot compile an AOTI package for CUDA here, or None.

    Inductor compiles the package's C++ wrapper against the CUDA toolkit's headers, found through
    torch's ``CUDA_HOME`` (``$CUDA_HOME``, else the folder above ``nvcc`` on PATH, else
    /usr/local/cuda): without them the compile fails deep inside Inductor.
    """
    from torch.utils import cpp_extension

    home = cpp_extension.CUDA_HOME
    if home is None:
        return "no CUDA toolkit found (CUDA_HOME unset, no nvcc on PATH, no /usr/local/cuda)"
    includes = [os.path.join(home, "include"), os.environ.get("CUDA_INC_PATH") or "", "/usr/include"]
    if not any(os.path.isfile(os.path.join(d, "cuda_runtime_api.h")) for d in includes if d):
        return f"the CUDA toolkit at CUDA_HOME={home} has no include/cuda_runtime_api.h"
    return None


def compile_options(options: dict, device: str) -> dict:
    configs = {"freezing": bool(options["inductor_freezing"])}
    if device.startswith("cuda"):
        configs["aot_inductor.weight_use_caching_allocator"] = True
    return configs


def export(req) -> str:
    if req.spec.form == AOTI_PACKAGE:  # a package someone compiled: the file itself (perfkit.zoo.sources.engines)
        from perfkit.zoo.sources.engines import copy_engine

        return copy_engine(req, MAIN_FILE)
    if req.device.startswith("cuda") and (problem := cuda_toolkit_problem()):
        raise ArtifactError(f"AOTInductor on CUDA needs a CUDA toolkit (nvcc and headers) to compile the package: "
                            f"{problem}; {TOOLKIT_HELP}")
    model = req.model()
    x = req.example_input()
    dynamic_shapes = ({0: torch.export.Dim("batch", min=req.batch.min, max=req.batch.max)},) if req.dynamic else None
    configs = compile_options(req.options, req.device)
    if req.precision is Precision.INT8:
        program = quantize_pt2e(req, model, x, dynamic_shapes)
        configs["freezing"] = True  # the int8 fusions run only while freezing (see the module docstring)
    else:
        program = torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes, strict=False)
    path = req.out_dir / MAIN_FILE
    try:
        save_through_python(path, lambda buffer: torch._inductor.aoti_compile_and_package(
            program, package_path=buffer, inductor_configs=configs))
    except Exception as exc:
        text = str(exc)
        if req.device.startswith("cuda") and ("CUDA_HOME" in text or "cuda_runtime" in text or "cuda.h" in text):
            first = next((line.strip() for line in text.splitlines() if "CUDA_HOME" in line or "cuda" in line), text)
            raise ArtifactError(f"AOTInductor could not compile for CUDA ({first[:200]}): the CUDA toolkit is "
                                f"missing or incomplete; {TOOLKIT_HELP}") from None
        raise
    req.info["aoti"] = {"compiled_for": torch.device(req.device).type, "inductor_configs": configs}
    if req.precision is Precision.INT8:
        req.info["quantization"]["int8_kernels"] = int8_kernels(path)
        if not req.info["quantization"]["int8_kernels"]:
            raise ArtifactError(f"AOTInductor compiled {req.spec.name} without a single int8 kernel (the package "
                                "would run DQ → fp32 → Q): Inductor's int8 fusions did not apply")
    return MAIN_FILE


INT8_KERNEL_NAMES = ("qconv", "qlinear", "onednn")


def quantize_pt2e(req, model, x, dynamic_shapes):
    """The calibrated, converted PT2E program of ``model`` (see the module docstring)."""
    if req.device != "cpu":
        raise ArtifactError("AOTInductor int8 uses the x86 Inductor quantizer: it builds for the CPU only")
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e")
    # Importing the quantizer also registers Inductor's int8 fusion passes (needed where it compiles).
    xiq = require("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer")
    quantizer = xiq.X86InductorQuantizer().set_global(
        xiq.get_default_x86_inductor_quantization_config(reduce_range=True))
    try:
        graph = torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes, strict=True).module()
        strict = True
    except Exception:  # some models only export non-strictly; ResNet-like ones need strict (docstring)
        graph = torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes, strict=False).module()
        strict = False
    prepared = pt2e.prepare_pt2e(graph, quantizer)
    batches = req.calibration_batches()
    for batch in batches:
        prepared(batch)
    converted = pt2e.convert_pt2e(prepared)
    req.info["quantization"] = {
        "tool": "torchao PT2E X86InductorQuantizer (static, per-channel weights)", "reduce_range": True,
        "strict_export": strict, "calibration_batches": [len(batches), int(batches[0].shape[0])],
        # the quantizer's own observers decide the ranges; --calib-method is ONNX Runtime's
        "method": "HistogramObserver activations, per-channel MinMax weights (the x86 quantizer's defaults)",
    }
    return torch.export.export(converted, (x,), dynamic_shapes=dynamic_shapes, strict=False)


def int8_kernels(package) -> dict[str, int]:
    """How often the generated code of ``package`` names each int8 kernel family (none: not fused)."""
    import zipfile

    with zipfile.ZipFile(package) as z:
        code = "".join(z.read(n).decode(errors="ignore") for n in z.namelist() if n.endswith((".cpp", ".h")))
    return {name: code.count(name) for name in INT8_KERNEL_NAMES if code.count(name)}


class AotiRunner(ArtifactRunner):
    name = "aoti"
    torch_runtime = True
    # Measured on torch 2.14: a Python thread makes no progress while another is inside an
    # AOTInductor call (its binding keeps the GIL), so k Python threads would only take turns.
    offline_mechanism = SERIAL
    offline_note = "AOTInductor's Python binding holds the GIL for the whole call, so concurrent callers take turns"

    def _load(self) -> None:
        index = self.device.index if self.device.index is not None else -1
        # Loading logs torch's C++-extension setup warnings (e.g. "No CUDA runtime is found" on a
        # CPU machine): kept on the runner instead of the terminal.
        with capture_messages() as self.load_messages:
            self.model = torch._inductor.aoti_load_package(str(self.artifact.path), device_index=index)

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x.contiguous())

    def _release(self) -> None:
        self.model = None

    def config(self) -> dict:
        return {**self.artifact.manifest.get("aoti", {}).get("inductor_configs", {}),
                "intra_op_threads": torch.get_num_threads()}


BACKEND = Backend(
    name="aoti",
    summary="AOTInductor (torch.export → Inductor → .pt2), frozen weights",
    runner=AotiRunner,
    export=export,
    options=(Option("inductor_freezing", True, "aoti: compile with Inductor freezing (weights as constants); "
                                               "--no-inductor-freezing keeps them as inputs (int8 always freezes)",
                    stage=EXPORT),
             CALIBRATION),
    precisions={"cpu": CPU_FLOAT | {Precision.INT8}, "cuda": CPU_FLOAT},
    probe=lambda device: cuda_toolkit_problem() if device.startswith("cuda") else None,
    device_specific=True,
    quant_libraries=("torchao",),
    # An int8 or bf16 package is another Inductor compile per model (45-120 s for the seed models on 2
    # busy cores): asked for with --precision, not part of `perfkit run`'s automatic plan on a CPU, whose
    # int8 and bf16 are ONNX Runtime's and OpenVINO's (on an AMX Xeon OpenVINO int8 measured 1.69 ms
    # for resnet18 against AOTInductor int8's 3.6 ms and bf16's 7.4 ms: issue 21).
    run_precisions={"cpu": frozenset({Precision.FP32}), "cuda": frozenset({Precision.FP32, Precision.FP16})},
    starts_from=frozenset({PYTORCH, AOTI_PACKAGE}),
    layer_profiler="perfkit.profiler.layers.torch_ops",
)
