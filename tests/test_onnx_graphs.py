"""ONNX graphs that are not plain fixed-size classifiers: detectors, recognizers, free input
sizes, probability outputs and Softmax tails, as files from other frameworks are written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from tests import onnx_cases as cases
from tests.test_cli_train import write_image_folder
from tests.test_onnx_import import assert_parity, assert_trains, load
from workbench.cli import main


def ort_output(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def write_onnx_project(tmp_path: Path, model_file: str, num_classes: int, input_size: str = "") -> Path:
    write_image_folder(tmp_path / "data", per_class=4, size=16)
    project = tmp_path / "project.toml"
    project.write_text(textwrap.dedent(f'''
        [model]
        source = "onnx"
        name = "{model_file}"
        num_classes = {num_classes}
        {input_size}

        [data]
        path = "data"
        val_split = 0.25

        [train]
        epochs = 1
        batch_size = 4
        num_workers = 0
        augment = false
    '''))
    return project


@pytest.mark.parametrize("tail", [["Softmax"], ["Softmax", "Identity"], ["Softmax", "Cast", "Reshape"],
                                  ["LogSoftmax", "Flatten"]])
def test_softmax_tail_is_stripped_and_parity_compares_like_with_like(tmp_path: Path, tail: list[str]) -> None:
    path = cases.save(cases.with_tail(cases.matmul_weights_model(), tail), tmp_path / "probs.onnx")
    backbone = load(path)
    assert_parity(backbone)
    assert not any("differs from onnxruntime" in n for n in backbone.notices), backbone.notices
    assert any(f"removed the final {tail[0]}" in n for n in backbone.notices), backbone.notices
    assert backbone.report["output_kind"] == "logits"
    # the module returns logits: softmax of them is the file's probabilities
    x = np.random.default_rng(5).standard_normal((3, *backbone.spec.input_size)).astype(np.float32)
    with torch.no_grad():
        logits = backbone.module.eval()(torch.from_numpy(x))
    assert not torch.allclose(logits.sum(1), torch.ones(3), atol=1e-3)
    got = torch.softmax(logits, 1) if tail[0] == "Softmax" else torch.log_softmax(logits, 1)
    np.testing.assert_allclose(got.numpy(), ort_output(path, x), atol=1e-5)
    assert backbone.spec.classifier is not None
    assert_trains(backbone, [])
    # the head is found through the tail, so the class count can change
    adapted = load(path, num_classes=3)
    assert adapted.spec.num_classes == 3 and adapted.module(torch.randn(2, *adapted.spec.input_size)).shape == (2, 3)


@pytest.mark.slow
def test_nhwc_file_with_softmax_has_no_false_parity_warning(tmp_path: Path) -> None:
    """Issue 8.5: a TensorFlow-style NHWC classifier ending in Softmax."""
    path = cases.save(cases.with_tail(cases.nhwc_model(normalise_first=True), ["Softmax"]), tmp_path / "tf.onnx")
    backbone = load(path)
    assert_parity(backbone)
    assert not any("differs" in n for n in backbone.notices), backbone.notices
    assert "before stripping the Softmax" in backbone.report["parity_compared"]
    assert_trains(backbone, ["conv.weight"])


@pytest.mark.slow
def test_probabilities_without_softmax_node_are_refused_for_training(tmp_path: Path, capsys) -> None:
    cases.save(cases.manual_softmax_model(), tmp_path / "probs.onnx")
    backbone = load(tmp_path / "probs.onnx")
    assert_parity(backbone)
    assert backbone.report["output_kind"].startswith("not logits: the output rows sum to 1")
    project = write_onnx_project(tmp_path, "probs.onnx", 5)
    for i, name in enumerate(("a", "b")):  # two more classes: 5, as the file's head
        (tmp_path / "data" / name).mkdir()
        for j in range(4):
            Image.fromarray(np.full((8, 8, 3), 40 * i + j, np.uint8)).save(tmp_path / "data" / name / f"{j}.png")
    assert main(["train", str(project), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "sum to 1" in err and "[head]" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_detector_output_inspects_and_freezes(tmp_path: Path, capsys) -> None:
    path = cases.save(cases.detector_model(), tmp_path / "det.onnx")
    backbone = load(path)
    assert_parity(backbone)
    assert backbone.report["output_shape"] == ["N", 1, 16, 16]
    assert any("not (N, classes)" in n and "[head]" in n for n in backbone.notices), backbone.notices
    assert backbone.spec.classifier is None
    # an fx GraphModule, as the [head] cut needs
    assert isinstance(backbone.module, torch.fx.GraphModule)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "backbone" in out.lower() or "Conv" in out


@pytest.mark.slow
def test_recognizer_output_trains_only_with_a_head(tmp_path: Path, capsys) -> None:
    path = cases.save(cases.recognizer_model(classes=3), tmp_path / "rec.onnx")
    backbone = load(path)
    assert_parity(backbone)
    assert backbone.report["output_shape"] == ["N", 8, 3]
    project = write_onnx_project(tmp_path, "rec.onnx", 3)
    assert main(["train", str(project), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "(3, 8, 3)" in err and "[head]" in err and "Traceback" not in err


def test_free_input_dims_open_at_a_default_size_and_say_so(tmp_path: Path) -> None:
    exported = cases.export_torch(cases.small_cnn(), tmp_path / "a.onnx", 17)
    path = cases.save(cases.strip_shapes(onnx.load(str(exported))), tmp_path / "free.onnx")
    backbone = load(path)
    assert backbone.spec.input_size == (3, 224, 224)
    assert any("opened it at 3x224x224" in n and "--input-size" in n for n in backbone.notices), backbone.notices
    assert_parity(backbone)
    override = load(path, input_size=(3, 16, 20))
    assert override.spec.input_size == (3, 16, 20)
    assert not any("opened it at" in n for n in override.notices)

    ocr = load(cases.save(cases.free_width_model(), tmp_path / "ocr.onnx"))
    assert ocr.spec.input_size == (3, 48, 240)  # the smallest multiple of 48 reaching 224
    assert any("[N, 3, 48, ?]" in n for n in ocr.notices), ocr.notices
    assert_parity(ocr)
    assert load(tmp_path / "ocr.onnx", input_size=(3, 48, 192)).spec.input_size == (3, 48, 192)


def test_one_d_batchnorm_behind_a_run_time_reshape_converts(tmp_path: Path) -> None:
    path = cases.save(cases.batchnorm_1d_model(), tmp_path / "rec_bn.onnx")
    with pytest.raises(NotImplementedError, match="spatial rank"):  # the converter alone fails on it
        from onnx2torch import convert
        convert(onnx.load(str(path)))
    backbone = load(path)
    assert_parity(backbone)
    assert "annotate_batchnorm_ranks" in [p["name"] for p in backbone.report["passes"]]
    bns = [m for m in backbone.module.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == 1
    x = np.random.default_rng(1).standard_normal((3, 3, 4, 8)).astype(np.float32)
    with torch.no_grad():
        got = backbone.module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ort_output(path, x), atol=1e-5)
    backbone.module.train()
    backbone.module(torch.randn(3, 3, 4, 8)).square().mean().backward()
    assert bns[0].weight.grad is not None and bns[0].weight.grad.abs().sum() > 0


def test_matmul_cast_add_cast_softmax_tail_becomes_a_replaceable_linear(tmp_path: Path) -> None:
    path = cases.save(cases.cast_tail_classifier_model(), tmp_path / "tf_head.onnx")
    backbone = load(path)
    assert_parity(backbone)
    names = [p["name"] for p in backbone.report["passes"]]
    assert "drop_noop_casts" in names and "matmul_add_to_gemm" in names
    head = backbone.module.get_submodule(backbone.spec.classifier)
    assert isinstance(head, torch.nn.Linear) and (head.in_features, head.out_features) == (6, 5)
    assert_trains(backbone, ["conv.weight"])
    adapted = load(path, num_classes=3)
    assert isinstance(adapted.module.get_submodule(adapted.spec.classifier), torch.nn.Linear)
    assert adapted.module(torch.randn(2, 3, 8, 8)).shape == (2, 3)


@pytest.mark.slow
def test_paddle_style_file_round_trips_to_onnx_with_dynamic_batch_after_fine_tuning(tmp_path: Path, capsys) -> None:
    from workbench.export import export_model

    path = cases.save(cases.paddle_style_classifier_model(), tmp_path / "cls.onnx")
    backbone = load(path, input_size=(3, 48, 96))
    assert_parity(backbone)
    module = backbone.module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(torch.randn(4, 3, 48, 96)), torch.tensor([0, 1, 0, 1])).backward()
        optimizer.step()
    assert all(not torch.equal(before[name], p) for name, p in module.named_parameters())  # weights in Constant nodes trained
    capsys.readouterr()
    result = export_model(module.eval(), backbone.spec, "onnx", tmp_path / "out.onnx")
    assert "dynamic batch" in result.message and result.parity_max_abs_diff < 1e-4
    assert capsys.readouterr().out == ""  # no exporter chatter or graph IR
    exported = onnx.load(str(tmp_path / "out.onnx"))
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, free batch axis
    x = np.random.default_rng(2).standard_normal((3, 3, 48, 96)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_output(tmp_path / "out.onnx", x), expected, atol=1e-5)


def test_onnx_mlp_on_feature_vectors_inspects_freezes_trains_and_exports(tmp_path: Path, capsys) -> None:
    from workbench.export import export_model
    from workbench.layer_tree import build_layer_tree

    path = cases.save(cases.mlp_model(), tmp_path / "mlp.onnx")
    backbone = load(path)
    assert backbone.spec.input_size == (30,) and backbone.spec.num_classes == 40
    assert backbone.report["input_layout"] == "features (N, F)"
    assert_parity(backbone)
    assert backbone.report["trainable_params"] == 4400
    linears = [name for name, m in backbone.module.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3
    build_layer_tree(backbone.module, torch.zeros(1, 30))
    assert main(["inspect", str(path)]) == 0
    assert "4,400" in capsys.readouterr().out
    for name in linears[:2]:  # freeze the first two
        for p in backbone.module.get_submodule(name).parameters():
            p.requires_grad_(False)
    trainable = sum(p.numel() for p in backbone.module.parameters() if p.requires_grad)
    assert trainable == 1600
    frozen_before = backbone.module.get_submodule(linears[0]).weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in backbone.module.parameters() if p.requires_grad], lr=0.1)
    torch.nn.functional.cross_entropy(backbone.module(torch.randn(8, 30)), torch.arange(8)).backward()
    optimizer.step()
    assert torch.equal(backbone.module.get_submodule(linears[0]).weight, frozen_before)
    result = export_model(backbone.module.eval(), backbone.spec, "onnx", tmp_path / "out.onnx")
    assert result.parity_max_abs_diff is not None and result.parity_max_abs_diff < 1e-4
    x = np.random.default_rng(0).standard_normal((3, 30)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(ort_output(tmp_path / "out.onnx", x), backbone.module(torch.from_numpy(x)).numpy(), atol=1e-5)
