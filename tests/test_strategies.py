"""The strategy registry (built-ins and a third-party plugin), BitFit, layer-wise LR decay and LP-FT."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from workbench.backbone import LoadRequest
from workbench.compare import CompareError, parse_strategies, strategy_plan
from workbench.plan import AdapterConfig, FinetunePlan, GroupConfig, TrainConfig
from workbench.sources import load_backbone
from workbench.workspace import Workspace

FAKE_STRATEGY = textwrap.dedent('''
    class HeadOnlyTwice:
        """A third-party strategy: a probe at twice the LR."""
        name = "probe2x"
        syntax = "probe2x"
        description = "probe at twice the project's LR (third-party test strategy)"

        def parse(self, arg):
            if arg:
                raise ValueError("probe2x takes no argument")

        def apply(self, plan, tree, arg):
            from workbench.freezing import linear_probe

            linear_probe(plan, tree)
            plan.train.lr *= 2
''')


@pytest.fixture
def strategy_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake distribution whose entry point adds the strategy ``probe2x``."""
    import importlib

    from workbench import plugins as plugin_mod

    site = tmp_path / "site"
    dist = site / "fake_wb_strategy-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "fake_wb_strategy.py").write_text(FAKE_STRATEGY)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-wb-strategy\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[workbench.strategies]\nprobe2x = fake_wb_strategy:HeadOnlyTwice\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(plugin_mod, "_registry", None)


def ws_for(name="resnet18", **train) -> Workspace:
    backbone = load_backbone(LoadRequest(name, num_classes=4, input_size=(3, 32, 32)))
    return Workspace.from_backbone(backbone, FinetunePlan(train=TrainConfig(**{"epochs": 4, **train})))


@pytest.mark.slow
def test_a_plugin_strategy_shows_in_compare_help_and_transforms_the_plan(strategy_plugin, capsys):
    from workbench.cli import main

    try:
        assert main(["compare", "--help"]) == 0
    except SystemExit as exit_:  # argparse's --help
        assert exit_.code == 0
    out = capsys.readouterr().out
    assert "probe2x: probe at twice the project's LR (third-party test strategy)" in out
    assert "lora[:RANK]:" in out and "llrd[:DECAY]:" in out and "lp-ft[:EPOCHS]:" in out and "bitfit:" in out
    ws = ws_for(lr=1e-3)
    (strategy,) = parse_strategies("probe2x")
    plan = strategy_plan(ws.plan, ws.tree, strategy)
    assert plan.train.lr == 2e-3 and plan.freeze.frozen == [""]
    with pytest.raises(CompareError, match="probe2x takes no argument"):
        parse_strategies("probe2x:3")


@pytest.mark.parametrize(("text", "message"), [
    ("lora:0", "lora\\[:RANK\\] needs a whole rank >= 1, not '0'"),
    ("llrd:1.5", "the layer decay must be in \\(0, 1\\], not 1.5"),
    ("llrd:abc", "the layer decay must be a number such as 0.75, not 'abc'"),
    ("lp-ft:x", "lp-ft\\[:EPOCHS\\] needs a whole number of probe epochs"),
    ("bitfit:2", "bitfit takes no argument"),
    ("loraa", "unknown strategy 'loraa' \\(known: probe, freeze:N"),
])
def test_bad_strategy_arguments_are_one_clear_message(text, message):
    with pytest.raises(CompareError, match=message):
        parse_strategies(text)


def test_lp_ft_probes_then_everything_trains_at_a_tenth_of_the_lr():
    ws = ws_for(lr=1e-2)
    plan = strategy_plan(ws.plan, ws.tree, parse_strategies("lp-ft")[0])
    assert plan.freeze.frozen == [""] and plan.freeze.unfrozen == ["fc"]
    (step,) = plan.unfreeze
    assert step.epoch == 2 and "head" not in step.groups and len(step.groups) == len(plan.groups) - 1
    assert step.lr == pytest.approx(1e-3)  # the probed head slows down too (Kumar et al.'s fine-tune phase)
    assert {g.lr for g in plan.groups[:-1]} == {1e-3} and plan.groups[-1].lr is None
    with pytest.raises(CompareError, match="probes for 4 epoch\\(s\\) of 4: nothing would be fine-tuned"):
        strategy_plan(ws.plan, ws.tree, parse_strategies("lp-ft:4")[0])


def test_lora_strategy_adapts_the_low_rank_layers_outside_the_head_and_trains_the_head():
    from workbench.adapters import adapter_share, adapter_targets

    ws = ws_for()
    modules = dict(ws.backbone.module.named_modules())
    plan = strategy_plan(ws.plan, ws.tree, parse_strategies("lora:4")[0])
    assert plan.adapters is not None and plan.adapters.rank == 4 and plan.freeze.unfrozen == ["fc"]
    targets = adapter_targets(ws.backbone.module, ws.tree, plan.adapters)
    assert "fc" not in targets.paths and len(targets.paths) == 20 and not targets.skipped_narrow  # all 20 convs
    # At rank 8 the stem's and layer1's adapters (64 channels) and a 64 → 128 downsample's are over a tenth of them
    plan = strategy_plan(ws.plan, ws.tree, parse_strategies("lora:8")[0])
    assert plan.adapters is not None
    targets = adapter_targets(ws.backbone.module, ws.tree, plan.adapters)
    assert targets.skipped_narrow == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2",
                                      "layer2.0.downsample.0"]
    assert len(targets.paths) == 14 and all(adapter_share(modules[p], 8) <= 0.1 for p in targets.paths)
    assert any("6 layer(s) the selectors match are left frozen" in n for n in targets.notes())
    # The project's own [adapters] (no max_share) is what lora:N starts from: every convolution, at rank N
    ws.plan.adapters = AdapterConfig(modules=["type:Conv2d"], rank=2)
    plan = strategy_plan(ws.plan, ws.tree, parse_strategies("lora:8")[0])
    assert plan.adapters is not None and plan.adapters.rank == 8 and plan.adapters.max_share is None
    assert len(adapter_targets(ws.backbone.module, ws.tree, plan.adapters).paths) == 20
    assert strategy_plan(plan, ws.tree, parse_strategies("probe")[0]).adapters is None  # only lora keeps adapters


