"""`workbench predict` as a user runs it: pretrained ImageNet weights, a run folder, an ONNX file, bad inputs."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.onnx_cases import export_torch, small_cnn
from tests.test_cli_train import CLASSES, write_project
from workbench.cli import main
from workbench.data import build_transform
from workbench.predict import load_predictor


def _skimage(name: str) -> str:
    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


def _colour_image(path: Path, channel: int, size: int = 24) -> Path:
    pixels = np.random.default_rng(channel).integers(0, 60, (size, size, 3), dtype=np.uint8)
    pixels[..., channel] += 160
    Image.fromarray(pixels).save(path)
    return path


def _json(capsys) -> list[dict]:
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_pretrained_lite0_names_the_cat_and_the_espresso(capsys):
    cat, coffee = _skimage("chelsea.png"), _skimage("coffee.png")
    assert main(["predict", "efficientnet_lite0", "--pretrained", cat, coffee, "--json", "--top", "3"]) == 0
    result = _json(capsys)
    assert [r["image"] for r in result] == [cat, coffee]
    assert all(set(r) == {"image", "top"} and len(r["top"]) == 3 for r in result)
    assert all(set(t) == {"index", "label", "prob"} for r in result for t in r["top"])
    cat_top, coffee_top = result[0]["top"][0], result[1]["top"][0]
    assert cat_top["index"] in {281, 282, 285} and "cat" in cat_top["label"]
    assert coffee_top["index"] == 967 and "espresso" in coffee_top["label"]
    for r in result:
        probs = [t["prob"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # The text form: one block per image, ImageNet names with their class index.
    assert main(["predict", "efficientnet_lite0", "--pretrained", coffee, "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "model: efficientnet_lite0 (pretrained weights)" in out
    assert coffee in out and "espresso  (class 967)" in out and out.count("%") == 2


@pytest.mark.slow
def test_run_folder_predicts_with_the_runs_labels_and_weights(tmp_path, capsys):
    project = write_project(tmp_path, epochs=1)
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    capsys.readouterr()
    images = [str(_colour_image(tmp_path / f"{c}.png", i)) for i, c in enumerate(CLASSES)]
    assert main(["predict", str(run), *images, "--json", "--top", "3"]) == 0
    result = _json(capsys)
    assert [r["image"] for r in result] == images
    # The run's weights and preprocessing, exactly: same probabilities as the run's model on the same pixels.
    from workbench.run_loading import load_run

    trained = load_run(run)
    transform = build_transform(trained.spec, train=False, augment=False)
    for r, path in zip(result, images):
        assert {t["label"] for t in r["top"]} == set(CLASSES)
        assert sum(t["prob"] for t in r["top"]) == pytest.approx(1, abs=1e-5)
        with torch.no_grad():
            expected = trained.module(transform(Image.open(path).convert("RGB"))[None]).softmax(1)[0]
        for t in r["top"]:
            assert t["label"] == sorted(CLASSES)[t["index"]]
            assert t["prob"] == pytest.approx(float(expected[t["index"]]), abs=1e-5)
    # The project file itself: its model as described (3 classes, no names yet: indices as labels).
    assert main(["predict", str(project), images[0], "--json"]) == 0
    captured = capsys.readouterr()
    top = json.loads(captured.out)[0]["top"]
    assert sorted(t["index"] for t in top) == [0, 1, 2] and {t["label"] for t in top} == {"0", "1", "2"}
    assert "warning: resnet18 has random (untrained) weights" in captured.err  # never silently meaningless


@pytest.mark.slow
def test_onnx_file_and_checkpoint_match_their_models(tmp_path, capsys):
    model = small_cnn()
    onnx_path = export_torch(model, tmp_path / "small.onnx", opset=17, size=16)
    image = str(_colour_image(tmp_path / "img.png", 1, size=40))
    assert main(["predict", str(onnx_path), image, "--json", "--top", "2"]) == 0
    top = _json(capsys)[0]["top"]
    predictor = load_predictor(str(onnx_path))
    assert predictor.spec.input_size == (3, 16, 16)
    x = build_transform(predictor.spec, train=False, augment=False)(Image.open(image).convert("RGB"))[None]
    with torch.no_grad():
        expected = model(x).softmax(1)[0]
    assert [t["index"] for t in top] == expected.topk(2).indices.tolist()
    assert [t["prob"] for t in top] == pytest.approx(expected.topk(2).values.tolist(), abs=1e-4)
    assert [t["label"] for t in top] == [str(t["index"]) for t in top]  # no names in the file: the index

    import timm
    from safetensors.torch import save_file

    net = timm.create_model("resnet18", pretrained=False, num_classes=4).eval()
    ckpt = tmp_path / "net.safetensors"
    save_file(net.state_dict(), str(ckpt))
    assert main(["predict", str(ckpt), image, "--arch", "resnet18", "--input-size", "3,32,32", "--json"]) == 0
    top = _json(capsys)[0]["top"]
    spec = load_predictor(str(ckpt), arch="resnet18", input_size=(3, 32, 32)).spec
    x = build_transform(spec, train=False, augment=False)(Image.open(image).convert("RGB"))[None]
    with torch.no_grad():
        expected = net(x).softmax(1)[0]
    assert len(top) == 4  # --top 5 on a 4-class head shows all four
    assert [t["prob"] for t in top] == pytest.approx(expected.sort(descending=True).values.tolist(), abs=1e-5)


@pytest.mark.slow
def test_onnx_file_ending_in_softmax_is_not_softmaxed_twice(tmp_path, capsys):
    import onnxruntime as ort

    model = torch.nn.Sequential(small_cnn(), torch.nn.Softmax(dim=1)).eval()
    onnx_path = export_torch(model, tmp_path / "probs.onnx", opset=17, size=16)
    image = str(_colour_image(tmp_path / "img.png", 0, size=16))
    assert main(["predict", str(onnx_path), image, "--json", "--top", "5"]) == 0
    top = _json(capsys)[0]["top"]
    spec = load_predictor(str(onnx_path)).spec
    x = build_transform(spec, train=False, augment=False)(Image.open(image).convert("RGB"))[None]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    file_probs = session.run(None, {"input": x.numpy()})[0][0]
    assert [t["prob"] for t in top] == pytest.approx(sorted(file_probs.tolist(), reverse=True), abs=1e-4)


@pytest.mark.slow
def test_bad_inputs_are_one_error_line_and_exit_2(tmp_path, capsys):
    good = str(_colour_image(tmp_path / "good.png", 0))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    cases = [
        (["resnet18", str(tmp_path / "missing.png")], "image not found"),
        (["resnet18", str(tmp_path)], "is a folder, not an image"),
        (["resnet18", good, str(broken), "--input-size", "3,32,32"], "cannot read"),
        (["no_such_model_xyz", good], "no_such_model_xyz"),
        ([str(tmp_path / "model.onnx"), good], "not found"),
        ([str(tmp_path / "project.toml"), good], "not found"),
        (["resnet18", good, "--top", "0"], "--top must be at least 1, not 0"),
        (["resnet18", good, "--top", "-3"], "--top must be at least 1, not -3"),
        ([str(tmp_path), good], "not a finished run folder"),
    ]
    for argv, message in cases:
        assert main(["predict", *argv, "--json"]) == 2, argv
        captured = capsys.readouterr()
        errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (argv, captured.err)
        assert "Traceback" not in captured.err and captured.out == "", argv  # no partial JSON on stdout


@pytest.mark.slow
def test_non_finite_weights_are_refused_not_printed(tmp_path, capsys):
    import timm
    from safetensors.torch import save_file

    net = timm.create_model("resnet18", pretrained=False, num_classes=3)
    state = net.state_dict()
    state["fc.bias"][1] = float("nan")
    ckpt = tmp_path / "nan.safetensors"
    save_file(state, str(ckpt))
    image = str(_colour_image(tmp_path / "img.png", 2))
    assert main(["predict", str(ckpt), image, "--arch", "resnet18", "--input-size", "3,32,32"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "error: the model gives non-finite scores for " + image in captured.err


class _Probabilities(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) * 3).softmax(1)


def test_a_module_that_outputs_probabilities_keeps_them(tmp_path):
    """A model whose Softmax could not be stripped (e.g. Softmax → Identity) already gives probabilities."""
    from workbench.predict import Predictor, predict
    from workbench.spec import ModelSpec

    cnn = small_cnn()
    spec = ModelSpec("small_cnn", num_classes=5, input_size=(3, 16, 16), label_names=list("abcde"))
    image = str(_colour_image(tmp_path / "img.png", 0, size=16))
    x = build_transform(spec, train=False, augment=False)(Image.open(image).convert("RGB"))[None]
    with torch.no_grad():
        expected = (cnn(x) * 3).softmax(1)[0]  # sharp enough that a second softmax would visibly flatten it
    top = predict(Predictor(_Probabilities(cnn), spec, "test weights"), [image], top=5)[0].top
    assert [t.prob for t in top] == pytest.approx(expected.sort(descending=True).values.tolist(), abs=1e-6)
    assert [t.label for t in top] == ["abcde"[t.index] for t in top]


@pytest.mark.slow
def test_one_channel_onnx_model_gets_grayscale_images(tmp_path, capsys):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    path = tmp_path / "gray.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    image = str(_colour_image(tmp_path / "rgb.png", 2, size=20))
    assert main(["predict", str(path), image, "--json", "--top", "3"]) == 0
    top = _json(capsys)[0]["top"]
    spec = load_predictor(str(path)).spec
    assert spec.input_size == (1, 16, 16)
    # The file has no mean/std: the RGB defaults become one gray value (their average), not a crash.
    gray = replace(spec, mean=(sum(spec.mean) / 3,), std=(sum(spec.std) / 3,)) if len(spec.mean) == 3 else spec
    x = build_transform(gray, train=False, augment=False)(Image.open(image).convert("L"))[None]
    with torch.no_grad():
        expected = model(x).softmax(1)[0]
    assert [t["prob"] for t in top] == pytest.approx(expected.sort(descending=True).values.tolist(), abs=1e-5)
