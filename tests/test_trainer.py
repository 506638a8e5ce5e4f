"""The Trainer's guarantees, on a real timm model and small in-memory data."""

from __future__ import annotations

import copy
import threading
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from workbench.backbone import LoadRequest
from workbench.errors import WorkbenchError
from workbench.freezing import freeze_first_stages, linear_probe
from workbench.groups import discriminative
from workbench.plan import FinetunePlan, TrainConfig, UnfreezeStep
from workbench.sources import load_backbone
from workbench.training import feature_cache_callback
from workbench.training.checkpoint_file import load_checkpoint
from workbench.training.reports import EpochReport, StateReport, StepReport
from workbench.training.trainer import Trainer, TrainingError
from workbench.workspace import Workspace

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process

SIZE = (3, 32, 32)


def tiny_data(n=48, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *SIZE, generator=g)
    y = torch.arange(n) % classes
    x += y[:, None, None, None].float() * 0.5  # learnable signal
    return SimpleNamespace(train=TensorDataset(x, y), val=TensorDataset(x[:16], y[:16]),
                           classes=[f"c{i}" for i in range(classes)], fingerprint="tiny")


# timm's test_resnet: resnet18's layout (stem, layer1-4 of BasicBlocks, fc) at 4% of its parameters: a run's
# checkpoints are a few MB instead of hundreds. For tests where the model's size is not the point (the feature
# cache's decisions weigh compute against bytes, so those stay on resnet18).
SMALL = "test_resnet"


def workspace(name="resnet18", classes=4, **train):
    torch.manual_seed(123)
    backbone = load_backbone(LoadRequest(name, num_classes=classes, input_size=SIZE))
    options = {"epochs": 2, "batch_size": 16, "num_workers": 0, "lr": 1e-2, "scheduler": "cosine", **train}
    cfg = TrainConfig(**options)
    return Workspace.from_backbone(backbone, FinetunePlan(train=cfg))


def run_all(trainer):
    return list(trainer.run())


def test_frozen_parameters_and_bn_stats_bit_identical(tmp_path):
    ws = workspace(SMALL)
    freeze_first_stages(ws.plan, ws.tree, 3)  # stem + layer1..3 frozen
    res = ws.resolve()
    frozen_names = [p.name for p in ws.tree.params if not res.param_trainable[p.index]]
    frozen_modules = ["conv1", "bn1", "layer1", "layer2", "layer3"]
    before = {k: v.clone() for k, v in ws.backbone.module.state_dict().items()}
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    reports = run_all(trainer)
    model = trainer.trained.module
    after = model.state_dict()
    for key in before:
        if key.split(".")[0] in frozen_modules:  # weights, biases, running stats, num_batches_tracked
            assert torch.equal(before[key], after[key]), f"{key} changed"
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert not torch.equal(before["layer4.0.bn1.running_mean"], after["layer4.0.bn1.running_mean"])
    named = dict(model.named_parameters())
    assert all(named[n].grad is None for n in frozen_names)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    in_optimizer = {n for g in ckpt.optimizer_layout for n in g["params"]}
    assert in_optimizer.isdisjoint(frozen_names)
    # optimizer state exists for exactly the trainable parameters
    assert len(ckpt.optimizer["state"]) == len(in_optimizer) == len(ws.tree.params) - len(frozen_names)
    assert isinstance(reports[-1], StateReport) and reports[-1].kind == "finished"
    assert sum(isinstance(r, EpochReport) for r in reports) == 2
    assert sum(isinstance(r, StepReport) for r in reports) == 2 * 3


@pytest.mark.parametrize("cache", [False, True], ids=["images", "feature-cache"])
def test_resume_gives_same_next_step_loss(tmp_path, cache):
    """Stopped mid-epoch (while the cache is being filled, in the cached variant) and resumed."""
    data = tiny_data()
    # On test_resnet the cached head is "tiny" (one intra-op thread): the resumed run fills the store in the
    # epoch where the unbroken one read it, so both must run the head with the same threads (they did not).
    base = workspace(SMALL, optimizer="adamw", augment=not cache, cache_features="auto")
    freeze_first_stages(base.plan, base.tree, 2)
    # uninterrupted
    ws_a = copy.deepcopy(base)
    trainer_a = Trainer(ws_a, data, tmp_path / "a")
    losses_a = [r.loss for r in trainer_a.run() if isinstance(r, StepReport)]
    # stopped after 4 steps (mid-epoch 1), then resumed from the checkpoint in a fresh workspace
    ws_b = copy.deepcopy(base)
    trainer = Trainer(ws_b, data, tmp_path / "b")
    losses_b = []
    for r in trainer.run():
        if isinstance(r, StepReport):
            losses_b.append(r.loss)
            if len(losses_b) == 4:
                trainer.request_stop()
    assert len(losses_b) == 4
    ws_c = copy.deepcopy(base)
    trainer_c = Trainer(ws_c, data, tmp_path / "b", resume=True)
    resumed = [r.loss for r in trainer_c.run() if isinstance(r, StepReport)]
    assert losses_b + resumed == losses_a  # exact, step for step
    for (k, va), vb in zip(trainer_a.model.state_dict().items(), trainer_c.model.state_dict().values()):
        assert torch.equal(va, vb), k


