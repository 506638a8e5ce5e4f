"""How long freeze states last: the epochs of the current one (from now, in all) and of the one before.

Gradual unfreezing divides a run into freeze states; the feature cache decides on a state's whole span,
not on the epochs left, so a resumed run computes as an unbroken one did.
"""

from __future__ import annotations

from workbench.training.state import TrainState


def state_epochs(t: TrainState) -> int:
    """How many epochs, from this one, the current freeze state lasts (until the next unfreezing or the end)."""
    later = [s.epoch for s in t.plan.unfreeze if s.epoch > t.epoch]
    return min([*later, t.cfg.epochs]) - t.epoch


def state_began(t: TrainState, epoch: int | None = None) -> int:
    """The epoch the freeze state in force at ``epoch`` (default: this one) began."""
    at = t.epoch if epoch is None else epoch
    return max([s.epoch for s in t.plan.unfreeze if s.epoch <= at], default=0)


def previous_state_span(t: TrainState) -> int:
    """How many epochs the freeze state before the current one lasted (0 when this is the first)."""
    began = state_began(t)
    return began - state_began(t, began - 1) if began > 0 else 0


def state_span(t: TrainState) -> int:
    """How many epochs the current freeze state lasts in all, from the epoch it began."""
    return state_epochs(t) + t.epoch - state_began(t)
