"""Exporters: safetensors (+ timm reload), TorchScript, ONNX (+ onnxruntime parity), and their failure modes."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from workbench.backbone import LoadRequest
from workbench.errors import WorkbenchError
from workbench.export import ExportResult, export_model
from workbench.spec import ModelSpec
from workbench_plugins import onnx_exporter
from workbench_plugins.timm_source import spec_from_timm

# (timm name, image size); ViT is the slow one, so it is the only 224 case.
TIMM_CASES = [("resnet18", 64), ("mobilenetv3_small_050", 64), ("convnext_atto", 64), ("vit_tiny_patch16_224", 224)]
LABELS = ["cat", "dog", "bird"]


def timm_model(name: str, size: int, labels: list[str] | None = None) -> tuple[nn.Module, ModelSpec]:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=3)
    with torch.no_grad():  # zero-initialised heads would make every parity check trivial
        for p in model.get_classifier().parameters():
            p.normal_(0, 1.0)
    spec = spec_from_timm(model, LoadRequest(name, input_size=(3, size, size)), pretrained=False)
    spec.label_names = labels
    return model, spec


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


class Tiny(nn.Module):
    """A small conv net; subclasses misbehave in one export-specific way."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class DiffersWhenExported(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            return out + 0.5
        return out


class FixedBatch(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.features(x).reshape(int(x.shape[0]), -1)  # int() freezes the batch size into a trace
        return self.fc(flat)


TINY_SPEC = ModelSpec(architecture="tiny", num_classes=2, input_size=(3, 8, 8))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), TIMM_CASES)
def test_safetensors_reloads_in_timm_with_identical_outputs(tmp_path: Path, monkeypatch, name: str, size: int) -> None:
    import timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, spec = timm_model(name, size, labels=LABELS if name == "resnet18" else None)
    result = export_model(model, spec, "safetensors", tmp_path / "out", recipe_toml="[model]\nname = 'x'\n")

    out = tmp_path / "out"
    assert result.format == "safetensors"
    assert result.paths == [out / "model.safetensors", out / "config.json", out / "recipe.toml"]
    assert (out / "recipe.toml").read_text() == "[model]\nname = 'x'\n"
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == name and config["num_classes"] == 3
    assert config["label_names"] == (LABELS if name == "resnet18" else ["class_0", "class_1", "class_2"])
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, size, size] and cfg["num_classes"] == 3
    assert cfg["mean"] == list(spec.mean) and cfg["std"] == list(spec.std)
    assert cfg["classifier"] == spec.classifier and cfg["custom_load"] is False
    assert {"interpolation", "crop_pct", "crop_mode"} <= cfg.keys()
    assert leftovers(out) == []

    reloaded = timm.create_model(
        name, pretrained=True, num_classes=3,
        pretrained_cfg_overlay=dict(file=str(out / "model.safetensors"), num_classes=3),
    ).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(reloaded(x), model.eval()(x))


@pytest.mark.slow
def test_safetensors_keeps_tied_weights_and_says_timm_cannot_rebuild_onnx_imports(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    class Tied(Tiny):
        def __init__(self) -> None:
            super().__init__()
            self.fc2 = nn.Linear(4, 2)
            self.fc2.weight = self.fc.weight

    spec = ModelSpec(architecture="onnx:tied", num_classes=2, input_size=(3, 8, 8))
    result = export_model(Tied(), spec, "safetensors", tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert torch.equal(tensors["fc.weight"], tensors["fc2.weight"])
    assert "timm cannot rebuild" in result.message
    assert json.loads((tmp_path / "config.json").read_text())["label_names"] == ["class_0", "class_1"]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [TIMM_CASES[0], TIMM_CASES[2]])
def test_torchscript_reloads_with_spec_and_same_outputs(tmp_path: Path, name: str, size: int) -> None:
    model, spec = timm_model(name, size, labels=LABELS)
    out = tmp_path / f"{name}.pt"
    result = export_model(model, spec, "torchscript", out, recipe_toml="a = 1\n")

    assert result.paths == [out] and result.parity_max_abs_diff is not None and result.parity_max_abs_diff <= 1e-4
    extra = {"config.json": "", "recipe.toml": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    config = json.loads(extra["config.json"])  # extra files come back as bytes
    assert config["label_names"] == LABELS and config["input_size"] == [3, size, size]
    assert config["mean"] == list(spec.mean) and extra["recipe.toml"] == b"a = 1\n"
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x), atol=1e-5)
    assert leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), TIMM_CASES)
