"""Named training events and the ``Callback`` base class (fastai's events, Lightning's no-op hooks).

The Trainer's loop fires these events, in this order, on every callback in its list::

    before_fit                once: the model is on its device, the optimizer built or restored
      before_epoch            each epoch; t.train_batches / t.train_module may be replaced here
        before_batch          the batch is on the device (t.images, t.labels, t.index), under autocast
        after_loss            t.loss, t.loss_value, t.accuracy are known; backward comes next
        after_step            the optimizer stepped; t.global_step counts this step
        after_batch           t.report is this batch's StepReport (yielded right after the event)
        on_stop               a stop was requested (and agreed by every rank): the run ends after it
      before_validate         the epoch's batches are done; t.val_batches / t.val_module / t.val_inputs
                              may be set to change what validation runs on
      after_validate          t.val_loss, t.val_accuracy, t.val_top5 (None without a validation set)
      after_epoch             t.report is the EpochReport (yielded right after the event)
    after_fit                 every epoch is done; the "finished" report follows
    teardown                  always last, whatever the outcome (finished, stopped, failed, abandoned)

Every hook gets the ``TrainState`` ``t`` (``workbench.training.state``). A callback
reports with ``t.emit(StateReport(...))`` (yielded after the event), stops the run after
the current batch with ``t.request_stop()`` (a checkpoint is written; ``--resume``
continues it), and fails the run by raising (a ``TrainingError`` for a user-facing reason).

Built-ins, in the order they run: ``GradualUnfreezing``, ``FeatureCaching``,
``NonFiniteGuard``, ``Checkpointing``, ``MetricsWriter``; a user's callbacks
(``Trainer(..., callbacks=[...])``) run after them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.training.state import TrainState

EVENTS = ("before_fit", "before_epoch", "before_batch", "after_loss", "after_step", "after_batch", "on_stop",
          "before_validate", "after_validate", "after_epoch", "after_fit", "teardown")


class Callback:
    """Override the events you need; the others do nothing."""

    def before_fit(self, t: TrainState) -> None:
        pass

    def before_epoch(self, t: TrainState) -> None:
        pass

    def before_batch(self, t: TrainState) -> None:
        pass

    def after_loss(self, t: TrainState) -> None:
        pass

    def after_step(self, t: TrainState) -> None:
        pass

    def after_batch(self, t: TrainState) -> None:
        pass

    def on_stop(self, t: TrainState) -> None:
        pass

    def before_validate(self, t: TrainState) -> None:
        pass

    def after_validate(self, t: TrainState) -> None:
        pass

    def after_epoch(self, t: TrainState) -> None:
        pass

    def after_fit(self, t: TrainState) -> None:
        pass

    def teardown(self, t: TrainState) -> None:
        pass
