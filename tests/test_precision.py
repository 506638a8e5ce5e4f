"""Mixed precision: what ``amp = "auto"`` picks, that the run says so, and that bf16 keeps every guarantee."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.test_trainer import split_after_three_stages, tiny_data, workspace
from workbench.errors import WorkbenchError
from workbench.freezing import freeze_first_stages, linear_probe
from workbench.training import devices
from workbench.training.reports import EpochReport, StateReport
from workbench.training.trainer import Trainer

CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda: "AVX512-BF16")


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda: "")


def test_auto_is_bf16_only_on_a_cpu_that_computes_it_natively(monkeypatch):
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda: "AMX")
    assert devices.pick_amp("auto", CPU) is torch.bfloat16
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda: "")
    assert devices.pick_amp("auto", CPU) is None
    assert devices.pick_amp("bf16", CPU) is torch.bfloat16  # typed by the user: honoured either way
    for off in ("off", "fp32", "none", "false"):
        assert devices.pick_amp(off, CPU) is None
    assert devices.pick_amp("auto", torch.device("mps")) is None
    with pytest.raises(WorkbenchError, match="fp16 needs a CUDA device"):
        devices.pick_amp("fp16", CPU)


def test_native_bf16_detection_matches_the_cpu_flags_the_kernel_reports():
    """What torch detects agrees with /proc/cpuinfo: a CPU with AMX or AVX512-BF16 is never taken for one without."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("the CPU's flags are read from /proc/cpuinfo (Linux)")
    flags = set(" ".join(line.partition(":")[2] for line in cpuinfo.read_text().splitlines()
                         if line.startswith("flags")).split())
    expected = "AMX" if "amx_tile" in flags else "AVX512-BF16" if "avx512_bf16" in flags else ""
    assert devices.cpu_native_bf16() == expected


def _started(reports) -> str:
    return next(r.message for r in reports if isinstance(r, StateReport) and r.kind == "started")


@pytest.mark.slow
def test_the_run_says_what_auto_chose_and_how_to_change_it(tmp_path, native_bf16):
    ws = workspace(epochs=1)
    linear_probe(ws.plan, ws.tree)
    line = _started(Trainer(ws, tiny_data(), tmp_path / "run").run())
    assert "in bfloat16 mixed precision (amp = auto: this CPU computes bfloat16 natively with AVX512-BF16; " \
           'amp = "off" for float32)' in line


@pytest.mark.slow
def test_the_run_says_float32_and_why_without_native_bf16(tmp_path, no_native_bf16):
    ws = workspace(epochs=1)
    linear_probe(ws.plan, ws.tree)
    line = _started(Trainer(ws, tiny_data(), tmp_path / "run").run())
    assert "in float32 (amp = auto: this CPU has no native bfloat16)" in line


@pytest.mark.slow
def test_amp_off_is_plain_float32_even_on_a_bf16_cpu(tmp_path, native_bf16):
    ws = workspace(epochs=1, amp="off")
    linear_probe(ws.plan, ws.tree)
    assert " in float32: " in _started(Trainer(ws, tiny_data(), tmp_path / "run").run())


@pytest.mark.slow
def test_bf16_training_keeps_frozen_weights_bit_identical_and_writes_float32(tmp_path):
    ws = workspace(epochs=2, amp="bf16")
    freeze_first_stages(ws.plan, ws.tree, 3)  # stem + layer1..3 frozen, their BatchNorm too
    before = {k: v.clone() for k, v in ws.backbone.module.state_dict().items()}
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    reports = list(trainer.run())
    assert "bfloat16 mixed precision" in _started(reports)
    after = trainer.trained.module.state_dict()
    for key, value in before.items():
        if key.split(".")[0] in ("conv1", "bn1", "layer1", "layer2", "layer3"):
            assert torch.equal(value, after[key]), f"{key} changed"
    assert not torch.equal(before["layer4.0.conv1.weight"], after["layer4.0.conv1.weight"])
    # The optimizer keeps float32 weights; autocast only computes in bf16. The weights file is float32.
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    floats = [v for v in saved.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float32 and bool(torch.isfinite(v).all()) for v in floats)


