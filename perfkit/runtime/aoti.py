"""AOTInductor runner: a ``.pt2`` package loaded with ``torch._inductor.aoti_load_package``."""

from __future__ import annotations

import torch

from perfkit.export.artifact import capture_messages
from perfkit.formats import Format
from perfkit.runtime.base import ArtifactRunner


class AotiRunner(ArtifactRunner):
    format = Format.AOTI

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
