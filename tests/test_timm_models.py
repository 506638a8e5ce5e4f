"""Real timm families (pretrained=False, small inputs): tree, stages, presets, groups."""

from __future__ import annotations

import pytest
import torch

from workbench.backbone import LoadRequest
from workbench.errors import ModelLoadError
from workbench.freezing import freeze_first_stages, linear_probe, plan_at_epoch
from workbench.groups import discriminative
from workbench.plan import FinetunePlan, UnfreezeStep
from workbench.resolve import resolve_plan
from workbench.sources import load_backbone
from workbench.workspace import Workspace

FAMILIES = [
    ("resnet18", (3, 64, 64), "fc"),
    ("mobilenetv3_small_050", (3, 64, 64), "classifier"),
    ("vit_tiny_patch16_224", (3, 224, 224), "head"),
    ("convnext_atto", (3, 64, 64), "head.fc"),
    ("efficientnet_b0", (3, 64, 64), "classifier"),
]


@pytest.fixture(scope="module", params=FAMILIES, ids=[f[0] for f in FAMILIES])
def workspace(request):
    name, size, classifier = request.param
    ws = Workspace.from_backbone(load_backbone(LoadRequest(name, num_classes=7, input_size=size)))
    return ws, classifier


def test_tree_counts_match_torch(workspace):
    ws, classifier = workspace
    model = ws.backbone.module
    assert ws.tree.total_params == sum(p.numel() for p in model.parameters())
    assert len(ws.tree.nodes) == len(list(model.named_modules()))
    assert ws.tree.root.output_shape == (1, 7)
    assert ws.backbone.spec.classifier == classifier and ws.tree.classifier_paths == [classifier]
    assert ws.tree.stage_source == "timm group_matcher"
    # Every parameter in exactly one default group; the classifier alone in 'head'.
    res = ws.resolve()
    assert sorted(p for g in res.groups for p in g.params) == list(range(len(ws.tree.params)))
    assert res.groups[-1].name == "head"
    assert res.groups[-1].numel == sum(p.numel() for p in dict(model.named_modules())[classifier].parameters())
    assert not res.warnings


def test_linear_probe_and_first_stages(workspace):
    ws, classifier = workspace
    model = ws.backbone.module
    head_params = sum(p.numel() for p in dict(model.named_modules())[classifier].parameters())
    plan = FinetunePlan()
    linear_probe(plan, ws.tree)
    res = resolve_plan(ws.tree, plan, ws.default_groups())
    assert res.trainable_params == head_params
    assert [g.name for g in res.groups if g.params] == ["head"]
    freeze_first_stages(plan, ws.tree, 1)
    res = resolve_plan(ws.tree, plan, ws.default_groups())
    stem, first = ws.tree.stages[0][1], ws.tree.stages[1][1]
    frozen = {p for p in range(len(ws.tree.params)) if not res.param_trainable[p]}
    assert frozen == set(stem) | set(first)


def test_discriminative_lrs_and_gradual_unfreezing(workspace):
    ws, _ = workspace
    groups = discriminative(ws.default_groups(), base_lr=1e-3, factor=1 / 2.6)
    assert groups[-1].lr == pytest.approx(1e-3)
    assert groups[-2].lr == pytest.approx(1e-3 / 2.6)
    assert groups[0].lr == pytest.approx(1e-3 / 2.6 ** (len(groups) - 1))
    plan = FinetunePlan(groups=groups, unfreeze=[UnfreezeStep(2, [groups[-2].name])])
    linear_probe(plan, ws.tree)
    before = resolve_plan(ws.tree, plan)
    warned = sorted(w.message.split("'")[1] for w in before.warnings if w.code == "frozen-group-with-lr")
    assert {w.code for w in before.warnings} - {"batchnorm-frozen-untrained"} == {"frozen-group-with-lr"}
    assert warned == sorted(g.name for g in groups[:-2])  # not the scheduled group, not the head
    later = resolve_plan(ws.tree, plan_at_epoch(plan, ws.tree, 2))
    assert later.trainable_params > before.trainable_params
    assert [g.name for g in later.groups if g.params] == [groups[-2].name, "head"]
    assert resolve_plan(ws.tree, plan_at_epoch(plan, ws.tree, 1)).trainable_params == before.trainable_params


