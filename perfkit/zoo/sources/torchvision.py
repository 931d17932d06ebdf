"""torchvision classifiers: ``resnet50``, ``resnet50:IMAGENET1K_V2``, any ``torchvision.models`` classifier,
with its published weights, random weights, or the user's checkpoint and head (``--num-classes``)."""

from __future__ import annotations

import functools

from torch import nn

from perfkit.errors import UsageError
from perfkit.zoo import sources as S
from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import from_torchvision
from perfkit.zoo.spec import ModelSpec

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
NATIVE_CLASSES = 1000


@functools.cache
def list_torchvision() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _claims(request: S.Request) -> bool:
    return request.text is not None and request.text.partition(":")[0] in list_torchvision()


def _resolve(request: S.Request) -> ModelSpec:
    import torchvision

    arch, _, named = request.text.partition(":")
    weights = request.weights
    if named:
        if weights not in ("default", "auto"):
            raise UsageError(f"'{request.text}' names its weights already; drop --weights {weights} or the ':{named}' suffix")
        weights = named
    enum_cls = torchvision.models.get_model_weights(arch)
    chosen = enum_cls.DEFAULT
    num_classes = request.num_classes or NATIVE_CLASSES
    if weights not in ("random", "default", "auto") and not request.weights_file:
        try:
            chosen = enum_cls[weights.split(".")[-1]]
        except KeyError:
            names = ", ".join(m.name for m in enum_cls)
            raise UsageError(f"{arch} has no weights '{weights}'; available: {names}, DEFAULT, random, or a file path") from None
    pre = from_torchvision(chosen)
    native = (3, pre.crop_size, pre.crop_size)
    size = S.input_size(request, native)
    ref = _weights(request, weights, arch, chosen, num_classes, size)
    meta = chosen.meta
    metrics = next(iter(meta.get("_metrics", {}).values()), {})
    zoo = ref.kind in ("pretrained", "random") and num_classes == NATIVE_CLASSES
    reference = {
        "weights": str(chosen),
        "acc1_pct": metrics.get("acc@1"),
        "acc5_pct": metrics.get("acc@5"),
        "params": meta.get("num_params"),
        "gmacs": meta.get("_ops"),  # torchvision labels these GFLOPS; they are multiply-adds
        "file_mb": meta.get("_file_size"),
    } if zoo else {}
    spec = ModelSpec(name=arch, source=SOURCE.name, arch=arch, weights=ref, input_size=size, num_classes=num_classes,
                     preprocess=S.preprocess(pre, request, size, native), builder=construct, reference=reference)
    return S.named(spec, arch, user=ref.kind == "file", native_classes=NATIVE_CLASSES)


def _weights(request: S.Request, weights: str, arch: str, chosen, num_classes: int, size) -> W.WeightsRef:
    if request.weights_file:
        model = S.model_with_classes(arch, request, NATIVE_CLASSES)
        return S.checkpoint(request, lambda: _architecture(arch, num_classes, size, random=False), model,
                            _DROP_AUX_AFTER_LOAD.get(arch, ()))
    if request.ema:
        raise UsageError("--ema picks the EMA weights of a checkpoint file: pass --weights FILE")
    if weights == "random":
        return W.RANDOM
    if num_classes != NATIVE_CLASSES:
        raise UsageError(f"--num-classes {num_classes} gives {arch} a new head, which its published weights do not have: "
                         "pass --weights FILE (a checkpoint with that head) or --weights random")
    ref = W.WeightsRef("pretrained", str(chosen), str(chosen))
    if weights == "auto" and not W.hub_cache_path(chosen).is_file() and not W.network_available():
        return W.RANDOM
    return ref


def _architecture(arch: str, num_classes: int, input_size: tuple[int, int, int], *, random: bool) -> nn.Module:
    import torchvision

    kwargs = dict(_PRETRAINED_ARCH.get(arch, {}))
    kwargs.update(_sized_by_input(arch, input_size))
    if arch in _PRETRAINED_ARCH:
        kwargs["init_weights"] = random  # skip the slow init when weights follow
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)


def construct(spec: ModelSpec) -> nn.Module:
    import torchvision

    arch = spec.arch
    model = _architecture(arch, spec.num_classes, spec.input_size, random=spec.random_weights)
    aux = _DROP_AUX_AFTER_LOAD.get(arch, ())
    if spec.weights.kind == "pretrained":
        enum = torchvision.models.get_weight(spec.weights.value)
        W.apply_state(model, W.load_torchvision_state(enum), str(enum))
    elif spec.weights.kind == "file":
        S.load_file_weights(model, spec, aux)
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
    passes the spec's input size itself. It also lets ``--input-size`` count them at another resolution.
    """
    if arch.startswith("vit_"):
        return {"image_size": input_size[1]}
    if arch.startswith("maxvit"):
        return {"input_size": tuple(input_size[1:])}
    return {}


SOURCE = S.Source(
    name="torchvision",
    hint=f"a torchvision classifier ({', '.join(DEFAULT_MODELS)}, … `perfkit zoo --all` lists them), "
         "optionally :WEIGHTS (resnet50:IMAGENET1K_V2)",
    claims=_claims,
    resolve=_resolve,
)
