"""How long a run has left, from what its phases have been measured to cost — or None ("estimating…").

A run's epochs do not cost the same: the first epoch of a freeze state runs the frozen trunk and
fills the feature cache, the next ones train only above it, and an ``[[unfreeze]]`` step starts a
new, slower state. The Trainer's per-step average extrapolates the current epoch over the whole
run ("8 s left" at epoch 1 of a 3-minute run). Here each later epoch is priced by a measured epoch
of the same kind (same freeze state, not its first): when one has not run yet, there is no honest
figure and the answer is None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def phase_of(epoch: int, unfreeze_epochs: Sequence[int]) -> int:
    """Which freeze state ``epoch`` (0-based) trains in: the number of unfreeze steps at or before it."""
    return sum(1 for e in unfreeze_epochs if e <= epoch)


def starts_phase(epoch: int, unfreeze_epochs: Sequence[int]) -> bool:
    return epoch == 0 or phase_of(epoch - 1, unfreeze_epochs) != phase_of(epoch, unfreeze_epochs)


def time_left(epochs: int, unfreeze_epochs: Sequence[int], epoch: int, batch: int, batches: int, step_s: float,
              epoch_seconds: Mapping[int, float]) -> float | None:
    """Seconds left in the run, or None while a kind of epoch still to come has not been measured.

    ``epoch``/``batch``: where the run is (0-based epoch, batches done in it); ``step_s``: the recent
    seconds per step; ``epoch_seconds``: the measured length of finished epochs (0-based).
    """
    rest = step_s * max(0, batches - batch)
    current_phase = phase_of(epoch, unfreeze_epochs)
    for later in range(epoch + 1, epochs):
        phase = phase_of(later, unfreeze_epochs)
        if starts_phase(later, unfreeze_epochs):
            return None  # a new freeze state: its cost is unknown until it runs
        steady = [s for e, s in epoch_seconds.items()
                  if phase_of(e, unfreeze_epochs) == phase and not starts_phase(e, unfreeze_epochs)]
        if steady:
            rest += sum(steady) / len(steady)
        elif phase == current_phase and not starts_phase(epoch, unfreeze_epochs):
            rest += step_s * batches  # this epoch is of the same kind: its pace holds
        else:
            return None
    return rest
