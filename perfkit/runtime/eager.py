"""Eager PyTorch: the reference every exported runtime is compared with."""

from __future__ import annotations

import torch

from perfkit.formats import Format, Precision
from perfkit.runtime.base import Runner

_DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


class EagerRunner(Runner):
    format = Format.EAGER

    def __init__(self, spec, *, channels_last: bool = False, **kwargs):
        super().__init__(spec, **kwargs)
        if self.precision not in _DTYPES:
            raise ValueError(f"eager supports {', '.join(map(str, _DTYPES))}, not {self.precision}")
        self.channels_last = channels_last
        self.module: torch.nn.Module | None = None

    def _load(self) -> None:
        model = self.spec.build().to(self.device, dtype=_DTYPES[self.precision])
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.module = model

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(_DTYPES[self.precision])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.module(x).float()

    def _release(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
