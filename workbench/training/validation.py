"""One validation pass: loss, top-1 and top-5 over the validation set (this process's share under torchrun)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from workbench.training.sampler import WithIndex
from workbench.training.state import TrainState


def validate(t: TrainState) -> tuple[float | None, float | None, float | None]:
    """(loss, top-1, top-5 or None with 5 classes or fewer); all None without a validation set.

    Runs on ``t.val_batches`` through ``t.val_module`` when a callback set them (cached
    features through the head), else on the validation images through the model;
    ``t.val_inputs`` turns each batch of images into what the module takes (the trunk).
    """
    data = t.data
    if data.val is None or len(data.val) == 0:
        return None, None, None
    t.model.eval()
    images_in = t.val_batches is None  # images (not cached features): channels_last applies
    batches = image_batches(t) if t.val_batches is None else t.val_batches
    forward = t.val_module if t.val_module is not None else t.model
    num_classes = len(data.classes)
    loss_sum, top1, top5, seen = 0.0, 0, 0, 0
    amp = t.amp_dtype
    with torch.inference_mode(), torch.autocast(t.device.type, dtype=amp, enabled=amp is not None):
        for images, labels, index in batches:
            images, labels = images.to(t.device, non_blocking=True), labels.to(t.device, non_blocking=True)
            if t.channels_last and images.dim() == 4 and images_in:
                images = images.contiguous(memory_format=torch.channels_last)
            if t.val_inputs is not None:
                images = t.val_inputs(images, labels, index)
            logits = forward(images).float()
            loss_sum += t.loss_fn(logits, labels).item() * labels.shape[0]
            top = logits.topk(min(5, num_classes), dim=1).indices
            top1 += int((top[:, 0] == labels).sum().item())
            top5 += int((top == labels[:, None]).any(dim=1).sum().item())
            seen += labels.shape[0]
    sums = [loss_sum, float(top1), float(top5), float(seen)]
    if t.dist is not None:
        sums = t.dist.all_sum(sums, t.device)
    loss, hits1, hits5, count = sums
    return loss / count, hits1 / count, (hits5 / count if num_classes > 5 else None)


def image_batches(t: TrainState) -> DataLoader:
    """The validation images in order; under torchrun each rank scores its share (the sums are added).

    One loader for the whole run: its workers (if any) start once, not every epoch.
    """
    if t.val_loader is None:
        val_set: Any = WithIndex(t.data.val)
        if t.dist is not None:
            val_set = Subset(val_set, range(len(t.data.val))[t.dist.rank::t.dist.world_size])
        t.val_loader = DataLoader(val_set, batch_size=t.cfg.batch_size, shuffle=False, num_workers=t.workers,
                                  pin_memory=t.device.type == "cuda", persistent_workers=t.workers > 0,
                                  generator=torch.Generator().manual_seed(0))
    return t.val_loader