def test_gradual_unfreezing_joins_optimizer_and_survives_resume(tmp_path):
    ws = workspace(SMALL, epochs=3)
    ws.plan.groups = discriminative(ws.default_groups(), 1e-2, 0.5)
    linear_probe(ws.plan, ws.tree)
    ws.plan.unfreeze = [UnfreezeStep(1, ["layer4"])]
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    model = trainer.model
    layer4_before = model.layer4[0].conv1.weight.clone()
    reports = []
    for r in trainer.run():
        reports.append(r)
        if isinstance(r, EpochReport) and r.epoch == 1:
            trainer.request_stop()
    unfrozen = [r for r in reports if isinstance(r, StateReport) and r.kind == "unfrozen"]
    assert len(unfrozen) == 1 and "layer4" in unfrozen[0].message
    steps = [r for r in reports if isinstance(r, StepReport)]
    assert set(steps[0].lrs) == {"head"} and set(steps[-1].lrs) == {"head", "layer4"}
    assert steps[-1].lrs["layer4"] < steps[-1].lrs["head"]
    assert not torch.equal(layer4_before, model.layer4[0].conv1.weight)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt.epoch == 2 and ckpt.callbacks["GradualUnfreezing"] == {"schedule_done": 1}
    # Resume in a fresh workspace from the original plan: layer4 must stay trainable.
    ws2 = workspace(SMALL, epochs=3)
    ws2.plan = copy.deepcopy(ws.plan)
    ws2.plan.train.epochs = 3
    trainer2 = Trainer(ws2, tiny_data(), tmp_path / "run", resume=True)
    resumed = list(trainer2.run())
    lrs = [r.lrs for r in resumed if isinstance(r, StepReport)]
    assert lrs and all(set(x) == {"head", "layer4"} for x in lrs)
    assert trainer2.model.layer4[0].conv1.weight.requires_grad


def test_unfreeze_step_lr_sets_every_group_and_survives_resume(tmp_path):
    """LP-FT's fine-tune phase: at the step the head slows to the body's LR, on the same schedule; exact on resume."""
    ws = workspace(SMALL, epochs=3, scheduler="constant")
    ws.plan.groups = ws.default_groups()
    linear_probe(ws.plan, ws.tree)
    ws.plan.unfreeze = [UnfreezeStep(1, ["layer4"], lr=1e-4)]
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    reports = []
    for r in trainer.run():
        reports.append(r)
        if isinstance(r, EpochReport) and r.epoch == 1:
            trainer.request_stop()
    steps = [r for r in reports if isinstance(r, StepReport)]
    assert steps[0].lrs == {"head": 1e-2}
    assert steps[-1].lrs == {"head": 1e-4, "layer4": 1e-4}
    assert any("every group now at LR 0.0001" in r.message for r in reports
               if isinstance(r, StateReport) and r.kind == "unfrozen")
    ws2 = workspace(SMALL, epochs=3, scheduler="constant")
    ws2.plan = copy.deepcopy(ws.plan)
    resumed = [r.lrs for r in Trainer(ws2, tiny_data(), tmp_path / "run", resume=True).run() if isinstance(r, StepReport)]
    assert resumed and all(lrs == {"head": 1e-4, "layer4": 1e-4} for lrs in resumed)


def test_epochs_after_a_cached_probe_get_every_thread_back(tmp_path):
    """A cached linear probe's head runs on one thread; the fine-tune epochs after it must not (they ran 2x slower)."""
    from workbench.training.callbacks import Callback

    class Threads(Callback):
        def __init__(self) -> None:
            self.seen: dict[int, set[int]] = {}

        def before_batch(self, t) -> None:
            self.seen.setdefault(t.epoch, set()).add(torch.get_num_threads())

    torch.set_num_threads(2)
    ws = workspace(SMALL, epochs=3, augment=False, cache_features="auto")
    ws.plan.groups = ws.default_groups()
    linear_probe(ws.plan, ws.tree)
    ws.plan.unfreeze = [UnfreezeStep(2, [g.name for g in ws.plan.groups[:-1]])]
    threads = Threads()
    reports = list(Trainer(ws, tiny_data(), tmp_path / "run", callbacks=[threads]).run())
    assert any(isinstance(r, StateReport) and r.kind == "cache" and "cached the trunk" in r.message for r in reports)
    assert threads.seen[1] == {1} and threads.seen[2] == {2}  # cached tiny head: one thread; then all of them
    assert torch.get_num_threads() == 2