@pytest.mark.slow
def test_bf16_linear_probe_uses_the_feature_cache(tmp_path):
    ws = workspace(epochs=3, amp="bf16", augment=False, cache_features="auto")
    linear_probe(ws.plan, ws.tree)
    reports = list(Trainer(ws, tiny_data(), tmp_path / "run").run())
    cache = [r.message for r in reports if isinstance(r, StateReport) and r.kind == "cache"]
    assert any(m.startswith("cached the trunk's output for 48 training images") for m in cache), cache
    epochs = [r for r in reports if isinstance(r, EpochReport)]
    assert len(epochs) == 3 and all(e.val_loss == e.val_loss for e in epochs)  # finite validation each epoch
    assert epochs[-1].train_loss < epochs[0].train_loss  # the head learns from the cached bf16-computed features


def test_bf16_folded_trunk_is_half_the_memory_and_computes_what_autocast_does():
    from workbench.training import trunk_features as fc

    ws, _, before, split = split_after_three_stages()
    model = ws.backbone.module
    folded32, count32, bytes32 = fc.folded_trunk(split, channels_last=True)
    folded16, count16, bytes16 = fc.folded_trunk(split, channels_last=True, dtype=torch.bfloat16)
    assert count16 == count32 and bytes16 * 2 == bytes32
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        cast_each_call = folded32(x)
        stored_in_bf16 = folded16(x)
    assert stored_in_bf16.dtype == torch.bfloat16 and torch.equal(stored_in_bf16, cast_each_call)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model's own weights untouched


def _tiny_input_workspace(amp: str):
    """resnet10t at 16 px: layer4.0.conv1 (3×3, stride 2) sees a 1×1 feature map."""
    from workbench.backbone import LoadRequest
    from workbench.plan import FinetunePlan, TrainConfig
    from workbench.sources import load_backbone
    from workbench.workspace import Workspace

    torch.manual_seed(0)
    backbone = load_backbone(LoadRequest("resnet10t", num_classes=4, input_size=(3, 16, 16)))
    cfg = TrainConfig(epochs=1, batch_size=16, num_workers=0, lr=3e-3, amp=amp)
    return Workspace.from_backbone(backbone, FinetunePlan(train=cfg))


def test_convolutions_with_a_wrong_bf16_gradient_are_found_by_shape_and_touch_nothing():
    ws = _tiny_input_workspace("auto")
    model = ws.backbone.module.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert devices.bf16_faulty_convs(model, (3, 16, 16)) == ["layer4.0.conv1"]
    assert devices.bf16_faulty_convs(model, (3, 32, 32)) == []  # its input is 2×2 there: exact
    assert all(m.training for m in model.modules())  # the batch-1 probe ran in eval mode and put it back
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # BatchNorm statistics too


@pytest.mark.slow
def test_auto_trains_such_a_model_in_float32_and_says_why(tmp_path, native_bf16):
    """On this CPU bf16 training of resnet10t at 16 px hit a NaN loss in 7 of 16 runs (garbage weight gradients)."""
    ws = _tiny_input_workspace("auto")
    reports = list(Trainer(ws, tiny_data_16(), tmp_path / "run").run())
    line = _started(reports)
    assert "in float32 (amp = auto: not bfloat16, whose weight gradient this CPU's oneDNN gets wrong for a " \
           "strided convolution on a 1-pixel feature map (layer4.0.conv1 at this input size))" in line
    assert all(torch.isfinite(torch.tensor(r.train_loss)) for r in reports if isinstance(r, EpochReport))
    explicit = _tiny_input_workspace("bf16")
    line = _started(Trainer(explicit, tiny_data_16(), tmp_path / "run2").run())
    assert "in bfloat16 mixed precision (amp = bf16 as set, although" in line and "layer4.0.conv1" in line


def tiny_data_16():
    from types import SimpleNamespace

    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 4
    x = torch.randn(48, 3, 16, 16, generator=g) + y[:, None, None, None].float() * 0.5
    return SimpleNamespace(train=TensorDataset(x, y), val=TensorDataset(x[:16], y[:16]),
                           classes=[f"c{i}" for i in range(4)], fingerprint="tiny16")
