"""timm models: ``timm:<name>`` with timm's pretrained weights (from the Hugging Face cache), random
weights, or the user's checkpoint and head (``--num-classes``). The eval transform is the one timm's
own ``create_transform(**resolve_data_config(...))`` builds."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from perfkit.errors import UsageError, WeightsError
from perfkit.zoo import sources as S
from perfkit.zoo import weights as W
from perfkit.zoo.preprocess import from_timm
from perfkit.zoo.spec import ModelSpec

PREFIX = "timm:"


def _timm():
    from perfkit.deps import require

    return require("timm")


def _claims(request: S.Request) -> bool:
    return request.text is not None and request.text.startswith(PREFIX)


def pretrained_cfg(arch: str) -> dict:
    cfg = _timm().models.get_pretrained_cfg(arch)
    return cfg.to_dict() if cfg is not None else {}


def _resolve(request: S.Request) -> ModelSpec:
    timm = _timm()
    name = request.text
    arch = name[len(PREFIX):]
    if not arch or not timm.is_model(arch):
        raise UsageError(f"timm has no model '{arch}' (see timm.list_models())")
    cfg = pretrained_cfg(arch)
    native_classes = cfg.get("num_classes", 1000)
    num_classes = request.num_classes or native_classes
    native = tuple(cfg.get("input_size", (3, 224, 224)))
    size = S.input_size(request, native)
    # timm's own resolution of the eval transform: the pretrained config, at the --input-size asked for (a
    # --crop alone changes only the crop, as for every model)
    args = {"input_size": size} if request.input_size is not None else {}
    data_config = timm.data.resolve_data_config(args=args, pretrained_cfg=cfg)
    ref = _weights(request, cfg, arch, name, num_classes, native_classes)
    spec = ModelSpec(name=name, source=SOURCE.name, arch=arch, weights=ref, input_size=size, num_classes=num_classes,
                     preprocess=S.preprocess(from_timm(data_config, arch), request, size, native), builder=construct)
    return S.named(spec, name, user=ref.kind == "file", native_classes=native_classes)


def _weights(request: S.Request, cfg: dict, arch: str, name: str, num_classes: int, native_classes: int) -> W.WeightsRef:
    weights = request.weights
    if request.weights_file:
        model = S.model_with_classes(name, request, native_classes)
        return S.checkpoint(request, lambda: _timm().create_model(arch, pretrained=False, num_classes=num_classes), model)
    if request.ema:
        raise UsageError("--ema picks the EMA weights of a checkpoint file: pass --weights FILE")
    if weights == "random":
        return W.RANDOM
    if weights not in ("default", "auto"):
        raise UsageError(f"timm weights must be default, random or a file path, got '{weights}'")
    if num_classes != native_classes:
        raise UsageError(f"--num-classes {num_classes} gives {name} a new head, which its pretrained weights do not "
                         "have: pass --weights FILE (a checkpoint with that head) or --weights random")
    tag = cfg.get("hf_hub_id") or arch
    if weights == "auto" and _timm_cached_file(cfg) is None and not W.network_available("huggingface.co"):
        return W.RANDOM
    return W.WeightsRef("pretrained", tag, f"timm:{tag}")


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


def construct(spec: ModelSpec) -> nn.Module:
    timm = _timm()
    arch = spec.arch
    if spec.weights.kind != "pretrained":
        model = timm.create_model(arch, pretrained=False, num_classes=spec.num_classes)
        if spec.weights.kind == "file":
            S.load_file_weights(model, spec)
        return model
    cfg = pretrained_cfg(arch)
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


SOURCE = S.Source(name="timm", hint="timm:<name> (any timm model)", claims=_claims, resolve=_resolve)