def test_two_unfreeze_lrs_at_one_epoch_are_refused():
    ws = workspace(SMALL)
    ws.plan.groups = ws.default_groups()
    linear_probe(ws.plan, ws.tree)
    ws.plan.unfreeze = [UnfreezeStep(1, ["layer4"], lr=1e-4), UnfreezeStep(1, ["layer3"], lr=1e-3)]
    with pytest.raises(WorkbenchError, match="steps at epoch 1 set different LRs"):
        ws.resolve()


def every_epoch_checkpointed(monkeypatch):
    """A checkpoint otherwise waits until its write would be under 5% of the training time."""
    from workbench.training.checkpoint_writer import CheckpointWriter

    monkeypatch.setattr(CheckpointWriter, "MAX_WRITE_SHARE", float("inf"))


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    every_epoch_checkpointed(monkeypatch)
    ws = workspace(SMALL, epochs=3)
    data = tiny_data()
    trainer = Trainer(ws, data, tmp_path / "run")
    reports = []
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, batch 1 \(step 4\).*last good checkpoint"):
        for r in trainer.run():
            reports.append(r)
            if isinstance(r, EpochReport):
                trainer.model.fc.weight.data.fill_(float("nan"))  # poison after the first epoch
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt.epoch == 1 and torch.isfinite(ckpt.model["fc.weight"]).all()


def test_pause_resume_and_stop_from_another_thread(tmp_path):
    """Paused means stopped in place: nothing is reported and no weight moves until a resume is requested;
    then training goes on at the very next step."""
    ws = workspace(SMALL, epochs=50)
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    reports: list = []
    weights: dict[str, dict] = {}
    seen = {kind: threading.Event() for kind in ("step", "paused", "after pause", "3 steps")}

    def consume():
        for r in trainer.run():
            reports.append(r)
            if seen["paused"].is_set():
                seen["after pause"].set()
            if isinstance(r, StepReport):
                seen["step"].set()
                if sum(isinstance(x, StepReport) for x in reports) >= 3:
                    seen["3 steps"].set()
            elif isinstance(r, StateReport) and r.kind in ("paused", "resumed"):  # the run waits for this copy
                weights[r.kind] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
                if r.kind == "paused":
                    seen["paused"].set()

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        assert seen["step"].wait(120)
        trainer.request_pause()
        assert seen["paused"].wait(120)
        # Absence is seen over an interval: any report ends this wait at once (and fails the test).
        assert not seen["after pause"].wait(1.0), f"the run went on while paused: {reports[-1]}"
        while_paused = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.request_resume()
        assert seen["after pause"].wait(120) and seen["3 steps"].wait(120)
    finally:
        trainer.request_stop()
        thread.join(120)
    assert not thread.is_alive()
    kinds = [r.kind if isinstance(r, StateReport) else type(r).__name__ for r in reports]
    assert kinds[kinds.index("paused") + 1] == "resumed"
    for k, v in weights["paused"].items():  # untouched while paused
        assert torch.equal(v, while_paused[k]) and torch.equal(v, weights["resumed"][k]), k
    steps = [r.global_step for r in reports if isinstance(r, StepReport)]
    assert steps == list(range(1, len(steps) + 1))  # none skipped or repeated across the pause
    assert kinds[-1] == "stopped"
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_class_count_mismatch_is_a_clear_error(tmp_path):
    ws = workspace(SMALL, classes=10)
    with pytest.raises(WorkbenchError, match="the data has 4 classes but the model's head has 10 outputs"):
        run_all(Trainer(ws, tiny_data(), tmp_path / "run"))


def test_sgd_onecycle_label_smoothing_clip_run(tmp_path):
    ws = workspace(SMALL, optimizer="sgd", scheduler="onecycle", label_smoothing=0.1, grad_clip=1.0, epochs=2)
    reports = run_all(Trainer(ws, tiny_data(), tmp_path / "run"))
    lrs = [r.lrs["layer4"] for r in reports if isinstance(r, StepReport)]
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs)  # warms up, then anneals
    epochs = [r for r in reports if isinstance(r, EpochReport)]
    assert all(e.val_accuracy is not None and e.val_top5 is None for e in epochs)
    assert (tmp_path / "run" / "model.safetensors").exists() and (tmp_path / "run" / "project.toml").exists()


