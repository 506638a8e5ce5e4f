"""Cut anywhere, attach a new head: [head] in the project file, train, export (issue 13 §2)."""

from __future__ import annotations

import json
import re

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
from safetensors.torch import load_file

from tests.test_cli_train import write_project
from workbench.cli import main
from workbench.project import ProjectError, load_project
from workbench.surgery import SurgeryError, attach_head, parse_head, preview

HEAD = '\n[head]\ncut = "layer3"\npool = "avgmax"\nhidden = [16]\nactivation = "relu"\ndropout = 0.2\n'


@pytest.mark.parametrize("values, message", [
    ({"pool": "mean"}, "pool must be one of avg, max, avgmax, flatten, none"),
    ({"hidden": [16, -2]}, "hidden must be >= 1, not -2"),
    ({"dropout": 1.0}, "dropout must be < 1.0, not 1.0"),
    ({"cut": " "}, 'cut must be a module path such as "layer3"'),
    ({"activation": "swish"}, "activation must be one of"),
    ({"cutt": "layer3"}, "unknown key(s) cutt (did you mean 'cut'?)"),
])
def test_head_table_errors_are_specific(values, message):
    with pytest.raises(SurgeryError) as info:
        parse_head(values)
    assert message in str(info.value)


def test_unknown_cut_path_suggests_the_nearest_module():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    with pytest.raises(SurgeryError, match=r"no module 'layr3' in this model; did you mean 'layer3'"):
        attach_head(model, parse_head({"cut": "layr3"}), 3, (3, 32, 32), "fc")


def test_preview_gives_shape_and_params_before_applying():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = preview(model, parse_head({"cut": "layer3", "pool": "avgmax", "hidden": [16]}), 3, (3, 32, 32), "fc")
    assert info["feature_shape"] == [256, 2, 2] and info["output_shape"] == [3]
    assert info["head_params"] == (512 * 16 + 16) + (16 * 3 + 3)
    # The previewed model is untouched.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.fc, torch.nn.Linear)


def test_vit_cut_at_block_pools_tokens():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3)
    built = attach_head(vit, parse_head({"cut": "blocks.5", "hidden": [8]}), 4, (3, 32, 32), "head")
    names = [n for n, _ in built.named_modules()]
    assert "blocks.5" in names and "blocks.6" not in names and "head.0" in names
    assert built(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_project_round_trip_and_bad_head(tmp_path):
    project = write_project(tmp_path, extra=HEAD)
    plan = load_project(project)
    assert plan.head.cut == "layer3" and plan.head.hidden == [16]
    bad = write_project(tmp_path / "b", extra='\n[head]\ndropout = -0.1\n')
    with pytest.raises((ProjectError, SurgeryError), match=r"\[head\] dropout must be >= 0.0, not -0.1"):
        load_project(bad)


def test_cli_inspect_shows_new_head_and_bad_cut_is_exit_2(tmp_path, capsys):
    project = write_project(tmp_path, extra=HEAD)
    assert main(["inspect", str(project), "--json"]) == 0
    text = capsys.readouterr().out
    assert '"head.1"' in text or "head.1" in text
    assert "layer4" not in text
    bad = write_project(tmp_path / "b", extra='\n[head]\ncut = "layer33"\n')
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "did you mean 'layer3'" in err and "Traceback" not in err


def _trunk_state(run):
    return {k: v for k, v in load_file(str(run / "model.safetensors")).items()
            if k.startswith(("conv1", "bn1", "layer1", "layer2"))}


@pytest.mark.slow
def test_cut_resnet_trains_frozen_trunk_bit_identical_and_exports(tmp_path, capsys):
    project = write_project(tmp_path, epochs=1, extra=HEAD)
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    capsys.readouterr()
    state = load_file(str(run / "model.safetensors"))
    assert "head.1.weight" in state and not any(k.startswith(("layer4", "fc.")) for k in state)
    # Frozen trunk bit-identical: every frozen tensor matches the fingerprint the run recorded at its start.
    starts = json.loads((run / "initial_frozen.json").read_text())
    prints = starts["sha256"]
    from workbench.run_start import fingerprint

    trunk = _trunk_state(run)
    checked = [k for k, v in trunk.items() if k in prints]
    assert len(checked) >= 20 and any(k.startswith("layer2") for k in checked)
    assert all(fingerprint(trunk[k]) == prints[k] for k in checked)
    assert main(["diff", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fingerprint_checked"] >= len(checked) and not report["problems"]

    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(onnx_path)]) == 0
    diff = float(re.search(r"max abs difference vs PyTorch: (\S+)", capsys.readouterr().out).group(1))
    assert diff < 1e-4
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    logits = ort.InferenceSession(str(onnx_path)).run(None, {"input": x})[0]
    assert logits.shape == (3, 3)
    ts_path = tmp_path / "m.pt"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(ts_path)]) == 0
    scripted = torch.jit.load(str(ts_path))
    with torch.no_grad():
        assert np.abs(scripted(torch.from_numpy(x)).numpy() - logits).max() < 1e-4
    st = tmp_path / "st"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(st)]) == 0
    config = json.loads((st / "config.json").read_text())
    assert config["workbench"]["head"]["cut"] == "layer3"
    from workbench.surgery import rebuild_from_config

    rebuilt = rebuild_from_config(st).eval()
    with torch.no_grad():
        assert np.abs(rebuilt(torch.from_numpy(x)).numpy() - logits).max() < 1e-4


