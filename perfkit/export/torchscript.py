"""TorchScript: trace (default) or script, optionally frozen; saved, reloaded and checked.

TorchScript is deprecated in torch 2.14 but is still what many C++ servers (and perfkit's native
runner) load; the deprecation FutureWarnings end up in the manifest's warnings.
"""

from __future__ import annotations

import torch

from perfkit.errors import ArtifactError
from perfkit.export.artifact import ExportContext

OPTIONS = {"script": False, "freeze": False}
LIBRARIES = ("torch",)
MAIN_FILE = "model.ts"


def device_specific(options: dict) -> bool:
    # Freezing folds weights for the device it runs on (and optimize_for_inference is device-specific).
    return bool(options["freeze"])


def export(ctx: ExportContext) -> str:
    model = ctx.model()
    x = ctx.example_input()
    if ctx.options["script"]:
        module = torch.jit.script(model)
    else:
        # check_trace re-traces and compares; the reload check below compares with eager instead.
        module = torch.jit.trace(model, x, check_trace=False)
    if ctx.options["freeze"]:
        # torch.jit.optimize_for_inference is applied by the runner at load time: its MKLDNN/cuDNN
        # rewrites do not survive torch.jit.save (reloading fails with "required keyword attribute").
        module = torch.jit.freeze(module.eval())
    path = ctx.out_dir / MAIN_FILE
    torch.jit.save(module, str(path))
    reloaded = torch.jit.load(str(path), map_location=ctx.device)
    check_reload(model, reloaded, x, str(path))
    ctx.info["torchscript"] = {"method": "script" if ctx.options["script"] else "trace",
                               "frozen": bool(ctx.options["freeze"])}
    return MAIN_FILE


def first_output(out):
    """Scripted Inception-style models return a namedtuple (logits, aux); the logits come first."""
    return out[0] if isinstance(out, tuple) else out


def check_reload(model: torch.nn.Module, reloaded, x: torch.Tensor, where: str) -> None:
    """The reloaded module must give eager's logits on the example (a sanity check; `perfkit check`
    measures parity properly)."""
    want = model(x)
    got = first_output(reloaded(x))
    if got.shape != want.shape:
        raise ArtifactError(f"{where}: reloaded module returns shape {tuple(got.shape)}, eager {tuple(want.shape)}")
    diff = (got.float() - want.float()).abs().max().item()
    scale = want.float().abs().max().item()
    if not diff <= 1e-2 * max(1.0, scale):
        raise ArtifactError(f"{where}: reloaded module differs from eager by {diff:.3g} on the example input")
