"""Model names → ``ModelSpec``: torchvision builders, ``timm:<name>``, and ``lenet5``.

A spec carries everything needed to rebuild the exact same model in any process (architecture,
build options, weights identity), its eval preprocessing (from the weights) and its published
reference metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from perfkit.errors import UsageError, WeightsError
from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import CIFAR10, EvalTransform, from_timm, from_torchvision

# The classic comparison (ImageNet-val table and CIFAR-10 training table).
SEED_MODELS = ("alexnet", "vgg16", "resnet18", "googlenet")
DEFAULT_MODELS = ("alexnet", "vgg16", "resnet18", "resnet50", "googlenet", "inception_v3", "mobilenet_v2", "densenet121")

# torchvision builds these differently when pretrained weights are asked for; we always build the
# pretrained architecture so that random and pretrained runs measure the same network.
# Auxiliary heads: googlenet's pretrained model drops them, inception_v3's keeps them (and its
# published num_params counts them) — the "torchvision pretrained" params convention.
_PRETRAINED_ARCH = {
    "googlenet": {"transform_input": True, "aux_logits": True},
    "inception_v3": {"transform_input": True, "aux_logits": True},
}
_DROP_AUX_AFTER_LOAD = {"googlenet": ("aux1", "aux2")}


@dataclass(frozen=True)
class ModelSpec:
    """What to build. Frozen and picklable: it crosses process boundaries (profiling, torchrun)."""

    name: str  # canonical name as the user writes it, without the weights part
    source: str  # "torchvision", "timm" or "perfkit"
    weights: W.WeightsRef
    input_size: tuple[int, int, int]
    num_classes: int
    preprocess: EvalTransform
    reference: dict = field(default_factory=dict, hash=False, compare=False)  # published metrics

    @property
    def random_weights(self) -> bool:
        return self.weights.is_random

    @property
    def label(self) -> str:
        """Name for tables and reports; random weights are always marked."""
        return f"{self.name} (random weights)" if self.random_weights else self.name

    def build(self) -> nn.Module:
        """The model in eval mode with its weights loaded, on the CPU."""
        return build_model(self)

    def example_input(self, batch: int = 1, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *self.input_size), generator=g)


def list_torchvision() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def resolve(name: str, weights: str | None = "default") -> ModelSpec:
    """Turn ``resnet50``, ``resnet50:IMAGENET1K_V2``, ``timm:convnext_tiny`` or ``lenet5`` into a spec.

    ``weights``: ``default`` (pretrained), ``auto`` (pretrained if cached, else random),
    ``random``, a weights enum name, or a path to a state-dict file.
    """
    name = name.strip()
    weights = (weights or "default").strip()
    if name.startswith("timm:"):
        return _resolve_timm(name, weights)
    arch, _, named = name.partition(":")
    if named:
        if weights not in ("default", "auto"):
            raise UsageError(f"'{name}' names its weights already; drop --weights {weights} or the ':{named}' suffix")
        weights = named
    if arch == "lenet5":
        return _resolve_lenet5(weights)
    return _resolve_torchvision(arch, weights)


def _is_path(text: str) -> bool:
    return any(sep in text for sep in ("/", "\\")) or text.endswith((".pt", ".pth", ".bin", ".ckpt")) or Path(text).exists()


def _resolve_torchvision(arch: str, weights: str) -> ModelSpec:
    import torchvision

    if arch not in list_torchvision():
        known = ", ".join(DEFAULT_MODELS)
        raise UsageError(
            f"unknown model '{arch}'. Try one of: {known}, lenet5, timm:<name>, or any torchvision "
            f"classification model (`perfkit zoo --all` lists them)"
        )
    enum_cls = torchvision.models.get_model_weights(arch)
    default_enum = enum_cls.DEFAULT
    chosen = default_enum
    if weights == "random":
        ref = W.RANDOM
    elif weights in ("default", "auto"):
        ref = W.WeightsRef("pretrained", str(default_enum), str(default_enum))
        if weights == "auto" and not W.hub_cache_path(default_enum).is_file() and not W.network_available():
            ref = W.RANDOM
    elif _is_path(weights):
        ref = W.file_ref(weights)
    else:
        try:
            chosen = enum_cls[weights.split(".")[-1]]
        except KeyError:
            names = ", ".join(m.name for m in enum_cls)
            raise UsageError(f"{arch} has no weights '{weights}'; available: {names}, DEFAULT, random, or a file path") from None
        ref = W.WeightsRef("pretrained", str(chosen), str(chosen))
    pre = from_torchvision(chosen)
    meta = chosen.meta
    metrics = next(iter(meta.get("_metrics", {}).values()), {})
    reference = {
        "weights": str(chosen),
        "acc1_pct": metrics.get("acc@1"),
        "acc5_pct": metrics.get("acc@5"),
        "params": meta.get("num_params"),
        "gmacs": meta.get("_ops"),  # torchvision labels these GFLOPS; they are multiply-adds
        "file_mb": meta.get("_file_size"),
    }
    return ModelSpec(
        name=arch, source="torchvision", weights=ref, input_size=(3, pre.crop_size, pre.crop_size),
        num_classes=len(meta.get("categories") or []) or 1000, preprocess=pre, reference=reference,
    )


def _resolve_lenet5(weights: str) -> ModelSpec:
    if weights in ("default", "auto", "random"):
        ref = W.RANDOM  # LeNet-5 has no published pretrained weights
    elif _is_path(weights):
        ref = W.file_ref(weights)
    else:
        raise UsageError("lenet5 has no named weights: use random or a file path")
    return ModelSpec(name="lenet5", source="perfkit", weights=ref, input_size=(3, 32, 32), num_classes=10,
                     preprocess=CIFAR10, reference={})


def _resolve_timm(name: str, weights: str) -> ModelSpec:
    timm = _timm()
    arch = name[len("timm:"):]
    if not arch or not timm.is_model(arch):
        raise UsageError(f"timm has no model '{arch}' (see timm.list_models())")
    cfg = timm.models.get_pretrained_cfg(arch)
    cfg = cfg.to_dict() if cfg is not None else {}
    if weights == "random":
        ref = W.RANDOM
    elif weights in ("default", "auto"):
        tag = cfg.get("hf_hub_id") or arch
        ref = W.WeightsRef("pretrained", tag, f"timm:{tag}")
        if weights == "auto" and _timm_cached_file(cfg) is None and not W.network_available("huggingface.co"):
            ref = W.RANDOM
    elif _is_path(weights):
        ref = W.file_ref(weights)
    else:
        raise UsageError(f"timm weights must be default, random or a file path, got '{weights}'")
    input_size = tuple(cfg.get("input_size", (3, 224, 224)))
    return ModelSpec(name=name, source="timm", weights=ref, input_size=input_size,
                     num_classes=cfg.get("num_classes", 1000), preprocess=from_timm(cfg, arch), reference={})


def _timm():
    from perfkit.deps import require

    return require("timm")


def _timm_cached_file(cfg: dict) -> str | None:
    repo = cfg.get("hf_hub_id")
    if not repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, filename)
        if isinstance(hit, str):
            return hit
    return None


# -- building ------------------------------------------------------------------------------------


class LeNet5(nn.Module):
    """LeNet-5 as in the classic comparison table: 32×32 input, ReLU, max-pooling."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 32 → 28 → 14
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 14 → 10 → 5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model(spec: ModelSpec) -> nn.Module:
    # Seed before construction so random weights are identical in every process.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(W.RANDOM_SEED)
        model = _construct(spec)
        if spec.random_weights:
            _calibrate_batchnorm(model, spec)
    model.eval()
    return model


