"""What each layer sees: activation maps and class heatmaps, on the pretrained EfficientNet-Lite0 and tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_faults import write_images, write_project
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.looking.activations import channel_stats, look
from workbench.looking.heatmaps import class_heatmap
from workbench.looking.inputs import feed
from workbench.predict import load_predictor

TABBY = 281


def one_error_line(capsys) -> str:
    """The one ``error:`` line on stderr (the weights notice that loading prints may precede it)."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and captured.err.strip().endswith(errors[0]), captured.err
    return errors[0]


@pytest.fixture(scope="module")
def lite0():
    predictor = load_predictor("efficientnet_lite0", pretrained=True)
    assert predictor.weights == "pretrained weights"
    return predictor


def stripes(spec, vertical: bool, period: int = 4, size: int = 256) -> Image.Image:
    """Grey stripes around the data's mean colour (256 px: the 224 centre crop sees them unresized)."""
    wave = ((np.arange(size) // (period // 2)) % 2) * 2.0 - 1.0
    plane = np.tile(wave[None, :], (size, 1)) if vertical else np.tile(wave[:, None], (1, size))
    rgb = np.stack([m + 0.25 * plane for m in spec.mean], axis=-1)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def horizontal_change_share(kernel: torch.Tensor) -> float:
    """Share of a 3×3 kernel's (summed over colour) change that runs across x: near 1 for a vertical-edge detector."""
    g = kernel.sum(0)
    across_x = (g[:, 1:] - g[:, :-1]).pow(2).sum()
    across_y = (g[1:, :] - g[:-1, :]).pow(2).sum()
    return float(across_x / (across_x + across_y))


def test_vertical_stripes_light_up_vertical_edge_detectors(lite0) -> None:
    kernels = lite0.module.conv_stem.weight.detach()
    shares = {}
    for vertical in (True, False):
        result = look(lite0.module, "conv_stem", feed(stripes(lite0.spec, vertical), lite0.spec).tensor, top=4)
        assert result.kind == "maps" and result.shape == (1, 32, 112, 112)
        shares[vertical] = [horizontal_change_share(kernels[c.index]) for c in result.channels]
    # The strongest channel for vertical stripes changes across x, for horizontal ones across y; most of the top 4 agree.
    assert shares[True][0] > 0.6 and shares[False][0] < 0.4, shares
    assert sum(s > 0.5 for s in shares[True]) >= 3 and sum(s < 0.5 for s in shares[False]) >= 3, shares


def cat_and_noise() -> Image.Image:
    import skimage.data

    canvas = np.empty((256, 256, 3), np.uint8)
    canvas[:, :128] = np.asarray(Image.fromarray(skimage.data.chelsea()).resize((128, 256)))
    canvas[:, 128:] = np.random.default_rng(0).integers(0, 256, (256, 128, 3))
    return Image.fromarray(canvas)


@pytest.mark.parametrize("method", ["gradcam", "eigencam"])
def test_tabby_cat_heatmap_sits_on_the_cat_half(lite0, method: str) -> None:
    fed = feed(cat_and_noise(), lite0.spec)
    heat = class_heatmap(lite0.module, fed.tensor, class_index=TABBY, method=method, label_names=lite0.spec.label_names)
    assert heat.label == "tabby, tabby cat" and heat.layer == "bn2" and heat.layer_grid == (7, 7)
    assert heat.values.shape == (224, 224) and heat.values.min() >= 0 and heat.values.max() <= 1
    assert heat.mass(cols=slice(0, 112)) > 0.65


def test_heatmap_on_a_frozen_trunk_touches_nothing(lite0) -> None:
    model = lite0.module
    for p in model.parameters():
        p.requires_grad_(False)
    model.classifier.weight.requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    fed = feed(cat_and_noise(), lite0.spec)
    heat = class_heatmap(model, fed.tensor, class_index=TABBY)
    assert heat.mass(cols=slice(0, 112)) > 0.65
    assert model.training and model.bn1.training  # its mode is given back
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics included
    assert [p.requires_grad for p in model.parameters()].count(True) == 1
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)


def test_heatmap_of_an_onnx_import_matches_the_torch_model(lite0, tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.onnx_cases import export_torch

    path = export_torch(lite0.module, tmp_path / "lite0.onnx", opset=17, size=96)
    imported = load_predictor(str(path), input_size=(3, 96, 96))
    x = feed(cat_and_noise(), replace(lite0.spec, input_size=(3, 96, 96))).tensor
    onnx_heat = class_heatmap(imported.module, x, class_index=TABBY)
    torch_heat = class_heatmap(lite0.module, x, class_index=TABBY)
    assert onnx_heat.layer == "bn2_act_Clip" and torch_heat.layer == "bn2"  # the same place, by onnx2torch's name
    assert onnx_heat.values.std() > 0.1
    np.testing.assert_allclose(onnx_heat.values, torch_heat.values, atol=1e-3)


def test_vit_tokens_are_shown_on_the_patch_grid() -> None:
    import timm

    model = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    result = look(model, "blocks.0", x, top=5)
    assert result.kind == "tokens" and result.shape == (1, 17, 192)  # class token + 4×4 patches
    assert [c.map.shape for c in result.channels] == [(4, 4)] * 5
    heat = class_heatmap(model, x, class_index=1)
    assert heat.layer_grid == (4, 4) and heat.values.shape == (64, 64)


def test_vectors_are_values_and_a_heatmap_says_why_not() -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).eval()
    result = look(mlp, "1", torch.randn(1, 6))
    assert result.kind == "vector" and result.width == 5 and [i for i, _ in result.values] == list(range(5))
    stats = channel_stats(mlp, "1", [torch.randn(8, 6), torch.randn(4, 6)])
    assert stats.images == 12 and len(stats.mean) == 5
    with pytest.raises(WorkbenchError, match="no spatial layer .* a class heatmap does not apply"):
        class_heatmap(mlp, torch.randn(1, 6))


def test_channel_stats_find_dead_channels() -> None:
    conv = torch.nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        conv.weight[2].zero_()
        conv.bias[2] = -1.0
    model = torch.nn.Sequential(conv, torch.nn.ReLU()).eval()
    stats = channel_stats(model, "1", [torch.randn(2, 3, 8, 8), torch.randn(3, 3, 8, 8)])
    assert stats.dead == [2] and stats.zero_fraction[2] == 1.0 and 0 < stats.zero_fraction[0] < 1


def test_look_cli_json_and_pictures(tmp_path: Path, capsys) -> None:
    image = tmp_path / "cat.png"
    cat_and_noise().save(image)
    out = tmp_path / "grid.png"
    assert main(["look", "efficientnet_lite0", str(image), "--pretrained", "--layer", "blocks.1", "--top", "6",
                 "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layer"] == "blocks.1" and data["output_shape"] == [1, 24, 56, 56] and len(data["channels"]) == 6
    assert {"index", "mean"} <= set(data["channels"][0]) and out.stat().st_size > 10_000
    heat_png = tmp_path / "heat.svg"
    assert main(["look", "efficientnet_lite0", str(image), "--pretrained", "--cam", "--class", str(TABBY),
                 "--json", "--out", str(heat_png)]) == 0
    data = json.loads(capsys.readouterr().out)
    grid = np.asarray(data["heatmap"])
    assert data["class"] == TABBY and data["layer"] == "bn2" and grid.shape == tuple(data["grid"]) == (224, 224)
    assert grid.min() >= 0 and grid.max() <= 1 and grid[:, :112].sum() > 0.65 * grid.sum()
    assert heat_png.read_text().startswith("<?xml")


@pytest.mark.parametrize(("args", "message"), [
    (["--layer", "blocks.22"], "the model has no layer 'blocks.22'; did you mean blocks.2"),
    (["--cam", "--class", "1000"], r"class 1000 is out of range: the model has 1000 classes \(0..999\)"),
    (["--cam", "--layer", "global_pool"], "layer 'global_pool' outputs \\(1, 1280\\), not a spatial map"),
    ([], "say what to show: --layer PATH for activation maps, or --cam"),
    (["--layer", "bn1", "--top", "0"], "--top must be at least 1, not 0"),
    (["--layer", "bn1", "--out", "x.gif"], r"--out .*x.gif: give a file ending in .png, .svg, .pdf"),
])
def test_look_bad_input_is_one_error(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    import re

    image = tmp_path / "cat.png"
    cat_and_noise().save(image)
    args = [a if a != "x.gif" else str(tmp_path / "x.gif") for a in args]
    assert main(["look", "efficientnet_lite0", str(image), "--pretrained", "--out", str(tmp_path / "o.png"), *args]
                if "--out" not in args else ["look", "efficientnet_lite0", str(image), "--pretrained", *args]) == 2
    assert re.search(message, one_error_line(capsys))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.png"]  # nothing written


def test_undecodable_and_missing_images(tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert main(["look", "resnet18", str(tmp_path / "bad.png"), "--layer", "layer1"]) == 2
    assert "cannot read" in one_error_line(capsys)
    assert main(["look", "resnet18", str(tmp_path / "none.png"), "--cam"]) == 2
    assert one_error_line(capsys) == f"error: image not found: {tmp_path / 'none.png'}"


@pytest.mark.slow
def test_a_run_shows_its_starting_and_trained_model(tmp_path: Path, capsys) -> None:
    from workbench.looking.starting_model import starting_predictor
    from workbench.run_loading import load_run

    write_images(tmp_path / "data")
    project = write_project(tmp_path, "freeze", 'frozen = [""]\nunfrozen = ["fc"]')
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    start, trained = starting_predictor(run).module.state_dict(), load_run(run).module.state_dict()
    assert torch.equal(start["layer1.0.conv1.weight"], trained["layer1.0.conv1.weight"])  # frozen: the same start
    assert not torch.equal(start["fc.weight"], trained["fc.weight"])  # the head trained
    capsys.readouterr()
    image = tmp_path / "cat.png"
    cat_and_noise().save(image)
    assert main(["look", str(run), str(image), "--cam", "--class", "1", "--json", "--out", str(tmp_path / "h.png")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in data["models"]] == ["starting model", "trained model"]
    assert all(m["class"] == 1 and m["label"] == "dog" for m in data["models"])
    assert data["models"][0]["heatmap"] != data["models"][1]["heatmap"]


def test_a_runs_heatmaps_compare_the_same_class_and_serve_many_images(tmp_path: Path, capsys) -> None:
    """Without --class both models are shown for the class the trained model predicts; the window's gallery
    asks one RunHeatmaps for image after image (the models are loaded once)."""
    from workbench.looking.run_heatmaps import RunHeatmaps

    write_images(tmp_path / "data")
    project = write_project(tmp_path, "freeze", 'frozen = [""]\nunfrozen = ["fc"]')
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    image = tmp_path / "cat.png"
    cat_and_noise().save(image)
    capsys.readouterr()
    assert main(["look", str(run), str(image), "--cam", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert models[0]["class"] == models[1]["class"]
    looks = RunHeatmaps(run)
    first = looks.for_image(image)
    loaded = looks.models()
    second = looks.for_image(cat_and_noise().transpose(0), class_index=0)  # a PIL image, mirrored
    assert looks.models() is loaded and second.class_index == 0 and first.class_index == models[1]["class"]
    assert [t for t, _ in second.panels] == ["starting model", "trained model"]
    assert second.png()[:8] == b"\x89PNG\r\n\x1a\n"
