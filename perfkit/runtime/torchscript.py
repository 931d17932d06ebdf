"""TorchScript runner: ``torch.jit.load`` on the runner's device."""

from __future__ import annotations

import warnings

import torch

from perfkit.export.torchscript import first_output
from perfkit.formats import Format
from perfkit.runtime.base import ArtifactRunner


class TorchScriptRunner(ArtifactRunner):
    format = Format.TORCHSCRIPT

    def _load(self) -> None:
        with warnings.catch_warnings():
            # The deprecation FutureWarnings are recorded in the manifest at export time.
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(self.artifact.path), map_location=self.device)
            if self.artifact.manifest["options"]["freeze"]:
                # Not serialisable, so done at load (see perfkit.export.torchscript).
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
