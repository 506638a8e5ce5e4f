"""The Training tab's times in words: durations, and the time left of a run (phase-aware)."""

from __future__ import annotations

from typing import Any

from workbench.plan import FinetunePlan


def format_duration(seconds: float) -> str:
    if seconds != seconds or seconds < 0:  # NaN
        return "–"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def time_left_text(step: Any, plan: FinetunePlan, epoch_seconds: dict[int, float]) -> str:
    """Phase-aware (workbench.time_left): "estimating…" until every kind of epoch still to come was measured.

    ``step``: the latest StepReport; ``epoch_seconds``: how long each finished epoch took.
    """
    from workbench.time_left import time_left

    recent = step.images_per_s
    step_s = step.eta_s / max(1, step.batches * plan.train.epochs - step.global_step) if step.eta_s else 0.0
    if not step_s and recent:
        step_s = plan.train.batch_size / recent
    left = time_left(plan.train.epochs, [u.epoch for u in plan.unfreeze], step.epoch, step.batch, step.batches,
                     step_s, epoch_seconds)
    return "estimating…" if left is None else format_duration(left)
