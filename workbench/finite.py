"""Finding NaN/inf in weights: nothing that writes weights may write them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn


def nonfinite_tensors(model: "nn.Module") -> list[str]:
    """Names of the floating-point parameters and buffers holding NaN or inf."""
    import torch

    return [name for name, t in model.state_dict(keep_vars=True).items()
            if t.is_floating_point() and not bool(torch.isfinite(t.detach()).all())]
