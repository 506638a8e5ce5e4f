"""What the Trainer yields: small frozen dataclasses of plain values (no tensors).

The GUI's worker thread forwards these through queued signals; the CLI prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Every kind the Trainer emits; consumers match on these (mypy checks the literals).
StateKind = Literal["started", "paused", "resumed", "unfrozen", "cache", "trunk", "stopped", "finished", "notice"]


@dataclass(frozen=True)
class StepReport:
    """After every optimizer step."""

    epoch: int  # 0-based
    batch: int  # 1-based index of this batch within the epoch
    batches: int  # batches per epoch
    global_step: int  # 1-based over the whole run
    loss: float
    accuracy: float  # top-1 on this batch
    lrs: dict[str, float]  # current LR per optimizer group name
    images_per_s: float
    eta_s: float  # estimated seconds left in the run


@dataclass(frozen=True)
class EpochReport:
    """After every epoch's validation."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    val_top5: float | None  # only when there are more than 5 classes
    seconds: float
    checkpoint: str | None = None  # set when this epoch's checkpoint was taken (see CheckpointWriter.save)


@dataclass(frozen=True)
class StateReport:
    """A change of state. ``kind`` is one of:

    started, paused, resumed, unfrozen, cache (feature cache used or why not), trunk (the frozen
    trunk runs as a BatchNorm-folded inference copy), stopped, finished, notice.
    """

    kind: StateKind
    message: str
    epoch: int = 0
    details: dict[str, str | int | float] = field(default_factory=dict)


Report = StepReport | EpochReport | StateReport
