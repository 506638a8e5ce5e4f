"""Hints read from a run's epoch metrics: patterns with a likely cause and a fix.

Pure functions over plain records (a ``metrics.jsonl`` epoch line, or an EpochReport as a dict),
so the CLI, the window's log and ``workbench evaluate`` say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

STUCK_AT_CHANCE = "val-accuracy-at-chance"
NOT_LEARNING = "training-loss-at-uniform-guess"


def epoch_hint(epochs: Sequence[Mapping[str, Any]], num_classes: int, **context: Any) -> str | None:
    """The first pattern the epochs so far show (each rule below), or None; ``context`` from ``hint_context``."""
    return not_learning(epochs, num_classes, **context) or stuck_at_chance(
        epochs, num_classes, **{k: v for k, v in context.items() if k in ("batchnorm", "pretrained", "has_batchnorm")})


def not_learning(epochs: Sequence[Mapping[str, Any]], num_classes: int, *, pretrained: bool | None = None,
                 lr: float | None = None, **_: Any) -> str | None:
    """A hint when, after two epochs or more, the training loss is still that of a uniform guess and training
    accuracy is at chance: nothing is being learned, not even on the training images."""
    if num_classes < 2:
        return None
    scored = [(float(e["train_loss"]), float(e["train_accuracy"])) for e in epochs
              if _is_number(e.get("train_loss")) and _is_number(e.get("train_accuracy"))]
    if len(scored) < 2:
        return None
    uniform, band = math.log(num_classes), chance_band(num_classes)
    if not all(loss >= 0.9 * uniform and accuracy <= band for loss, accuracy in scored):
        return None
    loss, accuracy = scored[-1]
    head = (f"{NOT_LEARNING}: after {len(scored)} epochs the training loss is {loss:.3g}, what a uniform guess "
            f"over {num_classes} classes scores (ln {num_classes} = {uniform:.3g}), and training accuracy "
            f"({accuracy:.1%}) is at chance: the model learns nothing, not even the training images.")
    if pretrained and lr:
        cause = (f" Likely cause: the learning rate ({lr:g}) is too high for the pretrained layers that train: a "
                 "few large steps wipe out what they had learned (a linear probe tolerates an LR that a fine-tune "
                 "does not). Fix: a tenth of it or less for the pretrained layers (their groups' LR, "
                 "discriminative LRs or layer-wise decay), or LR warmup.")
    else:
        cause = (" Likely cause: a learning rate far too high (the weights jump past every minimum) or far too "
                 "low, or labels that do not belong to their images. Fix: try the LR ÷ 10 and × 10, and look at a "
                 "few images with their labels on the Data tab.")
    return head + cause


def chance_band(num_classes: int) -> float:
    """The highest validation accuracy still counted as "at chance": chance plus a tenth of the rest."""
    chance = 1.0 / num_classes
    return chance + 0.1 * (1.0 - chance)


def stuck_at_chance(epochs: Sequence[Mapping[str, Any]], num_classes: int, *, batchnorm: str | None = None,
                    pretrained: bool | None = None, has_batchnorm: bool = True) -> str | None:
    """A hint when validation accuracy stays at chance while training accuracy climbs well above it.

    ``epochs``: records with ``train_accuracy`` and ``val_accuracy`` (fractions), oldest first.
    ``batchnorm`` (the plan's policy), ``pretrained`` and ``has_batchnorm`` pick the likely cause.
    Returns None when the pattern is not there.
    """
    if num_classes < 2:
        return None
    scored = [(float(e["train_accuracy"]), float(e["val_accuracy"])) for e in epochs
              if _is_number(e.get("train_accuracy")) and _is_number(e.get("val_accuracy"))]
    if not scored:
        return None
    chance = 1.0 / num_classes
    band = chance_band(num_classes)
    train, val = scored[-1]
    climbed = train >= chance + 0.4 * (1.0 - chance) and train - val >= 0.25
    if not climbed or any(v > band for _, v in scored):
        return None
    head = (f"{STUCK_AT_CHANCE}: validation accuracy is at chance ({val:.1%}; chance is {chance:.1%} for "
            f"{num_classes} classes) while training accuracy climbed to {train:.1%}.")
    batch_stats = has_batchnorm and batchnorm != "eval"  # "eval": inference mode while training too
    if batch_stats and not pretrained:
        cause = (" Likely cause: BatchNorm statistics of a random-init trunk. Training normalises each batch "
                 "with that batch's own statistics; validation uses the running averages, which start at mean 0 "
                 "and variance 1 and trail far behind a random-init network's activations after a few steps, so "
                 "validation sees other features than training did. Fix: start from pretrained weights, or "
                 "train more epochs at a lower learning rate (or with larger batches) so the averages settle.")
    elif batch_stats:
        cause = (" Likely cause: BatchNorm statistics re-estimated on the new data drift away from what the "
                 "pretrained layers expect, and validation normalises with those running averages. Fix: keep "
                 "the pretrained statistics (BatchNorm policy \"eval\", or \"freeze\" for frozen layers), or "
                 "lower the learning rate.")
    else:
        cause = (" Likely cause: the model memorises the training images without learning what carries over "
                 "(too few images, or validation images unlike the training ones). Fix: more data or "
                 "augmentation, a lower learning rate, or fewer trainable layers.")
    cause += " Also check that the validation images are labelled and preprocessed like the training ones."
    return head + cause


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def hint_context(ws: Any) -> dict[str, Any]:
    """What picks the likely cause, from a ``Workspace``: BatchNorm policy, trained weights, BatchNorm present,
    the learning rate."""
    return {"batchnorm": ws.plan.freeze.batchnorm, "pretrained": ws.backbone.weights != "random init",
            "has_batchnorm": has_batchnorm(ws.backbone.module), "lr": ws.plan.train.lr}


def has_batchnorm(module: Any) -> bool:
    """True when ``module`` (an ``nn.Module``) holds any BatchNorm layer with running statistics."""
    from torch.nn.modules.batchnorm import _BatchNorm

    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in module.modules())