@pytest.mark.parametrize("preset", ["linear_probe", "first_stages"])
def test_feature_cache_trains_exactly_like_the_full_forward(tmp_path, preset, monkeypatch):
    """Cached trunk outputs give the same losses, accuracies and weights as running the trunk every step."""
    # The uncached run uses the same BatchNorm-folded trunk however few images it has (the cache stores
    # that trunk's outputs; the unfolded model differs from it in float rounding).
    monkeypatch.setattr(feature_cache_callback, "FOLD_MIN_PIXELS", 0)
    data = tiny_data()
    results = {}
    for cache in (False, True):
        ws = workspace(epochs=3, augment=False, cache_features=cache)
        if preset == "linear_probe":
            linear_probe(ws.plan, ws.tree)
        else:
            freeze_first_stages(ws.plan, ws.tree, 3)
        trainer = Trainer(ws, data, tmp_path / f"run{cache}")
        reports = list(trainer.run())
        messages = [r.message for r in reports if isinstance(r, StateReport) and r.kind == "cache"]
        steps = [r.loss for r in reports if isinstance(r, StepReport)]
        epochs = [v for r in reports if isinstance(r, EpochReport) for v in (r.val_loss, r.val_accuracy)]
        results[cache] = (steps, epochs, trainer.model.state_dict(), messages)
    (plain_steps, plain_epochs, plain_state, plain_msgs), (steps, epochs, state, msgs) = results[False], results[True]
    assert plain_msgs == ["feature cache not used: [train] cache_features = false"]
    assert msgs[0].startswith("caching the frozen trunk: trunk cut after") and "in memory" in msgs[0]
    assert steps == pytest.approx(plain_steps, rel=1e-5, abs=1e-6)
    assert epochs == pytest.approx(plain_epochs, rel=1e-5, abs=1e-6)
    for key in plain_state:
        assert torch.allclose(plain_state[key].float(), state[key].float(), rtol=1e-4, atol=1e-5), key


def test_feature_cache_auto_explains_why_not_with_augmentation(tmp_path):
    ws = workspace(epochs=1, augment=True, cache_features="auto")
    linear_probe(ws.plan, ws.tree)
    reports = list(Trainer(ws, tiny_data(), tmp_path / "run").run())
    messages = [r.message for r in reports if isinstance(r, StateReport) and r.kind == "cache"]
    assert len(messages) == 1 and "augmentation is on" in messages[0]


def test_feature_cache_follows_gradual_unfreezing(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_cache_callback, "FOLD_MIN_PIXELS", 0)  # split every state, however few images
    ws = workspace(epochs=3, augment=False, cache_features="auto")
    ws.plan.groups = ws.default_groups()
    linear_probe(ws.plan, ws.tree)
    ws.plan.unfreeze = [UnfreezeStep(1, ["layer4"]), UnfreezeStep(2, ["stem"])]
    reports = list(Trainer(ws, tiny_data(), tmp_path / "run").run())
    cache = [r.message for r in reports if isinstance(r, StateReport) and r.kind == "cache"]
    cuts = [m.split("trunk cut after ")[1].split(" ")[0] for m in cache if "trunk cut after" in m]
    # Epoch 1 (the head alone, one epoch) stores the output of layer3, where epoch 2's trunk ends; epoch 2
    # trains layer4 + head from it; at epoch 3 the stem trains: nothing frozen to cache.
    assert cuts == ["'layer3_1_act2'", "'layer3_1_act2'"]
    assert cache[0].startswith("caching the frozen trunk where the next freeze state's trunk ends")
    assert any(m.startswith("epoch 2 trains from the trunk outputs cached during epoch 1") for m in cache)
    assert any("no frozen prefix" in m for m in cache)


def test_a_freeze_state_of_two_epochs_is_cached_and_one_of_one_epoch_is_not(tmp_path):
    ws = workspace(epochs=3, augment=False, cache_features="auto")
    ws.plan.groups = ws.default_groups()
    linear_probe(ws.plan, ws.tree)
    ws.plan.unfreeze = [UnfreezeStep(2, ["layer4"])]
    reports = list(Trainer(ws, tiny_data(), tmp_path / "run").run())
    cache = [(r.epoch, r.message) for r in reports if isinstance(r, StateReport) and r.kind == "cache"]
    assert cache[0][1].startswith("caching the frozen trunk") and "global_pool_flatten" in cache[0][1]
    assert any(m.startswith("cached the trunk's output") for _, m in cache)
    assert cache[-1][0] == 2 and "feature cache not used for epoch 3: this freeze state lasts one epoch" in cache[-1][1]


def test_a_short_uncached_freeze_state_runs_the_model_as_is_unless_enough_pixels_pay_for_folding(tmp_path, monkeypatch):
    """A freeze state of one epoch whose trunk nothing later reads (the next state trains the stem) stores
    nothing; its trunk is split off and BatchNorm-folded only when enough image pixels go through it to pay
    for that (FOLD_MIN_PIXELS); otherwise the model runs as it is."""
    def first_epoch_notes(name):
        ws = workspace(epochs=2, augment=False, cache_features="auto")
        ws.plan.groups = ws.default_groups()
        linear_probe(ws.plan, ws.tree)
        ws.plan.unfreeze = [UnfreezeStep(1, ["stem"])]
        reports = list(Trainer(ws, tiny_data(), tmp_path / name).run())
        return [r.message for r in reports if isinstance(r, StateReport) and r.kind == "cache"
                and r.message.startswith("feature cache not used for epoch 1:")]

    pixels = (48 + 16) * 32 * 32  # one epoch of tiny_data's training and validation images
    monkeypatch.setattr(feature_cache_callback, "FOLD_MIN_PIXELS", pixels + 1)
    small = first_epoch_notes("small")
    assert len(small) == 1 and "runs as part of the model" in small[0] and "has 0.1 M" in small[0], small
    monkeypatch.setattr(feature_cache_callback, "FOLD_MIN_PIXELS", pixels)
    large = first_epoch_notes("large")
    assert len(large) == 1 and "trunk cut after" in large[0] and "BatchNorm folded" in large[0], large


