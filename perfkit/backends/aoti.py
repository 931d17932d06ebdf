"""AOTInductor: ``torch.export`` with a dynamic batch, compiled by Inductor and packaged as a ``.pt2``.

Tuned as the Inductor docs recommend for inference: ``freezing`` (weights become constants, so
Inductor folds and pre-packs them; on CPU this is also what enables oneDNN weight pre-packing).
The package holds compiled code for one device, so the device (the GPU model and compute
capability on CUDA) is part of the cache key and the runner refuses a package built for another.
On CUDA the weights are allocated through torch's caching allocator
(``aot_inductor.weight_use_caching_allocator``), so the profiler's allocator peak includes them.
Compiling for CUDA needs a CUDA toolkit (``CUDA_HOME`` with nvcc and headers); its absence is a
one-line error.
"""

from __future__ import annotations

import torch

from perfkit.artifacts import capture_messages
from perfkit.backends.base import CPU_FLOAT, EXPORT, SERIAL, ArtifactRunner, Backend, Option
from perfkit.errors import ArtifactError

MAIN_FILE = "model.pt2"


def cuda_toolkit() -> str | None:
    """The CUDA toolkit folder Inductor compiles against, or None."""
    from torch.utils import cpp_extension

    return cpp_extension.CUDA_HOME


def compile_options(options: dict, device: str) -> dict:
    configs = {"freezing": bool(options["inductor_freezing"])}
    if device.startswith("cuda"):
        configs["aot_inductor.weight_use_caching_allocator"] = True
    return configs


def export(req) -> str:
    if req.device.startswith("cuda") and cuda_toolkit() is None:
        raise ArtifactError("AOTInductor on CUDA needs a CUDA toolkit (nvcc and headers) to compile the package: "
                            "install one and set CUDA_HOME, or use -f onnx/torchscript on this GPU")
    model = req.model()
    x = req.example_input()
    dynamic_shapes = ({0: torch.export.Dim("batch", min=req.batch.min, max=req.batch.max)},) if req.dynamic else None
    program = torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes, strict=False)
    path = req.out_dir / MAIN_FILE
    configs = compile_options(req.options, req.device)
    torch._inductor.aoti_compile_and_package(program, package_path=str(path), inductor_configs=configs)
    req.info["aoti"] = {"compiled_for": torch.device(req.device).type, "inductor_configs": configs}
    return MAIN_FILE


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
                                               "--no-inductor-freezing keeps them as inputs", stage=EXPORT),),
    precisions={"cpu": CPU_FLOAT, "cuda": CPU_FLOAT},
    device_specific=True,
)