def _swap_model(project, model_toml: str, head: str, frozen: str) -> None:
    text = project.read_text()
    start, end = text.index("[model]"), text.index("[freeze]")
    text = text[:start] + model_toml + "\n" + text[end:]
    text = text.replace('frozen = ["conv1", "bn1", "layer1", "layer2"]', f"frozen = {frozen}")
    project.write_text(text + head)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vit", "onnx"])
def test_cut_vit_and_onnx_import_train_and_export_onnx(kind, tmp_path, capsys):
    project = write_project(tmp_path, epochs=1)
    if kind == "vit":
        model = ('[model]\nsource = "timm"\nname = "vit_tiny_patch16_224"\nnum_classes = 3\n'
                 'input_size = [3, 32, 32]\n')
        head, frozen, kept = '\n[head]\ncut = "blocks.1"\nhidden = [8]\n', '["patch_embed", "blocks.0"]', "blocks.0."
    else:
        from tests.onnx_cases import export_torch, small_cnn

        export_torch(small_cnn(), tmp_path / "cnn.onnx", 17, size=32)
        model = '[model]\nsource = "onnx"\nname = "cnn.onnx"\nnum_classes = 3\ninput_size = [3, 32, 32]\n'
        head, frozen, kept = '\n[head]\ncut = "pool"\npool = "avgmax"\n', '["conv1", "bn1"]', "conv1."
    _swap_model(project, model, head, frozen)
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    capsys.readouterr()
    state = load_file(str(run / "model.safetensors"))
    assert any(k.startswith("head.") for k in state)
    if kind == "vit":
        assert not any(k.startswith(("blocks.2.", "blocks.11.")) for k in state)
    else:
        assert not any(k.startswith(("conv2.", "fc.")) for k in state)
    prints = json.loads((run / "initial_frozen.json").read_text())["sha256"]
    from workbench.run_start import fingerprint

    checked = [k for k in state if k.startswith(kept) and k in prints]
    assert checked and all(fingerprint(state[k]) == prints[k] for k in checked)
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(onnx_path)]) == 0
    diff = float(re.search(r"max abs difference vs PyTorch: (\S+)", capsys.readouterr().out).group(1))
    assert diff < 1e-4
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert ort.InferenceSession(str(onnx_path)).run(None, {"input": x})[0].shape == (2, 3)