def test_a_cached_state_folds_only_when_its_one_pass_over_the_images_pays_for_it(tmp_path, monkeypatch):
    """A cached state runs its trunk over the images once, in the epoch that fills the stores: the fold is
    judged on that one pass, not on every epoch of the state."""
    def caching_note(name):
        ws = workspace(epochs=2, augment=False, cache_features="auto")
        linear_probe(ws.plan, ws.tree)
        reports = list(Trainer(ws, tiny_data(), tmp_path / name).run())
        return next(r.message for r in reports if isinstance(r, StateReport) and r.kind == "cache")

    one_pass = (48 + 16) * 32 * 32  # tiny_data's training and validation images, once
    monkeypatch.setattr(feature_cache_callback, "FOLD_MIN_PIXELS", one_pass + 1)  # two epochs' pixels would exceed it
    note = caching_note("small")
    assert note.startswith("caching the frozen trunk") and "BatchNorm folded" not in note, note
    monkeypatch.setattr(feature_cache_callback, "FOLD_MIN_PIXELS", one_pass)
    note = caching_note("large")
    assert note.startswith("caching the frozen trunk") and "BatchNorm folded into" in note, note


def gradual_one_group_per_epoch(**train):
    """The head in epoch 1, layer4 joins in epoch 2 (each freeze state lasts one epoch)."""
    ws = workspace(epochs=2, augment=False, **train)
    ws.plan.groups = ws.default_groups()
    linear_probe(ws.plan, ws.tree)
    ws.plan.unfreeze = [UnfreezeStep(1, ["layer4"])]
    return ws


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_a_one_epoch_freeze_state_caches_where_the_next_state_trunk_ends(tmp_path, amp):
    """Epoch 1 trains the head and stores layer3's output; epoch 2 trains layer4 + head from it, exactly as
    running every image through the model does, and the frozen layers never change."""
    results = {}
    for cache in ("auto", False):
        ws = gradual_one_group_per_epoch(cache_features=cache, amp=amp)
        before = {k: v.clone() for k, v in ws.backbone.module.state_dict().items()}
        trainer = Trainer(ws, tiny_data(), tmp_path / f"run-{cache}")
        reports = list(trainer.run())
        notes = [(r.epoch, r.message) for r in reports if isinstance(r, StateReport) and r.kind == "cache"]
        losses = [r.loss for r in reports if isinstance(r, StepReport)]
        vals = [(r.val_loss, r.val_accuracy) for r in reports if isinstance(r, EpochReport)]
        results[cache] = (losses, vals, trainer.model.state_dict(), notes, before)
    losses, vals, state, notes, before = results["auto"]
    assert notes[0][0] == 0 and notes[0][1].startswith("caching the frozen trunk where the next freeze state's "
                                                       "trunk ends") and "'layer3_1_act2'" in notes[0][1], notes
    assert any(e == 1 and "epoch 2 trains from the trunk outputs cached during epoch 1" in m for e, m in notes)
    plain_losses, plain_vals, plain_state, _, _ = results[False]
    assert losses == plain_losses and vals == plain_vals
    for key, value in plain_state.items():
        assert torch.equal(value, state[key]), key
        if key.split(".")[0] in ("conv1", "bn1", "layer1", "layer2", "layer3"):
            assert torch.equal(value, before[key]), key


def test_resume_inside_a_state_trained_from_the_previous_states_cache_is_exact(tmp_path):
    ws_a = gradual_one_group_per_epoch(cache_features="auto", amp="off")
    uninterrupted = [r.loss for r in Trainer(ws_a, tiny_data(), tmp_path / "a").run() if isinstance(r, StepReport)]
    trainer = Trainer(gradual_one_group_per_epoch(cache_features="auto", amp="off"), tiny_data(), tmp_path / "b")
    losses = []
    for r in trainer.run():
        if isinstance(r, StepReport):
            losses.append(r.loss)
            if len(losses) == 4:  # the first step of epoch 2, which reads epoch 1's stores
                trainer.request_stop()
    resumed = Trainer(gradual_one_group_per_epoch(cache_features="auto", amp="off"), tiny_data(), tmp_path / "b",
                      resume=True)
    losses += [r.loss for r in resumed.run() if isinstance(r, StepReport)]
    assert losses == uninterrupted


