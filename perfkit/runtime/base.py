"""The ``Runner`` interface: lifecycle in the base class, backend work in hooks.

``__enter__`` loads (session, engine, module), ``infer`` validates the input against what the
artifact accepts and then calls the backend, ``__exit__`` releases. Runners never time themselves:
only ``perfkit.profile`` times, calling ``synchronize`` around what it measures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch

from perfkit.errors import ArtifactError, InputError, PerfkitError
from perfkit.formats import BatchRange, Format, Precision
from perfkit.zoo.registry import ModelSpec

if TYPE_CHECKING:
    from perfkit.export.artifact import Artifact


def pin_tf32(enabled: bool = False) -> None:
    """Pin TF32 the same way for every runtime before comparing numbers (off = strict fp32)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    torch.set_float32_matmul_precision("high" if enabled else "highest")


class Runner(ABC):
    """Runs one model in one runtime at one precision on one device.

    ``infer`` takes float32 NCHW on ``self.device`` (or the CPU; it is moved) and returns float32
    logits ``(N, num_classes)`` on ``self.device``.
    """

    format: Format

    def __init__(self, spec: ModelSpec, *, precision: Precision = Precision.FP32, device: str = "cpu",
                 batch: BatchRange = BatchRange()):
        self.spec = spec
        self.precision = Precision(precision)
        self.device = torch.device(device)
        self.batch = batch
        self._active = False

    @property
    def name(self) -> str:
        return f"{self.format}/{self.precision}/{self.device.type}"

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> "Runner":
        if self._active:
            raise PerfkitError(f"runner {self.name} is already active")
        pin_tf32(False)
        self._load()
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self._active = False
        self._release()

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        if not self._active:
            raise PerfkitError(f"runner {self.name} used outside its `with` block")
        self.check_input(x)
        return self._infer(x.to(self.device, non_blocking=True))

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{self.name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dtype != torch.float32:
            raise InputError(f"{self.name}: expected float32 input, got {x.dtype}")
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.spec.input_size):
            raise InputError(
                f"{self.name}: expected input (N, {', '.join(map(str, self.spec.input_size))}), got {tuple(x.shape)}"
            )
        if not self.batch.contains(x.shape[0]):
            raise InputError(
                f"{self.name}: batch {x.shape[0]} is outside the artifact's range "
                f"{self.batch.min}..{self.batch.max} (re-export with a wider --max-batch)"
            )

    # -- hooks --------------------------------------------------------------------------------

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, x: torch.Tensor) -> torch.Tensor: ...

    def _release(self) -> None:
        pass


class ArtifactRunner(Runner):
    """A runner over an exported artifact: precision and batch range come from its manifest."""

    def __init__(self, spec: ModelSpec, artifact: "Artifact", *, device: str = "cpu"):
        super().__init__(spec, precision=artifact.precision, device=device, batch=artifact.batch)
        self.artifact = artifact
        model = artifact.manifest["model"]
        shape = tuple(artifact.manifest["inputs"][0]["shape"][1:])
        if (model["name"], model["weights"]["identity"], shape) != (spec.name, spec.weights.identity, spec.input_size):
            raise ArtifactError(
                f"{artifact.path} holds {model['name']} ({model['weights']['identity']}, input {shape}), "
                f"not {spec.name} ({spec.weights.identity}, input {spec.input_size})"
            )
        if artifact.device not in ("any", self.device.type):
            raise ArtifactError(f"{artifact.path} was compiled for {artifact.device}, it cannot run on {self.device}")
