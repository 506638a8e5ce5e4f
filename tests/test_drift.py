"""Per-module drift after a real training run: frozen tensors exactly 0, trained ones > 0; `workbench diff`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import TensorDataset

from workbench.backbone import LoadRequest
from workbench.cli import main
from workbench.drift import START_WEIGHTS, compare_states, diff_sources
from workbench.freezing import freeze_first_stages
from workbench.plan import FinetunePlan, TrainConfig
from workbench.sources import load_backbone
from workbench.training.trainer import Trainer
from workbench.workspace import Workspace

SIZE = (3, 32, 32)


def tiny_data(n=32, classes=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *SIZE, generator=g)
    y = torch.arange(n) % classes
    x += y[:, None, None, None].float() * 0.5
    return SimpleNamespace(train=TensorDataset(x, y), val=TensorDataset(x[:8], y[:8]),
                           classes=[f"c{i}" for i in range(classes)], fingerprint="drift-tiny")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """timm's test_resnet (resnet18's layout, 4% of its weights) with stem + layer1..2 frozen (BatchNorm stats
    frozen there), one real epoch."""
    tmp = tmp_path_factory.mktemp("drift")
    torch.manual_seed(1)
    backbone = load_backbone(LoadRequest("test_resnet", num_classes=4, input_size=SIZE))
    ws = Workspace.from_backbone(backbone, FinetunePlan(train=TrainConfig(
        epochs=1, batch_size=16, num_workers=0, lr=1e-2, cache_features=False, augment=False)))
    freeze_first_stages(ws.plan, ws.tree, 2)
    res = ws.resolve()
    before = {k: v.clone() for k, v in ws.backbone.module.state_dict().items()}
    save_file({k: v.contiguous() for k, v in before.items()}, str(tmp / "before.safetensors"))
    list(Trainer(ws, tiny_data(), tmp / "run").run())
    frozen = {p.name for p in ws.tree.params if not res.param_trainable[p.index]}
    return SimpleNamespace(dir=tmp / "run", before=tmp / "before.safetensors", frozen=frozen, tree=ws.tree,
                           state=before)


@pytest.mark.slow
def test_frozen_tensors_exactly_zero_trained_ones_positive(trained_run):
    report = diff_sources(trained_run.before, trained_run.dir)
    frozen_modules = ("conv1", "bn1", "layer1", "layer2")
    for key, value in report.tensors.items():
        if key in trained_run.frozen or key.split(".")[0] in frozen_modules:
            assert value == 0.0, key
        else:
            assert value > 0.0, key  # weights, biases and BatchNorm statistics of layer3, layer4, fc
    by_path = report.by_path()
    assert by_path["layer1.0.bn1"].params == 0.0 and by_path["layer1.0.bn1"].stats == 0.0
    assert by_path["layer4.0.bn2"].stats > 0 and by_path["fc"].params > 0


@pytest.mark.slow
def test_run_compared_with_its_own_start_stores_only_changing_tensors(trained_run):
    start = load_file(str(trained_run.dir / START_WEIGHTS))
    assert not any(k in trained_run.frozen for k in start)  # no second copy of frozen weights
    assert "fc.weight" in start and "layer4.0.conv1.weight" in start and "layer1.0.bn1.running_mean" not in start
    assert torch.equal(start["fc.weight"], trained_run.state["fc.weight"])
    report = diff_sources(trained_run.dir)
    assert report.problems == [] and report.fingerprint_checked >= len(trained_run.frozen)
    against_copy = diff_sources(trained_run.before, trained_run.dir)
    assert report.tensors == against_copy.tensors


@pytest.mark.slow
def test_tampered_frozen_weight_is_reported(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run.dir, run)
    state = load_file(str(run / "model.safetensors"))
    state["layer1.0.conv1.weight"][0, 0, 0, 0] += 1e-3
    save_file(state, str(run / "model.safetensors"))
    report = diff_sources(run)
    assert any("layer1.0.conv1.weight" in p for p in report.problems)
    assert main(["diff", str(run)]) == 1


@pytest.mark.slow
def test_cli_diff_json_and_errors(trained_run, capsys, tmp_path):
    assert main(["diff", str(trained_run.before), str(trained_run.dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    mods = {m["path"]: m for m in data["modules"]}
    assert mods["conv1.0"]["param_drift"] == 0.0 and mods["fc"]["param_drift"] > 0  # test_resnet: a deep stem
    assert main(["diff", str(trained_run.dir)]) == 0
    assert "0 (exact)" in capsys.readouterr().out

    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(4, 512)}, str(other))
    assert main(["diff", str(other), str(trained_run.dir)]) == 2
    assert "not the same architecture" in capsys.readouterr().err
    assert main(["diff", str(tmp_path / "nope.pt"), str(trained_run.dir)]) == 2
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    assert main(["diff", str(bad), str(trained_run.dir)]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err


def test_compare_states_is_exact_for_identical_and_relative_otherwise():
    a = {"m.weight": torch.ones(4), "m.running_mean": torch.zeros(2)}
    b = {"m.weight": torch.ones(4) * 1.5, "m.running_mean": torch.zeros(2)}
    m = compare_states(a, b).by_path()["m"]
    assert m.params == pytest.approx(0.5) and m.stats == 0.0


@pytest.mark.slow
def test_run_start_records_tied_weights_and_the_values_before_training(tmp_path):
    """The start record is written from the live tensors (no copy); weights shared by two modules still save."""
    from workbench.backbone import Backbone
    from workbench.spec import ModelSpec

    torch.manual_seed(0)
    first, second = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
    second.weight = first.weight  # tied, as in a language model's embedding and output layers
    model = torch.nn.Sequential(first, torch.nn.ReLU(), second, torch.nn.ReLU(), torch.nn.Linear(8, 2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    backbone = Backbone(model, ModelSpec("tied", 2, input_size=(1, 1, 8), classifier="4"), "test", "tied")
    ws = Workspace.from_backbone(backbone, FinetunePlan(train=TrainConfig(epochs=1, batch_size=8, num_workers=0)))
    data = SimpleNamespace(train=TensorDataset(torch.randn(16, 8), torch.arange(16) % 2), val=None,
                           classes=["a", "b"], fingerprint="tied")
    list(Trainer(ws, data, tmp_path / "run", copy_model=False).run())
    recorded = load_file(str(tmp_path / "run" / START_WEIGHTS))
    assert {"0.weight", "2.weight"} <= set(recorded)
    assert all(torch.equal(recorded[k], start[k]) for k in recorded)  # the values before the first step
    assert not torch.equal(model[0].weight, start["0.weight"])  # while the model itself trained
