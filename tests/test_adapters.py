"""[adapters]: LoRA from peft on timm models and ONNX imports: frozen bases, training, exports, resume, diff."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from workbench.adapters import load_adapters, merged_copy, save_adapters
from workbench.backbone import LoadRequest
from workbench.errors import PlanError, ProjectError, WorkbenchError
from workbench.plan import AdapterConfig, FinetunePlan, TrainConfig
from workbench.sources import load_backbone
from workbench.training.reports import StepReport
from workbench.training.trainer import Trainer
from workbench.workspace import Workspace, adapt_workspace

sys.path.insert(0, str(Path(__file__).parent))
from test_trainer import SIZE, tiny_data  # noqa: E402

pytest.importorskip("peft")


def lora_workspace(name="resnet18", modules=("type:Conv2d",), rank=4, epochs=2, probe=True, max_share=None, **train):
    torch.manual_seed(123)
    backbone = load_backbone(LoadRequest(name, num_classes=4, input_size=SIZE))
    options = {"epochs": epochs, "batch_size": 16, "num_workers": 0, "lr": 1e-2, "amp": "off", **train}
    plan = FinetunePlan(train=TrainConfig(**options))
    if probe:
        plan.freeze.frozen, plan.freeze.unfrozen = [""], list(backbone.spec.extra.get("classifiers") or ["fc"])
    plan.adapters = AdapterConfig(modules=list(modules), rank=rank, alpha=2.0 * rank, max_share=max_share)
    ws = Workspace.from_backbone(backbone, plan)
    adapt_workspace(ws)
    return ws


@pytest.mark.slow
def test_base_weights_and_bn_stats_stay_bit_identical_while_adapters_train(tmp_path):
    ws = lora_workspace()
    res = ws.resolve()
    names = {p.name: res.param_trainable[p.index] for p in ws.tree.params}
    assert names["layer1.0.conv1.base_layer.weight"] is False and names["layer1.0.conv1.lora_A.default.weight"]
    assert names["layer1.0.bn1.weight"] is False and names["fc.weight"]
    adapter_tensors = [n for n in names if ".lora_" in n]
    in_groups = {ws.tree.params[i].name for g in res.groups for i in g.params}
    assert set(adapter_tensors) <= in_groups  # the adapters train in the plan's groups
    before = {k: v.clone() for k, v in ws.backbone.module.state_dict().items()}
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    list(trainer.run())
    after = trainer.trained.module.state_dict()
    for key, value in before.items():
        if ".lora_" not in key and not key.startswith("fc."):
            assert torch.equal(value, after[key]), f"{key} changed"  # bases, BN weights and running stats
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert any(not torch.equal(before[k], after[k]) for k in before if ".lora_B." in k)


@pytest.mark.slow
def test_merged_exports_load_in_plain_timm_and_carry_no_adapter_code(tmp_path):
    import onnx
    import timm

    from workbench.export import export_model

    ws = lora_workspace(modules=["layer4.0.downsample.0", "fc"], probe=False)
    with torch.no_grad():  # a trained-looking adapter: B no longer zero
        for name, p in ws.backbone.module.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.05)
    model, spec = ws.backbone.module.eval(), ws.backbone.spec
    x = torch.randn(2, *SIZE)
    expected = model(x)
    merged = merged_copy(model)
    assert not any(".lora_" in k or ".base_layer." in k for k in merged.state_dict())
    torch.testing.assert_close(merged(x), expected, atol=1e-5, rtol=1e-5)
    export_model(model, spec, "safetensors", tmp_path / "st")
    plain = timm.create_model("resnet18", pretrained=False, num_classes=4,
                              pretrained_cfg_overlay={"file": str(tmp_path / "st" / "model.safetensors")})
    from safetensors.torch import load_file

    plain.load_state_dict(load_file(str(tmp_path / "st" / "model.safetensors")))  # strict: plain names only
    torch.testing.assert_close(plain.eval()(x), expected, atol=1e-5, rtol=1e-5)
    result = export_model(model, spec, "onnx", tmp_path / "m.onnx")
    assert result.parity_max_abs_diff is not None and result.parity_max_abs_diff < 1e-4
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert not [n for n in list(graph.initializer) + list(graph.node) if "lora" in n.name]
    result = export_model(model, spec, "torchscript", tmp_path / "m.pt")
    assert result.parity_max_abs_diff is not None and result.parity_max_abs_diff < 1e-4
    assert "lora" not in torch.jit.load(str(tmp_path / "m.pt")).code
    assert has_only_plain(model) is False  # the caller's model keeps its adapters


def has_only_plain(module):
    from workbench.adapters import has_adapters

    return not has_adapters(module)


def test_adapter_only_export_loads_back_with_peft_onto_a_fresh_model(tmp_path):
    import timm
    from peft import PeftModel

    ws = lora_workspace(name="test_vit", modules=[r"re:blocks\.\d+\.attn\.qkv"], probe=False)
    with torch.no_grad():
        for name, p in ws.backbone.module.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.05)
    model = ws.backbone.module.eval()
    x = torch.randn(1, *SIZE)
    paths = save_adapters(model, ws.plan.adapters, ws.tree.adapter_paths, tmp_path / "adapter", "test_vit")
    assert sorted(p.name for p in paths) == ["adapter_config.json", "adapter_model.safetensors"]
    base_state = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items() if ".lora_" not in k}
    fresh = timm.create_model("test_vit", pretrained=False, num_classes=4, img_size=SIZE[1:])
    fresh.load_state_dict(base_state)
    peft_model = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter")).eval()
    torch.testing.assert_close(peft_model(x), model(x), atol=1e-5, rtol=1e-5)
    # onto a different architecture: one clear message
    other = timm.create_model("resnet18", pretrained=False, num_classes=4)
    with pytest.raises(WorkbenchError, match="made for test_vit: this model has no module 'blocks.0.attn.qkv'"):
        load_adapters(other, tmp_path / "adapter")


RESUME = ["layer3.0.downsample.0", "layer4.0.downsample.0"]


@pytest.mark.slow
def test_resume_with_adapters_is_exact(tmp_path):
    data = tiny_data()
    losses_a = [r.loss for r in Trainer(lora_workspace(modules=RESUME), data, tmp_path / "a").run() if isinstance(r, StepReport)]
    trainer = Trainer(lora_workspace(modules=RESUME), data, tmp_path / "b")
    losses_b = []
    for r in trainer.run():
        if isinstance(r, StepReport):
            losses_b.append(r.loss)
            if len(losses_b) == 4:
                trainer.request_stop()
    resumed = Trainer(lora_workspace(modules=RESUME), data, tmp_path / "b", resume=True)
    losses_c = [r.loss for r in resumed.run() if isinstance(r, StepReport)]
    assert losses_b + losses_c == losses_a


@pytest.mark.slow
def test_diff_reports_the_effective_change_of_an_adapted_module(tmp_path, capsys):
    from workbench.drift import diff_run_from_start
    from workbench.project import save_project

    ws = lora_workspace(modules=["layer4.0.downsample.0"])
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    list(trainer.run())
    save_project(ws.plan, tmp_path / "run" / "project.toml")  # the recipe as a run folder records it
    report = diff_run_from_start(tmp_path / "run")
    by_path = report.by_path()
    adapted = by_path["layer4.0.downsample.0"]
    assert adapted.adapter and adapted.params is not None and adapted.params > 0
    assert by_path["layer4.0.downsample.0.base_layer"].params == 0.0
    module = trainer.trained.module.get_submodule("layer4.0.downsample.0")
    delta = module.get_delta_weight("default")  # peft's own
    expected = float(delta.norm() / module.get_base_layer().weight.norm())
    assert adapted.params == pytest.approx(expected, rel=1e-4)
    assert "LoRA" in report.text()

    # exports of this run: the adapter alone, or merged; a base weight edited since is refused
    from safetensors.torch import load_file, save_file

    from workbench.cli import main

    assert main(["export", str(tmp_path / "run"), "--adapters-only", "--out", str(tmp_path / "ad")]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "x")]) == 2
    weights = tmp_path / "run" / "model.safetensors"
    state = load_file(str(weights))
    state["layer4.0.downsample.0.base_layer.weight"] += 1e-3
    save_file(state, str(weights))
    assert main(["export", str(tmp_path / "run"), "--format", "safetensors", "--out", str(tmp_path / "st")]) == 2
    err = capsys.readouterr().err
    assert "give --format FORMAT, or --adapters-only" in err
    assert ("cannot merge: layer4.0.downsample.0.base_layer.weight (an adapted module's base weight) changed since "
            "the adapter was trained") in err
    assert not (tmp_path / "st").exists()


def test_feature_cache_holds_only_the_prefix_before_the_first_adapter(tmp_path):
    from workbench.training import trunk_features as fc

    ws = lora_workspace(modules=["layer4.0.downsample.0"], augment=False, cache_features=True)
    applied = ws.apply()
    split = fc.split_frozen_trunk(ws.backbone.module, applied.set_train_mode)
    assert any(w.code == "adapters-end-cached-trunk" and "(layer4.0.downsample.0)" in w.message
               for w in ws.resolve().warnings)
    trunk_modules = {n for n, _ in split.trunk.named_modules()}
    assert not any("lora" in n for n in trunk_modules)
    assert any(n.startswith("layer3") for n in trunk_modules)  # it still caches everything before layer4


@pytest.mark.slow
def test_onnx_import_gets_lora_on_its_linear_and_conv_layers(tmp_path):
    import torch.nn as nn

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.randn(1, *SIZE), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    torch.manual_seed(0)
    backbone = load_backbone(LoadRequest(str(path), input_size=SIZE))
    plan = FinetunePlan(train=TrainConfig(epochs=1, batch_size=16, num_workers=0, amp="off"))
    plan.adapters = AdapterConfig(modules=["type:Conv2d", "type:Linear"], rank=2)
    ws = Workspace.from_backbone(backbone, plan)
    adapt_workspace(ws)
    assert len(ws.tree.adapter_paths) == 3  # one Conv2d, two Linear (Gemm) layers
    before = {k: v.clone() for k, v in ws.backbone.module.state_dict().items() if ".base_layer." in k}
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    list(trainer.run())
    after = trainer.trained.module.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


@pytest.mark.parametrize(("modules", "rank", "message"), [
    (["nothing.here"], 4, "unknown module path 'nothing.here'"),
    (["re:^nope$"], 4, "matches no module"),
    (["layer1.0.bn1"], 4, "is a BatchNorm2d, which peft's LoRA cannot adapt \\(it adapts Linear, Conv1d, Conv2d"),
    (["type:BatchNorm2d"], 4, "none of which peft's LoRA can adapt"),
    (["fc"], 600, "rank 600 is larger than fc allows \\(4: a Linear with in 512, out 4\\)"),
    (["conv1.weight"], 4, "matches a parameter; adapters go on modules"),
    (["conv1"], 8, "'conv1': a rank-8 adapter would have 18% of its weight, over max_share = 0.1"),
    (["re:layer1[.].*"], 8, "matches 4 layer\\(s\\), but on each a rank-8 adapter would have more than max_share = 0.1"),
])
def test_bad_adapter_selectors_and_ranks_get_one_clear_message(modules, rank, message):
    with pytest.raises(PlanError, match=message):
        lora_workspace(modules=modules, rank=rank, max_share=0.1)


def test_grouped_convolutions_are_refused_by_path_and_skipped_by_pattern_with_a_note():
    with pytest.raises(PlanError, match="grouped convolution"):
        lora_workspace(name="mobilenetv3_small_050", modules=["blocks.1.0.conv_dw"])
    torch.manual_seed(0)
    backbone = load_backbone(LoadRequest("mobilenetv3_small_050", num_classes=4, input_size=SIZE))
    plan = FinetunePlan()
    plan.adapters = AdapterConfig(modules=["type:Conv2d"], rank=4)
    ws = Workspace.from_backbone(backbone, plan)
    notes = adapt_workspace(ws)
    assert ws.tree.adapter_paths and "grouped (depthwise) convolution" in notes[0]


@pytest.mark.parametrize(("text", "message"), [
    ("rank = 0", "rank must be >= 1"),
    ("rank = 4\nalpha = -1.0", "alpha must be > 0"),
    ("method = \"ia3\"", "method must be one of lora"),
    ("dropout = 1.0", "dropout must be < 1"),
    ("max_share = 0", "max_share must be > 0"),
    ("max_share = 1.5", "max_share must be <= 1"),
])
def test_bad_adapter_sections_in_the_project_file(tmp_path, text, message):
    from workbench.project import load_project

    path = tmp_path / "p.toml"
    path.write_text(f"[adapters]\nmodules = [\"type:Linear\"]\n{text}\n")
    with pytest.raises(ProjectError, match=message):
        load_project(path)


def test_project_round_trip_and_inspect_json_carry_the_adapters(tmp_path, capsys):
    from workbench.cli import main
    from workbench.project import load_project, save_project

    plan = FinetunePlan()
    plan.model.name, plan.model.num_classes, plan.model.input_size = "resnet18", 4, SIZE
    plan.adapters = AdapterConfig(modules=["layer4.0.downsample.0", "fc"], rank=4)
    save_project(plan, tmp_path / "p.toml")
    assert load_project(tmp_path / "p.toml").adapters == plan.adapters
    assert main(["inspect", str(tmp_path / "p.toml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["adapters"]["modules"] == ["layer4.0.downsample.0", "fc"]
    assert data["adapters"]["adapter_params"] == 4 * (256 + 512) + 4 * (512 + 4)
    node = next(n for n in data["nodes"] if n["path"] == "layer4.0.downsample.0")
    assert node["adapter"] == "lora"
    assert data["cost"]["trainable_params"] == data["trainable_params"]
    assert main(["inspect", str(tmp_path / "p.toml")]) == 0
    assert "adapters: lora rank 4, alpha 4 on 2 module(s): 5,136 adapter parameters train" in capsys.readouterr().out


def test_a_workspace_can_drop_or_change_its_adapters_without_touching_the_original():
    from workbench.workspace import with_adapter_config

    ws = lora_workspace(modules=["layer4.0.downsample.0"])
    plain = with_adapter_config(ws, None)
    names = set(plain.backbone.module.state_dict())
    assert "layer4.0.downsample.0.weight" in names and not any("lora" in n or "base_layer" in n for n in names)
    assert not plain.tree.adapter_paths and plain.plan.adapters is None
    assert ws.tree.adapter_paths == ["layer4.0.downsample.0"]  # the original keeps its adapter
    torch.testing.assert_close(plain.backbone.module.state_dict()["layer4.0.downsample.0.weight"],
                               ws.backbone.module.state_dict()["layer4.0.downsample.0.base_layer.weight"])
    other = with_adapter_config(ws, AdapterConfig(modules=["fc"], rank=2))
    assert other.tree.adapter_paths == ["fc"]
