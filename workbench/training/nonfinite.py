"""The ``NonFiniteGuard`` callback: stop at the first NaN/inf loss, validation loss or weight.

It runs before ``Checkpointing`` on every event they share, so a checkpoint or weights file
never holds a non-finite value; the error names the epoch, batch and step, and where the
last good checkpoint is.
"""

from __future__ import annotations

import math

from workbench.errors import TrainingError
from workbench.finite import nonfinite_tensors
from workbench.training.callbacks import Callback
from workbench.training.checkpoint_writer import CheckpointWriter
from workbench.training.state import TrainState


class NonFiniteGuard(Callback):
    order = -100  # before users' callbacks and Checkpointing: nothing non-finite reaches them or the disk

    def __init__(self, writer: CheckpointWriter) -> None:
        self.writer = writer  # to wait for a checkpoint on its way to disk before naming the last good one
        self._checked_step: int | None = None  # the training step the weights were last found finite at

    def after_loss(self, t: TrainState) -> None:
        bad = not math.isfinite(t.loss_value)
        if t.dist is not None:  # every rank must take the same decision, or one hangs in backward
            bad = t.dist.all_max([float(bad)], t.device)[0] > 0
            t.loss_value = t.loss_value if math.isfinite(t.loss_value) else float("nan")
        if bad:
            raise TrainingError(self._message(t, t.loss_value, t.global_step + 1, "loss"))

    def after_validate(self, t: TrainState) -> None:
        if t.val_loss is not None and not math.isfinite(t.val_loss):
            raise TrainingError(self._message(t, t.val_loss, t.global_step, "validation loss"))
        self._check_weights(t)

    def before_fit(self, t: TrainState) -> None:
        """Once, everything: later checks skip the tensors training never writes."""
        bad = nonfinite_tensors(t.model)
        if bad:
            raise TrainingError(f"the model holds NaN or inf before training, in {_named(bad)}; load other weights")

    def on_stop(self, t: TrainState) -> None:
        self._check_weights(t)

    def after_fit(self, t: TrainState) -> None:
        if self._checked_step != t.global_step:  # (the last epoch's check covers the end unless a resume skipped it)
            self._check_weights(t, epoch=t.cfg.epochs, batch=0)

    def _check_weights(self, t: TrainState, epoch: int | None = None, batch: int | None = None) -> None:
        """Every weight and buffer training can change is finite (the loss can stay finite meanwhile);
        agreed by every rank."""
        bad = nonfinite_tensors(t.model, changing_only=True)
        if t.dist is not None:
            bad_any = t.dist.all_max([float(bool(bad))], t.device)[0] > 0
            if bad_any and not bad:
                bad = ["(on another process)"]
        if bad:
            raise TrainingError(self._message(t, f"non-finite in {_named(bad)}", t.global_step,
                                              "the weights", epoch, batch))
        self._checked_step = t.global_step

    def _message(self, t: TrainState, value: float | str, step: int, what: str, epoch: int | None = None,
                 batch: int | None = None) -> str:
        self.writer.join(raise_errors=False)  # the epoch's checkpoint may still be on its way to disk
        ckpt = t.run_dir.checkpoint
        kept = f"the last good checkpoint is {ckpt}" if ckpt.exists() else "no checkpoint had been written yet"
        epoch = t.epoch if epoch is None else epoch
        batch = t.batch if batch is None else batch
        return (f"{what} became {value} at epoch {epoch}, batch {batch} (step {step}); training stopped and {kept}. "
                "Lower the learning rate or set [train] grad_clip")


def _named(bad: list[str]) -> str:
    """"2 tensor(s) (a.weight, b.bias)", naming at most three."""
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return f"{len(bad)} tensor(s) ({shown})"
