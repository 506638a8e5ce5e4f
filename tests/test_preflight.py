"""Problems before Start: named errors and warnings from the Qt-free core, and the CLI refusing errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tests.test_cli_train import write_project
from workbench.cli import main
from workbench.errors import PlanError
from workbench.freezing import freeze_selector, match_selector
from workbench.layer_tree import build_layer_tree
from workbench.plan import FinetunePlan, FreezeConfig, GroupConfig, TrainConfig
from workbench.preflight import DataFacts, PreflightError, check, preflight
from workbench.resolve import resolve_plan


def small_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 5))


def problems_for(plan: FinetunePlan, data: DataFacts | None = None, num_classes: int | None = 5):
    tree = build_layer_tree(small_cnn(), torch.randn(1, 3, 8, 8))
    return preflight(tree, plan, resolve_plan(tree, plan), num_classes, data)


def codes(problems) -> dict[str, str]:
    return {p.code: p.severity for p in problems}


def test_a_sane_plan_has_no_problems():
    assert problems_for(FinetunePlan(), DataFacts(classes=5, train_images=100)) == []


def test_class_count_mismatch_is_an_error_about_the_data():
    found = problems_for(FinetunePlan(), DataFacts(classes=3, train_images=100))
    mismatch = next(p for p in found if p.code == "class-count-mismatch")
    assert mismatch.is_error and mismatch.where == "data"
    assert "3 classes" in mismatch.message and "5 outputs" in mismatch.message


def test_absurd_learning_rates_are_named_per_group():
    plan = FinetunePlan(groups=[GroupConfig("trunk", ["0", "1"], lr=5.0), GroupConfig("head", ["5", "6", "7"], lr=1e-9)])
    found = {p.subject: p for p in problems_for(plan)}
    assert found["trunk"].code == "lr-too-high" and found["trunk"].is_error and "5" in found["trunk"].message
    assert found["head"].code == "lr-too-low" and not found["head"].is_error
    # A frozen group's LR is never used: no LR problem for it.
    plan.freeze = FreezeConfig(frozen=["0", "1"])
    assert "trunk" not in {p.subject for p in problems_for(plan)}


def test_trainable_group_at_lr_zero_is_a_named_warning():
    plan = FinetunePlan(groups=[GroupConfig("all", [""], lr=0.0)])
    assert codes(problems_for(plan))["trainable-group-lr-zero"] == "warning"


def test_batchnorm_on_one_image_batches():
    one = FinetunePlan(train=TrainConfig(batch_size=1))
    found = [p for p in problems_for(one) if p.code == "batchnorm-batch-of-one"]
    # The BatchNorm1d after pooling sees one value per channel: training would crash, so an error.
    assert len(found) == 1 and found[0].is_error and "6" in found[0].message
    one.freeze = FreezeConfig(frozen=["6"])  # that one frozen (eval mode); the conv's BatchNorm2d still trains
    found = [p for p in problems_for(one) if p.code == "batchnorm-batch-of-one"]
    assert len(found) == 1 and not found[0].is_error  # 8×8 values per channel: it runs, with noisy statistics
    one.freeze = FreezeConfig(batchnorm="eval")
    assert "batchnorm-batch-of-one" not in codes(problems_for(one))
    # A single training image is a batch of one too.
    assert codes(problems_for(FinetunePlan(), DataFacts(5, 1)))["batchnorm-batch-of-one"] == "error"
    assert "batchnorm-batch-of-one" not in codes(problems_for(FinetunePlan(), DataFacts(5, 2)))


def test_warmup_problems():
    plan = FinetunePlan(train=TrainConfig(scheduler="onecycle", warmup_epochs=1.0))
    assert codes(problems_for(plan))["warmup-ignored"] == "warning"
    plan = FinetunePlan(train=TrainConfig(epochs=2, warmup_epochs=2.0))
    assert "warmup-longer-than-training" in codes(problems_for(plan))


def test_errors_come_first_and_check_names_them():
    plan = FinetunePlan(groups=[GroupConfig("all", [""], lr=2.0)], train=TrainConfig(batch_size=1))
    found = problems_for(plan, DataFacts(classes=3, train_images=10))
    severities = [p.severity for p in found]
    assert severities == sorted(severities, key=lambda s: s != "error")
    with pytest.raises(PreflightError) as info:
        check(found)
    assert "[lr-too-high]" in str(info.value) and "[class-count-mismatch]" in str(info.value)
    check([p for p in found if not p.is_error])  # warnings pass


def test_selectors_count_matches_and_freeze_as_typed():
    tree = build_layer_tree(small_cnn(), torch.randn(1, 3, 8, 8))
    match = match_selector(tree, "type:BatchNorm2d")
    assert (match.modules, match.tensors, match.params) == (1, 2, 8)
    assert match_selector(tree, "re:^[57]$").params == 4 * 8 + 8 + 8 * 5 + 5
    plan = FinetunePlan()
    freeze_selector(plan, tree, "type:BatchNorm1d", True)
    assert plan.freeze.frozen == ["type:BatchNorm1d"]
    assert resolve_plan(tree, plan).trainable_params == tree.total_params - 16
    freeze_selector(plan, tree, "type:BatchNorm1d", False)  # unfreezing the same selector moves it
    assert plan.freeze.frozen == [] and plan.freeze.unfrozen == ["type:BatchNorm1d"]
    with pytest.raises(PlanError, match="type:BatchNorm2d"):
        freeze_selector(plan, tree, "type:Batchnorm2d", True)  # a near miss names the real type
    with pytest.raises(PlanError, match="bad regular expression"):
        match_selector(tree, "re:[")
    with pytest.raises(PlanError, match="unknown module path"):
        match_selector(tree, "backbone.0")
    assert plan.freeze.frozen == []


@pytest.mark.slow
def test_cli_train_refuses_plan_errors_before_making_a_run_folder(tmp_path: Path, capsys):
    project = write_project(tmp_path, epochs=1, extra="")
    text = project.read_text().replace("lr = 0.003", "lr = 5.0")
    project.write_text(text)
    out = tmp_path / "run"
    assert main(["train", str(project), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "[lr-too-high]" in err and "--force" in err
    assert not out.exists()


@pytest.mark.slow
def test_cli_train_force_trains_and_reports_the_problem(tmp_path: Path, capsys):
    project = write_project(tmp_path, epochs=1)
    text = project.read_text().replace("lr = 0.003", "lr = 1.5")
    project.write_text(text.replace('name = "resnet18"', 'name = "test_resnet"'))  # a run of a few MB, not 160
    out = tmp_path / "run"
    assert main(["train", str(project), "--out", str(out), "--force"]) == 0
    err = capsys.readouterr().err
    assert "warning: [lr-too-high]" in err and "--force: training anyway" in err
    assert (out / "model.safetensors").is_file()
