"""AOTInductor: ``torch.export`` with a dynamic batch, compiled and packaged as a ``.pt2``.

The package holds compiled code for one device type, so the device is part of the cache key. It is
loaded with ``torch._inductor.aoti_load_package``.
"""

from __future__ import annotations

import torch

from perfkit.export.artifact import ExportContext

OPTIONS: dict = {}
LIBRARIES = ("torch",)
MAIN_FILE = "model.pt2"


def device_specific(options: dict) -> bool:
    return True


def export(ctx: ExportContext) -> str:
    model = ctx.model()
    x = ctx.example_input()
    dynamic_shapes = ({0: torch.export.Dim("batch", min=ctx.batch.min, max=ctx.batch.max)},) if ctx.dynamic else None
    program = torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes, strict=False)
    path = ctx.out_dir / MAIN_FILE
    torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    ctx.info["aoti"] = {"compiled_for": torch.device(ctx.device).type}
    return MAIN_FILE
