"""ONNX imports trained through `workbench train` and exported (issue 13 §3): the classic freezing
example's MLP on feature tables, and a detector's backbone under a cut and a new head."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from tests import onnx_cases as cases
from tests.test_cli_train import write_image_folder
from tests.test_onnx_import import load
from workbench.cli import main
from workbench.run_loading import load_run

CLASSES = 40  # the MLP's last layer is 40×40: its 40 outputs are the classes


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def write_tables(folder: Path) -> None:
    """The same 240 rows (40 separable classes, 30 features) as .npz (integer labels) and .csv (named labels)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CLASSES, 30)) * 2
    y = np.repeat(np.arange(CLASSES), 6)
    x = (centres[y] + rng.standard_normal((len(y), 30)) * 0.5).astype(np.float32)
    np.savez(folder / "features.npz", x=x, y=y)
    lines = [",".join([f"f{i}" for i in range(30)] + ["species"])]
    lines += [",".join([repr(float(v)) for v in row] + [f"s{label:02d}"]) for row, label in zip(x, y)]
    (folder / "features.csv").write_text("\n".join(lines) + "\n")


def mlp_project(folder: Path, table: str) -> Path:
    project = folder / f"mlp-{Path(table).suffix[1:]}.toml"
    project.write_text(textwrap.dedent(f'''
        [model]
        source = "onnx"
        name = "mlp.onnx"

        [freeze]
        frozen = ["n0", "n2"]   # the first two Linear layers

        [data]
        dataset = "table"
        path = "{table}"
        val_split = 0.2

        [train]
        epochs = 4
        batch_size = 16
        lr = 0.01
        num_workers = 0
    '''))
    return project


@pytest.fixture(scope="module")
def mlp_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mlp")
    cases.save(cases.mlp_model(), folder / "mlp.onnx")
    write_tables(folder)
    return folder


def test_mlp_project_inspects_with_the_first_two_layers_frozen(mlp_folder: Path, capsys) -> None:
    assert main(["inspect", str(mlp_project(mlp_folder, "features.npz"))]) == 0
    out = capsys.readouterr().out
    assert "1,600 of 4,400 parameters trainable (2,800 frozen, 64% frozen)" in out


@pytest.mark.slow
@pytest.mark.parametrize("table", ["features.npz", "features.csv"])
def test_mlp_trains_on_a_feature_table_frozen_layers_unchanged_and_exports(mlp_folder: Path, table: str,
                                                                           tmp_path: Path, capsys) -> None:
    project = mlp_project(mlp_folder, table)
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "1,600 of 4,400 parameters trainable" in out
    assert "40 classes, 200 train / 40 val rows; 30 features fed as they are" in out
    assert "caching the frozen trunk" in out  # rows have no augmentation: the frozen layers' output is cached

    original = load(mlp_folder / "mlp.onnx").module.state_dict()
    trained = load_file(str(run / "model.safetensors"))
    assert set(trained) == {"n0.weight", "n2.weight", "n4.weight"}
    for frozen in ("n0.weight", "n2.weight"):
        assert torch.equal(trained[frozen], original[frozen]), frozen  # bit-identical
    assert not torch.equal(trained["n4.weight"], original["n4.weight"])
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [e for e in epochs if e["type"] == "epoch"][-1]
    assert last["val_accuracy"] >= 0.5  # 40 classes: chance is 2.5%

    labels = [f"s{i:02d}" for i in range(CLASSES)] if table.endswith(".csv") else [str(i) for i in range(CLASSES)]
    onnx_file = tmp_path / "mlp-tuned.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(onnx_file)]) == 0
    exported = onnx.load(str(onnx_file))
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a free batch axis
    assert json.loads({p.key: p.value for p in exported.metadata_props}["label_names"]) == labels
    module = load_run(run).module
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 30)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(ort_run(onnx_file, x), expected, atol=1e-5)

    folder = tmp_path / "mlp-tuned"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(folder)]) == 0
    config = json.loads((folder / "config.json").read_text())
    assert config["label_names"] == labels and config["pretrained_cfg"]["input_size"] == [30]
    assert config["pretrained_cfg"]["mean"] == [0.0] * 30 and config["pretrained_cfg"]["std"] == [1.0] * 30
    assert all(torch.equal(t, trained[k]) for k, t in load_file(str(folder / "model.safetensors")).items())


