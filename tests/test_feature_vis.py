"""Feature visualisation: the optimised image drives its channel up; the model is never touched; cancel stops it."""

from __future__ import annotations

import pytest
import timm
import torch

from workbench.errors import WorkbenchError
from workbench.looking.feature_vis import Cancelled, visualise

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet10t", num_classes=3)


@pytest.mark.slow
def test_optimising_raises_each_channel_and_leaves_the_model_alone() -> None:
    from workbench.predict import load_predictor

    lite0 = load_predictor("efficientnet_lite0", pretrained=True)
    model, spec = lite0.module.train(), lite0.spec
    model.classifier.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = visualise(model, "blocks.2", [0, 5], spec.mean, spec.std, side=32, steps=1)
    after = visualise(model, "blocks.2", [0, 5], spec.mean, spec.std, side=32, steps=24)
    assert [p.channel for p in after] == [0, 5] and after[0].pixels.shape == (32, 32, 3)
    # (measured: channel 0 from 1.6 to 10.8, channel 5 from -7.1 to 0.9)
    assert all(a.activation > s.activation + 5 for a, s in zip(after, start)), (start, after)
    assert model.training and model.blocks[1][0].bn1.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.classifier.weight.requires_grad and model.conv_stem.weight.requires_grad
    assert model.conv_stem.weight.is_contiguous()  # not turned channels-last behind the user's back


def test_cancel_and_bad_input(model: torch.nn.Module) -> None:
    steps: list[int] = []

    def progress(step: int, total: int) -> bool:
        steps.append(step)
        return step < 3

    with pytest.raises(Cancelled, match="cancelled at step 3 of 50"):
        visualise(model, "layer1", [0], MEAN, STD, side=32, steps=50, progress=progress)
    assert steps == [1, 2, 3]
    with pytest.raises(WorkbenchError, match=r"channel 64 is out of range: 'layer1' has 64 channels \(0..63\)"):
        visualise(model, "layer1", [64], MEAN, STD, side=32, steps=2)
    with pytest.raises(WorkbenchError, match="did you mean layer1"):
        visualise(model, "layer11", [0], MEAN, STD, side=32, steps=2)
    with pytest.raises(WorkbenchError, match="between 16 and 512 pixels"):
        visualise(model, "layer1", [0], MEAN, STD, side=8)
