"""The cost of a plan before training: exact bytes, FLOPs checked against an analytic count, tick budget."""

from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn as nn

from workbench.cost import measure_costs, plan_cost
from workbench.layer_tree import build_layer_tree
from workbench.plan import FinetunePlan, FreezeConfig, TrainConfig
from workbench.resolve import resolve_plan


def three_linear() -> nn.Sequential:
    return nn.Sequential(nn.Linear(30, 40, bias=False), nn.Linear(40, 40, bias=False), nn.Linear(40, 40, bias=False))


def test_three_layer_example_exact_figures():
    model = three_linear()
    tree = build_layer_tree(model, torch.randn(1, 30))
    costs = measure_costs(model, tree, torch.randn(1, 30))
    # 2 FLOPs per multiply-add: 30*40, 40*40, 40*40 weights.
    assert [costs.node_flops[tree.node(p).index] for p in ("0", "1", "2")] == [2400, 3200, 3200]
    res = resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(frozen=["0", "1"])))
    cost = plan_cost(costs, res, TrainConfig(optimizer="adamw"))
    assert (cost.trainable_params, cost.total_params) == (1600, 4400)
    assert cost.grad_bytes == 1600 * 4
    assert cost.optimizer_state_bytes == 2 * 1600 * 4  # AdamW: exp_avg + exp_avg_sq
    assert cost.full_optimizer_state_bytes == 2 * 4400 * 4
    assert cost.optimizer_ratio == pytest.approx(1600 / 4400)
    # forward 8,800 for all; backward 2x only for the last layer; the frozen prefix gets none.
    assert (cost.forward_flops, cost.backward_flops, cost.full_step_flops) == (8800, 6400, 26400)
    assert cost.step_ratio == pytest.approx(15200 / 26400)
    assert cost.cached_step_flops == 3200 + 6400
    assert cost.sentence() == ("this plan: 0.58× the step cost and 0.36× the optimizer memory of full fine-tuning; "
                               "with the feature cache, epochs 2+ ≈ 0.36×")

    sgd = plan_cost(costs, res, TrainConfig(optimizer="sgd", momentum=0.9))
    assert sgd.optimizer_state_bytes == 1600 * 4
    assert plan_cost(costs, res, TrainConfig(optimizer="sgd", momentum=0.0)).optimizer_state_bytes == 0


def test_frozen_middle_layer_still_passes_gradients():
    model = three_linear()
    tree = build_layer_tree(model, torch.randn(1, 30))
    costs = measure_costs(model, tree, torch.randn(1, 30))
    cost = plan_cost(costs, resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(frozen=["1"]))), TrainConfig())
    # layer 0 trains (2x), layer 1 frozen but on the gradient path (1x), layer 2 trains (2x); no prefix, no cache.
    assert cost.backward_flops == 2 * 2400 + 3200 + 2 * 3200
    assert cost.cached_step_flops is None
    full = plan_cost(costs, resolve_plan(tree, FinetunePlan()), TrainConfig())
    assert full.step_ratio == 1.0 and full.optimizer_ratio == 1.0


def test_dtype_aware_bytes():
    model = three_linear().to(torch.float64)
    tree = build_layer_tree(model, torch.randn(1, 30, dtype=torch.float64))
    costs = measure_costs(model, tree, torch.randn(1, 30, dtype=torch.float64))
    cost = plan_cost(costs, resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(frozen=["0", "1"]))), TrainConfig())
    assert cost.grad_bytes == 1600 * 8 and cost.optimizer_state_bytes == 2 * 1600 * 8


def _analytic_flops(model: nn.Module, x: torch.Tensor) -> int:
    """2 x multiply-adds of every Conv2d and Linear, from their shapes seen by hooks."""
    total = 0

    def hook(mod, _inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            total += 2 * out.numel() * k
        elif isinstance(mod, nn.Linear):
            total += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return total


@pytest.mark.slow
def test_resnet18_flops_within_10_percent_of_analytic_and_published_count():
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    x = torch.randn(1, 3, 224, 224)
    tree = build_layer_tree(model)
    costs = measure_costs(model, tree, x)
    analytic = _analytic_flops(model, x)
    assert abs(costs.forward_flops - analytic) / analytic < 0.10
    # torchvision documents resnet18 at 1.81 GFLOPS, counted as multiply-adds: 2 FLOPs each here.
    assert abs(costs.forward_flops - 2 * 1.814e9) / (2 * 1.814e9) < 0.10
    # Attribution: the stem conv's own count, by its shape: 64 * 112 * 112 outputs x 3*7*7 MACs.
    assert costs.node_flops[tree.node("conv1").index] == 2 * 64 * 112 * 112 * 3 * 7 * 7
    probe = plan_cost(costs, resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(frozen=[""], unfrozen=["fc"]))),
                      TrainConfig())
    assert probe.backward_flops == 2 * 2 * 512 * 1000
    assert probe.cached_ratio is not None and probe.cached_ratio < 0.01


@pytest.mark.slow
def test_tick_update_is_cheap_on_a_thousand_module_model():
    import timm

    model = timm.create_model("efficientnet_b7", pretrained=False, num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    tree = build_layer_tree(model)
    assert len(tree.nodes) > 1000
    costs = measure_costs(model, tree, x)
    plan = FinetunePlan(freeze=FreezeConfig(frozen=["blocks.0", "blocks.1", "blocks.2"]))
    res = resolve_plan(tree, plan)
    start = time.perf_counter()
    for _ in range(10):
        cost = plan_cost(costs, res, plan.train)
    per_tick = (time.perf_counter() - start) / 10
    print(f"plan_cost on efficientnet_b7 ({len(tree.nodes)} modules): {per_tick * 1000:.2f} ms")
    assert 0 < cost.step_ratio < 1 and 0 < cost.optimizer_ratio < 1


def test_inspect_json_carries_cost(capsys):
    from workbench.cli import main

    assert main(["inspect", "resnet18", "--num-classes", "3", "--input-size", "3,32,32", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cost"]["trainable_params"] == data["trainable_params"]
    assert data["cost"]["step_ratio"] == 1.0
    assert main(["inspect", "resnet18", "--num-classes", "3", "--input-size", "3,32,32"]) == 0
    assert "this plan: 1.00× the step cost and 1.00× the optimizer memory of full fine-tuning" in capsys.readouterr().out
