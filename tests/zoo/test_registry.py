import pytest
import torch

from perfkit.errors import UsageError, WeightsError
from perfkit.zoo.registry import DEFAULT_MODELS, resolve
from perfkit.zoo.weights import load_state_file


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_default_models_match_published_params_and_preprocessing(name):
    import torchvision

    spec = resolve(name, "random")
    model = spec.build()
    assert sum(p.numel() for p in model.parameters()) == spec.reference["params"]
    # Preprocessing comes from the weights themselves.
    t = torchvision.models.get_weight(spec.reference["weights"]).transforms()
    assert spec.preprocess.crop_size == t.crop_size[0] and spec.preprocess.resize_size == t.resize_size[0]
    assert spec.preprocess.mean == tuple(t.mean) and spec.input_size == (3, t.crop_size[0], t.crop_size[0])


def test_named_weights_and_their_transform():
    spec = resolve("resnet50:IMAGENET1K_V2", "default")
    assert spec.weights.identity == "ResNet50_Weights.IMAGENET1K_V2"
    assert spec.preprocess.resize_size == 232 and spec.reference["acc1_pct"] == 80.858
    v1 = resolve("resnet50", "IMAGENET1K_V1")
    assert v1.preprocess.resize_size == 256 and v1.reference["acc1_pct"] == 76.13
    assert resolve("inception_v3", "random").preprocess.resize_size == 342


def test_bad_names_are_usage_errors():
    with pytest.raises(UsageError, match="unknown model"):
        resolve("resnet19")
    with pytest.raises(UsageError, match="no weights 'BOGUS'"):
        resolve("resnet18", "BOGUS")
    with pytest.raises(UsageError, match="names its weights"):
        resolve("resnet50:IMAGENET1K_V2", "random")


def test_offline_default_weights_error_names_cache_path_and_ways_out():
    spec = resolve("resnet18", "default")
    assert not spec.random_weights
    with pytest.raises(WeightsError) as exc:
        spec.build()
    msg = str(exc.value)
    assert "resnet18-f37072fd.pth" in msg and "--weights random" in msg and "--weights PATH" in msg
    # auto falls back to random when nothing is cached and there is no network
    assert resolve("resnet18", "auto").random_weights


def test_random_weights_are_identical_across_builds_and_marked():
    spec = resolve("resnet18", "random")
    a, b = spec.build(), spec.build()
    x = spec.example_input(2)
    assert torch.equal(a(x), b(x))
    assert "random weights" in spec.label


def test_weights_file_gives_identical_logits(tmp_path):
    spec = resolve("resnet18", "random")
    model = spec.build()
    with torch.no_grad():  # make them differ from the seeded init
        model.fc.weight.mul_(3.0)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded = resolve("resnet18", str(path))
    assert loaded.weights.kind == "file" and loaded.weights.identity.startswith("file:")
    x = spec.example_input(2)
    with torch.no_grad():
        assert torch.equal(loaded.build()(x), model(x))


def test_hub_cache_file_is_used_offline(tmp_path, monkeypatch):
    """The pretrained path: a file at the torch hub cache location is loaded without a network."""
    import torchvision

    from perfkit.zoo.weights import hub_cache_path

    spec = resolve("lenet5", "random")
    model = resolve("googlenet", "random").build()
    enum = torchvision.models.GoogLeNet_Weights.DEFAULT
    path = hub_cache_path(enum)
    path.parent.mkdir(parents=True)
    # The pretrained googlenet file carries aux heads; build a file shaped like it.
    full = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    full.load_state_dict(model.state_dict(), strict=False)
    torch.save(full.state_dict(), path)
    pre = resolve("googlenet", "default").build()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(pre(x), model(x))
    assert pre.aux1 is None and spec.num_classes == 10


def test_missing_and_corrupt_files_are_clear(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        resolve("resnet18", str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        resolve("resnet18", str(bad)).build()
    wrong = tmp_path / "wrong.pth"
    torch.save(resolve("lenet5", "random").build().state_dict(), wrong)
    with pytest.raises(WeightsError, match="do not fit ResNet"):
        resolve("resnet18", str(wrong)).build()


def test_lenet5_shapes():
    spec = resolve("lenet5")
    out = spec.build()(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and spec.random_weights


def test_a_directory_as_weights_path_says_so(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for call in (lambda: resolve("resnet18", str(folder)), lambda: load_state_file(folder)):
        with pytest.raises(WeightsError, match=f"weights path {folder} is a directory"):
            call()


def test_timm_pretrained_offline_fails_at_once_with_the_cache_path(monkeypatch):
    """No Hugging Face retries (about a minute) when there is no network: one error naming the cache folder,
    without a single call that could reach the Hub (checked by call, not by a wall-clock bound that a
    loaded machine could break)."""
    import huggingface_hub
    import timm

    from perfkit.zoo import weights as W

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("PERFKIT_OFFLINE")
    monkeypatch.setattr(W, "network_available", lambda host="", timeout=0: False)  # the probe found no network
    real = timm.create_model

    def create_model(name, pretrained=False, **kwargs):
        assert not pretrained, "tried to fetch pretrained weights from the Hub while offline"
        return real(name, pretrained=False, **kwargs)

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download from the Hub while offline")

    monkeypatch.setattr(timm, "create_model", create_model)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    monkeypatch.setattr(huggingface_hub.file_download, "hf_hub_download", no_download)
    spec = resolve("timm:test_resnet", "default")
    with pytest.raises(WeightsError) as err:
        spec.build()
    assert "models--timm--test_resnet.r160_in1k" in str(err.value) and "--weights random" in str(err.value)


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("0", False), ("", False)])
def test_hf_hub_offline_is_honoured(monkeypatch, value, offline):
    from perfkit.zoo import weights as W

    monkeypatch.delenv("PERFKIT_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert W.offline_by_setting() is offline


def test_timm_cached_weights_load_from_the_file_without_the_hub(tmp_path, monkeypatch):
    import timm

    from perfkit.zoo import registry

    model = timm.create_model("test_resnet", pretrained=False)
    torch.manual_seed(1)
    for p in model.parameters():
        p.data.normal_()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    monkeypatch.setattr(registry, "_timm_cached_file", lambda cfg: str(tmp_path / "pytorch_model.bin"))
    built = resolve("timm:test_resnet", "default").build()
    assert torch.equal(built.fc.weight, model.fc.weight)