def test_onnx_matches_pytorch_at_batch_2_and_3(tmp_path: Path, name: str, size: int) -> None:
    import onnx
    import onnxruntime as ort

    model, spec = timm_model(name, size, labels=LABELS)
    out = tmp_path / f"{name}.onnx"
    result = export_model(model, spec, "onnx", out)
    print(f"{name}: onnx parity {result.parity_max_abs_diff:.3g}")

    assert result.paths == [out] and "TorchScript-based exporter" in result.message
    proto = onnx.load(str(out))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props if p.key != "recipe_toml"}
    assert meta["label_names"] == LABELS and meta["architecture"] == name
    assert meta["mean"] == list(spec.mean) and meta["std"] == list(spec.std)
    assert meta["input_size"] == [3, size, size]
    assert meta["interpolation"] == spec.interpolation and meta["crop_pct"] == spec.crop_pct

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and [o.name for o in session.get_outputs()] == ["logits"]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a named, dynamic batch dimension
    model.eval()
    for batch in (2, 3):
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            reference = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == (batch, 3)
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_onnx_import_reexports_with_dynamic_batch_and_metadata(tmp_path: Path) -> None:
    import onnxruntime as ort

    from tests.onnx_cases import export_torch, small_cnn
    from workbench_plugins.onnx_source import OnnxSource

    source = export_torch(small_cnn(), tmp_path / "small.onnx", opset=17, size=16)
    backbone = OnnxSource().load(LoadRequest(str(source)))
    backbone.spec.label_names = ["a", "b", "c", "d", "e"]
    out = tmp_path / "again.onnx"
    result = export_model(backbone.module, backbone.spec, "onnx", out)
    assert result.parity_max_abs_diff is not None and result.parity_max_abs_diff <= 1e-4

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)
    module = backbone.module.eval()
    for batch in (1, 3, 5):
        x = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], module(x).numpy(), rtol=1e-4, atol=1e-4)

    again = OnnxSource().load(LoadRequest(str(out)))  # the importer reads our metadata back
    assert again.spec.label_names == ["a", "b", "c", "d", "e"]
    assert again.spec.mean == backbone.spec.mean and again.spec.input_size == (3, 16, 16)


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "name"), [("onnx", "m.onnx"), ("torchscript", "m.pt")])
def test_too_large_a_difference_raises_and_writes_nothing(tmp_path: Path, fmt: str, name: str) -> None:
    with pytest.raises(WorkbenchError, match=r"differs from PyTorch by up to 0\.5.*tolerance 0\.0001"):
        export_model(DiffersWhenExported(), TINY_SPEC, fmt, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_tolerance_is_configurable(tmp_path: Path) -> None:
    result = export_model(DiffersWhenExported(), TINY_SPEC, "onnx", tmp_path / "m.onnx", tolerance=0.6)
    assert result.parity_max_abs_diff == pytest.approx(0.5, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "name"), [("onnx", "m.onnx"), ("torchscript", "m.pt")])
