"""config.json of two-head timm models (distilled DeiT, LeViT…) is what timm's save_for_hf writes,
so timm.create_model reloads the export with the same or another class count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from workbench.backbone import LoadRequest
from workbench.export import export_model
from workbench_plugins.timm_source import spec_from_timm

NAME, SIZE = "deit_tiny_distilled_patch16_224", 32


@pytest.mark.slow
def test_two_head_config_matches_save_for_hf_and_reloads(tmp_path: Path, monkeypatch) -> None:
    import timm
    from timm.models._hub import save_for_hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    model = timm.create_model(NAME, pretrained=False, num_classes=3, img_size=SIZE)
    with torch.no_grad():  # zero-initialised heads would make the reload check trivial
        for head in model.get_classifier():
            for p in head.parameters():
                p.normal_(0, 1.0)
    spec = spec_from_timm(model, LoadRequest(NAME, input_size=(3, SIZE, SIZE)), pretrained=False)
    assert spec.classifier == "head"
    export_model(model, spec, "safetensors", tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())

    save_for_hf(model, str(tmp_path / "hf"))
    theirs = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["num_classes"] == theirs["num_classes"] == 3
    assert config["pretrained_cfg"]["classifier"] == theirs["pretrained_cfg"]["classifier"] == ["head", "head_dist"]

    x = torch.randn(2, 3, SIZE, SIZE)
    overlay = dict(file=str(tmp_path / "out" / "model.safetensors"), **config["pretrained_cfg"])
    same = timm.create_model(NAME, pretrained=True, img_size=SIZE, pretrained_cfg_overlay=overlay).eval()
    with torch.no_grad():
        assert torch.equal(same(x), model.eval()(x))
    # another class count: both classifiers are dropped and re-made, the trunk is loaded
    other = timm.create_model(NAME, pretrained=True, img_size=SIZE, num_classes=7, pretrained_cfg_overlay=overlay).eval()
    assert other(x).shape == (2, 7)
    assert torch.equal(other.patch_embed.proj.weight, model.patch_embed.proj.weight)


@pytest.mark.slow
def test_two_head_export_reloads_from_local_dir_with_another_class_count(tmp_path: Path, monkeypatch) -> None:
    import timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    model = timm.create_model(NAME, pretrained=False, num_classes=3, img_size=SIZE)
    spec = spec_from_timm(model, LoadRequest(NAME, input_size=(3, SIZE, SIZE)), pretrained=False)
    export_model(model, spec, "safetensors", tmp_path / "out")
    reloaded = timm.create_model(f"local-dir:{tmp_path / 'out'}", pretrained=True, num_classes=7, img_size=SIZE).eval()
    assert reloaded(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 7)
    assert torch.equal(reloaded.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)