def test_lora_rank_8_on_efficientnet_lite0_stays_under_a_twentieth_of_full_fine_tuning():
    """Issue 24's bound: on the demo's model the strategy's trainable parameters are <= 5% of full fine-tuning's."""
    from workbench.workspace import adapt_workspace

    ws = Workspace.from_backbone(load_backbone(LoadRequest("efficientnet_lite0", num_classes=10, input_size=(3, 48, 48))),
                                 FinetunePlan(train=TrainConfig(epochs=4)))
    full = ws.resolve().trainable_params
    ws.plan = strategy_plan(ws.plan, ws.tree, parse_strategies("lora")[0])
    notes = adapt_workspace(ws)
    adapted = ws.resolve().trainable_params
    assert ws.tree.adapter_paths[0] == "blocks.4.0.conv_pwl" and ws.tree.adapter_paths[-1] == "conv_head"
    assert len(ws.tree.adapter_paths) == 16 and any("17 layer(s) the selectors match are left frozen" in n for n in notes)
    assert adapted == 142_848 + 12_810 and adapted / full < 0.05  # adapters + the head, of 3,383,818


def test_layer_decay_gives_each_timm_layer_its_lr_and_a_typed_group_lr_wins():
    ws = ws_for(lr=1e-3)
    ws.plan.train.layer_decay = 0.5
    res = ws.resolve()
    assert ws.tree.layer_source == "timm group_matcher(coarse=False)"
    lrs = {g.name: g.lr for g in res.groups}
    assert lrs["head"] == 1e-3 and len(res.groups) == 10  # resnet18: stem, 8 blocks, head
    assert min(lrs.values()) == pytest.approx(1e-3 * 0.5 ** 9)
    assert [g.lr for g in res.groups] == sorted(g.lr for g in res.groups)  # decaying away from the head
    ws.plan.groups = [GroupConfig("trunk", ["layer1", "layer2", "layer3", "layer4"]),
                      GroupConfig("stem", ["conv1", "bn1"], lr=5e-4), GroupConfig("head", ["fc"])]
    lrs = {g.name: g.lr for g in ws.resolve().groups}
    assert lrs == {"trunk": pytest.approx(1e-3 * 0.5 ** 8), "stem": 5e-4, "head": 1e-3}


@pytest.mark.slow
def test_layer_decay_on_an_onnx_import_uses_depth_stages(tiny_onnx_net):
    backbone = load_backbone(LoadRequest(str(tiny_onnx_net), input_size=(3, 32, 32)))
    ws = Workspace.from_backbone(backbone, FinetunePlan(train=TrainConfig(layer_decay=0.5)))
    res = ws.resolve()
    assert ws.tree.layer_source == "depth stages"
    assert res.groups[-1].lr == 1e-3 and res.groups[0].lr < res.groups[-1].lr


@pytest.fixture
def tiny_onnx_net(tmp_path: Path) -> Path:
    import torch
    import torch.nn as nn

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 32, 32), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    return path


def test_bitfit_trains_biases_norm_scales_and_head_and_says_when_convolutions_have_no_bias():
    from workbench.freezing import bitfit

    ws = ws_for("efficientnet_lite0")
    notes = bitfit(ws.plan, ws.tree)
    assert "none of this model's 49 convolution/linear layers has a bias" in notes[0]
    res = ws.resolve()
    trains = {p.name for p in ws.tree.params if res.param_trainable[p.index]}
    assert trains and all(n.endswith(("bias", "weight")) for n in trains)
    assert all(n.startswith("classifier") or ".bn" in n or n.startswith("bn") for n in trains)
    # the normalisation modules stay frozen as modules: their statistics do not move
    assert len(res.bn_eval) == sum(1 for n in ws.tree.nodes if n.is_batchnorm)
    ws.plan.freeze.unfrozen, ws.plan.freeze.frozen = [], []
    notes = bitfit(ws.plan, ws.tree, norms=False)
    assert notes[0].endswith("trains the normalisation layers' biases and the head")
    assert not any(s.endswith(".weight") for s in ws.plan.freeze.unfrozen)
    vit = ws_for("test_vit")
    assert bitfit(vit.plan, vit.tree) == []  # its linear layers have biases: nothing to explain


def test_the_readme_lists_the_strategies_as_the_registry_describes_them():
    from workbench.compare import strategy_help

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- strategies:start -->")[1].split("<!-- strategies:end -->")[0]
    assert block.strip().strip("`").strip() == strategy_help()


def test_with_layer_decay_the_default_groups_are_the_layers_so_editing_one_keeps_the_others():
    from workbench.groups import assign_to_group

    ws = ws_for(lr=1e-3)
    ws.plan.train.layer_decay = 0.5
    before = {g.name: g.lr for g in ws.resolve().groups}
    assign_to_group(ws.plan, ws.tree, "fc", "head", ws.default_groups())  # what the Groups table does first
    ws.plan.group("head").lr = 2e-3  # the user types an LR for the head
    after = {g.name: g.lr for g in ws.resolve().groups}
    assert after.pop("head") == 2e-3 and before.pop("head") == 1e-3
    assert after == before  # every other layer keeps its decayed LR