def test_hard_coded_batch_size_is_caught(tmp_path: Path, fmt: str, name: str) -> None:
    with pytest.raises(WorkbenchError, match="batch of 3"):
        export_model(FixedBatch(), TINY_SPEC, fmt, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_onnx_import_with_fixed_batch_gets_a_hint(tmp_path: Path) -> None:
    spec = ModelSpec(architecture="onnx:fixed", num_classes=2, input_size=(3, 8, 8))
    with pytest.raises(WorkbenchError, match="batch of 3.*export the weights as safetensors instead"):
        export_model(FixedBatch(), spec, "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_onnx_falls_back_to_dynamo_or_names_both_attempts(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    real = onnx_exporter.torch_onnx_export

    def torchscript_broken(model, spec, path, opset, dynamo):
        return real(model, spec, path, opset, dynamo) if dynamo else "failed: simulated"

    monkeypatch.setattr(onnx_exporter, "torch_onnx_export", torchscript_broken)
    out = tmp_path / "m.onnx"
    if importlib.util.find_spec("onnxscript") is None:
        with pytest.raises(WorkbenchError, match="TorchScript-based exporter failed: simulated; dynamo exporter not tried"):
            export_model(Tiny(), TINY_SPEC, "onnx", out)
        assert list(tmp_path.iterdir()) == []
    else:
        import onnxruntime as ort

        model = Tiny().eval()
        result = export_model(model, TINY_SPEC, "onnx", out)
        assert "dynamo exporter, dynamic batch" in result.message and "failed: simulated" in result.message
        assert result.paths == [out] and leftovers(tmp_path) == []
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        x = torch.randn(3, 3, 8, 8)
        with torch.no_grad():
            np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], model(x).numpy(), atol=1e-5)


@pytest.mark.slow
def test_onnx_large_model_uses_external_data(tmp_path: Path, monkeypatch) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(onnx_exporter, "EXTERNAL_DATA_BYTES", 0)
    out = tmp_path / "m.onnx"
    model = Tiny().eval()
    result = export_model(model, TINY_SPEC, "onnx", out)
    assert result.paths == [out, tmp_path / "m.onnx.data"] and all(p.is_file() for p in result.paths)
    assert leftovers(tmp_path) == []
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize(("fmt", "name"), [("safetensors", "folder"), ("torchscript", "m.pt"), ("onnx", "m.onnx")])
def test_unwritable_output_is_one_clear_error(tmp_path: Path, fmt: str, name: str) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(WorkbenchError, match=f"cannot write {blocker}/{name}"):
        export_model(Tiny(), TINY_SPEC, fmt, blocker / name)
    if os.geteuid() != 0:  # root ignores directory permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(WorkbenchError, match="cannot write .*Permission denied"):
            export_model(Tiny(), TINY_SPEC, fmt, locked / name)


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "name"), [("safetensors", "folder"), ("torchscript", "m.pt"), ("onnx", "m.onnx")])
def test_full_disk_leaves_no_file_and_no_temp(tmp_path: Path, monkeypatch, fmt: str, name: str) -> None:
    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(WorkbenchError, match="(?i)cannot write .*no space left on device"):
        export_model(Tiny(), TINY_SPEC, fmt, tmp_path / name)
    monkeypatch.undo()
    remaining = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert remaining == []


def test_unknown_format_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="no exporter plugin named 'tflite'.*available: onnx, safetensors, torchscript"):
        export_model(Tiny(), TINY_SPEC, "tflite", tmp_path / "m.tflite")


@pytest.mark.slow
def test_export_leaves_the_callers_module_untouched(tmp_path: Path) -> None:
    model = Tiny().double().train()
    model.conv.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for fmt, name in (("safetensors", "st"), ("torchscript", "m.pt"), ("onnx", "m.onnx")):
        result = export_model(model, TINY_SPEC, fmt, tmp_path / name)
        assert isinstance(result, ExportResult)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True, True, True]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_exporters_are_registered_plugins_with_their_output_kinds() -> None:
    from workbench.plugins import EXPORTERS, registry

    found = registry().plugins(EXPORTERS)
    assert {name: found[name].output_kind for name in ("safetensors", "torchscript", "onnx")} == {
        "safetensors": "folder", "torchscript": "file", "onnx": "file"}
    assert all(found[name].description for name in ("safetensors", "torchscript", "onnx"))
