"""Everything before a run's first batch: checks, restore (the checkpoint, the callbacks' states), build
(run files, loader, model on its device, optimizer).

``start_run`` returns the ``TrainState`` the loop and its callbacks share. The order of the
steps matters for an exact resume: nothing between seeding (or restoring the checkpoint's
RNG) and the first batch may draw from the global random generators.
"""

from __future__ import annotations

import json
import os
import random
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from workbench.apply import apply_plan
from workbench.atomic import atomic_write_text
from workbench.errors import TrainingError, WorkbenchError
from workbench.groups import default_groups
from workbench.plan import FinetunePlan
from workbench.resolve import resolve_plan
from workbench.run_folder import RunDir
from workbench.sources import capabilities
from workbench.spec import ModelSpec
from workbench.training.callback_states import restore_states
from workbench.training.checkpoint_file import Checkpoint, load_checkpoint, restore_rng_state
from workbench.training.devices import (
    bf16_faulty_convs,
    check_compile,
    describe_precision,
    pick_amp,
    pick_device,
)
from workbench.training.optimizer import build_optimizer, groups_from_layout, with_base
from workbench.training.reports import StateReport
from workbench.training.sampler import EpochSampler, make_loader
from workbench.training.state import TrainState

if TYPE_CHECKING:
    from workbench.training.trainer import Trainer


def start_run(trainer: Trainer) -> TrainState:
    """Check, restore (when resuming) and build the run; its first reports are left in ``t.pending``."""
    check_model(trainer)
    checkpoint, notices = restore_run(trainer)
    t = build_run(trainer, checkpoint)
    if checkpoint is not None:
        restore_rng_state(checkpoint.rng)  # last: nothing may draw from the global generators after this
    processes = f" × {t.dist.world_size} processes" if t.dist is not None else ""
    precision = describe_precision(t.cfg.amp, t.device, t.amp_dtype, t.precision_why)
    t.emit(StateReport("started" if checkpoint is None else "resumed",
                       f"{'resuming' if checkpoint else 'training'} {t.spec.architecture} on {t.device}{processes} "
                       f"in {precision}: {t.applied.resolution.summary()}; {len(t.data.train):,} training images",
                       t.epoch, {"run_dir": str(t.run_dir), "device": str(t.device)}))
    for notice in notices:
        t.emit(StateReport("notice", notice, t.epoch))
    if t.sampler.drops_lone_last:
        t.emit(StateReport("notice", f"{len(t.data.train):,} training images at batch size {t.cfg.batch_size} leave "
                           "a last batch of 1 image, which BatchNorm cannot train on: each epoch leaves that one "
                           "image out (a different one each epoch, as the order is shuffled)", t.epoch))
    return t


def check_model(trainer: Trainer) -> None:
    """The model's head fits the data's classes (and an ONNX model ends in logits); the spec gets their names."""
    classes, spec = list(trainer.data.classes), trainer.spec
    if spec.num_classes != len(classes):
        raise TrainingError(f"the data has {len(classes)} classes but the model's head has {spec.num_classes} "
                            f"outputs; set [model] num_classes = {len(classes)} (or --adapt-head)")
    if trainer.plan.head is None and not capabilities(trainer.ws.backbone.source).ends_in_logits:
        check_logits(trainer.model, spec)
    spec.label_names = classes


def restore_run(trainer: Trainer) -> tuple[Checkpoint | None, list[str]]:
    """A resumed run's checkpoint, checked against the data, with the callbacks' states handed back to them
    (and notices about states without a callback or the reverse); a new run is seeded instead."""
    if not trainer.resume:
        seed_everything(trainer.plan.train.seed)
        return None, []
    run_dir, data = trainer.run_folder, trainer.data
    checkpoint = load_checkpoint(run_dir.checkpoint)
    classes = list(data.classes)
    if list(checkpoint.classes) != classes:
        raise TrainingError(f"cannot resume {run_dir}: it was trained on classes {checkpoint.classes[:5]}…, "
                            f"the data now has {classes[:5]}…")
    check_same_data(run_dir, checkpoint, data, trainer.allow_data_change)
    return checkpoint, restore_states(trainer.callbacks, checkpoint.callbacks)


