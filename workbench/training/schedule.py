"""Learning-rate schedules as a multiplier of each group's base LR, by global step.

A plain function of the step (not a torch LR scheduler) so groups that join mid-run
(gradual unfreezing) follow the same curve, and resuming needs only the step number.
"""

from __future__ import annotations

import math

from workbench.errors import WorkbenchError


def lr_factor(kind: str, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Multiplier for the LR at ``step`` (0-based) of ``total_steps``."""
    total_steps = max(1, total_steps)
    if kind == "constant":
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps and step < warmup_steps else 1.0
    if kind == "cosine":
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if kind == "onecycle":
        # torch's OneCycleLR shape: 30% cosine ramp from base/25 to base, then cosine down to base/1e4.
        peak = max(1, int(0.3 * total_steps))
        start, end = 1 / 25, 1 / 25 / 1e4
        if step < peak:
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / peak))
        progress = (step - peak) / max(1, total_steps - peak)
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    raise WorkbenchError(f"unknown scheduler {kind!r} (constant, cosine, onecycle)")
