"""The ``GradualUnfreezing`` callback: the plan's ``[[unfreeze]]`` schedule (Lightning's ``BaseFinetuning``).

At an epoch with steps, the named groups become trainable and join the optimizer as new
groups (their own LR, the same schedule). ``schedule_done`` is checkpointed, so a resumed
run neither re-freezes what was unfrozen nor unfreezes it twice.
"""

from __future__ import annotations

from workbench.freezing import unfreeze_groups
from workbench.training.callbacks import Callback
from workbench.training.optimizer import extend_optimizer
from workbench.training.reports import StateReport
from workbench.training.state import TrainState


class GradualUnfreezing(Callback):
    def before_epoch(self, t: TrainState) -> None:
        steps = [s for s in t.plan.unfreeze if s.epoch == t.epoch and s.epoch > t.schedule_done]
        if not steps:
            return
        names = [n for s in steps for n in s.groups]
        unfreeze_groups(t.plan, t.tree, names)
        t.applied, added = extend_optimizer(t.model, t.optimizer, t.plan, t.tree, t.epoch)
        t.schedule_done = t.epoch
        t.emit(StateReport("unfrozen", f"epoch {t.epoch}: unfroze {', '.join(names)} (+{added:,} trainable "
                           f"parameters); {t.applied.resolution.summary()}", t.epoch))