def build_run(trainer: Trainer, checkpoint: Checkpoint | None) -> TrainState:
    """Run files, loader, model on its device, optimizer: fresh, or as ``checkpoint`` left them."""
    cfg, data, model, spec, run_dir = trainer.plan.train, trainer.data, trainer.model, trainer.spec, trainer.run_folder
    dist, writes = trainer.dist, trainer.writes_files
    device = pick_device(cfg.device)
    if dist is not None and device.type == "cuda":
        visible = torch.cuda.device_count()
        if dist.local_rank >= visible:
            raise TrainingError(f"torchrun started process {dist.local_rank + 1} on this machine but only {visible} "
                                f"CUDA device(s) are visible: one process per GPU (--nproc_per_node {visible})")
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if cfg.compile:
        check_compile(device)
    amp_dtype = pick_amp(cfg.amp, device)
    precision_why = ""
    if amp_dtype == torch.bfloat16 and device.type == "cpu":
        faulty = bf16_faulty_convs(model, spec.input_size)
        shown = ", ".join(faulty[:3]) + (" …" if len(faulty) > 3 else "")
        if faulty and (cfg.amp or "auto").lower() == "auto":
            amp_dtype = None
            precision_why = (f"amp = auto: not bfloat16, whose weight gradient this CPU's oneDNN gets wrong for a "
                             f"strided convolution on a 1-pixel feature map ({shown} at this input size)")
        elif faulty:
            precision_why = (f"amp = bf16 as set, although this CPU's oneDNN gets the bfloat16 weight gradient of "
                             f"{shown} wrong at this input size (a strided convolution on a 1-pixel feature map): "
                             'amp = "auto" or "off" trains it in float32')
    current = trainer.plan.copy()
    if checkpoint is not None:  # the freeze state gradual unfreezing had reached
        current.freeze.frozen, current.freeze.unfrozen = list(checkpoint.frozen), list(checkpoint.unfrozen)
    if writes:
        run_dir.path.mkdir(parents=True, exist_ok=True)
        write_run_files(run_dir, recorded_plan(current if checkpoint is None else trainer.plan, trainer.plan, spec),
                        spec, fresh=checkpoint is None)
    workers = loader_workers(cfg.num_workers, data.train)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    sampler = EpochSampler(len(data.train), cfg.seed, rank=dist.rank if dist else 0,
                           world_size=dist.world_size if dist else 1, drop_lone_last_of=cfg.batch_size if has_bn else 0)
    loader = make_loader(data.train, sampler, cfg.batch_size, cfg.seed, workers, device)
    batches = len(loader) if sampler.size else 0
    if batches == 0:
        raise TrainingError("the training set is empty")

    tree = trainer.ws.tree
    resolution = resolve_plan(tree, current, default_groups(tree))
    if checkpoint is None and writes:  # what `workbench diff RUN` compares the result with
        from workbench.run_start import save_run_start

        # Before the move to the device and to channels_last: the weights are written as they are
        # (a channels_last copy would be made contiguous tensor by tensor first: 0.03-0.1 CPU-s for
        # resnet18's layer4). Only rank 0 writes, and its values are the ones broadcast below.
        save_run_start(run_dir.path, model, tree, trainer.plan, resolution)
    channels_last = place_model(model, device, dist)
    applied = apply_plan(model, resolution)
    if checkpoint is not None:
        _check_fits(model, checkpoint.model, run_dir)
        model.load_state_dict(checkpoint.model)
        optimizer = build_optimizer(cfg, groups_from_layout(model, checkpoint.optimizer_layout))
        optimizer.load_state_dict(checkpoint.optimizer)
    else:
        optimizer = build_optimizer(cfg, [with_base(g) for g in applied.param_groups])
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if checkpoint is not None and checkpoint.scaler:
        scaler.load_state_dict(checkpoint.scaler)
    at = checkpoint.position if checkpoint is not None else None
    return TrainState(
        trainer=trainer, cfg=cfg, plan=current, tree=tree, model=model, spec=spec, data=data, run_dir=run_dir,
        writes_files=writes, dist=dist, device=device, amp_dtype=amp_dtype, precision_why=precision_why,
        channels_last=channels_last,
        workers=workers, loader=loader, sampler=sampler, batches=batches, total_steps=cfg.epochs * batches,
        warmup_steps=int(cfg.warmup_epochs * batches), applied=applied, optimizer=optimizer, scaler=scaler,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), resumed_at=at,
        epoch=at.epoch if at else 0, batch=at.batch if at else 0, global_step=at.global_step if at else 0)