def test_resume_in_the_last_epoch_of_a_cached_state_before_an_unfreezing_is_exact(tmp_path, monkeypatch):
    """The probe caches its (folded) trunk for epochs 1-2, layer4 unfreezes at epoch 3. Resumed in epoch 2, the
    state has one epoch left, but it must compute as the original did, not cache for the next state instead."""
    monkeypatch.setattr(feature_cache_callback, "FOLD_MIN_PIXELS", 0)  # fold, so another computation would show

    def ws():
        w = workspace(epochs=3, augment=False, cache_features="auto", amp="off")
        w.plan.groups = w.default_groups()
        linear_probe(w.plan, w.tree)
        w.plan.unfreeze = [UnfreezeStep(2, ["layer4"])]
        return w

    uninterrupted = [r.loss for r in Trainer(ws(), tiny_data(), tmp_path / "a").run() if isinstance(r, StepReport)]
    trainer = Trainer(ws(), tiny_data(), tmp_path / "b")
    losses = []
    for r in trainer.run():
        if isinstance(r, StepReport):
            losses.append(r.loss)
            if len(losses) == 4:  # the first step of epoch 2, the probe's last
                trainer.request_stop()
    resumed = Trainer(ws(), tiny_data(), tmp_path / "b", resume=True)
    losses += [r.loss for r in resumed.run() if isinstance(r, StepReport)]
    assert losses == uninterrupted


def test_out_of_memory_stops_cleanly_and_suggests_smaller_batch(tmp_path, monkeypatch):
    every_epoch_checkpointed(monkeypatch)
    ws = workspace(epochs=2)
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    model = trainer.model  # what trains: a copy of the workspace's model
    real_forward = model.forward
    calls = {"n": 0}

    def forward(x):
        calls["n"] += len(x) > 1  # (not the batch-1 shape probe of amp = "auto" on a bf16 CPU)
        if calls["n"] == 5:  # 3 training batches + 1 validation batch, then the second epoch's first batch
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(x)

    monkeypatch.setattr(model, "forward", forward)
    with pytest.raises(TrainingError, match=r"out of GPU memory at batch size 16 during training \(epoch 1, batch 1\); "
                       r"the last good checkpoint is kept. Try --batch-size 8"):
        run_all(trainer)
    calls["n"] = -100
    trainer2 = Trainer(workspace(epochs=1), tiny_data(), tmp_path / "run2")
    model2 = trainer2.model
    real2 = model2.forward

    def forward_val(x):
        if not model2.training:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real2(x)

    monkeypatch.setattr(model2, "forward", forward_val)
    with pytest.raises(TrainingError, match=r"during validation \(epoch 0\)"):
        run_all(trainer2)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").epoch == 1  # the last good epoch is kept
    assert all(p.grad is None for p in model.parameters())


def test_compiled_head_trains_like_eager(tmp_path):
    torch.manual_seed(0)
    data = SimpleNamespace(train=TensorDataset(torch.randn(32, 8), torch.arange(32) % 2),
                           val=None, classes=["a", "b"], fingerprint="mlp")
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        from workbench.backbone import Backbone
        from workbench.spec import ModelSpec

        backbone = Backbone(model, ModelSpec("mlp", 2, input_size=(1, 1, 8), classifier="2"), "test", "mlp")
        ws = Workspace.from_backbone(backbone, FinetunePlan(train=TrainConfig(epochs=2, batch_size=8, num_workers=0,
                                                                                  compile=compiled)))
        assert ws.tree.nodes  # built from a (1, 1, 8) example before training
        results.append([r.loss for r in Trainer(ws, data, tmp_path / f"r{compiled}").run() if isinstance(r, StepReport)])
    assert results[1] == pytest.approx(results[0], rel=1e-4)


def test_feature_cache_on_disk_is_reused_by_key_and_invalidated_by_change(tmp_path, monkeypatch):
    from workbench.training import trunk_features as fc

    monkeypatch.setattr(fc, "MEMORY_LIMIT_BYTES", 1024)  # force the memory-mapped on-disk cache
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))

    def run(name, stages=3, amp="off"):
        ws = workspace(epochs=2, augment=False, cache_features=True, amp=amp)
        freeze_first_stages(ws.plan, ws.tree, stages)
        reports = list(Trainer(ws, tiny_data(), tmp_path / name).run())
        return ([r.message for r in reports if isinstance(r, StateReport) and r.kind == "cache"],
                [r.loss for r in reports if isinstance(r, StepReport)])

    messages, losses = run("a")
    assert "on disk (memory-mapped)" in messages[0]
    files = sorted((tmp_path / "cache" / "features").glob("*.f32"))
    assert len(files) == 2  # train and val
    stamps = [f.stat().st_mtime_ns for f in files]
    messages_again, losses_again = run("b")
    assert losses_again == losses
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "cache" / "features").glob("*.f32"))] == stamps  # reused
    run("c", stages=2)  # another frozen set: another key, new files
    assert len(list((tmp_path / "cache" / "features").glob("*.f32"))) == 4
    run("d", amp="bf16")  # features computed in bf16 are not float32 ones: new files
    assert len(list((tmp_path / "cache" / "features").glob("*.f32"))) == 6
    assert not list((tmp_path / "cache" / "features").glob("*.partial"))