def test_gradients_only_reach_trainable_parameters(workspace):
    ws, _ = workspace
    model = ws.backbone.module
    plan = FinetunePlan()
    freeze_first_stages(plan, ws.tree, 1)
    ws.plan = plan
    applied = ws.apply()
    applied.set_train_mode(model)
    for p in model.parameters():
        p.grad = None
    model(torch.randn(2, *ws.backbone.spec.input_size)).sum().backward()
    res = applied.resolution
    named = dict(model.named_parameters())
    for p in ws.tree.params:
        if res.param_trainable[p.index]:
            assert named[p.name].grad is not None, p.name
        else:
            assert named[p.name].grad is None, p.name
    full = {n: p for n, p in model.named_parameters()}
    for p in full.values():
        p.requires_grad_(True)


def test_unknown_timm_name_suggests_close_matches():
    with pytest.raises(ModelLoadError, match=r"unknown timm model 'resnet181'.*did you mean"):
        load_backbone(LoadRequest("resnet181", source="timm"))
    with pytest.raises(ModelLoadError, match="unknown timm model 'definitely_not_a_model'$"):
        load_backbone(LoadRequest("definitely_not_a_model"))
    with pytest.raises(ModelLoadError, match="file not found: nothere/model.xyz"):
        load_backbone(LoadRequest("nothere/model.xyz"))


def test_pretrained_unavailable_falls_back_with_one_notice(monkeypatch):
    import workbench_plugins.timm_source as timm_source

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(timm_source, "_cached_weights", lambda cfg: None)
    monkeypatch.setattr(timm_source, "_reachable", lambda host, timeout=3.0: False)  # an offline machine
    backbone = load_backbone(LoadRequest("resnet18", pretrained=True, num_classes=3))
    assert not backbone.spec.pretrained
    assert backbone.notices == ["pretrained weights for resnet18 are not cached and huggingface.co is unreachable; "
                                "continuing with random init"]


def test_cached_pretrained_weights_load_without_network(tmp_path, monkeypatch):
    """Weights already in the cache load from the file; a new head replaces the 1000-class one."""
    import timm
    from safetensors.torch import save_file

    import workbench_plugins.timm_source as timm_source

    torch.manual_seed(7)
    source = timm.create_model("resnet18", pretrained=False)
    weights = tmp_path / "model.safetensors"
    save_file(source.state_dict(), str(weights))
    monkeypatch.setattr(timm_source, "_cached_weights", lambda cfg: str(weights))
    monkeypatch.setattr(timm_source, "_reachable", lambda *a, **k: pytest.fail("no network needed"))
    backbone = load_backbone(LoadRequest("resnet18", pretrained=True, num_classes=3))
    assert backbone.spec.pretrained and backbone.notices == []
    assert torch.equal(backbone.module.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert backbone.module.fc.out_features == 3


def test_model_with_over_1000_modules():
    """efficientnet_b7 (1,105 modules): exact counts, and a tick updates totals without re-walking torch."""
    from workbench.freezing import set_frozen

    ws = Workspace.from_backbone(load_backbone(LoadRequest("efficientnet_b7", num_classes=10, input_size=(3, 64, 64))))
    model = ws.backbone.module
    assert len(ws.tree.nodes) == len(list(model.named_modules())) > 1000
    assert ws.tree.total_params == sum(p.numel() for p in model.parameters())
    set_frozen(ws.plan, ws.tree, "blocks.3", True)
    res = ws.resolve()
    assert res.frozen_params == sum(p.numel() for p in model.blocks[3].parameters())
    assert res.node_state[ws.tree.node("blocks").index] == "partial"


def test_assign_to_group_keeps_groups_disjoint():
    from workbench.groups import assign_to_group

    ws = Workspace.from_backbone(load_backbone(LoadRequest("resnet18", num_classes=3, input_size=(3, 32, 32))))
    plan = FinetunePlan()
    assign_to_group(plan, ws.tree, "layer4.1", "fast", ws.default_groups())
    by_name = {g.name: g.modules for g in plan.groups}
    assert by_name["layer4"] == ["layer4.0"] and by_name["fast"] == ["layer4.1"]
    res = resolve_plan(ws.tree, plan)
    assert not res.warnings
    assert sorted(p for g in res.groups for p in g.params) == list(range(len(ws.tree.params)))
    # Moving a whole stage empties its group, which disappears; moving back merges paths.
    assign_to_group(plan, ws.tree, "layer4.0", "fast", ws.default_groups())
    assert "layer4" not in {g.name for g in plan.groups}
    assert plan.group("fast").modules == ["layer4"]
