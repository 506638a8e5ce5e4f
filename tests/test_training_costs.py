"""What makes short runs cheap keeps training exactly the same: images kept decoded in memory,
checkpoints written from the live tensors, one intra-op thread for tiny cached heads."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from workbench import image_dataset
from workbench.backbone import LoadRequest
from workbench.data import Item, open_data
from workbench.freezing import linear_probe
from workbench.plan import DataConfig, FinetunePlan, FreezeConfig, TrainConfig
from workbench.sources import load_backbone
from workbench.training.checkpoint_writer import CheckpointWriter
from workbench.training.reports import EpochReport, StepReport
from workbench.training.startup import loader_workers
from workbench.training.trainer import Trainer
from workbench.workspace import Workspace

SIZE = (3, 32, 32)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "img" / f"class{c}").mkdir(parents=True)
        for i in range(12):
            pixels = (rng.integers(0, 60, (20, 20, 3)) + 60 * c).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / f"class{c}" / f"{i:02d}.png")
    return tmp_path / "img"


def workspace(folder, **train) -> Workspace:
    torch.manual_seed(7)
    backbone = load_backbone(LoadRequest("resnet18", num_classes=3, input_size=SIZE))
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 8, "lr": 1e-2, "augment": False, **train})
    plan = FinetunePlan(freeze=FreezeConfig(batchnorm="freeze"), data=DataConfig(path=str(folder), val_split=0.25),
                        train=cfg)
    return Workspace.from_backbone(backbone, plan)


def train(ws: Workspace, bundle, run_dir) -> tuple[list[float], list[float]]:
    reports = list(Trainer(ws, bundle, run_dir).run())
    return ([r.loss for r in reports if isinstance(r, StepReport)],
            [r.val_loss for r in reports if isinstance(r, EpochReport)])


@pytest.mark.slow
def test_images_kept_in_memory_decode_once_and_train_exactly_as_decoding_every_epoch(folder, tmp_path, monkeypatch):
    base = workspace(folder)
    loads: list[str] = []
    real_load = Item.load
    monkeypatch.setattr(Item, "load", lambda self: (loads.append(self.name), real_load(self))[1])

    kept = open_data(base.plan.data, None, base.backbone.spec, augment=False)
    assert kept.train.keep_decoded and kept.val is not None and kept.val.keep_decoded
    trainer = Trainer(copy.deepcopy(base), kept, tmp_path / "kept")
    assert loader_workers(None, kept.train) == 0  # nothing left to decode after epoch 1: workers would only compete
    reports = list(trainer.run())
    kept_losses = ([r.loss for r in reports if isinstance(r, StepReport)],
                   [r.val_loss for r in reports if isinstance(r, EpochReport)])
    assert len(kept_losses[0]) == 2 * 4
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 36  # every image decoded once in 2 epochs

    monkeypatch.setattr(image_dataset, "DECODED_LIMIT_BYTES", 0)  # too big to keep: decoded every epoch
    loads.clear()
    every_epoch = open_data(base.plan.data, None, base.backbone.spec, augment=False)
    assert not every_epoch.train.keep_decoded
    decoded = copy.deepcopy(base)
    decoded.plan.train = replace(decoded.plan.train, num_workers=0)  # decoded here, where the loads are counted
    assert train(decoded, every_epoch, tmp_path / "decoded") == kept_losses
    assert len(loads) == 2 * 36


def test_augmented_training_images_are_not_kept(folder):
    ws = workspace(folder, augment=True)
    bundle = open_data(ws.plan.data, None, ws.backbone.spec, augment=True)
    assert not bundle.train.keep_decoded and not bundle.train.deterministic
    assert bundle.val is not None and bundle.val.keep_decoded  # the eval transform is fixed


@pytest.mark.slow
def test_resume_is_exact_when_checkpoints_are_written_from_live_tensors(folder, tmp_path, monkeypatch):
    """A full fine-tune's snapshot is too big to copy: it is written synchronously from the live tensors."""
    monkeypatch.setattr(CheckpointWriter, "COPY_LIMIT_BYTES", 0)
    monkeypatch.setattr(Trainer, "CHECKPOINT_INTERVAL_S", 0.0)
    base = workspace(folder, epochs=3)
    bundle = open_data(base.plan.data, None, base.backbone.spec, augment=False)
    trainer_a = Trainer(copy.deepcopy(base), bundle, tmp_path / "a")
    losses_a = [r.loss for r in trainer_a.run() if isinstance(r, StepReport)]
    ws_b = copy.deepcopy(base)
    trainer = Trainer(ws_b, open_data(base.plan.data, None, base.backbone.spec, augment=False), tmp_path / "b")
    losses_b = []
    for r in trainer.run():
        if isinstance(r, StepReport):
            losses_b.append(r.loss)
            if len(losses_b) == 5:  # mid-epoch 2, after epoch 1's checkpoint
                trainer.request_stop()
    trainer_c = Trainer(copy.deepcopy(base), open_data(base.plan.data, None, base.backbone.spec, augment=False),
                        tmp_path / "b", resume=True)
    resumed = [r.loss for r in trainer_c.run() if isinstance(r, StepReport)]
    assert losses_b + resumed == losses_a
    trained_a, trained_c = trainer_a.trained.module, trainer_c.trained.module
    for (k, va), vb in zip(trained_a.state_dict().items(), trained_c.state_dict().values()):
        assert torch.equal(va, vb), k


@pytest.mark.slow
def test_cached_linear_probe_epochs_run_on_one_thread_and_the_setting_is_restored(folder, tmp_path):
    ws = workspace(folder, epochs=3)
    linear_probe(ws.plan, ws.tree)
    bundle = open_data(ws.plan.data, None, ws.backbone.spec, augment=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: dict[int, set[int]] = {}
        for r in Trainer(ws, bundle, tmp_path / "probe").run():
            if isinstance(r, StepReport):
                seen.setdefault(r.epoch, set()).add(torch.get_num_threads())
        # The 3-class head trains on one thread in every epoch, the one filling the cache too (the trunk runs
        # with both inside it): a run resumed in a later epoch fills where this one read (exact resume).
        assert seen[0] == seen[1] == seen[2] == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_the_final_checkpoint_names_the_weights_file_instead_of_holding_every_weight_twice(folder, tmp_path):
    from safetensors.torch import load_file

    from workbench.errors import WorkbenchError
    from workbench.training.checkpoint_file import load_checkpoint

    ws = workspace(folder, epochs=1)
    linear_probe(ws.plan, ws.tree)
    bundle = open_data(ws.plan.data, None, ws.backbone.spec, augment=False)
    run = tmp_path / "run"
    train(ws, bundle, run)
    raw = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert "model" not in raw and raw["model_file"] == "../model.safetensors" and raw["optimizer"]["state"]
    weights = load_file(run / "model.safetensors")
    loaded = load_checkpoint(run / "checkpoints" / "last.pt").model
    assert loaded.keys() == weights.keys() and all(torch.equal(loaded[k], weights[k]) for k in weights)
    # Without its weights file the checkpoint says where they should be; a damaged one says what is wrong.
    (run / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WorkbenchError, match=r"cannot read .*model\.safetensors \(the weights of checkpoint"):
        load_checkpoint(run / "checkpoints" / "last.pt")
    (run / "model.safetensors").unlink()
    with pytest.raises(WorkbenchError, match=r"keeps its weights in .*model\.safetensors, which is missing"):
        load_checkpoint(run / "checkpoints" / "last.pt")
