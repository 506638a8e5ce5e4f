"""The ``GradualUnfreezing`` callback: the plan's ``[[unfreeze]]`` schedule (Lightning's ``BaseFinetuning``).

At an epoch with steps, the named groups become trainable and join the optimizer as new
groups (their own LR, the same schedule); a step with ``lr`` sets every group's LR to it. Its state is where the schedule got to
(``schedule_done``), so a resumed run neither re-freezes what was unfrozen nor unfreezes it
twice; the freeze state reached is the model's, restored with it (``Checkpoint.frozen``).
"""

from __future__ import annotations

from typing import Any

from workbench.freezing import unfreeze_groups
from workbench.training.callbacks import Callback
from workbench.training.optimizer import extend_optimizer
from workbench.training.reports import StateReport
from workbench.training.state import TrainState


class GradualUnfreezing(Callback):
    order = -300  # first: the other callbacks see the freeze state of this epoch

    def __init__(self) -> None:
        self.schedule_done = -1  # the last epoch whose [[unfreeze]] steps were applied (-1: none yet)

    def state_dict(self) -> dict[str, Any]:
        return {"schedule_done": self.schedule_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule_done = int(state["schedule_done"])

    def before_epoch(self, t: TrainState) -> None:
        steps = [s for s in t.plan.unfreeze if s.epoch == t.epoch and s.epoch > self.schedule_done]
        if not steps:
            return
        names = [n for s in steps for n in s.groups]
        unfreeze_groups(t.plan, t.tree, names)
        t.applied, added = extend_optimizer(t.model, t.optimizer, t.plan, t.tree, t.epoch)
        lr = next((s.lr for s in steps if s.lr is not None), None)  # one at most: resolve_plan refuses two
        if lr is not None:
            for group in t.optimizer.param_groups:
                group["base_lr"] = lr  # the schedule's factor applies at each step; the checkpoint keeps it
        self.schedule_done = t.epoch
        every = f"; every group now at LR {lr:g}" if lr is not None else ""
        t.emit(StateReport("unfrozen", f"epoch {t.epoch}: unfroze {', '.join(names)} (+{added:,} trainable "
                           f"parameters){every}; {t.applied.resolution.summary()}", t.epoch))

    def teardown(self, t: TrainState) -> None:
        self.schedule_done = -1  # the next run of the same Trainer starts the schedule afresh (or from its checkpoint)