@pytest.mark.slow
def test_onnx_detector_trains_as_a_classifier_through_a_cut_and_new_head(tmp_path: Path, capsys) -> None:
    cases.save(cases.detector_model(), tmp_path / "det.onnx")
    write_image_folder(tmp_path / "data", per_class=6, size=16)
    project = tmp_path / "project.toml"
    project.write_text(textwrap.dedent('''
        [model]
        source = "onnx"
        name = "det.onnx"
        num_classes = 3

        [freeze]
        frozen = ["backbone"]

        [head]
        cut = "backbone_Relu"   # the backbone's features; the probability map is dropped
        pool = "avg"
        hidden = [8]

        [data]
        path = "data"
        val_split = 0.25

        [train]
        epochs = 2
        batch_size = 4
        num_workers = 0
        augment = false
    '''))
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    capsys.readouterr()
    trained = load_file(str(run / "model.safetensors"))
    original = load(tmp_path / "det.onnx").module.state_dict()
    assert not any(k.startswith("map") for k in trained)  # everything after the cut is gone
    assert torch.equal(trained["backbone.weight"], original["backbone.weight"])
    assert torch.equal(trained["backbone.bias"], original["backbone.bias"])
    assert any(k.startswith("head.") for k in trained)

    onnx_file = tmp_path / "det-cls.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(onnx_file)]) == 0
    assert "max abs difference vs PyTorch" in capsys.readouterr().out
    module = load_run(run).module
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = ort_run(onnx_file, x)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_paddle_style_classifier_round_trips_to_onnx_with_a_dynamic_batch(tmp_path: Path, capfd) -> None:
    """Weights in Constant nodes, free N and W, a flatten computed from Shape at run time: after
    `workbench train`, `workbench export --format onnx` writes a file that runs at batch 1 and 3."""
    cases.save(cases.paddle_style_classifier_model(classes=3), tmp_path / "cls.onnx")
    write_image_folder(tmp_path / "data", per_class=4, size=24)
    project = tmp_path / "project.toml"
    project.write_text(textwrap.dedent('''
        [model]
        source = "onnx"
        name = "cls.onnx"
        input_size = [3, 48, 96]

        [data]
        path = "data"
        val_split = 0.25

        [train]
        epochs = 1
        batch_size = 3
        lr = 0.01
        num_workers = 0
        augment = false
    '''))
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    original = load(tmp_path / "cls.onnx", input_size=(3, 48, 96)).module.state_dict()
    trained = load_file(str(run / "model.safetensors"))
    conv = next(k for k, t in trained.items() if tuple(t.shape) == (8, 3, 3, 3))
    assert not torch.equal(trained[conv], original[conv])  # a weight from a Constant node was fine-tuned
    capfd.readouterr()

    onnx_file = tmp_path / "cls-tuned.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(onnx_file)]) == 0
    out, err = capfd.readouterr()  # file descriptors too: exporters print from C++ as well
    assert "dynamic batch" in out and "at batch 1 and 3" in out
    lines = (out + err).splitlines()  # the export lines and its report table; no graph IR, no exporter chatter
    assert len(lines) <= 12 and not any("graph(" in line or "torch.onnx" in line for line in lines), out + err
    exported = onnx.load(str(onnx_file))
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    module = load_run(run).module
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 48, 96)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        got = ort_run(onnx_file, x)
        assert got.shape == (batch, 3)
        np.testing.assert_allclose(got, expected, atol=1e-5)


IMPORTABLE = {
    "constant_weights": cases.constant_weights_model, "dequantized": cases.dequantized_weights_model,
    "auto_pad": cases.auto_pad_model, "matmul": cases.matmul_weights_model,
    "nhwc": lambda: cases.nhwc_model(normalise_first=True), "dynamo_style": cases.dynamo_style_model,
    "cast_tail": cases.cast_tail_classifier_model, "free_width": cases.free_width_model,
    "batchnorm_1d": cases.batchnorm_1d_model, "detector": cases.detector_model, "recognizer": cases.recognizer_model,
    "mlp": cases.mlp_model, "softmax_identity": lambda: cases.with_tail(cases.matmul_weights_model(),
                                                                        ["Softmax", "Identity"]),
    "manual_softmax": cases.manual_softmax_model, "paddle_style": cases.paddle_style_classifier_model,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IMPORTABLE))
def test_every_importable_graph_exports_back_with_a_dynamic_batch_after_a_step(name: str, tmp_path: Path) -> None:
    from workbench.export import export_model

    backbone = load(cases.save(IMPORTABLE[name](), tmp_path / f"{name}.onnx"))
    module = backbone.module.train()
    before = {k: p.detach().clone() for k, p in module.named_parameters()}
    module(torch.randn(4, *backbone.spec.input_size)).float().square().mean().backward()
    torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.05).step()
    assert any(not torch.equal(before[k], p) for k, p in module.named_parameters())
    module.eval()
    result = export_model(module, backbone.spec, "onnx", tmp_path / "out.onnx")
    assert "dynamic batch" in result.message
    assert onnx.load(str(tmp_path / "out.onnx")).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, *backbone.spec.input_size)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(ort_run(tmp_path / "out.onnx", x), expected, atol=1e-4, rtol=1e-4)
