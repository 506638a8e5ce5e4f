"""The ``Checkpointing`` callback: a checkpoint after each epoch (at most every few seconds, and at most 5% of the
training time), on stop and at the end."""

from __future__ import annotations

from dataclasses import replace

from workbench.training.callbacks import Callback
from workbench.training.checkpoint_writer import CheckpointWriter, snapshot_model
from workbench.training.reports import EpochReport
from workbench.training.state import TrainState

CHECKPOINTING_ORDER = 1000


class Checkpointing(Callback):
    """``checkpoints/last.pt`` (to resume from) and ``model.safetensors`` (to export), through ``writer``.

    Runs after every callback of a lower ``order`` (``NonFiniteGuard``, so nothing non-finite is ever
    written, and users' callbacks, so their state is saved as it is after the event's hooks). The epoch's
    checkpoint is taken at ``after_epoch`` and named in the epoch's report.
    """

    order = CHECKPOINTING_ORDER

    def __init__(self, writer: CheckpointWriter) -> None:
        self.writer = writer

    def before_fit(self, t: TrainState) -> None:
        self.writer.begin()

    def after_epoch(self, t: TrainState) -> None:
        last = t.epoch + 1 == t.cfg.epochs  # the last epoch's checkpoint (and weights file) is never skipped
        if self.writer.save(t, t.epoch + 1, 0, required=last, final=last) and isinstance(t.report, EpochReport):
            t.report = replace(t.report, checkpoint=str(t.run_dir.checkpoint))

    def on_stop(self, t: TrainState) -> None:
        at_end = t.batch == t.batches
        self.writer.save(t, t.epoch + 1 if at_end else t.epoch, 0 if at_end else t.batch, wait=True)

    def after_fit(self, t: TrainState) -> None:
        self.writer.join()
        if t.writes_files and not t.run_dir.weights.exists():  # resumed after a kill in the last write
            self.writer.write_weights(snapshot_model(t.model))

    def teardown(self, t: TrainState) -> None:
        self.writer.join(raise_errors=False)
