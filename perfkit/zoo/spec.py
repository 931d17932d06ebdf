"""``ModelSpec``: what to build, whatever the model's source (``perfkit.zoo.sources`` makes them)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import EvalTransform

# What a model is given as (``ModelSpec.form``): a module perfkit exports, an ONNX file, or an engine
# someone already built, named after its format (each runs in the runtimes that start from it).
PYTORCH, ONNX_FILE = "pytorch", "onnx"
OPENVINO_IR, TORCHSCRIPT_FILE, AOTI_PACKAGE, TENSORRT_ENGINE = "openvino-ir", "torchscript", "aoti", "tensorrt"


@dataclass(frozen=True)
class ModelSpec:
    """What to build. Frozen and picklable: it crosses process boundaries (profiling, torchrun).

    Attributes:
        name: what records key on: the zoo name (``resnet18``, ``timm:convnext_tiny``) for zoo and
            random weights; ``<arch>@<identity[:8]>`` for a model the user provides (a checkpoint, a
            non-default head, ``--model-code``, a file), so two checkpoints of one architecture never collide.
        source: the model source that made it (``perfkit.zoo.sources``: torchvision, timm, lenet5, code, onnx,
            and an engine's format).
        arch: what the source builds: the torchvision or timm architecture, ``lenet5``,
            ``/abs/path/net.py:build`` / ``package.module:build`` for a code model, or the ONNX file's
            absolute path.
        weights: which weights (pretrained, a file and its entry, random, or as the code built them).
        input_size: C, H, W of one input.
        num_classes: the logits' width.
        preprocess: the eval transform (from the weights, timm's config, or the user's flags).
        builder: the source's function that constructs the module (weights loaded); a module-level
            function, so the spec pickles by reference.
        label: the name for tables: ``resnet18 (random weights)``, ``resnet18 (finetuned.pth, 7 classes)``.
        content: what the model is where ``arch`` does not say it (a code model's file sha256 and
            callable, an ONNX file's sha256); part of the identity.
        options: the source's build keywords (a code model's ``num_classes`` when its callable
            takes it); part of the identity.
        reference: published metrics (zoo weights only).
        reference_runtime: the runtime parity and accuracy compare with (``eager``; ``onnx`` for an
            ONNX file: ONNX Runtime fp32 on the CPU running the file itself).
        form: what the model is given as: ``pytorch`` (a module ``builder`` makes), ``onnx`` (a
            file, ``arch``) or an engine's format (``openvino-ir``, ``torchscript``, ``aoti``,
            ``tensorrt``: the file ``arch``); a runtime runs the forms its ``Backend.starts_from`` lists.
        fixed_batch: the one batch size the model takes (an ONNX file whose batch dimension is a
            number); None: any batch.
        batch_limits: the smallest and largest batch an engine takes (an AOTInductor package's
            compiled range, a TensorRT engine's optimization profile); None: any batch.
        reference_model: what an engine (``engine``) is judged against, the model ``--reference``
            named: its fp32 logits in its own reference runtime are what parity and accuracy hold the
            engine to. None: the model is its own reference (``reference_runtime`` runs it), or an
            engine without one (nothing to compare with: accuracy against labels only).
    """

    name: str
    source: str
    arch: str
    weights: W.WeightsRef
    input_size: tuple[int, int, int]
    num_classes: int
    preprocess: EvalTransform
    builder: Callable[[ModelSpec], nn.Module] = field(compare=False, repr=False)
    label: str = ""
    content: str = ""
    options: tuple[tuple[str, object], ...] = ()
    reference: dict = field(default_factory=dict, hash=False, compare=False)
    reference_runtime: str = "eager"
    form: str = "pytorch"
    fixed_batch: int | None = None
    batch_limits: tuple[int, int] | None = None
    reference_model: ModelSpec | None = None

    @property
    def engine(self) -> bool:
        """An engine someone already built (OpenVINO IR, TorchScript, AOTInductor, TensorRT): it runs in
        its own runtime only and is judged against ``reference_model``."""
        return self.form not in (PYTORCH, ONNX_FILE)

    @property
    def batch_bounds(self) -> tuple[int, int] | None:
        """The batches the model takes, (min, max); None: any."""
        return (self.fixed_batch, self.fixed_batch) if self.fixed_batch is not None else self.batch_limits

    @property
    def random_weights(self) -> bool:
        return self.weights.is_random

    @property
    def identity(self) -> str:
        """16 hex characters of a content hash: source, architecture (or the code's hash), classes,
        input size and weights identity. The artifact cache and the manifest key on it."""
        parts = {"source": self.source, "arch": self.content or self.arch, "num_classes": self.num_classes,
                 "input_size": list(self.input_size), "weights": self.weights.identity,
                 "options": [list(kv) for kv in self.options]}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def build(self) -> nn.Module:
        """The model in eval mode with its weights loaded, on the CPU.

        Seeded before construction so random weights are identical in every process. A model given
        as a file (``form`` other than ``pytorch``) has no module: its builder says so (one line).
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(W.RANDOM_SEED)
            model = self.builder(self)
            if self.random_weights:
                calibrate_batchnorm(model, self)
        model.eval()
        return model

    def example_input(self, batch: int = 1, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *self.input_size), generator=g)


def calibrate_batchnorm(model: nn.Module, spec: ModelSpec, batch: int = 4) -> None:
    """Set BatchNorm running statistics from one seeded batch of random inputs.

    With freshly initialised statistics (mean 0, var 1) a random network's activations explode or
    vanish layer by layer: random inception_v3 gives logits around 1e11 and random googlenet gives
    the same logits for every input, so parity checks would either fail on rounding or pass
    vacuously. Calibrated statistics keep every layer near unit scale; the weights stay random.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    with torch.no_grad():
        model(spec.example_input(batch, seed=W.RANDOM_SEED + 1))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
