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

Callbacks run in ascending ``order`` (equal orders: in the order given). Built-ins:
``GradualUnfreezing`` (-300: the freeze state first), ``FeatureCaching`` (-200: it splits the
model at that state's frozen trunk), ``NonFiniteGuard`` (-100), then a user's callbacks
(``Trainer(..., callbacks=[...])``, order 0 unless they declare one), then ``Checkpointing``
(1000: as Lightning's ModelCheckpoint, after every other callback, so the checkpoint holds their
state after the event it is taken in) and ``MetricsWriter`` (1100: the epoch's line names its checkpoint).

State: a callback that keeps something across ``--resume`` returns it from ``state_dict()``
(tensors and plain values only: dicts, lists, tuples, str, int, float, bool, None); every
checkpoint stores it under ``state_key`` (the class name), and a resumed run hands it to
``load_state_dict`` before ``before_fit``. Under torchrun rank 0's state is saved, and every
rank gets it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.training.state import TrainState

EVENTS = ("before_fit", "before_epoch", "before_batch", "after_loss", "after_step", "after_batch", "on_stop",
          "before_validate", "after_validate", "after_epoch", "after_fit", "teardown")


class Callback:
    """Override the events you need; the others do nothing."""

    order: int = 0  # callbacks run in ascending order; built-ins: see the module's docstring

    @property
    def state_key(self) -> str:
        """The name of this callback's state in the checkpoint (two stateful callbacks must not share one)."""
        return type(self).__qualname__

    def state_dict(self) -> dict[str, Any]:
        """What to keep across ``--resume`` (taken on the training thread whenever a checkpoint is)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what ``state_dict`` returned (a resumed run, before ``before_fit``)."""

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


def installed_callbacks(names: Sequence[str]) -> list[Callback]:
    """A fresh instance of each ``workbench.callbacks`` plugin a recipe names (``[train] callbacks``)."""
    from workbench.errors import TrainingError
    from workbench.plugins import CALLBACKS, registry

    found = []
    for name in names:
        plugin = registry().get(CALLBACKS, name)
        if not isinstance(plugin, Callback):
            raise TrainingError(f"callback plugin {name!r} is a {type(plugin).__name__}, not a "
                                "workbench.training.callbacks.Callback subclass")
        found.append(type(plugin)())
    return found