def place_model(model: nn.Module, device: torch.device, dist: Any) -> bool:
    """Move the model to ``device`` (channels_last where it has convolutions; returns whether) and, under
    torchrun, give every rank rank 0's weights."""
    model.to(device)
    # Measured on CPU too (oneDNN): resnet18 steps 1.25x, mobilenetv3 1.7x faster in channels_last.
    channels_last = device.type in ("cuda", "cpu") and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if dist is not None:
        dist.broadcast_module(model, device)  # frozen weights too: DDP only syncs what it wraps
    return channels_last


def recorded_plan(plan: FinetunePlan, original: FinetunePlan, spec: ModelSpec) -> FinetunePlan:
    """The recipe as run: ``plan`` with the model's class count and labels, paths made absolute."""
    recorded = plan.copy()
    recorded.model.num_classes = spec.num_classes
    recorded.model.label_names = list(spec.label_names or [])
    if capabilities(recorded.model.source).takes_files:
        recorded.model.name = str(original.resolve_path(recorded.model.name))
    for key in ("path", "val_path"):
        value = getattr(recorded.data, key)
        if value is not None:
            setattr(recorded.data, key, str(original.resolve_path(value)))
    return recorded


def recipe_toml(plan: FinetunePlan) -> str:
    import tomli_w

    from workbench.project import plan_to_dict

    return tomli_w.dumps(plan_to_dict(plan))


def write_run_files(run_dir: RunDir, recorded: FinetunePlan, spec: ModelSpec, fresh: bool) -> None:
    """``project.toml`` (kept when resuming) and ``spec.json``."""
    if fresh or not run_dir.project.exists():
        atomic_write_text(run_dir.project, recipe_toml(recorded))
    atomic_write_text(run_dir.spec, json.dumps(spec.to_dict(), indent=2))


def check_same_data(run_dir: RunDir, checkpoint: Checkpoint, data: Any, allow_change: bool) -> None:
    """Resuming on other images (or another split or transform) is refused unless asked for."""
    was, now = checkpoint.data_fingerprint, str(getattr(data, "fingerprint", ""))
    if not was or was == now or allow_change:
        return
    counts = checkpoint.data_counts
    change = ""
    if counts:
        now_counts = [len(data.train), len(data.val) if data.val is not None else 0]
        if list(counts) != now_counts:
            change = (f" ({counts[0]:,} → {now_counts[0]:,} training images, "
                      f"{counts[1]:,} → {now_counts[1]:,} validation images)")
    raise TrainingError(f"cannot resume {run_dir}: the data changed since its checkpoint{change}: images, "
                        "split or preprocessing differ, so the resumed run would not continue the same "
                        "training. Pass --allow-data-change to continue on the new data anyway")


def check_logits(model: nn.Module, spec: ModelSpec) -> None:
    """Refuse a module whose output is not (N, classes) logits (a detector's map, probabilities)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(3 * torch.randn(3, *spec.input_size, generator=torch.Generator().manual_seed(2)))
    finally:
        model.train(was_training)
    head_hint = "cut the graph and attach a new head ([head] in the project file)"
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TrainingError(f"the model's output has shape {shape}, not (N, classes) logits: to train it, {head_hint}")
    if out.shape[1] > 1 and bool((out >= 0).all()) and torch.allclose(out.sum(dim=1), torch.ones(3), atol=1e-4):
        raise TrainingError("the model's output rows sum to 1 (probabilities, not logits): cross-entropy on them "
                            f"would train the wrong thing; {head_hint}")


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def loader_workers(setting: int | None, dataset: Any) -> int:
    """[train] num_workers, else none for images kept decoded in memory (workers would only compete), else up to 4."""
    if setting is not None:
        return setting
    if getattr(dataset, "keep_decoded", False):
        return 0
    return min(4, max(0, (os.cpu_count() or 1) - 1))


def _check_fits(model: nn.Module, weights: dict[str, Any], run_dir: RunDir) -> None:
    """A resumed checkpoint must fit the model its recipe builds; say which tensors differ, and what to do."""
    from workbench.state_fit import state_mismatch

    mismatch = state_mismatch(model, weights)
    if mismatch:
        raise WorkbenchError(f"cannot resume: the checkpoint {run_dir.checkpoint} does not fit the recipe in "
                             f"{run_dir.project}: {mismatch}. The recipe was edited after the run was made: restore "
                             f"it, or train the edited recipe as a new run (--out another folder, or --overwrite)")
