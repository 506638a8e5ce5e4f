"""Local checkpoints: safetensors preferred, pickles only weights_only, malicious ones refused."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

from workbench.backbone import LoadRequest
from workbench.cli import main
from workbench.errors import ModelLoadError
from workbench.sources import load_backbone


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(1)
    return timm.create_model("resnet18", pretrained=False, num_classes=4).eval()


def _same_outputs(a, b, size=64):
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_safetensors_loads_into_arch(tmp_path, resnet):
    path = tmp_path / "weights.safetensors"
    save_file(resnet.state_dict(), str(path))
    backbone = load_backbone(LoadRequest(str(path), arch="resnet18"))
    assert backbone.source == "checkpoint" and backbone.spec.num_classes == 4
    assert _same_outputs(backbone.module, resnet)


def test_pth_with_wrapper_and_ddp_prefix(tmp_path, resnet):
    path = tmp_path / "weights.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in resnet.state_dict().items()}}, path)
    backbone = load_backbone(LoadRequest(str(path), arch="resnet18"))
    assert _same_outputs(backbone.module, resnet)


def test_num_classes_replaces_head_and_keeps_trunk(tmp_path, resnet):
    path = tmp_path / "weights.safetensors"
    save_file(resnet.state_dict(), str(path))
    backbone = load_backbone(LoadRequest(str(path), arch="resnet18", num_classes=9))
    assert backbone.module.fc.out_features == 9
    assert torch.equal(backbone.module.layer4[1].conv2.weight, resnet.layer4[1].conv2.weight)
    assert any("replaced it with a new 9-class head" in n for n in backbone.notices)


def test_config_json_beside_weights_names_arch_and_labels(tmp_path, resnet):
    save_file(resnet.state_dict(), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({
        "architecture": "resnet18", "num_classes": 4, "label_names": ["a", "b", "c", "d"],
        "pretrained_cfg": {"input_size": [3, 96, 96], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}))
    backbone = load_backbone(LoadRequest(str(tmp_path / "model.safetensors")))
    assert backbone.spec.label_names == ["a", "b", "c", "d"]
    assert backbone.spec.input_size == (3, 96, 96) and backbone.spec.mean == (0.5, 0.5, 0.5)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/workbench_pwned",))


def test_malicious_pickle_is_refused_with_explanation(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"fc.weight": Evil()}, fh)
    with pytest.raises(ModelLoadError, match=r"refusing to load evil.pth: it contains code.*could run that code.*safetensors"):
        load_backbone(LoadRequest(str(path), arch="resnet18"))
    assert not os.path.exists("/tmp/workbench_pwned")


def test_wrong_arch_names_the_mismatch(tmp_path, resnet):
    path = tmp_path / "weights.safetensors"
    save_file(resnet.state_dict(), str(path))
    with pytest.raises(ModelLoadError, match=r"does not fit architecture 'resnet34': .*missing key"):
        load_backbone(LoadRequest(str(path), arch="resnet34"))
    with pytest.raises(ModelLoadError, match=r"does not fit architecture 'mobilenetv3_small_050'"):
        load_backbone(LoadRequest(str(path), arch="mobilenetv3_small_050"))


def test_bad_files(tmp_path):
    with pytest.raises(ModelLoadError, match="file not found"):
        load_backbone(LoadRequest(str(tmp_path / "missing.safetensors"), arch="resnet18"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match="corrupt.safetensors: not a valid safetensors file"):
        load_backbone(LoadRequest(str(corrupt), arch="resnet18"))
    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ModelLoadError, match="trunc.pth: not a readable PyTorch checkpoint"):
        load_backbone(LoadRequest(str(truncated), arch="resnet18"))
    no_arch = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(no_arch))
    with pytest.raises(ModelLoadError, match="say which architecture"):
        load_backbone(LoadRequest(str(no_arch)))


def test_cli_inspect_checkpoint_and_error_exit(tmp_path, resnet, capsys):
    path = tmp_path / "weights.safetensors"
    save_file(resnet.state_dict(), str(path))
    assert main(["inspect", str(path), "--arch", "resnet18", "--depth", "1", "--input-size", "3,64,64"]) == 0
    assert "11,178,564 of 11,178,564 parameters trainable" in capsys.readouterr().out
    assert main(["inspect", str(path), "--arch", "resnet34"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: weights.safetensors does not fit architecture 'resnet34'") and err.count("\n") == 1


def test_weights_file_is_written_tensor_by_tensor_and_read_back_exactly_by_safetensors(tmp_path):
    """channels_last, bf16, bool, a scalar, an empty tensor and two names sharing memory."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from workbench.safetensors_file import write_safetensors

    conv = torch.randn(8, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    shared = torch.randn(4, 4)
    tensors = {"conv.weight": conv, "half": torch.randn(5, 7).to(torch.bfloat16), "mask": torch.rand(6) > 0.5,
               "steps": torch.tensor(17), "empty": torch.empty(0, 3), "tied.a": shared, "tied.b": shared,
               "counts": torch.arange(10, dtype=torch.int64), "sliced": torch.randn(6, 6)[:, ::2]}
    path = tmp_path / "model.safetensors"
    write_safetensors(tensors, path)
    loaded = load_file(str(path))
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor), name
    with safe_open(str(path), "pt") as fh:  # the library's own reader accepts the header and the layout
        assert sorted(fh.keys()) == sorted(tensors)
    assert conv.is_contiguous(memory_format=torch.channels_last)  # the caller's tensors are left as they were