def split_after_three_stages(**train):
    """The ResNet with stem + layer1..3 frozen, split at its frozen trunk; with its state before and its applied plan."""
    from workbench.training import trunk_features as fc

    ws = workspace(epochs=1, **train)
    freeze_first_stages(ws.plan, ws.tree, 3)
    applied = ws.apply()
    model = ws.backbone.module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    return ws, applied, before, fc.split_frozen_trunk(model, applied.set_train_mode)


def test_folded_trunk_matches_and_is_used_only_where_it_folds(tmp_path, monkeypatch):
    from workbench.training import trunk_features as fc

    monkeypatch.setattr(feature_cache_callback, "FOLD_MIN_PIXELS", 0)  # fold however few images go through
    ws, applied, before, split = split_after_three_stages(augment=True)
    model = ws.backbone.module
    folded, count, extra = fc.folded_trunk(split, channels_last=True)
    assert count == 1 + 4 + 5 + 5 and extra > 0  # every BatchNorm of the stem and layer1-3
    x = torch.randn(4, *SIZE)
    applied.set_train_mode(model)
    with torch.inference_mode():
        reference = split.trunk(x)
        fast = folded(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(fast, reference, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    trainer = Trainer(ws, tiny_data(), tmp_path / "run")
    reports = list(trainer.run())
    notes = [r.message for r in reports if isinstance(r, StateReport) and r.kind == "trunk"]
    assert len(notes) == 1 and "BatchNorm folded into 15 convolution(s)" in notes[0]
    for key, value in before.items():  # frozen layers still bit-identical after training through the copy
        if key.split(".")[0] in ("conv1", "bn1", "layer1", "layer2", "layer3"):
            assert torch.equal(value, trainer.model.state_dict()[key]), key
    # A ViT has no BatchNorm to fold: it trains through the whole model as before.
    vit_size = (3, 224, 224)
    vit = Workspace.from_backbone(load_backbone(LoadRequest("vit_tiny_patch16_224", num_classes=4, input_size=vit_size)),
                                  FinetunePlan(train=TrainConfig(epochs=1, batch_size=4, num_workers=0)))
    data = SimpleNamespace(train=TensorDataset(torch.randn(8, *vit_size), torch.arange(8) % 4), val=None,
                           classes=["a", "b", "c", "d"], fingerprint="vit")
    freeze_first_stages(vit.plan, vit.tree, 6)
    reports = list(Trainer(vit, data, tmp_path / "vit").run())
    assert not [r for r in reports if isinstance(r, StateReport) and r.kind == "trunk"]


def test_epoch_reports_name_a_checkpoint_only_when_one_was_taken(tmp_path, monkeypatch):
    """Epochs far shorter than the checkpoint interval: the first and the last are saved, not those between."""
    # An interval no machine reaches, so the outcome does not depend on how fast the epochs run.
    monkeypatch.setattr(Trainer, "CHECKPOINT_INTERVAL_S", 1e9)
    torch.manual_seed(0)
    data = SimpleNamespace(train=TensorDataset(torch.randn(16, 8), torch.arange(16) % 2),
                           val=None, classes=["a", "b"], fingerprint="mlp")
    from workbench.backbone import Backbone
    from workbench.spec import ModelSpec

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    backbone = Backbone(model, ModelSpec("mlp", 2, input_size=(1, 1, 8), classifier="2"), "test", "mlp")
    ws = Workspace.from_backbone(backbone, FinetunePlan(train=TrainConfig(epochs=4, batch_size=8, num_workers=0)))
    epochs = [r for r in Trainer(ws, data, tmp_path / "run").run() if isinstance(r, EpochReport)]
    saved = [r.checkpoint is not None for r in epochs]
    assert saved == [True, False, False, True]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").epoch == 4


def mlp_workspace(epochs):
    from workbench.backbone import Backbone
    from workbench.spec import ModelSpec

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    backbone = Backbone(model, ModelSpec("mlp", 2, input_size=(1, 1, 8), classifier="2"), "test", "mlp")
    data = SimpleNamespace(train=TensorDataset(torch.randn(16, 8), torch.arange(16) % 2),
                           val=None, classes=["a", "b"], fingerprint="mlp")
    return Workspace.from_backbone(backbone, FinetunePlan(train=TrainConfig(epochs=epochs, batch_size=8,
                                                                             num_workers=0))), data


def test_epoch_checkpoints_take_at_most_a_small_share_of_training(tmp_path, monkeypatch):
    """A checkpoint far costlier than the epochs: only the last is written, and a stop still writes one."""
    from workbench.training.checkpoint_writer import CheckpointWriter

    monkeypatch.setattr(Trainer, "CHECKPOINT_INTERVAL_S", 0.0)
    monkeypatch.setattr(CheckpointWriter, "ESTIMATED_BYTES_PER_S", 1e-3)  # an estimate of hours per write
    ws, data = mlp_workspace(epochs=4)
    epochs = [r for r in Trainer(ws, data, tmp_path / "run").run() if isinstance(r, EpochReport)]
    assert [r.checkpoint is not None for r in epochs] == [False, False, False, True]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").epoch == 4
    ws, data = mlp_workspace(epochs=4)
    trainer = Trainer(ws, data, tmp_path / "stopped")
    for r in trainer.run():
        if isinstance(r, EpochReport) and r.epoch == 1:
            trainer.request_stop()
    assert load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt").epoch == 2  # a stop is never skipped


def test_a_measured_write_time_sets_the_next_checkpoint(tmp_path, monkeypatch):
    """After the first checkpoint (small: estimated cheap), its measured time decides when the next one comes."""
    from workbench.training.checkpoint_writer import CheckpointWriter

    monkeypatch.setattr(Trainer, "CHECKPOINT_INTERVAL_S", 0.0)
    real_write = CheckpointWriter._write

    def slow_disk(self, state, weights, started):
        real_write(self, state, weights, started)
        assert self._cost is not None and 0 <= self._cost < 60  # measured: snapshot to disk
        self._cost = 1000.0  # as if the write had taken 1,000 s

    monkeypatch.setattr(CheckpointWriter, "_write", slow_disk)
    ws, data = mlp_workspace(epochs=4)
    epochs = [r for r in Trainer(ws, data, tmp_path / "run").run() if isinstance(r, EpochReport)]
    assert [r.checkpoint is not None for r in epochs] == [True, False, False, True]


def test_prepare_training_checks_classes_rebuilds_the_head_and_builds_a_ready_trainer(tmp_path):
    """The one setup path the CLI and GUI share: class count checked, head rebuilt on request, data opened."""
    from tests.test_cli_train import write_project
    from workbench.errors import WorkbenchError
    from workbench.project import load_project
    from workbench.training.prepare import prepare_training
    from workbench.training.reports import EpochReport

    project = write_project(tmp_path, epochs=1)
    project.write_text(project.read_text().replace("num_classes = 3", "num_classes = 5"))
    with pytest.raises(WorkbenchError, match=r"the data has 3 classes .* set \[model\] num_classes = 3"):
        prepare_training(load_project(project), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # nothing written for a refused setup
    prepared = prepare_training(load_project(project), tmp_path / "run", adapt=True)
    trainer = prepared.trainer
    assert trainer.ws.backbone.spec.num_classes == 3 and list(trainer.data.classes) == ["blue", "green", "red"]
    assert "3 classes, 18 train / 6 val images" in prepared.summary
    assert trainer.model is trainer.ws.backbone.module  # the run's own workspace: its weights are not held twice
    epochs = [r for r in trainer.run() if isinstance(r, EpochReport)]
    assert len(epochs) == 1 and epochs[0].val_loss is not None
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_training_leaves_the_workspace_untouched_and_returns_the_trained_model(tmp_path):
    """A run trains a copy: the workspace's weights, labels and plan stay bit-identical; two runs share a start."""
    import tomllib

    from safetensors.torch import load_file

    from workbench.project import plan_to_dict

    ws = workspace(epochs=1)
    freeze_first_stages(ws.plan, ws.tree, 2)
    before = {k: v.clone() for k, v in ws.backbone.module.state_dict().items()}
    plan_before, labels_before = repr(plan_to_dict(ws.plan)), ws.backbone.spec.label_names
    trainer = Trainer(ws, tiny_data(), tmp_path / "full")
    assert list(trainer.run())[-1].kind == "finished"
    after = ws.backbone.module.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert ws.backbone.spec.label_names == labels_before and repr(plan_to_dict(ws.plan)) == plan_before
    trained = trainer.trained
    assert trained.module is not ws.backbone.module and trained.spec.label_names == ["c0", "c1", "c2", "c3"]
    saved = load_file(str(tmp_path / "full" / "model.safetensors"))
    assert all(torch.equal(v, trained.module.state_dict()[k]) for k, v in saved.items())
    assert not torch.equal(saved["fc.weight"], before["fc.weight"])
    assert tomllib.loads(trained.recipe_toml)["model"]["label_names"] == ["c0", "c1", "c2", "c3"]
    # A second strategy from the same workspace starts from the untouched weights: a probe's frozen trunk is them.
    probe_plan = ws.plan.copy()
    linear_probe(probe_plan, ws.tree)
    probe = Trainer(Workspace(ws.backbone, ws.tree, probe_plan), tiny_data(), tmp_path / "probe")
    list(probe.run())
    probed = probe.trained.module.state_dict()
    assert all(torch.equal(probed[k], before[k]) for k in before if not k.startswith("fc."))
    assert all(torch.equal(before[k], ws.backbone.module.state_dict()[k]) for k in before)
    # The GUI adopts a run's result explicitly.
    ws.adopt(trained)
    assert ws.backbone.module is trained.module and ws.backbone.spec.label_names == ["c0", "c1", "c2", "c3"]
