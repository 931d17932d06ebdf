"""Eager PyTorch: the reference every other runtime is compared with.

Tuned as PyTorch's performance guide recommends for inference: ``eval()``, ``torch.inference_mode``,
and optionally channels-last memory format (``--channels-last``; often faster for convnets on GPUs
and with oneDNN on CPUs: measure it).
"""

from __future__ import annotations

import torch

from perfkit.vocab import DTYPES, Precision
from perfkit.backends.base import CPU_FLOAT, RUN, Backend, Option, Runner


class EagerRunner(Runner):
    name = "eager"
    torch_runtime = True

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        self.module: torch.nn.Module | None = None

    @property
    def channels_last(self) -> bool:
        return bool(self.options.get("channels_last"))

    def _load(self) -> None:
        model = self.spec.build().to(self.device, dtype=DTYPES[self.precision])
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.module = model

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(DTYPES[self.precision])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.module(x).float()

    def _release(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def config(self) -> dict:
        return {"inference_mode": True, "channels_last": self.channels_last, "intra_op_threads": torch.get_num_threads()}


BACKEND = Backend(
    name="eager",
    summary="eager PyTorch (the reference)",
    runner=EagerRunner,
    options=(Option("channels_last", False, "eager: channels-last memory format", stage=RUN),),
    precisions={"cpu": CPU_FLOAT, "cuda": CPU_FLOAT},
    # autocast needs no export: bf16 where the CPU accelerates it, fp16 on a GPU
    run_precisions={"cpu": frozenset({Precision.FP32, Precision.BF16}), "cuda": frozenset({Precision.FP32, Precision.FP16})},
    layer_profiler="perfkit.profiler.layers.torch_ops",
    reference=True,
)
