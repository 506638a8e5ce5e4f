"""The freezing guarantees: exact arithmetic, gradients, tri-state, BatchNorm policy."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from workbench.apply import apply_plan
from workbench.errors import PlanError
from workbench.freezing import freeze_matching, freeze_type, freeze_up_to, full_finetune, linear_probe, set_frozen
from workbench.layer_tree import build_layer_tree
from workbench.plan import FinetunePlan, FreezeConfig, GroupConfig
from workbench.resolve import FROZEN, PARTIAL, TRAINABLE, resolve_plan


def three_linear() -> nn.Sequential:
    return nn.Sequential(nn.Linear(30, 40, bias=False), nn.Linear(40, 40, bias=False), nn.Linear(40, 40, bias=False))


def test_4400_parameters_freezing_first_two_leaves_1600_trainable():
    model = three_linear()
    tree = build_layer_tree(model, torch.randn(1, 30))
    assert tree.total_params == 4400
    plan = FinetunePlan(freeze=FreezeConfig(frozen=["0", "1"]))
    res = resolve_plan(tree, plan)
    assert (res.trainable_params, res.frozen_params) == (1600, 2800)
    assert res.summary().startswith("1,600 of 4,400 parameters trainable (2,800 frozen, 64% frozen)")
    assert [tree.nodes[i].output_shape for i in range(4)] == [(1, 40), (1, 40), (1, 40), (1, 40)]


def test_frozen_middle_layer_gets_no_grad_but_earlier_layer_does():
    model = three_linear()
    tree = build_layer_tree(model)
    applied = apply_plan(model, resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(frozen=["1"]))))
    model(torch.randn(8, 30)).pow(2).mean().backward()
    assert model[1].weight.grad is None
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0
    assert model[2].weight.grad is not None
    optimizer_params = {id(p) for g in applied.param_groups for p in g["params"]}
    assert id(model[1].weight) not in optimizer_params
    assert id(model[0].weight) in optimizer_params and id(model[2].weight) in optimizer_params


def test_tri_state_child_unfrozen_inside_frozen_parent():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), nn.Linear(4, 2))
    tree = build_layer_tree(model)
    plan = FinetunePlan()
    set_frozen(plan, tree, "0", True)
    set_frozen(plan, tree, "0.1", False)
    res = resolve_plan(tree, plan)
    state = {n.path: res.node_state[n.index] for n in tree.nodes}
    assert state == {"": PARTIAL, "0": PARTIAL, "0.0": FROZEN, "0.1": TRAINABLE, "1": TRAINABLE}
    assert plan.freeze.frozen == ["0"] and plan.freeze.unfrozen == ["0.1"]
    # Ticking the parent again makes the whole subtree one state and drops the child's mark.
    set_frozen(plan, tree, "0", True)
    assert plan.freeze.unfrozen == [] and resolve_plan(tree, plan).node_state[tree.node("0.1").index] == FROZEN
    set_frozen(plan, tree, "0", False)
    assert plan.freeze.frozen == [] and resolve_plan(tree, plan).trainable_params == tree.total_params


def test_apply_never_changes_a_weight_and_sets_requires_grad():
    model = three_linear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tree = build_layer_tree(model, torch.randn(1, 30))
    apply_plan(model, resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(frozen=["0"]))))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == [False, True, True]


def bn_net(bn: nn.Module, dims: int) -> nn.Module:
    conv = {1: nn.Linear(6, 6), 2: nn.Conv2d(6, 6, 1), 3: nn.Conv3d(6, 6, 1)}[dims]
    return nn.Sequential(nn.Sequential(conv, bn), nn.Flatten(), nn.LazyLinear(3) if dims > 1 else nn.Linear(6, 3))


@pytest.mark.parametrize("bn_cls,dims", [(nn.BatchNorm1d, 1), (nn.BatchNorm2d, 2), (nn.BatchNorm3d, 3), (nn.SyncBatchNorm, 2)])
def test_bn_policy_freeze_keeps_stats_and_affine_bit_identical(bn_cls, dims):
    model = bn_net(bn_cls(6), dims)
    shape = {1: (4, 6), 2: (4, 6, 3, 3), 3: (4, 6, 2, 2, 2)}[dims]
    model(torch.randn(*shape))  # materialise lazy layers
    tree = build_layer_tree(model)
    res = resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(frozen=["0"], batchnorm="freeze")))
    assert [tree.nodes[i].path for i in res.bn_eval] == ["0.1"]
    applied = apply_plan(model, res)
    before = {k: v.clone() for k, v in model[0].state_dict().items()}
    opt = torch.optim.SGD(applied.param_groups, lr=0.5)
    for _ in range(3):
        applied.set_train_mode(model)
        assert model.training and not model[0][1].training
        opt.zero_grad()
        model(torch.randn(*shape) * 3 + 1).pow(2).mean().backward()
        opt.step()
    after = model[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "frozen BN block changed"


def test_bn_policy_train_keeps_bn_training_inside_frozen_block():
    model = bn_net(nn.BatchNorm1d(6), 1)
    tree = build_layer_tree(model)
    res = resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(frozen=["0"], batchnorm="train")))
    assert res.bn_eval == []
    applied = apply_plan(model, res)
    assert not model[0][0].weight.requires_grad and model[0][1].weight.requires_grad
    mean_before = model[0][1].running_mean.clone()
    applied.set_train_mode(model)
    model(torch.randn(8, 6) + 5).sum().backward()
    assert not torch.equal(mean_before, model[0][1].running_mean)


def test_unknown_path_is_an_error_with_a_suggestion():
    tree = build_layer_tree(three_linear())
    with pytest.raises(PlanError, match=r"unknown module path 'O' in \[freeze\] frozen"):
        resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(frozen=["O"])))
    with pytest.raises(PlanError, match="batchnorm must be one of"):
        resolve_plan(tree, FinetunePlan(freeze=FreezeConfig(batchnorm="maybe")))


def test_patterns_types_and_freeze_up_to():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    tree = build_layer_tree(model)
    plan = FinetunePlan()
    assert freeze_type(plan, tree, "BatchNorm1d") == 2
    res = resolve_plan(tree, plan)
    assert res.trainable_params == tree.total_params - 16
    full_finetune(plan)
    assert freeze_matching(plan, tree, "[02]") == 2
    assert resolve_plan(tree, plan).trainable_params == tree.total_params - 40
    full_finetune(plan)
    assert freeze_matching(plan, tree, r"[0-3]", regex=True) == 4
    assert resolve_plan(tree, plan).trainable_params == 10
    full_finetune(plan)
    freeze_up_to(plan, tree, "2")
    res = resolve_plan(tree, plan)
    assert {n.path: res.node_state[n.index] for n in tree.nodes if n.path} == {
        "0": FROZEN, "1": FROZEN, "2": FROZEN, "3": TRAINABLE, "4": TRAINABLE}
    with pytest.raises(PlanError, match="matches no module"):
        freeze_matching(plan, tree, "nope*")
    # Ticking after a pattern edit turns the pattern into plain paths and keeps its effect.
    full_finetune(plan)
    freeze_type(plan, tree, "BatchNorm1d")
    set_frozen(plan, tree, "0", True)
    assert sorted(plan.freeze.frozen) == ["0", "1", "3"]


def test_group_validation_warnings():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    tree = build_layer_tree(model)
    plan = FinetunePlan(freeze=FreezeConfig(frozen=["0"]), groups=[
        GroupConfig("frozen_one", ["0"], lr=1e-4),
        GroupConfig("mid", ["1"], lr=1e-3),
        GroupConfig("overlap", ["1.weight"], lr=5e-3),
        GroupConfig("empty", ["re:nothing.*"], lr=1e-2),
    ])
    res = resolve_plan(tree, plan)
    codes = sorted(w.code for w in res.warnings)
    assert codes == ["frozen-group-with-lr", "group-matches-nothing", "param-in-no-group", "param-in-two-groups"]
    by_name = {g.name: g for g in res.groups}
    # The more specific selector wins: 1.weight trains at 5e-3, 1.bias at 1e-3; layer 2 is ungrouped.
    assert by_name["overlap"].numel == 16 and by_name["mid"].numel == 4
    assert by_name["ungrouped"].numel == 10 and by_name["ungrouped"].auto
    assert by_name["frozen_one"].numel == 0
    applied = apply_plan(model, res)
    counted = [p for g in applied.param_groups for p in g["params"]]
    assert len(counted) == len({id(p) for p in counted}) == 4  # each trainable tensor in exactly one group
    assert {g["name"]: g["lr"] for g in applied.param_groups} == {"mid": 1e-3, "overlap": 5e-3, "ungrouped": 1e-3}


def test_linear_probe_needs_a_classifier_and_trains_only_it():
    model = three_linear()
    tree = build_layer_tree(model, classifier_paths=["2"])
    plan = FinetunePlan()
    linear_probe(plan, tree)
    assert resolve_plan(tree, plan).trainable_params == 1600
    with pytest.raises(PlanError, match="classifier"):
        linear_probe(plan, build_layer_tree(model))
