"""TorchScript: traced (default) or scripted, saved device-independent; frozen and optimised at load.

Tuned as PyTorch's docs recommend for inference: the runner applies ``torch.jit.optimize_for_inference``
(which freezes the module first: weights folded in as constants, then conv/BN folding and the
MKLDNN/cuDNN rewrites) when it loads the artifact, like the native C++ runner does. Freezing is a
load-time step because ``optimize_for_inference``'s rewrites do not survive ``torch.jit.save``.

A TorchScript file someone saved (``ModelSpec.form == "torchscript"``) is not exported: its artifact is
the file itself, copied byte for byte (``perfkit.zoo.sources.engines``), loaded the same way.

TorchScript is deprecated in torch 2.14 but is still what many C++ servers (and perfkit's native
runner) load; the deprecation FutureWarnings end up in the manifest's warnings.
"""

from __future__ import annotations

import warnings

import torch

from perfkit.artifacts import save_through_python
from perfkit.backends.base import CPU_FLOAT, EXPORT, PYTORCH, RUN, TORCHSCRIPT_FILE, ArtifactRunner, Backend, Option
from perfkit.errors import ArtifactError
from perfkit.vocab import Precision

MAIN_FILE = "model.ts"


def export(req) -> str:
    if req.spec.form == TORCHSCRIPT_FILE:  # a TorchScript file someone saved: the file itself
        from perfkit.zoo.sources.engines import copy_engine

        return copy_engine(req, MAIN_FILE)
    model = req.model()
    x = req.example_input()
    if req.options["script"]:
        module = torch.jit.script(model)
    else:
        # check_trace re-traces and compares; the reload check below compares with eager instead.
        module = torch.jit.trace(model, x, check_trace=False)
    path = req.out_dir / MAIN_FILE
    save_through_python(path, lambda buffer: torch.jit.save(module, buffer))
    reloaded = torch.jit.load(str(path), map_location=req.device)
    check_reload(model, reloaded, x, f"{req.spec.name}'s TorchScript export")
    req.info["torchscript"] = {"method": "script" if req.options["script"] else "trace"}
    return MAIN_FILE


def first_output(out):
    """Scripted Inception-style models return a namedtuple (logits, aux); the logits come first."""
    return out[0] if isinstance(out, tuple) else out


def check_reload(model: torch.nn.Module, reloaded, x: torch.Tensor, where: str) -> None:
    """The reloaded module must give eager's logits on the example (a sanity check; `perfkit check`
    measures parity properly)."""
    want = model(x).float()
    got = first_output(reloaded(x)).float()
    if got.shape != want.shape:
        raise ArtifactError(f"{where}: reloaded module returns shape {tuple(got.shape)}, eager {tuple(want.shape)}")
    finite = torch.isfinite(want)
    if not torch.equal(torch.isfinite(got), finite):
        raise ArtifactError(f"{where}: the reloaded module gives NaN/Inf where eager does not, or the reverse")
    # where eager itself gives NaN/Inf (broken weights) the export is faithful; parity says what is wrong
    diff = (got - want)[finite].abs().max().item() if finite.any() else 0.0
    scale = want[finite].abs().max().item() if finite.any() else 0.0
    if not diff <= 1e-2 * max(1.0, scale):
        raise ArtifactError(f"{where}: reloaded module differs from eager by {diff:.3g} on the example input")


class TorchScriptRunner(ArtifactRunner):
    name = "torchscript"
    torch_runtime = True

    def _load(self) -> None:
        with warnings.catch_warnings():
            # The deprecation FutureWarnings are recorded in the manifest at export time.
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(self.artifact.path), map_location=self.device).eval()
            if self.options["optimize"]:
                module = torch.jit.optimize_for_inference(module)
        self.module = module
        # Scripted Inception warns on every call that it returns (logits, aux); first_output takes
        # the logits. Filtered once here rather than per call (infer sits inside timed loops).
        warnings.filterwarnings("ignore", message="Scripted Inception3 always returns", category=UserWarning)

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return first_output(self.module(x)).float()

    def _release(self) -> None:
        self.module = None

    def config(self) -> dict:
        return {"method": self.artifact.manifest["torchscript"]["method"], "frozen": self.options["optimize"],
                "optimize_for_inference": self.options["optimize"], "intra_op_threads": torch.get_num_threads()}


BACKEND = Backend(
    name="torchscript",
    summary="TorchScript (torch.jit.trace/script), frozen and optimize_for_inference at load",
    runner=TorchScriptRunner,
    export=export,
    options=(
        Option("script", False, "torchscript: torch.jit.script instead of trace", stage=EXPORT),
        Option("optimize", True, "torchscript: torch.jit.optimize_for_inference (freeze + fusions) when loaded; "
                                 "--no-optimize runs the module as saved", stage=RUN),
    ),
    precisions={"cpu": CPU_FLOAT, "cuda": CPU_FLOAT},
    # a traced bf16 graph runs eager's kernels: eager's bf16 row says what it would
    run_precisions={"cpu": frozenset({Precision.FP32}), "cuda": frozenset({Precision.FP32, Precision.FP16})},
    starts_from=frozenset({PYTORCH, TORCHSCRIPT_FILE}),
    layer_profiler="perfkit.profiler.layers.torch_ops",
)
