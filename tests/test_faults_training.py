"""Faults during training: nothing non-finite is ever written, and the run says where it broke."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from workbench.errors import WorkbenchError
from workbench.export import export_model
from workbench.freezing import linear_probe
from workbench.training.trainer import Trainer, TrainingError

from tests.test_trainer import tiny_data, workspace


def test_nonfinite_validation_loss_stops_the_run(tmp_path):
    data = tiny_data()
    x, y = data.val.tensors
    x = x.clone()
    x[0] = float("inf")  # one broken validation image: val loss NaN, training itself stays finite
    data.val = TensorDataset(x, y)
    ws = workspace(epochs=2)
    linear_probe(ws.plan, ws.tree)
    with pytest.raises(TrainingError, match=r"validation loss became nan at epoch 0"):
        list(Trainer(ws, data, tmp_path / "run").run())
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_diverging_weights_stop_the_run_and_nothing_nonfinite_is_written(tmp_path):
    ws = workspace(epochs=3, optimizer="sgd", lr=1e6, scheduler="constant")
    with pytest.raises(TrainingError, match=r"(loss|the weights) became"):
        list(Trainer(ws, tiny_data(), tmp_path / "run").run())
    run = tmp_path / "run"
    if (run / "model.safetensors").exists():
        from safetensors.torch import load_file

        assert all(torch.isfinite(t).all() for t in load_file(str(run / "model.safetensors")).values()
                   if t.is_floating_point())
    if (run / "checkpoints" / "last.pt").exists():
        from workbench.training.checkpoint import load_checkpoint

        state = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def test_weights_poisoned_mid_run_are_caught_before_the_checkpoint(tmp_path):
    ws = workspace(epochs=2)
    linear_probe(ws.plan, ws.tree)
    data = tiny_data()
    data.val = None  # no validation pass to trip over the broken weight first
    reports = Trainer(ws, data, tmp_path / "run").run()
    for report in reports:
        if type(report).__name__ == "StepReport" and report.batch == report.batches:
            with torch.no_grad():  # poisoned after the epoch's last step: no loss sees it
                ws.backbone.module.fc.bias[3] = math.inf
            break
    with pytest.raises(TrainingError, match=r"the weights became non-finite in 1 tensor\(s\) \(fc.bias\)"):
        list(reports)
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "onnx"])
def test_no_exporter_writes_nonfinite_weights(tmp_path, fmt):
    ws = workspace()
    with torch.no_grad():
        ws.backbone.module.layer1[0].conv1.weight[0, 0, 0, 0] = float("nan")
    out = tmp_path / ("export" if fmt == "safetensors" else f"model.{fmt}")
    with pytest.raises(WorkbenchError, match=r"refusing to export: 1 tensor\(s\) hold NaN or inf \(layer1.0.conv1.weight\)"):
        export_model(ws.backbone.module, ws.backbone.spec, fmt, out)
    assert not out.exists()
