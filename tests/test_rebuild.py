"""Rebuilding a cut model from its exported ``config.json`` goes through the model source that built it."""

from __future__ import annotations

import torch

from tests.onnx_cases import export_torch, small_cnn
from tests.plugin_fixtures import fakenet_plugin, write_fakenet  # noqa: F401  (fixture)
from workbench.backbone import LoadRequest
from workbench.plugins import EXPORTERS, registry
from workbench.sources import load_backbone
from workbench.surgery import apply_to_backbone, parse_head, rebuild_from_config


def _export_cut(backbone, out, cut="pool"):
    apply_to_backbone(backbone, parse_head({"cut": cut, "pool": "avgmax", "hidden": [6]}), 3)
    registry().get(EXPORTERS, "safetensors").export(backbone.module, backbone.spec, out)
    return backbone.module.eval()


def test_a_cut_onnx_import_rebuilds_with_the_same_names_and_outputs(tmp_path):
    """The ONNX source's passes (node renaming, BN handling) must run on rebuild too, not plain onnx2torch."""
    onnx_file = export_torch(small_cnn(), tmp_path / "cnn.onnx", 17, size=32)
    original = _export_cut(load_backbone(LoadRequest(str(onnx_file), input_size=(3, 32, 32))), tmp_path / "st")
    rebuilt = rebuild_from_config(tmp_path / "st").eval()
    assert list(rebuilt.state_dict()) == list(original.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), original(x), atol=1e-6)


def _fakenet_project(tmp_path, net):
    from tests.test_cli_train import write_project

    project = write_project(tmp_path, epochs=1)
    text = project.read_text()
    start, end = text.index("[model]"), text.index("[freeze]")
    model = f'[model]\nsource = "fakenet"\nname = "{net.name}"\nnum_classes = 3\ninput_size = [3, 32, 32]\n\n'
    text = text[:start] + model + text[end:].replace('["conv1", "bn1", "layer1", "layer2"]', '["stem", "bn"]')
    project.write_text(text + '\n[head]\ncut = "block"\npool = "avgmax"\nhidden = [5]\n')
    return project


def test_a_third_party_file_source_trains_cut_exports_and_rebuilds_through_itself(fakenet_plugin, tmp_path,  # noqa: F811
                                                                                   capsys):
    """A source the core has never heard of: its cut model is rebuilt from config.json by that source."""
    import json

    import fake_wb_fakenet

    from workbench.cli import main
    from workbench.errors import WorkbenchError
    from workbench.run_loading import load_run
    from workbench.surgery import SurgeryError

    net = write_fakenet(tmp_path / "net.fakenet")
    project = _fakenet_project(tmp_path, net)
    run, st = tmp_path / "run", tmp_path / "st"
    assert main(["train", str(project), "--out", str(run)]) == 0
    assert main(["export", str(run), "--format", "safetensors", "--out", str(st)]) == 0
    capsys.readouterr()
    recipe = json.loads((st / "config.json").read_text())["workbench"]["head"]
    assert (recipe["source"], recipe["cut"], recipe["base"]) == ("fakenet", "block", str(net.resolve()))

    trained = load_run(run).module.eval()
    loads = fake_wb_fakenet.FakeNetSource.loads
    rebuilt = rebuild_from_config(st).eval()
    assert fake_wb_fakenet.FakeNetSource.loads == loads + 1  # built by the plugin, not by the core
    assert list(rebuilt.state_dict()) == list(trained.state_dict())
    assert any(k.startswith("head.") for k in rebuilt.state_dict()) and "fc.weight" not in rebuilt.state_dict()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), trained(x))

    moved = net.rename(tmp_path / "elsewhere.fakenet")  # the base file is gone: say so, and how to point at it
    try:
        rebuild_from_config(st)
        raise AssertionError("rebuilt without its base file")
    except SurgeryError as exc:
        assert str(net.resolve()) in str(exc) and "base_file=" in str(exc)
    with torch.no_grad():
        assert torch.equal(rebuild_from_config(st, base_file=moved).eval()(x), trained(x))
    assert isinstance(SurgeryError("x"), WorkbenchError)


def test_a_cut_model_on_checkpoint_weights_rebuilds_through_the_checkpoint_source(tmp_path):
    """Weights for a named architecture (no config.json beside them): rebuilt with that architecture."""
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "weights" / "w.safetensors"
    weights.parent.mkdir()
    save_file(timm.create_model("test_resnet", pretrained=False, num_classes=5).state_dict(), str(weights))
    backbone = load_backbone(LoadRequest(str(weights), arch="test_resnet", input_size=(3, 32, 32)))
    original = _export_cut(backbone, tmp_path / "st", cut="layer3")
    rebuilt = rebuild_from_config(tmp_path / "st").eval()
    assert list(rebuilt.state_dict()) == list(original.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), original(x))