def _calibrate_batchnorm(model: nn.Module, spec: ModelSpec, batch: int = 4) -> None:
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


def _construct(spec: ModelSpec) -> nn.Module:
    if spec.source == "perfkit":
        model = LeNet5(spec.num_classes)
        if spec.weights.kind == "file":
            W.apply_state(model, W.load_state_file(spec.weights.value), spec.weights.value)
        return model
    if spec.source == "timm":
        return _construct_timm(spec)
    import torchvision

    arch = spec.name
    kwargs = dict(_PRETRAINED_ARCH.get(arch, {}))
    kwargs.update(_sized_by_input(arch, spec.input_size))
    if arch in _PRETRAINED_ARCH:
        kwargs["init_weights"] = spec.random_weights  # skip the slow init when weights follow
    model = torchvision.models.get_model(arch, weights=None, num_classes=spec.num_classes, **kwargs)
    aux = _DROP_AUX_AFTER_LOAD.get(arch, ())
    if spec.weights.kind == "pretrained":
        enum = torchvision.models.get_weight(spec.weights.value)
        W.apply_state(model, W.load_torchvision_state(enum), str(enum))
    elif spec.weights.kind == "file":
        W.apply_state(model, W.load_state_file(spec.weights.value), spec.weights.value, optional_prefixes=aux)
    if aux:
        model.aux_logits = False
        for head in aux:
            setattr(model, head, None)
    return model


def _sized_by_input(arch: str, input_size: tuple[int, int, int]) -> dict:
    """Builder arguments that size the architecture to its input.

    torchvision's ViT and MaxViT builders take the image size from the weights they load (a ViT's
    position embedding has one entry per patch: vit_h_14's default weights are at 518, the SWAG
    vit_b_16 at 384); perfkit builds with ``weights=None`` and loads the state afterwards, so it
    passes the spec's input size itself. It also lets ``perfkit summary --input-size`` count them at
    another resolution.
    """
    if arch.startswith("vit_"):
        return {"image_size": input_size[1]}
    if arch.startswith("maxvit"):
        return {"input_size": tuple(input_size[1:])}
    return {}


def _construct_timm(spec: ModelSpec) -> nn.Module:
    timm = _timm()
    arch = spec.name[len("timm:"):]
    if spec.weights.kind != "pretrained":
        model = timm.create_model(arch, pretrained=False)
        if spec.weights.kind == "file":
            W.apply_state(model, W.load_state_file(spec.weights.value), spec.weights.value)
        return model
    cfg = timm.models.get_pretrained_cfg(arch)
    cfg = cfg.to_dict() if cfg is not None else {}
    cached = _timm_cached_file(cfg)
    if cached is None and not W.network_available("huggingface.co"):
        raise WeightsError(_timm_missing(arch, cfg, "this machine is offline"))
    try:
        # A cached file is loaded from its path: no request to the Hub at all.
        overlay = {"file": cached} if cached else None
        return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay)
    except Exception as exc:
        raise WeightsError(_timm_missing(arch, cfg, f"loading failed: {type(exc).__name__}")) from None


def _timm_missing(arch: str, cfg: dict, why: str) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    repo = cfg.get("hf_hub_id")
    where = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" if repo else Path(HF_HUB_CACHE)
    return (f"pretrained weights for timm:{arch} are not in the Hugging Face cache and {why}.\n"
            f"  expected in: {where} (model.safetensors or pytorch_model.bin; $HF_HUB_CACHE moves it)\n"
            f"  pass --weights PATH to a state dict, or --weights random (accuracy is not meaningful)")
